package placement

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	v1 "github.com/aloft-dev/aloft/api/v1"
)

// This file checks Optimize against the model in its documentation, written
// again here as directly as possible: a feasibility filter, a checker of
// every hard constraint, and an exhaustive search for small instances.

var bfVerbose bool

func bfWeights(p Problem) Weights {
	if p.Weights == (Weights{}) {
		return DefaultWeights
	}
	return p.Weights
}

func bfFeasible(d Demand, o Offering) bool {
	pl := d.Placement
	r := d.Resources
	if o.Unavailable != "" || !slices.Contains(o.Runtimes, d.Runtime) {
		return false
	}
	if len(pl.Clouds) > 0 && !slices.Contains(pl.Clouds, o.Cloud) {
		return false
	}
	if len(pl.Regions) > 0 && !slices.Contains(pl.Regions, o.Region) {
		return false
	}
	for k, v := range pl.Labels {
		if o.Labels[k] != v {
			return false
		}
	}
	if o.Spot && (pl.Spot == nil || !pl.Spot.Allowed) {
		return false
	}
	if r.GPUCount > 0 && (!strings.EqualFold(o.Accelerator, r.GPUType) || o.AcceleratorCount < r.GPUCount) {
		return false
	}
	if o.VCPUs < r.CPU || o.MemoryGiB*(1<<30) < float64(r.MemoryBytes) {
		return false
	}
	return pl.MaxHourlyCost <= 0 || o.Price <= pl.MaxHourlyCost
}

func bfRTT(p Problem, t, r string) float64 {
	if t == r {
		return 0
	}
	if v, ok := p.RTTms[[2]string{t, r}]; ok {
		return v
	}
	if v, ok := p.RTTms[[2]string{r, t}]; ok {
		return v
	}
	return DefaultRTTms
}

func bfCost(p Problem, d Demand, o Offering) float64 {
	w := bfWeights(p)
	var lat float64
	var sum, acc float64
	for t, wt := range d.Placement.Traffic {
		sum += wt
		acc += wt * bfRTT(p, t, o.Region)
	}
	if sum > 0 {
		lat = acc / sum
	}
	return o.Price + w.LatencyUSDPerMs*lat + w.SpotRiskUSD*o.InterruptionsPerHour
}

type bfRules struct {
	R, M, m, b int
	budget     float64
}

func bfRulesOf(d Demand) bfRules {
	r := bfRules{R: max(d.Replicas, 0), budget: d.Placement.Budget}
	r.M = d.Placement.Spread.MaxPerCloud
	r.m = min(d.Placement.Spread.MinClouds, r.R)
	if sp := d.Placement.Spot; sp != nil && sp.Allowed {
		r.b = min(sp.OnDemandBase, r.R)
	}
	return r
}

// bfCheckRules checks x (counts per offering index) with u unplaced.
func bfCheckRules(r bfRules, offs []Offering, x map[int]int, u int) string {
	perCloud := map[string]int{}
	od, total := 0, 0
	price := 0.0
	for o, n := range x {
		if n == 0 {
			continue
		}
		perCloud[offs[o].Cloud] += n
		if !offs[o].Spot {
			od += n
		}
		total += n
		price += float64(n) * offs[o].Price
	}
	if total+u != r.R {
		return fmt.Sprintf("placed %d + unplaced %d != replicas %d", total, u, r.R)
	}
	for c, n := range perCloud {
		if r.M > 0 && n > r.M {
			return fmt.Sprintf("cloud %s has %d > maxPerCloud %d", c, n, r.M)
		}
	}
	if len(perCloud) < r.m-u {
		return fmt.Sprintf("%d clouds < minClouds %d - unplaced %d", len(perCloud), r.m, u)
	}
	if od < r.b-u {
		return fmt.Sprintf("%d on-demand < onDemandBase %d - unplaced %d", od, r.b, u)
	}
	if r.budget > 0 && price > r.budget+1e-9 {
		return fmt.Sprintf("price %.4f over budget %.4f", price, r.budget)
	}
	return ""
}

