package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// waitTimeout bounds every wait on a condition in these tests.
const waitTimeout = 10 * time.Second

// TestMain runs every test twice: with the keep-alive fast path (the
// default when the gateway is an http.Server's handler, see fast.go), and
// with net/http serving every request.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		fmt.Println("=== again, without the fast path")
		fastPath = false
		code = m.Run()
	}
	os.Exit(code)
}

// newGateway returns a gateway behind a real HTTP server and its metrics registry.
func newGateway(t *testing.T) (*Gateway, *httptest.Server, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	g := New(Options{Registerer: reg})
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	// Connections the gateway took over outlive srv.Close (as hijacked
	// ones do); closing the client's ends them.
	t.Cleanup(client.CloseIdleConnections)
	return g, srv, reg
}

// backendServer starts a test backend that answers its name.
func backendServer(t *testing.T, name string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, name)
	}))
	t.Cleanup(s.Close)
	return s
}

// client is an HTTP client that never reuses Host from the URL.
var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: waitTimeout}

func do(t *testing.T, method, url, host string, hdr map[string]string, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s (Host %s): %v", method, url, host, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return resp, string(b)
}

func get(t *testing.T, url, host string) (*http.Response, string) {
	t.Helper()
	return do(t, "GET", url, host, nil, nil)
}

func waitFor(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// waitIdle waits (with a deadline) until replica has no request in flight.
func waitIdle(t *testing.T, g *Gateway, replica string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := g.WaitIdle(ctx, replica); err != nil {
		t.Fatalf("replica %s not idle: %v", replica, err)
	}
}

func TestHostAndHeaderRouting(t *testing.T) {
	g, gw, _ := newGateway(t)
	a, b := backendServer(t, "A"), backendServer(t, "B")
	g.SetBackends("alpha", []Backend{{ReplicaID: "a1", Cloud: "c1", URL: a.URL}})
	g.SetBackends("beta", []Backend{{ReplicaID: "b1", Cloud: "c1", URL: b.URL}})

	cases := []struct {
		host, header, want string
	}{
		{"alpha.localhost", "", "A"},
		{"alpha.localhost:8080", "", "A"},
		{"BETA.LocalHost:8080", "", "B"},
		{"beta.localhost.", "", "B"},
		{"alpha.localhost", "beta", "B"}, // header wins
		{"127.0.0.1", "Alpha", "A"},
	}
	for _, c := range cases {
		var hdr map[string]string
		if c.header != "" {
			hdr = map[string]string{"X-Aloft-Deployment": c.header}
		}
		resp, body := do(t, "GET", gw.URL+"/x", c.host, hdr, nil)
		if resp.StatusCode != 200 || body != c.want {
			t.Errorf("Host %q header %q: got %d %q, want 200 %q", c.host, c.header, resp.StatusCode, body, c.want)
		}
	}
}

func TestNotFoundAndUnavailable(t *testing.T) {
	g, gw, _ := newGateway(t)
	g.SetBackends("empty", nil)

	var e errorBody
	check := func(host string, wantCode int, wantDep string) *http.Response {
		t.Helper()
		resp, body := get(t, gw.URL, host)
		if resp.StatusCode != wantCode {
			t.Fatalf("Host %q: status %d, want %d (%s)", host, resp.StatusCode, wantCode, body)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Host %q: Content-Type %q", host, ct)
		}
		e = errorBody{}
		if err := json.Unmarshal([]byte(body), &e); err != nil {
			t.Fatalf("Host %q: body %q: %v", host, body, err)
		}
		if e.Error == "" || e.Deployment != wantDep {
			t.Errorf("Host %q: body %+v, want deployment %q", host, e, wantDep)
		}
		return resp
	}
	check("nope.localhost", 404, "nope")
	resp := check("127.0.0.1", 404, "")
	if !strings.Contains(e.Error, "X-Aloft-Deployment") || !strings.Contains(e.Error, ".localhost") {
		t.Errorf("no-route error does not explain addressing: %q", e.Error)
	}
	_ = resp
	check("localhost", 404, "")
	resp = check("empty.localhost", 503, "empty")
	if e.Error != "no ready replica" {
		t.Errorf("503 error = %q", e.Error)
	}
	if ra := resp.Header.Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After = %q", ra)
	}

	g.RemoveDeployment("empty")
	check("empty.localhost", 404, "empty")
}

