package placement

// A small min-cost-flow engine: successive shortest paths with node
// potentials (Dijkstra on reduced costs), started from any node with excess
// and stopped at the first node with a deficit. Potentials are updated only on
// the nodes Dijkstra settled (Johnson's update shifted by the target's
// distance), so an augmentation costs only the part of the network it explores:
// when demands do not compete for an offering, placing one never looks at the
// others. Costs and capacities are int64; the invariant is that every residual
// arc has a reduced cost cost(u,v) + pi(u) - pi(v) >= 0.

const capInf = int64(1) << 52

type mcf struct {
	head, last []int32 // per node: first and last arc (adjacency in insertion order)
	next, to   []int32 // per arc; arc e^1 is the reverse of arc e
	rcap, cost []int64 // per arc: residual capacity and cost
	pi, excess []int64 // per node
	total      int64   // cost of the current flow
	work       int64   // nodes settled so far, a deterministic measure of effort

	// Dijkstra scratch.
	dist       []int64
	seen, done []uint32
	pred       []int32
	stamp      uint32
	heap       []hitem
	settled    []int32
	// dirty collects the nodes whose potential went down (a pruned arc
	// out of them may now have a negative reduced cost); the owner clears it.
	dirty []int32

	// An indexed node (the sink, the offering nodes: many arcs in, few with
	// flow) keeps the arcs into it that carry flow in inflow (their reverses
	// are its residual arcs back), and its adjacency holds only its own out
	// arcs, so that Dijkstra settling it scans what it can use.
	indexed []bool
	inflow  [][]int32
	ipos    []int32 // per arc pair: index in its head's inflow, or -1
}

// index makes v an indexed node; arcs into it must come after.
func (g *mcf) index(v int32) {
	g.indexed[v] = true
}

// touch keeps inflow right after the flow on arc e (or its pair) changed.
func (g *mcf) touch(e int32) {
	p := e &^ 1
	v := g.to[p]
	if !g.indexed[v] {
		return
	}
	in := g.ipos[p/2] >= 0
	if has := g.rcap[p^1] > 0; has && !in {
		g.ipos[p/2] = int32(len(g.inflow[v]))
		g.inflow[v] = append(g.inflow[v], p)
	} else if !has && in {
		l := g.inflow[v]
		i := g.ipos[p/2]
		last := l[len(l)-1]
		l[i] = last
		g.ipos[last/2] = i
		g.inflow[v] = l[:len(l)-1]
		g.ipos[p/2] = -1
	}
}

type hitem struct {
	d int64
	v int32
}

func (g *mcf) reset() {
	g.head, g.last = g.head[:0], g.last[:0]
	g.next, g.to = g.next[:0], g.to[:0]
	g.rcap, g.cost = g.rcap[:0], g.cost[:0]
	g.pi, g.excess = g.pi[:0], g.excess[:0]
	g.total = 0
	g.dist, g.seen, g.done, g.pred = g.dist[:0], g.seen[:0], g.done[:0], g.pred[:0]
	g.stamp = 0
	g.dirty = g.dirty[:0]
	g.indexed, g.inflow, g.ipos = g.indexed[:0], g.inflow[:0], g.ipos[:0]
}

func (g *mcf) nodes() int { return len(g.head) }

func (g *mcf) addNode() int32 {
	g.head = append(g.head, -1)
	g.last = append(g.last, -1)
	g.pi = append(g.pi, 0)
	g.excess = append(g.excess, 0)
	g.dist = append(g.dist, 0)
	g.seen = append(g.seen, 0)
	g.done = append(g.done, 0)
	g.pred = append(g.pred, -1)
	g.indexed = append(g.indexed, false)
	g.inflow = append(g.inflow, nil)
	return int32(len(g.head) - 1)
}

// addArc adds u->v with capacity c and cost w and returns its id; id^1 is the
// reverse arc.
func (g *mcf) addArc(u, v int32, c, w int64) int32 {
	e := int32(len(g.to))
	g.to = append(g.to, v, u)
	g.rcap = append(g.rcap, c, 0)
	g.cost = append(g.cost, w, -w)
	g.next = append(g.next, -1, -1)
	g.ipos = append(g.ipos, -1)
	g.link(u, e)
	if !g.indexed[v] {
		g.link(v, e+1)
	}
	return e
}

func (g *mcf) link(u, e int32) {
	if g.last[u] < 0 {
		g.head[u] = e
	} else {
		g.next[g.last[u]] = e
	}
	g.last[u] = e
}

// flow on a forward arc (its reverse arc started with capacity 0).
func (g *mcf) flow(e int32) int64 { return g.rcap[e^1] }

func (g *mcf) from(e int32) int32 { return g.to[e^1] }

func (g *mcf) reduced(e int32) int64 { return g.cost[e] + g.pi[g.from(e)] - g.pi[g.to[e]] }

// push sends d units along arc e without keeping the balance (the caller
// adjusts excesses).
func (g *mcf) push(e int32, d int64) {
	g.total += d * g.cost[e]
	g.rcap[e] -= d
	g.rcap[e^1] += d
	g.excess[g.from(e)] -= d
	g.excess[g.to[e]] += d
	g.touch(e)
}

