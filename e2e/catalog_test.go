package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
)

// A cloud backed by a real price catalog (AWS, imported from SkyPilot's
// CSV): `aloft plan` shows where a spec would run and why, `apply` puts its
// replicas on the offering the optimizer chose (they run as local processes
// here), and a spec that cannot be placed names its binding constraint.
func TestCatalogCloudPlanAndApply(t *testing.T) {
	clouds := filepath.Join(t.TempDir(), "clouds.yaml")
	if err := os.WriteFile(clouds, []byte(`clouds:
- name: aws
  provider: local
  region: us-east-1
  catalog: aws
  regions: [us-east-1, us-west-2, eu-west-1]
  labels: {jurisdiction: us}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, "--clouds", clouds)
	out := e.mustAloft("catalog", "import", filepath.Join("..", "internal", "catalog", "testdata", "aws.csv"), "--cloud", "aws")
	if !strings.Contains(out, "aws") {
		t.Fatalf("import said %q", out)
	}
	spec := e.writeSpec("web", `name: web
command: [aloft-completions]
replicas: 2
resources: {cpu: "2", memory: 4Gi}
placement: {traffic: {eu-west-1: 1}}
health: {path: /healthz, periodSeconds: 1}
`)
	var plan v1.PlanResult
	if err := json.Unmarshal([]byte(e.mustAloft("plan", "-f", spec, "-o", "json")), &plan); err != nil {
		t.Fatal(err)
	}
	if len(plan.Placements) == 0 || plan.HourlyCost <= 0 {
		t.Fatalf("plan %+v", plan)
	}
	first := plan.Placements[0]
	if first.InstanceType == "" || first.Cloud != "aws" {
		t.Fatalf("plan placement %+v has no instance type", first)
	}
	table := e.mustAloft("plan", "-f", spec)
	if !strings.Contains(table, first.InstanceType) || !strings.Contains(table, "total $") {
		t.Errorf("plan table:\n%s", table)
	}
	if _, err := e.c.GetDeployment(t.Context(), "web"); err == nil {
		t.Fatal("plan stored the deployment")
	}

	e.mustAloft("apply", "-f", spec, "--wait", "--timeout", "60s")
	d := e.waitRolledOut("web", 2, 30*time.Second)
	for _, r := range d.Status.Replicas {
		if r.Cloud != "aws" || r.InstanceType == "" || r.Region == "" {
			t.Errorf("replica %+v lacks its offering", r)
		}
		if r.InstanceType != first.InstanceType || r.Region != first.Region {
			t.Errorf("replica on %s/%s, plan said %s/%s", r.Region, r.InstanceType, first.Region, first.InstanceType)
		}
	}
	if code, _, err := e.request("web"); err != nil || code != 200 {
		t.Fatalf("request: %d %v", code, err)
	}

	bad := e.writeSpec("gpu", `name: gpu
command: [aloft-completions]
resources: {cpu: "8", memory: 32Gi, gpu: {type: h100, count: 8}}
placement: {budget: 5}
`)
	o, errOut, code := e.aloft("", "plan", "-f", bad)
	if code != 1 || !strings.Contains(errOut, "cannot place gpu") || !strings.Contains(o+errOut, "budget") {
		t.Errorf("infeasible plan: exit %d\n%s\n%s", code, o, errOut)
	}
}
