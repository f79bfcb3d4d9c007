package placement

import (
	"math"
	"slices"
)

// Local search for the "special" deployments (a budget that binds, or
// onDemandBase with spread), which the joint flow cannot express. The other
// deployments stay in one flow network (net) whose offering capacities are
// what the special ones leave; it is re-optimized incrementally after every
// change. A special deployment is improved by two moves:
//
//   - re-place: the exact best placement given everything else (never worse);
//   - take: the best placement when it may also take capacity that others
//     hold, at a price - for the flow's deployments the exact cost of
//     displacing one replica (a shortest path in the residual network), for
//     special ones the cost of re-placing the holder with one slot less. The
//     displaced deployments are then re-placed, and the move is kept only if
//     the total objective (unplaced replicas first) went down.
//
// Rounds repeat until no move improves. Deployments in the flow whose
// relaxed rule (budget, or onDemandBase with spread) turns out violated are
// made special and the search runs again, so the result always meets every
// rule.

type local struct {
	version int // bumped by every kept move
	failed  map[moveKey]int
	s       *solver
	sol     []dsol
	special []*dem
	specUse []int64 // per offering: new replicas of special deployments
	specQ   []int64 // per quota: new replicas of special deployments in its scope
	net     *gnet
	spec    int64 // sum of scost over special deployments
	// held: per offering, the slots special deployments hold there as the
	// last pricing of a take move saw them (cheapest to give up first);
	// took: per offering, how many of them the move's placement takes.
	held map[int32][]heldSlot
	took map[int32]int64
	// applied counts apply calls; poolCost holds, per quota (1-based),
	// what the flow loses with each unit less of it, as of poolsAt.
	applied  int
	poolsAt  int
	poolCost map[int32][]float64
}

// newLocalState is the search's state with no special deployment yet.
func (s *solver) newLocalState(sol []dsol, special []*dem) *local {
	return &local{s: s, sol: sol, special: special, specUse: make([]int64, s.n), specQ: make([]int64, len(s.quotas)),
		failed: map[moveKey]int{}, held: map[int32][]heldSlot{}, took: map[int32]int64{}, poolCost: map[int32][]float64{}, poolsAt: -1}
}

// hold adds sign times the new replicas of x (d's) to what the special
// deployments hold, and calls f for every offering and quota touched.
func (l *local) hold(d *dem, x dsol, sign int64, off func(int32), quota func(int32)) {
	for _, a := range x.x {
		nw := newN(d, a)
		if nw == 0 {
			continue
		}
		l.specUse[a.off] += sign * nw
		if off != nil {
			off(a.off)
		}
		q, k := l.s.quotaChain(a.off)
		for _, qi := range q[:k] {
			l.specQ[qi] += sign * nw
			if quota != nil {
				quota(qi)
			}
		}
	}
}

// availOff and availQ are what the special deployments leave of an
// offering's capacity and of a quota: the network's capacities.
func (l *local) availOff(o int32) int64 {
	if !l.s.limited[o] {
		return capInf
	}
	return max(0, l.s.capOf(o)-l.specUse[o])
}

func (l *local) availQ(q int32) int64 { return max(0, l.s.quotas[q].limit-l.specQ[q]) }

// tell passes the capacities of the offerings and quotas touched on to the
// network; optimize must follow.
func (l *local) tell(offs, qs []int32) {
	for _, o := range offs {
		if l.s.limited[o] {
			l.net.setAvail(o)
		}
	}
	for _, q := range qs {
		l.net.setQAvail(q)
	}
}

type moveKey struct {
	d    *dem
	move int
}

// try runs move m on d unless it already failed with nothing changed since.
func (l *local) try(d *dem, m int, f func(*dem) bool) bool {
	k := moveKey{d, m}
	if v, ok := l.failed[k]; ok && v == l.version {
		return false
	}
	if f(d) {
		l.version++
		return true
	}
	l.failed[k] = l.version
	return false
}

// tolerance for accepting a move, in cost units (1e-6 USD).
const moveTol = 20

func (s *solver) scost(d *dem, x dsol) int64 {
	obj, _, _ := s.objective(d, x.x)
	return int64(x.unplaced)*unplacedCost + toInt(obj)
}

