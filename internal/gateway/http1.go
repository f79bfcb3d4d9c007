package gateway

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// This file is the gateway's HTTP/1.1 client side: writing a request to a
// backend connection and reading the response, without the intermediate
// objects of net/http's Transport.

type bufWriter = *bufio.Writer

// writeRequestHead writes the request line and header of r, as sent to a
// backend at host: hop-by-hop headers removed, X-Forwarded-* set, framing
// for the body that follows.
func writeRequestHead(bw *bufio.Writer, r *http.Request, host string, body []byte, streamBody bool) error {
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	uri := r.RequestURI
	if uri == "" || (uri[0] != '/' && uri != "*") {
		uri = r.URL.RequestURI() // absolute-form request target
	}
	bw.WriteString(uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")

	connection := r.Header["Connection"]
	for k, vv := range r.Header {
		if skipRequestHeader(k) {
			if k == "Te" && headerHasToken(vv, "trailers") {
				bw.WriteString("Te: trailers\r\n")
			}
			continue
		}
		if len(connection) > 0 && headerHasToken(connection, k) {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}

	bw.WriteString("X-Forwarded-For: ")
	for _, v := range r.Header["X-Forwarded-For"] {
		bw.WriteString(v)
		bw.WriteString(", ")
	}
	bw.WriteString(clientIP(r.RemoteAddr))
	bw.WriteString("\r\nX-Forwarded-Host: ")
	bw.WriteString(r.Host)
	if r.TLS != nil {
		bw.WriteString("\r\nX-Forwarded-Proto: https\r\n")
	} else {
		bw.WriteString("\r\nX-Forwarded-Proto: http\r\n")
	}

	switch {
	case body != nil:
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(len(body)), 10))
		bw.WriteString("\r\n")
	case streamBody && r.ContentLength < 0:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	case streamBody:
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), r.ContentLength, 10))
		bw.WriteString("\r\n")
	case r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch:
		bw.WriteString("Content-Length: 0\r\n")
	}
	_, err := bw.WriteString("\r\n")
	return err
}

// skipRequestHeader reports headers not copied from the client's request:
// hop-by-hop ones and those the gateway sets itself.
func skipRequestHeader(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length", "Host", "Expect",
		"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
		return true
	}
	return false
}

// headerHasToken reports whether the comma-separated values contain token
// (case-insensitively).
func headerHasToken(values []string, token string) bool {
	for _, v := range values {
		for v != "" {
			var t string
			t, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// clientIP strips the port from a RemoteAddr.
func clientIP(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		addr = addr[:i]
	}
	if len(addr) > 1 && addr[0] == '[' && addr[len(addr)-1] == ']' {
		addr = addr[1 : len(addr)-1]
	}
	return addr
}

func writeChunkHeader(bw *bufio.Writer, n int) {
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(n), 16))
	bw.WriteString("\r\n")
}

// Limits on a backend's response head.
const (
	maxHeaderFields = 256
	maxHeaderBytes  = 256 << 10
)

var (
	errBadResponse   = errors.New("malformed HTTP response from replica")
	errHeaderTooBig  = errors.New("response header from replica too large")
	errClientWrite   = errors.New("writing response to client failed")
	errBadChunk      = errors.New("malformed chunked encoding from replica")
	errUnexpectedEOF = errors.New("replica closed the connection mid-response")
)

// field is one response header field: the key (a canonical constant or a
// slice of the value arena) and the value's position in the arena.
type field struct {
	key        string
	keyArena   bool // key is at [ks, ke) of the arena instead
	ks, ke     int32
	vs, ve     int32
	hopByHop   bool
	trailerKey bool
}

// respHead is a parsed response status line and header framing.
type respHead struct {
	status        int
	contentLength int64 // -1 when unknown
	chunked       bool
	close         bool // connection cannot be reused after this response
	noBody        bool
	hasType       bool
	connTokens    []string // extra hop-by-hop names listed in Connection
	nfields       int
}

