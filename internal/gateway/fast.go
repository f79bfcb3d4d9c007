package gateway

// The keep-alive fast path.
//
// Measured on loopback, net/http's server costs about as much CPU per
// request as nginx's whole proxying does (request parsing into fresh maps, a
// context and a background-read goroutine per request, the response writer
// machinery), so a gateway behind http.Server cannot reach nginx's throughput
// however lean its client side is. When the gateway is the root handler of an
// http.Server (srv.Handler == g, so no middleware would be bypassed) and a
// request arrives on an HTTP/1.x keep-alive connection without a body, the
// gateway hijacks that connection and serves it, and every later request on
// it, with its own loop: requests are parsed by request.go into a reused
// http.Request (strictly: see there), answered through a reused
// ResponseWriter that writes HTTP/1.1 itself (a proxied response head goes
// out straight from the parsed backend head), and handled by the same code
// as ServeHTTP's requests (Gateway.handle). The loop follows the server's
// MaxHeaderBytes, ReadHeaderTimeout/ReadTimeout and IdleTimeout, and
// Server.Shutdown (via RegisterOnShutdown) closes its idle connections and
// makes busy ones close after their current response.
//
// Client disconnects: net/http watches every request's connection with a
// background read; the loop does so only for requests whose backend has not
// answered within watchAfter (slow or streaming ones, which is what
// cancellation is for), and so spends nothing on it for quick requests. Idle and header
// timeouts and the watch are driven by a janitor that looks at the
// connections' states a few times a second, instead of per-request deadlines.

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var (
	// fastPath enables the keep-alive takeover (tests switch it off to cover
	// the net/http path).
	fastPath = true
	// watchAfter is how long the loop waits for a backend before it starts
	// watching the client connection for a disconnect (checked every
	// janitorTick, so the watch starts within watchAfter+janitorTick).
	watchAfter  = 200 * time.Millisecond
	janitorTick = 200 * time.Millisecond
	// defaultIdleTimeout bounds idle taken-over connections when the
	// http.Server sets neither IdleTimeout nor ReadTimeout.
	defaultIdleTimeout = 2 * time.Minute
	// maxDrainBody is how much of an unread request body the loop reads
	// to keep a connection; beyond it the connection is closed.
	maxDrainBody int64 = 256 << 10
)

// takeOver hijacks r's connection for the fast loop when that is safe.
func (g *Gateway) takeOver(w http.ResponseWriter, r *http.Request) *fastConn {
	if !g.fastPath || r.ProtoMajor != 1 || r.Close || r.ContentLength != 0 || len(r.TransferEncoding) > 0 ||
		len(r.Header["Expect"]) > 0 || len(r.Header["Upgrade"]) > 0 || r.Method == http.MethodConnect {
		return nil
	}
	srv, _ := r.Context().Value(http.ServerContextKey).(*http.Server)
	if srv == nil || srv.Handler != http.Handler(g) {
		return nil
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		return nil
	}
	grp := g.serverGroup(srv)
	if grp == nil {
		return nil // shutting down
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		return nil
	}
	fc := &fastConn{g: g, srv: srv, grp: grp, c: c, remoteAddr: r.RemoteAddr, tls: r.TLS}
	fc.cr.c = c
	if rio := newRawIO(c); rio != nil {
		fc.cr.c = rio
	}
	fc.cr.limit = -1
	if n := brw.Reader.Buffered(); n > 0 {
		p, _ := brw.Reader.Peek(n)
		fc.cr.pending = append([]byte(nil), p...)
	}
	fc.br = bufio.NewReaderSize(&fc.cr, 4<<10)
	fc.bw = bufio.NewWriterSize(fc.cr.c, 4<<10)
	fc.fw.fc = fc
	fc.fw.h = make(http.Header)
	fc.watchDone = make(chan struct{}, 1)
	fc.idleTimeout = srv.IdleTimeout
	if fc.idleTimeout <= 0 {
		fc.idleTimeout = srv.ReadTimeout
	}
	if fc.idleTimeout <= 0 {
		fc.idleTimeout = defaultIdleTimeout
	}
	fc.headerTimeout = srv.ReadHeaderTimeout
	if fc.headerTimeout <= 0 {
		fc.headerTimeout = srv.ReadTimeout
	}
	fc.maxHeader = int64(srv.MaxHeaderBytes)
	if fc.maxHeader <= 0 {
		fc.maxHeader = http.DefaultMaxHeaderBytes
	}
	fc.maxHeader += 4096 // like net/http: slack for the request line and bufio
	fc.parser.maxLine = int(fc.maxHeader)
	return fc
}

