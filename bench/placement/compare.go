package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"sort"
	"time"

	"github.com/aloft-dev/aloft/internal/placement"
)

// exactResult is the MILP's answer for a problem, found without looking at
// the optimizer's plan.
type exactResult struct {
	// Status: optimal, timelimit (the optimum's solve stopped at the limit
	// with an incumbent), unsolved (no usable answer in time).
	Status string
	// RuleInfeasible: demands that no placement satisfies even with
	// capacity ignored (unique).
	RuleInfeasible []int
	// UnplacedTotal is the fewest replicas of the other demands that must
	// stay unplaced for capacity (U*); Unplaced[d] how many of d's stay
	// unplaced in the optimum found (a set that need not be unique).
	UnplacedTotal int
	Unplaced      map[int]int
	// Rest: the demands other than RuleInfeasible; X their optimal placement.
	Rest      []int
	X         map[int]map[int]int
	Objective float64
	Bound     float64
	// SolveSec is the solve that produced X; TotalSec all solves.
	SolveSec, TotalSec float64
	Solves             int
}

type exactSolver struct {
	s   *solver
	m   *model
	tag string
	res *exactResult
}

func (e *exactSolver) solve(kind string, spec lpSpec) (*solveResult, *lpVars, error) {
	res, vars, err := e.s.solve(e.tag+"-"+kind, func(f *os.File) (*lpVars, error) { return writeLP(f, e.m, spec) })
	if res != nil {
		e.res.TotalSec += res.Wall.Seconds()
		e.res.Solves++
	}
	return res, vars, err
}

// run works out the lexicographic optimum of the model: first the demands
// the rules rule out (stage A), then the fewest unplaced replicas of the
// rest (U*), then the least cost with U* unplaced.
//
//  1. The cost model of every demand; if it is feasible, that is the answer.
//  2. Otherwise the rules model (capacity ignored) finds the rule-infeasible
//     demands; the cost model of the rest is tried if they changed.
//  3. Otherwise slack phase 1 finds U* and phase 2 the optimum with U*.
func (e *exactSolver) run() error {
	m := e.m
	r := e.res
	r.Unplaced = map[int]int{}
	var withElig []int
	for di := range m.p.Demands {
		if len(m.dem[di].elig) == 0 {
			r.RuleInfeasible = append(r.RuleInfeasible, di)
		} else {
			withElig = append(withElig, di)
		}
	}
	tried := false // the cost model of withElig was solved and is infeasible
	if len(r.RuleInfeasible) == 0 {
		res, vars, err := e.solve("joint", lpSpec{Demands: withElig})
		if err != nil {
			return err
		}
		switch res.Status {
		case statusOptimal, statusTimeLimit:
			r.Rest = withElig
			return e.take(res, vars)
		case statusNoSolution:
			r.Status = "unsolved"
			return nil
		}
		tried = true
	}
	rest := withElig
	if len(withElig) > 0 {
		res, vars, err := e.solve("rules", lpSpec{Demands: withElig, Rules: true})
		if err != nil {
			return err
		}
		if res.Status != statusOptimal {
			r.Status = "unsolved"
			return nil
		}
		_, placed, _ := placementOf(res, vars)
		rest = nil
		for _, di := range withElig {
			if placed[di] {
				rest = append(rest, di)
			} else {
				r.RuleInfeasible = append(r.RuleInfeasible, di)
			}
		}
		sort.Ints(r.RuleInfeasible)
	}
	r.Rest = rest
	if len(rest) == 0 {
		r.Status, r.X = "optimal", map[int]map[int]int{}
		return nil
	}
	if !tried || len(rest) < len(withElig) {
		res, vars, err := e.solve("cost", lpSpec{Demands: rest})
		if err != nil {
			return err
		}
		switch res.Status {
		case statusOptimal, statusTimeLimit:
			return e.take(res, vars)
		case statusNoSolution:
			r.Status = "unsolved"
			return nil
		}
	}
	// Capacity leaves some replicas unplaced.
	res, _, err := e.solve("slack1", lpSpec{Demands: rest, Slack: true, UnplacedTotal: -1})
	if err != nil {
		return err
	}
	if res.Status != statusOptimal {
		r.Status = "unsolved"
		return nil
	}
	r.UnplacedTotal = int(math.Round(res.Objective))
	res, vars, err := e.solve("slack2", lpSpec{Demands: rest, Slack: true, UnplacedTotal: r.UnplacedTotal})
	if err != nil {
		return err
	}
	switch res.Status {
	case statusOptimal, statusTimeLimit:
		return e.take(res, vars)
	case statusInfeasible:
		return fmt.Errorf("slack phase 2 infeasible with the phase 1 optimum %d", r.UnplacedTotal)
	}
	r.Status = "unsolved"
	return nil
}

