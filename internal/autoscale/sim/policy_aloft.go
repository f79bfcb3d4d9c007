package sim

import (
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/autoscale"
)

// This file and policy_predictive.go are the only ones that call into
// internal/autoscale.

// aloftTick is how often the controller asks the decider (the controller
// reconciles each deployment at least once a second; 2 s matches the KPA).
const aloftTick = 2 * time.Second

// AloftConfig is the autoscale configuration the aloft policy runs with
// under m. It is what a user would write for this replica model:
//
//	replicas: {min: 0, max: <MaxReplicas>}
//	autoscale:
//	  metric: concurrency
//	  target: <Utilization x Slots>   # 5.6 in-flight per replica for 8 slots
//	  scaleToZeroAfter: 5m            # the default
//	  downscaleDelay: 1m              # keep a replica that took 30 s to start a minute after load falls
//
// and the decider's other defaults (60 s stable and 6 s panic windows,
// panic at 2x, scale-up rate 1000, scale-down rate 2, no upscale delay).
func AloftConfig(m Model) autoscale.Config {
	c, err := autoscale.ConfigFrom(v1.DeploymentSpec{
		Replicas: v1.Replicas{Min: 0, Max: m.MaxReplicas},
		Autoscale: &v1.Autoscale{
			Metric:         v1.MetricConcurrency,
			Target:         m.Utilization * float64(m.Slots),
			DownscaleDelay: "1m",
		},
	})
	if err != nil {
		panic("sim: aloft config: " + err.Error()) // the model is validated; a bug
	}
	return c
}

type aloft struct {
	name     string
	cfg      autoscale.Config
	st       autoscale.State
	initial  int
	lastCall time.Time
	// last is the last decision, for tests and debugging.
	last autoscale.Decision
}

func newAloft(_ Trace, m Model) *aloft {
	return &aloft{name: "aloft", cfg: AloftConfig(m), initial: 1}
}

// NewAloft is the aloft policy with cfg (one replica at time zero), named
// name: for sweeps over configurations.
func NewAloft(name string, cfg autoscale.Config) Policy {
	return &aloft{name: name, cfg: cfg, initial: 1}
}

func (a *aloft) Name() string            { return a.name }
func (a *aloft) Initial() int            { return a.initial }
func (a *aloft) Interval() time.Duration { return aloftTick }

func (a *aloft) Decide(v View) int {
	// The samples of the stable window, and any newer than the last call
	// (the forecaster reads each sample once).
	from := v.Now.Add(-a.cfg.StableWindow)
	if !a.lastCall.IsZero() && a.lastCall.Before(from) {
		from = a.lastCall
	}
	hist := window(v.History, v.Now, v.Now.Sub(from))
	win := make([]autoscale.Sample, 0, len(hist)+1)
	for _, s := range hist {
		win = append(win, autoscale.Sample{At: s.At, Value: a.value(s), Ready: s.Ready, Rate: float64(s.Arrivals), RateKnown: true})
	}
	if v.Poke {
		// The gateway reports the request it holds at once.
		win = append(win, autoscale.Sample{At: v.Now, Value: float64(v.InFlight), Ready: v.Ready})
	}
	d, st := autoscale.Decide(autoscale.Input{Now: v.Now, Config: a.cfg, Current: v.Replicas, Ready: v.Ready, Window: win}, a.st)
	a.st, a.last, a.lastCall = st, d, v.Now
	return d.Desired
}

func (a *aloft) value(s Sample) float64 {
	if a.cfg.Metric == v1.MetricRPS {
		return float64(s.Arrivals)
	}
	return s.Concurrency
}
