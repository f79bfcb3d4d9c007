// Package autoscale decides how many replicas a deployment should run.
//
// It is pure: Decide is a function of its Input and the State the previous
// call returned — no clock, no I/O, no globals — so the controller, table
// tests and the simulator (internal/autoscale/sim) drive it with their own
// time and metrics. Like Knative's KPA, the decider is separate from
// whatever collects metrics and applies its decisions.
//
// The rules, in the order Decide applies them:
//
//  1. Windows. The stable value is the mean of the samples in the stable
//     window (Now-StableWindow, Now], the panic value the mean of those in
//     the panic window. No sample in the stable window: keep Current.
//  2. Recommendation. concurrency, rps, custom: ceil(value / Target).
//     latencyP90 is proportional: ceil(serving x value / Target), where
//     serving is the mean Sample.Ready over the window (Input.Ready if the
//     samples carry none, at least 1).
//     Backlog: with the concurrency metric, the decider learns the time a
//     request spends in the deployment, Sojourn = mean in-flight / mean
//     arrival rate (moving averages over the samples taken while every
//     replica is ready and it is not panicking, that carry a Rate, each
//     read once). With it, each window's value counts at most 1.5 x the
//     window's mean arrival rate x Sojourn: in-flight requests beyond what
//     the arrival rate sustains are a backlog queued at the replicas (for
//     instance while new ones start), which more replicas would not drain
//     (a replica's queue is its own) and which is gone a service time
//     later. Without it, a 30 s cold start during a 10x burst sizes the
//     fleet for the whole queue (three times the replicas the burst needs,
//     in the simulator).
//  3. Rate bounds: at most ceil(max(Current,1) x MaxScaleUpRate), at least
//     floor(Current / MaxScaleDownRate).
//  4. Panic. When the panic window's (unrounded) recommendation is at least
//     PanicThreshold x max(Input.Ready, 1), panic mode starts (or goes on).
//     In panic the result is the largest of the panic and stable
//     recommendations and every result since the panic started (at least
//     Current then): it never decreases. Panic ends once the condition has
//     not held for a whole StableWindow.
//  5. Delays. A scale-up (-down) applies only once the recommendation has
//     been above (below) Current for UpscaleDelay (DownscaleDelay), and then
//     to the lowest (highest) recommendation seen meanwhile: the level that
//     held throughout. Panic mode and scaling up from zero skip the upscale
//     delay.
//  6. Floors. The result is raised to max(Min, the schedule's minimum at
//     Now, the forecast minimum), without delay, then capped at Max.
//  7. Zero. With a floor of 0: any activity (a sample > 0 in the stable
//     window) keeps or brings at least one replica, at once; a running
//     deployment keeps one replica until no sample in any Window has been
//     > 0 for ScaleToZeroAfter (a fresh State counts as active at its
//     first Now).
package autoscale

import (
	"fmt"
	"math"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
)

// Defaults of the Config fields that the spec does not set.
const (
	DefaultPanicThreshold   = 2.0
	DefaultMaxScaleUpRate   = 1000.0
	DefaultMaxScaleDownRate = 2.0
	// SeasonBuckets is how many buckets one forecast season has (5m buckets
	// for a 24h season).
	SeasonBuckets = 288
	// Holt-Winters smoothing factors for level, trend and season.
	DefaultAlpha = 0.1
	DefaultBeta  = 0.05
	DefaultGamma = 0.3
)

// Config is a deployment's autoscaling settings, normalised from
// v1.Autoscale and v1.Replicas by ConfigFrom.
type Config struct {
	Min, Max int
	// Metric is v1.MetricConcurrency, MetricRPS, MetricLatencyP90 or
	// MetricCustom; CustomMetric names a custom one ("header:X-Queue-Depth").
	Metric       string
	CustomMetric string
	// Target is the metric's value per replica (ms for latencyP90).
	Target           float64
	StableWindow     time.Duration
	PanicWindow      time.Duration
	PanicThreshold   float64
	MaxScaleUpRate   float64
	MaxScaleDownRate float64
	// ScaleToZeroAfter is the idle time before the last replica stops
	// (only when Min is 0).
	ScaleToZeroAfter time.Duration
	UpscaleDelay     time.Duration
	DownscaleDelay   time.Duration
	Schedule         []v1.ScheduleWindow
	Predictive       Predictive
}

