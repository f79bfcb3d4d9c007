package gateway

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// upstream is a pool of keep-alive HTTP/1.1 connections to one backend
// address, or to one replica for backends with their own Backend.Dial.
// Idle connections are reused last-in first-out, checked for a close by the
// backend before reuse, and closed after idleConnTimeout.
type upstream struct {
	key           string // in Gateway.upstreams
	addr          string // host:port to dial, also the Host header sent
	dialer        net.Dialer
	peekAfterIdle time.Duration

	// dialFn, when set, opens the connections instead of dialer (the
	// Backend.Dial given last for the pool's replica).
	dialFn atomic.Pointer[dialFunc]

	mu      sync.Mutex
	idle    []*pconn
	closed  bool
	reaping bool            // a reap timer is pending
	tr      *http.Transport // fallback transport of a pool with dialFn, made on first use

	refs int // backends using this pool; guarded by Gateway.mu
}

type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

func newUpstream(key, hostport string) *upstream {
	u := &upstream{key: key, addr: hostport}
	u.dialer = net.Dialer{Timeout: dialTimeout, KeepAlive: tcpKeepAlive}
	return u
}

// setDial makes the pool open new connections with f.
func (u *upstream) setDial(f dialFunc) { u.dialFn.Store(&f) }

// dialConn opens a connection to the pool's backend.
func (u *upstream) dialConn(ctx context.Context, network, addr string) (net.Conn, error) {
	f := u.dialFn.Load()
	if f == nil {
		return u.dialer.DialContext(ctx, network, addr)
	}
	// Bound a custom dial as the dialer bounds its own.
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	c, err := (*f)(ctx, network, addr)
	switch {
	case err != nil && c != nil:
		c.Close()
		return nil, err
	case err == nil && c == nil:
		return nil, errNoConn
	}
	return c, err
}

var errNoConn = errors.New("backend dial returned no connection")

// transport returns the http.Transport for the fallback proxy to this pool's
// backend, for a pool with a dial function (others use the gateway's shared
// transport). http.Transport pools its connections by scheme and host:port,
// which replicas behind different dial functions may all share, so each such
// pool needs a transport of its own; base is the shared one, cloned once.
func (u *upstream) transport(base *http.Transport) *http.Transport {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.tr == nil {
		u.tr = base.Clone()
		u.tr.DialContext = u.dialConn
	}
	return u.tr
}

// isClosed reports whether close was called.
func (u *upstream) isClosed() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.closed
}

// get returns an idle connection that still looks usable at now, or nil.
func (u *upstream) get(now time.Time) *pconn {
	for {
		u.mu.Lock()
		n := len(u.idle)
		if n == 0 {
			u.mu.Unlock()
			return nil
		}
		pc := u.idle[n-1]
		u.idle[n-1] = nil
		u.idle = u.idle[:n-1]
		u.mu.Unlock()
		if pc.usable(now, u.peekAfterIdle) {
			return pc
		}
		pc.close()
	}
}

// dial opens a new connection.
func (u *upstream) dial(ctx context.Context) (*pconn, error) {
	c, err := u.dialConn(ctx, "tcp", u.addr)
	if err != nil {
		return nil, err
	}
	pc := &pconn{up: u, conn: c}
	var rw readWriter = c
	if rio := newRawIO(c); rio != nil {
		rw = rio
	}
	pc.cw.c = rw
	pc.br = bufio.NewReaderSize(rw, 8<<10)
	pc.bw = bufio.NewWriterSize(&pc.cw, 4<<10)
	pc.abortFn = pc.abort
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			pc.rc = rc
			pc.peekFn = pc.peek
		}
	}
	return pc, nil
}

// put returns a connection whose last response was read completely (at now).
func (u *upstream) put(pc *pconn, now time.Time) {
	pc.idleAt = now
	u.mu.Lock()
	if u.closed || len(u.idle) >= maxIdlePerUpstream {
		u.mu.Unlock()
		pc.close()
		return
	}
	u.idle = append(u.idle, pc)
	if !u.reaping {
		u.reaping = true
		time.AfterFunc(idleConnTimeout/2, u.reap)
	}
	u.mu.Unlock()
}

// reap closes connections idle for longer than idleConnTimeout. It reschedules
// itself while idle connections remain, so an unused pool holds no timer.
func (u *upstream) reap() {
	cutoff := time.Now().Add(-idleConnTimeout)
	var stale []*pconn
	u.mu.Lock()
	// idle is ordered by idleAt: the oldest are at the front.
	i := 0
	for i < len(u.idle) && u.idle[i].idleAt.Before(cutoff) {
		stale = append(stale, u.idle[i])
		i++
	}
	if i > 0 {
		n := copy(u.idle, u.idle[i:])
		clear(u.idle[n:])
		u.idle = u.idle[:n]
	}
	if len(u.idle) > 0 && !u.closed {
		time.AfterFunc(idleConnTimeout/2, u.reap)
	} else {
		u.reaping = false
	}
	u.mu.Unlock()
	for _, pc := range stale {
		pc.close()
	}
}

// close closes the idle connections; busy ones are closed when returned.
func (u *upstream) close() {
	u.mu.Lock()
	u.closed = true
	idle := u.idle
	u.idle = nil
	tr := u.tr
	u.mu.Unlock()
	for _, pc := range idle {
		pc.close()
	}
	if tr != nil {
		tr.CloseIdleConnections()
	}
}

// pconn is one connection to a backend.
type pconn struct {
	up     *upstream
	conn   net.Conn
	rc     syscall.RawConn
	br     *bufio.Reader
	bw     *bufio.Writer
	cw     countingWriter
	idleAt time.Time
	reused bool

	// Scratch space for parsing response heads, reused across requests.
	arena  []byte
	fields []field

	// Method values made once per connection so the hot path does not
	// allocate closures.
	abortFn func()
	peekFn  func(fd uintptr) bool
	peekOK  bool
}

func (pc *pconn) close() { pc.conn.Close() }

// abort unblocks any read or write on the connection (client went away).
func (pc *pconn) abort() { pc.conn.SetDeadline(aLongTimeAgo) }

var aLongTimeAgo = time.Unix(1, 0)

// usable reports whether an idle connection can carry a request: the backend
// has not closed it and has not sent anything unsolicited. Connections idle
// for less than peekAfterIdle are taken as they are: under load that saves a
// system call per request, and a backend closes a connection it just served
// only when it stops or crashes (aloft drains replicas before stopping them).
func (pc *pconn) usable(now time.Time, peekAfterIdle time.Duration) bool {
	if pc.br.Buffered() > 0 {
		return false
	}
	idle := now.Sub(pc.idleAt)
	if idle > idleConnTimeout {
		return false
	}
	if pc.rc == nil || idle < peekAfterIdle {
		return true
	}
	pc.peekOK = false
	if err := pc.rc.Read(pc.peekFn); err != nil {
		return false
	}
	return pc.peekOK
}

// peek is the RawConn.Read callback of usable: a non-blocking MSG_PEEK that
// must find nothing to read (EAGAIN); EOF or data mean the connection is done.
func (pc *pconn) peek(fd uintptr) bool {
	pc.peekOK = peekAlive(fd)
	return true
}

// countingWriter counts the bytes that reached the connection, so a failed
// write can tell whether the backend may have seen any of the request.
type countingWriter struct {
	c readWriter
	n int64
}

type readWriter interface {
	Read([]byte) (int, error)
	Write([]byte) (int, error)
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.c.Write(p)
	w.n += int64(n)
	return n, err
}
