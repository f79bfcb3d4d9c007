package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// actGateway is a gateway behind a real HTTP server (fast path as TestMain
// sets it) with deployment "d" at zero replicas and activation a; demands
// receives OnDemand's calls.
func actGateway(t testing.TB, a Activation) (g *Gateway, srv *httptest.Server, reg *prometheus.Registry, demands chan string) {
	t.Helper()
	reg = prometheus.NewRegistry()
	demands = make(chan string, 1000)
	g = New(Options{Registerer: reg, OnDemand: func(name string) { demands <- name }})
	srv = httptest.NewServer(g)
	t.Cleanup(srv.Close)
	t.Cleanup(client.CloseIdleConnections)
	g.SetActivation("d", a)
	g.SetBackends("d", nil)
	return g, srv, reg, demands
}

// result is the outcome of one request sent by send.
type result struct {
	code  int
	body  string
	hdr   http.Header
	err   error
	start time.Time // when the response head arrived
}

// send issues a request (safe on any goroutine).
func send(ctx context.Context, method, url, host string, body io.Reader) result {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return result{err: err}
	}
	req.Host = host
	resp, err := client.Do(req)
	if err != nil {
		return result{err: err}
	}
	at := time.Now()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return result{code: resp.StatusCode, body: string(b), hdr: resp.Header, err: err, start: at}
}

func sendAsync(ctx context.Context, method, url, host string, body io.Reader) <-chan result {
	ch := make(chan result, 1)
	go func() { ch <- send(ctx, method, url, host, body) }()
	return ch
}

func waitResult(t testing.TB, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("request failed: %v", r.err)
		}
		return r
	case <-time.After(waitTimeout):
		t.Fatal("timed out waiting for a response")
	}
	return result{}
}

// waitWaiting waits until n requests are held for deployment name.
func waitWaiting(t testing.TB, g *Gateway, name string, n int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		s, _ := g.Stats(name)
		if s.Waiting == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d requests held for %s, want %d", s.Waiting, name, n)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func errorOf(t testing.TB, body string) errorBody {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	return e
}

func demandCount(ch chan string) int {
	n := 0
	for {
		select {
		case <-ch:
			n++
		default:
			return n
		}
	}
}

// Held requests, with bodies of every kind, are forwarded intact once a
// replica is published; OnDemand is called once for them.
func TestActivationHoldsUntilReady(t *testing.T) {
	g, srv, _, demands := actGateway(t, Activation{Enabled: true})
	var hits atomic.Int64
	be := echoBackend(t, &hits)

	type req struct {
		method  string
		payload []byte
		chunked bool
	}
	reqs := []req{
		{"GET", nil, false},
		{"POST", []byte("small body"), false},
		{"POST", bytes.Repeat([]byte("0123456789abcdef"), 200<<10/16), false},   // buffered (≤ 1 MiB)
		{"PUT", bytes.Repeat([]byte("0123456789abcdef"), 2<<20/16), false},      // streamed
		{"PATCH", bytes.Repeat([]byte("0123456789abcdef"), 300<<10/16+1), true}, // chunked
	}
	var chans []<-chan result
	for _, rq := range reqs {
		var body io.Reader
		if rq.payload != nil {
			body = bytes.NewReader(rq.payload)
			if rq.chunked {
				body = io.MultiReader(body)
			}
		}
		chans = append(chans, sendAsync(context.Background(), rq.method, srv.URL+"/x", "d.localhost", body))
	}
	waitWaiting(t, g, "d", len(reqs))
	select {
	case name := <-demands:
		if name != "d" {
			t.Fatalf("OnDemand(%q)", name)
		}
	case <-time.After(waitTimeout):
		t.Fatal("OnDemand not called")
	}
	if s, _ := g.Stats("d"); s.InFlight != len(reqs) || s.Requests != uint64(len(reqs)) {
		t.Fatalf("stats while held: %+v", s)
	}
	g.SetBackends("d", []Backend{{ReplicaID: "r1", Cloud: "c", URL: be.URL}})
	for i, rq := range reqs {
		r := waitResult(t, chans[i])
		sum := sha256.Sum256(rq.payload)
		want := fmt.Sprintf("%d %s %s", len(rq.payload), hex.EncodeToString(sum[:]), rq.method)
		if r.code != 200 || r.body != want {
			t.Fatalf("%s %d bytes: %d %q, want 200 %q", rq.method, len(rq.payload), r.code, r.body, want)
		}
	}
	if n := demandCount(demands); n != 0 {
		t.Fatalf("OnDemand called %d more times for one burst", n)
	}
	if s, _ := g.Stats("d"); s.Waiting != 0 || s.LatencyCount != uint64(len(reqs)) {
		t.Fatalf("stats after: %+v", s)
	}
}

