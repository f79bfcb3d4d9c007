// Command kubernetes measures aloft's Kubernetes clouds on the test control
// plane of internal/k8stest (real etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler; kwok fake nodes):
//
//  1. the build of that control plane: tools/k8s/build.sh when its cache is
//     complete (timed here), and the cold build as measured in
//     internal/k8stest/README.md (read from there, never rebuilt);
//  2. the start of 3 clusters, one after the other, and their RSS;
//  3. one aloft server with the 3 clusters as its only clouds: apply of a
//     deployment of 100 replicas (cpu 1, memory 1Gi, spread over the 3
//     clusters) until aloft reports them ready and until all pods are Ready
//     in the clusters; scale to 0 until the pods are gone; delete. -runs
//     times, min / median / max.
//
// Run from the repository root, after `make k8s-tools`:
//
//	go run ./bench/kubernetes [-runs 3] [-replicas 100] [-clusters 3] [-nodes 4]
//
// Every process it starts (the aloft server, 5 per cluster) is stopped
// before it exits, on errors and Ctrl-C too, and it checks that none is left.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aloft-dev/aloft/internal/client"
	"github.com/aloft-dev/aloft/internal/k8stest"
)

type config struct {
	runs, replicas, clusters, nodes int
	nodeCPU, nodeMemory             string
	timeout                         time.Duration
}

func main() {
	var cfg config
	flag.IntVar(&cfg.runs, "runs", 3, "apply / scale-to-0 cycles to time (and warm build.sh runs)")
	flag.IntVar(&cfg.replicas, "replicas", 100, "replicas of the deployment (cpu 1, memory 1Gi each)")
	flag.IntVar(&cfg.clusters, "clusters", 3, "clusters to start (1-5)")
	flag.IntVar(&cfg.nodes, "nodes", 4, "kwok nodes per cluster")
	flag.StringVar(&cfg.nodeCPU, "node-cpu", "16", "CPU capacity of each node")
	flag.StringVar(&cfg.nodeMemory, "node-memory", "64Gi", "memory capacity of each node")
	flag.DurationVar(&cfg.timeout, "timeout", 5*time.Minute, "limit of each wait")
	flag.Parse()
	if cfg.runs < 1 || cfg.replicas < cfg.clusters || cfg.clusters < 1 || cfg.clusters > 5 || cfg.nodes < 1 {
		fmt.Fprintln(os.Stderr, "bench/kubernetes: need -runs >= 1, 1 <= -clusters <= 5, -replicas >= -clusters, -nodes >= 1")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, cfg)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/kubernetes:", err)
		os.Exit(1)
	}
}

// results is everything the table shows.
type results struct {
	warmBuild  []time.Duration
	binDir     string
	cold       []string // lines of the README's table
	coldSource string
	starts     []clusterStart
	apply      []time.Duration // apply request answered
	aloftReady []time.Duration // apply -> aloft reports all replicas ready
	podsReady  []time.Duration // apply -> all pods Ready in the clusters
	firstPod   []time.Duration // apply -> the first pod Ready
	scaleAloft []time.Duration // scale to 0 -> aloft reports no replicas
	scalePods  []time.Duration // scale to 0 -> no pod object left
	deleted    []time.Duration // delete (at 0) -> deployment and Deployments gone
	placements []string        // replicas per cluster, per run
	peakRSS    map[string]int64
	left       []string // processes still alive after cleanup
	load       [2]string
}

type clusterStart struct {
	name     string
	start    time.Duration // Cluster.StartDuration: the Start call
	rss      int64
	rssParts string
}