// serverGroup tracks the taken-over connections of one http.Server so that
// its Shutdown reaches them.
type serverGroup struct {
	tickEvery, watchAfter time.Duration // janitorTick and watchAfter at creation

	mu       sync.Mutex
	conns    map[*fastConn]struct{}
	ticking  bool // a janitor tick is scheduled
	shutdown atomic.Bool
}

func (grp *serverGroup) add(fc *fastConn) {
	grp.mu.Lock()
	grp.conns[fc] = struct{}{}
	if !grp.ticking {
		grp.ticking = true
		time.AfterFunc(grp.tickEvery, grp.tick)
	}
	grp.mu.Unlock()
}

func (grp *serverGroup) remove(fc *fastConn) {
	grp.mu.Lock()
	delete(grp.conns, fc)
	grp.mu.Unlock()
}

// tick is the janitor: it enforces idle and header timeouts and starts
// watching clients whose backend is slow. It reschedules itself while the
// group has connections.
func (grp *serverGroup) tick() {
	grp.mu.Lock()
	for fc := range grp.conns {
		fc.check()
	}
	if len(grp.conns) > 0 {
		time.AfterFunc(grp.tickEvery, grp.tick)
	} else {
		grp.ticking = false
	}
	grp.mu.Unlock()
}

func (g *Gateway) serverGroup(srv *http.Server) *serverGroup {
	if v, ok := g.servers.Load(srv); ok {
		grp := v.(*serverGroup)
		if grp.shutdown.Load() {
			return nil
		}
		return grp
	}
	grp := &serverGroup{conns: map[*fastConn]struct{}{}, tickEvery: g.janitorTick, watchAfter: g.watchAfter}
	v, loaded := g.servers.LoadOrStore(srv, grp)
	if !loaded {
		srv.RegisterOnShutdown(func() {
			grp.shutdown.Store(true)
			grp.mu.Lock()
			for fc := range grp.conns {
				if fc.stateOf() == stIdle {
					fc.c.Close()
				}
			}
			grp.mu.Unlock()
			g.servers.Delete(srv)
		})
	}
	return v.(*serverGroup)
}

// fastConn is one taken-over client connection.
type fastConn struct {
	g          *Gateway
	srv        *http.Server
	grp        *serverGroup
	c          net.Conn
	cr         clientReader
	br         *bufio.Reader
	bw         *bufio.Writer
	fw         fastWriter
	parser     reqParser
	remoteAddr string
	tls        *tls.ConnectionState

	idleTimeout, headerTimeout time.Duration
	maxHeader                  int64

	// st is the connection's state (low byte, stBusy...) and a sequence
	// number that changes with every transition, so the janitor can tell
	// how many of its ticks a state has lasted without the hot path reading
	// the clock. waitPC is the backend connection of stBackend.
	st       atomic.Uint64
	stSeq    uint64 // main goroutine's transition counter
	waitPC   atomic.Pointer[pconn]
	lastSeen uint64 // janitor only: st at the previous tick
	ticks    int    // janitor only: ticks st has not changed
	closing  bool   // close after the current response
	hijacked bool   // handed on (protocol upgrade): not ours to close

	// Client watch: see await.
	gone      atomic.Bool
	watching  bool
	watchDone chan struct{}
	onGone    func()
}

// clientReader reads the client connection, first returning bytes that were
// already read (net/http's buffer at takeover, a byte the watcher read). It
// also enforces the request header size limit.
type clientReader struct {
	c       readWriter
	pending []byte
	limit   int64 // bytes left while reading a request head; <0: none
}

