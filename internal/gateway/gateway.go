// Package gateway is aloft's in-process HTTP gateway: a reverse proxy that
// routes each request to a ready replica of the deployment it addresses.
//
// # Routing
//
// A request addresses deployment NAME either with the header
// "X-Aloft-Deployment: NAME" (which wins) or with Host "NAME.<domain>" (port
// and case ignored). Unknown deployments get 404, known deployments without a
// ready replica 503 with Retry-After, both with a JSON body.
//
// # Scale from zero
//
// A deployment with activation enabled (SetActivation) answers no 503 for
// want of a replica: such requests are held, up to a bound per deployment
// (then 503 "activation queue full"), until SetBackends publishes a ready
// replica or their timeout passes (then 504), and Options.OnDemand asks for a
// replica once per episode. Publishing a replica wakes every held request at
// once; their bodies are read only when they are forwarded. See activation.go.
// Stats gives an autoscaler each deployment's requests in flight and held,
// its request count and a latency histogram.
//
// # Balancing
//
// Each request goes to the replica with the fewest outstanding requests
// (counted by this gateway). Ties are broken round-robin: the scan over the
// replicas starts one position later for every request, and the first replica
// with the lowest count wins. A replica whose connection was refused is passed
// over for a second while others are available.
//
// # Retries
//
// A request is retried on another replica of the same deployment (each replica
// at most once) only when nothing of it reached the failed replica: the dial
// failed, or the first write on a connection failed before any byte was
// accepted. Request bodies up to 1 MiB with a known length are read before the
// first attempt and replayed; larger or chunked bodies are streamed and so are
// only retried on dial failures (when none of the body has been read yet).
// Once any byte was sent, a failure is returned to the client (502), never
// retried, whatever the method.
//
// # Proxying
//
// Plain-HTTP backends are served by the gateway's own HTTP/1.1 client: a pool
// of keep-alive connections per backend address, on which the handler
// goroutine writes the request and reads the response itself (no per-connection
// reader/writer goroutines, no intermediate http.Response), with raw
// non-blocking system calls on Linux. Responses are streamed: whenever the
// gateway has written body bytes and would have to wait for the backend, it
// flushes to the client first, so server-sent events and chunked responses
// arrive as the backend writes them. Protocol upgrades (WebSocket) and https
// backends go through net/http/httputil.ReverseProxy.
//
// # Keep-alive fast path
//
// Gateway is an ordinary http.Handler and works behind any http.Server,
// middleware, TLS or HTTP/2. When it is the Handler of an http.Server itself
// (srv.Handler == g, so no middleware is bypassed), it takes over HTTP/1.x
// keep-alive connections on their first bodiless request and serves them
// with its own request loop (in bench/gateway this takes the gateway from
// about 35µs to about 18µs of CPU per proxied request, nginx's figure); see
// fast.go for what it honours (MaxHeaderBytes,
// ReadHeaderTimeout/ReadTimeout, IdleTimeout, Shutdown) and how. As for any
// hijacked connection, http.Server.Close does not close taken-over
// connections (Shutdown does, once they are idle); they end when their client
// closes them or after the idle timeout.
//
// # Metrics
//
// With Options.Registerer set, the gateway exports
//
//	aloft_gateway_requests_total{deployment,cloud,code}
//	aloft_gateway_request_duration_seconds{deployment,cloud}
//	aloft_gateway_inflight_requests{deployment,replica}
//	aloft_gateway_retries_total{deployment}
//	aloft_gateway_unavailable_total{deployment,reason}
//	aloft_gateway_waiting_requests{deployment}
//
// kept in atomic counters on the hot path and read at scrape time, so series
// of removed deployments and replicas disappear with them. Requests for unknown
// deployments or without a deployment are counted with deployment="" (the
// requested name is never a label value, which keeps cardinality bounded).
package gateway

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Backend is one ready replica of a deployment.
type Backend struct {
	ReplicaID, Cloud, URL string // URL like "http://127.0.0.1:41234"

	// Dial, if not nil, opens every connection to this replica, for the
	// gateway's own HTTP/1.1 client as well as for upgrades (WebSocket) and
	// https backends. It is called with network "tcp" and the URL's
	// host:port as addr (which it may ignore), and with a context bounded by
	// the gateway's dial timeout; it must be safe for concurrent use. Use it
	// for replicas that can only be reached in some other way than dialing
	// the URL from the gateway's network namespace, e.g. replicas in network
	// namespaces of their own that all listen on the same address.
	//
	// A backend with Dial gets connection pools of its own (keyed by
	// ReplicaID and the URL's host:port), so backends with equal URLs never
	// share a connection; backends without Dial share the pool of their
	// host:port.
	// As funcs cannot be compared, SetBackends treats a backend as unchanged
	// (keeping its pool and its idle connections) when ReplicaID, URL and
	// whether Dial is nil are the same; new connections are then opened with
	// the Dial given last. Give a replica a stable Dial, and a new ReplicaID
	// when it is replaced by a process elsewhere.
	//
	// Nil means: dial the URL's host:port with the gateway's dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Options configure a Gateway.
type Options struct {
	// Domain: Host "<deployment>.<domain>[:port]" routes to deployment. Default "localhost".
	Domain string
	// Registerer receives the gateway's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Logger may be nil.
	Logger *slog.Logger
	// OnDemand, if not nil, is called when a request finds a deployment
	// with activation enabled (see SetActivation) without a ready replica:
	// the caller should start one at once. It is called on a goroutine of
	// its own, without any of the gateway's locks held, once per
	// activation episode: again only after a ready set was published
	// (SetBackends with replicas) or after every request held in the
	// episode has left without a replica (timed out or gone). It must
	// tolerate the occasional repeated call.
	OnDemand func(deployment string)
}

// Tunables of the proxy. They are variables so tests can change them.
var (
	dialTimeout        = 5 * time.Second
	tcpKeepAlive       = 30 * time.Second
	idleConnTimeout    = 90 * time.Second
	maxIdlePerUpstream = 1024
	maxBufferedBody    = int64(1 << 20)
	backendDownFor     = time.Second
	peekAfterIdle      = time.Millisecond
)

// HeaderDeployment names the deployment a request is for; it wins over Host.
const HeaderDeployment = "X-Aloft-Deployment"

// Gateway routes and proxies requests to deployments' replicas. It is an
// http.Handler; all methods are safe for concurrent use.
type Gateway struct {
	domainSuffix string // "." + lower-case domain
	log          *slog.Logger
	metricsOn    bool

	deps atomic.Pointer[map[string]*deployment] // copy-on-write

	mu        sync.Mutex // serialises writers of deps, replicas, upstreams
	replicas  map[string]*replica
	upstreams map[string]*upstream
	configs   map[string]*depConfig // SetActivation, SetMetricHeader (activation.go)
	repMu     sync.RWMutex          // guards replicas for readers (InFlight, WaitIdle, scrape)

	fallback *http.Transport // for upgrades and https backends

	onDemand func(deployment string)

	servers sync.Map // *http.Server -> *serverGroup (fast.go)

	// Tunables fixed at New (copies of the package variables).
	fastPath      bool
	peekAfterIdle time.Duration
	janitorTick   time.Duration
	watchAfter    time.Duration

	// Requests that could not be attributed to a known deployment.
	noRoute, unknownDeployment atomic.Uint64

	// access holds endpoint policies (access.go); denied counts refusals.
	access accessTable
	denied *prometheus.CounterVec
}

// New returns a Gateway with no deployments.
func New(opts Options) *Gateway {
	domain := strings.ToLower(strings.Trim(opts.Domain, "."))
	if domain == "" {
		domain = "localhost"
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{
		domainSuffix:  "." + domain,
		log:           log,
		replicas:      map[string]*replica{},
		upstreams:     map[string]*upstream{},
		configs:       map[string]*depConfig{},
		onDemand:      opts.OnDemand,
		fastPath:      fastPath,
		peekAfterIdle: peekAfterIdle,
		janitorTick:   janitorTick,
		watchAfter:    watchAfter,
	}
	empty := map[string]*deployment{}
	g.deps.Store(&empty)
	g.fallback = &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: dialTimeout, KeepAlive: tcpKeepAlive}).DialContext,
		ForceAttemptHTTP2:     false,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       idleConnTimeout,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
	g.denied = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "aloft_gateway_denied_total", Help: "Requests refused by a deployment's endpoint access policy, by reason.",
	}, []string{"deployment", "reason"})
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(g.denied); err != nil {
			log.Error("gateway: registering metrics", "err", err)
		}
		if err := opts.Registerer.Register(&collector{g: g}); err != nil {
			log.Error("gateway: registering metrics", "err", err)
		} else {
			g.metricsOn = true
		}
	}
	return g
}

