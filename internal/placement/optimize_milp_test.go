package placement

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The model of the package documentation as a MILP, solved by CBC when it is
// installed (the test is skipped otherwise): the reference the optimizer is
// measured against on instances too big for exhaustive search.

type milpResult struct {
	unplaced int     // total, including rule-infeasible demands
	obj      float64 // objective (with churn constants)
	perDem   []int   // unplaced per demand
	ruleInf  []bool  // stage A
	elapsed  string  // for logs
	x        []map[int]int
}

func writeLP(p Problem, w Weights, phase2 bool, uStar int) (string, []bool, [][]int, float64) {
	var b strings.Builder
	offs := p.Offerings
	idx := map[string]int{}
	for i, o := range offs {
		idx[o.ID] = i
	}
	ruleInf := make([]bool, len(p.Demands))
	F := make([][]int, len(p.Demands))
	var obj, cons, bounds, ints []string
	constant := 0.0
	capUse := map[int][]string{}
	term := func(c float64, v string) string { return fmt.Sprintf("%+.9f %s", c, v) }
	var uVars []string
	for di, d := range p.Demands {
		r := bfRulesOf(d)
		for i, o := range offs {
			if bfFeasible(d, o) {
				F[di] = append(F[di], i)
			}
		}
		if r.R == 0 {
			continue
		}
		if stageAInfeasible(p, d, F[di]) {
			ruleInf[di] = true
			continue
		}
		cur := map[int]int{}
		curTotal := 0
		for _, c := range d.Current {
			curTotal += c.Count
			if o, ok := idx[c.OfferingID]; ok {
				cur[o] += c.Count
			}
		}
		constant += w.ChurnUSD * float64(min(curTotal, r.R))
		u := fmt.Sprintf("u_%d", di)
		uVars = append(uVars, u)
		ints = append(ints, u)
		sum := []string{u}
		perCloud := map[string][]string{}
		var od, price []string
		clouds := map[string]bool{}
		for _, o := range F[di] {
			x := fmt.Sprintf("x_%d_%d", di, o)
			ints = append(ints, x)
			sum = append(sum, x)
			if phase2 {
				obj = append(obj, term(bfCost(p, d, offs[o]), x))
			}
			perCloud[offs[o].Cloud] = append(perCloud[offs[o].Cloud], x)
			clouds[offs[o].Cloud] = true
			if !offs[o].Spot {
				od = append(od, x)
			}
			price = append(price, term(offs[o].Price, x))
			nw := "+1 " + x
			if c := cur[o]; c > 0 {
				k := fmt.Sprintf("k_%d_%d", di, o)
				ints = append(ints, k)
				bounds = append(bounds, fmt.Sprintf("0 <= %s <= %d", k, c))
				cons = append(cons, fmt.Sprintf("+1 %s -1 %s <= 0", k, x))
				if phase2 {
					obj = append(obj, term(-w.ChurnUSD, k))
				}
				nw += " -1 " + k
			}
			capUse[o] = append(capUse[o], nw)
		}
		cons = append(cons, strings.Join(sum, " + ")+fmt.Sprintf(" = %d", r.R))
		if r.M > 0 {
			for _, xs := range perCloud {
				cons = append(cons, "+1 "+strings.Join(xs, " +1 ")+fmt.Sprintf(" <= %d", r.M))
			}
		}
		if r.m >= 2 {
			var ys []string
			ci := 0
			for _, xs := range perCloud {
				y := fmt.Sprintf("y_%d_%d", di, ci)
				ci++
				ints = append(ints, y)
				bounds = append(bounds, fmt.Sprintf("0 <= %s <= 1", y))
				ys = append(ys, y)
				cons = append(cons, "+1 "+strings.Join(xs, " +1 ")+fmt.Sprintf(" -1 %s >= 0", y))
			}
			cons = append(cons, "+1 "+strings.Join(ys, " +1 ")+fmt.Sprintf(" +1 %s >= %d", u, r.m))
		}
		if r.b > 0 && len(clouds) > 0 {
			line := fmt.Sprintf("+1 %s", u)
			if len(od) > 0 {
				line += " +1 " + strings.Join(od, " +1 ")
			}
			cons = append(cons, line+fmt.Sprintf(" >= %d", r.b))
		}
		if r.budget > 0 && len(price) > 0 {
			cons = append(cons, strings.Join(price, " ")+fmt.Sprintf(" <= %.9f", r.budget))
		}
	}
	for o, terms := range capUse {
		if c := offs[o].Capacity; c >= 0 {
			cons = append(cons, strings.Join(terms, " ")+fmt.Sprintf(" <= %d", c))
		}
	}
	for _, q := range p.Quotas {
		var terms []string
		for o, ts := range capUse {
			if inQuota(q, offs[o]) {
				terms = append(terms, ts...)
			}
		}
		if len(terms) > 0 {
			cons = append(cons, strings.Join(terms, " ")+fmt.Sprintf(" <= %d", max(q.Limit, 0)))
		}
	}
	if phase2 {
		if len(uVars) > 0 {
			cons = append(cons, "+1 "+strings.Join(uVars, " +1 ")+fmt.Sprintf(" <= %d", uStar))
		}
	} else {
		for _, u := range uVars {
			obj = append(obj, "+1 "+u)
		}
	}
	b.WriteString("Minimize\n obj: ")
	if len(obj) == 0 {
		obj = []string{"0 dummy"}
	}
	b.WriteString(strings.Join(obj, "\n "))
	b.WriteString("\nSubject To\n")
	for i, c := range cons {
		fmt.Fprintf(&b, " c%d: %s\n", i, c)
	}
	b.WriteString("Bounds\n")
	for _, s := range bounds {
		fmt.Fprintf(&b, " %s\n", s)
	}
	b.WriteString("General\n")
	for _, s := range ints {
		fmt.Fprintf(&b, " %s\n", s)
	}
	b.WriteString("End\n")
	return b.String(), ruleInf, F, constant
}