// blockingBackend answers after release is closed; arrivals gets a value per request.
type blockingBackend struct {
	*httptest.Server
	arrivals chan struct{}
	release  chan struct{}
	hits     atomic.Int64
}

func newBlockingBackend(t *testing.T, name string) *blockingBackend {
	b := &blockingBackend{arrivals: make(chan struct{}, 100), release: make(chan struct{})}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		b.arrivals <- struct{}{}
		select {
		case <-b.release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, name)
	}))
	t.Cleanup(func() {
		select {
		case <-b.release:
		default:
			close(b.release)
		}
		b.Close()
	})
	return b
}

func TestLeastOutstanding(t *testing.T) {
	g, gw, _ := newGateway(t)
	slow := newBlockingBackend(t, "slow")
	var fastHits atomic.Int64
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fastHits.Add(1)
		io.WriteString(w, "fast")
	}))
	defer fast.Close()
	g.SetBackends("d", []Backend{{ReplicaID: "slow", Cloud: "c", URL: slow.URL}, {ReplicaID: "fast", Cloud: "c", URL: fast.URL}})

	// Requests one after another; the one that lands on the slow backend stays
	// in flight, so every later one must go to the fast backend.
	const n = 20
	slowDone := make(chan string, 1)
	for i := 0; i < n; i++ {
		fastBefore := fastHits.Load()
		res := make(chan string, 1)
		go func() {
			_, body := get(t, gw.URL, "d.localhost")
			res <- body
		}()
		select {
		case <-slow.arrivals:
			go func() { slowDone <- <-res }()
		case body := <-res:
			if body != "fast" || fastHits.Load() != fastBefore+1 {
				t.Fatalf("request %d: got %q", i, body)
			}
		case <-time.After(waitTimeout):
			t.Fatal("request neither reached the slow backend nor completed")
		}
	}
	if got := slow.hits.Load(); got != 1 {
		t.Fatalf("slow backend got %d requests, want exactly 1 (fast got %d)", got, fastHits.Load())
	}
	if got := fastHits.Load(); got != n-1 {
		t.Fatalf("fast backend got %d, want %d", got, n-1)
	}
	if got := g.InFlight("slow"); got != 1 {
		t.Fatalf("InFlight(slow) = %d, want 1", got)
	}
	close(slow.release)
	select {
	case body := <-slowDone:
		if body != "slow" {
			t.Fatalf("slow request body %q", body)
		}
	case <-time.After(waitTimeout):
		t.Fatal("slow request did not complete")
	}
	if got := g.InFlight("slow"); got != 0 {
		t.Fatalf("InFlight(slow) after completion = %d", got)
	}
}

func TestBalancingTiesSpreadRequests(t *testing.T) {
	g, gw, _ := newGateway(t)
	var hits [3]atomic.Int64
	var bs []Backend
	for i := range hits {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits[i].Add(1) }))
		defer s.Close()
		bs = append(bs, Backend{ReplicaID: fmt.Sprintf("r%d", i), Cloud: "c", URL: s.URL})
	}
	g.SetBackends("d", bs)
	for i := 0; i < 30; i++ {
		get(t, gw.URL, "d.localhost")
	}
	for i := range hits {
		if h := hits[i].Load(); h != 10 {
			t.Errorf("backend %d got %d of 30 sequential requests, want 10 (round-robin ties)", i, h)
		}
	}
}

// echoBackend answers the SHA-256 and length of the request body.
func echoBackend(t *testing.T, hits *atomic.Int64) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%d %s %s", n, hex.EncodeToString(h.Sum(nil)), r.Method)
	}))
	t.Cleanup(s.Close)
	return s
}

// refusedURL returns a loopback URL nothing listens on.
func refusedURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	m := findMetric(t, reg, name, labels)
	if m == nil {
		return 0
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

func findMetric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.Metric {
			got := map[string]string{}
			for _, lp := range m.Label {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			return m
		}
	}
	return nil
}

