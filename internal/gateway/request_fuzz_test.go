package gateway

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"testing"
)

// FuzzReadRequest checks the fast path's hand-written HTTP/1.1 request parser
// against net/http's: it never panics, and whatever it accepts, net/http
// accepts too, with the same method, target, host, headers and body.
func FuzzReadRequest(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: a.localhost\r\n\r\n",
		"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"GET /a?b=c HTTP/1.0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
		"\r\nGET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-A: 2\r\n\r\n",
		"GET http://h/p HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n bad-fold\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p := &reqParser{maxLine: 8 << 10}
		got, err := p.readRequest(bufio.NewReaderSize(bytes.NewReader(data), 4096))
		if err != nil {
			return
		}
		gotBody, gerr := io.ReadAll(io.LimitReader(got.Body, 1<<20))
		// The fast path skips one empty line before the request line (RFC 9112 2.2); http.ReadRequest does not.
		ref := data
		if rest, ok := bytes.CutPrefix(ref, []byte("\r\n")); ok {
			ref = rest
		} else if rest, ok := bytes.CutPrefix(ref, []byte("\n")); ok {
			ref = rest
		}
		want, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(ref)))
		if err != nil {
			t.Fatalf("fast path accepted what net/http refuses (%v): %q", err, data)
		}
		if got.Method != want.Method || got.RequestURI != want.RequestURI || got.Host != want.Host ||
			got.ProtoMajor != want.ProtoMajor || got.ProtoMinor != want.ProtoMinor {
			t.Fatalf("request line differs: fast %s %q %q HTTP/%d.%d, net/http %s %q %q HTTP/%d.%d (input %q)",
				got.Method, got.RequestURI, got.Host, got.ProtoMajor, got.ProtoMinor,
				want.Method, want.RequestURI, want.Host, want.ProtoMajor, want.ProtoMinor, data)
		}
		for k, v := range want.Header {
			if k == "Host" {
				continue
			}
			if g := got.Header[k]; len(g) != len(v) {
				t.Fatalf("header %s: fast %q, net/http %q (input %q)", k, g, v, data)
			}
		}
		wantBody, werr := io.ReadAll(io.LimitReader(want.Body, 1<<20))
		if (gerr == nil) == (werr == nil) && gerr == nil && !bytes.Equal(gotBody, wantBody) {
			t.Fatalf("body differs: fast %q, net/http %q (input %q)", gotBody, wantBody, data)
		}
	})
}
