// Command deploy measures the time from `apply` to all replicas ready, for the
// demo's spec (the example completions service, 3 replicas over 3 local
// clouds), against a reference: starting the same 3 processes by hand and
// polling their /healthz until all answer; and one replica of the same
// service run as a container from its image (cold and warm root filesystem
// cache) against a process replica of the same static binary, with the
// memory the container adds.
//
// And scale from zero: 50 concurrent requests at a deployment at zero
// replicas, none lost, and the latency they see beyond the replica's start.
//
//	go run ./bench/deploy [-runs 10] [-o json] [-bench all|demo|containers|zero]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/client"
)

func main() {
	runs := flag.Int("runs", 10, "deployments to time")
	output := flag.String("o", "table", "table or json")
	which := flag.String("bench", "all", "demo (3 replicas vs direct exec), containers (container vs process replica), zero (50 requests at a deployment scaled to zero) or all")
	flag.Parse()
	var err error
	if *which == "all" || *which == "demo" {
		err = run(*runs, *output)
	}
	if err == nil && (*which == "all" || *which == "containers") {
		err = containerBench(*runs, *output)
	}
	if err == nil && (*which == "all" || *which == "zero") {
		err = zeroBench(*runs)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/deploy:", err)
		os.Exit(1)
	}
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type result struct {
	Target string    `json:"target"`
	Runs   []float64 `json:"runsSeconds"`
	P50    float64   `json:"p50Seconds"`
	Min    float64   `json:"minSeconds"`
	Max    float64   `json:"maxSeconds"`
}

func summarize(target string, d []time.Duration) result {
	r := result{Target: target}
	for _, x := range d {
		r.Runs = append(r.Runs, x.Seconds())
	}
	s := slices.Clone(r.Runs)
	slices.Sort(s)
	r.Min, r.Max, r.P50 = s[0], s[len(s)-1], s[len(s)/2]
	return r
}

func run(runs int, output string) error {
	tmp, err := os.MkdirTemp("", "aloft-bench-deploy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "bin")
	if err := buildAll(bin, nil, [2]string{"aloft", "./cmd/aloft"}, [2]string{"aloft-completions", "./examples/completions"}); err != nil {
		return err
	}
	spec, err := os.ReadFile("examples/completions/aloft.yaml")
	if err != nil {
		return err
	}
	parsed, err := v1.ParseSpec(spec)
	if err != nil {
		return err
	}

	// Reference: the same replicas started directly.
	var direct []time.Duration
	for range runs {
		d, err := startDirect(filepath.Join(bin, "aloft-completions"), parsed.Args, parsed.Replicas.Min)
		if err != nil {
			return err
		}
		direct = append(direct, d)
	}

	srv, err := startServer(tmp, bin)
	if err != nil {
		return err
	}
	defer srv.stop()
	c, ctx := srv.c, context.Background()
	var viaAloft []time.Duration
	for range runs {
		start := time.Now()
		if _, _, err := c.ApplyDeployment(ctx, parsed.Name, spec); err != nil {
			return err
		}
		err := waitUntil(60*time.Second, func() bool {
			d, err := c.GetDeployment(ctx, parsed.Name)
			return err == nil && d.Status.Phase == v1.PhaseReady && d.Status.ReadyReplicas == parsed.Replicas.Min
		})
		if err != nil {
			return fmt.Errorf("deployment not ready: %w", err)
		}
		viaAloft = append(viaAloft, time.Since(start))
		if _, err := c.DeleteDeployment(ctx, parsed.Name); err != nil {
			return err
		}
		if err := waitUntil(60*time.Second, func() bool {
			_, err := c.GetDeployment(ctx, parsed.Name)
			return client.IsNotFound(err)
		}); err != nil {
			return fmt.Errorf("delete: %w", err)
		}
	}

	results := []result{summarize("aloft apply -> all ready", viaAloft), summarize("direct exec -> all healthy", direct)}
	ratio := results[0].P50 / results[1].P50
	if output == "json" {
		return json.NewEncoder(os.Stdout).Encode(map[string]any{"results": results, "ratioP50": ratio, "replicas": parsed.Replicas.Min, "runs": runs})
	}
	fmt.Printf("time to %d ready replicas of examples/completions (%d runs)\n", parsed.Replicas.Min, runs)
	fmt.Printf("%-28s %8s %8s %8s\n", "target", "p50", "min", "max")
	for _, r := range results {
		fmt.Printf("%-28s %7.3fs %7.3fs %7.3fs\n", r.Target, r.P50, r.Min, r.Max)
	}
	fmt.Printf("ratio aloft/direct (p50): %.2fx\n", ratio)
	return nil
}

// startDirect starts n replicas as plain processes and waits until every
// /healthz answers 200, polling as tightly as aloft's first probes do.
func startDirect(bin string, args []string, n int) (time.Duration, error) {
	start := time.Now()
	var cmds []*exec.Cmd
	var addrs []string
	defer func() {
		for _, c := range cmds {
			c.Process.Signal(syscall.SIGTERM)
			c.Wait()
		}
	}()
	for range n {
		addr := freeAddr()
		_, port, _ := net.SplitHostPort(addr)
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "PORT="+port)
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		cmds = append(cmds, cmd)
		addrs = append(addrs, addr)
	}
	hc := &http.Client{Timeout: time.Second}
	err := waitUntil(30*time.Second, func() bool {
		for _, a := range addrs {
			resp, err := hc.Get("http://" + a + "/healthz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return false
			}
		}
		return true
	})
	return time.Since(start), err
}

func waitUntil(d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}
