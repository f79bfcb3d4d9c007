package placement

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
)

// The per-deployment solver. With the other deployments fixed, one
// deployment's problem is a small min-cost flow:
//
//	S -> OD, S -> SP                      on-demand / spot; the first b arcs of
//	                                      S->OD earn a reward (onDemandBase)
//	OD|SP -> Kin(cloud)                   one arc per offering (new: its free
//	                                      capacity; kept: its current count)
//	Kin(cloud) -> Kout(cloud)             capacity spread.maxPerCloud
//	Kout(cloud) -> SeedT -> T             one rewarded unit per cloud, m of
//	                                      them (spread.minClouds)
//	Kout(cloud) -> T
//
// The rewards (-Q each, Q above any difference in cost) make the flow meet
// onDemandBase and minClouds whenever it can, so the flow is exact for every
// rule but the budget. The budget (one knapsack row) is handled by a
// Lagrangian search on the price weight and then an exact branch and bound
// with a node limit.

type oitem struct {
	off   int32
	ci    int32 // position of the offering's cloud in class.clouds
	spot  bool
	kept  bool
	cap   int64 // capInf when unlimited
	cost  float64
	price float64
	src   uint8 // 0 free capacity, 1 taken from the flow's deployments, 2 from special ones
	// qr, qc: 1 + the quotas (of the region, of the cloud) the item's
	// replicas count against, 0: none (kept replicas, and slots taken from
	// others, which bring their quota with them).
	qr, qc int32
	// pool: not a placement but room in a quota (1 + index in qr if a
	// region's, else in qc) taken from others, at cost per unit; the
	// units of the quota's items beyond its free room go through it (off
	// is -1). A region's pool frees its cloud's quota too.
	pool bool
}

// placedIn is how many replicas flows fl over items place (pools aside).
func placedIn(items []oitem, fl []int64) int64 {
	var n int64
	for i := range items {
		if !items[i].pool {
			n += fl[i]
		}
	}
	return n
}

// qcapFunc gives how much of each quota a placement may use; nil: quotas
// do not apply.
type qcapFunc func(q int32) int64

// orules are the rules for placing n replicas (already relaxed by the
// number left unplaced).
type orules struct{ n, M, mm, bb int }

type oracle struct {
	g     mcf
	order []int32
	arcs  []int32
	flows []int64
	ints  []int64
	qnode map[int32]int32 // quota -> its node in the current network
	qs    []int32
}

const costScale = 1e6

func toInt(x float64) int64 { return int64(math.Round(x * costScale)) }

