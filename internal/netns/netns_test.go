//go:build linux

package netns

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func requireNetns(tb testing.TB) {
	tb.Helper()
	if err := Check(); err != nil {
		tb.Skipf("network namespaces unavailable: %v", err)
	}
}

// newNS creates a namespace in dir (a fresh temp dir if empty) and removes
// it when the test ends.
func newNS(tb testing.TB, dir, name string) string {
	tb.Helper()
	if dir == "" {
		dir = tb.TempDir()
	}
	p := filepath.Join(dir, name)
	if err := Create(p); err != nil {
		tb.Fatalf("Create(%s): %v", p, err)
	}
	tb.Cleanup(func() {
		if err := Remove(p); err != nil {
			tb.Errorf("Remove(%s): %v", p, err)
		}
	})
	return p
}

// unescapeMount decodes the octal escapes (\040 etc.) of a mountinfo field.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountsUnder returns the mount points in /proc/self/mountinfo equal to or
// under p.
func mountsUnder(tb testing.TB, p string) []string {
	tb.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if mp == p || strings.HasPrefix(mp, p+"/") {
			out = append(out, mp)
		}
	}
	return out
}

func inode(tb testing.TB, p string) uint64 {
	tb.Helper()
	st, err := os.Stat(p)
	if err != nil {
		tb.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// threadNS returns the inode of the calling thread's network namespace; the
// caller must have locked its thread.
func threadNS(tb testing.TB) uint64 {
	return inode(tb, "/proc/thread-self/ns/net")
}

// strayThreads lists the threads of this process that are not in the
// network namespace with inode host.
func strayThreads(tb testing.TB, host uint64) []string {
	tb.Helper()
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		tb.Fatal(err)
	}
	var bad []string
	for _, e := range ents {
		st, err := os.Stat("/proc/self/task/" + e.Name() + "/ns/net")
		if err != nil {
			continue // thread exited meanwhile
		}
		if ino := st.Sys().(*syscall.Stat_t).Ino; ino != host {
			bad = append(bad, fmt.Sprintf("tid %s in netns %d", e.Name(), ino))
		}
	}
	return bad
}

// hostNSInode returns the inode of the network namespace of this test's
// threads.
func hostNSInode(tb testing.TB) uint64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return threadNS(tb)
}

func countFDs(tb testing.TB) int {
	tb.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Fatal(err)
	}
	return len(ents) - 1 // minus the descriptor ReadDir itself used
}

// freeHostPort returns a TCP port on 127.0.0.1 that nothing on the host
// listens on right now.
func freeHostPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// serveHTTP serves reply on ln until the test ends.
func serveHTTP(t *testing.T, ln net.Listener, reply string) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, reply)
	})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
}