// The same over raw connections, so that held requests arrive on
// connections the fast loop serves (when the fast path is on).
func TestActivationHeldBodiesOnTakenOverConnection(t *testing.T) {
	g, srv, _, _ := actGateway(t, Activation{Enabled: true})
	var hits atomic.Int64
	be := echoBackend(t, &hits)
	warm := backendServer(t, "warm")
	g.SetBackends("warm", []Backend{{ReplicaID: "w", Cloud: "c", URL: warm.URL}})

	rc := dialRaw(t, srv)
	rc.send("GET / HTTP/1.1\r\nHost: warm.localhost\r\n\r\n")
	if resp, body := rc.response("GET"); resp.StatusCode != 200 || body != "warm" {
		t.Fatalf("warm-up: %d %q", resp.StatusCode, body)
	}
	rc.send("POST /a HTTP/1.1\r\nHost: d.localhost\r\nContent-Length: 5\r\n\r\nhello")
	waitWaiting(t, g, "d", 1)
	rc2 := dialRaw(t, srv)
	rc2.send("GET / HTTP/1.1\r\nHost: warm.localhost\r\n\r\n")
	rc2.response("GET")
	rc2.send("PUT /b HTTP/1.1\r\nHost: d.localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
	waitWaiting(t, g, "d", 2)
	if hits.Load() != 0 {
		t.Fatal("backend reached before it was published")
	}
	g.SetBackends("d", []Backend{{ReplicaID: "r1", Cloud: "c", URL: be.URL}})
	for _, c := range []struct {
		rc     *rawConn
		method string
		data   string
	}{{rc, "POST", "hello"}, {rc2, "PUT", "abcde"}} {
		sum := sha256.Sum256([]byte(c.data))
		want := fmt.Sprintf("%d %s %s", len(c.data), hex.EncodeToString(sum[:]), c.method)
		if resp, body := c.rc.response(c.method); resp.StatusCode != 200 || body != want {
			t.Fatalf("%s: %d %q, want %q", c.method, resp.StatusCode, body, want)
		}
		// The connection stays usable.
		c.rc.send("GET / HTTP/1.1\r\nHost: d.localhost\r\n\r\n")
		if resp, _ := c.rc.response("GET"); resp.StatusCode != 200 {
			t.Fatalf("next request: %d", resp.StatusCode)
		}
	}
}

// A held request to an https replica (the fallback proxy) keeps its body.
func TestActivationHeldRequestToHTTPSReplica(t *testing.T) {
	g, srv, _, _ := actGateway(t, Activation{Enabled: true})
	be := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Queue-Depth", "3.5")
		fmt.Fprintf(w, "%s %s", r.Method, b)
	}))
	t.Cleanup(be.Close)
	roots := x509.NewCertPool()
	roots.AddCert(be.Certificate())
	g.fallback.TLSClientConfig = &tls.Config{RootCAs: roots}
	g.SetMetricHeader("d", "x-queue-depth")

	ch := sendAsync(context.Background(), "POST", srv.URL, "d.localhost", strings.NewReader("payload"))
	// And on a connection the fast loop serves (with the fast path on).
	warm := backendServer(t, "warm")
	g.SetBackends("warm", []Backend{{ReplicaID: "w", Cloud: "c", URL: warm.URL}})
	rc := dialRaw(t, srv)
	rc.send("GET / HTTP/1.1\r\nHost: warm.localhost\r\n\r\n")
	rc.response("GET")
	rc.send("PUT / HTTP/1.1\r\nHost: d.localhost\r\nContent-Length: 4\r\n\r\nraw!")
	waitWaiting(t, g, "d", 2)
	g.SetBackends("d", []Backend{{ReplicaID: "s1", Cloud: "c", URL: be.URL}})
	if r := waitResult(t, ch); r.code != 200 || r.body != "POST payload" {
		t.Fatalf("got %d %q", r.code, r.body)
	}
	if resp, body := rc.response("PUT"); resp.StatusCode != 200 || body != "PUT raw!" {
		t.Fatalf("raw: %d %q", resp.StatusCode, body)
	}
	s, _ := g.Stats("d")
	if len(s.Replicas) != 1 || s.Replicas[0].Metric != 3.5 || s.Replicas[0].MetricAt.IsZero() {
		t.Fatalf("replica stats %+v", s.Replicas)
	}
}

