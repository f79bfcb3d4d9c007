package placement

import (
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
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
	// limited: finite, or in the scope of a quota; such offerings are
	// shared (through the joint flow), the others are not.
	limited []bool

	// quotas, by (cloud, region) with a cloud's own quota (region "")
	// first; qReg and qCloud give, per offering, 1 + the index of the
	// quota of its region and of its cloud (0: none).
	quotas []squota
	qReg   []int32
	qCloud []int32

	cloudNames  []string
	cloudIdx    map[string]int32
	cloudOffers []int32 // per cloud: how many offerings the problem has
	regionNames []string
	regionIdx   map[string]int32
	rttRows     map[int32][]float64 // traffic region -> RTT to every region (NaN: not looked up yet)

	rtBit        map[string]uint64 // runtime -> its bit in rtMask
	rtMask       []uint64          // per offering: the runtimes it runs
	rtSlow       bool              // more than 64 runtimes: compare strings
	accel        []int32           // per offering: accelerator id
	accelNames   []string
	memB         []float64 // per offering: memory in bytes
	byGroup      []int32   // offerings by (cloud, region, spot, base, ID)
	cloudMembers [][]int32 // per cloud: its offerings in ID order
	cb           *catBits

	classes map[string]*class
	cats    map[string]*catClass
	dems    []*dem
	or      oracle
}

// class is what every demand with the same filter inputs shares: the feasible
// offerings, grouped for candidate generation, and the rejections.
type class struct {
	nFeas       int  // feasible offerings
	member      bits // feasible offerings
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
	unl           []int32 // unlimited capacity and no quota, by (base, ID)
	fin           []int32 // limited (finite capacity or a quota), by (base, ID)
	unlFront      []int32 // of unl, those no other beats in both base and price
}

// squota is one Quota in the solver's terms.
type squota struct {
	cloud  int32
	region int32 // -1: the whole cloud
	limit  int64 // >= 0
	parent int32 // a region quota's cloud quota, -1 if none
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
	s.cats = map[string]*catClass{}
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
	// Interned runtimes and accelerators, memory in bytes.
	s.rtBit = map[string]uint64{}
	s.rtMask = make([]uint64, s.n)
	s.accel = make([]int32, s.n)
	s.memB = make([]float64, s.n)
	accelIdx := map[string]int32{}
	for _, i := range s.byRank {
		o := &s.offs[i]
		for _, r := range o.Runtimes {
			b, ok := s.rtBit[r]
			if !ok {
				if len(s.rtBit) >= 64 {
					s.rtSlow = true
					continue
				}
				b = 1 << len(s.rtBit)
				s.rtBit[r] = b
			}
			s.rtMask[i] |= b
		}
		a, ok := accelIdx[o.Accelerator]
		if !ok {
			a = int32(len(s.accelNames))
			accelIdx[o.Accelerator] = a
			s.accelNames = append(s.accelNames, o.Accelerator)
		}
		s.accel[i] = a
		s.memB[i] = o.MemoryGiB * (1 << 30)
	}
	s.buildQuotas()
	s.cloudMembers = make([][]int32, len(s.cloudNames))
	for _, i := range s.byRank {
		s.cloudMembers[s.cloudOf[i]] = append(s.cloudMembers[s.cloudOf[i]], i)
	}
	s.byGroup = slices.Clone(s.byRank)
	slices.SortStableFunc(s.byGroup, func(a, b int32) int {
		switch {
		case s.cloudOf[a] != s.cloudOf[b]:
			return int(s.cloudOf[a]) - int(s.cloudOf[b])
		case s.regionOf[a] != s.regionOf[b]:
			return int(s.regionOf[a]) - int(s.regionOf[b])
		case s.offs[a].Spot != s.offs[b].Spot:
			return b2i(s.offs[a].Spot) - b2i(s.offs[b].Spot)
		case s.base[a] < s.base[b]:
			return -1
		case s.base[a] > s.base[b]:
			return 1
		}
		return 0
	})
	return s
}

// buildQuotas indexes p.Quotas: those naming no offering's cloud (and
// region) are dropped, two on the same scope merge into the smaller.
func (s *solver) buildQuotas() {
	s.limited = slices.Clone(s.finite)
	if len(s.p.Quotas) == 0 {
		return
	}
	has := map[[2]int32]bool{}
	for i := range s.offs {
		has[[2]int32{s.cloudOf[i], s.regionOf[i]}] = true
		has[[2]int32{s.cloudOf[i], -1}] = true
	}
	lim := map[[2]int32]int64{}
	for _, q := range s.p.Quotas {
		c, ok := s.cloudIdx[q.Cloud]
		if !ok {
			continue
		}
		r := int32(-1)
		if q.Region != "" {
			ri, ok := s.regionIdx[q.Region]
			if !ok {
				continue
			}
			r = ri
		}
		k := [2]int32{c, r}
		if !has[k] {
			continue
		}
		l := int64(max(q.Limit, 0))
		if old, dup := lim[k]; !dup || l < old {
			lim[k] = l
		}
	}
	keys := make([][2]int32, 0, len(lim))
	for k := range lim {
		keys = append(keys, k)
	}
	// Ids sort like names, and -1 (the whole cloud) before every region.
	slices.SortFunc(keys, func(a, b [2]int32) int {
		if a[0] != b[0] {
			return int(a[0] - b[0])
		}
		return int(a[1] - b[1])
	})
	idx := map[[2]int32]int32{}
	for _, k := range keys {
		parent := int32(-1)
		if p, ok := idx[[2]int32{k[0], -1}]; ok && k[1] >= 0 {
			parent = p
		}
		idx[k] = int32(len(s.quotas))
		s.quotas = append(s.quotas, squota{cloud: k[0], region: k[1], limit: lim[k], parent: parent})
	}
	s.qReg = make([]int32, s.n)
	s.qCloud = make([]int32, s.n)
	for i := range s.offs {
		if q, ok := idx[[2]int32{s.cloudOf[i], s.regionOf[i]}]; ok {
			s.qReg[i] = q + 1
			s.limited[i] = true
		}
		if q, ok := idx[[2]int32{s.cloudOf[i], -1}]; ok {
			s.qCloud[i] = q + 1
			s.limited[i] = true
		}
	}
}

