package autoscale

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
)

// t0 is a Monday, 12:00 UTC.
var t0 = time.Date(2025, 1, 6, 12, 0, 0, 0, time.UTC)

// config returns ConfigFrom of replicas {min, max} and autoscale a.
func config(t testing.TB, min, max int, a *v1.Autoscale) Config {
	t.Helper()
	c, err := ConfigFrom(v1.DeploymentSpec{Replicas: v1.Replicas{Min: min, Max: max}, Autoscale: a})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// series returns one sample per second over (now-60s, now]: value stable
// before the last 6 s (the panic window) and burst within it.
func series(now time.Time, stable, burst float64, ready int) []Sample {
	out := make([]Sample, 0, 60)
	for i := 59; i >= 0; i-- {
		v := stable
		if i < 6 {
			v = burst
		}
		out = append(out, Sample{At: now.Add(-time.Duration(i) * time.Second), Value: v, Ready: ready})
	}
	return out
}

func flat(now time.Time, v float64) []Sample { return series(now, v, v, 0) }

func with(c Config, f func(*Config)) Config { f(&c); return c }

func TestDecide(t *testing.T) {
	def := config(t, 0, 100, nil) // concurrency, target 10, 60s/6s, scale to zero after 5m
	one := config(t, 1, 100, nil)
	noPanic := func(c *Config) { c.PanicThreshold = math.Inf(1) }
	paris, _ := time.LoadLocation("Europe/Paris")
	sched := config(t, 1, 20, &v1.Autoscale{Schedule: []v1.ScheduleRule{{Days: "mon-fri", From: "09:00", To: "18:00", Min: 4, Timezone: "Europe/Paris"}}})
	active := State{LastActive: t0.Add(-time.Second)}
	tests := []struct {
		name    string
		in      Input
		st      State
		want    int
		rule    Rule
		panic   bool
		reason  string // substring of Reason (the whole Reason when it starts with "=")
		checkSt func(t *testing.T, st State)
	}{
		// stable window
		{name: "stable: ceil(observed / target)", in: Input{Config: def, Current: 2, Ready: 2, Window: flat(t0, 34)}, st: active, want: 4, rule: RuleStable,
			reason: "=stable window 60s: 34.0 in-flight / target 10 per replica → 4 (current 2)"},
		{name: "stable: exact multiple does not round up", in: Input{Config: def, Current: 3, Ready: 3, Window: flat(t0, 30)}, st: active, want: 3, rule: RuleStable},
		{name: "stable: mean over the window", in: Input{Config: with(def, noPanic), Current: 1, Ready: 1, Window: series(t0, 10, 110, 0)}, st: active, want: 2, rule: RuleStable,
			reason: "20.0 in-flight"},
		{name: "stable: old and future samples ignored", in: Input{Config: def, Current: 2, Ready: 2, Window: append(append([]Sample{{At: t0.Add(-60 * time.Second), Value: 1000}}, flat(t0, 15)...), Sample{At: t0.Add(time.Second), Value: 1000})}, st: active, want: 2, rule: RuleStable},
		{name: "rps: rate / target", in: Input{Config: config(t, 1, 10, &v1.Autoscale{Metric: "rps", Target: 20}), Current: 2, Ready: 2, Window: flat(t0, 45)}, want: 3, rule: RuleStable,
			reason: "=stable window 60s: 45.0 req/s / target 20 per replica → 3 (current 2)"},
		{name: "custom: total / target", in: Input{Config: config(t, 1, 10, &v1.Autoscale{Metric: "custom", CustomMetric: "header:X-Queue-Depth", Target: 4}), Current: 2, Ready: 2, Window: flat(t0, 13)}, want: 4, rule: RuleStable,
			reason: "13.0 header:X-Queue-Depth / target 4 per replica → 4"},
		{name: "latencyP90: proportional to the replicas serving", in: Input{Config: config(t, 1, 20, &v1.Autoscale{Metric: "latencyP90", Target: 400}), Current: 4, Ready: 4, Window: series(t0, 800, 800, 3)}, want: 6, rule: RuleStable,
			reason: "p90 800.0ms / target 400ms x 3.0 serving → 6"},
		{name: "latencyP90: Input.Ready when samples carry none", in: Input{Config: config(t, 1, 20, &v1.Autoscale{Metric: "latencyP90", Target: 400}), Current: 4, Ready: 4, Window: flat(t0, 500)}, want: 5, rule: RuleStable},
		{name: "latencyP90: below target scales down", in: Input{Config: config(t, 1, 20, &v1.Autoscale{Metric: "latencyP90", Target: 400}), Current: 4, Ready: 4, Window: series(t0, 200, 200, 4)}, want: 2, rule: RuleStable},
		{name: "no samples: keep current", in: Input{Config: def, Current: 3, Ready: 3, Window: flat(t0.Add(-2*time.Minute), 50)}, st: active, want: 3, rule: RuleNoData,
			reason: "=no samples in the stable window 60s: keeping 3 (current 3)"},
		{name: "no samples: still clamped to max", in: Input{Config: config(t, 1, 2, nil), Current: 3, Ready: 3}, want: 2, rule: RuleMax},

		// panic
		{name: "panic: starts at 2x ready capacity", in: Input{Config: def, Current: 2, Ready: 2, Window: series(t0, 10, 40, 2)}, st: active, want: 4, rule: RulePanic, panic: true,
			reason: "panic: panic window 6s: 40.0 in-flight / target 10 per replica → 4 (≥ 2x 2 ready)",
			checkSt: func(t *testing.T, st State) {
				if !st.PanicSince.Equal(t0) || !st.PanicLast.Equal(t0) || st.PanicMax != 4 {
					t.Errorf("state %+v", st)
				}
			}},
		{name: "panic: just below 2x is not panic", in: Input{Config: def, Current: 2, Ready: 2, Window: series(t0, 10, 39.9, 2)}, st: active, want: 2, rule: RuleStable},
		{name: "panic: capacity counts ready, not desired", in: Input{Config: def, Current: 4, Ready: 1, Window: series(t0, 10, 20, 1)}, st: active, want: 4, rule: RulePanic, panic: true},
		{name: "panic: holds the max while demand drops", in: Input{Config: def, Current: 10, Ready: 10, Window: flat(t0, 20)},
			st: State{PanicSince: t0.Add(-20 * time.Second), PanicLast: t0.Add(-10 * time.Second), PanicMax: 10, LastActive: t0}, want: 10, rule: RulePanic, panic: true,
			reason: "panic until 60s below 2x ready; 10s so far"},
		{name: "panic: grows past the max", in: Input{Config: def, Current: 10, Ready: 5, Window: series(t0, 20, 150, 5)},
			st: State{PanicSince: t0.Add(-20 * time.Second), PanicLast: t0.Add(-10 * time.Second), PanicMax: 10, LastActive: t0}, want: 15, rule: RulePanic, panic: true},
		{name: "panic: never below current", in: Input{Config: def, Current: 12, Ready: 12, Window: flat(t0, 20)},
			st: State{PanicSince: t0.Add(-20 * time.Second), PanicLast: t0.Add(-10 * time.Second), PanicMax: 8, LastActive: t0}, want: 12, rule: RulePanic, panic: true},
		{name: "panic: ends a stable window after the condition", in: Input{Config: def, Current: 10, Ready: 10, Window: flat(t0, 20)},
			st: State{PanicSince: t0.Add(-90 * time.Second), PanicLast: t0.Add(-60 * time.Second), PanicMax: 10, LastActive: t0}, want: 5, rule: RuleScaleDownRate,
			checkSt: func(t *testing.T, st State) {
				if st.Panicking() || st.PanicMax != 0 {
					t.Errorf("still panicking: %+v", st)
				}
			}},
		{name: "panic: skips the upscale delay", in: Input{Config: with(def, func(c *Config) { c.UpscaleDelay = time.Minute }), Current: 2, Ready: 2, Window: series(t0, 10, 60, 2)}, st: active, want: 6, rule: RulePanic, panic: true},
		{name: "panic: still capped at max", in: Input{Config: config(t, 1, 5, nil), Current: 2, Ready: 2, Window: series(t0, 10, 200, 2)}, want: 5, rule: RuleMax, panic: true},

		// rate bounds
		{name: "scale-up rate", in: Input{Config: with(def, func(c *Config) { c.MaxScaleUpRate = 2; noPanic(c) }), Current: 3, Ready: 3, Window: flat(t0, 500)}, st: active, want: 6, rule: RuleScaleUpRate,
			reason: "→ 50; scale-up limited to 2x → 6"},
		{name: "scale-up rate from zero counts one", in: Input{Config: with(def, func(c *Config) { c.MaxScaleUpRate = 2; noPanic(c) }), Current: 0, Ready: 0, Window: flat(t0, 500)}, st: active, want: 2, rule: RuleScaleUpRate},
		{name: "scale-down rate", in: Input{Config: one, Current: 10, Ready: 10, Window: flat(t0, 5)}, st: active, want: 5, rule: RuleScaleDownRate,
			reason: "→ 1; scale-down limited to current/2 → 5"},
		{name: "scale-down rate: odd count", in: Input{Config: one, Current: 5, Ready: 5, Window: flat(t0, 5)}, st: active, want: 2, rule: RuleScaleDownRate},

		// delays
		{name: "upscale delay: starts holding", in: Input{Config: with(def, func(c *Config) { c.UpscaleDelay = 30 * time.Second }), Current: 2, Ready: 2, Window: flat(t0, 35)}, st: active, want: 2, rule: RuleUpscaleDelay,
			reason: "scale-up to 4 waits for upscaleDelay 30s (0s so far)",
			checkSt: func(t *testing.T, st State) {
				if !st.UpSince.Equal(t0) || st.UpLevel != 4 {
					t.Errorf("state %+v", st)
				}
			}},
		{name: "upscale delay: applies the lowest level once held", in: Input{Config: with(def, func(c *Config) { c.UpscaleDelay = 30 * time.Second }), Current: 2, Ready: 2, Window: flat(t0, 35)},
			st: State{UpSince: t0.Add(-30 * time.Second), UpLevel: 3, LastActive: t0}, want: 3, rule: RuleStable, reason: "scaling to 3, the lowest recommendation meanwhile",
			checkSt: func(t *testing.T, st State) {
				if !st.UpSince.IsZero() {
					t.Errorf("state %+v", st)
				}
			}},
		{name: "upscale delay: not from zero", in: Input{Config: with(def, func(c *Config) { c.UpscaleDelay = time.Hour }), Current: 0, Ready: 0, Window: flat(t0, 3)}, want: 1, rule: RuleStable},
		{name: "downscale delay: starts holding", in: Input{Config: with(one, func(c *Config) { c.DownscaleDelay = time.Minute }), Current: 4, Ready: 4, Window: flat(t0, 15)}, st: active, want: 4, rule: RuleDownscaleDelay,
			reason: "scale-down to 2 waits for downscaleDelay 60s (0s so far)"},
		{name: "downscale delay: still holding", in: Input{Config: with(one, func(c *Config) { c.DownscaleDelay = time.Minute }), Current: 4, Ready: 4, Window: flat(t0, 15)},
			st: State{DownSince: t0.Add(-59 * time.Second), DownLevel: 3, LastActive: t0}, want: 4, rule: RuleDownscaleDelay,
			checkSt: func(t *testing.T, st State) {
				if st.DownLevel != 3 {
					t.Errorf("down level %d, want the highest (3)", st.DownLevel)
				}
			}},
		{name: "downscale delay: applies the highest level once held", in: Input{Config: with(one, func(c *Config) { c.DownscaleDelay = time.Minute }), Current: 4, Ready: 4, Window: flat(t0, 15)},
			st: State{DownSince: t0.Add(-time.Minute), DownLevel: 3, LastActive: t0}, want: 3, rule: RuleStable},
		{name: "downscale delay: reset when demand returns", in: Input{Config: with(one, func(c *Config) { c.DownscaleDelay = time.Minute }), Current: 4, Ready: 4, Window: flat(t0, 40)},
			st: State{DownSince: t0.Add(-50 * time.Second), DownLevel: 3, LastActive: t0}, want: 4, rule: RuleStable,
			checkSt: func(t *testing.T, st State) {
				if !st.DownSince.IsZero() {
					t.Errorf("state %+v", st)
				}
			}},

		// floors and cap
		{name: "min", in: Input{Config: config(t, 2, 10, nil), Current: 2, Ready: 2, Window: flat(t0, 1)}, want: 2, rule: RuleMin, reason: "; raised to replicas.min 2"},
		{name: "min applies at once below it", in: Input{Config: config(t, 3, 10, nil), Current: 0, Ready: 0}, want: 3, rule: RuleMin},
		{name: "max", in: Input{Config: with(config(t, 1, 20, nil), noPanic), Current: 15, Ready: 15, Window: flat(t0, 500)}, want: 20, rule: RuleMax, reason: "; capped at replicas.max 20"},
		{name: "max applies at once above it", in: Input{Config: config(t, 1, 4, nil), Current: 9, Ready: 9, Window: flat(t0, 90)}, want: 4, rule: RuleMax},
		{name: "schedule: weekday office hours", in: Input{Now: time.Date(2025, 1, 6, 10, 0, 0, 0, paris), Config: sched, Current: 1, Ready: 1, Window: flat(time.Date(2025, 1, 6, 10, 0, 0, 0, paris), 5)}, want: 4, rule: RuleSchedule,
			reason: "; raised to the schedule's minimum 4"},
		{name: "schedule: skips the upscale delay", in: Input{Now: time.Date(2025, 1, 6, 9, 0, 0, 0, paris), Config: with(sched, func(c *Config) { c.UpscaleDelay = time.Hour }), Current: 1, Ready: 1, Window: flat(time.Date(2025, 1, 6, 9, 0, 0, 0, paris), 5)}, want: 4, rule: RuleSchedule},
		{name: "schedule: after hours", in: Input{Now: time.Date(2025, 1, 6, 18, 0, 0, 0, paris), Config: sched, Current: 4, Ready: 4, Window: flat(time.Date(2025, 1, 6, 18, 0, 0, 0, paris), 5)}, want: 2, rule: RuleScaleDownRate},
		{name: "schedule: weekend", in: Input{Now: time.Date(2025, 1, 11, 10, 0, 0, 0, paris), Config: sched, Current: 1, Ready: 1, Window: flat(time.Date(2025, 1, 11, 10, 0, 0, 0, paris), 5)}, want: 1, rule: RuleStable},
		{name: "schedule: demand above the minimum wins", in: Input{Now: time.Date(2025, 1, 6, 10, 0, 0, 0, paris), Config: sched, Current: 6, Ready: 6, Window: flat(time.Date(2025, 1, 6, 10, 0, 0, 0, paris), 60)}, want: 6, rule: RuleStable},

		// zero
		{name: "idle: keeps one until scaleToZeroAfter", in: Input{Config: def, Current: 1, Ready: 1, Window: flat(t0, 0)}, st: State{LastActive: t0.Add(-2 * time.Minute)}, want: 1, rule: RuleScaleToZeroWait,
			reason: "; keeping 1 replica: idle for 2m of scaleToZeroAfter 5m"},
		{name: "idle: scales to zero after scaleToZeroAfter", in: Input{Config: def, Current: 1, Ready: 1, Window: flat(t0, 0)}, st: State{LastActive: t0.Add(-5 * time.Minute)}, want: 0, rule: RuleScaleToZero,
			reason: "; idle for 5m ≥ scaleToZeroAfter 5m: scaling to zero"},
		{name: "idle: a fresh state counts as active now", in: Input{Config: def, Current: 1, Ready: 1, Window: flat(t0, 0)}, want: 1, rule: RuleScaleToZeroWait,
			checkSt: func(t *testing.T, st State) {
				if !st.LastActive.Equal(t0) {
					t.Errorf("last active %v", st.LastActive)
				}
			}},
		{name: "idle: last activity comes from the samples", in: Input{Config: def, Current: 1, Ready: 1, Window: append(flat(t0.Add(-time.Second), 0), Sample{At: t0, Value: 0.5})}, st: State{LastActive: t0.Add(-time.Hour)}, want: 1, rule: RuleStable,
			checkSt: func(t *testing.T, st State) {
				if !st.LastActive.Equal(t0) {
					t.Errorf("last active %v", st.LastActive)
				}
			}},
		{name: "idle: activity older than the stable window counts", in: Input{Config: def, Current: 1, Ready: 1, Window: append([]Sample{{At: t0.Add(-4 * time.Minute), Value: 2}}, flat(t0, 0)...)}, st: State{LastActive: t0.Add(-time.Hour)}, want: 1, rule: RuleScaleToZeroWait,
			reason: "idle for 4m of scaleToZeroAfter 5m"},
		{name: "idle: min 1 never scales to zero", in: Input{Config: one, Current: 1, Ready: 1, Window: flat(t0, 0)}, st: State{LastActive: t0.Add(-time.Hour)}, want: 1, rule: RuleMin},
		{name: "zero stays zero without activity", in: Input{Config: def, Current: 0, Ready: 0, Window: flat(t0, 0)}, st: State{LastActive: t0.Add(-time.Hour)}, want: 0, rule: RuleStable},
		{name: "activation: one request at zero → 1", in: Input{Config: def, Current: 0, Ready: 0, Window: append(flat(t0.Add(-time.Second), 0), Sample{At: t0, Value: 1})}, st: State{LastActive: t0.Add(-time.Hour)}, want: 1},
		{name: "activation: burst at zero panics", in: Input{Config: def, Current: 0, Ready: 0, Window: series(t0, 0, 50, 0)}, want: 5, rule: RulePanic, panic: true},
		{name: "activation: with the downscale delay too", in: Input{Config: with(def, func(c *Config) { c.DownscaleDelay = time.Hour; c.UpscaleDelay = time.Hour }), Current: 0, Ready: 0, Window: flat(t0, 2)}, want: 1},
		{name: "fixed count", in: Input{Config: config(t, 3, 3, nil), Current: 2, Ready: 2, Window: flat(t0, 500)}, want: 3, rule: RuleFixed, reason: "=replicas fixed at 3 (current 2)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.in.Now.IsZero() {
				tt.in.Now = t0
			}
			d, st := Decide(tt.in, tt.st)
			if d.Desired != tt.want || (tt.rule != "" && d.Rule != tt.rule) || d.Panic != tt.panic {
				t.Errorf("Decide = %d (%s, panic %v), want %d (%s, panic %v)\n  reason: %s", d.Desired, d.Rule, d.Panic, tt.want, tt.rule, tt.panic, d.Reason)
			}
			if r, exact := strings.CutPrefix(tt.reason, "="); exact && d.Reason != r {
				t.Errorf("reason:\n  got  %s\n  want %s", d.Reason, r)
			} else if !exact && !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("reason %q does not contain %q", d.Reason, tt.reason)
			}
			if d.Current != max(tt.in.Current, 0) || d.Metric != tt.in.Config.Metric || d.Target != tt.in.Config.Target {
				t.Errorf("inputs not recorded: %+v", d)
			}
			if tt.checkSt != nil {
				tt.checkSt(t, st)
			}
		})
	}
}

