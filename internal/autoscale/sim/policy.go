package sim

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Sample is what the gateway saw during one second (At-1s, At].
type Sample struct {
	At          time.Time `json:"at"`
	Concurrency float64   `json:"concurrency"` // time-weighted mean of requests in flight (queued or in service)
	Arrivals    int       `json:"arrivals"`
	Ready       int       `json:"ready"`    // ready replicas taking requests, at At
	Replicas    int       `json:"replicas"` // replicas starting or ready (not draining), at At
}

// View is what a policy sees when it decides.
type View struct {
	Now      time.Time
	Start    time.Time // when the run began
	Replicas int       // replicas starting or ready (not draining)
	Ready    int       // replicas ready
	InFlight int       // requests in flight right now, including the activation queue
	Waiting  int       // requests in the activation queue right now
	// History holds one sample per whole second since Start, oldest first;
	// the last one ends at or just before Now. Policies must not modify it.
	History []Sample
	// Poke is set when the gateway wakes the policy outside its tick because
	// a request arrived and no replica is running or starting.
	Poke bool
}

// Policy chooses the number of replicas. The simulator calls Decide at time
// zero plus Interval, then again Interval after each tick (Interval may
// change with the policy's state), and on a poke.
type Policy interface {
	Name() string
	Initial() int // replicas ready at time zero (deployed before the trace starts)
	Interval() time.Duration
	Decide(v View) int // desired replicas; clamped to [0, MaxReplicas]
}

// Policies are the names NewPolicy knows; DefaultPolicies are compared when
// none are named.
var (
	Policies        = []string{"aloft", "kpa", "skyserve", "static", "kpa-tuned", "aloft-predictive"}
	DefaultPolicies = []string{"aloft", "kpa", "skyserve", "static"}
)

// NewPolicy builds a fresh policy for one run of tr under m. The baselines
// that need sizing (static, skyserve) size themselves from the trace and the
// model, as an operator would from a load test.
func NewPolicy(name string, tr Trace, m Model) (Policy, error) {
	switch name {
	case "aloft":
		return newAloft(tr, m), nil
	case "aloft-predictive":
		return newAloftPredictive(m), nil
	case "kpa":
		return newKPA(m, kpaDefaultTarget), nil
	case "kpa-tuned":
		return newKPATuned(m), nil
	case "skyserve":
		return newSkyServe(tr, m), nil
	case "static":
		return newStatic(tr, m), nil
	}
	return nil, fmt.Errorf("no policy %q (have %s)", name, strings.Join(Policies, ", "))
}

// ParsePolicies splits a comma-separated list of policy names; empty means
// DefaultPolicies.
func ParsePolicies(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return slices.Clone(DefaultPolicies), nil
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if !slices.Contains(Policies, p) {
			return nil, fmt.Errorf("no policy %q (have %s)", p, strings.Join(Policies, ", "))
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// window returns the samples of h in (now-d, now].
func window(h []Sample, now time.Time, d time.Duration) []Sample {
	from := now.Add(-d)
	i, _ := slices.BinarySearchFunc(h, from, func(s Sample, t time.Time) int {
		if s.At.After(t) {
			return 1
		}
		return -1
	})
	j := len(h)
	for j > i && h[j-1].At.After(now) {
		j--
	}
	return h[i:j]
}