// Predictive configures the forecaster.
type Predictive struct {
	Enabled bool
	// Horizon is how far ahead the forecast minimum looks.
	Horizon time.Duration
	// Season is the load's period; Bucket = Season / SeasonBuckets.
	Season, Bucket     time.Duration
	Alpha, Beta, Gamma float64
}

// ConfigFrom normalises a spec's replicas and autoscale section into a
// Config, applying v1's autoscale defaults (an autoscale section is
// optional: a {min, max} range without one autoscales with the defaults)
// and the defaults above. Only replicas and autoscale are read and checked,
// so a spec with just those two fields is enough. A fixed replica count
// gives a Config with Min == Max, which always decides that count.
func ConfigFrom(spec v1.DeploymentSpec) (Config, error) {
	r := spec.Replicas
	if r.Min < 0 || r.Max < r.Min || r.Max > v1.MaxReplicas {
		return Config{}, fmt.Errorf("autoscale: replicas {min: %d, max: %d} must satisfy 0 <= min <= max <= %d", r.Min, r.Max, v1.MaxReplicas)
	}
	var a v1.Autoscale
	if spec.Autoscale != nil {
		a = *spec.Autoscale
		if a.Predictive != nil {
			p := *a.Predictive
			a.Predictive = &p
		}
	}
	if r.IsFixed() {
		if spec.Autoscale != nil {
			return Config{}, a.Validate(r)
		}
		a = v1.Autoscale{}
		a.Default(v1.Replicas{Min: r.Min, Max: r.Max + 1}) // defaults of a range, then pinned below
		a.ScaleToZeroAfter = ""
	} else {
		a.Default(r)
		if err := a.Validate(r); err != nil {
			return Config{}, err
		}
	}
	c := Config{
		Min:              r.Min,
		Max:              r.Max,
		Metric:           a.Metric,
		CustomMetric:     a.CustomMetric,
		Target:           a.Target,
		StableWindow:     a.StableWindow.Std(),
		PanicWindow:      a.PanicWindow.Std(),
		PanicThreshold:   DefaultPanicThreshold,
		MaxScaleUpRate:   DefaultMaxScaleUpRate,
		MaxScaleDownRate: DefaultMaxScaleDownRate,
		ScaleToZeroAfter: a.ScaleToZeroAfter.Std(),
		UpscaleDelay:     a.UpscaleDelay.Std(),
		DownscaleDelay:   a.DownscaleDelay.Std(),
	}
	for i, rule := range a.Schedule {
		w, err := rule.Window()
		if err != nil { // unreachable after Validate
			return Config{}, fmt.Errorf("autoscale.schedule[%d].%v", i, err)
		}
		c.Schedule = append(c.Schedule, w)
	}
	if p := a.Predictive; p != nil && p.Enabled {
		season := p.Season.Std()
		c.Predictive = Predictive{
			Enabled: true,
			Horizon: p.Horizon.Std(),
			Season:  season,
			Bucket:  season / SeasonBuckets,
			Alpha:   DefaultAlpha,
			Beta:    DefaultBeta,
			Gamma:   DefaultGamma,
		}
	}
	return c, nil
}

// ScheduleMin is the largest min of the schedule rules active at t (0 if
// none is), capped at Max.
func (c *Config) ScheduleMin(t time.Time) int {
	m := 0
	for i := range c.Schedule {
		if w := &c.Schedule[i]; w.Min > m && w.Contains(t) {
			m = w.Min
		}
	}
	return min(m, c.Max)
}

// replicasFor turns a metric value into a replica count (unrounded).
// serving is the replica count that produced a latency.
func (c *Config) replicasFor(v, serving float64) float64 {
	if v <= 0 || math.IsNaN(v) || c.Target <= 0 {
		return 0
	}
	if c.Metric == v1.MetricLatencyP90 {
		return serving * v / c.Target
	}
	return v / c.Target
}

// ceilCount rounds a replica count up, forgiving float noise (30/10 is 3),
// and keeps it in int range.
func ceilCount(x float64) int {
	if !(x > 0) {
		return 0
	}
	if x > 1<<30 {
		return 1 << 30
	}
	return int(math.Ceil(x - 1e-9))
}
