package main

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
)

// The exact model as a MILP in CPLEX LP format (the model is stated in
// README.md and in the contract at the top of internal/placement/optimize.go).
// For each demand d in the model and each eligible offering o:
//
//	n_d_o  integer >= 0   new instances of o for d
//	k_d_o  integer in [0, min(current, Replicas)]   current replicas kept on o
//	                        (only where d has current replicas on o)
//	y_d_c  binary         d uses cloud c (only when minClouds >= 2)
//	m_d    >= 0           current replicas moved (only when d has current)
//	u_d    integer >= 0   unplaced replicas (Slack models only)
//	z_d    binary         d is placed (Rules model only)
//
// x_d_o = n_d_o + k_d_o; m = min(spread.minClouds, Replicas); b =
// min(onDemandBase, Replicas) when spot is allowed, else 0.
//
//	count:        sum_o x_d_o + u_d = Replicas         (Rules: = Replicas z_d)
//	capacity:     sum_d n_d_o <= Capacity              (Capacity >= 0; not in Rules)
//	maxPerCloud:  sum_{o in c} x_d_o <= maxPerCloud
//	minClouds:    y_d_c <= sum_{o in c} x_d_o;  sum_c y_d_c + u_d >= m   (Rules: >= m z_d)
//	onDemandBase: sum_{o on-demand} x_d_o + u_d >= b   (Rules: >= b z_d)
//	budget:       sum_o price_o x_d_o <= budget
//	churn:        m_d + sum_o k_d_o >= min(current, Replicas)
//	quota:        sum_d sum_{o in scope} n_d_o <= max(Limit, 0)   (not in Rules)
//
// Cost model (u_d = 0):  minimize sum c(d,o) x_d_o + ChurnUSD sum m_d
// Rules model:           minimize -sum z_d, capacity ignored (the demands are
// independent then, so the unplaced ones are exactly those the rules rule out)
// Slack phase 1:         minimize sum u_d
// Slack phase 2:         sum u_d = U* (phase 1's optimum), minimize the cost

// lpSpec selects what to write.
type lpSpec struct {
	Demands []int // demand indices in the model
	// Rules writes the rules model (capacity ignored, z_d).
	Rules bool
	// Slack adds u_d. UnplacedTotal < 0 minimizes sum u_d (phase 1);
	// otherwise sum u_d is fixed to it and the cost is minimized (phase 2).
	Slack         bool
	UnplacedTotal int
}

// lpVars maps LP column names back to the placement.
type lpVars struct {
	x map[string]lpCol // n_/k_ column -> demand, offering
	z map[string]int   // z_ column -> demand
	u map[string]int   // u_ column -> demand
}

type lpCol struct{ d, o int }

// lpWriter writes terms with line breaks every few terms (LP lines have
// length limits in some readers).
type lpWriter struct {
	w     *bufio.Writer
	terms int
	err   error
}

func (lw *lpWriter) str(s string) {
	if lw.err == nil {
		_, lw.err = lw.w.WriteString(s)
	}
}

func num(v float64) string { return strconv.FormatFloat(v, 'g', 15, 64) }

// term writes " + coef name" (or " - ...").
func (lw *lpWriter) term(coef float64, name string) {
	if lw.terms > 0 && lw.terms%8 == 0 {
		lw.str("\n   ")
	}
	lw.terms++
	if coef < 0 {
		lw.str(" - ")
		coef = -coef
	} else {
		lw.str(" + ")
	}
	if coef != 1 {
		lw.str(num(coef))
		lw.str(" ")
	}
	lw.str(name)
}

func (lw *lpWriter) begin(label string) {
	lw.terms = 0
	lw.str(" ")
	lw.str(label)
	lw.str(":")
}

func (lw *lpWriter) end(sense string, rhs float64) {
	lw.str(" ")
	lw.str(sense)
	lw.str(" ")
	lw.str(num(rhs))
	lw.str("\n")
}

func nName(d, o int) string { return "n" + strconv.Itoa(d) + "_" + strconv.Itoa(o) }
func kName(d, o int) string { return "k" + strconv.Itoa(d) + "_" + strconv.Itoa(o) }
func yName(d, c int) string { return "y" + strconv.Itoa(d) + "_" + strconv.Itoa(c) }
func mName(d int) string    { return "m" + strconv.Itoa(d) }
func zName(d int) string    { return "z" + strconv.Itoa(d) }
func uName(d int) string    { return "u" + strconv.Itoa(d) }

