package placement

import (
	"fmt"
	"math"
	"sort"
	"strings"

	v1 "github.com/aloft-dev/aloft/api/v1"
)

// Optimizer is the Placer the controller uses. It turns a Request into one
// Demand over offerings (each local cloud is one offering sized to its free
// capacity; a catalog cloud contributes its catalog's offerings), pins the
// deployment's existing replicas where they run, and places the Count new
// ones with PlanOne.
type Optimizer struct {
	Weights Weights
	// RTTms holds measured RTTs between regions; pairs it lacks are
	// estimated from region names (EstimateRTTms).
	RTTms map[[2]string]float64
}

// keepChurn makes moving an existing replica prohibitively expensive: a
// scale-up only adds replicas; moving is the controller's migration's job.
const keepChurn = 1e6

// single is a request as one deployment's problem: every offering (local
// clouds and catalogs), the running replicas per offering, and the demand
// for them plus extra new ones.
type single struct {
	offerings []Offering
	why       map[string]string
	current   map[string]int
	total     int // running replicas
	demand    Demand
	rtt       map[[2]string]float64
	weights   Weights
}

func (o Optimizer) single(req Request, extra int) single {
	s := single{current: map[string]int{}, weights: o.Weights}
	s.offerings, s.why = CloudOfferings(req)
	s.offerings = append(s.offerings, req.Offerings...)
	for _, r := range req.Current {
		s.current[r.OfferingID] += r.Count
		s.total += r.Count
	}
	// Existing replicas stay on their offering even where it takes no new
	// ones now (a capacity block, a full local cloud).
	for i := range s.offerings {
		if s.current[s.offerings[i].ID] > 0 && s.offerings[i].Unavailable != "" {
			s.offerings[i].Unavailable, s.offerings[i].Capacity = "", 0
		}
	}
	if s.weights == (Weights{}) {
		s.weights = DefaultWeights
	}
	s.demand = Demand{
		Deployment: req.Deployment, Replicas: s.total + extra, Runtime: req.Runtime,
		Resources: req.Resources, Placement: req.Placement, Current: req.Current,
	}
	s.rtt = RTTTable(req.Placement.Traffic, s.offerings, o.RTTms)
	return s
}

// Place implements Placer.
func (o Optimizer) Place(req Request) Decision {
	s := o.single(req, req.Count)
	offerings, current := s.offerings, s.current
	w := s.weights
	w.ChurnUSD = keepChurn
	plan := planWithQuotas(req, s.demand, offerings, s.rtt, w)

	// Clouds without a catalog are explained by the filter, in the words
	// it uses for them (capacity in cores and memory, labels, prices);
	// catalog offerings by the optimizer.
	feasible, rejected := Filter(localRequest(req))
	dec := Decision{Rejected: rejected}
	for _, r := range plan.Rejected {
		if isLocal(req, r.Candidate) {
			continue
		}
		dec.Rejected = append(dec.Rejected, Rejection{Cloud: r.Candidate, Reason: r.Reason})
	}
	byID := make(map[string]Offering, len(offerings))
	for _, of := range offerings {
		byID[of.ID] = of
	}
	sort.SliceStable(plan.Placements, func(i, j int) bool { return plan.Placements[i].OfferingID < plan.Placements[j].OfferingID })
	for _, a := range plan.Placements {
		n := a.Replicas - current[a.OfferingID]
		for range max(n, 0) {
			of := byID[a.OfferingID]
			dec.Placed = append(dec.Placed, Choice{
				Cloud: a.Cloud, Region: a.Region, Zone: a.Zone, InstanceType: a.InstanceType, Spot: a.Spot,
				OfferingID: a.OfferingID, HourlyCost: of.Price,
				Reason: choiceReason(of, plan, req.Placement),
			})
		}
	}
	if len(dec.Placed) > req.Count {
		dec.Placed = dec.Placed[:req.Count]
	}
	if missing := req.Count - len(dec.Placed); missing > 0 {
		dec.Unplaced = missing
		dec.Reason = plan.Infeasible
		if len(req.Offerings) == 0 {
			// Only clouds without a catalog: the filter names what each lacks.
			dec.Reason = unplacedReason(req, feasible, rejected)
		}
		if dec.Reason == "" {
			dec.Reason = "no feasible offering has room"
		}
	}
	if m := req.Placement.Spread.MinClouds; m > 0 && req.Count > 0 && dec.Unplaced == 0 {
		clouds := map[string]bool{}
		for name, n := range req.Existing {
			if n > 0 {
				clouds[name] = true
			}
		}
		for _, ch := range dec.Placed {
			clouds[ch.Cloud] = true
		}
		if len(clouds) < m {
			dec.Warning = fmt.Sprintf("spread.minClouds=%d but only %d feasible cloud(s) can take replicas", m, len(clouds))
		}
	}
	return dec
}

