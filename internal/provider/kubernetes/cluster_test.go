package kubernetes

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/k8stest"
	"github.com/aloft-dev/aloft/internal/provider"
)

const (
	productH100 = "NVIDIA-H100-80GB-HBM3"
	productA100 = "NVIDIA-A100-SXM4-80GB"
)

// testCluster starts a control plane with one 4-GPU H100 node (tainted
// nvidia.com/gpu=present:NoSchedule) and one CPU node.
func testCluster(t *testing.T) (*k8stest.Cluster, kubernetes.Interface) {
	t.Helper()
	c := k8stest.StartT(t, k8stest.Options{
		Name: "aloft-k8s",
		Nodes: []k8stest.Node{
			{Name: "h100-node", CPU: "32", Memory: "256Gi", GPUs: 4, GPUProduct: productH100,
				Taints: []k8stest.Taint{{Key: "nvidia.com/gpu", Value: "present", Effect: "NoSchedule"}}},
			{Name: "cpu-node", CPU: "16", Memory: "64Gi"},
		},
	})
	return clientFor(t, c)
}

// clientFor returns an admin client of a test cluster.
func clientFor(t *testing.T, c *k8stest.Cluster) (*k8stest.Cluster, kubernetes.Interface) {
	t.Helper()
	rc, _, err := restConfig(c.Kubeconfig, c.Context)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return c, cs
}

func clusterCloud(c *k8stest.Cluster, namespace string) v1.CloudConfig {
	return v1.CloudConfig{
		Name: "k8s-test", Provider: v1.ProviderKubernetes, Region: "test",
		Kubernetes: &v1.KubernetesConfig{
			Kubeconfig: c.Kubeconfig, Context: c.Context, Namespace: namespace, UnavailableAfter: "2s",
			GPUs: map[string]v1.KubernetesGPU{
				"h100": {Product: productH100, Tolerations: []v1.KubernetesToleration{{Key: "nvidia.com/gpu", Operator: "Exists", Effect: "NoSchedule"}}},
				"a100": {Product: productA100},
			},
		},
	}
}

// changes records OnChange calls.
type changes struct {
	mu  sync.Mutex
	ids map[string]int
}

func (c *changes) fn(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ids == nil {
		c.ids = map[string]int{}
	}
	c.ids[id]++
}

func (c *changes) count(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ids[id]
}