func (cr *clientReader) Read(p []byte) (int, error) {
	if cr.limit == 0 {
		return 0, errHeaderLimit
	}
	if cr.limit > 0 && int64(len(p)) > cr.limit {
		p = p[:cr.limit]
	}
	var n int
	var err error
	if len(cr.pending) > 0 {
		n = copy(p, cr.pending)
		cr.pending = cr.pending[n:]
	} else {
		n, err = cr.c.Read(p)
	}
	if cr.limit > 0 {
		cr.limit -= int64(n)
	}
	return n, err
}

var errHeaderLimit = errors.New("request header too large")

// Connection states, for the janitor.
const (
	stBusy    uint64 = iota
	stIdle           // waiting for the next request
	stHeader         // reading a request head
	stBackend        // waiting for a backend's response
	stKicking        // the janitor is interrupting the backend wait
	stKicked         // the janitor interrupted the backend wait
)

func (fc *fastConn) setState(s uint64) {
	fc.stSeq++
	fc.st.Store(fc.stSeq<<8 | s)
}

func (fc *fastConn) stateOf() uint64 { return fc.st.Load() & 0xff }

// check is called by the janitor every janitorTick.
func (fc *fastConn) check() {
	st := fc.st.Load()
	if st != fc.lastSeen {
		fc.lastSeen, fc.ticks = st, 0
		return
	}
	fc.ticks++
	d := time.Duration(fc.ticks) * fc.grp.tickEvery // at least this long in the state
	switch st & 0xff {
	case stIdle:
		if d >= fc.idleTimeout {
			fc.c.Close()
		}
	case stHeader:
		if fc.headerTimeout > 0 && d >= fc.headerTimeout {
			fc.c.Close()
		}
	case stBackend:
		if d >= fc.grp.watchAfter && fc.st.CompareAndSwap(st, st&^0xff|stKicking) {
			fc.waitPC.Load().conn.SetReadDeadline(aLongTimeAgo)
			fc.st.Store(st&^0xff | stKicked)
		}
	}
}

// run serves first (already read by net/http) and then the connection's
// following requests, until the client or the server ends it.
func (fc *fastConn) run(first *http.Request) {
	fc.grp.add(fc)
	defer func() {
		fc.grp.remove(fc)
		if !fc.hijacked {
			fc.c.Close()
		}
	}()

	r := first
	for {
		fc.serveOne(r)
		if fc.hijacked || fc.closing || fc.fw.broken || fc.gone.Load() || fc.grp.shutdown.Load() {
			if !fc.hijacked {
				fc.bw.Flush()
			}
			return
		}
		var err error
		r, err = fc.readRequest()
		if err != nil {
			fc.bw.Flush()
			fc.badRequest(err)
			return
		}
	}
}

// readRequest reads the next request head, flushing pending responses
// first unless the client has already sent more (pipelining).
func (fc *fastConn) readRequest() (*http.Request, error) {
	if fc.br.Buffered() == 0 {
		if err := fc.bw.Flush(); err != nil {
			return nil, err
		}
	}
	fc.setState(stIdle)
	if fc.grp.shutdown.Load() {
		return nil, net.ErrClosed
	}
	if fc.br.Buffered() == 0 {
		if _, err := fc.br.Peek(1); err != nil {
			fc.setState(stBusy)
			return nil, err
		}
	}
	fc.setState(stHeader)
	fc.cr.limit = fc.maxHeader - int64(fc.br.Buffered())
	if fc.cr.limit <= 0 {
		fc.cr.limit = 1
	}
	r, err := fc.parser.readRequest(fc.br)
	fc.cr.limit = -1
	fc.setState(stBusy)
	if err != nil {
		return nil, err
	}
	r.RemoteAddr = fc.remoteAddr
	r.TLS = fc.tls
	return r, nil
}

