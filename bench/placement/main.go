// Command placement measures the placement optimizer (placement.Optimize)
// against an exact MILP solve (CBC, or GLPK's glpsol) of the same model:
// objective gap and infeasibility agreement on seeded instances drawn from
// real cloud catalogs, time against the solver, a 10,000-deployment speed
// run, and re-planning after a region is lost. See README.md.
//
//	go run ./bench/placement [-instances 200] [-seed 1] [-timeout 60s] [-o json]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

type config struct {
	Instances   int    `json:"instances"`
	Seed        uint64 `json:"seed"`
	Timeout     string `json:"solverTimeLimit"`
	Deployments string `json:"deployments"`
	Offerings   string `json:"offerings"`
	Solver      string `json:"solver"`
	Catalog     string `json:"catalog"`
}

type report struct {
	Config    config        `json:"config"`
	Summary   summary       `json:"summary"`
	Speed     *speedResult  `json:"speed,omitempty"`
	Churn     *churnResult  `json:"churn,omitempty"`
	Instances []*comparison `json:"instances"`
	WallSec   float64       `json:"wallSeconds"`
}

func main() {
	instances := flag.Int("instances", 200, "seeded instances to compare")
	seed := flag.Uint64("seed", 1, "seed of the instance family")
	timeout := flag.Duration("timeout", 60*time.Second, "solver time limit per MILP solve")
	output := flag.String("o", "table", "table or json")
	catalogDir := flag.String("catalog", "internal/catalog/testdata", "directory with the SkyPilot catalogs aws.csv, azure.csv, gcp.csv, lambda.csv, runpod.csv")
	deployments := flag.String("deployments", "10-200", "deployments per instance, MIN-MAX")
	offerings := flag.String("offerings", "50-2000", "offerings per instance, MIN-MAX")
	solverName := flag.String("solver", "", "cbc or glpsol (default: cbc if installed, else glpsol)")
	keep := flag.String("keep", "", "keep the LP, solution and log files in this directory")
	only := flag.Int("only", -1, "run only this instance index (0-based)")
	sections := flag.String("sections", "compare,speed,churn", "which sections to run")
	flag.Parse()

	if err := run(*instances, *seed, *timeout, *output, *catalogDir, *deployments, *offerings, *solverName, *keep, *only, *sections); err != nil {
		fmt.Fprintln(os.Stderr, "bench/placement:", err)
		os.Exit(1)
	}
}

func parseRange(s string) (lo, hi int, err error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		b = a
	}
	if lo, err = strconv.Atoi(a); err == nil {
		hi, err = strconv.Atoi(b)
	}
	if err != nil || lo < 1 || hi < lo {
		return 0, 0, fmt.Errorf("bad range %q: want MIN-MAX", s)
	}
	return lo, hi, nil
}

