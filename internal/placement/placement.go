// Package placement decides on which cloud each new replica runs and which
// replicas go first when a deployment shrinks. It is pure: a function of its
// inputs (clouds with their free capacity and prices, the deployment's needs
// and constraints), with no clock, I/O or globals, so every decision can be
// table-tested and explained.
//
// The pipeline follows Karmada's scheduler: filter (hard constraints, each
// rejection with a reason), score (hourly price, then name for determinism),
// select (spread over at least spread.minClouds clouds), divide (one replica at
// a time onto the cheapest cloud that still has room).
package placement

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	v1 "github.com/aloft-dev/aloft/api/v1"
)

// Cloud is one candidate cloud with its live state.
type Cloud struct {
	Config v1.CloudConfig
	// Runtimes the cloud can run now ("process", "oci").
	Runtimes []string
	Cordoned bool
	Failed   bool
	// Free is what the cloud can still take.
	Free Free
}

// Free is unused capacity of a cloud.
type Free struct {
	CPU         float64
	MemoryBytes int64
	GPUs        map[string]int
}

func (f Free) fits(r v1.ResourceRequest) bool {
	const eps = 1e-9
	if f.CPU+eps < r.CPU || f.MemoryBytes < r.MemoryBytes {
		return false
	}
	if r.GPUCount > 0 && f.GPUs[r.GPUType] < r.GPUCount {
		return false
	}
	return true
}

func (f *Free) take(r v1.ResourceRequest) {
	f.CPU -= r.CPU
	f.MemoryBytes -= r.MemoryBytes
	if r.GPUCount > 0 {
		m := make(map[string]int, len(f.GPUs))
		for k, v := range f.GPUs {
			m[k] = v
		}
		m[r.GPUType] -= r.GPUCount
		f.GPUs = m
	}
}

// Request asks for Count new replicas of one deployment.
type Request struct {
	Deployment string
	// Runtime the spec needs: "process" for a command, "oci" for an image only.
	Runtime   string
	Resources v1.ResourceRequest
	Placement v1.Placement
	Count     int
	// Existing counts the replicas the deployment keeps, per cloud, for spread.
	Existing map[string]int
	Clouds   []Cloud
}

// Rejection says why a cloud cannot take a replica.
type Rejection struct {
	Cloud  string `json:"cloud"`
	Reason string `json:"reason"`
}

// Choice is one placed replica.
type Choice struct {
	Cloud      string  `json:"cloud"`
	Region     string  `json:"region"`
	HourlyCost float64 `json:"hourlyCost"`
	Reason     string  `json:"reason"`
}

// Decision is the outcome of Place.
type Decision struct {
	Placed   []Choice    `json:"placed"`
	Rejected []Rejection `json:"rejected"`
	// Unplaced replicas could not be placed; Reason says what binds.
	Unplaced int    `json:"unplaced"`
	Reason   string `json:"reason,omitempty"`
	// Warning is set when a soft goal (spread) could not be met.
	Warning string `json:"warning,omitempty"`
	// Blocked: placement was not attempted because a precondition (a secret) is missing.
	Blocked bool `json:"blocked,omitempty"`
}

// Placer is what the controller calls; the optimizer will implement it too.
type Placer interface {
	Place(Request) Decision
}

// CheapestFirst places each replica on the cheapest feasible cloud, after first
// spreading over spread.minClouds distinct clouds.
type CheapestFirst struct{}

type candidate struct {
	cloud Cloud
	price float64
	free  Free
}

// Filter applies the hard constraints and returns feasible candidates sorted by
// price then name, plus a rejection for every other cloud.
func Filter(req Request) (feasible []candidate, rejected []Rejection) {
	for _, c := range req.Clouds {
		name := c.Config.Name
		reject := func(format string, args ...any) {
			rejected = append(rejected, Rejection{Cloud: name, Reason: fmt.Sprintf(format, args...)})
		}
		switch {
		case c.Failed:
			reject("cloud has failed")
			continue
		case c.Cordoned:
			reject("cloud is cordoned")
			continue
		case !slices.Contains(c.Runtimes, req.Runtime):
			reject("cannot run %s workloads (runs %s)", req.Runtime, orNone(c.Runtimes))
			continue
		case len(req.Placement.Clouds) > 0 && !slices.Contains(req.Placement.Clouds, name):
			reject("not in placement.clouds")
			continue
		case len(req.Placement.Regions) > 0 && !slices.Contains(req.Placement.Regions, c.Config.Region):
			reject("region %s not in placement.regions", c.Config.Region)
			continue
		}
		if k, ok := missingLabel(c.Config.Labels, req.Placement.Labels); ok {
			reject("label %s=%s required, cloud has %q", k, req.Placement.Labels[k], c.Config.Labels[k])
			continue
		}
		price, ok, why := c.Config.PriceFor(req.Resources)
		if !ok {
			reject("%s", why)
			continue
		}
		if req.Placement.MaxHourlyCost > 0 && price > req.Placement.MaxHourlyCost+1e-12 {
			reject("costs $%.4f/h, over placement.maxHourlyCost $%.4f/h", price, req.Placement.MaxHourlyCost)
			continue
		}
		if !c.Free.fits(req.Resources) {
			reject("no capacity (%s free, replica needs %s)", describeFree(c.Free), describeReq(req.Resources))
			continue
		}
		feasible = append(feasible, candidate{cloud: c, price: price, free: c.Free})
	}
	sort.SliceStable(feasible, func(i, j int) bool {
		if feasible[i].price != feasible[j].price {
			return feasible[i].price < feasible[j].price
		}
		return feasible[i].cloud.Config.Name < feasible[j].cloud.Config.Name
	})
	return feasible, rejected
}