// solve returns the min-weight flow of r.n replicas over items that meets
// r's rules and the quotas (qcap), or false if none does. The new replicas
// of an item under quotas pass through a node per quota (the region's, then
// the cloud's) on the way to the cloud's node, with the quota's room as
// capacity.
func (or *oracle) solve(items []oitem, K int, r orules, w func(*oitem) float64, qcap qcapFunc) ([]int64, bool) {
	or.flows = slices.Grow(or.flows[:0], len(items))[:len(items)]
	clear(or.flows)
	if r.n == 0 {
		return or.flows, true
	}
	g := &or.g
	g.reset()
	n := int64(r.n)
	or.ints = or.ints[:0]
	var maxAbs int64 = 1
	for i := range items {
		c := toInt(w(&items[i]))
		or.ints = append(or.ints, c)
		maxAbs = max(maxAbs, c, -c)
	}
	// Rewards (-Q each, at most bb+mm+1 of them) must stay far from int64's
	// limit: for huge deployments the costs lose precision instead.
	for float64(2*n*maxAbs+1)*float64(r.bb+r.mm+2) > 1<<60 {
		maxAbs = 1
		for i := range or.ints {
			or.ints[i] /= 16
			maxAbs = max(maxAbs, or.ints[i], -or.ints[i])
		}
	}
	Q := 2*n*maxAbs + 1
	S, OD, SP := g.addNode(), g.addNode(), g.addNode()
	// Quota nodes: regions' before clouds' (the arcs go that way).
	if or.qnode == nil {
		or.qnode = map[int32]int32{}
	}
	clear(or.qnode)
	or.qs = or.qs[:0]
	if qcap != nil {
		for pass := range 2 {
			for i := range items {
				if items[i].pool {
					continue
				}
				q := items[i].qr
				if pass == 1 {
					q = items[i].qc
				}
				if _, ok := or.qnode[q]; q > 0 && !ok {
					or.qnode[q] = g.addNode()
					or.qs = append(or.qs, q)
				}
			}
		}
	}
	kin := int32(g.nodes())
	for range K {
		g.addNode()
	}
	split := r.M < r.n
	kout := kin
	if split {
		kout = int32(g.nodes())
		for range K {
			g.addNode()
		}
	}
	seeds := r.mm >= 2
	seedT := int32(-1)
	if seeds {
		seedT = g.addNode()
	}
	T := g.addNode()
	baseArc := int32(-1)
	if r.bb > 0 {
		baseArc = g.addArc(S, OD, int64(r.bb), -Q)
	}
	g.addArc(S, OD, n, 0)
	g.addArc(S, SP, n, 0)
	or.arcs = or.arcs[:0]
	for i := range items {
		it := &items[i]
		if it.pool {
			// Room taken from others: from the quota's node straight on
			// to the cloud's (taking a region's unit frees its cloud's).
			q := max(it.qr, it.qc)
			v, ok := or.qnode[q]
			if !ok {
				v, q = S, 0 // no item uses the quota: an arc with no room
			}
			cp := min(it.cap, n)
			if q == 0 {
				cp = 0
			}
			or.arcs = append(or.arcs, g.addArc(v, kin+it.ci, cp, or.ints[i]))
			continue
		}
		from := OD
		if it.spot {
			from = SP
		}
		to := kin + it.ci
		if v, ok := or.qnode[it.qr]; ok && it.qr > 0 {
			to = v
		} else if v, ok := or.qnode[it.qc]; ok && it.qc > 0 {
			to = v
		}
		or.arcs = append(or.arcs, g.addArc(from, to, min(it.cap, n), or.ints[i]))
	}
	// Each quota's node: on to the cloud's quota (a region's) or node.
	for _, q := range or.qs {
		i := slices.IndexFunc(items, func(it oitem) bool { return !it.pool && (it.qr == q || it.qc == q) })
		it := &items[i]
		to := kin + it.ci
		if it.qr == q && it.qc > 0 {
			to = or.qnode[it.qc]
		}
		g.addArc(or.qnode[q], to, min(max(qcap(q-1), 0), n), 0)
	}
	for k := range int32(K) {
		if split {
			g.addArc(kin+k, kout+k, int64(r.M), 0)
		}
		if seeds {
			g.addArc(kout+k, seedT, 1, -Q)
		}
		g.addArc(kout+k, T, n, 0)
	}
	seedArc := int32(-1)
	if seeds {
		seedArc = g.addArc(seedT, T, int64(r.mm), 0)
	}
	g.excess[S] = n
	g.excess[T] = -n
	or.order = or.order[:0]
	for v := range int32(g.nodes()) {
		or.order = append(or.order, v)
	}
	g.initPotentials(or.order)
	if !g.run() {
		return or.flows, false
	}
	if baseArc >= 0 && g.flow(baseArc) < int64(r.bb) {
		return or.flows, false
	}
	if seedArc >= 0 && g.flow(seedArc) < int64(r.mm) {
		return or.flows, false
	}
	for i, e := range or.arcs {
		or.flows[i] = g.flow(e)
	}
	return or.flows, true
}

func itemCost(it *oitem) float64  { return it.cost }
func itemPrice(it *oitem) float64 { return it.price }

func sumBy(items []oitem, fl []int64, f func(*oitem) float64) float64 {
	var s float64
	for i := range items {
		if fl[i] > 0 {
			s += float64(fl[i]) * f(&items[i])
		}
	}
	return s
}

func (d *dem) rulesFor(n int) orules {
	u := d.R - n
	return orules{n: n, M: d.M, mm: max(0, d.mm-u), bb: max(0, d.bb-u)}
}

// items lists what d may use: its kept replicas, the unlimited offerings
// that can matter (statics) and the finite ones not dominated by an
// unlimited one, with their free capacity (avail).
func (s *solver) items(d *dem, avail func(int32) int64) []oitem {
	st := s.statics(d)
	its := make([]oitem, 0, len(d.curOff)+len(st.unl)+len(st.fin))
	for i, o := range d.curOff {
		its = append(its, s.item(d, o, true, int64(d.curN[i])))
	}
	its = append(its, st.unl...)
	for _, o := range st.fin {
		if a := avail(o); a > 0 {
			its = append(its, s.item(d, o, false, a))
		}
	}
	return s.prune(d, its)
}