func startProvider(t *testing.T, cloud v1.CloudConfig, opts Options) *Provider {
	t.Helper()
	p, err := New(cloud, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func spec(name, image string, gpuType string, gpus int) v1.DeploymentSpec {
	s := v1.DeploymentSpec{Name: name, Image: image, Port: 8000, Resources: v1.Resources{CPU: "1", Memory: "1Gi"}}
	if gpus > 0 {
		s.Resources.GPU = &v1.GPU{Type: gpuType, Count: gpus}
	}
	s.Default()
	return s
}

// waitFor polls cond every 50ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		if state != "" {
			last = state
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last: %s", timeout, what, last)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("waiting for %s: %v", what, t.Context().Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func waitState(t *testing.T, p *Provider, id string, state v1.ReplicaState, timeout time.Duration) provider.Instance {
	t.Helper()
	var inst provider.Instance
	waitFor(t, timeout, fmt.Sprintf("replica %s %s", id, state), func() (bool, string) {
		var err error
		inst, err = p.Get(id)
		if err != nil {
			return false, err.Error()
		}
		return inst.State == state, fmt.Sprintf("%s: %s", inst.State, inst.Message)
	})
	return inst
}

func podOf(t *testing.T, inst provider.Instance) string {
	t.Helper()
	var h handle
	if err := json.Unmarshal(inst.Handle, &h); err != nil {
		t.Fatal(err)
	}
	return h.Pod
}

func livePods(t *testing.T, cs kubernetes.Interface, ns, selector string) []corev1.Pod {
	t.Helper()
	l, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range l.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

func getDeployment(t *testing.T, cs kubernetes.Interface, ns, name string) *appsv1.Deployment {
	t.Helper()
	d, err := cs.AppsV1().Deployments(ns).Get(t.Context(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func replicasOf(d *appsv1.Deployment) int32 {
	if d == nil || d.Spec.Replicas == nil {
		return -1
	}
	return *d.Spec.Replicas
}

// waitSettled waits until a Deployment has rolled out n replicas and no
// ReplicaSet of it has other pods left.
func waitSettled(t *testing.T, cs kubernetes.Interface, ns, name string, n int32) {
	t.Helper()
	waitFor(t, 60*time.Second, "Deployment "+name+" settled", func() (bool, string) {
		d := getDeployment(t, cs, ns, name)
		if d == nil {
			return false, "no deployment"
		}
		rss, err := cs.AppsV1().ReplicaSets(ns).List(t.Context(), metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(d.Spec.Selector)})
		if err != nil {
			return false, err.Error()
		}
		var total int32
		for _, rs := range rss.Items {
			total += rs.Status.Replicas
		}
		st := d.Status
		return st.ObservedGeneration >= d.Generation && replicasOf(d) == n && st.UpdatedReplicas == n && st.ReadyReplicas == n && st.Replicas == n && total == n,
			fmt.Sprintf("%+v, pods of all ReplicaSets %d", st, total)
	})
}

func podNames(pods []corev1.Pod) []string {
	var n []string
	for _, p := range pods {
		n = append(n, p.Name)
	}
	slices.Sort(n)
	return n
}

// TestCluster runs the provider against a real control plane (kwok nodes).
// The steps share one cluster and run in order.
func TestCluster(t *testing.T) {
	c, cs := testCluster(t)
	ctx := t.Context()
	cloud := clusterCloud(c, "default")
	var seen changes
	p := startProvider(t, cloud, Options{OnChange: seen.fn})
	llm := spec("llm", "registry.example/llm:1", "h100", 1)
	llmSel := objectSelector("llm", 1)
	replicaOf := func(id string) provider.Replica {
		return provider.Replica{ID: id, Deployment: "llm", Revision: 1, Spec: llm}
	}
	handles := map[string]json.RawMessage{}

	t.Run("gpu-replicas-ready", func(t *testing.T) {
		began := time.Now()
		for _, id := range []string{"llm-a", "llm-b", "llm-c"} {
			inst, err := p.Start(ctx, replicaOf(id))
			if err != nil {
				t.Fatal(err)
			}
			if inst.State != v1.ReplicaStarting {
				t.Errorf("%s right after Start: %s %q", id, inst.State, inst.Message)
			}
		}
		pods := map[string]bool{}
		for _, id := range []string{"llm-a", "llm-b", "llm-c"} {
			inst := waitState(t, p, id, v1.ReplicaReady, 60*time.Second)
			if !strings.HasPrefix(inst.Endpoint, "http://") || !strings.HasSuffix(inst.Endpoint, ":8000") {
				t.Errorf("%s endpoint %q", id, inst.Endpoint)
			}
			pods[podOf(t, inst)] = true
			handles[id] = inst.Handle
		}
		t.Logf("3 GPU replicas Ready %v after the first Start", time.Since(began).Round(time.Millisecond))
		if len(pods) != 3 {
			t.Errorf("replicas share pods: %v", pods)
		}
		live := livePods(t, cs, "default", llmSel)
		if len(live) != 3 {
			t.Fatalf("%d pods, want 3", len(live))
		}
		for _, pod := range live {
			if pod.Spec.NodeName != "h100-node" || !pods[pod.Name] || pod.Annotations[AnnotationReplica] == "" {
				t.Errorf("pod %s on %s bound to %q", pod.Name, pod.Spec.NodeName, pod.Annotations[AnnotationReplica])
			}
		}
		if d := getDeployment(t, cs, "default", "llm-r1"); replicasOf(d) != 3 {
			t.Errorf("Deployment replicas %d", replicasOf(d))
		}
		svc, err := cs.CoreV1().Services("default").Get(ctx, "llm", metav1.GetOptions{})
		if err != nil || svc.Spec.Ports[0].Port != 8000 {
			t.Errorf("Service: %v %+v", err, svc)
		}
		if seen.count("llm-a") == 0 {
			t.Error("OnChange never called for llm-a")
		}
		waitFor(t, 10*time.Second, "free capacity", func() (bool, string) {
			fc := p.FreeCapacity()
			// h100-node: 32 cpu, 256Gi, 4 GPUs; cpu-node: 16 cpu, 64Gi; 3 replicas take 1 cpu, 1Gi, 1 GPU each.
			return fc.GPUs["h100"] == 1 && fc.GPUs["a100"] == 0 && fc.CPU == 45 && fc.Memory == v1.FormatQuantity((256-3+64)*v1.GiB), fmt.Sprintf("%+v", fc)
		})
		if err := p.Health(); err != nil {
			t.Errorf("Health: %v", err)
		}
	})

	t.Run("unschedulable", func(t *testing.T) {
		// No node has an A100; the H100 node has 1 GPU left for a 2-GPU replica.
		if _, err := p.Start(ctx, provider.Replica{ID: "big-a", Deployment: "big", Revision: 1, Spec: spec("big", "registry.example/big:1", "a100", 1)}); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Start(ctx, provider.Replica{ID: "hog-a", Deployment: "hog", Revision: 1, Spec: spec("hog", "registry.example/hog:1", "h100", 2)}); err != nil {
			t.Fatal(err)
		}
		var msg string
		waitFor(t, 30*time.Second, "big-a unschedulable", func() (bool, string) {
			inst, err := p.Get("big-a")
			if err != nil {
				return false, err.Error()
			}
			msg = inst.Message
			return inst.State == v1.ReplicaStarting && strings.Contains(msg, "unschedulable: 0/2 nodes are available"), msg
		})
		if !strings.Contains(msg, "no node of the cluster has GPU type a100: none is labelled nvidia.com/gpu.product="+productA100) {
			t.Errorf("big-a message lacks the GPU hint: %q", msg)
		}
		waitFor(t, 30*time.Second, "hog-a unschedulable", func() (bool, string) {
			inst, err := p.Get("hog-a")
			if err != nil {
				return false, err.Error()
			}
			return strings.Contains(inst.Message, "Insufficient nvidia.com/gpu"), string(inst.State) + ": " + inst.Message
		})
		if err := p.Stop(ctx, "hog-a", time.Second); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "hog removed", func() (bool, string) {
			d := getDeployment(t, cs, "default", "hog-r1")
			_, err := cs.CoreV1().Services("default").Get(ctx, "hog", metav1.GetOptions{})
			return d == nil && apierrors.IsNotFound(err), fmt.Sprintf("deployment %v, service err %v", d != nil, err)
		})
		// big-a stays: the restarted provider below never adopts it, so it is
		// collected after the adoption grace.
	})

	t.Run("stop-removes-that-pod", func(t *testing.T) {
		before := livePods(t, cs, "default", llmSel)
		inst, _ := p.Get("llm-b")
		victim := podOf(t, inst)
		if err := p.Stop(ctx, "llm-b", time.Second); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Get("llm-b"); !errors.Is(err, provider.ErrNotFound) {
			t.Errorf("Get after Stop: %v", err)
		}
		var want []string
		for _, pod := range before {
			if pod.Name != victim {
				want = append(want, pod.Name)
			}
		}
		waitFor(t, 30*time.Second, "only the stopped replica's pod gone", func() (bool, string) {
			got := podNames(livePods(t, cs, "default", llmSel))
			return reflect.DeepEqual(got, want), fmt.Sprintf("pods %v, want %v", got, want)
		})
		if d := getDeployment(t, cs, "default", "llm-r1"); replicasOf(d) != 2 {
			t.Errorf("Deployment replicas %d, want 2", replicasOf(d))
		}
		for _, id := range []string{"llm-a", "llm-c"} {
			if inst := waitState(t, p, id, v1.ReplicaReady, 10*time.Second); podOf(t, inst) == victim {
				t.Errorf("%s runs on the stopped pod", id)
			}
		}
	})

	t.Run("user-deletes-pod", func(t *testing.T) {
		inst, _ := p.Get("llm-c")
		old := podOf(t, inst)
		if err := cs.CoreV1().Pods("default").Delete(ctx, old, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "llm-c on a new Ready pod", func() (bool, string) {
			inst, err := p.Get("llm-c")
			if err != nil {
				return false, err.Error()
			}
			return inst.State == v1.ReplicaReady && podOf(t, inst) != old, fmt.Sprintf("%s on %s: %s", inst.State, podOf(t, inst), inst.Message)
		})
		inst, _ = p.Get("llm-c")
		pod, err := cs.CoreV1().Pods("default").Get(ctx, podOf(t, inst), metav1.GetOptions{})
		if err != nil || pod.Annotations[AnnotationReplica] != "llm-c" {
			t.Errorf("new pod annotation: %v %v", err, pod.Annotations)
		}
		handles["llm-c"] = inst.Handle
	})

	t.Run("user-edits", func(t *testing.T) {
		// A kubectl-style edit by another field manager of a field aloft
		// does not set survives; edits of aloft's fields are reverted.
		patch := func(body string, manager string) {
			t.Helper()
			_, err := cs.AppsV1().Deployments("default").Patch(ctx, "llm-r1", types.MergePatchType, []byte(body), metav1.PatchOptions{FieldManager: manager})
			if err != nil {
				t.Fatal(err)
			}
		}
		patch(`{"metadata":{"annotations":{"team":"ml"}},"spec":{"replicas":5}}`, "kubectl-edit")
		waitFor(t, 30*time.Second, "replicas reverted to 2", func() (bool, string) {
			d := getDeployment(t, cs, "default", "llm-r1")
			return replicasOf(d) == 2 && d.Status.ObservedGeneration >= d.Generation, fmt.Sprintf("replicas %d", replicasOf(d))
		})
		patch(`{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"registry.example/evil:6"}]}}}}`, "kubectl-edit")
		waitFor(t, 30*time.Second, "image reverted", func() (bool, string) {
			d := getDeployment(t, cs, "default", "llm-r1")
			img := d.Spec.Template.Spec.Containers[0].Image
			return img == "registry.example/llm:1", img
		})
		d := getDeployment(t, cs, "default", "llm-r1")
		if d.Annotations["team"] != "ml" {
			t.Errorf("the user's annotation was lost: %v", d.Annotations)
		}
		owns := map[string]bool{}
		for _, mf := range d.ManagedFields {
			owns[mf.Manager] = true
		}
		if !owns[FieldManager] || !owns["kubectl-edit"] {
			t.Errorf("field managers %v", owns)
		}
		// The rollout and rollback replaced the pods; both replicas are
		// bound to Ready pods of the original image again.
		waitFor(t, 60*time.Second, "replicas Ready on pods of the original image", func() (bool, string) {
			pods := livePods(t, cs, "default", llmSel)
			var state []string
			ok := len(pods) == 2
			for _, id := range []string{"llm-a", "llm-c"} {
				inst, err := p.Get(id)
				if err != nil {
					return false, err.Error()
				}
				state = append(state, fmt.Sprintf("%s=%s(%s)", id, inst.State, podOf(t, inst)))
				ok = ok && inst.State == v1.ReplicaReady
			}
			for _, pod := range pods {
				ok = ok && pod.Spec.Containers[0].Image == "registry.example/llm:1"
			}
			return ok, fmt.Sprintf("%v, %d pods", state, len(pods))
		})
		waitSettled(t, cs, "default", "llm-r1", 2)
		for _, id := range []string{"llm-a", "llm-c"} {
			inst := waitState(t, p, id, v1.ReplicaReady, 10*time.Second)
			handles[id] = inst.Handle
		}
	})

	// A third replica the restarted provider does not adopt: its pod must go
	// after the adoption grace, with big-r1 (never adopted either).
	inst, err := p.Start(ctx, replicaOf("llm-d"))
	if err != nil {
		t.Fatal(err)
	}
	inst = waitState(t, p, "llm-d", v1.ReplicaReady, 60*time.Second)
	dPod := podOf(t, inst)
	waitSettled(t, cs, "default", "llm-r1", 3)

	var p2 *Provider
	parent := t
	t.Run("adopt-after-restart", func(t *testing.T) {
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		// While no server watches, a user deletes llm-c's pod; the
		// ReplicaSet replaces it with a pod bound to no replica.
		cPod := podOf(t, provider.Instance{Handle: handles["llm-c"]})
		if err := cs.CoreV1().Pods("default").Delete(ctx, cPod, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		var replacement string
		waitFor(t, 30*time.Second, "a replacement pod", func() (bool, string) {
			pods := livePods(t, cs, "default", llmSel)
			replacement = ""
			for _, pod := range pods {
				if pod.Annotations[AnnotationReplica] == "" {
					replacement = pod.Name
				}
			}
			return len(pods) == 3 && replacement != "", fmt.Sprint(podNames(pods))
		})
		before := podNames(livePods(t, cs, "default", llmSel))

		p2 = startProvider(parent, cloud, Options{AdoptGrace: 3 * time.Second})
		inst, err := p2.Adopt(ctx, replicaOf("llm-a"), handles["llm-a"])
		if err != nil {
			t.Fatalf("Adopt llm-a: %v", err)
		}
		if podOf(t, inst) != podOf(t, provider.Instance{Handle: handles["llm-a"]}) || inst.State != v1.ReplicaReady {
			t.Errorf("adopted llm-a: %s on %s, handle said %s", inst.State, podOf(t, inst), handles["llm-a"])
		}
		// llm-c's pod is gone, but the Deployment still has its slot.
		if _, err := p2.Adopt(ctx, replicaOf("llm-c"), handles["llm-c"]); err != nil {
			t.Fatalf("Adopt llm-c: %v", err)
		}
		if _, err := p2.Adopt(ctx, replicaOf("llm-b"), handles["llm-b"]); !errors.Is(err, provider.ErrGone) {
			t.Errorf("Adopt of the stopped llm-b: %v", err)
		}
		inst = waitState(t, p2, "llm-c", v1.ReplicaReady, 30*time.Second)
		if podOf(t, inst) != replacement {
			t.Errorf("llm-c bound to %s, want the replacement %s", podOf(t, inst), replacement)
		}
		handles["llm-c"] = inst.Handle
		if got := podNames(livePods(t, cs, "default", llmSel)); !reflect.DeepEqual(got, before) {
			t.Errorf("adoption changed pods: %v -> %v", before, got)
		}
		waitFor(t, 30*time.Second, "the unadopted replica's pod and Deployment big-r1 collected", func() (bool, string) {
			pods := podNames(livePods(t, cs, "default", llmSel))
			d := getDeployment(t, cs, "default", "llm-r1")
			big := getDeployment(t, cs, "default", "big-r1")
			_, serr := cs.CoreV1().Services("default").Get(ctx, "big", metav1.GetOptions{})
			return len(pods) == 2 && !slices.Contains(pods, dPod) && replicasOf(d) == 2 && big == nil && apierrors.IsNotFound(serr),
				fmt.Sprintf("pods %v, replicas %d, big %v, big service %v", pods, replicasOf(d), big != nil, serr)
		})
		for _, id := range []string{"llm-a", "llm-c"} {
			waitState(t, p2, id, v1.ReplicaReady, 10*time.Second)
		}
	})
	if p2 == nil {
		t.FailNow()
	}

	t.Run("api-server-down", func(t *testing.T) {
		pods := podNames(livePods(t, cs, "default", llmSel))
		stopped := time.Now()
		if err := c.StopAPIServer(); err != nil {
			t.Fatal(err)
		}
		var herr error
		waitFor(t, 10*time.Second, "Health to fail", func() (bool, string) {
			herr = p2.Health()
			return herr != nil, ""
		})
		took := time.Since(stopped)
		t.Logf("Health failed %v after the API server was stopped: %v", took.Round(time.Millisecond), herr)
		if took > 2*time.Second+2*p2.opts.ProbeInterval+time.Second {
			t.Errorf("Health took %v to fail with unavailableAfter 2s", took)
		}
		if !errors.Is(herr, ErrUnavailable) || !strings.Contains(herr.Error(), "unreachable") {
			t.Errorf("Health: %v", herr)
		}
		if _, err := p2.Start(ctx, replicaOf("llm-e")); !errors.Is(err, ErrUnavailable) {
			t.Errorf("Start while down: %v", err)
		}
		inst, _ := p2.Get("llm-c")
		cPod := podOf(t, inst)
		if err := p2.Stop(ctx, "llm-c", time.Second); !errors.Is(err, ErrUnavailable) {
			t.Errorf("Stop while down: %v", err)
		}

		restarted := time.Now()
		if err := c.StartAPIServer(ctx); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "Health to recover", func() (bool, string) {
			err := p2.Health()
			return err == nil, fmt.Sprint(err)
		})
		t.Logf("Health recovered %v after the API server was started", time.Since(restarted).Round(time.Millisecond))
		// The stop asked for while down is applied now: one of the two pods
		// goes (normally llm-c's; the ReplicaSet controller, itself
		// re-listing after the restart, may not see the deletion cost yet
		// and remove llm-a's, and then llm-c's pod is handed to llm-a). No
		// pod is created.
		var got []string
		waitFor(t, 30*time.Second, "the pending stop applied", func() (bool, string) {
			got = podNames(livePods(t, cs, "default", llmSel))
			d := getDeployment(t, cs, "default", "llm-r1")
			return len(got) == 1 && slices.Contains(pods, got[0]) && replicasOf(d) == 1, fmt.Sprintf("pods %v (before %v), replicas %d", got, pods, replicasOf(d))
		})
		if err := p2.Stop(ctx, "llm-c", time.Second); err != nil {
			t.Errorf("Stop retried after recovery: %v", err)
		}
		inst = waitState(t, p2, "llm-a", v1.ReplicaReady, 30*time.Second)
		if podOf(t, inst) != got[0] {
			t.Errorf("llm-a on %s, the remaining pod is %s", podOf(t, inst), got[0])
		}
		if got[0] == cPod {
			t.Logf("the ReplicaSet removed llm-a's pod; llm-a took over llm-c's pod %s", cPod)
		}
		if n := len(livePods(t, cs, "default", llmSel)); n != 1 {
			t.Errorf("%d pods after recovery, want 1", n)
		}
	})

	t.Run("new-revision", func(t *testing.T) {
		// Revision 2 (new image and port) starts beside revision 1; the
		// Service follows the newest revision and stays when revision 1 goes.
		llm2 := spec("llm", "registry.example/llm:2", "h100", 1)
		llm2.Port = 8001
		if _, err := p2.Start(ctx, provider.Replica{ID: "llm2-a", Deployment: "llm", Revision: 2, Spec: llm2}); err != nil {
			t.Fatal(err)
		}
		inst := waitState(t, p2, "llm2-a", v1.ReplicaReady, 60*time.Second)
		if !strings.HasSuffix(inst.Endpoint, ":8001") {
			t.Errorf("endpoint %s", inst.Endpoint)
		}
		waitFor(t, 30*time.Second, "Service on port 8001", func() (bool, string) {
			svc, err := cs.CoreV1().Services("default").Get(ctx, "llm", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return svc.Spec.Ports[0].Port == 8001, fmt.Sprint(svc.Spec.Ports)
		})
		if d := getDeployment(t, cs, "default", "llm-r2"); d == nil || d.Spec.Template.Spec.Containers[0].Image != "registry.example/llm:2" {
			t.Fatalf("llm-r2: %v", d)
		}
		if err := p2.Stop(ctx, "llm-a", time.Second); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "revision 1 gone", func() (bool, string) {
			return getDeployment(t, cs, "default", "llm-r1") == nil && len(livePods(t, cs, "default", llmSel)) == 0, ""
		})
		if _, err := cs.CoreV1().Services("default").Get(ctx, "llm", metav1.GetOptions{}); err != nil {
			t.Errorf("Service removed while revision 2 runs: %v", err)
		}
		waitState(t, p2, "llm2-a", v1.ReplicaReady, 10*time.Second)
	})

	t.Run("scale-to-zero", func(t *testing.T) {
		if err := p2.Stop(ctx, "llm2-a", time.Second); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "Deployment, Service and pods gone", func() (bool, string) {
			d := getDeployment(t, cs, "default", "llm-r2")
			_, serr := cs.CoreV1().Services("default").Get(ctx, "llm", metav1.GetOptions{})
			pods := livePods(t, cs, "default", objectSelector("llm", 2))
			return d == nil && apierrors.IsNotFound(serr) && len(pods) == 0, fmt.Sprintf("deployment %v service %v pods %d", d != nil, serr, len(pods))
		})
		if _, err := p2.Get("llm2-a"); !errors.Is(err, provider.ErrNotFound) {
			t.Errorf("Get after scale to zero: %v", err)
		}
	})

	t.Run("render-equals-applied", func(t *testing.T) {
		kubectl := "/usr/bin/kubectl"
		if _, err := os.Stat(kubectl); err != nil {
			t.Skip("no /usr/bin/kubectl")
		}
		web := spec("web", "registry.example/web:3", "", 0)
		web.Command, web.Args = []string{"/web"}, []string{"--verbose"}
		web.Env = []v1.EnvVar{{Name: "MODE", Value: "prod"}, {Name: "TOKEN", ValueFrom: &v1.EnvSource{Secret: "web-token"}}}
		web.Health = v1.HealthCheck{Path: "/ready", PeriodSeconds: 3, TimeoutSeconds: 2}
		for _, id := range []string{"web-a", "web-b"} {
			if _, err := p2.Start(ctx, provider.Replica{ID: id, Deployment: "web", Revision: 1, Spec: web, Env: []string{"TOKEN=s3cret"}}); err != nil {
				t.Fatal(err)
			}
		}
		sec, err := cs.CoreV1().Secrets("default").Get(ctx, "web-r1", metav1.GetOptions{})
		if err != nil || string(sec.Data["web-token"]) != "s3cret" {
			t.Errorf("Secret web-r1: %v %v", err, sec)
		}
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "rendered"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		rcloud := clusterCloud(c, "rendered")
		out, err := Render(web, rcloud, 1, 2)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(ctx, kubectl, "--kubeconfig", c.Kubeconfig, "--context", c.Context,
			"apply", "--server-side", "--field-manager=aloft", "-f", "-")
		cmd.Stdin = bytes.NewReader(out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kubectl apply: %v\n%s\n%s", err, b, out)
		} else {
			t.Logf("kubectl: %s", bytes.TrimSpace(b))
		}
		applied := getDeployment(t, cs, "default", "web-r1")
		rendered := getDeployment(t, cs, "rendered", "web-r1")
		if applied == nil || rendered == nil {
			t.Fatalf("deployments: applied %v rendered %v", applied != nil, rendered != nil)
		}
		if !reflect.DeepEqual(applied.Spec, rendered.Spec) {
			a, _ := json.MarshalIndent(applied.Spec, "", " ")
			r, _ := json.MarshalIndent(rendered.Spec, "", " ")
			t.Errorf("Deployment specs differ:\napplied  %s\nrendered %s", a, r)
		}
		if !reflect.DeepEqual(applied.Labels, rendered.Labels) {
			t.Errorf("labels differ: %v vs %v", applied.Labels, rendered.Labels)
		}
		if !reflect.DeepEqual(managedBy(applied, FieldManager), managedBy(rendered, FieldManager)) {
			t.Errorf("fields owned by aloft differ:\n%s\n%s", managedBy(applied, FieldManager), managedBy(rendered, FieldManager))
		}
		as, err1 := cs.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
		rs, err2 := cs.CoreV1().Services("rendered").Get(ctx, "web", metav1.GetOptions{})
		if err1 != nil || err2 != nil {
			t.Fatalf("services: %v %v", err1, err2)
		}
		if !reflect.DeepEqual(as.Spec.Ports, rs.Spec.Ports) || !reflect.DeepEqual(as.Spec.Selector, rs.Spec.Selector) || as.Spec.Type != rs.Spec.Type || !reflect.DeepEqual(as.Labels, rs.Labels) {
			t.Errorf("Service specs differ:\n%+v\n%+v", as.Spec, rs.Spec)
		}
		for _, id := range []string{"web-a", "web-b"} {
			if err := p2.Stop(ctx, id, time.Second); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 30*time.Second, "web-r1 and its Secret deleted", func() (bool, string) {
			_, err := cs.CoreV1().Secrets("default").Get(ctx, "web-r1", metav1.GetOptions{})
			return getDeployment(t, cs, "default", "web-r1") == nil && apierrors.IsNotFound(err), fmt.Sprint(err)
		})
	})

	t.Run("forbidden", func(t *testing.T) {
		// "editor" may watch in namespace restricted but not create Deployments.
		kc, err := c.UserKubeconfig(ctx, "editor", "restricted", k8stest.Rule{
			APIGroups: []string{"", "apps"}, Resources: []string{"pods", "deployments", "services", "secrets"},
			Verbs: []string{"get", "list", "watch"},
		})
		if err != nil {
			t.Fatal(err)
		}
		rc := clusterCloud(c, "restricted")
		rc.Kubernetes.Kubeconfig = kc
		pr := startProvider(t, rc, Options{})
		_, err = pr.Start(ctx, provider.Replica{ID: "x-a", Deployment: "x", Revision: 1, Spec: spec("x", "registry.example/x:1", "", 0)})
		if !apierrors.IsForbidden(err) {
			t.Errorf("Start without create permission: %v", err)
		}
		if err == nil || !strings.Contains(err.Error(), `deployments.apps "x-r1" is forbidden: User "editor" cannot patch resource "deployments"`) {
			t.Errorf("Start error does not quote the API: %v", err)
		}
		if err := pr.Health(); err != nil {
			t.Errorf("Health of a provider that may watch: %v", err)
		}
		if _, err := pr.Get("x-a"); !errors.Is(err, provider.ErrNotFound) {
			t.Errorf("failed start left a replica: %v", err)
		}

		// "nobody" may not even watch: Health says forbidden.
		kc2, err := c.UserKubeconfig(ctx, "nobody", "")
		if err != nil {
			t.Fatal(err)
		}
		rc.Kubernetes.Kubeconfig = kc2
		pn := startProvider(t, rc, Options{})
		waitFor(t, 10*time.Second, "Health forbidden", func() (bool, string) {
			err := pn.Health()
			return err != nil && strings.Contains(err.Error(), "forbidden"), fmt.Sprint(err)
		})
		t.Logf("Health: %v", pn.Health())
		if fc := pn.FreeCapacity(); fc.Memory != "" || fc.CPU != 0 || fc.GPUs != nil {
			t.Errorf("capacity without permission to list nodes: %+v, want the zero Capacity", fc)
		}
	})

	t.Run("missing-context", func(t *testing.T) {
		bad := clusterCloud(c, "default")
		bad.Kubernetes.Context = "no-such-context"
		_, err := New(bad, Options{})
		if err == nil || !strings.Contains(err.Error(), `context "no-such-context" not found (it has: `+c.Context+`)`) {
			t.Errorf("New: %v", err)
		}
	})
}

// managedBy returns the fields a manager owns by apply, as JSON.
func managedBy(d *appsv1.Deployment, manager string) string {
	for _, mf := range d.ManagedFields {
		if mf.Manager == manager && mf.Operation == metav1.ManagedFieldsOperationApply && mf.FieldsV1 != nil {
			return string(mf.FieldsV1.Raw)
		}
	}
	return ""
}