// checkPlan verifies every hard constraint of plan and recomputes its
// objective; it returns the objective and total unplaced.
func checkPlan(t *testing.T, p Problem, plan Plan) (float64, int) {
	t.Helper()
	if len(plan.Deployments) != len(p.Demands) {
		t.Fatalf("plan has %d deployments, want %d", len(plan.Deployments), len(p.Demands))
	}
	idx := map[string]int{}
	for i, o := range p.Offerings {
		idx[o.ID] = i
	}
	w := bfWeights(p)
	used := map[int]int{}
	var total float64
	unplaced := 0
	for di, d := range p.Demands {
		dp := plan.Deployments[di]
		r := bfRulesOf(d)
		if dp.Deployment != d.Deployment {
			t.Errorf("deployment %d named %q, want %q", di, dp.Deployment, d.Deployment)
		}
		ruleInfeasible := dp.Infeasible != "" && !shortOfRoom(dp)
		if ruleInfeasible && (len(dp.Placements) > 0 || dp.Unplaced != r.R) {
			t.Errorf("%s: rule-infeasible (%s) but placed %v unplaced %d", d.Deployment, dp.Infeasible, dp.Placements, dp.Unplaced)
		}
		if dp.Unplaced > 0 && dp.Infeasible == "" {
			t.Errorf("%s: %d unplaced without a reason", d.Deployment, dp.Unplaced)
		}
		if dp.Unplaced == 0 && dp.Infeasible != "" {
			t.Errorf("%s: infeasible %q but nothing unplaced", d.Deployment, dp.Infeasible)
		}
		unplaced += dp.Unplaced
		if ruleInfeasible {
			continue
		}
		x := map[int]int{}
		var hourly, obj float64
		for _, a := range dp.Placements {
			o, ok := idx[a.OfferingID]
			if !ok {
				t.Fatalf("%s: unknown offering %s", d.Deployment, a.OfferingID)
			}
			if !bfFeasible(d, p.Offerings[o]) {
				t.Errorf("%s: offering %s is not feasible", d.Deployment, a.OfferingID)
			}
			if a.Replicas <= 0 {
				t.Errorf("%s: assignment with %d replicas", d.Deployment, a.Replicas)
			}
			if x[o] > 0 {
				t.Errorf("%s: offering %s listed twice", d.Deployment, a.OfferingID)
			}
			x[o] += a.Replicas
			hourly += float64(a.Replicas) * p.Offerings[o].Price
			obj += float64(a.Replicas) * bfCost(p, d, p.Offerings[o])
		}
		if msg := bfCheckRules(r, p.Offerings, x, dp.Unplaced); msg != "" {
			t.Errorf("%s: %s (plan %+v)", d.Deployment, msg, dp)
		}
		cur := map[int]int{}
		curTotal := 0
		for _, c := range d.Current {
			curTotal += c.Count
			if o, ok := idx[c.OfferingID]; ok {
				cur[o] += c.Count
			}
		}
		kept := 0
		for o, n := range x {
			k := min(n, cur[o])
			kept += k
			used[o] += n - k
		}
		moved := min(curTotal, r.R) - kept
		if r.R == 0 {
			moved = 0
		}
		obj += w.ChurnUSD * float64(moved)
		if dp.Moved != moved {
			t.Errorf("%s: moved %d, want %d", d.Deployment, dp.Moved, moved)
		}
		if math.Abs(hourly-dp.HourlyCost) > 1e-6 || math.Abs(obj-dp.Objective) > 1e-6 {
			t.Errorf("%s: hourly %.6f objective %.6f, recomputed %.6f %.6f", d.Deployment, dp.HourlyCost, dp.Objective, hourly, obj)
		}
		total += obj
	}
	for o, n := range used {
		if c := p.Offerings[o].Capacity; c >= 0 && n > c {
			t.Errorf("offering %s: %d new replicas over capacity %d", p.Offerings[o].ID, n, c)
		}
	}
	for _, q := range p.Quotas {
		n := 0
		for o, k := range used {
			if inQuota(q, p.Offerings[o]) {
				n += k
			}
		}
		if n > max(q.Limit, 0) {
			t.Errorf("quota %+v: %d new replicas", q, n)
		}
	}
	if math.Abs(total-plan.Objective) > 1e-6 {
		t.Errorf("plan objective %.6f, recomputed %.6f", plan.Objective, total)
	}
	return total, unplaced
}

