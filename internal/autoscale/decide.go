package autoscale

import (
	"math"
	"strconv"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
)

// Sample is one observation of the whole deployment.
type Sample struct {
	At time.Time
	// Value is the fleet-wide metric at At:
	//   concurrency  requests in flight, summed over replicas (queued in the
	//                gateway too, so that a deployment at zero sees demand)
	//   rps          requests per second over the interval ending at At
	//   latencyP90   p90 latency in ms over the interval ending at At (0: no requests)
	//   custom       the custom metric summed over replicas
	// Any Value > 0 counts as activity (for scale to zero).
	Value float64
	// Ready is the number of ready replicas at At (0: unknown). It sizes
	// latencyP90 proportionally.
	Ready int
	// Rate is the arrival rate (requests per second) over the interval
	// ending at At, when RateKnown. With the concurrency metric it lets the
	// decider tell lasting demand from a backlog (see the package comment).
	Rate      float64
	RateKnown bool
}

// Input is everything one decision depends on.
type Input struct {
	Now    time.Time
	Config Config
	// Current is the replica count desired now (the last decision or the
	// count the deployment runs); Ready how many of them are ready.
	Current int
	Ready   int
	// Window holds the samples, oldest first, covering at least the stable
	// window. Decisions read those in (Now-StableWindow, Now]; the
	// forecaster reads every sample newer than the last one it read (so
	// windows may overlap from call to call) and not after Now.
	Window []Sample
}

// Rule names the rule that settled a decision.
type Rule string

// Rules, in Decision.Rule.
const (
	RuleFixed           Rule = "Fixed"           // Min == Max: nothing to decide
	RuleNoData          Rule = "NoData"          // no sample in the stable window: keep the count
	RuleStable          Rule = "Stable"          // the stable window's recommendation
	RulePanic           Rule = "Panic"           // panic mode's recommendation (never decreases)
	RuleScaleUpRate     Rule = "ScaleUpRate"     // capped by MaxScaleUpRate
	RuleScaleDownRate   Rule = "ScaleDownRate"   // held by MaxScaleDownRate
	RuleUpscaleDelay    Rule = "UpscaleDelay"    // a scale-up waiting for UpscaleDelay
	RuleDownscaleDelay  Rule = "DownscaleDelay"  // a scale-down waiting for DownscaleDelay
	RuleMin             Rule = "Min"             // raised to replicas.min
	RuleSchedule        Rule = "Schedule"        // raised to the schedule's minimum
	RuleForecast        Rule = "Forecast"        // raised to the forecast minimum
	RuleMax             Rule = "Max"             // capped at replicas.max
	RuleActivation      Rule = "Activation"      // activity at zero: one replica at once
	RuleScaleToZeroWait Rule = "ScaleToZeroWait" // idle, but not yet for ScaleToZeroAfter: keep one
	RuleScaleToZero     Rule = "ScaleToZero"     // idle for ScaleToZeroAfter: zero
)

// Decision is one scaling decision with the inputs that produced it; the
// controller records it as an event (see EventReason).
type Decision struct {
	Desired int
	Current int
	Ready   int
	// Rule settled Desired; Reason explains the whole decision for people:
	// "stable window 60s: 34.0 in-flight / target 10 per replica → 4 (current 2)".
	Rule   Rule
	Reason string
	Panic  bool
	// Metric and Target are the config's; Window is the window that decided
	// (the panic window in panic mode).
	Metric string
	Target float64
	Window time.Duration
	// StableValue and PanicValue are the windows' mean metric values;
	// StableDesired and PanicDesired their rate-bounded recommendations.
	StableValue, PanicValue     float64
	StableDesired, PanicDesired int
	// ScheduleMin and ForecastMin are the minimums from the schedule and the
	// forecaster (0 when none applies); Forecast is the forecast peak of the
	// metric over the horizon.
	ScheduleMin int
	ForecastMin int
	Forecast    float64
}

// EventReason is the event reason for the decision: "ScaledUp",
// "ScaledDown", or "" when Desired equals Current.
func (d Decision) EventReason() string {
	switch {
	case d.Desired > d.Current:
		return "ScaledUp"
	case d.Desired < d.Current:
		return "ScaledDown"
	}
	return ""
}

