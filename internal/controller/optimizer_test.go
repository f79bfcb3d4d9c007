package controller_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/catalog"
	"github.com/aloft-dev/aloft/internal/provider"
)

// catalogClouds is one local cloud plus "gpucloud", a sim cloud whose
// offerings come from a catalog imported under "gpucat".
func catalogClouds() []v1.CloudConfig {
	clouds := v1.DefaultClouds()[:1]
	return append(clouds, v1.CloudConfig{
		Name: "gpucloud", Provider: v1.ProviderLocal, Region: "us-east-1", Catalog: "gpucat",
		Labels: map[string]string{"jurisdiction": "us"},
	})
}

func importTestCatalog(t *testing.T, e *env) {
	t.Helper()
	offs := []catalog.Offering{
		{Region: "us-east-1", Zone: "use1-az1", InstanceType: "g5.xlarge", Accelerator: "A10G", AcceleratorCount: 1, VCPUs: 4, MemoryGiB: 16, Price: 1.006, SpotPrice: 0.45},
		{Region: "us-west-2", Zone: "usw2-az1", InstanceType: "g5.xlarge", Accelerator: "A10G", AcceleratorCount: 1, VCPUs: 4, MemoryGiB: 16, Price: 1.106},
		{Region: "us-east-1", Zone: "use1-az1", InstanceType: "p5.48xlarge", Accelerator: "H100", AcceleratorCount: 8, VCPUs: 192, MemoryGiB: 2048, Price: 98.32},
		{Region: "us-east-1", Zone: "use1-az1", InstanceType: "m5.large", VCPUs: 2, MemoryGiB: 8, Price: 0.096},
	}
	if err := e.st.ReplaceCatalog(e.ctx, "gpucat", offs, time.Now()); err != nil {
		t.Fatal(err)
	}
}

// A GPU spec lands on the catalog cloud's cheapest fitting offering; the
// replica records say where (region, zone, instance type), and the provider
// is told too.
func TestOptimizerPlacesOnCatalogOffering(t *testing.T) {
	e := newEnv(t, envConfig{clouds: catalogClouds()})
	importTestCatalog(t, e)
	e.apply(newSpec("llm", 2, withGPU("a10g", 1)))
	e.converge("llm", "ready", func() bool { return e.dep("llm").Status.Phase == v1.PhaseReady })
	for _, r := range e.replicas("llm") {
		if r.Cloud != "gpucloud" || r.Region != "us-east-1" || r.InstanceType != "g5.xlarge" || r.Spot || r.HourlyCost != 1.006 {
			t.Errorf("replica %+v, want gpucloud us-east-1 g5.xlarge on-demand at $1.006", r)
		}
	}
	st := e.dep("llm").Status
	if len(st.Replicas) != 2 || st.Replicas[0].InstanceType != "g5.xlarge" || st.Replicas[0].Region != "us-east-1" {
		t.Errorf("status replicas %+v", st.Replicas)
	}
}

// Spot is used only when the spec allows it, above onDemandBase.
func TestOptimizerSpotAboveOnDemandBase(t *testing.T) {
	e := newEnv(t, envConfig{clouds: catalogClouds()})
	importTestCatalog(t, e)
	e.apply(newSpec("llm", 3, withGPU("a10g", 1), func(s *v1.DeploymentSpec) {
		s.Placement.Spot = &v1.SpotPolicy{Allowed: true, OnDemandBase: 1}
	}))
	e.converge("llm", "ready", func() bool { return e.dep("llm").Status.Phase == v1.PhaseReady })
	spot := 0
	for _, r := range e.replicas("llm") {
		if r.Spot {
			spot++
		}
	}
	if spot != 2 {
		t.Errorf("%d spot replicas, want 2 (3 replicas, onDemandBase 1): %+v", spot, e.replicas("llm"))
	}
}

// A capacity error from the provider blocks that offering and the replica
// goes to the next-best one at once, not after a backoff.
func TestOptimizerFailsOverOnCapacityError(t *testing.T) {
	e := newEnv(t, envConfig{clouds: catalogClouds()})
	importTestCatalog(t, e)
	e.sims["gpucloud"].FailOffering("us-east-1", "g5.xlarge", fmt.Errorf("InsufficientInstanceCapacity: %w", provider.ErrCapacity))
	e.apply(newSpec("llm", 1, withGPU("a10g", 1)))
	e.converge("llm", "ready", func() bool { return e.dep("llm").Status.Phase == v1.PhaseReady })
	recs := e.replicas("llm")
	if len(recs) != 1 || recs[0].Region != "us-west-2" {
		t.Fatalf("replicas %+v, want the one on us-west-2 after the capacity error", recs)
	}
	ev := e.events("llm", "CapacityBlocked")
	if len(ev) != 1 || !strings.Contains(ev[0].Message, "gpucloud/us-east-1/use1-az1/g5.xlarge") || !strings.Contains(ev[0].Message, "InsufficientInstanceCapacity") {
		t.Errorf("CapacityBlocked events %+v", ev)
	}
	// The dry run shows the block as the reason the cheaper offering is out.
	plan, err := e.ctl.Plan(e.ctx, newSpec("other", 1, withGPU("a10g", 1)), false)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range plan.Rejected {
		found = found || (strings.Contains(r.Candidate, "us-east-1") && strings.Contains(r.Reason, "capacity error"))
	}
	if !found || len(plan.Placements) != 1 || plan.Placements[0].Region != "us-west-2" {
		t.Errorf("plan %+v", plan)
	}
}