// shortOfRoom reports whether dp is infeasible for capacity or a quota
// (partly placed), not for its own rules.
func shortOfRoom(dp DeploymentPlan) bool {
	return strings.HasPrefix(dp.Infeasible, "capacity:") || strings.HasPrefix(dp.Infeasible, "quota:")
}

// inQuota reports whether offering o is in quota q's scope.
func inQuota(q Quota, o Offering) bool {
	return o.Cloud == q.Cloud && (q.Region == "" || o.Region == q.Region)
}

// compositions calls f with every x over k slots summing to n (x is reused).
func compositions(k, n int, f func(x []int)) {
	x := make([]int, k)
	var rec func(i, left int)
	rec = func(i, left int) {
		if i == k-1 {
			x[i] = left
			f(x)
			x[i] = 0
			return
		}
		for v := 0; v <= left; v++ {
			x[i] = v
			rec(i+1, left-v)
		}
		x[i] = 0
	}
	if k == 0 {
		if n == 0 {
			f(x)
		}
		return
	}
	rec(0, n)
}

type bfOption struct {
	u    int
	cost float64
	x    []int // per feasible offering
	newN []int
}

// bruteForce returns the optimum (total unplaced, objective) of the model and
// which demands are rule-infeasible.
func bruteForce(p Problem) (int, float64, []bool) {
	w := bfWeights(p)
	offs := p.Offerings
	idx := map[string]int{}
	for i, o := range offs {
		idx[o.ID] = i
	}
	ruleInf := make([]bool, len(p.Demands))
	var opts [][]bfOption
	var feasOf [][]int
	uTotal := 0
	for di, d := range p.Demands {
		r := bfRulesOf(d)
		var F []int
		for i, o := range offs {
			if bfFeasible(d, o) {
				F = append(F, i)
			}
		}
		if r.R == 0 {
			continue
		}
		// Stage A: capacity ignored.
		ok := false
		compositions(len(F), r.R, func(x []int) {
			if ok {
				return
			}
			m := map[int]int{}
			for j, v := range x {
				m[F[j]] = v
			}
			if bfCheckRules(r, offs, m, 0) == "" {
				ok = true
			}
		})
		if !ok {
			ruleInf[di] = true
			uTotal += r.R
			continue
		}
		cur := map[int]int{}
		curTotal := 0
		for _, c := range d.Current {
			curTotal += c.Count
			if o, ok := idx[c.OfferingID]; ok {
				cur[o] += c.Count
			}
		}
		var os []bfOption
		for n := 0; n <= r.R; n++ {
			compositions(len(F), n, func(x []int) {
				m := map[int]int{}
				for j, v := range x {
					m[F[j]] = v
				}
				if bfCheckRules(r, offs, m, r.R-n) != "" {
					return
				}
				opt := bfOption{u: r.R - n, x: slices.Clone(x), newN: make([]int, len(x))}
				kept := 0
				for j, v := range x {
					o := F[j]
					if c := offs[o].Capacity; c >= 0 && v-min(v, cur[o]) > c {
						return
					}
					opt.cost += float64(v) * bfCost(p, d, offs[o])
					kept += min(v, cur[o])
					opt.newN[j] = v - min(v, cur[o])
				}
				opt.cost += w.ChurnUSD * float64(min(curTotal, r.R)-kept)
				os = append(os, opt)
			})
		}
		slices.SortFunc(os, func(a, b bfOption) int {
			if a.u != b.u {
				return a.u - b.u
			}
			if a.cost < b.cost {
				return -1
			}
			if a.cost > b.cost {
				return 1
			}
			return 0
		})
		opts = append(opts, os)
		feasOf = append(feasOf, F)
	}
	const big = 1e6
	key := func(o bfOption) float64 { return float64(o.u)*big + o.cost }
	lb := make([]float64, len(opts)+1)
	for i := len(opts) - 1; i >= 0; i-- {
		lb[i] = lb[i+1] + key(opts[i][0])
	}
	capLeft := make([]int, len(offs))
	for i, o := range offs {
		capLeft[i] = o.Capacity
	}
	quotaLeft := make([]int, len(p.Quotas))
	for q, qu := range p.Quotas {
		quotaLeft[q] = max(qu.Limit, 0)
	}
	// quse[i][k][q]: new replicas option k of demand i puts in quota q's scope.
	quse := make([][][]int, len(opts))
	for i := range opts {
		quse[i] = make([][]int, len(opts[i]))
		for k, o := range opts[i] {
			quse[i][k] = make([]int, len(p.Quotas))
			for j, v := range o.newN {
				for q, qu := range p.Quotas {
					if inQuota(qu, offs[feasOf[i][j]]) {
						quse[i][k][q] += v
					}
				}
			}
		}
	}
	best := math.Inf(1)
	choice := make([]int, len(opts))
	var rec func(i int, acc float64)
	rec = func(i int, acc float64) {
		if acc+lb[i] >= best-1e-9 {
			return
		}
		if i == len(opts) {
			best = acc
			if bfVerbose {
				for k := range opts {
					fmt.Printf("bf: demand-opt %d: %+v\n", k, opts[k][choice[k]])
				}
			}
			return
		}
		F := feasOf[i]
	next:
		for oi, o := range opts[i] {
			if acc+key(o)+lb[i+1] >= best-1e-9 {
				break
			}
			for j, v := range o.newN {
				if c := capLeft[F[j]]; c >= 0 && v > c {
					continue next
				}
			}
			for q, v := range quse[i][oi] {
				if v > quotaLeft[q] {
					continue next
				}
			}
			for j, v := range o.newN {
				if capLeft[F[j]] >= 0 {
					capLeft[F[j]] -= v
				}
			}
			for q, v := range quse[i][oi] {
				quotaLeft[q] -= v
			}
			choice[i] = oi
			rec(i+1, acc+key(o))
			for j, v := range o.newN {
				if capLeft[F[j]] >= 0 {
					capLeft[F[j]] += v
				}
			}
			for q, v := range quse[i][oi] {
				quotaLeft[q] += v
			}
		}
	}
	rec(0, 0)
	u := int(math.Floor((best + 0.5) / big))
	return u + uTotal, best - float64(u)*big, ruleInf
}

