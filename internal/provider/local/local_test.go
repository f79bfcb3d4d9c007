package local

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/provider"
)

var testClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	Timeout:   10 * time.Second,
}

func testOptions(dir string) Options {
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return Options{
		Cloud:         "test-cloud",
		Dir:           dir,
		Logger:        log,
		BackoffBase:   50 * time.Millisecond,
		BackoffMax:    500 * time.Millisecond,
		ProbeInterval: 50 * time.Millisecond,
		PollInterval:  20 * time.Millisecond,
	}
}

// newProvider returns a provider whose replicas are stopped (killed) and
// which is closed when the test ends.
func newProvider(t *testing.T, opts Options) *Provider {
	t.Helper()
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.mu.Lock()
		var ids []string
		for id := range p.replicas {
			ids = append(ids, id)
		}
		p.mu.Unlock()
		for _, id := range ids {
			if err := p.Stop(context.Background(), id, 0); err != nil {
				t.Errorf("cleanup: stop %s: %v", id, err)
			}
		}
		p.Close()
	})
	return p
}

func helperReplica(t *testing.T, id string, env ...v1.EnvVar) provider.Replica {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return provider.Replica{
		ID:         id,
		Deployment: "web",
		Revision:   1,
		Spec: v1.DeploymentSpec{
			Name:    "web",
			Command: []string{exe, "serve"},
			Args:    []string{"--flag", "two words"},
			Env: append([]v1.EnvVar{
				{Name: helperEnv, Value: "1"},
				{Name: "GREETING", Value: "hello"},
				// Under -race the helper would otherwise sleep 1s in os.Exit.
				{Name: "GORACE", Value: "atexit_sleep_ms=0"},
			}, env...),
			Health: v1.HealthCheck{Path: "/healthz"},
		},
		Env: []string{"ALOFT_EXTRA=yes"},
	}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitInstance(t *testing.T, p *Provider, id string, what string, cond func(provider.Instance) bool) provider.Instance {
	t.Helper()
	var last provider.Instance
	waitFor(t, 15*time.Second, id+" "+what, func() bool {
		inst, err := p.Get(id)
		if err != nil {
			t.Fatalf("get %s: %v", id, err)
		}
		last = inst
		return cond(inst)
	})
	return last
}

func waitReady(t *testing.T, p *Provider, id string) provider.Instance {
	t.Helper()
	return waitInstance(t, p, id, "to be Ready", func(i provider.Instance) bool { return i.State == v1.ReplicaReady })
}

func handleOf(t *testing.T, inst provider.Instance) handle {
	t.Helper()
	var h handle
	if err := json.Unmarshal(inst.Handle, &h); err != nil {
		t.Fatalf("handle %s: %v", inst.Handle, err)
	}
	return h
}

// call GETs path on the replica; errors are returned, not fatal (a crashing
// replica does not answer).
func call(inst provider.Instance, path string) error {
	resp, err := testClient.Get(inst.Endpoint + path)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

func mustCall(t *testing.T, inst provider.Instance, path string) {
	t.Helper()
	if err := call(inst, path); err != nil {
		t.Fatalf("GET %s%s: %v", inst.Endpoint, path, err)
	}
}

func readLogs(t *testing.T, p *Provider, id string, opts provider.LogOptions) string {
	t.Helper()
	rc, err := p.Logs(context.Background(), id, opts)
	if err != nil {
		t.Fatalf("logs %s: %v", id, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read logs %s: %v", id, err)
	}
	return string(b)
}

func processGone(pid int) bool {
	st, err := readStat(pid)
	return err != nil || st.dead()
}

func TestRuntimesAndUnknownIDs(t *testing.T) {
	p := newProvider(t, testOptions(t.TempDir()))
	if got := p.Runtimes(); len(got) != 1 || got[0] != "process" {
		t.Errorf("Runtimes() = %v", got)
	}
	if _, err := p.Get("nope"); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("Get unknown: %v, want ErrNotFound", err)
	}
	if err := p.Stop(context.Background(), "nope", time.Second); err != nil {
		t.Errorf("Stop unknown: %v", err)
	}
	if _, err := p.Logs(context.Background(), "nope", provider.LogOptions{}); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("Logs unknown: %v, want ErrNotFound", err)
	}
}

func TestStartErrors(t *testing.T) {
	p := newProvider(t, testOptions(t.TempDir()))
	ctx := context.Background()

	r := helperReplica(t, "img-1")
	r.Spec.Command, r.Spec.Image = nil, "nginx:latest"
	_, err := p.Start(ctx, r)
	if err == nil || !strings.Contains(err.Error(), "cannot run images") {
		t.Errorf("Start with image only: %v", err)
	}

	r = helperReplica(t, "neither-1")
	r.Spec.Command = nil
	if _, err = p.Start(ctx, r); err == nil || !strings.Contains(err.Error(), "neither an image nor a command") {
		t.Errorf("Start with neither image nor command: %v", err)
	}

	r = helperReplica(t, "missing-1")
	r.Spec.Command = []string{"aloft-no-such-command-xyz", "arg"}
	_, err = p.Start(ctx, r)
	if err == nil || !strings.Contains(err.Error(), "aloft-no-such-command-xyz") {
		t.Errorf("Start with missing command: %v", err)
	}

	r = helperReplica(t, "../escape")
	if _, err := p.Start(ctx, r); err == nil {
		t.Error("Start with id ../escape succeeded")
	}
	if _, err := p.Get("missing-1"); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("failed start left a replica behind: %v", err)
	}
}