// step is one decision of a sequence: at t0+at, with the window's stable
// and burst values; Current is the previous decision (Ready = Current).
type step struct {
	at           time.Duration
	stable, peak float64
	want         int
	rule         Rule
}

func runSteps(t *testing.T, c Config, current int, steps []step) {
	t.Helper()
	st := State{LastActive: t0}
	for i, s := range steps {
		now := t0.Add(s.at)
		d, next := Decide(Input{Now: now, Config: c, Current: current, Ready: current, Window: series(now, s.stable, s.peak, current)}, st)
		if d.Desired != s.want || (s.rule != "" && d.Rule != s.rule) {
			t.Fatalf("step %d (t+%s): %d (%s), want %d (%s)\n  reason: %s", i, s.at, d.Desired, d.Rule, s.want, s.rule, d.Reason)
		}
		current, st = d.Desired, next
	}
}

func TestDecideSequences(t *testing.T) {
	def := config(t, 1, 100, nil)
	t.Run("panic lifecycle", func(t *testing.T) {
		runSteps(t, def, 2, []step{
			{0, 15, 15, 2, RuleStable},
			{2 * time.Second, 15, 80, 8, RulePanic},          // burst: 8 needed, 2 ready
			{4 * time.Second, 20, 30, 8, RulePanic},          // demand drops: hold
			{30 * time.Second, 20, 20, 8, RulePanic},         // still within a stable window of the last trigger
			{61 * time.Second, 20, 20, 8, RulePanic},         // 59 s since the last trigger
			{63 * time.Second, 20, 20, 4, RuleScaleDownRate}, // panic over: 8 → at most halved
			{65 * time.Second, 20, 20, 2, RuleStable},
		})
	})
	t.Run("upscale delay", func(t *testing.T) {
		c := with(def, func(c *Config) { c.UpscaleDelay = 10 * time.Second; c.PanicThreshold = math.Inf(1) })
		runSteps(t, c, 2, []step{
			{0, 40, 40, 2, RuleUpscaleDelay},
			{5 * time.Second, 30, 30, 2, RuleUpscaleDelay},
			{10 * time.Second, 50, 50, 3, RuleStable}, // the lowest meanwhile
			{12 * time.Second, 50, 50, 3, RuleUpscaleDelay},
			{22 * time.Second, 50, 50, 5, RuleStable},
		})
	})
	t.Run("downscale delay resets on a rise", func(t *testing.T) {
		c := with(def, func(c *Config) { c.DownscaleDelay = 10 * time.Second })
		runSteps(t, c, 4, []step{
			{0, 30, 30, 4, RuleDownscaleDelay},
			{5 * time.Second, 40, 40, 4, RuleStable}, // back to 4: the hold resets
			{8 * time.Second, 30, 30, 4, RuleDownscaleDelay},
			{15 * time.Second, 30, 30, 4, RuleDownscaleDelay},
			{18 * time.Second, 30, 30, 3, RuleStable},
		})
	})
	t.Run("scale to zero and back", func(t *testing.T) {
		c := config(t, 0, 10, &v1.Autoscale{ScaleToZeroAfter: "2m"})
		runSteps(t, c, 1, []step{
			{0, 5, 5, 1, RuleStable},
			{time.Minute, 0, 0, 1, RuleScaleToZeroWait},
			{time.Minute + 59*time.Second, 0, 0, 1, RuleScaleToZeroWait}, // last activity at t0
			{2 * time.Minute, 0, 0, 0, RuleScaleToZero},
			{10 * time.Minute, 0, 0, 0, ""},
			{11 * time.Minute, 0, 0.5, 1, RuleStable},
		})
	})
}

