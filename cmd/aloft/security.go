package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/client"
	"github.com/spf13/cobra"
)

func newLoginCmd(g *globals) *cobra.Command {
	var token, tokenFile string
	cmd := &cobra.Command{
		Use:   "login --server URL (--token-file FILE | --token TOKEN | token on stdin)",
		Short: "Store the server address and an API token in your config (mode 0600)",
		Example: `  aloft login --server http://127.0.0.1:7070 --token-file ~/.local/share/aloft/admin.token
  aloft login --server https://127.0.0.1:7070 --ca ~/.local/share/aloft/tls/ca.crt --token-file admin.token`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case tokenFile != "":
				b, err := os.ReadFile(tokenFile)
				if err != nil {
					return &exitErr{exitError, err}
				}
				token = string(b)
			case token == "":
				b, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if err != nil && err != io.EOF {
					return &exitErr{exitError, err}
				}
				token = b
			}
			token = strings.TrimSpace(token)
			if token == "" {
				return &usageError{"no token given: use --token-file FILE, --token TOKEN, or pipe it on stdin"}
			}
			ca := g.ca
			if ca != "" {
				if abs, err := filepath.Abs(ca); err == nil {
					ca = abs
				}
			}
			c := g.client()
			c.Token = token
			id, err := c.WhoAmI(cmd.Context())
			if err != nil {
				return err
			}
			path, err := saveConfig(config{Server: g.server, Token: token, CA: ca})
			if err != nil {
				return &exitErr{exitError, err}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "logged in to %s as %s (role %s, workspace %s); credentials in %s\n", g.server, id.Owner, id.Role, id.Workspace, path)
			return nil
		},
	}
	cmd.Flags().StringVar(&token, "token", "", "API token (prefer --token-file or stdin: flags show up in process lists)")
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "file holding the API token")
	return cmd
}

func newWhoamiCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Show the identity of the current token",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			id, err := g.client().WhoAmI(cmd.Context())
			if err != nil {
				return err
			}
			return printOut(cmd.OutOrStdout(), g.output, id, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "token %s, owner %s, role %s, workspace %s\n", id.TokenID, id.Owner, id.Role, id.Workspace)
				return err
			})
		},
	}
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage API tokens (admin)"}
	var req v1.TokenRequest
	create := &cobra.Command{
		Use:   "create --role viewer|developer|admin [--workspace W] [--ttl 30d]",
		Short: "Create an API token; prints the token alone on stdout (shown once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if req.Role == "" {
				return &usageError{"--role is required: viewer, developer or admin"}
			}
			t, err := g.client().CreateToken(cmd.Context(), req)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.Token)
			fmt.Fprintf(cmd.ErrOrStderr(), "created token %s (role %s, workspace %s, expires %s)\n", t.ID, t.Role, t.Workspace, fmtTime(t.ExpiresAt))
			return nil
		},
	}
	create.Flags().StringVar(&req.Role, "role", "", "viewer, developer or admin")
	create.Flags().StringVar(&req.TTL, "ttl", "", "lifetime such as 12h or 30d (default: no expiry)")
	create.Flags().StringVar(&req.Owner, "owner", "", "who the token is for")
	create.RegisterFlagCompletionFunc("role", cobra.FixedCompletions([]string{"viewer", "developer", "admin"}, cobra.ShellCompDirectiveNoFileComp))
	ls := &cobra.Command{
		Use: "ls", Aliases: []string{"list"}, Short: "List API tokens", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			toks, err := g.client().ListTokens(cmd.Context())
			if err != nil {
				return err
			}
			return printOut(cmd.OutOrStdout(), g.output, toks, func(w io.Writer) error {
				t := tw(w)
				fmt.Fprintln(t, "ID\tOWNER\tROLE\tWORKSPACE\tCREATED\tEXPIRES\tLAST USED\tREVOKED")
				for _, k := range toks {
					c := k.CreatedAt
					fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Owner, k.Role, k.Workspace, fmtTime(&c), fmtTime(k.ExpiresAt), fmtTime(k.LastUsedAt), fmtTime(k.RevokedAt))
				}
				return t.Flush()
			})
		},
	}
	revoke := &cobra.Command{
		Use: "revoke ID", Short: "Revoke an API token (effective on its next request)", Args: exactArgs(1, "a token id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := g.client().RevokeToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "token/%s revoked\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, ls, revoke)
	return cmd
}

func newSecretCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "secret", Short: "Manage secrets (encrypted at rest, write-only)"}
	var fromFile, fromLiteral string
	set := &cobra.Command{
		Use:   "set NAME (--from-file FILE | --from-literal VALUE)",
		Short: "Create or replace a secret; reference it in a spec as env valueFrom: {secret: NAME}",
		Args:  exactArgs(1, "a secret name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var value string
			switch {
			case fromFile != "" && fromLiteral != "":
				return &usageError{"use --from-file or --from-literal, not both"}
			case fromFile != "":
				b, err := os.ReadFile(fromFile)
				if err != nil {
					return &exitErr{exitError, err}
				}
				value = string(b)
			case fromLiteral != "":
				value = fromLiteral
			default:
				return &usageError{"give the value with --from-file FILE or --from-literal VALUE"}
			}
			created, err := g.client().SetSecret(cmd.Context(), args[0], value)
			if err != nil {
				return err
			}
			verb := "updated"
			if created {
				verb = "created"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "secret/%s %s\n", args[0], verb)
			return nil
		},
	}
	set.Flags().StringVar(&fromFile, "from-file", "", "read the value from a file")
	set.Flags().StringVar(&fromLiteral, "from-literal", "", "the value itself")
	ls := &cobra.Command{
		Use: "ls", Aliases: []string{"list"}, Short: "List secret names (values are never shown)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			list, err := g.client().ListSecrets(cmd.Context())
			if err != nil {
				return err
			}
			return printOut(cmd.OutOrStdout(), g.output, list, func(w io.Writer) error {
				t := tw(w)
				fmt.Fprintln(t, "NAME\tWORKSPACE\tUPDATED")
				for _, s := range list {
					u := s.UpdatedAt
					fmt.Fprintf(t, "%s\t%s\t%s\n", s.Name, s.Workspace, fmtTime(&u))
				}
				return t.Flush()
			})
		},
	}
	rm := &cobra.Command{
		Use: "rm NAME", Aliases: []string{"delete"}, Short: "Delete a secret", Args: exactArgs(1, "a secret name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.client().DeleteSecret(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "secret/%s deleted\n", args[0])
			return nil
		},
	}
	rotate := &cobra.Command{
		Use: "rotate-key", Short: "Re-wrap every secret's data key under a new key-encryption key (admin)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := g.client().RotateSecretsKey(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "re-wrapped %d secret(s) under key %s\n", r.Rewrapped, r.KeyID)
			return nil
		},
	}
	cmd.AddCommand(set, ls, rm, rotate)
	return cmd
}

func newEndpointTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "endpoint-token", Short: "Manage tokens that call a private deployment through the gateway"}
	var req v1.EndpointTokenRequest
	create := &cobra.Command{
		Use: "create DEPLOYMENT [--name N] [--ttl D]", Short: "Create an endpoint token; prints it alone on stdout (shown once)",
		Args: exactArgs(1, "a deployment name"), ValidArgsFunction: completeDeployments(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := g.client().CreateEndpointToken(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.Token)
			fmt.Fprintf(cmd.ErrOrStderr(), "created endpoint token %s for %s; call it with: Authorization: Bearer <token>\n", t.ID, args[0])
			return nil
		},
	}
	create.Flags().StringVar(&req.Name, "name", "", "a label for the token")
	create.Flags().StringVar(&req.TTL, "ttl", "", "lifetime such as 12h or 30d (default: no expiry)")
	ls := &cobra.Command{
		Use: "ls DEPLOYMENT", Aliases: []string{"list"}, Short: "List a deployment's endpoint tokens",
		Args: exactArgs(1, "a deployment name"), ValidArgsFunction: completeDeployments(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			list, err := g.client().ListEndpointTokens(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printOut(cmd.OutOrStdout(), g.output, list, func(w io.Writer) error {
				t := tw(w)
				fmt.Fprintln(t, "ID\tNAME\tCREATED\tEXPIRES\tREVOKED")
				for _, k := range list {
					c := k.CreatedAt
					fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, fmtTime(&c), fmtTime(k.ExpiresAt), fmtTime(k.RevokedAt))
				}
				return t.Flush()
			})
		},
	}
	revoke := &cobra.Command{
		Use: "revoke DEPLOYMENT ID", Short: "Revoke an endpoint token", Args: exactArgs(2, "a deployment name and a token id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.client().RevokeEndpointToken(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "endpoint-token/%s revoked\n", args[1])
			return nil
		},
	}
	cmd.AddCommand(create, ls, revoke)
	return cmd
}

func newAuditCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Read and verify the tamper-evident audit log (admin)"}
	var q client.AuditQuery
	ls := &cobra.Command{
		Use: "ls [--token ID] [--action A] [--result R] [--since RFC3339] [--limit N]", Aliases: []string{"list"},
		Short: "List audit records", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			recs, err := g.client().Audit(cmd.Context(), q)
			if err != nil {
				return err
			}
			return printOut(cmd.OutOrStdout(), g.output, recs, func(w io.Writer) error {
				t := tw(w)
				fmt.Fprintln(t, "SEQ\tTIME\tTOKEN\tWORKSPACE\tACTION\tOBJECT\tSOURCE\tRESULT")
				for _, r := range recs {
					fmt.Fprintf(t, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Seq, r.Time.Local().Format("2006-01-02 15:04:05.000"), r.TokenID, r.Workspace, r.Action, r.Object, r.Source, r.Result)
				}
				return t.Flush()
			})
		},
	}
	ls.Flags().StringVar(&q.Token, "token", "", "only this token id")
	ls.Flags().StringVar(&q.Action, "action", "", "only this action, e.g. deployment.apply")
	ls.Flags().StringVar(&q.Result, "result", "", "only this result, e.g. \"denied 403\"")
	ls.Flags().StringVar(&q.Since, "since", "", "only records at or after this RFC 3339 time")
	ls.Flags().IntVar(&q.Limit, "limit", 0, "at most N records")
	verify := &cobra.Command{
		Use: "verify", Short: "Recompute the hash chain; names the first altered, removed or reordered record", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := g.client().VerifyAudit(cmd.Context())
			if err != nil {
				return err
			}
			if g.output != "table" {
				if err := printOut(cmd.OutOrStdout(), g.output, res, nil); err != nil {
					return err
				}
			}
			if !res.OK {
				return &exitErr{exitError, fmt.Errorf("audit log is broken at record %d: %s", res.FirstBadSeq, res.Problem)}
			}
			if g.output == "table" {
				fmt.Fprintf(cmd.OutOrStdout(), "audit log intact: %d records, head %s\n", res.Records, res.Head)
			}
			return nil
		},
	}
	cmd.AddCommand(ls, verify)
	return cmd
}

func newWorkspaceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "workspace", Short: "Manage workspaces (isolation of deployments, secrets, tokens)"}
	create := &cobra.Command{
		Use: "create NAME", Short: "Create a workspace (admin)", Args: exactArgs(1, "a workspace name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.client().CreateWorkspace(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "workspace/%s created\n", args[0])
			return nil
		},
	}
	ls := &cobra.Command{
		Use: "ls", Aliases: []string{"list"}, Short: "List workspaces", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			list, err := g.client().ListWorkspaces(cmd.Context())
			if err != nil {
				return err
			}
			return printOut(cmd.OutOrStdout(), g.output, list, func(w io.Writer) error {
				for _, ws := range list {
					fmt.Fprintln(w, ws.Name)
				}
				return nil
			})
		},
	}
	cmd.AddCommand(create, ls)
	return cmd
}
