package k8stest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one component process, started in its own process group.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed after Wait returned
	err     error         // Wait's result, set before done is closed
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process group (the component and anything it
// might have started); the group id is the pid (Setpgid).
func (p *proc) signal(sig syscall.Signal) {
	if err := syscall.Kill(-p.pid(), sig); err != nil {
		_ = p.cmd.Process.Signal(sig)
	}
}

// spawn starts the binary bin of BinDir as component name, logging to
// Dir/logs/<name>.log (appending, so a restarted API server keeps its
// earlier log) and to Options.Log.
func (c *Cluster) spawn(name, bin string, args ...string) error {
	c.mu.Lock()
	stopped := c.stopped
	c.mu.Unlock()
	if stopped {
		return errors.New("k8stest: cluster is stopped")
	}
	logPath := filepath.Join(c.Dir, "logs", name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "=== k8stest %s: %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command(filepath.Join(c.bin, bin), args...)
	cmd.Dir = c.Dir
	cmd.Env = childEnv()
	var out io.Writer = f
	if c.logw != nil {
		out = io.MultiWriter(f, &lineWriter{mu: &c.logMu, w: c.logw, prefix: "[" + c.Name + " " + name + "] "})
	}
	cmd.Stdout, cmd.Stderr = out, out
	// Own process group, so Stop can signal the component and anything it
	// started; SIGKILL if the test process dies without calling Stop.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	c.mu.Lock()
	c.procs[name] = p
	c.mu.Unlock()
	return nil
}

// childEnv is the test's environment without variables that would point
// the components at another cluster.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "KUBECONFIG=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// stopProcs sends SIGTERM to every process, waits up to grace for all of
// them, then sends SIGKILL to those left and waits for them too.
func stopProcs(ps []*proc, grace time.Duration) error {
	if len(ps) == 0 {
		return nil
	}
	for _, p := range ps {
		if !p.exited() {
			p.signal(syscall.SIGTERM)
		}
	}
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	killed := false
	var errs []error
	for _, p := range ps {
		select {
		case <-p.done:
			continue
		case <-deadline.C:
		}
		// Grace period over: kill whatever is left.
		if !killed {
			killed = true
			for _, q := range ps {
				if !q.exited() {
					q.signal(syscall.SIGKILL)
				}
			}
		}
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			errs = append(errs, fmt.Errorf("k8stest: %s (pid %d) did not exit after SIGKILL", p.name, p.pid()))
		}
	}
	return errors.Join(errs...)
}

// waitProc polls cond until it is true, failing early with the log tail if
// the named process exits.
func (c *Cluster) waitProc(ctx context.Context, name, what string, cond func(context.Context) (bool, error)) error {
	c.mu.Lock()
	p := c.procs[name]
	c.mu.Unlock()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if ok, err := cond(ctx); err != nil {
			return err
		} else if ok {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("waiting for %s: %s exited (%v); log tail:\n%s", what, name, p.err, tailFile(p.logPath, 30))
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w; %s log tail:\n%s", what, ctx.Err(), name, tailFile(p.logPath, 30))
		case <-tick.C:
		}
	}
}

// poll waits for cond, failing early if any component process has exited.
func (c *Cluster) poll(ctx context.Context, what string, cond func(context.Context) (bool, error)) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		ok, err := cond(ctx)
		if ok {
			return nil
		}
		if err != nil {
			lastErr = err
		}
		if p := c.exitedProc(); p != nil {
			return fmt.Errorf("waiting for %s: %s exited (%v); log tail:\n%s", what, p.name, p.err, tailFile(p.logPath, 30))
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("waiting for %s: %w (last error: %v)", what, ctx.Err(), lastErr)
			}
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-tick.C:
		}
	}
}

func (c *Cluster) exitedProc() *proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		if p.exited() {
			return p
		}
	}
	return nil
}

// exitedOnPortConflict reports whether the named process has exited
// because its address was taken; it is then removed so it can be retried.
func (c *Cluster) exitedOnPortConflict(name string) bool {
	c.mu.Lock()
	p := c.procs[name]
	c.mu.Unlock()
	if p == nil {
		return false
	}
	select {
	case <-p.done:
	case <-time.After(2 * time.Second):
		return false
	}
	if !strings.Contains(tailFile(p.logPath, 50), "address already in use") {
		return false
	}
	c.mu.Lock()
	delete(c.procs, name)
	c.mu.Unlock()
	return true
}

var portsMu sync.Mutex
var portsGiven = map[int]bool{}

// freePorts picks n loopback ports that are free now. They come from
// 20000-32767, below the usual ephemeral range (32768-60999), so outgoing
// connections do not take them before the component binds; the few that
// another process takes in between are handled by retrying the start. This
// process never hands out the same port twice.
func freePorts(n int) ([]int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			return nil, errors.New("k8stest: no free loopback port found")
		}
		port := 20000 + rand.IntN(12768)
		if portsGiven[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		portsGiven[port] = true
		ports = append(ports, port)
	}
	return ports, nil
}

// lineWriter writes whole lines to w with a prefix, one writer at a time.
type lineWriter struct {
	mu     *sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		_, _ = l.w.Write(append([]byte(l.prefix), l.buf[:i+1]...))
		l.buf = l.buf[i+1:]
	}
	if len(l.buf) > 64<<10 {
		_, _ = l.w.Write(append([]byte(l.prefix), append(l.buf, '\n')...))
		l.buf = nil
	}
	return len(p), nil
}
