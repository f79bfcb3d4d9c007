package k8stest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aloft-dev/aloft/internal/k8stest"
)

const (
	h100 = "NVIDIA-H100-80GB-HBM3"
	a100 = "NVIDIA-A100-SXM4-80GB"
)

type condition struct{ Type, Status, Reason, Message string }

type pod struct {
	Metadata struct {
		Name              string
		DeletionTimestamp *string
	}
	Spec   struct{ NodeName string }
	Status struct {
		Phase      string
		Conditions []condition
	}
}

func (p pod) cond(typ string) condition {
	for _, c := range p.Status.Conditions {
		if c.Type == typ {
			return c
		}
	}
	return condition{}
}

type podList struct{ Items []pod }

type deployment struct {
	Spec   struct{ Replicas int }
	Status struct{ AvailableReplicas, ReadyReplicas int }
}

func gpuDeployment(name string, replicas, gpus int, product string) map[string]any {
	return map[string]any{
		"apiVersion": "apps/v1",
		"kind":       "Deployment",
		"metadata":   map[string]any{"name": name, "namespace": "default"},
		"spec": map[string]any{
			"replicas": replicas,
			"selector": map[string]any{"matchLabels": map[string]string{"app": name}},
			"template": map[string]any{
				"metadata": map[string]any{"labels": map[string]string{"app": name}},
				"spec": map[string]any{
					"nodeSelector": map[string]string{"nvidia.com/gpu.product": product},
					"containers": []map[string]any{{
						"name":  "model",
						"image": "registry.example/model:1",
						"resources": map[string]any{
							"limits": map[string]string{"nvidia.com/gpu": fmt.Sprint(gpus), "cpu": "4", "memory": "16Gi"},
						},
					}},
				},
			},
		},
	}
}

func listPods(ctx context.Context, c *k8stest.Cluster, selector string) ([]pod, error) {
	var l podList
	err := c.Do(ctx, "GET", "/api/v1/namespaces/default/pods?labelSelector="+url.QueryEscape(selector), nil, &l)
	return l.Items, err
}

