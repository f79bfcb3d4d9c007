package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/auth"
	"github.com/aloft-dev/aloft/internal/cloud"
	"github.com/aloft-dev/aloft/internal/controller"
	"github.com/aloft-dev/aloft/internal/gateway"
	"github.com/aloft-dev/aloft/internal/image"
	"github.com/aloft-dev/aloft/internal/provider"
	"github.com/aloft-dev/aloft/internal/provider/kubernetes"
	"github.com/aloft-dev/aloft/internal/provider/local"
	"github.com/aloft-dev/aloft/internal/secrets"
	"github.com/aloft-dev/aloft/internal/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Config is what `aloft server` is started with.
type Config struct {
	DataDir       string
	Listen        string // API address, e.g. 127.0.0.1:7070
	GatewayListen string // gateway address, e.g. 127.0.0.1:8080
	CloudsFile    string // optional; default is three local clouds
	Domain        string // gateway host domain, default "localhost"
	Logger        *slog.Logger
	// Resync is the controller's full-reconcile period (default 1s).
	Resync time.Duration
	// RebalanceInterval is how often steady deployments are checked for a
	// cheaper placement (0: never; the CLI's default is 1m).
	RebalanceInterval time.Duration
	// OnListening, if set, is called with the bound API and gateway addresses.
	OnListening func(api, gateway string)

	// SecretsKeyFile holds the key-encryption key (never in DataDir);
	// SecretsKeyEnv, when set, is the key itself and wins.
	SecretsKeyFile string
	SecretsKeyEnv  string
	// RateLimit is API requests per second per token (burst twice that); 0 = unlimited.
	RateLimit float64
	// Runc is the runc binary local clouds run images with; "" looks for it on PATH.
	Runc string
	// MaxImageBytes bounds an image archive uploaded to POST /api/v1/images; 0 = 16 GiB.
	MaxImageBytes int64
	// TLS: a certificate pair, or TLSAuto for a local CA in DataDir/tls.
	TLSCert, TLSKey string
	TLSAuto         bool
}

// bootstrapAdmin creates the first admin token on a fresh store, writes it to
// <data>/admin.token (0600) and returns it so it can be printed once.
func bootstrapAdmin(ctx context.Context, st store.Store, dataDir string) (string, error) {
	n, err := st.CountTokens(ctx)
	if err != nil || n > 0 {
		return "", err
	}
	tok, err := newAPIToken("admin", auth.Admin, auth.AllWorkspaces, 0)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dataDir, "admin.token")
	if err := os.WriteFile(path+".tmp", []byte(tok.Secret+"\n"), 0o600); err != nil {
		return "", err
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return "", err
	}
	if err := st.CreateToken(ctx, tok.Token); err != nil {
		os.Remove(path)
		return "", err
	}
	return tok.Secret, nil
}