func newN(d *dem, a xo) int64 { return int64(a.n - min(a.n, d.cur(a.off))) }

// fromNet turns a solved network of all the coupled deployments into the
// search's network: the special ones (at positions in the network) leave it
// and hold the capacity of their placement in sol instead.
func (s *solver) fromNet(n *gnet, sol []dsol, special []*dem, pos []int) *local {
	l := s.newLocalState(sol, special)
	var offs, qs []int32
	for i, d := range special {
		n.detach(pos[i])
		l.hold(d, sol[d.i], 1, func(o int32) { offs = append(offs, o) }, func(q int32) { qs = append(qs, q) })
		l.spec += s.scost(d, sol[d.i])
	}
	n.avail, n.qavail = l.availOff, l.availQ
	l.net = n
	l.tell(offs, qs)
	n.optimize()
	return l
}

// promote makes deployments of the network special: they leave it and hold
// the capacity of their current placement.
func (l *local) promote(ds []*dem) {
	s := l.s
	var offs, qs []int32
	for _, d := range ds {
		l.net.detach(l.net.gdOf[d.i])
		l.special = append(l.special, d)
		l.hold(d, l.sol[d.i], 1, func(o int32) { offs = append(offs, o) }, func(q int32) { qs = append(qs, q) })
		l.spec += s.scost(d, l.sol[d.i])
	}
	l.tell(offs, qs)
	l.net.optimize()
}

func (s *solver) newLocal(sol []dsol, special, regular []*dem) *local {
	l := s.newLocalState(sol, special)
	for _, d := range special {
		l.hold(d, sol[d.i], 1, nil, nil)
		l.spec += s.scost(d, sol[d.i])
	}
	l.net = s.newNet(regular, l.availOff, l.availQ, false)
	l.net.optimize()
	return l
}

func (l *local) total() int64 { return l.net.g.total + l.spec }

// apply replaces d's solution and tells the network about the capacity it
// frees or takes; net.optimize must follow.
func (l *local) apply(d *dem, ns dsol) {
	s := l.s
	old := l.sol[d.i]
	l.applied++
	l.spec += s.scost(d, ns) - s.scost(d, old)
	var offs, qs []int32
	addOff := func(o int32) { offs = append(offs, o) }
	addQ := func(q int32) { qs = append(qs, q) }
	l.hold(d, old, -1, addOff, addQ)
	l.hold(d, ns, 1, addOff, addQ)
	l.sol[d.i] = ns
	l.tell(offs, qs)
}

func own(d *dem, x dsol, o int32) int64 {
	for _, a := range x.x {
		if a.off == o {
			return newN(d, a)
		}
	}
	return 0
}

// ownQ is how many new replicas x (d's) has in quota q's scope.
func (l *local) ownQ(d *dem, x dsol, q int32) int64 {
	var n int64
	for _, a := range x.x {
		if qs, k := l.s.quotaChain(a.off); k > 0 && slices.Contains(qs[:k], q) {
			n += newN(d, a)
		}
	}
	return n
}

// free is what d may use on o with everything else fixed.
func (l *local) free(d *dem, o int32) int64 {
	s := l.s
	if !s.limited[o] {
		return capInf
	}
	return max(0, s.capOf(o)-l.specUse[o]+own(d, l.sol[d.i], o)-l.net.regFlow(o))
}

// qfree is what d may use of quota q with everything else fixed.
func (l *local) qfree(d *dem, q int32) int64 {
	return max(0, l.s.quotas[q].limit-l.specQ[q]+l.ownQ(d, l.sol[d.i], q)-l.net.qFlow(q))
}

func sameSol(a, b dsol) bool {
	return a.unplaced == b.unplaced && slices.Equal(a.x, b.x)
}

// replace re-places d exactly given the others. force applies the result
// even if it is not better (d's current placement may break its rules).
func (l *local) replace(d *dem, force bool) bool {
	before := l.total()
	old := l.sol[d.i]
	cand, _ := l.s.bestFor(d, func(o int32) int64 { return l.free(d, o) }, func(q int32) int64 { return l.qfree(d, q) })
	if sameSol(cand, old) {
		return false
	}
	l.apply(d, cand)
	l.net.optimize()
	if force || l.total() < before-moveTol {
		return true
	}
	l.apply(d, old)
	l.net.optimize()
	return false
}

