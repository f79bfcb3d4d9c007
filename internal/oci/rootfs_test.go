package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// ---- building test images ----

type ent struct {
	name  string
	typ   byte
	mode  int64
	body  string
	link  string
	uid   int
	gid   int
	mtime time.Time
}

func dirE(name string, mode int64) ent { return ent{name: name, typ: tar.TypeDir, mode: mode} }
func fileE(name string, mode int64, body string) ent {
	return ent{name: name, typ: tar.TypeReg, mode: mode, body: body}
}
func symE(name, target string) ent {
	return ent{name: name, typ: tar.TypeSymlink, mode: 0o777, link: target}
}
func hardE(name, target string) ent {
	return ent{name: name, typ: tar.TypeLink, mode: 0o644, link: target}
}

func tarOf(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{
			Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link,
			Uid: e.uid, Gid: e.gid, ModTime: e.mtime, Size: int64(len(e.body)),
		}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if h.ModTime.IsZero() {
			h.ModTime = time.Unix(1700000000, 0)
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// layerOf makes a layer from an in-memory tar; wrap, if not nil, wraps the
// uncompressed stream each time it is opened after the layer is built.
func layerOf(t testing.TB, b []byte, wrap func(io.Reader) io.Reader) v1.Layer {
	t.Helper()
	var built atomic.Bool
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		var r io.Reader = bytes.NewReader(b)
		if wrap != nil && built.Load() {
			r = wrap(r)
		}
		return io.NopCloser(r), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	built.Store(true)
	return l
}

func imageOf(t testing.TB, layers ...v1.Layer) (v1.Image, string) {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return img, d.String()
}

func simpleImage(t testing.TB, marker string) (v1.Image, string) {
	return imageOf(t, layerOf(t, tarOf(t, fileE("marker", 0o644, marker)), nil))
}

// gate blocks the reads of a layer until released.
type gate struct {
	started     chan struct{}
	release     chan struct{}
	startOnce   sync.Once
	releaseOnce sync.Once
}

func newGate(t testing.TB) *gate {
	g := &gate{started: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(g.open)
	return g
}

func (g *gate) open() { g.releaseOnce.Do(func() { close(g.release) }) }

func (g *gate) wrap(r io.Reader) io.Reader { return gateReader{g, r} }

type gateReader struct {
	g *gate
	r io.Reader
}

func (r gateReader) Read(p []byte) (int, error) {
	r.g.startOnce.Do(func() { close(r.g.started) })
	<-r.g.release
	return r.r.Read(p)
}

func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second): // a failure guard, not a timing assumption
		t.Fatalf("timed out waiting for %s", what)
	}
}

// ---- describing unpacked trees ----

func statT(t testing.TB, p string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t)
}

