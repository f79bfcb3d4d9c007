package placement

import (
	"reflect"
	"strings"
	"testing"

	v1 "github.com/aloft-dev/aloft/api/v1"
)

const gi = 1 << 30

func clouds() []Cloud {
	var out []Cloud
	for _, c := range v1.DefaultClouds() {
		mem, _ := c.Capacity.MemoryBytes()
		out = append(out, Cloud{Config: c, Runtimes: []string{"process"}, Free: Free{CPU: c.Capacity.CPU, MemoryBytes: mem}})
	}
	return out
}

var small = v1.ResourceRequest{CPU: 1, MemoryBytes: gi}

func names(d Decision) []string {
	var out []string
	for _, p := range d.Placed {
		out = append(out, p.Cloud)
	}
	return out
}

func TestCheapestFirst(t *testing.T) {
	// Default prices for 1 CPU + 1 GiB: local-b 0.034 < local-a 0.045 < local-c 0.056.
	full := clouds()
	full[1].Free = Free{CPU: 1.5, MemoryBytes: 8 * gi} // local-b has room for one
	cordoned := clouds()
	cordoned[1].Cordoned = true
	failed := clouds()
	failed[0].Failed = true
	ociOnly := clouds()
	for i := range ociOnly {
		ociOnly[i].Runtimes = []string{"process"}
	}

	tests := []struct {
		name      string
		req       Request
		want      []string
		unplaced  int
		rejects   map[string]string // cloud -> reason fragment
		reasonHas string
		warning   string
	}{
		{name: "all on the cheapest", req: Request{Runtime: "process", Resources: small, Count: 3, Clouds: clouds()},
			want: []string{"local-b", "local-b", "local-b"}},
		{name: "spread over three", req: Request{Runtime: "process", Resources: small, Count: 3, Clouds: clouds(),
			Placement: v1.Placement{Spread: v1.Spread{MinClouds: 3}}},
			want: []string{"local-b", "local-a", "local-c"}},
		{name: "spread counts existing replicas", req: Request{Runtime: "process", Resources: small, Count: 2, Clouds: clouds(),
			Placement: v1.Placement{Spread: v1.Spread{MinClouds: 2}}, Existing: map[string]int{"local-a": 1}},
			want: []string{"local-b", "local-b"}},
		{name: "capacity overflows to the next cheapest", req: Request{Runtime: "process", Resources: small, Count: 3, Clouds: full},
			want: []string{"local-b", "local-a", "local-a"}},
		{name: "cordoned and failed clouds are skipped", req: Request{Runtime: "process", Resources: small, Count: 1, Clouds: cordoned},
			want: []string{"local-a"}, rejects: map[string]string{"local-b": "cordoned"}},
		{name: "failed cloud", req: Request{Runtime: "process", Resources: small, Count: 1, Clouds: failed},
			want: []string{"local-b"}, rejects: map[string]string{"local-a": "failed"}},
		{name: "allowed clouds", req: Request{Runtime: "process", Resources: small, Count: 2, Clouds: clouds(),
			Placement: v1.Placement{Clouds: []string{"local-c"}}},
			want: []string{"local-c", "local-c"}, rejects: map[string]string{"local-a": "placement.clouds"}},
		{name: "regions", req: Request{Runtime: "process", Resources: small, Count: 1, Clouds: clouds(),
			Placement: v1.Placement{Regions: []string{"local-east"}}},
			want: []string{"local-a"}, rejects: map[string]string{"local-b": "region local-west"}},
		{name: "label residency", req: Request{Runtime: "process", Resources: small, Count: 1, Clouds: clouds(),
			Placement: v1.Placement{Labels: map[string]string{"jurisdiction": "us"}}},
			want: []string{"local-a"}, rejects: map[string]string{"local-b": "jurisdiction=us"}},
		{name: "budget", req: Request{Runtime: "process", Resources: small, Count: 1, Clouds: clouds(),
			Placement: v1.Placement{MaxHourlyCost: 0.04}},
			want: []string{"local-b"}, rejects: map[string]string{"local-a": "maxHourlyCost", "local-c": "maxHourlyCost"}},
		{name: "image needs a runtime no cloud has", req: Request{Runtime: "oci", Resources: small, Count: 2, Clouds: ociOnly},
			unplaced: 2, rejects: map[string]string{"local-a": "cannot run oci"}, reasonHas: "no feasible cloud"},
		{name: "gpu nobody has", req: Request{Runtime: "process", Resources: v1.ResourceRequest{CPU: 1, MemoryBytes: gi, GPUType: "a10", GPUCount: 1}, Count: 1, Clouds: clouds()},
			unplaced: 1, rejects: map[string]string{"local-a": "no capacity"}},
		{name: "all full", req: Request{Runtime: "process", Resources: v1.ResourceRequest{CPU: 10, MemoryBytes: gi}, Count: 2, Clouds: clouds()},
			want: []string{"local-c"}, unplaced: 1, reasonHas: "full"},
		{name: "spread not reachable warns", req: Request{Runtime: "process", Resources: small, Count: 2, Clouds: clouds(),
			Placement: v1.Placement{Clouds: []string{"local-a"}, Spread: v1.Spread{MinClouds: 2}}},
			want: []string{"local-a", "local-a"}, warning: "spread.minClouds=2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := CheapestFirst{}.Place(tc.req)
			if got := names(d); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("placed %v, want %v", got, tc.want)
			}
			if d.Unplaced != tc.unplaced {
				t.Errorf("unplaced %d, want %d (%s)", d.Unplaced, tc.unplaced, d.Reason)
			}
			if !strings.Contains(d.Reason, tc.reasonHas) {
				t.Errorf("reason %q lacks %q", d.Reason, tc.reasonHas)
			}
			if !strings.Contains(d.Warning, tc.warning) || (tc.warning == "" && d.Warning != "") {
				t.Errorf("warning %q, want %q", d.Warning, tc.warning)
			}
			for cloud, frag := range tc.rejects {
				found := false
				for _, r := range d.Rejected {
					found = found || (r.Cloud == cloud && strings.Contains(r.Reason, frag))
				}
				if !found {
					t.Errorf("no rejection of %s with %q in %+v", cloud, frag, d.Rejected)
				}
			}
			for _, p := range d.Placed {
				if p.HourlyCost <= 0 || p.Reason == "" || p.Region == "" {
					t.Errorf("choice lacks cost, region or reason: %+v", p)
				}
			}
			// Deterministic: the same input gives the same decision.
			if again := (CheapestFirst{}).Place(tc.req); !reflect.DeepEqual(again, d) {
				t.Errorf("not deterministic:\n%+v\n%+v", d, again)
			}
		})
	}
}

