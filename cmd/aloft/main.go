// Command aloft is the control plane server and its CLI in one binary.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/aloft-dev/aloft/internal/client"
	"github.com/spf13/cobra"
)

// Exit codes, documented in the README.
const (
	exitError   = 1 // the server refused the request, or the input is invalid
	exitUsage   = 2 // bad flags or arguments
	exitTimeout = 3 // --wait ran out of time
	exitNoConn  = 4 // the server could not be reached
)

// exitErr carries an exit code through cobra.
type exitErr struct {
	code int
	err  error
}

func (e *exitErr) Error() string { return e.err.Error() }
func (e *exitErr) Unwrap() error { return e.err }

type globals struct {
	server    string
	output    string
	ca        string
	workspace string
	cfg       config
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "error:", err)
	var ee *exitErr
	var opErr *net.OpError
	switch {
	case errors.As(err, &ee):
		os.Exit(ee.code)
	case errors.As(err, &opErr):
		fmt.Fprintln(os.Stderr, "is `aloft server` running? set --server or ALOFT_SERVER")
		os.Exit(exitNoConn)
	case isUsage(err):
		os.Exit(exitUsage)
	default:
		os.Exit(exitError)
	}
}

func isUsage(err error) bool {
	var ue *usageError
	return errors.As(err, &ue)
}

type usageError struct{ msg string }

func (u *usageError) Error() string { return u.msg }

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "aloft",
		Short: "aloft deploys AI services across clouds and keeps them fast, cheap and up",
		Long: `aloft deploys AI services across several clouds at once: it places replicas,
starts and health-checks them, routes traffic through its gateway, and moves
them when a cloud fails. Run 'aloft server' to start the control plane, then
'aloft apply -f spec.yaml' to deploy.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	g.cfg, _ = loadConfig()
	def := os.Getenv("ALOFT_SERVER")
	if def == "" {
		def = g.cfg.Server
	}
	if def == "" {
		def = "http://127.0.0.1:7070"
	}
	root.PersistentFlags().StringVar(&g.server, "server", def, "aloft API address (env ALOFT_SERVER, else the login's)")
	root.PersistentFlags().StringVar(&g.ca, "ca", g.cfg.CA, "PEM file of the CA that signed the server's certificate (e.g. <data>/tls/ca.crt)")
	root.PersistentFlags().StringVar(&g.workspace, "workspace", "", "workspace to act in (default: the token's)")
	root.MarkPersistentFlagFilename("ca", "crt", "pem")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "table", "output format: table, json or yaml")
	root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp))
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return &usageError{err.Error() + "\n" + c.UsageString()} })

	root.AddCommand(
		newServerCmd(),
		newApplyCmd(g), newGetCmd(g), newListCmd(g), newDeleteCmd(g), newScaleCmd(g),
		newLogsCmd(g), newEventsCmd(g), newRevisionsCmd(g),
		newCloudsCmd(g), newCloudCmd(g), newPlanCmd(g), newRenderCmd(g),
		newLoginCmd(g), newWhoamiCmd(g), newTokenCmd(g), newSecretCmd(g), newEndpointTokenCmd(g),
		newAuditCmd(g), newWorkspaceCmd(g), newImageCmd(g), newCatalogCmd(g),
		newSimCmd(g),
	)
	return root
}

// client builds an API client: token from ALOFT_TOKEN, else the login's.
func (g *globals) client() *client.Client {
	c := client.New(g.server)
	c.Token = os.Getenv("ALOFT_TOKEN")
	if c.Token == "" {
		c.Token = g.cfg.Token
	}
	c.Workspace = g.workspace
	if g.ca != "" {
		pem, err := os.ReadFile(g.ca)
		if err == nil {
			err = c.WithCA(pem)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "warning: --ca %s: %v\n", g.ca, err)
		}
	}
	return c
}

func (g *globals) checkOutput() error {
	switch g.output {
	case "table", "json", "yaml":
		return nil
	}
	return &usageError{fmt.Sprintf("--output must be table, json or yaml, not %q", g.output)}
}

// exactArgs is cobra.ExactArgs with a usage exit code.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return &usageError{fmt.Sprintf("%s needs %s (got %d argument(s))\nusage: %s", cmd.Name(), what, len(args), cmd.UseLine())}
		}
		return nil
	}
}
