package controller

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/autoscale"
	"github.com/aloft-dev/aloft/internal/gateway"
	"github.com/aloft-dev/aloft/internal/store"
)

// StatsRouter is a Router that also reports traffic (the gateway): the
// autoscaler reads it every tick, and holds requests of deployments that
// may scale to zero.
type StatsRouter interface {
	Stats(deployment string) (gateway.DeploymentStats, bool)
	SetActivation(deployment string, a gateway.Activation)
	// SetMetricHeader and ScrapeMetric feed a custom metric: from a
	// response header, or from each replica's Prometheus /metrics page.
	SetMetricHeader(deployment, header string)
	ScrapeMetric(ctx context.Context, deployment, metric string, timeout time.Duration) error
}

// scaler keeps the autoscaler's per-deployment memory: the metric window,
// the decider's state, and the replica count it decided. The decider itself
// (internal/autoscale.Decide) is pure; this is the reconciler around it.
type scaler struct {
	mu     sync.Mutex
	byName map[string]*scaleState
	// scraping holds deployments whose /metrics scrape is in flight.
	scraping map[string]bool
}

type scaleState struct {
	cfg     autoscale.Config
	gen     int64 // the deployment generation cfg was made from
	state   autoscale.State
	window  []autoscale.Sample
	desired int
	prev    gateway.DeploymentStats
	prevAt  time.Time
}

// autoscaled reports whether the spec's replica count moves with load.
func autoscaled(s v1.DeploymentSpec) bool { return !s.Replicas.IsFixed() }

// desiredFor is the replica count to run now: the spec's fixed count, or the
// autoscaler's decision within [min, max]. A deployment the autoscaler has
// not seen yet starts from the count its last status asked for (so a
// restarted server does not drop to min), else min.
func (c *Controller) desiredFor(d store.Deployment) int {
	s := d.Spec
	if !autoscaled(s) {
		return s.Replicas.Min
	}
	c.scaler.mu.Lock()
	defer c.scaler.mu.Unlock()
	st := c.scaler.state(d)
	return st.desired
}

// state returns (creating) the deployment's scaler state; c.scaler.mu is held.
func (sc *scaler) state(d store.Deployment) *scaleState {
	if sc.byName == nil {
		sc.byName = map[string]*scaleState{}
	}
	st := sc.byName[d.Name]
	if st == nil {
		st = &scaleState{desired: d.Spec.Replicas.Min}
		if n := d.Status.DesiredReplicas; n > 0 {
			st.desired = n
		}
		sc.byName[d.Name] = st
	}
	if st.gen != d.Generation || st.cfg.Max == 0 && st.cfg.Min == 0 && st.cfg.Target == 0 {
		if cfg, err := autoscale.ConfigFrom(d.Spec); err == nil {
			st.cfg, st.gen = cfg, d.Generation
		}
	}
	st.desired = min(max(st.desired, d.Spec.Replicas.Min), d.Spec.Replicas.Max)
	return st
}

// Demand is the gateway's OnDemand: a request arrived for a deployment with
// no ready replica. A deployment scaled to zero gets one replica at once.
func (c *Controller) Demand(name string) {
	d, err := c.st.GetDeployment(context.Background(), name)
	if err != nil || d.DeletedAt != nil || !autoscaled(d.Spec) {
		return
	}
	c.scaler.mu.Lock()
	st := c.scaler.state(d)
	woke := st.desired == 0
	if woke {
		st.desired = 1
	}
	c.scaler.mu.Unlock()
	if woke {
		c.event(context.Background(), name, "Normal", "ScaledUp", "scaled 0 → 1: a request arrived with no replica (held by the gateway until one is ready)")
		c.metrics.scaled.WithLabelValues("up").Inc()
	}
	c.Enqueue(name)
}

// autoscaleLoop samples the gateway and decides every autoscaled
// deployment's replica count once per interval.
func (c *Controller) autoscaleLoop(ctx context.Context) {
	sr, ok := c.router.(StatsRouter)
	if !ok {
		return
	}
	t := time.NewTicker(c.opts.AutoscaleInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			deps, err := c.st.ListDeployments(ctx)
			if err != nil {
				continue
			}
			for _, d := range deps {
				if d.DeletedAt == nil && autoscaled(d.Spec) {
					c.autoscaleOne(ctx, sr, d, now)
					if name, ok := scrapedMetric(d.Spec); ok {
						c.scrape(ctx, sr, d.Name, name)
					}
				}
			}
		}
	}
}

