package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/aloft-dev/aloft/internal/k8stest"
)

// podCount is what one cluster runs of a deployment.
type podCount struct {
	all   int // every pod object, terminating ones included
	live  int // not terminating
	ready int // not terminating and Ready
}

func countPods(ctx context.Context, c *k8stest.Cluster, dep string) (podCount, error) {
	ps, err := c.Pods(ctx, "default", "aloft.dev/deployment="+dep)
	if err != nil {
		return podCount{}, fmt.Errorf("%s: list pods: %w", c.Name, err)
	}
	n := podCount{all: len(ps)}
	for i := range ps {
		if ps[i].DeletionTimestamp == nil {
			n.live++
			if k8stest.PodReady(&ps[i]) {
				n.ready++
			}
		}
	}
	return n, nil
}

// sumPods adds up what of (pick) the clusters run of a deployment, and says
// it per cluster ("kube-1 34, kube-2 33").
func sumPods(ctx context.Context, clusters []*k8stest.Cluster, dep string, pick func(podCount) int) (int, string, error) {
	total := 0
	var parts []string
	for _, cl := range clusters {
		pc, err := countPods(ctx, cl, dep)
		if err != nil {
			return 0, "", err
		}
		total += pick(pc)
		parts = append(parts, fmt.Sprintf("%s %d", cl.Name, pick(pc)))
	}
	return total, strings.Join(parts, ", "), nil
}

func countDeployments(ctx context.Context, c *k8stest.Cluster, dep string) (int, error) {
	ds, err := c.Deployments(ctx, "default", "aloft.dev/deployment="+dep)
	if err != nil {
		return 0, fmt.Errorf("%s: list deployments: %w", c.Name, err)
	}
	return len(ds), nil
}

// cloudsFile writes a clouds file with the clusters as kubernetes clouds
// (equal prices, one region each) and nothing else, and returns its path.
func cloudsFile(dir string, cs []*k8stest.Cluster) (string, error) {
	regions := []string{"us-east-1", "eu-west-1", "ap-south-1", "us-west-2", "eu-central-1"}
	var b strings.Builder
	b.WriteString("clouds:\n")
	for i, c := range cs {
		fmt.Fprintf(&b, `- name: %s
  provider: kubernetes
  region: %s
  prices: {cpu: 0.03, memoryGiB: 0.003}
  kubernetes:
    kubeconfig: %s
    context: %s
`, c.Name, regions[i%len(regions)], c.Kubeconfig, c.Context)
	}
	path := filepath.Join(dir, "clouds.yaml")
	return path, os.WriteFile(path, []byte(b.String()), 0o600)
}

// rss sums a cluster's resident memory and lists it per component.
func rss(c *k8stest.Cluster) (int64, string, error) {
	m, err := c.RSS()
	if err != nil {
		return 0, "", err
	}
	var total int64
	var parts []string
	for _, name := range k8stest.Binaries {
		if v, ok := m[name]; ok {
			total += v
			parts = append(parts, fmt.Sprintf("%s %d", shortName(name), v>>20))
		}
	}
	return total, strings.Join(parts, ", "), nil
}

func shortName(component string) string {
	return strings.TrimPrefix(component, "kube-")
}

// alive reports which of pids still exist (a zombie counts: it has not
// been waited for).
func alive(pids map[int]string) []string {
	var left []string
	for pid, what := range pids {
		if err := syscall.Kill(pid, 0); err == nil || err == syscall.EPERM {
			left = append(left, fmt.Sprintf("%s (pid %d)", what, pid))
		}
	}
	return left
}
