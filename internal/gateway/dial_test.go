package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// dialer is a Backend.Dial that connects to a fixed real address, whatever
// it is asked for, like a dialer into a replica's network namespace.
type dialer struct {
	t        *testing.T
	to       string // real address
	wantAddr string // the address the gateway must ask for
	dials    atomic.Int64
	closes   atomic.Int64
	wrap     bool // return a net.Conn that is not a *net.TCPConn and counts Close
	err      error
}

func (d *dialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.dials.Add(1)
	if network != "tcp" || addr != d.wantAddr {
		d.t.Errorf("Dial(%q, %q), want (tcp, %q)", network, addr, d.wantAddr)
	}
	if _, ok := ctx.Deadline(); !ok {
		d.t.Errorf("Dial context without deadline")
	}
	if d.err != nil {
		return nil, d.err
	}
	var nd net.Dialer
	c, err := nd.DialContext(ctx, "tcp", d.to)
	if err != nil || !d.wrap {
		return c, err
	}
	return &countingConn{Conn: c, closes: &d.closes}, nil
}

type countingConn struct {
	net.Conn
	closes *atomic.Int64
	once   atomic.Bool
}

func (c *countingConn) Close() error {
	if c.once.CompareAndSwap(false, true) {
		c.closes.Add(1)
	}
	return c.Conn.Close()
}

func hostOf(s *httptest.Server) string {
	return s.Listener.Addr().String()
}

// sharedURL returns a loopback URL that nothing listens on: backends with
// this URL are reachable only through their Dial.
func sharedURL(t *testing.T) (url, hostport string) {
	u := refusedURL(t)
	return u, strings.TrimPrefix(u, "http://")
}