// stageAInfeasible decides stage A with a small search over clouds: with
// capacity ignored only the cheapest-priced offering per cloud and purchase
// option matters.
func stageAInfeasible(p Problem, d Demand, F []int) bool {
	r := bfRulesOf(d)
	type slot struct {
		cloud string
		spot  bool
		price float64
	}
	best := map[[2]string]float64{}
	for _, o := range F {
		of := p.Offerings[o]
		k := [2]string{of.Cloud, strconv.FormatBool(of.Spot)}
		if v, ok := best[k]; !ok || of.Price < v {
			best[k] = of.Price
		}
	}
	var slots []slot
	for k, v := range best {
		slots = append(slots, slot{k[0], k[1] == "true", v})
	}
	sort.Slice(slots, func(a, b int) bool { return slots[a].price < slots[b].price })
	// Depth-first over counts per slot, with bounds on price, clouds and
	// on-demand replicas still reachable.
	n := len(slots)
	sufMin := make([]float64, n+1)
	sufMin[n] = math.Inf(1)
	for i := n - 1; i >= 0; i-- {
		sufMin[i] = min(sufMin[i+1], slots[i].price)
	}
	perCloud := map[string]int{}
	found := false
	var rec func(i, left, od int, price float64)
	rec = func(i, left, od int, price float64) {
		if found {
			return
		}
		if left == 0 {
			if len(perCloud) >= r.m && od >= r.b {
				found = true
			}
			return
		}
		if i == n || (r.budget > 0 && price+float64(left)*sufMin[i] > r.budget+1e-9) {
			return
		}
		// Clouds and on-demand slots still possible.
		seen := map[string]bool{}
		odLeft := 0
		for j := i; j < n; j++ {
			if perCloud[slots[j].cloud] == 0 {
				seen[slots[j].cloud] = true
			}
			if !slots[j].spot {
				odLeft = left
			}
		}
		if len(perCloud)+min(len(seen), left) < r.m || od+odLeft < r.b {
			return
		}
		s := slots[i]
		top := left
		if r.M > 0 {
			top = min(top, r.M-perCloud[s.cloud])
		}
		for v := top; v >= 0; v-- {
			if v > 0 {
				perCloud[s.cloud] += v
			}
			nod := od
			if !s.spot {
				nod += v
			}
			rec(i+1, left-v, nod, price+float64(v)*s.price)
			if v > 0 {
				perCloud[s.cloud] -= v
				if perCloud[s.cloud] == 0 {
					delete(perCloud, s.cloud)
				}
			}
		}
	}
	rec(0, r.R, 0, 0)
	return !found
}