// deployment is one routable deployment.
type deployment struct {
	name string
	set  atomic.Pointer[backendSet]
	rr   atomic.Uint32

	// Stats (see metrics.go). clouds is copy-on-write under Gateway.mu.
	clouds    atomic.Pointer[map[string]*cloudStats]
	retries   atomic.Uint64
	noReplica atomic.Uint64
	allFailed atomic.Uint64
	removed   atomic.Bool

	// Autoscaling (activation.go): the setting, the requests received and
	// those held for a replica, and the requests activation refused.
	cfg         atomic.Pointer[depConfig] // nil: none
	requests    atomic.Uint64
	waiting     waiters
	queueFull   atomic.Uint64
	holdTimeout atomic.Uint64
}

// backendSet is an immutable snapshot of a deployment's ready replicas.
type backendSet struct {
	backends []*backend
}

// backend is one replica in one deployment's set.
type backend struct {
	Backend
	rep *replica
	up  *upstream // plain-HTTP pool; nil when the fallback proxy is used
	// pool is the pool this backend holds a reference to (released with
	// it): up, or for an https backend with Dial the replica's pool, whose
	// transport the fallback proxy uses; nil for other https backends.
	pool  *upstream
	url   *url.URL // parsed URL for the fallback proxy
	stats *cloudStats
	// downUntil is a monotonic-ish unix-nano time until which the backend is
	// passed over after a refused connection.
	downUntil atomic.Int64
}