// State is what the decider carries from one decision to the next. The zero
// State is a fresh decider. It is a value: Decide never modifies the State
// it is given (nor memory it shares), so a caller may keep old States.
type State struct {
	// PanicSince is when panic mode started (zero: not panicking);
	// PanicLast when the panic condition last held; PanicMax the largest
	// result since PanicSince.
	PanicSince time.Time `json:"panicSince,omitzero"`
	PanicLast  time.Time `json:"panicLast,omitzero"`
	PanicMax   int       `json:"panicMax,omitempty"`
	// UpSince is when the recommendation went above the current count
	// (zero: it is not), UpLevel the lowest recommendation since;
	// DownSince and DownLevel (the highest) likewise below.
	UpSince   time.Time `json:"upSince,omitzero"`
	UpLevel   int       `json:"upLevel,omitempty"`
	DownSince time.Time `json:"downSince,omitzero"`
	DownLevel int       `json:"downLevel,omitempty"`
	// LastActive is the newest sample > 0, or the first Now seen.
	LastActive time.Time `json:"lastActive,omitzero"`
	// Sojourn is the learned time a request spends in the deployment when
	// no backlog builds up (in-flight / arrival rate, seconds; 0: not yet
	// known), from the samples up to SojournAt.
	Sojourn   float64   `json:"sojourn,omitempty"`
	SojournAt time.Time `json:"sojournAt,omitzero"`
	// InFlightAvg and RateAvg are the moving averages Sojourn is the ratio of.
	InFlightAvg float64  `json:"inFlightAvg,omitempty"`
	RateAvg     float64  `json:"rateAvg,omitempty"`
	Forecast    Forecast `json:"forecast,omitzero"`
}

// Panicking reports whether the decider is in panic mode.
func (s State) Panicking() bool { return !s.PanicSince.IsZero() }

// Decide returns the replica count the deployment should run at in.Now and
// the State to pass to the next call. See the package comment for the rules.
func Decide(in Input, st State) (Decision, State) {
	c := &in.Config
	now := in.Now
	cur := max(in.Current, 0)
	d := Decision{Current: cur, Ready: in.Ready, Metric: c.Metric, Target: c.Target, Window: c.StableWindow}
	if st.LastActive.IsZero() {
		st.LastActive = now
	}
	r := reason{buf: make([]byte, 0, 192)}
	if c.Min >= c.Max {
		d.Desired, d.Rule = c.Max, RuleFixed
		r.s("replicas fixed at ").i(c.Max).s(" (current ").i(cur).s(")")
		d.Reason = string(r.buf)
		return d, st
	}

	// 1. Windows.
	stableStart, panicStart := now.Add(-c.StableWindow), now.Add(-c.PanicWindow)
	var sSum, pSum, readySum float64
	var sN, pN, readyN int
	active := false
	for i := range in.Window {
		s := &in.Window[i]
		if s.At.After(now) {
			continue
		}
		if s.Value > 0 && s.At.After(st.LastActive) {
			st.LastActive = s.At
		}
		if !s.At.After(stableStart) {
			continue
		}
		sSum += s.Value
		sN++
		if s.At.After(panicStart) {
			pSum += s.Value
			pN++
		}
		if s.Ready > 0 {
			readySum += float64(s.Ready)
			readyN++
		}
		if s.Value > 0 {
			active = true
		}
	}
	if c.Metric == v1.MetricConcurrency {
		st = learnSojourn(c, in, st)
	}
	if c.Predictive.Enabled {
		st.Forecast = st.Forecast.observe(forecastInput(c, in.Window, st.Sojourn), now, &c.Predictive)
		d.Forecast = st.Forecast.peak(now, &c.Predictive)
		d.ForecastMin = min(ceilCount(c.replicasFor(d.Forecast, 1)), c.Max)
	}
	d.ScheduleMin = c.ScheduleMin(now)

	want := cur
	if sN == 0 {
		d.Rule = RuleNoData
		r.s("no samples in the stable window ").dur(c.StableWindow).s(": keeping ").i(cur)
	} else {
		want = decideWindows(c, in, &d, &st, &r, sSum/float64(sN), pSum, pN, readySum, readyN, active)
	}

	// 6. Floors and the cap.
	res := want
	floor := c.Min
	if res < c.Min {
		res, d.Rule = c.Min, RuleMin
		r.s("; raised to replicas.min ").i(c.Min)
	}
	if d.ScheduleMin > res {
		res, d.Rule = d.ScheduleMin, RuleSchedule
		r.s("; raised to the schedule's minimum ").i(d.ScheduleMin)
	}
	floor = max(floor, d.ScheduleMin)
	if d.ForecastMin > res {
		res, d.Rule = d.ForecastMin, RuleForecast
		r.s("; raised to the forecast minimum ").i(d.ForecastMin).s(" (peak ").f(d.Forecast).s(" ").unit(c).s(" in the next ").dur(c.Predictive.Horizon).s(")")
	}
	floor = max(floor, d.ForecastMin)
	if res > c.Max {
		res, d.Rule = c.Max, RuleMax
		r.s("; capped at replicas.max ").i(c.Max)
	}

	// 7. Zero.
	if res == 0 && floor == 0 && c.Max > 0 {
		switch idle := now.Sub(st.LastActive); {
		case active:
			res, d.Rule = 1, RuleActivation
			if cur == 0 {
				r.s("; activity at zero → 1")
			} else {
				r.s("; keeping 1 replica: there was activity in the stable window")
			}
		case cur > 0 && idle < c.ScaleToZeroAfter:
			res, d.Rule = 1, RuleScaleToZeroWait
			r.s("; keeping 1 replica: idle for ").dur(idle).s(" of scaleToZeroAfter ").dur(c.ScaleToZeroAfter)
		case cur > 0:
			d.Rule = RuleScaleToZero
			r.s("; idle for ").dur(idle).s(" ≥ scaleToZeroAfter ").dur(c.ScaleToZeroAfter).s(": scaling to zero")
		}
	}
	d.Desired = res
	r.s(" (current ").i(cur)
	if in.Ready != cur {
		r.s(", ").i(in.Ready).s(" ready")
	}
	r.s(")")
	d.Reason = string(r.buf)
	return d, st
}

