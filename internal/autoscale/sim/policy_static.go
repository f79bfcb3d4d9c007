package sim

import (
	"math"
	"time"
)

// static is a fleet provisioned for the trace's peak and never changed:
// ceil(peak 60 s offered load / (Utilization x Slots)) replicas, ready from
// time zero. It knows the whole trace in advance, which no autoscaler does.
type static struct{ n int }

func newStatic(tr Trace, m Model) *static {
	n := int(math.Ceil(tr.Stats(m).PeakLoad / (m.Utilization * float64(m.Slots))))
	return &static{n: min(max(n, 1), m.MaxReplicas)}
}

func (s *static) Name() string            { return "static" }
func (s *static) Initial() int            { return s.n }
func (s *static) Interval() time.Duration { return time.Hour }
func (s *static) Decide(View) int         { return s.n }
