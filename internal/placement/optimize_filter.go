package placement

import (
	"fmt"
	"math"
	bits64 "math/bits"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// The feasibility filters, fast enough for fleets where every deployment
// asks for something a little different. Offering attributes are interned
// once (runtime bits, accelerator ids). The categorical filters
// (unavailable, runtime, clouds, regions, labels, spot, GPU type) are
// evaluated once per distinct combination (catClass); the numeric ones (GPU
// count, CPU, memory, maxHourlyCost) per class, on the offerings the
// categorical ones let through, in an order (cloud, region, purchase option,
// cost) that makes the class's groups come out sorted. Rejection reasons are
// formatted only for the entries a plan reports.

// fctx is a demand's filters in the interned terms.
type fctx struct {
	d        *Demand
	rt       uint64   // runtime bit (0: no offering runs it)
	clouds   []bool   // per cloud id; nil: any
	regions  []bool   // per region id; nil: any
	labels   []string // placement.labels keys, sorted
	spotOK   bool
	gpuOK    []bool // per accelerator id, when a GPU is asked for; nil: any
	gpuN     int
	cpu, mem float64
	maxPrice float64
}

func (s *solver) ctx(d *Demand) *fctx {
	pl := &d.Placement
	c := &fctx{d: d, spotOK: pl.Spot != nil && pl.Spot.Allowed, cpu: d.Resources.CPU,
		mem: float64(d.Resources.MemoryBytes), maxPrice: pl.MaxHourlyCost}
	if b, ok := s.rtBit[d.Runtime]; ok {
		c.rt = b
	}
	if len(pl.Clouds) > 0 {
		c.clouds = make([]bool, len(s.cloudNames))
		for _, n := range pl.Clouds {
			if i, ok := s.cloudIdx[n]; ok {
				c.clouds[i] = true
			}
		}
	}
	if len(pl.Regions) > 0 {
		c.regions = make([]bool, len(s.regionNames))
		for _, n := range pl.Regions {
			if i, ok := s.regionIdx[n]; ok {
				c.regions[i] = true
			}
		}
	}
	c.labels = sortedKeys(pl.Labels)
	if d.Resources.GPUCount > 0 {
		c.gpuN = d.Resources.GPUCount
		c.gpuOK = make([]bool, len(s.accelNames))
		for i, a := range s.accelNames {
			c.gpuOK[i] = strings.EqualFold(a, d.Resources.GPUType)
		}
	}
	return c
}

// failsAt reports whether offering i fails filter k of c.
func (s *solver) failsAt(k rejKind, c *fctx, i int32) bool {
	o := &s.offs[i]
	switch k {
	case rkUnavailable:
		return o.Unavailable != ""
	case rkRuntime:
		if s.rtSlow {
			return !slices.Contains(o.Runtimes, c.d.Runtime)
		}
		return s.rtMask[i]&c.rt == 0
	case rkCloud:
		return c.clouds != nil && !c.clouds[s.cloudOf[i]]
	case rkRegion:
		return c.regions != nil && !c.regions[s.regionOf[i]]
	case rkLabel:
		return s.labelFail(c, i) >= 0
	case rkSpot:
		return o.Spot && !c.spotOK
	case rkGPUType:
		return c.gpuOK != nil && !c.gpuOK[s.accel[i]]
	case rkGPUCount:
		return c.gpuOK != nil && o.AcceleratorCount < c.gpuN
	case rkCPU:
		return o.VCPUs < c.cpu
	case rkMemory:
		return s.memB[i] < c.mem
	case rkPrice:
		return c.maxPrice > 0 && o.Price > c.maxPrice
	}
	return false
}

// labelFail is the index (in c.labels) of the first label offering i lacks,
// or -1.
func (s *solver) labelFail(c *fctx, i int32) int {
	for j, k := range c.labels {
		if s.offs[i].Labels[k] != c.d.Placement.Labels[k] {
			return j
		}
	}
	return -1
}

var catOrder = []rejKind{rkUnavailable, rkRuntime, rkCloud, rkRegion, rkLabel, rkSpot, rkGPUType}

// bits is a set of offerings.
type bits []uint64

func (s *solver) newBits() bits { return make(bits, (s.n+63)/64) }

func (b bits) has(i int32) bool { return b[i/64]&(1<<(i%64)) != 0 }
func (b bits) set(i int32)      { b[i/64] |= 1 << (i % 64) }

func (b bits) count() int {
	n := 0
	for _, w := range b {
		n += popcount(w)
	}
	return n
}

func popcount(w uint64) int { return bits64.OnesCount64(w) }

func trailingZeros(w uint64) int { return bits64.TrailingZeros64(w) }

// andCount is |a & b|.
func andCount(a, b bits) int {
	n := 0
	for i, w := range a {
		n += popcount(w & b[i])
	}
	return n
}

// catClass: the categorical filters of one combination over all offerings.
// fail[j] holds the offerings whose first failed filter is the j-th of
// catOrder, except labels, which are by label (failLabel[j]: first failing
// label j).
type catClass struct {
	pass      bits
	fail      [7]bits
	failLabel []bits
	passList  []int32 // offerings in pass, by (cloud, region, spot, base, ID)
	// Per cloud: how many of its offerings fail, the generic key they share
	// if they all fail for one reason (else -1), and whether their specific
	// reasons are the same too.
	nFail   []int
	uniform []int32
	sameSp  []bool
	reasons [][]catReason // per cloud: its categorical reasons
}

// catReason: how many offerings of a cloud fail for one reason (generic key),
// and the first of them.
type catReason struct {
	key   int32
	n     int
	first int32
}

// catBits are the sets the categorical filters are made of, built once per
// problem (before anything runs in parallel).
type catBits struct {
	avail   bits            // not Unavailable
	spot    bits            // Spot
	runtime map[string]bits // runs it
	cloud   []bits          // per cloud id
	region  []bits          // per region id
	label   map[[2]string]bits
	gpu     map[string]bits // accelerator EqualFold the type
}

func (s *solver) buildCatBits() {
	cb := &catBits{avail: s.newBits(), spot: s.newBits(), runtime: map[string]bits{}, label: map[[2]string]bits{}, gpu: map[string]bits{}}
	cb.cloud = make([]bits, len(s.cloudNames))
	for i := range cb.cloud {
		cb.cloud[i] = s.newBits()
	}
	cb.region = make([]bits, len(s.regionNames))
	for i := range cb.region {
		cb.region[i] = s.newBits()
	}
	for i := range int32(s.n) {
		o := &s.offs[i]
		if o.Unavailable == "" {
			cb.avail.set(i)
		}
		if o.Spot {
			cb.spot.set(i)
		}
		cb.cloud[s.cloudOf[i]].set(i)
		cb.region[s.regionOf[i]].set(i)
		for _, r := range o.Runtimes {
			b := cb.runtime[r]
			if b == nil {
				b = s.newBits()
				cb.runtime[r] = b
			}
			b.set(i)
		}
	}
	for _, d := range s.p.Demands {
		for k, v := range d.Placement.Labels {
			key := [2]string{k, v}
			if _, ok := cb.label[key]; ok {
				continue
			}
			b := s.newBits()
			for i := range int32(s.n) {
				if s.offs[i].Labels[k] == v {
					b.set(i)
				}
			}
			cb.label[key] = b
		}
		if t := d.Resources.GPUType; d.Resources.GPUCount > 0 {
			if _, ok := cb.gpu[t]; ok {
				continue
			}
			b := s.newBits()
			for i := range int32(s.n) {
				if strings.EqualFold(s.offs[i].Accelerator, t) {
					b.set(i)
				}
			}
			cb.gpu[t] = b
		}
	}
	s.cb = cb
}

func catKey(d *Demand) string {
	var b strings.Builder
	pl := &d.Placement
	b.WriteString(d.Runtime)
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
	b.WriteByte(0)
	if pl.Spot != nil && pl.Spot.Allowed {
		b.WriteByte('s')
	}
	b.WriteByte(0)
	if d.Resources.GPUCount > 0 {
		b.WriteString(d.Resources.GPUType)
	} else {
		b.WriteByte(1)
	}
	return b.String()
}

// classKey adds the numeric filters to catKey.
func classKey(d *Demand) string {
	r := d.Resources
	var b strings.Builder
	b.WriteString(catKey(d))
	b.WriteByte(0)
	b.WriteString(strconv.FormatFloat(r.CPU, 'g', -1, 64))
	b.WriteByte(0)
	b.WriteString(strconv.FormatInt(r.MemoryBytes, 10))
	b.WriteByte(0)
	if r.GPUCount > 0 {
		b.WriteString(strconv.Itoa(r.GPUCount))
	}
	b.WriteByte(0)
	if d.Placement.MaxHourlyCost > 0 {
		b.WriteString(strconv.FormatFloat(d.Placement.MaxHourlyCost, 'g', -1, 64))
	}
	return b.String()
}

func (s *solver) buildCat(d *Demand) *catClass {
	cb := s.cb
	pl := &d.Placement
	cc := &catClass{}
	rem := slices.Clone(cb.avail)
	cut := func(j int, keep bits) {
		f := s.newBits()
		for w := range rem {
			f[w] = rem[w] &^ keep[w]
			rem[w] &= keep[w]
		}
		cc.fail[j] = f
	}
	none := s.newBits()
	all := s.newBits()
	for w := range all {
		all[w] = ^uint64(0)
	}
	// Unavailable: everything outside avail.
	cc.fail[0] = s.newBits()
	for w := range all {
		cc.fail[0][w] = ^cb.avail[w]
	}
	if rt, ok := cb.runtime[d.Runtime]; ok {
		cut(1, rt)
	} else {
		cut(1, none)
	}
	keepSet := func(ids []string, idx map[string]int32, per []bits) bits {
		if len(ids) == 0 {
			return all
		}
		k := s.newBits()
		for _, n := range ids {
			if i, ok := idx[n]; ok {
				for w := range k {
					k[w] |= per[i][w]
				}
			}
		}
		return k
	}
	cut(2, keepSet(pl.Clouds, s.cloudIdx, cb.cloud))
	cut(3, keepSet(pl.Regions, s.regionIdx, cb.region))
	labelsFail := s.newBits()
	for _, k := range sortedKeys(pl.Labels) {
		keep := cb.label[[2]string{k, pl.Labels[k]}]
		f := s.newBits()
		for w := range rem {
			f[w] = rem[w] &^ keep[w]
			rem[w] &= keep[w]
			labelsFail[w] |= f[w]
		}
		cc.failLabel = append(cc.failLabel, f)
	}
	cc.fail[4] = labelsFail
	if pl.Spot != nil && pl.Spot.Allowed {
		cut(5, all)
	} else {
		notSpot := s.newBits()
		for w := range notSpot {
			notSpot[w] = ^cb.spot[w]
		}
		cut(5, notSpot)
	}
	if d.Resources.GPUCount > 0 {
		cut(6, cb.gpu[d.Resources.GPUType])
	} else {
		cut(6, all)
	}
	// Bits past the last offering are not offerings.
	if r := s.n % 64; r != 0 {
		mask := uint64(1)<<r - 1
		rem[len(rem)-1] &= mask
		for j := range cc.fail {
			cc.fail[j][len(rem)-1] &= mask
		}
	}
	cc.pass = rem
	for _, i := range s.byGroup {
		if rem.has(i) {
			cc.passList = append(cc.passList, i)
		}
	}
	// Per cloud summaries for the rejections.
	cx := s.ctx(d)
	nc := len(s.cloudNames)
	cc.nFail, cc.uniform, cc.sameSp = make([]int, nc), make([]int32, nc), make([]bool, nc)
	cc.reasons = make([][]catReason, nc)
	// The sets of offerings that fail for one reason, with their keys.
	type failSet struct {
		key int32
		b   bits
	}
	var sets []failSet
	for j, f := range cc.fail {
		if j == 4 {
			for l, fl := range cc.failLabel {
				sets = append(sets, failSet{100 + int32(l), fl})
			}
			continue
		}
		sets = append(sets, failSet{int32(catOrder[j]), f})
	}
	for c := range nc {
		cm := s.cb.cloud[c]
		for _, fs := range sets {
			n, first := 0, int32(-1)
			for w, x := range fs.b {
				if x &= cm[w]; x != 0 {
					if first < 0 {
						first = int32(w*64 + trailingZeros(x))
					}
					n += popcount(x)
				}
			}
			if n > 0 {
				cc.reasons[c] = append(cc.reasons[c], catReason{key: fs.key, n: n, first: first})
				cc.nFail[c] += n
			}
		}
		// Reasons in the order of their first offering's ID, like a scan.
		slices.SortFunc(cc.reasons[c], func(a, b catReason) int { return int(s.rank[a.first]) - int(s.rank[b.first]) })
		cc.uniform[c] = -1
		if len(cc.reasons[c]) != 1 {
			continue
		}
		cc.uniform[c] = cc.reasons[c][0].key
		first := cc.reasons[c][0].first
		cc.sameSp[c] = true
		if k := rejKind(cc.uniform[c]); k == rkCloud || k == rkSpot {
			continue
		}
		for _, i := range s.cloudMembers[c] {
			if i != first && !rem.has(i) && !s.sameSpecific(cx, cc, first, i) {
				cc.sameSp[c] = false
				break
			}
		}
	}
	return cc
}

// catKind is the categorical filter offering i fails first (rkNone if none),
// with the label index for labels.
func (cc *catClass) catKind(i int32) (rejKind, int) {
	if cc.pass.has(i) {
		return rkNone, -1
	}
	for j, f := range cc.fail {
		if j == 4 {
			for l, fl := range cc.failLabel {
				if fl.has(i) {
					return rkLabel, l
				}
			}
			continue
		}
		if f.has(i) {
			return catOrder[j], -1
		}
	}
	return rkNone, -1
}

// numKind is the first numeric filter of c that offering i fails.
func (s *solver) numKind(c *fctx, i int32) rejKind {
	o := &s.offs[i]
	switch {
	case c.gpuOK != nil && o.AcceleratorCount < c.gpuN:
		return rkGPUCount
	case o.VCPUs < c.cpu:
		return rkCPU
	case s.memB[i] < c.mem:
		return rkMemory
	case c.maxPrice > 0 && o.Price > c.maxPrice:
		return rkPrice
	}
	return rkNone
}

func (s *solver) buildClass(d *Demand, cat *catClass) *class {
	cx := s.ctx(d)
	nc, nr := len(s.cloudNames), len(s.regionNames)
	c := &class{member: s.newBits(), cloudPos: make([]int32, nc), regionPos: make([]int32, nr)}
	for i := range c.cloudPos {
		c.cloudPos[i] = -1
	}
	for i := range c.regionPos {
		c.regionPos[i] = -1
	}
	numRej := make([][]int32, nc)
	var g *group
	for _, i := range cat.passList {
		if k := s.numKind(cx, i); k != rkNone {
			numRej[s.cloudOf[i]] = append(numRej[s.cloudOf[i]], i)
			continue
		}
		o := &s.offs[i]
		c.nFeas++
		c.member.set(i)
		cloud, region := s.cloudOf[i], s.regionOf[i]
		if g == nil || g.cloud != cloud || g.region != region || g.spot != o.Spot {
			if c.cloudPos[cloud] < 0 {
				c.cloudPos[cloud] = int32(len(c.clouds))
				c.clouds = append(c.clouds, cloud)
				c.cloudGroups = append(c.cloudGroups, nil)
				c.hasOD = append(c.hasOD, false)
				c.minPrice = append(c.minPrice, -1, -1)
			}
			if c.regionPos[region] < 0 {
				c.regionPos[region] = int32(len(c.regions))
				c.regions = append(c.regions, region)
			}
			cp := c.cloudPos[cloud]
			c.cloudGroups[cp] = append(c.cloudGroups[cp], int32(len(c.groups)))
			c.groups = append(c.groups, group{cloud: cloud, region: region, rpos: c.regionPos[region], spot: o.Spot})
			g = &c.groups[len(c.groups)-1]
		}
		cp := c.cloudPos[cloud]
		if o.Spot {
			c.hasSpot = true
		} else {
			c.hasOD[cp] = true
		}
		if s.limited[i] {
			g.fin = append(g.fin, i)
		} else {
			g.unl = append(g.unl, i)
			if n := len(g.unlFront); n == 0 || o.Price < s.offs[g.unlFront[n-1]].Price {
				g.unlFront = append(g.unlFront, i)
			}
		}
		slot := 2*int(cp) + b2i(o.Spot)
		if m := c.minPrice[slot]; m < 0 || o.Price < s.offs[m].Price {
			c.minPrice[slot] = i
		}
		c.maxPrice = max(c.maxPrice, o.Price)
	}
	c.rejected = s.rejections(cx, cat, numRej)
	if c.nFeas == 0 {
		c.emptyMsg = s.emptyMessage(cx)
	}
	return c
}

// has reports whether offering o is feasible for the class.
func (c *class) has(o int32) bool { return c.member.has(o) }

const maxRejections = 50

// rejections makes the Rejected list: "cloud/*" when every offering of a
// cloud fails for the same reason, else one entry per offering; when that is
// more than maxRejections, per cloud and reason.
func (s *solver) rejections(cx *fctx, cat *catClass, numRej [][]int32) []CandidateRejection {
	d := cx.d
	kindOf := func(o int32) (rejKind, int) {
		if k, l := cat.catKind(o); k != rkNone {
			return k, l
		}
		return s.numKind(cx, o), -1
	}
	// The generic reason depends on the filter only, except for labels
	// (which label fails); clouds are grouped anyway.
	gkey := func(o int32) int32 {
		k, l := kindOf(o)
		if k == rkLabel {
			return 100 + int32(l)
		}
		return int32(k)
	}
	generic := map[int32]string{}
	gen := func(o int32) string {
		key := gkey(o)
		g, ok := generic[key]
		if !ok {
			k, _ := kindOf(o)
			_, g = reason(k, d, &s.offs[o])
			generic[key] = g
		}
		return g
	}
	specific := func(o int32) string {
		k, _ := kindOf(o)
		sp, _ := reason(k, d, &s.offs[o])
		return sp
	}
	// rejected lists the offerings of cloud c that fail, in ID order.
	rejected := func(c int32) []int32 {
		var out []int32
		for _, i := range s.cloudMembers[c] {
			if !cat.pass.has(i) {
				out = append(out, i)
			}
		}
		return append(out, numRej[c]...)
	}
	var out []CandidateRejection
	var partial []int32
	for c := range int32(len(s.cloudNames)) {
		nCat, nNum := cat.nFail[c], len(numRej[c])
		switch {
		case nCat+nNum == 0:
			continue
		case int32(nCat+nNum) != s.cloudOffers[c]:
			partial = append(partial, c)
		case nNum == 0 && cat.uniform[c] >= 0:
			first := s.cloudMembers[c][0]
			why := gen(first)
			if cat.sameSp[c] {
				why = specific(first)
			}
			out = append(out, CandidateRejection{Candidate: s.cloudNames[c] + "/*", Reason: why})
		case nCat == 0:
			rs := numRej[c]
			k0 := s.numKind(cx, rs[0])
			same, sameSp := true, true
			for _, o := range rs[1:] {
				if s.numKind(cx, o) != k0 {
					same = false
					break
				}
				sameSp = sameSp && s.sameSpecific(cx, cat, rs[0], o)
			}
			if !same {
				partial = append(partial, c)
				continue
			}
			why := gen(rs[0])
			if sameSp {
				why = specific(rs[0])
			}
			out = append(out, CandidateRejection{Candidate: s.cloudNames[c] + "/*", Reason: why})
		default:
			partial = append(partial, c)
		}
	}
	n := len(out)
	for _, c := range partial {
		n += cat.nFail[c] + len(numRej[c])
	}
	for _, c := range partial {
		if n <= maxRejections {
			for _, o := range rejected(c) {
				out = append(out, CandidateRejection{Candidate: s.offs[o].ID, Reason: specific(o)})
			}
			continue
		}
		// Too many: one entry per reason of this cloud.
		reasons := slices.Clone(cat.reasons[c])
		for _, o := range numRej[c] {
			key := int32(s.numKind(cx, o))
			j := slices.IndexFunc(reasons, func(r catReason) bool { return r.key == key })
			if j < 0 {
				reasons = append(reasons, catReason{key: key, first: o})
				j = len(reasons) - 1
			}
			reasons[j].n++
		}
		for _, r := range reasons {
			out = append(out, CandidateRejection{
				Candidate: s.cloudNames[c] + "/*",
				Reason:    fmt.Sprintf("%d of %d offerings: %s", r.n, s.cloudOffers[c], gen(r.first)),
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

// sameSpecific reports whether offerings a and b, failing the same filter,
// get the same specific reason (without formatting it).
func (s *solver) sameSpecific(cx *fctx, cat *catClass, a, b int32) bool {
	oa, ob := &s.offs[a], &s.offs[b]
	k, l := cat.catKind(a)
	if k == rkNone {
		k = s.numKind(cx, a)
	}
	switch k {
	case rkUnavailable:
		return oa.Unavailable == ob.Unavailable
	case rkRuntime:
		return slices.Equal(oa.Runtimes, ob.Runtimes)
	case rkCloud, rkSpot:
		return true
	case rkRegion:
		return oa.Region == ob.Region
	case rkLabel:
		key := cx.labels[l]
		va, oka := oa.Labels[key]
		vb, okb := ob.Labels[key]
		return va == vb && oka == okb
	case rkGPUType:
		return oa.Accelerator == ob.Accelerator
	case rkGPUCount:
		return oa.AcceleratorCount == ob.AcceleratorCount && oa.Accelerator == ob.Accelerator
	case rkCPU:
		return oa.VCPUs == ob.VCPUs
	case rkMemory:
		return oa.MemoryGiB == ob.MemoryGiB
	case rkPrice:
		return oa.Price == ob.Price
	}
	return false
}

// emptyMessage explains why no offering is feasible: the filters are applied
// one at a time (messageOrder) and the first that leaves nothing is named.
func (s *solver) emptyMessage(cx *fctx) string {
	if s.n == 0 {
		return "no offerings"
	}
	d := cx.d
	r, pl := &d.Resources, &d.Placement
	left := slices.Clone(s.byRank)
	offs := func(ids []int32) []*Offering {
		out := make([]*Offering, len(ids))
		for j, i := range ids {
			out[j] = &s.offs[i]
		}
		return out
	}
	for _, k := range messageOrder {
		if k == rkLabel {
			// Label by label, so the message names the one that binds.
			for _, key := range cx.labels {
				var nx []int32
				for _, i := range left {
					if s.offs[i].Labels[key] == pl.Labels[key] {
						nx = append(nx, i)
					}
				}
				if len(nx) == 0 {
					return fmt.Sprintf("placement.labels %s=%s leaves no offering (fitting offerings have %s: %s)",
						key, pl.Labels[key], key, listOf(offs(left), func(o *Offering) string { return o.Labels[key] }))
				}
				left = nx
			}
			continue
		}
		var next []int32
		for _, i := range left {
			if !s.failsAt(k, cx, i) {
				next = append(next, i)
			}
		}
		if len(next) > 0 {
			left = next
			continue
		}
		os := offs(left)
		switch k {
		case rkUnavailable:
			return "no offering is available (" + listOf(os, func(o *Offering) string { return o.Cloud + ": " + o.Unavailable }) + ")"
		case rkRuntime:
			return fmt.Sprintf("no available offering runs %s workloads (they run: %s)", d.Runtime,
				listOf(os, func(o *Offering) string { return strings.Join(o.Runtimes, "+") }))
		case rkGPUType:
			return fmt.Sprintf("no offering has %s %s GPU (offerings have: %s)", article(r.GPUType), r.GPUType, listOf(os, func(o *Offering) string {
				if o.Accelerator == "" {
					return "no GPU"
				}
				return o.Accelerator
			}))
		case rkGPUCount:
			most := 0
			for _, o := range os {
				most = max(most, o.AcceleratorCount)
			}
			return fmt.Sprintf("no offering has %d %s GPUs (at most %d)", r.GPUCount, r.GPUType, most)
		case rkCPU:
			most := 0.0
			for _, o := range os {
				most = max(most, o.VCPUs)
			}
			return fmt.Sprintf("no fitting offering has %g vCPUs (at most %g)", r.CPU, most)
		case rkMemory:
			most := 0.0
			for _, o := range os {
				most = max(most, o.MemoryGiB)
			}
			return fmt.Sprintf("no fitting offering has %s memory (at most %gGiB)", bytesString(r.MemoryBytes), most)
		case rkCloud:
			return fmt.Sprintf("placement.clouds %s leaves no offering (fitting offerings are on: %s)",
				strings.Join(pl.Clouds, ", "), listOf(os, func(o *Offering) string { return o.Cloud }))
		case rkRegion:
			return fmt.Sprintf("placement.regions %s leaves no offering (fitting offerings are in: %s)",
				strings.Join(pl.Regions, ", "), listOf(os, func(o *Offering) string { return o.Region }))
		case rkSpot:
			return "only spot offerings fit, and placement.spot.allowed is false"
		case rkPrice:
			cheapest := math.Inf(1)
			for _, o := range os {
				cheapest = min(cheapest, o.Price)
			}
			return fmt.Sprintf("placement.maxHourlyCost $%.4f/h is below the cheapest fitting offering, $%.4f/h", pl.MaxHourlyCost, cheapest)
		}
	}
	return "no feasible offering"
}