func TestDecidePredictive(t *testing.T) {
	a := &v1.Autoscale{Predictive: &v1.Predictive{Enabled: true, Horizon: "15m"}}
	on := config(t, 1, 20, a)
	off := config(t, 1, 20, nil)
	if !on.Predictive.Enabled || on.Predictive.Bucket != 5*time.Minute || off.Predictive.Enabled {
		t.Fatalf("predictive config: %+v / %+v", on.Predictive, off.Predictive)
	}
	// Every day: 10 in flight, 100 from 09:00 to 17:00.
	load := func(t time.Time) float64 {
		if h := t.UTC().Hour(); h >= 9 && h < 17 {
			return 100
		}
		return 10
	}
	day0 := time.Date(2025, 3, 3, 0, 0, 0, 0, time.UTC)
	window := func(now time.Time) []Sample {
		var w []Sample
		for i := 50; i >= 0; i -= 10 {
			at := now.Add(-time.Duration(i) * time.Second)
			w = append(w, Sample{At: at, Value: load(at)})
		}
		return w
	}
	var st State
	cur := 1
	decide := func(now time.Time) Decision {
		d, next := Decide(Input{Now: now, Config: on, Current: cur, Ready: cur, Window: window(now)}, st)
		st, cur = next, d.Desired
		return d
	}
	// Two days of history, one decision a minute.
	for now := day0; now.Before(day0.Add(48*time.Hour + 8*time.Hour + 40*time.Minute)); now = now.Add(time.Minute) {
		d := decide(now)
		if now.Before(day0.Add(23*time.Hour)) && d.ForecastMin != 0 {
			t.Fatalf("%s: a forecast before a whole season: %+v", now, d)
		}
	}
	if !st.Forecast.Trained {
		t.Fatal("not trained after two days")
	}
	for _, tc := range []struct {
		at        string
		min, want int
	}{
		{"08:40", 0, 1},   // 08:40 + 15m ends before 09:00
		{"08:45", 10, 10}, // 09:00 is within the horizon: pre-warm
		{"08:50", 10, 10},
		{"09:00", 10, 10},
		{"16:50", 10, 10},
		{"17:00", 1, 9}, // the load has dropped; the stable window still holds most of it
	} {
		h, _ := time.Parse("15:04", tc.at)
		now := day0.Add(48*time.Hour + time.Duration(h.Hour())*time.Hour + time.Duration(h.Minute())*time.Minute)
		for st.Forecast.Fed.Before(now.Add(-time.Minute)) { // catch up minute by minute
			decide(st.Forecast.Fed.Add(time.Minute).Truncate(time.Minute))
		}
		d := decide(now)
		if d.ForecastMin < tc.min || d.ForecastMin > tc.min+1 || d.Desired < tc.want {
			t.Errorf("%s: forecast min %d (peak %.1f), desired %d; want forecast min %d, desired >= %d\n  %s", tc.at, d.ForecastMin, d.Forecast, d.Desired, tc.min, tc.want, d.Reason)
		}
		if tc.at == "08:50" {
			if d.Rule != RuleForecast || !strings.Contains(d.Reason, "raised to the forecast minimum 10 (peak 100.0 in-flight in the next 15m)") {
				t.Errorf("08:50: %s: %s", d.Rule, d.Reason)
			}
			// Without predictive, the same input stays at 1.
			d2, _ := Decide(Input{Now: now, Config: off, Current: 1, Ready: 1, Window: window(now)}, State{LastActive: now})
			if d2.Desired != 1 || d2.ForecastMin != 0 {
				t.Errorf("predictive off: %+v", d2)
			}
		}
	}
}