func runCBC(t *testing.T, lp string) (map[string]float64, bool) {
	dir := t.TempDir()
	in := filepath.Join(dir, "m.lp")
	out := filepath.Join(dir, "m.sol")
	if err := os.WriteFile(in, []byte(lp), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("cbc", in, "ratio", "0", "allow", "1e-9", "integerT", "1e-9", "sec", "120", "solve", "solu", out)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Run(); err != nil {
		t.Fatalf("cbc: %v\n%s", err, stdout.String())
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vals := map[string]float64{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	optimal := false
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "Optimal") {
			optimal = true
			continue
		}
		fs := strings.Fields(line)
		if len(fs) >= 3 {
			if fs[0] == "**" {
				fs = fs[1:]
			}
			v, err := strconv.ParseFloat(fs[2], 64)
			if err == nil {
				vals[fs[1]] = v
			}
		}
	}
	return vals, optimal
}

func solveMILP(t *testing.T, p Problem) milpResult {
	w := bfWeights(p)
	lp1, ruleInf, F, _ := writeLP(p, w, false, 0)
	v1, ok1 := runCBC(t, lp1)
	if !ok1 {
		t.Fatalf("cbc phase 1 not optimal")
	}
	res := milpResult{ruleInf: ruleInf, perDem: make([]int, len(p.Demands)), x: make([]map[int]int, len(p.Demands))}
	u := 0
	for di, d := range p.Demands {
		if ruleInf[di] {
			res.unplaced += max(d.Replicas, 0)
			res.perDem[di] = max(d.Replicas, 0)
			continue
		}
		n := int(math.Round(v1[fmt.Sprintf("u_%d", di)]))
		u += n
	}
	lp2, _, _, constant := writeLP(p, w, true, u)
	v2, ok2 := runCBC(t, lp2)
	if !ok2 {
		t.Fatalf("cbc phase 2 not optimal")
	}
	obj := constant
	idx := map[string]int{}
	for i, o := range p.Offerings {
		idx[o.ID] = i
	}
	for di, d := range p.Demands {
		if ruleInf[di] || d.Replicas <= 0 {
			continue
		}
		n := int(math.Round(v2[fmt.Sprintf("u_%d", di)]))
		res.perDem[di] = n
		res.unplaced += n
		res.x[di] = map[int]int{}
		for _, o := range F[di] {
			x := int(math.Round(v2[fmt.Sprintf("x_%d_%d", di, o)]))
			if x > 0 {
				res.x[di][o] = x
				obj += float64(x) * bfCost(p, d, p.Offerings[o])
			}
			if k := v2[fmt.Sprintf("k_%d_%d", di, o)]; k > 0 {
				obj -= w.ChurnUSD * math.Round(k)
			}
		}
	}
	res.obj = obj
	return res
}

func TestOptimizeMatchesMILP(t *testing.T) {
	if _, err := exec.LookPath("cbc"); err != nil {
		t.Skip("cbc not installed")
	}
	if os.Getenv("ALOFT_MILP") == "" {
		t.Skip("set ALOFT_MILP=N to compare N instances against CBC")
	}
	n, _ := strconv.Atoi(os.Getenv("ALOFT_MILP"))
	seed, _ := strconv.Atoi(os.Getenv("ALOFT_MILP_SEED"))
	rng := rand.New(rand.NewPCG(uint64(seed), 99))
	var sum, worst float64
	agree := 0
	for i := range n {
		nd := 10 + rng.IntN(191)
		no := 50 + rng.IntN(1951)
		if os.Getenv("ALOFT_MILP_SMALL") != "" {
			nd, no = 10+rng.IntN(40), 50+rng.IntN(200)
		}
		p := genProblem(rng, nd, no, 0.2+0.6*rng.Float64(), 0.3+1.5*rng.Float64())
		plan := Optimize(p)
		obj, u := checkPlan(t, p, plan)
		ref := solveMILP(t, p)
		same := u == ref.unplaced
		perDem := true
		for di, dp := range plan.Deployments {
			if dp.Unplaced != ref.perDem[di] {
				perDem = false
			}
			got := dp.Infeasible != "" && !shortOfRoom(dp)
			if got != ref.ruleInf[di] {
				t.Errorf("instance %d: %s rule-infeasible=%v (%q), MILP %v", i, dp.Deployment, got, dp.Infeasible, ref.ruleInf[di])
			}
		}
		if perDem {
			agree++
		}
		gap := 0.0
		if same {
			gap = (obj - ref.obj) / math.Abs(ref.obj)
		}
		sum += gap
		worst = max(worst, gap)
		t.Logf("instance %d (%d deployments, %d offerings): unplaced %d/%d (per deployment equal: %v) objective %.4f vs %.4f gap %.4f%%",
			i, nd, no, u, ref.unplaced, perDem, obj, ref.obj, 100*gap)
		if !same {
			t.Errorf("instance %d: unplaced %d, MILP %d", i, u, ref.unplaced)
		}
		if os.Getenv("ALOFT_MILP_DIFF") != "" && (gap > 1e-4 || !same) {
			w := bfWeights(p)
			idx := map[string]int{}
			for i, o := range p.Offerings {
				idx[o.ID] = i
			}
			for di, dp := range plan.Deployments {
				d := p.Demands[di]
				var ours, theirs float64
				ox := map[int]int{}
				for _, a := range dp.Placements {
					ox[idx[a.OfferingID]] = a.Replicas
				}
				diff := dp.Unplaced != ref.perDem[di]
				for o, n := range ox {
					if ref.x[di][o] != n {
						diff = true
					}
				}
				for o, n := range ref.x[di] {
					theirs += float64(n) * bfCost(p, d, p.Offerings[o])
					if ox[o] != n {
						diff = true
					}
				}
				for o, n := range ox {
					ours += float64(n) * bfCost(p, d, p.Offerings[o])
				}
				_ = w
				if diff {
					pl := d.Placement
					t.Logf("  %s R=%d u=%d/%d spread=%+v spot=%+v budget=%.2f cost %.3f vs %.3f ours=%v milp=%v", d.Deployment, d.Replicas, dp.Unplaced, ref.perDem[di], pl.Spread, pl.Spot, pl.Budget, ours, theirs, ox, ref.x[di])
				}
			}
		}
		if gap < -1e-6 {
			t.Errorf("instance %d: objective below the MILP optimum", i)
		}
	}
	t.Logf("%d instances: mean gap %.4f%%, max %.4f%%, unplaced equal per deployment in %d", n, 100*sum/float64(n), 100*worst, agree)
}
