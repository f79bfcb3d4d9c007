package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/k8stest"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// Kubernetes clouds end to end: real control planes (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler) with kwok nodes, driven by the
// aloft binary through a clouds file, beside a local cloud. kwok's pods
// have no data plane, so requests are not routed to them here; routing is
// tested on local clouds.

const (
	h100Product = "NVIDIA-H100-80GB-HBM3"
	a10Product  = "NVIDIA-A10"
)

type kubeClusters struct {
	a, b *k8stest.Cluster
}

// startKubeClusters starts two clusters: kube-a with a CPU node and an
// H100 node, kube-b with a CPU node and an A10 node.
func startKubeClusters(t *testing.T) kubeClusters {
	t.Helper()
	// Start them one after the other: each start is CPU-bound for a few
	// seconds on a 2-core machine.
	a := k8stest.StartT(t, k8stest.Options{Name: "kube-a", Nodes: []k8stest.Node{
		{Name: "cpu-a", CPU: "16", Memory: "64Gi"},
		{Name: "h100-a", CPU: "32", Memory: "256Gi", GPUs: 8, GPUProduct: h100Product},
	}})
	b := k8stest.StartT(t, k8stest.Options{Name: "kube-b", Nodes: []k8stest.Node{
		{Name: "cpu-b", CPU: "16", Memory: "64Gi"},
		{Name: "a10-b", CPU: "16", Memory: "64Gi", GPUs: 4, GPUProduct: a10Product},
	}})
	return kubeClusters{a: a, b: b}
}