func TestForecastGapsAndReset(t *testing.T) {
	p := &Predictive{Enabled: true, Horizon: time.Hour, Season: 24 * time.Hour, Bucket: 5 * time.Minute, Alpha: DefaultAlpha, Beta: DefaultBeta, Gamma: DefaultGamma}
	var f Forecast
	day0 := time.Date(2025, 3, 3, 0, 0, 0, 0, time.UTC)
	// A first season with a gap: missing buckets count as the level.
	for now := day0; now.Before(day0.Add(25 * time.Hour)); now = now.Add(time.Minute) {
		if now.Hour() >= 3 && now.Hour() < 5 {
			continue
		}
		f = f.observe([]Sample{{At: now, Value: 40}}, now, p)
	}
	if !f.Trained || math.Abs(f.Level-40) > 1e-6 {
		t.Fatalf("trained %v level %v", f.Trained, f.Level)
	}
	if got := f.peak(day0.Add(25*time.Hour), p); math.Abs(got-40) > 1e-6 {
		t.Errorf("peak %v, want 40", got)
	}
	// Stale: a day without samples forecasts nothing.
	if got := f.peak(day0.Add(50*time.Hour), p); got != 0 {
		t.Errorf("stale peak %v", got)
	}
	// A gap longer than a season starts over.
	later := day0.Add(80 * time.Hour)
	g := f.observe([]Sample{{At: later, Value: 1}, {At: later.Add(10 * time.Minute), Value: 1}}, later.Add(time.Hour), p)
	if g.Trained || g.Start != g.index(later, p.Bucket) || g.Open != g.index(later.Add(10*time.Minute), p.Bucket) {
		t.Errorf("no reset after a long gap: %+v", g.Trained)
	}
	// A changed season starts over.
	p2 := *p
	p2.Bucket = time.Minute
	if h := f.observe([]Sample{{At: later, Value: 1}}, later, &p2); h.Trained || h.Bucket != time.Minute {
		t.Errorf("no reset after a new bucket width")
	}
	// The original state is untouched by all of this.
	if !f.Trained || math.Abs(f.Level-40) > 1e-6 || f.Season[0] == noData {
		t.Errorf("observe changed its receiver's memory")
	}
}

