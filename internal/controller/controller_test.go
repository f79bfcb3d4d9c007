package controller_test

// Scenario tests of the controller's decisions. Each test runs the real
// controller over a real SQLite store, three simulated clouds (the default
// local-a/b/c configs backed by internal/provider/sim) and the real gateway
// behind a recording Router, and drives Reconcile step by step, so every
// intermediate state can be asserted. Replica stops run in the controller's
// background goroutines; tests wait for them by polling with a deadline.
//
// Prices of the default 0.5 CPU / 256Mi replica: local-b $0.0160/h (cheapest,
// 4 CPU), local-a $0.02125/h, local-c $0.0265/h.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/cloud"
	"github.com/aloft-dev/aloft/internal/controller"
	"github.com/aloft-dev/aloft/internal/gateway"
	"github.com/aloft-dev/aloft/internal/provider"
	"github.com/aloft-dev/aloft/internal/provider/sim"
	"github.com/aloft-dev/aloft/internal/store"
)

const (
	cloudA = "local-a" // us, mid price
	cloudB = "local-b" // eu, cheapest, 4 CPU / 8Gi
	cloudC = "local-c" // us, dearest, 16 CPU / 32Gi
)

const waitTimeout = 15 * time.Second

// ---------------------------------------------------------------------------
// Harness

// entry is one observation in the journal shared by the router and the sims,
// so that the order of routing changes and provider stops can be asserted.
type entry struct {
	kind string // "route", "remove" (router) or "stop" (provider)
	dep  string
	id   string   // stop
	ids  []string // route: the replica IDs set as backends, sorted
}

type journal struct {
	mu      sync.Mutex
	entries []entry
}

func (j *journal) add(e entry) {
	j.mu.Lock()
	j.entries = append(j.entries, e)
	j.mu.Unlock()
}

func (j *journal) snapshot() []entry {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.entries)
}

// recRouter records every routing change in the journal and passes it on to
// the real gateway.
type recRouter struct {
	gw *gateway.Gateway
	j  *journal
}

func (r *recRouter) SetBackends(dep string, bs []gateway.Backend) {
	// Let goroutines the controller started earlier in this pass run first,
	// so that a stop started before the routing change would be recorded
	// before it (the ordering assertions below are then not at the mercy of
	// the scheduler favouring the reconciling goroutine).
	for range 20 {
		runtime.Gosched()
	}
	ids := make([]string, 0, len(bs))
	for _, b := range bs {
		ids = append(ids, b.ReplicaID)
	}
	sort.Strings(ids)
	r.j.add(entry{kind: "route", dep: dep, ids: ids})
	r.gw.SetBackends(dep, bs)
}

func (r *recRouter) RemoveDeployment(dep string) {
	r.j.add(entry{kind: "remove", dep: dep})
	r.gw.RemoveDeployment(dep)
}

func (r *recRouter) SetAccess(dep string, a gateway.Access) { r.gw.SetAccess(dep, a) }

func (r *recRouter) WaitIdle(ctx context.Context, id string) error { return r.gw.WaitIdle(ctx, id) }

type envConfig struct {
	clouds   []v1.CloudConfig  // default v1.DefaultClouds()
	runtimes []string          // of every sim; default the sim's
	missing  map[string]string // every sim's MissingRuntimes
	backoff  time.Duration     // StartFailureBackoff; default 1 minute (no retry within a test)
	resync   time.Duration
	// rebalance is RebalanceInterval; 0 means never (tests that want it set it).
	rebalance time.Duration
	// onStop, if set, runs when a sim is asked to stop a replica, before it
	// stops (it may block).
	onStop func(id string)
}

type env struct {
	t    *testing.T
	ctx  context.Context
	cfg  envConfig
	st   *store.SQLite
	sims map[string]*sim.Sim
	j    *journal
	// backend is the HTTP server every sim replica's endpoint points at, so
	// requests through the real gateway succeed when a replica is routed.
	backend *httptest.Server

	// One "server process": replaced by restart.
	reg *cloud.Registry
	gw  *gateway.Gateway
	ctl *controller.Controller
	cur atomic.Pointer[controller.Controller] // for the sims' OnChange
}

func newEnv(t *testing.T, cfg envConfig) *env {
	t.Helper()
	if cfg.clouds == nil {
		cfg.clouds = v1.DefaultClouds()
	}
	if cfg.backoff == 0 {
		cfg.backoff = time.Minute
	}
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "aloft.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	t.Cleanup(backend.Close)
	e := &env{t: t, ctx: t.Context(), cfg: cfg, st: st, sims: map[string]*sim.Sim{}, j: &journal{}, backend: backend}
	for _, c := range cfg.clouds {
		e.sims[c.Name] = sim.New(sim.Options{
			Cloud:    c.Name,
			Runtimes: cfg.runtimes,
			Missing:  cfg.missing,
			OnChange: func(id string) {
				if ctl := e.cur.Load(); ctl != nil {
					ctl.ReplicaChanged(id)
				}
			},
			Endpoint: func(string) string { return backend.URL },
			OnStop: func(id string) {
				e.j.add(entry{kind: "stop", id: id})
				if cfg.onStop != nil {
					cfg.onStop(id)
				}
			},
		})
	}
	e.startServer()
	return e
}