// LoadClouds reads the clouds file, or returns the default local clouds.
func LoadClouds(path string) ([]v1.CloudConfig, error) {
	if path == "" {
		return v1.DefaultClouds(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := v1.ParseClouds(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f.Clouds, nil
}

// Run starts the store, clouds, controller, gateway and API, and serves until
// ctx ends. Replicas keep running after it returns, for the next server to adopt.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if cfg.DataDir == "" {
		return errors.New("--data is required")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return err
	}
	cloudCfgs, err := LoadClouds(cfg.CloudsFile)
	if err != nil {
		return err
	}
	st, err := store.OpenSQLite(filepath.Join(cfg.DataDir, "aloft.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	if abs, _ := filepath.Abs(cfg.SecretsKeyFile); cfg.SecretsKeyEnv == "" && within(abs, cfg.DataDir) {
		return fmt.Errorf("--secrets-key-file %s is inside the data directory; keep the key apart from the data it protects", cfg.SecretsKeyFile)
	}
	keyring, keySource, keyCreated, err := secrets.Resolve(cfg.SecretsKeyEnv, cfg.SecretsKeyFile, true)
	if err != nil {
		return fmt.Errorf("secrets key: %w", err)
	}
	if keyCreated {
		log.Info("created a new secrets key-encryption key; back it up", "file", cfg.SecretsKeyFile)
	}
	keys := &atomic.Pointer[secrets.Keyring]{}
	keys.Store(keyring)
	keyFile := cfg.SecretsKeyFile
	if cfg.SecretsKeyEnv != "" {
		keyFile = ""
	}
	if admin, err := bootstrapAdmin(ctx, st, cfg.DataDir); err != nil {
		return fmt.Errorf("create the first admin token: %w", err)
	} else if admin != "" {
		fmt.Fprintf(os.Stderr, "\nFirst start: created an admin token (shown once; also in %s, mode 0600):\n\n    %s\n\nLog in with: aloft login --server URL --token-file %s\n\n",
			filepath.Join(cfg.DataDir, "admin.token"), admin, filepath.Join(cfg.DataDir, "admin.token"))
	}
	var tlsCfg *tls.Config
	switch {
	case cfg.TLSAuto:
		host, _, _ := net.SplitHostPort(cfg.Listen)
		gwHost, _, _ := net.SplitHostPort(cfg.GatewayListen)
		at, err := EnsureAutoTLS(filepath.Join(cfg.DataDir, "tls"), []string{host, gwHost, "*." + cfg.Domain})
		if err != nil {
			return fmt.Errorf("--tls-auto: %w", err)
		}
		if tlsCfg, err = tlsConfig(at.CertFile, at.KeyFile); err != nil {
			return err
		}
		log.Info("serving TLS with the local CA; clients trust it with --ca", "ca", at.CAFile)
	case cfg.TLSCert != "" || cfg.TLSKey != "":
		if cfg.TLSCert == "" || cfg.TLSKey == "" {
			return errors.New("--tls-cert and --tls-key go together")
		}
		if tlsCfg, err = tlsConfig(cfg.TLSCert, cfg.TLSKey); err != nil {
			return err
		}
	}

	// The local image store, shared by every workspace (aloft image import),
	// and the container runtime that runs its images on local clouds.
	images, err := image.Open(filepath.Join(cfg.DataDir, "images"))
	if err != nil {
		return err
	}
	containers, err := local.NewOCI(filepath.Join(cfg.DataDir, "oci"), images, cfg.Runc)
	if err != nil {
		return err
	}
	if containers.Runc == nil {
		log.Warn("local clouds cannot run images", "reason", containers.Unavailable)
	} else if containers.NoLimits != "" {
		log.Warn("containers run without resource limits", "reason", containers.NoLimits)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var ctl *controller.Controller
	onChange := func(id string) {
		if ctl != nil {
			ctl.ReplicaChanged(id)
		}
	}
	clouds, err := cloud.NewRegistry(cloudCfgs, func(c v1.CloudConfig) (provider.Provider, error) {
		switch c.Provider {
		case "local", "":
			return local.New(local.Options{
				Cloud: c.Name, Dir: filepath.Join(cfg.DataDir, "clouds", c.Name), OnChange: onChange,
				Logger: log, OCI: containers, // the provider adds the cloud
			})
		case v1.ProviderKubernetes:
			p, err := kubernetes.New(c, kubernetes.Options{OnChange: onChange, Logger: log})
			if err != nil {
				// A bad kubeconfig or a missing context is the cloud's
				// condition, not the server's: the others keep working.
				log.Error("kubernetes cloud unavailable", "cloud", c.Name, "err", err)
				return kubernetes.NewUnavailable(c.Name, err), nil
			}
			return p, nil
		default:
			return nil, fmt.Errorf("provider %q is not supported", c.Provider)
		}
	})
	if err != nil {
		return err
	}
	defer clouds.Close()

	// A request for a deployment scaled to zero asks the controller for a
	// replica at once (the gateway holds it meanwhile); requests only arrive
	// once ctl is set.
	onDemand := func(name string) {
		if ctl != nil {
			ctl.Demand(name)
		}
	}
	gw := gateway.New(gateway.Options{Domain: cfg.Domain, Registerer: reg, Logger: log.With("component", "gateway"), OnDemand: onDemand})
	ctl = controller.New(controller.Options{
		Store: st, Clouds: clouds, Router: gw, Logger: log.With("component", "controller"),
		Registerer: reg, Resync: cfg.Resync, ResolveSecret: secretResolver(st, keys),
		RebalanceInterval: rebalanceInterval(cfg.RebalanceInterval),
	})
	ready := &atomic.Bool{}
	var limiter *auth.Limiter
	if cfg.RateLimit > 0 {
		limiter = auth.NewLimiter(cfg.RateLimit, int(max(1, 2*cfg.RateLimit)))
	}
	api := &API{Store: st, Controller: ctl, Clouds: clouds, Gatherer: reg, Logger: log, Ready: ready,
		Keys: keys, KeyFile: keyFile, Limiter: limiter, Images: images, MaxImageBytes: cfg.MaxImageBytes, ImagesRemoved: containers.Prune}
	log.Info("secrets key loaded", "source", keySource)

	apiLn, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("API listen %s: %w", cfg.Listen, err)
	}
	gwLn, err := net.Listen("tcp", cfg.GatewayListen)
	if err != nil {
		apiLn.Close()
		return fmt.Errorf("gateway listen %s: %w", cfg.GatewayListen, err)
	}
	// Slow clients: headers within 10 s, bodies within 60 s, idle connections closed after 2 min.
	apiSrv := &http.Server{Handler: api.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 60 * time.Second,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	gwSrv := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	if tlsCfg != nil {
		apiLn = tls.NewListener(apiLn, tlsCfg)
		gwLn = tls.NewListener(gwLn, tlsCfg.Clone())
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ctlDone := make(chan struct{})
	go func() { ctl.Run(ctx); close(ctlDone) }()
	go func() {
		select {
		case <-ctl.Synced():
			ready.Store(true)
		case <-ctx.Done():
		}
	}()
	errc := make(chan error, 2)
	go func() { errc <- apiSrv.Serve(apiLn) }()
	go func() { errc <- gwSrv.Serve(gwLn) }()
	log.Info("aloft server started", "api", apiLn.Addr().String(), "gateway", gwLn.Addr().String(),
		"data", cfg.DataDir, "clouds", len(cloudCfgs))
	if cfg.OnListening != nil {
		cfg.OnListening(apiLn.Addr().String(), gwLn.Addr().String())
	}

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	shutdownCtx, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	gwSrv.Shutdown(shutdownCtx)
	apiSrv.Shutdown(shutdownCtx)
	cancel()
	<-ctlDone
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return serveErr
}

// within reports whether path is inside dir.
func within(path, dir string) bool {
	d, err := filepath.Abs(dir)
	if err != nil || path == "" {
		return false
	}
	rel, err := filepath.Rel(d, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// secretResolver opens a secret for a replica's environment.
func secretResolver(st store.Store, keys *atomic.Pointer[secrets.Keyring]) func(ctx context.Context, ws, name string) (string, error) {
	return func(ctx context.Context, ws, name string) (string, error) {
		sec, err := st.GetSecret(ctx, ws, name)
		if err != nil {
			return "", err
		}
		var sealed secrets.Sealed
		if err := json.Unmarshal(sec.Sealed, &sealed); err != nil {
			return "", fmt.Errorf("stored secret is corrupt: %w", err)
		}
		plain, err := keys.Load().Open(sealed, secretAAD(ws, name))
		if err != nil {
			return "", err
		}
		return string(plain), nil
	}
}

// rebalanceInterval maps the config's "0 means never" onto the controller's
// "negative means never".
func rebalanceInterval(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}
