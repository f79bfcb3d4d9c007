package placement

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// solver holds a Problem indexed for the optimizer.
type solver struct {
	p    *Problem
	w    Weights
	offs []Offering
	n    int // len(offs)

	rank     []int32 // offering index -> position in ID order
	byRank   []int32 // position in ID order -> offering index
	byID     map[string]int32
	cloudOf  []int32
	regionOf []int32
	base     []float64 // price + SpotRiskUSD * interruptions
	finite   []bool    // Capacity >= 0

	cloudNames  []string
	cloudIdx    map[string]int32
	cloudOffers []int32 // per cloud: how many offerings the problem has
	regionNames []string
	regionIdx   map[string]int32
	rttRows     map[int32][]float64 // traffic region -> RTT to every region (NaN: not looked up yet)

	classes map[string]*class
	parents map[string][]rejKind // per parentKey: the first failing filter per offering, spot and price aside
	dems    []*dem
	or      oracle
}

// class is what every demand with the same filter inputs shares: the feasible
// offerings, grouped for candidate generation, and the rejections.
type class struct {
	feas        []int32 // feasible offerings in ID order
	member      []bool  // per offering
	groups      []group
	clouds      []int32   // clouds with a feasible offering, by name
	cloudPos    []int32   // per cloud id: position in clouds, or -1
	cloudGroups [][]int32 // per position in clouds: group indices
	hasOD       []bool    // per position in clouds
	hasSpot     bool
	regions     []int32 // distinct regions of feasible offerings
	regionPos   []int32 // per region id: position in regions, or -1
	// cheapest-priced offering per (cloud position, spot): [2*pos+spot], -1 if none.
	minPrice []int32
	maxPrice float64
	emptyMsg string
	rejected []CandidateRejection
}

// group: feasible offerings of one class sharing cloud, region and purchase
// option, so that a demand's cost order inside a group is the order of base.
type group struct {
	cloud, region int32
	rpos          int32 // position of region in class.regions
	spot          bool
	unl           []int32 // unlimited capacity, by (base, ID)
	fin           []int32 // finite capacity, by (base, ID)
	unlFront      []int32 // of unl, those no other beats in both base and price
}

// dem is one Demand with everything derived from it.
type dem struct {
	i      int
	d      *Demand
	cls    *class
	R      int
	M      int // spread.maxPerCloud, or R when unlimited
	mm, bb int // min(minClouds, R); min(onDemandBase, R) when spot offerings exist, else 0
	budget float64
	lat    []float64 // per class region position: LatencyUSDPerMs * L(d, region)

	curOff   []int32 // feasible offerings the demand runs on now
	curN     []int
	curTotal int // all current replicas, also those on unknown or infeasible offerings

	infeasible string // set when a hard rule makes the demand impossible (stage A)
	special    bool   // budget or onDemandBase together with spread: not a pure flow
	beta, lam  float64
	st         *dstatic
}

func (d *dem) active() bool { return d.infeasible == "" && d.R > 0 }

func (d *dem) cur(o int32) int {
	for i, c := range d.curOff {
		if c == o {
			return d.curN[i]
		}
	}
	return 0
}

// cost is c(d,o), the per-replica objective of a new replica on o.
func (s *solver) cost(d *dem, o int32) float64 {
	return s.base[o] + d.lat[d.cls.regionPos[s.regionOf[o]]]
}

