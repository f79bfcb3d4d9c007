package sim

import (
	"math"
	"reflect"
	"testing"
	"time"
)

// scripted is a test policy: Decide calls fn (or keeps the initial count)
// and every decision is logged.
type scripted struct {
	initial  int
	interval time.Duration
	fn       func(v View) int
	log      []decision
}

type decision struct {
	at   time.Duration
	poke bool
	want int
	view View
}

func (s *scripted) Name() string { return "scripted" }
func (s *scripted) Initial() int { return s.initial }
func (s *scripted) Interval() time.Duration {
	if s.interval == 0 {
		return time.Second
	}
	return s.interval
}
func (s *scripted) Decide(v View) int {
	want := s.initial
	if s.fn != nil {
		want = s.fn(v)
	}
	s.log = append(s.log, decision{at: v.Now.Sub(v.Start), poke: v.Poke, want: want, view: v})
	return want
}

// testModel: service = in/1000 + out/10 seconds, one slot, no queue.
func testModel() Model {
	m := DefaultModel()
	m.Slots = 1
	m.Queue = 0
	m.PrefillRate = 1000
	m.DecodeRate = 10
	m.ColdStart = 30 * time.Second
	m.SLOSlack = 500 * time.Millisecond
	m.PricePerHour = 3
	return m
}

func trace(reqs ...Request) Trace {
	return Trace{Name: "t", Start: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), Requests: reqs}
}