// backlogHeadroom scales the rate-sustained demand while replicas start.
const backlogHeadroom = 1.5

// sojournAlpha is the weight of one sample in the learned sojourn time.
const sojournAlpha = 0.05

// learnSojourn updates the learned in-flight/arrival-rate ratio from the
// samples newer than the last one read, taking those of a deployment
// without replicas starting and not panicking. It runs before the decision,
// so the first samples of a burst count too: that errs on the side of a
// longer sojourn, i.e. of counting more of the in-flight requests.
func learnSojourn(c *Config, in Input, st State) State {
	if in.Ready < max(in.Current, 1) || st.Panicking() {
		if n := len(in.Window); n > 0 && in.Window[n-1].At.After(st.SojournAt) && !in.Window[n-1].At.After(in.Now) {
			st.SojournAt = in.Window[n-1].At
		}
		return st
	}
	for i := range in.Window {
		s := &in.Window[i]
		if !s.At.After(st.SojournAt) || s.At.After(in.Now) {
			continue
		}
		st.SojournAt = s.At
		if !s.RateKnown || s.Ready <= 0 {
			continue
		}
		if st.RateAvg == 0 && st.InFlightAvg == 0 {
			st.InFlightAvg, st.RateAvg = s.Value, s.Rate
		} else {
			st.InFlightAvg += sojournAlpha * (s.Value - st.InFlightAvg)
			st.RateAvg += sojournAlpha * (s.Rate - st.RateAvg)
		}
	}
	if st.RateAvg > 0 {
		st.Sojourn = st.InFlightAvg / st.RateAvg
	}
	return st
}

// forecastInput is what the forecaster learns demand from: the window,
// with the backlog rule applied to each sample that carries a rate (a
// queue that built up is not demand to pre-warm for).
func forecastInput(c *Config, w []Sample, sojourn float64) []Sample {
	if c.Metric != v1.MetricConcurrency || sojourn <= 0 {
		return w
	}
	out := make([]Sample, len(w))
	copy(out, w)
	for i := range out {
		if s := &out[i]; s.RateKnown {
			s.Value = min(s.Value, s.Rate*sojourn*backlogHeadroom)
		}
	}
	return out
}

// rateMean is the mean arrival rate of the samples in (from, to] that carry one.
func rateMean(w []Sample, from, to time.Time) (float64, bool) {
	sum, n := 0.0, 0
	for i := range w {
		s := &w[i]
		if s.At.After(from) && !s.At.After(to) && s.RateKnown {
			sum += s.Rate
			n++
		}
	}
	if n == 0 {
		return 0, false
	}
	return sum / float64(n), true
}

