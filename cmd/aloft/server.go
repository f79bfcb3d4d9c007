package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/aloft-dev/aloft/internal/server"
	"github.com/spf13/cobra"
)

func newServerCmd() *cobra.Command {
	cfg := server.Config{}
	var logLevel string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the aloft control plane (API, controller, gateway)",
		Long: `Run the aloft control plane: the API, the controller that places and runs
replicas, and the gateway that routes traffic to them. With no --clouds file it
runs three local clouds (local-a, local-b, local-c) on this machine, and keeps
its state in a SQLite database in --data.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return &usageError{"--log-level: " + err.Error()}
			}
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
			cfg.SecretsKeyEnv = os.Getenv("ALOFT_SECRETS_KEY")
			return server.Run(cmd.Context(), cfg)
		},
	}
	home, _ := os.UserHomeDir()
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data", filepath.Join(home, ".local", "share", "aloft"), "data directory (SQLite store, replica logs)")
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:7070", "API listen address")
	f.StringVar(&cfg.GatewayListen, "gateway-listen", "127.0.0.1:8080", "gateway listen address")
	f.StringVar(&cfg.CloudsFile, "clouds", "", "clouds YAML file (default: three local clouds)")
	f.StringVar(&cfg.Domain, "domain", "localhost", "gateway domain: <deployment>.<domain> routes to a deployment")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	cfgDir, _ := os.UserConfigDir()
	f.StringVar(&cfg.SecretsKeyFile, "secrets-key-file", filepath.Join(cfgDir, "aloft", "secrets.key"),
		"key-encryption key for secrets (created on first start; keep it apart from --data); env ALOFT_SECRETS_KEY wins")
	f.Float64Var(&cfg.RateLimit, "rate-limit", 50, "API requests per second per token (burst twice that); 0 disables")
	f.StringVar(&cfg.Runc, "runc", "", "runc binary local clouds run images with (default: runc on PATH)")
	f.Int64Var(&cfg.MaxImageBytes, "max-image-bytes", server.DefaultMaxImageBytes, "largest image archive 'aloft image import' may upload, in bytes")
	f.StringVar(&cfg.TLSCert, "tls-cert", "", "serve the API and gateway over TLS with this certificate (PEM)")
	f.StringVar(&cfg.TLSKey, "tls-key", "", "private key for --tls-cert (PEM)")
	f.BoolVar(&cfg.TLSAuto, "tls-auto", false, "serve TLS with a local CA and certificate made in <data>/tls (clients use --ca <data>/tls/ca.crt)")
	f.DurationVar(&cfg.RebalanceInterval, "rebalance-interval", time.Minute,
		"how often a steady deployment is checked for a placement cheaper by more than the churn of moving it; 0 disables")
	cmd.MarkFlagFilename("clouds", "yaml", "yml")
	cmd.MarkFlagDirname("data")
	return cmd
}
