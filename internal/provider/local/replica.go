package local

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/provider"
)

// readyFailures is how many consecutive failed probes make a Ready replica
// not ready again.
const readyFailures = 3

// firstProbeInterval is the gap between the first probes after a start; it
// doubles up to the probe period until the first success.
const firstProbeInterval = 50 * time.Millisecond

// replica is one replica this provider runs. A supervisor goroutine owns its
// process lifecycle: it watches for exit, probes readiness, rotates the log
// and restarts after crashes.
type replica struct {
	p          *Provider
	id         string
	deployment string
	spec       v1.DeploymentSpec
	extraEnv   []string
	dir        string
	oci        *ociReplica // nil for a process replica
	note       string      // shown as the message while Ready (e.g. limits not applied)

	stopCh   chan struct{} // closed by Stop (under mu, with stopping)
	done     chan struct{} // closed when the supervisor returns
	gone     chan struct{} // closed when Stop removed the replica
	goneOnce sync.Once

	mu         sync.Mutex
	path       string // resolved executable; "" until needed for an adopted replica
	port       int
	proc       *proc // nil while in BackOff
	state      v1.ReplicaState
	message    string
	restarts   int
	startedAt  time.Time
	readySince time.Time
	stable     bool // this run was Ready for BackoffReset: reset the backoff
	crashes    int  // consecutive crashes, for the backoff
	stopping   bool

	logMu  sync.RWMutex // rotation vs. log readers
	logGen uint64       // rotations so far, under logMu
}

func (p *Provider) newReplica(r provider.Replica, dir string, port int) *replica {
	return &replica{
		p:          p,
		id:         r.ID,
		deployment: r.Deployment,
		spec:       r.Spec,
		extraEnv:   append([]string(nil), r.Env...),
		dir:        dir,
		port:       port,
		state:      v1.ReplicaStarting,
		stopCh:     make(chan struct{}),
		done:       make(chan struct{}),
		gone:       make(chan struct{}),
	}
}

func (r *replica) logPath() string     { return filepath.Join(r.dir, logName) }
func (r *replica) rotatedPath() string { return filepath.Join(r.dir, rotatedLogName) }

func endpoint(port int) string { return "http://127.0.0.1:" + strconv.Itoa(port) }

// instance snapshots the replica as a provider.Instance.
func (r *replica) instance() provider.Instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := handle{
		Port:      r.port,
		Dir:       r.dir,
		Restarts:  r.restarts,
		StartedAt: r.startedAt,
		Command:   r.path,
	}
	if r.oci != nil {
		h.Runtime, h.Image, h.Netns, h.Limits = "oci", r.oci.digest, r.oci.netns, r.oci.limits
	}
	if r.proc != nil {
		h.PID, h.StartTime = r.proc.pid, r.proc.startTime
	}
	raw, _ := json.Marshal(h)
	return provider.Instance{
		ID:        r.id,
		State:     r.state,
		Endpoint:  endpoint(r.port),
		StartedAt: r.startedAt,
		Restarts:  r.restarts,
		Message:   r.message,
		Handle:    raw,
	}
}

// env builds the process environment: a few variables of the server, the
// spec's env, aloft's extra env, then ALOFT_* and PORT, later entries winning.
func (r *replica) env() []string {
	var keys []string
	vals := map[string]string{}
	set := func(k, v string) {
		if k == "" {
			return
		}
		if _, ok := vals[k]; !ok {
			keys = append(keys, k)
		}
		vals[k] = v
	}
	for _, k := range []string{"PATH", "HOME", "LANG", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			set(k, v)
		}
	}
	for _, e := range r.spec.Env {
		set(e.Name, e.Value)
	}
	for _, e := range r.extraEnv {
		k, v, _ := strings.Cut(e, "=")
		set(k, v)
	}
	set("ALOFT_REPLICA_ID", r.id)
	set("ALOFT_DEPLOYMENT", r.deployment)
	set("ALOFT_CLOUD", r.p.opts.Cloud)
	set("PORT", strconv.Itoa(r.port))
	env := make([]string, 0, len(keys))
	for _, k := range keys {
		env = append(env, k+"="+vals[k])
	}
	return env
}

