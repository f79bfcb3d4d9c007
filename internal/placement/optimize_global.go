package placement

import (
	"math"
	"slices"
	"sort"
)

// The joint network (all deployments, shared capacity):
//
//	supply -> [hub] -> offering node O(o) -> T     finite capacity: O->T has it
//	supply -> [hub] -> T                           unlimited offering, or a kept
//	                                               (current) replica, which needs
//	                                               no capacity
//	supply -> T                                    unplaced, cost unplacedCost
//
// per deployment, by the rules it has:
//
//	plain:          S (R units) is the hub.
//	onDemandBase b: Sflex (R-b) -> Sod (b); Sod is the hub of on-demand
//	                offerings, Sflex of spot ones.
//	spread:         Sseed (m units) -> Kin(cloud) cap 1, Sflex -> Kin(cloud),
//	                Kin -> Kout cap maxPerCloud; Kout(cloud) is the hub of
//	                the cloud's offerings. A seed unit per cloud used makes
//	                minClouds a flow constraint.
//
// onDemandBase with spread, and budgets, are not flow constraints: such
// deployments ("special") enter with Lagrange multipliers on spot and on
// price, and are then re-placed exactly one at a time (bestFor).
//
// A hub does not get an arc to every feasible offering: among unlimited
// offerings only the cheapest can be used, and a finite offering dearer than
// that is never needed. Finite offerings cheaper than it come in cost order
// until their capacity covers twice the hub's throughput; the rest are priced
// after each solve with the node potentials and added when their reduced cost
// is negative, until none is (so the result is optimal for all of them).

type xo struct {
	off int32
	n   int
}

type dsol struct {
	x        []xo
	unplaced int
}

const unplacedCost = int64(1e13)

// A hub starts with arcs to its cheapest finite offerings until they hold
// initCapFactor times its throughput and number at least initMinArcs;
// pricing adds the rest when they would help.
const initCapFactor, initMinArcs = 16, 32

type ghub struct {
	removed   bool
	node      int32
	d         *dem
	cloud     int32 // -1: every cloud
	od, sp    bool
	thr       int64
	lam, beta float64
	bestU     int32 // cheapest unlimited offering in scope, -1 if none
	bestUCost float64
	cands     []hcand // finite offerings cheaper than bestU, in cost order
	gens      []hgen
	more      bool
	added     []int32
	gd        int
}

type hcand struct {
	off   int32
	cost  float64
	added bool
}

type hgen struct {
	g   *group
	add float64
	ptr int32
}

type garc struct {
	e   int32
	off int32
}

type gdem struct {
	d       *dem
	arcs    []garc
	unpl    []int32
	hubs    []*ghub
	first   int32 // its nodes are first..last-1 (offering nodes excepted)
	last    int32
	removed bool
}

type gnet struct {
	s     *solver
	g     mcf
	T     int32
	kind  []uint8 // 0 supply/hub, 1 offering, 2 sink, 3 quota
	onode []int32
	oarc  []int32
	avail func(int32) int64
	// Quotas: a node per quota between the offering nodes in its scope
	// and T (a region's quota leads to its cloud's, if any); its arc on
	// has the quota's room (qavail) as capacity.
	qavail  func(int32) int64
	qnode   []int32
	qarc    []int32
	hubs    []*ghub
	gd      []gdem
	mult    bool
	gdOf    map[int]int // deployment index -> position in gd (last added)
	hubAt   []int32     // per node: index in hubs, or -1
	offAt   []int32     // per node: offering of an offering node, or -1
	mark    []uint32
	markGen uint32
	pending []int32 // hubs to price
	// candOf: per offering, the hubs with it among their candidates (not
	// necessarily added); candOfQ: per quota, the hubs with a candidate in
	// its scope. When an offering or quota gets more room, they are priced
	// again (nothing else would tell them).
	candOf  [][]int32 // built on first need (candIdx)
	candOfQ [][]int32
	candIdx bool
	oDirty  []int32 // offerings whose node may need normalizing
	started bool
}

// global solves the joint min-cost flow for ds with avail capacity per
// offering (capInf when unlimited) and qavail room per quota.
func (s *solver) global(ds []*dem, avail func(int32) int64, qavail qcapFunc, mult bool) []dsol {
	n := s.newNet(ds, avail, qavail, mult)
	n.optimize()
	return n.extract()
}

