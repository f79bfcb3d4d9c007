package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Tests of the keep-alive fast path (fast.go) over raw connections, so that
// the exact bytes on the wire are under control.

// fastGateway is a gateway (fast path on) behind an http.Server, with one
// deployment "d" whose backend echoes method, path and body.
func fastGateway(t *testing.T) (*Gateway, *httptest.Server, *atomic.Int64) {
	t.Helper()
	g := New(Options{})
	g.fastPath = true
	g.janitorTick = 10 * time.Millisecond
	g.watchAfter = 10 * time.Millisecond
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	var hits atomic.Int64
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.RequestURI(), b)
	}))
	t.Cleanup(be.Close)
	g.SetBackends("d", []Backend{{ReplicaID: "r", Cloud: "c", URL: be.URL}})
	return g, srv, &hits
}

// rawConn dials srv; every read and write has a deadline.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, srv *httptest.Server) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(waitTimeout))
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (rc *rawConn) send(s string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatal(err)
	}
}

func (rc *rawConn) response(method string) (*http.Response, string) {
	rc.t.Helper()
	req, _ := http.NewRequest(method, "/", nil)
	resp, err := http.ReadResponse(rc.br, req)
	if err != nil {
		rc.t.Fatalf("reading response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		rc.t.Fatalf("reading body: %v", err)
	}
	return resp, string(b)
}

// takenOver reports how many connections the gateway serves itself.
func takenOver(g *Gateway) int {
	n := 0
	g.servers.Range(func(_, v any) bool {
		grp := v.(*serverGroup)
		grp.mu.Lock()
		n += len(grp.conns)
		grp.mu.Unlock()
		return true
	})
	return n
}

func TestFastPathTakesOverAndPipelines(t *testing.T) {
	g, srv, _ := fastGateway(t)
	rc := dialRaw(t, srv)
	// Three pipelined requests in one write: net/http reads the first,
	// the fast loop the others (from net/http's buffer and the socket).
	rc.send("GET /a HTTP/1.1\r\nHost: d.localhost\r\n\r\n" +
		"POST /b HTTP/1.1\r\nHost: d.localhost\r\nContent-Length: 5\r\n\r\nhello" +
		"PUT /c?x=1 HTTP/1.1\r\nHost: d.localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n")
	for _, want := range []struct{ method, body string }{{"GET", "GET /a "}, {"POST", "POST /b hello"}, {"PUT", "PUT /c?x=1 abcde"}} {
		resp, body := rc.response(want.method)
		if resp.StatusCode != 200 || body != want.body {
			t.Fatalf("got %d %q, want %q", resp.StatusCode, body, want.body)
		}
	}
	if n := takenOver(g); n != 1 {
		t.Fatalf("%d connections taken over, want 1", n)
	}
	// Errors on a taken-over connection are JSON too.
	rc.send("GET / HTTP/1.1\r\nHost: nope.localhost\r\n\r\n")
	if resp, body := rc.response("GET"); resp.StatusCode != 404 || !strings.Contains(body, `"deployment":"nope"`) {
		t.Fatalf("unknown deployment: %d %s", resp.StatusCode, body)
	}
	rc.send("HEAD /h HTTP/1.1\r\nHost: d.localhost\r\n\r\n")
	if resp, body := rc.response("HEAD"); resp.StatusCode != 200 || body != "" || resp.ContentLength != int64(len("HEAD /h ")) {
		t.Fatalf("HEAD: %d %q %d", resp.StatusCode, body, resp.ContentLength)
	}
}

func TestFastPathRejectsMalformedRequests(t *testing.T) {
	for _, tc := range []struct {
		name, req string
		code      int
	}{
		{"space before colon", "GET / HTTP/1.1\r\nHost: d.localhost\r\nBad : x\r\n\r\n", 400},
		{"length and chunked", "POST / HTTP/1.1\r\nHost: d.localhost\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"two lengths", "POST / HTTP/1.1\r\nHost: d.localhost\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
		{"folding", "GET / HTTP/1.1\r\nHost: d.localhost\r\nX-A: 1\r\n  2\r\n\r\n", 400},
		{"no host", "GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", 400},
		{"two hosts", "GET / HTTP/1.1\r\nHost: d.localhost\r\nHost: e.localhost\r\n\r\n", 400},
		{"gzip coding", "POST / HTTP/1.1\r\nHost: d.localhost\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"version", "GET / HTTP/2.0\r\nHost: d.localhost\r\n\r\n", 505},
		{"huge header", "GET / HTTP/1.1\r\nHost: d.localhost\r\nX-Big: " + strings.Repeat("a", 2<<20) + "\r\n\r\n", 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, srv, hits := fastGateway(t)
			rc := dialRaw(t, srv)
			rc.send("GET /first HTTP/1.1\r\nHost: d.localhost\r\n\r\n")
			if resp, _ := rc.response("GET"); resp.StatusCode != 200 {
				t.Fatalf("first request: %d", resp.StatusCode)
			}
			go io.WriteString(rc.c, tc.req) // may block: the gateway stops reading
			resp, _ := rc.response("GET")
			if resp.StatusCode != tc.code || !resp.Close {
				t.Fatalf("got %d (close %v), want %d and close", resp.StatusCode, resp.Close, tc.code)
			}
			if hits.Load() != 1 {
				t.Fatalf("backend got %d requests", hits.Load())
			}
		})
	}
}

func TestFastPathHTTP10AndConnectionClose(t *testing.T) {
	_, srv, _ := fastGateway(t)
	rc := dialRaw(t, srv)
	rc.send("GET /1 HTTP/1.0\r\nHost: d.localhost\r\nConnection: keep-alive\r\n\r\n")
	resp, body := rc.response("GET")
	if resp.StatusCode != 200 || body != "GET /1 " || resp.Close {
		t.Fatalf("1: %d %q close=%v", resp.StatusCode, body, resp.Close)
	}
	rc.send("GET /2 HTTP/1.0\r\nHost: d.localhost\r\nConnection: keep-alive\r\n\r\n")
	resp, body = rc.response("GET")
	if resp.StatusCode != 200 || body != "GET /2 " || resp.Close || resp.Header.Get("Connection") != "keep-alive" {
		t.Fatalf("2: %d %q close=%v %v", resp.StatusCode, body, resp.Close, resp.Header)
	}
	rc.send("GET /3 HTTP/1.1\r\nHost: d.localhost\r\nConnection: close\r\n\r\n")
	resp, body = rc.response("GET")
	if resp.StatusCode != 200 || body != "GET /3 " || !resp.Close {
		t.Fatalf("3: %d %q close=%v", resp.StatusCode, body, resp.Close)
	}
	if _, err := rc.br.ReadByte(); err != io.EOF {
		t.Fatalf("connection not closed after Connection: close: %v", err)
	}
}

func TestFastPathExpectContinue(t *testing.T) {
	_, srv, _ := fastGateway(t)
	rc := dialRaw(t, srv)
	rc.send("GET / HTTP/1.1\r\nHost: d.localhost\r\n\r\n")
	rc.response("GET")
	rc.send("POST /e HTTP/1.1\r\nHost: d.localhost\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
	line, err := rc.br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("interim response %q %v", line, err)
	}
	rc.br.ReadString('\n')
	rc.send("data")
	if resp, body := rc.response("POST"); resp.StatusCode != 200 || body != "POST /e data" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
}

func TestFastPathShutdownClosesIdleConnections(t *testing.T) {
	g := New(Options{})
	g.fastPath = true
	be := backendServer(t, "ok")
	g.SetBackends("d", []Backend{{ReplicaID: "r", Cloud: "c", URL: be.URL}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: g}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitTimeout))
	rc := &rawConn{t: t, c: c, br: bufio.NewReader(c)}
	rc.send("GET / HTTP/1.1\r\nHost: d.localhost\r\n\r\n")
	rc.response("GET")
	rc.send("GET / HTTP/1.1\r\nHost: d.localhost\r\n\r\n")
	if _, body := rc.response("GET"); body != "ok" {
		t.Fatalf("body %q", body)
	}
	if takenOver(g) != 1 {
		t.Fatal("connection not taken over")
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.br.ReadByte(); err == nil {
		t.Fatal("idle taken-over connection still open after Shutdown")
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Fatal(err)
	}
}

func TestFastPathClientGoneCancelsBackend(t *testing.T) {
	g, srv, _ := fastGateway(t)
	arrived, cancelled := make(chan struct{}), make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/slow" {
			return
		}
		close(arrived)
		select {
		case <-r.Context().Done():
			close(cancelled)
		case <-time.After(waitTimeout):
		}
	}))
	defer be.Close()
	g.SetBackends("slow", []Backend{{ReplicaID: "s", Cloud: "c", URL: be.URL}})

	rc := dialRaw(t, srv)
	rc.send("GET / HTTP/1.1\r\nHost: slow.localhost\r\n\r\n")
	rc.response("GET")
	rc.send("GET /slow HTTP/1.1\r\nHost: slow.localhost\r\n\r\n")
	waitFor(t, "request at backend", arrived)
	rc.c.Close()
	waitFor(t, "backend request to be cancelled", cancelled)
	waitIdle(t, g, "s")
}

func TestFastPathUpgradeAfterTakeover(t *testing.T) {
	g, srv, _ := fastGateway(t)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			io.WriteString(w, "plain")
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
	g.SetBackends("u", []Backend{{ReplicaID: "u1", Cloud: "c", URL: be.URL}})

	rc := dialRaw(t, srv)
	rc.send("GET / HTTP/1.1\r\nHost: u.localhost\r\n\r\n")
	if _, body := rc.response("GET"); body != "plain" {
		t.Fatalf("first: %q", body)
	}
	if takenOver(g) != 1 {
		t.Fatal("not taken over")
	}
	rc.send("GET / HTTP/1.1\r\nHost: u.localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	req, _ := http.NewRequest("GET", "/", nil)
	resp, err := http.ReadResponse(rc.br, req)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	rc.send("hi\n")
	if line, err := rc.br.ReadString('\n'); err != nil || line != "echo: hi\n" {
		t.Fatalf("echo %q %v", line, err)
	}
}