// readResponseHead reads the status line and header of the next response on
// pc, skipping 1xx interim responses. Field keys and values are copied into
// pc's arena; copyHeader turns them into strings with one allocation.
func readResponseHead(pc *pconn, isHead bool) (respHead, error) {
	br := pc.br
	rh := respHead{contentLength: -1}
	http10 := false
	pc.arena = pc.arena[:0]
	pc.fields = pc.fields[:0]
	total := 0
	for {
		line, err := readLine(br, &total)
		if err != nil {
			if err == errHeaderTooBig {
				return rh, err
			}
			return rh, fmt.Errorf("reading response from replica: %w", err)
		}
		// "HTTP/1.1 200 OK"
		if len(line) < 12 || string(line[:7]) != "HTTP/1." || (line[7] != '0' && line[7] != '1') || line[8] != ' ' ||
			(len(line) > 12 && line[12] != ' ') {
			return rh, errBadResponse
		}
		code := 0
		for _, c := range line[9:12] {
			if c < '0' || c > '9' {
				return rh, errBadResponse
			}
			code = code*10 + int(c-'0')
		}
		if code < 100 {
			return rh, errBadResponse
		}
		http10 = line[7] == '0'
		if code >= 100 && code < 200 {
			if code == http.StatusSwitchingProtocols {
				return rh, errors.New("replica switched protocols on a request without upgrade")
			}
			// Interim response (100 Continue, 103 Early Hints): skip it.
			for {
				l, err := readLine(br, &total)
				if err != nil {
					return rh, err
				}
				if len(l) == 0 {
					break
				}
			}
			continue
		}
		rh.status = code
		break
	}

	keepAlive, closeHdr := false, false
	var cl int64 = -1
	for {
		line, err := readLine(br, &total)
		if err != nil {
			return rh, err
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' { // obsolete line folding
			return rh, errBadResponse
		}
		colon := -1
		for i, c := range line {
			if c == ':' {
				colon = i
				break
			}
		}
		if colon <= 0 {
			return rh, errBadResponse
		}
		key, val := line[:colon], trimOWS(line[colon+1:])
		for _, c := range val {
			if c < ' ' && c != '\t' || c == 0x7f {
				return rh, errBadResponse
			}
		}
		if len(pc.fields) >= maxHeaderFields {
			return rh, errHeaderTooBig
		}
		f := field{}
		if ck, ok := commonHeaders[string(key)]; ok {
			f.key = ck
		} else {
			f.keyArena = true
			f.ks = int32(len(pc.arena))
			var ok bool
			pc.arena, ok = appendCanonicalKey(pc.arena, key)
			if !ok {
				return rh, errBadResponse
			}
			f.ke = int32(len(pc.arena))
		}
		f.vs = int32(len(pc.arena))
		pc.arena = append(pc.arena, val...)
		f.ve = int32(len(pc.arena))
		switch f.key {
		case "Content-Length":
			n, err := strconv.ParseInt(string(val), 10, 64)
			if err != nil || n < 0 || (cl >= 0 && n != cl) {
				return rh, errBadResponse
			}
			cl = n
		case "Transfer-Encoding":
			f.hopByHop = true
			if rh.chunked {
				return rh, errBadResponse
			}
			v := strings.TrimSpace(string(val))
			if i := strings.LastIndexByte(v, ','); i >= 0 {
				v = strings.TrimSpace(v[i+1:])
			}
			if !strings.EqualFold(v, "chunked") {
				// Not chunked last: the body runs to the end of the connection.
				rh.close = true
				cl = -2
			} else {
				rh.chunked = true
			}
		case "Connection":
			f.hopByHop = true
			for _, t := range strings.Split(string(val), ",") {
				t = strings.TrimSpace(t)
				switch {
				case strings.EqualFold(t, "close"):
					closeHdr = true
				case strings.EqualFold(t, "keep-alive"):
					keepAlive = true
				case t != "":
					rh.connTokens = append(rh.connTokens, t)
				}
			}
		case "Keep-Alive", "Proxy-Connection", "Upgrade", "Trailer", "Proxy-Authenticate":
			f.hopByHop = true
		case "Content-Type":
			rh.hasType = true
		}
		pc.fields = append(pc.fields, f)
	}
	if closeHdr || (http10 && !keepAlive) {
		rh.close = true
	}
	switch {
	case isHead || rh.status == http.StatusNoContent || rh.status == http.StatusNotModified:
		rh.noBody = true
	case rh.chunked:
		if cl == -2 {
			rh.chunked = false
		}
		// Content-Length is ignored (and not forwarded) with chunked framing.
		for i := range pc.fields {
			if pc.fields[i].key == "Content-Length" {
				pc.fields[i].hopByHop = true
			}
		}
	case cl >= 0:
		rh.contentLength = cl
	default:
		rh.close = true
	}
	rh.nfields = len(pc.fields)
	return rh, nil
}