func (s *solver) newNet(ds []*dem, avail func(int32) int64, qavail qcapFunc, mult bool) *gnet {
	n := &gnet{s: s, avail: avail, qavail: qavail, mult: mult}
	n.onode = make([]int32, s.n)
	n.oarc = make([]int32, s.n)
	for i := range n.onode {
		n.onode[i] = -1
	}
	n.T = n.node(2)
	n.g.index(n.T)
	// Quota nodes, a cloud's before its regions' (arcs into an indexed node
	// come after it).
	n.qnode = make([]int32, len(s.quotas))
	n.qarc = make([]int32, len(s.quotas))
	for q := range s.quotas {
		v := n.node(3)
		n.g.index(v)
		n.qnode[q] = v
		to := n.T
		if p := s.quotas[q].parent; p >= 0 {
			to = n.qnode[p]
		}
		n.qarc[q] = n.g.addArc(v, to, qavail(int32(q)), 0)
	}
	for _, d := range ds {
		n.addDem(d)
	}
	n.initPotentials()
	return n
}

// optimize routes all excess and prices the candidates left out until none
// has a negative reduced cost: the flow is then optimal over all of them.
// Potentials only ever go down, so only the hubs whose potential went down
// since the last pricing (and new hubs) need pricing.
func (n *gnet) optimize() {
	g := &n.g
	g.run()
	for range 100000 {
		n.collectDirty()
		n.normalize()
		if len(n.pending) == 0 {
			break
		}
		var sat []int32
		for o, v := range n.onode {
			if v >= 0 && g.rcap[n.oarc[o]] == 0 {
				sat = append(sat, int32(o))
			}
		}
		changed := false
		pend := n.pending
		n.pending = nil
		n.markGen++
		for _, hi := range pend {
			if h := n.hubs[hi]; !h.removed && n.mark[n.gd[h.gd].first] != n.markGen {
				n.mark[n.gd[h.gd].first] = n.markGen
				n.tighten(&n.gd[h.gd])
			}
		}
		for _, hi := range pend {
			if h := n.hubs[hi]; !h.removed && n.price(h, sat) {
				changed = true
			}
		}
		if !changed {
			break
		}
		g.run()
	}
}

// tighten raises the potentials of a deployment's nodes as far as they may
// go: to the least of cost + potential over the residual arcs into them.
// Every reduced cost stays non-negative, and pricing then sees the true
// marginal cost of the deployment, not a potential that early-stopped
// searches left low.
func (n *gnet) tighten(gd *gdem) {
	g := &n.g
	for pass := range 2 {
		for i := gd.first; i < gd.last; i++ {
			v := i
			if pass == 0 {
				v = gd.last - 1 - (i - gd.first)
			}
			if n.kind[v] != 0 {
				continue
			}
			best := int64(math.MaxInt64)
			for e := g.head[v]; e >= 0; e = g.next[e] {
				if r := e ^ 1; g.rcap[r] > 0 {
					best = min(best, g.cost[r]+g.pi[g.to[e]])
				}
			}
			if best != math.MaxInt64 && best > g.pi[v] {
				g.pi[v] = best
			}
		}
	}
}

// collectDirty turns the nodes whose potential went down into hubs to price
// and offering nodes to normalize.
func (n *gnet) collectDirty() {
	g := &n.g
	n.markGen++
	for _, hi := range n.pending {
		n.mark[n.hubs[hi].node] = n.markGen
	}
	for _, v := range g.dirty {
		if n.mark[v] == n.markGen {
			continue
		}
		n.mark[v] = n.markGen
		if hi := n.hubAt[v]; hi >= 0 {
			n.pending = append(n.pending, hi)
		} else if o := n.offAt[v]; o >= 0 {
			n.oDirty = append(n.oDirty, o)
		}
	}
	g.dirty = g.dirty[:0]
}

// extractInto writes the solution of every deployment still in the network
// into sol (by deployment index).
func (n *gnet) extractInto(sol []dsol) {
	for i := range n.gd {
		if !n.gd[i].removed {
			sol[n.gd[i].d.i] = n.extractOne(i)
		}
	}
}

