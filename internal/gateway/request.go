package gateway

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// This file parses requests for the fast loop (fast.go). It is stricter than
// most servers where leniency could be used to smuggle requests past the
// gateway: no whitespace before a header colon, no obsolete line folding, no
// control characters, Content-Length and Transfer-Encoding not together,
// only "chunked" as a transfer coding, exactly one Host for HTTP/1.1.

var (
	errMalformed      = errors.New("malformed HTTP request")
	errVersion        = errors.New("unsupported HTTP version")
	errTransferCoding = errors.New("unsupported transfer encoding")
)

// reqParser holds what is reused from one request of a connection to the next.
type reqParser struct {
	req     http.Request
	url     url.URL
	h       http.Header
	arena   []byte
	line    []byte // assembles lines longer than the read buffer
	fields  []reqField
	clBody  clBody
	chBody  chunkedBody
	maxLine int
}

type reqField struct {
	key        string // canonical constant, or "" with the key in the arena
	ks, ke     int32
	vs, ve     int32
	skipHeader bool // kept out of the header map (Host)
}

var chunkedTE = []string{"chunked"}

// readRequest parses the next request head from br and returns the
// connection's reused *http.Request for it, with Body reading from br.
func (p *reqParser) readRequest(br *bufio.Reader) (*http.Request, error) {
	p.arena = p.arena[:0]
	p.fields = p.fields[:0]

	line, err := p.readLine(br)
	if err != nil {
		return nil, err
	}
	// Tolerate one empty line before the request line (RFC 9112 2.2).
	if len(line) == 0 {
		if line, err = p.readLine(br); err != nil {
			return nil, err
		}
	}
	sp1 := indexByte(line, ' ')
	if sp1 <= 0 {
		return nil, errMalformed
	}
	rest := line[sp1+1:]
	sp2 := indexByte(rest, ' ')
	if sp2 <= 0 {
		return nil, errMalformed
	}
	mb, target, proto := line[:sp1], rest[:sp2], rest[sp2+1:]
	for _, c := range mb {
		if !isTokenChar(c) {
			return nil, errMalformed
		}
	}
	for _, c := range target {
		if c <= ' ' || c == 0x7f {
			return nil, errMalformed
		}
	}
	var minor int
	switch string(proto) {
	case "HTTP/1.1":
		minor = 1
	case "HTTP/1.0":
		minor = 0
	default:
		if len(proto) > 5 && string(proto[:5]) == "HTTP/" {
			return nil, errVersion
		}
		return nil, errMalformed
	}
	method := commonMethod(mb)
	mStart := int32(len(p.arena))
	if method == "" {
		p.arena = append(p.arena, mb...)
	}
	mEnd := int32(len(p.arena))
	p.arena = append(p.arena, target...)
	tEnd := int32(len(p.arena))

	// Header fields.
	var (
		hostIdx     = -1
		hosts       int
		cl          int64 = -1
		chunked     bool
		te          bool
		connClose   bool
		connKeep    bool
		badFraming  bool
		unsupported bool
	)
	for {
		line, err := p.readLine(br)
		if err != nil {
			return nil, err
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return nil, errMalformed // obsolete line folding
		}
		colon := indexByte(line, ':')
		if colon <= 0 {
			return nil, errMalformed
		}
		key, val := line[:colon], trimOWS(line[colon+1:])
		for _, c := range val {
			if (c < ' ' && c != '\t') || c == 0x7f {
				return nil, errMalformed
			}
		}
		f := reqField{}
		if ck, ok := commonHeaders[string(key)]; ok {
			f.key = ck
		} else {
			f.ks = int32(len(p.arena))
			var ok bool
			if p.arena, ok = appendCanonicalKey(p.arena, key); !ok {
				return nil, errMalformed
			}
			f.ke = int32(len(p.arena))
			// Framing headers in any letter case must meet the same checks
			// as their common spellings (a miss here would let a request
			// smuggle a body past them).
			switch ck := string(p.arena[f.ks:f.ke]); ck {
			case "Host", "Content-Length", "Transfer-Encoding", "Connection":
				f.key = ck
			}
		}
		f.vs = int32(len(p.arena))
		p.arena = append(p.arena, val...)
		f.ve = int32(len(p.arena))
		switch f.key {
		case "Host":
			hosts++
			hostIdx = len(p.fields)
			f.skipHeader = true
		case "Content-Length":
			n, ok := parseContentLength(val)
			if !ok || (cl >= 0 && n != cl) {
				badFraming = true
			}
			cl = n
		case "Transfer-Encoding":
			if te {
				badFraming = true
			}
			te = true
			if strings.EqualFold(string(val), "chunked") {
				chunked = true
			} else {
				unsupported = true
			}
		case "Connection":
			for _, t := range strings.Split(string(val), ",") {
				t = strings.TrimSpace(t)
				if strings.EqualFold(t, "close") {
					connClose = true
				} else if strings.EqualFold(t, "keep-alive") {
					connKeep = true
				}
			}
		}
		p.fields = append(p.fields, f)
	}
	if unsupported {
		return nil, errTransferCoding
	}
	if badFraming || (te && cl >= 0) || (te && minor == 0) || hosts > 1 || (minor == 1 && hosts == 0) {
		return nil, errMalformed
	}

	// One allocation holds the method, target, keys and values.
	arena := string(p.arena)
	if p.h == nil {
		p.h = make(http.Header, 16)
	}
	h := p.h
	clear(h)
	n := 0
	for i := range p.fields {
		if !p.fields[i].skipHeader {
			n++
		}
	}
	vals := make([]string, n)
	j := 0
	host := ""
	for i := range p.fields {
		f := &p.fields[i]
		if i == hostIdx {
			host = arena[f.vs:f.ve]
		}
		if f.skipHeader {
			continue
		}
		key := f.key
		if key == "" {
			key = arena[f.ks:f.ke]
		}
		vals[j] = arena[f.vs:f.ve]
		if old := h[key]; old != nil {
			h[key] = append(old, vals[j])
		} else {
			h[key] = vals[j : j+1 : j+1]
		}
		j++
	}
	if method == "" {
		method = arena[mStart:mEnd]
	}

	r := &p.req
	*r = http.Request{
		Method:     method,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: minor,
		Header:     h,
		Host:       host,
		RequestURI: arena[mEnd:tEnd],
		Close:      connClose || (minor == 0 && !connKeep),
	}
	if minor == 0 {
		r.Proto = "HTTP/1.0"
	}
	// The URL: the path-only form (almost every request) is filled in
	// without parsing; anything else goes through net/url.
	p.url = url.URL{}
	r.URL = &p.url
	if !fillURL(r.URL, r.RequestURI) {
		u, err := url.ParseRequestURI(r.RequestURI)
		if err != nil {
			return nil, errMalformed
		}
		r.URL = u
		if u.Host != "" { // absolute-form: its authority wins (as in net/http)
			r.Host = u.Host
		}
	}
	switch {
	case chunked:
		r.ContentLength = -1
		r.TransferEncoding = chunkedTE
		p.chBody.reset(br)
		r.Body = &p.chBody
	case cl > 0:
		r.ContentLength = cl
		p.clBody = clBody{br: br, n: cl}
		r.Body = &p.clBody
	default:
		r.Body = http.NoBody
	}
	return r, nil
}