// randomProblem makes a small instance with every kind of rule.
func randomProblem(rng *rand.Rand, nDem, nOff, maxR int) Problem {
	type loc struct{ cloud, region, juris string }
	locs := []loc{{"aws", "us-east-1", "us"}, {"aws", "eu-west-1", "eu"}, {"gcp", "europe-west4", "eu"}, {"gcp", "us-central1", "us"}, {"azure", "westeurope", "eu"}}
	var p Problem
	for i := range nOff {
		l := locs[rng.IntN(len(locs))]
		o := Offering{
			ID: fmt.Sprintf("%s/%s/t%d", l.cloud, l.region, i), Cloud: l.cloud, Region: l.region,
			InstanceType: fmt.Sprintf("t%d", i), Labels: map[string]string{"jurisdiction": l.juris},
			Runtimes: []string{"process"}, VCPUs: float64(int(1) << rng.IntN(3)), MemoryGiB: float64(int(2) << rng.IntN(3)),
			Price:    math.Round(rng.Float64()*200)/100 + 0.05,
			Capacity: rng.IntN(5) - 1,
		}
		if rng.IntN(4) == 0 {
			o.Capacity = -1
		}
		if rng.IntN(3) == 0 {
			o.Spot = true
			o.ID += "/spot"
			o.Price = math.Round(o.Price*40) / 100
			o.InterruptionsPerHour = math.Round(rng.Float64()*30) / 100
		}
		if rng.IntN(6) == 0 {
			o.Accelerator, o.AcceleratorCount = "A100", 1+rng.IntN(2)
			o.Price += 1
		}
		if rng.IntN(8) == 0 {
			o.Runtimes = append(o.Runtimes, "oci")
		}
		if rng.IntN(15) == 0 {
			o.Unavailable = "cloud is cordoned"
		}
		p.Offerings = append(p.Offerings, o)
	}
	regions := []string{"us-east-1", "eu-west-1", "europe-west4", "us-central1", "westeurope", "ap-south-1"}
	p.RTTms = map[[2]string]float64{}
	for i, a := range regions {
		for _, b := range regions[i+1:] {
			if rng.IntN(4) > 0 {
				p.RTTms[[2]string{a, b}] = float64(10 + rng.IntN(200))
			}
		}
	}
	if rng.IntN(3) == 0 {
		p.Weights = Weights{LatencyUSDPerMs: rng.Float64() * 0.002, ChurnUSD: rng.Float64(), SpotRiskUSD: rng.Float64()}
	}
	for i := range nDem {
		d := Demand{
			Deployment: fmt.Sprintf("d%d", i), Replicas: rng.IntN(maxR + 1), Runtime: "process",
			Resources: v1.ResourceRequest{CPU: float64(1 + rng.IntN(2)), MemoryBytes: int64(1+rng.IntN(2)) << 30},
		}
		pl := &d.Placement
		if rng.IntN(8) == 0 {
			d.Resources.GPUType, d.Resources.GPUCount = "a100", 1
		}
		if rng.IntN(12) == 0 {
			d.Runtime = "oci"
		}
		if rng.IntN(6) == 0 {
			pl.Clouds = []string{[]string{"aws", "gcp", "azure"}[rng.IntN(3)], "gcp"}
		}
		if rng.IntN(10) == 0 {
			pl.Regions = []string{regions[rng.IntN(5)], regions[rng.IntN(5)]}
		}
		if rng.IntN(8) == 0 {
			pl.Labels = map[string]string{"jurisdiction": "eu"}
		}
		if rng.IntN(3) == 0 {
			pl.Spread.MaxPerCloud = 1 + rng.IntN(3)
		}
		if rng.IntN(3) == 0 {
			pl.Spread.MinClouds = 1 + rng.IntN(3)
		}
		if rng.IntN(2) == 0 {
			pl.Spot = &v1.SpotPolicy{Allowed: true, OnDemandBase: rng.IntN(4)}
		}
		if rng.IntN(3) == 0 {
			pl.Budget = math.Round(rng.Float64()*float64(d.Replicas)*150) / 100
		}
		if rng.IntN(10) == 0 {
			pl.MaxHourlyCost = 0.5 + rng.Float64()
		}
		if rng.IntN(2) == 0 {
			pl.Traffic = map[string]float64{regions[rng.IntN(len(regions))]: 1 + float64(rng.IntN(3)), regions[rng.IntN(len(regions))]: 1}
		}
		if rng.IntN(3) == 0 && len(p.Offerings) > 0 {
			for range 1 + rng.IntN(2) {
				d.Current = append(d.Current, Running{OfferingID: p.Offerings[rng.IntN(len(p.Offerings))].ID, Count: 1 + rng.IntN(3)})
			}
			if rng.IntN(5) == 0 {
				d.Current = append(d.Current, Running{OfferingID: "gone/offering", Count: 1})
			}
		}
		p.Demands = append(p.Demands, d)
	}
	// Quotas on a cloud or one of its regions, now and then nested.
	if rng.IntN(3) == 0 {
		for range 1 + rng.IntN(2) {
			l := locs[rng.IntN(len(locs))]
			q := Quota{Cloud: l.cloud, Limit: rng.IntN(5)}
			if rng.IntN(2) == 0 {
				q.Region = l.region
			}
			p.Quotas = append(p.Quotas, q)
		}
	}
	return p
}

