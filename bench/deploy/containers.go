package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/client"
)

// containerBench compares one replica of the example service run as a
// container (from its image, cold and warm root filesystem cache) with the
// same static binary run as a process: time from apply to ready, and the
// memory each adds (PSS and RSS of every process the replica consists of).
func containerBench(runs int, output string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("containers need root")
	}
	tmp, err := os.MkdirTemp("", "aloft-bench-containers-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "bin")
	// The image needs a static binary; the process runs the same one.
	if err := buildAll(bin, []string{"CGO_ENABLED=0"}, [2]string{"aloft", "./cmd/aloft"}, [2]string{"aloft-completions", "./examples/completions"}, [2]string{"mkimage", "./examples/mkimage"}); err != nil {
		return err
	}
	// One image per run, each with its own digest (a different env value),
	// so that every run's first start unpacks a root filesystem (cold).
	var archives []string
	for i := range runs {
		out := filepath.Join(tmp, fmt.Sprintf("bench-%d.tar", i))
		cmd := exec.Command(filepath.Join(bin, "mkimage"), "-bin", filepath.Join(bin, "aloft-completions"),
			"-name", fmt.Sprintf("bench:run-%d", i), "-port", "8080", "-env", "BENCH_RUN="+strconv.Itoa(i), "-o", out)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("mkimage: %w", err)
		}
		archives = append(archives, out)
	}

	srv, err := startServer(tmp, bin)
	if err != nil {
		return err
	}
	defer srv.stop()
	c, ctx := srv.c, context.Background()
	for _, a := range archives {
		f, err := os.Open(a)
		if err != nil {
			return err
		}
		_, err = c.ImportImageFile(ctx, filepath.Base(a), f)
		f.Close()
		if err != nil {
			return err
		}
	}

	const health = "health: {path: /healthz}\nresources: {cpu: \"0.5\", memory: 256Mi}\n"
	processSpec := "name: bench-proc\ncommand: [aloft-completions]\nreplicas: 1\n" + health
	imageSpec := func(i int) string {
		return fmt.Sprintf("name: bench-ctr\nimage: bench:run-%d\nport: 8080\nreplicas: 1\n%s", i, health)
	}

	var proc, cold, warm []time.Duration
	var procMem, ctrMem, runcMem memory
	for i := range runs {
		d, mem, err := applyReady(ctx, c, "bench-proc", processSpec, func(id string) (memory, error) { return replicaMemory(id, false) })
		if err != nil {
			return err
		}
		proc, procMem = append(proc, d), procMem.add(mem)
		d, _, err = applyReady(ctx, c, "bench-ctr", imageSpec(i), nil)
		if err != nil {
			return err
		}
		cold = append(cold, d)
		var runcPart memory
		d, mem, err = applyReady(ctx, c, "bench-ctr", imageSpec(i), func(id string) (memory, error) {
			app, err := replicaMemory(id, true)
			if err != nil {
				return memory{}, err
			}
			runcPart, err = runcMemory(id)
			return app, err
		})
		if err != nil {
			return err
		}
		warm, ctrMem, runcMem = append(warm, d), ctrMem.add(mem), runcMem.add(runcPart)
	}
	n := float64(runs)
	results := []result{
		summarize("process replica", proc),
		summarize("container, cold rootfs", cold),
		summarize("container, warm rootfs", warm),
	}
	mem := map[string]memory{
		"process replica (app)":     procMem.div(n),
		"container replica (app)":   ctrMem.div(n),
		"container replica (runc)":  runcMem.div(n),
		"container adds (app+runc)": ctrMem.div(n).plus(runcMem.div(n)).minus(procMem.div(n)),
	}
	if output == "json" {
		return json.NewEncoder(os.Stdout).Encode(map[string]any{"results": results, "memoryKiB": mem, "runs": runs,
			"ratioColdP50": results[1].P50 / results[0].P50, "ratioWarmP50": results[2].P50 / results[0].P50})
	}
	fmt.Printf("\napply -> 1 ready replica of the example service, process vs container of the same static binary (%d runs)\n", runs)
	fmt.Printf("%-28s %8s %8s %8s %10s\n", "target", "p50", "min", "max", "vs process")
	for _, r := range results {
		fmt.Printf("%-28s %7.3fs %7.3fs %7.3fs %9.2fx\n", r.Target, r.P50, r.Min, r.Max, r.P50/results[0].P50)
	}
	fmt.Printf("\nmemory per replica, mean of %d runs (KiB)\n%-28s %10s %10s\n", runs, "", "PSS", "RSS")
	for _, k := range []string{"process replica (app)", "container replica (app)", "container replica (runc)", "container adds (app+runc)"} {
		fmt.Printf("%-28s %10.0f %10.0f\n", k, mem[k].PSS, mem[k].RSS)
	}
	return nil
}

