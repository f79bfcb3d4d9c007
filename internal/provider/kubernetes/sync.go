package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// view joins what the caches hold about one revision's pods with the
// replicas the provider knows. It is built under p.mu.
type view struct {
	dep *appsv1.Deployment // the cached Deployment, nil when absent or being deleted
	// byID maps each replica id some live pod is bound to, to its best pod.
	byID map[string]*corev1.Pod
	// podOf maps the provider's replicas of this revision (wanted or
	// stopping) to their live pods.
	podOf map[string]*corev1.Pod
	// wanted are the replicas not stopping, in start order; need those of
	// them without a live pod.
	wanted, need []*replica
	// protected counts live pods bound to replicas a restarted server may
	// still adopt (unknown ids during the adoption grace).
	protected int
	// free are live pods that may be bound now, best first: unbound pods,
	// then pods bound to replicas nobody wants (orphans) without the stop
	// mark. marked are orphans with the stop mark, which may be bound only
	// once the Deployment has converged (the ReplicaSet removed whatever it
	// was going to remove).
	free, marked []*corev1.Pod
	// unmarked are the orphans among free, which get the stop mark unless
	// they are bound now; remarked are wanted replicas' pods that still
	// carry the stop mark.
	unmarked, remarked []*corev1.Pod
	// stopping are the pods of stopping replicas without the stop mark.
	stopping []*corev1.Pod
	// unbound counts the live pods bound to no replica that were there when
	// the provider's caches first synced; inGrace says the adoption grace is
	// not over.
	unbound int
	inGrace bool
	stopped map[string]time.Time
}

// viewLocked builds the view of the Deployment named name.
func (p *Provider) viewLocked(name string, now time.Time) *view {
	v := &view{byID: map[string]*corev1.Pod{}, podOf: map[string]*corev1.Pod{}, stopped: p.stopped}
	if o, ok, _ := p.deploys.GetStore().GetByKey(p.ns + "/" + name); ok {
		if d, ok := o.(*appsv1.Deployment); ok && d.DeletionTimestamp == nil {
			v.dep = d
		}
	}
	var pods []*corev1.Pod
	if objs, err := p.pods.GetIndexer().ByIndex(indexObject, name); err == nil {
		for _, o := range objs {
			if pod, ok := o.(*corev1.Pod); ok && live(pod) {
				pods = append(pods, pod)
			}
		}
	}
	slices.SortFunc(pods, func(a, b *corev1.Pod) int {
		switch {
		case podLess(a, b):
			return -1
		case podLess(b, a):
			return 1
		}
		return 0
	})
	var unbound []*corev1.Pod
	for _, pod := range pods {
		id := pod.Annotations[AnnotationReplica]
		if b, ok := p.binds[pod.UID]; ok {
			id = b
		}
		if id == "" {
			unbound = append(unbound, pod)
			continue
		}
		if _, dup := v.byID[id]; dup {
			unbound = append(unbound, pod) // a second pod of one replica: free again
			continue
		}
		v.byID[id] = pod
	}
	obj := p.objs[name]
	grace := p.graceOverLocked(now)
	var orphans []*corev1.Pod
	for id, pod := range v.byID {
		if obj != nil && obj.reps[id] != nil {
			v.podOf[id] = pod
			continue
		}
		if _, stopped := p.stopped[id]; !stopped && !grace && p.replicas[id] == nil {
			v.protected++
			continue
		}
		orphans = append(orphans, pod)
	}
	slices.SortFunc(orphans, func(a, b *corev1.Pod) int {
		switch {
		case podLess(a, b):
			return -1
		case podLess(b, a):
			return 1
		}
		return 0
	})
	v.free = unbound
	v.inGrace = !grace
	for _, pod := range unbound {
		if p.initialPods[pod.UID] {
			v.unbound++
		}
	}
	for _, pod := range orphans {
		if pod.Annotations[AnnotationDeletionCost] == stopCost {
			v.marked = append(v.marked, pod)
		} else {
			v.unmarked = append(v.unmarked, pod)
			v.free = append(v.free, pod)
		}
	}
	if obj != nil {
		for _, rep := range sortedReplicas(obj.reps) {
			if rep.stopping {
				if pod := v.podOf[rep.id]; pod != nil && pod.Annotations[AnnotationDeletionCost] != stopCost {
					v.stopping = append(v.stopping, pod)
				}
				continue
			}
			v.wanted = append(v.wanted, rep)
			pod := v.podOf[rep.id]
			switch {
			case pod == nil:
				v.need = append(v.need, rep)
			case pod.Annotations[AnnotationDeletionCost] == stopCost:
				v.remarked = append(v.remarked, pod)
			}
		}
	}
	return v
}