func TestRetryOnRefusedBackendKeepsBody(t *testing.T) {
	for _, tc := range []struct {
		name    string
		size    int
		chunked bool
	}{
		{"small", 11, false},
		{"200KiB", 200 << 10, false},
		{"2MiB-unbuffered", 2 << 20, false},
		{"chunked", 300 << 10, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, gw, reg := newGateway(t)
			var hits atomic.Int64
			live := echoBackend(t, &hits)
			g.SetBackends("d", []Backend{{ReplicaID: "dead", Cloud: "c", URL: refusedURL(t)}, {ReplicaID: "live", Cloud: "c", URL: live.URL}})

			payload := bytes.Repeat([]byte("0123456789abcdef"), tc.size/16+1)[:tc.size]
			sum := sha256.Sum256(payload)
			want := fmt.Sprintf("%d %s POST", len(payload), hex.EncodeToString(sum[:]))
			// With round-robin ties, one of the first two requests tries the
			// dead backend first.
			for i := 0; i < 2; i++ {
				var body io.Reader = bytes.NewReader(payload)
				if tc.chunked {
					body = io.MultiReader(body) // hides the length: sent chunked
				}
				resp, got := do(t, "POST", gw.URL, "d.localhost", nil, body)
				if resp.StatusCode != 200 || got != want {
					t.Fatalf("request %d: %d %q, want 200 %q", i, resp.StatusCode, got, want)
				}
			}
			if r := counterValue(t, reg, "aloft_gateway_retries_total", map[string]string{"deployment": "d"}); r != 1 {
				t.Fatalf("retries = %v, want 1", r)
			}
			if h := hits.Load(); h != 2 {
				t.Fatalf("live backend got %d requests, want 2", h)
			}
			if g.InFlight("dead") != 0 || g.InFlight("live") != 0 {
				t.Fatal("in-flight counts not back to 0")
			}
		})
	}
}

func TestAllBackendsRefused(t *testing.T) {
	g, gw, reg := newGateway(t)
	g.SetBackends("d", []Backend{{ReplicaID: "x", Cloud: "c", URL: refusedURL(t)}, {ReplicaID: "y", Cloud: "c", URL: refusedURL(t)}})
	resp, body := do(t, "POST", gw.URL, "d.localhost", nil, strings.NewReader("hi"))
	if resp.StatusCode != 502 || !strings.Contains(body, `"deployment":"d"`) {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
	if v := counterValue(t, reg, "aloft_gateway_unavailable_total", map[string]string{"deployment": "d", "reason": "all_replicas_failed"}); v != 1 {
		t.Fatalf("unavailable all_replicas_failed = %v", v)
	}
	if v := counterValue(t, reg, "aloft_gateway_retries_total", map[string]string{"deployment": "d"}); v != 1 {
		t.Fatalf("retries = %v, want 1 (each backend tried once)", v)
	}
}

func TestNoRetryAfterBackendGotRequest(t *testing.T) {
	for _, method := range []string{"POST", "GET"} {
		t.Run(method, func(t *testing.T) {
			g, gw, reg := newGateway(t)
			// "bad" reads the whole request, then drops the connection.
			var badHits, goodHits atomic.Int64
			bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				badHits.Add(1)
				io.Copy(io.Discard, r.Body)
				c, _, err := http.NewResponseController(w).Hijack()
				if err == nil {
					c.Close()
				}
			}))
			defer bad.Close()
			good := echoBackend(t, &goodHits)
			g.SetBackends("d", []Backend{{ReplicaID: "bad", Cloud: "c", URL: bad.URL}, {ReplicaID: "good", Cloud: "c", URL: good.URL}})

			const n = 6
			failures := 0
			for i := 0; i < n; i++ {
				var body io.Reader
				if method == "POST" {
					body = strings.NewReader("payload")
				}
				resp, _ := do(t, method, gw.URL, "d.localhost", nil, body)
				switch resp.StatusCode {
				case 200:
				case 502:
					failures++
				default:
					t.Fatalf("status %d", resp.StatusCode)
				}
			}
			if badHits.Load() == 0 {
				t.Fatal("bad backend never chosen")
			}
			if int64(failures) != badHits.Load() || badHits.Load()+goodHits.Load() != n {
				t.Fatalf("bad=%d good=%d failures=%d: a request the bad backend received was retried",
					badHits.Load(), goodHits.Load(), failures)
			}
			if r := counterValue(t, reg, "aloft_gateway_retries_total", map[string]string{"deployment": "d"}); r != 0 {
				t.Fatalf("retries = %v, want 0", r)
			}
		})
	}
}

