package autoscale

import (
	"math"
	"slices"
	"time"
)

// Forecast is the predictive forecaster's state: additive Holt-Winters over
// bucket means of the metric. Buckets are Predictive.Bucket long and aligned
// to the Unix epoch; SeasonBuckets of them make a season. The first season
// only records bucket means; at its end the level is their mean and the
// seasonal terms their differences from it. From then on every closed
// bucket updates the level and its seasonal term; a bucket without samples
// only advances the level by the trend, and a gap longer than a season
// starts over.
//
// The trend is the level's growth per bucket measured season over season:
// once a season has passed since the last measurement, the level's change
// over it, per bucket, is smoothed into Trend with Beta. Classic
// Holt-Winters re-estimates the trend at every bucket, and here that
// extrapolates noise: the level follows each deviation from the seasonal
// profile within a couple of buckets (Alpha), so when a recurring rise
// comes a few buckets late the per-bucket trend learns the level's fall
// while it is due and its jump when it comes, and the forecast, which
// projects the trend over the whole horizon, first withdrew the pre-warmed
// replicas just before the rise and then overshot it (to three times the
// replicas it needed, in the simulator's seasonal trace with a 5 min
// horizon). Growth from season to season is the trend a horizon of at most
// half a season can use.
type Forecast struct {
	// Bucket is the bucket width the state was built with; a different
	// width (a changed season) starts over.
	Bucket time.Duration `json:"bucket,omitempty"`
	// Start is the index of the first bucket seen, Open the index of the
	// bucket being filled (index = UnixNano / Bucket), Sum and N its samples.
	Start int64   `json:"start,omitempty"`
	Open  int64   `json:"open,omitempty"`
	Sum   float64 `json:"sum,omitempty"`
	N     int     `json:"n,omitempty"`
	// Fed is the newest sample read; older ones are skipped.
	Fed time.Time `json:"fed,omitzero"`
	// Season holds SeasonBuckets seasonal terms by bucket index mod
	// SeasonBuckets (until Trained: raw bucket means, -1 if empty). The
	// State marshals to JSON, so the controller may persist it.
	Season  []float64 `json:"season,omitempty"`
	Level   float64   `json:"level,omitempty"`
	Trend   float64   `json:"trend,omitempty"`
	Trained bool      `json:"trained,omitempty"`
	// Base is the level at the close of bucket BaseAt, when the trend was
	// last measured (at training, then once a season); BaseAt 0: not yet.
	Base   float64 `json:"base,omitempty"`
	BaseAt int64   `json:"baseAt,omitempty"`
}

// noData marks an empty bucket of the first season (bucket means are >= 0:
// observe counts negative, NaN and infinite values as 0).
const noData = -1

func (f *Forecast) index(t time.Time, bucket time.Duration) int64 {
	return floorDiv(t.UnixNano(), int64(bucket))
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func pos(i int64) int {
	p := i % SeasonBuckets
	if p < 0 {
		p += SeasonBuckets
	}
	return int(p)
}

// observe feeds the samples newer than f.Fed (and not after now) and
// returns the new state. It copies Season before its first write.
func (f Forecast) observe(window []Sample, now time.Time, p *Predictive) Forecast {
	if p.Bucket <= 0 {
		return f
	}
	if f.Bucket != p.Bucket {
		f = Forecast{Bucket: p.Bucket}
	}
	owned := false
	for i := range window {
		s := &window[i]
		if !s.At.After(f.Fed) || s.At.After(now) {
			continue
		}
		f.Fed = s.At
		b := f.index(s.At, p.Bucket)
		switch {
		case f.Season == nil:
			f.Season = make([]float64, SeasonBuckets)
			for j := range f.Season {
				f.Season[j] = noData
			}
			owned = true
			f.Start, f.Open = b, b
		case b < f.Open:
			continue // out of order
		case b > f.Open:
			if !owned {
				f.Season = slices.Clone(f.Season)
				owned = true
			}
			f.closeThrough(b, p)
		}
		v := s.Value
		if !(v > 0) || math.IsInf(v, 0) {
			v = 0
		}
		f.Sum += v
		f.N++
	}
	return f
}

// closeThrough closes the open bucket and any empty ones before b, and
// opens b.
func (f *Forecast) closeThrough(b int64, p *Predictive) {
	if b-f.Open > SeasonBuckets {
		season := f.Season
		*f = Forecast{Bucket: f.Bucket, Fed: f.Fed, Start: b, Open: b, Season: season}
		for j := range season {
			season[j] = noData
		}
		return
	}
	y, has := 0.0, f.N > 0
	if has {
		y = f.Sum / float64(f.N)
	}
	for i := f.Open; i < b; i++ {
		f.close(i, y, has, p)
		has = false
	}
	f.Open, f.Sum, f.N = b, 0, 0
}

func (f *Forecast) close(i int64, y float64, has bool, p *Predictive) {
	k := pos(i)
	if !f.Trained {
		if has {
			f.Season[k] = y
		}
		if i-f.Start+1 < SeasonBuckets {
			return
		}
		sum, n := 0.0, 0
		for _, v := range f.Season {
			if v != noData {
				sum += v
				n++
			}
		}
		if n == 0 {
			f.Start = i + 1 // a season without data: wait for another
			return
		}
		f.Level, f.Trend, f.Trained = sum/float64(n), 0, true
		f.Base, f.BaseAt = f.Level, i
		for j, v := range f.Season {
			if v == noData {
				f.Season[j] = 0
			} else {
				f.Season[j] = v - f.Level
			}
		}
		return
	}
	if f.BaseAt == 0 { // a state persisted before Base existed: its trend was measured bucket by bucket
		f.Trend, f.Base, f.BaseAt = 0, f.Level, i-1
	}
	if has {
		s := f.Season[k]
		f.Level = p.Alpha*(y-s) + (1-p.Alpha)*(f.Level+f.Trend)
		f.Season[k] = p.Gamma*(y-f.Level) + (1-p.Gamma)*s
	} else {
		f.Level += f.Trend
	}
	if i-f.BaseAt >= SeasonBuckets {
		f.Trend = p.Beta*(f.Level-f.Base)/float64(i-f.BaseAt) + (1-p.Beta)*f.Trend
		f.Base, f.BaseAt = f.Level, i
	}
}

// peak is the largest forecast of the metric for the buckets from now to
// now+Horizon (0 until a season has been seen, or when the state is stale).
func (f *Forecast) peak(now time.Time, p *Predictive) float64 {
	if !f.Trained || p.Bucket <= 0 || f.Bucket != p.Bucket {
		return 0
	}
	last := f.Open - 1 // the newest closed bucket: level and trend are as of it
	from, to := f.index(now, p.Bucket)-last, f.index(now.Add(p.Horizon), p.Bucket)-last
	if from > SeasonBuckets {
		return 0
	}
	from = max(from, 1)
	to = min(to, from+SeasonBuckets)
	best := 0.0
	for k := from; k <= to; k++ {
		v := f.Level + float64(k)*f.Trend + f.Season[pos(last+k)]
		best = max(best, v)
	}
	return best
}