func (n *gnet) extract() []dsol {
	out := make([]dsol, len(n.gd))
	for i := range n.gd {
		gd := &n.gd[i]
		var sol dsol
		for _, a := range gd.arcs {
			if f := n.g.flow(a.e); f > 0 {
				sol.x = addX(sol.x, a.off, int(f))
			}
		}
		for _, e := range gd.unpl {
			sol.unplaced += int(n.g.flow(e))
		}
		n.s.sortX(sol.x)
		out[i] = sol
	}
	return out
}

// setAvail makes the capacity of o's arc on (to its quota or T) what avail
// now says, keeping the potentials valid; optimize must follow.
func (n *gnet) setAvail(o int32) {
	v := n.onode[o]
	if v < 0 {
		return // no arc uses o yet; pricing reads avail when it adds one
	}
	if n.setArc(n.oarc[o], n.avail(o)) {
		n.indexCands()
		n.pending = append(n.pending, n.candOf[o]...)
	}
	n.oDirty = append(n.oDirty, o)
}

// setQAvail makes the capacity of quota q's arc what qavail now says, as
// setAvail does for an offering.
func (n *gnet) setQAvail(q int32) {
	if n.setArc(n.qarc[q], n.qavail(q)) {
		n.indexCands()
		n.pending = append(n.pending, n.candOfQ[q]...)
	}
}

// indexCands builds candOf and candOfQ from the hubs' candidates (once;
// noteCand keeps them up to date after).
func (n *gnet) indexCands() {
	if n.candIdx {
		return
	}
	n.candIdx = true
	n.candOf = make([][]int32, n.s.n)
	n.candOfQ = make([][]int32, len(n.s.quotas))
	for _, h := range n.hubs {
		for _, c := range h.cands {
			n.noteCand(h, c.off)
		}
	}
}

// noteCand records that o is among h's candidates.
func (n *gnet) noteCand(h *ghub, o int32) {
	if !n.candIdx {
		return
	}
	hi := n.hubAt[h.node]
	n.candOf[o] = append(n.candOf[o], hi)
	q, k := n.s.quotaChain(o)
	for _, qi := range q[:k] {
		if l := n.candOfQ[qi]; len(l) == 0 || l[len(l)-1] != hi {
			n.candOfQ[qi] = append(l, hi)
		}
	}
}

// setArc gives arc e (an offering's or a quota's, on the way to T)
// capacity a: flow above it goes back to e's tail, taken off every arc on
// from there to T; optimize must follow. It reports whether the room on e
// grew.
func (n *gnet) setArc(e int32, a int64) bool {
	g := &n.g
	grew := a-g.flow(e) > g.rcap[e]
	f := g.flow(e)
	if f > a { // take flow back: e's tail must send it elsewhere
		d := f - a
		g.rcap[e^1] -= d
		g.touch(e)
		g.excess[g.from(e)] += d
		g.excess[n.T] -= d
		rest := n.after(g.to[e])
		for _, x := range rest.list() {
			n.unflow(x, d)
		}
		f = a
	}
	g.rcap[e] = a - f
	n.fixArc(e)
	return grew
}

// unflow takes d units of flow off arc e (and gives them back as room).
func (n *gnet) unflow(e int32, d int64) {
	g := &n.g
	g.rcap[e] += d
	g.rcap[e^1] -= d
	g.touch(e)
	n.fixArc(e)
}

// fixArc restores the potentials' invariant on e after its residual
// capacity grew: a negative reduced cost is saturated (optimize routes
// the difference).
func (n *gnet) fixArc(e int32) {
	g := &n.g
	if g.rcap[e] > 0 && g.reduced(e) < 0 {
		g.push(e, g.rcap[e])
	}
}

// arcs is a short list of arcs: a path to T from an offering's node (its
// own arc, then at most two quotas').
type arcs struct {
	a [3]int32
	n int
}

func (x *arcs) add(e int32)   { x.a[x.n] = e; x.n++ }
func (x *arcs) list() []int32 { return x.a[:x.n] }

// after lists the quota arcs from node v (an offering's arc's head) on to
// T.
func (n *gnet) after(v int32) arcs {
	var out arcs
	for q := n.quotaAt(v); q >= 0; q = n.quotaAt(v) {
		out.add(n.qarc[q])
		v = n.g.to[n.qarc[q]]
	}
	return out
}

// quotaAt is the quota whose node v is, or -1.
func (n *gnet) quotaAt(v int32) int32 {
	if n.kind[v] != 3 {
		return -1
	}
	// Quota nodes come right after T, in quota order.
	return v - n.T - 1
}