// copyHeader adds the forwarded fields to h. All values (and uncommon keys)
// become substrings of one string made from the arena.
func (rh *respHead) copyHeader(h http.Header, pc *pconn) {
	arena := string(pc.arena)
	n := 0
	for i := range pc.fields {
		if !pc.fields[i].hopByHop {
			n++
		}
	}
	vals := make([]string, n)
	j := 0
	for i := range pc.fields {
		f := &pc.fields[i]
		if f.hopByHop {
			continue
		}
		key := f.key
		if f.keyArena {
			key = arena[f.ks:f.ke]
		}
		if len(rh.connTokens) > 0 && headerHasToken(rh.connTokens, key) {
			continue
		}
		vals[j] = arena[f.vs:f.ve]
		if old := h[key]; old != nil {
			h[key] = append(old, vals[j])
		} else {
			h[key] = vals[j : j+1 : j+1]
		}
		j++
	}
	if !rh.hasType {
		// Like a proxy should: do not let net/http sniff a Content-Type.
		h["Content-Type"] = nil
	}
}

// readLine returns the next line without its line ending. The slice is only
// valid until the next read.
func readLine(br *bufio.Reader, total *int) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if err == bufio.ErrBufferFull {
			return nil, errHeaderTooBig
		}
		if len(line) > 0 && err == io.EOF {
			return nil, errUnexpectedEOF
		}
		return nil, err
	}
	*total += len(line)
	if *total > maxHeaderBytes {
		return nil, errHeaderTooBig
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// appendCanonicalKey appends the canonical form of a header key (as
// textproto.CanonicalMIMEHeaderKey) and reports whether it is a valid token.
func appendCanonicalKey(dst, key []byte) ([]byte, bool) {
	upper := true
	for _, c := range key {
		if !isTokenChar(c) {
			return dst, false
		}
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		} else if !upper && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
		upper = c == '-'
	}
	return dst, true
}

func isTokenChar(c byte) bool {
	if c >= 0x80 || c <= ' ' || c == 0x7f {
		return false
	}
	return !strings.ContainsRune(`"(),/:;<=>?@[\]{}`, rune(c))
}

// commonHeaders maps the spellings backends commonly send (canonical and
// lower-case) to the canonical key, so those keys cost no allocation.
var commonHeaders = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept-Ranges", "Access-Control-Allow-Credentials", "Access-Control-Allow-Headers",
		"Access-Control-Allow-Methods", "Access-Control-Allow-Origin", "Access-Control-Expose-Headers",
		"Access-Control-Max-Age", "Age", "Allow", "Cache-Control", "Connection", "Content-Disposition",
		"Content-Encoding", "Content-Language", "Content-Length", "Content-Location", "Content-Range",
		"Content-Security-Policy", "Content-Type", "Date", "Etag", "Expires", "Keep-Alive",
		"Last-Modified", "Link", "Location", "Proxy-Authenticate", "Proxy-Connection", "Retry-After",
		"Server", "Set-Cookie", "Strict-Transport-Security", "Trailer", "Transfer-Encoding", "Upgrade",
		"Vary", "Via", "Www-Authenticate", "X-Content-Type-Options", "X-Frame-Options", "X-Request-Id",
		"X-Accel-Buffering",
		// Common in requests.
		"Host", "Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cookie", "Origin",
		"Referer", "User-Agent", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Te",
		"Expect", "If-None-Match", "If-Modified-Since", "X-Aloft-Deployment", "Sec-Fetch-Mode",
		"Sec-Fetch-Site", "Sec-Fetch-Dest", "Upgrade-Insecure-Requests", "Pragma", "Priority",
	} {
		if http.CanonicalHeaderKey(k) != k {
			panic("gateway: non-canonical common header " + k)
		}
		m[k] = k
		m[strings.ToLower(k)] = k
	}
	m["ETag"] = "Etag"
	m["WWW-Authenticate"] = "Www-Authenticate"
	return m
}()