// Place implements Placer.
func (CheapestFirst) Place(req Request) Decision {
	feasible, rejected := Filter(req)
	d := Decision{Rejected: rejected}
	used := map[string]bool{}
	for name, n := range req.Existing {
		if n > 0 {
			used[name] = true
		}
	}
	minClouds := req.Placement.Spread.MinClouds
	for i := 0; i < req.Count; i++ {
		pick := -1
		reason := "cheapest feasible cloud"
		if len(used) < minClouds {
			// Select: the cheapest cloud not used yet that has room.
			for j := range feasible {
				if !used[feasible[j].cloud.Config.Name] && feasible[j].free.fits(req.Resources) {
					pick = j
					reason = fmt.Sprintf("cheapest feasible cloud not yet used (spread.minClouds=%d)", minClouds)
					break
				}
			}
		}
		if pick < 0 {
			for j := range feasible {
				if feasible[j].free.fits(req.Resources) {
					pick = j
					break
				}
			}
		}
		if pick < 0 {
			d.Unplaced = req.Count - i
			d.Reason = unplacedReason(req, feasible, rejected)
			break
		}
		c := &feasible[pick]
		c.free.take(req.Resources)
		used[c.cloud.Config.Name] = true
		d.Placed = append(d.Placed, Choice{
			Cloud: c.cloud.Config.Name, Region: c.cloud.Config.Region, HourlyCost: c.price,
			Reason: fmt.Sprintf("%s at $%.4f/h", reason, c.price),
		})
	}
	if minClouds > 0 && len(used) < minClouds && req.Count > 0 {
		d.Warning = fmt.Sprintf("spread.minClouds=%d but only %d feasible cloud(s) can take replicas", minClouds, len(used))
	}
	return d
}

func unplacedReason(req Request, feasible []candidate, rejected []Rejection) string {
	if len(feasible) == 0 {
		parts := make([]string, 0, len(rejected))
		for _, r := range rejected {
			parts = append(parts, r.Cloud+": "+r.Reason)
		}
		if len(parts) == 0 {
			return "no clouds configured"
		}
		return "no feasible cloud (" + strings.Join(parts, "; ") + ")"
	}
	return fmt.Sprintf("feasible clouds are full (replica needs %s)", describeReq(req.Resources))
}

func missingLabel(have, want map[string]string) (string, bool) {
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if have[k] != want[k] {
			return k, true
		}
	}
	return "", false
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "nothing"
	}
	return strings.Join(s, ", ")
}

func describeFree(f Free) string {
	s := fmt.Sprintf("cpu %.2f, memory %s", math.Max(f.CPU, 0), bytesString(f.MemoryBytes))
	keys := make([]string, 0, len(f.GPUs))
	for k := range f.GPUs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s += fmt.Sprintf(", %d %s", f.GPUs[k], k)
	}
	return s
}

func describeReq(r v1.ResourceRequest) string {
	s := fmt.Sprintf("cpu %.2f, memory %s", r.CPU, bytesString(r.MemoryBytes))
	if r.GPUCount > 0 {
		s += fmt.Sprintf(", %d %s", r.GPUCount, r.GPUType)
	}
	return s
}

func bytesString(b int64) string {
	const gi, mi = 1 << 30, 1 << 20
	switch {
	case b >= gi && b%gi == 0:
		return fmt.Sprintf("%dGi", b/gi)
	case b >= gi:
		return fmt.Sprintf("%.1fGi", float64(b)/gi)
	default:
		return fmt.Sprintf("%dMi", b/mi)
	}
}

// Member is an existing replica considered for removal.
type Member struct {
	ID         string
	Cloud      string
	Ready      bool
	HourlyCost float64
}

// Victims picks n replicas to remove: not-ready ones first, then the most
// expensive, never emptying a cloud while that would break spread.minClouds
// unless nothing else is left. Ties go to the newest (last listed) replica.
func Victims(members []Member, n int, minClouds int) []string {
	if n <= 0 {
		return nil
	}
	left := slices.Clone(members)
	var out []string
	for len(out) < n && len(left) > 0 {
		perCloud := map[string]int{}
		for _, m := range left {
			perCloud[m.Cloud]++
		}
		best := -1
		for i, m := range left {
			if perCloud[m.Cloud] == 1 && len(perCloud) <= minClouds {
				continue // keep spread while another choice exists
			}
			if best < 0 || worse(m, left[best]) || (!worse(left[best], m) && i > best) {
				best = i
			}
		}
		if best < 0 {
			best = len(left) - 1
		}
		out = append(out, left[best].ID)
		left = slices.Delete(left, best, best+1)
	}
	return out
}

// worse reports whether a is a better victim than b.
func worse(a, b Member) bool {
	if a.Ready != b.Ready {
		return !a.Ready
	}
	return a.HourlyCost > b.HourlyCost
}
