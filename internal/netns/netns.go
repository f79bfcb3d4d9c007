//go:build linux

// Package netns creates Linux network namespaces pinned on files and opens
// connections and listeners inside them.
//
// aloft gives every container its own network namespace with nothing but a
// loopback interface: no veth pair, no routable address. Create makes the
// namespace and pins it by bind-mounting it on a file (which runc is then
// pointed at); the gateway reaches the container by dialing its port on
// 127.0.0.1 from inside that namespace with Dial or Dialer. Remove unpins it.
//
// # Threads
//
// A network namespace belongs to an OS thread, and a socket stays in the
// namespace it was created in. Every operation here therefore runs on a fresh
// goroutine locked to its OS thread, switches that thread into the namespace
// with setns(2), creates the socket (or the namespace), and switches the thread
// back to the process's namespace before unlocking it; a dial switches back
// as soon as its socket exists, so it waits for the connection unlocked. The
// calling goroutine's thread is never touched. If switching back fails, the
// goroutine exits still locked so the runtime discards the thread instead of
// reusing it.
//
// Threads are deliberately not left to die after unshare(2): a locked
// goroutine that exits on the main thread wedges that thread instead of
// ending it, which would keep a namespace alive (and make /proc/self/ns/net
// point at it) for the life of the process.
//
// Hosts in addresses passed to Dial, Dialer and Listen must be IP literals
// (or empty): name resolution may run on other threads, which are in the
// host's namespace, so names are rejected rather than resolved.
//
// The namespace to switch back to is the one the first operation's thread
// was in, opened once and kept open for the life of the process. All threads
// of the process are assumed to share it, which holds unless other code
// leaves a thread in another namespace.
package netns

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// hostNS returns a descriptor of the network namespace of the calling thread
// at the first call, the namespace every thread is switched back to. It must
// first be called from a locked thread that has not been switched yet.
var hostNS = sync.OnceValues(func() (int, error) {
	fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("netns: open host namespace: %w", err)
	}
	return fd, nil
})

// Check reports whether this process can create network namespaces and
// switch threads between them, by creating (and dropping) one.
func Check() error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		host, err := hostNS()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			if errors.Is(err, unix.EPERM) {
				err = fmt.Errorf("netns: cannot create network namespaces: %w (needs root or CAP_SYS_ADMIN; euid is %d)", err, os.Geteuid())
			} else {
				err = fmt.Errorf("netns: cannot create network namespaces: %w", err)
			}
			errc <- err
			return
		}
		errc <- restore(host)
	}()
	return <-errc
}

// restore switches the locked calling thread back to the host namespace and
// unlocks it. If that fails the thread stays locked, so it is discarded when
// its goroutine exits.
func restore(host int) error {
	if err := unix.Setns(host, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("netns: switch thread back to host namespace: %w", err)
	}
	runtime.UnlockOSThread()
	return nil
}

// Create makes a new network namespace, pins it by bind-mounting it on path
// and brings its loopback interface up. The file at path is created and must
// not exist; its parent directory must. On error nothing is left behind: no
// file and no mount.
func Create(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o444)
	if err != nil {
		return fmt.Errorf("netns: create: %w", &fs.PathError{Op: "open", Path: path, Err: err})
	}
	unix.Close(fd)

	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		host, err := hostNS()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread() // still in the host namespace
			errc <- fmt.Errorf("netns: create %s: unshare: %w", path, err)
			return
		}
		err = pin(path)
		if rerr := restore(host); err == nil {
			err = rerr
			if err != nil {
				unix.Unmount(path, unix.MNT_DETACH)
			}
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		unix.Unlink(path)
		return err
	}
	return nil
}

// pin bind-mounts the calling thread's network namespace on path and brings
// its loopback interface up; on error it leaves nothing mounted.
func pin(path string) error {
	src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
	if err := unix.Mount(src, path, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("netns: create %s: bind mount: %w", path, err)
	}
	if err := loopbackUp(); err != nil {
		unix.Unmount(path, unix.MNT_DETACH)
		return fmt.Errorf("netns: create %s: bring up lo: %w", path, err)
	}
	return nil
}

