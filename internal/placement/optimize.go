package placement

// Optimize and PlanOne: the model they solve and how are in the package
// documentation (placement.go).

import (
	"fmt"
	"slices"
)

// Optimize places every demand of p: the model and the algorithm are in the
// package documentation.
func Optimize(p Problem) Plan {
	s := newSolver(&p)
	s.prepare()
	sol := s.solve()
	return s.plan(sol)
}

// PlanOne places one demand against offerings (whose Capacity already excludes
// other deployments' use).
func PlanOne(d Demand, offerings []Offering, rtt map[[2]string]float64, w Weights) DeploymentPlan {
	p := Optimize(Problem{Demands: []Demand{d}, Offerings: offerings, RTTms: rtt, Weights: w})
	return p.Deployments[0]
}

// localBudget bounds the improvement moves (in nodes settled by the flow's
// shortest-path searches, a deterministic measure): instances the size of a
// cluster's fleet stay within it many times over; a fleet of thousands of
// deployments competing for scarce offerings stops improving there.
const localBudget = 600_000

// jointRestartWork: when the relaxed joint flow took at most this much work,
// the search starts from a second joint flow that carries the multipliers.
const jointRestartWork = 400_000

func (s *solver) fullCap(o int32) int64 {
	if !s.finite[o] {
		return capInf
	}
	return int64(s.offs[o].Capacity)
}

func (s *solver) solve() []dsol {
	sol := make([]dsol, len(s.dems))
	var act []*dem
	for _, d := range s.dems {
		switch {
		case d.infeasible != "":
			sol[d.i] = dsol{unplaced: d.R}
		case !d.active():
		case len(s.statics(d).fin) == 0:
			// Nothing it could use has finite capacity: it competes with no
			// one and is placed alone.
			sol[d.i], _ = s.bestFor(d, s.fullCap)
		default:
			act = append(act, d)
		}
	}
	if len(act) == 0 {
		return sol
	}
	// The joint flow with budgets and onDemandBase-with-spread relaxed: if
	// nobody breaks them, it is optimal.
	net := s.newNet(act, s.fullCap, false)
	net.optimize()
	res := net.extract()
	var viol []*dem
	var violPos []int
	for i, d := range act {
		sol[d.i] = res[i]
		if d.special && s.violates(d, res[i]) {
			viol = append(viol, d)
			violPos = append(violPos, i)
		}
	}
	if len(viol) == 0 {
		return sol
	}
	isSpecial := make([]bool, len(s.dems))
	multipliers := func(ds []*dem) {
		for _, d := range ds {
			isSpecial[d.i] = true
			// Multipliers for the rules the flow cannot express, each found
			// with the deployment alone.
			if d.budget > 0 {
				_, t := s.bestFor(d, s.fullCap)
				d.beta = min(t/(1-t+1e-12), 100)
			}
			if d.bb > 0 && (d.mm >= 2 || d.M < d.R) {
				d.lam = s.isolationLambda(d, s.items(d, s.fullCap))
			}
		}
	}
	multipliers(viol)
	special := slices.Clone(viol)
	var l *local
	if net.g.work <= jointRestartWork {
		// Small enough: start again from the joint flow with the
		// multipliers, which places the special ones with the others in
		// mind.
		res := s.global(act, s.fullCap, true)
		for i, d := range act {
			sol[d.i] = res[i]
		}
		var regular []*dem
		for _, d := range act {
			if !isSpecial[d.i] {
				regular = append(regular, d)
			}
		}
		l = s.newLocal(sol, special, regular)
	} else {
		l = s.fromNet(net, sol, special, violPos)
	}
	work0 := l.net.g.work
	for {
		for _, d := range l.special {
			if s.violates(d, sol[d.i]) {
				l.replace(d, true)
			}
		}
		for range 20 {
			improved := false
			for _, d := range l.special {
				if l.net.g.work-work0 > localBudget {
					break
				}
				replace := func(d *dem) bool { return l.replace(d, false) }
				if l.try(d, 0, replace) {
					improved = true
				}
				switch {
				case l.try(d, 1, l.take), l.try(d, 2, l.viaFlow):
					improved = true
				case l.unplacedAnywhere() && (l.try(d, 3, l.yield) || l.try(d, 4, l.shed)):
					improved = true
				}
			}
			if !improved || l.net.g.work-work0 > localBudget {
				break
			}
		}
		// Deployments left in the flow whose relaxed rule broke become
		// special too, and the search goes on.
		l.net.extractInto(sol)
		viol = viol[:0]
		for _, d := range act {
			if !isSpecial[d.i] && d.special && s.violates(d, sol[d.i]) {
				viol = append(viol, d)
			}
		}
		if len(viol) == 0 {
			return sol
		}
		multipliers(viol)
		l.promote(viol)
	}
}

func (s *solver) objective(d *dem, x []xo) (obj, hourly float64, moved int) {
	kept := 0
	for _, a := range x {
		obj += float64(a.n) * s.cost(d, a.off)
		hourly += float64(a.n) * s.offs[a.off].Price
		kept += min(a.n, d.cur(a.off))
	}
	moved = min(d.curTotal, d.R) - kept
	obj += s.w.ChurnUSD * float64(moved)
	return obj, hourly, moved
}

func (s *solver) plan(sol []dsol) Plan {
	out := Plan{Deployments: make([]DeploymentPlan, len(s.dems))}
	for _, d := range s.dems {
		dp := DeploymentPlan{Deployment: d.d.Deployment, Placements: []Assignment{}}
		if len(d.cls.rejected) > 0 {
			dp.Rejected = append([]CandidateRejection(nil), d.cls.rejected...)
		}
		if d.infeasible != "" {
			dp.Infeasible = d.infeasible
			dp.Unplaced = d.R
			out.Deployments[d.i] = dp
			continue
		}
		x := sol[d.i].x
		for _, a := range x {
			o := &s.offs[a.off]
			dp.Placements = append(dp.Placements, Assignment{
				OfferingID: o.ID, Cloud: o.Cloud, Region: o.Region, Zone: o.Zone,
				InstanceType: o.InstanceType, Spot: o.Spot, Replicas: a.n,
				HourlyCost: float64(a.n) * o.Price,
			})
		}
		if d.R > 0 {
			dp.Objective, dp.HourlyCost, dp.Moved = s.objective(d, x)
		}
		if u := sol[d.i].unplaced; u > 0 {
			dp.Unplaced = u
			dp.Infeasible = fmt.Sprintf("capacity: only %d of %d replicas fit in the feasible offerings", d.R-u, d.R)
		}
		out.HourlyCost += dp.HourlyCost
		out.Objective += dp.Objective
		out.Deployments[d.i] = dp
	}
	return out
}
