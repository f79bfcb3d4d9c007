package sim

import (
	"math"
	"strings"
	"testing"
	"time"
)

// recorder wraps a policy and logs its decisions.
type recorder struct {
	Policy
	log []decision
}

func (r *recorder) Decide(v View) int {
	want := r.Policy.Decide(v)
	r.log = append(r.log, decision{at: v.Now.Sub(v.Start), poke: v.Poke, want: want, view: v})
	return want
}

// firstAfter is the first decision at or after from whose count differs
// from was.
func firstChange(log []decision, from time.Duration, was int) (decision, bool) {
	for _, d := range log {
		if d.at >= from && d.want != was {
			return d, true
		}
	}
	return decision{}, false
}

// steady is rate requests per second of service time svc (prefill only
// under the default model) from `from` to `to`.
func steady(rate float64, svc time.Duration, from, to time.Duration) []Request {
	var out []Request
	in := int(svc.Seconds() * DefaultModel().PrefillRate)
	step := time.Duration(float64(time.Second) / rate)
	for t := from; t < to; t += step {
		out = append(out, Request{At: t, In: in})
	}
	return out
}

func TestSkyServeDelays(t *testing.T) {
	m := DefaultModel()
	// 30 req/s of 1 s requests for 10 min: target QPS per replica is
	// 0.7 x 8 / 1 s = 5.6, so ceil(30/5.6) = 6 replicas once the window is full.
	reqs := append(steady(30, time.Second, 0, 600*time.Second), Request{At: 2000 * time.Second, In: 2000})
	tr := trace(reqs...)
	rec := &recorder{Policy: newSkyServe(tr, m)}
	r := run(t, tr, m, rec)
	if rec.Interval() != 20*time.Second || rec.log[0].at != 20*time.Second {
		t.Errorf("decision interval %s, first decision at %s; want 20s", rec.Interval(), rec.log[0].at)
	}
	// Above target from the first decision (20 s: 600 requests / 60 s =
	// 10 qps → 2): the 15th consecutive decision, at 300 s, scales up.
	up, ok := firstChange(rec.log, 0, 1)
	if !ok || up.at != 300*time.Second || up.want != 6 {
		t.Fatalf("first scale-up %+v, want to 6 at 300s", up)
	}
	// Below target from 620 s (window (560 s, 620 s]: 20 qps → 4): the 60th
	// consecutive decision, at 1,800 s, scales down, to the value then (1).
	down, ok := firstChange(rec.log, up.at, 6)
	if !ok || down.at != 1800*time.Second || down.want != 1 {
		t.Fatalf("first scale-down %+v, want to 1 at 1800s", down)
	}
	if r.MaxReplicas != 6 || r.ColdStarts != 5 {
		t.Errorf("max replicas %d cold starts %d", r.MaxReplicas, r.ColdStarts)
	}
}

func TestSkyServeFromZeroIsImmediate(t *testing.T) {
	s := &skyServe{targetQPS: 1, min: 0, max: 10, upPeriods: 15, downPers: 60}
	if s.Interval() != 5*time.Second {
		t.Errorf("interval at zero %s, want 5s", s.Interval())
	}
	start := time.Unix(0, 0)
	h := []Sample{{At: start.Add(time.Second), Arrivals: 180}}
	if got := s.Decide(View{Now: start.Add(5 * time.Second), Start: start, History: h}); got != 3 {
		t.Errorf("from zero: %d, want 3 at once", got)
	}
	if got := s.Decide(View{Poke: true, Now: start.Add(6 * time.Second), Start: start}); got != 3 {
		t.Errorf("a poke changed the target to %d", got)
	}
}

func kpaView(start time.Time, at time.Duration, ready int, conc []float64) View {
	v := View{Now: start.Add(at), Start: start, Ready: ready, Replicas: ready}
	for i, c := range conc {
		v.History = append(v.History, Sample{At: start.Add(at - time.Duration(len(conc)-1-i)*time.Second), Concurrency: c})
	}
	return v
}

