package kubernetes

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/aloft-dev/aloft/api/v1"
)

func node(name, cpu, mem string, gpus int, labels map[string]string, taints ...corev1.Taint) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	n.Status.Allocatable = corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse(cpu),
		corev1.ResourceMemory: resource.MustParse(mem),
	}
	if gpus > 0 {
		n.Status.Allocatable["nvidia.com/gpu"] = *resource.NewQuantity(int64(gpus), resource.DecimalSI)
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	n.Spec.Taints = taints
	return n
}

func requests(cpu, mem string, gpus int) corev1.ResourceList {
	l := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}
	if gpus > 0 {
		l["nvidia.com/gpu"] = *resource.NewQuantity(int64(gpus), resource.DecimalSI)
	}
	return l
}

func TestFreeCapacity(t *testing.T) {
	k := defaulted(testCloud())
	gpuTaint := corev1.Taint{Key: "nvidia.com/gpu", Value: "present", Effect: corev1.TaintEffectNoSchedule}
	h100a := node("h100-a", "32", "256Gi", 8, map[string]string{"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "pool": "gpu"}, gpuTaint)
	h100b := node("h100-b", "32", "256Gi", 8, map[string]string{"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}) // no pool=gpu: not selected
	a10 := node("a10", "16", "64Gi", 4, map[string]string{"nvidia.com/gpu.product": "NVIDIA-A10"}, gpuTaint)        // a10 has no toleration
	cpu := node("cpu", "8", "32Gi", 0, nil)
	cordoned := node("cordoned", "64", "512Gi", 0, nil)
	cordoned.Spec.Unschedulable = true
	notReady := node("not-ready", "64", "512Gi", 0, nil)
	notReady.Status.Conditions[0].Status = corev1.ConditionFalse

	usage := map[string]corev1.ResourceList{}
	addList(usage, "h100-a", requests("4", "32Gi", 3))
	addList(usage, "h100-a", requests("500m", "1Gi", 2))
	addList(usage, "cpu", requests("7", "30Gi", 0))
	addList(usage, "cpu", requests("2", "4Gi", 0)) // overcommitted: counts as 0 free, not negative

	c := freeCapacity([]any{h100a, h100b, a10, cpu, cordoned, notReady}, usage, k)
	if c.CPU != 32-4.5+32+16+0 {
		t.Errorf("cpu %v", c.CPU)
	}
	if c.Memory != v1.FormatQuantity((256-33+256+64)*v1.GiB) {
		t.Errorf("memory %v", c.Memory)
	}
	if len(c.GPUs) != 2 || c.GPUs["h100"] != 3 || c.GPUs["a10"] != 0 {
		t.Errorf("gpus %v", c.GPUs)
	}
}

func TestPodRequests(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		Containers: []corev1.Container{
			{Resources: corev1.ResourceRequirements{Requests: requests("1", "1Gi", 1)}},
			{Resources: corev1.ResourceRequirements{Requests: requests("500m", "512Mi", 0)}},
		},
		InitContainers: []corev1.Container{
			{Resources: corev1.ResourceRequirements{Requests: requests("4", "256Mi", 0)}},                            // init: max
			{RestartPolicy: &always, Resources: corev1.ResourceRequirements{Requests: requests("250m", "256Mi", 0)}}, // sidecar: sum
		},
		Overhead: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
	}}
	r := podRequests(pod)
	if q := r[corev1.ResourceCPU]; q.MilliValue() != 4100 {
		t.Errorf("cpu %s", q.String())
	}
	if q := r[corev1.ResourceMemory]; q.Value() != 1792*v1.MiB {
		t.Errorf("memory %s", q.String())
	}
	if q := r["nvidia.com/gpu"]; q.Value() != 1 {
		t.Errorf("gpu %s", q.String())
	}
	s, _ := stripPod(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x", Labels: map[string]string{"a": "b"}}, Spec: pod.Spec})
	if sp := s.(*corev1.Pod); sp.Labels != nil || len(sp.Spec.Containers) != 2 || podRequests(sp)[corev1.ResourceCPU] != r[corev1.ResourceCPU] {
		t.Errorf("stripped pod %+v", sp)
	}
}

func TestTolerates(t *testing.T) {
	taint := corev1.Taint{Key: "nvidia.com/gpu", Value: "present", Effect: corev1.TaintEffectNoSchedule}
	prefer := corev1.Taint{Key: "x", Effect: corev1.TaintEffectPreferNoSchedule}
	for _, tc := range []struct {
		tols []v1.KubernetesToleration
		ok   bool
	}{
		{nil, false},
		{[]v1.KubernetesToleration{{Key: "nvidia.com/gpu", Operator: "Exists"}}, true},
		{[]v1.KubernetesToleration{{Key: "nvidia.com/gpu", Value: "present", Effect: "NoSchedule"}}, true},
		{[]v1.KubernetesToleration{{Key: "nvidia.com/gpu", Value: "other"}}, false},
		{[]v1.KubernetesToleration{{Key: "nvidia.com/gpu", Operator: "Exists", Effect: "NoExecute"}}, false},
		{[]v1.KubernetesToleration{{Operator: "Exists"}}, true},
	} {
		if got := tolerates(tc.tols, []corev1.Taint{taint, prefer}); got != tc.ok {
			t.Errorf("%+v: %v, want %v", tc.tols, got, tc.ok)
		}
	}
	if !tolerates(nil, []corev1.Taint{prefer}) {
		t.Error("PreferNoSchedule blocks")
	}
}