func newSolver(p *Problem) *solver {
	s := &solver{p: p, w: p.Weights, offs: p.Offerings, n: len(p.Offerings)}
	if s.w == (Weights{}) {
		s.w = DefaultWeights
	}
	s.byID = make(map[string]int32, s.n)
	s.cloudIdx = map[string]int32{}
	s.regionIdx = map[string]int32{}
	s.rttRows = map[int32][]float64{}
	s.classes = map[string]*class{}
	s.parents = map[string][]rejKind{}
	s.byRank = make([]int32, s.n)
	for i := range s.byRank {
		s.byRank[i] = int32(i)
	}
	sort.SliceStable(s.byRank, func(a, b int) bool { return s.offs[s.byRank[a]].ID < s.offs[s.byRank[b]].ID })
	s.rank = make([]int32, s.n)
	s.cloudOf = make([]int32, s.n)
	s.regionOf = make([]int32, s.n)
	s.base = make([]float64, s.n)
	s.finite = make([]bool, s.n)
	for r, i := range s.byRank {
		s.rank[i] = int32(r)
	}
	// Intern clouds and regions in name order so that ids sort like names.
	var cl, rg []string
	for i := range s.offs {
		cl = append(cl, s.offs[i].Cloud)
		rg = append(rg, s.offs[i].Region)
	}
	for _, d := range p.Demands {
		for t := range d.Placement.Traffic {
			rg = append(rg, t)
		}
	}
	slices.Sort(cl)
	slices.Sort(rg)
	for _, c := range slices.Compact(cl) {
		s.cloudIdx[c] = int32(len(s.cloudNames))
		s.cloudNames = append(s.cloudNames, c)
	}
	for _, r := range slices.Compact(rg) {
		s.regionIdx[r] = int32(len(s.regionNames))
		s.regionNames = append(s.regionNames, r)
	}
	s.cloudOffers = make([]int32, len(s.cloudNames))
	for _, i := range s.byRank {
		o := &s.offs[i]
		if _, dup := s.byID[o.ID]; !dup {
			s.byID[o.ID] = i
		}
		s.cloudOf[i] = s.cloudIdx[o.Cloud]
		s.regionOf[i] = s.regionIdx[o.Region]
		s.base[i] = o.Price + s.w.SpotRiskUSD*o.InterruptionsPerHour
		s.finite[i] = o.Capacity >= 0
		s.cloudOffers[s.cloudOf[i]]++
	}
	return s
}

// rtt is RTT(t, r) as the package documentation defines it.
func (s *solver) rtt(t, r int32) float64 {
	if t == r {
		return 0
	}
	row := s.rttRows[t]
	if row == nil {
		row = make([]float64, len(s.regionNames))
		for i := range row {
			row[i] = math.NaN()
		}
		s.rttRows[t] = row
	}
	if v := row[r]; !math.IsNaN(v) {
		return v
	}
	tn, rn := s.regionNames[t], s.regionNames[r]
	v, ok := s.p.RTTms[[2]string{tn, rn}]
	if !ok {
		v, ok = s.p.RTTms[[2]string{rn, tn}]
	}
	if !ok {
		v = DefaultRTTms
	}
	row[r] = v
	return v
}