// kubeCloudsFile writes a clouds file with local-a and the two clusters
// (and a cloud whose kubeconfig is garbage), and returns its path.
func kubeCloudsFile(t *testing.T, k kubeClusters) string {
	t.Helper()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad-kubeconfig")
	if err := os.WriteFile(bad, []byte("this: [is not a kubeconfig\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := fmt.Sprintf(`clouds:
- name: local-a
  provider: local
  region: local-east
  capacity: {cpu: 8, memory: 16Gi}
  prices: {cpu: 0.05, memoryGiB: 0.005}
- name: kube-a
  provider: kubernetes
  region: us-east-1
  prices: {cpu: 0.03, memoryGiB: 0.003, gpu: {h100: 2.5}}
  kubernetes:
    kubeconfig: %s
    context: %s
    unavailableAfter: 3s
    gpus: {h100: {product: %s}}
- name: kube-b
  provider: kubernetes
  region: eu-west-1
  prices: {cpu: 0.04, memoryGiB: 0.004, gpu: {a10: 0.8, l4: 0.6}}
  kubernetes:
    kubeconfig: %s
    context: %s
    unavailableAfter: 3s
    gpus: {a10: {product: %s}, l4: {product: NVIDIA-L4}}
- name: kube-bad
  provider: kubernetes
  region: us-west-2
  prices: {cpu: 0.001}
  kubernetes: {kubeconfig: %s, context: nowhere}
`, k.a.Kubeconfig, k.a.Context, h100Product, k.b.Kubeconfig, k.b.Context, a10Product, bad)
	path := filepath.Join(dir, "clouds.yaml")
	if err := os.WriteFile(path, []byte(f), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func kubeDeployments(t *testing.T, c *k8stest.Cluster, dep string) []appsv1.Deployment {
	t.Helper()
	ds, err := c.Deployments(context.Background(), "default", "aloft.dev/deployment="+dep)
	if err != nil {
		t.Fatalf("%s: list deployments: %v", c.Name, err)
	}
	return ds
}

// kubePods lists the live (not terminating) pods of an aloft deployment.
func kubePods(t *testing.T, c *k8stest.Cluster, dep string) []corev1.Pod {
	t.Helper()
	ps, err := c.Pods(context.Background(), "default", "aloft.dev/deployment="+dep)
	if err != nil {
		t.Fatalf("%s: list pods: %v", c.Name, err)
	}
	var out []corev1.Pod
	for _, p := range ps {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

func readyPods(ps []corev1.Pod) int {
	n := 0
	for i := range ps {
		if k8stest.PodReady(&ps[i]) {
			n++
		}
	}
	return n
}

// A deployment spread over a local cloud and two clusters; scaled up and
// down; a cloud with a bad kubeconfig is unreachable with the reason and
// takes nothing, while the others work; the rendered manifests are what
// aloft applied (kubectl diff finds nothing).
func TestKubernetesHybridSpread(t *testing.T) {
	k := startKubeClusters(t)
	e := newEnv(t, "--clouds", kubeCloudsFile(t, k))
	e.mustAloft("image", "import", exampleImage)

	var clouds []v1.Cloud
	if err := json.Unmarshal([]byte(e.mustAloft("clouds", "-o", "json")), &clouds); err != nil {
		t.Fatal(err)
	}
	for _, c := range clouds {
		if c.Name == "kube-bad" && !strings.Contains(c.Unreachable, "bad-kubeconfig") {
			t.Errorf("kube-bad: unreachable %q, want the kubeconfig named", c.Unreachable)
		}
		if c.Name != "kube-bad" && c.Unreachable != "" {
			t.Errorf("%s unreachable: %s", c.Name, c.Unreachable)
		}
		if c.Name == "kube-a" && (c.Capacity.CPU != 48 || c.Capacity.GPUs["h100"] != 8) {
			t.Errorf("kube-a capacity %+v, want its nodes' 48 CPU and 8 h100", c.Capacity)
		}
	}

	spec := e.writeSpec("hybrid", `name: hybrid
image: hello-world:latest
replicas: 3
resources: {cpu: 1, memory: 1Gi}
placement: {spread: {minClouds: 3}}
health: {path: /healthz, periodSeconds: 1, timeoutSeconds: 1}
`)
	e.mustAloft("apply", "-f", spec)
	dep := e.waitRolledOut("hybrid", 3, 90*time.Second)
	if got := cloudsOf(dep); got["local-a"] != 1 || got["kube-a"] != 1 || got["kube-b"] != 1 {
		t.Fatalf("replicas per cloud %v, want one on each of local-a, kube-a, kube-b", got)
	}
	for _, c := range []*k8stest.Cluster{k.a, k.b} {
		ds := kubeDeployments(t, c, "hybrid")
		if len(ds) != 1 || ds[0].Name != "hybrid-r1" || *ds[0].Spec.Replicas != 1 || ds[0].Labels["aloft.dev/revision"] != "1" {
			t.Fatalf("%s: deployments %+v, want hybrid-r1 with 1 replica", c.Name, ds)
		}
		if ps := kubePods(t, c, "hybrid"); readyPods(ps) != 1 {
			t.Fatalf("%s: %d ready pods, want 1", c.Name, readyPods(ps))
		}
	}
	// No request is sent: the gateway would route some to kwok's pod IPs,
	// which have no data plane (routing is tested on local clouds).

	// Scale up: the extra replicas go to the cheapest cloud (kube-a).
	e.mustAloft("scale", "hybrid", "--replicas", "6")
	dep = e.waitRolledOut("hybrid", 6, 90*time.Second)
	if got := cloudsOf(dep); got["kube-a"] != 4 {
		t.Errorf("after scaling to 6: %v, want 4 on kube-a (cheapest)", got)
	}
	e.waitFor("6 pods over the clusters", 60*time.Second, func() (bool, string) {
		na, nb := readyPods(kubePods(t, k.a, "hybrid")), readyPods(kubePods(t, k.b, "hybrid"))
		return na == 4 && nb == 1, fmt.Sprintf("kube-a %d, kube-b %d", na, nb)
	})
	e.mustAloft("scale", "hybrid", "--replicas", "3")
	dep = e.waitRolledOut("hybrid", 3, 90*time.Second)
	if got := cloudsOf(dep); got["local-a"] != 1 || got["kube-a"] != 1 || got["kube-b"] != 1 {
		t.Errorf("after scaling back to 3: %v, want one per cloud", got)
	}
	e.waitFor("pods back to one per cluster", 60*time.Second, func() (bool, string) {
		na, nb := len(kubePods(t, k.a, "hybrid")), len(kubePods(t, k.b, "hybrid"))
		return na == 1 && nb == 1, fmt.Sprintf("kube-a %d, kube-b %d", na, nb)
	})

	// aloft render for kube-b, diffed against what aloft applied there.
	rendered := e.mustAloft("render", "-f", spec, "--cloud", "kube-b", "--replicas", "1")
	kubectl := kubectlPath(t)
	diff := exec.Command(kubectl, "--kubeconfig", k.b.Kubeconfig, "--context", k.b.Context, "diff", "--server-side", "--field-manager=aloft", "-f", "-")
	diff.Stdin = strings.NewReader(rendered)
	out, err := diff.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl diff of the rendered manifests against kube-b: %v\n%s\nrendered:\n%s", err, out, rendered)
	}
	// And they apply cleanly: the objects do not change.
	before := kubeDeployments(t, k.b, "hybrid")[0].ObjectMeta
	apply := exec.Command(kubectl, "--kubeconfig", k.b.Kubeconfig, "--context", k.b.Context, "apply", "--server-side", "--field-manager=aloft", "-f", "-")
	apply.Stdin = strings.NewReader(rendered)
	if out, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	if after := kubeDeployments(t, k.b, "hybrid")[0].ObjectMeta; after.UID != before.UID {
		t.Errorf("deployment replaced by kubectl apply of the render")
	}

	// Delete: everything aloft made goes, by label.
	e.mustAloft("delete", "hybrid")
	e.waitFor("objects removed from the clusters", 60*time.Second, func() (bool, string) {
		n := 0
		for _, c := range []*k8stest.Cluster{k.a, k.b} {
			n += len(kubeDeployments(t, c, "hybrid")) + len(kubePods(t, c, "hybrid"))
		}
		return n == 0, fmt.Sprint(n, " objects left")
	})
}

// GPU replicas land only on nodes with that GPU; a rolling update to a new
// image replaces the Deployment of revision 1 with that of revision 2; a GPU
// type no node has leaves the deployment pending with the reason.
func TestKubernetesGPUAndRollingUpdate(t *testing.T) {
	k := startKubeClusters(t)
	e := newEnv(t, "--clouds", kubeCloudsFile(t, k))
	spec := func(image, gpu string) string {
		return e.writeSpec("llm", fmt.Sprintf(`name: llm
image: %s
replicas: 2
resources: {cpu: 4, memory: 16Gi, gpu: {type: %s, count: 1}}
`, image, gpu))
	}
	e.mustAloft("apply", "-f", spec("registry.example/llm:1", "h100"))
	dep := e.waitRolledOut("llm", 2, 90*time.Second)
	if got := cloudsOf(dep); got["kube-a"] != 2 {
		t.Fatalf("replicas per cloud %v, want both on kube-a (the only H100s)", got)
	}
	for _, p := range kubePods(t, k.a, "llm") {
		if p.Spec.NodeName != "h100-a" {
			t.Errorf("pod %s on node %s, want h100-a", p.Name, p.Spec.NodeName)
		}
	}

	// Rolling update to a new image.
	e.mustAloft("apply", "-f", spec("registry.example/llm:2", "h100"))
	e.waitFor("revision 2 rolled out on kube-a", 90*time.Second, func() (bool, string) {
		ds := kubeDeployments(t, k.a, "llm")
		d := e.get("llm")
		ok := len(ds) == 1 && ds[0].Name == "llm-r2" && d.Revision == 2 && d.Status.Phase == v1.PhaseReady && d.Status.ReadyReplicas == 2
		names := []string{}
		for _, x := range ds {
			names = append(names, x.Name)
		}
		return ok, fmt.Sprintf("deployments %v, aloft revision %d phase %s ready %d", names, d.Revision, d.Status.Phase, d.Status.ReadyReplicas)
	})
	ds := kubeDeployments(t, k.a, "llm")
	if img := ds[0].Spec.Template.Spec.Containers[0].Image; img != "registry.example/llm:2" {
		t.Errorf("image %s, want registry.example/llm:2", img)
	}
	e.waitFor("old pods gone", 60*time.Second, func() (bool, string) {
		ps := kubePods(t, k.a, "llm")
		for _, p := range ps {
			if p.Labels["aloft.dev/revision"] != "2" {
				return false, "pod " + p.Name + " of revision " + p.Labels["aloft.dev/revision"]
			}
		}
		return len(ps) == 2, fmt.Sprint(len(ps), " pods")
	})

	// l4 is mapped on kube-b, but no node has it: nothing can be placed.
	e.mustAloft("apply", "-f", e.writeSpec("l4", `name: l4
image: registry.example/llm:1
replicas: 1
resources: {gpu: {type: l4, count: 1}}
`))
	e.waitFor("PlacementFailed naming the GPU", 30*time.Second, func() (bool, string) {
		evs := e.mustAloft("events", "l4")
		return strings.Contains(evs, "PlacementFailed") && strings.Contains(evs, "l4"), evs
	})
	if d := e.get("l4"); d.Status.ReadyReplicas != 0 || len(kubePods(t, k.b, "l4")) != 0 {
		t.Errorf("l4: %d ready, pods %d", d.Status.ReadyReplicas, len(kubePods(t, k.b, "l4")))
	}
}

// A cluster's API server stops: within its unavailableAfter its replicas
// are replaced on other clouds and it shows as unreachable. Scaled up
// meanwhile, so that its replicas are wanted again when it returns: then
// nothing is duplicated and none of its pods is deleted.
func TestKubernetesClusterOutage(t *testing.T) {
	k := startKubeClusters(t)
	e := newEnv(t, "--clouds", kubeCloudsFile(t, k))
	e.mustAloft("apply", "-f", e.writeSpec("svc", `name: svc
image: registry.example/svc:1
replicas: 2
resources: {cpu: 1, memory: 1Gi}
placement: {clouds: [kube-a, kube-b]}
`))
	dep := e.waitRolledOut("svc", 2, 90*time.Second)
	if got := cloudsOf(dep); got["kube-a"] != 2 {
		t.Fatalf("replicas per cloud %v, want both on kube-a (cheapest)", got)
	}
	podsBefore := map[string]bool{}
	for _, p := range kubePods(t, k.a, "svc") {
		podsBefore[p.Name] = true
	}

	stopped := time.Now()
	if err := k.a.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	e.waitFor("replicas moved to kube-b", 60*time.Second, func() (bool, string) {
		d := e.get("svc")
		got := cloudsOf(d)
		return got["kube-b"] == 2 && d.Status.ReadyReplicas == 2, fmt.Sprint(got, " ready ", d.Status.ReadyReplicas)
	})
	moved := time.Since(stopped)
	t.Logf("replicas moved off kube-a and ready on kube-b %v after its API server was stopped (unavailableAfter 3s)", moved.Round(100*time.Millisecond))
	if moved < 3*time.Second {
		t.Errorf("replicas moved after %v, before unavailableAfter (3s) passed", moved)
	}
	out := e.mustAloft("clouds")
	if !strings.Contains(out, "Unreachable") {
		t.Errorf("aloft clouds does not show kube-a unreachable:\n%s", out)
	}
	// Wanted again: 4 replicas, two of which kube-a still runs.
	e.mustAloft("scale", "svc", "--replicas", "4")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := k.a.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	e.waitFor("kube-a's 2 replicas back, 2 on kube-b", 90*time.Second, func() (bool, string) {
		d := e.get("svc")
		got := cloudsOf(d)
		return got["kube-a"] == 2 && got["kube-b"] == 2 && d.Status.ReadyReplicas == 4, fmt.Sprint(got, " ready ", d.Status.ReadyReplicas)
	})
	e.waitFor("pods settle: 2 per cluster", 60*time.Second, func() (bool, string) {
		pa, pb := kubePods(t, k.a, "svc"), kubePods(t, k.b, "svc")
		return len(pa) == 2 && len(pb) == 2 && readyPods(pa) == 2 && readyPods(pb) == 2, fmt.Sprintf("kube-a %d, kube-b %d", len(pa), len(pb))
	})
	var after []string
	for _, p := range kubePods(t, k.a, "svc") {
		after = append(after, p.Name)
		if !podsBefore[p.Name] {
			t.Errorf("kube-a pod %s is new: a wanted pod was deleted and replaced", p.Name)
		}
	}
	sort.Strings(after)
	if evs := e.mustAloft("events", "svc"); !strings.Contains(evs, "ReplicaUnreachable") {
		t.Errorf("no ReplicaUnreachable event:\n%s", evs)
	}
}

func kubectlPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/lib/google-cloud-sdk/bin/kubectl.1.33", "/usr/bin/kubectl"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed")
	}
	return p
}