// bodyCopier forwards a response body to the client. It flushes the client
// whenever it has written data and would otherwise wait for the backend, so
// streamed responses (SSE, chunked) arrive as they are produced, while a body
// already received in full goes out in as few writes as possible.
type bodyCopier struct {
	w       http.ResponseWriter
	br      *bufio.Reader
	fc      *fastConn // the fast loop's connection, or nil
	pc      *pconn
	dirty   bool
	flusher http.Flusher
	rc      *http.ResponseController
}

func (c *bodyCopier) flush() error {
	c.dirty = false
	if c.flusher == nil && c.rc == nil {
		if f, ok := c.w.(http.Flusher); ok {
			c.flusher = f
		} else {
			c.rc = http.NewResponseController(c.w)
		}
	}
	if c.flusher != nil {
		c.flusher.Flush()
		return nil
	}
	if err := c.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return errClientWrite
	}
	return nil
}

// fill makes sure some body bytes are buffered, flushing first if reading
// would block.
func (c *bodyCopier) fill() error {
	if c.br.Buffered() > 0 {
		return nil
	}
	if c.dirty {
		if err := c.flush(); err != nil {
			return err
		}
	}
	if c.fc != nil {
		return c.fc.await(c.pc)
	}
	_, err := c.br.Peek(1)
	return err
}

// copyN forwards exactly n bytes.
func (c *bodyCopier) copyN(n int64) error {
	for n > 0 {
		if err := c.fill(); err != nil {
			return eofIsUnexpected(err)
		}
		k := c.br.Buffered()
		if int64(k) > n {
			k = int(n)
		}
		p, _ := c.br.Peek(k)
		if _, err := c.w.Write(p); err != nil {
			return errClientWrite
		}
		c.br.Discard(k)
		n -= int64(k)
		c.dirty = true
	}
	return nil
}

// copyToEOF forwards a body delimited by the end of the connection.
func (c *bodyCopier) copyToEOF() error {
	for {
		if err := c.fill(); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		k := c.br.Buffered()
		p, _ := c.br.Peek(k)
		if _, err := c.w.Write(p); err != nil {
			return errClientWrite
		}
		c.br.Discard(k)
		c.dirty = true
	}
}

// copyChunked decodes a chunked body and forwards its data; the response is
// re-chunked (or not) by net/http for the client. Trailers are forwarded
// with http.TrailerPrefix.
func (c *bodyCopier) copyChunked(pc *pconn, h http.Header) error {
	total := 0
	for {
		if err := c.fill(); err != nil {
			return eofIsUnexpected(err)
		}
		line, err := readLine(c.br, &total)
		if err != nil {
			return eofIsUnexpected(err)
		}
		total = 0
		if i := indexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		line = trimOWS(line)
		if len(line) == 0 || len(line) > 16 {
			return errBadChunk
		}
		var size int64
		for _, ch := range line {
			var d byte
			switch {
			case '0' <= ch && ch <= '9':
				d = ch - '0'
			case 'a' <= ch && ch <= 'f':
				d = ch - 'a' + 10
			case 'A' <= ch && ch <= 'F':
				d = ch - 'A' + 10
			default:
				return errBadChunk
			}
			size = size<<4 | int64(d)
		}
		if size < 0 {
			return errBadChunk
		}
		if size == 0 {
			return c.readTrailers(h)
		}
		if err := c.copyN(size); err != nil {
			return err
		}
		if err := c.fill(); err != nil {
			return eofIsUnexpected(err)
		}
		crlf, err := readLine(c.br, &total)
		if err != nil || len(crlf) != 0 {
			return errBadChunk
		}
	}
}

func (c *bodyCopier) readTrailers(h http.Header) error {
	total := 0
	for {
		line, err := readLine(c.br, &total)
		if err != nil {
			return eofIsUnexpected(err)
		}
		if len(line) == 0 {
			return nil
		}
		colon := indexByte(line, ':')
		if colon <= 0 {
			return errBadChunk
		}
		key, ok := appendCanonicalKey(nil, line[:colon])
		if !ok {
			return errBadChunk
		}
		k := string(key)
		if skipRequestHeader(k) {
			continue
		}
		h[http.TrailerPrefix+k] = append(h[http.TrailerPrefix+k], string(trimOWS(line[colon+1:])))
	}
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func eofIsUnexpected(err error) error {
	if err == io.EOF {
		return errUnexpectedEOF
	}
	return err
}