// TestOptimizeMatchesBruteForce compares Optimize with exhaustive search on
// small instances (<= 4 deployments, <= 8 offerings, <= 5 replicas each, a
// third with quotas). The rule-infeasible deployments and the number of
// unplaced replicas must always agree; the objective must be optimal on at
// least 99.5% of the instances and within 2% on every one. (The local search
// over deployments whose rules are not a flow can miss an optimum that needs
// a cyclic exchange of slots with others: over 60,000 instances of other
// seeds, 3 left a replica more unplaced than possible, 18 missed the
// optimum, 5 of them by more than 2%.)
func TestOptimizeMatchesBruteForce(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 200
	}
	rng := rand.New(rand.NewPCG(1, 2))
	missed := 0
	for i := range n {
		p := randomProblem(rng, 1+rng.IntN(4), 2+rng.IntN(7), 5)
		plan := Optimize(p)
		obj, u := checkPlan(t, p, plan)
		bu, bobj, ruleInf := bruteForce(p)
		for di, dp := range plan.Deployments {
			got := dp.Infeasible != "" && !shortOfRoom(dp)
			if got != ruleInf[di] {
				t.Errorf("instance %d: %s rule-infeasible=%v (%q), brute force %v", i, dp.Deployment, got, dp.Infeasible, ruleInf[di])
			}
		}
		if u != bu {
			t.Errorf("instance %d: unplaced %d, brute force %d\n%s", i, u, bu, dumpProblem(p, plan))
			continue
		}
		if obj < bobj-1e-5 {
			t.Errorf("instance %d: objective %.6f below the brute-force optimum %.6f", i, obj, bobj)
		}
		if obj > bobj+1e-5 {
			missed++
			if gap := (obj - bobj) / bobj; gap > 0.02 {
				t.Errorf("instance %d: objective %.6f, brute force %.6f (gap %.2f%%)\n%s", i, obj, bobj, 100*gap, dumpProblem(p, plan))
			} else {
				t.Logf("instance %d: objective %.6f, brute force %.6f (gap %.3f%%)", i, obj, bobj, 100*gap)
			}
		}
	}
	if missed*200 > n {
		t.Errorf("optimum missed on %d of %d instances", missed, n)
	}
}