// Decide never writes to the State it is given, nor to memory it shares.
func TestDecideIsPure(t *testing.T) {
	c := config(t, 1, 20, &v1.Autoscale{Predictive: &v1.Predictive{Enabled: true, Season: "1h", Horizon: "5m"}})
	var st State
	for now := t0; now.Before(t0.Add(3 * time.Hour)); now = now.Add(10 * time.Second) {
		_, st = Decide(Input{Now: now, Config: c, Current: 1, Ready: 1, Window: flat(now, float64(now.Minute()))}, st)
	}
	snapshot := st
	snapshot.Forecast.Season = append([]float64(nil), st.Forecast.Season...)
	in := Input{Now: t0.Add(4 * time.Hour), Config: c, Current: 2, Ready: 2, Window: flat(t0.Add(4*time.Hour), 50)}
	d1, s1 := Decide(in, st)
	if !reflect.DeepEqual(st, snapshot) {
		t.Fatal("Decide modified the State it was given")
	}
	d2, s2 := Decide(in, st)
	if !reflect.DeepEqual(d1, d2) || !reflect.DeepEqual(s1, s2) {
		t.Fatal("same input, different output")
	}
}

// A State survives JSON (the controller may persist it), during the first
// season and after it.
func TestStateJSON(t *testing.T) {
	c := config(t, 0, 20, &v1.Autoscale{Predictive: &v1.Predictive{Enabled: true, Season: "1h", Horizon: "5m"}})
	var st State
	for now := t0; now.Before(t0.Add(90 * time.Minute)); now = now.Add(10 * time.Second) {
		_, st = Decide(Input{Now: now, Config: c, Current: 3, Ready: 3, Window: series(now, float64(now.Minute()), 80, 3)}, st)
		if now.Equal(t0.Add(30*time.Minute)) || now.Equal(t0.Add(89*time.Minute+50*time.Second)) {
			b, err := json.Marshal(st)
			if err != nil {
				t.Fatalf("%s: %v", now, err)
			}
			var back State
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			in := Input{Now: now.Add(10 * time.Second), Config: c, Current: 3, Ready: 3, Window: series(now.Add(10*time.Second), 30, 30, 3)}
			d1, s1 := Decide(in, st)
			d2, s2 := Decide(in, back)
			if d1.Desired != d2.Desired || d1.ForecastMin != d2.ForecastMin || !s1.PanicSince.Equal(s2.PanicSince) || s1.Forecast.Level != s2.Forecast.Level {
				t.Errorf("%s: decisions differ after a JSON round trip:\n %+v\n %+v", now, d1, d2)
			}
		}
	}
	if !st.Forecast.Trained || !st.Panicking() {
		t.Fatalf("test did not reach a trained, panicking state: %v %v", st.Forecast.Trained, st.Panicking())
	}
}

