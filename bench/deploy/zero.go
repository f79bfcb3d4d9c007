package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/client"
)

// zeroBench measures scale from zero for real: a deployment of the example
// service at zero replicas gets 50 concurrent requests at once. It reports
// how many were answered, and the latency the wave had beyond the replica's
// own start and its own service time: the cold wave's latency quantile minus
// the time from the first request to the replica's ReplicaReady event (when
// the gateway gets it) minus the same quantile of an identical wave sent
// right after to the warm replica.
func zeroBench(runs int) error {
	tmp, err := os.MkdirTemp("", "aloft-bench-zero-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "bin")
	if err := buildAll(bin, nil, [2]string{"aloft", "./cmd/aloft"}, [2]string{"aloft-completions", "./examples/completions"}); err != nil {
		return err
	}
	srv, err := startServer(tmp, bin)
	if err != nil {
		return err
	}
	defer srv.stop()
	c, gw, ctx := srv.c, srv.gw, context.Background()

	const n = 50
	var added, starts []time.Duration
	lost := 0
	for run := range runs {
		name := fmt.Sprintf("zero-%d", run)
		spec := fmt.Sprintf("name: %s\ncommand: [aloft-completions]\nargs: [--token-delay, 1ms]\nreplicas: {min: 0, max: 3}\nautoscale: {target: 100}\nhealth: {path: /healthz}\n", name)
		if _, _, err := c.ApplyDeployment(ctx, name, []byte(spec)); err != nil {
			return err
		}
		if err := waitUntil(20*time.Second, func() bool {
			d, err := c.GetDeployment(ctx, name)
			return err == nil && d.Status.Phase == v1.PhaseReady && len(d.Status.Replicas) == 0
		}); err != nil {
			return fmt.Errorf("%s did not settle at zero: %w", name, err)
		}
		t0 := time.Now()
		lat, ok := wave(gw, name, n)
		warm, _ := wave(gw, name, n)
		evs, err := c.Events(ctx, name, 0)
		if err != nil {
			return err
		}
		var placed, ready time.Time
		for _, e := range evs {
			if e.Reason == "Placed" && placed.IsZero() {
				placed = e.Time
			}
			if e.Reason == "ReplicaReady" && ready.IsZero() {
				ready = e.Time
			}
		}
		if ready.IsZero() || placed.IsZero() {
			return fmt.Errorf("%s: no Placed/ReplicaReady events", name)
		}
		starts = append(starts, ready.Sub(placed))
		readyAfter := ready.Sub(t0)
		var cold []time.Duration
		for i := range n {
			if !ok[i] {
				lost++
				continue
			}
			cold = append(cold, lat[i])
		}
		slices.Sort(cold)
		slices.Sort(warm)
		for _, p := range []float64{0.1, 0.25, 0.5, 0.75, 0.9, 1} {
			added = append(added, max(quantile(cold, p)-readyAfter-quantile(warm, p), 0))
		}
		if _, err := c.DeleteDeployment(ctx, name); err != nil {
			return err
		}
		// Wait for the drain, or the replica outlives the bench's server.
		if err := waitUntil(60*time.Second, func() bool {
			_, err := c.GetDeployment(ctx, name)
			return client.IsNotFound(err)
		}); err != nil {
			return fmt.Errorf("delete %s: %w", name, err)
		}
	}
	slices.Sort(added)
	slices.Sort(starts)
	q := quantile
	fmt.Printf("\nscale from zero: %d concurrent requests at once, %d runs\n", n, runs)
	fmt.Printf("answered %d of %d (lost %d)\n", runs*n-lost, runs*n, lost)
	fmt.Printf("replica start (Placed -> ReplicaReady): p50 %v, max %v\n", q(starts, 0.5).Round(time.Millisecond), q(starts, 1).Round(time.Millisecond))
	fmt.Printf("latency beyond the replica's start and service (cold wave minus ready time minus warm wave, per quantile, over runs): p50 %v, max %v (target < 50ms)\n",
		q(added, 0.5).Round(100*time.Microsecond), q(added, 1).Round(100*time.Microsecond))
	return nil
}

// wave sends n concurrent completions to deployment and returns each
// latency and whether it got a 200.
func wave(gw, deployment string, n int) ([]time.Duration, []bool) {
	lat := make([]time.Duration, n)
	ok := make([]bool, n)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", "http://"+gw+"/v1/completions", strings.NewReader(`{"prompt":"Alice was","max_tokens":4}`))
			req.Host = deployment + ".localhost"
			resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
			if err != nil {
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			lat[i], ok[i] = time.Since(t0), resp.StatusCode == 200
		}()
	}
	wg.Wait()
	return lat, ok
}

func quantile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(p*float64(len(d))))]
}
