// Package controller reconciles each deployment's desired state (from the
// store) with what the providers observe. It is level-triggered and
// idempotent: every pass reads the store and the providers afresh, decides,
// acts, and writes what it saw; it never assumes an earlier step succeeded.
package controller

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/cloud"
	"github.com/aloft-dev/aloft/internal/gateway"
	"github.com/aloft-dev/aloft/internal/placement"
	"github.com/aloft-dev/aloft/internal/provider"
	"github.com/aloft-dev/aloft/internal/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Router is the part of the gateway the controller drives.
type Router interface {
	SetAccess(deployment string, a gateway.Access)
	SetBackends(deployment string, backends []gateway.Backend)
	RemoveDeployment(deployment string)
	WaitIdle(ctx context.Context, replicaID string) error
}

// Options configure a Controller.
type Options struct {
	Store  store.Store
	Clouds *cloud.Registry
	Placer placement.Placer
	Router Router
	Logger *slog.Logger
	// Registerer receives the controller's metrics; nil means none.
	Registerer prometheus.Registerer
	// Resync is how often every deployment is reconciled without a trigger (default 1s).
	Resync time.Duration
	// DrainTimeout bounds the wait for in-flight requests before a replica stops (default 30s).
	DrainTimeout time.Duration
	// StopGrace is the SIGTERM-to-SIGKILL grace period (default 10s).
	StopGrace time.Duration
	// StartFailureBackoff is the first wait before retrying a replica that failed to start (default 1s, doubling to 1m).
	StartFailureBackoff time.Duration
	// Weights and RTTms tune the placement optimizer (zero: its defaults).
	Weights placement.Weights
	RTTms   map[[2]string]float64
	// AutoscaleInterval is how often the autoscaler samples the gateway and
	// decides (default 1s).
	AutoscaleInterval time.Duration
	// CapacityBlock is how long an offering whose provider reported no
	// capacity is avoided (default 5 minutes); placement re-plans at once.
	CapacityBlock time.Duration
	// RebalanceInterval is how often a deployment in a steady state is
	// checked for a placement better than its current one by more than the
	// churn of moving (default 1m; negative: never).
	RebalanceInterval time.Duration
	// ResolveSecret returns a secret's value for replicas' env; an error
	// wrapping store.ErrNotFound means the secret does not exist. Nil: specs
	// that reference secrets cannot start.
	ResolveSecret func(ctx context.Context, workspace, name string) (string, error)
}

// ErrSecretMissing marks a spec whose referenced secret does not exist.
var ErrSecretMissing = errors.New("secret not found")

// secretEnv resolves the spec's valueFrom references into NAME=value pairs.
func (c *Controller) secretEnv(ctx context.Context, workspace string, spec v1.DeploymentSpec) ([]string, error) {
	var env []string
	for _, e := range spec.Env {
		if e.ValueFrom == nil {
			continue
		}
		if c.opts.ResolveSecret == nil {
			return nil, fmt.Errorf("%w: secrets are not configured on this server (env %s needs secret %q)", ErrSecretMissing, e.Name, e.ValueFrom.Secret)
		}
		v, err := c.opts.ResolveSecret(ctx, workspace, e.ValueFrom.Secret)
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("%w: env %s needs secret %q, which does not exist in workspace %q; create it with aloft secret set %s",
				ErrSecretMissing, e.Name, e.ValueFrom.Secret, workspace, e.ValueFrom.Secret)
		}
		if err != nil {
			return nil, fmt.Errorf("secret %q for env %s: %w", e.ValueFrom.Secret, e.Name, err)
		}
		env = append(env, e.Name+"="+v)
	}
	return env, nil
}

// Controller reconciles deployments.
type Controller struct {
	opts    Options
	st      store.Store
	clouds  *cloud.Registry
	placer  placement.Placer
	router  Router
	log     *slog.Logger
	metrics *metrics

	queue chan struct{}
	mu    sync.Mutex
	dirty map[string]bool
	// owner maps replica ID to its deployment, so provider callbacks can trigger it.
	owner map[string]string
	// draining holds replicas whose stop is in progress in this process.
	draining map[string]bool
	// lastMsg de-duplicates repeated warnings (deployment/reason -> message).
	lastMsg map[string]string
	// backoff holds per-deployment retry state after start failures.
	backoff map[string]backoffState
	specs   map[string]v1.DeploymentSpec // "name/revision" -> spec cache
	// catalogs caches imported catalogs; blocks holds offerings that
	// reported no capacity.
	catalogs catalogs
	blocks   capacityBlocks
	scaler   scaler
	rebal    rebalanceState
	// down holds each cloud's last health: why it does not answer, or "".
	down   map[string]string
	wg     sync.WaitGroup
	synced chan struct{}
}

// Synced is closed once the first full reconcile has finished, i.e. every
// replica found in the store was adopted or replaced.
func (c *Controller) Synced() <-chan struct{} { return c.synced }

type backoffState struct {
	until time.Time
	wait  time.Duration
}

