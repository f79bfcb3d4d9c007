package sim

import (
	"container/heap"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// Result is one policy's run over one trace.
type Result struct {
	Policy       string  `json:"policy"`
	Requests     int     `json:"requests"`
	Served       int     `json:"served"`
	Violations   int     `json:"violations"` // dropped, or waited longer than the SLO slack
	ViolationPct float64 `json:"violationPct"`
	Dropped      int     `json:"dropped"`
	// Latency (arrival to completion) of the requests served, in seconds.
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	// Wait before a slot started serving, in seconds, over the requests served.
	MeanWait     float64 `json:"meanWait"`
	ReplicaHours float64 `json:"replicaHours"`
	Cost         float64 `json:"cost"`
	MaxReplicas  int     `json:"maxReplicas"`  // most replicas billed at once
	MeanReplicas float64 `json:"meanReplicas"` // replica-hours / run hours
	ColdStarts   int     `json:"coldStarts"`   // replicas asked for after time zero
	Duration     float64 `json:"duration"`     // simulated seconds: time zero to the last request served or dropped
}

type replicaState uint8

const (
	starting replicaState = iota
	ready
	draining
	stopped
)

type replica struct {
	id      int
	state   replicaState
	created time.Duration
	stopAt  time.Duration
	busy    int
	queue   []*request
}

func (r *replica) load() int { return r.busy + len(r.queue) }

type reqState uint8

const (
	pending reqState = iota
	activating
	atReplica
	served
	dropped
)

type request struct {
	arrive, svc, start, done time.Duration
	state                    reqState
}

type evKind uint8

// Events at the same instant run in this order: slots free before new
// requests are routed, and the second's sample (and the policy's tick) sees
// everything that happened up to and including that instant.
const (
	evDone evKind = iota
	evReady
	evExpire
	evArrive
	evSample
)

type event struct {
	at   time.Duration
	kind evKind
	seq  uint64
	rep  *replica
	req  *request
}

type eventHeap []event

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	if a.at != b.at {
		return a.at < b.at
	}
	if a.kind != b.kind {
		return a.kind < b.kind
	}
	return a.seq < b.seq
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(event)) }
func (h *eventHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

type engine struct {
	m     Model
	start time.Time
	pol   Policy

	now    time.Duration
	events eventHeap
	seq    uint64

	all  []*replica // every replica ever, by id
	live []*replica // starting, ready or draining, by id

	act    []*request // activation queue, in arrival order; expired entries stay until released
	actLen int        // requests in it still waiting

	reqs     []request
	resolved int
	inFlight int

	// Current second's sample.
	area     float64 // request-seconds in flight since the last sample
	lastAt   time.Duration
	arrivals int
	history  []Sample
	nextTick time.Duration

	maxBilled  int
	coldStarts int
}

// Run replays tr against m with p deciding the replicas, until every
// request has been served or dropped.
func Run(tr Trace, m Model, p Policy) (Result, error) {
	if err := m.Validate(); err != nil {
		return Result{}, err
	}
	if len(tr.Requests) == 0 {
		return Result{}, errors.New("trace has no requests")
	}
	e := &engine{m: m, start: tr.Start, pol: p, reqs: make([]request, len(tr.Requests))}
	e.events = make(eventHeap, 0, len(tr.Requests)+64)
	for i, r := range tr.Requests {
		if i > 0 && r.At < tr.Requests[i-1].At {
			return Result{}, fmt.Errorf("trace not sorted at request %d", i)
		}
		e.reqs[i] = request{arrive: r.At, svc: m.ServiceTime(r.In, r.Out)}
		e.push(event{at: r.At, kind: evArrive, req: &e.reqs[i]})
	}
	e.push(event{at: time.Second, kind: evSample})
	for range min(max(p.Initial(), 0), m.MaxReplicas) {
		r := e.addReplica()
		r.state = ready
	}
	e.coldStarts = 0
	e.nextTick = e.interval()
	for e.resolved < len(e.reqs) {
		ev := heap.Pop(&e.events).(event)
		e.advance(ev.at)
		switch ev.kind {
		case evArrive:
			e.arrive(ev.req)
		case evDone:
			e.done(ev.rep, ev.req)
		case evReady:
			if ev.rep.state == starting {
				ev.rep.state = ready
				e.release()
			}
		case evExpire:
			if ev.req.state == activating {
				e.actLen--
				e.resolve(ev.req, dropped)
			}
		case evSample:
			e.sample()
		}
	}
	return e.result(), nil
}

func (e *engine) push(ev event) {
	ev.seq = e.seq
	e.seq++
	heap.Push(&e.events, ev)
}

func (e *engine) interval() time.Duration {
	d := e.pol.Interval()
	if d <= 0 {
		d = time.Second
	}
	return d
}

func (e *engine) advance(t time.Duration) {
	e.area += float64(e.inFlight) * (t - e.lastAt).Seconds()
	e.lastAt = t
	e.now = t
}

func (e *engine) counts() (replicas, readyN int) {
	for _, r := range e.live {
		switch r.state {
		case ready:
			readyN++
			replicas++
		case starting:
			replicas++
		}
	}
	return replicas, readyN
}

func (e *engine) sample() {
	replicas, readyN := e.counts()
	e.history = append(e.history, Sample{
		At:          e.start.Add(e.now),
		Concurrency: e.area, // over exactly one second
		Arrivals:    e.arrivals,
		Ready:       readyN,
		Replicas:    replicas,
	})
	e.area, e.arrivals = 0, 0
	if e.now >= e.nextTick {
		e.decide(false)
		e.nextTick = e.now + e.interval()
	}
	e.push(event{at: e.now + time.Second, kind: evSample})
}

func (e *engine) decide(poke bool) {
	replicas, readyN := e.counts()
	want := e.pol.Decide(View{
		Now:      e.start.Add(e.now),
		Start:    e.start,
		Replicas: replicas,
		Ready:    readyN,
		InFlight: e.inFlight,
		Waiting:  e.actLen,
		History:  e.history[:len(e.history):len(e.history)],
		Poke:     poke,
	})
	want = min(max(want, 0), e.m.MaxReplicas)
	switch {
	case want > replicas:
		for range want - replicas {
			r := e.addReplica()
			e.push(event{at: e.now + e.m.ColdStart, kind: evReady, rep: r})
		}
	case want < replicas:
		e.remove(replicas - want)
	}
}

func (e *engine) addReplica() *replica {
	r := &replica{id: len(e.all), state: starting, created: e.now}
	e.all = append(e.all, r)
	e.live = append(e.live, r)
	e.coldStarts++
	e.maxBilled = max(e.maxBilled, len(e.live))
	return r
}

// remove takes n replicas out of service: starting ones first (newest
// first), then the least loaded ready ones (newest first among equals).
func (e *engine) remove(n int) {
	cands := make([]*replica, 0, len(e.live))
	for _, r := range e.live {
		if r.state == starting || r.state == ready {
			cands = append(cands, r)
		}
	}
	slices.SortFunc(cands, func(a, b *replica) int {
		if (a.state == starting) != (b.state == starting) {
			if a.state == starting {
				return -1
			}
			return 1
		}
		if a.state == ready && a.load() != b.load() {
			return a.load() - b.load()
		}
		return b.id - a.id
	})
	for _, r := range cands[:n] {
		if r.state == ready && r.load() > 0 {
			r.state = draining
			continue
		}
		e.stop(r)
	}
}

func (e *engine) stop(r *replica) {
	r.state = stopped
	r.stopAt = e.now
	e.live = slices.DeleteFunc(e.live, func(x *replica) bool { return x == r })
}

// leastLoaded is the ready replica with the fewest requests that can take
// one more, or nil.
func (e *engine) leastLoaded() *replica {
	var best *replica
	limit := e.m.Slots + e.m.Queue
	for _, r := range e.live {
		if r.state != ready || r.load() >= limit {
			continue
		}
		if best == nil || r.load() < best.load() {
			best = r
		}
	}
	return best
}

func (e *engine) arrive(q *request) {
	e.arrivals++
	e.inFlight++
	replicas, readyN := e.counts()
	if readyN > 0 {
		e.route(q)
		return
	}
	accepted := e.actLen < e.m.ActivationQueue
	if accepted {
		q.state = activating
		e.act = append(e.act, q)
		e.actLen++
		e.push(event{at: e.now + e.m.ActivationTimeout, kind: evExpire, req: q})
	}
	if replicas == 0 {
		e.decide(true) // the request counts in flight even if it is about to be dropped
	}
	if !accepted {
		e.resolve(q, dropped)
	}
}

// route sends q to the least-loaded ready replica, or drops it when every
// ready replica is full.
func (e *engine) route(q *request) {
	if r := e.leastLoaded(); r != nil {
		e.dispatch(r, q)
		return
	}
	e.resolve(q, dropped)
}

// release forwards every request of the activation queue, in order, once a
// replica is ready (as the gateway does when it publishes one): those that
// find every ready replica full are dropped.
func (e *engine) release() {
	for _, q := range e.act {
		if q.state == activating {
			e.route(q)
		}
	}
	e.act, e.actLen = nil, 0
}

func (e *engine) dispatch(r *replica, q *request) {
	q.state = atReplica
	if r.busy < e.m.Slots {
		e.serve(r, q)
		return
	}
	r.queue = append(r.queue, q)
}

func (e *engine) serve(r *replica, q *request) {
	r.busy++
	q.start = e.now
	e.push(event{at: e.now + q.svc, kind: evDone, rep: r, req: q})
}

func (e *engine) done(r *replica, q *request) {
	r.busy--
	e.resolve(q, served)
	if len(r.queue) > 0 {
		next := r.queue[0]
		r.queue[0] = nil
		r.queue = r.queue[1:]
		e.serve(r, next)
	}
	if r.state == draining && r.load() == 0 {
		e.stop(r)
	}
}

func (e *engine) resolve(q *request, s reqState) {
	q.state = s
	q.done = e.now
	e.inFlight--
	e.resolved++
}

func (e *engine) result() Result {
	end := e.now
	res := Result{Policy: e.pol.Name(), Requests: len(e.reqs), MaxReplicas: e.maxBilled, ColdStarts: e.coldStarts, Duration: end.Seconds()}
	lat := make([]float64, 0, len(e.reqs))
	var wait float64
	for i := range e.reqs {
		q := &e.reqs[i]
		if q.state == dropped {
			res.Dropped++
			res.Violations++
			continue
		}
		res.Served++
		w := q.start - q.arrive
		wait += w.Seconds()
		if w > e.m.SLOSlack {
			res.Violations++
		}
		lat = append(lat, (q.done - q.arrive).Seconds())
	}
	res.ViolationPct = 100 * float64(res.Violations) / float64(res.Requests)
	if len(lat) > 0 {
		slices.Sort(lat)
		res.P50 = quantile(lat, 0.50)
		res.P99 = quantile(lat, 0.99)
		res.MeanWait = wait / float64(len(lat))
	}
	var secs float64
	for _, r := range e.all {
		stop := end
		if r.state == stopped {
			stop = r.stopAt
		}
		secs += (stop - r.created).Seconds()
	}
	res.ReplicaHours = secs / 3600
	res.Cost = res.ReplicaHours * e.m.PricePerHour
	if end > 0 {
		res.MeanReplicas = secs / end.Seconds()
	}
	return res
}

// quantile is the nearest-rank quantile of sorted xs.
func quantile(xs []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(xs)))) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}