// take tries the placement of d that may take capacity from others: d is
// released first (the flow re-optimizes into what it frees), then placed
// again with the others' capacity at its displacement price; the special
// deployments it displaces give up the slots its pricing charged them for
// (the cheapest first) and are placed again (taking only from the flow),
// and the move is kept if the total went down.
func (l *local) take(d *dem) bool {
	cur := l.sol[d.i]
	before := l.total()
	undo := []saved{{d, cur}}
	clear(l.held)
	clear(l.took)
	l.apply(d, l.placeTaking(d, true))
	l.net.optimize()
	// Who gives up what: of the slots d took on an offering from special
	// holders, the ones priced cheapest. Those holders shrink at once, so
	// that what they give up (and the quota room with it) is d's, the
	// offering and its quotas full for the flow, then each is placed again
	// with at most what it keeps there.
	cuts := map[*dem]map[int32]int64{}
	var order []*dem
	for _, a := range l.sol[d.i].x {
		o := a.off
		over := l.took[o]
		for _, h := range l.held[o] {
			if over == 0 {
				break
			}
			if cuts[h.d] == nil {
				cuts[h.d] = map[int32]int64{}
				order = append(order, h.d)
			}
			cuts[h.d][o]++
			over--
		}
	}
	limits := map[*dem]*caps{}
	for _, d2 := range order {
		undo = append(undo, saved{d2, l.sol[d2.i]})
		lim := &caps{}
		x := dsol{unplaced: l.sol[d2.i].unplaced}
		for _, a := range l.sol[d2.i].x {
			if c := cuts[d2][a.off]; c > 0 {
				c = min(c, newN(d2, a))
				lim.setOff(a.off, newN(d2, a)-c)
				a.n -= int(c)
				x.unplaced += int(c)
			}
			if a.n > 0 {
				x.x = append(x.x, a)
			}
		}
		limits[d2] = lim
		l.apply(d2, x)
	}
	l.net.optimize()
	for _, d2 := range order {
		l.apply(d2, l.candidate(d2, limits[d2], false, true))
		l.net.optimize()
	}
	// Holders the pricing did not name (beyond the slots it priced) that
	// are still short are placed again as they come.
	for _, d2 := range l.special {
		if d2 == d || !l.over(d2) {
			continue
		}
		if limits[d2] == nil {
			undo = append(undo, saved{d2, l.sol[d2.i]})
		}
		l.apply(d2, l.placeTaking(d2, false))
		l.net.optimize()
	}
	return l.keepOrUndo(undo, before)
}

// saved is a deployment's placement before a move, to put back.
type saved struct {
	d *dem
	x dsol
}

// keepOrUndo keeps the moves made since the total was before if they
// lowered it, else puts the saved placements back (newest first).
func (l *local) keepOrUndo(undo []saved, before int64) bool {
	if l.total() < before-moveTol {
		return true
	}
	for i := len(undo) - 1; i >= 0; i-- {
		l.apply(undo[i].d, undo[i].x)
	}
	l.net.optimize()
	return false
}

// placeTaking releases d and returns its best placement when it may also
// take the capacity the flow's deployments hold (at the displacement price)
// and, with fromSpecial, the capacity other special deployments hold (at the
// price of re-placing the holder with one slot less).
func (l *local) placeTaking(d *dem, fromSpecial bool) dsol {
	l.apply(d, dsol{unplaced: d.R})
	l.net.optimize()
	return l.candidate(d, nil, fromSpecial, true)
}

// caps bounds the new replicas a placement may have on some offerings and
// in some quotas' scopes (nil: no bound).
type caps struct {
	off map[int32]int64
	q   map[int32]int64
}

func (c *caps) setOff(o int32, n int64) {
	if c.off == nil {
		c.off = map[int32]int64{}
	}
	c.off[o] = n
}

func (c *caps) setQuota(q int32, n int64) {
	if c.q == nil {
		c.q = map[int32]int64{}
	}
	c.q[q] = n
}

func (c *caps) forOff(o int32) (int64, bool) {
	if c == nil {
		return 0, false
	}
	n, ok := c.off[o]
	return n, ok
}