func poolKeys(g *Gateway) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var keys []string
	for k := range g.upstreams {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func poolOf(g *Gateway, dep, replica string) *upstream {
	for _, b := range (*g.deps.Load())[dep].set.Load().backends {
		if b.ReplicaID == replica {
			return b.pool
		}
	}
	return nil
}

func TestDialBackendsWithSameURL(t *testing.T) {
	g, gw, _ := newGateway(t)
	a, b := backendServer(t, "A"), backendServer(t, "B")
	url, hp := sharedURL(t)
	da := &dialer{t: t, to: hostOf(a), wantAddr: hp}
	db := &dialer{t: t, to: hostOf(b), wantAddr: hp}
	set := []Backend{
		{ReplicaID: "ra", Cloud: "c", URL: url, Dial: da.dial},
		{ReplicaID: "rb", Cloud: "c", URL: url, Dial: db.dial},
	}
	g.SetBackends("d", set)
	if got, want := poolKeys(g), []string{"replica/ra/" + hp, "replica/rb/" + hp}; !slices.Equal(got, want) {
		t.Fatalf("pools %q, want %q", got, want)
	}
	pa, pb := poolOf(g, "d", "ra"), poolOf(g, "d", "rb")

	count := func(n int) map[string]int {
		t.Helper()
		seen := map[string]int{}
		for i := 0; i < n; i++ {
			resp, body := get(t, gw.URL, "d.localhost")
			if resp.StatusCode != 200 {
				t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
			}
			seen[body]++
		}
		return seen
	}
	// Round-robin ties: sequential requests alternate between the replicas.
	// Had they shared a pool, connections to one server would serve both.
	if seen := count(20); seen["A"] != 10 || seen["B"] != 10 {
		t.Fatalf("responses %v, want 10 from A and 10 from B", seen)
	}
	// Keep-alive: each replica's connections are reused (a connection may
	// not be back in its pool yet when the client has the response, so a
	// few dials are allowed).
	if da.dials.Load() > 3 || db.dials.Load() > 3 {
		t.Fatalf("dials: A %d, B %d for 10 requests each", da.dials.Load(), db.dials.Load())
	}

	// The same set again: unchanged backends keep their pools (a new Dial
	// func value for the same replica does not make a new pool).
	set[1].Dial = (&dialer{t: t, to: hostOf(b), wantAddr: hp}).dial
	g.SetBackends("d", set)
	if poolOf(g, "d", "ra") != pa || poolOf(g, "d", "rb") != pb || pa.isClosed() || pb.isClosed() {
		t.Fatal("unchanged backends did not keep their pools")
	}
	if seen := count(4); seen["A"] != 2 || seen["B"] != 2 {
		t.Fatalf("responses %v after re-setting", seen)
	}

	// Removing one replica sends everything to the other.
	g.SetBackends("d", set[1:])
	if seen := count(10); seen["B"] != 10 {
		t.Fatalf("responses %v, want all from B", seen)
	}
	if got, want := poolKeys(g), []string{"replica/rb/" + hp}; !slices.Equal(got, want) {
		t.Fatalf("pools %q, want %q", got, want)
	}
	if !pa.isClosed() {
		t.Fatal("removed replica's pool not closed")
	}

	// Dial becoming nil is a change: the shared pool of the URL, which
	// dials the URL itself (refused here).
	g.SetBackends("d", []Backend{{ReplicaID: "rb", Cloud: "c", URL: url}})
	if got, want := poolKeys(g), []string{hp}; !slices.Equal(got, want) {
		t.Fatalf("pools %q, want %q", got, want)
	}
	if resp, body := get(t, gw.URL, "d.localhost"); resp.StatusCode != 502 {
		t.Fatalf("backend without Dial at a refused URL: %d %s", resp.StatusCode, body)
	}
	g.RemoveDeployment("d")
	if keys := poolKeys(g); len(keys) != 0 {
		t.Fatalf("pools left after RemoveDeployment: %q", keys)
	}
}

// Each replica's requests reach the server behind its own Dial.
func TestDialBackendsReachTheirOwnServer(t *testing.T) {
	g, gw, _ := newGateway(t)
	a, b := newBlockingBackend(t, "A"), newBlockingBackend(t, "B")
	url, hp := sharedURL(t)
	g.SetBackends("d", []Backend{
		{ReplicaID: "ra", Cloud: "c", URL: url, Dial: (&dialer{t: t, to: hostOf(a.Server), wantAddr: hp}).dial},
		{ReplicaID: "rb", Cloud: "c", URL: url, Dial: (&dialer{t: t, to: hostOf(b.Server), wantAddr: hp}).dial},
	})
	res := make(chan string, 2)
	send := func() {
		go func() {
			_, body := get(t, gw.URL, "d.localhost")
			res <- body
		}()
	}
	// The first request is held by the server it reached; the replica it
	// was sent to must be the one dialing that server.
	send()
	first, second := "ra", "rb"
	select {
	case <-a.arrivals:
	case <-b.arrivals:
		first, second = "rb", "ra"
	case <-time.After(waitTimeout):
		t.Fatal("request reached no server")
	}
	if g.InFlight(first) != 1 || g.InFlight(second) != 0 {
		t.Fatalf("request at %s's server, but in flight: ra %d, rb %d", first, g.InFlight("ra"), g.InFlight("rb"))
	}
	// The second goes to the idle replica, hence to the other server.
	send()
	other := b
	if second == "ra" {
		other = a
	}
	waitFor(t, "second request at the other server", other.arrivals)
	if g.InFlight("ra") != 1 || g.InFlight("rb") != 1 {
		t.Fatalf("in flight: ra %d, rb %d", g.InFlight("ra"), g.InFlight("rb"))
	}
	close(a.release)
	close(b.release)
	got := []string{<-res, <-res}
	slices.Sort(got)
	if !slices.Equal(got, []string{"A", "B"}) {
		t.Fatalf("bodies %q", got)
	}
}

func TestDialErrorRetriesOnOtherBackend(t *testing.T) {
	g, gw, reg := newGateway(t)
	var hits atomic.Int64
	live := echoBackend(t, &hits)
	url, hp := sharedURL(t)
	bad := &dialer{t: t, wantAddr: hp, err: errors.New("namespace gone")}
	good := &dialer{t: t, to: hostOf(live), wantAddr: hp}
	g.SetBackends("d", []Backend{
		{ReplicaID: "bad", Cloud: "c", URL: url, Dial: bad.dial},
		{ReplicaID: "good", Cloud: "c", URL: url, Dial: good.dial},
	})
	payload := bytes.Repeat([]byte("x"), 1000)
	sum := sha256.Sum256(payload)
	want := fmt.Sprintf("%d %s POST", len(payload), hex.EncodeToString(sum[:]))
	// One of the first two requests tries the bad backend first; it is then
	// passed over while down.
	for i := 0; i < 4; i++ {
		resp, got := do(t, "POST", gw.URL, "d.localhost", nil, bytes.NewReader(payload))
		if resp.StatusCode != 200 || got != want {
			t.Fatalf("request %d: %d %q, want 200 %q", i, resp.StatusCode, got, want)
		}
	}
	if r := counterValue(t, reg, "aloft_gateway_retries_total", map[string]string{"deployment": "d"}); r != 1 {
		t.Fatalf("retries = %v, want 1", r)
	}
	if n := bad.dials.Load(); n != 1 {
		t.Fatalf("bad Dial called %d times, want 1", n)
	}
	if h := hits.Load(); h != 4 {
		t.Fatalf("live backend got %d requests, want 4", h)
	}
	if v := counterValue(t, reg, "aloft_gateway_requests_total", map[string]string{"deployment": "d", "cloud": "c", "code": "200"}); v != 4 {
		t.Fatalf("requests_total{code=200} = %v, want 4", v)
	}
	if g.InFlight("bad") != 0 || g.InFlight("good") != 0 {
		t.Fatal("in-flight counts not back to 0")
	}

	// All replicas failing to dial: 502 naming the error, as for refusals.
	g.SetBackends("e", []Backend{
		{ReplicaID: "x", Cloud: "c", URL: url, Dial: bad.dial},
		{ReplicaID: "y", Cloud: "c", URL: url, Dial: (&dialer{t: t, wantAddr: hp, err: errors.New("no such netns")}).dial},
	})
	resp, body := get(t, gw.URL, "e.localhost")
	if resp.StatusCode != 502 || !strings.Contains(body, `"deployment":"e"`) {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
	if !strings.Contains(body, "namespace gone") && !strings.Contains(body, "no such netns") {
		t.Fatalf("502 body does not name the dial error: %s", body)
	}
	if v := counterValue(t, reg, "aloft_gateway_unavailable_total", map[string]string{"deployment": "e", "reason": "all_replicas_failed"}); v != 1 {
		t.Fatalf("unavailable all_replicas_failed = %v", v)
	}
	if v := counterValue(t, reg, "aloft_gateway_retries_total", map[string]string{"deployment": "e"}); v != 1 {
		t.Fatalf("retries = %v, want 1", v)
	}
}

// Upgrades go through the fallback proxy, which must dial with Backend.Dial.
func TestDialBackendsUpgrade(t *testing.T) {
	g, gw, _ := newGateway(t)
	echo := func(name string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
			brw.Flush()
			line, _ := brw.ReadString('\n')
			brw.WriteString(name + ": " + line)
			brw.Flush()
		}))
		t.Cleanup(s.Close)
		return s
	}
	a, b := echo("A"), echo("B")
	url, hp := sharedURL(t)
	g.SetBackends("d", []Backend{
		{ReplicaID: "ra", Cloud: "c", URL: url, Dial: (&dialer{t: t, to: hostOf(a), wantAddr: hp}).dial},
		{ReplicaID: "rb", Cloud: "c", URL: url, Dial: (&dialer{t: t, to: hostOf(b), wantAddr: hp}).dial},
	})
	upgrade := func() (net.Conn, *bufio.Reader) {
		t.Helper()
		c, err := net.Dial("tcp", strings.TrimPrefix(gw.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(waitTimeout))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: d.localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 101 {
			t.Fatalf("upgrade response %v %v", resp, err)
		}
		return c, br
	}
	// The first upgraded connection stays open (its replica in flight), so
	// the second goes to the other replica.
	c1, br1 := upgrade()
	first := "A"
	if g.InFlight("rb") == 1 {
		first = "B"
	}
	c2, br2 := upgrade()
	for i, x := range []struct {
		c    net.Conn
		br   *bufio.Reader
		want string
	}{{c1, br1, first}, {c2, br2, map[string]string{"A": "B", "B": "A"}[first]}} {
		io.WriteString(x.c, "hello\n")
		if line, err := x.br.ReadString('\n'); err != nil || line != x.want+": hello\n" {
			t.Fatalf("connection %d: %q %v, want from %s", i, line, err, x.want)
		}
	}
}