// loopbackUp sets IFF_UP on lo in the calling thread's network namespace.
func loopbackUp() error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr)
}

// Remove unpins a namespace: it detaches (MNT_DETACH) the namespace mounted
// on path and deletes the file. A missing path is not an error; a file with
// no namespace mounted on it is just deleted. Only namespace mounts are
// detached, so a path that is some other mount point is left mounted and
// Remove fails.
func Remove(path string) error {
	// Detach every namespace mounted on path (normally one).
	for range 64 {
		var st unix.Statfs_t
		if err := unix.Statfs(path, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return nil
			}
			return fmt.Errorf("netns: remove: %w", &fs.PathError{Op: "statfs", Path: path, Err: err})
		}
		if st.Type != unix.NSFS_MAGIC {
			break
		}
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
			if errors.Is(err, unix.EINVAL) { // namespace file, but not a mount point
				break
			}
			return fmt.Errorf("netns: remove: %w", &fs.PathError{Op: "unmount", Path: path, Err: err})
		}
	}
	if err := unix.Unlink(path); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("netns: remove: %w", &fs.PathError{Op: "unlink", Path: path, Err: err})
	}
	return nil
}

// Sweep removes the pinned namespaces in dir whose base names keep rejects.
// Subdirectories are skipped; a missing dir is not an error.
func Sweep(dir string, keep func(name string) bool) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("netns: sweep: %w", err)
	}
	var errs []error
	for _, e := range ents {
		if e.IsDir() || keep(e.Name()) {
			continue
		}
		if err := Remove(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Dial connects to addr on the named network from inside the network
// namespace pinned at path, as net.Dialer.DialContext with a zero Dialer
// would. For example Dial(ctx, p, "tcp", "127.0.0.1:8080") reaches port 8080
// on the namespace's own loopback interface. The host in addr must be an IP
// literal. The connection stays in the namespace.
func Dial(ctx context.Context, path, network, addr string) (net.Conn, error) {
	return dial(ctx, nil, path, network, addr)
}

// Dialer returns a function with the signature of net.Dialer.DialContext that
// dials inside the network namespace pinned at path, using d's settings
// (timeouts, keep-alive, local address, control function; nil means a zero
// Dialer). Multipath TCP is not used. d must not be modified while the
// function is in use.
//
// The namespace file is opened for each dial and not kept open, so there is
// nothing to close, a namespace removed from path is not kept alive, and one
// created again at path is found. Opening it costs a few microseconds, a
// small part of a dial.
func Dialer(path string, d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return dial(ctx, d, path, network, addr)
	}
}

// Listen announces on the local network address from inside the network
// namespace pinned at path, as net.Listen does. The host in addr must be an
// IP literal or empty. The listener stays in the namespace.
func Listen(path, network, addr string) (net.Listener, error) {
	if err := checkAddr(network, addr); err != nil {
		return nil, fmt.Errorf("netns: listen %s %s: %w", network, addr, err)
	}
	op := &nsOp{listen: true, ctx: context.Background(), network: network, addr: addr}
	if err := op.run(path); err != nil {
		return nil, fmt.Errorf("netns: listen %s %s in %s: %w", network, addr, path, err)
	}
	return op.ln, op.err
}

func dial(ctx context.Context, d *net.Dialer, path, network, addr string) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	if err := checkAddr(network, addr); err != nil {
		return nil, fmt.Errorf("netns: dial %s %s: %w", network, addr, err)
	}
	op := &nsOp{ctx: ctx, network: network, addr: addr}
	if d != nil {
		op.d = *d
	}
	op.userCtl, op.userCtlCtx = op.d.Control, op.d.ControlContext
	op.d.Control = nil
	op.d.ControlContext = op.control
	// An MPTCP dial that fails is retried with plain TCP, which would need
	// a second socket.
	op.d.SetMultipathTCP(false)
	if err := op.run(path); err != nil {
		return nil, fmt.Errorf("netns: dial %s %s in %s: %w", network, addr, path, err)
	}
	return op.conn, op.err
}