// dstatic is what d can use that capacity never changes: per cloud and
// purchase option, the unlimited offerings no other unlimited one beats in
// cost (and, with a budget, in price), and the finite offerings no
// unlimited one beats.
type dstatic struct {
	unl []oitem
	fin []int32
}

func (s *solver) statics(d *dem) *dstatic {
	if d.st != nil {
		return d.st
	}
	st := &dstatic{}
	c := d.cls
	for ci := range c.clouds {
		for _, sp := range []bool{false, true} {
			var unl []oitem
			var fin []int32
			for _, gi := range c.cloudGroups[ci] {
				g := &c.groups[gi]
				if g.spot != sp {
					continue
				}
				if d.budget == 0 {
					if len(g.unl) > 0 {
						unl = append(unl, s.item(d, g.unl[0], false, capInf))
					}
				} else {
					for _, o := range g.unlFront {
						unl = append(unl, s.item(d, o, false, capInf))
					}
				}
			}
			// Without a budget a finite offering matters only if cheaper
			// than the cheapest unlimited one; groups are in cost order.
			bound := math.Inf(1)
			if d.budget == 0 {
				for _, u := range unl {
					bound = min(bound, u.cost)
				}
			}
			for _, gi := range c.cloudGroups[ci] {
				g := &c.groups[gi]
				if g.spot != sp {
					continue
				}
				for _, o := range g.fin {
					if s.cost(d, o) >= bound {
						break
					}
					fin = append(fin, o)
				}
			}
			slices.SortFunc(unl, func(a, b oitem) int { return s.itemCmp(&a, &b) })
			// Frontier: by cost, each kept only if cheaper in price than
			// every one before it (without a budget, only the first).
			var front []oitem
			for _, it := range unl {
				if len(front) == 0 || (d.budget > 0 && it.price < front[len(front)-1].price) {
					front = append(front, it)
				}
			}
			st.unl = append(st.unl, front...)
			// Unlimited offerings under quotas, per quota chain: the
			// frontier of each (by cost, then cheaper in price with a
			// budget). Such a one dominates an offering no cheaper whose
			// chain holds its own: it can take everything that one would,
			// counting against no other quota.
			qfront := map[[2]int32][]int32{}
			if len(s.quotas) > 0 {
				for _, o := range fin {
					if s.finite[o] {
						continue
					}
					k := [2]int32{s.qReg[o], s.qCloud[o]}
					qfront[k] = append(qfront[k], o)
				}
				for k, l := range qfront {
					slices.SortStableFunc(l, func(a, b int32) int {
						if c := cmpFloat(s.cost(d, a), s.cost(d, b)); c != 0 {
							return c
						}
						return int(s.rank[a] - s.rank[b])
					})
					var f []int32
					for _, o := range l {
						if len(f) == 0 || (d.budget > 0 && s.offs[o].Price < s.offs[f[len(f)-1]].Price) {
							f = append(f, o)
						}
					}
					qfront[k] = f
				}
			}
			for _, o := range fin {
				cost, price := s.cost(d, o), s.offs[o].Price
				dominated := false
				for _, u := range front {
					if u.cost <= cost && (d.budget == 0 || u.price <= price) {
						dominated = true
						break
					}
				}
				r, cq := s.qRegOf(o), s.qCloudOf(o)
				for _, k := range [4][2]int32{{0, 0}, {r, 0}, {0, cq}, {r, cq}} {
					if dominated || (k[0] != 0 && k[0] != r) || (k[1] != 0 && k[1] != cq) {
						continue
					}
					for _, u := range qfront[k] {
						uc := s.cost(d, u)
						if u != o && (uc < cost || (uc == cost && s.rank[u] < s.rank[o])) && (d.budget == 0 || s.offs[u].Price <= price) {
							dominated = true
							break
						}
					}
				}
				if !dominated {
					st.fin = append(st.fin, o)
				}
			}
		}
	}
	d.st = st
	return st
}

func (s *solver) itemCmp(x, y *oitem) int {
	switch {
	case x.ci != y.ci:
		return int(x.ci) - int(y.ci)
	case x.spot != y.spot:
		if !x.spot {
			return -1
		}
		return 1
	case x.cost != y.cost:
		if x.cost < y.cost {
			return -1
		}
		return 1
	case x.src != y.src:
		return int(x.src) - int(y.src)
	}
	return int(s.rank[x.off]) - int(s.rank[y.off])
}

