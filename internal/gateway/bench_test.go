package gateway

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"testing"
)

// cannedBackend is a minimal HTTP/1.1 server that answers every request with
// the same small JSON response, allocating nothing per request, so that a
// benchmark of the gateway measures the gateway.
func cannedBackend(b *testing.B) string {
	return cannedBackendWith(b, "")
}

// cannedBackendWith is cannedBackend with extra header lines ("K: v\r\n").
func cannedBackendWith(b *testing.B, extra string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Mon, 02 Jan 2006 15:04:05 GMT\r\n" + extra + "Content-Length: 19\r\n\r\n{\"ok\":true,\"n\":123}")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					// Read one request head (the benchmark sends no bodies).
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(bytes.TrimRight(line, "\r\n")) == 0 {
							break
						}
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// nopWriter is a ResponseWriter that keeps the header map between requests
// (cleared) and discards the body.
type nopWriter struct {
	h    http.Header
	code int
	n    int
}

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) WriteHeader(code int)        { w.code = code }
func (w *nopWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }
func (w *nopWriter) Flush()                      {}

// BenchmarkServeHTTP measures the gateway's own cost per proxied request
// (routing, balancing, the backend exchange, metrics), without net/http's
// server side.
func BenchmarkServeHTTP(b *testing.B) {
	g := New(Options{})
	g.SetBackends("bench", []Backend{{ReplicaID: "r1", Cloud: "local", URL: cannedBackend(b)}})
	benchServeHTTP(b, g)
}

// BenchmarkServeHTTPMetricHeader is BenchmarkServeHTTP with a metric header
// (SetMetricHeader) that every response carries.
func BenchmarkServeHTTPMetricHeader(b *testing.B) {
	g := New(Options{})
	g.SetMetricHeader("bench", "X-Queue-Depth")
	g.SetBackends("bench", []Backend{{ReplicaID: "r1", Cloud: "local", URL: cannedBackendWith(b, "X-Queue-Depth: 17\r\n")}})
	benchServeHTTP(b, g)
	if s, _ := g.Stats("bench"); s.Replicas[0].Metric != 17 {
		b.Fatalf("metric %v", s.Replicas[0].Metric)
	}
}

func benchServeHTTP(b *testing.B, g *Gateway) {
	req, _ := http.NewRequest("GET", "http://bench.localhost/", nil)
	req.RequestURI = "/"
	req.RemoteAddr = "127.0.0.1:12345"
	req.Header.Set("User-Agent", "wrk")
	req.Header.Set("Accept", "*/*")
	w := &nopWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		clear(w.h)
		w.n = 0
		g.ServeHTTP(w, req)
		if w.code != 200 || w.n != 19 {
			b.Fatalf("got %d, %d bytes", w.code, w.n)
		}
	}
}