// planWithQuotas is PlanOne under the quotas of req's clouds.
func planWithQuotas(req Request, d Demand, offerings []Offering, rtt map[[2]string]float64, w Weights) DeploymentPlan {
	p := Problem{Demands: []Demand{d}, Offerings: offerings, RTTms: rtt, Weights: w, Quotas: RequestQuotas(req, offerings)}
	return Optimize(p).Deployments[0]
}

// RequestQuotas turns the quotas of req's clouds (CloudConfig.Quota) into
// Problem quotas: each limit less the replicas that run in its scope now,
// counted by req.CloudReplicas or, without it, from req.Current (this
// deployment's, placed through offerings).
func RequestQuotas(req Request, offerings []Offering) []Quota {
	running := req.CloudReplicas
	if running == nil {
		byID := make(map[string]*Offering, len(offerings))
		for i := range offerings {
			byID[offerings[i].ID] = &offerings[i]
		}
		running = map[[2]string]int{}
		for _, r := range req.Current {
			if of, ok := byID[r.OfferingID]; ok {
				running[[2]string{of.Cloud, of.Region}] += r.Count
			}
		}
	}
	var out []Quota
	for _, c := range req.Clouds {
		q := c.Config.Quota
		if q == nil {
			continue
		}
		name := c.Config.Name
		if q.Replicas != nil {
			n := *q.Replicas
			for k, v := range running {
				if k[0] == name {
					n -= v
				}
			}
			out = append(out, Quota{Cloud: name, Limit: n})
		}
		regions := make([]string, 0, len(q.Regions))
		for r := range q.Regions {
			regions = append(regions, r)
		}
		sort.Strings(regions)
		for _, r := range regions {
			out = append(out, Quota{Cloud: name, Region: r, Limit: q.Regions[r] - running[[2]string{name, r}]})
		}
	}
	return out
}

// localRequest is req restricted to the clouds without a catalog.
func localRequest(req Request) Request {
	out := req
	out.Clouds = nil
	for _, c := range req.Clouds {
		if c.Config.Catalog == "" {
			out.Clouds = append(out.Clouds, c)
		}
	}
	return out
}

// isLocal reports whether a rejected candidate ("name" or "name/*") is a
// cloud without a catalog.
func isLocal(req Request, candidate string) bool {
	name := strings.TrimSuffix(candidate, "/*")
	for _, c := range req.Clouds {
		if c.Config.Name == name {
			return c.Config.Catalog == ""
		}
	}
	return false
}

func choiceReason(of Offering, plan DeploymentPlan, p v1.Placement) string {
	what := of.Cloud
	if of.InstanceType != "" {
		what = fmt.Sprintf("%s %s in %s", of.Cloud, of.InstanceType, of.Region)
		if of.Spot {
			what += " (spot)"
		}
	}
	n := 0
	for _, a := range plan.Placements {
		n += a.Replicas
	}
	return fmt.Sprintf("%s at $%.4f/h, in the least-cost plan meeting every constraint%s (%d replica(s), $%.4f/h in all)", what, of.Price, constraintList(p), n, plan.HourlyCost)
}