// New builds a controller; call Run to start it.
func New(opts Options) *Controller {
	if opts.Resync <= 0 {
		opts.Resync = time.Second
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 30 * time.Second
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = 10 * time.Second
	}
	if opts.StartFailureBackoff <= 0 {
		opts.StartFailureBackoff = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.AutoscaleInterval <= 0 {
		opts.AutoscaleInterval = time.Second
	}
	if opts.CapacityBlock <= 0 {
		opts.CapacityBlock = 5 * time.Minute
	}
	if opts.RebalanceInterval == 0 {
		opts.RebalanceInterval = time.Minute
	}
	if opts.Placer == nil {
		opts.Placer = placement.Optimizer{Weights: opts.Weights, RTTms: opts.RTTms}
	}
	return &Controller{
		opts: opts, st: opts.Store, clouds: opts.Clouds, placer: opts.Placer, router: opts.Router,
		log: opts.Logger, metrics: newMetrics(opts.Registerer),
		queue: make(chan struct{}, 1), dirty: map[string]bool{}, owner: map[string]string{},
		draining: map[string]bool{}, lastMsg: map[string]string{}, backoff: map[string]backoffState{},
		specs: map[string]v1.DeploymentSpec{}, synced: make(chan struct{}),
		rebal: rebalanceState{moving: map[string]move{}, last: map[string]time.Time{}},
		down:  map[string]string{},
	}
}

// Enqueue asks for a reconcile of one deployment soon.
func (c *Controller) Enqueue(name string) {
	c.mu.Lock()
	c.dirty[name] = true
	c.mu.Unlock()
	c.kick()
}

// EnqueueAll asks for a reconcile of every deployment soon.
func (c *Controller) EnqueueAll() { c.Enqueue("*") }

// ReplicaChanged is the providers' change callback.
func (c *Controller) ReplicaChanged(replicaID string) {
	c.mu.Lock()
	name, ok := c.owner[replicaID]
	c.mu.Unlock()
	if !ok {
		name = "*"
	}
	c.Enqueue(name)
}

func (c *Controller) kick() {
	select {
	case c.queue <- struct{}{}:
	default:
	}
}

// Run reconciles until ctx ends. It reconciles everything once at start, so a
// restarted server re-adopts or replaces the replicas it finds in the store.
func (c *Controller) Run(ctx context.Context) {
	t := time.NewTicker(c.opts.Resync)
	defer t.Stop()
	c.reconcileAll(ctx)
	close(c.synced)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.autoscaleLoop(ctx)
	}()
	for {
		select {
		case <-ctx.Done():
			c.wg.Wait()
			return
		case <-t.C:
			c.reconcileAll(ctx)
		case <-c.queue:
			c.mu.Lock()
			dirty := c.dirty
			c.dirty = map[string]bool{}
			c.mu.Unlock()
			if dirty["*"] {
				c.reconcileAll(ctx)
				continue
			}
			names := make([]string, 0, len(dirty))
			for n := range dirty {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				c.reconcileOne(ctx, n)
			}
		}
	}
}

func (c *Controller) reconcileAll(ctx context.Context) {
	deps, err := c.st.ListDeployments(ctx)
	if err != nil {
		c.metrics.errors.Inc()
		c.log.Error("list deployments", "err", err)
		return
	}
	for _, d := range deps {
		c.reconcileOne(ctx, d.Name)
	}
	c.cleanupOrphans(ctx, deps)
	c.updateReplicaGauge(ctx)
}

func (c *Controller) reconcileOne(ctx context.Context, name string) {
	if ctx.Err() != nil {
		return
	}
	start := time.Now()
	err := c.Reconcile(ctx, name)
	c.metrics.duration.Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil {
		c.metrics.errors.Inc()
		c.log.Error("reconcile", "deployment", name, "err", err)
	}
}

// observed is one replica record joined with what its provider reports.
type observed struct {
	rec   store.Replica
	cloud *cloud.Cloud
	ready bool
	gone  bool // provider lost it, or its cloud failed: replace it
	// unreachable: its cloud does not answer. It is replaced like a lost
	// replica but not stopped, and counts again once the cloud answers.
	unreachable bool
	why         string
}

