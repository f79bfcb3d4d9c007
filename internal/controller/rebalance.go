package controller

import (
	"context"
	"fmt"
	"sort"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/placement"
	"github.com/aloft-dev/aloft/internal/store"
)

// rebalanceState remembers, in this process only, which running replicas a
// rebalance decided to move (replica ID -> reason) and when each deployment
// was last checked. Losing it in a restart is safe: the replacements that
// already started make the deployment one too large, and scale-down removes
// the most expensive replicas first.
type rebalanceState struct {
	moving map[string]move
	last   map[string]time.Time
}

type move struct{ deployment, why string }

// rebalance checks, in a steady state (every replica of the current revision
// ready, none obsolete, the desired count running) and at most once per
// RebalanceInterval, whether the placer finds a placement better than the
// current one by more than the churn of moving; if so it marks the replicas
// to move, which then go the way of a migration: replacements start where
// the placement says, and each moved replica drains once they are ready.
func (c *Controller) rebalance(ctx context.Context, d store.Deployment, current, obsolete []*observed, desired int, states map[string]store.CloudState) {
	rb, ok := c.placer.(placement.Rebalancer)
	if !ok || c.opts.RebalanceInterval < 0 || len(obsolete) > 0 || len(current) != desired || desired == 0 {
		return
	}
	for _, o := range current {
		if !o.ready || c.movingReason(o.rec.ID) != "" {
			return
		}
	}
	now := time.Now()
	c.mu.Lock()
	due := now.Sub(c.rebal.last[d.Name]) >= c.opts.RebalanceInterval
	if due {
		c.rebal.last[d.Name] = now
	}
	c.mu.Unlock()
	if !due {
		return
	}
	req, err := c.placementRequest(ctx, d.Spec, 0, current, states)
	if err != nil {
		c.log.Error("rebalance request", "deployment", d.Name, "err", err)
		return
	}
	out := rb.Rebalance(req)
	if len(out.Vacate) == 0 {
		return
	}
	// Of the replicas on an offering to vacate, the newest go first.
	sort.SliceStable(current, func(i, j int) bool { return current[i].rec.CreatedAt.After(current[j].rec.CreatedAt) })
	left := map[string]int{}
	for id, n := range out.Vacate {
		left[id] = n
	}
	c.mu.Lock()
	for _, o := range current {
		id := offeringOf(o.rec)
		if left[id] > 0 {
			left[id]--
			c.rebal.moving[o.rec.ID] = move{d.Name, out.Reason}
		}
	}
	c.mu.Unlock()
	c.event(ctx, d.Name, "Normal", "Rebalancing", out.Reason)
	c.Enqueue(d.Name)
}

// movingReason is why a rebalance moves the replica, or "" if it stays.
func (c *Controller) movingReason(id string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rebal.moving[id].why
}

// forgetMoves drops the marks of the deployment's replicas that no longer
// run (or all of them, when their replacements cannot be placed: the
// replicas then stay where they are).
func (c *Controller) forgetMoves(name string, live []*observed, all bool) {
	running := map[string]bool{}
	for _, o := range live {
		if !o.rec.Draining && o.rec.State != v1.ReplicaFailed {
			running[o.rec.ID] = true
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, m := range c.rebal.moving {
		if m.deployment == name && (all || !running[id]) {
			delete(c.rebal.moving, id)
		}
	}
}

func movedReason(why string) string {
	return fmt.Sprintf("is moved by a rebalance: %s", why)
}