func (c *caps) forQuota(q int32) (int64, bool) {
	if c == nil {
		return 0, false
	}
	n, ok := c.q[q]
	return n, ok
}

// candidate is d's best placement with the others as they are, where it may
// take what the flow's deployments hold at the displacement price (and, with
// fromSpecial, what special ones hold at the holders' prices); limits caps
// what d may use of some offerings and quotas (new replicas). Slots taken
// from others bring the quota they held with them. With fromSpecial, the
// slots the placement takes from special holders are counted in l.took.
//
// Displacement prices cost a shortest path each, so they are computed only
// for the held offerings that survive pruning when taking is free. Slots of
// special deployments are priced unit by unit (what the holders lose for
// each further slot given up), since that can grow fast (a budget).
// pricedSlots appends n taken slots from src to its, priced by curve (a
// non-empty price per further slot): one item per priced slot, the rest as
// one item at the last price.
func pricedSlots(its []oitem, n int64, curve []float64, src uint8, take func(int64) oitem) []oitem {
	for j := 0; j < len(curve) && n > 0; j++ {
		it := take(1)
		it.cost += curve[j]
		it.src = src
		its = append(its, it)
		n--
	}
	if n > 0 {
		it := take(n)
		it.cost += curve[len(curve)-1]
		it.src = src
		its = append(its, it)
	}
	return its
}

func (l *local) candidate(d *dem, limits *caps, fromSpecial, curves bool) dsol {
	s := l.s
	mine := l.sol[d.i]
	regPrice := map[int32]float64{}
	regCurve := map[int32][]float64{}
	specPrice := map[int32][]float64{}
	st := s.statics(d)
	build := func(optimistic bool) []oitem {
		var its []oitem
		for i, o := range d.curOff {
			its = append(its, s.item(d, o, true, int64(d.curN[i])))
		}
		its = append(its, st.unl...)
		for _, o := range st.fin {
			f := l.free(d, o)
			lim, limited := limits.forOff(o)
			if limited {
				f = min(f, lim)
			}
			if f > 0 {
				its = append(its, s.item(d, o, false, f))
			}
			if limited {
				continue
			}
			// A slot taken from a special deployment brings its quota
			// with it. One taken from the flow still counts against the
			// quota: the room the flow fills there is offered (once) as
			// a pool, below.
			taken := func(n int64) oitem { return s.item(d, o, false, n) }
			takenSpecial := func(n int64) oitem {
				it := s.item(d, o, false, n)
				it.qr, it.qc = 0, 0
				return it
			}
			if rf := l.net.regFlow(o); rf > 0 {
				p, ok := regPrice[o]
				curve := regCurve[o]
				switch {
				case len(curve) > 0 && !optimistic:
					its = pricedSlots(its, rf, curve, 1, taken)
				case optimistic || ok:
					it := taken(rf)
					it.cost += p
					it.src = 1
					its = append(its, it)
				}
			}
			if sh := l.specUse[o] - own(d, mine, o); fromSpecial && sh > 0 {
				curve := specPrice[o]
				if optimistic || len(curve) == 0 {
					it := takenSpecial(sh)
					it.src = 2
					its = append(its, it)
					continue
				}
				its = pricedSlots(its, sh, curve, 2, takenSpecial)
			}
		}
		return s.prune(d, its)
	}
	for _, it := range build(true) {
		if it.src == 1 {
			if p, ok := l.net.displacement(it.off); ok {
				regPrice[it.off] = p
			}
		}
	}
	// Taking what others hold costs their displacement, which may be an
	// unplaced replica of theirs: d may leave one of its own unplaced instead.
	qcap := func(q int32) int64 {
		f := l.qfree(d, q)
		if lim, ok := limits.forQuota(q); ok {
			f = min(f, lim)
		}
		return f
	}
	// Room in a quota the flow's deployments fill, at what one unit less
	// of it costs them (the same for every placement until the specials
	// change).
	var pools []oitem
	if len(s.quotas) > 0 {
		if l.poolsAt != l.applied {
			clear(l.poolCost)
			l.poolsAt = l.applied
		}
		seen := map[int32]bool{}
		for _, it := range build(true) {
			for _, q := range [2]int32{it.qr, it.qc} {
				if q == 0 || seen[q] {
					continue
				}
				seen[q] = true
				f := l.net.qFlow(q - 1)
				if f == 0 || qcap(q-1) >= int64(d.R) {
					continue // (free room enough for d: no need)
				}
				k := min(f, int64(d.R)-qcap(q-1), quotaSlots) // (d needs no more)
				cost := l.poolCost[q]
				if int64(len(cost)) < k {
					cost = cost[:0:0]
					for _, c := range l.quotaCurve(q-1, k, -1) {
						cost = append(cost, max(float64(c)/costScale, 0))
					}
					l.poolCost[q] = cost
				}
				pools = append(pools, poolItems(q, q == it.qr, it.ci, f, cost)...)
			}
		}
	}
	items := append(build(false), pools...)
	fl := s.bestForItemsTrade(d, items, qcap)
	// Taking more than one slot from others can cost more per slot: price
	// the slots taken unit by unit and solve again.
	var taken []int32
	for i := range items {
		if items[i].src != 0 && fl[i] > 0 && !slices.Contains(taken, items[i].off) {
			taken = append(taken, items[i].off)
		}
	}
	if len(taken) > 0 && curves {
		for _, o := range taken {
			if l.specUse[o]-own(d, mine, o) > 0 && fromSpecial {
				specPrice[o] = l.holdCurve(d, o)
			}
			if l.net.regFlow(o) > 0 {
				regCurve[o] = l.flowCurve(o)
			}
		}
		items = append(build(false), pools...)
		fl = s.bestForItemsTrade(d, items, qcap)
	}
	if fromSpecial {
		for i := range items {
			if items[i].src == 2 && fl[i] > 0 {
				l.took[items[i].off] += fl[i]
			}
		}
	}
	return s.toSol(d, items, fl, int(placedIn(items, fl)))
}