// spawnLocked starts a new process for the replica (runc, for a container,
// whose bundle prepareOCI made). r.mu is held.
func (r *replica) spawnLocked() error {
	if r.oci != nil {
		return r.spawnOCILocked()
	}
	if len(r.spec.Command) == 0 || r.spec.Command[0] == "" {
		return fmt.Errorf("no command to run (images need the oci runtime)")
	}
	if r.path == "" {
		path, err := lookPath(r.spec.Command[0])
		if err != nil {
			return err
		}
		r.path = path
	}
	argv := make([]string, 0, len(r.spec.Command)+len(r.spec.Args))
	argv = append(argv, r.spec.Command...)
	argv = append(argv, r.spec.Args...)
	pr, err := spawn(r.path, argv, r.env(), r.dir, r.logPath())
	if err != nil {
		return err
	}
	r.proc = pr
	r.startedAt = time.Now()
	r.state = v1.ReplicaStarting
	r.stable = false
	return nil
}

// supervise runs until the replica is stopped or the provider closed.
func (r *replica) supervise() {
	defer r.p.wg.Done()
	defer close(r.done)
	log := r.p.log.With("replica", r.id)

	r.mu.Lock()
	pr := r.proc
	r.mu.Unlock()
	var why string
	if pr == nil {
		// Started without a process (a container): the first run happens here.
		var ok bool
		if pr, why, ok = r.respawn(); !ok {
			return
		}
	}
	for {
		if pr != nil {
			if !r.watch(pr) {
				return // stopping or closing: the process is left alone (or to Stop)
			}
			why = fmt.Sprintf("process %s", pr.exitStatus())
			if line := lastLogLine(r.logPath(), r.rotatedPath()); line != "" {
				why += "; last log line: " + line
			}
			// Kill what the process left behind in its group (a wrapper's
			// children), so they do not hold the port or run unsupervised.
			pr.signalStragglers(syscall.SIGKILL)
		}

		r.mu.Lock()
		if r.stopping {
			r.mu.Unlock()
			return
		}
		if r.stable || (r.state == v1.ReplicaReady && time.Since(r.readySince) >= r.p.opts.BackoffReset) {
			r.crashes = 0
		}
		r.crashes++
		delay := backoff(r.p.opts.BackoffBase, r.p.opts.BackoffMax, r.crashes)
		r.restarts++
		r.state = v1.ReplicaBackOff
		r.message = why
		r.proc = nil
		restarts := r.restarts
		r.mu.Unlock()
		r.p.notify(r.id)
		log.Warn("replica crashed; restarting after backoff", "reason", why, "restarts", restarts, "backoff", delay)

		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.stopCh:
			t.Stop()
			return
		case <-r.p.closeCh:
			t.Stop()
			return
		}

		var ok bool
		if pr, why, ok = r.respawn(); !ok {
			return
		}
		if pr != nil {
			log.Info("replica restarted", "pid", pr.pid, "restarts", restarts)
		}
	}
}

// respawn starts the replica's process again: for a container it first
// prepares the bundle (without holding r.mu, as unpacking an image takes
// time). It returns the new process, or nil and why not; ok is false when the
// replica is being stopped or the provider closed.
func (r *replica) respawn() (pr *proc, why string, ok bool) {
	if r.oci != nil {
		// Stop or Close cancels an unpack in progress.
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-r.stopCh:
			case <-r.p.closeCh:
			case <-ctx.Done():
			}
			cancel()
		}()
		err := r.prepareOCI(ctx)
		cancel()
		if err != nil {
			if r.p.isClosed() || r.isStopping() {
				return nil, "", false
			}
			return nil, "start failed: " + err.Error(), true
		}
	} else {
		r.p.repickPort(r)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopping || r.p.isClosed() {
		return nil, "", false
	}
	if err := r.spawnLocked(); err != nil {
		return nil, "restart failed: " + err.Error(), true
	}
	r.p.notify(r.id)
	return r.proc, "", true
}

func (r *replica) isStopping() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopping
}

func (p *Provider) isClosed() bool {
	select {
	case <-p.closeCh:
		return true
	default:
		return false
	}
}

// watch monitors a running process: exit, readiness and log size. It returns
// true when the process exited, false when the replica is being stopped or
// the provider closed.
func (r *replica) watch(pr *proc) bool {
	ctx, cancel := context.WithCancel(context.Background())
	probed := make(chan struct{})
	go func() {
		defer close(probed)
		r.probeLoop(ctx, pr)
	}()
	defer func() {
		cancel()
		<-probed
	}()

	t := time.NewTicker(r.p.opts.PollInterval)
	defer t.Stop()
	for {
		if pr.poll() {
			return true
		}
		r.rotateLog()
		select {
		case <-t.C:
		case <-r.stopCh:
			return false
		case <-r.p.closeCh:
			return false
		}
	}
}

// backoff is base*2^(n-1), at most max.
func backoff(base, max time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n; i++ {
		if d >= max/2 {
			return max
		}
		d *= 2
	}
	return min(d, max)
}