func run(ctx context.Context, cfg config) (err error) {
	res := &results{peakRSS: map[string]int64{}}
	res.load[0] = loadAvg()

	// 1. Build of the test control plane.
	if err := buildTimes(ctx, cfg.runs, res); err != nil {
		return err
	}

	tmp, err := os.MkdirTemp("", "aloft-bench-kubernetes-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	aloftBin, err := buildAloft(tmp)
	if err != nil {
		return err
	}

	// 2. Clusters, one after the other (each start is CPU-bound for a few
	// seconds on 2 cores). They are stopped last, after the server, and the
	// bench checks that none of their processes is left.
	var clusters []*k8stest.Cluster
	pids := map[int]string{}
	defer func() {
		for i := len(clusters) - 1; i >= 0; i-- {
			if e := clusters[i].Stop(); e != nil {
				err = errors.Join(err, fmt.Errorf("stop %s: %w", clusters[i].Name, e))
			}
		}
		if left := alive(pids); len(left) > 0 {
			err = errors.Join(err, fmt.Errorf("processes left after stopping the clusters: %s", strings.Join(left, ", ")))
		}
		if err == nil {
			fmt.Printf("cleanup: %d clusters stopped, none of their %d processes left\n", len(clusters), len(pids))
		}
	}()
	var nodes []k8stest.Node
	for i := range cfg.nodes {
		nodes = append(nodes, k8stest.Node{Name: fmt.Sprintf("node-%d", i+1), CPU: cfg.nodeCPU, Memory: cfg.nodeMemory})
	}
	for i := range cfg.clusters {
		name := fmt.Sprintf("kube-%d", i+1)
		fmt.Fprintf(os.Stderr, "starting cluster %s (%d nodes)...\n", name, cfg.nodes)
		c, err := k8stest.Start(ctx, k8stest.Options{Name: name, Nodes: nodes, BinDir: res.binDir})
		if err != nil {
			return err
		}
		clusters = append(clusters, c)
		for comp, pid := range c.PIDs() {
			pids[pid] = name + " " + comp
		}
		total, parts, err := rss(c)
		if err != nil {
			return err
		}
		res.starts = append(res.starts, clusterStart{name: name, start: c.StartDuration, rss: total, rssParts: parts})
	}

	// 3. One aloft server with the clusters as its clouds.
	clouds, err := cloudsFile(tmp, clusters)
	if err != nil {
		return err
	}
	srv, err := startServer(ctx, aloftBin, tmp, clouds)
	if err != nil {
		return err
	}
	const dep = "bench"
	defer func() {
		if err != nil {
			fmt.Fprintln(os.Stderr, srv.logTail(30))
		}
		// Best effort: the clusters are stopped next anyway.
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _ = srv.c.DeleteDeployment(dctx, dep)
		cancel()
		srv.stop()
	}()
	if err := waitClouds(ctx, srv.c, len(clusters), cfg.timeout); err != nil {
		return err
	}
	for r := range cfg.runs {
		fmt.Fprintf(os.Stderr, "run %d/%d: apply %d replicas...\n", r+1, cfg.runs, cfg.replicas)
		if err := oneRun(ctx, cfg, srv.c, clusters, dep, res); err != nil {
			return fmt.Errorf("run %d: %w", r+1, err)
		}
	}
	res.load[1] = loadAvg()
	printTable(cfg, res)
	return nil
}

// buildTimes runs tools/k8s/build.sh `runs` times with a complete cache,
// and reads the cold build figures from internal/k8stest/README.md. It
// never builds: without a complete cache it fails.
func buildTimes(ctx context.Context, runs int, res *results) error {
	const script = "tools/k8s/build.sh"
	if _, err := os.Stat(script); err != nil {
		return fmt.Errorf("%s: %w (run from the repository root)", script, err)
	}
	if out, err := exec.CommandContext(ctx, script, "--print-dir").Output(); err != nil {
		return fmt.Errorf("the test control plane is not built (%v): run `make k8s-tools` first (about 15 min cold); this bench times only the cached build", err)
	} else {
		res.binDir = lastLine(out)
	}
	for range runs {
		began := time.Now()
		out, err := exec.CommandContext(ctx, script).Output()
		d := time.Since(began)
		if err != nil {
			return fmt.Errorf("%s: %w", script, err)
		}
		if dir := lastLine(out); dir != res.binDir {
			return fmt.Errorf("%s printed %s, --print-dir %s", script, dir, res.binDir)
		}
		res.warmBuild = append(res.warmBuild, d)
	}

	const readme = "internal/k8stest/README.md"
	b, err := os.ReadFile(readme)
	if err != nil {
		return err
	}
	res.coldSource = readme
	date := regexp.MustCompile(`\d{4}-\d{2}-\d{2}`)
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "Measured on") && strings.Contains(line, "Go ") && res.coldSource == readme {
			if d := date.FindString(line); d != "" {
				res.coldSource += ", measured " + d
			}
		}
		if strings.HasPrefix(line, "| cold build") {
			f := strings.Split(strings.Trim(line, "|"), "|")
			if len(f) == 2 {
				res.cold = append(res.cold, strings.TrimSpace(f[0])+": "+strings.TrimSpace(f[1]))
			}
		}
	}
	return nil
}

