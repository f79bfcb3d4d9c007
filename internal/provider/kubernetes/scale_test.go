package kubernetes

import (
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/k8stest"
	"github.com/aloft-dev/aloft/internal/provider"
)

// TestClusterHundredReplicas starts 100 replicas of one revision on one
// cluster and reports how long they take to be Ready and to stop.
func TestClusterHundredReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	c := k8stest.StartT(t, k8stest.Options{
		Name: "aloft-k8s-100",
		Nodes: []k8stest.Node{
			{Name: "n1", CPU: "64", Memory: "256Gi", Pods: 110},
			{Name: "n2", CPU: "64", Memory: "256Gi", Pods: 110},
		},
	})
	_, cs := clientFor(t, c)
	ctx := t.Context()
	p := startProvider(t, clusterCloud(c, "default"), Options{})
	s := spec("many", "registry.example/many:1", "", 0)
	s.Resources = v1.Resources{CPU: "100m", Memory: "64Mi"}
	const n = 100
	began := time.Now()
	for i := range n {
		if _, err := p.Start(ctx, provider.Replica{ID: fmt.Sprintf("many-%03d", i), Deployment: "many", Revision: 1, Spec: s}); err != nil {
			t.Fatal(err)
		}
	}
	started := time.Since(began)
	waitFor(t, 3*time.Minute, "100 replicas Ready", func() (bool, string) {
		ready := 0
		pods := map[string]bool{}
		for i := range n {
			inst, err := p.Get(fmt.Sprintf("many-%03d", i))
			if err == nil && inst.State == v1.ReplicaReady {
				ready++
				pods[podOf(t, inst)] = true
			}
		}
		return ready == n && len(pods) == n, fmt.Sprintf("%d ready on %d pods", ready, len(pods))
	})
	t.Logf("%d replicas: Start calls took %v, all Ready %v after the first", n, started.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	began = time.Now()
	for i := range n {
		if err := p.Stop(ctx, fmt.Sprintf("many-%03d", i), time.Second); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 3*time.Minute, "all pods gone", func() (bool, string) {
		l, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: objectSelector("many", 1)})
		if err != nil {
			return false, err.Error()
		}
		return len(l.Items) == 0 && getDeployment(t, cs, "default", "many-r1") == nil, fmt.Sprintf("%d pods", len(l.Items))
	})
	t.Logf("%d replicas stopped, pods and Deployment gone in %v", n, time.Since(began).Round(time.Millisecond))
}