// https backends (fallback proxy) with Dial: each replica has a transport of
// its own, which keeps its connections apart from other replicas' at the same
// URL and closes them when the replica goes.
func TestDialBackendsHTTPS(t *testing.T) {
	g, gw, _ := newGateway(t)
	tlsServer := func(name string) *httptest.Server {
		s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, name)
		}))
		t.Cleanup(s.Close)
		return s
	}
	a, b := tlsServer("A"), tlsServer("B")
	roots := x509.NewCertPool()
	roots.AddCert(a.Certificate())
	roots.AddCert(b.Certificate())
	g.fallback.TLSClientConfig = &tls.Config{RootCAs: roots}
	_, hp := sharedURL(t)
	url := "https://" + hp
	da := &dialer{t: t, to: hostOf(a), wantAddr: hp, wrap: true}
	db := &dialer{t: t, to: hostOf(b), wantAddr: hp, wrap: true}
	g.SetBackends("d", []Backend{
		{ReplicaID: "ra", Cloud: "c", URL: url, Dial: da.dial},
		{ReplicaID: "rb", Cloud: "c", URL: url, Dial: db.dial},
	})
	seen := map[string]int{}
	for i := 0; i < 20; i++ {
		resp, body := get(t, gw.URL, "d.localhost")
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
		seen[body]++
	}
	if seen["A"] != 10 || seen["B"] != 10 {
		t.Fatalf("responses %v, want 10 from A and 10 from B", seen)
	}
	if da.dials.Load() > 3 || db.dials.Load() > 3 {
		t.Fatalf("dials: A %d, B %d for 10 requests each (keep-alive)", da.dials.Load(), db.dials.Load())
	}
	g.SetBackends("d", []Backend{{ReplicaID: "rb", Cloud: "c", URL: url, Dial: db.dial}})
	waitUntil(t, "A's connections closed with its pool", func() bool { return da.closes.Load() == da.dials.Load() })
	if db.closes.Load() == db.dials.Load() {
		t.Fatal("B's connections closed though B is still in the set")
	}
	if resp, body := get(t, gw.URL, "d.localhost"); resp.StatusCode != 200 || body != "B" {
		t.Fatalf("after removing ra: %d %q", resp.StatusCode, body)
	}
	g.RemoveDeployment("d")
	waitUntil(t, "B's connections closed with its pool", func() bool { return db.closes.Load() == db.dials.Load() })
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Backends without Dial share the pool of their host:port; a backend with
// Dial at the same URL has its own.
func TestPlainBackendsShareAPool(t *testing.T) {
	g, gw, _ := newGateway(t)
	a := backendServer(t, "A")
	hp := hostOf(a)
	g.SetBackends("d", []Backend{
		{ReplicaID: "p1", Cloud: "c", URL: a.URL},
		{ReplicaID: "p2", Cloud: "c", URL: a.URL},
	})
	g.SetBackends("e", []Backend{
		{ReplicaID: "p3", Cloud: "c", URL: a.URL},
		{ReplicaID: "q", Cloud: "c", URL: a.URL, Dial: (&dialer{t: t, to: hp, wantAddr: hp}).dial},
	})
	if got, want := poolKeys(g), []string{hp, "replica/q/" + hp}; !slices.Equal(got, want) {
		t.Fatalf("pools %q, want %q", got, want)
	}
	shared := poolOf(g, "d", "p1")
	if poolOf(g, "d", "p2") != shared || poolOf(g, "e", "p3") != shared || poolOf(g, "e", "q") == shared {
		t.Fatal("wrong pool sharing")
	}
	g.mu.Lock()
	refs := shared.refs
	g.mu.Unlock()
	if refs != 3 {
		t.Fatalf("shared pool refs %d, want 3", refs)
	}
	for _, dep := range []string{"d", "e", "e"} {
		if resp, body := get(t, gw.URL, dep+".localhost"); resp.StatusCode != 200 || body != "A" {
			t.Fatalf("%s: %d %q", dep, resp.StatusCode, body)
		}
	}
	g.RemoveDeployment("d")
	if shared.isClosed() {
		t.Fatal("shared pool closed while still used")
	}
	g.RemoveDeployment("e")
	if keys := poolKeys(g); len(keys) != 0 || !shared.isClosed() {
		t.Fatalf("pools left: %q", keys)
	}
}
