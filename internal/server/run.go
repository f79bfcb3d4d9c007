package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/cloud"
	"github.com/aloft-dev/aloft/internal/controller"
	"github.com/aloft-dev/aloft/internal/gateway"
	"github.com/aloft-dev/aloft/internal/provider"
	"github.com/aloft-dev/aloft/internal/provider/local"
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
	// OnListening, if set, is called with the bound API and gateway addresses.
	OnListening func(api, gateway string)
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
				Logger: log.With("cloud", c.Name),
			})
		default:
			return nil, fmt.Errorf("provider %q is not supported", c.Provider)
		}
	})
	if err != nil {
		return err
	}
	defer clouds.Close()

	gw := gateway.New(gateway.Options{Domain: cfg.Domain, Registerer: reg, Logger: log.With("component", "gateway")})
	ctl = controller.New(controller.Options{
		Store: st, Clouds: clouds, Router: gw, Logger: log.With("component", "controller"),
		Registerer: reg, Resync: cfg.Resync,
	})
	ready := &atomic.Bool{}
	api := &API{Store: st, Controller: ctl, Clouds: clouds, Gatherer: reg, Logger: log, Ready: ready}

	apiLn, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("API listen %s: %w", cfg.Listen, err)
	}
	gwLn, err := net.Listen("tcp", cfg.GatewayListen)
	if err != nil {
		apiLn.Close()
		return fmt.Errorf("gateway listen %s: %w", cfg.GatewayListen, err)
	}
	apiSrv := &http.Server{Handler: api.Handler(), ReadHeaderTimeout: 10 * time.Second}
	gwSrv := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second}

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