// desired is the replica count the Deployment should have: the wanted
// replicas, plus during the adoption grace the pods a restarted server may
// still adopt: those bound to replicas it does not know yet, and unbound
// ones that predate the provider beyond what wanted replicas without a pod
// take (the replacement of a pod deleted while no server watched).
func (v *view) desired() int {
	n := len(v.wanted) + v.protected
	if v.inGrace {
		n += max(0, v.unbound-len(v.need))
	}
	return n
}

// converged reports whether the Deployment has desired replicas and its
// ReplicaSets have acted on that.
func (v *view) converged() bool {
	d := v.dep
	return d != nil && d.Spec.Replicas != nil && int(*d.Spec.Replicas) == v.desired() &&
		d.Status.ObservedGeneration >= d.Generation && d.Status.Replicas == *d.Spec.Replicas
}

// boundOthers counts the live pods bound to replicas other than id that
// were not stopped.
func (v *view) boundOthers(id string) int {
	n := 0
	for other := range v.byID {
		if _, stopped := v.stopped[other]; other != id && !stopped {
			n++
		}
	}
	return n
}

// process handles one work queue key.
func (p *Provider) process(key string) error {
	ctx, cancel := context.WithTimeout(p.ctx, 4*p.callTimeout)
	defer cancel()
	kind, arg, _ := strings.Cut(key, "/")
	switch kind {
	case "obj":
		unlock := p.locks.lock(arg)
		defer unlock()
		return p.reconcile(ctx, arg, false)
	case "svc":
		return p.syncService(ctx, arg)
	case "secrets":
		return p.sweepSecrets(ctx)
	}
	return nil
}

func (p *Provider) worker() {
	defer p.wg.Done()
	for {
		key, shutdown := p.queue.Get()
		if shutdown {
			return
		}
		func() {
			defer p.queue.Done(key)
			if p.Health() != nil {
				// Nothing can be written now; look again shortly.
				p.queue.AddAfter(key, time.Second)
				return
			}
			if err := p.process(key); err != nil {
				if p.ctx.Err() == nil {
					p.log.Warn("sync", "key", key, "err", err)
				}
				p.queue.AddRateLimited(key)
				return
			}
			p.queue.Forget(key)
		}()
	}
}

type bindOp struct {
	pod *corev1.Pod
	id  string
}

