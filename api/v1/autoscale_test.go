package v1

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

const autoBase = base + "replicas: {min: 0, max: 10}\n"

func TestAutoscaleParseValid(t *testing.T) {
	in := base + `
replicas: {min: 1, max: 20}
autoscale:
  metric: custom
  customMetric: "header:X-Queue-Depth"
  target: 4.5
  upscaleDelay: 30s
  downscaleDelay: 5m
  stableWindow: 2m
  panicWindow: 10s
  schedule:
    - {days: mon-fri, from: "09:00", to: "18:00", min: 4, timezone: Europe/Paris}
    - {days: "sat,sun", from: "22:00", to: "06:00", min: 2}
  predictive: {enabled: true, horizon: 10m, season: 168h}
`
	s, err := ParseSpec([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := &Autoscale{
		Metric: MetricCustom, CustomMetric: "header:X-Queue-Depth", Target: 4.5,
		UpscaleDelay: "30s", DownscaleDelay: "5m", StableWindow: "2m", PanicWindow: "10s",
		Schedule: []ScheduleRule{
			{Days: "mon-fri", From: "09:00", To: "18:00", Min: 4, Timezone: "Europe/Paris"},
			{Days: "sat,sun", From: "22:00", To: "06:00", Min: 2},
		},
		Predictive: &Predictive{Enabled: true, Horizon: "10m", Season: "168h"},
	}
	if !reflect.DeepEqual(s.Autoscale, want) {
		t.Errorf("autoscale =\n %+v\nwant\n %+v", s.Autoscale, want)
	}
	if s.Replicas != (Replicas{Min: 1, Max: 20}) {
		t.Errorf("replicas = %+v", s.Replicas)
	}
}

func TestAutoscaleDefaults(t *testing.T) {
	tests := []struct {
		name, in string
		want     *Autoscale
	}{
		{"absent stays nil", autoBase, nil},
		{"empty with min 0", autoBase + "autoscale: {}\n", &Autoscale{
			Metric: "concurrency", Target: 10, StableWindow: "60s", PanicWindow: "6s", ScaleToZeroAfter: "5m"}},
		{"min 1: no scale to zero", base + "replicas: {min: 1, max: 3}\nautoscale: {}\n", &Autoscale{
			Metric: "concurrency", Target: 10, StableWindow: "60s", PanicWindow: "6s"}},
		{"panic window is a tenth of the stable window", autoBase + "autoscale: {stableWindow: 90s}\n", &Autoscale{
			Metric: "concurrency", Target: 10, StableWindow: "90s", PanicWindow: "9s", ScaleToZeroAfter: "5m"}},
		{"panic window at least 1s", autoBase + "autoscale: {stableWindow: 7s}\n", &Autoscale{
			Metric: "concurrency", Target: 10, StableWindow: "7s", PanicWindow: "1s", ScaleToZeroAfter: "5m"}},
		{"rps keeps its target", autoBase + "autoscale: {metric: rps, target: 20}\n", &Autoscale{
			Metric: "rps", Target: 20, StableWindow: "60s", PanicWindow: "6s", ScaleToZeroAfter: "5m"}},
		{"predictive off by default, with defaults", autoBase + "autoscale: {predictive: {}}\n", &Autoscale{
			Metric: "concurrency", Target: 10, StableWindow: "60s", PanicWindow: "6s", ScaleToZeroAfter: "5m",
			Predictive: &Predictive{Horizon: "15m", Season: "24h"}}},
		{"empty schedule is nil", autoBase + "autoscale: {schedule: []}\n", &Autoscale{
			Metric: "concurrency", Target: 10, StableWindow: "60s", PanicWindow: "6s", ScaleToZeroAfter: "5m"}},
		{"null autoscale", autoBase + "autoscale: null\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSpec([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(s.Autoscale, tt.want) {
				t.Errorf("autoscale = %+v, want %+v", s.Autoscale, tt.want)
			}
		})
	}

	// (*DeploymentSpec).Default treats a zero target as unset.
	s := DeploymentSpec{Name: "web", Image: "x", Replicas: Replicas{Min: 0, Max: 4}, Autoscale: &Autoscale{}}
	s.Default()
	if a := s.Autoscale; a.Target != 10 || a.Metric != "concurrency" || a.ScaleToZeroAfter != "5m" {
		t.Errorf("Default: %+v", a)
	}
	if err := s.Validate(); err != nil {
		t.Errorf("defaulted spec does not validate: %v", err)
	}
	// ... but the other metrics have no default target.
	a := Autoscale{Metric: MetricLatencyP90}
	a.Default(Replicas{Min: 1, Max: 4})
	checkErrors(t, a.Validate(Replicas{Min: 1, Max: 4}), []wantErr{{"autoscale.target", "required for metric latencyP90: set the p90 latency"}})
}

