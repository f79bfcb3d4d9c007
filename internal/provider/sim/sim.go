// Package sim is an in-memory provider.Provider: replicas are map entries, not
// processes. It is for tests of everything above the provider (controller,
// server, placement at scale) and for simulating big fleets cheaply.
//
// A Sim starts replicas synchronously and makes them Ready at once (or keeps
// them Starting while Hold is on). Tests drive the rest of a replica's life
// with SetState, Crash, Release and Forget, make starts fail with FailStarts,
// and observe what the caller did with Running, Stopped and Starts.
//
// Close simulates the end of the server process that owned the provider: the
// replicas keep "running" but are detached, so Get reports ErrNotFound until
// Adopt re-attaches them, exactly what a new local provider sees after a
// restart. The Sim stays usable after Close and stands for the provider of the
// next server process.
package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/provider"
)

// Options configure a Sim.
type Options struct {
	// Cloud is the cloud's name; it appears in default endpoints.
	Cloud string
	// Runtimes the cloud runs; default ["process", "oci"].
	Runtimes []string
	// Missing is what MissingRuntimes reports: why a runtime is not offered.
	Missing map[string]string
	// OnChange is called with a replica's ID after every change the Sim makes
	// on its own or is told to make by a test (SetState, Crash, Release,
	// Hold(false), Forget). It is not called for Start, Adopt or Stop, whose
	// callers get the result directly. It is called outside the Sim's lock, on
	// the goroutine that made the change, and may call back into the Sim.
	OnChange func(replicaID string)
	// Endpoint, if set, gives the endpoint of a replica; default
	// "sim://<cloud>/<id>". Set it to return an http:// URL when the
	// endpoint must be accepted by the gateway.
	Endpoint func(replicaID string) string
	// OnStop, if set, is called with a replica's ID when Stop is called for a
	// replica the Sim runs, before the replica is removed; outside the lock.
	// Tests use it to order stops against other observations.
	OnStop func(replicaID string)
	// Now is the clock for StartedAt; default time.Now.
	Now func() time.Time
}

// Sim is an in-memory provider. All methods are safe for concurrent use.
type Sim struct {
	opts Options

	mu           sync.Mutex
	replicas     map[string]*replica
	stopped      []string
	failErr      error
	failOffering map[string]error // region/instanceType -> start error
	hold         bool
	health       error
	starts       int
	adopts       int
}

type replica struct {
	spec     provider.Replica
	inst     provider.Instance
	held     bool // Starting until Release or Hold(false)
	attached bool // false after Close until Adopt
}

var _ provider.Provider = (*Sim)(nil)

// Handle is what the Sim returns as provider.Instance.Handle, as JSON.
type Handle struct {
	ID string `json:"id"`
}