// fillURL sets u from an origin-form target ("/path?query") without
// allocating, when the path needs no unescaping.
func fillURL(u *url.URL, target string) bool {
	if len(target) == 0 || target[0] != '/' || strings.HasPrefix(target, "//") {
		return false
	}
	path, query, _ := strings.Cut(target, "?")
	if strings.ContainsAny(path, "%#") || strings.Contains(query, "#") {
		return false
	}
	u.Path = path
	u.RawQuery = query
	return true
}

func commonMethod(b []byte) string {
	switch string(b) {
	case "GET":
		return http.MethodGet
	case "POST":
		return http.MethodPost
	case "HEAD":
		return http.MethodHead
	case "PUT":
		return http.MethodPut
	case "DELETE":
		return http.MethodDelete
	case "OPTIONS":
		return http.MethodOptions
	case "PATCH":
		return http.MethodPatch
	}
	return ""
}

func parseContentLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return -1, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return -1, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// readLine reads a CRLF (or LF) terminated line of up to p.maxLine bytes.
// The result is valid until the next read.
func (p *reqParser) readLine(br *bufio.Reader) ([]byte, error) {
	return readLongLine(br, &p.line, p.maxLine)
}

// readLongLine reads a line, assembling it in *buf when it is longer than
// br's buffer, up to max bytes.
func readLongLine(br *bufio.Reader, buf *[]byte, max int) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		*buf = append((*buf)[:0], line...)
		for err == bufio.ErrBufferFull {
			if len(*buf) > max {
				return nil, errHeaderLimit
			}
			line, err = br.ReadSlice('\n')
			*buf = append(*buf, line...)
		}
		line = *buf
	}
	if err != nil {
		if err == io.EOF && len(line) > 0 {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// clBody is a request body of known length.
type clBody struct {
	br *bufio.Reader
	n  int64
}

func (b *clBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.br.Read(p)
	b.n -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if b.n == 0 && err == nil {
		err = io.EOF
	}
	return n, err
}

func (b *clBody) Close() error { return nil }

// chunkedBody decodes a chunked request body, discarding trailers.
type chunkedBody struct {
	br   *bufio.Reader
	n    int64 // bytes left in the current chunk
	done bool
	err  error
	line []byte // assembles long trailer lines
}

func (b *chunkedBody) reset(br *bufio.Reader) {
	b.br, b.n, b.done, b.err = br, 0, false, nil
}

func (b *chunkedBody) readLine() ([]byte, error) { return readLongLine(b.br, &b.line, 64<<10) }

func (b *chunkedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.done {
		return 0, io.EOF
	}
	if b.n == 0 {
		line, err := b.readLine()
		if err != nil {
			return 0, b.fail(err)
		}
		if i := indexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		line = trimOWS(line)
		size, err := strconv.ParseUint(string(line), 16, 62)
		if err != nil || len(line) == 0 {
			return 0, b.fail(errMalformed)
		}
		if size == 0 {
			for { // trailers
				l, err := b.readLine()
				if err != nil {
					return 0, b.fail(err)
				}
				if len(l) == 0 {
					break
				}
			}
			b.done = true
			return 0, io.EOF
		}
		b.n = int64(size)
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.br.Read(p)
	b.n -= int64(n)
	if err != nil {
		return n, b.fail(err)
	}
	if b.n == 0 {
		line, err := b.readLine()
		if err != nil || len(line) != 0 {
			return n, b.fail(errMalformed)
		}
	}
	return n, nil
}

func (b *chunkedBody) fail(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	b.err = err
	return err
}

func (b *chunkedBody) Close() error { return nil }
