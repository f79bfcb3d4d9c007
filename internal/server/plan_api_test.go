package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	apiv1 "github.com/aloft-dev/aloft/api/v1"
)

// POST /api/v1/plan is a dry run: it answers with the optimizer's placement
// (or 422 naming the binding constraint) and stores nothing.
func TestPlanAPI(t *testing.T) {
	e := newImageEnv(t)
	spec := "name: planned\ncommand: [x]\nreplicas: 3\nplacement: {spread: {minClouds: 2}}\n"
	code, b := e.do("viewer", "POST", "/api/v1/plan", strings.NewReader(spec), "application/yaml")
	if code != http.StatusOK {
		t.Fatalf("plan: %d %s", code, b)
	}
	var p apiv1.PlanResult
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	total, clouds := 0, map[string]bool{}
	for _, a := range p.Placements {
		total += a.Replicas
		clouds[a.Cloud] = true
	}
	if p.Deployment != "planned" || total != 3 || len(clouds) < 2 || p.HourlyCost <= 0 || p.Error != "" {
		t.Errorf("plan %+v", p)
	}

	bad := "name: nowhere\ncommand: [x]\nplacement: {labels: {jurisdiction: mars}}\n"
	code, b = e.do("viewer", "POST", "/api/v1/plan", strings.NewReader(bad), "application/yaml")
	if code != http.StatusUnprocessableEntity {
		t.Fatalf("infeasible plan: %d %s", code, b)
	}
	p = apiv1.PlanResult{}
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.Error, "jurisdiction") || len(p.Rejected) == 0 || p.Unplaced != 1 {
		t.Errorf("infeasible plan %+v", p)
	}

	code, b = e.do("viewer", "POST", "/api/v1/plan", strings.NewReader("name: x\nreplica: 2\n"), "application/yaml")
	if code != http.StatusBadRequest || !strings.Contains(string(b), "replicas") {
		t.Errorf("bad spec: %d %s", code, b)
	}
	if code, b := e.do("viewer", "GET", "/api/v1/deployments", nil, ""); code != 200 || strings.Contains(string(b), "planned") {
		t.Errorf("a plan stored a deployment: %d %s", code, b)
	}
}