// reconcile brings one revision's Deployment to what the provider wants:
// unbound pods are bound to replicas without one, pods nobody wants are
// marked for removal, the Deployment is applied with the wanted replica
// count when that or its spec drifted, or deleted when no replica is
// wanted. The caller holds the object's key lock.
func (p *Provider) reconcile(ctx context.Context, name string, force bool) error {
	now := time.Now()
	p.mu.Lock()
	obj := p.objs[name]
	if obj == nil {
		grace := p.graceOverLocked(now)
		p.mu.Unlock()
		return p.collect(ctx, name, grace)
	}
	v := p.viewLocked(name, now)
	pool := v.free
	if v.converged() {
		pool = append(slices.Clip(pool), v.marked...)
	}
	var binds []bindOp
	used := map[types.UID]bool{}
	for i, rep := range v.need {
		if i >= len(pool) {
			break
		}
		binds = append(binds, bindOp{pool[i], rep.id})
		used[pool[i].UID] = true
	}
	mark := slices.Clone(v.stopping)
	for _, pod := range v.unmarked {
		if !used[pod.UID] {
			mark = append(mark, pod)
		}
	}
	desired := v.desired()
	dep := v.dep
	var stopping []*replica
	for _, rep := range obj.reps {
		if rep.stopping {
			stopping = append(stopping, rep)
		}
	}
	p.mu.Unlock()

	// Pods to be removed get the stop mark before the Deployment shrinks, or
	// the ReplicaSet could remove a wanted replica's pod instead.
	var side []error
	for _, pod := range mark {
		if err := p.annotate(ctx, pod, false, map[string]*string{AnnotationDeletionCost: ptr(stopCost)}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("mark pod %s for removal: %w", pod.Name, err)
		}
	}
	if len(mark) > 0 {
		p.waitMarked(ctx, mark, 2*time.Second)
	}
	for _, b := range binds {
		err := p.annotate(ctx, b.pod, true, map[string]*string{AnnotationReplica: ptr(b.id), AnnotationDeletionCost: nil})
		if err != nil {
			side = append(side, fmt.Errorf("bind pod %s to replica %s: %w", b.pod.Name, b.id, err))
			continue
		}
		p.mu.Lock()
		p.binds[b.pod.UID] = b.id
		p.mu.Unlock()
		p.log.Info("pod bound", "pod", b.pod.Name, "replica", b.id)
		p.notes.notify(b.id)
	}
	for _, pod := range v.remarked {
		if err := p.annotate(ctx, pod, false, map[string]*string{AnnotationDeletionCost: nil}); err != nil && !apierrors.IsNotFound(err) {
			side = append(side, fmt.Errorf("unmark pod %s: %w", pod.Name, err))
		}
	}
	if len(side) > 0 && ctx.Err() == nil {
		p.log.Warn("sync pods", "deployment", name, "err", errors.Join(side...))
		p.queue.AddRateLimited("obj/" + name)
	}

	if desired == 0 {
		if err := p.deleteObject(ctx, obj.deployment, obj.revision); err != nil {
			return err
		}
		p.mu.Lock()
		for _, rep := range stopping {
			p.forgetLocked(rep, now)
		}
		if len(obj.reps) == 0 && p.objs[name] == obj {
			delete(p.objs, name)
		}
		p.mu.Unlock()
		p.queue.Add("svc/" + obj.deployment)
		return nil
	}
	apply := force || dep == nil || dep.Spec.Replicas == nil ||
		dep.Generation > obj.appliedGen ||
		(dep.Generation >= obj.appliedGen && int(*dep.Spec.Replicas) != desired) ||
		obj.appliedReplicas != desired || now.Sub(obj.lastApply) >= p.opts.Resync
	if apply {
		if err := p.applyObject(ctx, obj, desired, force); err != nil {
			return err
		}
	}
	if len(stopping) > 0 {
		p.mu.Lock()
		for _, rep := range stopping {
			p.forgetLocked(rep, now)
		}
		p.mu.Unlock()
	}
	return nil
}

