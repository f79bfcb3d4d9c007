package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/aloft-dev/aloft/internal/gateway"
)

// runGateway is the "gateway" subcommand: aloft's gateway package on its own,
// with one deployment whose replicas are the --backend URLs. Metrics are
// registered (as in the real server, so the hot path pays for them) and served
// on --metrics-addr when that is set.
func runGateway(args []string) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	backends := fs.String("backend", "", "comma-separated backend URLs (required)")
	deployment := fs.String("deployment", "bench", "deployment name the backends serve")
	domain := fs.String("domain", "localhost", "gateway domain: Host <deployment>.<domain> routes")
	endpointToken := fs.String("endpoint-token", "", "make the deployment private: only this endpoint token is admitted")
	metricsAddr := fs.String("metrics-addr", "", "serve Prometheus /metrics and /debug/pprof/ on this address (off when empty)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *backends == "" {
		return errors.New("gateway: --backend is required")
	}
	reg := prometheus.NewRegistry()
	gw := gateway.New(gateway.Options{
		Domain:     *domain,
		Registerer: reg,
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	var bs []gateway.Backend
	for i, u := range strings.Split(*backends, ",") {
		bs = append(bs, gateway.Backend{ReplicaID: fmt.Sprintf("%s-%d", *deployment, i), Cloud: "local", URL: strings.TrimSpace(u)})
	}
	if *endpointToken != "" {
		sum := sha256.Sum256([]byte(*endpointToken))
		gw.SetAccess(*deployment, gateway.Access{Tokens: map[string]time.Time{hex.EncodeToString(sum[:]): {}}})
	}
	gw.SetBackends(*deployment, bs)

	if *metricsAddr != "" {
		mln, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		go http.Serve(mln, mux)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute}
	fmt.Printf("listening %s\n", ln.Addr())
	return serveUntilSignal(srv, ln)
}