func TestConfigFrom(t *testing.T) {
	c := config(t, 0, 10, nil)
	want := Config{Min: 0, Max: 10, Metric: "concurrency", Target: 10, StableWindow: time.Minute, PanicWindow: 6 * time.Second,
		PanicThreshold: 2, MaxScaleUpRate: 1000, MaxScaleDownRate: 2, ScaleToZeroAfter: 5 * time.Minute}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("defaults:\n %+v\nwant\n %+v", c, want)
	}
	c = config(t, 2, 2, nil)
	if c.Min != 2 || c.Max != 2 || c.ScaleToZeroAfter != 0 || c.Target != 10 {
		t.Errorf("fixed: %+v", c)
	}
	c = config(t, 1, 10, &v1.Autoscale{Metric: "rps", Target: 5, UpscaleDelay: "10s", DownscaleDelay: "2m", StableWindow: "30s",
		Schedule:   []v1.ScheduleRule{{Days: "sat", From: "10:00", To: "12:00", Min: 3}},
		Predictive: &v1.Predictive{Enabled: true, Season: "168h"}})
	if c.Metric != "rps" || c.Target != 5 || c.UpscaleDelay != 10*time.Second || c.DownscaleDelay != 2*time.Minute ||
		c.StableWindow != 30*time.Second || c.PanicWindow != 3*time.Second || len(c.Schedule) != 1 ||
		c.Predictive.Bucket != 35*time.Minute || c.Predictive.Horizon != 15*time.Minute {
		t.Errorf("explicit: %+v", c)
	}
	// ConfigFrom does not write to the spec.
	a := &v1.Autoscale{Predictive: &v1.Predictive{}}
	config(t, 0, 3, a)
	if a.Metric != "" || a.Predictive.Horizon != "" {
		t.Errorf("spec modified: %+v", a)
	}

	for _, bad := range []v1.DeploymentSpec{
		{Replicas: v1.Replicas{Min: 3, Max: 3}, Autoscale: &v1.Autoscale{}},
		{Replicas: v1.Replicas{Min: 5, Max: 2}},
		{Replicas: v1.Replicas{Min: -1, Max: 2}},
		{Replicas: v1.Replicas{Min: 1, Max: 3}, Autoscale: &v1.Autoscale{Metric: "cpu"}},
		{Replicas: v1.Replicas{Min: 1, Max: 3}, Autoscale: &v1.Autoscale{Target: -1}},
		{Replicas: v1.Replicas{Min: 1, Max: 3}, Autoscale: &v1.Autoscale{Schedule: []v1.ScheduleRule{{From: "9", To: "10:00", Min: 1}}}},
	} {
		if _, err := ConfigFrom(bad); err == nil {
			t.Errorf("ConfigFrom(%+v): no error", bad)
		}
	}
}

