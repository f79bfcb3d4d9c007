package placement

import (
	"fmt"
	"math"
	"math/rand/v2"

	v1 "github.com/aloft-dev/aloft/api/v1"
)

// genProblem makes a realistic instance: nCloud clouds with a few regions
// each, instance types in several sizes and GPU kinds, on-demand and spot,
// capacities (cap < 0: share of unlimited offerings), and deployments with
// a mix of every rule.
func genProblem(rng *rand.Rand, nDem, nOff int, unlimitedShare float64, tight float64) Problem {
	clouds := []string{"aws", "gcp", "azure", "oci", "lambda", "local-a"}
	var regions [][]string
	juris := map[string]string{}
	for ci, c := range clouds {
		var rs []string
		for r := range 2 + ci%3 {
			name := fmt.Sprintf("%s-r%d", c, r)
			rs = append(rs, name)
			juris[name] = []string{"us", "eu", "ap"}[(ci+r)%3]
		}
		regions = append(regions, rs)
	}
	var allRegions []string
	for _, rs := range regions {
		allRegions = append(allRegions, rs...)
	}
	gpus := []string{"", "", "", "L4", "A100", "H100"}
	var p Problem
	for i := range nOff {
		ci := rng.IntN(len(clouds))
		reg := regions[ci][rng.IntN(len(regions[ci]))]
		size := 1 << rng.IntN(5)
		gpu := gpus[rng.IntN(len(gpus))]
		o := Offering{
			ID:    fmt.Sprintf("%s/%s/i%d", clouds[ci], reg, i),
			Cloud: clouds[ci], Region: reg, InstanceType: fmt.Sprintf("i%d", i),
			Labels:   map[string]string{"jurisdiction": juris[reg]},
			Runtimes: []string{"process", "oci"},
			VCPUs:    float64(size), MemoryGiB: float64(4 * size),
			Price: float64(size) * (0.03 + 0.02*rng.Float64()),
		}
		if gpu != "" {
			o.Accelerator, o.AcceleratorCount = gpu, 1+rng.IntN(2)
			o.Price += float64(o.AcceleratorCount) * map[string]float64{"L4": 0.8, "A100": 2.5, "H100": 4}[gpu] * (0.8 + 0.4*rng.Float64())
		}
		if rng.IntN(3) == 0 {
			o.Spot = true
			o.ID += "/spot"
			o.Price *= 0.3 + 0.3*rng.Float64()
			o.InterruptionsPerHour = 0.02 + 0.2*rng.Float64()
		}
		o.Capacity = -1
		if rng.Float64() >= unlimitedShare {
			o.Capacity = rng.IntN(int(8*tight) + 1)
		}
		if rng.IntN(40) == 0 {
			o.Unavailable = "cloud failed health checks"
		}
		o.Price = math.Round(o.Price*1e4) / 1e4
		p.Offerings = append(p.Offerings, o)
	}
	p.RTTms = map[[2]string]float64{}
	for i, a := range allRegions {
		for _, b := range allRegions[i+1:] {
			p.RTTms[[2]string{a, b}] = float64(5 + rng.IntN(250))
		}
	}
	for i := range nDem {
		d := Demand{Deployment: fmt.Sprintf("dep-%d", i), Replicas: 1 + rng.IntN(12), Runtime: "process"}
		if rng.IntN(4) == 0 {
			d.Runtime = "oci"
		}
		size := 1 << rng.IntN(4)
		d.Resources = v1.ResourceRequest{CPU: float64(size) * 0.75, MemoryBytes: int64(size) << 31}
		if rng.IntN(5) == 0 {
			d.Resources.GPUType, d.Resources.GPUCount = []string{"l4", "a100", "h100"}[rng.IntN(3)], 1
		}
		pl := &d.Placement
		if rng.IntN(5) == 0 {
			pl.Clouds = []string{clouds[rng.IntN(6)], clouds[rng.IntN(6)], clouds[rng.IntN(6)]}
		}
		if rng.IntN(10) == 0 {
			pl.Labels = map[string]string{"jurisdiction": []string{"us", "eu"}[rng.IntN(2)]}
		}
		if rng.IntN(3) == 0 {
			pl.Spread.MaxPerCloud = 1 + rng.IntN(4)
		}
		if rng.IntN(3) == 0 {
			pl.Spread.MinClouds = 2 + rng.IntN(2)
		}
		if rng.IntN(2) == 0 {
			pl.Spot = &v1.SpotPolicy{Allowed: true, OnDemandBase: rng.IntN(3)}
		}
		if rng.IntN(4) == 0 {
			pl.Budget = math.Round(float64(d.Replicas)*float64(size)*(0.02+0.04*rng.Float64())*100) / 100
			if d.Resources.GPUCount > 0 {
				pl.Budget += float64(d.Replicas) * 3
			}
		}
		if rng.IntN(8) == 0 {
			pl.MaxHourlyCost = float64(size) * 0.05
		}
		if rng.IntN(2) == 0 {
			pl.Traffic = map[string]float64{}
			for range 1 + rng.IntN(3) {
				pl.Traffic[allRegions[rng.IntN(len(allRegions))]] = float64(1 + rng.IntN(5))
			}
		}
		if rng.IntN(3) == 0 {
			for range 1 + rng.IntN(2) {
				d.Current = append(d.Current, Running{OfferingID: p.Offerings[rng.IntN(len(p.Offerings))].ID, Count: 1 + rng.IntN(3)})
			}
		}
		p.Demands = append(p.Demands, d)
	}
	// Quotas: on some clouds, and on some regions (of those clouds or
	// not), sized to the replicas asked for so that some bind.
	total := 0
	for _, d := range p.Demands {
		total += d.Replicas
	}
	for ci, c := range clouds {
		if rng.IntN(3) == 0 {
			p.Quotas = append(p.Quotas, Quota{Cloud: c, Limit: rng.IntN(total/4 + 2)})
		}
		for _, r := range regions[ci] {
			if rng.IntN(6) == 0 {
				p.Quotas = append(p.Quotas, Quota{Cloud: c, Region: r, Limit: rng.IntN(total/8 + 2)})
			}
		}
	}
	return p
}
