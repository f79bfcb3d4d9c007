package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"
)

// SyntheticNames are the built-in synthetic traces, in report order.
var SyntheticNames = []string{"step", "spike", "diurnal", "seasonal"}

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
//   - seasonal: five working days, each compressed into one hour (2.5 min
//     of trace per hour of the day), so that the load repeats with a season
//     of 1 h, the shortest autoscale.predictive.season allows; see
//     seasonalRate. Days start on the hour (seasons are aligned to the Unix
//     epoch).
func Synthetic(name string, seed uint64) (Trace, error) {
	rng := rand.New(rand.NewPCG(seed, uint64(len(name))<<32|uint64(name[0])))
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
	case "seasonal":
		days := newSeasonalDays(rng, seasonalDays)
		span, peak = seasonalDays*seasonalDay, seasonalPeak*seasonalMaxFactor
		rate = func(t float64) float64 { return seasonalRate(days, t) }
	default:
		return Trace{}, fmt.Errorf("no synthetic trace %q (have %s)", name, strings.Join(SyntheticNames, ", "))
	}
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

// The seasonal trace: a working day's load on an internal LLM service,
// compressed so that one day is one hour of trace (2.5 min per hour of the
// day; the times below are of the day).
//
//	00:00-08:00  night: 0.5 req/s
//	08:00-09:12  the morning rise, 0.5 -> 8 req/s as a raised cosine over
//	             3 min of trace (the steepest part adds ~4 req/s per minute)
//	09:12-12:00  8 req/s
//	12:00-14:00  a lunch dip to 5.5 req/s and back (raised cosine)
//	14:00-17:00  8 req/s
//	17:00-22:00  the evening fall back to 0.5 req/s (raised cosine, 12.5 min)
//	22:00-24:00  night: 0.5 req/s
//
// Days differ: each day's daytime level is 8 req/s times a factor drawn
// uniformly from [0.9, 1.1], and its morning rise starts up to 12 minutes
// of the day (30 s of trace) earlier or later.
// Arrivals are Poisson around that rate, like the other synthetic traces.
const (
	seasonalDays      = 5
	seasonalDay       = 3600.0 // seconds of trace per day: the season
	seasonalHour      = seasonalDay / 24
	seasonalNight     = 0.5
	seasonalPeak      = 8.0
	seasonalMaxFactor = 1.1
	seasonalJitter    = 30.0 // seconds of trace
)

// seasonalDayParams is one day's draw.
type seasonalDayParams struct {
	factor float64 // daytime level / seasonalPeak
	shift  float64 // seconds of trace the morning rise starts late (< 0: early)
}

func newSeasonalDays(rng *rand.Rand, n int) []seasonalDayParams {
	days := make([]seasonalDayParams, n)
	for i := range days {
		days[i] = seasonalDayParams{
			factor: 0.9 + 0.2*rng.Float64(),
			shift:  seasonalJitter * (2*rng.Float64() - 1),
		}
	}
	return days
}

// seasonalRate is the seasonal trace's arrival rate t seconds into it.
func seasonalRate(days []seasonalDayParams, t float64) float64 {
	i := min(max(int(t/seasonalDay), 0), len(days)-1)
	d := days[i]
	h := (t - float64(i)*seasonalDay) / seasonalHour // hour of the day
	hi := seasonalPeak * d.factor
	// ease goes from 0 to 1 as x goes from 0 to 1 (raised cosine).
	ease := func(x float64) float64 {
		x = min(max(x, 0), 1)
		return (1 - math.Cos(math.Pi*x)) / 2
	}
	between := func(from, to, x float64) float64 { return from + (to-from)*ease(x) }
	rise := 8 + d.shift/seasonalHour // when the rise starts, in hours
	switch {
	case h < 12:
		return between(seasonalNight, hi, (h-rise)/1.2)
	case h < 14:
		dip := 1 - 0.3125*(1-math.Cos(2*math.Pi*(h-12)/2))/2 // 8 -> 5.5 -> 8
		return hi * dip
	case h < 17:
		return hi
	default:
		return between(hi, seasonalNight, (h-17)/5)
	}
}