func (s *solver) item(d *dem, o int32, kept bool, cp int64) oitem {
	cost := s.cost(d, o)
	if kept {
		cost -= s.w.ChurnUSD
	}
	it := oitem{off: o, ci: d.cls.cloudPos[s.cloudOf[o]], spot: s.offs[o].Spot, kept: kept, cap: cp, cost: cost, price: s.offs[o].Price}
	if !kept && len(s.quotas) > 0 {
		it.qr, it.qc = s.qReg[o], s.qCloud[o]
	}
	return it
}

// prune drops the items no solution needs: per cloud and purchase option,
// those with at least R replicas of capacity on items no worse in cost (and,
// with a budget, in price) and under no quota the item is not under.
func (s *solver) prune(d *dem, its []oitem) []oitem {
	var pools []oitem
	its = slices.DeleteFunc(its, func(it oitem) bool {
		if it.pool {
			pools = append(pools, it)
		}
		return it.pool
	})
	slices.SortStableFunc(its, func(a, b oitem) int { return s.itemCmp(&a, &b) })
	R := int64(d.R)
	out := its[:0]
	for i := 0; i < len(its); {
		j := i
		for j < len(its) && its[j].ci == its[i].ci && its[j].spot == its[i].spot {
			j++
		}
		start := len(out)
		for k := i; k < j; k++ {
			it := its[k]
			var better int64
			for _, a := range out[start:] {
				if (d.budget == 0 || a.price <= it.price) && (a.qr == 0 || a.qr == it.qr) && (a.qc == 0 || a.qc == it.qc) {
					better += a.cap
				}
			}
			if better >= R {
				continue
			}
			out = append(out, it)
		}
		i = j
	}
	return append(out, pools...)
}

// bestFor places d optimally given what the others leave (avail): as many
// replicas as its rules allow, at the least objective. It also returns the
// price weight t in [0,1) the budget needed (0 if it does not bind).
func (s *solver) bestFor(d *dem, avail func(int32) int64, qcap qcapFunc) (dsol, float64) {
	items := s.items(d, avail)
	fl, t := s.bestForItems(d, items, qcap)
	return s.toSol(d, items, fl, int(placedIn(items, fl))), t
}

// bestForItemsTrade is bestForItems where leaving a replica unplaced costs
// the unplaced penalty instead of being ruled out first: it tries the most
// replicas d can place and up to three fewer, or as many fewer as the pools
// among items hold room (what d gives up there may place others').
func (s *solver) bestForItemsTrade(d *dem, items []oitem, qcap qcapFunc) []int64 {
	fl, _ := s.bestForItems(d, items, qcap)
	nmax := int(placedIn(items, fl))
	best := slices.Clone(fl)
	bestCost := sumBy(items, fl, itemCost)
	pen := float64(unplacedCost) / costScale
	fewer := int64(3)
	for i := range items {
		if items[i].pool {
			fewer = max(fewer, min(items[i].cap, int64(d.R)))
		}
	}
	for n := nmax - 1; n >= max(0, nmax-int(fewer)); n-- {
		fl, _ := s.bestForItemsN(d, items, qcap, n)
		if int(placedIn(items, fl)) != n {
			continue
		}
		if c := sumBy(items, fl, itemCost) + float64(nmax-n)*pen; c < bestCost-1e-9 {
			bestCost = c - float64(nmax-n)*pen
			best = slices.Clone(fl)
			bestCost += float64(nmax-n) * pen
		}
	}
	return best
}

// bestForItems places d optimally over items: as many replicas as its rules
// allow, at the least objective. It returns the flow per item and the price
// weight t in [0,1) the budget needed (0 if it does not bind).
func (s *solver) bestForItems(d *dem, items []oitem, qcap qcapFunc) ([]int64, float64) {
	return s.bestForItemsN(d, items, qcap, d.R)
}