// waitMarked waits (up to limit) until the pod cache shows the stop mark
// on pods (or them gone): the ReplicaSet controller reads pods from a cache
// of its own, fed by the same API server, and must see the mark before the
// scale-down for the mark to decide which pod goes.
func (p *Provider) waitMarked(ctx context.Context, pods []*corev1.Pod, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for {
		done := true
		for _, pod := range pods {
			o, ok, _ := p.pods.GetStore().Get(pod)
			if cur, _ := o.(*corev1.Pod); ok && cur != nil && cur.UID == pod.UID && cur.Annotations[AnnotationDeletionCost] != stopCost {
				done = false
				break
			}
		}
		if done || time.Now().After(deadline) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// forgetLocked drops a replica whose scale-down was applied.
func (p *Provider) forgetLocked(rep *replica, now time.Time) {
	if p.replicas[rep.id] == rep {
		delete(p.replicas, rep.id)
	}
	delete(rep.obj.reps, rep.id)
	p.stopped[rep.id] = now
}

// applyObject applies a revision's Secret (when its values are known and
// changed, or force) and its Deployment with desired replicas. The caller
// holds the object's key lock.
func (p *Provider) applyObject(ctx context.Context, obj *object, desired int, force bool) error {
	objs, err := build(obj.spec, p.cloud, obj.revision, desired)
	if err != nil {
		return err
	}
	p.mu.Lock()
	secrets, dirty := obj.secrets, obj.secretsDirty
	p.mu.Unlock()
	now := time.Now()
	if objs.SecretName != "" && secrets != nil && (force || dirty || now.Sub(obj.lastApply) >= p.opts.Resync) {
		_, err := p.client.CoreV1().Secrets(p.ns).Apply(ctx, secretObject(obj.deployment, obj.revision, p.ns, secrets), applyOpts)
		if err != nil {
			return fmt.Errorf("apply Secret %s/%s: %w", p.ns, objs.SecretName, err)
		}
		p.mu.Lock()
		if mapsEqual(obj.secrets, secrets) {
			obj.secretsDirty = false
		}
		p.mu.Unlock()
	}
	res, err := p.client.AppsV1().Deployments(p.ns).Apply(ctx, objs.Deployment, applyOpts)
	if err != nil {
		return fmt.Errorf("apply Deployment %s/%s: %w", p.ns, obj.name, err)
	}
	obj.appliedGen, obj.appliedReplicas, obj.lastApply = res.Generation, desired, now
	p.log.Debug("deployment applied", "deployment", obj.name, "replicas", desired, "generation", res.Generation)
	return nil
}

var applyOpts = metav1.ApplyOptions{FieldManager: FieldManager, Force: true}

// deleteObject deletes a revision's Deployment and Secret by label.
func (p *Provider) deleteObject(ctx context.Context, deployment string, revision int64) error {
	sel := metav1.ListOptions{LabelSelector: objectSelector(deployment, revision)}
	bg := metav1.DeletePropagationBackground
	del := metav1.DeleteOptions{PropagationPolicy: &bg}
	if err := p.client.AppsV1().Deployments(p.ns).DeleteCollection(ctx, del, sel); err != nil {
		return fmt.Errorf("delete Deployments %s in %s: %w", sel.LabelSelector, p.ns, err)
	}
	if err := p.client.CoreV1().Secrets(p.ns).DeleteCollection(ctx, del, sel); err != nil {
		return fmt.Errorf("delete Secrets %s in %s: %w", sel.LabelSelector, p.ns, err)
	}
	p.log.Info("deployment deleted", "deployment", ObjectName(deployment, revision))
	return nil
}

// collect removes the Deployment of a revision no replica wants, once the
// adoption grace is over. The caller holds the object's key lock.
func (p *Provider) collect(ctx context.Context, name string, grace bool) error {
	if !grace {
		return nil
	}
	o, ok, _ := p.deploys.GetStore().GetByKey(p.ns + "/" + name)
	if !ok {
		return nil
	}
	d, ok := o.(*appsv1.Deployment)
	if !ok || d.DeletionTimestamp != nil || objectOf(d) != name {
		return nil
	}
	p.log.Info("removing a Deployment no replica wants", "deployment", name)
	if err := p.deleteObject(ctx, d.Labels[LabelDeployment], mustRevision(d.Labels[LabelRevision])); err != nil {
		return err
	}
	p.queue.Add("svc/" + d.Labels[LabelDeployment])
	return nil
}

func mustRevision(s string) int64 {
	var r int64
	_, _ = fmt.Sscan(s, &r)
	return r
}

// syncService applies the Service of an aloft deployment from its newest
// revision here, or deletes it by label when no revision remains.
func (p *Provider) syncService(ctx context.Context, deployment string) error {
	unlock := p.locks.lock("svc/" + deployment)
	defer unlock()
	p.mu.Lock()
	var best *object
	for _, o := range p.objs {
		if o.deployment == deployment && len(o.reps) > 0 && (best == nil || o.revision > best.revision) {
			best = o
		}
	}
	var objSpec *object
	if best != nil {
		objSpec = &object{spec: best.spec, revision: best.revision}
	}
	p.mu.Unlock()

	var svc *corev1.Service
	if o, ok, _ := p.services.GetStore().GetByKey(p.ns + "/" + ServiceName(deployment)); ok {
		svc, _ = o.(*corev1.Service)
	}
	if objSpec != nil {
		objs, err := build(objSpec.spec, p.cloud, objSpec.revision, 0)
		if err != nil {
			return err
		}
		if svc != nil && serviceMatches(svc, objs) {
			return nil
		}
		if _, err := p.client.CoreV1().Services(p.ns).Apply(ctx, objs.Service, applyOpts); err != nil {
			return fmt.Errorf("apply Service %s/%s: %w", p.ns, ServiceName(deployment), err)
		}
		return nil
	}
	// No revision is wanted: keep the Service while a Deployment of the
	// deployment is still there (it may yet be adopted, or is going).
	for _, o := range p.deploys.GetStore().List() {
		if d, ok := o.(*appsv1.Deployment); ok && d.Labels[LabelDeployment] == deployment {
			return nil
		}
	}
	any := svc != nil
	for _, o := range p.services.GetStore().List() {
		if s, ok := o.(*corev1.Service); ok && s.Labels[LabelDeployment] == deployment {
			any = true
		}
	}
	if !any {
		return nil
	}
	// Services have no delete-collection: list by label, delete what it lists.
	sel := metav1.ListOptions{LabelSelector: deploymentSelector(deployment)}
	list, err := p.client.CoreV1().Services(p.ns).List(ctx, sel)
	if err != nil {
		return fmt.Errorf("list Services %s in %s: %w", sel.LabelSelector, p.ns, err)
	}
	for _, s := range list.Items {
		err := p.client.CoreV1().Services(p.ns).Delete(ctx, s.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &s.UID}})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete Service %s/%s: %w", p.ns, s.Name, err)
		}
	}
	p.log.Info("service deleted", "deployment", deployment)
	return nil
}

