package main

import (
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/aloft-dev/aloft/internal/autoscale/sim"
)

// simReport is what `aloft sim -o json|yaml` prints.
type simReport struct {
	Model  sim.Model         `json:"model"`
	Traces []sim.TraceReport `json:"traces"`
}

func newSimCmd(g *globals) *cobra.Command {
	m := sim.DefaultModel()
	var (
		traces    []string
		synthetic string
		seed      uint64
		policies  string
	)
	cmd := &cobra.Command{
		Use:   "sim --trace FILE.csv [--policy aloft|aloft-predictive|kpa|kpa-tuned|skyserve|static]",
		Short: "Simulate autoscaling policies over a request trace (offline; no server needed)",
		Long: `Replays a request trace in a discrete-event simulator against a model of
replicas and reports, per policy, the requests that missed the SLO, latency,
replica-hours and cost. Runs in simulated time: an hour of trace takes
well under a second, and the same input always gives the same table.

Trace: CSV, one request per row: arrival timestamp, input tokens, output
tokens (the Azure LLM inference trace format, with or without its header
TIMESTAMP,ContextTokens,GeneratedTokens). A timestamp is
"2006-01-02 15:04:05.9999999", RFC 3339, or seconds. Or built-in synthetic
traces with --synthetic step,spike,diurnal,seasonal (seasonal: five
working days, each compressed into one hour, for the forecaster).

Replica model: an LLM server serving --slots requests at once (continuous
batching); a request holds a slot for
  service = input tokens / --prefill-rate + output tokens / --decode-rate
and waits in the replica's queue (--queue) when every slot is busy; beyond
that it is dropped. A new replica is billed at once and ready after
--cold-start. The gateway sends each request to the ready replica with the
fewest requests; with no replica ready, requests wait in its activation
queue (--activation-queue, at most --activation-timeout) and are forwarded
when one is - that is scale-from-zero. A replica being removed finishes its
requests first.

SLO: a request violates it if it is dropped or its latency exceeds its
service time plus --slo-slack. Cost = replica-hours (cold starts included)
x --price.

Policies (default: aloft, kpa, skyserve, static):
  aloft      aloft's autoscaler (internal/autoscale): metric concurrency,
             target 0.7 x slots per replica, downscaleDelay 1m, its
             defaults otherwise (with the backlog rule)
  aloft-predictive
             aloft plus predictive pre-warming (Holt-Winters, season 1h,
             horizon 2m); needs a trace of at least two seasons
  kpa        Knative Pod Autoscaler with Knative's defaults (target 70
             concurrent requests per pod, 60s/6s windows, 2s tick,
             scale to zero after 30s grace)
  skyserve   SkyServe's request-rate autoscaler: QPS over 60s / target QPS
             per replica (0.7 x slots / mean service time), 300s upscale and
             1200s downscale delays, min 1 replica
  static     a fleet sized for the trace's busiest minute, always on
  kpa-tuned  the KPA with its target set to 0.7 x slots`,
		Example: `  aloft sim --trace AzureLLMInferenceTrace_conv.csv
  aloft sim --trace mytrace.csv --policy aloft,kpa --slots 16 --cold-start 90s -o json
  aloft sim --synthetic step,spike,diurnal --seed 7`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			if len(traces) == 0 && synthetic == "" {
				return &usageError{"sim needs --trace FILE.csv or --synthetic step,spike,diurnal,seasonal\nusage: " + cmd.UseLine()}
			}
			pols, err := sim.ParsePolicies(policies)
			if err != nil {
				return &usageError{"--policy: " + err.Error()}
			}
			if err := m.Validate(); err != nil {
				return &usageError{err.Error()}
			}
			var trs []sim.Trace
			for _, f := range traces {
				tr, err := sim.LoadCSV(f)
				if err != nil {
					return &exitErr{exitError, err}
				}
				trs = append(trs, tr)
			}
			if synthetic != "" {
				for _, name := range strings.Split(synthetic, ",") {
					tr, err := sim.Synthetic(strings.TrimSpace(name), seed)
					if err != nil {
						return &usageError{"--synthetic: " + err.Error()}
					}
					trs = append(trs, tr)
				}
			}
			rep := simReport{Model: m}
			for _, tr := range trs {
				r, err := sim.Compare(tr, m, pols)
				if err != nil {
					return &exitErr{exitError, err}
				}
				rep.Traces = append(rep.Traces, r)
			}
			return printOut(cmd.OutOrStdout(), g.output, rep, func(w io.Writer) error { return sim.WriteTable(w, rep.Traces) })
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&traces, "trace", nil, "trace CSV file (repeatable)")
	f.StringVar(&synthetic, "synthetic", "", "built-in synthetic traces, comma-separated: "+strings.Join(sim.SyntheticNames, ", "))
	f.Uint64Var(&seed, "seed", 1, "seed of the synthetic traces")
	f.StringVar(&policies, "policy", "", "policies to compare, comma-separated: "+strings.Join(sim.Policies, ", ")+" (default "+strings.Join(sim.DefaultPolicies, ",")+")")
	f.IntVar(&m.Slots, "slots", m.Slots, "requests a replica serves at once")
	f.Float64Var(&m.PrefillRate, "prefill-rate", m.PrefillRate, "input (prompt) tokens per second, per request")
	f.Float64Var(&m.DecodeRate, "decode-rate", m.DecodeRate, "output tokens per second, per request")
	f.IntVar(&m.Queue, "queue", m.Queue, "requests a replica holds waiting beyond its slots; more are dropped")
	f.DurationVar(&m.ColdStart, "cold-start", m.ColdStart, "time from asking for a replica to its being ready")
	f.IntVar(&m.ActivationQueue, "activation-queue", m.ActivationQueue, "requests the gateway holds while no replica is ready")
	f.DurationVar(&m.ActivationTimeout, "activation-timeout", m.ActivationTimeout, "longest a request waits in the activation queue before it is dropped")
	f.DurationVar(&m.SLOSlack, "slo-slack", m.SLOSlack, "latency allowed beyond a request's own service time")
	f.Float64Var(&m.PricePerHour, "price", m.PricePerHour, "USD per replica-hour")
	f.IntVar(&m.MaxReplicas, "max-replicas", m.MaxReplicas, "most replicas any policy may run")
	f.Float64Var(&m.Utilization, "utilization", m.Utilization, "target slot utilisation: sets the concurrency target of aloft and kpa-tuned (x slots) and sizes static and skyserve")
	_ = cmd.MarkFlagFilename("trace", "csv")
	_ = cmd.RegisterFlagCompletionFunc("policy", cobra.FixedCompletions(sim.Policies, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}