// errHostName is returned for addresses whose host is a name.
var errHostName = errors.New("host must be an IP literal (names are not resolved inside a namespace)")

// checkAddr rejects IP network addresses whose host is not an IP literal:
// resolving a name could create sockets on other threads, outside the
// namespace, and a dial to several addresses would need several sockets.
func checkAddr(network, addr string) error {
	if strings.HasPrefix(network, "unix") {
		return nil
	}
	host := addr
	if !strings.HasPrefix(network, "ip") { // tcp*, udp*: host:port
		h, _, err := net.SplitHostPort(addr)
		if err != nil {
			return err
		}
		host = h
	}
	if host == "" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return errHostName
	}
	return nil
}

// Thread states of an nsOp.
const (
	stateHost  = iota // not switched (unlocked, or locked and in the host namespace)
	stateNS           // locked and in the namespace
	stateBack         // switched back and unlocked
	stateStuck        // switching back failed: the thread stays locked and is discarded
)

// nsOp is one dial or listen run inside a namespace on its own goroutine.
// Its fields are written by that goroutine and read after done is closed.
//
// A listen runs entirely in the namespace. A dial switches back as soon as
// its socket exists, from its control function, so that waiting for the
// connection does not happen on a locked thread (which costs a thread
// handoff each way: a loopback dial took ~130µs instead of ~95µs, against
// ~57µs for a plain dial on the host).
type nsOp struct {
	listen     bool
	ctx        context.Context
	d          net.Dialer // a copy, with control set to op.control
	userCtl    func(network, address string, c syscall.RawConn) error
	userCtlCtx func(ctx context.Context, network, address string, c syscall.RawConn) error
	network    string
	addr       string
	nsfd       int
	host       int
	state      int

	conn net.Conn
	ln   net.Listener
	err  error // from the dial or listen itself
	nerr error // from switching namespaces
	done chan struct{}
}

// run performs op in the namespace pinned at path and waits for it. The
// returned error is about entering the namespace; the operation's own result
// is in op.
func (op *nsOp) run(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: path, Err: err}
	}
	op.nsfd = fd
	op.done = make(chan struct{})
	go op.work()
	<-op.done
	unix.Close(fd)
	return op.nerr
}

func (op *nsOp) work() {
	defer close(op.done)
	runtime.LockOSThread()
	host, err := hostNS()
	if err != nil {
		runtime.UnlockOSThread()
		op.nerr = err
		return
	}
	op.host = host
	if err := unix.Setns(op.nsfd, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread() // setns failed: the thread did not move
		if errors.Is(err, unix.EINVAL) {
			err = errors.New("not a network namespace")
		}
		op.nerr = fmt.Errorf("setns: %w", err)
		return
	}
	op.state = stateNS
	if op.listen {
		var lc net.ListenConfig
		op.ln, op.err = lc.Listen(op.ctx, op.network, op.addr)
	} else {
		op.conn, op.err = op.d.DialContext(op.ctx, op.network, op.addr)
	}
	op.leave()
}

// leave switches the thread back to the host namespace if it is in the
// namespace. If that fails the thread stays locked and is discarded when
// work returns; sockets already made are in the namespace either way.
func (op *nsOp) leave() {
	if op.state != stateNS {
		return
	}
	if restore(op.host) != nil {
		op.state = stateStuck
		return
	}
	op.state = stateBack
}

// errSecondSocket is returned when a dial makes another socket after the
// thread left the namespace; that socket would be in the host namespace.
var errSecondSocket = errors.New("netns: dial needed a second socket, which would be outside the namespace")

// control is the dialer's control function, called on op's goroutine right
// after the socket is created and before it connects.
func (op *nsOp) control(ctx context.Context, network, address string, c syscall.RawConn) error {
	if op.state == stateBack {
		return errSecondSocket
	}
	op.leave()
	if op.userCtlCtx != nil {
		return op.userCtlCtx(ctx, network, address, c)
	}
	if op.userCtl != nil {
		return op.userCtl(network, address, c)
	}
	return nil
}