// viaFlow places d inside the flow with Lagrange multipliers on its budget
// and on spot (its other rules are exact in the flow), so that the others
// reroute around it optimally. The multiplier of a violated rule doubles
// until d's placement meets its rules, then two bisection steps look for a
// cheaper one. With d's placement fixed, the others' flow is optimal as it
// is, so each try is scored from the network without re-placing anything;
// the best is kept if the total went down.
func (l *local) viaFlow(d *dem) bool {
	s := l.s
	before := l.total()
	cur := l.sol[d.i]
	empty := dsol{unplaced: d.R}
	l.apply(d, empty)
	l.net.optimize()
	g := &l.net.g
	crossing := d.bb > 0 && (d.mm >= 2 || d.M < d.R)
	var best dsol
	bestTotal := int64(math.MaxInt64)
	others := l.spec - s.scost(d, empty)
	try := func(lam, beta float64) (overBudget, underBase bool) {
		gi := l.net.insert(d, lam, beta)
		x := l.net.extractOne(gi)
		own := int64(0)
		gd := &l.net.gd[gi]
		for _, a := range gd.arcs {
			own += g.flow(a.e) * g.cost[a.e]
		}
		for _, e := range gd.unpl {
			own += g.flow(e) * g.cost[e]
		}
		flowRest := g.total - own
		l.net.remove(gi)
		overBudget, underBase = s.breaks(d, x)
		if !overBudget && !underBase {
			if t := flowRest + others + s.scost(d, x); t < bestTotal {
				bestTotal, best = t, x
			}
		}
		return
	}
	lam, beta := d.lam, d.beta
	loLam, loBeta := 0.0, 0.0
	for range 10 {
		ob, ub := try(lam, beta)
		if !ob && !ub {
			break
		}
		if ob {
			loBeta = beta
			beta = max(2*beta, 0.02)
		}
		if ub && crossing {
			loLam = lam
			lam = max(2*lam, 0.02)
		}
		if !ob && !(ub && crossing) {
			break
		}
	}
	for range 2 {
		if bestTotal == math.MaxInt64 {
			break
		}
		mLam, mBeta := (loLam+lam)/2, (loBeta+beta)/2
		if ob, ub := try(mLam, mBeta); ob || ub {
			loLam, loBeta = mLam, mBeta
		} else {
			lam, beta = mLam, mBeta
		}
	}
	if bestTotal < before-moveTol {
		return l.keepIfBetter(d, best, cur, before)
	}
	l.apply(d, cur) // the search left other trial placements applied
	l.net.optimize()
	return false
}