// startServer builds what one server process has: registry, gateway, controller.
func rebalanceInterval(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

func (e *env) startServer() {
	e.t.Helper()
	reg, err := cloud.NewRegistry(e.cfg.clouds, func(c v1.CloudConfig) (provider.Provider, error) {
		return e.sims[c.Name], nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	gw := gateway.New(gateway.Options{})
	ctl := controller.New(controller.Options{
		Store: e.st, Clouds: reg, Router: &recRouter{gw: gw, j: e.j},
		Resync: e.cfg.resync, DrainTimeout: 2 * time.Second, StopGrace: 10 * time.Millisecond,
		StartFailureBackoff: e.cfg.backoff, RebalanceInterval: rebalanceInterval(e.cfg.rebalance),
	})
	e.reg, e.gw, e.ctl = reg, gw, ctl
	e.cur.Store(ctl)
	t := e.t
	t.Cleanup(func() {
		// t.Context is cancelled by now, so pending stops give up at once.
		if !controller.WaitBackground(ctl, waitTimeout) {
			t.Error("controller background work did not end")
		}
	})
}

// restart simulates a server restart: the old controller's stops finish, the
// providers are closed (the sims detach their replicas, which keep running)
// and a new registry, gateway and controller take over the same store.
func (e *env) restart() {
	e.t.Helper()
	if !controller.WaitBackground(e.ctl, waitTimeout) {
		e.t.Fatal("old controller's background work did not end")
	}
	e.cur.Store(nil)
	if err := e.reg.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.startServer()
}

func newSpec(name string, replicas int, mods ...func(*v1.DeploymentSpec)) v1.DeploymentSpec {
	s := v1.DeploymentSpec{Name: name, Command: []string{"serve"}, Replicas: v1.Fixed(replicas)}
	for _, m := range mods {
		m(&s)
	}
	s.Default()
	if err := s.Validate(); err != nil {
		panic(err)
	}
	return s
}

func (e *env) apply(s v1.DeploymentSpec) store.Deployment {
	e.t.Helper()
	d, _, _, err := e.st.ApplyDeployment(e.ctx, "default", s, store.CreateOrUpdate)
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

func (e *env) reconcile(name string) {
	e.t.Helper()
	if err := e.ctl.Reconcile(e.ctx, name); err != nil {
		e.t.Fatalf("Reconcile(%s): %v", name, err)
	}
}

func (e *env) dep(name string) store.Deployment {
	e.t.Helper()
	d, err := e.st.GetDeployment(e.ctx, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

func (e *env) replicas(name string) []store.Replica {
	e.t.Helper()
	rs, err := e.st.ListReplicas(e.ctx, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return rs
}

func (e *env) events(name, reason string) []v1.Event {
	e.t.Helper()
	evs, err := e.st.ListEvents(e.ctx, name, 0, 100000)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []v1.Event
	for _, ev := range evs {
		if reason == "" || ev.Reason == reason {
			out = append(out, ev)
		}
	}
	return out
}

// routed returns the backends last set for a deployment (nil if never set
// or removed since).
func (e *env) routed(name string) []string {
	ents := e.j.snapshot()
	for i := len(ents) - 1; i >= 0; i-- {
		if (ents[i].kind == "route" || ents[i].kind == "remove") && ents[i].dep == name {
			return ents[i].ids
		}
	}
	return nil
}

// request sends one request through the real gateway and returns its status.
func (e *env) request(name string) int {
	e.t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/", nil).WithContext(e.ctx)
	req.Header.Set(gateway.HeaderDeployment, name)
	rec := httptest.NewRecorder()
	e.gw.ServeHTTP(rec, req)
	return rec.Code
}

func (e *env) totalStarts() int {
	n := 0
	for _, s := range e.sims {
		n += s.Starts()
	}
	return n
}

func (e *env) simOf(name, id string) *sim.Sim {
	e.t.Helper()
	for _, r := range e.replicas(name) {
		if r.ID == id {
			return e.sims[r.Cloud]
		}
	}
	e.t.Fatalf("no replica %s", id)
	return nil
}

// waitFor polls cond until it holds or the deadline passes.
func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitGone waits until the records of ids are deleted, which the controller
// does after the provider stopped them.
func (e *env) waitGone(name string, ids ...string) {
	e.t.Helper()
	e.waitFor(fmt.Sprintf("records of %v to be deleted", ids), func() bool {
		for _, r := range e.replicas(name) {
			if slices.Contains(ids, r.ID) {
				return false
			}
		}
		return true
	})
}

// converge reconciles until cond holds (stops in the background may need a
// few passes) or the deadline passes.
func (e *env) converge(name, what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		e.reconcile(name)
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out reconciling %s until %s", name, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// ready creates a deployment and reconciles until every replica is ready and routed.
func (e *env) ready(s v1.DeploymentSpec) []string {
	e.t.Helper()
	e.apply(s)
	e.converge(s.Name, "ready", func() bool {
		d := e.dep(s.Name)
		return d.Status.Phase == v1.PhaseReady && len(e.routed(s.Name)) == s.Replicas.Min
	})
	return ids(e.replicas(s.Name))
}

// assertUnroutedBeforeStop checks for each replica that the provider was
// asked to stop it only after a routing change of dep had taken it out of the
// backend set (having been in it before), and that no later change put it back.
func (e *env) assertUnroutedBeforeStop(dep string, replicaIDs ...string) {
	e.t.Helper()
	ents := e.j.snapshot()
	for _, id := range replicaIDs {
		stopAt := slices.IndexFunc(ents, func(en entry) bool { return en.kind == "stop" && en.id == id })
		if stopAt < 0 {
			e.t.Errorf("replica %s was never stopped", id)
			continue
		}
		lastRoute, wasRouted := -1, false
		for i := 0; i < stopAt; i++ {
			if ents[i].dep != dep || (ents[i].kind != "route" && ents[i].kind != "remove") {
				continue
			}
			lastRoute = i
			if slices.Contains(ents[i].ids, id) {
				wasRouted = true
			}
		}
		switch {
		case !wasRouted:
			e.t.Errorf("replica %s was never routed before it stopped (test is vacuous)", id)
		case slices.Contains(ents[lastRoute].ids, id):
			e.t.Errorf("replica %s was still a backend of %s when its provider was asked to stop it", id, dep)
		}
		for _, en := range ents[stopAt+1:] {
			if en.kind == "route" && en.dep == dep && slices.Contains(en.ids, id) {
				e.t.Errorf("replica %s was routed again after it stopped", id)
			}
		}
	}
}

func ids(rs []store.Replica) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.ID)
	}
	sort.Strings(out)
	return out
}

func perCloud(rs []store.Replica) map[string]int {
	m := map[string]int{}
	for _, r := range rs {
		m[r.Cloud]++
	}
	return m
}

func where(rs []store.Replica, f func(store.Replica) bool) []store.Replica {
	var out []store.Replica
	for _, r := range rs {
		if f(r) {
			out = append(out, r)
		}
	}
	return out
}

func condition(t *testing.T, d store.Deployment, typ string) v1.Condition {
	t.Helper()
	for _, c := range d.Status.Conditions {
		if c.Type == typ {
			return c
		}
	}
	t.Fatalf("%s has no %s condition: %+v", d.Name, typ, d.Status.Conditions)
	return v1.Condition{}
}

func hasCondition(d store.Deployment, typ string) bool {
	for _, c := range d.Status.Conditions {
		if c.Type == typ {
			return true
		}
	}
	return false
}

func price(t *testing.T, cloudName string, s v1.DeploymentSpec) float64 {
	t.Helper()
	req, err := s.Resources.Normalized()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range v1.DefaultClouds() {
		if c.Name == cloudName {
			p, ok, why := c.PriceFor(req)
			if !ok {
				t.Fatal(why)
			}
			return p
		}
	}
	t.Fatalf("no cloud %s", cloudName)
	return 0
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func mentions(evs []v1.Event, substr string) int {
	n := 0
	for _, ev := range evs {
		if strings.Contains(ev.Message, substr) {
			n++
		}
	}
	return n
}

func withResources(cpu, mem string) func(*v1.DeploymentSpec) {
	return func(s *v1.DeploymentSpec) { s.Resources = v1.Resources{CPU: cpu, Memory: mem} }
}

// ---------------------------------------------------------------------------
// Create and placement

func TestCreatePlacesRecordsAndReports(t *testing.T) {
	e := newEnv(t, envConfig{})
	s := newSpec("web", 3, func(s *v1.DeploymentSpec) { s.Placement.Spread.MinClouds = 2 })
	e.apply(s)
	e.reconcile("web")

	recs := e.replicas("web")
	if got := perCloud(recs); len(recs) != 3 || got[cloudB] != 2 || got[cloudA] != 1 {
		t.Fatalf("replicas per cloud = %v, want 2 on %s (cheapest) and 1 on %s (spread)", got, cloudB, cloudA)
	}
	for _, r := range recs {
		if r.Revision != 1 || r.State != v1.ReplicaReady || r.Endpoint != e.backend.URL || len(r.Handle) == 0 ||
			r.StartedAt == nil || r.Draining || !near(r.HourlyCost, price(t, r.Cloud, s)) {
			t.Errorf("record %+v", r)
		}
	}
	// Placed events, each naming its replica, its cloud and price, and the
	// plan it is part of.
	placed := e.events("web", "Placed")
	if len(placed) != 3 {
		t.Fatalf("%d Placed events, want 3: %+v", len(placed), placed)
	}
	wantPrice := map[string]string{cloudB: "$0.0160/h", cloudA: "$0.0213/h"}
	seen := map[string]int{}
	for i, p := range placed {
		m := p.Message
		cloud := ""
		for c := range wantPrice {
			if strings.Contains(m, "on "+c+"/") {
				cloud = c
			}
		}
		seen[cloud]++
		if cloud == "" || !strings.Contains(m, cloud+" at "+wantPrice[cloud]) || !strings.Contains(m, "(revision 1)") ||
			!strings.Contains(m, "least-cost plan meeting every constraint (spread.minClouds=2) (3 replica(s), $0.0533/h in all)") {
			t.Errorf("Placed event %d = %q", i, m)
		}
		if mentions(placed[i:i+1], "replica web-") != 1 {
			t.Errorf("Placed event %d does not name its replica: %q", i, m)
		}
	}
	if seen[cloudB] != 2 || seen[cloudA] != 1 {
		t.Errorf("Placed events per cloud %v, want 2 on %s and 1 on %s", seen, cloudB, cloudA)
	}
	if b, a, c := e.sims[cloudB].Starts(), e.sims[cloudA].Starts(), e.sims[cloudC].Starts(); b != 2 || a != 1 || c != 0 {
		t.Errorf("starts b=%d a=%d c=%d, want 2, 1, 0", b, a, c)
	}

	// The next pass observes the started replicas: routed, status Ready.
	e.reconcile("web")
	d := e.dep("web")
	st := d.Status
	wantCost := 2*price(t, cloudB, s) + price(t, cloudA, s)
	if st.Phase != v1.PhaseReady || st.DesiredReplicas != 3 || st.ReadyReplicas != 3 || len(st.Replicas) != 3 || !near(st.HourlyCost, wantCost) {
		t.Fatalf("status = %+v, want Ready 3/3 at $%.5f/h", st, wantCost)
	}
	for _, r := range st.Replicas {
		if r.Region == "" || r.State != v1.ReplicaReady || r.Endpoint == "" {
			t.Errorf("replica status %+v", r)
		}
	}
	for _, typ := range []string{v1.ConditionAvailable, v1.ConditionPlaced, v1.ConditionRolledOut} {
		if c := condition(t, d, typ); c.Status != "True" || c.LastTransitionTime.IsZero() {
			t.Errorf("condition %+v, want True", c)
		}
	}
	if hasCondition(d, v1.ConditionUnsupported) {
		t.Errorf("Unsupported condition on a process spec: %+v", d.Status.Conditions)
	}
	if got := e.routed("web"); !slices.Equal(got, ids(recs)) {
		t.Errorf("routed %v, want %v", got, ids(recs))
	}
	if code := e.request("web"); code != http.StatusOK {
		t.Errorf("request through the gateway: %d", code)
	}

	// Reconciling a converged deployment changes nothing.
	nev, nstarts := len(e.events("web", "")), e.totalStarts()
	e.reconcile("web")
	e.reconcile("web")
	if got := e.events("web", ""); len(got) != nev {
		t.Errorf("a converged reconcile recorded events: %+v", got[nev:])
	}
	if e.totalStarts() != nstarts || len(e.replicas("web")) != 3 {
		t.Errorf("a converged reconcile started replicas")
	}
	if got := e.dep("web").Status; !slices.EqualFunc(got.Conditions, st.Conditions, func(a, b v1.Condition) bool {
		return a.Type == b.Type && a.Status == b.Status && a.LastTransitionTime.Equal(b.LastTransitionTime)
	}) {
		t.Errorf("conditions changed without a transition:\n%+v\n%+v", st.Conditions, got.Conditions)
	}
}

func TestPlacementDecisions(t *testing.T) {
	cases := []struct {
		name string
		spec v1.DeploymentSpec
		want map[string]int
		// rejected: a CloudRejected event containing this text is expected.
		rejected string
	}{
		{name: "cheapest first", spec: newSpec("d", 3), want: map[string]int{cloudB: 3}},
		{name: "spread over two", spec: newSpec("d", 3, func(s *v1.DeploymentSpec) { s.Placement.Spread.MinClouds = 2 }),
			want: map[string]int{cloudB: 2, cloudA: 1}},
		{name: "spread over three", spec: newSpec("d", 4, func(s *v1.DeploymentSpec) { s.Placement.Spread.MinClouds = 3 }),
			want: map[string]int{cloudB: 2, cloudA: 1, cloudC: 1}},
		{name: "label residency", spec: newSpec("d", 2, func(s *v1.DeploymentSpec) {
			s.Placement.Labels = map[string]string{"jurisdiction": "us"}
		}), want: map[string]int{cloudA: 2}, rejected: `local-b: label jurisdiction=us required, cloud has "eu"`},
		{name: "placement.clouds", spec: newSpec("d", 2, func(s *v1.DeploymentSpec) { s.Placement.Clouds = []string{cloudC} }),
			want: map[string]int{cloudC: 2}, rejected: "local-b: not in placement.clouds"},
		{name: "region", spec: newSpec("d", 1, func(s *v1.DeploymentSpec) { s.Placement.Regions = []string{"local-central"} }),
			want: map[string]int{cloudC: 1}, rejected: "local-a: region local-east not in placement.regions"},
		{name: "cheapest cloud fills up", spec: newSpec("d", 4, withResources("1.5", "3Gi")),
			want: map[string]int{cloudB: 2, cloudA: 2}},
		{name: "price cap", spec: newSpec("d", 2, withResources("1", "1Gi"), func(s *v1.DeploymentSpec) {
			s.Placement.MaxHourlyCost = 0.05 // b $0.034, a $0.045, c $0.056
			s.Placement.Clouds = []string{cloudA, cloudC}
		}), want: map[string]int{cloudA: 2}, rejected: "local-c: costs $0.0560/h, over placement.maxHourlyCost $0.0500/h"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envConfig{})
			e.ready(tc.spec)
			got := perCloud(e.replicas("d"))
			for _, c := range []string{cloudA, cloudB, cloudC} {
				if got[c] != tc.want[c] {
					t.Fatalf("replicas per cloud = %v, want %v", got, tc.want)
				}
			}
			if tc.rejected != "" && mentions(e.events("d", "CloudRejected"), tc.rejected) != 1 {
				t.Errorf("no single CloudRejected event %q in %+v", tc.rejected, e.events("d", "CloudRejected"))
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Scaling

func TestScaleUpAndDown(t *testing.T) {
	e := newEnv(t, envConfig{})
	big := withResources("1", "1Gi") // b $0.034 (4 fit), a $0.045, c $0.056
	first := e.ready(newSpec("web", 3, big))
	if got := perCloud(e.replicas("web")); got[cloudB] != 3 {
		t.Fatalf("initial placement %v", got)
	}

	// Scale up: not a new revision; the fourth fills local-b, the rest go to local-a.
	if d := e.apply(newSpec("web", 6, big)); d.Revision != 1 {
		t.Fatalf("scaling made revision %d", d.Revision)
	}
	e.reconcile("web")
	six := e.replicas("web")
	if got := perCloud(six); len(six) != 6 || got[cloudB] != 4 || got[cloudA] != 2 {
		t.Fatalf("after scale up: %v", got)
	}
	if n := len(e.events("web", "Placed")); n != 6 {
		t.Errorf("%d Placed events, want 6", n)
	}
	e.reconcile("web")
	if got := e.routed("web"); len(got) != 6 {
		t.Fatalf("routed %v after scale up", got)
	}
	for _, id := range first {
		if !slices.Contains(ids(six), id) {
			t.Errorf("scale up replaced %s", id)
		}
	}

	// Scale down to 3: the two on the dearer local-a go, then the newest on local-b.
	e.apply(newSpec("web", 3, big))
	e.reconcile("web")
	survivors := e.routed("web")
	if len(survivors) != 3 {
		t.Fatalf("routed %v right after scaling down, want 3", survivors)
	}
	var victims []string
	for _, r := range six {
		if !slices.Contains(survivors, r.ID) {
			victims = append(victims, r.ID)
		}
	}
	onB := where(six, func(r store.Replica) bool { return r.Cloud == cloudB })
	wantVictims := append(ids(where(six, func(r store.Replica) bool { return r.Cloud == cloudA })), onB[len(onB)-1].ID)
	sort.Strings(victims)
	sort.Strings(wantVictims)
	if !slices.Equal(victims, wantVictims) {
		t.Fatalf("victims %v, want %v (both on %s and the newest on %s)", victims, wantVictims, cloudA, cloudB)
	}
	// The victims are marked Draining (or already gone) and say why.
	for _, r := range e.replicas("web") {
		if slices.Contains(victims, r.ID) && (!r.Draining || r.State != v1.ReplicaDraining) {
			t.Errorf("victim %s is %s, draining=%v", r.ID, r.State, r.Draining)
		}
	}
	draining := e.events("web", "Draining")
	if len(draining) != 3 || mentions(draining, "scaling down to 3") != 3 {
		t.Errorf("Draining events %+v", draining)
	}

	e.waitGone("web", victims...)
	e.assertUnroutedBeforeStop("web", victims...)
	if got := e.sims[cloudA].Running(); len(got) != 0 {
		t.Errorf("local-a still runs %v", got)
	}
	if got := e.sims[cloudB].Running(); !slices.Equal(got, survivors) {
		t.Errorf("local-b runs %v, want %v", got, survivors)
	}
	e.waitFor("Stopped events", func() bool { return len(e.events("web", "Stopped")) == 3 })

	e.reconcile("web")
	d := e.dep("web")
	if d.Status.Phase != v1.PhaseReady || d.Status.ReadyReplicas != 3 || len(d.Status.Replicas) != 3 ||
		!near(d.Status.HourlyCost, 3*price(t, cloudB, newSpec("web", 3, big))) {
		t.Errorf("status after scale down %+v", d.Status)
	}
	if got := ids(e.replicas("web")); !slices.Equal(got, survivors) {
		t.Errorf("records %v, want %v", got, survivors)
	}
}

func TestScaleDownKeepsSpread(t *testing.T) {
	e := newEnv(t, envConfig{})
	spread := func(s *v1.DeploymentSpec) { s.Placement.Spread.MinClouds = 2 }
	e.ready(newSpec("web", 4, spread)) // b, a, b, b
	e.apply(newSpec("web", 2, spread))
	e.reconcile("web")
	recs := where(e.replicas("web"), func(r store.Replica) bool { return !r.Draining })
	// local-a is dearest, but its only replica keeps the deployment on two clouds.
	if got := perCloud(recs); got[cloudA] != 1 || got[cloudB] != 1 {
		t.Errorf("after scale down %v, want one on each of %s and %s", got, cloudA, cloudB)
	}
}

// ---------------------------------------------------------------------------
// Rolling update and migration

func TestRollingUpdate(t *testing.T) {
	e := newEnv(t, envConfig{})
	old := e.ready(newSpec("web", 3))
	for _, s := range e.sims {
		s.Hold(true) // new replicas stay Starting until released
	}
	d := e.apply(newSpec("web", 3, func(s *v1.DeploymentSpec) { s.Env = []v1.EnvVar{{Name: "MODEL", Value: "v2"}} }))
	if d.Revision != 2 {
		t.Fatalf("template change made revision %d", d.Revision)
	}
	journalMark := len(e.j.snapshot())

	// New replicas start first; the old ones keep serving.
	e.reconcile("web")
	recs := e.replicas("web")
	var fresh []string
	for _, r := range recs {
		switch {
		case r.Revision == 2:
			fresh = append(fresh, r.ID)
			if r.State != v1.ReplicaStarting {
				t.Errorf("new replica %s is %s", r.ID, r.State)
			}
		case r.Draining:
			t.Errorf("old replica %s drains before any new one is ready", r.ID)
		}
	}
	sort.Strings(fresh)
	if len(fresh) != 3 || len(recs) != 6 {
		t.Fatalf("%d records, %d of revision 2", len(recs), len(fresh))
	}
	e.reconcile("web") // still nothing ready: nothing drains
	if got := e.routed("web"); !slices.Equal(got, old) {
		t.Fatalf("routed %v, want the old replicas %v", got, old)
	}
	if n := len(e.events("web", "Draining")); n != 0 {
		t.Fatalf("%d Draining events before a new replica was ready", n)
	}
	if code := e.request("web"); code != http.StatusOK {
		t.Fatalf("request during the rollout: %d", code)
	}
	st := e.dep("web").Status
	if st.Phase != v1.PhaseProgressing || st.ReadyReplicas != 0 || condition(t, e.dep("web"), v1.ConditionRolledOut).Status != "False" {
		t.Errorf("status during the rollout %+v", st)
	}

	// Each new replica that becomes ready lets exactly one old one go.
	for i, id := range fresh[:2] {
		if err := e.simOf("web", id).Release(id); err != nil {
			t.Fatal(err)
		}
		e.reconcile("web")
		if n := len(e.events("web", "Draining")); n != i+1 {
			t.Fatalf("after %d new ready: %d drained, want %d", i+1, n, i+1)
		}
		routed := e.routed("web")
		newRouted := 0
		for _, r := range routed {
			if slices.Contains(fresh, r) {
				newRouted++
			}
		}
		if len(routed) != 3 || newRouted != i+1 {
			t.Fatalf("after %d new ready: routed %v", i+1, routed)
		}
	}
	for _, s := range e.sims {
		s.Hold(false)
	}
	e.reconcile("web")
	if got := e.routed("web"); !slices.Equal(got, fresh) {
		t.Fatalf("routed %v, want the new replicas %v", got, fresh)
	}
	e.waitGone("web", old...)
	e.assertUnroutedBeforeStop("web", old...)
	if ev := e.events("web", "Draining"); mentions(ev, "is of old revision 1") != 3 {
		t.Errorf("Draining events %+v", ev)
	}
	// Never fewer than the desired 3 backends during the rollout.
	for _, en := range e.j.snapshot()[journalMark:] {
		if en.kind == "route" && en.dep == "web" && len(en.ids) < 3 {
			t.Errorf("routed only %v during the rollout", en.ids)
		}
	}

	e.converge("web", "rolled out", func() bool { return e.dep("web").Status.Phase == v1.PhaseReady })
	for _, r := range e.replicas("web") {
		if r.Revision != 2 {
			t.Errorf("replica %s of revision %d left", r.ID, r.Revision)
		}
	}
	var running []string
	for _, s := range e.sims {
		running = append(running, s.Running()...)
	}
	sort.Strings(running)
	if !slices.Equal(running, fresh) {
		t.Errorf("providers run %v, want %v", running, fresh)
	}
	if r, ok := e.simOf("web", fresh[0]).Replica(fresh[0]); !ok || r.Revision != 2 || len(r.Spec.Env) != 1 || r.Spec.Env[0].Value != "v2" {
		t.Errorf("new replica started as %+v", r)
	}
	if c := condition(t, e.dep("web"), v1.ConditionRolledOut); c.Status != "True" {
		t.Errorf("RolledOut %+v", c)
	}
}

func TestPlacementChangeMigratesWithoutNewRevision(t *testing.T) {
	e := newEnv(t, envConfig{})
	old := e.ready(newSpec("web", 2))
	d := e.apply(newSpec("web", 2, func(s *v1.DeploymentSpec) { s.Placement.Clouds = []string{cloudC} }))
	if d.Revision != 1 {
		t.Fatalf("placement change made revision %d", d.Revision)
	}
	e.reconcile("web")
	fresh := where(e.replicas("web"), func(r store.Replica) bool { return !slices.Contains(old, r.ID) })
	if got := perCloud(fresh); len(fresh) != 2 || got[cloudC] != 2 {
		t.Fatalf("new replicas %v", got)
	}
	for _, r := range fresh {
		if r.Revision != 1 {
			t.Errorf("migrated replica %s has revision %d", r.ID, r.Revision)
		}
	}
	if got := e.routed("web"); !slices.Equal(got, old) {
		t.Fatalf("routed %v before the new replicas were observed ready, want %v", got, old)
	}
	e.reconcile("web")
	if got := e.routed("web"); !slices.Equal(got, ids(fresh)) {
		t.Fatalf("routed %v, want %v", got, ids(fresh))
	}
	if ev := e.events("web", "Draining"); mentions(ev, "runs on local-b, which is not in placement.clouds") != 2 {
		t.Errorf("Draining events %+v", ev)
	}
	e.waitGone("web", old...)
	e.assertUnroutedBeforeStop("web", old...)
	e.converge("web", "ready", func() bool { return e.dep("web").Status.Phase == v1.PhaseReady })
	if revs, err := e.st.ListRevisions(e.ctx, "web"); err != nil || len(revs) != 1 {
		t.Errorf("revisions %v, %v", revs, err)
	}
	if got := e.sims[cloudB].Stopped(); !slices.Equal(sorted(got), old) {
		t.Errorf("local-b stopped %v, want %v", got, old)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

func TestCordonMovesReplicas(t *testing.T) {
	e := newEnv(t, envConfig{})
	old := e.ready(newSpec("web", 2))
	if err := e.st.SetCloudState(e.ctx, store.CloudState{Name: cloudB, Cordoned: true}); err != nil {
		t.Fatal(err)
	}
	e.reconcile("web")
	e.reconcile("web")
	if ev := e.events("web", "Draining"); mentions(ev, "runs on local-b, which is cordoned") != 2 {
		t.Errorf("Draining events %+v", ev)
	}
	if mentions(e.events("web", "CloudRejected"), "local-b: cloud is cordoned") != 1 {
		t.Errorf("no CloudRejected event for the cordoned cloud")
	}
	e.waitGone("web", old...)
	e.assertUnroutedBeforeStop("web", old...)
	e.converge("web", "ready", func() bool { return e.dep("web").Status.Phase == v1.PhaseReady })
	if got := perCloud(e.replicas("web")); got[cloudA] != 2 || len(got) != 1 {
		t.Errorf("after cordon: %v, want both on %s", got, cloudA)
	}
	if got := e.sims[cloudB].Running(); len(got) != 0 {
		t.Errorf("cordoned cloud still runs %v", got)
	}

	// Uncordoning does not move replicas back (no churn).
	starts := e.totalStarts()
	if err := e.st.SetCloudState(e.ctx, store.CloudState{Name: cloudB}); err != nil {
		t.Fatal(err)
	}
	e.reconcile("web")
	e.reconcile("web")
	if e.totalStarts() != starts {
		t.Errorf("uncordoning started replicas")
	}
}

func TestFailedCloudReplacesReplicas(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.ready(newSpec("web", 3, func(s *v1.DeploymentSpec) { s.Placement.Spread.MinClouds = 2 }))
	onB := ids(where(e.replicas("web"), func(r store.Replica) bool { return r.Cloud == cloudB }))
	onA := ids(where(e.replicas("web"), func(r store.Replica) bool { return r.Cloud == cloudA }))
	if len(onB) != 2 || len(onA) != 1 {
		t.Fatalf("initial placement b=%v a=%v", onB, onA)
	}
	if err := e.st.SetCloudState(e.ctx, store.CloudState{Name: cloudB, Failed: true}); err != nil {
		t.Fatal(err)
	}
	e.reconcile("web")
	lost := e.events("web", "ReplicaLost")
	if len(lost) != 2 || mentions(lost, "cloud local-b has failed") != 2 || mentions(lost, onB[0]) != 1 || mentions(lost, onB[1]) != 1 {
		t.Fatalf("ReplicaLost events %+v", lost)
	}
	// Lost replicas leave routing at once; replacements keep the spread
	// (local-c, the cheapest unused cloud) and then go cheapest (local-a).
	if got := e.routed("web"); !slices.Equal(got, onA) {
		t.Errorf("routed %v, want %v", got, onA)
	}
	repl := where(e.replicas("web"), func(r store.Replica) bool { return r.Cloud != cloudB })
	if got := perCloud(repl); got[cloudA] != 2 || got[cloudC] != 1 {
		t.Errorf("replacements %v, want 2 on %s and 1 on %s", got, cloudA, cloudC)
	}
	e.waitGone("web", onB...)
	e.waitFor("local-b to stop its replicas", func() bool { return len(e.sims[cloudB].Running()) == 0 })
	if got := e.sims[cloudB].Stopped(); !slices.Equal(sorted(got), onB) {
		t.Errorf("local-b stopped %v, want %v", got, onB)
	}
	e.assertUnroutedBeforeStop("web", onB...)
	e.converge("web", "ready", func() bool { return e.dep("web").Status.Phase == v1.PhaseReady })
	if got := e.routed("web"); len(got) != 3 {
		t.Errorf("routed %v", got)
	}
	if n := len(e.events("web", "ReplicaLost")); n != 2 {
		t.Errorf("%d ReplicaLost events, want 2", n)
	}
}

// ---------------------------------------------------------------------------
// Replica failures

func TestCrashedReplicaLeavesAndRejoinsRouting(t *testing.T) {
	e := newEnv(t, envConfig{})
	both := e.ready(newSpec("web", 2))
	r0, r1 := both[0], both[1]
	sb := e.simOf("web", r0)
	starts := e.totalStarts()

	if err := sb.Crash(r0); err != nil {
		t.Fatal(err)
	}
	e.reconcile("web")
	if got := e.routed("web"); !slices.Equal(got, []string{r1}) {
		t.Fatalf("routed %v after %s crashed, want [%s]", got, r0, r1)
	}
	rec := where(e.replicas("web"), func(r store.Replica) bool { return r.ID == r0 })[0]
	if rec.State != v1.ReplicaBackOff || rec.Restarts != 1 || rec.Message == "" {
		t.Errorf("crashed record %+v", rec)
	}
	if ev := e.events("web", "ReplicaCrashed"); len(ev) != 1 || mentions(ev, r0+" on "+cloudB+" crashed (restart 1)") != 1 {
		t.Errorf("ReplicaCrashed events %+v", ev)
	}
	if st := e.dep("web").Status; st.Phase != v1.PhaseProgressing || st.ReadyReplicas != 1 {
		t.Errorf("status with one crashed: %s %d/%d", st.Phase, st.ReadyReplicas, st.DesiredReplicas)
	}
	if code := e.request("web"); code != http.StatusOK {
		t.Errorf("request with one replica up: %d", code)
	}

	// Both down: the gateway answers 503 instead of dialling a crashed replica.
	if err := sb.SetState(r1, v1.ReplicaStarting, "health check failing"); err != nil {
		t.Fatal(err)
	}
	e.reconcile("web")
	if got := e.routed("web"); len(got) != 0 {
		t.Fatalf("routed %v with no replica ready", got)
	}
	if ev := e.events("web", "ReplicaUnready"); len(ev) != 1 || mentions(ev, r1) != 1 {
		t.Errorf("ReplicaUnready events %+v", ev)
	}
	if code := e.request("web"); code != http.StatusServiceUnavailable {
		t.Errorf("request with no replica ready: %d, want 503", code)
	}
	if c := condition(t, e.dep("web"), v1.ConditionAvailable); c.Status != "False" {
		t.Errorf("Available %+v", c)
	}

	// Back to Ready: routed again, without any replacement having started.
	sb.SetState(r0, v1.ReplicaReady, "")
	sb.SetState(r1, v1.ReplicaReady, "")
	e.reconcile("web")
	if got := e.routed("web"); !slices.Equal(got, both) {
		t.Fatalf("routed %v after recovery, want %v", got, both)
	}
	if n := len(e.events("web", "ReplicaReady")); n != 2 {
		t.Errorf("%d ReplicaReady events, want 2", n)
	}
	if e.totalStarts() != starts || len(e.replicas("web")) != 2 {
		t.Errorf("a crash caused a replacement")
	}
	if st := e.dep("web").Status; st.Phase != v1.PhaseReady {
		t.Errorf("phase %s after recovery", st.Phase)
	}
	if code := e.request("web"); code != http.StatusOK {
		t.Errorf("request after recovery: %d", code)
	}

	// A replica its provider gives up on (Failed) is replaced and stopped.
	sb.SetState(r0, v1.ReplicaFailed, "out of memory")
	e.reconcile("web")
	if ev := e.events("web", "ReplicaLost"); len(ev) != 1 || mentions(ev, r0) != 1 || mentions(ev, "out of memory") != 1 {
		t.Errorf("ReplicaLost events %+v", ev)
	}
	if e.totalStarts() != starts+1 {
		t.Errorf("no replacement started for the failed replica")
	}
	e.waitGone("web", r0)
	if !slices.Contains(sb.Stopped(), r0) {
		t.Errorf("failed replica %s not stopped", r0)
	}
	e.converge("web", "ready", func() bool {
		return e.dep("web").Status.Phase == v1.PhaseReady && len(e.routed("web")) == 2
	})
	if slices.Contains(e.routed("web"), r0) {
		t.Errorf("failed replica routed")
	}
}

func TestVanishedReplicaIsReplaced(t *testing.T) {
	e := newEnv(t, envConfig{})
	both := e.ready(newSpec("web", 2))
	r0, r1 := both[0], both[1]
	sb := e.simOf("web", r0)
	starts := e.totalStarts()
	if err := sb.Forget(r0); err != nil {
		t.Fatal(err)
	}
	e.reconcile("web")
	if ev := e.events("web", "ReplicaLost"); len(ev) != 1 || mentions(ev, r0) != 1 || mentions(ev, "its process is gone") != 1 {
		t.Fatalf("ReplicaLost events %+v", ev)
	}
	if e.totalStarts() != starts+1 {
		t.Fatalf("%d starts, want a replacement", e.totalStarts()-starts)
	}
	if got := e.routed("web"); !slices.Equal(got, []string{r1}) {
		t.Errorf("routed %v, want [%s]", got, r1)
	}
	e.waitGone("web", r0)
	e.converge("web", "ready", func() bool {
		return e.dep("web").Status.Phase == v1.PhaseReady && len(e.routed("web")) == 2
	})
	if got := e.routed("web"); slices.Contains(got, r0) || !slices.Contains(got, r1) {
		t.Errorf("routed %v", got)
	}
	if slices.Contains(sb.Stopped(), r0) {
		t.Errorf("the sim was asked to stop a replica it no longer had and recorded it")
	}
}

func TestStartFailureBackoffAndRecovery(t *testing.T) {
	const backoff = 500 * time.Millisecond
	e := newEnv(t, envConfig{backoff: backoff})
	boom := errors.New("quota exceeded")
	for _, s := range e.sims {
		s.FailStarts(boom)
	}
	e.apply(newSpec("web", 1))
	t0 := time.Now()
	e.reconcile("web")
	recs := e.replicas("web")
	if len(recs) != 1 || recs[0].State != v1.ReplicaFailed || !strings.Contains(recs[0].Message, "quota exceeded") {
		t.Fatalf("records after a failed start: %+v", recs)
	}
	failed := recs[0].ID
	if ev := e.events("web", "StartFailed"); len(ev) != 1 || mentions(ev, failed) != 1 || mentions(ev, "quota exceeded") != 1 {
		t.Fatalf("StartFailed events %+v", ev)
	}
	if e.totalStarts() != 1 {
		t.Fatalf("%d starts, want 1", e.totalStarts())
	}

	// An immediate second pass backs off instead of starting again.
	e.reconcile("web")
	if time.Since(t0) < backoff {
		if n := e.totalStarts(); n != 1 {
			t.Errorf("%d starts within the backoff, want 1", n)
		}
	} else {
		t.Log("machine too slow to check the backoff window")
	}
	d := e.dep("web")
	if d.Status.Phase != v1.PhaseFailed {
		t.Errorf("phase %s, want Failed", d.Status.Phase)
	}
	if c := condition(t, d, v1.ConditionPlaced); c.Status != "False" || c.Reason != "StartFailed" || !strings.Contains(c.Message, "quota exceeded") {
		t.Errorf("Placed %+v", c)
	}
	if st := d.Status.Replicas; len(st) == 0 || st[0].State != v1.ReplicaFailed || st[0].Message == "" {
		t.Errorf("replica status %+v", st)
	}

	// Once starts work again the deployment recovers and the failed record goes.
	for _, s := range e.sims {
		s.FailStarts(nil)
	}
	e.converge("web", "recovered", func() bool {
		d := e.dep("web")
		return d.Status.Phase == v1.PhaseReady && len(e.replicas("web")) == 1 && len(d.Status.Replicas) == 1
	})
	recs = e.replicas("web")
	if recs[0].ID == failed || recs[0].State != v1.ReplicaReady {
		t.Errorf("after recovery: %+v", recs)
	}
	if c := condition(t, e.dep("web"), v1.ConditionPlaced); c.Status != "True" {
		t.Errorf("Placed %+v after recovery", c)
	}
	if got := e.routed("web"); !slices.Equal(got, ids(recs)) {
		t.Errorf("routed %v", got)
	}
}

// A cloud's capacity is what its records use. Records of replicas that never
// started must not hold capacity: otherwise repeated start failures fill the
// cloud with Failed records, and once starts work again nothing can be placed.
func TestFailedStartsDoNotExhaustCapacity(t *testing.T) {
	tiny := v1.CloudConfig{Name: "tiny", Provider: v1.ProviderLocal, Region: "r1",
		Capacity: v1.Capacity{CPU: 1, Memory: "1Gi"}, Prices: v1.Prices{CPU: 0.04, MemoryGiB: 0.005}}
	e := newEnv(t, envConfig{clouds: []v1.CloudConfig{tiny}, backoff: time.Millisecond})
	e.sims["tiny"].FailStarts(errors.New("image pull failed"))
	e.apply(newSpec("web", 1)) // 0.5 CPU: two fit
	// Let the controller retry until the failed attempts could fill the cloud.
	e.converge("web", "three failed starts", func() bool {
		return e.sims["tiny"].Starts() >= 3 ||
			len(e.events("web", "PlacementFailed")) > 0
	})
	if ev := e.events("web", "PlacementFailed"); len(ev) > 0 {
		t.Errorf("failed start attempts used up the cloud: %s", ev[0].Message)
	}
	e.sims["tiny"].FailStarts(nil)
	e.converge("web", "recovered", func() bool {
		return e.dep("web").Status.Phase == v1.PhaseReady && len(e.replicas("web")) == 1
	})
}

// stopGate makes the sims' Stop block until opened, to observe the controller
// while a stop is in progress (a real provider's Stop can take long: SIGTERM
// grace, or a cloud that has failed and does not answer).
type stopGate struct {
	t    *testing.T
	open chan struct{}
	once sync.Once
}

func newStopGate(t *testing.T) *stopGate {
	g := &stopGate{t: t, open: make(chan struct{})}
	t.Cleanup(g.release)
	return g
}

func (g *stopGate) wait(string) {
	select {
	case <-g.open:
	case <-g.t.Context().Done():
	}
}

func (g *stopGate) release() { g.once.Do(func() { close(g.open) }) }

func (e *env) waitStopCalled(replicaIDs ...string) {
	e.t.Helper()
	e.waitFor(fmt.Sprintf("stop of %v to be called", replicaIDs), func() bool {
		ents := e.j.snapshot()
		for _, id := range replicaIDs {
			if !slices.ContainsFunc(ents, func(en entry) bool { return en.kind == "stop" && en.id == id }) {
				return false
			}
		}
		return true
	})
}

// A lost replica is reported once, not again on every pass while its stop
// is still in progress.
func TestLostReplicaReportedOnceWhileStopping(t *testing.T) {
	gate := newStopGate(t)
	e := newEnv(t, envConfig{onStop: gate.wait})
	both := e.ready(newSpec("web", 2))
	if err := e.st.SetCloudState(e.ctx, store.CloudState{Name: cloudB, Failed: true}); err != nil {
		t.Fatal(err)
	}
	e.reconcile("web")
	e.waitStopCalled(both...)
	for range 3 {
		e.reconcile("web")
	}
	if n := len(e.events("web", "ReplicaLost")); n != 2 {
		t.Errorf("%d ReplicaLost events for 2 lost replicas", n)
	}
	if n := e.totalStarts(); n != 4 {
		t.Errorf("%d starts, want 2 + 2 replacements", n)
	}
	gate.release()
	e.waitGone("web", both...)
	e.converge("web", "ready", func() bool { return e.dep("web").Status.Phase == v1.PhaseReady })
	if n := len(e.events("web", "ReplicaLost")); n != 2 {
		t.Errorf("%d ReplicaLost events for 2 lost replicas", n)
	}
}

// Deleting a deployment whose replica was lost (its cloud failed) waits until
// that replica is stopped: removing the deployment and its records first
// would leave a running replica no record points to if the server stopped
// meanwhile, and its late "Stopped" event would outlive the deployment.
func TestDeletionWaitsForLostReplicaStop(t *testing.T) {
	gate := newStopGate(t)
	e := newEnv(t, envConfig{onStop: gate.wait})
	one := e.ready(newSpec("web", 1))
	if err := e.st.SetCloudState(e.ctx, store.CloudState{Name: cloudB, Failed: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.MarkDeleted(e.ctx, "web"); err != nil {
		t.Fatal(err)
	}
	e.reconcile("web")
	e.waitStopCalled(one...)
	if err := e.ctl.Reconcile(e.ctx, "web"); err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	if _, err := e.st.GetDeployment(e.ctx, "web"); err != nil {
		t.Errorf("deployment removed while its replica %s is still being stopped: %v", one[0], err)
	}
	if recs, _ := e.st.ListReplicas(e.ctx, "web"); len(recs) != 1 {
		t.Errorf("replica record removed before the replica stopped: %+v", recs)
	}
	if got := e.routed("web"); len(got) != 0 {
		t.Errorf("routed %v while deleting", got)
	}

	gate.release()
	e.waitFor("local-b to stop the replica", func() bool { return len(e.sims[cloudB].Running()) == 0 })
	deadline := time.Now().Add(waitTimeout)
	for {
		err := e.ctl.Reconcile(e.ctx, "web")
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("deployment not removed")
		}
		time.Sleep(2 * time.Millisecond)
	}
	if !controller.WaitBackground(e.ctl, waitTimeout) {
		t.Fatal("stop did not finish")
	}
	if evs := e.events("web", ""); len(evs) != 0 {
		t.Errorf("events of the removed deployment left behind: %+v", evs)
	}
	if code := e.request("web"); code != http.StatusNotFound {
		t.Errorf("request after deletion: %d, want 404", code)
	}
}

// ---------------------------------------------------------------------------
// Unsupported and unplaceable specs

func TestImageOnlySpecOnProcessClouds(t *testing.T) {
	e := newEnv(t, envConfig{runtimes: []string{"process"}, missing: map[string]string{"oci": "runc not found (install the runc package)"}})
	e.apply(newSpec("img", 2, func(s *v1.DeploymentSpec) {
		s.Command = nil
		s.Image = "registry.example/model:1"
	}))
	e.reconcile("img")
	e.reconcile("img")
	if recs := e.replicas("img"); len(recs) != 0 || e.totalStarts() != 0 {
		t.Fatalf("image spec started on process clouds: %+v", recs)
	}
	d := e.dep("img")
	if c := condition(t, d, v1.ConditionUnsupported); c.Status != "True" || c.Reason != "NoRuntime" || !strings.Contains(c.Message, "no configured cloud can run images (local-a, local-b, local-c: runc not found (install the runc package))") {
		t.Errorf("Unsupported %+v", c)
	}
	if c := condition(t, d, v1.ConditionPlaced); c.Status != "False" {
		t.Errorf("Placed %+v", c)
	}
	if d.Status.Phase != v1.PhaseFailed {
		t.Errorf("phase %s, want Failed", d.Status.Phase)
	}
	if ev := e.events("img", "CloudRejected"); len(ev) != 3 || mentions(ev, "cannot run oci workloads (runs process)") != 3 {
		t.Errorf("CloudRejected events %+v", ev)
	}
	if n := len(e.events("img", "PlacementFailed")); n != 1 {
		t.Errorf("%d PlacementFailed events, want 1", n)
	}

	// An image with a command is still a container (the command replaces
	// the entrypoint); the same clouds run the spec once it is a command alone.
	e.apply(newSpec("img", 2, func(s *v1.DeploymentSpec) { s.Image = "registry.example/model:1" }))
	e.reconcile("img")
	if recs := e.replicas("img"); len(recs) != 0 {
		t.Fatalf("image+command spec started on process clouds: %+v", recs)
	}
	e.apply(newSpec("img", 2))
	e.converge("img", "ready", func() bool { return e.dep("img").Status.Phase == v1.PhaseReady })
	if hasCondition(e.dep("img"), v1.ConditionUnsupported) {
		t.Errorf("Unsupported condition kept: %+v", e.dep("img").Status.Conditions)
	}
}

func TestUnplaceableSpec(t *testing.T) {
	e := newEnv(t, envConfig{})
	huge := withResources("64", "1Gi")
	e.apply(newSpec("huge", 1, huge))
	for range 3 {
		e.reconcile("huge")
	}
	if recs := e.replicas("huge"); len(recs) != 0 {
		t.Fatalf("placed %+v", recs)
	}
	d := e.dep("huge")
	c := condition(t, d, v1.ConditionPlaced)
	if c.Status != "False" || c.Reason != "Unplaceable" || !strings.Contains(c.Message, "1 replica(s) cannot be placed") {
		t.Fatalf("Placed %+v", c)
	}
	for _, cl := range []string{cloudA, cloudB, cloudC} {
		if !strings.Contains(c.Message, cl+": no capacity") {
			t.Errorf("Placed message does not say why %s was rejected: %q", cl, c.Message)
		}
	}
	if ev := e.events("huge", "PlacementFailed"); len(ev) != 1 || ev[0].Type != "Warning" {
		t.Errorf("PlacementFailed events %+v, want exactly one warning", ev)
	}
	if n := len(e.events("huge", "CloudRejected")); n != 3 {
		t.Errorf("%d CloudRejected events, want 3 (one per cloud, not per pass)", n)
	}
	if d.Status.Phase == v1.PhaseReady || d.Status.Phase == v1.PhaseProgressing {
		t.Errorf("phase %s", d.Status.Phase)
	}

	// Fixing the spec places it and clears the condition.
	e.ready(newSpec("huge", 1))
	if c := condition(t, e.dep("huge"), v1.ConditionPlaced); c.Status != "True" {
		t.Errorf("Placed %+v after the fix", c)
	}
	good := e.routed("huge")

	// Breaking it again warns again, and the running revision keeps serving.
	e.apply(newSpec("huge", 1, huge))
	e.reconcile("huge")
	e.reconcile("huge")
	if n := len(e.events("huge", "PlacementFailed")); n != 2 {
		t.Errorf("%d PlacementFailed events, want 2", n)
	}
	if got := e.routed("huge"); !slices.Equal(got, good) {
		t.Errorf("routed %v during an impossible update, want %v", got, good)
	}
	if code := e.request("huge"); code != http.StatusOK {
		t.Errorf("request during an impossible update: %d", code)
	}
}

// ---------------------------------------------------------------------------
// Deletion and restart

func TestDeletion(t *testing.T) {
	e := newEnv(t, envConfig{})
	both := e.ready(newSpec("web", 2))
	other := e.ready(newSpec("other", 1))
	if code := e.request("web"); code != http.StatusOK {
		t.Fatalf("request before deletion: %d", code)
	}
	if _, err := e.st.MarkDeleted(e.ctx, "web"); err != nil {
		t.Fatal(err)
	}
	e.reconcile("web")
	if got := e.routed("web"); len(got) != 0 {
		t.Errorf("routed %v while deleting", got)
	}
	if d, err := e.st.GetDeployment(e.ctx, "web"); err == nil && d.Status.Phase != v1.PhaseDeleting {
		t.Errorf("phase %s while deleting", d.Status.Phase)
	}
	e.waitGone("web", both...)
	e.assertUnroutedBeforeStop("web", both...)
	deadline := time.Now().Add(waitTimeout)
	for {
		err := e.ctl.Reconcile(e.ctx, "web")
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, gerr := e.st.GetDeployment(e.ctx, "web"); errors.Is(gerr, store.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("deployment not removed")
		}
		time.Sleep(2 * time.Millisecond)
	}
	if _, err := e.st.GetDeployment(e.ctx, "web"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deployment row left: %v", err)
	}
	if !slices.ContainsFunc(e.j.snapshot(), func(en entry) bool { return en.kind == "remove" && en.dep == "web" }) {
		t.Errorf("gateway route not removed")
	}
	if code := e.request("web"); code != http.StatusNotFound {
		t.Errorf("request after deletion: %d, want 404", code)
	}
	var stopped []string
	for _, s := range e.sims {
		stopped = append(stopped, s.Stopped()...)
	}
	if !slices.Equal(sorted(stopped), both) {
		t.Errorf("stopped %v, want %v", stopped, both)
	}
	// Other deployments are untouched.
	if got := e.routed("other"); !slices.Equal(got, other) || e.request("other") != http.StatusOK {
		t.Errorf("other deployment disturbed: routed %v", got)
	}
	if err := e.ctl.Reconcile(e.ctx, "web"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Reconcile of a removed deployment: %v", err)
	}
}

func TestRestartAdoptsReplicas(t *testing.T) {
	e := newEnv(t, envConfig{})
	all := e.ready(newSpec("web", 3, func(s *v1.DeploymentSpec) { s.Placement.Spread.MinClouds = 2 }))
	starts := e.totalStarts()
	e.restart()
	// One replica vanished while no server was running.
	vanished := all[0]
	if err := e.simOf("web", vanished).Forget(vanished); err != nil {
		t.Fatal(err)
	}
	e.reconcile("web")
	adopted := e.events("web", "Adopted")
	if len(adopted) != 2 || mentions(adopted, vanished) != 0 {
		t.Errorf("Adopted events %+v", adopted)
	}
	for _, id := range all[1:] {
		if mentions(adopted, "re-adopted running replica "+id) != 1 {
			t.Errorf("no Adopted event for %s", id)
		}
	}
	if ev := e.events("web", "ReplicaLost"); len(ev) != 1 || mentions(ev, vanished) != 1 {
		t.Errorf("ReplicaLost events %+v", ev)
	}
	if n := e.totalStarts() - starts; n != 1 {
		t.Errorf("%d starts after the restart, want 1 (the vanished replica's replacement)", n)
	}
	// Adopted replicas are routed by the new server's gateway in the same pass.
	if got := e.routed("web"); !slices.Equal(got, all[1:]) {
		t.Errorf("routed %v, want %v", got, all[1:])
	}
	if code := e.request("web"); code != http.StatusOK {
		t.Errorf("request through the new gateway: %d", code)
	}
	e.waitGone("web", vanished)
	e.converge("web", "ready", func() bool {
		return e.dep("web").Status.Phase == v1.PhaseReady && len(e.routed("web")) == 3
	})
	if n := len(e.events("web", "Adopted")); n != 2 {
		t.Errorf("%d Adopted events, want 2 (adoption happens once)", n)
	}
}

func TestRestartResumesDrain(t *testing.T) {
	e := newEnv(t, envConfig{})
	all := e.ready(newSpec("web", 3))
	// The old server scaled down and marked a victim Draining, then died
	// before stopping it.
	e.apply(newSpec("web", 2))
	victim := e.replicas("web")[2]
	victim.Draining, victim.State = true, v1.ReplicaDraining
	if err := e.st.PutReplica(e.ctx, victim); err != nil {
		t.Fatal(err)
	}
	starts := e.totalStarts()
	mark := len(e.j.snapshot())
	e.restart()
	e.reconcile("web")
	e.waitGone("web", victim.ID)
	if !slices.Contains(e.sims[victim.Cloud].Stopped(), victim.ID) {
		t.Errorf("victim %s not stopped", victim.ID)
	}
	for _, en := range e.j.snapshot()[mark:] {
		if en.kind == "route" && slices.Contains(en.ids, victim.ID) {
			t.Errorf("the new server routed the draining replica: %v", en.ids)
		}
	}
	e.converge("web", "ready", func() bool { return e.dep("web").Status.Phase == v1.PhaseReady })
	if got := ids(e.replicas("web")); len(got) != 2 || slices.Contains(got, victim.ID) || e.totalStarts() != starts {
		t.Errorf("after resuming the drain: %v, %d new starts (all %v)", got, e.totalStarts()-starts, all)
	}
}

// ---------------------------------------------------------------------------
// Run loop

func TestRunAndEnqueue(t *testing.T) {
	// A long resync: only Enqueue and the providers' change callbacks trigger work.
	e := newEnv(t, envConfig{resync: time.Hour})
	for _, s := range e.sims {
		s.Hold(true)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		e.ctl.Run(ctx)
		close(done)
	}()
	select {
	case <-e.ctl.Synced():
	case <-time.After(waitTimeout):
		t.Fatal("controller never synced")
	}

	e.apply(newSpec("web", 2))
	e.ctl.Enqueue("web")
	e.waitFor("two replicas starting", func() bool {
		recs := e.replicas("web")
		return len(recs) == 2 && recs[0].State == v1.ReplicaStarting && recs[1].State == v1.ReplicaStarting
	})
	// Readiness reported by the provider's change callback drives the rest.
	for _, s := range e.sims {
		s.Hold(false)
	}
	e.waitFor("deployment ready and routed", func() bool {
		d, err := e.st.GetDeployment(e.ctx, "web")
		return err == nil && d.Status.Phase == v1.PhaseReady && d.Status.ReadyReplicas == 2 && len(e.routed("web")) == 2
	})
	if code := e.request("web"); code != http.StatusOK {
		t.Errorf("request: %d", code)
	}

	// Scale down through the loop: the stop's completion re-enqueues.
	e.apply(newSpec("web", 1))
	e.ctl.Enqueue("web")
	e.waitFor("scaled down", func() bool {
		d, err := e.st.GetDeployment(e.ctx, "web")
		return err == nil && len(e.replicas("web")) == 1 && d.Status.Phase == v1.PhaseReady && len(d.Status.Replicas) == 1
	})

	cancel()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

// A cloud whose provider stops answering (a Kubernetes API server that is
// down): its replicas are replaced on other clouds at once but neither
// stopped nor forgotten; when it answers again they count again, and the
// surplus that goes is the replacements (dearer), not the replicas that
// were wanted all along.
func TestUnreachableCloudReplacedThenReconciled(t *testing.T) {
	e := newEnv(t, envConfig{})
	orig := e.ready(newSpec("web", 2))
	for _, r := range e.replicas("web") {
		if r.Cloud != cloudB {
			t.Fatalf("replica on %s, want %s (cheapest)", r.Cloud, cloudB)
		}
	}
	e.sims[cloudB].SetHealth(errors.New("API server https://127.0.0.1:6443 unreachable for 10s"))
	e.converge("web", "replaced on other clouds", func() bool {
		ready := 0
		for _, r := range e.replicas("web") {
			if r.Cloud != cloudB && r.State == v1.ReplicaReady {
				ready++
			}
		}
		return ready == 2 && len(e.routed("web")) == 2
	})
	for _, id := range e.routed("web") {
		if slices.Contains(orig, id) {
			t.Errorf("unreachable replica %s still routed", id)
		}
	}
	if st := e.sims[cloudB].Stopped(); len(st) != 0 {
		t.Fatalf("replicas on the unreachable cloud were stopped: %v", st)
	}
	if evs := e.events("web", "ReplicaUnreachable"); len(evs) != 2 {
		t.Errorf("%d ReplicaUnreachable events, want 2", len(evs))
	}

	e.sims[cloudB].SetHealth(nil)
	e.converge("web", "back to 2", func() bool {
		rs := e.replicas("web")
		return len(rs) == 2 && e.dep("web").Status.Phase == v1.PhaseReady
	})
	if got := ids(e.replicas("web")); !slices.Equal(got, orig) {
		t.Fatalf("replicas %v after the cloud answered, want the original %v kept", got, orig)
	}
	if st := e.sims[cloudB].Stopped(); len(st) != 0 {
		t.Fatalf("original replicas stopped: %v", st)
	}
}
