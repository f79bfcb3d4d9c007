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

// The improvement moves stop after this much work (nodes settled by the
// flow's shortest-path searches, a deterministic measure): smallBudget when
// the relaxed joint flow was small (at most secondFlowWork; instances of up
// to a few hundred deployments rarely need a tenth of it), largeBudget for
// fleets of thousands of deployments competing for scarce offerings, which
// stop improving there to stay within a second.
const smallBudget, largeBudget = 2_000_000, 600_000

// secondFlowWork: when the relaxed joint flow took at most this much work,
// the search starts from a second joint flow that carries the multipliers.
const secondFlowWork = 400_000

// capOf is o's Capacity, capInf when unlimited.
func (s *solver) capOf(o int32) int64 {
	if !s.finite[o] {
		return capInf
	}
	return int64(s.offs[o].Capacity)
}

func (s *solver) fullCap(o int32) int64 { return s.capOf(o) }

// fullQuota is quota q's whole limit.
func (s *solver) fullQuota(q int32) int64 { return s.quotas[q].limit }

func (s *solver) solve() []dsol {
	sol := make([]dsol, len(s.dems))
	// A demand none of whose useful offerings has a finite capacity competes
	// with no one and is placed alone (in parallel: each writes its own).
	alone := make([]bool, len(s.dems))
	workers := s.workers()
	parallel(len(s.dems), func(w, i int) {
		d := s.dems[i]
		if d.active() && len(workers[w].statics(d).fin) == 0 {
			alone[i] = true
			sol[i], _ = workers[w].bestFor(d, s.fullCap, s.fullQuota)
		}
	})
	var act []*dem
	for _, d := range s.dems {
		switch {
		case d.infeasible != "":
			sol[d.i] = dsol{unplaced: d.R}
		case d.active() && !alone[d.i]:
			act = append(act, d)
		}
	}
	if len(act) == 0 {
		return sol
	}
	// The joint flow with budgets and onDemandBase-with-spread relaxed: if
	// nobody breaks them, it is optimal.
	net := s.newNet(act, s.fullCap, s.fullQuota, false)
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
	c := &coupled{s: s, act: act, isSpecial: make([]bool, len(s.dems))}
	c.multipliers(viol)
	special := slices.Clone(viol)
	if net.g.work > secondFlowWork {
		c.budget = largeBudget
		return c.search(s.fromNet(net, sol, special, violPos), sol)
	}
	c.budget = smallBudget
	// Small enough for a second joint flow: start from the one that carries
	// the multipliers, which places the special ones with the others in mind.
	return c.fromJointFlow(sol)
}

// coupled is the part of the problem that shares finite capacity.
type coupled struct {
	s         *solver
	act       []*dem
	isSpecial []bool
	budget    int64 // work for the improvement moves
}

// multipliers makes ds special and finds the multipliers for the rules the
// flow cannot express, each with the deployment alone.
func (c *coupled) multipliers(ds []*dem) {
	s := c.s
	for _, d := range ds {
		c.isSpecial[d.i] = true
		if d.budget > 0 {
			_, t := s.bestFor(d, s.fullCap, s.fullQuota)
			d.beta = min(t/(1-t+1e-12), 100)
		}
		if d.bb > 0 && (d.mm >= 2 || d.M < d.R) {
			d.lam = s.isolationLambda(d, s.items(d, s.fullCap), s.fullQuota)
		}
	}
}

// fromJointFlow places everything by the joint flow with the multipliers, then
// searches from there.
func (c *coupled) fromJointFlow(sol []dsol) []dsol {
	s := c.s
	res := s.global(c.act, s.fullCap, s.fullQuota, true)
	var special, regular []*dem
	for i, d := range c.act {
		sol[d.i] = res[i]
		if c.isSpecial[d.i] {
			special = append(special, d)
		} else {
			regular = append(regular, d)
		}
	}
	return c.search(s.newLocal(sol, special, regular), sol)
}

// search runs the local search from l's state (sol) until no move helps or
// the work budget is spent, making special every deployment of the flow
// whose relaxed rule breaks, and returns sol.
func (c *coupled) search(l *local, sol []dsol) []dsol {
	s := c.s
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
				if l.net.g.work-work0 > c.budget {
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
			if !improved || l.net.g.work-work0 > c.budget {
				break
			}
		}
		// Deployments left in the flow whose relaxed rule broke become
		// special too, and the search goes on.
		l.net.extractInto(sol)
		var viol []*dem
		for _, d := range c.act {
			if !c.isSpecial[d.i] && d.special && s.violates(d, sol[d.i]) {
				viol = append(viol, d)
			}
		}
		if len(viol) == 0 {
			return sol
		}
		c.multipliers(viol)
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
	var use, quse []int64 // new replicas per offering and per quota, when quotas may explain
	for _, d := range s.dems {
		if d.infeasible == "" && sol[d.i].unplaced > 0 && len(s.quotas) > 0 {
			use, quse = s.usage(sol)
			break
		}
	}
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
			if q := s.blockingQuota(d, use, quse); q >= 0 {
				dp.Infeasible = fmt.Sprintf("quota: %s allows %d more replicas; only %d of %d replicas fit", s.quotaName(q), s.quotas[q].limit, d.R-u, d.R)
			}
		}
		out.HourlyCost += dp.HourlyCost
		out.Objective += dp.Objective
		out.Deployments[d.i] = dp
	}
	return out
}

// usage counts the new replicas of sol per offering and per quota.
func (s *solver) usage(sol []dsol) (use, quse []int64) {
	use = make([]int64, s.n)
	quse = make([]int64, len(s.quotas))
	for _, d := range s.dems {
		for _, a := range sol[d.i].x {
			nw := newN(d, a)
			use[a.off] += nw
			q, k := s.quotaChain(a.off)
			for _, qi := range q[:k] {
				quse[qi] += nw
			}
		}
	}
	return use, quse
}

// blockingQuota is the quota that keeps d's replicas out of an offering
// with room left (of those, the one least costly for d; its cloud's quota
// if full, else its region's), or -1 when none does (capacity, or d's own
// rules, bind).
func (s *solver) blockingQuota(d *dem, use, quse []int64) int32 {
	if use == nil {
		return -1
	}
	best, bestO := int32(-1), int32(-1)
	var bestCost float64
	for gi := range d.cls.groups {
		for _, o := range d.cls.groups[gi].fin {
			if use[o] >= s.capOf(o) {
				continue
			}
			// The wider quota first: when both are full, the cloud's binds
			// every region.
			q, k := s.quotaChain(o)
			for j := k - 1; j >= 0; j-- {
				qi := q[j]
				if quse[qi] < s.quotas[qi].limit {
					continue
				}
				if c := s.cost(d, o); bestO < 0 || c < bestCost || (c == bestCost && s.rank[o] < s.rank[bestO]) {
					best, bestO, bestCost = qi, o, c
				}
				break
			}
		}
	}
	return best
}