func TestKPAPanicsAndHolds(t *testing.T) {
	m := DefaultModel()
	k := newKPA(m, kpaDefaultTarget)
	start := time.Unix(1000, 0)
	conc := make([]float64, 60)
	// Quiet: 50 in flight for a minute: ceil(50/70) = 1.
	for i := range conc {
		conc[i] = 50
	}
	if got := k.Decide(kpaView(start, 60*time.Second, 1, conc)); got != 1 {
		t.Fatalf("stable at 50 in flight: %d, want 1", got)
	}
	// A burst: the last 6 s at 280 → panic value 280, ceil(280/70) = 4 ≥
	// 2 x 1 ready: panic, 4 pods (the stable value, 72.3, wants 2).
	for i := 54; i < 60; i++ {
		conc[i] = 280
	}
	if got := k.Decide(kpaView(start, 62*time.Second, 1, conc)); got != 4 || k.panicSince == kpaNotPanicking {
		t.Fatalf("burst: %d (panicking %v), want 4 in panic", got, k.panicSince != kpaNotPanicking)
	}
	// The burst is over, but no scaling down while panicking ...
	quiet := make([]float64, 60)
	if got := k.Decide(kpaView(start, 100*time.Second, 4, quiet)); got != 4 {
		t.Errorf("in panic: %d, want 4 held", got)
	}
	// ... until a whole stable window without the panic condition: then
	// the stable value (0) with the scale-down rate (4/2 = 2).
	if got := k.Decide(kpaView(start, 123*time.Second, 4, quiet)); got != 2 || k.panicSince != kpaNotPanicking {
		t.Errorf("after panic: %d, want 2 (max scale-down rate 2)", got)
	}
}

func TestKPAScaleToZeroAndBack(t *testing.T) {
	m := DefaultModel()
	// One 1 s request at 0.5 s, one at 500 s.
	tr := trace(Request{At: 500 * time.Millisecond, In: 2000}, Request{At: 500 * time.Second, In: 2000})
	rec := &recorder{Policy: newKPA(m, kpaDefaultTarget)}
	r := run(t, tr, m, rec)
	// The last non-zero sample is at 2 s; the stable window is empty of
	// traffic from 62 s (desired 0: inactive, one pod kept), and the grace
	// period of 30 s ends at 92 s.
	zero, ok := firstChange(rec.log, 0, 1)
	if !ok || zero.at != 92*time.Second || zero.want != 0 {
		t.Fatalf("scale to zero %+v, want at 92s", zero)
	}
	// The request at 500 s pokes the autoscaler: one pod at once; it waits
	// for the cold start.
	back, ok := firstChange(rec.log, zero.at, 0)
	if !ok || !back.poke || back.at != 500*time.Second || back.want != 1 {
		t.Fatalf("scale from zero %+v, want a poke at 500s", back)
	}
	if !near(r.P99, 31) || r.Violations != 1 || r.ColdStarts != 1 {
		t.Errorf("p99 %v violations %d cold starts %d, want 31 s, 1, 1", r.P99, r.Violations, r.ColdStarts)
	}
}

func TestKPADefaultTargetIsTooHighForSlots(t *testing.T) {
	m := DefaultModel()
	// 60 requests in flight on one replica of 8 slots: the KPA default
	// (70 per pod) keeps one pod; tuned (5.6 per pod) wants 11.
	conc := make([]float64, 60)
	for i := range conc {
		conc[i] = 60
	}
	start := time.Unix(0, 0)
	if got := newKPA(m, kpaDefaultTarget).Decide(kpaView(start, 60*time.Second, 1, conc)); got != 1 {
		t.Errorf("kpa: %d, want 1", got)
	}
	if got := newKPATuned(m).Decide(kpaView(start, 60*time.Second, 1, conc)); got != 11 {
		t.Errorf("kpa-tuned: %d, want 11", got)
	}
}

func TestStaticSizesForThePeak(t *testing.T) {
	m := DefaultModel()
	// Peak minute: 20 req/s of 2 s requests = 40 busy slots; / (0.7 x 8) → 8.
	tr := trace(append(steady(1, 2*time.Second, 0, 300*time.Second), steady(20, 2*time.Second, 300*time.Second, 400*time.Second)...)...)
	p, err := NewPolicy("static", tr, m)
	if err != nil {
		t.Fatal(err)
	}
	if p.Initial() != 8 || p.Decide(View{}) != 8 {
		t.Errorf("static: %d, want 8", p.Initial())
	}
	r := run(t, tr, m, p)
	if r.Violations != 0 || r.ColdStarts != 0 || !near(r.MeanReplicas, 8) {
		t.Errorf("static: %+v", r)
	}
}

