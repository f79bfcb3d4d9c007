package oci

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"golang.org/x/sys/unix"
)

// tmpPrefix marks work directories in the cache: unpacks in progress and
// rootfs trees being removed. Nothing with this prefix is ever handed out, and
// NewCache deletes all of them (they are left-overs of a crash).
const tmpPrefix = ".tmp-"

// mountPoints are the directories runc mounts over (or bind mounts into) in
// every container. The rootfs is read-only and shared, so they have to exist
// before the first container starts.
var mountPoints = []struct {
	name string
	mode fs.FileMode
}{
	{"proc", 0o755},
	{"sys", 0o755},
	{"dev", 0o755},
	{"tmp", 0o777 | fs.ModeSticky},
	{"etc", 0o755},
}

// Cache keeps unpacked, flattened root filesystems of images in a directory,
// one per image manifest digest: <dir>/<algorithm>-<hex>.
//
// A Cache assumes it is the only user of its directory. Its methods are safe
// for concurrent use.
type Cache struct {
	dir string

	mu       sync.Mutex
	inflight map[string]*unpackCall // by directory name

	// Test hooks.
	unpacks atomic.Int64        // number of unpacks started
	onWait  func(digest string) // called when a caller waits for another's unpack
}

type unpackCall struct {
	done chan struct{}
	err  error // valid after done is closed
	// canceled reports that err is due to the unpacking caller's context:
	// the waiters then try again themselves instead of failing with it.
	canceled bool
}

// NewCache opens (creating it if needed) the rootfs cache in dir and removes
// the left-overs of interrupted unpacks and removals.
//
// The directory is created with mode 0700: the unpacked trees may contain
// set-user-ID binaries owned by root, which host users must not reach.
func NewCache(dir string) (*Cache, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("oci: rootfs cache %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("oci: rootfs cache: %w", err)
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		return nil, fmt.Errorf("oci: rootfs cache: %w", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			if err := removeAll(filepath.Join(abs, e.Name())); err != nil {
				return nil, fmt.Errorf("oci: rootfs cache: removing stale %s: %w", e.Name(), err)
			}
		}
	}
	return &Cache{dir: abs, inflight: map[string]*unpackCall{}}, nil
}

// Dir returns the absolute path of the cache directory.
func (c *Cache) Dir() string { return c.dir }

// Rootfs returns the absolute path of the unpacked, flattened root filesystem
// of img, whose manifest digest is digest ("sha256:<hex>"), unpacking it on
// first use. cached reports that this call did not unpack (the rootfs was
// already there, or another concurrent call unpacked it).
//
// Concurrent calls for the same digest unpack once, the others wait; different
// digests unpack in parallel. The unpack goes to a temporary directory in the
// cache which is renamed into place when complete, so an interrupted unpack
// is never used. ctx cancels the unpack (or the wait for another caller's).
//
// The tree must be treated as read-only: it is shared by every container of
// the image. The directories proc, sys, dev, tmp and etc always exist in it.
func (c *Cache) Rootfs(ctx context.Context, digest string, img v1.Image) (path string, cached bool, err error) {
	name, err := dirName(digest)
	if err != nil {
		return "", false, err
	}
	final := filepath.Join(c.dir, name)
	for {
		c.mu.Lock()
		fi, err := os.Lstat(final)
		switch {
		case err == nil && fi.IsDir():
			c.mu.Unlock()
			return final, true, nil
		case err == nil:
			c.mu.Unlock()
			return "", false, fmt.Errorf("oci: rootfs cache: %s is not a directory", final)
		case !errors.Is(err, fs.ErrNotExist):
			c.mu.Unlock()
			return "", false, fmt.Errorf("oci: rootfs cache: %w", err)
		}
		if err := ctx.Err(); err != nil {
			c.mu.Unlock()
			return "", false, fmt.Errorf("oci: unpack image %s: %w", digest, err)
		}
		if call, ok := c.inflight[name]; ok {
			c.mu.Unlock()
			if c.onWait != nil {
				c.onWait(digest)
			}
			select {
			case <-call.done:
			case <-ctx.Done():
				return "", false, fmt.Errorf("oci: unpack image %s: %w", digest, ctx.Err())
			}
			if call.err != nil && !call.canceled {
				return "", false, call.err
			}
			continue // look again: done, or the unpacker gave up (canceled)
		}
		call := &unpackCall{done: make(chan struct{})}
		c.inflight[name] = call
		c.mu.Unlock()

		err = c.unpack(ctx, digest, final, img)

		c.mu.Lock()
		delete(c.inflight, name)
		c.mu.Unlock()
		call.err, call.canceled = err, err != nil && ctx.Err() != nil
		close(call.done)
		if err != nil {
			return "", false, err
		}
		return final, false, nil
	}
}