func TestStartReadyEnvAndArgs(t *testing.T) {
	t.Setenv("ALOFT_SECRET_OF_SERVER", "must-not-leak")
	dir := t.TempDir()
	var changes sync.Map
	opts := testOptions(dir)
	opts.OnChange = func(id string) { changes.Store(id, true) }
	p := newProvider(t, opts)

	r := helperReplica(t, "web-1", v1.EnvVar{Name: "PORT", Value: "1"}) // PORT is the provider's
	start := time.Now()
	inst, err := p.Start(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	if inst.State != v1.ReplicaStarting {
		t.Errorf("state after Start = %s, want Starting", inst.State)
	}
	h := handleOf(t, inst)
	if h.PID <= 0 || h.StartTime == 0 || h.Port <= 0 || h.Dir != filepath.Join(dir, "web-1") {
		t.Errorf("handle = %+v", h)
	}
	if want := "http://127.0.0.1:" + strconv.Itoa(h.Port); inst.Endpoint != want {
		t.Errorf("endpoint = %q, want %q", inst.Endpoint, want)
	}
	inst = waitReady(t, p, "web-1")
	t.Logf("ready after %v", time.Since(start))
	waitFor(t, 5*time.Second, "OnChange after Ready", func() bool { _, ok := changes.Load("web-1"); return ok })
	mustCall(t, inst, "/healthz")

	out := readLogs(t, p, "web-1", provider.LogOptions{})
	for _, want := range []string{
		"argv: serve --flag two words\n",
		"env: PORT=" + strconv.Itoa(h.Port) + "\n",
		"env: GREETING=hello\n",
		"env: ALOFT_EXTRA=yes\n",
		"env: ALOFT_REPLICA_ID=web-1\n",
		"env: ALOFT_DEPLOYMENT=web\n",
		"env: ALOFT_CLOUD=test-cloud\n",
		"env: PATH=" + os.Getenv("PATH") + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "must-not-leak") || strings.Contains(out, "env: PORT=1\n") {
		t.Errorf("unexpected environment:\n%s", out)
	}
	// Own process group, working directory = replica dir.
	st, err := readStat(h.PID)
	if err != nil || st.pgrp != h.PID {
		t.Errorf("pgrp of %d = %d (%v), want own group", h.PID, st.pgrp, err)
	}
	if cwd, err := os.Readlink("/proc/" + strconv.Itoa(h.PID) + "/cwd"); err != nil || cwd != filepath.Join(dir, "web-1") {
		t.Errorf("cwd = %q (%v)", cwd, err)
	}

	if _, err := p.Start(context.Background(), r); err == nil {
		t.Error("second Start of the same id succeeded")
	}
	if err := p.Remove("web-1"); err == nil {
		t.Error("Remove of a running replica succeeded")
	}
}

func TestCrashRestart(t *testing.T) {
	opts := testOptions(t.TempDir())
	opts.BackoffBase = 300 * time.Millisecond
	var mu sync.Mutex
	var seen []v1.ReplicaState
	var p *Provider
	opts.OnChange = func(id string) {
		inst, err := p.Get(id)
		if err != nil {
			return
		}
		mu.Lock()
		seen = append(seen, inst.State)
		mu.Unlock()
	}
	p = newProvider(t, opts)
	inst, err := p.Start(context.Background(), helperReplica(t, "crash-1"))
	if err != nil {
		t.Fatal(err)
	}
	inst = waitReady(t, p, "crash-1")
	h1 := handleOf(t, inst)

	_ = call(inst, "/crash") // no answer: it exits
	bo := waitInstance(t, p, "crash-1", "to be in BackOff", func(i provider.Instance) bool { return i.State == v1.ReplicaBackOff })
	if bo.Restarts != 1 {
		t.Errorf("restarts in BackOff = %d, want 1", bo.Restarts)
	}
	if !strings.Contains(bo.Message, "exit status 3") || !strings.Contains(bo.Message, "crashing now") {
		t.Errorf("BackOff message = %q, want exit status and last log line", bo.Message)
	}

	inst = waitReady(t, p, "crash-1")
	h2 := handleOf(t, inst)
	if inst.Restarts != 1 || h2.Restarts != 1 {
		t.Errorf("restarts = %d (handle %d), want 1", inst.Restarts, h2.Restarts)
	}
	if h2.PID == h1.PID || h2.StartTime == h1.StartTime {
		t.Errorf("not restarted: handle before %+v after %+v", h1, h2)
	}
	if inst.Endpoint != bo.Endpoint || h2.Port != h1.Port {
		t.Errorf("port not reused: %s -> %s", bo.Endpoint, inst.Endpoint)
	}
	mustCall(t, inst, "/healthz")
	if out := readLogs(t, p, "crash-1", provider.LogOptions{}); strings.Count(out, "listening on") != 2 {
		t.Errorf("want two starts in the log:\n%s", out)
	}

	waitFor(t, 5*time.Second, "OnChange to report Ready after the restart", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) > 0 && seen[len(seen)-1] == v1.ReplicaReady
	})
	mu.Lock()
	states := append([]v1.ReplicaState(nil), seen...)
	mu.Unlock()
	var sawBackOff bool
	for _, s := range states {
		sawBackOff = sawBackOff || s == v1.ReplicaBackOff
	}
	if !sawBackOff {
		t.Errorf("OnChange never observed BackOff: %v", states)
	}
}

