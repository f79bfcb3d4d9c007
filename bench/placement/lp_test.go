package main

import (
	"bytes"
	"math"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/placement"
)

// tinyProblem has an optimum worked out by hand (DefaultWeights: $0.0005
// per ms, $0.50 per move, $0.25 per interruption):
//
//	offerings        cloud  price  notes                       c(d,o) w/o latency
//	A aws/us-east-1  aws    1.0    unlimited                   1.00
//	B gcp/us-central gcp    1.5    capacity 1                  1.50
//	C gcp/us-central gcp    0.4    spot, 0.2 interruptions/h   0.45
//	D azure/eastus   azure  0.8    unavailable                 -
//	E lambda/us-east lambda 0.9    runs oci only               -
//
//	web: 4 replicas, spot allowed with onDemandBase 1, minClouds 2:
//	     3 C + 1 A = 1.35 + 1.00                                = 2.35
//	api: 2 replicas, on-demand, traffic all from us-central1 (RTT to
//	     us-east-1 20 ms: A costs 1.01), 1 current on B: keep B (1.50)
//	     rather than move it (1.01 + 0.50 churn), add A            = 2.51
//	budgeted: 3 replicas, budget 3.6, maxPerCloud 2: 2 A + 1 B (the one
//	     new B; 3 A breaks maxPerCloud)                           = 3.50
//	nowhere: labels jurisdiction=mars: nothing is eligible (infeasible)
//
// Optimum of the three feasible demands: 8.36.
func tinyProblem() *placement.Problem {
	gi := v1.GiB
	off := func(id, cloud, region string, price float64, spot bool, capacity int) placement.Offering {
		return placement.Offering{ID: id, Cloud: cloud, Region: region, InstanceType: "t", Runtimes: []string{"process"},
			Labels: map[string]string{"jurisdiction": "us"}, VCPUs: 4, MemoryGiB: 16, Price: price, Spot: spot, Capacity: capacity}
	}
	p := &placement.Problem{
		Offerings: []placement.Offering{
			off("A", "aws", "us-east-1", 1.0, false, -1),
			off("B", "gcp", "us-central1", 1.5, false, 1),
			off("C", "gcp", "us-central1", 0.4, true, -1),
			off("D", "azure", "eastus", 0.8, false, -1),
			off("E", "lambda", "us-east-1", 0.9, false, -1),
		},
		RTTms: map[[2]string]float64{{"us-central1", "us-east-1"}: 20},
	}
	p.Offerings[2].InterruptionsPerHour = 0.2
	p.Offerings[3].Unavailable = "cordoned"
	p.Offerings[4].Runtimes = []string{"oci"}
	res := v1.ResourceRequest{CPU: 1, MemoryBytes: gi}
	p.Demands = []placement.Demand{
		{Deployment: "web", Replicas: 4, Runtime: "process", Resources: res, Placement: v1.Placement{
			Spot: &v1.SpotPolicy{Allowed: true, OnDemandBase: 1}, Spread: v1.Spread{MinClouds: 2}}},
		{Deployment: "api", Replicas: 2, Runtime: "process", Resources: res, Placement: v1.Placement{
			Traffic: map[string]float64{"us-central1": 1}},
			Current: []placement.Running{{OfferingID: "B", Count: 1}}},
		{Deployment: "budgeted", Replicas: 3, Runtime: "process", Resources: res, Placement: v1.Placement{
			Budget: 3.6, Spread: v1.Spread{MaxPerCloud: 2}}},
		{Deployment: "nowhere", Replicas: 1, Runtime: "process", Resources: res, Placement: v1.Placement{
			Labels: map[string]string{"jurisdiction": "mars"}}},
	}
	return p
}

// tinyOptimum is the hand-worked optimal placement (offering index -> replicas).
var tinyOptimum = []map[int]int{{2: 3, 0: 1}, {1: 1, 0: 1}, {0: 2, 1: 1}, {}}

const tinyObjective = 8.36

func testSolver(t *testing.T, name string) *solver {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed (apt-get install -y %s)", name, map[string]string{"cbc": "coinor-cbc", "glpsol": "glpk-utils"}[name])
	}
	s, err := findSolver(name)
	if err != nil {
		t.Fatal(err)
	}
	s.Timeout, s.Dir = 30*time.Second, t.TempDir()
	return s
}