// chain lists the arcs from offering o's node to T: its own, then its
// quotas'.
func (n *gnet) chain(o int32) arcs {
	e := n.oarc[o]
	out := arcs{a: [3]int32{e}, n: 1}
	rest := n.after(n.g.to[e])
	for _, x := range rest.list() {
		out.add(x)
	}
	return out
}

// entry is the node o's arc leads to: its region's quota, else its
// cloud's, else T.
func (n *gnet) entry(o int32) int32 {
	q, k := n.s.quotaChain(o)
	if k == 0 {
		return n.T
	}
	return n.qnode[q[0]]
}

// qFlow is how many new replicas of the network's deployments quota q holds.
func (n *gnet) qFlow(q int32) int64 { return n.g.flow(n.qarc[q]) }

// regFlow is how many new replicas of the network's deployments use o.
func (n *gnet) regFlow(o int32) int64 {
	if v := n.onode[o]; v >= 0 {
		return n.g.flow(n.oarc[o])
	}
	return 0
}

// displacement is the least cost (USD/h) of moving one of the network's
// replicas off o.
func (n *gnet) displacement(o int32) (float64, bool) {
	v := n.onode[o]
	if v < 0 || n.g.flow(n.oarc[o]) == 0 {
		return 0, false
	}
	g := &n.g
	e := n.oarc[o]
	r := g.rcap[e]
	g.rcap[e] = 0
	c, ok := g.pathCost(v, n.T)
	g.rcap[e] = r
	return float64(c) / costScale, ok
}

// valueAt is the cost (<= 0) of the cheapest residual path from T to node
// v that does not come back through v's own arc e on to T: minus the
// value to the network of one more unit of room on e (and on to T).
func (n *gnet) valueAt(v, e int32) (int64, bool) {
	g := &n.g
	r := g.rcap[e^1]
	g.rcap[e^1] = 0
	c, ok := g.pathCost(n.T, v)
	g.rcap[e^1] = r
	return c, ok
}

func (n *gnet) node(kind uint8) int32 {
	n.kind = append(n.kind, kind)
	n.hubAt = append(n.hubAt, -1)
	n.offAt = append(n.offAt, -1)
	n.mark = append(n.mark, 0)
	return n.g.addNode()
}

func (n *gnet) addDem(d *dem) {
	n.addDemWith(d, 0, 0, n.mult)
}

func (n *gnet) addDemWith(d *dem, lam, beta float64, mult bool) {
	s := n.s
	g := &n.g
	R := int64(d.R)
	gi := len(n.gd)
	n.gd = append(n.gd, gdem{d: d, first: int32(g.nodes())})
	if n.gdOf == nil {
		n.gdOf = map[int]int{}
	}
	n.gdOf[d.i] = gi
	gd := &n.gd[gi]
	if mult {
		lam, beta = d.lam, d.beta
	}
	spread := d.mm >= 2 || d.M < d.R
	unpl := func(v int32, c int64) { gd.unpl = append(gd.unpl, g.addArc(v, n.T, c, unplacedCost)) }
	newHub := func(v int32, cloud int32, od, sp bool, thr int64) {
		h := &ghub{node: v, d: d, cloud: cloud, od: od, sp: sp, thr: thr, lam: lam, beta: beta, gd: gi}
		n.hubAt[v] = int32(len(n.hubs))
		n.pending = append(n.pending, int32(len(n.hubs)))
		n.hubs = append(n.hubs, h)
		gd.hubs = append(gd.hubs, h)
	}
	switch {
	case d.bb > 0 && !spread:
		sf, so := n.node(0), n.node(0)
		g.excess[sf] = R - int64(d.bb)
		g.excess[so] = int64(d.bb)
		g.addArc(sf, so, R, 0)
		unpl(sf, R)
		unpl(so, R)
		newHub(so, -1, true, false, R)
		newHub(sf, -1, false, true, R-int64(d.bb))
	case spread:
		seeds := d.mm >= 2
		split := seeds && d.M < d.R
		sf := n.node(0)
		g.excess[sf] = R
		unpl(sf, R)
		ss := int32(-1)
		if seeds {
			ss = n.node(0)
			g.excess[ss] = int64(d.mm)
			g.excess[sf] -= int64(d.mm)
			unpl(ss, int64(d.mm))
		}
		M := int64(d.M)
		for _, c := range d.cls.clouds {
			kin := n.node(0)
			if seeds {
				g.addArc(ss, kin, 1, 0)
			}
			hub := kin
			if split {
				g.addArc(sf, kin, R, 0)
				hub = n.node(0)
				g.addArc(kin, hub, M, 0)
			} else {
				g.addArc(sf, kin, M, 0)
			}
			newHub(hub, c, true, true, M)
		}
	default:
		v := n.node(0)
		g.excess[v] = R
		unpl(v, R)
		newHub(v, -1, true, true, R)
	}
	g.excess[n.T] -= R
	// Kept replicas: straight to T, no capacity needed.
	for i, o := range d.curOff {
		h := n.hubFor(gd, o)
		if h == nil {
			continue
		}
		c := n.costFor(h, o) - s.w.ChurnUSD
		e := g.addArc(h.node, n.T, min(int64(d.curN[i]), h.thr), toInt(c))
		gd.arcs = append(gd.arcs, garc{e, o})
	}
	for _, h := range gd.hubs {
		n.initHub(h)
	}
	gd.last = int32(g.nodes())
}

