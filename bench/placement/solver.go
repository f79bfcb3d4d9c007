package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// solveStatus is the outcome of one MILP solve.
type solveStatus string

const (
	statusOptimal    solveStatus = "optimal"
	statusInfeasible solveStatus = "infeasible"
	statusTimeLimit  solveStatus = "timelimit"  // stopped with an integer solution
	statusNoSolution solveStatus = "nosolution" // stopped without one
	statusError      solveStatus = "error"
)

type solveResult struct {
	Status    solveStatus
	Objective float64
	Bound     float64 // best proven lower bound (= Objective when optimal); NaN if unknown
	Values    map[string]float64
	Wall      time.Duration
}

// solver runs an external MILP solver on LP files.
type solver struct {
	Name    string // "cbc" or "glpsol"
	Path    string
	Version string
	Timeout time.Duration
	Dir     string // scratch directory for LP and solution files
	Keep    bool   // keep the files
	seq     int
}

// findSolver locates cbc (preferred) or glpsol.
func findSolver(prefer string) (*solver, error) {
	names := []string{"cbc", "glpsol"}
	if prefer != "" {
		names = []string{prefer}
	}
	for _, n := range names {
		if path, err := exec.LookPath(n); err == nil {
			s := &solver{Name: n, Path: path}
			s.Version = solverVersion(n, path)
			return s, nil
		}
	}
	return nil, errors.New("no MILP solver found: bench/placement needs CBC (Debian/Ubuntu: apt-get install -y coinor-cbc; macOS: brew install cbc) or, slower, GLPK's glpsol (apt-get install -y glpk-utils)")
}

func solverVersion(name, path string) string {
	var out []byte
	if name == "cbc" {
		out, _ = exec.Command(path, "-quit").CombinedOutput()
		if m := regexp.MustCompile(`Version:\s*(\S+)`).FindSubmatch(out); m != nil {
			return "CBC " + string(m[1])
		}
		return "CBC"
	}
	out, _ = exec.Command(path, "--version").CombinedOutput()
	if m := regexp.MustCompile(`GLPK.*?([0-9]+\.[0-9.]+)`).FindSubmatch(out); m != nil {
		return "GLPK " + string(m[1])
	}
	return "GLPK"
}

// solve writes the model with write and solves it.
func (s *solver) solve(tag string, write func(f *os.File) (*lpVars, error)) (*solveResult, *lpVars, error) {
	s.seq++
	base := filepath.Join(s.Dir, fmt.Sprintf("%s-%d", tag, s.seq))
	lpPath, solPath, logPath := base+".lp", base+".sol", base+".log"
	f, err := os.Create(lpPath)
	if err != nil {
		return nil, nil, err
	}
	vars, err := write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, nil, err
	}
	if !s.Keep {
		defer os.Remove(lpPath)
		defer os.Remove(solPath)
		defer os.Remove(logPath)
	}
	res, err := s.run(lpPath, solPath, logPath)
	return res, vars, err
}

