package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/client"
	"github.com/spf13/cobra"
)

// completeDeployments offers deployment names from the server.
func completeDeployments(g *globals) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		deps, err := g.client().ListDeployments(cmd.Context())
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
		}
		var names []cobra.Completion
		for _, d := range deps {
			names = append(names, d.Name)
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

type waitFlags struct {
	wait    bool
	timeout time.Duration
}

func (w *waitFlags) add(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&w.wait, "wait", false, "wait until every replica of the current revision is ready, showing progress")
	cmd.Flags().DurationVar(&w.timeout, "timeout", 3*time.Minute, "how long --wait waits")
}

func readSpecFile(path string) ([]byte, error) {
	if path == "" {
		return nil, &usageError{"-f FILE is required (use -f - for stdin)"}
	}
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, &exitErr{exitError, err}
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, v1.MaxSpecBytes+1))
	if err != nil {
		return nil, &exitErr{exitError, err}
	}
	return data, nil
}

func newApplyCmd(g *globals) *cobra.Command {
	var file string
	var w waitFlags
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Create or update a deployment from a spec file (YAML or JSON)",
		Example: `  aloft apply -f examples/completions/aloft.yaml --wait
  cat spec.yaml | aloft apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			data, err := readSpecFile(file)
			if err != nil {
				return err
			}
			// Parse locally for the name; the server validates again with the same code.
			spec, err := v1.ParseSpec(data)
			if err != nil {
				return &exitErr{exitError, fmt.Errorf("%s: %w", file, err)}
			}
			d, created, err := g.client().ApplyDeployment(cmd.Context(), spec.Name, data)
			if err != nil {
				return err
			}
			verb := "configured"
			if created {
				verb = "created"
			}
			if g.output == "table" {
				fmt.Fprintf(cmd.OutOrStdout(), "deployment/%s %s (revision %d)\n", d.Name, verb, d.Revision)
			}
			if w.wait {
				if d, err = waitReady(cmd, g, d.Name, w.timeout); err != nil {
					return err
				}
			}
			if g.output != "table" {
				return printOut(cmd.OutOrStdout(), g.output, d, nil)
			}
			if w.wait {
				return printDeployment(cmd.OutOrStdout(), d)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "spec file (YAML or JSON), - for stdin")
	cmd.MarkFlagFilename("filename", "yaml", "yml", "json")
	w.add(cmd)
	return cmd
}

func newGetCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:               "get [NAME]",
		Short:             "Show a deployment and its replicas (or list all without NAME)",
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeDeployments(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			if len(args) == 0 {
				return runList(cmd, g)
			}
			d, err := g.client().GetDeployment(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printOut(cmd.OutOrStdout(), g.output, d, func(w io.Writer) error { return printDeployment(w, d) })
		},
	}
	return cmd
}

func newListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List deployments",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			return runList(cmd, g)
		},
	}
}

func runList(cmd *cobra.Command, g *globals) error {
	deps, err := g.client().ListDeployments(cmd.Context())
	if err != nil {
		return err
	}
	return printOut(cmd.OutOrStdout(), g.output, deps, func(w io.Writer) error { return printDeploymentList(w, deps) })
}

func newDeleteCmd(g *globals) *cobra.Command {
	var w waitFlags
	cmd := &cobra.Command{
		Use:               "delete NAME",
		Short:             "Delete a deployment (its replicas drain, then stop)",
		Args:              exactArgs(1, "a deployment name"),
		ValidArgsFunction: completeDeployments(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := g.client()
			if _, err := c.DeleteDeployment(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deployment/%s deleting\n", args[0])
			if !w.wait {
				return nil
			}
			return waitGone(cmd, c, args[0], w.timeout)
		},
	}
	w.add(cmd)
	return cmd
}

func newScaleCmd(g *globals) *cobra.Command {
	var replicas int
	var w waitFlags
	cmd := &cobra.Command{
		Use:               "scale NAME --replicas N",
		Short:             "Set a deployment's replica count",
		Args:              exactArgs(1, "a deployment name"),
		ValidArgsFunction: completeDeployments(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("replicas") {
				return &usageError{"--replicas N is required"}
			}
			d, err := g.client().Scale(cmd.Context(), args[0], replicas)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deployment/%s scaled to %d\n", d.Name, replicas)
			if w.wait {
				d, err = waitReady(cmd, g, d.Name, w.timeout)
				if err != nil {
					return err
				}
				return printOut(cmd.OutOrStdout(), g.output, d, func(w io.Writer) error { return printDeployment(w, d) })
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&replicas, "replicas", 0, "number of replicas")
	w.add(cmd)
	return cmd
}

func newLogsCmd(g *globals) *cobra.Command {
	var o client.LogOptions
	cmd := &cobra.Command{
		Use:               "logs NAME [--replica ID] [-f]",
		Short:             "Print a deployment's replica logs",
		Args:              exactArgs(1, "a deployment name"),
		ValidArgsFunction: completeDeployments(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			rc, err := g.client().Logs(cmd.Context(), args[0], o)
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.Copy(cmd.OutOrStdout(), rc)
			if errors.Is(cmd.Context().Err(), err) || cmd.Context().Err() != nil {
				return nil // interrupted while following
			}
			return err
		},
	}
	cmd.Flags().StringVar(&o.Replica, "replica", "", "only this replica's logs")
	cmd.Flags().BoolVarP(&o.Follow, "follow", "f", false, "keep streaming new output")
	cmd.Flags().Int64Var(&o.Tail, "tail", 0, "only the last N bytes of each replica's log")
	return cmd
}

func newEventsCmd(g *globals) *cobra.Command {
	var watch bool
	cmd := &cobra.Command{
		Use:               "events NAME",
		Short:             "Show the controller's decisions and observations for a deployment",
		Args:              exactArgs(1, "a deployment name"),
		ValidArgsFunction: completeDeployments(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			c := g.client()
			evs, err := c.Events(cmd.Context(), args[0], 0)
			if err != nil {
				return err
			}
			if err := printOut(cmd.OutOrStdout(), g.output, evs, func(w io.Writer) error { return printEvents(w, evs, true) }); err != nil {
				return err
			}
			if !watch {
				return nil
			}
			var last int64
			if len(evs) > 0 {
				last = evs[len(evs)-1].ID
			}
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-cmd.Context().Done():
					return nil
				case <-t.C:
				}
				more, err := c.Events(cmd.Context(), args[0], last)
				if err != nil {
					return err
				}
				if len(more) > 0 {
					last = more[len(more)-1].ID
					printEvents(cmd.OutOrStdout(), more, false)
				}
			}
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "keep printing new events")
	return cmd
}

func newRevisionsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:               "revisions NAME",
		Short:             "List a deployment's stored revisions",
		Args:              exactArgs(1, "a deployment name"),
		ValidArgsFunction: completeDeployments(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			revs, err := g.client().Revisions(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printOut(cmd.OutOrStdout(), g.output, revs, func(w io.Writer) error { return printRevisions(w, revs) })
		},
	}
}
