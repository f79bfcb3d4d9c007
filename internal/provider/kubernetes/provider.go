package kubernetes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/provider"
)

// Defaults for Options.
const (
	DefaultAdoptGrace         = time.Minute
	DefaultUnschedulableAfter = 2 * time.Minute
	DefaultResync             = 5 * time.Minute
)

// Options tune a Provider; the zero value is fine.
type Options struct {
	// OnChange is called (from one provider goroutine, coalesced per
	// replica, never under a provider lock) when a replica's pod changes.
	OnChange func(replicaID string)
	Logger   *slog.Logger
	// AdoptGrace is how long after the provider's caches first synced the
	// pods bound to replicas it does not know are left alone (counted in
	// their Deployment, not rebound, not deleted) so that a restarted server
	// can adopt them. Afterwards such pods and Deployments are removed.
	// Default 1m.
	AdoptGrace time.Duration
	// UnschedulableAfter is how long a pod the scheduler cannot place is
	// reported Starting with the scheduler's message before it is Failed.
	// Default 2m.
	UnschedulableAfter time.Duration
	// ProbeInterval is how often the API server's /readyz is asked
	// (default unavailableAfter/4, between 100ms and 5s).
	ProbeInterval time.Duration
	// Resync is how often every object aloft wants is applied again even
	// when nothing seems to have changed (default 5m).
	Resync time.Duration
	// RESTConfig, when set, is used instead of the cloud's kubeconfig (tests).
	RESTConfig *rest.Config
}

// Provider runs replicas as pods of a Kubernetes cluster. It implements
// provider.Provider, provider.RuntimeReporter, provider.HealthReporter and
// provider.CapacityReporter.
type Provider struct {
	cloud       v1.CloudConfig
	cfg         v1.KubernetesConfig
	ns          string
	opts        Options
	log         *slog.Logger
	client      kubernetes.Interface
	server      string
	context     string
	health      *health
	callTimeout time.Duration

	deploys, pods, services, nodes, allPods cache.SharedIndexInformer

	queue  workqueue.TypedRateLimitingInterface[string]
	synced chan struct{} // closed once the namespace caches synced
	locks  keyedMutex

	mu       sync.Mutex
	replicas map[string]*replica
	objs     map[string]*object
	stopped  map[string]time.Time // replica ids stopped (or asked to stop) recently
	binds    map[types.UID]string // bindings written but not yet in the cache
	// initialPods are the pods the caches held when they first synced.
	initialPods map[types.UID]bool
	syncedAt    time.Time
	seq         uint64
	closed      bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	notes  *notifier
}

// object is one revision's Deployment as aloft wants it.
type object struct {
	name       string
	deployment string
	revision   int64
	spec       v1.DeploymentSpec
	// secrets holds the values of the secrets the spec references, nil
	// when unknown (adopted without them); secretsDirty says they changed
	// since they were last applied.
	secrets      map[string]string
	secretsDirty bool
	reps         map[string]*replica

	// Written under the object's key lock only.
	appliedGen      int64
	appliedReplicas int
	lastApply       time.Time
}

type replica struct {
	id       string
	obj      *object
	started  time.Time
	seq      uint64
	stopping bool
}

// handle is the JSON aloft persists for Adopt.
type handle struct {
	Namespace  string `json:"namespace"`
	Deployment string `json:"deployment"`
	Pod        string `json:"pod,omitempty"`
}

var (
	_ provider.Provider         = (*Provider)(nil)
	_ provider.RuntimeReporter  = (*Provider)(nil)
	_ provider.HealthReporter   = (*Provider)(nil)
	_ provider.CapacityReporter = (*Provider)(nil)
)

// Informer names, as Health reports them.
const (
	infDeployments = "deployments"
	infPods        = "pods"
	infServices    = "services"
	infNodes       = "nodes"
	infAllPods     = "pods (all namespaces)"
)

// Pod indexes.
const (
	indexObject  = "object"
	indexReplica = "replica"
)