// autoscaleOne takes one sample and one decision for d.
func (c *Controller) autoscaleOne(ctx context.Context, sr StatsRouter, d store.Deployment, now time.Time) {
	stats, ok := sr.Stats(d.Name)
	c.scaler.mu.Lock()
	st := c.scaler.state(d)
	sample := autoscale.Sample{At: now, Ready: stats.Ready}
	if ok {
		dt := now.Sub(st.prevAt)
		sample.Value = metricValue(st.cfg, stats, st.prev, dt, !st.prevAt.IsZero())
		if !st.prevAt.IsZero() && dt > 0 && stats.Requests >= st.prev.Requests {
			sample.Rate, sample.RateKnown = float64(stats.Requests-st.prev.Requests)/dt.Seconds(), true
		}
		st.prev, st.prevAt = stats, now
	}
	st.window = append(st.window, sample)
	keep := max(st.cfg.StableWindow, time.Minute) + c.opts.AutoscaleInterval
	i := 0
	for i < len(st.window) && now.Sub(st.window[i].At) > keep {
		i++
	}
	st.window = st.window[i:]
	// The forecaster keeps its own history in the state; the window only
	// needs the stable window.
	dec, next := autoscale.Decide(autoscale.Input{Now: now, Config: st.cfg, Current: st.desired, Ready: stats.Ready, Window: st.window}, st.state)
	st.state = next
	old := st.desired
	st.desired = dec.Desired
	c.scaler.mu.Unlock()

	if dec.Desired == old {
		return
	}
	dir := "up"
	if dec.Desired < old {
		dir = "down"
	}
	reason := dec.EventReason()
	if reason == "" {
		reason = "Scaled"
	}
	c.metrics.scaled.WithLabelValues(dir).Inc()
	c.event(ctx, d.Name, "Normal", reason, fmt.Sprintf("scaled %d → %d (%s): %s", old, dec.Desired, dec.Rule, dec.Reason))
	c.Enqueue(d.Name)
}

// metricValue turns gateway stats into the decider's fleet-wide sample.
func metricValue(cfg autoscale.Config, s, prev gateway.DeploymentStats, dt time.Duration, havePrev bool) float64 {
	switch cfg.Metric {
	case v1.MetricRPS:
		if !havePrev || dt <= 0 || s.Requests < prev.Requests {
			return 0
		}
		return float64(s.Requests-prev.Requests) / dt.Seconds()
	case v1.MetricLatencyP90:
		if !havePrev {
			return 0
		}
		q, ok := s.LatencyQuantile(0.9, prev)
		if !ok {
			return 0
		}
		return q * 1000
	case v1.MetricCustom:
		sum := 0.0
		for _, r := range s.Replicas {
			sum += r.Metric
		}
		return sum
	default: // concurrency: in flight at replicas plus held at the gateway
		return float64(s.InFlight)
	}
}

// customSource splits a custom metric's "header:NAME" or "metrics:NAME".
func customSource(s v1.DeploymentSpec) (kind, name string) {
	a := s.Autoscale
	if a == nil || a.Metric != v1.MetricCustom {
		return "", ""
	}
	kind, name, _ = strings.Cut(a.CustomMetric, ":")
	return kind, name
}

// scrapedMetric names the /metrics metric an autoscaled spec scales on.
func scrapedMetric(s v1.DeploymentSpec) (string, bool) {
	kind, name := customSource(s)
	return name, kind == "metrics" && name != ""
}

// scrape reads the deployment's custom metric from every ready replica's
// /metrics in the background, at most one scrape per deployment at a time;
// the values reach the decider through the next sample.
func (c *Controller) scrape(ctx context.Context, sr StatsRouter, deployment, metric string) {
	c.scaler.mu.Lock()
	if c.scaler.scraping == nil {
		c.scaler.scraping = map[string]bool{}
	}
	busy := c.scaler.scraping[deployment]
	c.scaler.scraping[deployment] = true
	c.scaler.mu.Unlock()
	if busy {
		return
	}
	timeout := min(max(c.opts.AutoscaleInterval, 500*time.Millisecond), 5*time.Second)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		err := sr.ScrapeMetric(ctx, deployment, metric, timeout)
		c.scaler.mu.Lock()
		delete(c.scaler.scraping, deployment)
		c.scaler.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			c.eventOnce(ctx, deployment, "Scrape", "Warning", "MetricScrapeFailed", fmt.Sprintf("custom metric %s: %v", metric, err))
		} else {
			c.clearOnce(deployment, "Scrape")
		}
	}()
}

// activation tells the gateway to hold requests of a deployment that may
// scale to zero, and to answer at once for any other.
func (c *Controller) activation(d store.Deployment) {
	sr, ok := c.router.(StatsRouter)
	if !ok {
		return
	}
	sr.SetActivation(d.Name, gateway.Activation{Enabled: autoscaled(d.Spec) && d.Spec.Replicas.Min == 0})
	header := ""
	if kind, name := customSource(d.Spec); kind == "header" && autoscaled(d.Spec) {
		header = name
	}
	sr.SetMetricHeader(d.Name, header)
}

// forgetScaler drops a removed deployment's autoscaler memory.
func (c *Controller) forgetScaler(name string) {
	c.scaler.mu.Lock()
	delete(c.scaler.byName, name)
	c.scaler.mu.Unlock()
}