func TestStalePooledConnectionNotUsed(t *testing.T) {
	// Check every pooled connection, however briefly idle.
	defer func(d time.Duration) { peekAfterIdle = d }(peekAfterIdle)
	peekAfterIdle = 0
	g, gw, _ := newGateway(t)
	var hits atomic.Int64
	be := echoBackend(t, &hits)
	g.SetBackends("d", []Backend{{ReplicaID: "r", Cloud: "c", URL: be.URL}})
	for i := 0; i < 3; i++ {
		resp, body := do(t, "POST", gw.URL, "d.localhost", nil, strings.NewReader("abc"))
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
		// The backend drops its keep-alive connections (as on restart or idle
		// timeout); the gateway must not send the next POST on a dead one.
		be.CloseClientConnections()
	}
}

func TestSSEStreamsEventByEvent(t *testing.T) {
	g, gw, _ := newGateway(t)
	next := make(chan struct{})
	finished := make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(finished)
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "data: event %d\n\n", i)
			fl.Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	}))
	defer be.Close()
	g.SetBackends("d", []Backend{{ReplicaID: "r", Cloud: "c", URL: be.URL}})

	req, _ := http.NewRequest("GET", gw.URL, nil)
	req.Host = "d.localhost"
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	br := bufio.NewReader(resp.Body)
	for i := 0; i < 3; i++ {
		// The backend is blocked until we read this event: it can only
		// arrive if the gateway streamed it.
		got := make(chan string, 1)
		go func() {
			line, _ := br.ReadString('\n')
			br.ReadString('\n') // blank line ending the event
			got <- line
		}()
		select {
		case line := <-got:
			if want := fmt.Sprintf("data: event %d\n", i); line != want {
				t.Fatalf("event %d: got %q want %q", i, line, want)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("event %d not delivered while the backend was still running", i)
		}
		select {
		case <-finished:
			t.Fatal("backend finished early")
		default:
		}
		next <- struct{}{}
	}
	waitFor(t, "backend to finish", finished)
	if rest, _ := io.ReadAll(br); len(rest) != 0 {
		t.Fatalf("trailing data %q", rest)
	}
}

func TestChunkedResponseStreamsAndTrailers(t *testing.T) {
	g, gw, _ := newGateway(t)
	next := make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		fl := w.(http.Flusher)
		io.WriteString(w, "part1;")
		fl.Flush()
		<-next
		io.WriteString(w, "part2")
		w.Header().Set("X-Sum", "ok")
	}))
	defer be.Close()
	g.SetBackends("d", []Backend{{ReplicaID: "r", Cloud: "c", URL: be.URL}})

	req, _ := http.NewRequest("GET", gw.URL, nil)
	req.Host = "d.localhost"
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 6)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "part1;" {
		t.Fatalf("first chunk %q %v", buf, err)
	}
	close(next)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "part2" {
		t.Fatalf("rest %q %v", rest, err)
	}
	if got := resp.Trailer.Get("X-Sum"); got != "ok" {
		t.Errorf("trailer X-Sum = %q", got)
	}
}

