package sim

import (
	"testing"
	"time"
)

func TestAloftPredictiveConfig(t *testing.T) {
	m := DefaultModel()
	c, base := AloftPredictiveConfig(m, PredictiveSeason, PredictiveHorizon), AloftConfig(m)
	p := c.Predictive
	if !p.Enabled || p.Season != time.Hour || p.Bucket != 12500*time.Millisecond || p.Horizon != 2*time.Minute || p.Alpha <= 0 {
		t.Errorf("predictive %+v", p)
	}
	c.Predictive = base.Predictive
	if c.Target != base.Target || c.DownscaleDelay != base.DownscaleDelay || c.Min != base.Min || c.Max != base.Max || c.StableWindow != base.StableWindow {
		t.Errorf("aloft-predictive is not aloft's config plus predictive:\n %+v\n %+v", c, base)
	}
}

// Shorter than a season, the forecaster never forecasts: aloft-predictive
// decides as aloft does.
func TestAloftPredictiveShortTrace(t *testing.T) {
	tr, _ := Synthetic("step", 1)
	m := DefaultModel()
	a, p := run(t, tr, m, newAloft(tr, m)), run(t, tr, m, newAloftPredictive(m))
	p.Policy = a.Policy
	if a != p {
		t.Errorf("aloft %+v\naloft-predictive %+v", a, p)
	}
}

// On the seasonal trace, pre-warming meets the mornings that reactive
// scaling meets late: after the first day (which the forecaster learns
// from) SLO violations all but vanish.
func TestAloftPredictiveSeasonal(t *testing.T) {
	if testing.Short() {
		t.Skip("five simulated hours")
	}
	tr, _ := Synthetic("seasonal", 1)
	m := DefaultModel()
	day1 := Trace{Name: tr.Name, Start: tr.Start}
	for _, r := range tr.Requests {
		if r.At < time.Hour {
			day1.Requests = append(day1.Requests, r)
		}
	}
	first := run(t, day1, m, newAloftPredictive(m))
	a, p := run(t, tr, m, newAloft(tr, m)), run(t, tr, m, newAloftPredictive(m))
	if later := p.Violations - first.Violations; later*10 > a.Violations-first.Violations {
		t.Errorf("violations after the first day: aloft-predictive %d, aloft %d (all days: %d, %d)", later, a.Violations-first.Violations, p.Violations, a.Violations)
	}
	if p.ReplicaHours > 1.3*a.ReplicaHours {
		t.Errorf("replica-hours: aloft-predictive %.2f, aloft %.2f", p.ReplicaHours, a.ReplicaHours)
	}
}