// New returns an empty Sim.
func New(opts Options) *Sim {
	if opts.Runtimes == nil {
		opts.Runtimes = []string{"process", "oci"}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Sim{opts: opts, replicas: map[string]*replica{}}
}

// MissingRuntimes implements provider.RuntimeReporter.
func (s *Sim) MissingRuntimes() map[string]string { return s.opts.Missing }

// Runtimes implements provider.Provider.
func (s *Sim) Runtimes() []string { return slices.Clone(s.opts.Runtimes) }

func (s *Sim) endpoint(id string) string {
	if s.opts.Endpoint != nil {
		return s.opts.Endpoint(id)
	}
	return "sim://" + s.opts.Cloud + "/" + id
}

func runtimeOf(spec v1.DeploymentSpec) string {
	if spec.Image != "" {
		return "oci"
	}
	return "process"
}

// Start implements provider.Provider. It fails with the error set by
// FailStarts, if any; otherwise the replica is Ready at once, or Starting
// while Hold is on.
func (s *Sim) Start(ctx context.Context, r provider.Replica) (provider.Instance, error) {
	if err := ctx.Err(); err != nil {
		return provider.Instance{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.starts++
	if s.failErr != nil {
		return provider.Instance{}, s.failErr
	}
	if err := s.failOffering[r.Region+"/"+r.InstanceType]; err != nil {
		return provider.Instance{}, err
	}
	if r.ID == "" {
		return provider.Instance{}, errors.New("sim: empty replica id")
	}
	if rt := runtimeOf(r.Spec); !slices.Contains(s.opts.Runtimes, rt) {
		return provider.Instance{}, fmt.Errorf("sim cloud %q cannot run %s workloads (runs %s)", s.opts.Cloud, rt, strings.Join(s.opts.Runtimes, ", "))
	}
	if _, ok := s.replicas[r.ID]; ok {
		return provider.Instance{}, fmt.Errorf("sim: replica %s is already running", r.ID)
	}
	h, _ := json.Marshal(Handle{ID: r.ID})
	rep := &replica{spec: r, attached: true, held: s.hold, inst: provider.Instance{
		ID: r.ID, State: v1.ReplicaReady, Endpoint: s.endpoint(r.ID), StartedAt: s.opts.Now(), Handle: h,
	}}
	if rep.held {
		rep.inst.State = v1.ReplicaStarting
	}
	s.replicas[r.ID] = rep
	return rep.instance(), nil
}

func (r *replica) instance() provider.Instance {
	in := r.inst
	in.Handle = slices.Clone(in.Handle)
	return in
}

// Adopt implements provider.Provider: it re-attaches a replica the Sim still
// runs (see Close) and returns ErrGone for one it does not (see Forget).
func (s *Sim) Adopt(ctx context.Context, r provider.Replica, raw json.RawMessage) (provider.Instance, error) {
	if err := ctx.Err(); err != nil {
		return provider.Instance{}, err
	}
	var h Handle
	if err := json.Unmarshal(raw, &h); err != nil {
		return provider.Instance{}, fmt.Errorf("sim: adopt %s: bad handle: %w", r.ID, err)
	}
	if h.ID != r.ID {
		return provider.Instance{}, fmt.Errorf("sim: adopt %s: handle is for %q", r.ID, h.ID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rep, ok := s.replicas[r.ID]
	if !ok {
		return provider.Instance{}, fmt.Errorf("sim: adopt %s: %w", r.ID, provider.ErrGone)
	}
	rep.attached = true
	s.adopts++
	return rep.instance(), nil
}

// Get implements provider.Provider. Replicas detached by Close are not found
// until adopted.
func (s *Sim) Get(id string) (provider.Instance, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rep, ok := s.replicas[id]
	if !ok || !rep.attached {
		return provider.Instance{}, fmt.Errorf("sim: %s: %w", id, provider.ErrNotFound)
	}
	return rep.instance(), nil
}

// Stop implements provider.Provider. Stopping a replica the Sim does not run
// is not an error and is not recorded in Stopped.
func (s *Sim) Stop(ctx context.Context, id string, grace time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	_, ok := s.replicas[id]
	s.mu.Unlock()
	if !ok {
		return nil
	}
	if s.opts.OnStop != nil {
		s.opts.OnStop(id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.replicas[id]; !ok {
		return nil // stopped concurrently
	}
	delete(s.replicas, id)
	s.stopped = append(s.stopped, id)
	return nil
}

// Logs implements provider.Provider: one fixed line per replica.
func (s *Sim) Logs(ctx context.Context, id string, opts provider.LogOptions) (io.ReadCloser, error) {
	s.mu.Lock()
	_, ok := s.replicas[id]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("sim: %s: %w", id, provider.ErrNotFound)
	}
	line := "sim replica " + id + "\n"
	if opts.TailBytes > 0 && int64(len(line)) > opts.TailBytes {
		line = line[int64(len(line))-opts.TailBytes:]
	}
	return io.NopCloser(strings.NewReader(line)), nil
}

// Close implements provider.Provider. It detaches every replica (they keep
// running, see the package comment); the Sim stays usable.
func (s *Sim) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rep := range s.replicas {
		rep.attached = false
	}
	return nil
}

// SetState sets a replica's observed state and message, as if the replica had
// changed on its own: e.g. BackOff (crashed), Ready (recovered), Starting
// (failing its health check) or Failed (gone for good). It releases a held
// replica. It returns ErrNotFound for a replica the Sim does not run.
func (s *Sim) SetState(id string, state v1.ReplicaState, msg string) error {
	return s.change(id, func(r *replica) {
		r.held = false
		r.inst.State, r.inst.Message = state, msg
	})
}

// Crash puts a replica into BackOff and counts a restart.
func (s *Sim) Crash(id string) error {
	return s.change(id, func(r *replica) {
		r.held = false
		r.inst.State = v1.ReplicaBackOff
		r.inst.Restarts++
		r.inst.Message = fmt.Sprintf("sim: crashed (restart %d)", r.inst.Restarts)
	})
}

// Release makes a held (Starting) replica Ready.
func (s *Sim) Release(id string) error {
	return s.change(id, func(r *replica) {
		if r.held {
			r.held = false
			r.inst.State, r.inst.Message = v1.ReplicaReady, ""
		}
	})
}

func (s *Sim) change(id string, f func(*replica)) error {
	s.mu.Lock()
	rep, ok := s.replicas[id]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("sim: %s: %w", id, provider.ErrNotFound)
	}
	f(rep)
	s.mu.Unlock()
	s.notify(id)
	return nil
}

func (s *Sim) notify(ids ...string) {
	if s.opts.OnChange == nil {
		return
	}
	for _, id := range ids {
		s.opts.OnChange(id)
	}
}

// Hold, when on, keeps replicas started from now on in Starting until
// Release. Turning it off makes every held replica Ready.
func (s *Sim) Hold(on bool) {
	s.mu.Lock()
	s.hold = on
	var released []string
	if !on {
		for id, rep := range s.replicas {
			if rep.held {
				rep.held = false
				rep.inst.State, rep.inst.Message = v1.ReplicaReady, ""
				released = append(released, id)
			}
		}
	}
	s.mu.Unlock()
	sort.Strings(released)
	s.notify(released...)
}

// FailOffering makes later starts of instanceType in region fail with err
// (e.g. one wrapping provider.ErrCapacity); nil clears it.
func (s *Sim) FailOffering(region, instanceType string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failOffering == nil {
		s.failOffering = map[string]error{}
	}
	if err == nil {
		delete(s.failOffering, region+"/"+instanceType)
		return
	}
	s.failOffering[region+"/"+instanceType] = err
}

// SetHealth makes Health report err (the cloud does not answer), or nil.
func (s *Sim) SetHealth(err error) {
	s.mu.Lock()
	s.health = err
	s.mu.Unlock()
}

// Health implements provider.HealthReporter.
func (s *Sim) Health() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.health
}

// FailStarts makes every later Start fail with err; nil clears it.
func (s *Sim) FailStarts(err error) {
	s.mu.Lock()
	s.failErr = err
	s.mu.Unlock()
}

// Forget simulates a replica vanishing behind the provider's back: Get then
// returns ErrNotFound and Adopt ErrGone. It is not recorded in Stopped.
func (s *Sim) Forget(id string) error {
	s.mu.Lock()
	_, ok := s.replicas[id]
	delete(s.replicas, id)
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("sim: %s: %w", id, provider.ErrNotFound)
	}
	s.notify(id)
	return nil
}

// Running returns the IDs of the replicas the Sim runs (attached or not), sorted.
func (s *Sim) Running() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.replicas))
	for id := range s.replicas {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// Stopped returns the IDs of the replicas stopped through Stop, in stop order.
func (s *Sim) Stopped() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.stopped)
}

// Starts returns how many times Start was called, failed calls included.
func (s *Sim) Starts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.starts
}

// Adopts returns how many times Adopt succeeded.
func (s *Sim) Adopts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.adopts
}

// Replica returns what a running replica was started as.
func (s *Sim) Replica(id string) (provider.Replica, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rep, ok := s.replicas[id]
	if !ok {
		return provider.Replica{}, false
	}
	return rep.spec, true
}