func TestRemovedReplicaDrains(t *testing.T) {
	g, gw, _ := newGateway(t)
	old := newBlockingBackend(t, "old")
	var newHits atomic.Int64
	nw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		newHits.Add(1)
		io.WriteString(w, "new")
	}))
	defer nw.Close()
	g.SetBackends("d", []Backend{{ReplicaID: "old", Cloud: "c", URL: old.URL}})

	inflight := make(chan string, 1)
	go func() {
		_, body := get(t, gw.URL, "d.localhost")
		inflight <- body
	}()
	waitFor(t, "request at old replica", old.arrivals)
	if n := g.InFlight("old"); n != 1 {
		t.Fatalf("InFlight(old) = %d", n)
	}

	g.SetBackends("d", []Backend{{ReplicaID: "new", Cloud: "c", URL: nw.URL}})
	for i := 0; i < 5; i++ {
		if _, body := get(t, gw.URL, "d.localhost"); body != "new" {
			t.Fatalf("request after removal went to %q", body)
		}
	}
	if old.hits.Load() != 1 {
		t.Fatalf("removed replica got %d requests", old.hits.Load())
	}

	// WaitIdle gives up at its deadline while the request is in flight.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	err := g.WaitIdle(ctx, "old")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitIdle with deadline = %v, want DeadlineExceeded", err)
	}

	idle := make(chan error, 1)
	go func() { idle <- g.WaitIdle(context.Background(), "old") }()
	select {
	case err := <-idle:
		t.Fatalf("WaitIdle returned %v with a request in flight", err)
	default:
	}
	close(old.release)
	select {
	case body := <-inflight:
		if body != "old" {
			t.Fatalf("in-flight request got %q", body)
		}
	case <-time.After(waitTimeout):
		t.Fatal("in-flight request did not complete")
	}
	select {
	case err := <-idle:
		if err != nil {
			t.Fatalf("WaitIdle = %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("WaitIdle did not return after the request finished")
	}
	if n := g.InFlight("old"); n != 0 {
		t.Fatalf("InFlight(old) = %d after drain", n)
	}
	if err := g.WaitIdle(context.Background(), "unknown"); err != nil {
		t.Fatalf("WaitIdle(unknown) = %v", err)
	}
}

func TestClientCancellationReachesBackend(t *testing.T) {
	g, gw, _ := newGateway(t)
	arrived, cancelled := make(chan struct{}), make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		select {
		case <-r.Context().Done():
			close(cancelled)
		case <-time.After(waitTimeout):
		}
	}))
	defer be.Close()
	g.SetBackends("d", []Backend{{ReplicaID: "r", Cloud: "c", URL: be.URL}})

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", gw.URL, nil)
	req.Host = "d.localhost"
	errc := make(chan error, 1)
	go func() {
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	waitFor(t, "request at backend", arrived)
	cancel()
	waitFor(t, "backend request to be cancelled", cancelled)
	<-errc
	waitIdle(t, g, "r")
}

func TestForwardedAndHopByHopHeaders(t *testing.T) {
	g, gw, _ := newGateway(t)
	seen := make(chan http.Header, 1)
	var seenHost string
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seenHost = r.Host
		seen <- r.Header.Clone()
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-End", "kept")
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		io.WriteString(w, "ok")
	}))
	defer be.Close()
	g.SetBackends("d", []Backend{{ReplicaID: "r", Cloud: "c", URL: be.URL}})

	resp, body := do(t, "GET", gw.URL+"/p?q=1", "d.localhost:1234", map[string]string{
		"Connection":      "X-Private",
		"X-Private":       "secret",
		"X-Forwarded-For": "10.1.2.3",
		"X-Custom":        "v",
		"Te":              "trailers",
	}, nil)
	if resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	h := <-seen
	if got := h.Get("X-Forwarded-For"); got != "10.1.2.3, 127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q", got)
	}
	if got := h.Get("X-Forwarded-Host"); got != "d.localhost:1234" {
		t.Errorf("X-Forwarded-Host = %q", got)
	}
	if got := h.Get("X-Forwarded-Proto"); got != "http" {
		t.Errorf("X-Forwarded-Proto = %q", got)
	}
	if h.Get("X-Private") != "" || h.Get("Connection") != "" {
		t.Errorf("hop-by-hop request headers forwarded: %v", h)
	}
	if h.Get("X-Custom") != "v" {
		t.Errorf("X-Custom lost: %v", h)
	}
	if seenHost != strings.TrimPrefix(be.URL, "http://") {
		t.Errorf("backend saw Host %q", seenHost)
	}
	if resp.Header.Get("X-Hop") != "" || resp.Header.Get("Keep-Alive") != "" {
		t.Errorf("hop-by-hop response headers forwarded: %v", resp.Header)
	}
	if resp.Header.Get("X-End") != "kept" || len(resp.Header.Values("Set-Cookie")) != 2 {
		t.Errorf("response headers lost: %v", resp.Header)
	}
}