func run(instances int, seed uint64, timeout time.Duration, output, catalogDir, deployments, offerings, solverName, keep string, only int, sections string) error {
	if output != "table" && output != "json" {
		return fmt.Errorf("-o %q: want table or json", output)
	}
	began := time.Now()
	dlo, dhi, err := parseRange(deployments)
	if err != nil {
		return err
	}
	olo, ohi, err := parseRange(offerings)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, s := range strings.Split(sections, ",") {
		want[strings.TrimSpace(s)] = true
	}
	pool, err := loadPool(catalogDir)
	if err != nil {
		return err
	}
	s, err := findSolver(solverName)
	if err != nil {
		return err
	}
	s.Timeout = timeout
	if keep != "" {
		if err := os.MkdirAll(keep, 0o755); err != nil {
			return err
		}
		s.Dir, s.Keep = keep, true
	} else {
		dir, err := os.MkdirTemp("", "aloft-bench-placement-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		s.Dir = dir
	}
	progress("catalog: %d offerings from %s; solver %s (%s), time limit %s", len(pool), catalogDir, s.Version, s.Path, timeout)

	rep := &report{Config: config{Instances: instances, Seed: seed, Timeout: timeout.String(), Deployments: deployments, Offerings: offerings, Solver: s.Version, Catalog: catalogDir}}
	cfg := genConfig{MinDeployments: dlo, MaxDeployments: dhi, MinOfferings: olo, MaxOfferings: ohi, Current: true}
	if want["compare"] {
		for i := range instances {
			if only >= 0 && i != only {
				continue
			}
			p := genInstance(pool, seed, i, cfg)
			c := compare(s, p, fmt.Sprintf("i%03d", i))
			c.Index = i
			rep.Instances = append(rep.Instances, c)
			progress("instance %d (%d/%d): %d deployments, %d offerings, %d eligible pairs: optimizer %s; %s: %d solves, %s; %s%s%s",
				i, i+1, instances, c.Deployments, c.Offerings, c.Pairs, fmtDur(c.OptimizerSec), s.Name, c.Solves, fmtDur(c.SolverAllSec), c.Status,
				gapText(c), problemText(c))
		}
		rep.Summary = summarize(rep.Instances)
	}
	if want["speed"] {
		progress("speed: generating 10,000 deployments / 100,000 replicas over all %d offerings", len(pool))
		rep.Speed = speedRun(pool, seed)
		progress("speed: %s, peak heap %.0f MiB", fmtDur(rep.Speed.WallSec), rep.Speed.PeakHeapMiB)
	}
	if want["churn"] {
		rep.Churn, err = churnRun(s, pool, seed)
		if err != nil {
			return err
		}
	}
	rep.WallSec = time.Since(began).Seconds()
	if output == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(jsonSafe(rep))
	}
	printTable(os.Stdout, rep)
	return nil
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func gapText(c *comparison) string {
	if math.IsNaN(c.GapPct) {
		return ""
	}
	return ", gap " + pct(c.GapPct)
}

func problemText(c *comparison) string {
	var parts []string
	if len(c.OptInfeasible) > 0 || len(c.MILPInfeasible) > 0 {
		parts = append(parts, fmt.Sprintf("infeasible: optimizer %d, MILP %d; unplaced: optimizer %d, MILP %d", len(c.OptInfeasible), len(c.MILPInfeasible), c.OptUnplaced, c.MILPUnplaced))
	}
	if c.Disagreement != "" {
		parts = append(parts, "DISAGREE: "+c.Disagreement)
	}
	if len(c.Violations) > 0 {
		parts = append(parts, fmt.Sprintf("%d VIOLATIONS, first: %s", len(c.Violations), c.Violations[0]))
	}
	if c.Err != "" {
		parts = append(parts, "ERROR: "+c.Err)
	}
	if len(parts) == 0 {
		return ""
	}
	return " [" + strings.Join(parts, "; ") + "]"
}

func fmtDur(sec float64) string {
	switch {
	case sec < 1e-3:
		return fmt.Sprintf("%.0fµs", sec*1e6)
	case sec < 1:
		return fmt.Sprintf("%.1fms", sec*1e3)
	default:
		return fmt.Sprintf("%.2fs", sec)
	}
}

// summary aggregates the comparisons.
type summary struct {
	Instances       int     `json:"instances"`
	Optimal         int     `json:"solvedOptimal"`
	TimeLimit       int     `json:"hitTimeLimit"`
	Unsolved        int     `json:"unsolved"`
	Invalid         int     `json:"invalidPlans"`
	Disagree        int     `json:"infeasibilityDisagreements"`
	Errors          int     `json:"errors"`
	GapN            int     `json:"gapInstances"`
	GapMean         float64 `json:"gapMeanPercent"`
	GapP95          float64 `json:"gapP95Percent"`
	GapMax          float64 `json:"gapMaxPercent"`
	GapMin          float64 `json:"gapMinPercent"`
	AtOptimum       int     `json:"instancesAtOptimum"` // gap < 1e-6 %
	AgreeInstances  int     `json:"infeasibilityAgreeInstances"`
	WithInfeasible  int     `json:"instancesWithInfeasibleDemands"`
	Demands         int     `json:"demands"`
	AgreeDemands    int     `json:"infeasibilityAgreeDemands"`
	SameSet         int     `json:"sameInfeasibleSetInstances"`
	OptInfeasible   int     `json:"optimizerInfeasibleDemands"`
	MILPInfeasible  int     `json:"milpInfeasibleDemands"`
	MILPRuleInf     int     `json:"milpRuleInfeasibleDemands"`
	OptUnplaced     int     `json:"optimizerUnplacedReplicas"`
	MILPUnplaced    int     `json:"milpUnplacedReplicas"`
	Violations      int     `json:"violations"`
	Notes           int     `json:"reportingNotes"`
	NonDeterm       int     `json:"nondeterministicInstances"`
	OptMeanSec      float64 `json:"optimizerMeanSeconds"`
	OptMaxSec       float64 `json:"optimizerMaxSeconds"`
	SolverMeanSec   float64 `json:"solverMeanSeconds"`
	SolverMaxSec    float64 `json:"solverMaxSeconds"`
	SolverAllMean   float64 `json:"solverAllSolvesMeanSeconds"`
	SolverAllMax    float64 `json:"solverAllSolvesMaxSeconds"`
	TimeRatio       float64 `json:"timeRatioMeans"`  // exact pipeline mean / optimizer mean
	TimeRatioMedian float64 `json:"timeRatioMedian"` // median of per-instance ratios
	TimeLimitGapMax float64 `json:"timeLimitGapVsBoundMaxPercent"`
}

func summarize(cs []*comparison) summary {
	s := summary{Instances: len(cs), GapMean: math.NaN(), GapP95: math.NaN(), GapMax: math.NaN(), GapMin: math.NaN(), TimeLimitGapMax: math.NaN()}
	var gaps, ratios []float64
	var optSum, solSum, allSum float64
	nSol := 0
	for _, c := range cs {
		switch c.Status {
		case "optimal":
			s.Optimal++
		case "timelimit":
			s.TimeLimit++
			if !math.IsNaN(c.GapPct) && (math.IsNaN(s.TimeLimitGapMax) || c.GapPct > s.TimeLimitGapMax) {
				s.TimeLimitGapMax = c.GapPct
			}
		case "unsolved":
			s.Unsolved++
		case "invalid":
			s.Invalid++
		case "disagree":
			s.Disagree++
		case "error":
			s.Errors++
		}
		if c.Status == "optimal" && !math.IsNaN(c.GapPct) {
			gaps = append(gaps, c.GapPct)
			if c.GapPct < 1e-6 {
				s.AtOptimum++
			}
		}
		if c.Status != "unsolved" && c.Status != "error" {
			if c.AgreeInstance {
				s.AgreeInstances++
			}
			if c.SameSet {
				s.SameSet++
			}
			s.Demands += c.Deployments
			s.AgreeDemands += c.AgreeDemands
			if len(c.OptInfeasible) > 0 || len(c.MILPInfeasible) > 0 {
				s.WithInfeasible++
			}
			s.OptInfeasible += len(c.OptInfeasible)
			s.MILPInfeasible += len(c.MILPInfeasible)
			s.MILPRuleInf += len(c.MILPRuleInfeasible)
			s.OptUnplaced += c.OptUnplaced
			s.MILPUnplaced += c.MILPUnplaced
		}
		s.Violations += len(c.Violations)
		s.Notes += c.Notes
		if !c.Deterministic {
			s.NonDeterm++
		}
		optSum += c.OptimizerSec
		s.OptMaxSec = max(s.OptMaxSec, c.OptimizerSec)
		allSum += c.SolverAllSec
		s.SolverAllMax = max(s.SolverAllMax, c.SolverAllSec)
		if c.SolverAllSec > 0 && c.OptimizerSec > 0 {
			ratios = append(ratios, c.SolverAllSec/c.OptimizerSec)
		}
		if c.SolverSec > 0 {
			nSol++
			solSum += c.SolverSec
			s.SolverMaxSec = max(s.SolverMaxSec, c.SolverSec)
		}
	}
	if len(cs) > 0 {
		s.OptMeanSec = optSum / float64(len(cs))
		s.SolverAllMean = allSum / float64(len(cs))
	}
	if nSol > 0 {
		s.SolverMeanSec = solSum / float64(nSol)
	}
	if s.OptMeanSec > 0 {
		s.TimeRatio = s.SolverAllMean / s.OptMeanSec
	}
	s.TimeRatioMedian = quantile(ratios, 0.5)
	s.GapN = len(gaps)
	if len(gaps) > 0 {
		sum := 0.0
		for _, g := range gaps {
			sum += g
		}
		s.GapMean = sum / float64(len(gaps))
		s.GapP95 = quantile(gaps, 0.95)
		s.GapMax = quantile(gaps, 1)
		s.GapMin = quantile(gaps, 0)
	}
	return s
}

// quantile by the nearest-rank method (NaN for no data).
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func printTable(w io.Writer, rep *report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	f := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }
	c := rep.Config
	if len(rep.Instances) > 0 {
		s := rep.Summary
		f("QUALITY: placement.Optimize vs exact MILP (%s), seed %d, %s deployments, %s offerings, solver limit %s", c.Solver, c.Seed, c.Deployments, c.Offerings, c.Timeout)
		f("instances\t%d\t", s.Instances)
		f("  solved to proven optimum\t%d\t", s.Optimal)
		f("  solver hit the time limit\t%d\t(not in the gap figures; max gap vs the solver's bound %s)", s.TimeLimit, pct(s.TimeLimitGapMax))
		f("  unsolved / errors\t%d / %d\t", s.Unsolved, s.Errors)
		f("  plans violating a hard constraint\t%d\t(%d violations)", s.Invalid, s.Violations)
		f("objective gap %% vs MILP (n=%d)\tmean %s\tp95 %s  max %s  min %s; %d at the optimum (<1e-6%%)", s.GapN, pct(s.GapMean), pct(s.GapP95), pct(s.GapMax), pct(s.GapMin), s.AtOptimum)
		f("infeasibility agreement\t%d/%d instances\t(%d with the very same set); %d/%d demands agree", s.AgreeInstances, s.Instances-s.Unsolved-s.Errors, s.SameSet, s.AgreeDemands, s.Demands)
		for _, c := range rep.Instances {
			if c.Status == "disagree" {
				f("  instance %d\t\t%s", c.Index, c.Disagreement)
			}
		}
		f("  infeasible demands\toptimizer %d\tMILP %d (%d ruled out by their own rules, the rest short of capacity or quota); %d instances have some", s.OptInfeasible, s.MILPInfeasible, s.MILPRuleInf, s.WithInfeasible)
		f("  unplaced replicas (capacity, quota)\toptimizer %d\tMILP %d (the fewest possible)", s.OptUnplaced, s.MILPUnplaced)
		f("optimizer time\tmean %s\tmax %s", fmtDur(s.OptMeanSec), fmtDur(s.OptMaxSec))
		f("solver time (exact pipeline)\tmean %s\tmax %s  (all solves of an instance: see README)", fmtDur(s.SolverAllMean), fmtDur(s.SolverAllMax))
		f("solver time (optimum's solve)\tmean %s\tmax %s", fmtDur(s.SolverMeanSec), fmtDur(s.SolverMaxSec))
		f("time ratio solver/optimizer\t%s (means)\t%s (median of per-instance ratios)", ratio(s.TimeRatio), ratio(s.TimeRatioMedian))
		f("deterministic\t%d/%d instances\t(a second run gave the very same plan)", s.Instances-s.NonDeterm, s.Instances)
		if s.Notes > 0 {
			f("reporting notes\t%d\t(plan's own hourlyCost/moved/unplaced differ from ours; see -o json)", s.Notes)
		}
		f("\t\t")
	}
	if sp := rep.Speed; sp != nil {
		f("SPEED: %d deployments, %d replicas, %d offerings (all five catalogs), ample capacity", sp.Deployments, sp.Replicas, sp.Offerings)
		f("optimizer wall time\t%s\t", fmtDur(sp.WallSec))
		f("peak heap\t%.0f MiB\t(%.0f MiB above the input's %.0f MiB; allocated %.0f MiB in total)", sp.PeakHeapMiB, sp.PeakHeapMiB-sp.BaseHeapMiB, sp.BaseHeapMiB, sp.AllocMiB)
		f("peak RSS\t%.0f MiB\t(VmHWM of the bench process, reset before the run)", sp.PeakRSSMiB)
		f("plan\t%d infeasible demands\t(%d have no eligible offering at all); %d violations; objective %.2f USD/h, hourly cost %.2f USD/h", sp.Infeasible, sp.NoEligible, sp.Violations, sp.Objective, sp.HourlyCost)
		f("\t\t")
	}
	if ch := rep.Churn; ch != nil {
		f("CHURN: %d deployments, %d offerings; region %s (%d offerings) lost", ch.Deployments, ch.Offerings, ch.Region, ch.LostOfferings)
		f("compared deployments\t%d\t(placed before and after by the optimizer, and by the MILP)", ch.Compared)
		f("their replicas in the lost region\t%d\t(the fewest moves possible; %d of all deployments)", ch.InLostRegion, ch.InLostRegionAll)
		f("replicas moved by the optimizer\t%d\t(%d of them outside the lost region; the MILP's optimal re-plan moves %s)", ch.Moved, ch.MovedOutside, intOrNA(ch.MILPMoved))
		f("hourly cost before / after\t%.2f / %.2f USD/h\t%+.2f USD/h (%+.2f%%); the MILP's re-plan %s", ch.CostBefore, ch.CostAfter, ch.CostAfter-ch.CostBefore, relGap(ch.CostAfter, ch.CostBefore), usdOrNA(ch.MILPCostAfter))
		f("objective after (incl. churn)\t%.2f USD/h\tMILP %s (gap %s)", ch.ObjAfter, usdOrNA(ch.MILPObjAfter), pct(ch.GapPct))
		f("infeasible after the loss\toptimizer %d (%d newly)\tMILP %s; re-plan violations %d; re-plan time %s", ch.InfeasibleAfter, ch.NewlyInfeasible, intOrNA(ch.MILPInfeasible), ch.Violations, fmtDur(ch.ReplanSec))
		f("\t\t")
	}
	f("bench wall time\t%s\t", fmtDur(rep.WallSec))
	tw.Flush()
}