// badRequest answers a request that could not be read, when that makes sense.
func (fc *fastConn) badRequest(err error) {
	if err == io.EOF || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) || isConnReset(err) {
		return
	}
	code, msg := http.StatusBadRequest, "malformed HTTP request"
	switch {
	case errors.Is(err, errHeaderLimit):
		code, msg = http.StatusRequestHeaderFieldsTooLarge, "request header too large"
	case errors.Is(err, errVersion):
		code, msg = http.StatusHTTPVersionNotSupported, "unsupported HTTP version"
	case errors.Is(err, errTransferCoding):
		code, msg = http.StatusNotImplemented, "unsupported transfer encoding"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return
	}
	body := `{"error":"` + msg + `"}`
	fc.c.SetWriteDeadline(time.Now().Add(time.Second))
	_, err = io.WriteString(fc.c, "HTTP/1.1 "+strconv.Itoa(code)+" "+http.StatusText(code)+
		"\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: "+
		strconv.Itoa(len(body))+"\r\n\r\n"+body)
	// Like net/http: half-close and read what the client still sends for a
	// moment, so that closing does not reset the connection before the client
	// has read the response.
	if cw, ok := fc.c.(interface{ CloseWrite() error }); ok && err == nil {
		cw.CloseWrite()
		fc.c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		io.CopyN(io.Discard, fc.c, 4<<20)
	}
}

func isConnReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}

// serveOne answers one request.
func (fc *fastConn) serveOne(r *http.Request) {
	w := &fc.fw
	w.reset(r)
	if r.ProtoMajor != 1 {
		fc.closing = true
	}
	if r.Close || fc.grp.shutdown.Load() {
		fc.closing = true
	}
	if ex := r.Header["Expect"]; len(ex) > 0 {
		if len(ex) != 1 || !strings.EqualFold(ex[0], "100-continue") {
			fc.closing = true
			writeError(w, http.StatusExpectationFailed, "unsupported Expect header", "")
			w.finish()
			return
		}
		if r.ContentLength != 0 && r.ProtoMinor >= 1 {
			fc.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			fc.bw.Flush()
		}
		delete(r.Header, "Expect")
	}
	fc.gone.Store(false)
	fc.g.handle(w, r, fc)
	if fc.hijacked {
		return
	}
	w.finish()
	// The next request starts where this one's body ends.
	if r.Body != nil && r.Body != http.NoBody {
		if n, _ := io.CopyN(io.Discard, r.Body, maxDrainBody+1); n > maxDrainBody {
			fc.closing = true
		}
		if err := r.Body.Close(); err != nil {
			fc.closing = true
		}
	}
}

// abortResponse ends the connection after a response broke off, so the
// client sees it incomplete (as net/http does for http.ErrAbortHandler).
func (fc *fastConn) abortResponse() {
	fc.closing = true
	fc.fw.broken = true
	fc.bw.Flush()
	if tc, ok := fc.c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	fc.c.Close()
}

// await returns once pc has response bytes buffered (or failed). If the
// backend takes longer than watchAfter, it starts watching the client
// connection so that a client going away aborts pc.
func (fc *fastConn) await(pc *pconn) error {
	if pc.br.Buffered() > 0 {
		return nil
	}
	if fc.watching || fc.br.Buffered() > 0 || len(fc.cr.pending) > 0 {
		// Already watching, or the client pipelined more requests: a
		// disconnect cannot be seen before those are read.
		_, err := pc.br.Peek(1)
		return err
	}
	fc.waitPC.Store(pc)
	fc.setState(stBackend)
	_, err := pc.br.Peek(1)
	waiting := fc.stSeq<<8 | stBackend
	fc.stSeq++
	if fc.st.CompareAndSwap(waiting, fc.stSeq<<8|stBusy) {
		return err
	}
	// The janitor interrupted the wait (or is doing so): wait for it to
	// finish, then undo its deadline.
	for fc.stateOf() != stKicked {
		runtime.Gosched()
	}
	fc.setState(stBusy)
	pc.conn.SetReadDeadline(time.Time{})
	if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	fc.startWatch(pc.abortFn)
	_, err = pc.br.Peek(1)
	return err
}