// New returns the provider of a cloud with provider: kubernetes. It reads
// the kubeconfig and fails for an unreadable or malformed file or a missing
// context, naming them; an unreachable API server is not an error here but
// makes Health fail after unavailableAfter. The provider watches the
// namespace's Deployments, Services and pods that aloft manages, and the
// cluster's nodes and pods for FreeCapacity, until Close.
func New(cloud v1.CloudConfig, opts Options) (*Provider, error) {
	if cloud.Kubernetes == nil {
		return nil, fmt.Errorf("cloud %s: provider kubernetes needs a kubernetes section", cloud.Name)
	}
	k := defaulted(cloud)
	if errs := k.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("cloud %s: invalid kubernetes section: %v", cloud.Name, errs)
	}
	rc := opts.RESTConfig
	ctxName := k.Context
	if rc == nil {
		var err error
		rc, ctxName, err = restConfig(k.Kubeconfig, k.Context)
		if err != nil {
			return nil, fmt.Errorf("cloud %s: %w", cloud.Name, err)
		}
	}
	rc = rest.CopyConfig(rc)
	rc.QPS, rc.Burst = 50, 100
	rc.UserAgent = "aloft"
	rc.WarningHandler = rest.NoWarnings{}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("cloud %s: kubernetes client: %w", cloud.Name, err)
	}
	return newProvider(cloud, k, opts, client, rc.Host, ctxName), nil
}

func newProvider(cloud v1.CloudConfig, k v1.KubernetesConfig, opts Options, client kubernetes.Interface, server, ctxName string) *Provider {
	after := k.UnavailableAfterDuration()
	if opts.AdoptGrace <= 0 {
		opts.AdoptGrace = DefaultAdoptGrace
	}
	if opts.UnschedulableAfter <= 0 {
		opts.UnschedulableAfter = DefaultUnschedulableAfter
	}
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = min(max(after/4, 100*time.Millisecond), 5*time.Second)
	}
	if opts.Resync <= 0 {
		opts.Resync = DefaultResync
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("cloud", cloud.Name)
	ctx, cancel := context.WithCancel(context.Background())
	p := &Provider{
		cloud: cloud, cfg: k, ns: k.Namespace, opts: opts, log: log,
		client: client, server: server, context: ctxName,
		health:      newHealth(server, after, time.Now()),
		callTimeout: max(after, 5*time.Second),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "aloft-" + cloud.Name}),
		synced:      make(chan struct{}),
		replicas:    map[string]*replica{},
		objs:        map[string]*object{},
		stopped:     map[string]time.Time{},
		binds:       map[types.UID]string{},
		initialPods: map[types.UID]bool{},
		ctx:         ctx, cancel: cancel,
		notes: newNotifier(opts.OnChange),
	}
	p.makeInformers()
	for _, inf := range []cache.SharedIndexInformer{p.deploys, p.pods, p.services, p.nodes, p.allPods} {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			inf.RunWithContext(ctx)
		}()
	}
	p.wg.Add(4)
	go p.waitSynced()
	go p.worker()
	go p.prober()
	go p.resyncer()
	return p
}

// listWatch wraps list and watch calls so that Health sees their outcome.
func (p *Provider) informer(name string, example runtime.Object,
	list func(context.Context, metav1.ListOptions) (runtime.Object, error),
	watchf func(context.Context, metav1.ListOptions) (watch.Interface, error),
	indexers cache.Indexers) cache.SharedIndexInformer {
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			obj, err := list(ctx, o)
			p.health.listed(name, err)
			return obj, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			w, err := watchf(ctx, o)
			p.health.listed(name, err)
			return w, err
		},
	}
	inf := cache.NewSharedIndexInformerWithOptions(cache.ToListWatcherWithWatchListSemantics(lw, p.client), example,
		cache.SharedIndexInformerOptions{Indexers: indexers})
	_ = inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			p.health.listed(name, err)
			p.log.Debug("watch error", "informer", name, "err", err)
		}
	})
	return inf
}

