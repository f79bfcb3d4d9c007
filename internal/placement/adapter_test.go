package placement

import (
	"strings"
	"testing"

	v1 "github.com/aloft-dev/aloft/api/v1"
)

func TestOptimizerQuotas(t *testing.T) {
	three := 3
	aws := Cloud{Config: v1.CloudConfig{Name: "aws", Provider: "local", Region: "us-east-1", Catalog: "aws",
		Quota: &v1.CloudQuota{Replicas: &three, Regions: map[string]int{"us-east-1": 3}}}, Runtimes: []string{"process"}}
	offs := []Offering{offer("aws", "us-east-1", "m5", 0.10), offer("aws", "us-west-2", "m5", 0.12)}
	req := func(count int, running map[[2]string]int, current ...Running) Request {
		return Request{Deployment: "web", Runtime: "process", Resources: v1.ResourceRequest{CPU: 1, MemoryBytes: 1 << 30},
			Count: count, Clouds: []Cloud{aws}, Offerings: offs, Current: current, CloudReplicas: running}
	}
	count := func(d Decision) map[string]int {
		m := map[string]int{}
		for _, c := range d.Placed {
			m[c.Region]++
		}
		return m
	}

	// Others run 2 in us-east-1: 1 more may start there, and 1 in the
	// whole cloud.
	r := req(2, map[[2]string]int{{"aws", "us-east-1"}: 2})
	if got := RequestQuotas(r, offs); len(got) != 2 || got[0] != (Quota{Cloud: "aws", Limit: 1}) || got[1] != (Quota{Cloud: "aws", Region: "us-east-1", Limit: 1}) {
		t.Errorf("quotas %+v", got)
	}
	d := Optimizer{}.Place(r)
	if m := count(d); m["us-east-1"] != 1 || d.Unplaced != 1 || !strings.HasPrefix(d.Reason, "quota: cloud aws allows 1 more replicas") {
		t.Errorf("placed %v, unplaced %d (%s)", m, d.Unplaced, d.Reason)
	}

	// Without the count of every cloud's replicas, the deployment's own
	// running one is counted: 2 more may start.
	r = req(3, nil, Running{OfferingID: "aws/us-east-1/m5", Count: 1})
	if got := RequestQuotas(r, offs); got[0].Limit != 2 || got[1].Limit != 2 {
		t.Errorf("quotas %+v", got)
	}
	d = Optimizer{}.Place(r)
	if m := count(d); m["us-east-1"] != 2 || d.Unplaced != 1 {
		t.Errorf("placed %v, unplaced %d (%s)", m, d.Unplaced, d.Reason)
	}

	// No quota: everything in the cheap region.
	free := aws
	free.Config.Quota = nil
	r = req(4, nil)
	r.Clouds = []Cloud{free}
	if got := RequestQuotas(r, offs); got != nil {
		t.Errorf("quotas %+v", got)
	}
	if m := count(Optimizer{}.Place(r)); m["us-east-1"] != 4 {
		t.Errorf("placed %v", m)
	}
}