func TestVictims(t *testing.T) {
	tests := []struct {
		name      string
		members   []Member
		n, spread int
		want      []string
	}{
		{"not ready first", []Member{{"a", "x", true, 1}, {"b", "x", false, 0.1}, {"c", "y", true, 2}}, 1, 0, []string{"b"}},
		{"most expensive next", []Member{{"a", "x", true, 1}, {"b", "y", true, 3}, {"c", "z", true, 2}}, 2, 0, []string{"b", "c"}},
		{"keeps spread", []Member{{"a", "x", true, 1}, {"b", "x", true, 1}, {"c", "y", true, 5}}, 1, 2, []string{"b"}},
		{"spread yields when nothing else", []Member{{"a", "x", true, 1}, {"c", "y", true, 5}}, 1, 2, []string{"c"}},
		{"ties go to the newest", []Member{{"a", "x", true, 1}, {"b", "x", true, 1}}, 1, 0, []string{"b"}},
		{"more than there are", []Member{{"a", "x", true, 1}}, 3, 0, []string{"a"}},
		{"none", []Member{{"a", "x", true, 1}}, 0, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Victims(tc.members, tc.n, tc.spread); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Victims = %v, want %v", got, tc.want)
			}
		})
	}
}

func BenchmarkCheapestFirst(b *testing.B) {
	req := Request{Runtime: "process", Resources: small, Count: 10, Clouds: clouds(), Placement: v1.Placement{Spread: v1.Spread{MinClouds: 3}}}
	for b.Loop() {
		CheapestFirst{}.Place(req)
	}
}