func (p *Provider) makeInformers() {
	ns, c := p.ns, p.client
	managed := func(o metav1.ListOptions) metav1.ListOptions { o.LabelSelector = managedSelector; return o }
	p.deploys = p.informer(infDeployments, &appsv1.Deployment{},
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return c.AppsV1().Deployments(ns).List(ctx, managed(o))
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return c.AppsV1().Deployments(ns).Watch(ctx, managed(o))
		}, nil)
	p.pods = p.informer(infPods, &corev1.Pod{},
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return c.CoreV1().Pods(ns).List(ctx, managed(o))
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return c.CoreV1().Pods(ns).Watch(ctx, managed(o))
		}, cache.Indexers{
			indexObject: func(o any) ([]string, error) {
				if name := objectOf(o); name != "" {
					return []string{name}, nil
				}
				return nil, nil
			},
			indexReplica: func(o any) ([]string, error) {
				if pod, ok := o.(*corev1.Pod); ok && pod.Annotations[AnnotationReplica] != "" {
					return []string{pod.Annotations[AnnotationReplica]}, nil
				}
				return nil, nil
			},
		})
	p.services = p.informer(infServices, &corev1.Service{},
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return c.CoreV1().Services(ns).List(ctx, managed(o))
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return c.CoreV1().Services(ns).Watch(ctx, managed(o))
		}, nil)
	p.nodes = p.informer(infNodes, &corev1.Node{},
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return c.CoreV1().Nodes().List(ctx, o)
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return c.CoreV1().Nodes().Watch(ctx, o)
		}, nil)
	bound := func(o metav1.ListOptions) metav1.ListOptions {
		o.FieldSelector = "spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed"
		return o
	}
	p.allPods = p.informer(infAllPods, &corev1.Pod{},
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return c.CoreV1().Pods("").List(ctx, bound(o))
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return c.CoreV1().Pods("").Watch(ctx, bound(o))
		}, nil)
	_ = p.allPods.SetTransform(stripPod)

	_, _ = p.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { p.podEvent(nil, o) },
		UpdateFunc: func(old, o any) { p.podEvent(old, o) },
		DeleteFunc: func(o any) { p.podEvent(o, nil) },
	})
	_, _ = p.deploys.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { p.deploymentEvent(o) },
		UpdateFunc: func(_, o any) { p.deploymentEvent(o) },
		DeleteFunc: func(o any) { p.deploymentEvent(o) },
	})
	_, _ = p.services.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { p.serviceEvent(o) },
		UpdateFunc: func(_, o any) { p.serviceEvent(o) },
		DeleteFunc: func(o any) { p.serviceEvent(o) },
	})
}

// objectOf returns the Deployment name a pod or Deployment belongs to,
// from its aloft labels.
func objectOf(o any) string {
	if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	m, ok := o.(metav1.Object)
	if !ok {
		return ""
	}
	l := m.GetLabels()
	d, r := l[LabelDeployment], l[LabelRevision]
	rev, err := strconv.ParseInt(r, 10, 64)
	if d == "" || err != nil {
		return ""
	}
	return ObjectName(d, rev)
}

func asPod(o any) *corev1.Pod {
	if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	pod, _ := o.(*corev1.Pod)
	return pod
}

func (p *Provider) podEvent(old, cur any) {
	var ids []string
	for _, o := range []any{old, cur} {
		if pod := asPod(o); pod != nil {
			if id := pod.Annotations[AnnotationReplica]; id != "" {
				ids = append(ids, id)
			}
			p.mu.Lock()
			if id, ok := p.binds[pod.UID]; ok {
				ids = append(ids, id)
				if cur == nil || pod.Annotations[AnnotationReplica] == id {
					delete(p.binds, pod.UID)
				}
			}
			p.mu.Unlock()
			if name := objectOf(pod); name != "" {
				p.queue.Add("obj/" + name)
			}
		}
	}
	p.notes.notify(ids...)
}

func (p *Provider) deploymentEvent(o any) {
	name := objectOf(o)
	if name == "" {
		return
	}
	p.queue.Add("obj/" + name)
	if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	if d, ok := o.(*appsv1.Deployment); ok {
		p.queue.Add("svc/" + d.Labels[LabelDeployment])
	}
	var ids []string
	p.mu.Lock()
	if obj := p.objs[name]; obj != nil {
		for id := range obj.reps {
			ids = append(ids, id)
		}
	}
	p.mu.Unlock()
	p.notes.notify(ids...)
}

func (p *Provider) serviceEvent(o any) {
	if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	if s, ok := o.(*corev1.Service); ok && s.Labels[LabelDeployment] != "" {
		p.queue.Add("svc/" + s.Labels[LabelDeployment])
	}
}

