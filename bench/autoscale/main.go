// Command autoscale compares autoscaling policies in the discrete-event
// simulator (internal/autoscale/sim) on the real Azure LLM inference traces
// (testdata/, see testdata/SOURCE.md) and the synthetic step, spike,
// diurnal and seasonal traces: aloft's autoscaler, Knative KPA defaults, a
// SkyServe-style request-rate autoscaler, and a static fleet sized for the
// peak; on traces of at least two seasons (seasonal), aloft with predictive
// pre-warming too. It prints one table per trace and verdict lines: aloft
// against KPA, where better means fewer SLO violations at no more
// replica-hours. See README.md.
//
//	go run ./bench/autoscale [-o json] [-seed 1] [-policy aloft,kpa,...] [-slots 8 ...]
package main

import (
	"embed"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aloft-dev/aloft/internal/autoscale/sim"
)

//go:embed testdata/*.csv
var traces embed.FS

var realTraces = []struct{ name, file string }{
	{"azure-code", "testdata/AzureLLMInferenceTrace_code.csv"},
	{"azure-conv", "testdata/AzureLLMInferenceTrace_conv.csv"},
}

func main() {
	m := sim.DefaultModel()
	output := flag.String("o", "table", "table or json")
	seed := flag.Uint64("seed", 1, "seed of the synthetic traces")
	policies := flag.String("policy", "", "policies to compare, comma-separated: "+strings.Join(sim.Policies, ", ")+
		" (default "+strings.Join(benchPolicies, ",")+", and aloft-predictive on traces of at least two seasons)")
	doSweep := flag.Bool("sweep", false, "also run aloft with other targets and downscale delays, and aloft-predictive with other horizons (table output)")
	only := flag.String("trace", "", "run only these traces, comma-separated (azure-code, azure-conv, "+strings.Join(sim.SyntheticNames, ", ")+")")
	flag.IntVar(&m.Slots, "slots", m.Slots, "concurrent requests per replica")
	flag.Float64Var(&m.PrefillRate, "prefill-rate", m.PrefillRate, "prompt tokens per second per request")
	flag.Float64Var(&m.DecodeRate, "decode-rate", m.DecodeRate, "generated tokens per second per request")
	flag.IntVar(&m.Queue, "queue", m.Queue, "requests a replica holds waiting beyond its slots")
	flag.DurationVar(&m.ColdStart, "cold-start", m.ColdStart, "time from asking for a replica to its being ready")
	flag.DurationVar(&m.SLOSlack, "slo-slack", m.SLOSlack, "latency allowed beyond a request's service time")
	flag.Float64Var(&m.PricePerHour, "price", m.PricePerHour, "USD per replica-hour")
	flag.Float64Var(&m.Utilization, "utilization", m.Utilization, "target slot utilisation: sets the concurrency target of aloft and kpa-tuned (x slots) and sizes static and skyserve")
	flag.Parse()
	if err := run(os.Stdout, m, *output, *seed, *policies, *only, *doSweep); err != nil {
		fmt.Fprintln(os.Stderr, "bench/autoscale:", err)
		os.Exit(1)
	}
}

// benchPolicies are compared on every trace when -policy is not given.
var benchPolicies = append(append([]string{}, sim.DefaultPolicies...), "kpa-tuned")

// policiesFor is the policies run on tr: pols, or without -policy
// benchPolicies and, on a trace of at least two seasons, aloft-predictive
// after aloft (on a shorter one its forecaster never forecasts, and it
// decides as aloft does).
func policiesFor(tr sim.Trace, pols []string, explicit bool) []string {
	if explicit || tr.Span() < 2*sim.PredictiveSeason {
		return pols
	}
	out := []string{}
	for _, p := range pols {
		out = append(out, p)
		if p == "aloft" {
			out = append(out, "aloft-predictive")
		}
	}
	return out
}