// startWatch reads the client connection in the background until stopWatch;
// if the client closes it (or it fails), onGone is called.
func (fc *fastConn) startWatch(onGone func()) {
	if fc.watching {
		return
	}
	fc.watching = true
	fc.onGone = onGone
	go fc.watch()
}

func (fc *fastConn) watch() {
	var b [1]byte
	n, err := fc.c.Read(b[:])
	if n == 1 {
		// The client sent the start of its next request; keep it.
		fc.cr.pending = append(fc.cr.pending, b[0])
	} else if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		fc.gone.Store(true)
		fc.onGone()
	}
	fc.watchDone <- struct{}{}
}

// stopWatch stops a running watch and reports whether the client went away.
func (fc *fastConn) stopWatch() bool {
	if fc.watching {
		fc.c.SetReadDeadline(aLongTimeAgo)
		<-fc.watchDone
		fc.c.SetReadDeadline(time.Time{})
		fc.watching = false
		fc.onGone = nil
	}
	return fc.gone.Load()
}

// fastWriter is the http.ResponseWriter of the fast loop: it writes the
// HTTP/1.1 response straight into the connection's buffer.
type fastWriter struct {
	fc          *fastConn
	h           http.Header
	req         *http.Request
	status      int
	wroteHeader bool
	chunked     bool
	noBody      bool
	remaining   int64 // declared Content-Length left; -1 none
	broken      bool  // a write to the client failed
	scratch     []byte
}

func (w *fastWriter) reset(r *http.Request) {
	clear(w.h)
	w.req = r
	w.status = 0
	w.wroteHeader = false
	w.chunked = false
	w.noBody = false
	w.remaining = -1
}

func (w *fastWriter) Header() http.Header { return w.h }

func (w *fastWriter) WriteHeader(code int) {
	if w.wroteHeader || w.broken {
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		// Interim response (e.g. 103 Early Hints): send it now.
		w.writeHead(code, true)
		return
	}
	w.status = code
	w.wroteHeader = true
	w.writeHead(code, false)
}

