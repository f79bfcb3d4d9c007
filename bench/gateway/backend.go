package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// runBackend is the "backend" subcommand: a tiny JSON HTTP server, the thing
// every target (direct, nginx, gateway) ends up calling. It listens on --addr,
// or on 127.0.0.1:$PORT when PORT is set (so it can also run as an aloft
// replica), or on a free loopback port, and prints "listening <addr>" as its
// first line of output.
func runBackend(args []string) error {
	fs := flag.NewFlagSet("backend", flag.ContinueOnError)
	addr := fs.String("addr", "", "listen address (default 127.0.0.1:$PORT, or a free loopback port)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *addr == "" {
		if p := os.Getenv("PORT"); p != "" {
			*addr = "127.0.0.1:" + p
		} else {
			*addr = "127.0.0.1:0"
		}
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	var n atomic.Uint64
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// Appending into a stack buffer keeps the backend as cheap as possible,
		// so that the proxies, not the backend, dominate the comparison.
		var buf [64]byte
		b := append(buf[:0], `{"ok":true,"n":`...)
		b = strconv.AppendUint(b, n.Add(1), 10)
		b = append(b, "}\n"...)
		h := w.Header()
		h["Content-Type"] = jsonContentType
		w.Write(b)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute}
	fmt.Printf("listening %s\n", ln.Addr())
	return serveUntilSignal(srv, ln)
}

var jsonContentType = []string{"application/json"}

// serveUntilSignal serves until SIGINT/SIGTERM, then shuts down quickly.
func serveUntilSignal(srv *http.Server, ln net.Listener) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		return nil
	}
}