// Fifty concurrent requests at zero replicas: none is lost, OnDemand is
// called once, and the time from SetBackends to the response is reported.
func TestActivationFiftyConcurrentNoneLost(t *testing.T) {
	g, srv, _, demands := actGateway(t, Activation{Enabled: true})
	be := timingBackend(t)
	lat := activationRound(t, g, srv, be, 50)
	if n := demandCount(demands); n != 1 {
		t.Fatalf("OnDemand called %d times for one burst, want 1", n)
	}
	t.Logf("50 held requests, fast path %v, from SetBackends:\n  to resuming:          %s\n  to reaching the replica: %s\n  added latency (response start − backend time): %s",
		fastPath, lat.resume, lat.dispatch, lat.added)
}

// timingBackend answers "ok" with X-Took: the nanoseconds its handler took,
// and records when each request arrived.
type timingBE struct {
	*httptest.Server
	mu       sync.Mutex
	arrivals []time.Time
}

func timingBackend(t testing.TB) *timingBE {
	be := &timingBE{}
	be.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t0 := time.Now()
		be.mu.Lock()
		be.arrivals = append(be.arrivals, t0)
		be.mu.Unlock()
		io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Took", strconv.FormatInt(int64(time.Since(t0)), 10))
		io.WriteString(w, "ok")
	}))
	t.Cleanup(be.Close)
	return be
}

// dist summarises durations.
type dist []time.Duration

func (d dist) q(p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[max(int(math.Ceil(p*float64(len(s))))-1, 0)]
}

func (d dist) String() string {
	return fmt.Sprintf("min %v, p50 %v, p90 %v, p99 %v, max %v", d.q(0), d.q(0.5), d.q(0.9), d.q(0.99), d.q(1))
}

// wakeLatency: from SetBackends to each held request resuming, to its
// arrival at the backend, and to its response's start minus the backend's
// own time.
type wakeLatency struct{ resume, dispatch, added dist }

// activationRound holds n requests (half of them POSTs with a body) for "d"
// at zero replicas, publishes be and checks that all n succeed.
func activationRound(t testing.TB, g *Gateway, srv *httptest.Server, be *timingBE, n int) wakeLatency {
	t.Helper()
	be.mu.Lock()
	be.arrivals = be.arrivals[:0]
	be.mu.Unlock()
	var chans []<-chan result
	for i := 0; i < n; i++ {
		if i%2 == 0 {
			chans = append(chans, sendAsync(context.Background(), "GET", srv.URL, "d.localhost", nil))
		} else {
			chans = append(chans, sendAsync(context.Background(), "POST", srv.URL, "d.localhost", strings.NewReader("body-"+strconv.Itoa(i))))
		}
	}
	waitWaiting(t, g, "d", n)
	var mu sync.Mutex
	var resumed []time.Time
	testHookResumed = func(string) {
		now := time.Now()
		mu.Lock()
		resumed = append(resumed, now)
		mu.Unlock()
	}
	defer func() { testHookResumed = nil }()
	t0 := time.Now()
	g.SetBackends("d", []Backend{{ReplicaID: "r1", Cloud: "c", URL: be.URL}})
	var lat wakeLatency
	for i, ch := range chans {
		r := waitResult(t, ch)
		if r.code != 200 || r.body != "ok" {
			t.Fatalf("request %d: %d %q", i, r.code, r.body)
		}
		took, _ := strconv.ParseInt(r.hdr.Get("X-Took"), 10, 64)
		lat.added = append(lat.added, r.start.Sub(t0)-time.Duration(took))
	}
	be.mu.Lock()
	for _, at := range be.arrivals {
		lat.dispatch = append(lat.dispatch, at.Sub(t0))
	}
	be.mu.Unlock()
	if len(lat.dispatch) != n {
		t.Fatalf("backend got %d requests, want %d", len(lat.dispatch), n)
	}
	mu.Lock()
	for _, at := range resumed {
		lat.resume = append(lat.resume, at.Sub(t0))
	}
	mu.Unlock()
	if len(lat.resume) != n {
		t.Fatalf("%d held requests resumed, want %d", len(lat.resume), n)
	}
	return lat
}

