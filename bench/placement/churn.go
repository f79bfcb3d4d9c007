package main

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"

	"github.com/aloft-dev/aloft/internal/placement"
)

type churnResult struct {
	Deployments     int     `json:"deployments"`
	Offerings       int     `json:"offerings"`
	Region          string  `json:"lostRegion"`
	LostOfferings   int     `json:"lostOfferings"`
	InLostRegionAll int     `json:"replicasInLostRegion"`
	InLostRegion    int     `json:"replicasInLostRegionCompared"` // of the compared demands: the fewest moves possible
	Compared        int     `json:"comparedDemands"`              // placed before and after by the optimizer, and by the MILP
	Moved           int     `json:"moved"`
	MovedOutside    int     `json:"movedOutsideLostRegion"` // replicas moved that did not have to
	CostBefore      float64 `json:"hourlyCostBefore"`
	CostAfter       float64 `json:"hourlyCostAfter"`
	ObjAfter        float64 `json:"objectiveAfter"`
	InfeasibleAfter int     `json:"infeasibleAfter"`
	NewlyInfeasible int     `json:"newlyInfeasible"`
	Violations      int     `json:"violations"`
	ReplanSec       float64 `json:"replanSeconds"`
	// The MILP's optimal re-plan of the same demands (-1 / NaN when it has no answer).
	MILPStatus     string  `json:"milpStatus"`
	MILPMoved      int     `json:"milpMoved"`
	MILPCostAfter  float64 `json:"milpHourlyCostAfter"`
	MILPObjAfter   float64 `json:"milpObjectiveAfter"`
	MILPInfeasible int     `json:"milpInfeasible"`
	GapPct         float64 `json:"gapPercent"`
}

// churnRun plans a 100-deployment instance, loses the region holding most
// of its replicas, and re-plans with the first plan as Current.
func churnRun(s *solver, pool []poolOffering, seed uint64) (*churnResult, error) {
	p1 := genInstance(pool, seed, 2_000_000, genConfig{MinDeployments: 100, MaxDeployments: 100, MinOfferings: 1000, MaxOfferings: 1000})
	m1 := newModel(p1, false)
	plan1 := optimize(*p1)
	pc1 := checkPlan(m1, &plan1)
	if len(pc1.Violations) > 0 {
		return nil, fmt.Errorf("churn: the first plan violates constraints: %s", pc1.Violations[0])
	}
	// The region with the most replicas (ties: by name).
	perRegion := map[string]int{}
	for _, x := range pc1.X {
		for oi, n := range x {
			perRegion[p1.Offerings[oi].Region] += n
		}
	}
	regionsByLoad := slices.Sorted(maps.Keys(perRegion))
	sort.SliceStable(regionsByLoad, func(i, j int) bool { return perRegion[regionsByLoad[i]] > perRegion[regionsByLoad[j]] })
	if len(regionsByLoad) == 0 {
		return nil, fmt.Errorf("churn: the first plan placed nothing")
	}
	lost := regionsByLoad[0]
	res := &churnResult{Deployments: len(p1.Demands), Offerings: len(p1.Offerings), Region: lost, MILPMoved: -1, MILPInfeasible: -1,
		MILPCostAfter: math.NaN(), MILPObjAfter: math.NaN(), GapPct: math.NaN()}

	// The second problem: the region's offerings unavailable, capacity and
	// quotas net of the first plan's instances, every placement of the first
	// plan current.
	p2 := &placement.Problem{RTTms: p1.RTTms, Weights: p1.Weights}
	used := map[int]int{}
	for _, x := range pc1.X {
		for oi, n := range x {
			used[oi] += n
		}
	}
	for oi, o := range p1.Offerings {
		if o.Capacity >= 0 {
			o.Capacity = max(0, o.Capacity-used[oi])
		}
		if o.Region == lost {
			o.Unavailable = "region " + lost + " lost"
			res.LostOfferings++
		}
		p2.Offerings = append(p2.Offerings, o)
	}
	// Quotas net of the first plan's instances too (they run now).
	for _, q := range p1.Quotas {
		for oi, n := range used {
			if inQuota(&q, &p1.Offerings[oi]) {
				q.Limit -= n
			}
		}
		p2.Quotas = append(p2.Quotas, q)
	}
	for di, d := range p1.Demands {
		d.Current = nil
		keys := slices.Sorted(maps.Keys(pc1.X[di]))
		for _, oi := range keys {
			d.Current = append(d.Current, placement.Running{OfferingID: p1.Offerings[oi].ID, Count: pc1.X[di][oi]})
			if p1.Offerings[oi].Region == lost {
				res.InLostRegionAll += pc1.X[di][oi]
			}
		}
		p2.Demands = append(p2.Demands, d)
	}
	c := compare(s, p2, "churn")
	res.ReplanSec = c.OptimizerSec
	res.InfeasibleAfter = len(c.OptInfeasible)
	res.Violations = len(c.Violations)
	m2 := newModel(p2, false)
	var both []int
	for di := range p1.Demands {
		inf1, inf2 := pc1.Infeasible[di], slices.Contains(c.OptInfeasible, p2.Demands[di].Deployment)
		if inf2 && !inf1 {
			res.NewlyInfeasible++
		}
		// Compare over the demands both plans (and the MILP) place.
		if !inf1 && !inf2 && !(c.milpX != nil && slices.Contains(c.MILPInfeasible, p2.Demands[di].Deployment)) {
			both = append(both, di)
		}
	}
	before := evaluate(m1, both, func(di int) map[int]int { return pc1.X[di] })
	after := evaluate(m2, both, func(di int) map[int]int { return c.optX[di] })
	res.CostBefore, res.CostAfter, res.ObjAfter, res.Moved = before.HourlyCost, after.HourlyCost, after.Objective, after.Moved
	res.Compared = len(both)
	for _, di := range both {
		for oi, n := range pc1.X[di] {
			if p1.Offerings[oi].Region != lost {
				res.MovedOutside += max(0, n-c.optX[di][oi])
			} else {
				res.InLostRegion += n
			}
		}
	}
	res.MILPStatus = c.Status
	if c.Status != "unsolved" && c.Status != "error" {
		res.MILPInfeasible = len(c.MILPInfeasible)
	}
	if c.milpX != nil {
		mx := evaluate(m2, both, func(di int) map[int]int { return c.milpX[di] })
		res.MILPMoved, res.MILPCostAfter, res.MILPObjAfter = mx.Moved, mx.HourlyCost, mx.Objective
		res.GapPct = relGap(after.Objective, mx.Objective)
	}
	progress("churn: lost %s (%d replicas there): optimizer moved %d in %s, MILP %s moves %d", lost, res.InLostRegionAll, res.Moved, fmtDur(res.ReplanSec), c.Status, res.MILPMoved)
	return res, nil
}