func TestModelOfTinyProblem(t *testing.T) {
	m := newModel(tinyProblem(), true)
	wantElig := [][]int{{0, 1, 2}, {0, 1}, {0, 1}, nil}
	for di, w := range wantElig {
		if !slices.Equal(m.dem[di].elig, w) {
			t.Errorf("demand %d eligible %v, want %v", di, m.dem[di].elig, w)
		}
	}
	if c := m.dem[0].cost[2]; math.Abs(c-0.45) > 1e-12 {
		t.Errorf("spot cost %v, want 0.45", c)
	}
	if c := m.dem[1].cost[0]; math.Abs(c-1.01) > 1e-12 {
		t.Errorf("latency cost %v, want 1.01", c)
	}
	ev := evaluate(m, []int{0, 1, 2}, func(di int) map[int]int { return tinyOptimum[di] })
	if math.Abs(ev.Objective-tinyObjective) > 1e-9 || ev.Moved != 0 || math.Abs(ev.HourlyCost-(1.2+1+2.5+3.5)) > 1e-9 {
		t.Errorf("evaluation %+v, want objective %v", ev, tinyObjective)
	}
	// Moving api off B costs the churn penalty.
	obj, _, moved := m.objective(1, map[int]int{0: 2})
	if moved != 1 || math.Abs(obj-2.52) > 1e-9 {
		t.Errorf("api on 2 A: objective %v moved %d, want 2.52, 1", obj, moved)
	}
}

func TestMILPTinyProblem(t *testing.T) {
	for _, name := range []string{"cbc", "glpsol"} {
		t.Run(name, func(t *testing.T) {
			s := testSolver(t, name)
			p := tinyProblem()
			m := newModel(p, true)
			e := &exactSolver{s: s, m: m, tag: "tiny", res: &exactResult{}}
			if err := e.run(); err != nil {
				t.Fatal(err)
			}
			r := e.res
			if !slices.Equal(r.RuleInfeasible, []int{3}) || r.UnplacedTotal != 0 || len(r.Unplaced) != 0 || !slices.Equal(r.Rest, []int{0, 1, 2}) {
				t.Fatalf("rule-infeasible %v, unplaced %d %v, rest %v", r.RuleInfeasible, r.UnplacedTotal, r.Unplaced, r.Rest)
			}
			if r.Status != "optimal" || math.Abs(r.Objective-tinyObjective) > 1e-6 {
				t.Fatalf("status %s objective %v, want optimal %v", r.Status, r.Objective, tinyObjective)
			}
			for di := range 3 {
				if !sameX(r.X[di], tinyOptimum[di]) {
					t.Errorf("%s: %v, want %v", p.Demands[di].Deployment, r.X[di], tinyOptimum[di])
				}
			}

			// No new instance of B left: budgeted (at most 2 per cloud, only
			// aws and gcp eligible) must leave one replica unplaced; api
			// keeps its current B, which needs no capacity.
			p.Offerings[1].Capacity = 0
			m = newModel(p, true)
			e = &exactSolver{s: s, m: m, tag: "tiny-slack", res: &exactResult{}}
			if err := e.run(); err != nil {
				t.Fatal(err)
			}
			r = e.res
			if r.UnplacedTotal != 1 || r.Unplaced[2] != 1 || !sameX(r.X[2], map[int]int{0: 2}) || math.Abs(r.Objective-(2.35+2.51+2)) > 1e-6 {
				t.Errorf("slack: unplaced %d %v, budgeted %v, objective %v, want 1 {2:1}, {0:2}, 6.86", r.UnplacedTotal, r.Unplaced, r.X[2], r.Objective)
			}
		})
	}
}

func sameX(a, b map[int]int) bool {
	n := 0
	for oi, k := range a {
		if k != 0 {
			n++
			if b[oi] != k {
				return false
			}
		}
	}
	return n == len(b)
}