func run(w io.Writer, m sim.Model, output string, seed uint64, policyList, only string, doSweep bool) error {
	if output != "table" && output != "json" {
		return fmt.Errorf("-o %q: want table or json", output)
	}
	if err := m.Validate(); err != nil {
		return err
	}
	explicit := strings.TrimSpace(policyList) != ""
	if !explicit {
		policyList = strings.Join(benchPolicies, ",")
	}
	pols, err := sim.ParsePolicies(policyList)
	if err != nil {
		return err
	}
	want := func(name string) bool {
		if only == "" {
			return true
		}
		for _, n := range strings.Split(only, ",") {
			if strings.TrimSpace(n) == name {
				return true
			}
		}
		return false
	}
	var trs []sim.Trace
	for _, rt := range realTraces {
		if !want(rt.name) {
			continue
		}
		f, err := traces.Open(rt.file)
		if err != nil {
			return err
		}
		tr, err := sim.ParseCSV(f, rt.name)
		f.Close()
		if err != nil {
			return err
		}
		trs = append(trs, tr)
	}
	for _, name := range sim.SyntheticNames {
		if !want(name) {
			continue
		}
		tr, err := sim.Synthetic(name, seed)
		if err != nil {
			return err
		}
		trs = append(trs, tr)
	}
	if len(trs) == 0 {
		return fmt.Errorf("-trace %q: no such trace", only)
	}
	began := time.Now()
	var reps []sim.TraceReport
	runs := 0
	for _, tr := range trs {
		trPols := policiesFor(tr, pols, explicit)
		runs += len(trPols)
		rep, err := sim.Compare(tr, m, trPols)
		if err != nil {
			return err
		}
		reps = append(reps, rep)
	}
	wall := time.Since(began)
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Model   sim.Model         `json:"model"`
			Seed    uint64            `json:"seed"`
			Traces  []sim.TraceReport `json:"traces"`
			WallSec float64           `json:"wallSeconds"`
		}{m, seed, reps, wall.Seconds()})
	}
	fmt.Fprintf(w, "model: %d slots/replica, service = input/%g tok/s + output/%g tok/s, queue %d/replica, cold start %s, SLO = service + %s, $%g/replica-hour\n\n",
		m.Slots, m.PrefillRate, m.DecodeRate, m.Queue, m.ColdStart, m.SLOSlack, m.PricePerHour)
	if err := sim.WriteTable(w, reps); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nverdicts (better = fewer SLO violations at no more replica-hours):\n")
	for _, rep := range reps {
		for _, v := range rep.Verdicts {
			fmt.Fprintf(w, "  %-10s %s\n", rep.Trace, v)
		}
	}
	fmt.Fprintf(w, "\n%d traces, %d runs in %s\n", len(reps), runs, wall.Round(time.Millisecond))
	if doSweep {
		return sweep(w, m, trs)
	}
	return nil
}

// sweep runs aloft with other targets and downscale delays over every trace
// and prints violations and replica-hours per configuration: the trade-off
// the configuration in sim.AloftConfig was chosen from.
func sweep(w io.Writer, m sim.Model, trs []sim.Trace) error {
	type variant struct {
		util float64
		dd   time.Duration
	}
	var vs []variant
	for _, u := range []float64{0.5, 0.7, 1.0} {
		for _, dd := range []time.Duration{0, 2 * time.Minute, 5 * time.Minute} {
			vs = append(vs, variant{u, dd})
		}
	}
	fmt.Fprintf(w, "\naloft configurations: metric concurrency, target = FACTOR x %d slots, downscaleDelay; violations %% / replica-hours\n", m.Slots)
	t := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(t, "TARGET\tDOWNSCALE-DELAY\t")
	for _, tr := range trs {
		fmt.Fprintf(t, "%s\t", tr.Name)
	}
	fmt.Fprintln(t)
	for _, v := range vs {
		cfg := sim.AloftConfig(m)
		cfg.Target = v.util * float64(m.Slots)
		cfg.DownscaleDelay = v.dd
		fmt.Fprintf(t, "%.1f (%.1fx)\t%s\t", cfg.Target, v.util, v.dd)
		for _, tr := range trs {
			r, err := sim.Run(tr, m, sim.NewAloft("aloft", cfg))
			if err != nil {
				return err
			}
			fmt.Fprintf(t, "%.1f%% / %.2fh\t", r.ViolationPct, r.ReplicaHours)
		}
		fmt.Fprintln(t)
	}
	if err := t.Flush(); err != nil {
		return err
	}
	return sweepPredictive(w, m, trs)
}

// sweepPredictive runs aloft-predictive with other horizons over the traces
// of at least two seasons, next to aloft.
func sweepPredictive(w io.Writer, m sim.Model, trs []sim.Trace) error {
	var long []sim.Trace
	for _, tr := range trs {
		if tr.Span() >= 2*sim.PredictiveSeason {
			long = append(long, tr)
		}
	}
	if len(long) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\naloft-predictive horizons (season %s): violations / replica-hours / cold starts\n", sim.PredictiveSeason)
	t := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(t, "HORIZON\t")
	for _, tr := range long {
		fmt.Fprintf(t, "%s\t", tr.Name)
	}
	fmt.Fprintln(t)
	for _, h := range []time.Duration{0, time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute} {
		cfg, name := sim.AloftConfig(m), "off (aloft)"
		if h > 0 {
			cfg, name = sim.AloftPredictiveConfig(m, sim.PredictiveSeason, h), h.String()
		}
		fmt.Fprintf(t, "%s\t", name)
		for _, tr := range long {
			r, err := sim.Run(tr, m, sim.NewAloft("aloft-predictive", cfg))
			if err != nil {
				return err
			}
			fmt.Fprintf(t, "%d / %.2fh / %d\t", r.Violations, r.ReplicaHours, r.ColdStarts)
		}
		fmt.Fprintln(t)
	}
	return t.Flush()
}