func TestAutoscaleErrors(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  []wantErr
	}{
		// target
		{"target zero", autoBase + "autoscale: {target: 0}\n", []wantErr{{"autoscale.target", "must be > 0 (got 0): set the in-flight requests one replica should carry"}}},
		{"target negative", autoBase + "autoscale: {metric: rps, target: -5}\n", []wantErr{{"autoscale.target", "must be > 0 (got -5): set the requests per second"}}},
		{"target required for rps", autoBase + "autoscale: {metric: rps}\n", []wantErr{{"autoscale.target", "required for metric rps"}}},
		{"target required for custom", autoBase + "autoscale: {metric: custom, customMetric: \"metrics:queue_depth\"}\n", []wantErr{{"autoscale.target", "required for metric custom"}}},
		{"target not a number", autoBase + "autoscale: {target: ten}\n", []wantErr{{"autoscale.target", "expected a number"}}},

		// replicas
		{"min > max", base + "replicas: {min: 5, max: 2}\nautoscale: {}\n", []wantErr{{"replicas.min", "replicas.min (5) must be <= replicas.max (2)"}}},
		{"fixed replicas", base + "replicas: 3\nautoscale: {}\n", []wantErr{{"autoscale", "autoscale needs replicas: {min, max} with min < max (got replicas: 3); write replicas: {min: 1, max: 3}"}}},
		{"default replicas", base + "autoscale: {metric: rps, target: 5}\n", []wantErr{{"autoscale", "autoscale needs replicas: {min, max}"}}},
		{"min == max object", base + "replicas: {min: 2, max: 2}\nautoscale: {}\n", []wantErr{{"autoscale", "got replicas: 2"}}},

		// metric
		{"unknown metric", autoBase + "autoscale: {metric: cpu}\n", []wantErr{{"autoscale.metric", `unknown metric "cpu"; valid metrics: concurrency, rps, latencyP90, custom`}}},
		{"misspelt metric", autoBase + "autoscale: {metric: concurency}\n", []wantErr{{"autoscale.metric", `did you mean "concurrency"?`}}},
		{"metric case", autoBase + "autoscale: {metric: latencyp90, target: 300}\n", []wantErr{{"autoscale.metric", `did you mean "latencyP90"?`}}},
		{"metric not a string", autoBase + "autoscale: {metric: 5}\n", []wantErr{{"autoscale.metric", "expected a string"}}},
		{"custom without customMetric", autoBase + "autoscale: {metric: custom, target: 3}\n", []wantErr{{"autoscale.customMetric", `required with metric custom: name the value each replica reports, as "header:X-Queue-Depth"`}}},
		{"customMetric without custom", autoBase + "autoscale: {customMetric: \"header:X-Q\"}\n", []wantErr{{"autoscale.customMetric", `only applies with metric: custom (metric is "concurrency")`}}},
		{"customMetric without kind", autoBase + "autoscale: {metric: custom, target: 3, customMetric: X-Queue-Depth}\n", []wantErr{{"autoscale.customMetric", `must say where the value comes from (got "X-Queue-Depth")`}}},
		{"customMetric empty name", autoBase + "autoscale: {metric: custom, target: 3, customMetric: \"header:\"}\n", []wantErr{{"autoscale.customMetric", `names no header`}}},
		{"customMetric bad header", autoBase + "autoscale: {metric: custom, target: 3, customMetric: \"header:X Queue\"}\n", []wantErr{{"autoscale.customMetric", `"X Queue" is not a valid header name`}}},
		{"customMetric bad metric", autoBase + "autoscale: {metric: custom, target: 3, customMetric: \"metrics:1-queue\"}\n", []wantErr{{"autoscale.customMetric", `"1-queue" is not a valid Prometheus metric name`}}},

		// durations
		{"duration without unit", autoBase + "autoscale: {stableWindow: \"60\"}\n", []wantErr{{"autoscale.stableWindow", `must be a duration such as "30s", "5m" or "1h30m" (got "60")`}}},
		{"duration as a number", autoBase + "autoscale: {upscaleDelay: 30}\n", []wantErr{{"autoscale.upscaleDelay", "expected a string, got a number (30)"}}},
		{"stable window too short", autoBase + "autoscale: {stableWindow: 2s, panicWindow: 1s}\n", []wantErr{{"autoscale.stableWindow", "must be between 6s and 1h (got 2s)"}}},
		{"stable window too long", autoBase + "autoscale: {stableWindow: 2h}\n", []wantErr{{"autoscale.stableWindow", "must be between 6s and 1h (got 2h)"}}},
		{"panic window not shorter", autoBase + "autoscale: {stableWindow: 30s, panicWindow: 30s}\n", []wantErr{{"autoscale.panicWindow", "autoscale.panicWindow (30s) must be shorter than autoscale.stableWindow (30s)"}}},
		{"panic window longer than the default stable window", autoBase + "autoscale: {panicWindow: 90s}\n", []wantErr{{"autoscale.panicWindow", "must be shorter than autoscale.stableWindow (60s)"}}},
		{"panic window too short", autoBase + "autoscale: {panicWindow: 500ms}\n", []wantErr{{"autoscale.panicWindow", "must be between 1s and 1h (got 500ms)"}}},
		{"negative delay", autoBase + "autoscale: {upscaleDelay: -5s}\n", []wantErr{{"autoscale.upscaleDelay", "must be between 0s and 1h (got -5s)"}}},
		{"delay too long", autoBase + "autoscale: {downscaleDelay: 2h}\n", []wantErr{{"autoscale.downscaleDelay", "must be between 0s and 1h (got 2h)"}}},
		{"scaleToZeroAfter with min 1", base + "replicas: {min: 1, max: 3}\nautoscale: {scaleToZeroAfter: 10m}\n", []wantErr{{"autoscale.scaleToZeroAfter", "only applies with replicas.min 0 (replicas.min is 1); set replicas.min to 0 or remove scaleToZeroAfter"}}},
		{"scaleToZeroAfter zero", autoBase + "autoscale: {scaleToZeroAfter: 0s}\n", []wantErr{{"autoscale.scaleToZeroAfter", "must be between 1s and 24h (got 0s)"}}},
		{"scaleToZeroAfter malformed", autoBase + "autoscale: {scaleToZeroAfter: five minutes}\n", []wantErr{{"autoscale.scaleToZeroAfter", `must be a duration such as "30s"`}}},

		// schedule
		{"schedule unknown day", autoBase + "autoscale: {schedule: [{days: weekdays, from: \"09:00\", to: \"18:00\", min: 4}]}\n", []wantErr{{"autoscale.schedule[0].days", `unknown day "weekdays"; write days such as "mon-fri", "sat,sun" or "mon,wed,fri", or leave it out for every day`}}},
		{"schedule misspelt day", autoBase + "autoscale: {schedule: [{days: mon-fir, from: \"09:00\", to: \"18:00\", min: 4}]}\n", []wantErr{{"autoscale.schedule[0].days", `unknown day "fir" (did you mean "fri"?)`}}},
		{"schedule days not a string", autoBase + "autoscale: {schedule: [{days: [mon, tue], from: \"09:00\", to: \"18:00\", min: 4}]}\n", []wantErr{{"autoscale.schedule[0].days", "expected a string, got a list"}}},
		{"schedule bad from", autoBase + "autoscale: {schedule: [{from: 9am, to: \"18:00\", min: 4}]}\n", []wantErr{{"autoscale.schedule[0].from", `must be a time "HH:MM" such as "09:00" or "18:30" (got "9am")`}}},
		{"schedule from missing", autoBase + "autoscale: {schedule: [{to: \"18:00\", min: 4}]}\n", []wantErr{{"autoscale.schedule[0].from", `required: a time "HH:MM"`}}},
		{"schedule bad to", autoBase + "autoscale: {schedule: [{from: \"09:00\", to: \"25:00\", min: 4}]}\n", []wantErr{{"autoscale.schedule[0].to", `(or "24:00") (got "25:00")`}}},
		{"schedule minutes out of range", autoBase + "autoscale: {schedule: [{from: \"09:60\", to: \"10:00\", min: 4}]}\n", []wantErr{{"autoscale.schedule[0].from", `(got "09:60")`}}},
		{"schedule 24:00 as from", autoBase + "autoscale: {schedule: [{from: \"24:00\", to: \"06:00\", min: 4}]}\n", []wantErr{{"autoscale.schedule[0].from", `such as "09:00" or "18:30" (got "24:00")`}}},
		{"schedule empty window", autoBase + "autoscale: {schedule: [{from: \"00:00\", to: \"24:00\", min: 4}, {from: \"09:00\", to: \"09:00\", min: 4}]}\n", []wantErr{{"autoscale.schedule[1].to", `the window from 09:00 to 09:00 is empty; for all day write from: "00:00", to: "24:00"`}}},
		{"schedule min zero", autoBase + "autoscale: {schedule: [{from: \"09:00\", to: \"18:00\", min: 0}]}\n", []wantErr{{"autoscale.schedule[0].min", "must be >= 1 (got 0)"}}},
		{"schedule min above max", autoBase + "autoscale: {schedule: [{from: \"09:00\", to: \"18:00\", min: 11}]}\n", []wantErr{{"autoscale.schedule[0].min", "autoscale.schedule[0].min (11) must be <= replicas.max (10); lower the schedule's min or raise replicas.max"}}},
		{"schedule unknown time zone", autoBase + "autoscale: {schedule: [{from: \"09:00\", to: \"18:00\", min: 1, timezone: Mars/Olympus}]}\n", []wantErr{{"autoscale.schedule[0].timezone", `unknown time zone "Mars/Olympus"; use an IANA name such as "Europe/Paris"`}}},
		{"schedule Local time zone", autoBase + "autoscale: {schedule: [{from: \"09:00\", to: \"18:00\", min: 1, timezone: Local}]}\n", []wantErr{{"autoscale.schedule[0].timezone", `unknown time zone "Local"`}}},
		{"schedule unknown field", autoBase + "autoscale: {schedule: [{from: \"09:00\", to: \"18:00\", mim: 2}]}\n", []wantErr{
			{"autoscale.schedule[0].mim", `unknown field "mim"; did you mean "min"?`},
			{"autoscale.schedule[0].min", "must be >= 1 (got 0)"},
		}},
		{"schedule not a list", autoBase + "autoscale: {schedule: {from: \"09:00\"}}\n", []wantErr{{"autoscale.schedule", "expected a list, got an object"}}},
		{"several schedule errors", autoBase + "autoscale: {schedule: [{days: mon-fri, from: \"09:00\", to: \"18:00\", min: 2}, {days: xyz, from: \"9\", to: \"18:00\", min: 2}]}\n", []wantErr{
			{"autoscale.schedule[1].days", `unknown day "xyz"`},
			{"autoscale.schedule[1].from", `got "9"`},
		}},
		{"too many schedule rules", autoBase + "autoscale: {schedule: [" + strings.Repeat("{from: \"09:00\", to: \"18:00\", min: 1},", 65) + "]}\n", []wantErr{{"autoscale.schedule", "at most 64 rules (got 65)"}}},

		// predictive
		{"predictive season too short", autoBase + "autoscale: {predictive: {enabled: true, season: 30m}}\n", []wantErr{{"autoscale.predictive.season", "must be between 1h and 168h (got 30m)"}}},
		{"predictive horizon too long", autoBase + "autoscale: {predictive: {enabled: true, horizon: 7h}}\n", []wantErr{{"autoscale.predictive.horizon", "must be between 1m and 6h (got 7h)"}}},
		{"predictive horizon over half a season", autoBase + "autoscale: {predictive: {enabled: true, horizon: 40m, season: 1h}}\n", []wantErr{{"autoscale.predictive.horizon", "autoscale.predictive.horizon (40m) must be at most half of autoscale.predictive.season (1h)"}}},
		{"predictive with latency", autoBase + "autoscale: {metric: latencyP90, target: 400, predictive: {enabled: true}}\n", []wantErr{{"autoscale.predictive", "not available with metric latencyP90"}}},
		{"predictive enabled not a bool", autoBase + "autoscale: {predictive: {enabled: yes please}}\n", []wantErr{{"autoscale.predictive.enabled", "expected true or false"}}},

		// strictness: unknown fields keep their suggestions
		{"unknown top-level autoscaling", autoBase + "autoscaling: {metric: rps}\n", []wantErr{{"autoscaling", `unknown field "autoscaling"; did you mean "autoscale"?`}}},
		{"unknown field in autoscale", autoBase + "autoscale: {metrc: rps}\n", []wantErr{{"autoscale.metrc", `did you mean "metric"?`}}},
		{"unknown snake case field", autoBase + "autoscale: {scale_to_zero_after: 1m}\n", []wantErr{{"autoscale.scale_to_zero_after", `did you mean "scaleToZeroAfter"?`}}},
		{"unknown field in predictive", autoBase + "autoscale: {predictive: {enable: true}}\n", []wantErr{{"autoscale.predictive.enable", `did you mean "enabled"?`}}},
		{"autoscale not an object", autoBase + "autoscale: true\n", []wantErr{{"autoscale", "expected an object with fields metric, target, customMetric"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := ParseSpec([]byte(tt.input))
			if spec != nil {
				t.Errorf("a spec was returned with the error: %+v", spec)
			}
			checkErrors(t, err, tt.want)
		})
	}
}

