// Package local is the provider for a "local" cloud: it runs replicas as OS
// processes on this machine.
//
// Each replica runs in its own process group with stdout and stderr appended
// to Dir/<replica-id>/output.log, so it survives the server crashing or being
// killed; a later server adopts it again from its Handle (pid plus process
// start time, which guards against pid reuse). The provider allocates a free
// loopback port per replica, passes it as PORT, probes the replica's health
// path over HTTP for readiness, restarts crashed processes with exponential
// backoff and caps the log size by rotation.
package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aloft-dev/aloft/internal/oci"
	"github.com/aloft-dev/aloft/internal/provider"
)

// Log file names inside a replica's directory.
const (
	logName        = "output.log"
	rotatedLogName = "output.log.1"
)

// Defaults for Options.
const (
	DefaultLogMaxBytes  = 10 << 20
	DefaultBackoffBase  = 500 * time.Millisecond
	DefaultBackoffMax   = 30 * time.Second
	DefaultBackoffReset = 60 * time.Second
	DefaultPollInterval = 200 * time.Millisecond
)

// Options configure a Provider.
type Options struct {
	// Cloud is the cloud's name, used in log lines and given to replicas as ALOFT_CLOUD.
	Cloud string
	// Dir is the state directory for this cloud; replica i keeps its logs in Dir/i/.
	Dir string
	// LogMaxBytes caps output.log of each replica (default 10 MiB); one rotated
	// file of about the same size, output.log.1, is kept besides.
	LogMaxBytes int64
	// OnChange is called whenever an instance's State, Restarts or Endpoint
	// changes. Calls come from one provider goroutine, never while the provider
	// holds a lock, and are coalesced per replica; OnChange may call Get (and
	// Stop), not Close. A slow OnChange delays later notifications only.
	OnChange func(replicaID string)
	Logger   *slog.Logger
	// BackoffBase and BackoffMax bound the delay before restarting a crashed
	// process: BackoffBase * 2^(n-1) for the n-th consecutive crash, at most
	// BackoffMax. Defaults 500ms and 30s.
	BackoffBase, BackoffMax time.Duration
	// BackoffReset: a process that was Ready for this long before it crashed
	// restarts after BackoffBase again. Default 60s.
	BackoffReset time.Duration
	// ProbeInterval, if set, replaces every spec's health.periodSeconds (tests).
	ProbeInterval time.Duration
	// ProbeTimeout, if set, replaces every spec's health.timeoutSeconds (tests).
	ProbeTimeout time.Duration
	// PollInterval is how often a process is checked for exit and its log for
	// size, and how often Logs with Follow looks for new output. Default 200ms.
	PollInterval time.Duration
	// OCI runs replicas of images (nil: this cloud runs processes only).
	OCI *OCI
}

// Provider runs replicas as local processes. It implements provider.Provider.
type Provider struct {
	opts      Options
	log       *slog.Logger
	transport *http.Transport
	client    *http.Client

	mu       sync.Mutex
	replicas map[string]*replica
	ports    map[int]string // allocated port -> replica id
	closed   bool

	closeCh   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup // supervisors

	nmu        sync.Mutex
	pending    []string
	pendingSet map[string]bool
	nwake      chan struct{}
	nstop      chan struct{}
	ndone      chan struct{}
}

var _ provider.Provider = (*Provider)(nil)

