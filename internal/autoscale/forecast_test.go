package autoscale

import (
	"math"
	"testing"
	"time"
)

// workday is a day's load in a 24 h season: 2 in flight at night, rising
// from 08:00+shift to 36 over an hour (raised cosine), 36 until 17:00, back
// to 2 by 20:00; times day-over-day growth^day.
func workday(t time.Time, day int, shift time.Duration, growth float64) float64 {
	tod := t.Sub(t.Truncate(24 * time.Hour))
	ease := func(x float64) float64 { return (1 - math.Cos(math.Pi*min(max(x, 0), 1))) / 2 }
	v := 2 + 34*ease(float64(tod-8*time.Hour-shift)/float64(time.Hour))
	if tod >= 17*time.Hour {
		v = 36 - 34*ease(float64(tod-17*time.Hour)/float64(3*time.Hour))
	}
	return v * math.Pow(growth, float64(day))
}

// TestForecastRecurringRise feeds whole days of a recurring morning rise,
// the last one with the rise early or late, and checks the forecast peak
// over the horizon while the last day's rise is due and after it.
func TestForecastRecurringRise(t *testing.T) {
	p := &Predictive{Enabled: true, Horizon: 2 * time.Hour, Season: 24 * time.Hour, Bucket: 5 * time.Minute,
		Alpha: DefaultAlpha, Beta: DefaultBeta, Gamma: DefaultGamma}
	day0 := time.Date(2025, 3, 3, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		days   int           // days fed before the last one, on time
		shift  time.Duration // of the last day's rise
		growth float64       // day over day
		// While the last day's rise is due (from 07:00, when the horizon
		// first holds the whole on-time rise, to the end of the rise):
		// the lowest peak forecast over the horizon. After it (to 12:00):
		// the highest. Both as a fraction of the last day's plateau.
		minBefore, maxAfter float64
		// The trend after the last day, per bucket (a range).
		trendLo, trendHi float64
	}{
		{name: "on time", days: 3, minBefore: 0.99, maxAfter: 1.01},
		// A late rise drags the level down while it is due (Alpha: the
		// level takes it for a lower load), but the dip is not extrapolated
		// as a trend, and once the rise comes the forecast goes back to the
		// plateau, not beyond. (Re-estimating the trend every bucket, the
		// forecast overshot to 1.16 and 1.31 x the plateau.)
		{name: "20 min late", days: 3, shift: 20 * time.Minute, minBefore: 0.5, maxAfter: 1.01},
		{name: "40 min late", days: 3, shift: 40 * time.Minute, minBefore: 0.2, maxAfter: 1.01},
		// An early rise lifts the level for a while (with Alpha 0.1 the
		// level is slow, so the lift lasts: up to 1.18 x the plateau; with
		// 0.5 it was 1.07, but a late or noisy morning then pulled the
		// forecast down: bench/autoscale, trace seasonal).
		{name: "20 min early", days: 3, shift: -20 * time.Minute, minBefore: 0.99, maxAfter: 1.2},
		// Growth from day to day is a trend, learnt season over season:
		// positive, and at most the plateau's growth per bucket (the
		// per-bucket trend ended each day negative: the evening fall). The
		// additive seasonal terms lag a growing amplitude.
		{name: "5% a day", days: 8, growth: 1.05, minBefore: 0.65, maxAfter: 1.01, trendLo: 1e-6, trendHi: 36 * 0.05 * 1.5 / 288},
	} {
		t.Run(tc.name, func(t *testing.T) {
			growth := tc.growth
			if growth == 0 {
				growth = 1
			}
			var f Forecast
			feed := func(from, to time.Time, shift time.Duration) {
				for now := from; now.Before(to); now = now.Add(time.Minute) {
					day := int(now.Sub(day0) / (24 * time.Hour))
					s := shift
					if day < tc.days {
						s = 0
					}
					f = f.observe([]Sample{{At: now, Value: workday(now, day, s, growth)}}, now, p)
				}
			}
			last := day0.Add(time.Duration(tc.days) * 24 * time.Hour)
			feed(day0, last.Add(7*time.Hour), tc.shift)
			if !f.Trained {
				t.Fatal("not trained")
			}
			plateau := 36 * math.Pow(growth, float64(tc.days))
			lo, hi := math.Inf(1), 0.0
			due := last.Add(9*time.Hour + max(tc.shift, 0))
			for now := last.Add(7 * time.Hour); now.Before(last.Add(12 * time.Hour)); now = now.Add(time.Minute) {
				feed(now, now.Add(time.Minute), tc.shift)
				pk := f.peak(now.Add(time.Minute), p)
				if now.Before(due) {
					lo = min(lo, pk)
				} else {
					hi = max(hi, pk)
				}
			}
			if lo < tc.minBefore*plateau || hi > tc.maxAfter*plateau {
				t.Errorf("peak forecast: lowest %.1f while the rise is due (want >= %.1f), highest %.1f after it (want <= %.1f); plateau %.1f",
					lo, tc.minBefore*plateau, hi, tc.maxAfter*plateau, plateau)
			}
			feed(last.Add(12*time.Hour), last.Add(24*time.Hour), tc.shift)
			if f.Trend < tc.trendLo-1e-9 || f.Trend > tc.trendHi+1e-9 {
				t.Errorf("trend %.4g per bucket after the last day, want in [%g, %g]", f.Trend, tc.trendLo, tc.trendHi)
			}
		})
	}
}

// A trained state persisted before the trend was measured season over
// season (no Base) drops its per-bucket trend and starts measuring.
func TestForecastWithoutBase(t *testing.T) {
	p := &Predictive{Enabled: true, Horizon: time.Hour, Season: 24 * time.Hour, Bucket: 5 * time.Minute,
		Alpha: DefaultAlpha, Beta: DefaultBeta, Gamma: DefaultGamma}
	day0 := time.Date(2025, 3, 3, 0, 0, 0, 0, time.UTC)
	var f Forecast
	for now := day0; now.Before(day0.Add(25 * time.Hour)); now = now.Add(time.Minute) {
		f = f.observe([]Sample{{At: now, Value: 40}}, now, p)
	}
	if !f.Trained || f.BaseAt == 0 || f.Base != f.Level {
		t.Fatalf("trained %v, base %v at %d, level %v", f.Trained, f.Base, f.BaseAt, f.Level)
	}
	f.Trend, f.Base, f.BaseAt = -1.5, 0, 0
	now := day0.Add(25*time.Hour + 5*time.Minute)
	g := f.observe([]Sample{{At: now, Value: 40}}, now, p)
	if g.Trend != 0 || g.BaseAt == 0 || math.Abs(g.Base-40) > 1e-9 || math.Abs(g.Level-40) > 1e-9 {
		t.Errorf("trend %v, level %v, base %v at %d", g.Trend, g.Level, g.Base, g.BaseAt)
	}
	if math.Abs(g.peak(now, p)-40) > 1e-9 {
		t.Errorf("peak %v, want 40", g.peak(now, p))
	}
}
