// Package kubernetes is the provider for a cloud with provider: kubernetes:
// it runs replicas as pods of a Kubernetes cluster through client-go.
//
// # Replicas and Deployments
//
// aloft's provider interface is per replica; Kubernetes works per
// Deployment. The provider maps one onto the other:
//
//   - Every revision of an aloft deployment placed on the cloud is one
//     Deployment named "<deployment>-r<revision>" in the configured
//     namespace, labelled aloft.dev/deployment, aloft.dev/revision and
//     aloft.dev/managed-by=aloft (its pods carry the same labels). Its
//     spec.replicas is the number of aloft replicas of that revision the
//     provider runs: Start adds one, Stop removes one. Each aloft deployment
//     has one Service (named after it, selecting aloft.dev/deployment,
//     port = the spec's port, target port "http") built from its newest
//     revision here.
//   - A replica is bound to a pod by the pod annotation aloft.dev/replica
//     (a merge patch by the field manager "aloft-binder"): when a pod of the
//     Deployment has no replica, it is bound to a replica without a pod (the
//     one started first). A replica whose pod is deleted (by a user, an
//     eviction, a drift repair that rolled the Deployment) gets the next
//     unbound pod the ReplicaSet makes. Get reports the bound pod: Starting
//     while pending, creating or not ready ("waiting for a pod" while none is
//     bound), Ready when its Ready condition is true, BackOff in
//     CrashLoopBackOff or an image pull backoff (with restarts and the last
//     exit code), Starting with the scheduler's message while it is
//     Unschedulable and Failed once that has lasted Options.UnschedulableAfter.
//     Endpoint is http://<pod IP>:<port>.
//   - Stop marks the replica's pod with controller.kubernetes.io/pod-deletion-cost
//     -1000000 and applies the Deployment with one replica less, so that the
//     ReplicaSet removes that pod (with the pod's termination grace period;
//     the spec has no grace setting, so it is Kubernetes' default). The
//     ReplicaSet ranks unscheduled, pending and unready pods before the
//     deletion cost; if it removes another replica's pod instead, the marked
//     pod is bound to that replica once the Deployment has converged, so one
//     pod fewer runs either way. The last replica deletes the Deployment, and
//     the deployment's last revision its Service.
//   - The Handle is {namespace, deployment, pod}. Adopt (after a server
//     restart) finds the pod by its aloft.dev/replica annotation; a replica
//     whose pod is gone keeps its place while the Deployment has a replica
//     slot no other replica holds; otherwise it is provider.ErrGone.
//
// # Writes
//
// Deployments, Services and Secrets are written by server-side apply with
// the field manager "aloft" and force, so aloft owns exactly the fields it
// sets: a user's kubectl edit of other fields (an annotation, a sidecar)
// survives every re-apply, while an edit of aloft's fields (replicas, image,
// resources, ...) bumps the Deployment's generation and is reverted by the
// next reconcile. Nothing is deleted by name: objects aloft no longer wants
// are deleted by label selector (aloft.dev/managed-by=aloft plus
// aloft.dev/deployment and aloft.dev/revision). After a restart, pods bound
// to replicas the new server has not adopted yet are left alone for
// Options.AdoptGrace after the caches synced; Deployments and Secrets no
// adopted replica wants are removed after that. So one aloft server owns
// the managed objects of a namespace: two servers (or two clouds) must not
// share one.
//
// Secrets: env entries with valueFrom.secret become secretKeyRef
// references to a Secret named like the Deployment, keyed by aloft secret
// name; the provider applies it with the values the controller resolved
// (Replica.Env). The values never appear in the Deployment, which is why
// Render's output equals the applied Deployment and lists the Secret only in
// a comment. PORT, ALOFT_DEPLOYMENT, ALOFT_REVISION, ALOFT_CLOUD and
// ALOFT_POD_NAME are set for every pod; ALOFT_REPLICA_ID cannot be (a pod is
// bound after it is created), the pod's aloft.dev/replica annotation holds it.
//
// # Resources and GPUs
//
// Requests and limits are the spec's CPU and memory (and nvidia.com/gpu:
// count). A GPU replica gets the node selector {gpuLabel: product} of its
// GPU type from the cloud's kubernetes.gpus (plus the type's nodeSelector)
// and the type's tolerations. A GPU type with no mapping fails Start with an
// error wrapping provider.ErrCapacity; a type no node has starts and waits
// Unschedulable (a node pool that scales from zero may add one), and Get
// says that no node carries the label. FreeCapacity sums the schedulable,
// ready nodes' allocatable resources minus the requests of the pods bound to
// them, per aloft GPU type.
//
// # Watching and health
//
// Shared informers watch (never poll) the namespace's Deployments, Services
// and pods labelled aloft.dev/managed-by=aloft, and the cluster's nodes and
// non-terminated pods (stripped to their requests) for capacity. A work
// queue reconciles a revision's Deployment when its pods or the Deployment
// change, and every Options.Resync. Health is nil while the API server
// answered its /readyz probe within the cloud's unavailableAfter and the
// Deployment and pod watches are not forbidden; otherwise it names the
// cause (unreachable, unauthorized, forbidden). While unavailable, Start and
// Stop fail at once and the queue waits; when the API server returns, the
// informers re-list and every wanted Deployment is applied as it is wanted
// now, without recreating what still runs.
//
// # Permissions
//
// In the namespace: deployments (get, list, watch, patch, deletecollection),
// pods (list, watch, patch; get for pods/log), services (list, watch, patch,
// delete), secrets (list, patch, deletecollection). Cluster-wide, for
// FreeCapacity only: nodes and pods (list, watch).
//
// Render prints the same Deployment and Service the provider applies, for
// `kubectl apply --server-side --field-manager=aloft -f -`.
package kubernetes
