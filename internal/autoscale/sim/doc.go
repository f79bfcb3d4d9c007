// Package sim is a discrete-event simulator of autoscaling policies over
// request traces. It replays a trace of requests (arrival time, input
// tokens, output tokens) against a model of replicas and a gateway, lets a
// policy choose the number of replicas once per tick from the metric history
// the gateway would see, and reports SLO-violating requests, latency,
// replica-hours and cost. Everything runs in simulated time: a one-hour
// trace takes milliseconds and the same inputs always give the same result.
//
// # Replica model
//
// A replica is an LLM server with continuous batching, modelled as Slots
// concurrent request slots (default 8). A request occupies one slot for its
// service time
//
//	service = ContextTokens / PrefillRate + GeneratedTokens / DecodeRate
//
// (defaults 2,000 prompt tokens/s of prefill and 40 generated tokens/s per
// request), independent of how many other slots are busy. A request that
// finds every slot busy waits in the replica's FIFO queue, which holds at
// most Queue requests (default 120, so a replica holds at most 128 requests,
// like TGI's --max-concurrent-requests default); beyond that the replica
// rejects it and the request is dropped.
//
// A new replica is billed from the moment it is asked for and becomes ready
// ColdStart later (default 30 s: a GPU node, image and model weights). A
// replica chosen for removal stops taking requests, finishes the ones it
// holds, then stops; a replica still starting is cancelled at once. Replicas
// starting are removed before ready ones, and among ready ones the least
// loaded goes first.
//
// # Gateway model
//
// The gateway routes each request to the ready replica with the fewest
// requests (in service plus queued; ties to the oldest replica); when every
// ready replica is full the request is dropped. When no replica is ready,
// requests wait in the gateway's activation queue (bounded by
// ActivationQueue, default 1,000; each waits at most ActivationTimeout,
// default 60 s, then is dropped), as internal/gateway's activation does:
// this is how scale-from-zero is served. When a replica becomes ready, every
// waiting request is forwarded at once, in arrival order, by the same rule
// (so those beyond the ready replicas' slots and queues are dropped). The
// policy is woken at once ("poked", as Knative's activator does) when a
// request arrives and no replica is running or starting.
//
// # Metrics
//
// The gateway keeps one sample per second: the time-weighted average number
// of requests in flight during that second (queued at the gateway or a
// replica, or in service), the number of arrivals, and the replica counts.
// Policies see that history and decide on their own tick.
//
// # SLO and cost
//
// A request violates the SLO if it is dropped or if its latency (arrival to
// completion) exceeds its own service time plus SLOSlack (default 2 s), that
// is, if it waited more than SLOSlack before a slot started serving it.
// Latency percentiles are over the requests served. Replica-hours count
// every replica from the moment it was asked for (cold start included) until
// it stops or the run ends (when the last request is served or dropped);
// cost is replica-hours times PricePerHour (default $2).
//
// # Policies
//
//   - aloft: aloft's autoscaler (package internal/autoscale) with the
//     configuration in policy_aloft.go;
//   - kpa: the Knative Pod Autoscaler with Knative's documented defaults;
//   - skyserve: SkyServe's request-rate autoscaler (60 s QPS window, 300 s
//     upscale and 1,200 s downscale delays);
//   - static: a fleet sized for the trace's peak minute, always on;
//   - kpa-tuned (only on request): the KPA with its target set from the
//     replica model instead of the default;
//   - aloft-predictive (only on request; bench/autoscale runs it on traces
//     of two seasons or more): aloft with predictive pre-warming on (predictive: {enabled: true, season: 1h, horizon: 2m}; see
//     policy_predictive.go). Its forecaster needs a whole season of history
//     before it forecasts anything, so on a trace shorter than a season it
//     decides exactly as aloft does.
//
// See each policy's file for the exact algorithm and its sources.
//
// # Synthetic traces
//
// Synthetic generates seeded traces: Poisson arrivals at a time-varying
// rate, log-normal token counts like a chat workload (input median 1,000,
// output median 100). step (1 -> 10 req/s within a second), spike (2 req/s
// with 20 req/s bursts of 30 s and 60 s) and diurnal (a day in 48 min, 0.5
// to 8 req/s as a raised cosine) last under an hour. seasonal is five
// working days, each compressed into one hour, the shortest season
// autoscale.predictive allows, so that the forecaster has four days to
// pre-warm after learning the first: 0.5 req/s at night, a morning rise to
// 8 req/s over 3 minutes of trace (72 minutes of the day) that a reactive
// policy with 30 s cold starts meets late, a lunch dip, and an evening
// fall; each day's daytime level varies by +-10 % and its morning by +-30 s
// of trace (+-12 minutes of the day). See Synthetic and seasonalRate.
package sim