// bestForItemsN is bestForItems placing at most nMax replicas.
func (s *solver) bestForItemsN(d *dem, items []oitem, qcap qcapFunc, nMax int) ([]int64, float64) {
	K := len(d.cls.clouds)
	or := &s.or
	budget := d.budget
	feasible := func(n int) ([]int64, bool) {
		r := d.rulesFor(n)
		if budget > 0 {
			fl, ok := or.solve(items, K, r, itemPrice, qcap)
			return fl, ok && sumBy(items, fl, itemPrice) <= budget+budgetEps
		}
		return or.solve(items, K, r, itemCost, qcap)
	}
	n := nMax
	fl, ok := feasible(n)
	if !ok {
		lo, hi := 0, nMax // lo feasible, hi not
		for hi-lo > 1 {
			mid := (lo + hi) / 2
			if _, ok := feasible(mid); ok {
				lo = mid
			} else {
				hi = mid
			}
		}
		n = lo
		fl, _ = feasible(n)
	}
	best := slices.Clone(fl)
	t := 0.0
	if budget > 0 && n > 0 {
		r := d.rulesFor(n)
		bestCost := sumBy(items, best, itemCost)
		consider := func(fl []int64) {
			if sumBy(items, fl, itemPrice) <= budget+budgetEps {
				if c := sumBy(items, fl, itemCost); c < bestCost-1e-12 {
					bestCost = c
					copy(best, fl)
				}
			}
		}
		fl, ok := or.solve(items, K, r, itemCost, qcap)
		if ok && sumBy(items, fl, itemPrice) <= budget+budgetEps {
			copy(best, fl)
		} else {
			lo, hi := 0.0, 1.0
			for range 30 {
				mid := (lo + hi) / 2
				fl, ok := or.solve(items, K, r, func(it *oitem) float64 { return (1-mid)*it.cost + mid*it.price }, qcap)
				if !ok {
					break
				}
				if sumBy(items, fl, itemPrice) <= budget+budgetEps {
					hi = mid
					consider(fl)
				} else {
					lo = mid
				}
			}
			t = hi
			exactBudget(items, r, budget, best, &bestCost, qcap)
		}
	}
	return best, t
}

func (s *solver) toSol(d *dem, items []oitem, fl []int64, n int) dsol {
	sol := dsol{unplaced: d.R - n}
	for i := range items {
		if fl[i] > 0 && !items[i].pool {
			sol.x = addX(sol.x, items[i].off, int(fl[i]))
		}
	}
	s.sortX(sol.x)
	return sol
}

func addX(x []xo, o int32, n int) []xo {
	for i := range x {
		if x[i].off == o {
			x[i].n += n
			return x
		}
	}
	return append(x, xo{o, n})
}

func (s *solver) sortX(x []xo) {
	sort.Slice(x, func(a, b int) bool { return s.rank[x[a].off] < s.rank[x[b].off] })
}