// applyReady applies spec, waits for its one replica to be ready, measures
// it with probe (if set), deletes the deployment and waits until it is gone.
func applyReady(ctx context.Context, c *client.Client, name, spec string, probe func(id string) (memory, error)) (time.Duration, memory, error) {
	start := time.Now()
	if _, _, err := c.ApplyDeployment(ctx, name, []byte(spec)); err != nil {
		return 0, memory{}, err
	}
	var dep v1.Deployment
	err := waitUntil(60*time.Second, func() bool {
		d, err := c.GetDeployment(ctx, name)
		dep = d
		return err == nil && d.Status.Phase == v1.PhaseReady && d.Status.ReadyReplicas == 1
	})
	if err != nil {
		return 0, memory{}, fmt.Errorf("%s not ready: %w (%+v)", name, err, dep.Status.Conditions)
	}
	took := time.Since(start)
	var mem memory
	if probe != nil {
		if mem, err = probe(dep.Status.Replicas[0].ID); err != nil {
			return 0, memory{}, err
		}
	}
	if _, err := c.DeleteDeployment(ctx, name); err != nil {
		return 0, memory{}, err
	}
	err = waitUntil(60*time.Second, func() bool {
		_, err := c.GetDeployment(ctx, name)
		return client.IsNotFound(err)
	})
	return took, mem, err
}

// memory is proportional and resident set sizes in KiB.
type memory struct{ PSS, RSS float64 }

func (m memory) add(o memory) memory   { return memory{m.PSS + o.PSS, m.RSS + o.RSS} }
func (m memory) plus(o memory) memory  { return m.add(o) }
func (m memory) minus(o memory) memory { return memory{m.PSS - o.PSS, m.RSS - o.RSS} }
func (m memory) div(n float64) memory  { return memory{m.PSS / n, m.RSS / n} }

// replicaMemory measures the app process of replica id: the process whose
// environment has ALOFT_REPLICA_ID=id (inside a container too: /proc shows
// it from the host).
func replicaMemory(id string, container bool) (memory, error) {
	want := []byte("ALOFT_REPLICA_ID=" + id + "\x00")
	for _, pid := range pids() {
		env, err := os.ReadFile("/proc/" + pid + "/environ")
		if err != nil || !bytes.Contains(env, want) {
			continue
		}
		cmd, _ := os.ReadFile("/proc/" + pid + "/cmdline")
		if !bytes.Contains(cmd, []byte("aloft-completions")) {
			continue
		}
		return smapsRollup(pid)
	}
	return memory{}, fmt.Errorf("no process of replica %s found", id)
}

// runcMemory measures the runc process that runs container id.
func runcMemory(id string) (memory, error) {
	for _, pid := range pids() {
		cmd, err := os.ReadFile("/proc/" + pid + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")
		if len(args) > 2 && strings.HasSuffix(args[0], "runc") && args[len(args)-1] == id && strings.Contains(string(cmd), "\x00run\x00") {
			return smapsRollup(pid)
		}
	}
	return memory{}, fmt.Errorf("no runc process for %s", id)
}

func pids() []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, e.Name())
		}
	}
	return out
}

func smapsRollup(pid string) (memory, error) {
	b, err := os.ReadFile("/proc/" + pid + "/smaps_rollup")
	if err != nil {
		return memory{}, err
	}
	var m memory
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "Pss:":
			m.PSS = v
		case "Rss:":
			m.RSS = v
		}
	}
	return m, nil
}