// Remove deletes the unpacked rootfs of digest. A rootfs that is not there is
// not an error. Containers still using it must have been stopped.
func (c *Cache) Remove(digest string) error {
	name, err := dirName(digest)
	if err != nil {
		return err
	}
	final := filepath.Join(c.dir, name)
	c.mu.Lock()
	// The rootfs disappears at once, and a crash during the slow removal
	// leaves only a temporary directory, which NewCache deletes.
	tmp := filepath.Join(c.dir, tmpPrefix+"rm-"+name+"-"+rand.Text())
	err = os.Rename(final, tmp)
	c.mu.Unlock()
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("oci: remove rootfs of %s: %w", digest, err)
	}
	if err := removeAll(tmp); err != nil {
		return fmt.Errorf("oci: remove rootfs of %s: %w", digest, err)
	}
	return nil
}

// List returns the digests of the unpacked root filesystems, sorted.
func (c *Cache) List() ([]string, error) {
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return nil, fmt.Errorf("oci: rootfs cache: %w", err)
	}
	var digests []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		algo, hex, ok := strings.Cut(e.Name(), "-")
		if !ok {
			continue
		}
		d := algo + ":" + hex
		if n, err := dirName(d); err != nil || n != e.Name() {
			continue
		}
		digests = append(digests, d)
	}
	slices.Sort(digests)
	return digests, nil
}

// dirName validates a manifest digest and returns its directory name.
func dirName(digest string) (string, error) {
	algo, hex, ok := strings.Cut(digest, ":")
	want := map[string]int{"sha256": 64, "sha512": 128}[algo]
	if !ok || want == 0 || len(hex) != want || strings.Trim(hex, "0123456789abcdef") != "" {
		return "", fmt.Errorf("oci: invalid image digest %q", digest)
	}
	return algo + "-" + hex, nil
}

// unpack flattens img into a temporary directory and renames it to final.
func (c *Cache) unpack(ctx context.Context, digest, final string, img v1.Image) (err error) {
	c.unpacks.Add(1)
	tmp, err := os.MkdirTemp(c.dir, tmpPrefix+filepath.Base(final)+"-")
	if err != nil {
		return fmt.Errorf("oci: unpack image %s: %w", digest, err)
	}
	defer func() {
		if err != nil {
			_ = removeAll(tmp)
		}
	}()
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return fmt.Errorf("oci: unpack image %s: %w", digest, err)
	}
	defer root.Close()

	u := &unpacker{ctx: ctx, root: root, digest: digest, chown: os.Geteuid() == 0}
	rc := mutate.Extract(img)
	// Closing the stream unblocks a read that waits for a slow layer, and
	// stops the extracting goroutine if we bail out early.
	stop := context.AfterFunc(ctx, func() { rc.Close() })
	err = u.extract(rc)
	stop()
	rc.Close()
	if err != nil {
		return err
	}
	if err := u.finish(); err != nil {
		return err
	}

	// Make the contents durable before they become visible under the final
	// name, so that not even a power loss can leave a torn rootfs in place.
	if err := syncfs(tmp); err != nil {
		return fmt.Errorf("oci: unpack image %s: %w", digest, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("oci: unpack image %s: %w", digest, err)
	}
	if d, err := os.Open(c.dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

type dirMeta struct {
	name string
	hdr  *tar.Header
}

type unpacker struct {
	ctx    context.Context
	root   *os.Root
	digest string
	chown  bool // running as root: apply the owners of the entries

	dirs    []dirMeta   // explicit directory entries, metadata applied last
	rootHdr *tar.Header // the "." entry, if any
}

func (u *unpacker) extract(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		if err := u.ctx.Err(); err != nil {
			return fmt.Errorf("oci: unpack image %s: %w", u.digest, err)
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			// mutate.Extract ends the archive properly even when it fails
			// (e.g. an unsafe entry name or a layer that does not match
			// its digest), and only then reports the error: read on.
			if _, err = io.Copy(io.Discard, r); err == nil {
				return nil
			}
		}
		if err != nil {
			if ctxErr := u.ctx.Err(); ctxErr != nil {
				return fmt.Errorf("oci: unpack image %s: %w", u.digest, ctxErr)
			}
			return fmt.Errorf("oci: unpack image %s: reading layers: %w", u.digest, err)
		}
		if err := u.entry(hdr, tr); err != nil {
			if ctxErr := u.ctx.Err(); ctxErr != nil {
				err = ctxErr // whatever failed, it was interrupted
			}
			return fmt.Errorf("oci: unpack image %s: entry %q: %w", u.digest, hdr.Name, err)
		}
	}
}

// cleanName turns a tar entry name into a path relative to the rootfs.
// Absolute names are taken relative to the rootfs (like tar does); names that
// climb out of it with ".." are refused.
func cleanName(name string) (string, error) {
	p := path.Clean(strings.TrimLeft(name, "/"))
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", errors.New("path escapes the root filesystem")
	}
	return p, nil
}