func ratio(v float64) string {
	if math.IsNaN(v) || v == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0fx", v)
}

func pct(v float64) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	if math.Abs(v) < 5e-4 {
		v = 0 // no "-0.000%" for rounding noise
	}
	return fmt.Sprintf("%.3f%%", v)
}

func intOrNA(v int) string {
	if v < 0 {
		return "n/a"
	}
	return strconv.Itoa(v)
}

func usdOrNA(v float64) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	return fmt.Sprintf("%.2f USD/h", v)
}

// jsonSafe turns v into a tree of maps, slices and scalars with the JSON
// field names, NaN and infinities as null (encoding/json rejects them).
func jsonSafe(v any) any { return jsonTree(reflect.ValueOf(v)) }

func jsonTree(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Invalid:
		return nil
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return jsonTree(v.Elem())
	case reflect.Float32, reflect.Float64:
		f := v.Float()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil
		}
		return f
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return nil
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = jsonTree(v.Index(i))
		}
		return out
	case reflect.Map:
		out := map[string]any{}
		for _, k := range v.MapKeys() {
			out[fmt.Sprint(k.Interface())] = jsonTree(v.MapIndex(k))
		}
		return out
	case reflect.Struct:
		out := map[string]any{}
		t := v.Type()
		for i := range t.NumField() {
			sf := t.Field(i)
			if !sf.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(sf.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = sf.Name
			}
			fv := v.Field(i)
			if strings.Contains(opts, "omitempty") && fv.IsZero() {
				continue
			}
			out[name] = jsonTree(fv)
		}
		return out
	default:
		return v.Interface()
	}
}