// keepIfBetter applies cand to d and keeps it if the total went down from
// before; otherwise it puts cur back.
func (l *local) keepIfBetter(d *dem, cand, cur dsol, before int64) bool {
	l.apply(d, cand)
	l.net.optimize()
	if l.total() < before-moveTol {
		return true
	}
	l.apply(d, cur)
	l.net.optimize()
	return false
}

// quotaCurve is how much the flow's total changes with each of k units of
// room in quota q, one after the other: given (dir 1: more room), or taken
// beyond the room the flow leaves free (dir -1). It tries, and puts the
// room back.
func (l *local) quotaCurve(q int32, k int64, dir int64) []int64 {
	set := func() {
		l.net.setQAvail(q)
		l.net.optimize()
	}
	var slack int64
	if dir < 0 {
		slack = max(0, l.net.qavail(q)-l.net.qFlow(q))
		l.specQ[q] += slack
		set()
	}
	prev := l.net.g.total
	out := make([]int64, 0, k)
	for range k {
		l.specQ[q] -= dir
		set()
		t := l.net.g.total
		out = append(out, t-prev)
		prev = t
	}
	l.specQ[q] += dir*k - slack
	set()
	return out
}

// quotaSlots bounds how many units of a quota's room quotaCurve prices one
// by one; the rest go at the last price.
const quotaSlots = 12

// poolItems offers n units of quota q's room (1-based, a region's if
// region) at unit costs (USD/h) cost, one item per distinct cost, the
// units beyond the costs at the last.
func poolItems(q int32, region bool, ci int32, n int64, cost []float64) []oitem {
	var out []oitem
	add := func(k int64, c float64) {
		if k <= 0 {
			return
		}
		if m := len(out); m > 0 && out[m-1].cost == c {
			out[m-1].cap += k
			return
		}
		it := oitem{off: -1, ci: ci, cap: k, cost: c, pool: true}
		if region {
			it.qr = q
		} else {
			it.qc = q
		}
		out = append(out, it)
	}
	for _, c := range cost {
		if n == 0 {
			break
		}
		add(1, c)
		n--
	}
	if len(cost) > 0 {
		add(n, cost[len(cost)-1])
	} else {
		add(n, 0)
	}
	return out
}

// yield re-places d with each slot it holds priced at what it is worth to
// the flow's deployments (the exact value of one more unit there: a
// shortest path from T to the offering's node; for room in a quota, what
// the flow gains with one more unit of it), letting d leave replicas
// unplaced when others would place them instead; kept if the total went
// down.
func (l *local) yield(d *dem) bool {
	s := l.s
	cur := l.sol[d.i]
	var its []oitem
	for i, o := range d.curOff {
		its = append(its, s.item(d, o, true, int64(d.curN[i])))
	}
	st := s.statics(d)
	its = append(its, st.unl...)
	priced := false
	// The quotas d holds room in: that room, priced at what one more unit
	// anywhere in the quota's scope is worth to the flow, is a pool; only
	// the rest of the quota is free.
	held := map[int32]int64{}
	var pools []oitem
	for _, a := range cur.x {
		q, nq := s.quotaChain(a.off)
		for k, qi := range q[:nq] {
			if _, seen := held[qi]; seen {
				continue
			}
			held[qi] = l.ownQ(d, cur, qi)
			// Keeping the j-th unit forgoes the flow's gain from the
			// (held-j+1)-th more: gains shrink, so costs grow.
			gains := l.quotaCurve(qi, min(held[qi], quotaSlots), 1)
			cost := make([]float64, held[qi])
			for j := range cost {
				g := int64(0)
				if u := int(held[qi]) - 1 - j; u < len(gains) {
					g = gains[u]
				} else if len(gains) > 0 {
					g = gains[len(gains)-1]
				}
				cost[j] = float64(max(-g, 0)) / costScale
				priced = priced || g < 0
			}
			pools = append(pools, poolItems(qi+1, k == 0 && s.qReg[a.off] == qi+1, d.cls.cloudPos[s.cloudOf[a.off]], held[qi], cost)...)
		}
	}
	for _, o := range st.fin {
		f := l.free(d, o)
		mine := own(d, cur, o)
		if _, nq := s.quotaChain(o); mine > 0 && nq == 0 {
			// What one more unit of the offering's room is worth to the
			// flow.
			if v := l.net.onode[o]; v >= 0 {
				if c, ok := l.net.valueAt(v, l.net.oarc[o]); ok && c < 0 {
					it := s.item(d, o, false, mine)
					it.cost += float64(-c) / costScale
					it.src = 1
					its = append(its, it)
					f -= mine
					priced = true
				}
			}
		}
		if f > 0 {
			its = append(its, s.item(d, o, false, f))
		}
	}
	if !priced {
		return false
	}
	items := append(s.prune(d, its), pools...)
	fl := s.bestForItemsTrade(d, items, func(q int32) int64 { return max(0, l.qfree(d, q)-held[q]) })
	cand := s.toSol(d, items, fl, int(placedIn(items, fl)))
	if sameSol(cand, cur) {
		return false
	}
	return l.keepIfBetter(d, cand, cur, l.total())
}