// waitSynced marks the namespace caches synced and schedules the end of
// the adoption grace.
func (p *Provider) waitSynced() {
	defer p.wg.Done()
	if !cache.WaitForCacheSync(p.ctx.Done(), p.deploys.HasSynced, p.pods.HasSynced, p.services.HasSynced) {
		return
	}
	p.mu.Lock()
	p.syncedAt = time.Now()
	for _, o := range p.pods.GetStore().List() {
		if pod, ok := o.(*corev1.Pod); ok {
			p.initialPods[pod.UID] = true
		}
	}
	p.mu.Unlock()
	close(p.synced)
	p.log.Info("kubernetes caches synced", "server", p.server, "namespace", p.ns)
	select {
	case <-time.After(p.opts.AdoptGrace):
		p.enqueueAll()
	case <-p.ctx.Done():
	}
}

func (p *Provider) graceOverLocked(now time.Time) bool {
	return !p.syncedAt.IsZero() && now.Sub(p.syncedAt) >= p.opts.AdoptGrace
}

// enqueueAll asks for a sync of every object aloft knows or the caches
// hold, of every Service, and a sweep of Secrets.
func (p *Provider) enqueueAll() {
	p.mu.Lock()
	for name := range p.objs {
		p.queue.Add("obj/" + name)
	}
	p.mu.Unlock()
	for _, o := range p.deploys.GetStore().List() {
		if name := objectOf(o); name != "" {
			p.queue.Add("obj/" + name)
		}
	}
	for _, o := range p.services.GetStore().List() {
		p.serviceEvent(o)
	}
	p.queue.Add("secrets")
}

func (p *Provider) resyncer() {
	defer p.wg.Done()
	t := time.NewTicker(p.opts.Resync)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
			p.enqueueAll()
		}
	}
}

func (p *Provider) prober() {
	defer p.wg.Done()
	t := time.NewTicker(p.opts.ProbeInterval)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(p.ctx, min(p.health.after, 5*time.Second))
		err := p.client.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error()
		cancel()
		if p.ctx.Err() != nil {
			return
		}
		p.health.probed(err, time.Now())
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Health implements provider.HealthReporter: nil while the API server
// answered within the last unavailableAfter and aloft may watch the
// namespace's Deployments and pods; otherwise an error wrapping
// ErrUnavailable that names the cause (unreachable, unauthorized,
// forbidden).
func (p *Provider) Health() error {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return fmt.Errorf("%w: provider closed", ErrUnavailable)
	}
	if err := p.health.check(time.Now(), infDeployments, infPods); err != nil {
		return fmt.Errorf("cloud %s (context %s): %w", p.cloud.Name, p.context, err)
	}
	return nil
}

