package main

import (
	"fmt"
	"math"
	"sort"

	"github.com/aloft-dev/aloft/internal/placement"
)

// planCheck is the independent check of a Plan against the model.
type planCheck struct {
	// Violations of hard constraints (a valid plan has none).
	Violations []string
	// Notes are reporting inconsistencies that break no constraint (the
	// plan's own HourlyCost, Moved, Unplaced, Objective differ from ours).
	Notes []string
	// X[d] is the plan's replicas per offering index for demand d.
	X []map[int]int
	// Infeasible[d] is the plan's verdict.
	Infeasible []bool
}

const budgetTol = 1e-9

// checkPlan checks every hard constraint of every demand the plan places
// (eligibility, capacity and quotas also for the partial placements of
// demands it marks infeasible) and the plan's reporting against ours.
func checkPlan(m *model, plan *placement.Plan) *planCheck {
	p := m.p
	pc := &planCheck{X: make([]map[int]int, len(p.Demands)), Infeasible: make([]bool, len(p.Demands))}
	viol := func(format string, args ...any) {
		if len(pc.Violations) < 1000 {
			pc.Violations = append(pc.Violations, fmt.Sprintf(format, args...))
		}
	}
	note := func(format string, args ...any) {
		if len(pc.Notes) < 1000 {
			pc.Notes = append(pc.Notes, fmt.Sprintf(format, args...))
		}
	}
	if len(plan.Deployments) != len(p.Demands) {
		viol("plan has %d deployments, problem %d demands", len(plan.Deployments), len(p.Demands))
	}
	newUse := map[int]int{}
	var totalCost float64
	for di := range p.Demands {
		d := &p.Demands[di]
		x := map[int]int{}
		pc.X[di] = x
		if di >= len(plan.Deployments) {
			pc.Infeasible[di] = true
			continue
		}
		dp := &plan.Deployments[di]
		if dp.Deployment != d.Deployment {
			viol("%s: plan entry %d is for %q", d.Deployment, di, dp.Deployment)
		}
		pc.Infeasible[di] = dp.Infeasible != ""
		var hourly float64
		for _, a := range dp.Placements {
			oi, ok := m.index[a.OfferingID]
			if !ok {
				viol("%s: unknown offering %q", d.Deployment, a.OfferingID)
				continue
			}
			o := &p.Offerings[oi]
			if a.Replicas < 0 {
				viol("%s: %d replicas on %s", d.Deployment, a.Replicas, a.OfferingID)
				continue
			}
			if a.Replicas == 0 {
				continue
			}
			if !eligible(d, o) {
				viol("%s: %s is not eligible (%s)", d.Deployment, o.ID, whyNot(d, o))
			}
			if a.Cloud != o.Cloud || a.Region != o.Region || a.Spot != o.Spot || a.InstanceType != o.InstanceType || a.Zone != o.Zone {
				note("%s: assignment fields of %s differ from the offering", d.Deployment, o.ID)
			}
			if math.Abs(a.HourlyCost-float64(a.Replicas)*o.Price) > 1e-6 {
				note("%s: %s hourlyCost %.6f, replicas x price %.6f", d.Deployment, o.ID, a.HourlyCost, float64(a.Replicas)*o.Price)
			}
			x[oi] += a.Replicas
			hourly += float64(a.Replicas) * o.Price
		}
		totalCost += hourly
		n := 0
		for oi, c := range x {
			n += c
			newUse[oi] += m.newInstances(di, oi, c)
		}
		if math.Abs(dp.HourlyCost-hourly) > 1e-6 {
			note("%s: hourlyCost %.6f, placements add up to %.6f", d.Deployment, dp.HourlyCost, hourly)
		}
		u := 0
		if pc.Infeasible[di] {
			if n > d.Replicas {
				viol("%s (infeasible): %d replicas placed, %d asked", d.Deployment, n, d.Replicas)
			}
			u = max(0, d.Replicas-n)
			if dp.Unplaced != u {
				note("%s (infeasible): unplaced %d, expected %d", d.Deployment, dp.Unplaced, u)
			}
			if u == 0 {
				note("%s: marked infeasible (%s) but fully placed", d.Deployment, dp.Infeasible)
			}
		}
		for _, v := range checkDemand(m, di, x, u) {
			viol("%s: %s", d.Deployment, v)
		}
		// (A demand that gets no placement at all reports Moved 0.)
		if mv := m.moved(di, x); mv != dp.Moved && !(pc.Infeasible[di] && n == 0 && dp.Moved == 0) {
			note("%s: moved %d, we count %d", d.Deployment, dp.Moved, mv)
		}
	}
	keys := make([]int, 0, len(newUse))
	for oi := range newUse {
		keys = append(keys, oi)
	}
	sort.Ints(keys)
	for _, oi := range keys {
		o := &p.Offerings[oi]
		if o.Capacity >= 0 && newUse[oi] > o.Capacity {
			viol("offering %s: %d new instances, capacity %d", o.ID, newUse[oi], o.Capacity)
		}
	}
	for _, q := range p.Quotas {
		n := 0
		for _, oi := range keys {
			if inQuota(&q, &p.Offerings[oi]) {
				n += newUse[oi]
			}
		}
		if n > max(q.Limit, 0) {
			viol("quota cloud %s region %q: %d new instances, limit %d", q.Cloud, q.Region, n, q.Limit)
		}
	}
	if math.Abs(plan.HourlyCost-totalCost) > 1e-6*max(1, totalCost) {
		note("plan hourlyCost %.6f, placements add up to %.6f", plan.HourlyCost, totalCost)
	}
	return pc
}

