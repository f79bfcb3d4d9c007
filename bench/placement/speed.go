package main

import (
	"bufio"
	"math"
	"os"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aloft-dev/aloft/internal/placement"
)

type speedResult struct {
	Deployments int     `json:"deployments"`
	Replicas    int     `json:"replicas"`
	Offerings   int     `json:"offerings"`
	WallSec     float64 `json:"wallSeconds"`
	BaseHeapMiB float64 `json:"baseHeapMiB"` // live heap before the run (the input)
	PeakHeapMiB float64 `json:"peakHeapMiB"` // highest heap (objects) seen during the run, sampled every ms
	AllocMiB    float64 `json:"allocatedMiB"`
	PeakRSSMiB  float64 `json:"peakRSSMiB"` // VmHWM, reset before the run; 0 if unsupported
	Infeasible  int     `json:"infeasibleDemands"`
	NoEligible  int     `json:"demandsWithoutEligibleOffering"`
	Violations  int     `json:"violations"`
	FirstViol   string  `json:"firstViolation,omitempty"`
	Objective   float64 `json:"objective"`
	HourlyCost  float64 `json:"hourlyCost"`
}

// speedRun plans 10,000 deployments / 100,000 replicas over every offering
// of the five catalogs, with ample capacity, once.
func speedRun(pool []poolOffering, seed uint64) *speedResult {
	p := genInstance(pool, seed, 1_000_000, genConfig{
		MinDeployments: 10_000, MaxDeployments: 10_000, Ample: true, Current: true, TotalReplicas: 100_000,
	})
	res := &speedResult{Deployments: len(p.Demands), Offerings: len(p.Offerings)}
	for _, d := range p.Demands {
		res.Replicas += d.Replicas
	}

	runtime.GC()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res.BaseHeapMiB = mib(before.HeapAlloc)
	resetPeakRSS()

	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak atomic.Uint64
	peak.Store(before.HeapAlloc)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		s := append([]metrics.Sample(nil), sample...)
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				metrics.Read(s)
				if v := s[0].Value.Uint64(); v > peak.Load() {
					peak.Store(v)
				}
			}
		}
	})
	start := time.Now()
	plan := optimize(*p)
	res.WallSec = time.Since(start).Seconds()
	close(stop)
	wg.Wait()
	runtime.ReadMemStats(&after)
	res.PeakHeapMiB = mib(max(peak.Load(), after.HeapAlloc))
	res.AllocMiB = mib(after.TotalAlloc - before.TotalAlloc)
	res.PeakRSSMiB = peakRSSMiB()

	m := newModel(p, false)
	pc := checkPlan(m, &plan)
	res.Violations = len(pc.Violations)
	if len(pc.Violations) > 0 {
		res.FirstViol = pc.Violations[0]
	}
	var ds []int
	for di, inf := range pc.Infeasible {
		if inf {
			res.Infeasible++
		} else {
			ds = append(ds, di)
		}
	}
	for di := range p.Demands {
		if !slices.ContainsFunc(p.Offerings, func(o placement.Offering) bool { return eligible(&p.Demands[di], &o) }) {
			res.NoEligible++
		}
	}
	ev := evaluate(m, ds, func(di int) map[int]int { return pc.X[di] })
	res.Objective, res.HourlyCost = ev.Objective, ev.HourlyCost
	runtime.KeepAlive(p)
	return res
}

func mib(b uint64) float64 { return math.Round(float64(b)/(1<<20)*10) / 10 }

// resetPeakRSS resets the kernel's peak RSS (VmHWM) of this process.
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSSMiB reads VmHWM from /proc/self/status (0 if unavailable).
func peakRSSMiB() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			fs := strings.Fields(rest)
			if len(fs) > 0 {
				kb, _ := strconv.ParseFloat(fs[0], 64)
				return math.Round(kb/1024*10) / 10
			}
		}
	}
	return 0
}