// Two demands that each fit alone but not together: one replica stays
// unplaced (which demand's is a tie); a minClouds no offering set meets is
// ruled out by the rules model, not by capacity.
func TestMILPContention(t *testing.T) {
	s := testSolver(t, "cbc")
	p := tinyProblem()
	h := v1.ResourceRequest{CPU: 1, MemoryBytes: v1.GiB}
	p.Demands = []placement.Demand{
		{Deployment: "x", Replicas: 1, Runtime: "process", Resources: h, Placement: v1.Placement{Clouds: []string{"gcp"}}},
		{Deployment: "y", Replicas: 1, Runtime: "process", Resources: h, Placement: v1.Placement{Clouds: []string{"gcp"}}},
		{Deployment: "z", Replicas: 2, Runtime: "process", Resources: h},
		{Deployment: "w", Replicas: 3, Runtime: "process", Resources: h, Placement: v1.Placement{Spread: v1.Spread{MinClouds: 3}}},
	}
	m := newModel(p, true)
	e := &exactSolver{s: s, m: m, tag: "cont", res: &exactResult{}}
	if err := e.run(); err != nil {
		t.Fatal(err)
	}
	r := e.res
	if !slices.Equal(r.RuleInfeasible, []int{3}) || r.UnplacedTotal != 1 || len(r.Unplaced) != 1 || r.Unplaced[2] != 0 || r.Status != "optimal" {
		t.Fatalf("rule-infeasible %v unplaced %d %v status %s", r.RuleInfeasible, r.UnplacedTotal, r.Unplaced, r.Status)
	}
	// x, y: 1.5 on B for one of them; z: 2 A.
	if math.Abs(r.Objective-3.5) > 1e-6 {
		t.Errorf("objective %v, want 3.5", r.Objective)
	}
}

// Quotas: aws may start 2 more instances, its region us-east-1 only 1; a
// replica that runs there already needs none. x gets 1 A and the 1 B
// and leaves one replica unplaced; y keeps its A.
func TestMILPQuota(t *testing.T) {
	s := testSolver(t, "cbc")
	p := tinyProblem()
	h := v1.ResourceRequest{CPU: 1, MemoryBytes: v1.GiB}
	p.Demands = []placement.Demand{
		{Deployment: "x", Replicas: 3, Runtime: "process", Resources: h},
		{Deployment: "y", Replicas: 1, Runtime: "process", Resources: h, Current: []placement.Running{{OfferingID: "A", Count: 1}}},
	}
	p.Quotas = []placement.Quota{{Cloud: "aws", Limit: 2}, {Cloud: "aws", Region: "us-east-1", Limit: 1}}
	m := newModel(p, true)
	e := &exactSolver{s: s, m: m, tag: "quota", res: &exactResult{}}
	if err := e.run(); err != nil {
		t.Fatal(err)
	}
	r := e.res
	if r.UnplacedTotal != 1 || r.Unplaced[0] != 1 || !sameX(r.X[0], map[int]int{0: 1, 1: 1}) || !sameX(r.X[1], map[int]int{0: 1}) || math.Abs(r.Objective-3.5) > 1e-6 {
		t.Errorf("unplaced %d %v, x %v, y %v, objective %v; want 1 {0:1}, {0:1 1:1}, {0:1}, 3.5", r.UnplacedTotal, r.Unplaced, r.X[0], r.X[1], r.Objective)
	}
	plan := optimize(*p)
	if pc := checkPlan(m, &plan); len(pc.Violations) != 0 || !sameX(pc.X[0], map[int]int{0: 1, 1: 1}) {
		t.Errorf("optimizer: %v, violations %v", pc.X, pc.Violations)
	}
	if got := plan.Deployments[0].Infeasible; !strings.HasPrefix(got, "quota: cloud aws region us-east-1 allows 1 more replicas") {
		t.Errorf("x: infeasible %q", got)
	}
	// Two new A's break the region's quota.
	bad := planOf(p, []map[int]int{{0: 2, 1: 1}, {0: 1}})
	pc := checkPlan(m, bad)
	if len(pc.Violations) != 1 || !strings.Contains(pc.Violations[0], `quota cloud aws region "us-east-1": 2 new instances, limit 1`) {
		t.Errorf("violations %v", pc.Violations)
	}
	var buf bytes.Buffer
	if _, err := writeLP(&buf, m, lpSpec{Demands: []int{0, 1}}); err != nil {
		t.Fatal(err)
	}
	if lp := buf.String(); !strings.Contains(lp, "quo0: + n0_0 + n1_0 <= 2") || !strings.Contains(lp, "quo1: + n0_0 + n1_0 <= 1") {
		t.Errorf("quota rows missing:\n%s", lp)
	}
}