// probeLoop probes readiness of pr until ctx is done.
func (r *replica) probeLoop(ctx context.Context, pr *proc) {
	h := r.spec.Health
	path := h.Path
	if path == "" {
		path = "/"
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	period := time.Duration(max(h.PeriodSeconds, 1)) * time.Second
	if r.p.opts.ProbeInterval > 0 {
		period = r.p.opts.ProbeInterval
	}
	timeout := time.Duration(max(h.TimeoutSeconds, 1)) * time.Second
	if r.p.opts.ProbeTimeout > 0 {
		timeout = r.p.opts.ProbeTimeout
	}

	r.mu.Lock()
	started, port := r.startedAt, r.port
	r.mu.Unlock()
	url := endpoint(port) + path
	client := r.p.client
	if r.oci != nil {
		client = r.oci.probe
	}

	t := time.NewTimer(time.Until(started.Add(time.Duration(h.InitialDelaySeconds) * time.Second)))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return
	case <-t.C:
	}

	interval := min(firstProbeInterval, period)
	everReady, ready, fails := false, false, 0
	for {
		err := probe(ctx, client, url, timeout)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil:
			fails = 0
			interval = period
			if !ready {
				ready, everReady = true, true
				r.setReady(pr)
			}
		case ready:
			fails++
			if fails >= readyFailures {
				ready, fails = false, 0
				r.setNotReady(pr, fmt.Sprintf("readiness probe failed %d times: %v", readyFailures, err))
			}
		case !everReady:
			interval = min(interval*2, period)
		}
		t.Reset(interval)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func probe(ctx context.Context, client *http.Client, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "aloft-probe")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("GET %s: HTTP %d", req.URL.Path, resp.StatusCode)
	}
	return nil
}

func (r *replica) setReady(pr *proc) {
	r.mu.Lock()
	if r.proc != pr || r.stopping {
		r.mu.Unlock()
		return
	}
	r.state = v1.ReplicaReady
	r.readySince = time.Now()
	r.message = r.note
	r.mu.Unlock()
	r.p.notify(r.id)
	r.p.log.Info("replica ready", "replica", r.id)
}

func (r *replica) setNotReady(pr *proc, msg string) {
	r.mu.Lock()
	if r.proc != pr || r.stopping {
		r.mu.Unlock()
		return
	}
	if time.Since(r.readySince) >= r.p.opts.BackoffReset {
		r.stable = true
	}
	r.state = v1.ReplicaStarting
	r.message = msg
	r.mu.Unlock()
	r.p.notify(r.id)
	r.p.log.Warn("replica not ready", "replica", r.id, "reason", msg)
}

// rotateLog enforces LogMaxBytes: when output.log is larger, its content is
// copied to output.log.1 and output.log truncated; the process keeps writing
// with O_APPEND, so its next write lands at the new end.
func (r *replica) rotateLog() {
	path := r.logPath()
	fi, err := os.Stat(path)
	if err != nil || fi.Size() <= r.p.opts.LogMaxBytes {
		return
	}
	r.logMu.Lock()
	defer r.logMu.Unlock()
	if err := rotate(path, r.rotatedPath(), fi.Size()+2*r.p.opts.LogMaxBytes); err != nil {
		r.p.log.Warn("log rotation failed", "replica", r.id, "err", err)
		return
	}
	r.logGen++
}

func rotate(path, rotated string, limit int64) error {
	src, err := os.Open(path)
	if err != nil {
		return err
	}
	defer src.Close()
	tmp := rotated + ".tmp"
	dst, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	// Copy to EOF (including what is written meanwhile), then truncate at
	// once to keep the window in which output is lost small.
	_, err = io.Copy(dst, io.LimitReader(src, limit))
	if err == nil {
		err = os.Truncate(path, 0)
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, rotated)
}

// lastLogLine returns the last non-empty line of the log (or of the rotated
// log if the current one is empty), shortened for a status message.
func lastLogLine(path, rotated string) string {
	for _, p := range []string{path, rotated} {
		if line := lastLine(p); line != "" {
			return line
		}
	}
	return ""
}

func lastLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	const tail = 4096
	off := max(fi.Size()-tail, 0)
	buf := make([]byte, fi.Size()-off)
	n, _ := f.ReadAt(buf, off)
	buf = bytes.TrimRight(buf[:n], "\r\n\t ")
	if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
		buf = buf[i+1:]
	}
	line := strings.TrimSpace(strings.ToValidUTF8(string(buf), "?"))
	const maxLen = 300
	if len(line) > maxLen {
		line = strings.ToValidUTF8(line[:maxLen], "") + "..."
	}
	return line
}