func TestAloftPolicy(t *testing.T) {
	m := DefaultModel()
	c := AloftConfig(m)
	if c.Metric != "concurrency" || c.Target != 5.6 || c.Min != 0 || c.Max != m.MaxReplicas || c.StableWindow != time.Minute {
		t.Errorf("config %+v", c)
	}
	// 10 req/s of 2 s requests: 20 in flight → ceil(20/5.6) = 4 replicas.
	tr := trace(steady(10, 2*time.Second, 0, 600*time.Second)...)
	rec := &recorder{Policy: newAloft(tr, m)}
	r := run(t, tr, m, rec)
	last := rec.log[len(rec.log)-1]
	if last.want != 4 {
		t.Errorf("steady 20 in flight: %d replicas, want 4", last.want)
	}
	// Only the first cold start (one replica for 20 in flight) hurts.
	if r.Violations > len(tr.Requests)/10 {
		t.Errorf("violations %d of %d", r.Violations, len(tr.Requests))
	}
	a := rec.Policy.(*aloft)
	if !strings.Contains(a.last.Reason, "target 5.6 per replica") {
		t.Errorf("last reason %q", a.last.Reason)
	}

	// From zero: the poke brings one replica at once.
	z := NewAloft("z", c).(*aloft)
	z.initial = 0
	rec = &recorder{Policy: z}
	run(t, trace(Request{At: 10 * time.Second, In: 2000}), m, rec)
	back, ok := firstChange(rec.log, 0, 0)
	if !ok || !back.poke || back.at != 10*time.Second || back.want != 1 {
		t.Errorf("from zero: %+v, want a poke at 10s to 1", back)
	}
	z = NewAloft("z", c).(*aloft)
	// The poke carries the request the gateway holds as a sample at Now.
	if got := z.Decide(back.view); got != 1 || z.last.StableValue == 0 {
		t.Errorf("poke: %d, stable value %v; want 1 from a non-zero sample", got, z.last.StableValue)
	}
}

func TestNewPolicy(t *testing.T) {
	m := DefaultModel()
	tr := trace(Request{In: 1})
	for _, name := range Policies {
		p, err := NewPolicy(name, tr, m)
		if err != nil || p.Name() != name {
			t.Errorf("%s: %v, %v", name, p, err)
		}
	}
	if _, err := NewPolicy("hpa", tr, m); err == nil || !strings.Contains(err.Error(), "have aloft, kpa") {
		t.Errorf("unknown policy: %v", err)
	}
	got, err := ParsePolicies(" kpa,static,kpa")
	if err != nil || strings.Join(got, ",") != "kpa,static" {
		t.Errorf("ParsePolicies: %v %v", got, err)
	}
	if got, _ := ParsePolicies(""); strings.Join(got, ",") != "aloft,kpa,skyserve,static" {
		t.Errorf("default policies %v", got)
	}
	if _, err := ParsePolicies("kpa,knative"); err == nil {
		t.Error("unknown policy accepted")
	}
}

func TestWindow(t *testing.T) {
	start := time.Unix(0, 0)
	var h []Sample
	for i := 1; i <= 10; i++ {
		h = append(h, Sample{At: start.Add(time.Duration(i) * time.Second), Concurrency: float64(i)})
	}
	w := window(h, start.Add(10*time.Second), 3*time.Second)
	if len(w) != 3 || w[0].Concurrency != 8 {
		t.Errorf("(7s, 10s]: %+v", w)
	}
	if w := window(h, start.Add(5*time.Second), time.Minute); len(w) != 5 {
		t.Errorf("(-55s, 5s]: %d samples", len(w))
	}
	if avg := windowAverage(h, start.Add(10*time.Second), 4*time.Second); math.Abs(avg-8.5) > 1e-9 {
		t.Errorf("average %v", avg)
	}
}

func TestCompareAndTable(t *testing.T) {
	tr, _ := Synthetic("step", 1)
	rep, err := Compare(tr, DefaultModel(), Policies)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != len(Policies) || len(rep.Verdicts) != 4 || rep.Verdicts[0].Baseline != "kpa" || rep.Verdicts[1].Baseline != "kpa-tuned" ||
		rep.Verdicts[0].Policy != "aloft" || rep.Verdicts[2].Policy != "aloft-predictive" || rep.Verdicts[3].Baseline != "kpa-tuned" {
		t.Fatalf("%+v", rep)
	}
	var b strings.Builder
	if err := WriteTable(&b, []TraceReport{rep}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"trace step: ", "POLICY", "VIOLATIONS", "REPLICA-HOURS", "aloft vs kpa: violations ", "aloft-predictive vs kpa-tuned: violations "} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	v := NewVerdict(Result{Violations: 1, ReplicaHours: 2.004}, Result{Policy: "kpa", Violations: 2, ReplicaHours: 2})
	if !v.Better || !strings.HasSuffix(v.String(), ": better") {
		t.Errorf("%v", v)
	}
	v = NewVerdict(Result{Violations: 1, ReplicaHours: 2.01}, Result{Policy: "kpa", Violations: 2, ReplicaHours: 2})
	if v.Better {
		t.Errorf("%v", v)
	}
}

func TestSpeed(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("timing")
	}
	tr, err := LoadCSV("../../../bench/autoscale/testdata/AzureLLMInferenceTrace_conv.csv")
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if _, err := Compare(tr, DefaultModel(), DefaultPolicies); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d > 3*time.Second {
		t.Errorf("an hour of trace x 4 policies took %s", d)
	}
}