func TestWriteLPShape(t *testing.T) {
	m := newModel(tinyProblem(), true)
	var buf bytes.Buffer
	vars, err := writeLP(&buf, m, lpSpec{Demands: []int{0, 1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	lp := buf.String()
	for _, want := range []string{
		"Minimize", "Subject To", "cnt0:", "mcl0:", "odb0:", "bud2:", "mpc2_", "chu1:", "cap1:", "Bounds", "General", "Binary", "End",
		" 0 <= k1_1 <= 1\n", // keep at most the 1 current on B
	} {
		if !strings.Contains(lp, want) {
			t.Errorf("LP lacks %q:\n%s", want, lp)
		}
	}
	if strings.Contains(lp, "n0_3") || strings.Contains(lp, "n0_4") {
		t.Errorf("LP has columns for ineligible offerings:\n%s", lp)
	}
	if len(vars.x) != 3+2+2+1 { // n for 3+2+2 eligible pairs, k for api on B
		t.Errorf("%d x columns: %v", len(vars.x), vars.x)
	}
	if _, err := writeLP(&buf, m, lpSpec{Demands: []int{3}}); err == nil {
		t.Error("a demand without an eligible offering should be refused")
	}
}

func TestCheckPlan(t *testing.T) {
	p := tinyProblem()
	m := newModel(p, true)
	plan := planOf(p, tinyOptimum)
	plan.Deployments[3].Infeasible = "no offering has jurisdiction=mars"
	plan.Deployments[3].Unplaced = 1
	pc := checkPlan(m, plan)
	if len(pc.Violations) != 0 || len(pc.Notes) != 0 {
		t.Fatalf("optimal plan: violations %v notes %v", pc.Violations, pc.Notes)
	}
	bad := planOf(p, []map[int]int{
		{2: 4},       // web: no on-demand, one cloud
		{1: 2},       // api: one new B (capacity 1 ...)
		{1: 1, 0: 2}, // budgeted: ... and another: capacity 1 exceeded
		{0: 1},       // nowhere: not eligible and not marked infeasible
	})
	pc = checkPlan(m, bad)
	want := []string{"spot.onDemandBase", "spread.minClouds", "capacity 1", "not eligible"}
	for _, w := range want {
		found := false
		for _, v := range pc.Violations {
			found = found || strings.Contains(v, w)
		}
		if !found {
			t.Errorf("no violation mentions %q: %v", w, pc.Violations)
		}
	}
	over := planOf(p, []map[int]int{{2: 3, 0: 1}, {1: 1, 0: 1}, {1: 1, 0: 1, 2: 1}, {}})
	over.Deployments[3].Infeasible = "x"
	pc = checkPlan(m, over)
	if len(pc.Violations) != 1 || !strings.Contains(pc.Violations[0], "budgeted: ") || !strings.Contains(pc.Violations[0], "not eligible") {
		t.Errorf("spot for an on-demand-only deployment: %v", pc.Violations)
	}
}

// A demand marked infeasible may be placed in part: each unplaced replica
// relaxes minClouds and onDemandBase by one; the other rules still hold.
func TestCheckPartialPlacement(t *testing.T) {
	p := tinyProblem()
	m := newModel(p, true)
	for _, tc := range []struct {
		web        map[int]int
		violations int
		notes      int
	}{
		{map[int]int{2: 3}, 0, 0}, // 1 unplaced: one cloud and no on-demand will do
		{map[int]int{}, 0, 0},
		{map[int]int{2: 4}, 2, 1}, // fully placed: both rules apply, and it is not infeasible
		{map[int]int{3: 1}, 1, 0}, // D is unavailable
	} {
		x := append([]map[int]int{tc.web}, tinyOptimum[1:]...)
		plan := planOf(p, x)
		plan.Deployments[0].Infeasible = "capacity: ..."
		plan.Deployments[0].Unplaced = 4
		for _, n := range tc.web {
			plan.Deployments[0].Unplaced -= n
		}
		plan.Deployments[3].Infeasible, plan.Deployments[3].Unplaced = "labels", 1
		pc := checkPlan(m, plan)
		if len(pc.Violations) != tc.violations || len(pc.Notes) != tc.notes {
			t.Errorf("web %v: violations %v, notes %v; want %d, %d", tc.web, pc.Violations, pc.Notes, tc.violations, tc.notes)
		}
	}
}

func planOf(p *placement.Problem, x []map[int]int) *placement.Plan {
	plan := &placement.Plan{}
	for di, d := range p.Demands {
		dp := placement.DeploymentPlan{Deployment: d.Deployment}
		for oi := range p.Offerings {
			if n := x[di][oi]; n > 0 {
				o := p.Offerings[oi]
				dp.Placements = append(dp.Placements, placement.Assignment{OfferingID: o.ID, Cloud: o.Cloud, Region: o.Region,
					InstanceType: o.InstanceType, Spot: o.Spot, Replicas: n, HourlyCost: float64(n) * o.Price})
				dp.HourlyCost += float64(n) * o.Price
			}
		}
		plan.Deployments = append(plan.Deployments, dp)
		plan.HourlyCost += dp.HourlyCost
	}
	return plan
}

func TestGenerateDeterministic(t *testing.T) {
	pool := []poolOffering{
		{ID: "aws/us-east-1/a/t/ondemand", Cloud: "aws", Region: "us-east-1", Zone: "a", InstanceType: "t", VCPUs: 8, MemoryGiB: 32, Price: 0.4},
		{ID: "gcp/europe-west4/b/g/ondemand", Cloud: "gcp", Region: "europe-west4", Zone: "b", InstanceType: "g", VCPUs: 12, MemoryGiB: 85, Price: 3, Accelerator: "L4", AccelCount: 1},
		{ID: "runpod/SE/x/r/spot", Cloud: "runpod", Region: "SE", InstanceType: "r", VCPUs: 16, MemoryGiB: 24, Price: 0.3, Spot: true, Accelerator: "RTX4090", AccelCount: 1},
	}
	cfg := genConfig{MinDeployments: 20, MaxDeployments: 30, MinOfferings: 2, MaxOfferings: 3, Current: true}
	a, b := genInstance(pool, 7, 3, cfg), genInstance(pool, 7, 3, cfg)
	if len(a.Demands) != len(b.Demands) || len(a.Offerings) != len(b.Offerings) {
		t.Fatal("not deterministic")
	}
	for i := range a.Demands {
		if a.Demands[i].Replicas != b.Demands[i].Replicas || a.Demands[i].Resources != b.Demands[i].Resources {
			t.Fatal("not deterministic")
		}
		d := a.Demands[i]
		if d.Replicas < 1 || d.Replicas > 20 || d.Resources.CPU <= 0 || d.Resources.MemoryBytes <= 0 {
			t.Errorf("bad demand %+v", d)
		}
		if d.Resources.GPUCount > 0 && d.Resources.GPUType != strings.ToLower(d.Resources.GPUType) {
			t.Errorf("GPU type %q not lower-case", d.Resources.GPUType)
		}
		if sp := d.Placement.Spot; sp != nil && sp.OnDemandBase > d.Replicas {
			t.Errorf("onDemandBase %d > replicas %d", sp.OnDemandBase, d.Replicas)
		}
	}
}

func TestRTT(t *testing.T) {
	v, _ := rttMs("us-east-1", "eu-west-2")
	if v < 70 || v > 100 {
		t.Errorf("Virginia-London %v ms", v)
	}
	p := &placement.Problem{RTTms: map[[2]string]float64{{"b", "a"}: 42}}
	if rtt(p, "a", "b") != 42 || rtt(p, "b", "a") != 42 || rtt(p, "a", "a") != 0 || rtt(p, "a", "c") != placement.DefaultRTTms {
		t.Error("rtt lookup")
	}
	d := &placement.Demand{Placement: v1.Placement{Traffic: map[string]float64{"a": 3, "c": 1}}}
	if l := latency(p, d, "b"); math.Abs(l-(3*42+1*100)/4.0) > 1e-12 {
		t.Errorf("latency %v", l)
	}
}