// exactBudget improves best (flows over items, cost *bestCost) by a branch and
// bound over the counts per item, with a node limit.
func exactBudget(items []oitem, r orules, budget float64, best []int64, bestCost *float64, qcap qcapFunc) {
	// Room left in each quota the items count against, and the room taken
	// from others (pools) beyond it: per quota, its pool items in cost
	// order (used cheapest first; a unit from a region's pool frees its
	// cloud's quota too).
	room := map[int32]int64{}
	pools := map[int32][]int{}
	inPool := map[int32]int64{} // pool units used, per quota
	if qcap != nil {
		for i := range items {
			it := &items[i]
			if it.pool {
				q := max(it.qr, it.qc)
				pools[q] = append(pools[q], i)
				continue
			}
			for _, q := range [2]int32{it.qr, it.qc} {
				if q > 0 {
					room[q] = max(qcap(q-1), 0)
				}
			}
		}
		for _, l := range pools {
			slices.SortStableFunc(l, func(a, b int) int { return cmpFloat(items[a].cost, items[b].cost) })
		}
	}
	poolCap := func(q int32) int64 {
		var n int64
		for _, i := range pools[q] {
			n += items[i].cap
		}
		return n - inPool[q]
	}
	// poolCost is what units inPool[q] .. inPool[q]+v of q's pools cost.
	poolCost := func(q int32, v int64) float64 {
		var c float64
		from := inPool[q]
		for _, i := range pools[q] {
			if v == 0 {
				break
			}
			cp := items[i].cap
			if from >= cp {
				from -= cp
				continue
			}
			k := min(cp-from, v)
			c += float64(k) * items[i].cost
			v -= k
			from = 0
		}
		return c
	}
	// quotaTop bounds the units of it the quotas allow: a region's room
	// and pools; of the units through the region's room, the cloud's room
	// and pools.
	quotaTop := func(it *oitem, top int64) int64 {
		if qcap == nil {
			return top
		}
		reach := int64(-1) // units that reach the cloud's quota: all (-1), or at most this
		if it.qr > 0 {
			top = min(top, room[it.qr]+poolCap(it.qr))
			reach = room[it.qr]
		}
		if it.qc > 0 {
			if c := room[it.qc] + poolCap(it.qc); reach < 0 || reach > c {
				top = min(top, c)
			}
		}
		return top
	}
	// takeQuota takes v units of it from the quotas (free room first) and
	// returns what the pools charge; give undoes it.
	type taken struct{ fr, pr, fc, pc int64 }
	takeQuota := func(it *oitem, v int64) (taken, float64) {
		var t taken
		var cost float64
		if qcap == nil {
			return t, 0
		}
		reach := v
		if q := it.qr; q > 0 {
			t.fr = min(v, room[q])
			t.pr = v - t.fr
			room[q] -= t.fr
			cost += poolCost(q, t.pr)
			inPool[q] += t.pr
			reach = t.fr
		}
		if q := it.qc; q > 0 {
			t.fc = min(reach, room[q])
			t.pc = reach - t.fc
			room[q] -= t.fc
			cost += poolCost(q, t.pc)
			inPool[q] += t.pc
		}
		return t, cost
	}
	give := func(it *oitem, t taken) {
		if it.qr > 0 {
			room[it.qr] += t.fr
			inPool[it.qr] -= t.pr
		}
		if it.qc > 0 {
			room[it.qc] += t.fc
			inPool[it.qc] -= t.pc
		}
	}
	// The items to decide (pools follow from them).
	var idx []int
	for i := range items {
		if !items[i].pool {
			idx = append(idx, i)
		}
	}
	sort.SliceStable(idx, func(a, b int) bool { return items[idx[a]].cost < items[idx[b]].cost })
	m := len(idx)
	sufMinPrice := make([]float64, m+1)
	sufOD := make([]int64, m+1)
	sufMinPrice[m] = math.Inf(1)
	for k := m - 1; k >= 0; k-- {
		it := &items[idx[k]]
		sufMinPrice[k] = min(sufMinPrice[k+1], it.price)
		sufOD[k] = sufOD[k+1]
		if !it.spot {
			sufOD[k] += min(it.cap, int64(r.n))
		}
	}
	K := 0
	for i := range items {
		K = max(K, int(items[i].ci)+1)
	}
	perCloud := make([]int, K)
	x := make([]int64, len(items))
	nodes := 0
	const limit = 200000
	var dfs func(k, left int, cost, price float64, od int64, used int)
	dfs = func(k, left int, cost, price float64, od int64, used int) {
		nodes++
		if nodes > limit {
			return
		}
		if left == 0 {
			if od >= int64(r.bb) && used >= r.mm && cost < *bestCost-1e-12 {
				*bestCost = cost
				for i := range best {
					best[i] = 0
				}
				for j, v := range x {
					best[j] = v
				}
				for q, l := range pools {
					u := inPool[q]
					for _, i := range l {
						best[i] = min(u, items[i].cap)
						u -= best[i]
					}
				}
			}
			return
		}
		if k == m || price+float64(left)*sufMinPrice[k] > budget+budgetEps || od+sufOD[k] < int64(r.bb) {
			return
		}
		// Lower bound: fill the cheapest remaining items.
		lb, need := cost, int64(left)
		for j := k; j < m && need > 0; j++ {
			it := &items[idx[j]]
			take := min(it.cap, need)
			lb += float64(take) * it.cost
			need -= take
		}
		if need > 0 || lb >= *bestCost-1e-12 {
			return
		}
		i := idx[k]
		it := &items[i]
		top := quotaTop(it, min(it.cap, int64(left), int64(r.M-perCloud[it.ci])))
		for v := top; v >= 0; v-- {
			if v > 0 && price+float64(v)*it.price > budget+budgetEps {
				continue
			}
			x[i] = v
			nu := used
			if v > 0 && perCloud[it.ci] == 0 {
				nu++
			}
			perCloud[it.ci] += int(v)
			t, pc := takeQuota(it, v)
			nod := od
			if !it.spot {
				nod += v
			}
			dfs(k+1, left-int(v), cost+float64(v)*it.cost+pc, price+float64(v)*it.price, nod, nu)
			give(it, t)
			perCloud[it.ci] -= int(v)
			x[i] = 0
		}
	}
	dfs(0, r.n, 0, 0, 0, 0)
}

