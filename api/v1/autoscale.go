package v1

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	// Schedule time zones are checked against the embedded IANA database, so
	// a spec validates the same on every host (the CLI and the server).
	_ "time/tzdata"
)

// Autoscale says how aloft sizes a deployment between replicas.min and
// replicas.max. It needs replicas written as a range {min, max} with
// min < max. A range without an autoscale section autoscales with all the
// defaults below (internal/autoscale.ConfigFrom applies them); a fixed
// count never autoscales.
//
//	replicas: {min: 0, max: 10}
//	autoscale:
//	  metric: concurrency        # concurrency (default) | rps | latencyP90 | custom
//	  target: 10                 # per replica; default 10 for concurrency, required otherwise
//	  scaleToZeroAfter: 5m       # only with replicas.min 0 (default 5m there)
//	  upscaleDelay: 0s           # default 0s
//	  downscaleDelay: 0s         # default 0s
//	  stableWindow: 60s          # default 60s
//	  panicWindow: 6s            # default stableWindow/10
//	  schedule:
//	    - {days: mon-fri, from: "09:00", to: "18:00", min: 4, timezone: Europe/Paris}
//	  predictive: {enabled: true, horizon: 15m, season: 24h}
//
// Durations are Go duration strings: "30s", "5m", "1h30m".
type Autoscale struct {
	// Metric is what one replica is sized by:
	//   concurrency  in-flight requests per replica (default)
	//   rps          requests per second per replica
	//   latencyP90   the 90th-percentile request latency in milliseconds;
	//                sized proportionally: replicas x observed / target
	//   custom       a value each replica reports (tokens/s, queue depth, ...),
	//                named by CustomMetric; summed over the fleet
	Metric string `json:"metric,omitempty"`
	// Target is the metric's value one replica should carry: in-flight
	// requests, requests/s, milliseconds, or the custom metric's unit. It
	// must be > 0; it defaults to 10 for concurrency and is required for the
	// other metrics.
	Target float64 `json:"target,omitempty"`
	// CustomMetric, only with metric: custom, names where the value comes
	// from: "header:NAME" (a response header each replica sets, e.g.
	// header:X-Queue-Depth) or "metrics:NAME" (a gauge on the replica's
	// Prometheus /metrics, e.g. metrics:vllm:num_requests_waiting).
	CustomMetric string `json:"customMetric,omitempty"`
	// ScaleToZeroAfter is how long the deployment must see no traffic
	// before its last replica stops. Only with replicas.min 0, where it
	// defaults to 5m; between 1s and 24h.
	ScaleToZeroAfter Duration `json:"scaleToZeroAfter,omitempty"`
	// UpscaleDelay and DownscaleDelay: a scale-up (-down) is applied only
	// after the recommendation has stayed above (below) the current count
	// for this long, and then to the level that held throughout. Default 0s,
	// at most 1h. Panic mode and the first replica from zero skip the
	// upscale delay.
	UpscaleDelay   Duration `json:"upscaleDelay,omitempty"`
	DownscaleDelay Duration `json:"downscaleDelay,omitempty"`
	// StableWindow is the averaging window of normal decisions (default 60s,
	// 6s to 1h). PanicWindow is the short window that detects bursts
	// (default StableWindow/10, at least 1s, less than StableWindow).
	StableWindow Duration `json:"stableWindow,omitempty"`
	PanicWindow  Duration `json:"panicWindow,omitempty"`
	// Schedule raises the minimum at given times of the week.
	Schedule []ScheduleRule `json:"schedule,omitempty"`
	// Predictive pre-warms ahead of recurring rises. Off unless enabled.
	Predictive *Predictive `json:"predictive,omitempty"`
}

// ScheduleRule keeps at least Min replicas during a daily time window on the
// given days:
//
//	{days: mon-fri, from: "09:00", to: "18:00", min: 4, timezone: Europe/Paris}
//
// Days is a comma-separated list of day names (mon, tue, wed, thu, fri, sat,
// sun, or full names, any case) and ranges ("mon-fri"; "fri-mon" wraps);
// empty means every day. From and To are "HH:MM" wall-clock times in
// Timezone (an IANA name, default UTC); To may be "24:00". A window with To
// before From runs past midnight into the next day (days names the day it
// starts). From == To is an error; all day is from "00:00" to "24:00". When
// several rules are active the largest Min applies. Min must be between 1
// and replicas.max.
type ScheduleRule struct {
	Days     string `json:"days,omitempty"`
	From     string `json:"from"`
	To       string `json:"to"`
	Min      int    `json:"min"`
	Timezone string `json:"timezone,omitempty"`
}

