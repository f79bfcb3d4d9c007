package gateway

// Scale from zero (activation) and the load figures an autoscaler reads.
//
// A deployment with activation enabled and no ready replica does not answer
// 503 at once: its requests are held, up to Activation.QueueSize of them and
// for at most Activation.Timeout each, until SetBackends publishes a ready
// replica, and are then proxied as usual. The first held request of an
// episode calls Options.OnDemand so that the controller starts a replica.
//
// Waiters sleep on a channel of their deployment that SetBackends closes when
// it publishes a non-empty set (and RemoveDeployment or disabling activation
// close it too, to release them); the next waiter makes a new one. Nothing
// polls, and nothing of this is on the path of a deployment with replicas.
//
// A held request's body is not touched until it is forwarded. While it waits,
// a client that goes away is noticed through the request's context (net/http)
// or, on a taken-over connection, by watching the connection when the
// request has no body and nothing was pipelined behind it; otherwise the
// request is held until its timeout.

import (
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Activation is a deployment's scale-from-zero setting.
type Activation struct {
	// Enabled holds requests that find no ready replica instead of
	// answering 503 at once, and reports the demand through
	// Options.OnDemand.
	Enabled bool
	// QueueSize bounds the requests held at once (default 1000); more get
	// 503 "activation queue full" with Retry-After.
	QueueSize int
	// Timeout bounds how long a request is held, from its arrival (default
	// 60s); then it gets 504 with Retry-After.
	Timeout time.Duration
}

// Defaults of Activation.
const (
	DefaultActivationQueueSize = 1000
	DefaultActivationTimeout   = 60 * time.Second
)

// Retry-After values of activation's refusals: a full queue empties as soon
// as a replica is up; a request that timed out waited for a slow start.
var (
	retryAfterQueueFull = []string{"1"}
	retryAfterTimeout   = []string{"5"}
)

// depConfig is a deployment's autoscaling-related setting, immutable; a
// deployment reads it with one atomic load (deployment.cfg).
type depConfig struct {
	act          Activation // defaults applied
	metricHeader string     // canonical header key; "" none
}

// SetActivation sets a deployment's scale-from-zero setting. Like SetAccess,
// it may be called before the deployment's first SetBackends; RemoveDeployment
// forgets it. Disabling activation answers the requests held now with 503 "no
// ready replica"; a changed QueueSize applies to new requests, a changed
// Timeout to requests arriving from now on.
func (g *Gateway) SetActivation(name string, a Activation) {
	if a.QueueSize <= 0 {
		a.QueueSize = DefaultActivationQueueSize
	}
	if a.Timeout <= 0 {
		a.Timeout = DefaultActivationTimeout
	}
	g.updateConfig(name, func(c *depConfig) { c.act = a })
}

// SetMetricHeader makes the gateway record, per replica of the deployment,
// the last value of a response header holding a number (e.g. a queue depth
// the replica reports in "X-Queue-Depth"), which Stats returns. An empty
// header stops recording. Like SetActivation, it may be called before the
// deployment's first SetBackends; RemoveDeployment forgets it.
func (g *Gateway) SetMetricHeader(name, header string) {
	header = http.CanonicalHeaderKey(strings.TrimSpace(header))
	g.updateConfig(name, func(c *depConfig) { c.metricHeader = header })
}

func (g *Gateway) updateConfig(name string, update func(*depConfig)) {
	name = strings.ToLower(name)
	g.mu.Lock()
	var nc depConfig
	if c := g.configs[name]; c != nil {
		nc = *c
	}
	update(&nc)
	g.configs[name] = &nc
	d := (*g.deps.Load())[name]
	if d != nil {
		d.cfg.Store(&nc)
	}
	g.mu.Unlock()
	if d != nil && !nc.act.Enabled {
		d.wakeWaiters(false) // held requests now get the immediate 503
	}
}

// waiters is the activation state of a deployment.
type waiters struct {
	mu       sync.Mutex
	n        int           // requests held now
	wake     chan struct{} // closed to wake them; nil until someone waits
	demanded bool          // OnDemand was called for the current episode
	count    atomic.Int64  // n, for lock-free readers
}

// wakeWaiters wakes every held request so it looks again at the deployment.
// ready means a non-empty set was published: the activation episode is over,
// and the next request finding no replica asks for one again.
func (d *deployment) wakeWaiters(ready bool) {
	w := &d.waiting
	w.mu.Lock()
	if w.wake != nil {
		close(w.wake)
		w.wake = nil
	}
	if ready {
		w.demanded = false
	}
	w.mu.Unlock()
}

// waitChan returns the channel the next wake-up closes.
func (w *waiters) waitChan() chan struct{} {
	w.mu.Lock()
	if w.wake == nil {
		w.wake = make(chan struct{})
	}
	ch := w.wake
	w.mu.Unlock()
	return ch
}

// noReplica answers a request that found d without a ready replica: at once
// (503), or, with activation, once a replica is ready. It returns the set to
// proxy to, or nil when it has answered the request.
func (g *Gateway) noReplica(w http.ResponseWriter, r *http.Request, d *deployment, start time.Time, fc *fastConn) *backendSet {
	cfg := d.cfg.Load()
	if cfg == nil || !cfg.act.Enabled {
		g.unavailable(w, d, start)
		return nil
	}
	q := &d.waiting
	q.mu.Lock()
	if d.removed.Load() {
		q.mu.Unlock()
		writeError(w, http.StatusNotFound, "unknown deployment", d.name)
		return nil
	}
	if set := d.set.Load(); len(set.backends) > 0 {
		q.mu.Unlock() // published meanwhile
		return set
	}
	if q.n >= cfg.act.QueueSize {
		q.mu.Unlock()
		d.queueFull.Add(1)
		w.Header()["Retry-After"] = retryAfterQueueFull
		writeError(w, http.StatusServiceUnavailable, "activation queue full", d.name)
		g.noCloudStats(d).observe(http.StatusServiceUnavailable, time.Since(start))
		return nil
	}
	q.n++
	q.count.Store(int64(q.n))
	call := !q.demanded
	q.demanded = true
	if q.wake == nil {
		q.wake = make(chan struct{})
	}
	ch := q.wake
	q.mu.Unlock()
	if call && g.onDemand != nil {
		go g.onDemand(d.name)
	}

	// Client disconnects: see the top of the file.
	var gone <-chan struct{}
	watching := false
	if fc == nil {
		gone = r.Context().Done()
	} else if r.ContentLength == 0 && fc.br.Buffered() == 0 && len(fc.cr.pending) == 0 {
		c := make(chan struct{})
		gone = c
		watching = true
		fc.startWatch(func() { close(c) })
	}
	timeout := cfg.act.Timeout
	timer := time.NewTimer(timeout - time.Since(start))

	var set *backendSet
	code := 0 // the answer when no set: 404, 503, 504 or 499
	for {
		if d.removed.Load() {
			code = http.StatusNotFound
			break
		}
		if set = d.set.Load(); len(set.backends) > 0 {
			break
		}
		if c := d.cfg.Load(); c == nil || !c.act.Enabled {
			code = http.StatusServiceUnavailable
			break
		}
		if ch == nil {
			// Woken for nothing we care about (yet): the next wake-up's
			// channel, taken before looking again so that none is missed.
			ch = q.waitChan()
			continue
		}
		select {
		case <-ch:
			ch = nil
			continue
		case <-timer.C:
			code = http.StatusGatewayTimeout
		case <-gone:
			code = statusClientGone
		}
		break
	}
	timer.Stop()
	if watching && fc.stopWatch() {
		code = statusClientGone
	}
	q.mu.Lock()
	q.n--
	q.count.Store(int64(q.n))
	if q.n == 0 && len(d.set.Load().backends) == 0 {
		// The episode ended without a replica (timeouts, cancellations):
		// the next request asks again.
		q.demanded = false
	}
	q.mu.Unlock()

	switch code {
	case 0:
		if testHookResumed != nil {
			testHookResumed(d.name)
		}
		return set
	case statusClientGone:
		g.noCloudStats(d).observe(statusClientGone, time.Since(start))
	case http.StatusNotFound:
		writeError(w, http.StatusNotFound, "deployment was removed", d.name)
	case http.StatusServiceUnavailable:
		g.unavailable(w, d, start)
	case http.StatusGatewayTimeout:
		d.holdTimeout.Add(1)
		w.Header()["Retry-After"] = retryAfterTimeout
		writeError(w, http.StatusGatewayTimeout, "no replica became ready within "+fmtSeconds(timeout), d.name)
		g.noCloudStats(d).observe(http.StatusGatewayTimeout, time.Since(start))
	}
	return nil
}

// testHookResumed, if set (by tests only), is called when a held request
// resumes with a ready set.
var testHookResumed func(deployment string)

// unavailable answers 503 "no ready replica".
func (g *Gateway) unavailable(w http.ResponseWriter, d *deployment, start time.Time) {
	d.noReplica.Add(1)
	w.Header()["Retry-After"] = retryAfter1
	writeError(w, http.StatusServiceUnavailable, "no ready replica", d.name)
	g.noCloudStats(d).observe(http.StatusServiceUnavailable, time.Since(start))
}

// fmtSeconds formats a timeout like "60s" or "1.5s".
func fmtSeconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}

