package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/aloft-dev/aloft/internal/k8stest"
)

// What the bench reads from the clusters' REST API: the pods and
// Deployments of one aloft deployment, in the namespace "default".

type kubeMeta struct {
	Name     string  `json:"name"`
	Deletion *string `json:"deletionTimestamp"`
}

type kubePod struct {
	Metadata kubeMeta `json:"metadata"`
	Status   struct {
		Conditions []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
		} `json:"conditions"`
	} `json:"status"`
}

func (p kubePod) ready() bool {
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

type kubeList[T any] struct {
	Items []T `json:"items"`
}

// podCount is what one cluster runs of a deployment.
type podCount struct {
	all   int // every pod object, terminating ones included
	live  int // not terminating
	ready int // not terminating and Ready
}

func selector(dep string) string {
	return "labelSelector=" + url.QueryEscape("aloft.dev/deployment="+dep)
}

func countPods(ctx context.Context, c *k8stest.Cluster, dep string) (podCount, error) {
	var l kubeList[kubePod]
	if err := c.Do(ctx, "GET", "/api/v1/namespaces/default/pods?"+selector(dep), nil, &l); err != nil {
		return podCount{}, fmt.Errorf("%s: list pods: %w", c.Name, err)
	}
	n := podCount{all: len(l.Items)}
	for _, p := range l.Items {
		if p.Metadata.Deletion == nil {
			n.live++
			if p.ready() {
				n.ready++
			}
		}
	}
	return n, nil
}

func countDeployments(ctx context.Context, c *k8stest.Cluster, dep string) (int, error) {
	var l kubeList[struct {
		Metadata kubeMeta `json:"metadata"`
	}]
	if err := c.Do(ctx, "GET", "/apis/apps/v1/namespaces/default/deployments?"+selector(dep), nil, &l); err != nil {
		return 0, fmt.Errorf("%s: list deployments: %w", c.Name, err)
	}
	return len(l.Items), nil
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
