package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ServeHTTP routes the request to a ready replica of the deployment it
// addresses and proxies it there. When the gateway is the root handler of an
// http.Server, it takes over HTTP/1.x keep-alive connections (see fast.go)
// and serves their later requests without coming back here: anything to be
// done for every request (routing, policy checks) belongs in handle, which
// both paths call.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if fc := g.takeOver(w, r); fc != nil {
		fc.run(r)
		return
	}
	g.handle(w, r, nil)
}

// handle answers one request; fc is the connection's fast loop, or nil when
// net/http serves the connection.
func (g *Gateway) handle(w http.ResponseWriter, r *http.Request, fc *fastConn) {
	name, ok := g.routeName(r)
	if !ok {
		g.noRoute.Add(1)
		writeError(w, http.StatusNotFound, "no deployment addressed: use Host <deployment>"+g.domainSuffix+" or header "+HeaderDeployment+": <deployment>", "")
		return
	}
	d := (*g.deps.Load())[name]
	if d == nil {
		g.unknownDeployment.Add(1)
		writeError(w, http.StatusNotFound, "unknown deployment", name)
		return
	}
	now := time.Now()
	if code, reason := g.access.check(name, r, now); code != 0 {
		g.denied.WithLabelValues(name, reason).Inc()
		if code == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="aloft"`)
		}
		writeError(w, code, "access denied: "+deniedText[reason], name)
		return
	}
	g.serve(w, r, d, now, fc)
}

// clientGone reports whether the client of r went away.
func clientGone(r *http.Request, fc *fastConn) bool {
	if fc != nil {
		return fc.gone.Load()
	}
	return r.Context().Err() != nil
}

// routeName returns the deployment a request addresses: the X-Aloft-Deployment
// header, else the first labels of a Host under the gateway's domain.
func (g *Gateway) routeName(r *http.Request) (string, bool) {
	if v := r.Header[HeaderDeployment]; len(v) > 0 {
		if n := strings.TrimSpace(v[0]); n != "" {
			return toLower(n), true
		}
	}
	host := r.Host
	if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.IndexByte(host[i:], ']') < 0 {
		host = host[:i]
	}
	if n := len(host); n > 0 && host[n-1] == '.' {
		host = host[:n-1]
	}
	ns := len(host) - len(g.domainSuffix)
	if ns <= 0 || !strings.EqualFold(host[ns:], g.domainSuffix) {
		return "", false
	}
	return toLower(host[:ns]), true
}

// toLower is strings.ToLower without allocating for already lower-case input.
func toLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// pick chooses the backend with the fewest requests in flight among those
// not yet tried, preferring backends not recently refused. The scan starts at
// rr modulo the set size, so ties go round-robin.
func (s *backendSet) pick(rr *atomic.Uint32, tried []*backend, now int64) *backend {
	n := len(s.backends)
	if n == 1 {
		if len(tried) == 0 {
			return s.backends[0]
		}
		return nil
	}
	var best *backend
	var bestLoad int64
	bestDown := true
	i := int(rr.Add(1) % uint32(n))
	for k := 0; k < n; k++ {
		b := s.backends[i]
		if i++; i == n {
			i = 0
		}
		if isTried(tried, b) {
			continue
		}
		down := b.downUntil.Load() > now
		load := b.rep.inflight.Load()
		if best == nil || (bestDown && !down) || (down == bestDown && load < bestLoad) {
			best, bestLoad, bestDown = b, load, down
		}
	}
	return best
}

func isTried(tried []*backend, b *backend) bool {
	for _, t := range tried {
		if t == b {
			return true
		}
	}
	return false
}

// outcome of one attempt on one connection.
type outcome int

const (
	done      outcome = iota // response forwarded (or the client went away)
	reusable                 // response forwarded, the connection can be reused
	retryable                // nothing reached the backend; another attempt may follow
	failed                   // the backend may have seen the request; answer 502
	aborted                  // the response broke off after its header was sent
)

// statusClientGone is recorded for requests whose client went away before a
// response could be sent (nginx's convention).
const statusClientGone = 499

// serve proxies r to one of d's backends.
func (g *Gateway) serve(w http.ResponseWriter, r *http.Request, d *deployment, start time.Time, fc *fastConn) {
	d.requests.Add(1)
	// now is the time for pool and balancing decisions: start, unless the
	// request was held for a replica.
	now := start
	set := d.set.Load()
	if len(set.backends) == 0 {
		if set = g.noReplica(w, r, d, start, fc); set == nil {
			return
		}
		now = time.Now()
	}
	var metricKey string
	if c := d.cfg.Load(); c != nil {
		metricKey = c.metricHeader
	}
	if r.Method == http.MethodConnect {
		writeError(w, http.StatusMethodNotAllowed, "CONNECT is not supported", d.name)
		g.noCloudStats(d).observe(http.StatusMethodNotAllowed, time.Since(start))
		return
	}
	upgrade := len(r.Header["Upgrade"]) > 0

	// Request body: small bodies of known length are read now so that they
	// can be replayed; others are streamed (and retried only on dial errors).
	var body []byte
	var bodyBuf *[]byte
	streamBody := false
	if r.ContentLength > 0 && r.ContentLength <= maxBufferedBody && !upgrade {
		bodyBuf = getBuf(int(r.ContentLength))
		body = (*bodyBuf)[:r.ContentLength]
		if _, err := io.ReadFull(r.Body, body); err != nil {
			putBuf(bodyBuf)
			writeError(w, http.StatusBadRequest, "reading request body: "+err.Error(), d.name)
			g.noCloudStats(d).observe(http.StatusBadRequest, time.Since(start))
			return
		}
	} else if r.ContentLength != 0 {
		streamBody = true
	}

	ctx := r.Context()
	var triedBuf [4]*backend
	tried := triedBuf[:0]
	freshRetry := false
	var last *backend
	var lastErr error
	for attempt := 0; ; attempt++ {
		b := set.pick(&d.rr, tried, now.UnixNano())
		if b == nil {
			break
		}
		if attempt > 0 {
			d.retries.Add(1)
		}
		last = b
		if b.up == nil || upgrade {
			// WebSocket and other upgrades, https backends: the standard library.
			if body != nil {
				// The body was read for replay: hand it over from there.
				g.serveFallback(w, withBody(r, body), d, b, start, metricKey)
				putBuf(bodyBuf)
				return
			}
			if fc != nil && !upgrade && r.ContentLength == 0 {
				ctx, cancel := context.WithCancel(ctx)
				fc.startWatch(cancel)
				g.serveFallback(w, r.WithContext(ctx), d, b, start, metricKey)
				fc.stopWatch()
				cancel()
				return
			}
			g.serveFallback(w, r, d, b, start, metricKey)
			return
		}
		b.rep.begin()
		pc := b.up.get(now)
		if pc == nil {
			var err error
			pc, err = b.up.dial(ctx)
			if err != nil {
				g.end(b.rep)
				tried = append(tried, b)
				lastErr = err
				if clientGone(r, fc) {
					break
				}
				g.markDown(d, b, err)
				continue
			}
		}
		status, oc, err := g.exchange(w, r, pc, body, streamBody, fc, b.rep, metricKey)
		g.end(b.rep)
		switch oc {
		case done, reusable:
			end := time.Now()
			if oc == reusable {
				pc.reused = true
				b.up.put(pc, end)
			}
			putBuf(bodyBuf)
			b.stats.observe(status, end.Sub(start))
			return
		case aborted:
			putBuf(bodyBuf)
			b.stats.observe(status, time.Since(start))
			if !clientGone(r, fc) {
				// The backend broke off mid-response: make the client see a
				// truncated response rather than a complete one.
				if fc != nil {
					fc.abortResponse()
					return
				}
				panic(http.ErrAbortHandler)
			}
			return
		case retryable:
			lastErr = err
			if clientGone(r, fc) {
				break
			}
			// A pooled connection found closed on first write: one fresh
			// connection to the same backend, then other backends.
			if !(pc.reused && !freshRetry) {
				tried = append(tried, b)
			}
			freshRetry = freshRetry || pc.reused
			continue
		case failed:
			putBuf(bodyBuf)
			if clientGone(r, fc) {
				b.stats.observe(statusClientGone, time.Since(start))
				return
			}
			g.log.Debug("gateway: replica failed", "deployment", d.name, "replica", b.ReplicaID, "err", err)
			writeError(w, http.StatusBadGateway, "replica failed to answer: "+err.Error(), d.name)
			b.stats.observe(http.StatusBadGateway, time.Since(start))
			return
		}
		break
	}
	putBuf(bodyBuf)
	stats := g.noCloudStats(d)
	if last != nil {
		stats = last.stats
	}
	if clientGone(r, fc) {
		stats.observe(statusClientGone, time.Since(start))
		return
	}
	d.allFailed.Add(1)
	msg := "no replica could be reached"
	if lastErr != nil {
		msg += ": " + lastErr.Error()
	}
	writeError(w, http.StatusBadGateway, msg, d.name)
	stats.observe(http.StatusBadGateway, time.Since(start))
}

// withBody returns a shallow copy of r whose body is body.
func withBody(r *http.Request, body []byte) *http.Request {
	r2 := new(http.Request)
	*r2 = *r
	r2.Body = io.NopCloser(bytes.NewReader(body))
	return r2
}

// markDown passes b over for backendDownFor after its connection was refused.
func (g *Gateway) markDown(d *deployment, b *backend, err error) {
	now := time.Now().UnixNano()
	if b.downUntil.Load() <= now {
		g.log.Warn("gateway: replica unreachable", "deployment", d.name, "replica", b.ReplicaID, "url", b.URL, "err", err)
	}
	b.downUntil.Store(now + int64(backendDownFor))
}

func (g *Gateway) noCloudStats(d *deployment) *cloudStats {
	if s := (*d.clouds.Load())[""]; s != nil {
		return s
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cloudStatsLocked(d, "")
}

// exchange sends r on pc and forwards the response to w.
// If metricKey is not empty, the response header of that name is recorded as
// rep's metric.
func (g *Gateway) exchange(w http.ResponseWriter, r *http.Request, pc *pconn, body []byte, streamBody bool, fc *fastConn, rep *replica, metricKey string) (int, outcome, error) {
	// Cancellation: net/http cancels the request's context when the client
	// goes away; the fast loop watches the client itself once the backend
	// takes a while (fc.await). Either way pc.abort unblocks our I/O.
	var stop func() bool
	if fc == nil {
		stop = context.AfterFunc(r.Context(), pc.abortFn)
	}
	// release stops the cancellation and reports whether it fired.
	release := func() bool {
		if fc == nil {
			return !stop()
		}
		return fc.stopWatch()
	}

	// Request.
	pc.cw.n = 0
	bodyRead := false
	err := writeRequestHead(pc.bw, r, pc.up.addr, body, streamBody)
	if err == nil {
		switch {
		case body != nil:
			_, err = pc.bw.Write(body)
		case streamBody:
			bodyRead = true
			err = writeStreamBody(pc.bw, r)
		}
	}
	if err == nil {
		err = pc.bw.Flush()
	}
	if err != nil {
		release()
		pc.close()
		var be *bodyError
		if errors.As(err, &be) {
			// The client's body failed, not the backend.
			return statusClientGone, failed, be.err
		}
		if pc.cw.n == 0 && !bodyRead {
			return 0, retryable, err
		}
		return 0, failed, err
	}

	// Response head.
	if fc != nil {
		err = fc.await(pc)
	}
	var rh respHead
	if err == nil {
		rh, err = readResponseHead(pc, r.Method == http.MethodHead)
	}
	if err != nil {
		release()
		pc.close()
		return 0, failed, err
	}
	if metricKey != "" {
		rep.recordMetric(pc, metricKey)
	}
	h := w.Header()
	if fc != nil {
		fc.fw.writeProxied(&rh, pc)
	} else {
		rh.copyHeader(h, pc)
		w.WriteHeader(rh.status)
	}

	// Response body.
	bc := bodyCopier{w: w, br: pc.br, fc: fc, pc: pc}
	switch {
	case rh.noBody:
	case rh.chunked:
		err = bc.copyChunked(pc, h)
	case rh.contentLength >= 0:
		err = bc.copyN(rh.contentLength)
	default:
		err = bc.copyToEOF()
		rh.close = true
	}
	if release() {
		// The client went away: the connection was aborted.
		pc.close()
		return rh.status, done, nil
	}
	if err != nil {
		pc.close()
		if errors.Is(err, errClientWrite) {
			return rh.status, done, nil
		}
		return rh.status, aborted, err
	}
	if rh.close {
		pc.close()
		return rh.status, done, nil
	}
	return rh.status, reusable, nil
}

// writeStreamBody copies a request body of unknown or large length.
func writeStreamBody(bw bufWriter, r *http.Request) error {
	bp := getBuf(32 << 10)
	defer putBuf(bp)
	buf := (*bp)[:32<<10]
	chunked := r.ContentLength < 0
	var total int64
	for {
		n, rerr := r.Body.Read(buf)
		if n > 0 {
			total += int64(n)
			if chunked {
				writeChunkHeader(bw, n)
			}
			if _, err := bw.Write(buf[:n]); err != nil {
				return err
			}
			if chunked {
				bw.WriteString("\r\n")
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return &bodyError{rerr}
		}
	}
	if chunked {
		_, err := bw.WriteString("0\r\n\r\n")
		return err
	}
	if total != r.ContentLength {
		return &bodyError{io.ErrUnexpectedEOF}
	}
	return nil
}

// bodyError is a failure reading the client's request body.
type bodyError struct{ err error }

func (e *bodyError) Error() string { return "request body: " + e.err.Error() }

// serveFallback proxies upgrades and https backends with httputil.ReverseProxy.
func (g *Gateway) serveFallback(w http.ResponseWriter, r *http.Request, d *deployment, b *backend, start time.Time, metricKey string) {
	status := http.StatusBadGateway
	b.rep.begin()
	// A backend with its own Dial is reached through its pool's transport,
	// which dials with it: a per-request dial choice on the shared transport
	// would not do, as that transport pools connections by host:port, which
	// such backends may share.
	tr := g.fallback
	if b.Dial != nil {
		tr = b.pool.transport(g.fallback)
	}
	defer func() {
		g.end(b.rep)
		b.stats.observe(status, time.Since(start))
		if tr != g.fallback && b.pool.isClosed() {
			// The pool was released while this request ran: drop the
			// connection it may have returned to the transport.
			tr.CloseIdleConnections()
		}
	}()
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(b.url)
			pr.SetXForwarded()
		},
		Transport:     tr,
		FlushInterval: -1,
		ErrorLog:      log.New(io.Discard, "", 0),
		ModifyResponse: func(resp *http.Response) error {
			status = resp.StatusCode
			if metricKey != "" {
				if v := resp.Header[metricKey]; len(v) > 0 {
					b.rep.setMetric(v[0])
				}
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			status = http.StatusBadGateway
			if r.Context().Err() != nil {
				status = statusClientGone
				return
			}
			writeError(w, http.StatusBadGateway, "replica failed to answer: "+err.Error(), d.name)
		},
	}
	rp.ServeHTTP(w, r)
}

var (
	retryAfter1     = []string{"1"}
	jsonContentType = []string{"application/json"}
	noSniff         = []string{"nosniff"}
)

type errorBody struct {
	Error      string `json:"error"`
	Deployment string `json:"deployment,omitempty"`
}

// writeError answers with a JSON error body.
func writeError(w http.ResponseWriter, code int, msg, deployment string) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["X-Content-Type-Options"] = noSniff
	b, _ := json.Marshal(errorBody{Error: msg, Deployment: deployment})
	b = append(b, '\n')
	w.WriteHeader(code)
	w.Write(b)
}

// Buffer pool for request bodies, in a few size classes.
var bufClasses = [...]int{4 << 10, 32 << 10, 256 << 10, 1 << 20}
var bufPools [len(bufClasses)]sync.Pool

func getBuf(n int) *[]byte {
	for i, c := range bufClasses {
		if n <= c {
			if v := bufPools[i].Get(); v != nil {
				return v.(*[]byte)
			}
			b := make([]byte, c)
			return &b
		}
	}
	b := make([]byte, n)
	return &b
}

func putBuf(b *[]byte) {
	if b == nil {
		return
	}
	for i, c := range bufClasses {
		if cap(*b) == c {
			*b = (*b)[:c]
			bufPools[i].Put(b)
			return
		}
	}
}