func (e *exactSolver) take(res *solveResult, vars *lpVars) error {
	r := e.res
	r.Status = "optimal"
	if res.Status == statusTimeLimit {
		r.Status = "timelimit"
	}
	r.X, _, r.Unplaced = placementOf(res, vars)
	r.Objective, r.Bound = res.Objective, res.Bound
	r.SolveSec = res.Wall.Seconds()
	return nil
}

// comparison is one optimizer plan against the MILP.
type comparison struct {
	Index        int     `json:"index"`
	Deployments  int     `json:"deployments"`
	Offerings    int     `json:"offerings"`
	Replicas     int     `json:"replicas"`
	Pairs        int     `json:"eligiblePairs"`
	OptimizerSec float64 `json:"optimizerSeconds"`
	// Deterministic: a second run on the same problem gave the same plan.
	Deterministic bool    `json:"deterministic"`
	SolverSec     float64 `json:"solverSeconds"`      // the solve of the optimum
	SolverAllSec  float64 `json:"solverTotalSeconds"` // every solve of the exact pipeline
	Solves        int     `json:"solves"`
	// Status: optimal, timelimit, unsolved, invalid (the plan breaks a hard
	// constraint), disagree (infeasibility verdicts differ), error.
	Status     string   `json:"status"`
	Violations []string `json:"violations,omitempty"`
	Notes      int      `json:"reportingNotes,omitempty"`
	FirstNotes []string `json:"firstNotes,omitempty"`
	// Infeasibility verdicts (deployment names).
	OptInfeasible      []string `json:"optimizerInfeasible,omitempty"`
	OptUnplaced        int      `json:"optimizerUnplacedReplicas"` // of the demands not rule-infeasible
	MILPInfeasible     []string `json:"milpInfeasible,omitempty"`
	MILPRuleInfeasible []string `json:"milpRuleInfeasible,omitempty"`
	MILPUnplaced       int      `json:"milpUnplacedReplicas"` // U*
	AgreeInstance      bool     `json:"infeasibilityAgrees"`
	SameSet            bool     `json:"sameInfeasibleSet"`
	AgreeDemands       int      `json:"demandsAgreeing"`
	Disagreement       string   `json:"disagreement,omitempty"`
	// Objectives over the demands that are not rule-infeasible (USD/h).
	Compared     int     `json:"comparedDemands"`
	OptObjective float64 `json:"optimizerObjective"`
	OptReported  float64 `json:"optimizerReportedObjective"`
	MILPObj      float64 `json:"milpObjective"`
	MILPBound    float64 `json:"milpBound"`
	GapPct       float64 `json:"gapPercent"`
	Err          string  `json:"error,omitempty"`

	milpX     map[int]map[int]int
	milpRest  []int
	optX      []map[int]int
	optInfSet []int
}