func (s *solver) run(lpPath, solPath, logPath string) (*solveResult, error) {
	secs := max(1, int(math.Ceil(s.Timeout.Seconds())))
	var args []string
	if s.Name == "cbc" {
		// allowableGap: stop only when the incumbent is within $1e-6/h of
		// the bound; ratioGap 0: no relative tolerance.
		args = []string{lpPath, "sec", strconv.Itoa(secs), "allowableGap", "1e-6", "ratioGap", "0", "solve", "solu", solPath}
	} else {
		args = []string{"--lp", lpPath, "--tmlim", strconv.Itoa(secs), "--mipgap", "0", "-o", solPath}
	}
	// A hard stop well after the solver's own limit, in case it ignores it.
	ctx, cancel := context.WithTimeout(context.Background(), s.Timeout*2+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.Path, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if s.Keep {
		_ = os.WriteFile(logPath, out.Bytes(), 0o644)
	}
	var res *solveResult
	var perr error
	if s.Name == "cbc" {
		res, perr = parseCBC(solPath, out.String())
	} else {
		res, perr = parseGLPK(solPath)
	}
	if perr != nil {
		if err != nil {
			perr = fmt.Errorf("%v (%s exited: %v)", perr, s.Name, err)
		}
		return &solveResult{Status: statusError, Wall: wall}, fmt.Errorf("%s %s: %w\n%s", s.Name, lpPath, perr, tail(out.String(), 1500))
	}
	res.Wall = wall
	return res, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

var cbcLowerBound = regexp.MustCompile(`(?m)^Lower bound:\s*(\S+)`)

// parseCBC reads a CBC solution file ("solu"): a status line, then
// "index name value reducedCost" per non-zero column (lines prefixed "**"
// are values violating a bound or integrality, which we keep as read).
func parseCBC(solPath, log string) (*solveResult, error) {
	data, err := os.ReadFile(solPath)
	if err != nil {
		return nil, fmt.Errorf("no solution file: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	if !sc.Scan() {
		return nil, errors.New("empty solution file")
	}
	head := sc.Text()
	res := &solveResult{Values: map[string]float64{}, Bound: math.NaN()}
	switch {
	case strings.HasPrefix(head, "Optimal"):
		res.Status = statusOptimal
	case strings.Contains(head, "nfeasible"):
		res.Status = statusInfeasible
		return res, nil
	case strings.HasPrefix(head, "Stopped") && strings.Contains(head, "no integer solution"):
		res.Status = statusNoSolution
		return res, nil
	case strings.HasPrefix(head, "Stopped"):
		res.Status = statusTimeLimit
	default:
		return nil, fmt.Errorf("unexpected CBC status %q", head)
	}
	if i := strings.LastIndex(head, "objective value"); i >= 0 {
		f := strings.Fields(head[i+len("objective value"):])
		if len(f) > 0 {
			res.Objective, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 && f[0] == "**" {
			f = f[1:]
		}
		if len(f) < 3 {
			continue
		}
		v, err := strconv.ParseFloat(f[2], 64)
		if err != nil {
			return nil, fmt.Errorf("solution line %q: %w", sc.Text(), err)
		}
		res.Values[f[1]] = v
	}
	if res.Status == statusOptimal {
		res.Bound = res.Objective
	} else if m := cbcLowerBound.FindStringSubmatch(log); m != nil {
		res.Bound, _ = strconv.ParseFloat(m[1], 64)
	}
	return res, sc.Err()
}

// parseGLPK reads glpsol's printable MIP solution (-o).
func parseGLPK(solPath string) (*solveResult, error) {
	data, err := os.ReadFile(solPath)
	if err != nil {
		return nil, fmt.Errorf("no solution file: %w", err)
	}
	res := &solveResult{Values: map[string]float64{}, Bound: math.NaN()}
	lines := strings.Split(string(data), "\n")
	inCols := false
	pendingName := ""
	for _, line := range lines {
		t := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(t, "Status:"):
			st := strings.TrimSpace(strings.TrimPrefix(t, "Status:"))
			switch {
			case strings.Contains(st, "OPTIMAL"):
				res.Status = statusOptimal
			case strings.Contains(st, "EMPTY") || strings.Contains(st, "INFEASIBLE"):
				res.Status = statusInfeasible
			case strings.Contains(st, "UNDEFINED"):
				res.Status = statusNoSolution
			default: // INTEGER NON-OPTIMAL: stopped with a solution
				res.Status = statusTimeLimit
			}
		case strings.HasPrefix(t, "Objective:"):
			if i := strings.Index(t, "="); i >= 0 {
				f := strings.Fields(t[i+1:])
				if len(f) > 0 {
					res.Objective, _ = strconv.ParseFloat(f[0], 64)
				}
			}
		case strings.HasPrefix(t, "No.") && strings.Contains(t, "Column name"):
			inCols = true
		case inCols && strings.HasPrefix(t, "Integer feasibility conditions"):
			inCols = false
		case inCols && t != "" && !strings.HasPrefix(t, "---"):
			f := strings.Fields(t)
			// "  12 name  *  value lb ub" or a long name alone on its line
			// with the numbers on the next.
			if pendingName != "" {
				if len(f) >= 1 && f[0] == "*" {
					f = f[1:]
				}
				if len(f) >= 1 {
					v, _ := strconv.ParseFloat(f[0], 64)
					res.Values[pendingName] = v
				}
				pendingName = ""
				continue
			}
			if len(f) == 2 {
				pendingName = f[1]
				continue
			}
			if len(f) >= 3 {
				vi := 2
				if f[2] == "*" {
					vi = 3
				}
				if vi < len(f) {
					v, _ := strconv.ParseFloat(f[vi], 64)
					res.Values[f[1]] = v
				}
			}
		}
	}
	if res.Status == "" {
		return nil, errors.New("no status in glpsol output")
	}
	if res.Status == statusOptimal {
		res.Bound = res.Objective
	}
	return res, nil
}

// placementOf turns solved values into replicas per demand and offering,
// the demands placed (Rules model) and the unplaced replicas per demand
// (Slack models).
func placementOf(res *solveResult, vars *lpVars) (x map[int]map[int]int, placed map[int]bool, unplaced map[int]int) {
	x = map[int]map[int]int{}
	placed = map[int]bool{}
	unplaced = map[int]int{}
	for name, v := range res.Values {
		n := int(math.Round(v))
		if c, ok := vars.x[name]; ok && n != 0 {
			if x[c.d] == nil {
				x[c.d] = map[int]int{}
			}
			x[c.d][c.o] += n
		}
		if d, ok := vars.z[name]; ok && n == 1 {
			placed[d] = true
		}
		if d, ok := vars.u[name]; ok && n > 0 {
			unplaced[d] = n
		}
	}
	return x, placed, unplaced
}
