package gateway

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// durationBuckets are the upper bounds (seconds) of the request duration
// histogram: from sub-millisecond proxying up to long inference and streams.
var durationBuckets = [...]float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// Reasons for aloft_gateway_unavailable_total.
const (
	reasonNoRoute           = "no_route"              // no Host or header naming a deployment
	reasonUnknownDeployment = "unknown_deployment"    // names a deployment the gateway does not know
	reasonNoReadyReplica    = "no_ready_replica"      // known deployment, empty ready set (503)
	reasonAllFailed         = "all_replicas_failed"   // every replica tried refused the connection (502)
	reasonQueueFull         = "activation_queue_full" // activation: too many requests held (503)
	reasonActivationTimeout = "activation_timeout"    // activation: no replica ready in time (504)
)

// cloudStats holds the request counters of one (deployment, cloud) pair. They
// are plain atomics on the hot path, turned into metrics at scrape time.
type cloudStats struct {
	cloud    string
	codes    [1000]atomic.Uint64 // by HTTP status code
	buckets  [len(durationBuckets) + 1]atomic.Uint64
	sumNanos atomic.Uint64
}

func (c *cloudStats) observe(code int, d time.Duration) {
	if code < 100 || code > 999 {
		code = 0
	}
	c.codes[code].Add(1)
	s := d.Seconds()
	i := 0
	for i < len(durationBuckets) && s > durationBuckets[i] {
		i++
	}
	c.buckets[i].Add(1)
	if d > 0 {
		c.sumNanos.Add(uint64(d))
	}
}

// cloudStatsLocked returns (creating) the stats of d for cloud. Gateway.mu held.
func (g *Gateway) cloudStatsLocked(d *deployment, cloud string) *cloudStats {
	m := *d.clouds.Load()
	if s := m[cloud]; s != nil {
		return s
	}
	nm := make(map[string]*cloudStats, len(m)+1)
	for k, v := range m {
		nm[k] = v
	}
	s := &cloudStats{cloud: cloud}
	nm[cloud] = s
	d.clouds.Store(&nm)
	return s
}

var (
	descRequests = prometheus.NewDesc("aloft_gateway_requests_total",
		"Requests the gateway answered for a deployment, by the cloud of the replica that served them (empty if none) and HTTP status code.",
		[]string{"deployment", "cloud", "code"}, nil)
	descDuration = prometheus.NewDesc("aloft_gateway_request_duration_seconds",
		"Time from receiving a request to the end of its response body, for requests to a known deployment.",
		[]string{"deployment", "cloud"}, nil)
	descInflight = prometheus.NewDesc("aloft_gateway_inflight_requests",
		"Requests being proxied to a replica now.",
		[]string{"deployment", "replica"}, nil)
	descRetries = prometheus.NewDesc("aloft_gateway_retries_total",
		"Requests sent to another replica after a replica could not be reached.",
		[]string{"deployment"}, nil)
	descUnavailable = prometheus.NewDesc("aloft_gateway_unavailable_total",
		"Requests the gateway could not hand to any replica, by reason (no_route, unknown_deployment, no_ready_replica, all_replicas_failed, activation_queue_full, activation_timeout). Requests not naming a known deployment have deployment=\"\".",
		[]string{"deployment", "reason"}, nil)
	descWaiting = prometheus.NewDesc("aloft_gateway_waiting_requests",
		"Requests held for a replica of a deployment at zero replicas (activation).",
		[]string{"deployment"}, nil)
)

// collector exports the gateway's counters. Only live deployments and
// replicas (including draining ones with requests in flight) have series.
type collector struct{ g *Gateway }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRequests
	ch <- descDuration
	ch <- descInflight
	ch <- descRetries
	ch <- descUnavailable
	ch <- descWaiting
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	g := c.g
	ch <- prometheus.MustNewConstMetric(descUnavailable, prometheus.CounterValue, float64(g.noRoute.Load()), "", reasonNoRoute)
	ch <- prometheus.MustNewConstMetric(descUnavailable, prometheus.CounterValue, float64(g.unknownDeployment.Load()), "", reasonUnknownDeployment)
	for _, d := range *g.deps.Load() {
		ch <- prometheus.MustNewConstMetric(descRetries, prometheus.CounterValue, float64(d.retries.Load()), d.name)
		ch <- prometheus.MustNewConstMetric(descUnavailable, prometheus.CounterValue, float64(d.noReplica.Load()), d.name, reasonNoReadyReplica)
		ch <- prometheus.MustNewConstMetric(descUnavailable, prometheus.CounterValue, float64(d.allFailed.Load()), d.name, reasonAllFailed)
		if c := d.cfg.Load(); (c != nil && c.act.Enabled) || d.queueFull.Load() != 0 || d.holdTimeout.Load() != 0 {
			ch <- prometheus.MustNewConstMetric(descUnavailable, prometheus.CounterValue, float64(d.queueFull.Load()), d.name, reasonQueueFull)
			ch <- prometheus.MustNewConstMetric(descUnavailable, prometheus.CounterValue, float64(d.holdTimeout.Load()), d.name, reasonActivationTimeout)
			ch <- prometheus.MustNewConstMetric(descWaiting, prometheus.GaugeValue, float64(d.waiting.count.Load()), d.name)
		}
		for _, s := range *d.clouds.Load() {
			var total uint64
			for code := range s.codes {
				n := s.codes[code].Load()
				if n == 0 {
					continue
				}
				total += n
				label := "other"
				if code != 0 {
					label = strconv.Itoa(code)
				}
				ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(n), d.name, s.cloud, label)
			}
			if total == 0 {
				continue
			}
			// Count is derived from the buckets so the histogram is consistent
			// even when requests finish during the scrape.
			buckets := make(map[float64]uint64, len(durationBuckets))
			var cum uint64
			for i, ub := range durationBuckets {
				cum += s.buckets[i].Load()
				buckets[ub] = cum
			}
			cum += s.buckets[len(durationBuckets)].Load()
			ch <- prometheus.MustNewConstHistogram(descDuration, cum, float64(s.sumNanos.Load())/1e9, buckets, d.name, s.cloud)
		}
	}
	g.repMu.RLock()
	for _, r := range g.replicas {
		ch <- prometheus.MustNewConstMetric(descInflight, prometheus.GaugeValue, float64(r.inflight.Load()), r.deployment, r.id)
	}
	g.repMu.RUnlock()
}