// Reconcile brings one deployment one step closer to its desired state.
func (c *Controller) Reconcile(ctx context.Context, name string) error {
	d, err := c.st.GetDeployment(ctx, name)
	if err != nil {
		return err
	}
	recs, err := c.st.ListReplicas(ctx, name)
	if err != nil {
		return err
	}
	states, err := c.cloudStates(ctx)
	if err != nil {
		return err
	}
	obs := make([]*observed, 0, len(recs))
	for _, r := range recs {
		o, err := c.observe(ctx, r, states)
		if err != nil {
			return err
		}
		obs = append(obs, o)
	}

	// Replicas that are gone are replaced: their record goes, the count below
	// then asks placement for a new one.
	live := obs[:0:0]
	var lost []*observed
	unreachableN := 0
	for _, o := range obs {
		if o.unreachable {
			unreachableN++
			c.eventOnce(ctx, name, "Unreachable/"+o.rec.ID, "Warning", "ReplicaUnreachable", fmt.Sprintf("replica %s on %s is unreachable (%s); replacing it elsewhere, keeping it until its cloud answers", o.rec.ID, o.rec.Cloud, o.why))
			continue
		}
		c.clearOnce(name, "Unreachable/"+o.rec.ID)
		if o.gone && !o.rec.Draining {
			// Reported once: a pass while its stop is still running sees it again.
			if !c.stopping(o.rec.ID) {
				c.event(ctx, name, "Warning", "ReplicaLost", fmt.Sprintf("replica %s on %s lost: %s; replacing it", o.rec.ID, o.rec.Cloud, o.why))
			}
			lost = append(lost, o)
			continue
		}
		live = append(live, o)
	}
	defer func() {
		for _, o := range lost {
			c.stopAsync(ctx, o.rec, 0, false)
		}
	}()

	if d.DeletedAt != nil {
		// Replicas on an unreachable cloud hold the deletion until it answers.
		return c.reconcileDeletion(ctx, d, live, len(lost) > 0 || unreachableN > 0)
	}

	var current, obsolete []*observed
	c.forgetMoves(name, live, false)
	for _, o := range live {
		if o.rec.Draining {
			continue // stopped by stopDrained below (also resumes a drain after a restart)
		}
		if o.rec.Revision == d.Revision && o.rec.State != v1.ReplicaFailed && c.allowed(d.Spec, o.cloud, states) == "" && c.movingReason(o.rec.ID) == "" {
			current = append(current, o)
		} else {
			obsolete = append(obsolete, o)
		}
	}

	c.activation(d)
	desired := c.desiredFor(d)
	decision := placement.Decision{}
	switch {
	case len(current) < desired:
		decision, err = c.scaleUp(ctx, d, current, desired-len(current), states)
		if err != nil {
			return err
		}
		if decision.Unplaced > 0 {
			c.forgetMoves(name, live, true) // nowhere to move to: they stay
		}
	case len(current) > desired:
		c.scaleDown(ctx, d, current, len(current)-desired)
		current = c.notDraining(current)
	}

	// Rolling update and migration: an obsolete replica goes once the current
	// revision has enough ready replicas to carry the traffic without it.
	readyCurrent := countReady(current)
	readyObsolete := countReady(obsolete)
	sort.SliceStable(obsolete, func(i, j int) bool { return !obsolete[i].ready && obsolete[j].ready })
	// Of the records of failed starts only the newest is kept (for its message).
	var newestFailed *observed
	for _, o := range obsolete {
		if o.rec.State == v1.ReplicaFailed && (newestFailed == nil || o.rec.CreatedAt.After(newestFailed.rec.CreatedAt)) {
			newestFailed = o
		}
	}
	for _, o := range obsolete {
		why := c.obsoleteReason(d, o, states)
		switch {
		case o.rec.State == v1.ReplicaFailed && o != newestFailed:
			c.drain(ctx, o, fmt.Sprintf("replica %s failed to start; a newer attempt superseded it", o.rec.ID))
		case !o.ready && len(current) >= desired:
			c.drain(ctx, o, fmt.Sprintf("replica %s (%s) is not ready and its replacement exists", o.rec.ID, why))
		case o.ready && readyCurrent+readyObsolete-1 >= desired:
			readyObsolete--
			c.drain(ctx, o, fmt.Sprintf("replica %s %s; %d ready replica(s) of revision %d carry the traffic", o.rec.ID, why, readyCurrent, d.Revision))
		}
	}

	c.rebalance(ctx, d, current, obsolete, desired, states)

	pol, err := c.accessPolicy(ctx, d)
	if err != nil {
		return err // without its policy the deployment gets no (new) routes
	}
	c.router.SetAccess(name, pol)
	c.route(name, live)
	c.stopDrained(ctx, live)
	return c.writeStatus(ctx, d, live, desired, decision)
}

func (c *Controller) obsoleteReason(d store.Deployment, o *observed, states map[string]store.CloudState) string {
	if o.rec.Revision != d.Revision {
		return fmt.Sprintf("is of old revision %d", o.rec.Revision)
	}
	if o.rec.State == v1.ReplicaFailed {
		return "failed to start"
	}
	if why := c.movingReason(o.rec.ID); why != "" {
		return movedReason(why)
	}
	return "runs on " + o.rec.Cloud + ", which " + c.allowed(d.Spec, o.cloud, states)
}

func (c *Controller) notDraining(os []*observed) []*observed {
	out := os[:0:0]
	for _, o := range os {
		if !o.rec.Draining {
			out = append(out, o)
		}
	}
	return out
}

func countReady(os []*observed) int {
	n := 0
	for _, o := range os {
		if o.ready && !o.rec.Draining {
			n++
		}
	}
	return n
}

// planReplicas is how many replicas a dry-run plan places: the fixed count,
// or an autoscaled deployment's minimum (at least one, to show where it
// would run).
func planReplicas(s v1.DeploymentSpec) int {
	if autoscaled(s) {
		return max(s.Replicas.Min, 1)
	}
	return s.Replicas.Min
}

// runtimeFor says what kind of workload the spec is: an image runs as a
// container (its command, if any, replaces the image's entrypoint); a
// command alone runs as a process.
func runtimeFor(s v1.DeploymentSpec) string {
	if s.Image != "" {
		return "oci"
	}
	return "process"
}