func get(t *testing.T, dial func(context.Context, string, string) (net.Conn, error), url string) (string, error) {
	t.Helper()
	tr := &http.Transport{DialContext: dial, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestSamePortInTwoNamespaces(t *testing.T) {
	requireNetns(t)
	dir := t.TempDir()
	a := newNS(t, dir, "a")
	b := newNS(t, dir, "b")
	empty := newNS(t, dir, "empty")
	port := freeHostPort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	url := "http://" + addr + "/"

	for _, ns := range []struct{ path, reply string }{{a, "reply from a"}, {b, "reply from b"}} {
		ln, err := Listen(ns.path, "tcp", addr)
		if err != nil {
			t.Fatalf("Listen(%s, %s): %v", ns.path, addr, err)
		}
		serveHTTP(t, ln, ns.reply)
	}

	for _, ns := range []struct{ path, want string }{{a, "reply from a"}, {b, "reply from b"}, {a, "reply from a"}} {
		got, err := get(t, Dialer(ns.path, nil), url)
		if err != nil || got != ns.want {
			t.Errorf("GET %s in %s = %q, %v; want %q", url, ns.path, got, err, ns.want)
		}
		// Plain Dial too.
		c, err := Dial(context.Background(), ns.path, "tcp", addr)
		if err != nil {
			t.Fatalf("Dial(%s, %s): %v", ns.path, addr, err)
		}
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		c.Close()
		if string(body) != ns.want {
			t.Errorf("raw GET in %s = %q, want %q", ns.path, body, ns.want)
		}
	}

	// A namespace with no listener has nothing on that port.
	if c, err := Dial(context.Background(), empty, "tcp", addr); err == nil {
		c.Close()
		t.Errorf("Dial into namespace without listener succeeded")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("Dial into namespace without listener: %v, want ECONNREFUSED", err)
	}

	// Neither is reachable from the host, where the port was free.
	var d net.Dialer
	if got, err := get(t, d.DialContext, url); err == nil && strings.HasPrefix(got, "reply from") {
		t.Errorf("host GET %s reached a namespace: %q", url, got)
	}
}

func TestLoopbackUp(t *testing.T) {
	requireNetns(t)
	p := newNS(t, "", "ns")

	ln, err := Listen(p, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.WriteString(c, "hello")
		c.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, p, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "hello" {
		t.Fatalf("read %q, %v; want hello", b, err)
	}

	// Unix sockets: abstract addresses are per network namespace.
	uln, err := Listen(p, "unix", "@aloft-netns-test")
	if err != nil {
		t.Fatalf("Listen unix: %v", err)
	}
	defer uln.Close()
	if c, err := Dial(ctx, p, "unix", "@aloft-netns-test"); err != nil {
		t.Errorf("Dial abstract unix socket in namespace: %v", err)
	} else {
		c.Close()
	}
	if c, err := net.Dial("unix", "@aloft-netns-test"); err == nil {
		c.Close()
		t.Errorf("abstract unix socket in namespace reachable from host")
	}
}

func TestRemove(t *testing.T) {
	requireNetns(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "ns")
	if err := Create(p); err != nil {
		t.Fatal(err)
	}
	if m := mountsUnder(t, p); len(m) != 1 {
		t.Fatalf("after Create: mounts at %s = %v, want one", p, m)
	}
	if err := Remove(p); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Remove: Lstat = %v, want not exist", err)
	}
	if m := mountsUnder(t, dir); len(m) != 0 {
		t.Errorf("after Remove: mounts %v remain", m)
	}
	if err := Remove(p); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	if _, err := Dial(context.Background(), p, "tcp", "127.0.0.1:1"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Dial into removed namespace: %v, want not exist", err)
	}

	// A plain file is just deleted.
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Remove(plain); err != nil {
		t.Errorf("Remove(plain file): %v", err)
	}
	if _, err := os.Lstat(plain); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("plain file not deleted: %v", err)
	}

	// Some other mount point is left alone.
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", sub, "tmpfs", 0, ""); err != nil {
		t.Logf("cannot mount tmpfs, skipping that case: %v", err)
		return
	}
	defer syscall.Unmount(sub, syscall.MNT_DETACH)
	if err := Remove(sub); err == nil {
		t.Errorf("Remove(tmpfs mount point) succeeded")
	}
	if m := mountsUnder(t, sub); len(m) != 1 {
		t.Errorf("Remove(tmpfs mount point) changed mounts: %v", m)
	}
}

func TestCreateExisting(t *testing.T) {
	requireNetns(t)
	dir := t.TempDir()

	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Create(plain); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Create(existing file) = %v, want ErrExist", err)
	}
	if b, err := os.ReadFile(plain); err != nil || string(b) != "keep" {
		t.Errorf("existing file changed: %q, %v", b, err)
	}
	if m := mountsUnder(t, dir); len(m) != 0 {
		t.Errorf("mounts left: %v", m)
	}

	// Creating again on a pinned namespace fails and leaves it as it was.
	p := newNS(t, dir, "ns")
	ln, err := Listen(p, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := Create(p); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Create(pinned namespace) = %v, want ErrExist", err)
	}
	if m := mountsUnder(t, dir); len(m) != 1 {
		t.Errorf("mounts = %v, want just %s", m, p)
	}
	c, err := Dial(context.Background(), p, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("namespace broken after failed Create: %v", err)
	}
	c.Close()
}

func TestCreateMissingDir(t *testing.T) {
	requireNetns(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "missing", "ns")
	if err := Create(p); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Create in missing dir = %v, want ErrNotExist", err)
	}
	if _, err := os.Lstat(filepath.Dir(p)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Create made the dir: %v", err)
	}
	if m := mountsUnder(t, dir); len(m) != 0 {
		t.Errorf("mounts left: %v", m)
	}
}