func TestEventReason(t *testing.T) {
	for _, tc := range []struct {
		d    Decision
		want string
	}{
		{Decision{Current: 1, Desired: 3}, "ScaledUp"},
		{Decision{Current: 3, Desired: 0}, "ScaledDown"},
		{Decision{Current: 2, Desired: 2}, ""},
	} {
		if got := tc.d.EventReason(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.d, got, tc.want)
		}
	}
}

func BenchmarkDecide(b *testing.B) {
	for _, bc := range []struct {
		name string
		a    *v1.Autoscale
	}{
		{"default", nil},
		{"schedule+predictive", &v1.Autoscale{
			Schedule:   []v1.ScheduleRule{{Days: "mon-fri", From: "09:00", To: "18:00", Min: 4, Timezone: "Europe/Paris"}},
			Predictive: &v1.Predictive{Enabled: true}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := config(b, 0, 50, bc.a)
			var st State
			now := t0
			w := series(now, 35, 40, 4)
			b.ReportAllocs()
			for b.Loop() {
				now = now.Add(time.Second)
				for i := range w { // slide the window without allocating
					w[i].At = w[i].At.Add(time.Second)
				}
				var d Decision
				d, st = Decide(Input{Now: now, Config: c, Current: 4, Ready: 4, Window: w}, st)
				_ = d
			}
		})
	}
}