// entry writes one entry of the flattened image. The stream from
// mutate.Extract lists upper layers first and never repeats a name, so a path
// that already exists has been created by a higher layer (explicitly, or as a
// parent directory of its entries) and wins.
func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if name == "." {
			u.rootHdr = hdr
			return nil
		}
		exists, isDir, err := u.lexists(name)
		if err != nil {
			return err
		}
		if exists && !isDir {
			return nil // a higher layer's non-directory wins
		}
		if !exists {
			if err := u.mkdirAll(path.Dir(name)); err != nil {
				return err
			}
			if err := u.root.Mkdir(name, 0o700); err != nil {
				return err
			}
		}
		u.dirs = append(u.dirs, dirMeta{name, hdr})
		return nil

	case tar.TypeReg:
		if name == "." {
			return errors.New("regular file at the root")
		}
		if ok, err := u.prepare(name); !ok || err != nil {
			return err
		}
		return u.writeFile(name, hdr, r)

	case tar.TypeSymlink:
		if name == "." {
			return errors.New("symlink at the root")
		}
		if ok, err := u.prepare(name); !ok || err != nil {
			return err
		}
		// The target is stored as is: it is resolved inside the container,
		// and every write below goes through os.Root, which refuses to follow
		// a link out of the rootfs.
		if err := u.root.Symlink(hdr.Linkname, name); err != nil {
			return err
		}
		return u.lchown(name, hdr)

	case tar.TypeLink:
		target, err := cleanName(hdr.Linkname)
		if err != nil {
			return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
		}
		if name == "." || target == "." {
			return fmt.Errorf("hard link to %q: invalid", hdr.Linkname)
		}
		if ok, err := u.prepare(name); !ok || err != nil {
			return err
		}
		if err := u.root.Link(target, name); err != nil {
			return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
		}
		return nil

	default:
		// Devices and FIFOs: runc provides /dev. Other types are not
		// meaningful in an image.
		return nil
	}
}

// prepare makes the parent directory of a non-directory entry and reports
// whether the entry is to be written (false: a higher layer took the path).
func (u *unpacker) prepare(name string) (bool, error) {
	if err := u.mkdirAll(path.Dir(name)); err != nil {
		return false, err
	}
	exists, _, err := u.lexists(name)
	return !exists, err
}

func (u *unpacker) lexists(name string) (exists, isDir bool, err error) {
	fi, err := u.root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	return true, fi.IsDir(), nil
}

// mkdirAll creates the missing directories of dir (mode 0755) inside the root.
// Existing symbolic links are followed, but only inside the root.
func (u *unpacker) mkdirAll(dir string) error {
	if dir == "." {
		return nil
	}
	fi, err := u.root.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := u.mkdirAll(path.Dir(dir)); err != nil {
		return err
	}
	if err := u.root.Mkdir(dir, 0o755); err != nil {
		return err
	}
	return u.root.Chmod(dir, 0o755) // not subject to the umask
}