// quotaChain lists the quotas (indices) o's new replicas count against,
// the region's first.
func (s *solver) quotaChain(o int32) (q [2]int32, n int) {
	if len(s.quotas) == 0 {
		return q, 0
	}
	if r := s.qReg[o]; r > 0 {
		q[n] = r - 1
		n++
	}
	if c := s.qCloud[o]; c > 0 {
		q[n] = c - 1
		n++
	}
	return q, n
}

// quotaName is "cloud X region Y" or "cloud X".
func (s *solver) quotaName(q int32) string {
	sq := &s.quotas[q]
	if sq.region < 0 {
		return "cloud " + s.cloudNames[sq.cloud]
	}
	return "cloud " + s.cloudNames[sq.cloud] + " region " + s.regionNames[sq.region]
}

// rtt is RTT(t, r) as the package documentation defines it.
func (s *solver) rtt(t, r int32) float64 {
	if t == r {
		return 0
	}
	return s.rttRow(t)[r]
}

// rttRow is RTT(t, r) for every region r (RTT(t, t) aside).
func (s *solver) rttRow(t int32) []float64 {
	row := s.rttRows[t]
	if row == nil {
		// The whole row at once: afterwards lookups only read.
		row = make([]float64, len(s.regionNames))
		tn := s.regionNames[t]
		for r, rn := range s.regionNames {
			v, ok := s.p.RTTms[[2]string{tn, rn}]
			if !ok {
				v, ok = s.p.RTTms[[2]string{rn, tn}]
			}
			if !ok {
				v = DefaultRTTms
			}
			row[r] = v
		}
		s.rttRows[t] = row
	}
	return row
}

// prepare derives every dem and decides stage A (hard-rule infeasibility).
// prepare derives every dem and decides stage A (hard-rule infeasibility).
// The shared caches (filter results per parent and class, RTT rows) are
// filled first; then every demand is derived on its own, in parallel.
func (s *solver) prepare() {
	nd := len(s.p.Demands)
	keys := make([]string, nd)
	ckeys := make([]string, nd)
	parallel(nd, func(_, i int) {
		keys[i] = classKey(&s.p.Demands[i])
		ckeys[i] = catKey(&s.p.Demands[i])
	})
	// Categorical classes, then classes, each built once (in parallel),
	// from the first demand with the key.
	s.buildCatBits()
	var crep []int
	for i, k := range ckeys {
		if _, ok := s.cats[k]; !ok {
			s.cats[k] = nil
			crep = append(crep, i)
		}
	}
	cats := make([]*catClass, len(crep))
	parallel(len(crep), func(_, j int) { cats[j] = s.buildCat(&s.p.Demands[crep[j]]) })
	for j, i := range crep {
		s.cats[ckeys[i]] = cats[j]
	}
	var rep []int
	for i, k := range keys {
		if _, ok := s.classes[k]; !ok {
			s.classes[k] = nil
			rep = append(rep, i)
		}
	}
	cls := make([]*class, len(rep))
	parallel(len(rep), func(_, j int) { cls[j] = s.buildClass(&s.p.Demands[rep[j]], s.cats[ckeys[rep[j]]]) })
	for j, i := range rep {
		s.classes[keys[i]] = cls[j]
	}
	// RTT rows for every traffic region, so that lookups only read.
	for _, d := range s.p.Demands {
		for t := range d.Placement.Traffic {
			s.rttRow(s.regionIdx[t])
		}
	}
	s.dems = make([]*dem, nd)
	workers := s.workers()
	parallel(nd, func(w, i int) { s.dems[i] = workers[w].derive(i, s.classes[keys[i]]) })
}

// workers are copies of s that share its (then read-only) tables and each
// have their own scratch solver, one per parallel worker.
func (s *solver) workers() []*solver {
	ws := make([]*solver, nWorkers())
	for w := range ws {
		c := *s
		c.or = oracle{}
		ws[w] = &c
	}
	return ws
}

func (s *solver) derive(i int, cls *class) *dem {
	d := &s.p.Demands[i]
	m := &dem{i: i, d: d, R: max(d.Replicas, 0), cls: cls}
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
		if !ok || !m.cls.has(o) {
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
	return m
}

const budgetEps = 1e-9

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

// Filters, in the order rejections report the first one that fails (the
// categorical ones, catOrder, then the numeric ones, numKind).
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

// messageOrder is the order in which filters are applied to explain an empty
// feasible set: what exists at all first, then what the placement rules keep.
var messageOrder = []rejKind{rkUnavailable, rkRuntime, rkGPUType, rkGPUCount, rkCPU, rkMemory, rkCloud, rkRegion, rkLabel, rkSpot, rkPrice}

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

// nWorkers is how many goroutines the parallel parts use.
func nWorkers() int { return max(1, min(runtime.GOMAXPROCS(0), 8)) }

// parallel calls f(worker, i) for every i in [0, n), worker w taking the
// i with i % workers == w; the results must not depend on the order.
func parallel(n int, f func(w, i int)) {
	nw := min(nWorkers(), n)
	if nw <= 1 {
		for i := range n {
			f(0, i)
		}
		return
	}
	var wg sync.WaitGroup
	for w := range nw {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += nw {
				f(w, i)
			}
		}()
	}
	wg.Wait()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
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