// recordMetric stores the value of header key in pc's response head, if it
// holds a number, as the replica's metric.
func (r *replica) recordMetric(pc *pconn, key string) {
	for i := range pc.fields {
		f := &pc.fields[i]
		if f.keyArena {
			if string(pc.arena[f.ks:f.ke]) != key {
				continue
			}
		} else if f.key != key {
			continue
		}
		r.setMetric(string(pc.arena[f.vs:f.ve]))
		return
	}
}

func (r *replica) setMetric(v string) {
	x, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil {
		return
	}
	r.storeMetric(x)
}

func (r *replica) storeMetric(x float64) {
	if math.IsNaN(x) {
		return
	}
	r.metric.Store(math.Float64bits(x))
	r.metricAt.Store(time.Now().UnixNano())
}

// DeploymentStats is a snapshot of a deployment's load for an autoscaler.
// Counters are cumulative from the deployment's creation (by SetBackends):
// rates and interval latencies come from the difference of two snapshots.
type DeploymentStats struct {
	// InFlight is the requests being proxied to the deployment's replicas
	// now (replicas being drained included) plus Waiting: the demand, also
	// at zero replicas.
	InFlight int
	// Waiting is the requests held for a replica (activation).
	Waiting int
	// Ready is the number of replicas in the ready set.
	Ready int
	// Requests counts the requests addressed to the deployment (that passed
	// its access policy), on arrival, whatever their outcome.
	Requests uint64
	// LatencyCount and LatencySumSeconds count the responses of replicas
	// and their total duration, from the request's arrival (time held
	// included) to the end of the response body; LatencyBuckets counts
	// them by duration, cumulatively: bucket i holds the responses of at
	// most LatencyBounds()[i] seconds, the last bucket all of them.
	LatencyCount      uint64
	LatencySumSeconds float64
	LatencyBuckets    [len(durationBuckets) + 1]uint64
	// Replicas are the deployment's replicas with requests in flight or in
	// the ready set, by ReplicaID.
	Replicas []ReplicaStats
}