// insert adds d to a solved network with the given multipliers and
// re-optimizes; it returns d's index for extract and remove.
func (n *gnet) insert(d *dem, lam, beta float64) int {
	g := &n.g
	gi := len(n.gd)
	n.addDemWith(d, lam, beta, false)
	gd := &n.gd[gi]
	// Potentials for the new nodes, last first (they were made in
	// topological order): high enough for every arc out of them.
	for v := gd.last - 1; v >= gd.first; v-- {
		if n.kind[v] != 0 {
			continue
		}
		best := int64(math.MinInt64)
		for e := g.head[v]; e >= 0; e = g.next[e] {
			if e&1 == 0 && g.rcap[e] > 0 {
				best = max(best, g.pi[g.to[e]]-g.cost[e])
			}
		}
		if best != math.MinInt64 {
			g.pi[v] = best
		}
	}
	n.optimize()
	return gi
}

// remove takes the deployment inserted as gi out of the network: its flow
// is cancelled (the capacity it used is free again) and its arcs disabled.
func (n *gnet) remove(gi int) {
	n.detach(gi)
	n.optimize()
}

// detach is remove without re-optimizing; optimize must follow.
func (n *gnet) detach(gi int) {
	g := &n.g
	gd := &n.gd[gi]
	gd.removed = true
	for _, h := range gd.hubs {
		h.removed = true
	}
	var touched []int32
	for v := gd.first; v < gd.last; v++ {
		if n.kind[v] != 0 {
			continue
		}
		for e := g.head[v]; e >= 0; e = g.next[e] {
			if e&1 != 0 {
				continue
			}
			if f := g.flow(e); f > 0 {
				g.total -= f * g.cost[e]
				if w := g.to[e]; n.kind[w] == 1 {
					// Take the same flow off the offering's arcs to T.
					o := n.offAt[w]
					ch := n.chain(o)
					for _, x := range ch.list() {
						g.rcap[x] += f
						g.rcap[x^1] -= f
						g.touch(x)
					}
					touched = append(touched, o)
				}
			}
			g.rcap[e], g.rcap[e^1] = 0, 0
			g.touch(e)
		}
		g.excess[v] = 0
	}
	for _, o := range touched {
		ch := n.chain(o)
		for _, x := range ch.list() {
			n.fixArc(x)
		}
	}
	n.oDirty = append(n.oDirty, touched...)
}

// extractOne is the solution of the deployment inserted as gi.
func (n *gnet) extractOne(gi int) dsol {
	gd := &n.gd[gi]
	var sol dsol
	for _, a := range gd.arcs {
		if f := n.g.flow(a.e); f > 0 {
			sol.x = addX(sol.x, a.off, int(f))
		}
	}
	for _, e := range gd.unpl {
		sol.unplaced += int(n.g.flow(e))
	}
	n.s.sortX(sol.x)
	return sol
}

func (n *gnet) inScope(h *ghub, o int32) bool {
	if !h.d.cls.has(o) || (h.cloud >= 0 && n.s.cloudOf[o] != h.cloud) {
		return false
	}
	if n.s.offs[o].Spot {
		return h.sp
	}
	return h.od
}