// decideWindows applies rules 2-5 and returns the recommendation.
func decideWindows(c *Config, in Input, d *Decision, st *State, r *reason, sv, pSum float64, pN int, readySum float64, readyN int, active bool) int {
	now, cur := in.Now, max(in.Current, 0)
	pv := sv
	if pN > 0 {
		pv = pSum / float64(pN)
	}

	// 2. Recommendation. While replicas start, a backlog counts only as
	// far as the arrival rate sustains it.
	if c.Metric == v1.MetricConcurrency && st.Sojourn > 0 {
		if lp, ok := rateMean(in.Window, now.Add(-c.PanicWindow), now); ok {
			pv = min(pv, lp*st.Sojourn*backlogHeadroom)
		}
		if ls, ok := rateMean(in.Window, now.Add(-c.StableWindow), now); ok {
			sv = min(sv, ls*st.Sojourn*backlogHeadroom)
		}
		pv, sv = max(pv, 0), max(sv, 0)
	}
	d.StableValue, d.PanicValue = sv, pv
	serving := float64(max(in.Ready, 1))
	if readyN > 0 {
		serving = readySum / float64(readyN)
	}
	stableRaw, panicRaw := c.replicasFor(sv, serving), c.replicasFor(pv, serving)

	// 3. Rate bounds.
	upLimit := ceilCount(float64(max(cur, 1)) * c.MaxScaleUpRate)
	downLimit := 0
	if c.MaxScaleDownRate > 0 {
		downLimit = int(math.Floor(float64(cur) / c.MaxScaleDownRate))
	}
	bound := func(n int) int { return min(max(n, downLimit), upLimit) }
	d.StableDesired, d.PanicDesired = bound(ceilCount(stableRaw)), bound(ceilCount(panicRaw))

	// 4. Panic.
	readyCap := float64(max(in.Ready, 1))
	over := panicRaw >= c.PanicThreshold*readyCap
	switch {
	case over:
		if !st.Panicking() {
			st.PanicSince, st.PanicMax = now, cur
		}
		st.PanicLast = now
	case st.Panicking() && now.Sub(st.PanicLast) >= c.StableWindow:
		st.PanicSince, st.PanicLast, st.PanicMax = time.Time{}, time.Time{}, 0
	}
	var want int
	if st.Panicking() {
		d.Panic, d.Rule, d.Window = true, RulePanic, c.PanicWindow
		want = max(d.PanicDesired, d.StableDesired, st.PanicMax, cur)
		st.PanicMax = want
		r.s("panic: panic window ").dur(c.PanicWindow).s(": ").value(c, pv, serving).s(" → ").i(d.PanicDesired)
		if over {
			r.s(" (≥ ").f1(c.PanicThreshold).s("x ").i(int(readyCap)).s(" ready)")
		} else {
			r.s(" (panic until ").dur(c.StableWindow).s(" below ").f1(c.PanicThreshold).s("x ready; ").dur(now.Sub(st.PanicLast)).s(" so far)")
		}
		r.s("; stable window ").dur(c.StableWindow).s(": ").value(c, sv, serving).s(" → ").i(d.StableDesired).s("; holding ").i(want).s(", never less while panicking")
		if want > cur {
			st.UpSince, st.DownSince = time.Time{}, time.Time{}
			return want // panic skips the upscale delay
		}
	} else {
		want = d.StableDesired
		d.Rule = RuleStable
		r.s("stable window ").dur(c.StableWindow).s(": ").value(c, sv, serving).s(" → ").i(ceilCount(stableRaw))
		switch n := ceilCount(stableRaw); {
		case n > upLimit:
			d.Rule = RuleScaleUpRate
			r.s("; scale-up limited to ").f1(c.MaxScaleUpRate).s("x → ").i(upLimit)
		case n < downLimit:
			d.Rule = RuleScaleDownRate
			r.s("; scale-down limited to current/").f1(c.MaxScaleDownRate).s(" → ").i(downLimit)
		}
	}

	// 5. Delays.
	switch {
	case want > cur:
		st.DownSince, st.DownLevel = time.Time{}, 0
		if cur == 0 || c.UpscaleDelay <= 0 {
			st.UpSince, st.UpLevel = time.Time{}, 0
			return want
		}
		if st.UpSince.IsZero() {
			st.UpSince, st.UpLevel = now, want
		} else {
			st.UpLevel = min(st.UpLevel, want)
		}
		held := now.Sub(st.UpSince)
		if held >= c.UpscaleDelay {
			lvl := st.UpLevel
			st.UpSince, st.UpLevel = time.Time{}, 0
			r.s("; above current for upscaleDelay ").dur(c.UpscaleDelay).s(": scaling to ").i(lvl).s(", the lowest recommendation meanwhile")
			return lvl
		}
		d.Rule = RuleUpscaleDelay
		r.s("; scale-up to ").i(want).s(" waits for upscaleDelay ").dur(c.UpscaleDelay).s(" (").dur(held).s(" so far)")
		return cur
	case want < cur:
		st.UpSince, st.UpLevel = time.Time{}, 0
		if c.DownscaleDelay <= 0 {
			st.DownSince, st.DownLevel = time.Time{}, 0
			return want
		}
		if st.DownSince.IsZero() {
			st.DownSince, st.DownLevel = now, want
		} else {
			st.DownLevel = max(st.DownLevel, want)
		}
		held := now.Sub(st.DownSince)
		if held >= c.DownscaleDelay {
			lvl := st.DownLevel
			st.DownSince, st.DownLevel = time.Time{}, 0
			r.s("; below current for downscaleDelay ").dur(c.DownscaleDelay).s(": scaling to ").i(lvl).s(", the highest recommendation meanwhile")
			return lvl
		}
		d.Rule = RuleDownscaleDelay
		r.s("; scale-down to ").i(want).s(" waits for downscaleDelay ").dur(c.DownscaleDelay).s(" (").dur(held).s(" so far)")
		return cur
	}
	st.UpSince, st.UpLevel, st.DownSince, st.DownLevel = time.Time{}, 0, time.Time{}, 0
	return want
}

