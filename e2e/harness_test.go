// Package e2e runs the real aloft binary: a server on loopback ports in a temp
// dir, real replica processes of the example service, real HTTP through the
// gateway. It asserts on what users see (CLI output, API answers, responses).
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/client"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "aloft-e2e-bin-")
	if err != nil {
		panic(err)
	}
	binDir = dir
	for _, b := range []struct{ out, pkg string }{
		{"aloft", "./cmd/aloft"},
		{"aloft-completions", "./examples/completions"},
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b.out), b.pkg)
		cmd.Dir = ".."
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", b.pkg, err)
			os.Exit(1)
		}
	}
	// The example image: the example service built statically, packed by
	// examples/mkimage and tagged hello-world:latest, as `make example-image` does.
	static := exec.Command("go", "build", "-o", filepath.Join(dir, "static", "aloft-completions"), "./examples/completions")
	static.Dir, static.Env = "..", append(os.Environ(), "CGO_ENABLED=0")
	mk := exec.Command("go", "run", "./examples/mkimage", "-bin", filepath.Join(dir, "static", "aloft-completions"),
		"-name", "hello-world:latest", "-port", "8080", "-o", filepath.Join(dir, "hello-world.tar"))
	mk.Dir = ".."
	for _, cmd := range []*exec.Cmd{static, mk} {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build the example image:", err)
			os.Exit(1)
		}
	}
	exampleImage = filepath.Join(dir, "hello-world.tar")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// exampleImage is the example service's image archive (hello-world:latest).
var exampleImage string

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// env is one aloft server under test.
type env struct {
	t       *testing.T
	data    string
	keyFile string
	token   string
	api     string
	gateway string
	extra   []string
	cmd     *exec.Cmd
	log     *bytes.Buffer
	logMu   *sync.Mutex
	c       *client.Client
}

func newEnv(t *testing.T, extraArgs ...string) *env {
	t.Helper()
	e := &env{t: t, data: t.TempDir(), api: freePort(t), gateway: freePort(t), extra: extraArgs}
	e.keyFile = filepath.Join(t.TempDir(), "secrets.key")
	e.start()
	t.Cleanup(e.cleanup)
	return e
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (e *env) environ() []string {
	return append(os.Environ(), "PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"), "ALOFT_SERVER=http://"+e.api,
		"ALOFT_TOKEN="+e.token, "ALOFT_CONFIG="+filepath.Join(e.data, "cli-config.json"))
}

func (e *env) start() {
	e.t.Helper()
	args := append([]string{"server", "--data", e.data, "--listen", e.api, "--gateway-listen", e.gateway, "--log-level", "debug",
		"--secrets-key-file", e.keyFile}, e.extra...)
	e.cmd = exec.Command(filepath.Join(binDir, "aloft"), args...)
	e.cmd.Env = e.environ()
	e.log, e.logMu = &bytes.Buffer{}, &sync.Mutex{}
	e.cmd.Stdout = lockedWriter{e.logMu, e.log}
	e.cmd.Stderr = lockedWriter{e.logMu, e.log}
	if err := e.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.c = client.New(e.api)
	e.waitFor("server ready", 20*time.Second, func() (bool, string) {
		err := e.c.Ready(context.Background())
		return err == nil, fmt.Sprint(err)
	})
	tok, err := os.ReadFile(filepath.Join(e.data, "admin.token"))
	if err != nil {
		e.t.Fatalf("admin token: %v", err)
	}
	e.token = strings.TrimSpace(string(tok))
	e.c.Token = e.token
}

func (e *env) serverLog() string {
	e.logMu.Lock()
	defer e.logMu.Unlock()
	return e.log.String()
}

// kill9 kills the server process without letting it clean up.
func (e *env) kill9() {
	e.cmd.Process.Signal(syscall.SIGKILL)
	e.cmd.Wait()
}

func (e *env) cleanup() {
	if e.t.Failed() {
		e.t.Logf("server log:\n%s", tail(e.serverLog(), 8000))
	}
	// Delete every deployment so no replica process outlives the test.
	if e.cmd.ProcessState == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		deps, _ := e.c.ListDeployments(ctx)
		for _, d := range deps {
			e.c.DeleteDeployment(ctx, d.Name)
		}
		for ctx.Err() == nil {
			deps, err := e.c.ListDeployments(ctx)
			if err != nil || len(deps) == 0 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		e.cmd.Process.Signal(syscall.SIGTERM)
		e.cmd.Wait()
	}
	killReplicas(e.data)
	removeContainers(e.data)
}