// BenchmarkActivationWake measures, per round of 50 requests held at zero
// replicas, the time from SetBackends to each response's start minus the
// backend's own time (reported in ns: added-p50, added-p99, added-max).
func BenchmarkActivationWake(b *testing.B) {
	g, srv, _, _ := actGateway(b, Activation{Enabled: true})
	be := timingBackend(b)
	var all wakeLatency
	for b.Loop() {
		lat := activationRound(b, g, srv, be, 50)
		all.added = append(all.added, lat.added...)
		all.resume = append(all.resume, lat.resume...)
		all.dispatch = append(all.dispatch, lat.dispatch...)
		g.SetBackends("d", nil)
	}
	b.ReportMetric(float64(all.added.q(0.5)), "added-p50-ns")
	b.ReportMetric(float64(all.added.q(0.99)), "added-p99-ns")
	b.ReportMetric(float64(all.added.q(1)), "added-max-ns")
	b.ReportMetric(float64(all.dispatch.q(0.99)), "dispatch-p99-ns")
	b.ReportMetric(float64(all.resume.q(0)), "resume-min-ns")
	b.ReportMetric(float64(all.resume.q(0.5)), "resume-p50-ns")
	b.ReportMetric(float64(all.resume.q(1)), "resume-max-ns")
}

// A full queue answers 503 at once, with Retry-After, naming the deployment.
func TestActivationQueueFull(t *testing.T) {
	g, srv, reg, _ := actGateway(t, Activation{Enabled: true, QueueSize: 2})
	be := backendServer(t, "ok")
	a := sendAsync(context.Background(), "GET", srv.URL, "d.localhost", nil)
	b := sendAsync(context.Background(), "POST", srv.URL, "d.localhost", strings.NewReader("x"))
	waitWaiting(t, g, "d", 2)
	r := send(context.Background(), "GET", srv.URL, "d.localhost", nil)
	if r.err != nil || r.code != 503 || r.hdr.Get("Retry-After") != "1" {
		t.Fatalf("third request: %d %v Retry-After %q", r.code, r.err, r.hdr.Get("Retry-After"))
	}
	if e := errorOf(t, r.body); e.Error != "activation queue full" || e.Deployment != "d" {
		t.Fatalf("error %+v", e)
	}
	if v := counterValue(t, reg, "aloft_gateway_unavailable_total", map[string]string{"deployment": "d", "reason": "activation_queue_full"}); v != 1 {
		t.Fatalf("activation_queue_full = %v", v)
	}
	if v := counterValue(t, reg, "aloft_gateway_waiting_requests", map[string]string{"deployment": "d"}); v != 2 {
		t.Fatalf("waiting_requests = %v", v)
	}
	g.SetBackends("d", []Backend{{ReplicaID: "r", Cloud: "c", URL: be.URL}})
	for _, ch := range []<-chan result{a, b} {
		if r := waitResult(t, ch); r.code != 200 || r.body != "ok" {
			t.Fatalf("held request: %d %q", r.code, r.body)
		}
	}
	if s, _ := g.Stats("d"); s.Requests != 3 || s.Waiting != 0 || s.InFlight != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// A request held past its timeout gets 504 with Retry-After; the next
// request asks for a replica again.
func TestActivationTimeout(t *testing.T) {
	g, srv, reg, demands := actGateway(t, Activation{Enabled: true, Timeout: 20 * time.Millisecond})
	r := send(context.Background(), "POST", srv.URL, "d.localhost", strings.NewReader("body"))
	if r.err != nil || r.code != 504 || r.hdr.Get("Retry-After") == "" {
		t.Fatalf("got %d %v Retry-After %q", r.code, r.err, r.hdr.Get("Retry-After"))
	}
	if e := errorOf(t, r.body); e.Error != "no replica became ready within 0.02s" || e.Deployment != "d" {
		t.Fatalf("error %+v", e)
	}
	if v := counterValue(t, reg, "aloft_gateway_unavailable_total", map[string]string{"deployment": "d", "reason": "activation_timeout"}); v != 1 {
		t.Fatalf("activation_timeout = %v", v)
	}
	if s, _ := g.Stats("d"); s.Waiting != 0 || s.InFlight != 0 {
		t.Fatalf("stats %+v", s)
	}
	// The request that timed out (nothing else was held) ended the
	// episode: the next one calls OnDemand again. Calls run on their own
	// goroutines, so wait for both.
	send(context.Background(), "GET", srv.URL, "d.localhost", nil)
	for i := 0; i < 2; i++ {
		select {
		case <-demands:
		case <-time.After(waitTimeout):
			t.Fatalf("OnDemand called %d times, want 2", i)
		}
	}
	// Defaults.
	g.SetActivation("e", Activation{Enabled: true})
	g.mu.Lock()
	c := g.configs["e"]
	g.mu.Unlock()
	if c.act.QueueSize != 1000 || c.act.Timeout != 60*time.Second {
		t.Fatalf("defaults %+v", c.act)
	}
}

// A client that goes away while held frees its place in the queue.
func TestActivationClientCancelFreesSlot(t *testing.T) {
	g, srv, _, _ := actGateway(t, Activation{Enabled: true, QueueSize: 1})
	be := backendServer(t, "ok")

	// Through the client (its context).
	ctx, cancel := context.WithCancel(context.Background())
	ch := sendAsync(ctx, "GET", srv.URL, "d.localhost", nil)
	waitWaiting(t, g, "d", 1)
	cancel()
	select {
	case r := <-ch:
		if r.err == nil {
			t.Fatalf("cancelled request got %d", r.code)
		}
	case <-time.After(waitTimeout):
		t.Fatal("cancelled request did not return")
	}
	waitWaiting(t, g, "d", 0)

	// A raw connection closed while its request is held, on a connection
	// the fast loop serves (with the fast path on).
	warm := backendServer(t, "warm")
	g.SetBackends("warm", []Backend{{ReplicaID: "w", Cloud: "c", URL: warm.URL}})
	rc := dialRaw(t, srv)
	rc.send("GET / HTTP/1.1\r\nHost: warm.localhost\r\n\r\n")
	rc.response("GET")
	rc.send("GET / HTTP/1.1\r\nHost: d.localhost\r\n\r\n")
	waitWaiting(t, g, "d", 1)
	rc.c.Close()
	waitWaiting(t, g, "d", 0)

	// The slot is free again.
	ch = sendAsync(context.Background(), "GET", srv.URL, "d.localhost", nil)
	waitWaiting(t, g, "d", 1)
	g.SetBackends("d", []Backend{{ReplicaID: "r", Cloud: "c", URL: be.URL}})
	if r := waitResult(t, ch); r.code != 200 || r.body != "ok" {
		t.Fatalf("got %d %q", r.code, r.body)
	}
}

// RemoveDeployment answers the held requests at once.
func TestActivationRemoveDeploymentReleasesWaiters(t *testing.T) {
	g, srv, _, _ := actGateway(t, Activation{Enabled: true})
	var chans []<-chan result
	for i := 0; i < 5; i++ {
		chans = append(chans, sendAsync(context.Background(), "POST", srv.URL, "d.localhost", strings.NewReader("x")))
	}
	waitWaiting(t, g, "d", 5)
	g.RemoveDeployment("d")
	for _, ch := range chans {
		r := waitResult(t, ch)
		if r.code != 404 {
			t.Fatalf("held request after removal: %d %s", r.code, r.body)
		}
		if e := errorOf(t, r.body); e.Deployment != "d" {
			t.Fatalf("error %+v", e)
		}
	}
	if _, ok := g.Stats("d"); ok {
		t.Fatal("Stats of a removed deployment")
	}
	// The setting went with the deployment.
	g.SetBackends("d", nil)
	if r := send(context.Background(), "GET", srv.URL, "d.localhost", nil); r.code != 503 {
		t.Fatalf("re-created deployment without activation: %d", r.code)
	}
}

// OnDemand is called once per burst, and again once the deployment is back
// at zero replicas.
func TestActivationOnDemandCoalesced(t *testing.T) {
	g, srv, _, demands := actGateway(t, Activation{Enabled: true})
	be := backendServer(t, "ok")
	for round := 0; round < 3; round++ {
		var chans []<-chan result
		for i := 0; i < 20; i++ {
			chans = append(chans, sendAsync(context.Background(), "GET", srv.URL, "d.localhost", nil))
		}
		waitWaiting(t, g, "d", 20)
		select {
		case <-demands:
		case <-time.After(waitTimeout):
			t.Fatalf("round %d: OnDemand not called", round)
		}
		g.SetBackends("d", []Backend{{ReplicaID: "r", Cloud: "c", URL: be.URL}})
		for _, ch := range chans {
			if r := waitResult(t, ch); r.code != 200 {
				t.Fatalf("round %d: %d", round, r.code)
			}
		}
		// Requests with a replica ask for nothing.
		if r := send(context.Background(), "GET", srv.URL, "d.localhost", nil); r.code != 200 {
			t.Fatalf("round %d: %d", round, r.code)
		}
		if n := demandCount(demands); n != 0 {
			t.Fatalf("round %d: %d more OnDemand calls", round, n)
		}
		g.SetBackends("d", nil) // scaled to zero
	}
}

// Without activation (never set, or disabled) a deployment at zero replicas
// answers 503 at once, and disabling it releases held requests with 503.
func TestActivationDisabled(t *testing.T) {
	g, srv, _, demands := actGateway(t, Activation{Enabled: true})
	g.SetBackends("plain", nil)
	g.SetActivation("off", Activation{Enabled: false})
	g.SetBackends("off", nil)
	for _, host := range []string{"plain.localhost", "off.localhost"} {
		r := send(context.Background(), "GET", srv.URL, host, nil)
		if r.err != nil || r.code != 503 || r.hdr.Get("Retry-After") != "1" || errorOf(t, r.body).Error != "no ready replica" {
			t.Fatalf("%s: %d %v %q", host, r.code, r.err, r.body)
		}
	}
	ch := sendAsync(context.Background(), "GET", srv.URL, "d.localhost", nil)
	waitWaiting(t, g, "d", 1)
	g.SetActivation("d", Activation{Enabled: false})
	if r := waitResult(t, ch); r.code != 503 || errorOf(t, r.body).Error != "no ready replica" {
		t.Fatalf("held request after disabling: %d %q", r.code, r.body)
	}
	if r := send(context.Background(), "GET", srv.URL, "d.localhost", nil); r.code != 503 {
		t.Fatalf("after disabling: %d", r.code)
	}
	select {
	case <-demands:
	case <-time.After(waitTimeout):
		t.Fatal("OnDemand not called for d")
	}
	if n := demandCount(demands); n != 0 {
		t.Fatalf("OnDemand called for deployments without activation: %d", n)
	}
}

// Stats counts requests in flight at replicas and held ones, under
// concurrency.
func TestStatsUnderConcurrency(t *testing.T) {
	g, srv, _, _ := actGateway(t, Activation{Enabled: true})
	blk := newBlockingBackend(t, "blk")
	other := newBlockingBackend(t, "other")
	g.SetBackends("busy", []Backend{{ReplicaID: "b1", Cloud: "c", URL: blk.URL}, {ReplicaID: "b2", Cloud: "c", URL: other.URL}})
	g.SetMetricHeader("busy", "X-Queue-Depth")

	const inflight, held = 16, 9
	var busy, waiting []<-chan result
	for i := 0; i < inflight; i++ {
		busy = append(busy, sendAsync(context.Background(), "GET", srv.URL, "busy.localhost", nil))
	}
	for i := 0; i < held; i++ {
		waiting = append(waiting, sendAsync(context.Background(), "POST", srv.URL, "d.localhost", strings.NewReader("x")))
	}
	for i := 0; i < inflight; i++ {
		select {
		case <-blk.arrivals:
		case <-other.arrivals:
		case <-time.After(waitTimeout):
			t.Fatal("requests did not reach the backends")
		}
	}
	waitWaiting(t, g, "d", held)
	s, ok := g.Stats("BUSY")
	if !ok || s.InFlight != inflight || s.Waiting != 0 || s.Requests != inflight || s.Ready != 2 || len(s.Replicas) != 2 ||
		s.Replicas[0].InFlight+s.Replicas[1].InFlight != inflight || s.Replicas[0].ReplicaID != "b1" {
		t.Fatalf("busy stats %+v", s)
	}
	if d, _ := g.Stats("d"); d.InFlight != held || d.Waiting != held || d.Requests != held || d.Ready != 0 {
		t.Fatalf("held stats %+v", d)
	}
	// Stats from many goroutines while the requests finish.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				s, _ := g.Stats("busy")
				if s.InFlight < 0 || s.InFlight > inflight {
					t.Errorf("in flight %d", s.InFlight)
				}
			}
		}()
	}
	close(blk.release)
	close(other.release)
	g.SetBackends("d", []Backend{{ReplicaID: "d1", Cloud: "c", URL: blk.URL}})
	for _, ch := range append(busy, waiting...) {
		if r := waitResult(t, ch); r.code != 200 {
			t.Fatalf("got %d", r.code)
		}
	}
	close(stop)
	wg.Wait()
	waitIdle(t, g, "b1")
	waitIdle(t, g, "b2")
	s, _ = g.Stats("busy")
	if s.InFlight != 0 || s.Requests != inflight || s.LatencyCount != inflight || s.LatencySumSeconds <= 0 {
		t.Fatalf("busy stats after %+v", s)
	}
	if d, _ := g.Stats("d"); d.InFlight != 0 || d.Waiting != 0 || d.Requests != held || d.LatencyCount != held {
		t.Fatalf("held stats after %+v", d)
	}
}