// constraintList names the spec's placement rules for a reason text, e.g.
// " (spread.minClouds=3, labels jurisdiction=eu)".
func constraintList(p v1.Placement) string {
	var c []string
	if p.Spread.MinClouds > 0 {
		c = append(c, fmt.Sprintf("spread.minClouds=%d", p.Spread.MinClouds))
	}
	if p.Spread.MaxPerCloud > 0 {
		c = append(c, fmt.Sprintf("spread.maxPerCloud=%d", p.Spread.MaxPerCloud))
	}
	if len(p.Clouds) > 0 {
		c = append(c, "clouds "+strings.Join(p.Clouds, ","))
	}
	if len(p.Regions) > 0 {
		c = append(c, "regions "+strings.Join(p.Regions, ","))
	}
	keys := make([]string, 0, len(p.Labels))
	for k := range p.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		c = append(c, "labels "+k+"="+p.Labels[k])
	}
	if p.MaxHourlyCost > 0 {
		c = append(c, fmt.Sprintf("maxHourlyCost $%.4f", p.MaxHourlyCost))
	}
	if p.Budget > 0 {
		c = append(c, fmt.Sprintf("budget $%.2f/h", p.Budget))
	}
	if p.Spot != nil && p.Spot.Allowed {
		c = append(c, fmt.Sprintf("spot allowed above %d on-demand", p.Spot.OnDemandBase))
	}
	if len(p.Traffic) > 0 {
		c = append(c, "traffic-weighted latency")
	}
	if len(c) == 0 {
		return ""
	}
	return " (" + strings.Join(c, ", ") + ")"
}

// CloudOfferings turns the request's clouds without a catalog into one
// offering each: the request's own shape at the cloud's price, with room for
// as many replicas as its free capacity holds. why gives, per offering ID,
// the reason a cloud cannot take replicas in words the Filter uses (failed,
// cordoned, no price for the GPU), which is clearer than a generic one.
func CloudOfferings(req Request) (offerings []Offering, why map[string]string) {
	why = map[string]string{}
	_, rejected := Filter(req)
	reasons := map[string]string{}
	for _, r := range rejected {
		reasons[r.Cloud] = r.Reason
	}
	for _, c := range req.Clouds {
		if c.Config.Catalog != "" {
			continue
		}
		name := c.Config.Name
		of := Offering{
			ID: name, Cloud: name, Region: c.Config.Region, Labels: c.Config.Labels, Runtimes: c.Runtimes,
			Accelerator: req.Resources.GPUType, AcceleratorCount: req.Resources.GPUCount,
			VCPUs: req.Resources.CPU, MemoryGiB: float64(req.Resources.MemoryBytes) / (1 << 30),
			Capacity: fitCount(c.Free, req.Resources),
		}
		price, ok, reason := c.Config.PriceFor(req.Resources)
		of.Price = price
		switch {
		case c.Failed:
			of.Unavailable = "cloud has failed"
		case c.Cordoned:
			of.Unavailable = "cloud is cordoned"
		case !ok:
			of.Unavailable = reason
		}
		if r := reasons[name]; r != "" && of.Unavailable == "" && !strings.HasPrefix(r, "no capacity") {
			why[name] = r
		}
		offerings = append(offerings, of)
	}
	return offerings, why
}

// fitCount is how many replicas of r fit in f.
func fitCount(f Free, r v1.ResourceRequest) int {
	n := math.MaxInt32
	if r.CPU > 0 {
		n = min(n, int(math.Floor((f.CPU+1e-9)/r.CPU)))
	}
	if r.MemoryBytes > 0 {
		n = min(n, int(f.MemoryBytes/r.MemoryBytes))
	}
	if r.GPUCount > 0 {
		n = min(n, f.GPUs[r.GPUType]/r.GPUCount)
	}
	return max(n, 0)
}

// OfferingID names a catalog offering the same way everywhere (plans,
// replica records, capacity blocks).
func OfferingID(cloud, region, zone, instanceType string, spot bool) string {
	id := cloud + "/" + region + "/" + zone + "/" + instanceType
	if spot {
		id += "/spot"
	}
	return id
}