// ready returns nil when the cloud is healthy and the namespace caches have
// synced (waiting for them up to the call timeout).
func (p *Provider) ready(ctx context.Context) error {
	if err := p.Health(); err != nil {
		return err
	}
	select {
	case <-p.synced:
		return nil
	default:
	}
	t := time.NewTimer(p.callTimeout)
	defer t.Stop()
	select {
	case <-p.synced:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	why := "no answer yet"
	for _, name := range []string{infDeployments, infPods, infServices} {
		if err := p.health.listErr(name); err != nil {
			why = name + ": " + describe(err, p.server)
			break
		}
	}
	return fmt.Errorf("cloud %s: %w: the caches of namespace %s have not synced within %s (%s)", p.cloud.Name, ErrUnavailable, p.ns, p.callTimeout, why)
}

// Runtimes implements provider.Provider: a cluster runs images.
func (p *Provider) Runtimes() []string { return []string{"oci"} }

// MissingRuntimes implements provider.RuntimeReporter.
func (p *Provider) MissingRuntimes() map[string]string {
	return map[string]string{"process": "a kubernetes cloud runs images only: a spec with only command needs a local cloud"}
}

// Start implements provider.Provider: it records the replica and applies
// its revision's Deployment with one more replica (and the Service, and
// the Secret of referenced secrets), then returns; a pod of the Deployment
// is bound to it when one appears.
func (p *Provider) Start(ctx context.Context, r provider.Replica) (provider.Instance, error) {
	if r.ID == "" {
		return provider.Instance{}, errors.New("replica id is empty")
	}
	spec := r.Spec
	spec.Name = r.Deployment
	objs, err := build(spec, p.cloud, r.Revision, 0)
	if err != nil {
		var gm *gpuMappingError
		if errors.As(err, &gm) {
			return provider.Instance{}, fmt.Errorf("start replica %s: %w (%w)", r.ID, err, provider.ErrCapacity)
		}
		return provider.Instance{}, fmt.Errorf("start replica %s: %w", r.ID, err)
	}
	if err := p.ready(ctx); err != nil {
		return provider.Instance{}, fmt.Errorf("start replica %s: %w", r.ID, err)
	}
	values, complete := secretValues(spec, r.Env)
	if objs.SecretName != "" && !complete {
		return provider.Instance{}, fmt.Errorf("start replica %s: the values of the secrets it references were not given", r.ID)
	}
	name := ObjectName(r.Deployment, r.Revision)
	unlock := p.locks.lock(name)
	defer unlock()

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return provider.Instance{}, errors.New("kubernetes provider is closed")
	}
	if _, ok := p.replicas[r.ID]; ok {
		p.mu.Unlock()
		return provider.Instance{}, fmt.Errorf("replica %s is already running", r.ID)
	}
	delete(p.stopped, r.ID)
	obj := p.objectLocked(name, r.Deployment, r.Revision, spec)
	if objs.SecretName != "" && !mapsEqual(obj.secrets, values) {
		obj.secrets, obj.secretsDirty = values, true
	}
	rep := p.addReplicaLocked(obj, r.ID)
	desired := p.viewLocked(name, time.Now()).desired()
	p.mu.Unlock()

	cctx, cancel := context.WithTimeout(ctx, p.callTimeout)
	defer cancel()
	if err := p.applyObject(cctx, obj, desired, true); err != nil {
		p.mu.Lock()
		p.removeReplicaLocked(rep)
		p.mu.Unlock()
		p.queue.Add("obj/" + name)
		return provider.Instance{}, fmt.Errorf("start replica %s on cloud %s: %w", r.ID, p.cloud.Name, err)
	}
	if err := p.syncService(cctx, r.Deployment); err != nil {
		p.log.Warn("apply service", "deployment", r.Deployment, "err", err)
		p.queue.AddRateLimited("svc/" + r.Deployment)
	}
	p.queue.Add("obj/" + name)
	p.log.Info("replica started", "replica", r.ID, "deployment", name)
	return p.Get(r.ID)
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) || (a == nil) != (b == nil) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// objectLocked returns the object of a revision, creating it; the spec is
// the latest one given.
func (p *Provider) objectLocked(name, deployment string, revision int64, spec v1.DeploymentSpec) *object {
	obj := p.objs[name]
	if obj == nil {
		obj = &object{name: name, deployment: deployment, revision: revision, reps: map[string]*replica{}}
		p.objs[name] = obj
	}
	obj.spec = spec
	return obj
}

func (p *Provider) addReplicaLocked(obj *object, id string) *replica {
	p.seq++
	rep := &replica{id: id, obj: obj, started: time.Now(), seq: p.seq}
	obj.reps[id] = rep
	p.replicas[id] = rep
	return rep
}

func (p *Provider) removeReplicaLocked(rep *replica) {
	delete(p.replicas, rep.id)
	delete(rep.obj.reps, rep.id)
	if len(rep.obj.reps) == 0 && p.objs[rep.obj.name] == rep.obj {
		delete(p.objs, rep.obj.name)
	}
}

