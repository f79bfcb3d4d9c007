package sim

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"
)

// TraceReport is every policy's run over one trace.
type TraceReport struct {
	Trace   string   `json:"trace"`
	Stats   Stats    `json:"stats"`
	Results []Result `json:"results"`
	// Verdicts compare aloft, then aloft-predictive, with kpa and with
	// kpa-tuned, when they ran.
	Verdicts []Verdict `json:"verdicts,omitempty"`
}

// Verdict compares aloft (or aloft-predictive) with a baseline on one
// trace. Better means fewer SLO violations at no more replica-hours
// (compared at the 0.01 printed).
type Verdict struct {
	Policy               string  `json:"policy"` // aloft or aloft-predictive
	Baseline             string  `json:"baseline"`
	Violations           int     `json:"violations"`
	BaselineViolations   int     `json:"baselineViolations"`
	ReplicaHours         float64 `json:"replicaHours"`
	BaselineReplicaHours float64 `json:"baselineReplicaHours"`
	Better               bool    `json:"better"`
}

func (v Verdict) String() string {
	word := "worse"
	if v.Better {
		word = "better"
	}
	pol := v.Policy
	if pol == "" {
		pol = "aloft"
	}
	return fmt.Sprintf("%s vs %s: violations %d vs %d, replica-hours %.2f vs %.2f: %s",
		pol, v.Baseline, v.Violations, v.BaselineViolations, v.ReplicaHours, v.BaselineReplicaHours, word)
}

// Compare runs each named policy over tr under m.
func Compare(tr Trace, m Model, policies []string) (TraceReport, error) {
	if err := m.Validate(); err != nil {
		return TraceReport{}, err
	}
	rep := TraceReport{Trace: tr.Name, Stats: tr.Stats(m)}
	for _, name := range policies {
		p, err := NewPolicy(name, tr, m)
		if err != nil {
			return TraceReport{}, err
		}
		res, err := Run(tr, m, p)
		if err != nil {
			return TraceReport{}, fmt.Errorf("%s, %s: %w", tr.Name, name, err)
		}
		rep.Results = append(rep.Results, res)
	}
	find := func(name string) int {
		return slices.IndexFunc(rep.Results, func(r Result) bool { return r.Policy == name })
	}
	for _, pol := range []string{"aloft", "aloft-predictive"} {
		a := find(pol)
		if a < 0 {
			continue
		}
		for _, base := range []string{"kpa", "kpa-tuned"} {
			if b := find(base); b >= 0 {
				rep.Verdicts = append(rep.Verdicts, NewVerdict(rep.Results[a], rep.Results[b]))
			}
		}
	}
	return rep, nil
}

// NewVerdict compares a run of aloft (or aloft-predictive) with a run of a
// baseline.
func NewVerdict(aloft, base Result) Verdict {
	return Verdict{
		Policy:     aloft.Policy,
		Baseline:   base.Policy,
		Violations: aloft.Violations, BaselineViolations: base.Violations,
		ReplicaHours: aloft.ReplicaHours, BaselineReplicaHours: base.ReplicaHours,
		Better: aloft.Violations < base.Violations && round2(aloft.ReplicaHours) <= round2(base.ReplicaHours),
	}
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

// WriteTable prints one table per trace, and the verdict under it.
func WriteTable(w io.Writer, reps []TraceReport) error {
	for i, rep := range reps {
		if i > 0 {
			fmt.Fprintln(w)
		}
		s := rep.Stats
		fmt.Fprintf(w, "trace %s: %d requests over %s, mean %.2f req/s, peak minute %d requests, mean service %.2fs, peak load %.1f slots\n",
			rep.Trace, s.Requests, s.Span.Round(time.Second), s.MeanRate, s.PeakMinute, s.MeanService.Seconds(), s.PeakLoad)
		t := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(t, "POLICY\tREQUESTS\tVIOLATIONS\tVIOL%\tDROPPED\tP50\tP99\tREPLICA-HOURS\tCOST\tMEAN-REPLICAS\tMAX-REPLICAS\tCOLD-STARTS\t")
		for _, r := range rep.Results {
			fmt.Fprintf(t, "%s\t%d\t%d\t%.2f%%\t%d\t%s\t%s\t%.2f\t$%.2f\t%.2f\t%d\t%d\t\n",
				r.Policy, r.Requests, r.Violations, r.ViolationPct, r.Dropped, secs(r.P50, r.Served), secs(r.P99, r.Served),
				r.ReplicaHours, r.Cost, r.MeanReplicas, r.MaxReplicas, r.ColdStarts)
		}
		if err := t.Flush(); err != nil {
			return err
		}
		for _, v := range rep.Verdicts {
			fmt.Fprintln(w, v)
		}
	}
	return nil
}

func secs(f float64, served int) string {
	if served == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fs", f)
}