// replica counts the requests in flight to one replica ID, across sets.
type replica struct {
	id         string
	deployment string // last deployment that listed it (for the gauge label)
	inflight   atomic.Int64
	refs       int         // number of deployments listing it; guarded by Gateway.mu
	removed    atomic.Bool // refs == 0: forget it once idle
	waiters    atomic.Int32
	mu         sync.Mutex
	idle       chan struct{} // closed when inflight drops to 0 while someone waits

	// The last value of the metric header (activation.go): float64 bits,
	// and when it was received (unix nanoseconds; 0: never).
	metric   atomic.Uint64
	metricAt atomic.Int64
}

func (r *replica) begin() { r.inflight.Add(1) }

func (g *Gateway) end(r *replica) {
	if r.inflight.Add(-1) != 0 {
		return
	}
	if r.waiters.Load() > 0 {
		r.mu.Lock()
		if r.idle != nil {
			close(r.idle)
			r.idle = nil
		}
		r.mu.Unlock()
	}
	if r.removed.Load() {
		g.forgetReplica(r)
	}
}

// forgetReplica drops a replica that no set lists and that has become idle.
func (g *Gateway) forgetReplica(r *replica) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if r.refs == 0 && r.inflight.Load() == 0 && g.replicas[r.id] == r {
		g.repMu.Lock()
		delete(g.replicas, r.id)
		g.repMu.Unlock()
	}
}

// SetBackends replaces the ready set of a deployment atomically, creating the
// deployment if it is new. A replica missing from the new set gets no new
// requests; requests in flight to it finish. An empty or nil set keeps the
// deployment known with no ready replica (503).
func (g *Gateway) SetBackends(name string, backends []Backend) {
	name = strings.ToLower(name)
	g.mu.Lock()
	defer g.mu.Unlock()

	deps := *g.deps.Load()
	d := deps[name]
	if d == nil {
		d = &deployment{name: name}
		empty := map[string]*cloudStats{}
		d.clouds.Store(&empty)
		d.set.Store(&backendSet{})
		d.cfg.Store(g.configs[name])
		nd := make(map[string]*deployment, len(deps)+1)
		for k, v := range deps {
			nd[k] = v
		}
		nd[name] = d
		defer g.deps.Store(&nd) // publish once the set is in place
	}
	old := d.set.Load()

	seen := make(map[string]bool, len(backends))
	set := &backendSet{}
	for _, b := range backends {
		if b.ReplicaID == "" || seen[b.ReplicaID] {
			if b.ReplicaID != "" {
				g.log.Warn("gateway: duplicate replica in backend set", "deployment", name, "replica", b.ReplicaID)
			}
			continue
		}
		u, err := url.Parse(b.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			g.log.Error("gateway: invalid backend URL", "deployment", name, "replica", b.ReplicaID, "url", b.URL)
			continue
		}
		seen[b.ReplicaID] = true
		nb := &backend{Backend: b, url: u, stats: g.cloudStatsLocked(d, b.Cloud)}
		// Keep the passive-health state of an unchanged backend (see
		// Backend.Dial for what unchanged means).
		for _, ob := range old.backends {
			if ob.ReplicaID == b.ReplicaID && ob.URL == b.URL && (ob.Dial == nil) == (b.Dial == nil) {
				nb.downUntil.Store(ob.downUntil.Load())
			}
		}
		nb.rep = g.acquireReplicaLocked(b.ReplicaID, name)
		// Pools are acquired before the old set's are released, so an
		// unchanged backend keeps its pool (and its idle connections).
		plain := u.Scheme == "http" && u.User == nil && (u.Path == "" || u.Path == "/") && u.RawQuery == ""
		if plain || b.Dial != nil {
			nb.pool = g.acquireUpstreamLocked(u.Host, b)
		}
		if plain {
			nb.up = nb.pool
		}
		set.backends = append(set.backends, nb)
	}
	d.set.Store(set)
	for _, ob := range old.backends {
		g.releaseLocked(ob)
	}
	if len(set.backends) > 0 {
		d.wakeWaiters(true) // held requests go to the new replicas
	}
}

