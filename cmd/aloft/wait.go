package main

import (
	"context"
	"fmt"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/client"
	"github.com/spf13/cobra"
)

// pollInterval is how often --wait asks the server.
const pollInterval = 250 * time.Millisecond

// rolledOut: every desired replica of the current revision is ready and no
// older replica is left.
func rolledOut(d v1.Deployment) bool {
	if d.Status.Phase != v1.PhaseReady || d.Status.ReadyReplicas < d.Status.DesiredReplicas {
		return false
	}
	for _, r := range d.Status.Replicas {
		if r.Revision != d.Revision {
			return false
		}
	}
	return true
}

// waitReady polls until the deployment is rolled out, printing a progress line
// whenever it changes, or fails with the reasons it is not ready.
func waitReady(cmd *cobra.Command, g *globals, name string, timeout time.Duration) (v1.Deployment, error) {
	c := g.client()
	ctx := cmd.Context()
	deadline := time.Now().Add(timeout)
	start := time.Now()
	last := ""
	out := cmd.ErrOrStderr()
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		d, err := c.GetDeployment(ctx, name)
		if err != nil {
			return d, err
		}
		line := fmt.Sprintf("%s: %d/%d ready, phase %s", name, d.Status.ReadyReplicas, d.Status.DesiredReplicas, d.Status.Phase)
		if line != last {
			fmt.Fprintf(out, "[%5.1fs] %s\n", time.Since(start).Seconds(), line)
			last = line
		}
		if rolledOut(d) {
			fmt.Fprintf(out, "%s ready in %.1fs\n", name, time.Since(start).Seconds())
			return d, nil
		}
		if d.Status.Phase == v1.PhaseFailed || time.Now().After(deadline) {
			return d, &exitErr{exitTimeout, fmt.Errorf("%s not ready after %s: %s", name, time.Since(start).Round(time.Second), notReadyReason(ctx, c, d))}
		}
		select {
		case <-ctx.Done():
			return d, ctx.Err()
		case <-t.C:
		}
	}
}

// notReadyReason explains from conditions and the latest warning event.
func notReadyReason(ctx context.Context, c *client.Client, d v1.Deployment) string {
	why := fmt.Sprintf("phase %s, %d/%d ready", d.Status.Phase, d.Status.ReadyReplicas, d.Status.DesiredReplicas)
	for _, cd := range d.Status.Conditions {
		if (cd.Status == "False" && cd.Type != v1.ConditionRolledOut && cd.Type != v1.ConditionAvailable) || cd.Type == v1.ConditionUnsupported {
			why += fmt.Sprintf("; %s: %s", cd.Type, cd.Message)
		}
	}
	if evs, err := c.Events(ctx, d.Name, 0); err == nil {
		for i := len(evs) - 1; i >= 0; i-- {
			if evs[i].Type == "Warning" {
				why += "; last warning: " + evs[i].Message
				break
			}
		}
	}
	for _, r := range d.Status.Replicas {
		if r.Message != "" && r.State != v1.ReplicaReady {
			why += fmt.Sprintf("; replica %s (%s): %s", r.ID, r.State, r.Message)
			break
		}
	}
	return why
}

// waitGone polls until the deployment no longer exists.
func waitGone(cmd *cobra.Command, c *client.Client, name string, timeout time.Duration) error {
	ctx := cmd.Context()
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		_, err := c.GetDeployment(ctx, name)
		if client.IsNotFound(err) {
			fmt.Fprintf(cmd.OutOrStdout(), "deployment/%s deleted\n", name)
			return nil
		}
		if err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return &exitErr{exitTimeout, fmt.Errorf("%s still exists after %s", name, timeout)}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
