package placement

import (
	"fmt"
	"sort"
)

// Rebalancer is implemented by placers that can say when a deployment's
// running replicas should move because another placement is now better by
// more than the churn of moving (a region got cheaper, a capacity block
// expired). The controller asks it only in a steady state.
type Rebalancer interface {
	Rebalance(Request) Rebalance
}

// Rebalance is the outcome of a rebalance check: how many running replicas
// leave each offering (Vacate, by offering ID as in Request.Current) and
// where their replacements go. Empty Vacate: stay.
type Rebalance struct {
	Vacate map[string]int
	// Reason explains the move in one line, with the hourly saving.
	Reason string
	// Saving is the drop in hourly cost + latency + risk, USD/h, before the
	// churn penalty (which it exceeds).
	Saving float64
}

// Rebalance implements Rebalancer: it re-plans the deployment's running
// replicas (req.Current; req.Count is ignored) over every offering now,
// charging the churn weight for each replica moved, and reports the moves
// of the best plan. Replicas stay unless moving lowers the objective by more
// than Weights.ChurnUSD per moved replica.
func (o Optimizer) Rebalance(req Request) Rebalance {
	sp := o.single(req, 0)
	if sp.total == 0 {
		return Rebalance{}
	}
	offerings, current, d, rtt, w := sp.offerings, sp.current, sp.demand, sp.rtt, sp.weights
	plan := planWithQuotas(req, d, offerings, rtt, w)
	if plan.Moved == 0 || plan.Unplaced > 0 || plan.Infeasible != "" {
		return Rebalance{}
	}
	// What staying costs: the same model with moving forbidden.
	stay := w
	stay.ChurnUSD = keepChurn
	kept := planWithQuotas(req, d, offerings, rtt, stay)
	if kept.Unplaced > 0 || kept.Moved > 0 {
		return Rebalance{}
	}
	saving := kept.Objective - (plan.Objective - w.ChurnUSD*float64(plan.Moved))
	target := map[string]int{}
	for _, a := range plan.Placements {
		target[a.OfferingID] += a.Replicas
	}
	out := Rebalance{Vacate: map[string]int{}, Saving: saving}
	var from, to []string
	for id, n := range current {
		if k := n - target[id]; k > 0 {
			out.Vacate[id] = k
			from = append(from, fmt.Sprintf("%d from %s", k, id))
		}
	}
	for id, n := range target {
		if k := n - current[id]; k > 0 {
			to = append(to, fmt.Sprintf("%d to %s", k, id))
		}
	}
	sort.Strings(from)
	sort.Strings(to)
	out.Reason = fmt.Sprintf("moving %v, %v: $%.4f/h instead of $%.4f/h (saves $%.4f/h in cost, latency and risk, more than the churn of $%.2f/h per moved replica)",
		from, to, plan.HourlyCost, kept.HourlyCost, saving, w.ChurnUSD)
	return out
}
