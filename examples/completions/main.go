// Command aloft-completions is the example AI service aloft's demo deploys: an
// OpenAI-compatible text completions server backed by a tiny real language
// model, a word-level trigram model (with backoff to bigram and unigram)
// trained at startup on a public-domain book embedded in the binary.
//
// Build it under the name aloft resolves through PATH:
//
//	go build -o aloft-completions ./examples/completions
//
// See README.md for flags and examples.
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// corpusText is the training text: chapters I-VI of Alice's Adventures in
// Wonderland (public domain); see CORPUS.md.
//
//go:embed corpus.txt
var corpusText string

type config struct {
	listen          string
	tokenDelay      time.Duration
	maxConcurrency  int
	maxQueue        int
	modelName       string
	seed            int64 // 0: seed from the clock
	shutdownTimeout time.Duration
	replicaID       string // ALOFT_REPLICA_ID, sent as X-Replica-Id
}

// parseConfig reads flags, falling back to environment variables (named in
// each flag's help) and then to defaults.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var cfg config
	var envErr error
	envStr := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	envDur := func(name string, def time.Duration) time.Duration {
		v := getenv(name)
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil && envErr == nil {
			envErr = fmt.Errorf("env %s=%q: %v", name, v, err)
		}
		return d
	}
	envInt := func(name string, def int64) int64 {
		v := getenv(name)
		if v == "" {
			return def
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil && envErr == nil {
			envErr = fmt.Errorf("env %s=%q: %v", name, v, err)
		}
		return n
	}

	fs := flag.NewFlagSet("aloft-completions", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := envStr("PORT", "8080")
	fs.StringVar(&cfg.listen, "listen", envStr("LISTEN_ADDR", net.JoinHostPort("127.0.0.1", port)),
		"address to listen on (env LISTEN_ADDR; default 127.0.0.1:$PORT, PORT default 8080)")
	fs.DurationVar(&cfg.tokenDelay, "token-delay", envDur("TOKEN_DELAY", 20*time.Millisecond),
		"time to generate one token, simulating GPU decode speed (env TOKEN_DELAY)")
	var conc, queue int
	fs.IntVar(&conc, "max-concurrency", int(envInt("MAX_CONCURRENCY", 4)),
		"requests generating at once, like GPU batch slots (env MAX_CONCURRENCY)")
	fs.IntVar(&queue, "max-queue", int(envInt("MAX_QUEUE", 64)),
		"requests that may wait for a slot; more get 429 (env MAX_QUEUE)")
	fs.StringVar(&cfg.modelName, "model-name", envStr("MODEL_NAME", "aloft-ngram"),
		"model id served and reported (env MODEL_NAME)")
	fs.Int64Var(&cfg.seed, "seed", envInt("SEED", 0),
		"seed for requests that do not give one; 0 seeds from the clock (env SEED)")
	fs.DurationVar(&cfg.shutdownTimeout, "shutdown-timeout", envDur("SHUTDOWN_TIMEOUT", 10*time.Second),
		"how long SIGTERM waits for in-flight requests (env SHUTDOWN_TIMEOUT)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if envErr != nil {
		return cfg, envErr
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	cfg.maxConcurrency, cfg.maxQueue = conc, queue
	cfg.replicaID = getenv("ALOFT_REPLICA_ID")
	switch {
	case cfg.maxConcurrency < 1:
		return cfg, fmt.Errorf("--max-concurrency must be at least 1, got %d", cfg.maxConcurrency)
	case cfg.maxQueue < 0:
		return cfg, fmt.Errorf("--max-queue must not be negative, got %d", cfg.maxQueue)
	case cfg.tokenDelay < 0:
		return cfg, fmt.Errorf("--token-delay must not be negative, got %s", cfg.tokenDelay)
	case cfg.shutdownTimeout < 0:
		return cfg, fmt.Errorf("--shutdown-timeout must not be negative, got %s", cfg.shutdownTimeout)
	case cfg.modelName == "":
		return cfg, errors.New("--model-name must not be empty")
	}
	return cfg, nil
}

// runOptions are test seams; the zero value is production behaviour.
type runOptions struct {
	ready    func(addr string)               // called once listening
	shutdown func()                          // called once shutdown has closed the listener
	pace     func(ctx context.Context) error // replaces the token-delay timer
	hooks    hooks
}

// run trains the model, serves until ctx ends, then shuts down gracefully:
// it stops accepting connections and waits up to cfg.shutdownTimeout for
// in-flight requests before closing what is left.
func run(ctx context.Context, cfg config, stdout io.Writer, opts runOptions) error {
	logger := slog.New(slog.NewTextHandler(stdout, nil))

	start := time.Now()
	model := Train(corpusText)
	trained := time.Since(start)

	srv := newServer(cfg, model, logger)
	if opts.pace != nil {
		srv.pace = opts.pace
	}
	srv.hooks = opts.hooks

	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           srv.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	logger.Info("aloft-completions listening", "addr", ln.Addr().String(), "model", cfg.modelName,
		"vocab", model.VocabSize(), "training_tokens", model.TrainingTokens(), "train_time", trained.Round(time.Microsecond),
		"token_delay", cfg.tokenDelay, "max_concurrency", cfg.maxConcurrency, "max_queue", cfg.maxQueue,
		"replica", cfg.replicaID)
	if opts.shutdown != nil {
		hs.RegisterOnShutdown(opts.shutdown) // runs once the listener is closed
	}
	if opts.ready != nil {
		opts.ready(ln.Addr().String())
	}

	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}

	logger.Info("shutting down: draining in-flight requests", "timeout", cfg.shutdownTimeout)
	srv.draining.Store(true)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		logger.Warn("shutdown timeout reached; closing remaining connections", "err", err)
		hs.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	logger.Info("stopped")
	return nil
}

func main() {
	cfg, err := parseConfig(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "aloft-completions:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, cfg, os.Stdout, runOptions{}); err != nil {
		fmt.Fprintln(os.Stderr, "aloft-completions:", err)
		os.Exit(1)
	}
}
