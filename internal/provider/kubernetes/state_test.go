package kubernetes

import (
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/aloft-dev/aloft/api/v1"
)

func TestObservePod(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(d time.Duration) metav1.Time { return metav1.NewTime(now.Add(-d)) }
	base := func() *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "llm-r1-abc"}}
	}
	for _, tc := range []struct {
		name     string
		pod      func() *corev1.Pod
		state    v1.ReplicaState
		msg      string
		restarts int
		endpoint string
	}{
		{
			name: "pending unscheduled", state: v1.ReplicaStarting, msg: "pod llm-r1-abc: waiting to be scheduled",
			pod: func() *corev1.Pod { p := base(); p.Status.Phase = corev1.PodPending; return p },
		},
		{
			name: "unschedulable", state: v1.ReplicaStarting,
			msg: "pod llm-r1-abc: unschedulable: 0/2 nodes are available: 2 Insufficient nvidia.com/gpu.",
			pod: func() *corev1.Pod {
				p := base()
				p.Status.Phase = corev1.PodPending
				p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable",
					Message: "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.", LastTransitionTime: at(10 * time.Second)}}
				return p
			},
		},
		{
			name: "unschedulable too long", state: v1.ReplicaFailed,
			msg: "pod llm-r1-abc: unschedulable for 3m0s: 0/2 nodes are available",
			pod: func() *corev1.Pod {
				p := base()
				p.Status.Phase = corev1.PodPending
				p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable",
					Message: "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.", LastTransitionTime: at(3 * time.Minute)}}
				return p
			},
		},
		{
			name: "container creating", state: v1.ReplicaStarting, msg: "pod llm-r1-abc: ContainerCreating",
			pod: func() *corev1.Pod {
				p := base()
				p.Spec.NodeName = "n1"
				p.Status.Phase = corev1.PodPending
				p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}
				return p
			},
		},
		{
			name: "crash loop", state: v1.ReplicaBackOff, restarts: 4,
			msg: "pod llm-r1-abc: CrashLoopBackOff: back-off 40s restarting failed container (last exit code 1, Error), 4 restarts",
			pod: func() *corev1.Pod {
				p := base()
				p.Spec.NodeName = "n1"
				p.Status.Phase = corev1.PodRunning
				p.Status.PodIP = "10.244.0.7"
				p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", RestartCount: 4,
					State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 40s restarting failed container"}},
					LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error"}}}}
				return p
			},
			endpoint: "http://10.244.0.7:9000",
		},
		{
			name: "image pull", state: v1.ReplicaBackOff, msg: "pod llm-r1-abc: ImagePullBackOff: Back-off pulling image",
			pod: func() *corev1.Pod {
				p := base()
				p.Spec.NodeName = "n1"
				p.Status.Phase = corev1.PodPending
				p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app",
					State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "Back-off pulling image"}}}}
				return p
			},
		},
		{
			name: "running not ready", state: v1.ReplicaStarting, msg: "pod llm-r1-abc: running, not ready", endpoint: "http://10.244.0.7:9000",
			pod: func() *corev1.Pod {
				p := base()
				p.Spec.NodeName = "n1"
				p.Status.Phase = corev1.PodRunning
				p.Status.PodIP = "10.244.0.7"
				p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}
				return p
			},
		},
		{
			name: "ready", state: v1.ReplicaReady, endpoint: "http://[fd00::7]:9000", restarts: 1,
			pod: func() *corev1.Pod {
				p := base()
				p.Spec.NodeName = "n1"
				p.Status.Phase = corev1.PodRunning
				p.Status.PodIP = "fd00::7"
				p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, {Type: corev1.PodReady, Status: corev1.ConditionTrue}}
				p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", RestartCount: 1, Ready: true,
					State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: at(time.Minute)}}}}
				return p
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := observePod(tc.pod(), 9000, now, 2*time.Minute)
			if s.State != tc.state || !strings.HasPrefix(s.Message, tc.msg) || s.Restarts != tc.restarts || s.Endpoint != tc.endpoint {
				t.Errorf("got %+v\nwant state %s, message prefix %q, restarts %d, endpoint %q", s, tc.state, tc.msg, tc.restarts, tc.endpoint)
			}
			if tc.state == v1.ReplicaReady && !s.StartedAt.Equal(now.Add(-time.Minute)) {
				t.Errorf("startedAt %v", s.StartedAt)
			}
		})
	}
}

func TestLiveAndOrder(t *testing.T) {
	now := metav1.Now()
	old := metav1.NewTime(now.Add(-time.Hour))
	deleting := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "d", DeletionTimestamp: &now}}
	failed := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "f"}, Status: corev1.PodStatus{Phase: corev1.PodFailed}}
	running := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "r"}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	if live(deleting) || live(failed) || !live(running) {
		t.Error("live")
	}
	ready := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "b", CreationTimestamp: now}, Spec: corev1.PodSpec{NodeName: "n"},
		Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}}
	scheduledOld := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "c", CreationTimestamp: old}, Spec: corev1.PodSpec{NodeName: "n"}}
	pendingOld := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "a", CreationTimestamp: old}}
	if !podLess(ready, scheduledOld) || !podLess(scheduledOld, pendingOld) || podLess(pendingOld, ready) {
		t.Error("ready < scheduled < pending")
	}
}

func TestDeploymentProblem(t *testing.T) {
	d := &appsv1.Deployment{Status: appsv1.DeploymentStatus{Conditions: []appsv1.DeploymentCondition{
		{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue},
		{Type: appsv1.DeploymentReplicaFailure, Status: corev1.ConditionTrue, Reason: "FailedCreate", Message: `pods "x" is forbidden: exceeded quota`},
	}}}
	if got := deploymentProblem(d); got != `FailedCreate: pods "x" is forbidden: exceeded quota` {
		t.Errorf("got %q", got)
	}
	if deploymentProblem(nil) != "" || deploymentProblem(&appsv1.Deployment{}) != "" {
		t.Error("problem without a condition")
	}
}