// TestOptimizeHardConstraints checks every hard constraint of the plans for
// mid-size instances (10-150 deployments, 50-1,000 offerings) and that the
// same input gives the same plan.
func TestOptimizeHardConstraints(t *testing.T) {
	n := 60
	if testing.Short() {
		n = 12
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range n {
		p := genProblem(rng, 10+rng.IntN(140), 50+rng.IntN(950), rng.Float64(), 0.3+1.5*rng.Float64())
		plan := Optimize(p)
		checkPlan(t, p, plan)
		if i%10 == 0 {
			if again := Optimize(p); !reflect.DeepEqual(plan, again) {
				t.Errorf("instance %d: two runs gave different plans", i)
			}
		}
	}
}

func dumpProblem(p Problem, plan Plan) string {
	var b strings.Builder
	for _, o := range p.Offerings {
		fmt.Fprintf(&b, "  off %s price=%.2f int=%.2f cap=%d vcpu=%g mem=%g gpu=%s/%d rt=%v unav=%q\n", o.ID, o.Price, o.InterruptionsPerHour, o.Capacity, o.VCPUs, o.MemoryGiB, o.Accelerator, o.AcceleratorCount, o.Runtimes, o.Unavailable)
	}
	fmt.Fprintf(&b, "  weights %+v quotas %+v\n", p.Weights, p.Quotas)
	for i, d := range p.Demands {
		pl := d.Placement
		fmt.Fprintf(&b, "  dem %s R=%d rt=%s res=%+v clouds=%v regions=%v labels=%v spread=%+v spot=%+v budget=%.2f maxh=%.2f traffic=%v cur=%v\n",
			d.Deployment, d.Replicas, d.Runtime, d.Resources, pl.Clouds, pl.Regions, pl.Labels, pl.Spread, pl.Spot, pl.Budget, pl.MaxHourlyCost, pl.Traffic, d.Current)
		dp := plan.Deployments[i]
		fmt.Fprintf(&b, "    -> obj=%.4f unplaced=%d infeasible=%q", dp.Objective, dp.Unplaced, dp.Infeasible)
		for _, a := range dp.Placements {
			fmt.Fprintf(&b, " %s×%d", a.OfferingID, a.Replicas)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
