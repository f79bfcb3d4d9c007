package placement

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	v1 "github.com/aloft-dev/aloft/api/v1"
)

// scaleProblem is a fleet-sized instance: 6 clouds with 3 regions each, and
// per region on-demand and spot offerings of ~190 instance types (about
// nOff in all). CPU offerings are unlimited; GPU offerings have a finite
// capacity (contended when gpuCap is small). Deployments use eight shapes
// and a realistic mix of rules.
func scaleProblem(seed uint64, nDem, nOff int, gpuCap int) Problem {
	rng := rand.New(rand.NewPCG(seed, 1))
	clouds := []string{"aws", "gcp", "azure", "oci", "lambda", "local-a"}
	var regions []string
	cloudOf := map[string]string{}
	for _, c := range clouds {
		for r := range 3 {
			reg := fmt.Sprintf("%s-%d", c, r)
			regions = append(regions, reg)
			cloudOf[reg] = c
		}
	}
	var p Problem
	perRegion := nOff / len(regions) / 2
	gpus := []string{"T4", "L4", "A10", "A100", "H100"}
	for ri, reg := range regions {
		juris := []string{"us", "eu", "ap"}[ri%3]
		for t := range perRegion {
			size := 1 << (t % 7)
			o := Offering{
				Cloud: cloudOf[reg], Region: reg, InstanceType: fmt.Sprintf("t%d", t),
				Labels:   map[string]string{"jurisdiction": juris},
				Runtimes: []string{"process", "oci"},
				VCPUs:    float64(size), MemoryGiB: float64(size * (2 + 2*(t/7%3))),
				Price: float64(size) * (0.02 + 0.03*rng.Float64()), Capacity: -1,
			}
			if t%5 == 4 {
				g := gpus[(t/5)%len(gpus)]
				o.Accelerator, o.AcceleratorCount = g, 1+(t/25)%4
				o.Price += float64(o.AcceleratorCount) * (0.5 + 3*rng.Float64())
				o.Capacity = gpuCap
			}
			for _, sp := range []bool{false, true} {
				q := o
				q.ID = fmt.Sprintf("%s/%s/%s", q.Cloud, reg, q.InstanceType)
				if sp {
					q.Spot = true
					q.ID += "/spot"
					q.Price *= 0.3 + 0.4*rng.Float64()
					q.InterruptionsPerHour = 0.01 + 0.3*rng.Float64()
				}
				q.Price = math.Round(q.Price*1e4) / 1e4
				p.Offerings = append(p.Offerings, q)
			}
		}
	}
	p.RTTms = map[[2]string]float64{}
	for i, a := range regions {
		for _, b := range regions[i+1:] {
			p.RTTms[[2]string{a, b}] = float64(5 + rng.IntN(250))
		}
	}
	shapes := []v1.ResourceRequest{
		{CPU: 0.5, MemoryBytes: 1 << 30}, {CPU: 1, MemoryBytes: 2 << 30}, {CPU: 2, MemoryBytes: 4 << 30},
		{CPU: 4, MemoryBytes: 8 << 30}, {CPU: 8, MemoryBytes: 32 << 30}, {CPU: 16, MemoryBytes: 64 << 30},
		{CPU: 4, MemoryBytes: 16 << 30, GPUType: "l4", GPUCount: 1}, {CPU: 8, MemoryBytes: 32 << 30, GPUType: "a100", GPUCount: 1},
	}
	cloudSets := [][]string{{"aws", "gcp"}, {"azure"}, {"aws", "gcp", "azure"}, {"oci", "lambda"}}
	total := 0
	for i := range nDem {
		d := Demand{Deployment: fmt.Sprintf("dep-%05d", i), Replicas: 1 + rng.IntN(19), Runtime: "process"}
		total += d.Replicas
		if rng.IntN(3) == 0 {
			d.Runtime = "oci"
		}
		d.Resources = shapes[rng.IntN(len(shapes))]
		if d.Resources.GPUCount > 0 && rng.IntN(3) > 0 {
			d.Resources = shapes[rng.IntN(6)]
		}
		pl := &d.Placement
		if rng.IntN(10) == 0 {
			pl.Clouds = cloudSets[rng.IntN(len(cloudSets))]
		}
		if rng.IntN(20) == 0 {
			pl.Labels = map[string]string{"jurisdiction": "eu"}
		}
		if rng.IntN(5) == 0 {
			pl.Spread.MaxPerCloud = 2 + rng.IntN(5)
		}
		if rng.IntN(5) == 0 {
			pl.Spread.MinClouds = 2 + rng.IntN(2)
		}
		if rng.IntN(5) < 2 {
			pl.Spot = &v1.SpotPolicy{Allowed: true, OnDemandBase: rng.IntN(4)}
		}
		if rng.IntN(10) == 0 {
			pl.Budget = math.Round(float64(d.Replicas)*d.Resources.CPU*0.04*100) / 100
			if d.Resources.GPUCount > 0 {
				pl.Budget += float64(d.Replicas) * 2
			}
		}
		if rng.IntN(20) == 0 {
			pl.MaxHourlyCost = []float64{0.5, 1, 2}[rng.IntN(3)]
		}
		if rng.IntN(2) == 0 {
			pl.Traffic = map[string]float64{}
			for range 1 + rng.IntN(3) {
				pl.Traffic[regions[rng.IntN(len(regions))]] = float64(1 + rng.IntN(5))
			}
		}
		if rng.IntN(5) == 0 {
			for range 1 + rng.IntN(2) {
				d.Current = append(d.Current, Running{OfferingID: p.Offerings[rng.IntN(len(p.Offerings))].ID, Count: 1 + rng.IntN(4)})
			}
		}
		p.Demands = append(p.Demands, d)
	}
	_ = total
	return p
}

func replicas(p Problem) int {
	n := 0
	for _, d := range p.Demands {
		n += d.Replicas
	}
	return n
}

// BenchmarkOptimize: 10,000 deployments, ~100,000 replicas, ~7,000
// offerings; GPU offerings have finite capacity (50 each).
func BenchmarkOptimize(b *testing.B) {
	p := scaleProblem(1, 10000, 7000, 50)
	b.Logf("%d deployments, %d replicas, %d offerings", len(p.Demands), replicas(p), len(p.Offerings))
	b.ReportAllocs()
	for b.Loop() {
		Optimize(p)
	}
}

// BenchmarkOptimizeUnlimited: the same fleet with no capacity limits, where
// every deployment decomposes.
func BenchmarkOptimizeUnlimited(b *testing.B) {
	p := scaleProblem(1, 10000, 7000, -1)
	b.ReportAllocs()
	for b.Loop() {
		Optimize(p)
	}
}

// BenchmarkOptimizeContended: 200 deployments over 2,000 offerings that are
// all finite and mostly too few for everyone.
func BenchmarkOptimizeContended(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 5))
	p := genProblem(rng, 200, 2000, 0.1, 1)
	b.Logf("%d deployments, %d replicas, %d offerings", len(p.Demands), replicas(p), len(p.Offerings))
	b.ReportAllocs()
	for b.Loop() {
		Optimize(p)
	}
}

func TestOptimizeScaleHardConstraints(t *testing.T) {
	if testing.Short() {
		t.Skip("large instance")
	}
	p := scaleProblem(2, 2000, 7000, 20)
	plan := Optimize(p)
	checkPlan(t, p, plan)
}