// ReplicaStats is the load of one replica.
type ReplicaStats struct {
	ReplicaID string
	Ready     bool // in the ready set (else being drained)
	InFlight  int
	// Metric is the last value of the deployment's metric header (see
	// SetMetricHeader) in a response of this replica, received at MetricAt
	// (zero: none yet).
	Metric   float64
	MetricAt time.Time
}

// LatencyBounds returns the upper bounds, in seconds, of
// DeploymentStats.LatencyBuckets but the last (which is unbounded).
func LatencyBounds() []float64 {
	return append([]float64(nil), durationBuckets[:]...)
}

// LatencyQuantile estimates the q-quantile (0..1) of the response durations
// recorded between prev and s, two snapshots of the same deployment, by
// linear interpolation within a histogram bucket (as Prometheus'
// histogram_quantile does). It returns false when no response was recorded
// in between. Durations in the last bucket are reported as its lower bound.
func (s DeploymentStats) LatencyQuantile(q float64, prev DeploymentStats) (float64, bool) {
	n := len(s.LatencyBuckets)
	total := float64(s.LatencyBuckets[n-1] - prev.LatencyBuckets[n-1])
	if s.LatencyBuckets[n-1] < prev.LatencyBuckets[n-1] || total == 0 {
		return 0, false
	}
	q = math.Min(math.Max(q, 0), 1)
	rank := q * total
	lower, below := 0.0, 0.0
	for i := 0; i < n; i++ {
		cum := float64(s.LatencyBuckets[i] - prev.LatencyBuckets[i])
		if i == n-1 {
			return lower, true
		}
		upper := durationBuckets[i]
		if cum >= rank && cum > below {
			return lower + (upper-lower)*(rank-below)/(cum-below), true
		}
		lower, below = upper, cum
	}
	return lower, true
}

// Stats returns a deployment's load, or false if the deployment is unknown.
// It costs a few atomic loads per cloud and replica, and takes no lock that
// requests take, so it can be called every second or more often.
func (g *Gateway) Stats(name string) (DeploymentStats, bool) {
	name = toLower(name)
	d := (*g.deps.Load())[name]
	if d == nil {
		return DeploymentStats{}, false
	}
	var s DeploymentStats
	s.Waiting = int(d.waiting.count.Load())
	s.Requests = d.requests.Load()
	set := d.set.Load()
	s.Ready = len(set.backends)
	var sumNanos uint64
	for cloud, c := range *d.clouds.Load() {
		if cloud == "" {
			continue // requests no replica answered
		}
		// Count from the buckets, as the histogram metric does.
		var cum uint64
		for i := range c.buckets {
			cum += c.buckets[i].Load()
			s.LatencyBuckets[i] += cum
		}
		sumNanos += c.sumNanos.Load()
	}
	s.LatencyCount = s.LatencyBuckets[len(s.LatencyBuckets)-1]
	s.LatencySumSeconds = float64(sumNanos) / 1e9

	ready := make(map[*replica]bool, len(set.backends))
	for _, b := range set.backends {
		ready[b.rep] = true
	}
	g.repMu.RLock()
	for _, r := range g.replicas {
		if r.deployment != name && !ready[r] {
			continue
		}
		n := int(r.inflight.Load())
		if n == 0 && !ready[r] {
			continue
		}
		rs := ReplicaStats{ReplicaID: r.id, Ready: ready[r], InFlight: n}
		if at := r.metricAt.Load(); at != 0 {
			rs.Metric = math.Float64frombits(r.metric.Load())
			rs.MetricAt = time.Unix(0, at)
		}
		s.Replicas = append(s.Replicas, rs)
		s.InFlight += n
	}
	g.repMu.RUnlock()
	s.InFlight += s.Waiting
	sort.Slice(s.Replicas, func(i, j int) bool { return s.Replicas[i].ReplicaID < s.Replicas[j].ReplicaID })
	return s, true
}