// Validate (without ParseSpec) reports the same paths.
func TestAutoscaleValidateDirect(t *testing.T) {
	s := DeploymentSpec{Name: "web", Image: "x", Replicas: Replicas{Min: 0, Max: 3}, Autoscale: &Autoscale{
		Metric: "qps", Target: -1, StableWindow: "1m", PanicWindow: "2m",
		Schedule: []ScheduleRule{{Days: "mon", From: "08:00", To: "09:00", Min: 5}},
	}}
	s.Default()
	checkErrors(t, s.Validate(), []wantErr{
		{"autoscale.metric", `unknown metric "qps"`},
		{"autoscale.panicWindow", "must be shorter than autoscale.stableWindow (1m)"},
		{"autoscale.schedule[0].min", "must be <= replicas.max (3)"},
		{"autoscale.target", "must be > 0 (got -1)"},
	})
}

func TestAutoscaleRoundTrip(t *testing.T) {
	in := base + `
replicas: {min: 0, max: 8}
autoscale:
  metric: rps
  target: 12.5
  scaleToZeroAfter: 90s
  upscaleDelay: 15s
  schedule:
    - {days: "mon,wed-fri", from: "7:30", to: "24:00", min: 3, timezone: America/New_York}
  predictive: {enabled: false, horizon: 20m}
`
	s, err := ParseSpec([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(j), `"autoscale":{"metric":"rps","target":12.5,"scaleToZeroAfter":"90s","upscaleDelay":"15s","stableWindow":"60s","panicWindow":"6s","schedule":[{"days":"mon,wed-fri","from":"7:30","to":"24:00","min":3,"timezone":"America/New_York"}],"predictive":{"enabled":false,"horizon":"20m","season":"24h"}}`) {
		t.Errorf("JSON: %s", j)
	}
	again, err := ParseSpec(j)
	if err != nil || !reflect.DeepEqual(s, again) {
		t.Errorf("JSON round trip: %v\n %+v\n %+v", err, s, again)
	}
	y, err := yaml.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	again, err = ParseSpec(y)
	if err != nil || !reflect.DeepEqual(s, again) {
		t.Errorf("YAML round trip: %v\n%s", err, y)
	}
	var plain DeploymentSpec
	if err := json.Unmarshal(j, &plain); err != nil || !reflect.DeepEqual(s, &plain) {
		t.Errorf("json.Unmarshal differs: %v", err)
	}
	// A spec without autoscale does not grow the field.
	s2, err := ParseSpec([]byte(autoBase))
	if err != nil {
		t.Fatal(err)
	}
	if j, _ := json.Marshal(s2); strings.Contains(string(j), "autoscale") {
		t.Errorf("autoscale in %s", j)
	}
}

func TestScheduleWindowContains(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	at := func(loc *time.Location, s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	office := ScheduleRule{Days: "mon-fri", From: "09:00", To: "18:00", Min: 4, Timezone: "Europe/Paris"}
	night := ScheduleRule{Days: "fri", From: "22:00", To: "06:00", Min: 2}
	weekend := ScheduleRule{Days: "Sat-Mon", From: "00:00", To: "24:00", Min: 1}
	list := ScheduleRule{Days: "mon, wed", From: "9:00", To: "9:30", Min: 1}
	tests := []struct {
		name string
		rule ScheduleRule
		t    time.Time
		want bool
	}{
		// 2025-01-06 is a Monday.
		{"office opens", office, at(paris, "2025-01-06 09:00"), true},
		{"office before", office, at(paris, "2025-01-06 08:59"), false},
		{"office closes", office, at(paris, "2025-01-06 18:00"), false},
		{"office late", office, at(paris, "2025-01-10 17:59"), true},
		{"office saturday", office, at(paris, "2025-01-11 10:00"), false},
		{"office in UTC winter", office, at(time.UTC, "2025-01-06 08:00"), true},
		{"office in UTC winter, early", office, at(time.UTC, "2025-01-06 07:30"), false},
		{"office in UTC summer (DST)", office, at(time.UTC, "2025-07-07 07:30"), true},
		{"night friday", night, at(time.UTC, "2025-01-10 23:00"), true},
		{"night into saturday", night, at(time.UTC, "2025-01-11 05:59"), true},
		{"night saturday morning over", night, at(time.UTC, "2025-01-11 06:00"), false},
		{"night saturday evening", night, at(time.UTC, "2025-01-11 23:00"), false},
		{"night thursday", night, at(time.UTC, "2025-01-09 23:00"), false},
		{"night friday early morning", night, at(time.UTC, "2025-01-10 05:00"), false},
		{"weekend wraps to monday", weekend, at(time.UTC, "2025-01-06 12:00"), true},
		{"weekend sunday midnight", weekend, at(time.UTC, "2025-01-12 00:00"), true},
		{"weekend tuesday", weekend, at(time.UTC, "2025-01-07 12:00"), false},
		{"list wednesday", list, at(time.UTC, "2025-01-08 09:15"), true},
		{"list tuesday", list, at(time.UTC, "2025-01-07 09:15"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := tt.rule.Window()
			if err != nil {
				t.Fatal(err)
			}
			if got := w.Contains(tt.t); got != tt.want {
				t.Errorf("Contains(%s) = %v, want %v", tt.t, got, tt.want)
			}
		})
	}
	if _, err := (ScheduleRule{From: "9", To: "10:00", Min: 1}).Window(); err == nil || !strings.HasPrefix(err.Error(), "from: ") {
		t.Errorf("Window of a bad rule: %v", err)
	}
}

func TestDurationParse(t *testing.T) {
	for in, want := range map[Duration]time.Duration{"": 0, "30s": 30 * time.Second, "1h30m": 90 * time.Minute, "bad": 0} {
		if got := in.Std(); got != want {
			t.Errorf("%q.Std() = %v, want %v", in, got, want)
		}
	}
	if _, err := Duration("bad").Parse(); err == nil {
		t.Error("Parse(bad): no error")
	}
}