func TestDialErrors(t *testing.T) {
	requireNetns(t)
	dir := t.TempDir()
	p := newNS(t, dir, "ns")
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	if _, err := Dial(ctx, plain, "tcp", "127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "not a network namespace") {
		t.Errorf("Dial into plain file: %v", err)
	}
	if _, err := Listen(plain, "tcp", "127.0.0.1:0"); err == nil {
		t.Errorf("Listen in plain file succeeded")
	}
	if _, err := Dial(ctx, p, "tcp", "localhost:80"); !errors.Is(err, errHostName) {
		t.Errorf("Dial with host name: %v, want %v", err, errHostName)
	}
	if _, err := Listen(p, "tcp", "localhost:0"); !errors.Is(err, errHostName) {
		t.Errorf("Listen with host name: %v, want %v", err, errHostName)
	}
	if _, err := Dial(ctx, p, "tcp", "127.0.0.1"); err == nil {
		t.Errorf("Dial without port succeeded")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Dial(cctx, p, "tcp", "127.0.0.1:1"); !errors.Is(err, context.Canceled) {
		t.Errorf("Dial with canceled context: %v", err)
	}

	// A dialer's settings apply, its control function included.
	var ctlNetwork string
	d := &net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)},
		Control: func(network, address string, c syscall.RawConn) error {
			ctlNetwork = network
			return nil
		},
	}
	ln, err := Listen(p, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := Dialer(p, d)(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ip := c.LocalAddr().(*net.TCPAddr).IP; !ip.Equal(d.LocalAddr.(*net.TCPAddr).IP) {
		t.Errorf("local address %v, want %v", ip, d.LocalAddr)
	}
	if ctlNetwork != "tcp4" {
		t.Errorf("dialer's Control saw network %q, want tcp4", ctlNetwork)
	}
	d.Control = func(network, address string, c syscall.RawConn) error { return errors.New("refused by control") }
	if _, err := Dialer(p, d)(ctx, "tcp", ln.Addr().String()); err == nil || !strings.Contains(err.Error(), "refused by control") {
		t.Errorf("dial with failing Control: %v", err)
	}
}

func TestThreadNamespaceUnchanged(t *testing.T) {
	requireNetns(t)
	host := hostNSInode(t)
	dir := t.TempDir()

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before := threadNS(t)
	if before != host {
		t.Fatalf("test thread starts in netns %d, host is %d", before, host)
	}
	p := newNS(t, dir, "ns")
	if got := threadNS(t); got != before {
		t.Fatalf("Create moved the calling thread: %d -> %d", before, got)
	}
	if got := inode(t, p); got == host {
		t.Fatalf("pinned namespace is the host's")
	}
	ln, err := Listen(p, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if got := threadNS(t); got != before {
		t.Fatalf("Listen moved the calling thread: %d -> %d", before, got)
	}
	c, err := Dial(context.Background(), p, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got := threadNS(t); got != before {
		t.Fatalf("Dial moved the calling thread: %d -> %d", before, got)
	}
	if bad := strayThreads(t, host); len(bad) > 0 {
		t.Errorf("threads left outside the host namespace: %v", bad)
	}
}

func TestConcurrentDials(t *testing.T) {
	requireNetns(t)
	host := hostNSInode(t)
	dir := t.TempDir()
	const nns = 3
	paths := make([]string, nns)
	addrs := make([]string, nns)
	for i := range paths {
		paths[i] = newNS(t, dir, fmt.Sprintf("ns%d", i))
		ln, err := Listen(paths[i], "tcp", "127.0.0.1:9000")
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = ln.Addr().String()
		name := filepath.Base(paths[i])
		var wg sync.WaitGroup
		t.Cleanup(func() { ln.Close(); wg.Wait() })
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				io.WriteString(c, name)
				c.Close()
			}
		})
	}

	const workers, dials = 32, 50
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if got := threadNS(t); got != host {
				errc <- fmt.Errorf("worker %d starts in netns %d", w, got)
				return
			}
			for i := range dials {
				n := (w + i) % nns
				c, err := Dial(ctx, paths[n], "tcp", addrs[n])
				if err != nil {
					errc <- err
					return
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				b, err := io.ReadAll(c)
				c.Close()
				if want := filepath.Base(paths[n]); err != nil || string(b) != want {
					errc <- fmt.Errorf("dial into %s reached %q (%v)", want, b, err)
					return
				}
				if got := threadNS(t); got != host {
					errc <- fmt.Errorf("worker %d moved to netns %d", w, got)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if bad := strayThreads(t, host); len(bad) > 0 {
		t.Errorf("threads left outside the host namespace: %v", bad)
	}
}

func TestNoLeaks(t *testing.T) {
	requireNetns(t)
	host := hostNSInode(t)
	dir := t.TempDir()
	cycle := func(i int) {
		p := filepath.Join(dir, fmt.Sprintf("ns%d", i))
		if err := Create(p); err != nil {
			t.Fatal(err)
		}
		ln, err := Listen(p, "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		c, err := Dial(context.Background(), p, "tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		c.Close()
		ln.Close()
		if err := Create(p); err == nil { // failing Create must not leak either
			t.Fatal("Create on existing path succeeded")
		}
		if err := Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	cycle(-1) // warm up: the host namespace fd, the poller, ...
	fds := countFDs(t)
	mounts := len(mountsUnder(t, "/"))
	for i := range 100 {
		cycle(i)
	}
	if got := countFDs(t); got != fds {
		t.Errorf("open fds: %d, was %d", got, fds)
	}
	if got := len(mountsUnder(t, "/")); got != mounts {
		t.Errorf("mounts: %d, was %d", got, mounts)
	}
	if m := mountsUnder(t, dir); len(m) != 0 {
		t.Errorf("mounts left: %v", m)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("files left: %v", ents)
	}
	if bad := strayThreads(t, host); len(bad) > 0 {
		t.Errorf("threads left in created namespaces: %v", bad)
	}
}

func TestSweep(t *testing.T) {
	requireNetns(t)
	dir := t.TempDir()
	for _, n := range []string{"keep1", "drop1", "drop2"} {
		if err := Create(filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { Remove(filepath.Join(dir, "keep1")) })
	if err := os.Mkdir(filepath.Join(dir, "subdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Sweep(dir, func(name string) bool { return strings.HasPrefix(name, "keep") }); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "keep1,subdir" {
		t.Errorf("after Sweep: %v, want keep1 and subdir", names)
	}
	if m := mountsUnder(t, dir); len(m) != 1 {
		t.Errorf("after Sweep: mounts %v, want just keep1", m)
	}
	if err := Sweep(filepath.Join(dir, "missing"), func(string) bool { return false }); err != nil {
		t.Errorf("Sweep(missing dir): %v", err)
	}
}

// acceptAndClose accepts connections on ln and closes them until ln closes.
func acceptAndClose(ln net.Listener) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	})
	return &wg
}

// BenchmarkDial compares a TCP dial to a loopback listener from the host
// with one into a namespace.
func BenchmarkDial(b *testing.B) {
	requireNetns(b)
	p := newNS(b, "", "ns")
	ctx := context.Background()
	run := func(b *testing.B, ln net.Listener, dial func(context.Context, string, string) (net.Conn, error)) {
		wg := acceptAndClose(ln)
		defer wg.Wait()
		defer ln.Close()
		addr := ln.Addr().String()
		b.ReportAllocs()
		for b.Loop() {
			c, err := dial(ctx, "tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
	}
	b.Run("host", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		var d net.Dialer
		run(b, ln, d.DialContext)
	})
	b.Run("netns", func(b *testing.B) {
		ln, err := Listen(p, "tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		run(b, ln, Dialer(p, nil))
	})
}

// BenchmarkOpenNS measures opening and closing a namespace file, the part
// of a Dial that keeping it open would save.
func BenchmarkOpenNS(b *testing.B) {
	requireNetns(b)
	p := newNS(b, "", "ns")
	for b.Loop() {
		fd, err := syscall.Open(p, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		syscall.Close(fd)
	}
}