// Predictive configures predictive pre-warming: a Holt-Winters forecast of
// the metric over its own history (one season long, in 288 buckets) raises
// the minimum to what the next Horizon is forecast to need, bounded by
// replicas.max. Not available with metric latencyP90.
type Predictive struct {
	Enabled bool `json:"enabled"`
	// Horizon is how far ahead to provision (default 15m, 1m to 6h, at
	// most half the season).
	Horizon Duration `json:"horizon,omitempty"`
	// Season is the period the load repeats with (default 24h, 1h to 168h).
	// Seasons are aligned to UTC (the Unix epoch).
	Season Duration `json:"season,omitempty"`
}

// Duration is a Go duration string such as "30s", "5m" or "1h30m". It is
// stored as written; the empty string means unset (the default).
type Duration string

// Parse returns the duration; "" is 0.
func (d Duration) Parse() (time.Duration, error) {
	if d == "" {
		return 0, nil
	}
	return time.ParseDuration(string(d))
}

// Std returns the duration, or 0 if it is unset or does not parse (a
// validated spec always parses).
func (d Duration) Std() time.Duration {
	v, err := d.Parse()
	if err != nil {
		return 0
	}
	return v
}

// Autoscale metrics.
const (
	MetricConcurrency = "concurrency"
	MetricRPS         = "rps"
	MetricLatencyP90  = "latencyP90"
	MetricCustom      = "custom"
)

// Metrics lists the valid values of autoscale.metric.
func Metrics() []string {
	return []string{MetricConcurrency, MetricRPS, MetricLatencyP90, MetricCustom}
}

// Autoscale defaults, applied by (*Autoscale).Default.
const (
	DefaultAutoscaleMetric    = MetricConcurrency
	DefaultConcurrencyTarget  = 10.0
	DefaultStableWindow       = "60s"
	DefaultScaleToZeroAfter   = "5m"
	DefaultPredictiveHorizon  = "15m"
	DefaultPredictiveSeason   = "24h"
	DefaultPanicWindowDivisor = 10 // panicWindow = stableWindow / 10 unless set
)

// Autoscale limits checked by Validate.
const (
	MinStableWindow      = 6 * time.Second
	MaxStableWindow      = time.Hour
	MinPanicWindow       = time.Second
	MaxScaleDelay        = time.Hour
	MaxScaleToZeroAfter  = 24 * time.Hour
	MaxScheduleRules     = 64
	MinPredictiveHorizon = time.Minute
	MaxPredictiveHorizon = 6 * time.Hour
	MinPredictiveSeason  = time.Hour
	MaxPredictiveSeason  = 7 * 24 * time.Hour
	maxCustomMetricLen   = 256
)

// Default fills unset autoscale fields for a deployment with replicas r:
//
//	metric            concurrency
//	target            10 (concurrency only; the other metrics need one)
//	stableWindow      60s
//	panicWindow       stableWindow / 10, at least 1s (6s by default)
//	scaleToZeroAfter  5m, only when replicas.min is 0
//	upscaleDelay      unset (0s)
//	downscaleDelay    unset (0s)
//	predictive        off; when given: horizon 15m, season 24h
//
// A zero target counts as unset here; ParseSpec keeps an explicit
// `target: 0` (and so rejects it).
func (a *Autoscale) Default(r Replicas) {
	a.applyDefaults(r, func(string) bool { return false })
	a.normalize()
}

func (a *Autoscale) applyDefaults(r Replicas, explicit func(path string) bool) {
	if a.Metric == "" {
		a.Metric = DefaultAutoscaleMetric
	}
	if a.Target == 0 && a.Metric == MetricConcurrency && !explicit("autoscale.target") {
		a.Target = DefaultConcurrencyTarget
	}
	if a.StableWindow == "" {
		a.StableWindow = DefaultStableWindow
	}
	if a.PanicWindow == "" {
		if sw, err := a.StableWindow.Parse(); err == nil && sw > 0 {
			a.PanicWindow = Duration(formatDuration(max(sw/DefaultPanicWindowDivisor, MinPanicWindow)))
		}
	}
	if a.ScaleToZeroAfter == "" && r.Min == 0 && !r.IsFixed() {
		a.ScaleToZeroAfter = DefaultScaleToZeroAfter
	}
	if p := a.Predictive; p != nil {
		if p.Horizon == "" {
			p.Horizon = DefaultPredictiveHorizon
		}
		if p.Season == "" {
			p.Season = DefaultPredictiveSeason
		}
	}
}

