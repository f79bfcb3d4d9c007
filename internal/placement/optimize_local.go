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
	net     *gnet
	spec    int64 // sum of scost over special deployments
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
	l := &local{s: s, sol: sol, special: special, specUse: make([]int64, s.n), failed: map[moveKey]int{}}
	for i, d := range special {
		n.detach(pos[i])
		for _, a := range sol[d.i].x {
			l.specUse[a.off] += newN(d, a)
		}
		l.spec += s.scost(d, sol[d.i])
	}
	n.avail = func(o int32) int64 {
		if !s.finite[o] {
			return capInf
		}
		return max(0, int64(s.offs[o].Capacity)-l.specUse[o])
	}
	for o, u := range l.specUse {
		if u > 0 && s.finite[o] {
			n.setAvail(int32(o))
		}
	}
	n.optimize()
	l.net = n
	return l
}

// promote makes deployments of the network special: they leave it and hold
// the capacity of their current placement.
func (l *local) promote(ds []*dem) {
	s := l.s
	for _, d := range ds {
		l.net.detach(l.net.gdOf[d.i])
		l.special = append(l.special, d)
		for _, a := range l.sol[d.i].x {
			if nw := newN(d, a); nw > 0 {
				l.specUse[a.off] += nw
				if s.finite[a.off] {
					l.net.setAvail(a.off)
				}
			}
		}
		l.spec += s.scost(d, l.sol[d.i])
	}
	l.net.optimize()
}

func (s *solver) newLocal(sol []dsol, special, regular []*dem) *local {
	l := &local{s: s, sol: sol, special: special, specUse: make([]int64, s.n), failed: map[moveKey]int{}}
	for _, d := range special {
		for _, a := range sol[d.i].x {
			l.specUse[a.off] += newN(d, a)
		}
		l.spec += s.scost(d, sol[d.i])
	}
	l.net = s.newNet(regular, func(o int32) int64 {
		if !s.finite[o] {
			return capInf
		}
		return max(0, int64(s.offs[o].Capacity)-l.specUse[o])
	}, false)
	l.net.optimize()
	return l
}

func (l *local) total() int64 { return l.net.g.total + l.spec }

// apply replaces d's solution and tells the network about the capacity it
// frees or takes; net.optimize must follow.
func (l *local) apply(d *dem, ns dsol) {
	s := l.s
	old := l.sol[d.i]
	l.spec += s.scost(d, ns) - s.scost(d, old)
	var touched []int32
	for _, a := range old.x {
		if nw := newN(d, a); nw > 0 {
			l.specUse[a.off] -= nw
			touched = append(touched, a.off)
		}
	}
	for _, a := range ns.x {
		if nw := newN(d, a); nw > 0 {
			l.specUse[a.off] += nw
			touched = append(touched, a.off)
		}
	}
	l.sol[d.i] = ns
	for _, o := range touched {
		if s.finite[o] {
			l.net.setAvail(o)
		}
	}
}

func own(d *dem, x dsol, o int32) int64 {
	for _, a := range x.x {
		if a.off == o {
			return newN(d, a)
		}
	}
	return 0
}

// free is what d may use on o with everything else fixed.
func (l *local) free(d *dem, o int32) int64 {
	s := l.s
	if !s.finite[o] {
		return capInf
	}
	return max(0, int64(s.offs[o].Capacity)-l.specUse[o]+own(d, l.sol[d.i], o)-l.net.regFlow(o))
}

func sameSol(a, b dsol) bool {
	return a.unplaced == b.unplaced && slices.Equal(a.x, b.x)
}

