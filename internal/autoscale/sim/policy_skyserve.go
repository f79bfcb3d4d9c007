package sim

import (
	"math"
	"time"
)

// SkyServe's RequestRateAutoscaler (SkyPilot, sky/serve/autoscalers.py and
// sky/serve/constants.py), with its defaults:
//
//	AUTOSCALER_QPS_WINDOW_SIZE_SECONDS              60
//	AUTOSCALER_DEFAULT_DECISION_INTERVAL_SECONDS    20
//	AUTOSCALER_NO_REPLICA_DECISION_INTERVAL_SECONDS  5  (while the target is 0)
//	AUTOSCALER_DEFAULT_UPSCALE_DELAY_SECONDS       300
//	AUTOSCALER_DEFAULT_DOWNSCALE_DELAY_SECONDS    1200
//
// Each decision computes ceil(requests in the last 60 s / 60 /
// target_qps_per_replica), clipped to [min, max]. A higher (lower) value
// must be seen on upscale_delay/interval = 15 (downscale_delay/interval =
// 60) consecutive decisions before the target moves to it; a target of 0
// moves at once. min_replicas is 1. target_qps_per_replica is what an
// operator would set from a load test: Model.ReplicaQPS of the trace's mean
// service time (Utilization x Slots / mean service time). SkyServe has no
// activator: the load balancer does not wake it.
const (
	skyQPSWindow         = 60 * time.Second
	skyDecisionInterval  = 20 * time.Second
	skyNoReplicaInterval = 5 * time.Second
	skyUpscaleDelay      = 300 * time.Second
	skyDownscaleDelay    = 1200 * time.Second
	skyMinReplicas       = 1
)

type skyServe struct {
	targetQPS           float64
	min, max            int
	upPeriods, downPers int
	target              int
	up, down            int
}

func newSkyServe(tr Trace, m Model) *skyServe {
	return &skyServe{
		targetQPS: m.ReplicaQPS(tr.Stats(m).MeanService),
		min:       skyMinReplicas,
		max:       m.MaxReplicas,
		upPeriods: int(skyUpscaleDelay / skyDecisionInterval),
		downPers:  int(skyDownscaleDelay / skyDecisionInterval),
		target:    skyMinReplicas,
	}
}

func (s *skyServe) Name() string { return "skyserve" }
func (s *skyServe) Initial() int { return s.target }
func (s *skyServe) Interval() time.Duration {
	if s.target == 0 {
		return skyNoReplicaInterval
	}
	return skyDecisionInterval
}

func (s *skyServe) Decide(v View) int {
	if v.Poke {
		return s.target
	}
	var n int
	for _, x := range window(v.History, v.Now, skyQPSWindow) {
		n += x.Arrivals
	}
	want := int(math.Ceil(float64(n) / skyQPSWindow.Seconds() / s.targetQPS))
	want = max(s.min, min(s.max, want))
	switch {
	case s.target == 0:
		s.target = want
	case want > s.target:
		s.up++
		s.down = 0
		if s.up >= s.upPeriods {
			s.up = 0
			s.target = want
		}
	case want < s.target:
		s.down++
		s.up = 0
		if s.down >= s.downPers {
			s.down = 0
			s.target = want
		}
	default:
		s.up, s.down = 0, 0
	}
	return s.target
}
