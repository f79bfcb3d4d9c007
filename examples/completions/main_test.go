package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

	cfg, err := parseConfig(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.listen != "127.0.0.1:8080" || cfg.tokenDelay != 20*time.Millisecond || cfg.maxConcurrency != 4 ||
		cfg.maxQueue != 64 || cfg.modelName != "aloft-ngram" || cfg.seed != 0 || cfg.shutdownTimeout != 10*time.Second || cfg.replicaID != "" {
		t.Errorf("defaults: %+v", cfg)
	}

	cfg, err = parseConfig(nil, env(map[string]string{"PORT": "9001", "TOKEN_DELAY": "5ms", "MAX_CONCURRENCY": "2",
		"MAX_QUEUE": "3", "MODEL_NAME": "m", "SEED": "11", "ALOFT_REPLICA_ID": "r-7"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.listen != "127.0.0.1:9001" || cfg.tokenDelay != 5*time.Millisecond || cfg.maxConcurrency != 2 ||
		cfg.maxQueue != 3 || cfg.modelName != "m" || cfg.seed != 11 || cfg.replicaID != "r-7" {
		t.Errorf("from env: %+v", cfg)
	}

	// Flags win over the environment; both -flag and --flag work.
	cfg, err = parseConfig([]string{"--listen", "0.0.0.0:7000", "-token-delay", "10ms", "--max-concurrency", "4"},
		env(map[string]string{"PORT": "9001", "TOKEN_DELAY": "5ms", "MAX_CONCURRENCY": "2"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.listen != "0.0.0.0:7000" || cfg.tokenDelay != 10*time.Millisecond || cfg.maxConcurrency != 4 {
		t.Errorf("flags over env: %+v", cfg)
	}

	for _, bad := range []struct {
		args []string
		env  map[string]string
	}{
		{[]string{"--max-concurrency", "0"}, nil},
		{[]string{"--max-queue", "-1"}, nil},
		{[]string{"--token-delay", "-1s"}, nil},
		{[]string{"--token-delay", "soon"}, nil},
		{[]string{"--model-name", ""}, nil},
		{[]string{"extra"}, nil},
		{nil, map[string]string{"TOKEN_DELAY": "fast"}},
		{nil, map[string]string{"MAX_CONCURRENCY": "many"}},
	} {
		if _, err := parseConfig(bad.args, env(bad.env), io.Discard); err == nil {
			t.Errorf("args %q env %v: no error", bad.args, bad.env)
		}
	}
}

// TestRunGracefulShutdown drives run over a real listener: when its context
// ends (main cancels it on SIGTERM) it stops accepting connections, lets the
// in-flight stream finish, and returns nil.
func TestRunGracefulShutdown(t *testing.T) {
	g := newGate(t)
	ready := make(chan string, 1)
	shutdownBegun := make(chan struct{})
	started := make(chan string, 4)
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, testConfig(), logs, runOptions{
			ready:    func(addr string) { ready <- addr },
			shutdown: func() { close(shutdownBegun) },
			pace:     g.pace,
			hooks:    hooks{started: func(p string) { started <- p }},
		})
	}()
	base := "http://" + waitFor(t, ready, "the server to listen")

	resp, err := client.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz %d", resp.StatusCode)
	}

	// A stream is in flight, blocked before its first token.
	stream, err := client.Post(base+"/v1/completions", "application/json",
		strings.NewReader(`{"prompt":"Alice","max_tokens":3,"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	waitFor(t, started, "the stream to start generating")

	cancel() // what SIGTERM does in main
	waitFor(t, shutdownBegun, "shutdown to begin")

	// No new connections are accepted...
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	if r, err := fresh.Get(base + "/healthz"); err == nil {
		r.Body.Close()
		t.Fatalf("new connection accepted during shutdown (status %d)", r.StatusCode)
	}
	// ...but run waits for the in-flight request.
	select {
	case err := <-done:
		t.Fatalf("run returned (%v) with a request in flight", err)
	default:
	}

	g.open()
	r := bufio.NewReader(stream.Body)
	events := 0
	for {
		data := readEvent(t, r)
		if data == "[DONE]" {
			break
		}
		events++
	}
	if events != 3 {
		t.Errorf("in-flight stream got %d events, want 3", events)
	}
	if err := waitFor(t, done, "run to return"); err != nil {
		t.Fatalf("run: %v", err)
	}
	out := logs.String()
	for _, want := range []string{`msg="aloft-completions listening"`, "train_time=", "method=GET path=/healthz status=200",
		"method=POST path=/v1/completions status=200", `msg="shutting down`, "msg=stopped"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// TestBinarySIGTERM builds the real binary, runs it as aloft would (PORT set,
// flags from aloft.yaml), and checks that SIGTERM lets an in-flight stream
// finish and the process exits 0.
func TestBinarySIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		t.Skipf("go tool not found: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "aloft-completions")
	if out, err := exec.CommandContext(ctx, goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	cmd := exec.CommandContext(ctx, bin, "--token-delay", "10ms", "--max-concurrency", "4")
	cmd.Env = append(os.Environ(), "PORT=0", "ALOFT_REPLICA_ID=replica-bin")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var logged []string
	nextLine := func() string {
		l, ok := waitFor(t, chanOK(lines), "a log line")()
		if !ok {
			t.Fatalf("stdout closed; got:\n%s", strings.Join(logged, "\n"))
		}
		logged = append(logged, l)
		return l
	}

	first := nextLine()
	m := regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(first)
	if !strings.Contains(first, "aloft-completions listening") || m == nil {
		t.Fatalf("startup line: %q", first)
	}
	base := "http://" + m[1]

	stream, err := client.Post(base+"/v1/completions", "application/json",
		strings.NewReader(`{"prompt":"Alice","max_tokens":20,"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	if stream.Header.Get("X-Replica-Id") != "replica-bin" {
		t.Errorf("X-Replica-Id %q", stream.Header.Get("X-Replica-Id"))
	}
	r := bufio.NewReader(stream.Body)
	readEvent(t, r) // generation is under way
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	events := 1
	for readEvent(t, r) != "[DONE]" {
		events++
	}
	if events != 20 {
		t.Errorf("stream cut short by SIGTERM: %d of 20 events", events)
	}
	for l := range lines {
		logged = append(logged, l)
	}
	err = cmd.Wait()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) || err != nil {
		t.Fatalf("exit: %v\n%s", err, strings.Join(logged, "\n"))
	}
	all := strings.Join(logged, "\n")
	for _, want := range []string{"method=POST path=/v1/completions status=200 duration=", "msg=stopped"} {
		if !strings.Contains(all, want) {
			t.Errorf("stdout lacks %q:\n%s", want, all)
		}
	}
}

// chanOK adapts a channel that may be closed for waitFor.
func chanOK(ch <-chan string) <-chan func() (string, bool) {
	out := make(chan func() (string, bool), 1)
	go func() {
		l, ok := <-ch
		out <- func() (string, bool) { return l, ok }
	}()
	return out
}