// initPotentials sets pi to shortest distances from the nodes with positive
// excess over the initial (acyclic) network, given in topological order.
// Nodes no such node reaches get a potential high enough for their out-arcs.
func (g *mcf) initPotentials(order []int32) {
	const unset = int64(1) << 62
	for _, v := range order {
		g.pi[v] = unset
		if g.excess[v] > 0 {
			g.pi[v] = 0
		}
	}
	hi := int64(0)
	for _, u := range order {
		pu := g.pi[u]
		if pu == unset {
			continue
		}
		if pu > hi {
			hi = pu
		}
		for e := g.head[u]; e >= 0; e = g.next[e] {
			if g.rcap[e] > 0 {
				if nd := pu + g.cost[e]; nd < g.pi[g.to[e]] {
					g.pi[g.to[e]] = nd
				}
			}
		}
	}
	// Unreached nodes: above every reached one by more than any arc cost.
	var maxc int64
	for _, c := range g.cost {
		if c > maxc {
			maxc = c
		} else if -c > maxc {
			maxc = -c
		}
	}
	for _, v := range order {
		if g.pi[v] == unset {
			g.pi[v] = hi + maxc + 1
		}
	}
}

// run routes every positive excess to deficits along shortest paths. It
// returns false if some excess cannot reach any deficit.
func (g *mcf) run() bool {
	ok := true
	for s := int32(0); int(s) < len(g.head); s++ {
		for g.excess[s] > 0 {
			if !g.augment(s) {
				ok = false
				break
			}
		}
	}
	return ok
}

func (g *mcf) augment(s int32) bool {
	g.stamp++
	if g.stamp == 0 { // wrapped: clear the marks
		clear(g.seen)
		clear(g.done)
		g.stamp = 1
	}
	st := g.stamp
	g.heap = g.heap[:0]
	g.settled = g.settled[:0]
	g.dist[s] = 0
	g.seen[s] = st
	g.hpush(hitem{0, s})
	target := int32(-1)
	for len(g.heap) > 0 {
		it := g.hpop()
		u := it.v
		if g.done[u] == st || it.d > g.dist[u] {
			continue
		}
		g.done[u] = st
		g.work++
		g.settled = append(g.settled, u)
		if g.excess[u] < 0 {
			target = u
			break
		}
		du, pu := it.d, g.pi[u]
		atDeficit := false
		for e := g.head[u]; e >= 0; e = g.next[e] {
			g.relax(e, du, pu, st)
			if v := g.to[e]; g.rcap[e] > 0 && g.excess[v] < 0 && g.dist[v] == du && g.seen[v] == st {
				atDeficit = true
			}
		}
		// A deficit at u's own distance ends the search at the next
		// settle; the arcs back into an indexed node (a sink, an offering
		// or quota node with many in flow) can only lead further.
		if g.indexed[u] && !atDeficit {
			for _, p := range g.inflow[u] {
				g.relax(p^1, du, pu, st)
			}
		}
	}
	if target < 0 {
		return false // potentials untouched stay valid
	}
	D := g.dist[target]
	pathCost := D - g.pi[s] + g.pi[target]
	low := int64(0)
	for _, v := range g.settled {
		if g.dist[v] != D {
			g.dirty = append(g.dirty, v)
		}
		g.pi[v] += g.dist[v] - D
		if g.pi[v] < low {
			low = g.pi[v]
		}
	}
	if low < -(int64(1) << 60) { // keep far from overflow; a common shift changes nothing
		for v := range g.pi {
			g.pi[v] -= low
		}
	}
	delta := g.excess[s]
	if -g.excess[target] < delta {
		delta = -g.excess[target]
	}
	for v := target; v != s; {
		e := g.pred[v]
		if g.rcap[e] < delta {
			delta = g.rcap[e]
		}
		v = g.to[e^1]
	}
	for v := target; v != s; {
		e := g.pred[v]
		g.rcap[e] -= delta
		g.rcap[e^1] += delta
		g.touch(e)
		v = g.to[e^1]
	}
	g.excess[s] -= delta
	g.excess[target] += delta
	g.total += delta * pathCost
	return true
}

// pathCost returns the cost of the cheapest residual path from s to t
// (potentials and flow unchanged), or false if there is none.
func (g *mcf) pathCost(s, t int32) (int64, bool) {
	g.stamp++
	if g.stamp == 0 {
		clear(g.seen)
		clear(g.done)
		g.stamp = 1
	}
	st := g.stamp
	g.heap = g.heap[:0]
	g.dist[s] = 0
	g.seen[s] = st
	g.hpush(hitem{0, s})
	for len(g.heap) > 0 {
		it := g.hpop()
		u := it.v
		if g.done[u] == st || it.d > g.dist[u] {
			continue
		}
		g.done[u] = st
		g.work++
		if u == t {
			return it.d - g.pi[s] + g.pi[t], true
		}
		du, pu := it.d, g.pi[u]
		for e := g.head[u]; e >= 0; e = g.next[e] {
			g.relax(e, du, pu, st)
		}
		if g.indexed[u] {
			for _, p := range g.inflow[u] {
				g.relax(p^1, du, pu, st)
			}
		}
	}
	return 0, false
}

// relax offers the residual arc e out of a node settled at distance du
// (with potential pu) to Dijkstra.
func (g *mcf) relax(e int32, du, pu int64, st uint32) {
	if g.rcap[e] == 0 {
		return
	}
	v := g.to[e]
	if g.done[v] == st {
		return
	}
	nd := du + g.cost[e] + pu - g.pi[v]
	if g.seen[v] != st || nd < g.dist[v] {
		g.seen[v] = st
		g.dist[v] = nd
		g.pred[v] = e
		g.hpush(hitem{nd, v})
	}
}

func (g *mcf) hless(a, b hitem) bool { return a.d < b.d || (a.d == b.d && a.v < b.v) }

func (g *mcf) hpush(it hitem) {
	h := append(g.heap, it)
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !g.hless(h[i], h[p]) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
	g.heap = h
}

func (g *mcf) hpop() hitem {
	h := g.heap
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h = h[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && g.hless(h[r], h[l]) {
			m = r
		}
		if !g.hless(h[m], h[i]) {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	g.heap = h
	return top
}
