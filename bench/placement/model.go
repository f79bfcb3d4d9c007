package main

import (
	"math"
	"slices"
	"sort"
	"strings"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/placement"
)

// The bench's own statement of the model the optimizer optimizes (see the
// README): which offerings a demand may use, what one replica-hour there
// costs, and the churn count. The MILP writer, the checker and the evaluator
// all use these functions; none of them uses the optimizer's code.

// eligible says whether offering o may hold a replica of demand d.
func eligible(d *placement.Demand, o *placement.Offering) bool {
	if o.Unavailable != "" || !slices.Contains(o.Runtimes, d.Runtime) {
		return false
	}
	pl := &d.Placement
	if len(pl.Clouds) > 0 && !slices.Contains(pl.Clouds, o.Cloud) {
		return false
	}
	if len(pl.Regions) > 0 && !slices.Contains(pl.Regions, o.Region) {
		return false
	}
	for k, v := range pl.Labels {
		if o.Labels[k] != v { // a missing label is ""
			return false
		}
	}
	r := &d.Resources
	if o.VCPUs < r.CPU || o.MemoryGiB*float64(v1.GiB) < float64(r.MemoryBytes) {
		return false
	}
	if r.GPUCount > 0 && (!strings.EqualFold(o.Accelerator, r.GPUType) || o.AcceleratorCount < r.GPUCount) {
		return false
	}
	if pl.MaxHourlyCost > 0 && o.Price > pl.MaxHourlyCost {
		return false
	}
	if o.Spot && (pl.Spot == nil || !pl.Spot.Allowed) {
		return false
	}
	return true
}

// inQuota says whether offering o counts against quota q: the same cloud,
// and the same region unless the quota is for the whole cloud.
func inQuota(q *placement.Quota, o *placement.Offering) bool {
	return o.Cloud == q.Cloud && (q.Region == "" || o.Region == q.Region)
}

// weightsOf returns the weights in force for p.
func weightsOf(p *placement.Problem) placement.Weights {
	if p.Weights == (placement.Weights{}) {
		return placement.DefaultWeights
	}
	return p.Weights
}

// rtt looks a region pair up in p.RTTms in either order.
func rtt(p *placement.Problem, a, b string) float64 {
	if a == b {
		return 0
	}
	if v, ok := p.RTTms[[2]string{a, b}]; ok {
		return v
	}
	if v, ok := p.RTTms[[2]string{b, a}]; ok {
		return v
	}
	return placement.DefaultRTTms
}

// latency is the traffic-weighted RTT from d's traffic to region, 0 without traffic.
func latency(p *placement.Problem, d *placement.Demand, region string) float64 {
	var sum, w float64
	keys := make([]string, 0, len(d.Placement.Traffic))
	for t := range d.Placement.Traffic {
		keys = append(keys, t)
	}
	sort.Strings(keys) // a fixed summation order
	for _, t := range keys {
		tw := d.Placement.Traffic[t]
		sum += tw * rtt(p, t, region)
		w += tw
	}
	if w <= 0 {
		return 0
	}
	return sum / w
}

// model is a Problem with every demand's eligible offerings and per-replica
// costs worked out.
type model struct {
	p     *placement.Problem
	w     placement.Weights
	index map[string]int // offering ID -> index
	dem   []demandModel
}

type demandModel struct {
	elig    []int           // eligible offering indices, ascending
	cost    map[int]float64 // c(d,o) for eligible o
	current map[int]int     // current replicas per known offering (eligible or not)
	curAll  int             // all current replicas, unknown offering IDs included
	clouds  []string        // clouds with an eligible offering, sorted
}

// newModel works out the model of p; the eligible offerings and their costs
// only when withElig (the checker and evaluator need neither).
func newModel(p *placement.Problem, withElig bool) *model {
	m := &model{p: p, w: weightsOf(p), index: make(map[string]int, len(p.Offerings))}
	for i := range p.Offerings {
		m.index[p.Offerings[i].ID] = i
	}
	m.dem = make([]demandModel, len(p.Demands))
	for di := range p.Demands {
		d := &p.Demands[di]
		dm := &m.dem[di]
		dm.cost = map[int]float64{}
		dm.current = map[int]int{}
		for _, c := range d.Current {
			dm.curAll += c.Count
			if oi, ok := m.index[c.OfferingID]; ok {
				dm.current[oi] += c.Count
			}
		}
		if !withElig {
			continue
		}
		lat := map[string]float64{}
		cl := map[string]bool{}
		for oi := range p.Offerings {
			o := &p.Offerings[oi]
			if !eligible(d, o) {
				continue
			}
			l, ok := lat[o.Region]
			if !ok {
				l = latency(p, d, o.Region)
				lat[o.Region] = l
			}
			dm.elig = append(dm.elig, oi)
			dm.cost[oi] = m.replicaCost(o, l)
			cl[o.Cloud] = true
		}
		for c := range cl {
			dm.clouds = append(dm.clouds, c)
		}
		sort.Strings(dm.clouds)
	}
	return m
}

// replicaCost is c(d,o) for an offering o at traffic-weighted RTT lat (ms).
func (m *model) replicaCost(o *placement.Offering, lat float64) float64 {
	return o.Price + m.w.LatencyUSDPerMs*lat + m.w.SpotRiskUSD*o.InterruptionsPerHour
}

// minClouds is the number of distinct clouds demand d must use.
func minClouds(d *placement.Demand) int {
	return min(d.Placement.Spread.MinClouds, d.Replicas)
}

// onDemandBase is the number of replicas of d that must be on-demand.
func onDemandBase(d *placement.Demand) int {
	if d.Placement.Spot == nil || !d.Placement.Spot.Allowed {
		return 0
	}
	return min(d.Placement.Spot.OnDemandBase, d.Replicas)
}

// moved is how many current replicas of demand di a placement x (replicas
// per offering index) moves: min(current, Replicas) minus those kept where
// they run (at most min(current, x) per offering).
func (m *model) moved(di int, x map[int]int) int {
	dm := &m.dem[di]
	kept := 0
	for oi, c := range dm.current {
		kept += min(c, x[oi])
	}
	return max(0, min(dm.curAll, m.p.Demands[di].Replicas)-kept)
}

// newInstances is how many new instances placement x of demand di starts on
// offering oi (those beyond the current replicas kept there).
func (m *model) newInstances(di int, oi, x int) int {
	return max(0, x-m.dem[di].current[oi])
}

// objective is the placement's cost, latency and risk terms plus churn, USD/h.
func (m *model) objective(di int, x map[int]int) (obj, cost float64, moved int) {
	keys := make([]int, 0, len(x))
	for oi := range x {
		keys = append(keys, oi)
	}
	sort.Ints(keys)
	for _, oi := range keys {
		n := x[oi]
		o := &m.p.Offerings[oi]
		obj += m.replicaCost(o, latency(m.p, &m.p.Demands[di], o.Region)) * float64(n)
		cost += m.p.Offerings[oi].Price * float64(n)
	}
	moved = m.moved(di, x)
	obj += m.w.ChurnUSD * float64(moved)
	return obj, cost, moved
}

// relGap is (a-b)/|b| in percent (0 when both are ~0).
func relGap(a, b float64) float64 {
	if math.Abs(b) < 1e-12 {
		if math.Abs(a) < 1e-12 {
			return 0
		}
		return math.Inf(1)
	}
	return (a - b) / math.Abs(b) * 100
}