// tree describes every entry under dir: "dir 0755", "file 0644 <body>",
// "link -> <target>".
func tree(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		st := statT(t, p)
		perm := st.Mode & 0o7777
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFDIR:
			out[rel] = fmt.Sprintf("dir %04o", perm)
		case syscall.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = fmt.Sprintf("file %04o %s", perm, b)
		case syscall.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "link -> " + target
		default:
			out[rel] = fmt.Sprintf("other %o", st.Mode)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffTrees(t *testing.T, got, want map[string]string) {
	t.Helper()
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	for k := range want {
		if _, ok := got[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if got[k] != want[k] {
			t.Errorf("%s: got %q, want %q", k, got[k], want[k])
		}
	}
}

func newCache(t *testing.T) *Cache {
	t.Helper()
	c, err := NewCache(filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func entries(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// ---- tests ----

func TestRootfsFlattensLayers(t *testing.T) {
	mtime := time.Unix(1600000000, 0)
	lower := tarOf(t,
		dirE("etc/", 0o755),
		fileE("etc/os-release", 0o644, "ID=test"),
		dirE("bin/", 0o755),
		fileE("bin/tool", 0o755, "v1"),
		fileE("bin/removed", 0o755, "gone"),
		dirE("opq/", 0o750),
		fileE("opq/old", 0o644, "old"),
		dirE("opq/sub/", 0o755),
		fileE("opq/sub/deep", 0o644, "deep"),
		dirE("data/", 0o700),
		ent{name: "data/file", typ: tar.TypeReg, mode: 0o640, body: "payload", uid: 1000, gid: 2000, mtime: mtime},
		hardE("data/hard", "data/file"),
		symE("link", "data/file"),
		symE("abs", "/data/file"),
		fileE("suid", 0o4755, "s"),
		dirE("sticky/", 0o1777),
		dirE("ro/", 0o555),
		fileE("ro/f", 0o444, "r"),
		dirE("dev/", 0o755),
		ent{name: "dev/null", typ: tar.TypeChar, mode: 0o666},
		ent{name: "fifo", typ: tar.TypeFifo, mode: 0o644},
	)
	upper := tarOf(t,
		fileE("bin/.wh.removed", 0o644, ""),
		fileE("bin/tool", 0o700, "v2"),
		dirE("opq/", 0o755),
		fileE("opq/.wh..wh..opq", 0o644, ""),
		fileE("opq/new", 0o644, "new"),
		fileE("usr/local/bin/x", 0o755, "x"), // parents implied
	)
	img, digest := imageOf(t, layerOf(t, lower, nil), layerOf(t, upper, nil))

	c := newCache(t)
	root, cached, err := c.Rootfs(context.Background(), digest, img)
	if err != nil {
		t.Fatal(err)
	}
	if cached {
		t.Error("first Rootfs: cached = true")
	}
	if !filepath.IsAbs(root) || filepath.Dir(root) != c.Dir() {
		t.Errorf("rootfs path %q is not an absolute path in %q", root, c.Dir())
	}
	want := map[string]string{
		".":               "dir 0755",
		"etc":             "dir 0755",
		"etc/os-release":  "file 0644 ID=test",
		"bin":             "dir 0755",
		"bin/tool":        "file 0700 v2",
		"opq":             "dir 0755",
		"opq/new":         "file 0644 new",
		"data":            "dir 0700",
		"data/file":       "file 0640 payload",
		"data/hard":       "file 0640 payload",
		"link":            "link -> data/file",
		"abs":             "link -> /data/file",
		"suid":            "file 4755 s",
		"sticky":          "dir 1777",
		"ro":              "dir 0555",
		"ro/f":            "file 0444 r",
		"dev":             "dir 0755",
		"usr":             "dir 0755",
		"usr/local":       "dir 0755",
		"usr/local/bin":   "dir 0755",
		"usr/local/bin/x": "file 0755 x",
		// mount points
		"proc": "dir 0755",
		"sys":  "dir 0755",
		"tmp":  "dir 1777",
	}
	diffTrees(t, tree(t, root), want)

	file, hard := statT(t, filepath.Join(root, "data/file")), statT(t, filepath.Join(root, "data/hard"))
	if file.Ino != hard.Ino || file.Nlink != 2 {
		t.Errorf("data/hard is not a hard link of data/file: inodes %d, %d, nlink %d", file.Ino, hard.Ino, file.Nlink)
	}
	if os.Geteuid() == 0 && (file.Uid != 1000 || file.Gid != 2000) {
		t.Errorf("data/file owner %d:%d, want 1000:2000", file.Uid, file.Gid)
	}
	if fi, _ := os.Stat(filepath.Join(root, "data/file")); !fi.ModTime().Equal(mtime) {
		t.Errorf("data/file mtime %v, want %v", fi.ModTime(), mtime)
	}
	if fi, _ := os.Stat(filepath.Join(root, "etc")); !fi.ModTime().Equal(time.Unix(1700000000, 0)) {
		t.Errorf("etc mtime %v, want the tar's", fi.ModTime())
	}
	if got := entries(t, c.Dir()); !slices.Equal(got, []string{filepath.Base(root)}) {
		t.Errorf("cache dir holds %v, want only the rootfs", got)
	}
}

func TestRootfsCachedListRemove(t *testing.T) {
	c := newCache(t)
	imgA, a := simpleImage(t, "a")
	imgB, b := simpleImage(t, "b")
	ctx := context.Background()

	pa, cached, err := c.Rootfs(ctx, a, imgA)
	if err != nil || cached {
		t.Fatalf("cold Rootfs: cached %v, err %v", cached, err)
	}
	pa2, cached, err := c.Rootfs(ctx, a, imgA)
	if err != nil || !cached || pa2 != pa {
		t.Fatalf("warm Rootfs: %q cached %v err %v, want %q cached", pa2, cached, err, pa)
	}
	if _, _, err := c.Rootfs(ctx, b, imgB); err != nil {
		t.Fatal(err)
	}
	want := []string{a, b}
	slices.Sort(want)
	if got, err := c.List(); err != nil || !slices.Equal(got, want) {
		t.Fatalf("List = %v, %v; want %v", got, err, want)
	}

	// A new Cache on the same directory sees the same rootfs.
	c2, err := NewCache(c.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if p, cached, err := c2.Rootfs(ctx, a, imgA); err != nil || !cached || p != pa {
		t.Fatalf("reopened cache: %q cached %v err %v", p, cached, err)
	}

	if err := c.Remove(a); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(a); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	if got, _ := c.List(); !slices.Equal(got, []string{b}) {
		t.Fatalf("List after Remove = %v", got)
	}
	if _, err := os.Lstat(pa); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("rootfs still there after Remove: %v", err)
	}
	if got := entries(t, c.Dir()); len(got) != 1 {
		t.Fatalf("cache dir after Remove: %v", got)
	}
	if _, cached, err := c.Rootfs(ctx, a, imgA); err != nil || cached {
		t.Fatalf("Rootfs after Remove: cached %v err %v", cached, err)
	}
}

func TestRootfsInvalidDigest(t *testing.T) {
	c := newCache(t)
	img, d := simpleImage(t, "x")
	for _, bad := range []string{"", "sha256:", "sha256:abc", "md5:" + strings.Repeat("a", 32),
		"sha256:" + strings.Repeat("A", 64), "sha256:../" + strings.Repeat("a", 61), strings.TrimPrefix(d, "sha256:")} {
		if _, _, err := c.Rootfs(context.Background(), bad, img); err == nil {
			t.Errorf("Rootfs(%q) succeeded", bad)
		}
		if err := c.Remove(bad); err == nil {
			t.Errorf("Remove(%q) succeeded", bad)
		}
	}
}

// Many callers for one digest: one unpacks (cached=false), the others wait for
// it and get the same path with cached=true.
func TestRootfsConcurrentSameDigest(t *testing.T) {
	const n = 8
	g := newGate(t)
	img, d := imageOf(t, layerOf(t, tarOf(t, fileE("f", 0o644, "x")), g.wrap))
	c := newCache(t)
	waiting := make(chan string, n)
	c.onWait = func(digest string) { waiting <- digest }

	type result struct {
		path   string
		cached bool
		err    error
	}
	results := make(chan result, n)
	for range n {
		go func() {
			p, cached, err := c.Rootfs(context.Background(), d, img)
			results <- result{p, cached, err}
		}()
	}
	for range n - 1 { // everyone but the unpacker waits
		<-waiting
	}
	g.open()

	var cold int
	var paths []string
	for range n {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		if !r.cached {
			cold++
		}
		paths = append(paths, r.path)
	}
	if cold != 1 {
		t.Errorf("%d callers got cached=false, want exactly 1", cold)
	}
	if paths[0] == "" || slices.ContainsFunc(paths, func(p string) bool { return p != paths[0] }) {
		t.Errorf("paths differ: %v", paths)
	}
	if u := c.unpacks.Load(); u != 1 {
		t.Errorf("%d unpacks, want 1", u)
	}
}

// Different digests unpack in parallel: both unpacks are in progress (blocked
// reading their layer) at the same time.
func TestRootfsParallelDifferentDigests(t *testing.T) {
	c := newCache(t)
	ga, gb := newGate(t), newGate(t)
	imgA, a := imageOf(t, layerOf(t, tarOf(t, fileE("f", 0o644, "a")), ga.wrap))
	imgB, b := imageOf(t, layerOf(t, tarOf(t, fileE("f", 0o644, "b")), gb.wrap))
	errs := make(chan error, 2)
	go func() { _, _, err := c.Rootfs(context.Background(), a, imgA); errs <- err }()
	go func() { _, _, err := c.Rootfs(context.Background(), b, imgB); errs <- err }()
	waitFor(t, ga.started, "unpack of A")
	waitFor(t, gb.started, "unpack of B while A is in progress")
	ga.open()
	gb.open()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := c.List(); len(got) != 2 {
		t.Errorf("List = %v", got)
	}
}

// A crash mid-unpack leaves a temporary directory: it is never used as the
// rootfs, and NewCache removes it.
func TestRootfsStaleTempDirs(t *testing.T) {
	img, d := simpleImage(t, "real")
	dir := filepath.Join(t.TempDir(), "cache")
	name, err := dirName(d)
	if err != nil {
		t.Fatal(err)
	}
	partial := filepath.Join(dir, tmpPrefix+name+"-123456")
	removing := filepath.Join(dir, tmpPrefix+"rm-"+name+"-654321")
	for _, p := range []string{partial, removing} {
		if err := os.MkdirAll(filepath.Join(p, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "marker"), []byte("stale"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A read-only directory in the leftover must not stop the cleanup.
	if err := os.Chmod(filepath.Join(partial, "bin"), 0o555); err != nil {
		t.Fatal(err)
	}

	// Without a restart, the leftover is ignored.
	c, err := NewCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := entries(t, dir); len(got) != 0 {
		t.Fatalf("NewCache left %v", got)
	}
	if err := os.MkdirAll(partial, 0o755); err != nil { // crash again, this time under a live Cache
		t.Fatal(err)
	}
	if got, _ := c.List(); len(got) != 0 {
		t.Fatalf("List shows a temp dir: %v", got)
	}
	p, cached, err := c.Rootfs(context.Background(), d, img)
	if err != nil || cached {
		t.Fatalf("Rootfs: cached %v err %v", cached, err)
	}
	if p == partial {
		t.Fatal("Rootfs returned the temp dir")
	}
	if b, err := os.ReadFile(filepath.Join(p, "marker")); err != nil || string(b) != "real" {
		t.Fatalf("marker = %q, %v", b, err)
	}
	if _, err := NewCache(dir); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, dir); !slices.Equal(got, []string{name}) {
		t.Fatalf("after restart the cache holds %v", got)
	}
}

func TestRootfsCancel(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	content := tarOf(t, fileE("a", 0o644, big), fileE("b", 0o644, big))

	t.Run("before", func(t *testing.T) {
		c := newCache(t)
		img, d := imageOf(t, layerOf(t, content, nil))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, _, err := c.Rootfs(ctx, d, img); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if got := entries(t, c.Dir()); len(got) != 0 {
			t.Fatalf("cache holds %v", got)
		}
	})

	t.Run("while reading", func(t *testing.T) {
		c := newCache(t)
		ctx, cancel := context.WithCancel(context.Background())
		var once sync.Once
		img, d := imageOf(t, layerOf(t, content, func(r io.Reader) io.Reader {
			return readHook{r, func() { once.Do(cancel) }}
		}))
		if _, _, err := c.Rootfs(ctx, d, img); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if got := entries(t, c.Dir()); len(got) != 0 {
			t.Fatalf("cache holds %v after the canceled unpack", got)
		}
		// A later call unpacks afresh.
		plain, _ := imageOf(t, layerOf(t, content, nil))
		if p, cached, err := c.Rootfs(context.Background(), d, plain); err != nil || cached {
			t.Fatalf("Rootfs after cancel: cached %v err %v", cached, err)
		} else if fi, err := os.Stat(filepath.Join(p, "b")); err != nil || fi.Size() != int64(len(big)) {
			t.Fatalf("b: %v %v", fi, err)
		}
	})

	t.Run("while a layer read hangs", func(t *testing.T) {
		c := newCache(t)
		g := newGate(t)
		img, d := imageOf(t, layerOf(t, content, g.wrap))
		ctx, cancel := context.WithCancel(context.Background())
		errs := make(chan error, 1)
		go func() { _, _, err := c.Rootfs(ctx, d, img); errs <- err }()
		waitFor(t, g.started, "the layer read")
		cancel()
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if got := entries(t, c.Dir()); len(got) != 0 {
			t.Fatalf("cache holds %v", got)
		}
	})

	// The unpacker gives up: a waiter takes over with its own context.
	t.Run("unpacker canceled, waiter takes over", func(t *testing.T) {
		c := newCache(t)
		g := newGate(t)
		gated, d := imageOf(t, layerOf(t, content, g.wrap))
		plain, d2 := imageOf(t, layerOf(t, content, nil))
		if d != d2 {
			t.Fatal("same content, different digests")
		}
		waiting := make(chan struct{}, 1)
		c.onWait = func(string) { waiting <- struct{}{} }
		ctx, cancel := context.WithCancel(context.Background())
		first := make(chan error, 1)
		go func() { _, _, err := c.Rootfs(ctx, d, gated); first <- err }()
		waitFor(t, g.started, "the first unpack")
		type result struct {
			cached bool
			err    error
		}
		second := make(chan result, 1)
		go func() { _, cached, err := c.Rootfs(context.Background(), d, plain); second <- result{cached, err} }()
		<-waiting
		cancel()
		if err := <-first; !errors.Is(err, context.Canceled) {
			t.Fatalf("first: %v, want context.Canceled", err)
		}
		if r := <-second; r.err != nil || r.cached {
			t.Fatalf("second: cached %v err %v, want a fresh unpack", r.cached, r.err)
		}
		if u := c.unpacks.Load(); u != 2 {
			t.Errorf("%d unpacks, want 2", u)
		}
	})

	// A waiter's own context ends its wait, not the unpack.
	t.Run("waiter canceled", func(t *testing.T) {
		c := newCache(t)
		g := newGate(t)
		img, d := imageOf(t, layerOf(t, content, g.wrap))
		ctx, cancel := context.WithCancel(context.Background())
		c.onWait = func(string) { cancel() }
		first := make(chan error, 1)
		go func() { _, _, err := c.Rootfs(context.Background(), d, img); first <- err }()
		waitFor(t, g.started, "the first unpack")
		if _, _, err := c.Rootfs(ctx, d, img); !errors.Is(err, context.Canceled) {
			t.Fatalf("waiter: %v, want context.Canceled", err)
		}
		g.open()
		if err := <-first; err != nil {
			t.Fatal(err)
		}
	})
}

type readHook struct {
	r  io.Reader
	fn func()
}

func (h readHook) Read(p []byte) (int, error) {
	h.fn()
	return h.r.Read(p)
}

func TestRootfsMountPointErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		ents []ent
		want string
	}{
		{"tmp symlink", []ent{symE("tmp", "var/tmp"), dirE("var/tmp/", 0o1777)}, "/tmp is a symbolic link"},
		{"tmp file", []ent{fileE("tmp", 0o644, "")}, "/tmp is a regular file"},
		{"etc symlink", []ent{symE("etc", "/usr/etc")}, "/etc is a symbolic link"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache(t)
			img, d := imageOf(t, layerOf(t, tarOf(t, tc.ents...), nil))
			_, _, err := c.Rootfs(context.Background(), d, img)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), d) {
				t.Fatalf("err = %v, want one naming %s and %q", err, d, tc.want)
			}
			if got := entries(t, c.Dir()); len(got) != 0 {
				t.Fatalf("cache holds %v", got)
			}
		})
	}
}

// Malicious layers must not create or modify anything outside the rootfs.
// Each case runs twice: through Cache.Rootfs (after mutate.Extract, which
// already drops some of these entries) and straight into the unpacker, which
// must refuse or confine them on its own.
func TestRootfsPathEscapes(t *testing.T) {
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	outRel := strings.TrimPrefix(outside, "/")

	// d/l1 -> ".." is the rootfs; each d/lN -> l(N-1)/.. climbs one more
	// level. Every link is lexically inside the rootfs, so mutate.Extract
	// keeps them; only resolving them leaves it.
	chain := []ent{dirE("d/", 0o755), symE("d/l1", "..")}
	for i := 2; i <= 12; i++ {
		chain = append(chain, symE(fmt.Sprintf("d/l%d", i), fmt.Sprintf("l%d/..", i-1)))
	}
	viaChain := "d/l12/" + outRel

	for _, tc := range []struct {
		name       string
		ents       []ent
		errFull    bool              // Rootfs fails
		errRaw     bool              // the bare unpacker fails
		want       string            // a path confined into the rootfs (on success)
		escapesVia string            // a path in the rootfs that the host would resolve to outside
		wantTree   map[string]string // entries of the rootfs (on success), if checked
	}{
		{name: "absolute name", ents: []ent{fileE(outside+"/pwned", 0o644, "x")},
			want: outRel + "/pwned"},
		{name: "dotdot name", ents: []ent{fileE("../../../../../../.."+outside+"/pwned", 0o644, "x")},
			errFull: true, errRaw: true},
		{name: "dotdot inside name", ents: []ent{dirE("a/", 0o755), fileE("a/../../pwned", 0o644, "x")},
			errFull: true, errRaw: true},
		{name: "absolute symlink written through",
			ents:   []ent{symE("evil", outside), fileE("evil/pwned", 0o644, "x")},
			errRaw: true, escapesVia: "evil"},
		{name: "relative symlink written through",
			ents:   []ent{symE("evil", "../../../../../../../../.."+outside), fileE("evil/pwned", 0o644, "x")},
			errRaw: true, escapesVia: "evil"},
		{name: "symlink chain written through",
			ents:    append(slices.Clone(chain), fileE(viaChain+"/pwned", 0o644, "x")),
			errFull: false, errRaw: true, escapesVia: viaChain},
		{name: "symlink dir created through",
			ents:   []ent{symE("evil", outside), dirE("evil/newdir/", 0o755)},
			errRaw: true},
		{name: "file over symlink",
			ents: []ent{symE("evil", secret), fileE("evil", 0o644, "overwritten")}},
		{name: "absolute hardlink", ents: []ent{hardE("hl", secret)},
			errFull: true, errRaw: true},
		{name: "relative hardlink", ents: []ent{hardE("hl", "../../../../../../../.."+secret)},
			errRaw: true},
		{name: "hardlink through symlink chain",
			ents:    append(slices.Clone(chain), hardE("hl", viaChain+"/secret")),
			errFull: true, errRaw: true, escapesVia: viaChain},
		{name: "hardlink through absolute symlink",
			ents:    []ent{symE("evil", outside), hardE("hl", "evil/secret")},
			errFull: true, errRaw: true},
	} {
		for _, mode := range []string{"full", "raw"} {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
					t.Fatal(err)
				}
				before := tree(t, outside)
				base := t.TempDir()
				content := tarOf(t, tc.ents...)
				var root string
				var err error
				wantErr := tc.errFull
				if mode == "full" {
					c, cerr := NewCache(filepath.Join(base, "cache"))
					if cerr != nil {
						t.Fatal(cerr)
					}
					img, d := imageOf(t, layerOf(t, content, nil))
					root, _, err = c.Rootfs(context.Background(), d, img)
					if err != nil {
						if !strings.Contains(err.Error(), d) {
							t.Errorf("error does not name the digest: %v", err)
						}
						if got := entries(t, c.Dir()); len(got) != 0 {
							t.Errorf("cache holds %v after a failed unpack", got)
						}
					}
				} else {
					wantErr = tc.errRaw
					root = filepath.Join(base, "cache", "rootfs")
					if err := os.MkdirAll(root, 0o755); err != nil {
						t.Fatal(err)
					}
					err = unpackRaw(root, content)
				}
				t.Logf("err: %v", err)
				if (err != nil) != wantErr {
					t.Errorf("err = %v, want error %v", err, wantErr)
				}
				if err != nil && !strings.Contains(err.Error(), "entry ") && !strings.Contains(err.Error(), "unsafe tar path") {
					t.Errorf("error does not name the entry: %v", err)
				}

				// Nothing changed outside.
				diffTrees(t, tree(t, outside), before)
				if n := statT(t, secret).Nlink; n != 1 {
					t.Errorf("secret has %d links", n)
				}
				if got := entries(t, base); !slices.Equal(got, []string{"cache"}) {
					t.Errorf("next to the cache: %v", got)
				}
				if mode == "raw" && tc.escapesVia != "" {
					// The links are in place: make sure that without
					// os.Root, following them would indeed reach outside.
					fi, err1 := os.Stat(filepath.Join(root, tc.escapesVia))
					out, err2 := os.Stat(outside)
					if err1 != nil || err2 != nil || !os.SameFile(fi, out) {
						t.Errorf("test bug: %s does not lead outside (%v, %v)", tc.escapesVia, err1, err2)
					}
				}
				if err == nil && tc.want != "" {
					if _, err := os.Stat(filepath.Join(root, tc.want)); err != nil {
						t.Errorf("not confined into the rootfs: %v", err)
					}
				}
				if err == nil && mode == "full" {
					if got := entries(t, filepath.Dir(root)); len(got) != 1 {
						t.Errorf("cache dir holds %v", got)
					}
				}
			})
		}
	}
}

func unpackRaw(root string, content []byte) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer r.Close()
	u := &unpacker{ctx: context.Background(), root: r, digest: "sha256:raw", chown: os.Geteuid() == 0}
	if err := u.extract(bytes.NewReader(content)); err != nil {
		return err
	}
	return u.finish()
}