// writeLP writes the model of spec to w. Every demand in spec must have at
// least one eligible offering (a demand without is infeasible on its face).
func writeLP(w io.Writer, m *model, spec lpSpec) (*lpVars, error) {
	lw := &lpWriter{w: bufio.NewWriterSize(w, 1<<16)}
	vars := &lpVars{x: map[string]lpCol{}, z: map[string]int{}, u: map[string]int{}}
	p := m.p
	kept := func(di, oi int) int { // upper bound of k_d_o, 0 if no column
		return min(m.dem[di].current[oi], p.Demands[di].Replicas)
	}
	for _, di := range spec.Demands {
		if len(m.dem[di].elig) == 0 {
			return nil, fmt.Errorf("demand %d has no eligible offering", di)
		}
	}

	// Objective.
	lw.str("\\ aloft bench/placement\nMinimize\n")
	lw.begin("obj")
	phase1 := spec.Slack && spec.UnplacedTotal < 0
	for _, di := range spec.Demands {
		dm := &m.dem[di]
		if spec.Rules {
			lw.term(-1, zName(di))
			continue
		}
		if phase1 {
			lw.term(1, uName(di))
			continue
		}
		for _, oi := range dm.elig {
			lw.term(dm.cost[oi], nName(di, oi))
			if kept(di, oi) > 0 {
				lw.term(dm.cost[oi], kName(di, oi))
			}
		}
		if dm.curAll > 0 {
			lw.term(m.w.ChurnUSD, mName(di))
		}
	}
	if lw.terms == 0 {
		lw.str(" 0 dummy")
	}
	lw.str("\nSubject To\n")

	xTerms := func(di int, keep func(oi int) bool, coef func(oi int) float64) {
		for _, oi := range m.dem[di].elig {
			if !keep(oi) {
				continue
			}
			c := coef(oi)
			lw.term(c, nName(di, oi))
			if kept(di, oi) > 0 {
				lw.term(c, kName(di, oi))
			}
		}
	}
	all := func(int) bool { return true }
	one := func(int) float64 { return 1 }
	cloudIdx := map[string]int{}
	for i, c := range catalogClouds {
		cloudIdx[c] = i
	}
	cidx := func(c string) int {
		if i, ok := cloudIdx[c]; ok {
			return i
		}
		cloudIdx[c] = len(cloudIdx)
		return cloudIdx[c]
	}
	var binaries []string
	for _, di := range spec.Demands {
		d := &p.Demands[di]
		dm := &m.dem[di]
		pl := &d.Placement
		// count
		lw.begin("cnt" + strconv.Itoa(di))
		xTerms(di, all, one)
		switch {
		case spec.Rules:
			lw.term(-float64(d.Replicas), zName(di))
			lw.end("=", 0)
		case spec.Slack:
			lw.term(1, uName(di))
			lw.end("=", float64(d.Replicas))
		default:
			lw.end("=", float64(d.Replicas))
		}
		// maxPerCloud
		if mpc := pl.Spread.MaxPerCloud; mpc > 0 && mpc < d.Replicas {
			for _, c := range dm.clouds {
				lw.begin("mpc" + strconv.Itoa(di) + "_" + strconv.Itoa(cidx(c)))
				xTerms(di, func(oi int) bool { return p.Offerings[oi].Cloud == c }, one)
				lw.end("<=", float64(mpc))
			}
		}
		// minClouds
		if mc := minClouds(d); mc >= 2 {
			lw.begin("mcl" + strconv.Itoa(di))
			for _, c := range dm.clouds {
				lw.term(1, yName(di, cidx(c)))
			}
			switch {
			case spec.Rules:
				lw.term(-float64(mc), zName(di))
				lw.end(">=", 0)
			case spec.Slack:
				lw.term(1, uName(di))
				lw.end(">=", float64(mc))
			default:
				lw.end(">=", float64(mc))
			}
			for _, c := range dm.clouds {
				y := yName(di, cidx(c))
				binaries = append(binaries, y)
				lw.begin("use" + strconv.Itoa(di) + "_" + strconv.Itoa(cidx(c)))
				lw.term(1, y)
				xTerms(di, func(oi int) bool { return p.Offerings[oi].Cloud == c }, func(int) float64 { return -1 })
				lw.end("<=", 0)
			}
		}
		// onDemandBase
		if b := onDemandBase(d); b > 0 {
			lw.begin("odb" + strconv.Itoa(di))
			xTerms(di, func(oi int) bool { return !p.Offerings[oi].Spot }, one)
			switch {
			case spec.Rules:
				lw.term(-float64(b), zName(di))
				lw.end(">=", 0)
			case spec.Slack:
				lw.term(1, uName(di))
				lw.end(">=", float64(b))
			default:
				lw.end(">=", float64(b))
			}
		}
		// budget
		if pl.Budget > 0 {
			lw.begin("bud" + strconv.Itoa(di))
			xTerms(di, all, func(oi int) float64 { return p.Offerings[oi].Price })
			lw.end("<=", pl.Budget)
		}
		// churn
		if dm.curAll > 0 && !spec.Rules && !phase1 {
			lw.begin("chu" + strconv.Itoa(di))
			lw.term(1, mName(di))
			for _, oi := range dm.elig {
				if kept(di, oi) > 0 {
					lw.term(1, kName(di, oi))
				}
			}
			lw.end(">=", float64(min(dm.curAll, d.Replicas)))
		}
		if spec.Rules {
			binaries = append(binaries, zName(di))
			vars.z[zName(di)] = di
		}
	}
	// total unplaced (phase 2)
	if spec.Slack && !phase1 {
		lw.begin("unplaced")
		for _, di := range spec.Demands {
			lw.term(1, uName(di))
		}
		lw.end("=", float64(spec.UnplacedTotal))
	}
	// capacity
	users := map[int][]int{}
	for _, di := range spec.Demands {
		if spec.Rules {
			break
		}
		for _, oi := range m.dem[di].elig {
			if p.Offerings[oi].Capacity >= 0 {
				users[oi] = append(users[oi], di)
			}
		}
	}
	limited := func(oi int) bool { return !spec.Rules && p.Offerings[oi].Capacity >= 0 }
	capOf := func(oi int) int { return max(0, p.Offerings[oi].Capacity) }
	for oi := range p.Offerings {
		us := users[oi]
		if len(us) < 2 { // a single user: a bound suffices
			continue
		}
		lw.begin("cap" + strconv.Itoa(oi))
		for _, di := range us {
			lw.term(1, nName(di, oi))
		}
		lw.end("<=", float64(capOf(oi)))
	}

	// quotas (a row per quota some demand's eligible offering is under)
	for qi, q := range p.Quotas {
		if spec.Rules {
			break
		}
		var cols []string
		for _, di := range spec.Demands {
			for _, oi := range m.dem[di].elig {
				if inQuota(&q, &p.Offerings[oi]) {
					cols = append(cols, nName(di, oi))
				}
			}
		}
		if len(cols) == 0 {
			continue
		}
		lw.begin("quo" + strconv.Itoa(qi))
		for _, c := range cols {
			lw.term(1, c)
		}
		lw.end("<=", float64(max(q.Limit, 0)))
	}

	// Bounds and integrality.
	lw.str("Bounds\n")
	var generals []string
	for _, di := range spec.Demands {
		d := &p.Demands[di]
		dm := &m.dem[di]
		for _, oi := range dm.elig {
			ub := d.Replicas
			if limited(oi) {
				ub = min(ub, capOf(oi))
			}
			n := nName(di, oi)
			vars.x[n] = lpCol{di, oi}
			generals = append(generals, n)
			lw.str(" 0 <= " + n + " <= " + strconv.Itoa(ub) + "\n")
			if kb := kept(di, oi); kb > 0 {
				k := kName(di, oi)
				vars.x[k] = lpCol{di, oi}
				generals = append(generals, k)
				lw.str(" 0 <= " + k + " <= " + strconv.Itoa(kb) + "\n")
			}
		}
		if dm.curAll > 0 && !spec.Rules && !phase1 {
			lw.str(" " + mName(di) + " >= 0\n")
		}
		if spec.Slack {
			u := uName(di)
			vars.u[u] = di
			generals = append(generals, u)
			lw.str(" 0 <= " + u + " <= " + strconv.Itoa(d.Replicas) + "\n")
		}
	}
	lw.str("General\n")
	for i, g := range generals {
		lw.str(" " + g)
		if i%10 == 9 {
			lw.str("\n")
		}
	}
	lw.str("\nBinary\n")
	for i, b := range binaries {
		lw.str(" " + b)
		if i%10 == 9 {
			lw.str("\n")
		}
	}
	lw.str("\nEnd\n")
	if lw.err == nil {
		lw.err = lw.w.Flush()
	}
	return vars, lw.err
}