func sec(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func run(t *testing.T, tr Trace, m Model, p Policy) Result {
	t.Helper()
	r, err := Run(tr, m, p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestServiceTime(t *testing.T) {
	m := DefaultModel()
	if got := m.ServiceTime(2000, 40); got != 2*time.Second {
		t.Errorf("2000 in + 40 out at 2000/40 tok/s = %s, want 2s", got)
	}
	if got := m.ServiceTime(0, 0); got != 0 {
		t.Errorf("empty request: %s", got)
	}
}

func TestSingleRequestGetsTheModelsLatency(t *testing.T) {
	m := testModel()
	// 1500 in, 25 out: 1.5 s + 2.5 s = 4 s.
	r := run(t, trace(Request{At: sec(0.5), In: 1500, Out: 25}), m, &scripted{initial: 1})
	if r.Served != 1 || r.Dropped != 0 || r.Violations != 0 {
		t.Fatalf("served %d dropped %d violations %d", r.Served, r.Dropped, r.Violations)
	}
	if !near(r.P50, 4) || !near(r.P99, 4) || r.MeanWait != 0 {
		t.Errorf("latency p50 %v p99 %v wait %v, want exactly 4s and no wait", r.P50, r.P99, r.MeanWait)
	}
	// One replica from 0 to the end of the run (4.5 s).
	if !near(r.Duration, 4.5) || !near(r.ReplicaHours, 4.5/3600) || !near(r.Cost, 3*4.5/3600) {
		t.Errorf("duration %v replica-hours %v cost %v", r.Duration, r.ReplicaHours, r.Cost)
	}
	if r.MaxReplicas != 1 || r.ColdStarts != 0 {
		t.Errorf("max replicas %d cold starts %d", r.MaxReplicas, r.ColdStarts)
	}
}

func TestBurstQueuesThenDrops(t *testing.T) {
	m := testModel()
	m.Slots = 2
	m.Queue = 2
	// Six 1 s requests at once on one replica: 2 served at once, 2 queued
	// (served 1 s later: latency 2 s, a violation with 0.5 s slack), 2 dropped.
	var reqs []Request
	for range 6 {
		reqs = append(reqs, Request{At: sec(1), In: 1000})
	}
	r := run(t, trace(reqs...), m, &scripted{initial: 1})
	if r.Served != 4 || r.Dropped != 2 || r.Violations != 4 {
		t.Fatalf("served %d dropped %d violations %d, want 4, 2, 4", r.Served, r.Dropped, r.Violations)
	}
	if !near(r.P50, 1) || !near(r.P99, 2) || !near(r.MeanWait, 0.5) {
		t.Errorf("p50 %v p99 %v mean wait %v, want 1, 2, 0.5", r.P50, r.P99, r.MeanWait)
	}
	if !near(r.Duration, 3) {
		t.Errorf("run ends at %vs, want 3", r.Duration)
	}
}

func TestLeastLoadedRouting(t *testing.T) {
	m := testModel()
	m.Slots = 1
	m.Queue = 5
	// Two replicas, four 1 s requests at once: two each, so the last two wait
	// 1 s (not 2 and 3 s on one replica).
	r := run(t, trace(Request{At: 0, In: 1000}, Request{At: 0, In: 1000}, Request{At: 0, In: 1000}, Request{At: 0, In: 1000}), m, &scripted{initial: 2})
	if !near(r.P99, 2) || !near(r.MeanWait, 0.5) || !near(r.Duration, 2) {
		t.Errorf("p99 %v mean wait %v end %v, want 2, 0.5, 2", r.P99, r.MeanWait, r.Duration)
	}
}

func TestColdStartDelaysScaleUp(t *testing.T) {
	m := testModel()
	m.Queue = 100
	// One replica; at the first tick the policy asks for a second. Requests
	// of 10 s each arrive every second; the second replica takes 30 s.
	var reqs []Request
	for i := range 40 {
		reqs = append(reqs, Request{At: sec(float64(i) + 0.5), In: 10000})
	}
	p := &scripted{initial: 1, fn: func(v View) int { return 2 }}
	r := run(t, trace(reqs...), m, p)
	if r.ColdStarts != 1 || r.MaxReplicas != 2 {
		t.Fatalf("cold starts %d max replicas %d", r.ColdStarts, r.MaxReplicas)
	}
	// The view at 31 s shows the new replica ready, at 30 s not yet.
	for _, d := range p.log {
		switch d.at {
		case 30 * time.Second:
			if d.view.Ready != 1 || d.view.Replicas != 2 {
				t.Errorf("at 30s: ready %d replicas %d, want 1 of 2", d.view.Ready, d.view.Replicas)
			}
		case 31 * time.Second:
			if d.view.Ready != 2 {
				t.Errorf("at 31s: ready %d, want 2", d.view.Ready)
			}
		}
	}
	// Asked for at 1 s, so billed from 1 s: replica-seconds = end + (end-1).
	if want := (2*r.Duration - 1) / 3600; !near(r.ReplicaHours, want) {
		t.Errorf("replica-hours %v, want %v", r.ReplicaHours, want)
	}
}

func TestScaleFromZeroActivationQueue(t *testing.T) {
	m := testModel()
	m.Slots = 4
	m.ActivationQueue = 3
	// No replica; the poke on the first arrival asks for one, ready at
	// 2+30 s. Four requests arrive at 2 s: three wait and are served at 32 s
	// (latency 31 s), the fourth finds the activation queue full.
	reqs := []Request{{At: sec(2), In: 1000}, {At: sec(2), In: 1000}, {At: sec(2), In: 1000}, {At: sec(2), In: 1000}}
	p := &scripted{initial: 0, fn: func(v View) int {
		if v.Poke || v.Replicas > 0 {
			return 1
		}
		return 0
	}}
	r := run(t, trace(reqs...), m, p)
	if r.Served != 3 || r.Dropped != 1 || r.Violations != 4 {
		t.Fatalf("served %d dropped %d violations %d, want 3, 1, 4", r.Served, r.Dropped, r.Violations)
	}
	if !near(r.P50, 31) || !near(r.P99, 31) {
		t.Errorf("p50 %v p99 %v, want 31 s (30 s cold start + 1 s)", r.P50, r.P99)
	}
	var pokes []decision
	for _, d := range p.log {
		if d.poke {
			pokes = append(pokes, d)
		}
	}
	if len(pokes) != 1 || pokes[0].at != 2*time.Second || pokes[0].view.Waiting != 1 || pokes[0].view.InFlight != 1 {
		t.Errorf("pokes %+v, want one at 2s with one request waiting", pokes)
	}
	if r.ColdStarts != 1 || !near(r.ReplicaHours, 31.0/3600) {
		t.Errorf("cold starts %d replica-hours %v, want 1 and 31 s", r.ColdStarts, r.ReplicaHours)
	}

	// With no activation queue the request is dropped, but it still wakes
	// the policy: the next one, after the cold start, is served.
	m0 := m
	m0.ActivationQueue = 0
	r = run(t, trace(Request{At: sec(2), In: 1000}, Request{At: sec(40), In: 1000}), m0, &scripted{initial: 0, fn: func(v View) int {
		if v.Poke || v.Replicas > 0 {
			return 1
		}
		return 0
	}})
	if r.Dropped != 1 || r.Served != 1 || r.Violations != 1 || !near(r.P50, 1) {
		t.Errorf("no activation queue: dropped %d served %d violations %d p50 %v", r.Dropped, r.Served, r.Violations, r.P50)
	}

	// The activation queue gives up after ActivationTimeout.
	m.ActivationTimeout = 10 * time.Second
	r = run(t, trace(reqs[:2]...), m, &scripted{initial: 0, fn: func(v View) int { return min(v.Replicas+1, 1) }})
	if r.Dropped != 2 || r.Served != 0 || !near(r.Duration, 12) {
		t.Errorf("dropped %d served %d end %v, want both dropped at 12 s", r.Dropped, r.Served, r.Duration)
	}
}

func TestActivationQueueReleasesInOrder(t *testing.T) {
	m := testModel()
	m.Slots = 1
	m.Queue = 5
	// Three requests wait for the cold start and are forwarded in arrival
	// order when the replica is ready at 30 s; one arriving at 30.5 s goes
	// straight to the replica, behind them.
	reqs := []Request{{At: 0, In: 1000}, {At: sec(0.1), In: 1000}, {At: sec(0.2), In: 1000}, {At: sec(30.5), In: 1000}}
	r := run(t, trace(reqs...), m, &scripted{initial: 0, fn: func(v View) int { return 1 }})
	if r.Dropped != 0 || r.Served != 4 {
		t.Fatalf("dropped %d served %d", r.Dropped, r.Served)
	}
	// Served at 30-31, 31-32, 32-33, 33-34: waits 30, 30.9, 31.8, 2.5.
	if !near(r.Duration, 34) || !near(r.P99, 32.8) || !near(r.MeanWait, (30+30.9+31.8+2.5)/4) {
		t.Errorf("end %v p99 %v mean wait %v, want 34, 32.8, 23.8", r.Duration, r.P99, r.MeanWait)
	}

	// Released requests beyond the replica's slot and queue are dropped.
	m.Queue = 1
	r = run(t, trace(reqs[:3]...), m, &scripted{initial: 0, fn: func(v View) int { return 1 }})
	if r.Dropped != 1 || r.Served != 2 || !near(r.Duration, 32) {
		t.Errorf("queue 1: dropped %d served %d end %v, want 1, 2, 32", r.Dropped, r.Served, r.Duration)
	}
}

func TestScaleDownDrains(t *testing.T) {
	m := testModel()
	m.Queue = 10
	// Two replicas each serving a 5 s request; at the 1 s tick the policy
	// wants one. The idle-most (equal load: the newer) drains: it finishes
	// its request and stops at 5 s, and nothing is dropped.
	reqs := []Request{{At: 0, In: 5000}, {At: 0, In: 5000}, {At: sec(2), In: 1000}}
	p := &scripted{initial: 2, fn: func(v View) int { return 1 }}
	r := run(t, trace(reqs...), m, p)
	if r.Dropped != 0 || r.Served != 3 {
		t.Fatalf("dropped %d served %d", r.Dropped, r.Served)
	}
	// The 2 s request goes to the replica kept, not the draining one: it
	// waits until 5 s.
	if !near(r.MeanWait, 1) || !near(r.Duration, 6) {
		t.Errorf("mean wait %v end %v, want 1 (3 s for the replica kept) and 6", r.MeanWait, r.Duration)
	}
	// Replica 0 runs to the end (6 s), replica 1 stops at 5 s.
	if !near(r.ReplicaHours, 11.0/3600) {
		t.Errorf("replica-hours %v, want 11 s", r.ReplicaHours*3600)
	}
}

func TestSamplesAreTimeWeighted(t *testing.T) {
	m := testModel()
	m.Slots = 4
	// Requests in flight: one from 0.5 s to 2.5 s, one from 1 s to 1.5 s.
	// An arrival at exactly 1 s counts in the second (0 s, 1 s].
	p := &scripted{initial: 1}
	run(t, trace(Request{At: sec(0.5), In: 2000}, Request{At: sec(1), In: 500}), m, p)
	var got []Sample
	for _, d := range p.log {
		if !d.poke {
			got = d.view.History
		}
	}
	want := []float64{0.5, 1.5}
	if len(got) != 2 {
		t.Fatalf("history %v", got)
	}
	for i, w := range want {
		if !near(got[i].Concurrency, w) {
			t.Errorf("second %d: concurrency %v, want %v", i+1, got[i].Concurrency, w)
		}
	}
	if got[0].Arrivals != 2 || got[1].Arrivals != 0 || got[1].Ready != 1 || !got[1].At.Equal(p.log[0].view.Start.Add(2*time.Second)) {
		t.Errorf("history %+v", got)
	}
}

func TestRunIsDeterministic(t *testing.T) {
	tr, err := Synthetic("spike", 3)
	if err != nil {
		t.Fatal(err)
	}
	m := DefaultModel()
	a, err := Compare(tr, m, Policies)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Compare(tr, m, Policies)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Errorf("two runs differ:\n%+v\n%+v", a, b)
	}
}

func TestModelValidate(t *testing.T) {
	m := DefaultModel()
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	m.Slots = 0
	m.DecodeRate = -1
	err := m.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"slots must be at least 1", "decode rate"} {
		if !contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	if _, err := Run(trace(Request{}), m, &scripted{}); err == nil {
		t.Error("Run accepted an invalid model")
	}
	if _, err := Run(trace(), DefaultModel(), &scripted{}); err == nil {
		t.Error("Run accepted an empty trace")
	}
}