// New returns a provider keeping its state under opts.Dir (created if needed).
func New(opts Options) (*Provider, error) {
	if opts.Dir == "" {
		return nil, errors.New("local provider: Dir is required")
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("local provider: %w", err)
	}
	if opts.LogMaxBytes <= 0 {
		opts.LogMaxBytes = DefaultLogMaxBytes
	}
	if opts.BackoffBase <= 0 {
		opts.BackoffBase = DefaultBackoffBase
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = DefaultBackoffMax
	}
	if opts.BackoffMax < opts.BackoffBase {
		opts.BackoffMax = opts.BackoffBase
	}
	if opts.BackoffReset <= 0 {
		opts.BackoffReset = DefaultBackoffReset
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("cloud", opts.Cloud)
	tr := &http.Transport{
		Proxy:             nil, // probes go straight to loopback
		DisableKeepAlives: true,
		DialContext:       (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	p := &Provider{
		opts:      opts,
		log:       log,
		transport: tr,
		client: &http.Client{
			Transport: tr,
			// A 3xx answer counts as healthy; do not follow it.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		replicas:   map[string]*replica{},
		ports:      map[int]string{},
		closeCh:    make(chan struct{}),
		pendingSet: map[string]bool{},
		nwake:      make(chan struct{}, 1),
		nstop:      make(chan struct{}),
		ndone:      make(chan struct{}),
	}
	go p.notifyLoop()
	return p, nil
}

// Runtimes implements provider.Provider: processes, and images when the
// container runtime is usable.
func (p *Provider) Runtimes() []string {
	if p.opts.OCI.usable() {
		return []string{"process", "oci"}
	}
	return []string{"process"}
}

// handle is the JSON persisted by aloft for Adopt.
type handle struct {
	PID       int       `json:"pid"`
	StartTime uint64    `json:"startTime"` // /proc/<pid>/stat field 22
	Port      int       `json:"port"`
	Dir       string    `json:"dir"`
	Restarts  int       `json:"restarts"`
	StartedAt time.Time `json:"startedAt"`
	Command   string    `json:"command,omitempty"` // resolved executable path
	// Runtime is "oci" for a container (PID is then runc's); Image is its
	// manifest digest and Netns its pinned network namespace.
	Runtime string      `json:"runtime,omitempty"`
	Image   string      `json:"image,omitempty"`
	Netns   string      `json:"netns,omitempty"`
	Limits  *oci.Limits `json:"limits,omitempty"`
}

func validID(id string) error {
	if id == "" || id == "." || id == ".." || len(id) > 200 || strings.ContainsAny(id, "/\\\x00") {
		return fmt.Errorf("invalid replica id %q", id)
	}
	return nil
}

// Start implements provider.Provider.
func (p *Provider) Start(ctx context.Context, r provider.Replica) (provider.Instance, error) {
	if err := ctx.Err(); err != nil {
		return provider.Instance{}, err
	}
	if err := validID(r.ID); err != nil {
		return provider.Instance{}, err
	}
	if r.Spec.Image != "" {
		return p.startOCI(r)
	}
	if len(r.Spec.Command) == 0 || r.Spec.Command[0] == "" {
		return provider.Instance{}, fmt.Errorf("deployment %q has neither an image nor a command", r.Deployment)
	}
	path, err := lookPath(r.Spec.Command[0])
	if err != nil {
		return provider.Instance{}, err
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.startableLocked(r.ID); err != nil {
		return provider.Instance{}, err
	}
	port, err := p.allocPortLocked(r.ID)
	if err != nil {
		return provider.Instance{}, err
	}
	rep := p.newReplica(r, filepath.Join(p.opts.Dir, r.ID), port)
	rep.path = path
	if err := os.MkdirAll(rep.dir, 0o755); err != nil {
		delete(p.ports, port)
		return provider.Instance{}, fmt.Errorf("create replica dir: %w", err)
	}
	rep.mu.Lock()
	err = rep.spawnLocked()
	rep.mu.Unlock()
	if err != nil {
		delete(p.ports, port)
		return provider.Instance{}, fmt.Errorf("start replica %s: %w", r.ID, err)
	}
	pid := rep.proc.pid
	p.replicas[r.ID] = rep
	p.wg.Add(1)
	go rep.supervise()
	p.log.Info("replica started", "replica", r.ID, "deployment", r.Deployment, "pid", pid, "port", port)
	return rep.instance(), nil
}

// startableLocked says whether a replica may start now.
func (p *Provider) startableLocked(id string) error {
	if p.closed {
		return errors.New("local provider is closed")
	}
	if _, ok := p.replicas[id]; ok {
		return fmt.Errorf("replica %s is already running", id)
	}
	return nil
}

// startOCI starts a container replica; the supervisor unpacks and runs it.
func (p *Provider) startOCI(r provider.Replica) (provider.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.startableLocked(r.ID); err != nil {
		return provider.Instance{}, err
	}
	rep, err := p.startOCILocked(r)
	if err != nil {
		return provider.Instance{}, err
	}
	p.replicas[r.ID] = rep
	p.wg.Add(1)
	go rep.supervise()
	p.log.Info("container replica starting", "replica", r.ID, "deployment", r.Deployment, "image", r.Spec.Image, "digest", rep.oci.digest)
	return rep.instance(), nil
}

func lookPath(cmd string) (string, error) {
	path, err := exec.LookPath(cmd)
	if err != nil {
		return "", fmt.Errorf("command %q not found: %w", cmd, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("command %q: %w", cmd, err)
	}
	return abs, nil
}

// Adopt implements provider.Provider.
func (p *Provider) Adopt(ctx context.Context, r provider.Replica, raw json.RawMessage) (provider.Instance, error) {
	if err := ctx.Err(); err != nil {
		return provider.Instance{}, err
	}
	if err := validID(r.ID); err != nil {
		return provider.Instance{}, err
	}
	var h handle
	if err := json.Unmarshal(raw, &h); err != nil {
		return provider.Instance{}, fmt.Errorf("adopt %s: bad handle: %w", r.ID, err)
	}
	if h.PID <= 0 {
		return provider.Instance{}, fmt.Errorf("adopt %s: %w (no process recorded)", r.ID, provider.ErrGone)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return provider.Instance{}, errors.New("local provider is closed")
	}
	if rep, ok := p.replicas[r.ID]; ok {
		rep.mu.Lock()
		same := rep.proc != nil && rep.proc.pid == h.PID && rep.proc.startTime == h.StartTime
		rep.mu.Unlock()
		if same {
			return rep.instance(), nil
		}
		return provider.Instance{}, fmt.Errorf("adopt %s: replica is already running here", r.ID)
	}
	pr := &proc{pid: h.PID, startTime: h.StartTime}
	if !pr.running() {
		return provider.Instance{}, fmt.Errorf("adopt %s (pid %d): %w", r.ID, h.PID, provider.ErrGone)
	}
	dir := h.Dir
	if dir == "" {
		dir = filepath.Join(p.opts.Dir, r.ID)
	}
	// The process listens where it was told to; keep that port.
	port := h.Port
	if port <= 0 || port > 65535 {
		return provider.Instance{}, fmt.Errorf("adopt %s: bad handle: port %d", r.ID, port)
	}
	if h.Runtime == "oci" {
		if !p.opts.OCI.usable() {
			return provider.Instance{}, fmt.Errorf("adopt container %s: the container runtime is unavailable", r.ID)
		}
		// The container listens inside its own namespace: no host port.
		rep := p.newReplica(r, dir, port)
		rep.oci = newOCIReplica(dir, h.Image, h.Limits)
		p.opts.OCI.acquire(h.Image)
		if p.opts.OCI.NoLimits != "" {
			rep.note = "resource limits not applied: " + p.opts.OCI.NoLimits
		}
		return p.adoptLocked(rep, pr, h), nil
	}
	if owner, taken := p.ports[port]; taken && owner != r.ID {
		p.log.Warn("adopted replica uses a port given to another replica", "replica", r.ID, "port", port, "other", owner)
	} else {
		p.ports[port] = r.ID
	}
	rep := p.newReplica(r, dir, port)
	rep.path = h.Command
	return p.adoptLocked(rep, pr, h), nil
}

// adoptLocked makes rep, whose process pr runs, supervised again.
func (p *Provider) adoptLocked(rep *replica, pr *proc, h handle) provider.Instance {
	rep.proc = pr
	rep.restarts = h.Restarts
	rep.startedAt = h.StartedAt
	if rep.startedAt.IsZero() {
		rep.startedAt = time.Now()
	}
	p.replicas[rep.id] = rep
	p.wg.Add(1)
	go rep.supervise()
	p.log.Info("replica adopted", "replica", rep.id, "deployment", rep.deployment, "pid", pr.pid, "port", rep.port, "container", rep.oci != nil)
	return rep.instance()
}

// Get implements provider.Provider.
func (p *Provider) Get(id string) (provider.Instance, error) {
	p.mu.Lock()
	rep := p.replicas[id]
	p.mu.Unlock()
	if rep == nil {
		return provider.Instance{}, fmt.Errorf("%s: %w", id, provider.ErrNotFound)
	}
	return rep.instance(), nil
}

// Stop implements provider.Provider. It sends SIGTERM to the replica's process
// group, waits up to grace for the group to exit and then sends SIGKILL. The
// replica is forgotten afterwards; its log directory stays until Remove. Stop
// also works after Close.
func (p *Provider) Stop(ctx context.Context, id string, grace time.Duration) error {
	p.mu.Lock()
	rep := p.replicas[id]
	p.mu.Unlock()
	if rep == nil {
		return nil
	}
	rep.mu.Lock()
	if !rep.stopping {
		rep.stopping = true
		close(rep.stopCh)
	}
	pr := rep.proc
	rep.mu.Unlock()

	if err := p.terminate(ctx, rep, pr, grace); err != nil {
		return err
	}
	select {
	case <-rep.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if rep.oci != nil {
		if err := p.cleanupOCI(ctx, id, rep.dir); err != nil {
			return fmt.Errorf("clean up container %s: %w", id, err)
		}
	}
	p.mu.Lock()
	if p.replicas[id] == rep {
		delete(p.replicas, id)
		if rep.oci != nil {
			defer p.opts.OCI.release(rep.oci.digest)
		}
		rep.mu.Lock()
		port := rep.port
		rep.mu.Unlock()
		if rep.oci == nil && p.ports[port] == id {
			delete(p.ports, port)
		}
	}
	p.mu.Unlock()
	rep.goneOnce.Do(func() { close(rep.gone) })
	p.log.Info("replica stopped", "replica", id)
	return nil
}

// terminate stops pr's process group: SIGTERM, up to grace, SIGKILL. For a
// container, runc relays SIGTERM to it, and the SIGKILL goes to the container
// through runc as well as to runc's group.
func (p *Provider) terminate(ctx context.Context, rep *replica, pr *proc, grace time.Duration) error {
	id := rep.id
	if pr == nil {
		return nil
	}
	kill := func() {
		if rep.oci != nil {
			// The container is in a process group of its own: only runc
			// reaches it, even when ctx is already done.
			kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := p.opts.OCI.Runc.Kill(kctx, id, syscall.SIGKILL); err != nil {
				p.log.Warn("runc kill", "replica", id, "err", err)
			}
		}
		pr.signal(syscall.SIGKILL)
	}
	gone := func() bool { return pr.poll() && !pr.groupAlive() }
	if gone() {
		return nil
	}
	pr.signal(syscall.SIGTERM)
	if waitUntil(ctx, time.Now().Add(grace), gone) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		kill()
		return err
	}
	p.log.Warn("replica did not exit after SIGTERM; killing", "replica", id, "pid", pr.pid, "grace", grace)
	kill()
	// SIGKILL cannot be ignored; wait for the leader to be gone (a member
	// stuck in uninterruptible sleep will die when it wakes).
	if waitUntil(ctx, time.Now().Add(10*time.Second), pr.poll) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return fmt.Errorf("replica %s (pid %d) did not exit after SIGKILL", id, pr.pid)
}

// waitUntil polls cond until it holds (true), the deadline passes or ctx is
// done (false). cond is checked at least once.
func waitUntil(ctx context.Context, deadline time.Time, cond func() bool) bool {
	const step = 20 * time.Millisecond
	for {
		if cond() {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		select {
		case <-ctx.Done():
			return cond()
		case <-time.After(min(step, left)):
		}
	}
}

// Remove deletes the log directory of a replica that is not running (stopped,
// or never started by this provider).
func (p *Provider) Remove(id string) error {
	if err := validID(id); err != nil {
		return err
	}
	p.mu.Lock()
	_, running := p.replicas[id]
	p.mu.Unlock()
	if running {
		return fmt.Errorf("replica %s is running; stop it first", id)
	}
	dir := filepath.Join(p.opts.Dir, id)
	if err := p.cleanupOCI(context.Background(), id, dir); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

// Close stops monitoring without stopping any process, so that a later server
// can adopt the replicas. It waits for the provider's goroutines to end.
func (p *Provider) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		close(p.closeCh)
		p.wg.Wait()
		close(p.nstop)
		<-p.ndone
		p.transport.CloseIdleConnections()
	})
	return nil
}

// allocPortLocked picks a free loopback TCP port not handed to another replica.
func (p *Provider) allocPortLocked(id string) (int, error) {
	var lastErr error
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			lastErr = err
			continue
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if _, taken := p.ports[port]; taken {
			continue
		}
		p.ports[port] = id
		return port, nil
	}
	if lastErr == nil {
		lastErr = errors.New("all candidates taken")
	}
	return 0, fmt.Errorf("allocate a loopback port: %w", lastErr)
}

// portFree reports whether port can be bound on loopback now.
func portFree(port int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// repickPort keeps rep's port if it can still be bound (the normal case after
// a crash) and allocates a new one otherwise. Called by the supervisor
// without rep.mu held.
func (p *Provider) repickPort(rep *replica) {
	rep.mu.Lock()
	old := rep.port
	rep.mu.Unlock()
	if portFree(old) {
		return
	}
	p.mu.Lock()
	port, err := p.allocPortLocked(rep.id)
	if err == nil && p.ports[old] == rep.id {
		delete(p.ports, old)
	}
	p.mu.Unlock()
	if err != nil {
		p.log.Warn("keeping busy port", "replica", rep.id, "port", old, "err", err)
		return
	}
	p.log.Info("replica port changed", "replica", rep.id, "old", old, "new", port)
	rep.mu.Lock()
	rep.port = port
	rep.mu.Unlock()
}

// notify queues an OnChange call for id.
func (p *Provider) notify(id string) {
	if p.opts.OnChange == nil {
		return
	}
	p.nmu.Lock()
	if !p.pendingSet[id] {
		p.pendingSet[id] = true
		p.pending = append(p.pending, id)
	}
	p.nmu.Unlock()
	select {
	case p.nwake <- struct{}{}:
	default:
	}
}

func (p *Provider) notifyLoop() {
	defer close(p.ndone)
	for {
		select {
		case <-p.nwake:
			p.flushNotifications()
		case <-p.nstop:
			p.flushNotifications()
			return
		}
	}
}

func (p *Provider) flushNotifications() {
	for {
		p.nmu.Lock()
		ids := p.pending
		p.pending = nil
		clear(p.pendingSet)
		p.nmu.Unlock()
		if len(ids) == 0 {
			return
		}
		for _, id := range ids {
			p.opts.OnChange(id)
		}
	}
}