func TestCrashLoopBacksOff(t *testing.T) {
	opts := testOptions(t.TempDir())
	opts.BackoffBase, opts.BackoffMax = 10*time.Millisecond, 40*time.Millisecond
	p := newProvider(t, opts)
	if _, err := p.Start(context.Background(), helperReplica(t, "loop-1", v1.EnvVar{Name: "HELPER_EXIT", Value: "1"})); err != nil {
		t.Fatal(err)
	}
	inst := waitInstance(t, p, "loop-1", "to restart 4 times", func(i provider.Instance) bool { return i.Restarts >= 4 })
	if inst.State == v1.ReplicaReady {
		t.Errorf("crash-looping replica is Ready")
	}
	if !strings.Contains(inst.Message, "exit status 1") || !strings.Contains(inst.Message, "exiting at start") {
		t.Errorf("message = %q", inst.Message)
	}
	// Stop works in any state, also between restarts.
	if err := p.Stop(context.Background(), "loop-1", time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Get("loop-1"); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("Get after Stop: %v", err)
	}
}

func TestBackoff(t *testing.T) {
	base, max := 500*time.Millisecond, 30*time.Second
	for n, want := range map[int]time.Duration{
		1: 500 * time.Millisecond, 2: time.Second, 3: 2 * time.Second, 6: 16 * time.Second,
		7: 30 * time.Second, 100: 30 * time.Second,
	} {
		if got := backoff(base, max, n); got != want {
			t.Errorf("backoff(%d) = %v, want %v", n, got, want)
		}
	}
}