func (a *Autoscale) normalize() {
	if len(a.Schedule) == 0 {
		a.Schedule = nil
	}
}

// formatDuration writes d the short way: 6s, 1m30s, 1h, 500ms.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// Validate checks a (defaulted) autoscale section against the deployment's
// replicas and returns *ValidationError with paths under "autoscale", or nil.
func (a *Autoscale) Validate(r Replicas) error {
	var e errList
	a.validate(r, &e)
	if len(e) == 0 {
		return nil
	}
	return newValidationError("spec", e)
}

var (
	headerNameRe = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
	promNameRe   = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
)

func (a *Autoscale) validate(r Replicas, e *errList) {
	if r.IsFixed() {
		e.add("autoscale", "autoscale needs replicas: {min, max} with min < max (got replicas: %d); write replicas: {min: %d, max: %d} or remove autoscale", r.Min, min(r.Min, 1), max(r.Max, 2))
	}

	// metric, target, customMetric
	switch a.Metric {
	case MetricConcurrency, MetricRPS, MetricLatencyP90, MetricCustom:
	default:
		valid := strings.Join(Metrics(), ", ")
		if sug := suggest(a.Metric, Metrics()); sug != "" {
			e.add("autoscale.metric", "unknown metric %q; did you mean %q? valid metrics: %s", a.Metric, sug, valid)
		} else {
			e.add("autoscale.metric", "unknown metric %q; valid metrics: %s", a.Metric, valid)
		}
	}
	knownMetric := slices.Contains(Metrics(), a.Metric)
	switch t := a.Target; {
	case math.IsNaN(t) || math.IsInf(t, 0):
		e.add("autoscale.target", "must be a finite number > 0")
	case t == 0 && a.Metric != MetricConcurrency && !knownMetric:
		// the metric's error says enough
	case t == 0 && a.Metric != MetricConcurrency:
		e.add("autoscale.target", "required for metric %s: set %s", a.Metric, targetHint(a.Metric))
	case t <= 0:
		e.add("autoscale.target", "must be > 0 (got %g): set %s", t, targetHint(a.Metric))
	}
	switch {
	case a.Metric == MetricCustom && a.CustomMetric == "":
		e.add("autoscale.customMetric", "required with metric custom: name the value each replica reports, as \"header:X-Queue-Depth\" (a response header) or \"metrics:queue_depth\" (a gauge on its /metrics)")
	case a.Metric != MetricCustom && a.CustomMetric != "":
		e.add("autoscale.customMetric", "only applies with metric: custom (metric is %q); remove customMetric or set metric: custom", a.Metric)
	case a.CustomMetric != "":
		if reason := checkCustomMetric(a.CustomMetric); reason != "" {
			*e = append(*e, FieldError{Field: "autoscale.customMetric", Reason: reason})
		}
	}

	// durations
	stable, stableOK := durationIn(e, "autoscale.stableWindow", a.StableWindow, MinStableWindow, MaxStableWindow)
	panicW, panicOK := durationIn(e, "autoscale.panicWindow", a.PanicWindow, MinPanicWindow, MaxStableWindow)
	if stableOK && panicOK && a.StableWindow != "" && a.PanicWindow != "" && panicW >= stable {
		e.add("autoscale.panicWindow", "autoscale.panicWindow (%s) must be shorter than autoscale.stableWindow (%s); shorten the panic window (default: a tenth of the stable window)", a.PanicWindow, a.StableWindow)
	}
	durationIn(e, "autoscale.upscaleDelay", a.UpscaleDelay, 0, MaxScaleDelay)
	durationIn(e, "autoscale.downscaleDelay", a.DownscaleDelay, 0, MaxScaleDelay)
	if a.ScaleToZeroAfter != "" {
		if r.Min > 0 {
			e.add("autoscale.scaleToZeroAfter", "only applies with replicas.min 0 (replicas.min is %d); set replicas.min to 0 or remove scaleToZeroAfter", r.Min)
		} else {
			durationIn(e, "autoscale.scaleToZeroAfter", a.ScaleToZeroAfter, time.Second, MaxScaleToZeroAfter)
		}
	}

	// schedule
	if len(a.Schedule) > MaxScheduleRules {
		e.add("autoscale.schedule", "at most %d rules (got %d)", MaxScheduleRules, len(a.Schedule))
	}
	for i, rule := range a.Schedule {
		p := fmt.Sprintf("autoscale.schedule[%d]", i)
		for _, fe := range rule.check() {
			*e = append(*e, FieldError{Field: p + "." + fe.Field, Reason: fe.Reason})
		}
		if rule.Min > r.Max && rule.Min >= 1 && !r.IsFixed() {
			e.add(p+".min", "autoscale.schedule[%d].min (%d) must be <= replicas.max (%d); lower the schedule's min or raise replicas.max", i, rule.Min, r.Max)
		}
	}

	// predictive
	if p := a.Predictive; p != nil {
		season, seasonOK := durationIn(e, "autoscale.predictive.season", p.Season, MinPredictiveSeason, MaxPredictiveSeason)
		horizon, horizonOK := durationIn(e, "autoscale.predictive.horizon", p.Horizon, MinPredictiveHorizon, MaxPredictiveHorizon)
		if seasonOK && horizonOK && p.Season != "" && horizon > season/2 {
			e.add("autoscale.predictive.horizon", "autoscale.predictive.horizon (%s) must be at most half of autoscale.predictive.season (%s)", p.Horizon, p.Season)
		}
		if p.Enabled && a.Metric == MetricLatencyP90 {
			e.add("autoscale.predictive", "not available with metric latencyP90 (a latency cannot be forecast into replicas); use concurrency or rps, or disable predictive")
		}
	}
}

