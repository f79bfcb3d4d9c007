package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/placement"
	"github.com/aloft-dev/aloft/internal/provider"
	"github.com/aloft-dev/aloft/internal/store"
)

// writeStatus derives the deployment's status from what was observed and
// stores it when it changed.
func (c *Controller) writeStatus(ctx context.Context, d store.Deployment, live []*observed, desired int, dec placement.Decision) error {
	st := v1.DeploymentStatus{DesiredReplicas: desired, Replicas: []v1.ReplicaStatus{}}
	obsolete, anyReady, failedStart := 0, false, ""
	for _, o := range live {
		r := o.rec
		state := r.State
		if r.Draining {
			state = v1.ReplicaDraining
		}
		region := r.Region
		if region == "" && o.cloud != nil {
			region = o.cloud.Config.Region
		}
		st.Replicas = append(st.Replicas, v1.ReplicaStatus{
			ID: r.ID, Revision: r.Revision, Cloud: r.Cloud, Region: region, Zone: r.Zone, InstanceType: r.InstanceType, Spot: r.Spot,
			State: state, Endpoint: r.Endpoint, StartedAt: r.StartedAt, Restarts: r.Restarts, HourlyCost: r.HourlyCost, Message: r.Message,
		})
		if r.Draining {
			continue
		}
		if state != v1.ReplicaFailed {
			st.HourlyCost += r.HourlyCost
		} else {
			failedStart = r.Message
		}
		if o.ready {
			anyReady = true
			if r.Revision == d.Revision {
				st.ReadyReplicas++
			} else {
				obsolete++
			}
		} else if r.Revision != d.Revision {
			obsolete++
		}
	}
	prev := map[string]v1.Condition{}
	for _, cd := range d.Status.Conditions {
		prev[cd.Type] = cd
	}
	cond := func(typ string, ok bool, reason, msg string) {
		s := "False"
		if ok {
			s = "True"
		}
		cd := v1.Condition{Type: typ, Status: s, Reason: reason, Message: msg, LastTransitionTime: time.Now().UTC()}
		if p, had := prev[typ]; had && p.Status == s {
			cd.LastTransitionTime = p.LastTransitionTime
		}
		st.Conditions = append(st.Conditions, cd)
	}
	if anyReady {
		cond(v1.ConditionAvailable, true, "ReplicasReady", fmt.Sprintf("%d of %d replica(s) of revision %d ready", st.ReadyReplicas, desired, d.Revision))
	} else {
		cond(v1.ConditionAvailable, false, "NoReplicaReady", "no replica is ready")
	}
	runtime := runtimeFor(d.Spec)
	supported := false
	var missing []string
	for _, cl := range c.clouds.List() {
		if contains(cl.Provider.Runtimes(), runtime) {
			supported = true
		} else if rr, ok := cl.Provider.(provider.RuntimeReporter); ok {
			if why := rr.MissingRuntimes()[runtime]; why != "" {
				missing = append(missing, cl.Config.Name+": "+why)
			}
		}
	}
	if !supported {
		cond(v1.ConditionUnsupported, true, "NoRuntime", unsupportedMessage(runtime, missing))
	}
	if dec.Blocked {
		cond(v1.ConditionSecrets, false, "SecretMissing", dec.Reason)
	} else if hasSecretRefs(d.Spec) {
		if p, ok := prev[v1.ConditionSecrets]; ok && p.Status == "False" && len(dec.Placed) == 0 && st.ReadyReplicas < desired {
			st.Conditions = append(st.Conditions, p) // still waiting (e.g. start backoff)
		} else {
			cond(v1.ConditionSecrets, true, "Resolved", "every referenced secret exists")
		}
	}
	switch {
	case dec.Blocked:
		cond(v1.ConditionPlaced, false, "SecretMissing", "replicas wait for their secrets")
	case dec.Unplaced > 0:
		cond(v1.ConditionPlaced, false, "Unplaceable", fmt.Sprintf("%d replica(s) cannot be placed: %s", dec.Unplaced, dec.Reason))
	case failedStart != "":
		cond(v1.ConditionPlaced, false, "StartFailed", failedStart)
	default:
		// Keep a previous Unplaceable condition while placement is backing off.
		if p, ok := prev[v1.ConditionPlaced]; ok && p.Status == "False" && len(dec.Placed) == 0 && st.ReadyReplicas < desired && len(live) < desired {
			st.Conditions = append(st.Conditions, p)
		} else {
			cond(v1.ConditionPlaced, true, "Placed", "every desired replica has a cloud")
		}
	}
	cond(v1.ConditionRolledOut, obsolete == 0 && st.ReadyReplicas >= desired, "Revision", fmt.Sprintf("revision %d: %d ready, %d replica(s) of older revisions", d.Revision, st.ReadyReplicas, obsolete))

	switch {
	case d.DeletedAt != nil:
		st.Phase = v1.PhaseDeleting
	case st.ReadyReplicas >= desired && obsolete == 0:
		st.Phase = v1.PhaseReady
	case !supported || (failedStart != "" && !anyReady):
		st.Phase = v1.PhaseFailed
	case anyReady:
		st.Phase = v1.PhaseProgressing
	default:
		st.Phase = v1.PhasePending
	}
	if sameStatus(d.Status, st) {
		return nil
	}
	return c.st.SetStatus(ctx, d.Name, st)
}

func hasSecretRefs(s v1.DeploymentSpec) bool {
	for _, e := range s.Env {
		if e.ValueFrom != nil {
			return true
		}
	}
	return false
}

func unsupportedMessage(runtime string, missing []string) string {
	why := ""
	if len(missing) > 0 {
		why = " (" + strings.Join(uniqueReasons(missing), "; ") + ")"
	}
	if runtime == "oci" {
		if why == "" {
			why = "; add a cloud that runs OCI images"
		}
		return "no configured cloud can run images" + why
	}
	return "no configured cloud can run processes" + why
}

// uniqueReasons folds "cloud: reason" lines that share a reason into one
// "cloud-a, cloud-b: reason".
func uniqueReasons(lines []string) []string {
	var order []string
	clouds := map[string][]string{}
	for _, l := range lines {
		name, why, _ := strings.Cut(l, ": ")
		if _, ok := clouds[why]; !ok {
			order = append(order, why)
		}
		clouds[why] = append(clouds[why], name)
	}
	out := make([]string, 0, len(order))
	for _, why := range order {
		out = append(out, strings.Join(clouds[why], ", ")+": "+why)
	}
	return out
}

func sameStatus(a, b v1.DeploymentStatus) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}