// replace re-places d exactly given the others. force applies the result
// even if it is not better (d's current placement may break its rules).
func (l *local) replace(d *dem, force bool) bool {
	before := l.total()
	old := l.sol[d.i]
	cand, _ := l.s.bestFor(d, func(o int32) int64 { return l.free(d, o) })
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
// deployments it displaces are placed again the same way (taking only from
// the flow), and the move is kept if the total went down.
func (l *local) take(d *dem) bool {
	cur := l.sol[d.i]
	before := l.total()
	type saved struct {
		d *dem
		x dsol
	}
	undo := []saved{{d, cur}}
	l.apply(d, l.placeTaking(d, true))
	l.net.optimize()
	for _, d2 := range l.special {
		if d2 == d || !l.over(d2) {
			continue
		}
		undo = append(undo, saved{d2, l.sol[d2.i]})
		l.apply(d2, l.placeTaking(d2, false))
		l.net.optimize()
	}
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
	return l.candidate(d, -1, 0, fromSpecial, true)
}

// candidate is d's best placement with the others as they are, where it may
// take what the flow's deployments hold at the displacement price (and, with
// fromSpecial, what special ones hold at the holders' prices); less, if >=
// 0, is an offering d must use by slots less than it is free to.
//
// Displacement prices cost a shortest path each, so they are computed only
// for the held offerings that survive pruning when taking is free. Slots of
// special deployments are priced unit by unit (what the holders lose for
// each further slot given up), since that can grow fast (a budget).
func (l *local) candidate(d *dem, less int32, by int64, fromSpecial, curves bool) dsol {
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
			if o == less {
				f = max(0, f-by)
			}
			if f > 0 {
				its = append(its, s.item(d, o, false, f))
			}
			if o == less {
				continue
			}
			if rf := l.net.regFlow(o); rf > 0 {
				p, ok := regPrice[o]
				curve := regCurve[o]
				switch {
				case len(curve) > 0 && !optimistic:
					// One item per priced slot; the rest at the last price.
					for j := 0; j < len(curve) && rf > 0; j++ {
						it := s.item(d, o, false, 1)
						it.cost += curve[j]
						it.src = 1
						its = append(its, it)
						rf--
					}
					if rf > 0 {
						it := s.item(d, o, false, rf)
						it.cost += curve[len(curve)-1]
						it.src = 1
						its = append(its, it)
					}
				case optimistic || ok:
					it := s.item(d, o, false, rf)
					it.cost += p
					it.src = 1
					its = append(its, it)
				}
			}
			if sh := l.specUse[o] - own(d, mine, o); fromSpecial && sh > 0 {
				curve := specPrice[o]
				if optimistic || len(curve) == 0 {
					it := s.item(d, o, false, sh)
					it.src = 2
					its = append(its, it)
					continue
				}
				// One item per priced slot; the rest at the last price.
				for j := 0; j < len(curve) && sh > 0; j++ {
					it := s.item(d, o, false, 1)
					it.cost += curve[j]
					it.src = 2
					its = append(its, it)
					sh--
				}
				if sh > 0 {
					it := s.item(d, o, false, sh)
					it.cost += curve[len(curve)-1]
					it.src = 2
					its = append(its, it)
				}
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
	items := build(false)
	fl := s.bestForItemsTrade(d, items)
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
		items = build(false)
		fl = s.bestForItemsTrade(d, items)
	}
	return s.toSol(d, items, fl, int(sumFlows(fl)))
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

// yield re-places d with each slot it holds priced at what it is worth to
// the flow's deployments (the exact value of one more unit there: a
// shortest path from T to the offering), letting d leave replicas unplaced
// when others would place them instead; kept if the total went down.
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
	for _, o := range st.fin {
		f := l.free(d, o)
		mine := own(d, cur, o)
		if mine > 0 {
			if v := l.net.onode[o]; v >= 0 {
				if c, ok := l.net.g.pathCost(l.net.T, v); ok && c < 0 {
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
	items := s.prune(d, its)
	fl := s.bestForItemsTrade(d, items)
	cand := s.toSol(d, items, fl, int(sumFlows(fl)))
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
	type saved struct {
		d *dem
		x dsol
	}
	for k := 1; k <= min(3, placed); k++ {
		items := s.items(d, func(o int32) int64 { return l.free(d, o) })
		fl, _ := s.bestForItemsN(d, items, placed-k)
		undo := []saved{{d, cur}}
		l.apply(d, s.toSol(d, items, fl, int(sumFlows(fl))))
		l.net.optimize()
		for _, d2 := range want {
			undo = append(undo, saved{d2, l.sol[d2.i]})
			l.apply(d2, l.placeTaking(d2, false))
			l.net.optimize()
		}
		if l.total() < before-moveTol {
			return true
		}
		for i := len(undo) - 1; i >= 0; i-- {
			l.apply(undo[i].d, undo[i].x)
		}
		l.net.optimize()
	}
	return false
}

// unplacedAnywhere reports whether some deployment in the search has
// unplaced replicas.
func (l *local) unplacedAnywhere() bool {
	return l.total() >= unplacedCost
}

// over reports whether d uses an offering the special deployments overfill.
func (l *local) over(d *dem) bool {
	for _, a := range l.sol[d.i].x {
		if l.s.finite[a.off] && newN(d, a) > 0 && l.specUse[a.off] > int64(l.s.offs[a.off].Capacity) {
			return true
		}
	}
	return false
}

// holdCurve prices the slots of o that special deployments other than d
// hold: the j-th entry is what giving up one more slot costs the holders
// (each re-placed with j fewer slots, marginal costs merged cheapest first),
// for up to holdSlots slots.
func (l *local) holdCurve(d *dem, o int32) []float64 {
	var marg []float64
	for _, d2 := range l.special {
		mine := own(d2, l.sol[d2.i], o)
		if d2 == d || mine == 0 {
			continue
		}
		base := l.s.scost(d2, l.sol[d2.i])
		prev := 0.0
		for j := int64(1); j <= min(mine, holdSlots); j++ {
			x := l.candidate(d2, o, j, false, false)
			delta := max(float64(l.s.scost(d2, x)-base)/costScale, prev)
			marg = append(marg, delta-prev)
			prev = delta
		}
	}
	slices.Sort(marg)
	return marg
}

// holdSlots bounds how many slots of one offering holdCurve and flowCurve
// price one by one.
const holdSlots = 8

// flowCurve prices the slots of o the flow's deployments hold: the j-th
// entry is what the flow loses (in USD/h; an unplaced replica counts its
// penalty) when one more unit of o's capacity goes, beyond what is free.
// It takes the units away for real and gives them back.
func (l *local) flowCurve(o int32) []float64 {
	s := l.s
	if !s.finite[o] {
		return nil
	}
	slack := max(0, l.net.avail(o)-l.net.regFlow(o))
	k := min(l.net.regFlow(o), holdSlots)
	l.specUse[o] += slack
	l.net.setAvail(o)
	l.net.optimize()
	prev := l.net.g.total
	var out []float64
	for range k {
		l.specUse[o]++
		l.net.setAvail(o)
		l.net.optimize()
		t := l.net.g.total
		out = append(out, max(0, float64(t-prev)/costScale))
		prev = t
	}
	l.specUse[o] -= slack + k
	l.net.setAvail(o)
	l.net.optimize()
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