func (n *gnet) hubFor(gd *gdem, o int32) *ghub {
	for _, h := range gd.hubs {
		if n.inScope(h, o) {
			return h
		}
	}
	return nil
}

func (n *gnet) costFor(h *ghub, o int32) float64 {
	c := n.s.cost(h.d, o)
	if n.s.offs[o].Spot {
		c += h.lam
	}
	return c + h.beta*n.s.offs[o].Price
}

func (n *gnet) better(c float64, o int32, bc float64, bo int32) bool {
	return bo < 0 || c < bc || (c == bc && n.s.rank[o] < n.s.rank[bo])
}

func (n *gnet) initHub(h *ghub) {
	s := n.s
	d := h.d
	cls := d.cls
	h.bestU = -1
	var groups []int32
	if h.cloud >= 0 {
		groups = cls.cloudGroups[cls.cloudPos[h.cloud]]
	}
	forGroups := func(f func(g *group, add float64)) {
		visit := func(gi int32) {
			g := &cls.groups[gi]
			if (g.spot && !h.sp) || (!g.spot && !h.od) {
				return
			}
			add := d.lat[g.rpos]
			if g.spot {
				add += h.lam
			}
			f(g, add)
		}
		if h.cloud >= 0 {
			for _, gi := range groups {
				visit(gi)
			}
		} else {
			for gi := range cls.groups {
				visit(int32(gi))
			}
		}
	}
	if h.beta == 0 {
		forGroups(func(g *group, add float64) {
			if len(g.unl) > 0 {
				o := g.unl[0]
				if c := s.base[o] + add; n.better(c, o, h.bestUCost, h.bestU) {
					h.bestU, h.bestUCost = o, c
				}
			}
			if len(g.fin) > 0 {
				h.gens = append(h.gens, hgen{g: g, add: add})
			}
		})
		if h.bestU >= 0 {
			h.gens = slices.DeleteFunc(h.gens, func(x hgen) bool { return s.base[x.g.fin[0]]+x.add >= h.bestUCost })
		}
		h.more = len(h.gens) > 0
	} else {
		forGroups(func(g *group, add float64) {
			for _, o := range g.unl {
				if c := s.base[o] + add + h.beta*s.offs[o].Price; n.better(c, o, h.bestUCost, h.bestU) {
					h.bestU, h.bestUCost = o, c
				}
			}
		})
		forGroups(func(g *group, add float64) {
			for _, o := range g.fin {
				c := s.base[o] + add + h.beta*s.offs[o].Price
				if (h.bestU < 0 || c < h.bestUCost) && s.capOf(o) > 0 {
					n.noteCand(h, o)
					h.cands = append(h.cands, hcand{off: o, cost: c})
				}
			}
		})
		sort.Slice(h.cands, func(a, b int) bool {
			x, y := h.cands[a], h.cands[b]
			return x.cost < y.cost || (x.cost == y.cost && s.rank[x.off] < s.rank[y.off])
		})
	}
	if h.bestU >= 0 {
		e := n.g.addArc(h.node, n.T, h.thr, toInt(h.bestUCost))
		n.gd[h.gd].arcs = append(n.gd[h.gd].arcs, garc{e, h.bestU})
	}
	var cum int64
	count := int64(0)
	for i := 0; ; i++ {
		if cum >= initCapFactor*h.thr && count >= initMinArcs {
			break
		}
		if i == len(h.cands) && !n.gen(h, 16) {
			break
		}
		n.addCand(h, i)
		cum += n.avail(h.cands[i].off)
		count++
	}
}

// gen appends up to k more candidates to h.cands from its groups, in cost order.
func (n *gnet) gen(h *ghub, k int) bool {
	s := n.s
	got := false
	for ; k > 0 && h.more; k-- {
		bi := -1
		var bc float64
		for i := range h.gens {
			x := &h.gens[i]
			// (An offering with no room now stays a candidate: others may
			// free some later.)
			for int(x.ptr) < len(x.g.fin) && n.s.capOf(x.g.fin[x.ptr]) <= 0 {
				x.ptr++
			}
			if int(x.ptr) == len(x.g.fin) {
				continue
			}
			o := x.g.fin[x.ptr]
			c := s.base[o] + x.add
			if h.bestU >= 0 && c >= h.bestUCost {
				continue
			}
			if bi < 0 || c < bc || (c == bc && s.rank[o] < s.rank[h.gens[bi].g.fin[h.gens[bi].ptr]]) {
				bi, bc = i, c
			}
		}
		if bi < 0 {
			h.more = false
			break
		}
		x := &h.gens[bi]
		n.noteCand(h, x.g.fin[x.ptr])
		h.cands = append(h.cands, hcand{off: x.g.fin[x.ptr], cost: bc})
		x.ptr++
		got = true
	}
	return got
}