func TestStopSendsSIGTERM(t *testing.T) {
	dir := t.TempDir()
	p := newProvider(t, testOptions(dir))
	inst, err := p.Start(context.Background(), helperReplica(t, "term-1"))
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, p, "term-1")
	pid := handleOf(t, inst).PID

	start := time.Now()
	if err := p.Stop(context.Background(), "term-1", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Stop took %v for a process that exits on SIGTERM", d)
	}
	if !processGone(pid) {
		t.Errorf("pid %d still running after Stop", pid)
	}
	if _, err := p.Get("term-1"); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("Get after Stop: %v", err)
	}
	// The log of a stopped replica stays readable until Remove.
	out := readLogs(t, p, "term-1", provider.LogOptions{Follow: true})
	if !strings.Contains(out, "got SIGTERM, shutting down") {
		t.Errorf("replica did not log SIGTERM:\n%s", out)
	}
	if err := p.Stop(context.Background(), "term-1", time.Second); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := p.Remove("term-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "term-1")); !os.IsNotExist(err) {
		t.Errorf("dir still there after Remove: %v", err)
	}
	if _, err := p.Logs(context.Background(), "term-1", provider.LogOptions{}); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("Logs after Remove: %v", err)
	}
}

func TestStopKillsAfterGrace(t *testing.T) {
	p := newProvider(t, testOptions(t.TempDir()))
	inst, err := p.Start(context.Background(), helperReplica(t, "stubborn-1", v1.EnvVar{Name: "HELPER_IGNORE_TERM", Value: "1"}))
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, p, "stubborn-1")
	pid := handleOf(t, inst).PID

	const grace = 1500 * time.Millisecond // room for a loaded machine to log the SIGTERM
	start := time.Now()
	if err := p.Stop(context.Background(), "stubborn-1", grace); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < grace {
		t.Errorf("Stop returned after %v, before the grace period %v", d, grace)
	}
	if !processGone(pid) {
		t.Errorf("pid %d still running after Stop", pid)
	}
	if out := readLogs(t, p, "stubborn-1", provider.LogOptions{}); !strings.Contains(out, "got SIGTERM, ignoring it") {
		t.Errorf("SIGTERM was not sent first:\n%s", out)
	}
}

func TestStopKillsProcessGroup(t *testing.T) {
	p := newProvider(t, testOptions(t.TempDir()))
	r := helperReplica(t, "group-1")
	r.Spec.Command = []string{"sh", "-c", "sleep 300 & echo child $!; wait"}
	r.Spec.Args = nil
	if _, err := p.Start(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	var child int
	waitFor(t, 10*time.Second, "the shell to start its child", func() bool {
		out := readLogs(t, p, "group-1", provider.LogOptions{})
		_, rest, ok := strings.Cut(out, "child ")
		if !ok || !strings.Contains(rest, "\n") {
			return false
		}
		child, _ = strconv.Atoi(strings.TrimSpace(strings.SplitN(rest, "\n", 2)[0]))
		return child > 0
	})
	if processGone(child) {
		t.Fatalf("child %d not running", child)
	}
	if err := p.Stop(context.Background(), "group-1", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the grandchild to be gone", func() bool { return processGone(child) })
}

func TestLogRotation(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(dir)
	const limit = 16 << 10
	opts.LogMaxBytes = limit
	opts.PollInterval = 10 * time.Millisecond
	p := newProvider(t, opts)
	if _, err := p.Start(context.Background(), helperReplica(t, "chatty-1")); err != nil {
		t.Fatal(err)
	}
	inst := waitReady(t, p, "chatty-1")
	logPath := filepath.Join(dir, "chatty-1", logName)

	// ~200 KiB in 2 KiB bursts, 12 times the cap.
	done := make(chan error, 1)
	go func() { done <- call(inst, "/log?lines=2000&size=100&burst=20&pause=5") }()
	var maxSize int64
	for waiting := true; waiting; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			waiting = false
		default:
			maxSize = max(maxSize, fileSize(logPath))
			time.Sleep(time.Millisecond)
		}
	}
	// Rotation is polled (every 10ms here), so the file may overshoot by
	// what is written between two checks; the bound leaves room for a slow,
	// loaded machine while 200 KiB unrotated would fail it.
	const bound = 8 * limit
	t.Logf("output.log peaked at %d bytes", maxSize)
	if maxSize > bound {
		t.Errorf("output.log grew to %d bytes with a cap of %d", maxSize, limit)
	}
	rotated := filepath.Join(dir, "chatty-1", rotatedLogName)
	waitFor(t, 5*time.Second, "rotation to settle", func() bool {
		_, err := os.Stat(rotated + ".tmp")
		return fileSize(logPath) <= limit && os.IsNotExist(err)
	})
	if s := fileSize(rotated); s == 0 || s > bound {
		t.Errorf("output.log.1 has %d bytes, want (0, %d]", s, bound)
	}

	out := readLogs(t, p, "chatty-1", provider.LogOptions{})
	if int64(len(out)) > 2*bound {
		t.Errorf("Logs returned %d bytes", len(out))
	}
	if !strings.HasSuffix(out, "log done\n") {
		t.Errorf("Logs does not end with the last line: %q", out[max(0, len(out)-200):])
	}
	// Whole lines: rotation truncates between writes of the O_APPEND writer.
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if strings.HasPrefix(line, "line ") && len(line) != 99 {
			t.Errorf("torn line %q", line)
			break
		}
	}
	tail := readLogs(t, p, "chatty-1", provider.LogOptions{TailBytes: 9})
	if tail != "log done\n" {
		t.Errorf("TailBytes 9 = %q", tail)
	}
	// A tail spanning both files.
	total := fileSize(rotated) + fileSize(logPath)
	both := readLogs(t, p, "chatty-1", provider.LogOptions{TailBytes: fileSize(logPath) + 50})
	if int64(len(both)) != min(total, fileSize(logPath)+50) || !strings.HasSuffix(both, "log done\n") {
		t.Errorf("tail across files: %d bytes, suffix %q", len(both), both[max(0, len(both)-20):])
	}
}