// removeContainers deletes what container replicas of the data dir left:
// runc containers and pinned network namespaces.
func removeContainers(data string) {
	root := filepath.Join(data, "oci", "runc")
	if out, err := exec.Command("runc", "--root", root, "list", "-q").Output(); err == nil {
		for _, id := range strings.Fields(string(out)) {
			exec.Command("runc", "--root", root, "delete", "--force", id).Run()
		}
	}
	for _, m := range mountsUnder(data) {
		syscall.Unmount(m, syscall.MNT_DETACH)
	}
}

// mountsUnder lists this mount namespace's mount points below dir.
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

// killReplicas kills any process still running from the data dir's clouds.
func killReplicas(data string) {
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", p.Name(), "cwd"))
		if err == nil && strings.HasPrefix(cwd, data) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// waitFor polls cond until it holds or the deadline passes.
func (e *env) waitFor(what string, d time.Duration, cond func() (bool, string)) {
	e.t.Helper()
	deadline := time.Now().Add(d)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %s waiting for %s; last state: %s", d, what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// aloft runs the CLI and returns stdout, stderr and the exit code.
func (e *env) aloft(stdin string, args ...string) (string, string, int) {
	e.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "aloft"), args...)
	cmd.Env = e.environ()
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func (e *env) mustAloft(args ...string) string {
	e.t.Helper()
	out, errOut, code := e.aloft("", args...)
	if code != 0 {
		e.t.Fatalf("aloft %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func (e *env) writeSpec(name, body string) string {
	e.t.Helper()
	p := filepath.Join(e.t.TempDir(), name+".yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// completionsSpec is the example service with test-friendly probes.
func completionsSpec(name string, replicas int, extra string) string {
	return fmt.Sprintf(`name: %s
command: [aloft-completions]
args: ["--token-delay", "1ms"]
replicas: %d
resources: {cpu: "0.5", memory: "256Mi"}
health: {path: /healthz, periodSeconds: 1, timeoutSeconds: 1}
%s`, name, replicas, extra)
}

func (e *env) get(name string) v1.Deployment {
	e.t.Helper()
	d, err := e.c.GetDeployment(context.Background(), name)
	if err != nil {
		e.t.Fatalf("get %s: %v", name, err)
	}
	return d
}

// waitRolledOut waits until n replicas of the current revision are ready and nothing else is left.
func (e *env) waitRolledOut(name string, n int, d time.Duration) v1.Deployment {
	e.t.Helper()
	var dep v1.Deployment
	e.waitFor(name+" rolled out", d, func() (bool, string) {
		var err error
		dep, err = e.c.GetDeployment(context.Background(), name)
		if err != nil {
			return false, err.Error()
		}
		ok := dep.Status.Phase == v1.PhaseReady && dep.Status.ReadyReplicas == n && len(dep.Status.Replicas) == n
		for _, r := range dep.Status.Replicas {
			ok = ok && r.Revision == dep.Revision && r.State == v1.ReplicaReady
		}
		b, _ := json.Marshal(dep.Status)
		return ok, string(b)
	})
	return dep
}

// request sends one completion through the gateway.
func (e *env) request(deployment string) (int, string, error) {
	req, _ := http.NewRequest("POST", "http://"+e.gateway+"/v1/completions",
		strings.NewReader(`{"prompt":"Alice was","max_tokens":4}`))
	req.Host = deployment + ".localhost"
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Replica-Id"), nil
}

// load sends requests continuously until stopped, counting failures.
type load struct {
	ok, failed atomic.Int64
	lastErr    atomic.Value
	stop       chan struct{}
	done       sync.WaitGroup
}

func (e *env) startLoad(deployment string, workers int) *load {
	l := &load{stop: make(chan struct{})}
	for range workers {
		l.done.Add(1)
		go func() {
			defer l.done.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				code, _, err := e.request(deployment)
				if err == nil && code == 200 {
					l.ok.Add(1)
				} else {
					l.failed.Add(1)
					l.lastErr.Store(fmt.Sprintf("code %d err %v", code, err))
				}
			}
		}()
	}
	return l
}

func (l *load) finish() (ok, failed int64, lastErr string) {
	close(l.stop)
	l.done.Wait()
	s, _ := l.lastErr.Load().(string)
	return l.ok.Load(), l.failed.Load(), s
}

// replicaPID finds the process of a replica by its ALOFT_REPLICA_ID.
func replicaPID(t *testing.T, id string) int {
	t.Helper()
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", p.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if string(kv) == "ALOFT_REPLICA_ID="+id {
				return pid
			}
		}
	}
	return 0
}

func cloudsOf(d v1.Deployment) map[string]int {
	m := map[string]int{}
	for _, r := range d.Status.Replicas {
		m[r.Cloud]++
	}
	return m
}

// do sends an authenticated API request.
func (e *env) do(method, path, contentType, body string) (*http.Response, error) {
	req, err := http.NewRequest(method, "http://"+e.api+path, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Authorization", "Bearer "+e.token)
	return http.DefaultClient.Do(req)
}