// Adopt implements provider.Provider: it finds the pod bound to the
// replica (annotation aloft.dev/replica) in its revision's Deployment. A
// replica whose pod is gone keeps its place while the Deployment has a
// replica slot no other replica holds, and gets the next pod; otherwise
// Adopt returns provider.ErrGone.
func (p *Provider) Adopt(ctx context.Context, r provider.Replica, raw json.RawMessage) (provider.Instance, error) {
	var h handle
	if err := json.Unmarshal(raw, &h); err != nil {
		return provider.Instance{}, fmt.Errorf("adopt %s: bad handle: %w", r.ID, err)
	}
	if h.Namespace != "" && h.Namespace != p.ns {
		return provider.Instance{}, fmt.Errorf("adopt %s: it ran in namespace %s, the cloud now uses %s: %w", r.ID, h.Namespace, p.ns, provider.ErrGone)
	}
	if err := p.ready(ctx); err != nil {
		return provider.Instance{}, fmt.Errorf("adopt %s: %w", r.ID, err)
	}
	spec := r.Spec
	spec.Name = r.Deployment
	name := ObjectName(r.Deployment, r.Revision)
	unlock := p.locks.lock(name)
	defer unlock()

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return provider.Instance{}, errors.New("kubernetes provider is closed")
	}
	if rep := p.replicas[r.ID]; rep != nil {
		return p.instanceLocked(rep, p.viewLocked(rep.obj.name, time.Now())), nil
	}
	if _, stopped := p.stopped[r.ID]; stopped {
		return provider.Instance{}, fmt.Errorf("adopt %s: it was stopped: %w", r.ID, provider.ErrGone)
	}
	v := p.viewLocked(name, time.Now())
	if v.byID[r.ID] == nil {
		slots := 0
		if v.dep != nil && v.dep.DeletionTimestamp == nil && v.dep.Spec.Replicas != nil {
			slots = int(*v.dep.Spec.Replicas) - v.boundOthers(r.ID) - len(v.need)
		}
		if slots <= 0 {
			return provider.Instance{}, fmt.Errorf("adopt %s: no pod is bound to it and Deployment %s/%s has no free slot: %w", r.ID, p.ns, name, provider.ErrGone)
		}
	}
	obj := p.objectLocked(name, r.Deployment, r.Revision, spec)
	if obj.secrets == nil {
		if values, ok := secretValues(spec, r.Env); ok {
			obj.secrets = values
		}
	}
	rep := p.addReplicaLocked(obj, r.ID)
	p.queue.Add("obj/" + name)
	p.log.Info("replica adopted", "replica", r.ID, "deployment", name)
	return p.instanceLocked(rep, p.viewLocked(name, time.Now())), nil
}

// Get implements provider.Provider.
func (p *Provider) Get(id string) (provider.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	rep := p.replicas[id]
	if rep == nil {
		return provider.Instance{}, fmt.Errorf("%s: %w", id, provider.ErrNotFound)
	}
	return p.instanceLocked(rep, p.viewLocked(rep.obj.name, time.Now())), nil
}

func (p *Provider) instanceLocked(rep *replica, v *view) provider.Instance {
	inst := provider.Instance{ID: rep.id, State: v1.ReplicaStarting, StartedAt: rep.started}
	h := handle{Namespace: p.ns, Deployment: rep.obj.name}
	if pod := v.podOf[rep.id]; pod != nil {
		h.Pod = pod.Name
		port := rep.obj.spec.Port
		if port == 0 {
			port = v1.DefaultPort
		}
		s := observePod(pod, port, time.Now(), p.opts.UnschedulableAfter)
		inst.State, inst.Restarts, inst.Message, inst.Endpoint = s.State, s.Restarts, s.Message, s.Endpoint
		if !s.StartedAt.IsZero() {
			inst.StartedAt = s.StartedAt
		}
		if pod.Spec.NodeName == "" {
			inst.Message += p.gpuHintLocked(rep.obj)
		}
	} else {
		inst.Message = "waiting for a pod"
		switch {
		case v.dep == nil:
			inst.Message += " (Deployment " + p.ns + "/" + rep.obj.name + " not seen yet)"
		case deploymentProblem(v.dep) != "":
			inst.Message += ": Deployment " + rep.obj.name + ": " + deploymentProblem(v.dep)
		}
	}
	inst.Handle, _ = json.Marshal(h)
	return inst
}

// gpuHintLocked says when no node carries the GPU product a revision needs.
func (p *Provider) gpuHintLocked(obj *object) string {
	req, err := obj.spec.Resources.Normalized()
	if err != nil || req.GPUCount == 0 {
		return ""
	}
	g, ok := p.cfg.GPUs[req.GPUType]
	if !ok {
		return ""
	}
	for _, o := range p.nodes.GetStore().List() {
		if n, ok := o.(*corev1.Node); ok && n.Labels[p.cfg.GPULabel] == g.Product {
			return ""
		}
	}
	if !p.nodes.HasSynced() {
		return ""
	}
	return fmt.Sprintf(" (no node of the cluster has GPU type %s: none is labelled %s=%s)", req.GPUType, p.cfg.GPULabel, g.Product)
}