// reason builds Decision.Reason without fmt.
type reason struct{ buf []byte }

func (r *reason) s(x string) *reason { r.buf = append(r.buf, x...); return r }
func (r *reason) i(x int) *reason    { r.buf = strconv.AppendInt(r.buf, int64(x), 10); return r }

// f writes a metric value with one decimal.
func (r *reason) f(x float64) *reason { r.buf = strconv.AppendFloat(r.buf, x, 'f', 1, 64); return r }

// f1 writes a factor or target as short as it goes.
func (r *reason) f1(x float64) *reason { r.buf = strconv.AppendFloat(r.buf, x, 'g', -1, 64); return r }

// dur writes a duration short: 6s, 60s, 90s, 5m, 1h30m, 2m30.5s.
func (r *reason) dur(d time.Duration) *reason {
	if d%time.Second != 0 && d > time.Second {
		d = d.Round(100 * time.Millisecond)
	}
	if d%time.Second == 0 && d >= time.Minute && d < 2*time.Minute {
		r.buf = strconv.AppendInt(r.buf, int64(d/time.Second), 10)
		return r.s("s")
	}
	s := d.String()
	if n := len(s); n > 3 && s[n-3:] == "m0s" {
		s = s[:n-2]
	}
	if n := len(s); n > 3 && s[n-3:] == "h0m" {
		s = s[:n-2]
	}
	return r.s(s)
}

func (r *reason) unit(c *Config) *reason {
	switch c.Metric {
	case v1.MetricConcurrency:
		return r.s("in-flight")
	case v1.MetricRPS:
		return r.s("req/s")
	case v1.MetricLatencyP90:
		return r.s("ms p90")
	}
	if c.CustomMetric != "" {
		return r.s(c.CustomMetric)
	}
	return r.s(c.Metric)
}

// value writes "34.0 in-flight / target 10 per replica", or for latency
// "p90 820.0ms / target 500ms x 3.0 serving".
func (r *reason) value(c *Config, v, serving float64) *reason {
	if c.Metric == v1.MetricLatencyP90 {
		return r.s("p90 ").f(v).s("ms / target ").f1(c.Target).s("ms x ").f(serving).s(" serving")
	}
	return r.f(v).s(" ").unit(c).s(" / target ").f1(c.Target).s(" per replica")
}
