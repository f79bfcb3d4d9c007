package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/placement"
)

// genConfig shapes the generated instances.
type genConfig struct {
	MinDeployments, MaxDeployments int
	MinOfferings, MaxOfferings     int // 0: all of the pool
	// Ample: every offering unlimited or with room for 1000+ instances, no
	// offering unavailable, no constraint meant to be unsatisfiable.
	Ample bool
	// Current: some demands have current replicas (churn).
	Current bool
	// TotalReplicas, if > 0, rescales the replica counts to sum to it.
	TotalReplicas int
	// MaxReplicas per demand (default 20).
	MaxReplicas int
}

var cloudKind = map[string]string{"aws": "hyperscaler", "gcp": "hyperscaler", "azure": "hyperscaler", "lambda": "neocloud", "runpod": "neocloud"}

// genInstance draws instance idx of the seeded family: offerings sampled from
// the catalog pool with random capacities, runtimes, labels, availability and
// spot interruption rates; demands whose resources exist in the sampled
// offerings, with mixed constraints, traffic and current replicas.
func genInstance(pool []poolOffering, seed uint64, idx int, cfg genConfig) *placement.Problem {
	r := rand.New(rand.NewPCG(seed, uint64(idx)+1))
	if cfg.MaxReplicas == 0 {
		cfg.MaxReplicas = 20
	}
	nDep := cfg.MinDeployments + r.IntN(cfg.MaxDeployments-cfg.MinDeployments+1)

	// Offerings.
	var chosen []poolOffering
	if cfg.MaxOfferings == 0 || cfg.MaxOfferings >= len(pool) {
		chosen = pool
	} else {
		nOff := cfg.MinOfferings + r.IntN(cfg.MaxOfferings-cfg.MinOfferings+1)
		perm := r.Perm(len(pool))[:nOff]
		sort.Ints(perm)
		for _, i := range perm {
			chosen = append(chosen, pool[i])
		}
	}
	runtimes := map[string][]string{}
	for _, c := range catalogClouds {
		switch x := r.Float64(); {
		case x < 0.6:
			runtimes[c] = []string{"process", "oci"}
		case x < 0.85:
			runtimes[c] = []string{"oci"}
		default:
			runtimes[c] = []string{"process"}
		}
	}
	cordoned := ""
	if !cfg.Ample && r.Float64() < 0.05 {
		cordoned = catalogClouds[r.IntN(len(catalogClouds))]
	}
	p := &placement.Problem{Offerings: make([]placement.Offering, len(chosen))}
	for i, po := range chosen {
		o := placement.Offering{
			ID: po.ID, Cloud: po.Cloud, Region: po.Region, Zone: po.Zone, InstanceType: po.InstanceType,
			Labels:      map[string]string{"jurisdiction": jurisdiction(po.Region), "kind": cloudKind[po.Cloud]},
			Runtimes:    runtimes[po.Cloud],
			Accelerator: po.Accelerator, AcceleratorCount: po.AccelCount,
			VCPUs: po.VCPUs, MemoryGiB: po.MemoryGiB, Spot: po.Spot, Price: po.Price,
		}
		if o.Spot {
			o.InterruptionsPerHour = math.Round((0.01+0.19*r.Float64())*1000) / 1000
		}
		switch x := r.Float64(); {
		case cfg.Ample && x < 0.5:
			o.Capacity = -1
		case cfg.Ample:
			o.Capacity = 1000 + r.IntN(1000)
		case x < 0.4:
			o.Capacity = -1
		case x < 0.7:
			o.Capacity = r.IntN(4) // tight: 0-3
		default:
			o.Capacity = 4 + r.IntN(37)
		}
		if !cfg.Ample {
			if o.Cloud == cordoned {
				o.Unavailable = "cloud " + o.Cloud + " is cordoned"
			} else if r.Float64() < 0.03 {
				o.Unavailable = "capacity block after InsufficientInstanceCapacity"
			}
		}
		p.Offerings[i] = o
	}

	// RTTs over every known region (traffic may come from regions without
	// offerings in this instance); 5% of the pairs are left to DefaultRTTms.
	var regionNames []string
	for name := range regions {
		regionNames = append(regionNames, name)
	}
	sort.Strings(regionNames)
	p.RTTms = rttTable(r, regionNames, 0.05)

	switch x := r.Float64(); {
	case x < 0.4: // zero value: DefaultWeights
	case x < 0.8:
		p.Weights = placement.DefaultWeights
	default:
		p.Weights = placement.Weights{
			LatencyUSDPerMs: 0.0001 + 0.003*r.Float64(),
			ChurnUSD:        0.05 + 2*r.Float64(),
			SpotRiskUSD:     0.05 + 2*r.Float64(),
		}
	}

	// Demands.
	var avail, gpuAvail []int
	for i := range p.Offerings {
		o := &p.Offerings[i]
		if o.Unavailable != "" {
			continue
		}
		avail = append(avail, i)
		if o.Accelerator != "" && o.AcceleratorCount > 0 && !strings.Contains(o.Accelerator, " ") {
			gpuAvail = append(gpuAvail, i)
		}
	}
	if len(avail) == 0 { // everything cordoned: use the unavailable ones as templates
		for i := range p.Offerings {
			avail = append(avail, i)
		}
	}
	for di := range nDep {
		p.Demands = append(p.Demands, genDemand(r, p, avail, gpuAvail, regionNames, di, cfg))
	}
	if cfg.TotalReplicas > 0 {
		rescaleReplicas(r, p, cfg.TotalReplicas, cfg.MaxReplicas)
	}
	if !cfg.Ample {
		p.Quotas = genQuotas(r, p)
	}
	return p
}