// shed tries placing k fewer replicas of d (k = 1..3) so that others can
// place more: the flow refills what d frees, the special deployments with
// unplaced replicas that could use it are placed again, and the move is kept
// if the total (unplaced first) went down.
func (l *local) shed(d *dem) bool {
	s := l.s
	cur := l.sol[d.i]
	placed := d.R - cur.unplaced
	var want []*dem
	for _, d2 := range l.special {
		if d2 == d || l.sol[d2.i].unplaced == 0 {
			continue
		}
		for _, a := range cur.x {
			if d2.cls.has(a.off) {
				want = append(want, d2)
				break
			}
		}
	}
	before := l.total()
	for k := 1; k <= min(3, placed); k++ {
		items := s.items(d, func(o int32) int64 { return l.free(d, o) })
		fl, _ := s.bestForItemsN(d, items, func(q int32) int64 { return l.qfree(d, q) }, placed-k)
		undo := []saved{{d, cur}}
		l.apply(d, s.toSol(d, items, fl, int(placedIn(items, fl))))
		l.net.optimize()
		for _, d2 := range want {
			undo = append(undo, saved{d2, l.sol[d2.i]})
			l.apply(d2, l.placeTaking(d2, false))
			l.net.optimize()
		}
		if l.keepOrUndo(undo, before) {
			return true
		}
	}
	return false
}

// unplacedAnywhere reports whether some deployment in the search has
// unplaced replicas.
func (l *local) unplacedAnywhere() bool {
	return l.total() >= unplacedCost
}

// over reports whether d uses an offering, or a quota, the special
// deployments overfill.
func (l *local) over(d *dem) bool {
	s := l.s
	for _, a := range l.sol[d.i].x {
		if newN(d, a) == 0 {
			continue
		}
		if s.finite[a.off] && l.specUse[a.off] > s.capOf(a.off) {
			return true
		}
		q, k := s.quotaChain(a.off)
		for _, qi := range q[:k] {
			if l.specQ[qi] > s.quotas[qi].limit {
				return true
			}
		}
	}
	return false
}

// holdCurve prices the slots of o that special deployments other than d
// hold, for up to holdSlots slots per holder: what giving up one more slot
// of its own costs each holder (re-placed with that many fewer; capacity
// nobody holds goes to d first, at no price). A holder's cost need not grow
// slot by slot (after one replica of its own goes unplaced it needs a slot
// less), so its slots are priced by the lower convex envelope of its cost
// curve; merged cheapest first, a holder's slots then come in its order.
// The merged slots are kept in l.held[o] for take to know who gives up
// what; the prices are returned.
func (l *local) holdCurve(d *dem, o int32) []float64 {
	var hs []heldSlot
	for _, d2 := range l.special {
		mine := own(d2, l.sol[d2.i], o)
		if d2 == d || mine == 0 {
			continue
		}
		base := l.s.scost(d2, l.sol[d2.i])
		k := min(mine, holdSlots)
		cum := make([]float64, k+1)
		for j := int64(1); j <= k; j++ {
			lim := &caps{}
			lim.setOff(o, mine-j)
			q, nq := l.s.quotaChain(o)
			for _, qi := range q[:nq] {
				lim.setQuota(qi, l.ownQ(d2, l.sol[d2.i], qi)-j)
			}
			x := l.candidate(d2, lim, false, false)
			cum[j] = max(float64(l.s.scost(d2, x)-base)/costScale, cum[j-1])
		}
		for _, m := range convexMarginals(cum) {
			hs = append(hs, heldSlot{m, d2})
		}
	}
	slices.SortStableFunc(hs, func(a, b heldSlot) int {
		switch {
		case a.cost < b.cost:
			return -1
		case a.cost > b.cost:
			return 1
		}
		return 0
	})
	l.held[o] = hs
	marg := make([]float64, len(hs))
	for i, h := range hs {
		marg[i] = h.cost
	}
	return marg
}