// RemoveDeployment forgets a deployment, with its access policy, activation
// and metric header settings: its requests get 404 from now on, and so do
// requests held for a replica (activation), at once. Requests in flight
// finish.
func (g *Gateway) RemoveDeployment(name string) {
	name = strings.ToLower(name)
	g.access.remove(name)
	g.denied.DeletePartialMatch(prometheus.Labels{"deployment": name})
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.configs, name)
	deps := *g.deps.Load()
	d := deps[name]
	if d == nil {
		return
	}
	nd := make(map[string]*deployment, len(deps))
	for k, v := range deps {
		if k != name {
			nd[k] = v
		}
	}
	g.deps.Store(&nd)
	d.removed.Store(true)
	old := d.set.Swap(&backendSet{})
	for _, ob := range old.backends {
		g.releaseLocked(ob)
	}
	d.wakeWaiters(false)
}

// InFlight returns the number of requests now being proxied to a replica.
func (g *Gateway) InFlight(replicaID string) int {
	g.repMu.RLock()
	r := g.replicas[replicaID]
	g.repMu.RUnlock()
	if r == nil {
		return 0
	}
	return int(r.inflight.Load())
}

// WaitIdle blocks until the replica has no request in flight, or ctx ends
// (then it returns ctx.Err()). Use it to drain a replica after removing it
// from its deployment's set.
func (g *Gateway) WaitIdle(ctx context.Context, replicaID string) error {
	g.repMu.RLock()
	r := g.replicas[replicaID]
	g.repMu.RUnlock()
	if r == nil {
		return nil
	}
	r.waiters.Add(1)
	defer r.waiters.Add(-1)
	for {
		r.mu.Lock()
		if r.inflight.Load() == 0 {
			r.mu.Unlock()
			return nil
		}
		if r.idle == nil {
			r.idle = make(chan struct{})
		}
		ch := r.idle
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (g *Gateway) acquireReplicaLocked(id, dep string) *replica {
	r := g.replicas[id]
	if r == nil {
		r = &replica{id: id}
		g.repMu.Lock()
		g.replicas[id] = r
		g.repMu.Unlock()
	}
	r.refs++
	r.removed.Store(false)
	g.repMu.Lock()
	r.deployment = dep
	g.repMu.Unlock()
	return r
}

// acquireUpstreamLocked returns the pool for b at hostport: the pool shared by
// all backends at hostport, or for a backend with Dial its replica's own.
func (g *Gateway) acquireUpstreamLocked(hostport string, b Backend) *upstream {
	key := hostport
	if b.Dial != nil {
		// A host:port never contains '/', so these keys cannot collide
		// with shared pools' keys.
		key = "replica/" + b.ReplicaID + "/" + hostport
	}
	u := g.upstreams[key]
	if u == nil {
		u = newUpstream(key, hostport)
		u.peekAfterIdle = g.peekAfterIdle
		g.upstreams[key] = u
	}
	if b.Dial != nil {
		u.setDial(b.Dial)
	}
	u.refs++
	return u
}

// releaseLocked drops one set's references to a backend's replica and pool.
func (g *Gateway) releaseLocked(b *backend) {
	if r := b.rep; r != nil {
		r.refs--
		if r.refs == 0 {
			r.removed.Store(true)
			if r.inflight.Load() == 0 {
				g.repMu.Lock()
				delete(g.replicas, r.id)
				g.repMu.Unlock()
			}
		}
	}
	if u := b.pool; u != nil {
		u.refs--
		if u.refs == 0 {
			delete(g.upstreams, u.key)
			u.close()
		}
	}
}