// serviceMatches reports whether a cached Service has what aloft applies.
func serviceMatches(svc *corev1.Service, objs objects) bool {
	want := objs.Service.Spec
	if len(svc.Spec.Ports) != 1 || len(want.Ports) != 1 {
		return false
	}
	got, w := svc.Spec.Ports[0], want.Ports[0]
	if got.Name != *w.Name || got.Port != *w.Port || got.TargetPort != *w.TargetPort || got.Protocol != *w.Protocol {
		return false
	}
	if len(svc.Spec.Selector) != len(want.Selector) {
		return false
	}
	for k, v := range want.Selector {
		if svc.Spec.Selector[k] != v {
			return false
		}
	}
	for k, v := range objs.Service.Labels {
		if svc.Labels[k] != v {
			return false
		}
	}
	return true
}

// sweepSecrets deletes, after the adoption grace, the Secrets of revisions
// no replica wants.
func (p *Provider) sweepSecrets(ctx context.Context) error {
	p.mu.Lock()
	grace := p.graceOverLocked(time.Now())
	for id, t := range p.stopped {
		if time.Since(t) > time.Hour {
			delete(p.stopped, id)
		}
	}
	p.mu.Unlock()
	if !grace {
		return nil
	}
	list, err := p.client.CoreV1().Secrets(p.ns).List(ctx, metav1.ListOptions{LabelSelector: managedSelector})
	if err != nil {
		return fmt.Errorf("list Secrets in %s: %w", p.ns, err)
	}
	for i := range list.Items {
		s := &list.Items[i]
		name := objectOf(s)
		if name == "" {
			continue
		}
		err := func() error {
			unlock := p.locks.lock(name)
			defer unlock()
			p.mu.Lock()
			known := p.objs[name] != nil
			p.mu.Unlock()
			if known {
				return nil
			}
			return p.deleteObject(ctx, s.Labels[LabelDeployment], mustRevision(s.Labels[LabelRevision]))
		}()
		if err != nil {
			return err
		}
	}
	return nil
}

// annotate sets (or, for nil values, removes) annotations of a pod with a
// merge patch by the binder field manager; with precondition the patch
// fails if the pod changed since it was read.
func (p *Provider) annotate(ctx context.Context, pod *corev1.Pod, precondition bool, ann map[string]*string) error {
	meta := map[string]any{"annotations": ann}
	if precondition {
		meta["resourceVersion"] = pod.ResourceVersion
	}
	body, err := json.Marshal(map[string]any{"metadata": meta})
	if err != nil {
		return err
	}
	_, err = p.client.CoreV1().Pods(p.ns).Patch(ctx, pod.Name, types.MergePatchType, body, metav1.PatchOptions{FieldManager: BinderFieldManager})
	return err
}

// keyedMutex is a set of mutexes by name.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedEntry{}
	}
	e := k.locks[key]
	if e == nil {
		e = &keyedEntry{}
		k.locks[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		e.refs--
		if e.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

// notifier calls OnChange from one goroutine, coalescing per replica.
type notifier struct {
	fn      func(string)
	mu      sync.Mutex
	pending []string
	set     map[string]bool
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

func newNotifier(fn func(string)) *notifier {
	n := &notifier{fn: fn, set: map[string]bool{}, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go n.loop()
	return n
}

func (n *notifier) notify(ids ...string) {
	if n.fn == nil || len(ids) == 0 {
		return
	}
	n.mu.Lock()
	for _, id := range ids {
		if !n.set[id] {
			n.set[id] = true
			n.pending = append(n.pending, id)
		}
	}
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *notifier) loop() {
	defer close(n.done)
	for {
		select {
		case <-n.wake:
			n.flush()
		case <-n.stop:
			n.flush()
			return
		}
	}
}

func (n *notifier) flush() {
	for {
		n.mu.Lock()
		ids := n.pending
		n.pending = nil
		clear(n.set)
		n.mu.Unlock()
		if len(ids) == 0 {
			return
		}
		for _, id := range ids {
			n.fn(id)
		}
	}
}

func (n *notifier) close() {
	n.once.Do(func() {
		close(n.stop)
		<-n.done
	})
}