func TestBodiesAndMethods(t *testing.T) {
	g, gw, _ := newGateway(t)
	big := bytes.Repeat([]byte("x"), 5<<20+3)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			w.Write(big)
		case "/bigchunked":
			w.Write(big[:1<<20])
			w.(http.Flusher).Flush()
			w.Write(big[1<<20:])
		case "/nocontent":
			w.WriteHeader(204)
		case "/echo":
			w.Header().Set("X-Method", r.Method)
			io.Copy(w, r.Body)
		}
	}))
	defer be.Close()
	g.SetBackends("d", []Backend{{ReplicaID: "r", Cloud: "c", URL: be.URL}})

	for _, p := range []string{"/big", "/bigchunked"} {
		resp, body := get(t, gw.URL+p, "d.localhost")
		if resp.StatusCode != 200 || body != string(big) {
			t.Fatalf("%s: %d, %d bytes", p, resp.StatusCode, len(body))
		}
	}
	resp, body := get(t, gw.URL+"/nocontent", "d.localhost")
	if resp.StatusCode != 204 || body != "" {
		t.Fatalf("204: %d %q", resp.StatusCode, body)
	}
	resp, body = do(t, "HEAD", gw.URL+"/big", "d.localhost", nil, nil)
	if resp.StatusCode != 200 || body != "" || resp.ContentLength != int64(len(big)) {
		t.Fatalf("HEAD: %d %q %d", resp.StatusCode, body, resp.ContentLength)
	}
	for _, m := range []string{"PUT", "PATCH", "DELETE"} {
		resp, body = do(t, m, gw.URL+"/echo", "d.localhost", nil, strings.NewReader("data-"+m))
		if resp.StatusCode != 200 || body != "data-"+m || resp.Header.Get("X-Method") != m {
			t.Fatalf("%s: %d %q", m, resp.StatusCode, body)
		}
	}
	// Several requests over the same pooled connection stay in sync.
	for i := 0; i < 20; i++ {
		resp, body = do(t, "POST", gw.URL+"/echo", "d.localhost", nil, strings.NewReader(fmt.Sprint(i)))
		if body != fmt.Sprint(i) {
			t.Fatalf("request %d: %q", i, body)
		}
	}
}

func TestUpgradeIsProxied(t *testing.T) {
	g, gw, _ := newGateway(t)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want upgrade", 400)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo: " + line)
		brw.Flush()
	}))
	defer be.Close()
	g.SetBackends("d", []Backend{{ReplicaID: "r", Cloud: "c", URL: be.URL}})

	c, err := net.Dial("tcp", strings.TrimPrefix(gw.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitTimeout))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: d.localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade response %v %v", resp, err)
	}
	io.WriteString(c, "hello\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "echo: hello\n" {
		t.Fatalf("echo %q %v", line, err)
	}
}