func (u *unpacker) writeFile(name string, hdr *tar.Header, r io.Reader) (err error) {
	// O_EXCL: never write through an existing file or symlink.
	f, err := u.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer f.Close() // after an error; closing twice is harmless
	if _, err := io.CopyN(f, ctxReader{u.ctx, r}, hdr.Size); err != nil {
		return err
	}
	if u.chown {
		if err := f.Chown(hdr.Uid, hdr.Gid); err != nil {
			return err
		}
	}
	// After the chown, which clears the set-ID bits and file capabilities.
	if err := f.Chmod(fileMode(hdr)); err != nil {
		return err
	}
	for k, v := range hdr.PAXRecords {
		attr, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok {
			continue
		}
		// Best effort (e.g. security.capability): not every filesystem
		// supports every namespace, and some need privileges.
		err := unix.Fsetxattr(int(f.Fd()), attr, []byte(v), 0)
		if err != nil && !errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EACCES) {
			return fmt.Errorf("xattr %s: %w", attr, err)
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	return u.chtimes(name, hdr)
}

func (u *unpacker) lchown(name string, hdr *tar.Header) error {
	if !u.chown {
		return nil
	}
	return u.root.Lchown(name, hdr.Uid, hdr.Gid)
}

func (u *unpacker) chtimes(name string, hdr *tar.Header) error {
	if hdr.ModTime.IsZero() {
		return nil
	}
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	return u.root.Chtimes(name, atime, hdr.ModTime)
}

func fileMode(hdr *tar.Header) fs.FileMode {
	return hdr.FileInfo().Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
}

// finish creates the mount points and applies the directory metadata (last,
// so that writing the contents does not change it).
func (u *unpacker) finish() error {
	for _, mp := range mountPoints {
		fi, err := u.root.Lstat(mp.name)
		switch {
		case err == nil && fi.IsDir():
			continue
		case err == nil:
			kind := "a regular file"
			if fi.Mode()&fs.ModeSymlink != 0 {
				kind = "a symbolic link"
			} else if !fi.Mode().IsRegular() {
				kind = "not a directory"
			}
			return fmt.Errorf("oci: unpack image %s: entry %q: /%s is %s, but it must be a directory (a mount point)",
				u.digest, mp.name, mp.name, kind)
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("oci: unpack image %s: entry %q: %w", u.digest, mp.name, err)
		}
		if err := u.root.Mkdir(mp.name, 0o700); err != nil {
			return fmt.Errorf("oci: unpack image %s: entry %q: %w", u.digest, mp.name, err)
		}
		if err := u.root.Chmod(mp.name, mp.mode); err != nil {
			return fmt.Errorf("oci: unpack image %s: entry %q: %w", u.digest, mp.name, err)
		}
	}

	rootHdr := u.rootHdr
	if rootHdr == nil {
		rootHdr = &tar.Header{Typeflag: tar.TypeDir, Mode: 0o755}
	}
	dirs := append(u.dirs, dirMeta{".", rootHdr})
	for i := len(dirs) - 1; i >= 0; i-- { // children before parents, for the mtimes
		d := dirs[i]
		if err := u.lchown(d.name, d.hdr); err != nil {
			return fmt.Errorf("oci: unpack image %s: entry %q: %w", u.digest, d.hdr.Name, err)
		}
		if err := u.root.Chmod(d.name, fileMode(d.hdr)); err != nil {
			return fmt.Errorf("oci: unpack image %s: entry %q: %w", u.digest, d.hdr.Name, err)
		}
		if err := u.chtimes(d.name, d.hdr); err != nil {
			return fmt.Errorf("oci: unpack image %s: entry %q: %w", u.digest, d.hdr.Name, err)
		}
	}
	return nil
}

// ctxReader fails reads once ctx is done, to cancel the copy of large files.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

func syncfs(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	for {
		err := unix.Syncfs(int(d.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}

// removeAll is os.RemoveAll that also copes with read-only directories when
// not running as root.
func removeAll(dir string) error {
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}