// isolationLambda is the smallest surcharge on spot replicas that makes d,
// alone with the offerings' full capacity and its spread rules, run
// onDemandBase replicas on demand: the multiplier the joint flow uses for a
// rule it cannot express.
func (s *solver) isolationLambda(d *dem, items []oitem, qcap qcapFunc) float64 {
	K := len(d.cls.clouds)
	r := d.rulesFor(d.R)
	need := r.bb
	r.bb = 0
	od := func(lam float64) bool {
		fl, ok := s.or.solve(items, K, r, func(it *oitem) float64 {
			if it.spot {
				return it.cost + lam
			}
			return it.cost
		}, qcap)
		if !ok {
			return true
		}
		var n int64
		for i := range items {
			if !items[i].spot {
				n += fl[i]
			}
		}
		return n >= int64(need)
	}
	if od(0) {
		return 0
	}
	lo, hi := 0.0, 0.01
	for !od(hi) {
		lo = hi
		hi *= 2
		if hi > 1e4 {
			return hi
		}
	}
	for range 20 {
		mid := (lo + hi) / 2
		if od(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// stageA decides whether d's hard rules can be met at all, capacity aside,
// and if not says which rule binds.
func (s *solver) stageA(d *dem) string {
	if d.R == 0 {
		return ""
	}
	c := d.cls
	if c.nFeas == 0 {
		return c.emptyMsg
	}
	pl := &d.d.Placement
	K := len(c.clouds)
	kOD := 0
	for _, h := range c.hasOD {
		if h {
			kOD++
		}
	}
	if d.M < d.R && d.R > d.M*K {
		return fmt.Sprintf("spread.maxPerCloud=%d allows at most %d replicas in the %s with a fitting offering, need %d",
			d.M, d.M*K, plural(K, "cloud", "clouds"), d.R)
	}
	if d.mm > K {
		return fmt.Sprintf("spread.minClouds=%d but only %s a fitting offering", pl.Spread.MinClouds, cloudsHave(K))
	}
	if d.bb > 0 {
		if kOD == 0 {
			return fmt.Sprintf("spot.onDemandBase=%d but no fitting offering is on-demand", pl.Spot.OnDemandBase)
		}
		if d.M < d.R && d.bb > d.M*kOD {
			return fmt.Sprintf("spot.onDemandBase=%d but spread.maxPerCloud=%d allows only %d on-demand replicas in the %s with on-demand offerings",
				pl.Spot.OnDemandBase, d.M, d.M*kOD, plural(kOD, "cloud", "clouds"))
		}
	}
	var items []oitem
	for ci := range c.clouds {
		for sp := range 2 {
			if o := c.minPrice[2*ci+sp]; o >= 0 {
				items = append(items, oitem{off: o, ci: int32(ci), spot: sp == 1, cap: capInf, cost: s.offs[o].Price, price: s.offs[o].Price})
			}
		}
	}
	fl, ok := s.or.solve(items, K, d.rulesFor(d.R), itemPrice, nil)
	if !ok {
		var rules []string
		if d.mm >= 2 {
			rules = append(rules, fmt.Sprintf("spread.minClouds=%d", pl.Spread.MinClouds))
		}
		if d.M < d.R {
			rules = append(rules, fmt.Sprintf("spread.maxPerCloud=%d", d.M))
		}
		if d.bb > 0 {
			rules = append(rules, fmt.Sprintf("spot.onDemandBase=%d", pl.Spot.OnDemandBase))
		}
		return fmt.Sprintf("%s cannot all be met with %d replicas: %s a fitting offering, %d of them on-demand",
			strings.Join(rules, " and "), d.R, cloudsHave(K), kOD)
	}
	if d.budget > 0 {
		if p := sumBy(items, fl, itemPrice); p > d.budget+budgetEps {
			return fmt.Sprintf("placement.budget $%.2f/h is below the cheapest feasible placement, $%.2f/h", d.budget, p)
		}
	}
	return ""
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// qRegOf and qCloudOf are o's region and cloud quota (1-based, 0: none).
func (s *solver) qRegOf(o int32) int32 {
	if len(s.quotas) == 0 {
		return 0
	}
	return s.qReg[o]
}

func (s *solver) qCloudOf(o int32) int32 {
	if len(s.quotas) == 0 {
		return 0
	}
	return s.qCloud[o]
}