// waitClouds waits until aloft sees n clouds, all reachable. (The API's
// capacity of a cloud is its configured one, empty for kubernetes clouds,
// whose capacity the provider reads from the nodes.)
func waitClouds(ctx context.Context, c *client.Client, n int, timeout time.Duration) error {
	var last string
	err := waitUntil(ctx, timeout, 100*time.Millisecond, func() bool {
		cs, err := c.Clouds(ctx)
		if err != nil {
			last = err.Error()
			return false
		}
		ok := 0
		var parts []string
		for _, cl := range cs {
			parts = append(parts, fmt.Sprintf("%s unreachable %q", cl.Name, cl.Unreachable))
			if cl.Unreachable == "" {
				ok++
			}
		}
		last = strings.Join(parts, "; ")
		return len(cs) == n && ok == n
	})
	if err != nil {
		return fmt.Errorf("clouds not ready: %w (%s)", err, last)
	}
	return nil
}

// oneRun applies the deployment, waits until it is ready in aloft and in
// the clusters, scales it to 0, waits until the pods are gone, and deletes it.
func oneRun(ctx context.Context, cfg config, c *client.Client, clusters []*k8stest.Cluster, dep string, res *results) error {
	n := cfg.replicas
	perCloud := (n + len(clusters) - 1) / len(clusters)
	spec := fmt.Sprintf(`name: %s
image: registry.example/bench:1
replicas: %d
resources: {cpu: 1, memory: 1Gi}
placement: {spread: {minClouds: %d, maxPerCloud: %d}}
`, dep, n, len(clusters), perCloud)

	t0 := time.Now()
	if _, _, err := c.ApplyDeployment(ctx, dep, []byte(spec)); err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	res.apply = append(res.apply, time.Since(t0))

	var aloftAt, podsAt, firstAt time.Duration
	var aloftPlaced, podsPlaced string
	err := both(
		func() error {
			var last string
			err := waitUntil(ctx, cfg.timeout, 100*time.Millisecond, func() bool {
				d, err := c.GetDeployment(ctx, dep)
				if err != nil {
					last = err.Error()
					return false
				}
				last = fmt.Sprintf("phase %s, %d ready of %d", d.Status.Phase, d.Status.ReadyReplicas, len(d.Status.Replicas))
				if d.Status.ReadyReplicas != n {
					return false
				}
				aloftAt = time.Since(t0)
				m := map[string]int{}
				for _, r := range d.Status.Replicas {
					m[r.Cloud]++
				}
				var parts []string
				for _, cl := range clusters {
					parts = append(parts, fmt.Sprintf("%s %d", cl.Name, m[cl.Name]))
				}
				aloftPlaced = strings.Join(parts, ", ")
				return true
			})
			if err != nil {
				return fmt.Errorf("aloft: %d ready replicas: %w (%s)", n, err, last)
			}
			return nil
		},
		func() error {
			var last string
			err := waitUntil(ctx, cfg.timeout, 200*time.Millisecond, func() bool {
				total, parts, err := sumPods(ctx, clusters, dep, func(pc podCount) int { return pc.ready })
				if err != nil {
					last = err.Error()
					return false
				}
				last = parts + " ready"
				if total > 0 && firstAt == 0 {
					firstAt = time.Since(t0)
				}
				if total != n {
					return false
				}
				podsAt = time.Since(t0)
				podsPlaced = parts
				return true
			})
			if err != nil {
				return fmt.Errorf("clusters: %d Ready pods: %w (%s)", n, err, last)
			}
			return nil
		})
	if err != nil {
		return err
	}
	res.aloftReady = append(res.aloftReady, aloftAt)
	res.podsReady = append(res.podsReady, podsAt)
	res.firstPod = append(res.firstPod, firstAt)
	res.placements = append(res.placements, "pods "+podsPlaced+" (aloft: "+aloftPlaced+")")
	for _, cl := range clusters {
		if total, _, err := rss(cl); err == nil && total > res.peakRSS[cl.Name] {
			res.peakRSS[cl.Name] = total
		}
	}

	// Scale to 0.
	t1 := time.Now()
	if _, err := c.Scale(ctx, dep, 0); err != nil {
		return fmt.Errorf("scale to 0: %w", err)
	}
	var scaleAloft, scalePods time.Duration
	err = both(
		func() error {
			var last string
			err := waitUntil(ctx, cfg.timeout, 100*time.Millisecond, func() bool {
				d, err := c.GetDeployment(ctx, dep)
				if err != nil {
					last = err.Error()
					return false
				}
				last = fmt.Sprintf("%d replicas", len(d.Status.Replicas))
				return len(d.Status.Replicas) == 0
			})
			scaleAloft = time.Since(t1)
			if err != nil {
				return fmt.Errorf("aloft: no replicas after scale to 0: %w (%s)", err, last)
			}
			return nil
		},
		func() error {
			var last string
			err := waitUntil(ctx, cfg.timeout, 200*time.Millisecond, func() bool {
				total, parts, err := sumPods(ctx, clusters, dep, func(pc podCount) int { return pc.all })
				if err != nil {
					last = err.Error()
					return false
				}
				last = parts + " pods"
				return total == 0
			})
			scalePods = time.Since(t1)
			if err != nil {
				return fmt.Errorf("clusters: pods gone after scale to 0: %w (%s)", err, last)
			}
			return nil
		})
	if err != nil {
		return err
	}
	res.scaleAloft = append(res.scaleAloft, scaleAloft)
	res.scalePods = append(res.scalePods, scalePods)

	// Delete, so that the next run starts from nothing.
	t2 := time.Now()
	if _, err := c.DeleteDeployment(ctx, dep); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	var last string
	err = waitUntil(ctx, cfg.timeout, 100*time.Millisecond, func() bool {
		if _, err := c.GetDeployment(ctx, dep); !client.IsNotFound(err) {
			last = fmt.Sprint("aloft still has it: ", err)
			return false
		}
		for _, cl := range clusters {
			nd, err := countDeployments(ctx, cl, dep)
			if err != nil || nd != 0 {
				last = fmt.Sprintf("%s: %d Deployments (%v)", cl.Name, nd, err)
				return false
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("delete: %w (%s)", err, last)
	}
	res.deleted = append(res.deleted, time.Since(t2))
	return nil
}

// both runs f and g at once and returns their errors.
func both(f, g func() error) error {
	var wg sync.WaitGroup
	var ef, eg error
	wg.Go(func() { ef = f() })
	wg.Go(func() { eg = g() })
	wg.Wait()
	return errors.Join(ef, eg)
}

func printTable(cfg config, res *results) {
	fmt.Printf("\naloft on Kubernetes (internal/k8stest control planes, kwok nodes): %d clusters x %d nodes (cpu %s, memory %s), %d replicas {cpu: 1, memory: 1Gi}, %d runs\n",
		cfg.clusters, cfg.nodes, cfg.nodeCPU, cfg.nodeMemory, cfg.replicas, cfg.runs)
	fmt.Printf("machine: %d CPUs, load average %s at start, %s at end\n\n", runtime.NumCPU(), res.load[0], res.load[1])

	row := func(what string, d []time.Duration) {
		s := slices.Clone(d)
		slices.Sort(s)
		fmt.Printf("%-52s %9s %9s %9s\n", what, sec(s[0]), sec(s[len(s)/2]), sec(s[len(s)-1]))
	}
	fmt.Printf("%-52s %9s %9s %9s\n", "what", "min", "median", "max")
	row(fmt.Sprintf("control plane build, warm (build.sh, %d runs)", len(res.warmBuild)), res.warmBuild)
	for _, s := range res.starts {
		fmt.Printf("%-52s %9s\n", "cluster start "+s.name+" (k8stest.Start, sequential)", sec(s.start))
	}
	row("apply request answered (aloft API)", res.apply)
	row(fmt.Sprintf("apply -> aloft reports %d ready", cfg.replicas), res.aloftReady)
	row("apply -> first pod Ready in a cluster", res.firstPod)
	row(fmt.Sprintf("apply -> %d pods Ready in the clusters", cfg.replicas), res.podsReady)
	row(fmt.Sprintf("scale %d -> 0: aloft reports 0 replicas", cfg.replicas), res.scaleAloft)
	row(fmt.Sprintf("scale %d -> 0: all pods gone from the clusters", cfg.replicas), res.scalePods)
	row("delete (at 0) -> gone in aloft and the clusters", res.deleted)

	fmt.Printf("\ncontrol plane build, cold (from %s; not rebuilt here):\n", res.coldSource)
	for _, c := range res.cold {
		fmt.Printf("  %s\n", c)
	}
	if len(res.cold) == 0 {
		fmt.Println("  no figure found")
	}
	fmt.Printf("\nRSS per cluster (MB)      after start   with its pods of a run (max over runs)\n")
	for _, s := range res.starts {
		fmt.Printf("  %-22s %12d %12d   (at start: %s)\n", s.name, s.rss>>20, res.peakRSS[s.name]>>20, s.rssParts)
	}
	fmt.Println("\nreplicas per cluster:")
	for i, p := range res.placements {
		fmt.Printf("  run %d: %s\n", i+1, p)
	}
}

func sec(d time.Duration) string {
	return fmt.Sprintf("%.3fs", d.Seconds())
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitUntil calls cond every interval until it is true, timeout passes or
// ctx ends.
func waitUntil(ctx context.Context, timeout, interval time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s", timeout)
		}
		select {
		case <-ctx.Done():
		case <-time.After(interval):
		}
	}
	return nil
}