func (n *gnet) onodeFor(o int32) int32 {
	if v := n.onode[o]; v >= 0 {
		return v
	}
	v := n.node(1)
	n.g.index(v)
	n.onode[o] = v
	n.offAt[v] = o
	to := n.entry(o)
	n.oarc[o] = n.g.addArc(v, to, n.avail(o), 0)
	n.g.pi[v] = n.g.pi[to]
	return v
}

func (n *gnet) addArc(h *ghub, o int32, cost float64) int32 {
	v := n.onodeFor(o)
	e := n.g.addArc(h.node, v, h.thr, toInt(cost))
	n.gd[h.gd].arcs = append(n.gd[h.gd].arcs, garc{e, o})
	h.added = append(h.added, o)
	return e
}

func (n *gnet) addCand(h *ghub, i int) int32 {
	c := &h.cands[i]
	c.added = true
	return n.addArc(h, c.off, c.cost)
}

// initPotentials for the zero flow: hubs 0, an offering node the least cost of
// an arc into it, T the least cost of reaching it.
func (n *gnet) initPotentials() {
	g := &n.g
	const unset = int64(1) << 62
	for v := range g.pi {
		g.pi[v] = 0
		if n.kind[v] != 0 {
			g.pi[v] = unset
		}
	}
	for e := int32(0); int(e) < len(g.to); e += 2 {
		if v := g.to[e]; n.kind[v] == 1 && g.cost[e] < g.pi[v] {
			g.pi[v] = g.cost[e]
		}
	}
	// Then the quota nodes (regions', then clouds'), then T: the least of
	// tail potential plus cost over the arcs into them.
	into := func(want func(v int32) bool) {
		for e := int32(0); int(e) < len(g.to); e += 2 {
			if v := g.to[e]; want(v) {
				if c := g.pi[g.from(e)] + g.cost[e]; c < g.pi[v] {
					g.pi[v] = c
				}
			}
		}
	}
	if len(n.qnode) > 0 {
		into(func(v int32) bool { q := n.quotaAt(v); return q >= 0 && n.s.quotas[q].region >= 0 })
		into(func(v int32) bool { q := n.quotaAt(v); return q >= 0 && n.s.quotas[q].region < 0 })
	}
	into(func(v int32) bool { return v == n.T })
	// A quota node nothing reaches yet: as low as its arc on allows.
	for q := range n.qnode {
		if v := n.qnode[q]; g.pi[v] >= unset {
			g.pi[v] = g.pi[g.to[n.qarc[q]]]
		}
	}
}

// normalize lowers the potential of every unused offering node with free
// capacity to that of T (allowed: its arc to T has residual capacity, so its
// potential is at least T's, and no flow pins it from below), so that pricing
// can compare candidates in cost order.
func (n *gnet) normalize() {
	g := &n.g
	// Quota nodes first (a cloud's before its regions'), the same way: one
	// no flow goes through may go down to the node its arc leads to.
	for q, e := range n.qarc {
		if g.flow(e) == 0 && g.rcap[e] > 0 {
			g.pi[n.qnode[q]] = g.pi[g.to[e]]
		}
	}
	fix := func(o int32) {
		if v := n.onode[o]; v >= 0 && g.flow(n.oarc[o]) == 0 && g.rcap[n.oarc[o]] > 0 {
			g.pi[v] = g.pi[g.to[n.oarc[o]]]
		}
	}
	if !n.started {
		n.started = true
		for o := range n.onode {
			fix(int32(o))
		}
	}
	for _, o := range n.oDirty {
		fix(o)
	}
	n.oDirty = n.oDirty[:0]
}