func targetHint(metric string) string {
	switch metric {
	case MetricRPS:
		return "the requests per second one replica should serve, e.g. target: 20"
	case MetricLatencyP90:
		return "the p90 latency to hold in milliseconds, e.g. target: 500"
	case MetricCustom:
		return "the value of the custom metric one replica should carry, e.g. target: 4 (queue depth) or 800 (tokens/s)"
	}
	return fmt.Sprintf("the in-flight requests one replica should carry, e.g. target: %g", DefaultConcurrencyTarget)
}

func checkCustomMetric(s string) string {
	kind, name, ok := strings.Cut(s, ":")
	const form = "write \"header:NAME\" (a response header) or \"metrics:NAME\" (a Prometheus gauge)"
	switch {
	case len(s) > maxCustomMetricLen:
		return fmt.Sprintf("must be at most %d characters", maxCustomMetricLen)
	case !ok || (kind != "header" && kind != "metrics"):
		return fmt.Sprintf("must say where the value comes from (got %q): %s", s, form)
	case name == "":
		return fmt.Sprintf("names no %s (got %q): %s", kind, s, form)
	case kind == "header" && !headerNameRe.MatchString(name):
		return fmt.Sprintf("%q is not a valid header name (letters, digits and -, e.g. X-Queue-Depth)", name)
	case kind == "metrics" && !promNameRe.MatchString(name):
		return fmt.Sprintf("%q is not a valid Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*, e.g. queue_depth)", name)
	}
	return ""
}

// durationIn checks an optional duration field; it returns the value and
// whether it is valid (an unset field is valid and 0).
func durationIn(e *errList, field string, d Duration, lo, hi time.Duration) (time.Duration, bool) {
	if d == "" {
		return 0, true
	}
	v, err := d.Parse()
	if err != nil {
		e.add(field, "must be a duration such as \"30s\", \"5m\" or \"1h30m\" (got %q)", string(d))
		return 0, false
	}
	if v < lo || v > hi {
		e.add(field, "must be between %s and %s (got %s)", formatDuration(lo), formatDuration(hi), string(d))
		return v, false
	}
	return v, true
}

// ScheduleWindow is a parsed ScheduleRule.
type ScheduleWindow struct {
	// Days[time.Weekday] is true on the days a window starts.
	Days [7]bool
	// From and To are offsets from local midnight; To is at most 24h. A
	// window with To <= From ends the next day at To.
	From, To time.Duration
	Min      int
	Location *time.Location
}

// Contains reports whether t falls in the window (in the window's time zone).
func (w ScheduleWindow) Contains(t time.Time) bool {
	loc := w.Location
	if loc == nil {
		loc = time.UTC
	}
	lt := t.In(loc)
	wd := lt.Weekday()
	tod := time.Duration(lt.Hour())*time.Hour + time.Duration(lt.Minute())*time.Minute +
		time.Duration(lt.Second())*time.Second + time.Duration(lt.Nanosecond())
	if w.From < w.To {
		return w.Days[wd] && tod >= w.From && tod < w.To
	}
	return (w.Days[wd] && tod >= w.From) || (w.Days[(wd+6)%7] && tod < w.To)
}

