package kubernetes

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	v1 "github.com/aloft-dev/aloft/api/v1"
)

// podState is what one pod says about the replica bound to it.
type podState struct {
	State     v1.ReplicaState
	Restarts  int
	Message   string
	Endpoint  string
	StartedAt time.Time
}

// waitingBackOff are the container waiting reasons that mean the
// container cannot start now and the kubelet retries with backoff.
var waitingBackOff = map[string]bool{
	"CrashLoopBackOff":           true,
	"ImagePullBackOff":           true,
	"ErrImagePull":               true,
	"ErrImageNeverPull":          true,
	"InvalidImageName":           true,
	"CreateContainerConfigError": true,
	"CreateContainerError":       true,
	"RunContainerError":          true,
	"PreStartHookError":          true,
}

// observePod maps a live pod (not terminating, not terminal) to a replica
// state: Ready when its Ready condition is true; BackOff when its container
// waits in a crash or pull backoff; Starting while pending, creating or not
// ready; Failed when the scheduler could not place it for longer than
// unschedulableAfter (before that Starting, with the scheduler's message).
func observePod(pod *corev1.Pod, port int, now time.Time, unschedulableAfter time.Duration) podState {
	s := podState{State: v1.ReplicaStarting}
	if pod.Status.StartTime != nil {
		s.StartedAt = pod.Status.StartTime.Time
	}
	if ip := pod.Status.PodIP; ip != "" && port > 0 {
		s.Endpoint = "http://" + net.JoinHostPort(ip, strconv.Itoa(port))
	}
	cs := appStatus(pod)
	if cs != nil {
		s.Restarts = int(cs.RestartCount)
	}
	prefix := "pod " + pod.Name + ": "

	if c := podCondition(pod, corev1.PodScheduled); c != nil && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
		msg := strings.TrimSpace(c.Message)
		if msg == "" {
			msg = "no node fits"
		}
		since := c.LastTransitionTime.Time
		if unschedulableAfter > 0 && !since.IsZero() && now.Sub(since) >= unschedulableAfter {
			s.State = v1.ReplicaFailed
			s.Message = fmt.Sprintf("%sunschedulable for %s: %s", prefix, now.Sub(since).Round(time.Second), msg)
			return s
		}
		s.Message = prefix + "unschedulable: " + msg
		return s
	}
	if cs != nil && cs.State.Waiting != nil && waitingBackOff[cs.State.Waiting.Reason] {
		w := cs.State.Waiting
		s.State = v1.ReplicaBackOff
		s.Message = prefix + w.Reason
		if w.Message != "" {
			s.Message += ": " + w.Message
		}
		if t := cs.LastTerminationState.Terminated; t != nil {
			s.Message += fmt.Sprintf(" (last exit code %d", t.ExitCode)
			if t.Reason != "" {
				s.Message += ", " + t.Reason
			}
			s.Message += ")"
		}
		if s.Restarts > 0 {
			s.Message += fmt.Sprintf(", %d restarts", s.Restarts)
		}
		return s
	}
	if c := podCondition(pod, corev1.PodReady); c != nil && c.Status == corev1.ConditionTrue {
		s.State = v1.ReplicaReady
		if cs != nil && cs.State.Running != nil && !cs.State.Running.StartedAt.IsZero() {
			s.StartedAt = cs.State.Running.StartedAt.Time
		}
		return s
	}
	switch {
	case pod.Status.Phase == corev1.PodPending && pod.Spec.NodeName == "":
		s.Message = prefix + "waiting to be scheduled"
	case cs != nil && cs.State.Waiting != nil:
		s.Message = prefix + cs.State.Waiting.Reason
		if m := cs.State.Waiting.Message; m != "" {
			s.Message += ": " + m
		}
	case pod.Status.Phase == corev1.PodPending:
		s.Message = prefix + "pending on node " + pod.Spec.NodeName
	default:
		s.Message = prefix + "running, not ready"
		if c := podCondition(pod, corev1.PodReady); c != nil && c.Message != "" {
			s.Message += ": " + c.Message
		}
	}
	return s
}

// appStatus returns the status of the app container (or the first one).
func appStatus(pod *corev1.Pod) *corev1.ContainerStatus {
	for i := range pod.Status.ContainerStatuses {
		if pod.Status.ContainerStatuses[i].Name == containerName {
			return &pod.Status.ContainerStatuses[i]
		}
	}
	if len(pod.Status.ContainerStatuses) > 0 {
		return &pod.Status.ContainerStatuses[0]
	}
	return nil
}

func podCondition(pod *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == t {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// live reports whether a pod counts as running a replica: not being
// deleted and not finished.
func live(pod *corev1.Pod) bool {
	return pod.DeletionTimestamp == nil && pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed
}

// podRank orders pods for binding: ready first, then scheduled, then the
// oldest.
func podLess(a, b *corev1.Pod) bool {
	ra, rb := isReady(a), isReady(b)
	if ra != rb {
		return ra
	}
	sa, sb := a.Spec.NodeName != "", b.Spec.NodeName != ""
	if sa != sb {
		return sa
	}
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

func isReady(pod *corev1.Pod) bool {
	c := podCondition(pod, corev1.PodReady)
	return c != nil && c.Status == corev1.ConditionTrue
}

// deploymentProblem explains why a Deployment has no pod for a replica,
// from its ReplicaFailure condition (quota, admission, RBAC of the
// ReplicaSet controller), or "".
func deploymentProblem(d *appsv1.Deployment) string {
	if d == nil {
		return ""
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue {
			return c.Reason + ": " + c.Message
		}
	}
	return ""
}