func TestMetrics(t *testing.T) {
	g, gw, reg := newGateway(t)
	blk := newBlockingBackend(t, "blk")
	fast := backendServer(t, "fast")
	g.SetBackends("d", []Backend{{ReplicaID: "f1", Cloud: "cloud-a", URL: fast.URL}})
	g.SetBackends("b", []Backend{{ReplicaID: "b1", Cloud: "cloud-b", URL: blk.URL}})
	g.SetBackends("e", nil)

	for i := 0; i < 3; i++ {
		get(t, gw.URL, "d.localhost")
	}
	get(t, gw.URL, "e.localhost")
	get(t, gw.URL, "zzz.localhost")
	get(t, gw.URL, "")

	if v := counterValue(t, reg, "aloft_gateway_requests_total", map[string]string{"deployment": "d", "cloud": "cloud-a", "code": "200"}); v != 3 {
		t.Errorf("requests_total d/cloud-a/200 = %v", v)
	}
	if v := counterValue(t, reg, "aloft_gateway_request_duration_seconds", map[string]string{"deployment": "d", "cloud": "cloud-a"}); v != 3 {
		t.Errorf("duration count = %v", v)
	}
	if v := counterValue(t, reg, "aloft_gateway_requests_total", map[string]string{"deployment": "e", "code": "503"}); v != 1 {
		t.Errorf("requests_total e/503 = %v", v)
	}
	for _, c := range []struct{ dep, reason string }{{"e", "no_ready_replica"}, {"", "unknown_deployment"}, {"", "no_route"}} {
		if v := counterValue(t, reg, "aloft_gateway_unavailable_total", map[string]string{"deployment": c.dep, "reason": c.reason}); v != 1 {
			t.Errorf("unavailable_total %q/%s = %v", c.dep, c.reason, v)
		}
	}
	if findMetric(t, reg, "aloft_gateway_retries_total", map[string]string{"deployment": "d"}) == nil {
		t.Error("no retries_total series for d")
	}

	done := make(chan struct{})
	go func() {
		get(t, gw.URL, "b.localhost")
		close(done)
	}()
	waitFor(t, "request at blocking backend", blk.arrivals)
	if v := counterValue(t, reg, "aloft_gateway_inflight_requests", map[string]string{"deployment": "b", "replica": "b1"}); v != 1 {
		t.Errorf("inflight b/b1 = %v", v)
	}
	close(blk.release)
	waitFor(t, "blocked request", done)
	waitIdle(t, g, "b1")
	if v := counterValue(t, reg, "aloft_gateway_inflight_requests", map[string]string{"deployment": "b", "replica": "b1"}); v != 0 {
		t.Errorf("inflight b/b1 after completion = %v", v)
	}

	// Removed deployments and replicas leave no series behind.
	g.RemoveDeployment("d")
	g.SetBackends("b", nil)
	for _, name := range []string{"aloft_gateway_requests_total", "aloft_gateway_request_duration_seconds", "aloft_gateway_retries_total", "aloft_gateway_unavailable_total"} {
		if findMetric(t, reg, name, map[string]string{"deployment": "d"}) != nil {
			t.Errorf("%s still has a series for removed deployment d", name)
		}
	}
	if findMetric(t, reg, "aloft_gateway_inflight_requests", map[string]string{"replica": "b1"}) != nil {
		t.Error("inflight series of removed replica b1 remains")
	}
	if findMetric(t, reg, "aloft_gateway_inflight_requests", map[string]string{"replica": "f1"}) != nil {
		t.Error("inflight series of removed deployment's replica f1 remains")
	}
}

func TestNilRegistererAndLogger(t *testing.T) {
	g := New(Options{Domain: "Example.COM"})
	srv := httptest.NewServer(g)
	defer srv.Close()
	defer client.CloseIdleConnections()
	be := backendServer(t, "ok")
	g.SetBackends("App", []Backend{{ReplicaID: "r", Cloud: "c", URL: be.URL}})
	if _, body := get(t, srv.URL, "app.example.com"); body != "ok" {
		t.Fatalf("got %q", body)
	}
	if resp, _ := get(t, srv.URL, "app.localhost"); resp.StatusCode != 404 {
		t.Fatalf("other domain: %d", resp.StatusCode)
	}
}

func TestConcurrentUpdatesWhileServing(t *testing.T) {
	g, gw, _ := newGateway(t)
	a, b := backendServer(t, "A"), backendServer(t, "B")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sets := [][]Backend{
			{{ReplicaID: "a", Cloud: "c1", URL: a.URL}},
			{{ReplicaID: "a", Cloud: "c1", URL: a.URL}, {ReplicaID: "b", Cloud: "c2", URL: b.URL}},
			{{ReplicaID: "b", Cloud: "c2", URL: b.URL}},
		}
		for i := 0; ctx.Err() == nil; i++ {
			g.SetBackends("d", sets[i%len(sets)])
		}
	}()
	g.SetBackends("d", []Backend{{ReplicaID: "a", Cloud: "c1", URL: a.URL}})
	var cwg sync.WaitGroup
	for w := 0; w < 8; w++ {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			for i := 0; i < 50; i++ {
				resp, body := get(t, gw.URL, "d.localhost")
				if resp.StatusCode != 200 || (body != "A" && body != "B") {
					t.Errorf("got %d %q", resp.StatusCode, body)
					return
				}
			}
		}()
	}
	cwg.Wait()
	cancel()
	wg.Wait()
	if g.InFlight("a") != 0 || g.InFlight("b") != 0 {
		t.Fatal("in-flight counts not 0")
	}
}