// The metric header is recorded per replica, from the gateway's own client.
func TestMetricHeader(t *testing.T) {
	g, srv, _ := newGateway(t)
	var depth atomic.Int64
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/none" {
			w.Header().Set("X-Queue-Depth", strconv.FormatInt(depth.Load(), 10))
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(be.Close)
	g.SetMetricHeader("d", "x-queue-depth")
	g.SetBackends("d", []Backend{{ReplicaID: "r", Cloud: "c", URL: be.URL}})
	s, _ := g.Stats("d")
	if len(s.Replicas) != 1 || !s.Replicas[0].MetricAt.IsZero() {
		t.Fatalf("before any response: %+v", s.Replicas)
	}
	for _, v := range []int64{4, 12} {
		depth.Store(v)
		if r := send(context.Background(), "GET", srv.URL, "d.localhost", nil); r.code != 200 || r.hdr.Get("X-Queue-Depth") != strconv.FormatInt(v, 10) {
			t.Fatalf("%d %v", r.code, r.hdr)
		}
		if s, _ := g.Stats("d"); s.Replicas[0].Metric != float64(v) {
			t.Fatalf("metric %v, want %d", s.Replicas[0].Metric, v)
		}
	}
	send(context.Background(), "GET", srv.URL+"/none", "d.localhost", nil)
	if s, _ := g.Stats("d"); s.Replicas[0].Metric != 12 {
		t.Fatalf("metric %v after a response without the header, want the last value 12", s.Replicas[0].Metric)
	}
	g.SetMetricHeader("d", "")
	depth.Store(99)
	send(context.Background(), "GET", srv.URL, "d.localhost", nil)
	if s, _ := g.Stats("d"); s.Replicas[0].Metric != 12 {
		t.Fatalf("metric %v recorded after the header was unset", s.Replicas[0].Metric)
	}
}