// saturate pushes h.thr units on the new arc e (negative reduced cost) and
// sends what it can straight back along zero-reduced-cost paths: into T,
// and back to h through the arcs h already uses. What is left is for run.
func (n *gnet) saturate(h *ghub, e int32) {
	g := &n.g
	g.push(e, h.thr)
	v := g.to[e]
	out := n.chain(n.offAt[v])
	if out.n == 1 && len(n.qnode) == 0 {
		n.saturatePlain(h, e, v, out.a[0])
		return
	}
	// room is what v can still send to T along its arcs at zero reduced cost.
	room := func() int64 {
		r := capInf
		for _, x := range out.list() {
			if g.reduced(x) != 0 {
				return 0
			}
			r = min(r, g.rcap[x])
		}
		return r
	}
	for a := g.head[h.node]; a >= 0 && g.excess[v] > 0; a = g.next[a] {
		r := room()
		if r <= 0 {
			break
		}
		if a&1 != 0 || a == e || g.flow(a) == 0 || g.reduced(a) != 0 {
			continue
		}
		w := g.to[a]
		var back arcs // w's arcs to T, when h's arc goes to an offering
		if w != n.T {
			if n.kind[w] != 1 {
				continue
			}
			back = n.chain(n.offAt[w])
		}
		d := min(g.excess[v], r, g.flow(a))
		zero := true
		for _, x := range back.list() {
			d = min(d, g.flow(x))
			zero = zero && g.reduced(x) == 0
		}
		if d <= 0 || !zero {
			continue
		}
		for _, x := range out.list() {
			g.push(x, d)
		}
		for _, x := range back.list() {
			g.push(x^1, d)
		}
		g.push(a^1, d)
	}
}

// saturatePlain is saturate without quotas: v's arc oa leads to T.
func (n *gnet) saturatePlain(h *ghub, e, v, oa int32) {
	g := &n.g
	for a := g.head[h.node]; a >= 0 && g.excess[v] > 0 && g.rcap[oa] > 0 && g.reduced(oa) == 0; a = g.next[a] {
		if a&1 != 0 || a == e || g.flow(a) == 0 || g.reduced(a) != 0 {
			continue
		}
		w := g.to[a]
		back := int32(-1) // w's arc to T, when h's arc goes to an offering
		if w != n.T {
			if n.kind[w] != 1 {
				continue
			}
			back = n.oarc[n.offAt[w]]
			if g.reduced(back) != 0 {
				continue
			}
		}
		d := min(g.excess[v], g.rcap[oa], g.flow(a))
		if back >= 0 {
			d = min(d, g.flow(back))
		}
		if d <= 0 {
			continue
		}
		g.push(oa, d)
		if back >= 0 {
			g.push(back^1, d)
		}
		g.push(a^1, d)
	}
}

// price adds the arcs of h with a negative reduced cost, saturated; it
// reports whether it added any.
func (n *gnet) price(h *ghub, sat []int32) bool {
	g := &n.g
	changed := false
	piH, piT := g.pi[h.node], g.pi[n.T]
	// Per round, new arcs only up to what the hub can send: more would
	// only push flow back and forth.
	var room int64
	for i := 0; room < h.thr; i++ {
		if i == len(h.cands) && !n.gen(h, 16) {
			break
		}
		c := &h.cands[i]
		if c.added {
			continue
		}
		v := n.onode[c.off]
		if v < 0 && n.avail(c.off) <= 0 {
			continue // no room now (setAvail prices h again when there is)
		}
		piO, saturated := g.pi[n.entry(c.off)], false
		if v >= 0 {
			piO = g.pi[v]
			saturated = g.rcap[n.oarc[c.off]] == 0
		}
		if toInt(c.cost)+piH-piO < 0 {
			room += n.avail(h.cands[i].off)
			n.saturate(h, n.addCand(h, i))
			changed = true
			continue
		}
		// Every potential is at most T's once the unused nodes are
		// normalized, so no later (dearer) candidate can do better than
		// one at T's.
		if !saturated && piO >= piT {
			break
		}
	}
	for _, o := range sat {
		if !n.inScope(h, o) || slices.Contains(h.added, o) {
			continue
		}
		c := n.costFor(h, o)
		if h.bestU >= 0 && c >= h.bestUCost {
			continue
		}
		if toInt(c)+piH-g.pi[n.onode[o]] < 0 {
			for i := range h.cands {
				if h.cands[i].off == o {
					h.cands[i].added = true
				}
			}
			n.saturate(h, n.addArc(h, o, c))
			changed = true
		}
	}
	return changed
}
