package kubernetes

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	v1 "github.com/aloft-dev/aloft/api/v1"
)

// FreeCapacity implements provider.CapacityReporter: what the cluster's
// schedulable, ready nodes have left, from their allocatable resources minus
// the requests of the non-terminated pods bound to them (the scheduler's
// arithmetic, summed over nodes). GPUs are counted per aloft GPU type on the
// nodes that carry the type's product label, match its nodeSelector and whose
// taints its tolerations allow; every configured GPU type is listed, with 0
// when no such node has any free. Without permission to list nodes and pods
// cluster-wide (or before the first list) the result is the zero Capacity,
// whose empty Memory tells it from a full cluster (Memory "0").
func (p *Provider) FreeCapacity() v1.Capacity {
	if !p.nodes.HasSynced() || !p.allPods.HasSynced() || p.health.listErr(infNodes) != nil || p.health.listErr(infAllPods) != nil {
		return v1.Capacity{}
	}
	nodes := p.nodes.GetStore().List()
	usage := map[string]corev1.ResourceList{}
	for _, o := range p.allPods.GetStore().List() {
		pod, ok := o.(*corev1.Pod)
		if !ok || pod.Spec.NodeName == "" || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		addList(usage, pod.Spec.NodeName, podRequests(pod))
	}
	return freeCapacity(nodes, usage, p.cfg)
}

// freeCapacity is FreeCapacity's arithmetic (pure, for tests).
func freeCapacity(nodes []any, usage map[string]corev1.ResourceList, k v1.KubernetesConfig) v1.Capacity {
	var cpuMilli, memBytes int64
	gpus := map[string]int{}
	for t := range k.GPUs {
		gpus[t] = 0
	}
	for _, o := range nodes {
		n, ok := o.(*corev1.Node)
		if !ok || n.Spec.Unschedulable || !nodeReady(n) {
			continue
		}
		used := usage[n.Name]
		alloc := n.Status.Allocatable
		cpuMilli += max(0, alloc.Cpu().MilliValue()-qty(used, corev1.ResourceCPU).MilliValue())
		memBytes += max(0, alloc.Memory().Value()-qty(used, corev1.ResourceMemory).Value())
		product := n.Labels[k.GPULabel]
		if product == "" {
			continue
		}
		for t, g := range k.GPUs {
			if g.Product != product || !selects(g.NodeSelector, n.Labels) || !tolerates(g.Tolerations, n.Spec.Taints) {
				continue
			}
			free := qty(alloc, resourceGPU).Value() - qty(used, resourceGPU).Value()
			if free > 0 {
				gpus[t] += int(free)
			}
		}
	}
	c := v1.Capacity{CPU: float64(cpuMilli) / 1000, Memory: v1.FormatQuantity(memBytes)}
	if len(gpus) > 0 {
		c.GPUs = gpus
	}
	return c
}

func qty(l corev1.ResourceList, name corev1.ResourceName) *resource.Quantity {
	if q, ok := l[name]; ok {
		return &q
	}
	return resource.NewQuantity(0, resource.DecimalSI)
}

func addList(m map[string]corev1.ResourceList, node string, add corev1.ResourceList) {
	l := m[node]
	if l == nil {
		l = corev1.ResourceList{}
		m[node] = l
	}
	for name, q := range add {
		cur := l[name]
		cur.Add(q)
		l[name] = cur
	}
}

// podRequests is what a pod takes from its node: the larger of its
// containers' requests summed (with restartable init containers, which run
// beside them) and any one init container's, plus the pod overhead.
func podRequests(pod *corev1.Pod) corev1.ResourceList {
	sum := corev1.ResourceList{}
	add := func(l corev1.ResourceList) {
		for name, q := range l {
			cur := sum[name]
			cur.Add(q)
			sum[name] = cur
		}
	}
	for _, c := range pod.Spec.Containers {
		add(c.Resources.Requests)
	}
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			add(c.Resources.Requests)
		}
	}
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			continue
		}
		for name, q := range c.Resources.Requests {
			if cur, ok := sum[name]; !ok || q.Cmp(cur) > 0 {
				sum[name] = q.DeepCopy()
			}
		}
	}
	add(pod.Spec.Overhead)
	return sum
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func selects(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// tolerates reports whether tolerations allow every NoSchedule and
// NoExecute taint.
func tolerates(tols []v1.KubernetesToleration, taints []corev1.Taint) bool {
	for _, t := range taints {
		if t.Effect == corev1.TaintEffectPreferNoSchedule {
			continue
		}
		ok := false
		for _, tol := range tols {
			if tol.Effect != "" && tol.Effect != string(t.Effect) {
				continue
			}
			if tol.Key != "" && tol.Key != t.Key {
				continue
			}
			if tol.Operator == "Exists" || tol.Value == t.Value {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// stripPod keeps of a pod what capacity needs, so the cluster-wide pod
// cache stays small.
func stripPod(o any) (any, error) {
	pod, ok := o.(*corev1.Pod)
	if !ok {
		return o, nil
	}
	s := &corev1.Pod{}
	s.Name, s.Namespace, s.UID, s.ResourceVersion = pod.Name, pod.Namespace, pod.UID, pod.ResourceVersion
	s.Spec.NodeName = pod.Spec.NodeName
	s.Spec.Overhead = pod.Spec.Overhead
	s.Status.Phase = pod.Status.Phase
	for _, c := range pod.Spec.Containers {
		s.Spec.Containers = append(s.Spec.Containers, corev1.Container{Name: c.Name, Resources: corev1.ResourceRequirements{Requests: c.Resources.Requests}})
	}
	for _, c := range pod.Spec.InitContainers {
		s.Spec.InitContainers = append(s.Spec.InitContainers, corev1.Container{Name: c.Name, RestartPolicy: c.RestartPolicy, Resources: corev1.ResourceRequirements{Requests: c.Resources.Requests}})
	}
	return s, nil
}