// compare runs the optimizer on p and compares its plan with the MILP.
func compare(s *solver, p *placement.Problem, tag string) *comparison {
	m := newModel(p, true)
	c := &comparison{Deployments: len(p.Demands), Offerings: len(p.Offerings), GapPct: math.NaN(), MILPBound: math.NaN(), MILPObj: math.NaN()}
	for di, d := range p.Demands {
		c.Replicas += d.Replicas
		c.Pairs += len(m.dem[di].elig)
	}
	start := time.Now()
	plan := optimize(*p)
	c.OptimizerSec = time.Since(start).Seconds()
	// The contract: the plan is a function of the input only.
	again := optimize(*p)
	a, _ := json.Marshal(plan)
	b, _ := json.Marshal(again)
	c.Deterministic = bytes.Equal(a, b)
	c.OptReported = plan.Objective
	pc := checkPlan(m, &plan)
	c.optX = pc.X
	c.Violations, c.Notes = pc.Violations, len(pc.Notes)
	c.FirstNotes = pc.Notes[:min(len(pc.Notes), 5)]
	names := func(ds []int) []string {
		var out []string
		for _, di := range ds {
			out = append(out, p.Demands[di].Deployment)
		}
		return out
	}
	optU := map[int]int{} // the optimizer's unplaced replicas per demand
	for di, inf := range pc.Infeasible {
		n := 0
		for _, k := range pc.X[di] {
			n += k
		}
		if inf {
			c.optInfSet = append(c.optInfSet, di)
			optU[di] = max(0, p.Demands[di].Replicas-n)
		}
	}
	c.OptInfeasible = names(c.optInfSet)

	e := &exactSolver{s: s, m: m, tag: tag, res: &exactResult{}}
	err := e.run()
	r := e.res
	c.SolverAllSec, c.Solves = r.TotalSec, r.Solves
	if err != nil {
		c.Status, c.Err = "error", err.Error()
		return c
	}
	if r.Status == "unsolved" {
		c.Status = "unsolved"
		return c
	}
	c.SolverSec = r.SolveSec
	c.milpX, c.milpRest = r.X, r.Rest
	milpInf := append([]int(nil), r.RuleInfeasible...)
	for di := range r.Unplaced {
		milpInf = append(milpInf, di)
	}
	sort.Ints(milpInf)
	c.MILPInfeasible, c.MILPRuleInfeasible, c.MILPUnplaced = names(milpInf), names(r.RuleInfeasible), r.UnplacedTotal
	for _, di := range r.Rest {
		c.OptUnplaced += optU[di]
	}
	// A rule-infeasible demand gets no placement (the contract).
	for _, di := range r.RuleInfeasible {
		if len(pc.X[di]) > 0 {
			c.Violations = append(c.Violations, fmt.Sprintf("%s: placements for a demand no placement can satisfy", p.Demands[di].Deployment))
		}
	}

	// Infeasibility agreement: every rule-infeasible demand marked, and the
	// same number of unplaced replicas among the rest (then the optimizer's
	// set of capacity-short demands is as good as the MILP's, even if it
	// differs: the MILP's is one of possibly several optima).
	c.SameSet = slices.Equal(c.optInfSet, milpInf)
	verdict := milpInf
	switch {
	case !subset(r.RuleInfeasible, c.optInfSet):
		c.Disagreement = "a demand no placement satisfies is not marked infeasible"
	case c.OptUnplaced != r.UnplacedTotal:
		c.Disagreement = fmt.Sprintf("%d replicas left unplaced, the fewest possible is %d", c.OptUnplaced, r.UnplacedTotal)
	default:
		c.AgreeInstance = true
		verdict = c.optInfSet
		for _, di := range c.optInfSet { // marked infeasible yet fully placed
			if !slices.Contains(r.RuleInfeasible, di) && optU[di] == 0 {
				c.AgreeInstance, verdict = false, milpInf
				c.Disagreement = p.Demands[di].Deployment + " is marked infeasible but fully placed"
				break
			}
		}
	}
	for di := range p.Demands {
		if slices.Contains(c.optInfSet, di) == slices.Contains(verdict, di) {
			c.AgreeDemands++
		}
	}

	// Our own evaluation of both placements over the rest (not the
	// solver's or the plan's figures); the MILP's must pass the same check.
	milp := evaluate(m, r.Rest, func(di int) map[int]int { return r.X[di] })
	if v := checkPlan(m, milpPlan(m, r)).Violations; len(v) > 0 {
		c.Status, c.Err = "error", fmt.Sprintf("the MILP placement fails the check: %v", v[0])
		return c
	}
	if math.Abs(milp.Objective-r.Objective) > 1e-5*max(1, math.Abs(milp.Objective)) {
		c.Status, c.Err = "error", fmt.Sprintf("MILP objective %.6f, our evaluation of its placement %.6f", r.Objective, milp.Objective)
		return c
	}
	c.MILPObj, c.MILPBound, c.Compared = milp.Objective, r.Bound, len(r.Rest)
	switch {
	case len(c.Violations) > 0:
		c.Status = "invalid"
		return c
	case !c.AgreeInstance:
		c.Status = "disagree"
		return c
	}
	opt := evaluate(m, r.Rest, func(di int) map[int]int { return pc.X[di] })
	c.OptObjective = opt.Objective
	c.Status = r.Status
	if c.Status == "optimal" {
		c.GapPct = relGap(opt.Objective, milp.Objective)
	} else if !math.IsNaN(r.Bound) {
		c.GapPct = relGap(opt.Objective, r.Bound) // an upper bound on the true gap
	}
	return c
}

func subset(a, b []int) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// milpPlan writes the MILP's answer as a Plan, for the checker.
func milpPlan(m *model, r *exactResult) *placement.Plan {
	plan := &placement.Plan{}
	for di, d := range m.p.Demands {
		dp := placement.DeploymentPlan{Deployment: d.Deployment}
		if slices.Contains(r.RuleInfeasible, di) {
			dp.Infeasible, dp.Unplaced = "rules", d.Replicas
		} else if u := r.Unplaced[di]; u > 0 {
			dp.Infeasible, dp.Unplaced = "capacity", u
		}
		for _, oi := range slices.Sorted(maps.Keys(r.X[di])) {
			n := r.X[di][oi]
			if n == 0 {
				continue
			}
			o := &m.p.Offerings[oi]
			dp.Placements = append(dp.Placements, placement.Assignment{OfferingID: o.ID, Cloud: o.Cloud, Region: o.Region, Zone: o.Zone,
				InstanceType: o.InstanceType, Spot: o.Spot, Replicas: n, HourlyCost: float64(n) * o.Price})
			dp.HourlyCost += float64(n) * o.Price
		}
		dp.Moved = m.moved(di, r.X[di])
		plan.Deployments = append(plan.Deployments, dp)
		plan.HourlyCost += dp.HourlyCost
	}
	return plan
}
