package controller

import (
	"fmt"

	"github.com/aloft-dev/aloft/internal/cloud"
	"github.com/aloft-dev/aloft/internal/placement"
	"github.com/aloft-dev/aloft/internal/provider"
	"github.com/aloft-dev/aloft/internal/store"
)

// unreachable says why a cloud does not answer now ("" when it does).
func unreachable(cl *cloud.Cloud) string {
	h, ok := cl.Provider.(provider.HealthReporter)
	if !ok {
		return ""
	}
	if err := h.Health(); err != nil {
		return err.Error()
	}
	return ""
}

// applyHealth marks clouds that do not answer as failed in states (for
// this pass only: the store keeps what an operator set), and reports each
// change of a cloud's health once in the log and the cloud-up gauge.
func (c *Controller) applyHealth(states map[string]store.CloudState) {
	for _, cl := range c.clouds.List() {
		name := cl.Config.Name
		why := unreachable(cl)
		if why != "" {
			st := states[name]
			st.Name, st.Failed = name, true
			states[name] = st
		}
		c.mu.Lock()
		before, seen := c.down[name]
		c.down[name] = why
		c.mu.Unlock()
		if seen && before == why {
			continue
		}
		up := 1.0
		if why != "" {
			up = 0
			c.log.Warn("cloud unreachable: its replicas are replaced elsewhere, and kept until it answers again", "cloud", name, "reason", why)
		} else if seen {
			c.log.Info("cloud answers again", "cloud", name)
		}
		c.metrics.cloudUp.WithLabelValues(name).Set(up)
	}
}

// Unreachable lists the clouds that do not answer now, with the reason.
func (c *Controller) Unreachable() map[string]string {
	out := map[string]string{}
	for _, cl := range c.clouds.List() {
		if why := unreachable(cl); why != "" {
			out[cl.Config.Name] = why
		}
	}
	return out
}

// liveFree is the free capacity a cloud reports itself (a cluster's nodes'
// allocatable minus requests), or ok=false for a cloud that reports none.
// freeCapacity then takes off aloft's replicas still starting there, whose
// pods may not be bound to a node yet.
func liveFree(cl *cloud.Cloud) (placement.Free, bool, error) {
	r, ok := cl.Provider.(provider.CapacityReporter)
	if !ok {
		return placement.Free{}, false, nil
	}
	f, err := capacityOf(r.FreeCapacity())
	if err != nil {
		return placement.Free{}, false, fmt.Errorf("cloud %s reports capacity: %w", cl.Config.Name, err)
	}
	return f, true, nil
}

// downReason is why a cloud did not answer at the last health check ("" if it did).
func (c *Controller) downReason(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.down[name]
}
