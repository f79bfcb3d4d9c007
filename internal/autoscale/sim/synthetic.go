package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// SyntheticNames are the built-in synthetic traces, in report order.
var SyntheticNames = []string{"step", "spike", "diurnal"}

// syntheticStart is time zero of every synthetic trace.
var syntheticStart = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Synthetic returns the named synthetic trace. Arrivals are a Poisson
// process with a time-varying rate; token counts are log-normal (input
// median 1,000, output median 100, like a chat workload); the same seed
// gives the same trace.
//
//   - step: 1 req/s for 5 min, then 10 req/s (x10 within one second) for
//     15 min, then 1 req/s for 10 min;
//   - spike: 2 req/s for 40 min, with a 30 s burst of 20 req/s at 10 min and
//     a 60 s burst of 20 req/s at 25 min;
//   - diurnal: a day compressed into 48 min (one hour per two minutes):
//     0.5 req/s at night (04:00), rising to 8 req/s in the afternoon
//     (16:00), as a raised cosine.
func Synthetic(name string, seed uint64) (Trace, error) {
	var rate func(t float64) float64
	var span, peak float64
	switch name {
	case "step":
		span, peak = 1800, 10
		rate = func(t float64) float64 {
			if t >= 300 && t < 1200 {
				return 10
			}
			return 1
		}
	case "spike":
		span, peak = 2400, 20
		rate = func(t float64) float64 {
			if (t >= 600 && t < 630) || (t >= 1500 && t < 1560) {
				return 20
			}
			return 2
		}
	case "diurnal":
		span, peak = 48*60, 8
		rate = func(t float64) float64 {
			hour := t / 120 // 2 min of trace per hour of the day
			// Trough at 04:00, crest at 16:00.
			return 0.5 + 7.5*(1-math.Cos(2*math.Pi*(hour-4)/24))/2
		}
	default:
		return Trace{}, fmt.Errorf("no synthetic trace %q (have step, spike, diurnal)", name)
	}
	rng := rand.New(rand.NewPCG(seed, uint64(len(name))<<32|uint64(name[0])))
	tr := Trace{Name: name, Start: syntheticStart}
	// Thinning (Lewis and Shedler): candidates at the peak rate, each kept
	// with probability rate(t)/peak.
	for t := rng.ExpFloat64() / peak; t < span; t += rng.ExpFloat64() / peak {
		if rng.Float64()*peak >= rate(t) {
			continue
		}
		tr.Requests = append(tr.Requests, Request{
			At:  time.Duration(t * float64(time.Second)),
			In:  logNormal(rng, 1000, 0.8, 1, 16000),
			Out: logNormal(rng, 100, 0.9, 1, 2000),
		})
	}
	return tr, nil
}

func logNormal(rng *rand.Rand, median, sigma float64, lo, hi int) int {
	v := int(math.Round(median * math.Exp(sigma*rng.NormFloat64())))
	return min(max(v, lo), hi)
}