// rated is a series whose samples carry an arrival rate.
func rated(now time.Time, stable, burst, rate, burstRate float64, ready int) []Sample {
	out := series(now, stable, burst, ready)
	for i := range out {
		out[i].Rate, out[i].RateKnown = rate, true
		if i >= len(out)-6 {
			out[i].Rate = burstRate
		}
	}
	return out
}

// The backlog rule: a deployment whose requests spend 4 s in it (learned:
// 8 in flight at 2 req/s) sees 200 in flight, of which the arrival rate of
// 10 req/s sustains 40 (x1.5 = 60): it sizes for 60, not 200. Without a
// learned sojourn, or with a metric other than concurrency, it sizes for 200.
func TestDecideBacklog(t *testing.T) {
	c := config(t, 1, 100, &v1.Autoscale{Metric: v1.MetricConcurrency, Target: 5})
	// Learn: a steady minute, 2 ready of 2, 8 in flight at 2 req/s.
	_, st := Decide(Input{Now: t0, Config: c, Current: 2, Ready: 2, Window: rated(t0, 8, 8, 2, 2, 2)}, State{})
	if math.Abs(st.Sojourn-4) > 1e-9 {
		t.Fatalf("learned sojourn %v, want 4", st.Sojourn)
	}
	now := t0.Add(60 * time.Second)
	burst := rated(now, 8, 200, 2, 10, 2)
	st.SojournAt = now // the burst's samples were read by earlier calls
	d, st2 := Decide(Input{Now: now, Config: c, Current: 2, Ready: 2, Window: burst}, st)
	if !d.Panic || d.Desired != 12 || d.PanicValue != 60 {
		t.Fatalf("with backlog rule: desired %d (panic %v, panic value %v), want 12 from 10 req/s x 4 s x 1.5 = 60 in flight / 5: %s", d.Desired, d.Panic, d.PanicValue, d.Reason)
	}
	if st2.Sojourn != st.Sojourn {
		t.Errorf("sojourn learned while panicking: %v → %v", st.Sojourn, st2.Sojourn)
	}
	// No learned sojourn: the whole queue counts.
	d, _ = Decide(Input{Now: now, Config: c, Current: 2, Ready: 1, Window: burst}, State{})
	if d.Desired != 40 {
		t.Fatalf("without a sojourn: desired %d, want 200/5 = 40: %s", d.Desired, d.Reason)
	}
	// rps ignores it.
	rps := config(t, 1, 100, &v1.Autoscale{Metric: v1.MetricRPS, Target: 5})
	d, _ = Decide(Input{Now: now, Config: rps, Current: 2, Ready: 2, Window: burst}, st)
	if d.Desired != 40 {
		t.Fatalf("rps: desired %d, want 40: %s", d.Desired, d.Reason)
	}
	// Demand the rate sustains is not discounted: 200 in flight at 50 req/s.
	d, _ = Decide(Input{Now: now, Config: c, Current: 2, Ready: 2, Window: rated(now, 8, 200, 2, 50, 2)}, st)
	if d.Desired != 40 {
		t.Fatalf("sustained demand: desired %d, want 40: %s", d.Desired, d.Reason)
	}
}