// heldSlot is one slot a special deployment holds, priced at what giving it
// up costs it.
type heldSlot struct {
	cost float64
	d    *dem
}

// convexMarginals returns the unit steps of the lower convex envelope of the
// points (j, cum[j]), j = 0..len(cum)-1.
func convexMarginals(cum []float64) []float64 {
	hull := []int{0}
	for j := 1; j < len(cum); j++ {
		for len(hull) >= 2 {
			a, b := hull[len(hull)-2], hull[len(hull)-1]
			// Drop b if it lies on or above the segment from a to j.
			if (cum[b]-cum[a])*float64(j-a) >= (cum[j]-cum[a])*float64(b-a) {
				hull = hull[:len(hull)-1]
				continue
			}
			break
		}
		hull = append(hull, j)
	}
	out := make([]float64, 0, len(cum)-1)
	for i := 1; i < len(hull); i++ {
		a, b := hull[i-1], hull[i]
		step := (cum[b] - cum[a]) / float64(b-a)
		for range b - a {
			out = append(out, step)
		}
	}
	return out
}

// holdSlots bounds how many slots of one offering holdCurve and flowCurve
// price one by one.
const holdSlots = 8

// flowCurve prices the slots of o the flow's deployments hold: the j-th
// entry is what the flow loses (in USD/h; an unplaced replica counts its
// penalty) when one more unit of o's capacity goes, beyond what is free,
// and with it a unit of each quota o counts against (a slot taken brings
// its quota along). It takes the units away for real and gives them back.
func (l *local) flowCurve(o int32) []float64 {
	s := l.s
	if !s.limited[o] {
		return nil
	}
	q, nq := s.quotaChain(o)
	qs := q[:nq]
	set := func() {
		l.net.setAvail(o)
		for _, qi := range qs {
			l.net.setQAvail(qi)
		}
		l.net.optimize()
	}
	slack := max(0, l.net.avail(o)-l.net.regFlow(o))
	var qslack [2]int64
	for i, qi := range qs {
		qslack[i] = max(0, l.net.qavail(qi)-l.net.qFlow(qi))
		l.specQ[qi] += qslack[i]
	}
	k := min(l.net.regFlow(o), holdSlots)
	l.specUse[o] += slack
	set()
	prev := l.net.g.total
	var out []float64
	for range k {
		l.specUse[o]++
		for _, qi := range qs {
			l.specQ[qi]++
		}
		set()
		t := l.net.g.total
		out = append(out, max(0, float64(t-prev)/costScale))
		prev = t
	}
	l.specUse[o] -= slack + k
	for i, qi := range qs {
		l.specQ[qi] -= qslack[i] + k
	}
	set()
	return out
}

// violates reports whether a deployment placed by the flow breaks a rule the
// flow relaxed (its budget, or onDemandBase with spread).
func (s *solver) violates(d *dem, x dsol) bool {
	ob, ub := s.breaks(d, x)
	return ob || ub
}

// breaks reports whether x is over d's budget and under its onDemandBase.
func (s *solver) breaks(d *dem, x dsol) (overBudget, underBase bool) {
	var price float64
	var od int
	for _, a := range x.x {
		price += float64(a.n) * s.offs[a.off].Price
		if !s.offs[a.off].Spot {
			od += a.n
		}
	}
	return d.budget > 0 && price > d.budget+budgetEps, od < d.bb-x.unplaced
}
