package placement

import (
	"strings"
	"testing"
)

func TestRebalance(t *testing.T) {
	off := func(id string, price float64, capacity int) Offering {
		return Offering{ID: id, Cloud: "c", Region: id, InstanceType: "t", Runtimes: []string{"process"}, VCPUs: 4, MemoryGiB: 16, Price: price, Capacity: capacity}
	}
	cases := []struct {
		name   string
		b      Offering
		vacate map[string]int
	}{
		{"saving above churn moves all", off("b", 1.4, -1), map[string]int{"a": 3}},
		{"saving below churn stays", off("b", 1.6, -1), nil},
		{"capacity limits the move", off("b", 1.0, 1), map[string]int{"a": 1}},
		{"blocked offering is not a target", Offering{ID: "b", Cloud: "c", Region: "b", InstanceType: "t", Runtimes: []string{"process"}, VCPUs: 4, MemoryGiB: 16, Price: 0.1, Capacity: -1, Unavailable: "blocked"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := Request{
				Deployment: "d", Runtime: "process",
				Offerings: []Offering{off("a", 2.0, -1), tc.b},
				Current:   []Running{{OfferingID: "a", Count: 3}},
			}
			got := Optimizer{}.Rebalance(req)
			if len(got.Vacate) != len(tc.vacate) {
				t.Fatalf("Vacate %v, want %v (%s)", got.Vacate, tc.vacate, got.Reason)
			}
			for k, v := range tc.vacate {
				if got.Vacate[k] != v {
					t.Fatalf("Vacate %v, want %v", got.Vacate, tc.vacate)
				}
			}
			if tc.vacate != nil && (got.Saving <= DefaultWeights.ChurnUSD || !strings.Contains(got.Reason, "to b")) {
				t.Fatalf("saving %v, reason %q", got.Saving, got.Reason)
			}
		})
	}
}