// writeHead serialises the status line and header.
func (w *fastWriter) writeHead(code int, interim bool) {
	bw := w.fc.bw
	b := w.scratch[:0]
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(code)...)
	b = append(b, "\r\n"...)
	hasDate := false
	cl := int64(-1)
	for k, vv := range w.h {
		if vv == nil || strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		switch k {
		case "Date":
			hasDate = true
		case "Content-Length":
			if len(vv) > 0 {
				if n, err := strconv.ParseInt(vv[0], 10, 64); err == nil && n >= 0 {
					cl = n
				}
			}
		case "Connection", "Transfer-Encoding", "Keep-Alive":
			continue // framing is ours
		}
		for _, v := range vv {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	if !interim {
		b = w.appendFraming(b, code, cl, hasDate)
	}
	b = append(b, "\r\n"...)
	w.scratch = b
	if _, err := bw.Write(b); err != nil {
		w.broken = true
	}
	if interim {
		if err := bw.Flush(); err != nil {
			w.broken = true
		}
	}
}

// appendFraming adds Date (if missing), the body framing and the
// connection header of a final response.
func (w *fastWriter) appendFraming(b []byte, code int, cl int64, hasDate bool) []byte {
	fc, r := w.fc, w.req
	if !hasDate {
		b = append(b, "Date: "...)
		b = time.Now().UTC().AppendFormat(b, http.TimeFormat)
		b = append(b, "\r\n"...)
	}
	w.noBody = r.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified || code < 200
	switch {
	case w.noBody:
	case cl >= 0:
		w.remaining = cl
	case r.ProtoMinor >= 1:
		w.chunked = true
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	default:
		fc.closing = true // HTTP/1.0 without a length: the body ends with the connection
	}
	if fc.closing || fc.grp.shutdown.Load() {
		fc.closing = true
		b = append(b, "Connection: close\r\n"...)
	} else if r.ProtoMinor == 0 {
		b = append(b, "Connection: keep-alive\r\n"...)
	}
	return b
}

// writeProxied writes a backend's response head straight from the parsed
// fields in pc, without going through the Header map.
func (w *fastWriter) writeProxied(rh *respHead, pc *pconn) {
	if len(w.h) > 0 || w.wroteHeader || w.broken {
		rh.copyHeader(w.h, pc)
		w.WriteHeader(rh.status)
		return
	}
	w.status = rh.status
	w.wroteHeader = true
	b := w.scratch[:0]
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(rh.status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(rh.status)...)
	b = append(b, "\r\n"...)
	hasDate := false
	for i := range pc.fields {
		f := &pc.fields[i]
		if f.hopByHop {
			continue
		}
		var key []byte
		if f.keyArena {
			key = pc.arena[f.ks:f.ke]
			if len(rh.connTokens) > 0 && headerHasToken(rh.connTokens, string(key)) {
				continue
			}
			b = append(b, key...)
		} else {
			if len(rh.connTokens) > 0 && headerHasToken(rh.connTokens, f.key) {
				continue
			}
			hasDate = hasDate || f.key == "Date"
			b = append(b, f.key...)
		}
		b = append(b, ": "...)
		b = append(b, pc.arena[f.vs:f.ve]...)
		b = append(b, "\r\n"...)
	}
	cl := rh.contentLength
	if rh.noBody {
		cl = -1
	}
	b = w.appendFraming(b, rh.status, cl, hasDate)
	b = append(b, "\r\n"...)
	w.scratch = b
	if _, err := w.fc.bw.Write(b); err != nil {
		w.broken = true
	}
}

func (w *fastWriter) Write(p []byte) (int, error) {
	if w.broken {
		return 0, errClientWrite
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.noBody || len(p) == 0 {
		return len(p), nil
	}
	if w.remaining >= 0 {
		if int64(len(p)) > w.remaining {
			return 0, http.ErrContentLength
		}
		w.remaining -= int64(len(p))
	}
	bw := w.fc.bw
	if w.chunked {
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(len(p)), 16))
		bw.WriteString("\r\n")
	}
	n, err := bw.Write(p)
	if w.chunked && err == nil {
		_, err = bw.WriteString("\r\n")
	}
	if err != nil {
		w.broken = true
		return n, errClientWrite
	}
	return n, nil
}

func (w *fastWriter) Flush() {
	if w.broken {
		return
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if err := w.fc.bw.Flush(); err != nil {
		w.broken = true
	}
}

// FlushError is Flush for http.ResponseController.
func (w *fastWriter) FlushError() error {
	w.Flush()
	if w.broken {
		return errClientWrite
	}
	return nil
}

// Hijack hands the connection on (protocol upgrades in serveFallback).
func (w *fastWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	fc := w.fc
	if fc.hijacked {
		return nil, nil, http.ErrHijacked
	}
	fc.hijacked = true
	fc.bw.Flush()
	return &pendingConn{Conn: fc.c, r: fc.br}, bufio.NewReadWriter(fc.br, fc.bw), nil
}

// finish completes the response: the last chunk with trailers, or the
// connection's end when a declared length was not met.
func (w *fastWriter) finish() {
	if w.broken {
		return
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	bw := w.fc.bw
	if w.chunked {
		bw.WriteString("0\r\n")
		for k, vv := range w.h {
			if !strings.HasPrefix(k, http.TrailerPrefix) {
				continue
			}
			for _, v := range vv {
				bw.WriteString(k[len(http.TrailerPrefix):])
				bw.WriteString(": ")
				bw.WriteString(v)
				bw.WriteString("\r\n")
			}
		}
		bw.WriteString("\r\n")
	}
	if w.remaining > 0 {
		w.fc.closing = true // short body: the client must not wait for more
	}
}

// pendingConn is the connection handed to an upgrade, reading first what
// the fast loop had buffered.
type pendingConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *pendingConn) Read(p []byte) (int, error) { return c.r.Read(p) }

var _ http.Flusher = (*fastWriter)(nil)
var _ http.Hijacker = (*fastWriter)(nil)