// genQuotas puts quotas on some clouds of p and on some of their regions
// (drawn last, so the rest of the instance is what it was without them):
// per cloud, 30% a cloud quota of 2-30% of all replicas asked for; per
// region of a cloud, a quota of 0-5% of them with a chance that makes about
// one per cloud (a cloud's and a region's quota nest); 3% of the quotas are
// negative (more runs than the quota allows, so nothing new may start).
func genQuotas(r *rand.Rand, p *placement.Problem) []placement.Quota {
	total := 0
	for _, d := range p.Demands {
		total += d.Replicas
	}
	regionsOf := map[string][]string{}
	for _, o := range p.Offerings {
		if !slices.Contains(regionsOf[o.Cloud], o.Region) {
			regionsOf[o.Cloud] = append(regionsOf[o.Cloud], o.Region)
		}
	}
	limit := func(lo, hi float64) int {
		if r.Float64() < 0.03 {
			return -1 - r.IntN(3)
		}
		return int(math.Round(float64(total) * (lo + (hi-lo)*r.Float64())))
	}
	var qs []placement.Quota
	for _, c := range catalogClouds {
		regs := regionsOf[c]
		if len(regs) == 0 {
			continue
		}
		sort.Strings(regs)
		if r.Float64() < 0.3 {
			qs = append(qs, placement.Quota{Cloud: c, Limit: limit(0.02, 0.3)})
		}
		for _, reg := range regs {
			if r.Float64() < min(0.3, 1/float64(len(regs))) {
				qs = append(qs, placement.Quota{Cloud: c, Region: reg, Limit: limit(0, 0.05)})
			}
		}
	}
	return qs
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

func genDemand(r *rand.Rand, p *placement.Problem, avail, gpuAvail []int, regionNames []string, di int, cfg genConfig) placement.Demand {
	var tmpl *placement.Offering
	if len(gpuAvail) > 0 && r.Float64() < 0.45 {
		tmpl = &p.Offerings[pick(r, gpuAvail)]
	} else {
		tmpl = &p.Offerings[pick(r, avail)]
	}
	d := placement.Demand{
		Deployment: fmt.Sprintf("dep-%04d", di),
		Runtime:    pick(r, []string{"process", "oci"}),
	}
	if r.Float64() < 0.95 && len(tmpl.Runtimes) > 0 {
		d.Runtime = pick(r, tmpl.Runtimes)
	}
	switch x := r.Float64(); {
	case x < 0.5:
		d.Replicas = 1 + r.IntN(5)
	case x < 0.85:
		d.Replicas = 6 + r.IntN(7)
	default:
		d.Replicas = 13 + r.IntN(max(1, cfg.MaxReplicas-12))
	}
	d.Replicas = min(d.Replicas, cfg.MaxReplicas)

	// Resources no bigger than the template's.
	fit := func(opts []float64, limit float64) float64 {
		var ok []float64
		for _, v := range opts {
			if v <= limit {
				ok = append(ok, v)
			}
		}
		if len(ok) == 0 {
			return limit
		}
		return pick(r, ok)
	}
	res := v1.ResourceRequest{}
	if tmpl.Accelerator != "" && tmpl.AcceleratorCount > 0 && !strings.Contains(tmpl.Accelerator, " ") {
		res.GPUType = strings.ToLower(tmpl.Accelerator)
		res.GPUCount = pick(r, []int{1, 1, max(1, tmpl.AcceleratorCount/2), tmpl.AcceleratorCount})
		res.CPU = fit([]float64{1, 2, 4, 8, 16}, tmpl.VCPUs)
		res.MemoryBytes = int64(fit([]float64{4, 8, 16, 32, 64, 128}, tmpl.MemoryGiB) * float64(v1.GiB))
	} else {
		res.CPU = fit([]float64{0.5, 1, 2, 4, 8, 16, 32}, tmpl.VCPUs)
		res.MemoryBytes = int64(fit([]float64{0.5, 1, 2, 4, 8, 16, 32, 64}, tmpl.MemoryGiB) * float64(v1.GiB))
		res.MemoryBytes = max(res.MemoryBytes/v1.MiB*v1.MiB, 256*v1.MiB)
		if float64(res.MemoryBytes) > tmpl.MemoryGiB*float64(v1.GiB) {
			res.MemoryBytes = 256 * v1.MiB
		}
	}
	d.Resources = res

	// Constraints.
	pl := &d.Placement
	impossible := !cfg.Ample
	if r.Float64() < 0.2 {
		set := map[string]bool{tmpl.Cloud: true}
		for range r.IntN(3) {
			set[pick(r, catalogClouds)] = true
		}
		for c := range set {
			pl.Clouds = append(pl.Clouds, c)
		}
		sort.Strings(pl.Clouds)
	}
	if r.Float64() < 0.1 {
		set := map[string]bool{tmpl.Region: true}
		for range r.IntN(4) {
			set[p.Offerings[pick(r, avail)].Region] = true
		}
		for c := range set {
			pl.Regions = append(pl.Regions, c)
		}
		sort.Strings(pl.Regions)
	}
	if x := r.Float64(); x < 0.2 {
		switch y := r.Float64(); {
		case impossible && y < 0.05:
			pl.Labels = map[string]string{"jurisdiction": "mars"}
		case y < 0.75:
			pl.Labels = map[string]string{"jurisdiction": tmpl.Labels["jurisdiction"]}
		default:
			pl.Labels = map[string]string{"kind": tmpl.Labels["kind"]}
		}
	}
	// Spread mostly within the clouds that have a fitting offering so far.
	fitClouds := map[string]bool{}
	for _, oi := range avail {
		if o := &p.Offerings[oi]; eligible(&d, o) {
			fitClouds[o.Cloud] = true
		}
	}
	nfit := max(1, len(fitClouds))
	if d.Replicas > 1 && r.Float64() < 0.25 {
		pl.Spread.MinClouds = 2
		if r.Float64() < 0.3 {
			pl.Spread.MinClouds = 3
		}
		if r.Float64() < 0.9 {
			pl.Spread.MinClouds = min(pl.Spread.MinClouds, nfit)
		}
		if impossible && r.Float64() < 0.03 {
			pl.Spread.MinClouds = 6 // more clouds than there are
		}
	}
	if r.Float64() < 0.2 {
		lo := (d.Replicas + 2) / 3
		if r.Float64() < 0.9 {
			lo = max(lo, (d.Replicas+nfit-1)/nfit)
		}
		pl.Spread.MaxPerCloud = lo + r.IntN(d.Replicas-lo+1)
	}
	if r.Float64() < 0.2 {
		if r.Float64() < 0.25 {
			pl.MaxHourlyCost = tmpl.Price // exactly at the boundary: <= must admit it
		} else {
			pl.MaxHourlyCost = math.Round(tmpl.Price*(0.9+1.1*r.Float64())*10000) / 10000
		}
	}
	if r.Float64() < 0.15 {
		f := 0.7 + 0.9*r.Float64()
		if !impossible {
			f = 1.2 + r.Float64()
		}
		pl.Budget = math.Round(float64(d.Replicas)*tmpl.Price*f*1000)/1000 + 0.0005
	}
	if r.Float64() < 0.4 {
		pl.Spot = &v1.SpotPolicy{Allowed: true}
		if r.Float64() < 0.5 {
			pl.Spot.OnDemandBase = 1 + r.IntN(d.Replicas)
		}
	} else if r.Float64() < 0.1 {
		pl.Spot = &v1.SpotPolicy{Allowed: false}
	}
	if r.Float64() < 0.5 {
		pl.Traffic = map[string]float64{}
		for range 1 + r.IntN(3) {
			pl.Traffic[pick(r, regionNames)] = float64(1 + r.IntN(5))
		}
	}

	// Current replicas on offerings the resources fit (eligible or not now).
	if cfg.Current && r.Float64() < 0.3 {
		var fits []int
		for range 300 {
			oi := r.IntN(len(p.Offerings))
			o := &p.Offerings[oi]
			if o.VCPUs >= res.CPU && o.MemoryGiB*float64(v1.GiB) >= float64(res.MemoryBytes) &&
				(res.GPUCount == 0 || strings.EqualFold(o.Accelerator, res.GPUType) && o.AcceleratorCount >= res.GPUCount) &&
				!slices.Contains(fits, oi) {
				fits = append(fits, oi)
				if len(fits) == 3 {
					break
				}
			}
		}
		if len(fits) > 0 {
			fits = fits[:1+r.IntN(len(fits))]
			total := max(1, int(math.Round(float64(d.Replicas)*(0.5+0.8*r.Float64()))))
			counts := make([]int, len(fits))
			for range total {
				counts[r.IntN(len(fits))]++
			}
			for i, oi := range fits {
				if counts[i] > 0 {
					d.Current = append(d.Current, placement.Running{OfferingID: p.Offerings[oi].ID, Count: counts[i]})
				}
			}
		}
	}
	return d
}

// rescaleReplicas adjusts replica counts (within 1..maxReplicas) so that they
// sum to total.
func rescaleReplicas(r *rand.Rand, p *placement.Problem, total, maxReplicas int) {
	sum := 0
	for _, d := range p.Demands {
		sum += d.Replicas
	}
	for sum != total {
		d := &p.Demands[r.IntN(len(p.Demands))]
		if sum < total && d.Replicas < maxReplicas {
			d.Replicas++
			sum++
		} else if sum > total && d.Replicas > 1 {
			d.Replicas--
			sum--
		}
	}
	for i := range p.Demands {
		d := &p.Demands[i]
		if d.Placement.Spot != nil {
			d.Placement.Spot.OnDemandBase = min(d.Placement.Spot.OnDemandBase, d.Replicas)
		}
		if d.Placement.Spread.MaxPerCloud > d.Replicas {
			d.Placement.Spread.MaxPerCloud = d.Replicas
		}
	}
}