// waitReadyPods waits until exactly n live pods match selector, all Ready on node.
func waitReadyPods(t *testing.T, c *k8stest.Cluster, selector string, n int, node string) []pod {
	t.Helper()
	var pods []pod
	err := k8stest.Poll(t.Context(), 90*time.Second, 100*time.Millisecond, fmt.Sprintf("%d ready pods %s", n, selector), func(ctx context.Context) (bool, error) {
		all, err := listPods(ctx, c, selector)
		if err != nil {
			return false, err
		}
		pods = pods[:0]
		for _, p := range all {
			if p.Metadata.DeletionTimestamp == nil {
				pods = append(pods, p)
			}
		}
		if len(pods) != n {
			return false, nil
		}
		for _, p := range pods {
			if p.cond("Ready").Status != "True" || p.Status.Phase != "Running" || p.Spec.NodeName != node {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("%v; pods: %+v", err, pods)
	}
	return pods
}

// requireBins mirrors StartT's skip rule for tests that call Start directly.
func requireBins(t *testing.T) {
	t.Helper()
	if _, err := k8stest.BinDir(); err != nil {
		if os.Getenv("ALOFT_K8S_REQUIRE") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

// assertGone checks that no process with these PIDs exists any more (or
// that the PID now belongs to something else), and that no process refers
// to the cluster's state directory.
func assertGone(t *testing.T, pids map[string]int, dir string) {
	t.Helper()
	if len(pids) != 5 {
		t.Errorf("expected 5 processes, got %v", pids)
	}
	for name, pid := range pids {
		err := syscall.Kill(pid, 0)
		if errors.Is(err, syscall.ESRCH) {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if bytes.Contains(cmdline, []byte(name)) {
			t.Errorf("%s (pid %d) still running after Stop", name, pid)
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		cmdline, err := os.ReadFile(f)
		if err == nil && bytes.Contains(cmdline, []byte(dir+"/")) {
			t.Errorf("orphan process %s: %s", f, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
		}
	}
}

func TestCluster(t *testing.T) {
	c := k8stest.StartT(t, k8stest.Options{
		Name: "gpu-test",
		Nodes: []k8stest.Node{
			{Name: "gpu-h100", GPUs: 4, GPUProduct: h100},
			{Name: "gpu-a100", GPUs: 8, GPUProduct: a100, CPU: "64", Memory: "512Gi",
				Labels: map[string]string{"topology.kubernetes.io/zone": "zone-a"}},
		},
	})
	ctx := t.Context()
	if rss, err := c.RSS(); err == nil {
		var total int64
		for _, b := range rss {
			total += b
		}
		t.Logf("RSS after start: %d MiB total %v", total>>20, rss)
	}

	t.Run("nodes", func(t *testing.T) {
		var nodes struct {
			Items []struct {
				Metadata struct {
					Name   string
					Labels map[string]string
				}
				Status struct {
					Capacity, Allocatable map[string]string
					Conditions            []condition
				}
			}
		}
		if err := c.Do(ctx, "GET", "/api/v1/nodes", nil, &nodes); err != nil {
			t.Fatal(err)
		}
		want := map[string][2]string{"gpu-h100": {h100, "4"}, "gpu-a100": {a100, "8"}}
		if len(nodes.Items) != len(want) {
			t.Fatalf("got %d nodes, want %d", len(nodes.Items), len(want))
		}
		for _, n := range nodes.Items {
			w := want[n.Metadata.Name]
			if got := n.Metadata.Labels["nvidia.com/gpu.product"]; got != w[0] {
				t.Errorf("%s: product label %q, want %q", n.Metadata.Name, got, w[0])
			}
			if n.Status.Capacity["nvidia.com/gpu"] != w[1] || n.Status.Allocatable["nvidia.com/gpu"] != w[1] {
				t.Errorf("%s: gpu capacity %q allocatable %q, want %s", n.Metadata.Name,
					n.Status.Capacity["nvidia.com/gpu"], n.Status.Allocatable["nvidia.com/gpu"], w[1])
			}
			ready := false
			for _, cond := range n.Status.Conditions {
				ready = ready || cond.Type == "Ready" && cond.Status == "True"
			}
			if !ready {
				t.Errorf("%s not Ready: %+v", n.Metadata.Name, n.Status.Conditions)
			}
		}
	})

	t.Run("gpu-deployment", func(t *testing.T) {
		start := time.Now()
		// 2 replicas x 2 GPUs fill the 4-GPU H100 node.
		if err := c.Do(ctx, "POST", "/apis/apps/v1/namespaces/default/deployments", gpuDeployment("gpu-demo", 2, 2, h100), nil); err != nil {
			t.Fatal(err)
		}
		waitReadyPods(t, c, "app=gpu-demo", 2, "gpu-h100")
		err := k8stest.Poll(ctx, 60*time.Second, 100*time.Millisecond, "deployment available", func(ctx context.Context) (bool, error) {
			var d deployment
			err := c.Do(ctx, "GET", "/apis/apps/v1/namespaces/default/deployments/gpu-demo", nil, &d)
			return err == nil && d.Status.AvailableReplicas == 2, err
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("deployment with 2 GPU pods Ready and Available in %v", time.Since(start).Round(time.Millisecond))
	})

	t.Run("insufficient-gpu", func(t *testing.T) {
		p := map[string]any{
			"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]any{"name": "too-big", "namespace": "default", "labels": map[string]string{"app": "too-big"}},
			"spec": map[string]any{"containers": []map[string]any{{
				"name": "model", "image": "registry.example/model:1",
				"resources": map[string]any{"limits": map[string]string{"nvidia.com/gpu": "16"}},
			}}},
		}
		if err := c.Do(ctx, "POST", "/api/v1/namespaces/default/pods", p, nil); err != nil {
			t.Fatal(err)
		}
		var got pod
		err := k8stest.Poll(ctx, 60*time.Second, 100*time.Millisecond, "pod too-big unschedulable", func(ctx context.Context) (bool, error) {
			if err := c.Do(ctx, "GET", "/api/v1/namespaces/default/pods/too-big", nil, &got); err != nil {
				return false, err
			}
			s := got.cond("PodScheduled")
			return s.Status == "False" && s.Reason == "Unschedulable", nil
		})
		if err != nil {
			t.Fatal(err)
		}
		msg := got.cond("PodScheduled").Message
		if !strings.Contains(msg, "Insufficient nvidia.com/gpu") {
			t.Errorf("PodScheduled message %q lacks Insufficient nvidia.com/gpu", msg)
		}
		if got.Status.Phase != "Pending" || got.Spec.NodeName != "" {
			t.Errorf("phase %q node %q, want Pending and unscheduled", got.Status.Phase, got.Spec.NodeName)
		}
		t.Logf("too-big: %s", msg)
	})

	t.Run("kubectl", func(t *testing.T) {
		kubectl := findKubectl(t)
		out, err := exec.CommandContext(ctx, kubectl, "--kubeconfig", c.Kubeconfig, "--context", c.Context, "get", "nodes", "-o", "name").CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl get nodes: %v\n%s", err, out)
		}
		for _, n := range []string{"node/gpu-a100", "node/gpu-h100"} {
			if !strings.Contains(string(out), n) {
				t.Errorf("kubectl get nodes: %q lacks %s", out, n)
			}
		}
		out, err = exec.CommandContext(ctx, kubectl, "--kubeconfig", c.Kubeconfig, "--context", c.Context,
			"get", "deployment", "gpu-demo", "-o", "jsonpath={.status.availableReplicas}").Output()
		if err != nil || strings.TrimSpace(string(out)) != "2" {
			t.Errorf("kubectl get deployment: %q, %v", out, err)
		}
	})

	t.Run("rbac", func(t *testing.T) {
		// Without a binding a static user is forbidden.
		err := c.DoAs(ctx, "nobody", "GET", "/api/v1/namespaces/default/pods", nil, nil)
		if !k8stest.IsStatus(err, 403) {
			t.Fatalf("nobody listing pods: %v, want 403", err)
		}
		viewer, err := c.UserKubeconfig(ctx, "viewer", "", k8stest.ReadOnly)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.DoAs(ctx, "viewer", "GET", "/api/v1/namespaces/default/pods", nil, nil); err != nil {
			t.Errorf("viewer listing pods: %v", err)
		}
		cm := map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "x"}}
		if err := c.DoAs(ctx, "viewer", "POST", "/api/v1/namespaces/default/configmaps", cm, nil); !k8stest.IsStatus(err, 403) {
			t.Errorf("viewer creating a configmap: %v, want 403", err)
		}
		// A namespaced Role.
		if _, err := c.UserKubeconfig(ctx, "editor", "team-a", k8stest.Rule{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"*"}}); err != nil {
			t.Fatal(err)
		}
		if err := c.DoAs(ctx, "editor", "POST", "/api/v1/namespaces/team-a/configmaps", cm, nil); err != nil {
			t.Errorf("editor creating a configmap in team-a: %v", err)
		}
		if err := c.DoAs(ctx, "editor", "POST", "/api/v1/namespaces/default/configmaps", cm, nil); !k8stest.IsStatus(err, 403) {
			t.Errorf("editor creating a configmap in default: %v, want 403", err)
		}
		if _, err := c.UserKubeconfig(ctx, "no-such-user", ""); err == nil {
			t.Error("UserKubeconfig accepted an unknown user")
		}

		kubectl, err := exec.LookPath("kubectl")
		if err != nil {
			return
		}
		out, err := exec.CommandContext(ctx, kubectl, "--kubeconfig", viewer, "--context", c.Context, "get", "pods", "-o", "name").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "pod/too-big") {
			t.Errorf("kubectl as viewer get pods: %v\n%s", err, out)
		}
		out, err = exec.CommandContext(ctx, kubectl, "--kubeconfig", viewer, "--context", c.Context, "create", "configmap", "y").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "forbidden") {
			t.Errorf("kubectl as viewer create configmap: %v, want forbidden\n%s", err, out)
		}
	})

	t.Run("apiserver-restart", func(t *testing.T) {
		before := c.PIDs()
		server := c.Server
		start := time.Now()
		if err := c.StopAPIServer(); err != nil {
			t.Fatal(err)
		}
		t.Logf("StopAPIServer took %v", time.Since(start).Round(time.Millisecond))
		err := c.Do(ctx, "GET", "/apis/apps/v1/namespaces/default/deployments/gpu-demo", nil, nil)
		var ae *k8stest.APIError
		if err == nil || errors.As(err, &ae) {
			t.Fatalf("request with the API server stopped: %v, want a transport error", err)
		}
		t.Logf("with the API server stopped: %v", err)
		if _, ok := c.PIDs()["kube-apiserver"]; ok {
			t.Error("kube-apiserver still listed")
		}

		start = time.Now()
		if err := c.StartAPIServer(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("StartAPIServer took %v", time.Since(start).Round(time.Millisecond))
		if c.Server != server {
			t.Errorf("server moved from %s to %s", server, c.Server)
		}
		after := c.PIDs()
		for _, n := range []string{"etcd", "kube-controller-manager", "kube-scheduler", "kwok"} {
			if before[n] != after[n] {
				t.Errorf("%s pid changed %d -> %d", n, before[n], after[n])
			}
		}
		var d deployment
		if err := c.Do(ctx, "GET", "/apis/apps/v1/namespaces/default/deployments/gpu-demo", nil, &d); err != nil {
			t.Fatalf("deployment after restart: %v", err)
		}
		if d.Spec.Replicas != 2 {
			t.Errorf("replicas %d after restart, want 2", d.Spec.Replicas)
		}
		// The controllers reconnect: scaling down still works.
		start = time.Now()
		if err := c.Do(ctx, "PATCH", "/apis/apps/v1/namespaces/default/deployments/gpu-demo", `{"spec":{"replicas":1}}`, nil); err != nil {
			t.Fatal(err)
		}
		waitReadyPods(t, c, "app=gpu-demo", 1, "gpu-h100")
		t.Logf("scaled to 1 after the restart in %v", time.Since(start).Round(time.Millisecond))
	})

	t.Run("stop", func(t *testing.T) {
		pids, dir := c.PIDs(), c.Dir
		start := time.Now()
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		t.Logf("Stop took %v", time.Since(start).Round(time.Millisecond))
		assertGone(t, pids, dir)
	})
}

func findKubectl(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("kubectl"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/kubectl"); err == nil {
		return "/usr/bin/kubectl"
	}
	t.Skip("kubectl not installed")
	return ""
}

func TestTwoClusters(t *testing.T) {
	requireBins(t)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	names := []string{"east", "west"}
	clusters := make([]*k8stest.Cluster, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			clusters[i], errs[i] = k8stest.Start(ctx, k8stest.Options{
				Name:  name,
				Nodes: []k8stest.Node{{Name: name + "-node", GPUs: 1, GPUProduct: "NVIDIA-L4"}},
			})
		})
	}
	wg.Wait()
	for i, c := range clusters {
		if c != nil {
			t.Cleanup(func() { _ = c.Stop() })
		}
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		t.Logf("%s at %s ready in %v", c.Name, c.Server, c.StartDuration.Round(time.Millisecond))
	}
	east, west := clusters[0], clusters[1]
	if east.Server == west.Server || east.Etcd == west.Etcd || east.Dir == west.Dir || east.Token == west.Token {
		t.Fatalf("clusters share an endpoint: %+v %+v", east, west)
	}

	cm := map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "only-east"}, "data": map[string]string{"k": "v"}}
	if err := east.Do(ctx, "POST", "/api/v1/namespaces/default/configmaps", cm, nil); err != nil {
		t.Fatal(err)
	}
	if err := east.Do(ctx, "GET", "/api/v1/namespaces/default/configmaps/only-east", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := west.Do(ctx, "GET", "/api/v1/namespaces/default/configmaps/only-east", nil, nil); !k8stest.IsStatus(err, 404) {
		t.Errorf("west sees east's configmap: %v", err)
	}
	for _, c := range clusters {
		var nodes struct {
			Items []struct{ Metadata struct{ Name string } }
		}
		if err := c.Do(ctx, "GET", "/api/v1/nodes", nil, &nodes); err != nil {
			t.Fatal(err)
		}
		if len(nodes.Items) != 1 || nodes.Items[0].Metadata.Name != c.Name+"-node" {
			t.Errorf("%s nodes: %+v", c.Name, nodes.Items)
		}
	}
	// Tokens are per cluster.
	if tok, _ := east.UserToken("admin"); tok == west.Token {
		t.Error("same admin token")
	}

	// AddNode after start.
	if err := west.AddNode(ctx, k8stest.Node{Name: "west-cpu", CPU: "8", Memory: "32Gi",
		Taints: []k8stest.Taint{{Key: "aloft.dev/pool", Value: "cpu", Effect: "NoSchedule"}}}); err != nil {
		t.Fatal(err)
	}

	eastPIDs, eastDir := east.PIDs(), east.Dir
	if err := east.Stop(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, eastPIDs, eastDir)
	if _, err := os.Stat(eastDir); !os.IsNotExist(err) {
		t.Errorf("state dir %s left behind: %v", eastDir, err)
	}
	var ready []byte
	if err := west.Do(ctx, "GET", "/readyz", nil, &ready); err != nil || string(ready) != "ok" {
		t.Errorf("west after stopping east: %q %v", ready, err)
	}
	westPIDs, westDir := west.PIDs(), west.Dir
	if err := west.Stop(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, westPIDs, westDir)
}