// Stop implements provider.Provider: it marks the replica's pod as the
// cheapest to delete (controller.kubernetes.io/pod-deletion-cost) and
// applies its Deployment with one replica less, so that the ReplicaSet
// removes that pod with the pod's termination grace period; the last
// replica deletes the Deployment (and the deployment's last revision its
// Service). While the cloud is unavailable Stop fails, and the scale-down
// is applied in the background once it answers again.
func (p *Provider) Stop(ctx context.Context, id string, _ time.Duration) error {
	p.mu.Lock()
	rep := p.replicas[id]
	if rep == nil {
		// Not adopted: a pod still bound to it is removed as unwanted.
		p.stopped[id] = time.Now()
		var names []string
		if objs, err := p.pods.GetIndexer().ByIndex(indexReplica, id); err == nil {
			for _, o := range objs {
				if name := objectOf(o); name != "" {
					names = append(names, name)
				}
			}
		}
		p.mu.Unlock()
		for _, n := range names {
			p.queue.Add("obj/" + n)
		}
		return nil
	}
	name := rep.obj.name
	p.mu.Unlock()

	unlock := p.locks.lock(name)
	defer unlock()
	p.mu.Lock()
	if p.replicas[id] != rep {
		p.mu.Unlock()
		return nil
	}
	rep.stopping = true
	p.mu.Unlock()

	if err := p.Health(); err != nil {
		p.queue.Add("obj/" + name)
		return fmt.Errorf("stop replica %s: %w", id, err)
	}
	cctx, cancel := context.WithTimeout(ctx, p.callTimeout)
	defer cancel()
	// reconcile marks the pod, then shrinks (or deletes) the Deployment.
	if err := p.reconcile(cctx, name, false); err != nil {
		p.queue.AddRateLimited("obj/" + name)
		return fmt.Errorf("stop replica %s: %w", id, err)
	}
	p.mu.Lock()
	gone := p.replicas[id] != rep
	p.mu.Unlock()
	if !gone {
		return fmt.Errorf("stop replica %s: the scale-down of %s/%s was not applied yet", id, p.ns, name)
	}
	p.log.Info("replica stopped", "replica", id, "deployment", name)
	return nil
}

func ptr[T any](v T) *T { return &v }

// Logs implements provider.Provider: the log of the replica's pod.
// Kubernetes cannot tail by bytes: without Follow the whole log is read and
// its last TailBytes kept; with Follow about TailBytes/80 lines are shown
// first.
func (p *Provider) Logs(ctx context.Context, id string, opts provider.LogOptions) (io.ReadCloser, error) {
	inst, err := p.Get(id)
	if err != nil {
		return nil, err
	}
	var h handle
	_ = json.Unmarshal(inst.Handle, &h)
	if h.Pod == "" {
		return nil, fmt.Errorf("replica %s has no pod yet: %s", id, inst.Message)
	}
	lo := &corev1.PodLogOptions{Container: containerName, Follow: opts.Follow}
	if opts.Follow && opts.TailBytes > 0 {
		lo.TailLines = ptr(opts.TailBytes/80 + 1)
	}
	rc, err := p.client.CoreV1().Pods(p.ns).GetLogs(h.Pod, lo).Stream(ctx)
	if err != nil {
		return nil, fmt.Errorf("logs of replica %s (pod %s): %w", id, h.Pod, err)
	}
	if opts.Follow || opts.TailBytes <= 0 {
		return rc, nil
	}
	defer rc.Close()
	tail, err := readTail(rc, opts.TailBytes)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(tail)), nil
}

// readTail reads r to the end and returns its last n bytes.
func readTail(r io.Reader, n int64) ([]byte, error) {
	buf := make([]byte, 0, min(n, 1<<20)*2)
	chunk := make([]byte, 32<<10)
	for {
		k, err := r.Read(chunk)
		buf = append(buf, chunk[:k]...)
		if int64(len(buf)) > 2*n {
			buf = append(buf[:0], buf[int64(len(buf))-n:]...)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if int64(len(buf)) > n {
		buf = buf[int64(len(buf))-n:]
	}
	return buf, nil
}

// Close implements provider.Provider: it stops watching without changing
// anything in the cluster, so a later server can adopt the pods.
func (p *Provider) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.queue.ShutDown()
	p.wg.Wait()
	p.notes.close()
	return nil
}

// sortedReplicas returns reps in start order.
func sortedReplicas(reps map[string]*replica) []*replica {
	out := make([]*replica, 0, len(reps))
	for _, r := range reps {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *replica) int {
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return 0
	})
	return out
}