// Window parses the rule. The error names the first bad field.
func (r ScheduleRule) Window() (ScheduleWindow, error) {
	if errs := r.check(); len(errs) > 0 {
		return ScheduleWindow{}, fmt.Errorf("%s", errs[0].String())
	}
	w := ScheduleWindow{Min: r.Min}
	w.Days, _ = parseDays(r.Days)
	w.From, _ = parseClock(r.From, false)
	w.To, _ = parseClock(r.To, true)
	w.Location, _ = loadZone(r.Timezone)
	return w, nil
}

// check returns the rule's errors with fields relative to the rule.
func (r ScheduleRule) check() []FieldError {
	var e errList
	if _, err := parseDays(r.Days); err != nil {
		e.add("days", "%v; write days such as \"mon-fri\", \"sat,sun\" or \"mon,wed,fri\", or leave it out for every day", err)
	}
	from, ferr := parseClock(r.From, false)
	if ferr != nil {
		e.add("from", "%v", ferr)
	}
	to, terr := parseClock(r.To, true)
	if terr != nil {
		e.add("to", "%v", terr)
	}
	if ferr == nil && terr == nil && from == to {
		e.add("to", "the window from %s to %s is empty; for all day write from: \"00:00\", to: \"24:00\"", r.From, r.To)
	}
	if r.Min < 1 {
		e.add("min", "must be >= 1 (got %d): the replicas to keep during the window", r.Min)
	}
	if _, err := loadZone(r.Timezone); err != nil {
		e.add("timezone", "%v", err)
	}
	return e
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
	"sunday": time.Sunday, "monday": time.Monday, "tuesday": time.Tuesday, "wednesday": time.Wednesday,
	"thursday": time.Thursday, "friday": time.Friday, "saturday": time.Saturday,
}

var shortDays = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

func parseDay(s string) (time.Weekday, error) {
	d, ok := dayNames[strings.ToLower(strings.TrimSpace(s))]
	if ok {
		return d, nil
	}
	if sug := suggest(s, shortDays); sug != "" && s != "" {
		return 0, fmt.Errorf("unknown day %q (did you mean %q?)", shorten(s), sug)
	}
	return 0, fmt.Errorf("unknown day %q", shorten(s))
}

// parseDays reads "mon-fri", "sat,sun", "mon,wed-fri"; "" is every day.
func parseDays(s string) ([7]bool, error) {
	var days [7]bool
	if strings.TrimSpace(s) == "" {
		for i := range days {
			days[i] = true
		}
		return days, nil
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := parseDay(lo)
		if err != nil {
			return days, err
		}
		if !isRange {
			days[a] = true
			continue
		}
		b, err := parseDay(hi)
		if err != nil {
			return days, err
		}
		for d := a; ; d = (d + 1) % 7 {
			days[d] = true
			if d == b {
				break
			}
		}
	}
	return days, nil
}

// parseClock reads "H:MM" or "HH:MM" (00:00 to 23:59; 24:00 too when
// end is set) as an offset from midnight.
func parseClock(s string, end bool) (time.Duration, error) {
	hint := `must be a time "HH:MM" such as "09:00" or "18:30"`
	if end {
		hint += ` (or "24:00")`
	}
	hs, ms, ok := strings.Cut(s, ":")
	if s == "" {
		return 0, fmt.Errorf("required: %s", strings.TrimPrefix(hint, "must be "))
	}
	if !ok || len(hs) < 1 || len(hs) > 2 || len(ms) != 2 || !allDigits(hs) || !allDigits(ms) {
		return 0, fmt.Errorf("%s (got %q)", hint, shorten(s))
	}
	h, _ := strconv.Atoi(hs)
	m, _ := strconv.Atoi(ms)
	if m > 59 || h > 24 || (h == 24 && (m != 0 || !end)) {
		return 0, fmt.Errorf("%s (got %q)", hint, s)
	}
	return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// loadZone resolves an IANA time zone name; "" is UTC. "Local" is refused:
// its meaning depends on the host.
func loadZone(name string) (*time.Location, error) {
	if name == "" || name == "UTC" {
		return time.UTC, nil
	}
	if name == "Local" || strings.ContainsAny(name, " \t") || strings.HasPrefix(name, "/") || strings.Contains(name, "..") {
		return nil, fmt.Errorf("unknown time zone %q; use an IANA name such as \"Europe/Paris\" or \"America/New_York\" (default UTC)", shorten(name))
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q; use an IANA name such as \"Europe/Paris\" or \"America/New_York\" (default UTC)", shorten(name))
	}
	return loc, nil
}