// checkDemand checks demand di's own hard constraints (all but capacity and
// eligibility) for placement x with u replicas unplaced (each unplaced
// replica relaxes minClouds and onDemandBase by one); it returns the
// violations.
func checkDemand(m *model, di int, x map[int]int, u int) []string {
	p := m.p
	d := &p.Demands[di]
	var out []string
	n, onDemand := 0, 0
	var cost float64
	perCloud := map[string]int{}
	for oi, c := range x {
		o := &p.Offerings[oi]
		n += c
		if !o.Spot {
			onDemand += c
		}
		cost += o.Price * float64(c)
		if c > 0 {
			perCloud[o.Cloud] += c
		}
	}
	if n+u != d.Replicas {
		out = append(out, fmt.Sprintf("%d replicas placed (%d unplaced), %d asked", n, u, d.Replicas))
	}
	if mpc := d.Placement.Spread.MaxPerCloud; mpc > 0 {
		for c, k := range perCloud {
			if k > mpc {
				out = append(out, fmt.Sprintf("%d replicas on cloud %s, spread.maxPerCloud %d", k, c, mpc))
			}
		}
	}
	if mc := minClouds(d); len(perCloud)+u < mc {
		out = append(out, fmt.Sprintf("%d clouds used (%d unplaced), spread.minClouds %d", len(perCloud), u, d.Placement.Spread.MinClouds))
	}
	if b := onDemandBase(d); onDemand+u < b {
		out = append(out, fmt.Sprintf("%d on-demand replicas (%d unplaced), spot.onDemandBase %d", onDemand, u, b))
	}
	if B := d.Placement.Budget; B > 0 && cost > B+budgetTol {
		out = append(out, fmt.Sprintf("hourly cost %.6f over budget %.6f", cost, B))
	}
	sort.Strings(out)
	return out
}

// whyNot names the first eligibility rule o breaks for d.
func whyNot(d *placement.Demand, o *placement.Offering) string {
	probe := *d
	switch {
	case o.Unavailable != "":
		return "unavailable: " + o.Unavailable
	case o.Spot && (d.Placement.Spot == nil || !d.Placement.Spot.Allowed):
		return "spot not allowed"
	case d.Placement.MaxHourlyCost > 0 && o.Price > d.Placement.MaxHourlyCost:
		return fmt.Sprintf("price %.6f over maxHourlyCost %.6f", o.Price, d.Placement.MaxHourlyCost)
	}
	probe.Placement.Labels = nil
	if !eligible(&probe, o) {
		return "runtime, cloud, region or resources"
	}
	return "labels"
}

// evalResult is our evaluation of a placement of some demands.
type evalResult struct {
	Objective  float64 // cost + latency + risk + churn, USD/h
	HourlyCost float64
	Moved      int
}

// evaluate sums our objective over the demands in ds for placements x.
func evaluate(m *model, ds []int, x func(di int) map[int]int) evalResult {
	var r evalResult
	for _, di := range ds {
		obj, cost, mv := m.objective(di, x(di))
		r.Objective += obj
		r.HourlyCost += cost
		r.Moved += mv
	}
	return r
}
