package gateway

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// rawIO reads and writes a non-blocking socket with raw system calls
// through its syscall.RawConn: the poller still parks the goroutine while the
// socket is not ready (and deadlines still apply), but the calls themselves
// skip the scheduler's syscall bookkeeping. On a busy proxy that matters:
// loopback writes can take long enough for the runtime to hand the P to
// another thread, which costs more than the write. Non-blocking read and
// write never wait, so holding the P through them is harmless.
type rawIO struct {
	rc  syscall.RawConn
	src net.Conn // for error addresses

	rp  []byte
	rn  int
	rer syscall.Errno
	wp  []byte
	wn  int
	wer syscall.Errno

	readFn, writeFn func(fd uintptr) bool
}

// newRawIO returns nil when c is not a plain socket (e.g. TLS).
func newRawIO(c net.Conn) *rawIO {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	if _, ok := c.(*net.TCPConn); !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	r := &rawIO{rc: rc, src: c}
	r.readFn = r.read
	r.writeFn = r.write
	return r
}

func (r *rawIO) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.rp, r.rn, r.rer = p, 0, 0
	err := r.rc.Read(r.readFn)
	n := r.rn
	r.rp = nil
	if err != nil {
		return 0, err
	}
	if r.rer != 0 {
		return 0, r.opError("read", r.rer)
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (r *rawIO) read(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&r.rp[0])), uintptr(len(r.rp)))
		switch e {
		case 0:
			r.rn = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait until readable
		default:
			r.rer = e
			return true
		}
	}
}

func (r *rawIO) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.wp, r.wn, r.wer = p, 0, 0
	err := r.rc.Write(r.writeFn)
	n := r.wn
	r.wp = nil
	if err != nil {
		return n, err
	}
	if r.wer != 0 {
		return n, r.opError("write", r.wer)
	}
	return n, nil
}

func (r *rawIO) write(fd uintptr) bool {
	for r.wn < len(r.wp) {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&r.wp[r.wn])), uintptr(len(r.wp)-r.wn))
		switch e {
		case 0:
			r.wn += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false // wait until writable
		default:
			r.wer = e
			return true
		}
	}
	return true
}

func (r *rawIO) opError(op string, e syscall.Errno) error {
	return &net.OpError{Op: op, Net: "tcp", Source: r.src.LocalAddr(), Addr: r.src.RemoteAddr(), Err: os.NewSyscallError(op, e)}
}