// prepare derives every dem and decides stage A (hard-rule infeasibility).
func (s *solver) prepare() {
	for i := range s.p.Demands {
		d := &s.p.Demands[i]
		m := &dem{i: i, d: d, R: max(d.Replicas, 0)}
		m.cls = s.classFor(d)
		pl := d.Placement
		m.M = m.R
		if pl.Spread.MaxPerCloud > 0 && pl.Spread.MaxPerCloud < m.R {
			m.M = pl.Spread.MaxPerCloud
		}
		m.mm = min(max(pl.Spread.MinClouds, 0), m.R)
		if pl.Spot != nil && pl.Spot.Allowed && m.cls.hasSpot {
			m.bb = min(max(pl.Spot.OnDemandBase, 0), m.R)
		}
		if pl.Budget > 0 {
			m.budget = pl.Budget
		}
		// Traffic-weighted latency per region.
		m.lat = make([]float64, len(m.cls.regions))
		if len(pl.Traffic) > 0 && s.w.LatencyUSDPerMs != 0 {
			keys := make([]string, 0, len(pl.Traffic))
			for k := range pl.Traffic {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			var sum float64
			for _, k := range keys {
				sum += pl.Traffic[k]
			}
			if sum > 0 {
				for j, r := range m.cls.regions {
					var acc float64
					for _, k := range keys {
						acc += pl.Traffic[k] * s.rtt(s.regionIdx[k], r)
					}
					m.lat[j] = s.w.LatencyUSDPerMs * acc / sum
				}
			}
		}
		// Current replicas.
		for _, c := range d.Current {
			if c.Count <= 0 {
				continue
			}
			m.curTotal += c.Count
			o, ok := s.byID[c.OfferingID]
			if !ok || !m.cls.member[o] {
				continue
			}
			if j := slices.Index(m.curOff, o); j >= 0 {
				m.curN[j] += c.Count
			} else {
				m.curOff = append(m.curOff, o)
				m.curN = append(m.curN, c.Count)
			}
		}
		m.infeasible = s.stageA(m)
		if m.active() {
			crossing := m.bb > 0 && (m.mm >= 2 || m.M < m.R)
			budgeted := m.budget > 0 && float64(m.R)*m.cls.maxPrice > m.budget+budgetEps
			m.special = crossing || budgeted
		}
		s.dems = append(s.dems, m)
	}
}

const budgetEps = 1e-9

// classKey identifies what the filters of d depend on; parentKey leaves
// out spot.allowed and maxHourlyCost, which are cheap to apply on top.
func classKey(d *Demand) string {
	var b strings.Builder
	b.WriteString(parentKey(d))
	pl := d.Placement
	b.WriteByte(0)
	if pl.Spot != nil && pl.Spot.Allowed {
		b.WriteByte('s')
	}
	b.WriteByte(0)
	if pl.MaxHourlyCost > 0 {
		b.WriteString(strconv.FormatFloat(pl.MaxHourlyCost, 'g', -1, 64))
	}
	return b.String()
}

func parentKey(d *Demand) string {
	var b strings.Builder
	r := d.Resources
	pl := d.Placement
	b.WriteString(d.Runtime)
	b.WriteByte(0)
	b.WriteString(strconv.FormatFloat(r.CPU, 'g', -1, 64))
	b.WriteByte(0)
	b.WriteString(strconv.FormatInt(r.MemoryBytes, 10))
	b.WriteByte(0)
	if r.GPUCount > 0 {
		b.WriteString(strings.ToLower(r.GPUType))
		b.WriteByte(0)
		b.WriteString(strconv.Itoa(r.GPUCount))
	}
	b.WriteByte(0)
	for _, c := range sortedCopy(pl.Clouds) {
		b.WriteString(c)
		b.WriteByte(1)
	}
	b.WriteByte(0)
	for _, c := range sortedCopy(pl.Regions) {
		b.WriteString(c)
		b.WriteByte(1)
	}
	b.WriteByte(0)
	for _, k := range sortedKeys(pl.Labels) {
		b.WriteString(k)
		b.WriteByte(2)
		b.WriteString(pl.Labels[k])
		b.WriteByte(1)
	}
	return b.String()
}

func sortedCopy(s []string) []string {
	if len(s) < 2 {
		return s
	}
	c := slices.Clone(s)
	slices.Sort(c)
	return slices.Compact(c)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Filters, in the order rejections report the first one that fails.
type rejKind uint8

const (
	rkNone rejKind = iota
	rkUnavailable
	rkRuntime
	rkCloud
	rkRegion
	rkLabel
	rkSpot
	rkGPUType
	rkGPUCount
	rkCPU
	rkMemory
	rkPrice
)

var rejectOrder = []rejKind{rkUnavailable, rkRuntime, rkCloud, rkRegion, rkLabel, rkSpot, rkGPUType, rkGPUCount, rkCPU, rkMemory, rkPrice}

// messageOrder is the order in which filters are applied to explain an empty
// feasible set: what exists at all first, then what the placement rules keep.
var messageOrder = []rejKind{rkUnavailable, rkRuntime, rkGPUType, rkGPUCount, rkCPU, rkMemory, rkCloud, rkRegion, rkLabel, rkSpot, rkPrice}

func fails(k rejKind, d *Demand, o *Offering) bool {
	r, pl := &d.Resources, &d.Placement
	switch k {
	case rkUnavailable:
		return o.Unavailable != ""
	case rkRuntime:
		return !slices.Contains(o.Runtimes, d.Runtime)
	case rkCloud:
		return len(pl.Clouds) > 0 && !slices.Contains(pl.Clouds, o.Cloud)
	case rkRegion:
		return len(pl.Regions) > 0 && !slices.Contains(pl.Regions, o.Region)
	case rkLabel:
		for k, v := range pl.Labels {
			if o.Labels[k] != v {
				return true
			}
		}
		return false
	case rkSpot:
		return o.Spot && (pl.Spot == nil || !pl.Spot.Allowed)
	case rkGPUType:
		return r.GPUCount > 0 && !strings.EqualFold(o.Accelerator, r.GPUType)
	case rkGPUCount:
		return r.GPUCount > 0 && o.AcceleratorCount < r.GPUCount
	case rkCPU:
		return o.VCPUs < r.CPU
	case rkMemory:
		return o.MemoryGiB*(1<<30) < float64(r.MemoryBytes)
	case rkPrice:
		return pl.MaxHourlyCost > 0 && o.Price > pl.MaxHourlyCost
	}
	return false
}

// reason says why o fails filter k: specific for one offering, generic for a
// group of them.
func reason(k rejKind, d *Demand, o *Offering) (specific, generic string) {
	r, pl := &d.Resources, &d.Placement
	switch k {
	case rkUnavailable:
		return o.Unavailable, o.Unavailable
	case rkRuntime:
		g := "cannot run " + d.Runtime + " workloads"
		return fmt.Sprintf("%s (runs %s)", g, orNone(o.Runtimes)), g
	case rkCloud:
		return "cloud " + o.Cloud + " not in placement.clouds", "cloud " + o.Cloud + " not in placement.clouds"
	case rkRegion:
		return "region " + o.Region + " not in placement.regions", "region not in placement.regions"
	case rkLabel:
		for _, k := range sortedKeys(pl.Labels) {
			if got, ok := o.Labels[k]; got != pl.Labels[k] {
				g := fmt.Sprintf("label %s=%s required", k, pl.Labels[k])
				if !ok {
					return g + " (label not set)", g
				}
				return fmt.Sprintf("%s (has %q)", g, got), g
			}
		}
	case rkSpot:
		return "spot, and placement.spot.allowed is false", "spot, and placement.spot.allowed is false"
	case rkGPUType:
		g := "no " + r.GPUType + " GPU"
		if o.Accelerator == "" {
			return g + " (CPU-only)", g
		}
		return fmt.Sprintf("%s (has %s)", g, o.Accelerator), g
	case rkGPUCount:
		return fmt.Sprintf("has %d %s GPU(s), needs %d", o.AcceleratorCount, o.Accelerator, r.GPUCount), "too few " + r.GPUType + " GPUs"
	case rkCPU:
		return fmt.Sprintf("%g vCPUs, needs %g", o.VCPUs, r.CPU), "too few vCPUs"
	case rkMemory:
		return fmt.Sprintf("%gGiB memory, needs %s", o.MemoryGiB, bytesString(r.MemoryBytes)), "too little memory"
	case rkPrice:
		g := fmt.Sprintf("over placement.maxHourlyCost $%.4f/h", pl.MaxHourlyCost)
		return fmt.Sprintf("costs $%.4f/h, %s", o.Price, g), g
	}
	return "", ""
}

func (s *solver) classFor(d *Demand) *class {
	key := classKey(d)
	if c, ok := s.classes[key]; ok {
		return c
	}
	c := s.buildClass(d)
	s.classes[key] = c
	return c
}

type rej struct {
	o    int32
	kind rejKind
}

func (s *solver) buildClass(d *Demand) *class {
	c := &class{member: make([]bool, s.n)}
	pk := parentKey(d)
	kinds, ok := s.parents[pk]
	if !ok {
		kinds = make([]rejKind, s.n)
		for i := range s.offs {
			o := &s.offs[i]
			for _, f := range rejectOrder {
				if f != rkSpot && f != rkPrice && fails(f, d, o) {
					kinds[i] = f
					break
				}
			}
		}
		s.parents[pk] = kinds
	}
	pl := &d.Placement
	spotOK := pl.Spot != nil && pl.Spot.Allowed
	rejs := make([]rej, 0, s.n)
	for _, i := range s.byRank {
		o := &s.offs[i]
		k := kinds[i]
		switch {
		case k != rkNone && k <= rkLabel:
		case o.Spot && !spotOK:
			k = rkSpot
		case k != rkNone:
		case pl.MaxHourlyCost > 0 && o.Price > pl.MaxHourlyCost:
			k = rkPrice
		}
		if k == rkNone {
			c.feas = append(c.feas, i)
			c.member[i] = true
			continue
		}
		rejs = append(rejs, rej{o: i, kind: k})
	}
	c.rejected = s.groupRejections(d, rejs)
	if len(c.feas) == 0 {
		c.emptyMsg = s.emptyMessage(d)
	}

	// Groups by (cloud, region, spot), in that order (clouds and regions are
	// interned in name order), found through a dense index.
	nr := len(s.regionNames)
	slot := func(i int32) int { return (int(s.cloudOf[i])*nr+int(s.regionOf[i]))*2 + b2i(s.offs[i].Spot) }
	gidx := make([]int32, len(s.cloudNames)*nr*2)
	for _, i := range c.feas {
		gidx[slot(i)] = 1
	}
	c.cloudPos = make([]int32, len(s.cloudNames))
	for i := range c.cloudPos {
		c.cloudPos[i] = -1
	}
	c.regionPos = make([]int32, nr)
	for i := range c.regionPos {
		c.regionPos[i] = -1
	}
	for k, used := range gidx {
		if used == 0 {
			gidx[k] = -1
			continue
		}
		cloud, region, spot := int32(k/2/nr), int32(k/2%nr), k%2 == 1
		gidx[k] = int32(len(c.groups))
		if c.cloudPos[cloud] < 0 {
			c.cloudPos[cloud] = int32(len(c.clouds))
			c.clouds = append(c.clouds, cloud)
			c.cloudGroups = append(c.cloudGroups, nil)
			c.hasOD = append(c.hasOD, false)
		}
		cp := c.cloudPos[cloud]
		c.cloudGroups[cp] = append(c.cloudGroups[cp], int32(len(c.groups)))
		if spot {
			c.hasSpot = true
		} else {
			c.hasOD[cp] = true
		}
		if c.regionPos[region] < 0 {
			c.regionPos[region] = int32(len(c.regions))
			c.regions = append(c.regions, region)
		}
		c.groups = append(c.groups, group{cloud: cloud, region: region, rpos: c.regionPos[region], spot: spot})
	}
	c.minPrice = make([]int32, 2*len(c.clouds))
	for i := range c.minPrice {
		c.minPrice[i] = -1
	}
	for _, i := range c.feas {
		o := &s.offs[i]
		g := &c.groups[gidx[slot(i)]]
		if s.finite[i] {
			g.fin = append(g.fin, i)
		} else {
			g.unl = append(g.unl, i)
		}
		slot := 2 * int(c.cloudPos[s.cloudOf[i]])
		if o.Spot {
			slot++
		}
		if m := c.minPrice[slot]; m < 0 || o.Price < s.offs[m].Price {
			c.minPrice[slot] = i
		}
		c.maxPrice = max(c.maxPrice, o.Price)
	}
	byBase := func(list []int32) {
		slices.SortStableFunc(list, func(a, b int32) int {
			switch {
			case s.base[a] < s.base[b]:
				return -1
			case s.base[a] > s.base[b]:
				return 1
			}
			return 0
		})
	}
	for gi := range c.groups {
		g := &c.groups[gi]
		byBase(g.unl)
		byBase(g.fin)
		for _, o := range g.unl {
			if n := len(g.unlFront); n == 0 || s.offs[o].Price < s.offs[g.unlFront[n-1]].Price {
				g.unlFront = append(g.unlFront, o)
			}
		}
	}
	return c
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

const maxRejections = 50

// groupRejections makes the Rejected list: "cloud/*" when every offering of a
// cloud fails for the same reason, else one entry per offering; when that is
// more than maxRejections, per cloud and reason. Reasons are formatted only
// for the entries made.
func (s *solver) groupRejections(d *Demand, rejs []rej) []CandidateRejection {
	if len(rejs) == 0 {
		return nil
	}
	// The generic reason depends on the filter only, except for labels
	// (which label fails); clouds are grouped anyway.
	labelKeys := sortedKeys(d.Placement.Labels)
	gkey := func(r rej) int32 {
		if r.kind != rkLabel {
			return int32(r.kind)
		}
		for j, k := range labelKeys {
			if s.offs[r.o].Labels[k] != d.Placement.Labels[k] {
				return 100 + int32(j)
			}
		}
		return 100
	}
	byCloud := make([][]rej, len(s.cloudNames))
	for _, r := range rejs {
		c := s.cloudOf[r.o]
		byCloud[c] = append(byCloud[c], r)
	}
	generic := map[[2]int32]string{}
	gen := func(r rej) string {
		k := [2]int32{gkey(r), -1}
		if r.kind == rkCloud {
			k[1] = s.cloudOf[r.o]
		}
		g, ok := generic[k]
		if !ok {
			_, g = reason(r.kind, d, &s.offs[r.o])
			generic[k] = g
		}
		return g
	}
	specific := func(r rej) string {
		sp, _ := reason(r.kind, d, &s.offs[r.o])
		return sp
	}
	var out []CandidateRejection
	var partial []int32
	for c := range int32(len(byCloud)) {
		rs := byCloud[c]
		if len(rs) == 0 {
			continue
		}
		k0 := gkey(rs[0])
		same := true
		for _, r := range rs[1:] {
			if gkey(r) != k0 {
				same = false
				break
			}
		}
		if int32(len(rs)) == s.cloudOffers[c] && same {
			var why string
			switch rs[0].kind {
			case rkCloud, rkSpot:
				why = gen(rs[0]) // the same words for every offering
			case rkUnavailable:
				why = s.offs[rs[0].o].Unavailable
				for _, r := range rs[1:] {
					if s.offs[r.o].Unavailable != why {
						why = gen(rs[0])
						break
					}
				}
			default:
				why = specific(rs[0])
				for _, r := range rs[1:] {
					if specific(r) != why {
						why = gen(rs[0])
						break
					}
				}
			}
			out = append(out, CandidateRejection{Candidate: s.cloudNames[c] + "/*", Reason: why})
			continue
		}
		partial = append(partial, c)
	}
	n := len(out)
	for _, c := range partial {
		n += len(byCloud[c])
	}
	for _, c := range partial {
		rs := byCloud[c]
		if n <= maxRejections {
			for _, r := range rs {
				out = append(out, CandidateRejection{Candidate: s.offs[r.o].ID, Reason: specific(r)})
			}
			continue
		}
		// Too many: one entry per reason of this cloud.
		count := map[int32]int{}
		var order []rej
		for _, r := range rs {
			k := gkey(r)
			if count[k] == 0 {
				order = append(order, r)
			}
			count[k]++
		}
		for _, r := range order {
			out = append(out, CandidateRejection{
				Candidate: s.cloudNames[c] + "/*",
				Reason:    fmt.Sprintf("%d of %d offerings: %s", count[gkey(r)], s.cloudOffers[c], gen(r)),
			})
		}
	}
	sort.SliceStable(out, func(a, b int) bool {
		if out[a].Candidate != out[b].Candidate {
			return out[a].Candidate < out[b].Candidate
		}
		return out[a].Reason < out[b].Reason
	})
	if len(out) > maxRejections {
		more := len(out) - (maxRejections - 1)
		out = append(out[:maxRejections-1], CandidateRejection{Candidate: "…", Reason: fmt.Sprintf("%d more rejections", more)})
	}
	return out
}

// emptyMessage explains why no offering is feasible: the filters are applied
// one at a time (messageOrder) and the first that leaves nothing is named.
func (s *solver) emptyMessage(d *Demand) string {
	if s.n == 0 {
		return "no offerings"
	}
	left := make([]*Offering, 0, s.n)
	for _, i := range s.byRank {
		left = append(left, &s.offs[i])
	}
	r, pl := &d.Resources, &d.Placement
	for _, k := range messageOrder {
		var next []*Offering
		if k == rkLabel {
			// Label by label, so the message names the one that binds.
			cur := left
			for _, key := range sortedKeys(pl.Labels) {
				var nx []*Offering
				for _, o := range cur {
					if o.Labels[key] == pl.Labels[key] {
						nx = append(nx, o)
					}
				}
				if len(nx) == 0 {
					return fmt.Sprintf("placement.labels %s=%s leaves no offering (fitting offerings have %s: %s)",
						key, pl.Labels[key], key, listOf(cur, func(o *Offering) string { return o.Labels[key] }))
				}
				cur = nx
			}
			left = cur
			continue
		}
		for _, o := range left {
			if !fails(k, d, o) {
				next = append(next, o)
			}
		}
		if len(next) > 0 {
			left = next
			continue
		}
		switch k {
		case rkUnavailable:
			return "no offering is available (" + listOf(left, func(o *Offering) string { return o.Cloud + ": " + o.Unavailable }) + ")"
		case rkRuntime:
			return fmt.Sprintf("no available offering runs %s workloads (they run: %s)", d.Runtime,
				listOf(left, func(o *Offering) string { return strings.Join(o.Runtimes, "+") }))
		case rkGPUType:
			return fmt.Sprintf("no offering has %s %s GPU (offerings have: %s)", article(r.GPUType), r.GPUType, listOf(left, func(o *Offering) string {
				if o.Accelerator == "" {
					return "no GPU"
				}
				return o.Accelerator
			}))
		case rkGPUCount:
			most := 0
			for _, o := range left {
				most = max(most, o.AcceleratorCount)
			}
			return fmt.Sprintf("no offering has %d %s GPUs (at most %d)", r.GPUCount, r.GPUType, most)
		case rkCPU:
			most := 0.0
			for _, o := range left {
				most = max(most, o.VCPUs)
			}
			return fmt.Sprintf("no fitting offering has %g vCPUs (at most %g)", r.CPU, most)
		case rkMemory:
			most := 0.0
			for _, o := range left {
				most = max(most, o.MemoryGiB)
			}
			return fmt.Sprintf("no fitting offering has %s memory (at most %gGiB)", bytesString(r.MemoryBytes), most)
		case rkCloud:
			return fmt.Sprintf("placement.clouds %s leaves no offering (fitting offerings are on: %s)",
				strings.Join(pl.Clouds, ", "), listOf(left, func(o *Offering) string { return o.Cloud }))
		case rkRegion:
			return fmt.Sprintf("placement.regions %s leaves no offering (fitting offerings are in: %s)",
				strings.Join(pl.Regions, ", "), listOf(left, func(o *Offering) string { return o.Region }))
		case rkSpot:
			return "only spot offerings fit, and placement.spot.allowed is false"
		case rkPrice:
			cheapest := math.Inf(1)
			for _, o := range left {
				cheapest = min(cheapest, o.Price)
			}
			return fmt.Sprintf("placement.maxHourlyCost $%.4f/h is below the cheapest fitting offering, $%.4f/h", pl.MaxHourlyCost, cheapest)
		}
	}
	return "no feasible offering"
}

// article is "a" or "an" before a name read letter by letter or as a word
// ("an H100", "an A100", "a T4").
func article(name string) string {
	if name != "" && strings.ContainsRune("AEFHILMNORSXaefhilmnorsx", rune(name[0])) {
		return "an"
	}
	return "a"
}

// clouds says "1 cloud has" or "n clouds have".
func cloudsHave(n int) string {
	if n == 1 {
		return "1 cloud has"
	}
	return fmt.Sprintf("%d clouds have", n)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// listOf lists the distinct values of f, sorted, at most 6.
func listOf(os []*Offering, f func(*Offering) string) string {
	var vals []string
	for _, o := range os {
		vals = append(vals, f(o))
	}
	slices.Sort(vals)
	vals = slices.Compact(vals)
	if len(vals) > 6 {
		vals = append(vals[:6], fmt.Sprintf("… %d more", len(vals)-6))
	}
	return strings.Join(vals, ", ")
}