func TestLogsFollow(t *testing.T) {
	p := newProvider(t, testOptions(t.TempDir()))
	if _, err := p.Start(context.Background(), helperReplica(t, "follow-1")); err != nil {
		t.Fatal(err)
	}
	inst := waitReady(t, p, "follow-1")

	follow := func(ctx context.Context) (<-chan string, <-chan error) {
		rc, err := p.Logs(ctx, "follow-1", provider.LogOptions{Follow: true, TailBytes: 100})
		if err != nil {
			t.Fatal(err)
		}
		lines, end := make(chan string, 1000), make(chan error, 1)
		go func() {
			defer rc.Close()
			sc := bufio.NewScanner(rc)
			for sc.Scan() {
				lines <- sc.Text()
			}
			end <- sc.Err()
			close(lines)
		}()
		return lines, end
	}
	expect := func(lines <-chan string, want string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("stream ended before %q", want)
				}
				if l == want {
					return
				}
			case <-timeout:
				t.Fatalf("no %q in the followed log", want)
			}
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	lines, end := follow(ctx)
	mustCall(t, inst, "/say?msg="+url.QueryEscape("written after the call"))
	expect(lines, "written after the call")
	mustCall(t, inst, "/say?msg=second")
	expect(lines, "second")
	cancel()
	select {
	case err := <-end:
		if err != nil {
			t.Errorf("stream ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not end when ctx was cancelled")
	}

	// Following ends when the replica is stopped, after its last words.
	lines, end = follow(context.Background())
	mustCall(t, inst, "/say?msg=before-stop")
	expect(lines, "before-stop")
	if err := p.Stop(context.Background(), "follow-1", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	expect(lines, "got SIGTERM, shutting down")
	select {
	case <-end:
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not end when the replica stopped")
	}
}

func TestReadinessLost(t *testing.T) {
	p := newProvider(t, testOptions(t.TempDir()))
	if _, err := p.Start(context.Background(), helperReplica(t, "flaky-1")); err != nil {
		t.Fatal(err)
	}
	inst := waitReady(t, p, "flaky-1")
	mustCall(t, inst, "/unhealthy")
	got := waitInstance(t, p, "flaky-1", "to become not ready", func(i provider.Instance) bool { return i.State == v1.ReplicaStarting })
	if !strings.Contains(got.Message, "503") || got.Restarts != 0 {
		t.Errorf("not ready instance = %+v", got)
	}
	mustCall(t, inst, "/healthy")
	got = waitReady(t, p, "flaky-1")
	if got.Message != "" {
		t.Errorf("message after recovery = %q", got.Message)
	}
}

func TestAdopt(t *testing.T) {
	dir := t.TempDir()
	a := newProvider(t, testOptions(dir))
	r := helperReplica(t, "adopt-1")
	if _, err := a.Start(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	inst := waitReady(t, a, "adopt-1")
	h := handleOf(t, inst)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if processGone(h.PID) {
		t.Fatal("Close stopped the process")
	}

	changed := make(chan string, 100)
	opts := testOptions(dir)
	opts.OnChange = func(id string) { changed <- id }
	b := newProvider(t, opts)
	adopted, err := b.Adopt(context.Background(), r, inst.Handle)
	if err != nil {
		t.Fatal(err)
	}
	if hb := handleOf(t, adopted); hb.PID != h.PID || hb.StartTime != h.StartTime || adopted.Endpoint != inst.Endpoint {
		t.Errorf("adopted handle %+v endpoint %s, want %+v %s", hb, adopted.Endpoint, h, inst.Endpoint)
	}
	adopted = waitReady(t, b, "adopt-1")
	if adopted.Restarts != 0 || handleOf(t, adopted).PID != h.PID {
		t.Errorf("adoption restarted the process: %+v", adopted)
	}
	if !adopted.StartedAt.Equal(inst.StartedAt) {
		t.Errorf("StartedAt %v, want %v", adopted.StartedAt, inst.StartedAt)
	}
	// Logs work through the new provider.
	mustCall(t, adopted, "/say?msg=hello-from-b")
	if out := readLogs(t, b, "adopt-1", provider.LogOptions{}); !strings.Contains(out, "hello-from-b") || strings.Count(out, "listening on") != 1 {
		t.Errorf("logs after adoption:\n%s", out)
	}
	// Adopting again is idempotent.
	if again, err := b.Adopt(context.Background(), r, inst.Handle); err != nil || handleOf(t, again).PID != h.PID {
		t.Errorf("second Adopt: %v", err)
	}

	// The adopted process dies: it is restarted, now as b's own child.
	_ = call(adopted, "/crash")
	restarted := waitInstance(t, b, "adopt-1", "to be restarted and Ready", func(i provider.Instance) bool {
		return i.Restarts == 1 && i.State == v1.ReplicaReady
	})
	if hr := handleOf(t, restarted); hr.PID == h.PID || hr.Restarts != 1 {
		t.Errorf("handle after restart: %+v", hr)
	}
	select {
	case id := <-changed:
		if id != "adopt-1" {
			t.Errorf("OnChange(%q)", id)
		}
	default:
		t.Error("OnChange not called")
	}
	pid := handleOf(t, restarted).PID
	if err := b.Stop(context.Background(), "adopt-1", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if !processGone(pid) {
		t.Errorf("pid %d survived Stop", pid)
	}
}

func TestStopAdopted(t *testing.T) {
	dir := t.TempDir()
	a := newProvider(t, testOptions(dir))
	r := helperReplica(t, "adopt-stop-1", v1.EnvVar{Name: "HELPER_IGNORE_TERM", Value: "1"})
	if _, err := a.Start(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	inst := waitReady(t, a, "adopt-stop-1")
	a.Close()
	b := newProvider(t, testOptions(dir))
	if _, err := b.Adopt(context.Background(), r, inst.Handle); err != nil {
		t.Fatal(err)
	}
	if err := b.Stop(context.Background(), "adopt-stop-1", 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if pid := handleOf(t, inst).PID; !processGone(pid) {
		t.Errorf("adopted pid %d survived Stop", pid)
	}
	if out := readLogs(t, b, "adopt-stop-1", provider.LogOptions{}); !strings.Contains(out, "got SIGTERM, ignoring it") {
		t.Errorf("no SIGTERM before SIGKILL:\n%s", out)
	}
}

func TestAdoptGone(t *testing.T) {
	dir := t.TempDir()
	a := newProvider(t, testOptions(dir))
	r := helperReplica(t, "gone-1")
	inst, err := a.Start(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	pid := handleOf(t, inst).PID
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the process to die", func() bool { return processGone(pid) })

	b := newProvider(t, testOptions(dir))
	if _, err := b.Adopt(context.Background(), r, inst.Handle); !errors.Is(err, provider.ErrGone) {
		t.Errorf("Adopt of a killed process: %v, want ErrGone", err)
	}
	syscall.Wait4(pid, nil, 0, nil) // the test process is still its parent
	if _, err := b.Get("gone-1"); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("failed Adopt left a replica: %v", err)
	}
	// A live pid with another start time is a reused pid: gone too.
	st, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	fake, _ := json.Marshal(handle{PID: os.Getpid(), StartTime: st.startTime + 1, Port: 1, Dir: filepath.Join(dir, "gone-1")})
	if _, err := b.Adopt(context.Background(), r, fake); !errors.Is(err, provider.ErrGone) {
		t.Errorf("Adopt of a reused pid: %v, want ErrGone", err)
	}
	if _, err := b.Adopt(context.Background(), r, json.RawMessage(`{"pid":`)); err == nil || errors.Is(err, provider.ErrGone) {
		t.Errorf("Adopt of a malformed handle: %v", err)
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	dir := t.TempDir()
	p, err := New(testOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, id := range []string{"leak-1", "leak-2"} {
		inst, err := p.Start(context.Background(), helperReplica(t, id))
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, handleOf(t, inst).PID)
		waitReady(t, p, id)
	}
	t.Cleanup(func() {
		for _, pid := range pids {
			syscall.Kill(-pid, syscall.SIGKILL)
			syscall.Wait4(pid, nil, 0, nil)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rc, err := p.Logs(ctx, "leak-1", provider.LogOptions{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	readDone := make(chan struct{})
	go func() {
		io.Copy(io.Discard, rc)
		close(readDone)
	}()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-readDone: // following ends with the provider
	case <-time.After(10 * time.Second):
		t.Fatal("Logs follow did not end on Close")
	}
	rc.Close()
	for _, pid := range pids {
		if processGone(pid) {
			t.Errorf("Close killed pid %d", pid)
		}
	}
	if _, err := p.Start(context.Background(), helperReplica(t, "leak-3")); err == nil {
		t.Error("Start after Close succeeded")
	}
	waitFor(t, 10*time.Second, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
	if t.Failed() {
		buf := make([]byte, 1<<20)
		t.Logf("%s", buf[:runtime.Stack(buf, true)])
	}
}

func TestConcurrentUse(t *testing.T) {
	p := newProvider(t, testOptions(t.TempDir()))
	var wg sync.WaitGroup
	for i := range 4 {
		id := "conc-" + strconv.Itoa(i)
		wg.Go(func() {
			if _, err := p.Start(context.Background(), helperReplica(t, id)); err != nil {
				t.Error(err)
				return
			}
			deadline := time.Now().Add(15 * time.Second)
			for {
				inst, err := p.Get(id)
				if err != nil {
					t.Error(err)
					return
				}
				if inst.State == v1.ReplicaReady {
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("%s not ready: %+v", id, inst)
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			if err := p.Stop(context.Background(), id, 5*time.Second); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	p.mu.Lock()
	n, ports := len(p.replicas), len(p.ports)
	p.mu.Unlock()
	if n != 0 || ports != 0 {
		t.Errorf("after stopping all: %d replicas, %d ports still tracked", n, ports)
	}
}

func TestBackoffResetsAfterStableRun(t *testing.T) {
	opts := testOptions(t.TempDir())
	opts.BackoffBase, opts.BackoffMax = 20*time.Millisecond, time.Second
	opts.BackoffReset = time.Second
	p := newProvider(t, opts)
	const id = "stable-1"
	if _, err := p.Start(context.Background(), helperReplica(t, id)); err != nil {
		t.Fatal(err)
	}
	rep := func() *replica {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.replicas[id]
	}()
	crashes := func() int {
		rep.mu.Lock()
		defer rep.mu.Unlock()
		return rep.crashes
	}
	crashAndWait := func(restarts int) {
		t.Helper()
		_ = call(waitReady(t, p, id), "/crash")
		waitInstance(t, p, id, "to be restarted and Ready", func(i provider.Instance) bool {
			return i.Restarts == restarts && i.State == v1.ReplicaReady
		})
	}
	// Crashes soon after becoming Ready count as consecutive.
	crashAndWait(1)
	crashAndWait(2)
	if n := crashes(); n != 2 {
		t.Errorf("consecutive crashes = %d, want 2", n)
	}
	// After a run that was Ready for BackoffReset, the backoff starts over.
	waitFor(t, 10*time.Second, "a stable run", func() bool {
		rep.mu.Lock()
		defer rep.mu.Unlock()
		return rep.state == v1.ReplicaReady && time.Since(rep.readySince) > opts.BackoffReset
	})
	crashAndWait(3)
	if n := crashes(); n != 1 {
		t.Errorf("consecutive crashes after a stable run = %d, want 1", n)
	}
}