func TestLatencyQuantile(t *testing.T) {
	var prev, cur DeploymentStats
	if _, ok := cur.LatencyQuantile(0.9, prev); ok {
		t.Fatal("quantile of nothing")
	}
	// 100 responses between the snapshots: 50 in (0.001, 0.0025], 50 in
	// (0.0025, 0.005]; earlier ones in prev must not count.
	bounds := LatencyBounds()
	for i := range cur.LatencyBuckets {
		prev.LatencyBuckets[i] = 1000
		cur.LatencyBuckets[i] = 1000
		if i >= 1 {
			cur.LatencyBuckets[i] += 50
		}
		if i >= 2 {
			cur.LatencyBuckets[i] += 50
		}
	}
	if bounds[1] != 0.0025 || bounds[2] != 0.005 {
		t.Fatalf("bounds %v", bounds)
	}
	for _, c := range []struct{ q, want float64 }{{0.5, 0.0025}, {0.9, 0.0045}, {0.25, 0.00175}, {1, 0.005}} {
		got, ok := cur.LatencyQuantile(c.q, prev)
		if !ok || math.Abs(got-c.want) > 1e-9 {
			t.Errorf("q%v = %v, want %v", c.q, got, c.want)
		}
	}
	// All in the last, unbounded bucket: its lower bound.
	var inf DeploymentStats
	inf.LatencyBuckets[len(inf.LatencyBuckets)-1] = 3
	if got, _ := inf.LatencyQuantile(0.9, DeploymentStats{}); got != bounds[len(bounds)-1] {
		t.Errorf("unbounded: %v", got)
	}
}
