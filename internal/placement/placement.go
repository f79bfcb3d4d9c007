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
//
// # Optimizer
//
// Optimize places every deployment at once over offerings (a cloud, region,
// instance type and purchase option, with a price and a capacity); PlanOne
// places one. They solve exactly the following model (the exact MILP in
// bench/placement implements this text).
//
// Notation. R_d = d.Replicas (negative counts as 0). W = p.Weights, or
// DefaultWeights when p.Weights is the zero value. For a demand d, from
// d.Placement: m_d = min(spread.minClouds, R_d); M_d = spread.maxPerCloud
// (0: no limit); B_d = budget (0: no limit); b_d = min(spot.onDemandBase, R_d)
// when spot.allowed, else 0. cur_{d,o} = the sum of the d.Current counts
// naming o; C_d = the sum of all d.Current counts (also those naming unknown
// or infeasible offerings). A quota q in p.Quotas has the scope S_q = the
// offerings o with o.Cloud == q.Cloud and, unless q.Region == "", o.Region
// == q.Region, and the limit L_q = max(q.Limit, 0); a quota whose scope is
// empty limits nothing, and of two quotas with the same (cloud, region) the
// smaller limit applies.
//
// Feasibility. Offering o is feasible for d iff all of: o.Unavailable == "";
// d.Runtime is in o.Runtimes; clouds is empty or contains o.Cloud; regions is
// empty or contains o.Region; o.Labels[k] == v for every k=v in labels (a
// missing label is ""); if o.Spot then spot.allowed; if GPUCount > 0 then
// strings.EqualFold(o.Accelerator, GPUType) and o.AcceleratorCount >=
// GPUCount (GPUCount == 0 allows any accelerator); o.VCPUs >= CPU;
// o.MemoryGiB*2^30 >= MemoryBytes; o.Price <= maxHourlyCost when
// maxHourlyCost > 0. F_d is the set of feasible offerings.
//
// Cost of a replica. c(d,o) = o.Price + W.LatencyUSDPerMs*L(d, o.Region) +
// W.SpotRiskUSD*o.InterruptionsPerHour, where L(d,r) = sum_t traffic[t] *
// RTT(t,r) / sum_t traffic[t] over placement.traffic (0 when it is empty or
// its weights sum to <= 0), and RTT(t,r) = 0 if t == r, else p.RTTms[{t,r}],
// else p.RTTms[{r,t}], else DefaultRTTms.
//
// Stage A, hard rules with capacity ignored. A demand with R_d > 0 is
// rule-infeasible when no integers x_{d,o} >= 0 over F_d (Capacity and
// quotas ignored)
// have sum_o x = R_d, at most M_d per cloud, at least m_d clouds with x > 0,
// at least b_d replicas on non-spot offerings and sum_o o.Price*x <= B_d. Such
// a demand gets no placement, Unplaced = R_d, Moved = 0, Objective = 0, and
// no part in stage B; Infeasible names the rule that binds (F_d empty: the
// first filter, in the order unavailable, runtime, GPU type, GPU count, CPU,
// memory, clouds, regions, labels (one by one), spot, maxHourlyCost, that
// leaves nothing; else maxPerCloud, minClouds, onDemandBase, their
// combination, budget).
//
// Stage B, all other demands together. Integer variables x_{d,o} >= 0
// (o in F_d), kept_{d,o} in [0, min(cur_{d,o}, x_{d,o})], u_d >= 0
// (unplaced), y_{d,k} in {0,1} (cloud k used):
//
//	sum_o x_{d,o} + u_d = R_d
//	sum_d (x_{d,o} - kept_{d,o}) <= o.Capacity          for o.Capacity >= 0
//	sum_d sum_{o in S_q} (x_{d,o} - kept_{d,o}) <= L_q   for every quota q
//	sum_{o in cloud k} x_{d,o} <= M_d                    if M_d > 0
//	y_{d,k} <= sum_{o in cloud k} x_{d,o},   sum_k y_{d,k} >= m_d - u_d
//	sum_{o not spot} x_{d,o} >= b_d - u_d
//	sum_o o.Price*x_{d,o} <= B_d                        if B_d > 0
//
// Running replicas need no capacity and no quota (both count only new
// ones). An
// unplaced replica relaxes minClouds and onDemandBase by one (it is the one
// that would have gone to the missing cloud or on-demand slot). moved_d =
// min(C_d, R_d) - sum_o kept_{d,o}, which is max(0, C_d - sum kept) -
// max(0, C_d - R_d): a running replica not kept is moved, unless the
// deployment shrinks (the surplus goes for free). The objective is
// lexicographic: first minimize sum_d u_d, then
//
//	sum_d [ sum_o c(d,o)*x_{d,o} + W.ChurnUSD*moved_d ].
//
// The plan gives per demand x (Placements, by offering ID), HourlyCost =
// sum Price*x, Objective = its term above, Moved, and when u_d > 0 Unplaced
// and Infeasible = "capacity: only P of R replicas fit in the feasible
// offerings", or, when a full quota keeps d out of an offering in F_d with
// capacity left, "quota: cloud K region G allows L more replicas; only P of
// R replicas fit" (L = L_q; "cloud K" alone for a whole cloud's quota; of
// the offerings so blocked the one of least c(d,o), and its cloud's quota
// when both are full). Rejected lists the offerings outside F_d with the first filter
// they fail (unavailable, runtime, clouds, regions, labels, spot, GPU type,
// GPU count, CPU, memory, maxHourlyCost); "cloud/*" stands for a whole cloud
// failing for one reason; at most 50 entries (per cloud and reason when there
// would be more), sorted by candidate. Ties go to the smaller offering ID, and
// the plan is a function of the input alone.
//
// How. Filters are evaluated on bitsets of offerings, once per distinct
// combination of placement rules and per distinct resource request, and
// stage A is exact (a small flow with rewards, below); both run on all cores.
// An offering with a finite capacity or in a quota's scope is "limited". A
// demand none of whose useful offerings is limited (each limited one is
// beaten in cost, and with a budget in price, by an unlimited one of the same
// cloud and purchase option in no quota's scope) competes with no one and is
// placed alone by the per-deployment solver: a min-cost flow over purchase
// option x cloud, with rewarded arcs for onDemandBase and for one replica per
// cloud up to minClouds, quotas as nodes (with their room as capacity)
// between the offerings in their scope and their cloud's node, exact for
// every rule but the budget, which gets a Lagrangian search on the price
// weight and then a branch and bound.
//
// The other demands share one min-cost flow, solved exactly by successive
// shortest paths with potentials (Dijkstra stopped at the first deficit, so
// an augmentation only explores what it touches): capacity on offering
// nodes, quotas on nodes between the offering nodes in their scope and the
// sink (a region's quota leading to its cloud's), maxPerCloud and minClouds
// (a supply of one "seed" unit per cloud) on per-cloud nodes, onDemandBase
// as a second supply node, running replicas as arcs that need no capacity or
// quota, unplaced replicas as arcs of a cost above any placement. Arcs to
// offerings are pruned (only the cheapest unlimited offering in no quota per
// hub, limited ones cheaper than it) and priced after each solve with
// tightened potentials, and again when capacity or quota frees up, so the
// flow is optimal over all of them. Budgets and onDemandBase together with
// spread are not flow constraints: they are relaxed, and a demand that
// breaks them becomes "special": it holds capacity and quota outside the flow
// and is improved by local search: re-placing it exactly given the others;
// taking capacity from others (flow or special) and quota room the flow
// fills, priced slot by slot at what they lose (measured in the flow; for
// special holders by re-placing them, on the convex envelope of their cost),
// weighed against leaving its own replicas unplaced, the holders giving up
// the slots priced cheapest and re-placed; placing it inside the flow with
// Lagrange multipliers so the others reroute around it; and, while replicas
// are unplaced, yielding (slots and quota room priced at what the flow would
// gain) or shedding replicas others value more. A move is kept only if the
// total (unplaced first) goes down. The search stops when no move helps or
// after a fixed amount of work (counted in nodes settled, not time), which
// only fleets of thousands of special demands competing for scarce capacity
// reach.
//
// Without special demands the plan is optimal. With them, measured against
// the exact MILP of this model (CBC): bench/placement (200 instances from
// real catalogs, 10-200 deployments, 50-2,000 offerings, quotas on some
// clouds and regions): no violation, the fewest unplaced replicas on all
// 200, mean objective gap 0.001%, largest 0.12%, 191 of 200 at the optimum;
// optimize_milp_test.go (40 synthetic, mostly contended instances with
// quotas): the fewest unplaced replicas on all, mean gap 0.001%, largest
// 0.014%; exhaustive search on small instances (optimize_prop_test.go, a
// third with quotas; 60,000 of them): the fewest unplaced replicas on all but
// 3, optimal on all but about 1 in 3,000, 5 of them more than 2% off. The
// local search is not exact: deployments whose budgets all bind on the same
// scarce offering can need an exchange of slots among three or more of them
// that no single move finds.
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
	// Offerings of the clouds with a catalog (Clouds without one are
	// offerings of their own); Current places the existing replicas on
	// offerings. Only the Optimizer uses them.
	Offerings []Offering
	Current   []Running
	// CloudReplicas counts the replicas of every deployment that run now,
	// per {cloud, region}: the clouds' quotas (Config.Quota) less these is
	// what may still start. Nil: only this deployment's own (Current) are
	// known, and counted.
	CloudReplicas map[[2]string]int
}

// Rejection says why a cloud cannot take a replica.
type Rejection struct {
	Cloud  string `json:"cloud"`
	Reason string `json:"reason"`
}

// Choice is one placed replica.
type Choice struct {
	Cloud        string  `json:"cloud"`
	Region       string  `json:"region"`
	Zone         string  `json:"zone,omitempty"`
	InstanceType string  `json:"instanceType,omitempty"`
	Spot         bool    `json:"spot,omitempty"`
	OfferingID   string  `json:"offering,omitempty"`
	HourlyCost   float64 `json:"hourlyCost"`
	Reason       string  `json:"reason"`
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