// Plan explains an infeasible spec by its binding constraint.
func TestPlanInfeasibleNamesConstraint(t *testing.T) {
	e := newEnv(t, envConfig{clouds: catalogClouds()})
	importTestCatalog(t, e)
	plan, err := e.ctl.Plan(e.ctx, newSpec("big", 1, withGPU("h100", 8), func(s *v1.DeploymentSpec) {
		s.Placement.Budget = 50
		s.Placement.Clouds = []string{"gpucloud"}
	}), false)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Infeasible == "" || !strings.Contains(plan.Infeasible, "budget") {
		t.Errorf("infeasible = %q, want the budget named", plan.Infeasible)
	}
	plan, err = e.ctl.Plan(e.ctx, newSpec("eu", 1, withGPU("a10g", 1), func(s *v1.DeploymentSpec) {
		s.Placement.Labels = map[string]string{"jurisdiction": "eu"}
	}), false)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Infeasible == "" || !strings.Contains(plan.Infeasible, "jurisdiction") {
		t.Errorf("infeasible = %q, want the label rule named", plan.Infeasible)
	}
}

func withGPU(typ string, n int) func(*v1.DeploymentSpec) {
	return func(s *v1.DeploymentSpec) {
		s.Resources = v1.Resources{CPU: "2", Memory: "8Gi", GPU: &v1.GPU{Type: typ, Count: n}}
	}
}

// When another offering becomes cheaper by more than the churn penalty
// (default $0.50/h per moved replica), a steady deployment moves there the
// way a migration does: replacements first, then each old replica is taken
// out of routing and stopped. A smaller saving moves nothing.
func TestRebalanceMovesToCheaperOffering(t *testing.T) {
	e := newEnv(t, envConfig{clouds: catalogClouds(), rebalance: time.Nanosecond})
	importTestCatalog(t, e)
	old := e.ready(newSpec("llm", 2, withGPU("a10g", 1)))
	for _, r := range e.replicas("llm") {
		if r.Region != "us-east-1" {
			t.Fatalf("replica %s in %s, want us-east-1 (cheapest at first)", r.ID, r.Region)
		}
	}
	reprice := func(west float64) {
		t.Helper()
		offs := []catalog.Offering{
			{Region: "us-east-1", Zone: "use1-az1", InstanceType: "g5.xlarge", Accelerator: "A10G", AcceleratorCount: 1, VCPUs: 4, MemoryGiB: 16, Price: 1.006},
			{Region: "us-west-2", Zone: "usw2-az1", InstanceType: "g5.xlarge", Accelerator: "A10G", AcceleratorCount: 1, VCPUs: 4, MemoryGiB: 16, Price: west},
		}
		if err := e.st.ReplaceCatalog(e.ctx, "gpucat", offs, time.Now()); err != nil {
			t.Fatal(err)
		}
	}

	// $0.20/h cheaper per replica: less than the churn penalty, so they stay.
	reprice(0.806)
	for range 5 {
		e.reconcile("llm")
	}
	if got := ids(e.replicas("llm")); !slices.Equal(got, old) {
		t.Fatalf("replicas %v after a small saving, want %v unchanged", got, old)
	}
	if evs := e.events("llm", "Rebalancing"); len(evs) != 0 {
		t.Fatalf("rebalanced for a $0.20/h saving: %v", evs[0].Message)
	}

	// $0.706/h cheaper: both move.
	reprice(0.30)
	e.converge("llm", "moved to us-west-2", func() bool {
		rs := e.replicas("llm")
		if len(rs) != 2 || e.dep("llm").Status.Phase != v1.PhaseReady {
			return false
		}
		for _, r := range rs {
			if r.Region != "us-west-2" || r.State != v1.ReplicaReady {
				return false
			}
		}
		return true
	})
	evs := e.events("llm", "Rebalancing")
	if len(evs) != 1 || !strings.Contains(evs[0].Message, "us-west-2") || !strings.Contains(evs[0].Message, "saves $1.4120/h") {
		t.Fatalf("Rebalancing events %+v, want one naming us-west-2 and the $1.412/h saving", evs)
	}
	e.assertUnroutedBeforeStop("llm", old...)
	// Settled: further checks move nothing.
	now := ids(e.replicas("llm"))
	for range 5 {
		e.reconcile("llm")
	}
	if got := ids(e.replicas("llm")); !slices.Equal(got, now) {
		t.Fatalf("replicas changed again: %v, want %v", got, now)
	}
}

// A cloud's quota counts every deployment's replicas there: with room for
// 2 on the cheapest cloud, a second deployment goes elsewhere, and the dry
// run says so too.
func TestQuotaSharedByDeployments(t *testing.T) {
	clouds := v1.DefaultClouds()
	two := 2
	for i := range clouds {
		if clouds[i].Name == cloudB {
			clouds[i].Quota = &v1.CloudQuota{Replicas: &two}
		}
	}
	e := newEnv(t, envConfig{clouds: clouds})
	e.ready(newSpec("first", 2))
	for _, r := range e.replicas("first") {
		if r.Cloud != cloudB {
			t.Fatalf("first: replica on %s, want %s (cheapest)", r.Cloud, cloudB)
		}
	}
	plan, err := e.ctl.Plan(e.ctx, newSpec("second", 1), false)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range plan.Placements {
		if a.Cloud == cloudB {
			t.Fatalf("dry run places on %s, whose quota the first deployment fills: %+v", cloudB, plan.Placements)
		}
	}
	e.ready(newSpec("second", 2))
	for _, r := range e.replicas("second") {
		if r.Cloud == cloudB {
			t.Fatalf("second: replica %s on %s beyond its quota of 2", r.ID, cloudB)
		}
	}
}