// allowed returns "" if the cloud may host the spec's replicas now, else why not.
func (c *Controller) allowed(s v1.DeploymentSpec, cl *cloud.Cloud, states map[string]store.CloudState) string {
	if cl == nil {
		return "is no longer configured"
	}
	st := states[cl.Config.Name]
	switch {
	case st.Failed:
		return "has failed"
	case st.Cordoned:
		return "is cordoned"
	}
	p := s.Placement
	if len(p.Clouds) > 0 && !contains(p.Clouds, cl.Config.Name) {
		return "is not in placement.clouds"
	}
	if len(p.Regions) > 0 && !contains(p.Regions, cl.Config.Region) {
		return "is not in placement.regions"
	}
	for k, v := range p.Labels {
		if cl.Config.Labels[k] != v {
			return fmt.Sprintf("lacks label %s=%s", k, v)
		}
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (c *Controller) cloudStates(ctx context.Context) (map[string]store.CloudState, error) {
	list, err := c.st.ListCloudStates(ctx)
	if err != nil {
		return nil, err
	}
	m := make(map[string]store.CloudState, len(list))
	for _, s := range list {
		m[s.Name] = s
	}
	c.applyHealth(m)
	return m, nil
}

// observe joins a record with its provider's view, adopting replicas that an
// earlier server process started, and persists what changed.
func (c *Controller) observe(ctx context.Context, r store.Replica, states map[string]store.CloudState) (*observed, error) {
	c.mu.Lock()
	c.owner[r.ID] = r.Deployment
	c.mu.Unlock()
	o := &observed{rec: r}
	cl, ok := c.clouds.Get(r.Cloud)
	if !ok {
		o.gone, o.why = true, "cloud "+r.Cloud+" is no longer configured"
		return o, nil
	}
	o.cloud = cl
	if why := c.downReason(r.Cloud); why != "" {
		o.unreachable, o.why = true, why
		return o, nil
	}
	if states[r.Cloud].Failed {
		o.gone, o.why = true, "cloud "+r.Cloud+" has failed"
		return o, nil
	}
	if r.State == v1.ReplicaFailed {
		return o, nil // failed to start; kept for its message until replaced
	}
	inst, err := cl.Provider.Get(r.ID)
	if errors.Is(err, provider.ErrNotFound) {
		if len(r.Handle) == 0 {
			o.gone, o.why = true, "it was never started (the server stopped while starting it)"
			return o, nil
		}
		spec, serr := c.revisionSpec(ctx, r.Deployment, r.Revision)
		if serr != nil {
			return nil, serr
		}
		ws := ""
		if d, derr := c.st.GetDeployment(ctx, r.Deployment); derr == nil {
			ws = d.Workspace
		}
		env, _ := c.secretEnv(ctx, ws, spec) // a secret deleted since start: adopt anyway, restarts get what resolves
		inst, err = cl.Provider.Adopt(ctx, provider.Replica{ID: r.ID, Deployment: r.Deployment, Revision: r.Revision, Spec: spec, Env: env,
			Region: r.Region, Zone: r.Zone, InstanceType: r.InstanceType, Spot: r.Spot}, r.Handle)
		if errors.Is(err, provider.ErrGone) {
			o.gone, o.why = true, "its process is gone"
			return o, nil
		}
		if err == nil {
			c.event(ctx, r.Deployment, "Normal", "Adopted", fmt.Sprintf("re-adopted running replica %s on %s", r.ID, r.Cloud))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("observe replica %s: %w", r.ID, err)
	}
	if inst.State == v1.ReplicaFailed {
		o.gone, o.why = true, inst.Message
	}
	next := r
	next.State, next.Endpoint, next.Restarts, next.Message = inst.State, inst.Endpoint, inst.Restarts, inst.Message
	if !inst.StartedAt.IsZero() {
		t := inst.StartedAt
		next.StartedAt = &t
	}
	if len(inst.Handle) > 0 {
		next.Handle = inst.Handle
	}
	if r.Draining {
		next.State = v1.ReplicaDraining
	}
	if !sameReplica(r, next) {
		if err := c.st.PutReplica(ctx, next); err != nil {
			return nil, err
		}
		if r.State != next.State && !r.Draining {
			c.replicaTransition(ctx, r, next)
		}
	}
	o.rec = next
	o.ready = inst.State == v1.ReplicaReady && !r.Draining
	return o, nil
}

func (c *Controller) replicaTransition(ctx context.Context, before, after store.Replica) {
	switch after.State {
	case v1.ReplicaReady:
		c.event(ctx, after.Deployment, "Normal", "ReplicaReady", fmt.Sprintf("replica %s on %s is ready at %s", after.ID, after.Cloud, after.Endpoint))
	case v1.ReplicaBackOff:
		c.event(ctx, after.Deployment, "Warning", "ReplicaCrashed", fmt.Sprintf("replica %s on %s crashed (restart %d): %s", after.ID, after.Cloud, after.Restarts, after.Message))
	case v1.ReplicaStarting:
		if before.State == v1.ReplicaReady {
			c.event(ctx, after.Deployment, "Warning", "ReplicaUnready", fmt.Sprintf("replica %s on %s stopped passing its health check", after.ID, after.Cloud))
		}
	}
}

func sameReplica(a, b store.Replica) bool {
	ta, tb := a.StartedAt, b.StartedAt
	a.StartedAt, b.StartedAt = nil, nil
	ha, hb := a.Handle, b.Handle
	a.Handle, b.Handle = nil, nil
	sameTime := (ta == nil) == (tb == nil) && (ta == nil || ta.Equal(*tb))
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return sameTime && string(ja) == string(jb) && string(ha) == string(hb)
}

func (c *Controller) revisionSpec(ctx context.Context, name string, rev int64) (v1.DeploymentSpec, error) {
	key := fmt.Sprintf("%s/%d", name, rev)
	c.mu.Lock()
	s, ok := c.specs[key]
	c.mu.Unlock()
	if ok {
		return s, nil
	}
	r, err := c.st.GetRevision(ctx, name, rev)
	if err != nil {
		return s, fmt.Errorf("revision %d of %s: %w", rev, name, err)
	}
	c.mu.Lock()
	c.specs[key] = r.Spec
	c.mu.Unlock()
	return r.Spec, nil
}

// freeCapacity is each cloud's capacity minus what every stored replica uses.
func (c *Controller) freeCapacity(ctx context.Context) (map[string]placement.Free, error) {
	all, err := c.st.ListAllReplicas(ctx)
	if err != nil {
		return nil, err
	}
	free := map[string]placement.Free{}
	live := map[string]bool{}
	for _, cl := range c.clouds.List() {
		f, ok, err := liveFree(cl)
		if err != nil {
			return nil, err
		}
		if !ok {
			if f, err = capacityOf(cl.Config.Capacity); err != nil {
				return nil, fmt.Errorf("cloud %s: %w", cl.Config.Name, err)
			}
		}
		free[cl.Config.Name], live[cl.Config.Name] = f, ok
	}
	for _, r := range all {
		f, ok := free[r.Cloud]
		if !ok || r.State == v1.ReplicaFailed {
			continue // a replica that failed (to start) runs nothing
		}
		if live[r.Cloud] && r.State != v1.ReplicaStarting {
			continue // the cloud's own count has it already
		}
		if req, ok := c.requestOf(ctx, r); ok {
			free[r.Cloud] = minus(f, req)
		}
	}
	return free, nil
}

// Usage reports what the stored replicas use on each cloud.
func (c *Controller) Usage(ctx context.Context) (map[string]v1.Capacity, error) {
	free, err := c.freeCapacity(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]v1.Capacity{}
	for _, cl := range c.clouds.List() {
		total, _ := capacityOf(cl.Config.Capacity)
		if _, ok := cl.Provider.(provider.CapacityReporter); ok {
			// The cloud reports its free capacity, not a total: count
			// aloft's replicas there against zero instead.
			total = placement.Free{}
			if free, err = c.usedOnly(ctx, cl.Config.Name, free); err != nil {
				return nil, err
			}
		}
		f := free[cl.Config.Name]
		u := v1.Capacity{CPU: roundMilli(total.CPU - f.CPU), Memory: formatBytes(total.MemoryBytes - f.MemoryBytes)}
		keys := map[string]bool{}
		for k := range total.GPUs {
			keys[k] = true
		}
		for k := range f.GPUs {
			keys[k] = true
		}
		for k := range keys {
			if n := total.GPUs[k] - f.GPUs[k]; n > 0 {
				if u.GPUs == nil {
					u.GPUs = map[string]int{}
				}
				u.GPUs[k] = n
			}
		}
		out[cl.Config.Name] = u
	}
	return out, nil
}

// requestOf is what a replica's revision asks for; false when its
// deployment or revision is gone.
func (c *Controller) requestOf(ctx context.Context, r store.Replica) (v1.ResourceRequest, bool) {
	spec, err := c.revisionSpec(ctx, r.Deployment, r.Revision)
	if err != nil {
		return v1.ResourceRequest{}, false
	}
	req, err := spec.Resources.Normalized()
	return req, err == nil
}

// minus is f less one replica of req (f's GPU map is not modified).
func minus(f placement.Free, req v1.ResourceRequest) placement.Free {
	f.CPU -= req.CPU
	f.MemoryBytes -= req.MemoryBytes
	if req.GPUCount > 0 {
		g := make(map[string]int, len(f.GPUs)+1)
		for k, v := range f.GPUs {
			g[k] = v
		}
		g[req.GPUType] -= req.GPUCount
		f.GPUs = g
	}
	return f
}

// usedOnly replaces free[name] with minus the requests of aloft's replicas
// on that cloud, so that Usage's total - free is what they use.
func (c *Controller) usedOnly(ctx context.Context, name string, free map[string]placement.Free) (map[string]placement.Free, error) {
	recs, err := c.st.ListAllReplicas(ctx)
	if err != nil {
		return nil, err
	}
	var f placement.Free
	for _, r := range recs {
		if r.Cloud != name || r.State == v1.ReplicaFailed {
			continue
		}
		if req, ok := c.requestOf(ctx, r); ok {
			f = minus(f, req)
		}
	}
	out := make(map[string]placement.Free, len(free))
	for k, v := range free {
		out[k] = v
	}
	out[name] = f
	return out, nil
}

func roundMilli(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

func formatBytes(b int64) string {
	const mi = 1 << 20
	return fmt.Sprintf("%dMi", b/mi)
}

func capacityOf(c v1.Capacity) (placement.Free, error) {
	var mem int64
	if c.Memory != "" {
		var err error
		if mem, err = v1.ParseQuantity(c.Memory); err != nil {
			return placement.Free{}, err
		}
	}
	g := map[string]int{}
	for k, v := range c.GPUs {
		g[k] = v
	}
	return placement.Free{CPU: c.CPU, MemoryBytes: mem, GPUs: g}, nil
}

// cloudReplicas counts the replicas of every deployment that run (or
// start, or drain) now per {cloud, region}, for the clouds' quotas. A
// replica without a region of its own (not placed on a catalog offering)
// is in its cloud's region.
func (c *Controller) cloudReplicas(ctx context.Context) (map[[2]string]int, error) {
	all, err := c.st.ListAllReplicas(ctx)
	if err != nil {
		return nil, err
	}
	out := map[[2]string]int{}
	for _, r := range all {
		if r.State == v1.ReplicaFailed {
			continue
		}
		region := r.Region
		if region == "" {
			if cl, ok := c.clouds.Get(r.Cloud); ok {
				region = cl.Config.Region
			}
		}
		out[[2]string{r.Cloud, region}]++
	}
	return out, nil
}

func (c *Controller) placementRequest(ctx context.Context, spec v1.DeploymentSpec, count int, current []*observed, states map[string]store.CloudState) (placement.Request, error) {
	res, err := spec.Resources.Normalized()
	if err != nil {
		return placement.Request{}, err
	}
	free, err := c.freeCapacity(ctx)
	if err != nil {
		return placement.Request{}, err
	}
	offerings, err := c.catalogOfferings(ctx, states)
	if err != nil {
		return placement.Request{}, err
	}
	existing := map[string]int{}
	running := map[string]int{}
	for _, o := range current {
		existing[o.rec.Cloud]++
		running[offeringOf(o.rec)]++
	}
	req := placement.Request{
		Deployment: spec.Name, Runtime: runtimeFor(spec), Resources: res, Placement: spec.Placement,
		Count: count, Existing: existing, Offerings: offerings,
	}
	for id, n := range running {
		req.Current = append(req.Current, placement.Running{OfferingID: id, Count: n})
	}
	if req.CloudReplicas, err = c.cloudReplicas(ctx); err != nil {
		return placement.Request{}, err
	}
	slices.SortFunc(req.Current, func(a, b placement.Running) int { return strings.Compare(a.OfferingID, b.OfferingID) })
	for _, cl := range c.clouds.List() {
		st := states[cl.Config.Name]
		req.Clouds = append(req.Clouds, placement.Cloud{
			Config: cl.Config, Runtimes: cl.Provider.Runtimes(), Cordoned: st.Cordoned, Failed: st.Failed,
			Free: free[cl.Config.Name],
		})
	}
	return req, nil
}

// Plan is a dry run of the optimizer for spec over every cloud's offerings
// now: where its desired replicas would run, at what cost, and why every
// other candidate was not chosen. The replicas of the deployment of that
// name that run now count as current when withCurrent (moving them costs
// churn). Nothing is
// stored or started.
func (c *Controller) Plan(ctx context.Context, spec v1.DeploymentSpec, withCurrent bool) (placement.DeploymentPlan, error) {
	states, err := c.cloudStates(ctx)
	if err != nil {
		return placement.DeploymentPlan{}, err
	}
	var current []*observed
	if recs, err := c.st.ListReplicas(ctx, spec.Name); err == nil && withCurrent {
		for _, r := range recs {
			if !r.Draining && r.State != v1.ReplicaFailed {
				current = append(current, &observed{rec: r})
			}
		}
	}
	req, err := c.placementRequest(ctx, spec, planReplicas(spec), current, states)
	if err != nil {
		return placement.DeploymentPlan{}, err
	}
	offerings, why := placement.CloudOfferings(req)
	offerings = append(offerings, req.Offerings...)
	d := placement.Demand{
		Deployment: spec.Name, Replicas: planReplicas(spec), Runtime: req.Runtime,
		Resources: req.Resources, Placement: spec.Placement, Current: req.Current,
	}
	plan := placement.Optimize(placement.Problem{
		Demands: []placement.Demand{d}, Offerings: offerings, Weights: c.opts.Weights,
		RTTms: placement.RTTTable(spec.Placement.Traffic, offerings, c.opts.RTTms), Quotas: placement.RequestQuotas(req, offerings),
	}).Deployments[0]
	for i, r := range plan.Rejected {
		if extra := why[r.Candidate]; extra != "" {
			plan.Rejected[i].Reason = extra
		}
	}
	return plan, nil
}

func (c *Controller) scaleUp(ctx context.Context, d store.Deployment, current []*observed, n int, states map[string]store.CloudState) (placement.Decision, error) {
	c.mu.Lock()
	bo := c.backoff[d.Name]
	c.mu.Unlock()
	if time.Now().Before(bo.until) {
		return placement.Decision{}, nil
	}
	env, err := c.secretEnv(ctx, d.Workspace, d.Spec)
	if err != nil {
		// No replica starts without its secrets: the deployment waits.
		c.eventOnce(ctx, d.Name, "Secrets", "Warning", "SecretMissing", err.Error())
		return placement.Decision{Unplaced: n, Reason: err.Error(), Blocked: true}, nil
	}
	c.clearOnce(d.Name, "Secrets")
	req, err := c.placementRequest(ctx, d.Spec, n, current, states)
	if err != nil {
		return placement.Decision{}, err
	}
	dec := c.placer.Place(req)
	for _, r := range dec.Rejected {
		c.eventOnce(ctx, d.Name, "Rejected/"+r.Cloud, "Normal", "CloudRejected", fmt.Sprintf("%s: %s", r.Cloud, r.Reason))
	}
	if dec.Unplaced > 0 {
		c.eventOnce(ctx, d.Name, "Unplaced", "Warning", "PlacementFailed", fmt.Sprintf("%d replica(s) cannot be placed: %s", dec.Unplaced, dec.Reason))
	} else {
		c.clearOnce(d.Name, "Unplaced")
	}
	if dec.Warning != "" {
		c.eventOnce(ctx, d.Name, "Spread", "Warning", "SpreadNotMet", dec.Warning)
	}
	failed := false
	for _, r := range c.startAll(ctx, d, dec.Placed, env) {
		ch, err := r.choice, r.err
		switch {
		case errors.Is(err, provider.ErrCapacity):
			// Fail over now: the offering is blocked for a while and the
			// next pass places the replica on the next-best one.
			until := time.Now().Add(c.opts.CapacityBlock)
			id := ch.OfferingID
			if id == "" {
				id = ch.Cloud
			}
			c.blocks.block(id, err.Error(), until)
			c.event(ctx, d.Name, "Warning", "CapacityBlocked", fmt.Sprintf("%s has no capacity (%v); avoided until %s, re-planning", id, err, until.UTC().Format(time.RFC3339)))
			c.Enqueue(d.Name)
		case err != nil:
			failed = true
		}
	}
	c.mu.Lock()
	if failed {
		wait := bo.wait * 2
		if wait == 0 {
			wait = c.opts.StartFailureBackoff
		}
		wait = min(wait, time.Minute)
		c.backoff[d.Name] = backoffState{until: time.Now().Add(wait), wait: wait}
	} else if len(dec.Placed) > 0 {
		delete(c.backoff, d.Name)
	}
	c.mu.Unlock()
	return dec, nil
}

type startResult struct {
	choice placement.Choice
	err    error
}

// startAll starts the placed replicas: one cloud after the other within a
// cloud (a provider may serialize them anyway, e.g. one Kubernetes
// Deployment per revision), the clouds in parallel, since a start can be
// an API round trip. Results come back in the order of placed.
func (c *Controller) startAll(ctx context.Context, d store.Deployment, placed []placement.Choice, env []string) []startResult {
	out := make([]startResult, len(placed))
	byCloud := map[string][]int{}
	var order []string
	for i, ch := range placed {
		out[i].choice = ch
		if _, ok := byCloud[ch.Cloud]; !ok {
			order = append(order, ch.Cloud)
		}
		byCloud[ch.Cloud] = append(byCloud[ch.Cloud], i)
	}
	if len(order) == 1 {
		for i, ch := range placed {
			out[i].err = c.startReplica(ctx, d, ch, env)
		}
		return out
	}
	var wg sync.WaitGroup
	for _, cloud := range order {
		wg.Add(1)
		go func(idx []int) {
			defer wg.Done()
			for _, i := range idx {
				out[i].err = c.startReplica(ctx, d, placed[i], env)
			}
		}(byCloud[cloud])
	}
	wg.Wait()
	return out
}

// startReplica writes the record first (so a crash leaves something to
// reconcile), then asks the provider to start it.
func (c *Controller) startReplica(ctx context.Context, d store.Deployment, ch placement.Choice, env []string) error {
	cl, _ := c.clouds.Get(ch.Cloud)
	rec := store.Replica{
		ID: newReplicaID(d.Name), Deployment: d.Name, Revision: d.Revision, Cloud: ch.Cloud,
		State: v1.ReplicaPending, HourlyCost: ch.HourlyCost, CreatedAt: time.Now(),
		Zone: ch.Zone, InstanceType: ch.InstanceType, Spot: ch.Spot,
	}
	if ch.InstanceType != "" {
		rec.Region = ch.Region
	}
	if err := c.st.PutReplica(ctx, rec); err != nil {
		return err
	}
	c.mu.Lock()
	c.owner[rec.ID] = d.Name
	c.mu.Unlock()
	c.event(ctx, d.Name, "Normal", "Placed", fmt.Sprintf("replica %s (revision %d) on %s/%s: %s", rec.ID, d.Revision, ch.Cloud, ch.Region, ch.Reason))
	inst, err := cl.Provider.Start(ctx, provider.Replica{
		ID: rec.ID, Deployment: d.Name, Revision: d.Revision, Spec: d.Spec, Env: env,
		Region: ch.Region, Zone: ch.Zone, InstanceType: ch.InstanceType, Spot: ch.Spot,
	})
	if err != nil {
		rec.State, rec.Message = v1.ReplicaFailed, err.Error()
		c.event(ctx, d.Name, "Warning", "StartFailed", fmt.Sprintf("replica %s on %s failed to start: %v", rec.ID, ch.Cloud, err))
		if perr := c.st.PutReplica(ctx, rec); perr != nil {
			return perr
		}
		return err
	}
	rec.State, rec.Endpoint, rec.Handle = inst.State, inst.Endpoint, inst.Handle
	if !inst.StartedAt.IsZero() {
		t := inst.StartedAt
		rec.StartedAt = &t
	}
	return c.st.PutReplica(ctx, rec)
}

func (c *Controller) scaleDown(ctx context.Context, d store.Deployment, current []*observed, n int) {
	members := make([]placement.Member, 0, len(current))
	byID := map[string]*observed{}
	for _, o := range current {
		members = append(members, placement.Member{ID: o.rec.ID, Cloud: o.rec.Cloud, Ready: o.ready, HourlyCost: o.rec.HourlyCost})
		byID[o.rec.ID] = o
	}
	for _, id := range placement.Victims(members, n, d.Spec.Placement.Spread.MinClouds) {
		o := byID[id]
		c.drain(ctx, o, fmt.Sprintf("scaling down to %d: removing replica %s on %s ($%.4f/h, ready=%v)", len(current)-n, id, o.rec.Cloud, o.rec.HourlyCost, o.ready))
	}
}

// reconcileDeletion drains every live replica and removes the deployment once
// none is left; lostPending says lost replicas still have records (their stop
// starts when this pass ends), so the deployment must wait for them too.
func (c *Controller) reconcileDeletion(ctx context.Context, d store.Deployment, live []*observed, lostPending bool) error {
	for _, o := range live {
		c.drain(ctx, o, fmt.Sprintf("deployment deleted: draining replica %s", o.rec.ID))
	}
	if len(live) > 0 || lostPending {
		c.router.SetBackends(d.Name, nil)
		c.stopDrained(ctx, live)
		return c.writeStatus(ctx, d, live, 0, placement.Decision{})
	}
	c.mu.Lock()
	busy := false
	for id := range c.draining {
		if c.owner[id] == d.Name {
			busy = true
		}
	}
	c.mu.Unlock()
	if busy {
		return nil
	}
	c.router.RemoveDeployment(d.Name)
	c.forgetScaler(d.Name)
	c.forget(d.Name)
	c.log.Info("deployment removed", "deployment", d.Name)
	return c.st.RemoveDeployment(ctx, d.Name)
}

func (c *Controller) forget(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.lastMsg {
		if len(k) > len(name) && k[:len(name)+1] == name+"/" {
			delete(c.lastMsg, k)
		}
	}
	delete(c.backoff, name)
	delete(c.rebal.last, name)
	for id, m := range c.rebal.moving {
		if m.deployment == name {
			delete(c.rebal.moving, id)
		}
	}
	for id, dep := range c.owner {
		if dep == name {
			delete(c.owner, id)
		}
	}
}

// stopping reports whether a stop of the replica is in progress in this process.
func (c *Controller) stopping(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.draining[id]
}

// drain marks a replica Draining in the store; the reconcile pass then takes
// it out of routing and only after that starts stopping it (see Reconcile).
func (c *Controller) drain(ctx context.Context, o *observed, why string) {
	if o.rec.Draining {
		return
	}
	r := o.rec
	r.Draining = true
	r.State = v1.ReplicaDraining
	if err := c.st.PutReplica(ctx, r); err != nil {
		c.log.Error("mark draining", "replica", r.ID, "err", err)
		return
	}
	o.rec = r
	o.ready = false
	c.event(ctx, r.Deployment, "Normal", "Draining", why)
}

// stopDrained starts stopping every draining replica; call it after route so
// the gateway no longer sends them new requests.
func (c *Controller) stopDrained(ctx context.Context, live []*observed) {
	for _, o := range live {
		if o.rec.Draining {
			c.stopAsync(ctx, o.rec, c.opts.StopGrace, true)
		}
	}
}

// stopAsync stops a replica in the background (waiting for in-flight requests
// first when wait is set) and then deletes its record.
func (c *Controller) stopAsync(ctx context.Context, r store.Replica, grace time.Duration, wait bool) {
	c.mu.Lock()
	if c.draining[r.ID] {
		c.mu.Unlock()
		return
	}
	c.draining[r.ID] = true
	c.owner[r.ID] = r.Deployment
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer func() {
			c.mu.Lock()
			delete(c.draining, r.ID)
			c.mu.Unlock()
			c.Enqueue(r.Deployment)
		}()
		if wait {
			wctx, cancel := context.WithTimeout(ctx, c.opts.DrainTimeout)
			c.router.WaitIdle(wctx, r.ID)
			cancel()
		}
		if ctx.Err() != nil {
			return // server shutting down: the record stays, the next server resumes
		}
		if cl, ok := c.clouds.Get(r.Cloud); ok {
			if err := cl.Provider.Stop(ctx, r.ID, grace); err != nil {
				c.log.Error("stop replica", "replica", r.ID, "err", err)
				return
			}
			if rm, ok := cl.Provider.(interface{ Remove(string) error }); ok {
				rm.Remove(r.ID)
			}
		}
		if err := c.st.DeleteReplica(ctx, r.ID); err != nil {
			c.log.Error("delete replica record", "replica", r.ID, "err", err)
			return
		}
		c.event(ctx, r.Deployment, "Normal", "Stopped", fmt.Sprintf("replica %s on %s stopped", r.ID, r.Cloud))
		c.mu.Lock()
		delete(c.owner, r.ID)
		c.mu.Unlock()
	}()
}

func (c *Controller) route(name string, live []*observed) {
	var backends []gateway.Backend
	for _, o := range live {
		if o.ready && !o.rec.Draining && o.rec.Endpoint != "" {
			b := gateway.Backend{ReplicaID: o.rec.ID, Cloud: o.rec.Cloud, URL: o.rec.Endpoint}
			if o.cloud != nil {
				if d, ok := o.cloud.Provider.(provider.Dialer); ok {
					b.Dial = d.Dialer(o.rec.ID)
				}
			}
			backends = append(backends, b)
		}
	}
	c.router.SetBackends(name, backends)
}

// cleanupOrphans stops replicas whose deployment no longer exists.
func (c *Controller) cleanupOrphans(ctx context.Context, deps []store.Deployment) {
	all, err := c.st.ListAllReplicas(ctx)
	if err != nil {
		return
	}
	exists := map[string]bool{}
	for _, d := range deps {
		exists[d.Name] = true
	}
	for _, r := range all {
		if !exists[r.Deployment] {
			c.stopAsync(ctx, r, 0, false)
		}
	}
}

func (c *Controller) event(ctx context.Context, deployment, typ, reason, msg string) {
	c.metrics.events.WithLabelValues(reason).Inc()
	level := slog.LevelInfo
	if typ == "Warning" {
		level = slog.LevelWarn
	}
	c.log.Log(ctx, level, msg, "deployment", deployment, "reason", reason)
	if _, err := c.st.AddEvent(ctx, v1.Event{Deployment: deployment, Type: typ, Reason: reason, Message: msg}); err != nil {
		c.log.Error("record event", "err", err)
	}
}

// eventOnce records an event only when its message differs from the last one
// recorded under the same key, so a persisting condition is not repeated each pass.
func (c *Controller) eventOnce(ctx context.Context, deployment, key, typ, reason, msg string) {
	k := deployment + "/" + key
	c.mu.Lock()
	same := c.lastMsg[k] == msg
	c.lastMsg[k] = msg
	c.mu.Unlock()
	if !same {
		c.event(ctx, deployment, typ, reason, msg)
	}
}

func (c *Controller) clearOnce(deployment, key string) {
	c.mu.Lock()
	delete(c.lastMsg, deployment+"/"+key)
	c.mu.Unlock()
}

const idAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

func newReplicaID(deployment string) string {
	b := make([]byte, 6)
	for i := range b {
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(idAlphabet))))
		b[i] = idAlphabet[n.Int64()]
	}
	return deployment + "-" + string(b)
}
