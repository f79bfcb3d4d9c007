// Package image is aloft's local, content-addressed OCI image store.
//
// The store is an OCI image layout (https://github.com/opencontainers/image-spec/blob/main/image-layout.md)
// kept in one directory: an oci-layout marker, blobs/sha256/<hex> and an
// index.json whose manifest descriptors name the imported images through the
// org.opencontainers.image.ref.name annotation (the normalised name:tag, e.g.
// "hello-world:latest").
//
// Writes are atomic: an import first stages and verifies every blob of every
// image in a private temporary directory under the store, then, under the
// store lock, renames the blobs into blobs/ and finally replaces index.json
// with a rename. A failed import leaves index.json untouched and removes its
// staging directory, so nothing of it is visible. Unreferenced blobs are
// garbage collected after every change to the index.
package image

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	// AnnotationRefName carries the image name (name:tag) in index.json.
	AnnotationRefName = "org.opencontainers.image.ref.name"
	// annotationContainerdName is what `docker save` (v25+) and containerd
	// put on OCI index entries: the fully qualified image name.
	annotationContainerdName = "io.containerd.image.name"
	annotationCreated        = "org.opencontainers.image.created"
	annotationSize           = "dev.aloft.image.size"
	annotationPlatform       = "dev.aloft.image.platform"
)

// ErrNotFound is wrapped by Get and Remove when the image is not in the store.
var ErrNotFound = errors.New("image not imported")

// ErrTagMoved is wrapped by Import with KeepTags when the source would move
// an existing tag to another image.
var ErrTagMoved = errors.New("tag names another image")

// ImportOptions change how Import treats the store's existing tags.
type ImportOptions struct {
	// KeepTags refuses (with ErrTagMoved, importing nothing) a source that
	// would point an existing tag at a different image.
	KeepTags bool
}

// Image describes one stored image (one tag, or an untagged digest).
type Image struct {
	Name     string    // e.g. "hello-world:latest"; empty for an untagged image
	Digest   string    // sha256:... of the image manifest
	Size     int64     // manifest + config + compressed layers, in bytes
	Created  time.Time // from the image config
	Platform string    // e.g. "linux/amd64"
}

// Store is a local image store rooted at a directory. It is safe for
// concurrent use by multiple goroutines and, through an flock on
// <dir>/.lock, by multiple processes.
type Store struct {
	dir  string
	path layout.Path
	mu   sync.Mutex
}

// Open opens (creating if needed) the image store in dir.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return nil, fmt.Errorf("open image store %s: %w", dir, err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, fmt.Errorf("open image store %s: %w", dir, err)
	}
	s := &Store{dir: dir, path: layout.Path(dir)}
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Staging and upload directories left by a process that crashed
	// mid-import hold nothing visible; they go now.
	if left, err := os.ReadDir(filepath.Join(dir, "tmp")); err == nil {
		for _, e := range left {
			os.RemoveAll(filepath.Join(dir, "tmp", e.Name()))
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); errors.Is(err, os.ErrNotExist) {
		if err := writeFileAtomic(dir, "oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
			return nil, fmt.Errorf("open image store %s: %w", dir, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "index.json")); errors.Is(err, os.ErrNotExist) {
		if err := s.writeIndex(&v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}); err != nil {
			return nil, fmt.Errorf("open image store %s: %w", dir, err)
		}
	}
	if _, err := s.readIndex(); err != nil {
		return nil, err
	}
	return s, nil
}

// Dir returns the store directory.
func (s *Store) Dir() string { return s.dir }

// lock takes the in-process mutex and the cross-process flock.
func (s *Store) lock() (func(), error) {
	s.mu.Lock()
	f, err := os.OpenFile(filepath.Join(s.dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("lock image store %s: %w", s.dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		s.mu.Unlock()
		return nil, fmt.Errorf("lock image store %s: %w", s.dir, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
		s.mu.Unlock()
	}, nil
}

func (s *Store) readIndex() (*v1.IndexManifest, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, "index.json"))
	if err != nil {
		return nil, fmt.Errorf("read image store index: %w", err)
	}
	im, err := v1.ParseIndexManifest(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("read image store index %s: %w", filepath.Join(s.dir, "index.json"), err)
	}
	return im, nil
}

func (s *Store) writeIndex(im *v1.IndexManifest) error {
	b, err := json.MarshalIndent(im, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(s.dir, "index.json", b)
}

// writeFileAtomic writes dir/name via a temp file, fsync and rename.
func writeFileAtomic(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}

// List returns the stored images sorted by name, then digest.
func (s *Store) List() ([]Image, error) {
	s.mu.Lock()
	im, err := s.readIndex()
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	out := make([]Image, 0, len(im.Manifests))
	for _, d := range im.Manifests {
		out = append(out, imageFromDescriptor(d))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Digest < out[j].Digest
	})
	return out, nil
}

func imageFromDescriptor(d v1.Descriptor) Image {
	img := Image{
		Name:     d.Annotations[AnnotationRefName],
		Digest:   d.Digest.String(),
		Platform: d.Annotations[annotationPlatform],
	}
	img.Size, _ = strconv.ParseInt(d.Annotations[annotationSize], 10, 64)
	if t, err := time.Parse(time.RFC3339Nano, d.Annotations[annotationCreated]); err == nil {
		img.Created = t
	}
	if img.Platform == "" && d.Platform != nil {
		img.Platform = d.Platform.String()
	}
	return img
}

// Get returns a stored image by name[:tag] (tag defaults to latest), by
// digest ("sha256:..."), or by name@digest. The returned v1.Image reads its
// blobs lazily from the store, so a concurrent Remove of the same image can
// make later reads fail.
func (s *Store) Get(ref string) (v1.Image, Image, error) {
	s.mu.Lock()
	im, err := s.readIndex()
	s.mu.Unlock()
	if err != nil {
		return nil, Image{}, err
	}
	d, display, err := findDescriptor(im, ref)
	if err != nil {
		return nil, Image{}, err
	}
	img, err := s.path.Image(d.Digest)
	if err != nil {
		return nil, Image{}, fmt.Errorf("image %s: read from store: %w", display, err)
	}
	return img, imageFromDescriptor(d), nil
}

// findDescriptor resolves ref against the index.
func findDescriptor(im *v1.IndexManifest, ref string) (v1.Descriptor, string, error) {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return v1.Descriptor{}, ref, errors.New("empty image name")
	}
	if dg, ok := parseDigestRef(ref); ok {
		for _, d := range im.Manifests {
			if d.Digest == dg {
				return d, ref, nil
			}
		}
		return v1.Descriptor{}, ref, notImported(ref)
	}
	n, err := NormalizeName(ref)
	if err != nil {
		return v1.Descriptor{}, ref, fmt.Errorf("invalid image name %q: %w", ref, err)
	}
	for _, d := range im.Manifests {
		if d.Annotations[AnnotationRefName] == n {
			return d, n, nil
		}
	}
	return v1.Descriptor{}, n, notImported(n)
}

func notImported(ref string) error {
	return fmt.Errorf("image %s is not imported; run aloft image import FILE: %w", ref, ErrNotFound)
}

// parseDigestRef accepts "sha256:<hex>" and "name@sha256:<hex>".
func parseDigestRef(ref string) (v1.Hash, bool) {
	if i := strings.LastIndex(ref, "@"); i >= 0 {
		ref = ref[i+1:]
	}
	if !strings.HasPrefix(ref, "sha256:") {
		return v1.Hash{}, false
	}
	h, err := v1.NewHash(ref)
	if err != nil {
		return v1.Hash{}, false
	}
	return h, true
}

// NormalizeName turns an image reference into the short form the store uses:
// "hello-world" → "hello-world:latest", "docker.io/library/redis:7" →
// "redis:7", "ghcr.io/org/app:v1" unchanged.
func NormalizeName(ref string) (string, error) {
	t, err := name.NewTag(ref)
	if err != nil {
		return "", err
	}
	repo := t.RepositoryStr()
	if t.RegistryStr() == name.DefaultRegistry {
		repo = strings.TrimPrefix(repo, "library/")
	} else {
		repo = t.RegistryStr() + "/" + repo
	}
	return repo + ":" + t.TagStr(), nil
}

// Remove removes an image by name[:tag] or digest. Removing by digest
// removes every tag pointing at it. Blobs no longer referenced are deleted.
func (s *Store) Remove(ref string) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	im, err := s.readIndex()
	if err != nil {
		return err
	}
	d, _, err := findDescriptor(im, ref)
	if err != nil {
		return err
	}
	_, byDigest := parseDigestRef(ref)
	kept := im.Manifests[:0:0]
	for _, m := range im.Manifests {
		if byDigest && m.Digest == d.Digest {
			continue
		}
		if !byDigest && m.Annotations[AnnotationRefName] == d.Annotations[AnnotationRefName] && m.Digest == d.Digest {
			continue
		}
		kept = append(kept, m)
	}
	im.Manifests = kept
	if err := s.writeIndex(im); err != nil {
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	return s.gc(im)
}

// gc deletes blobs not referenced from im and stale staging dirs. Caller
// holds the lock.
func (s *Store) gc(im *v1.IndexManifest) error {
	keep := map[string]bool{}
	for _, d := range im.Manifests {
		keep[d.Digest.Hex] = true
		img, err := s.path.Image(d.Digest)
		if err != nil {
			return fmt.Errorf("gc: image %s: %w", d.Digest, err)
		}
		m, err := img.Manifest()
		if err != nil {
			return fmt.Errorf("gc: image %s: %w", d.Digest, err)
		}
		keep[m.Config.Digest.Hex] = true
		for _, l := range m.Layers {
			keep[l.Digest.Hex] = true
		}
	}
	blobDir := filepath.Join(s.dir, "blobs", "sha256")
	entries, err := os.ReadDir(blobDir)
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	for _, e := range entries {
		if !keep[e.Name()] {
			if err := os.Remove(filepath.Join(blobDir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("gc: %w", err)
			}
		}
	}
	return nil
}

// ---- import ----

// candidate is one image found in an import source, before verification.
type candidate struct {
	names []string // normalised names; empty for an untagged image
	label string   // for error messages
	img   v1.Image
	err   error // set when the source could not even produce the image
	// errNamed is set when err already names the image.
	errNamed bool
}

// staged is a verified image whose blobs sit in the staging dir.
type staged struct {
	names []string
	desc  v1.Descriptor
	info  Image
}

// Import reads a `docker save` tar, an OCI image layout directory or an OCI
// image layout tar, verifies every image in it (platform, presence and
// digests of manifest, config and every layer) and stores them all. Either
// every image of the source is imported or none is.
func (s *Store) Import(path string) ([]Image, error) {
	return s.ImportWith(path, ImportOptions{})
}

// ImportWith is Import with options.
func (s *Store) ImportWith(path string, opts ImportOptions) ([]Image, error) {
	stage, err := os.MkdirTemp(filepath.Join(s.dir, "tmp"), "import-")
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	defer os.RemoveAll(stage)

	cands, err := openSource(path, stage)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	if len(cands) == 0 {
		return nil, fmt.Errorf("import %s: no images found", path)
	}
	blobs := filepath.Join(stage, "blobs")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	var done []staged
	for _, c := range cands {
		if c.err != nil && c.errNamed {
			return nil, fmt.Errorf("import %s: %w", path, c.err)
		}
		if c.err != nil {
			return nil, fmt.Errorf("import %s: image %s: %w", path, c.label, c.err)
		}
		st, err := stageImage(c, blobs)
		if err != nil {
			return nil, fmt.Errorf("import %s: %w", path, err)
		}
		done = append(done, st)
	}
	out, err := s.commit(blobs, done, opts)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	return out, nil
}

// commit moves staged blobs into the store and then publishes the index.
func (s *Store) commit(blobs string, imgs []staged, opts ImportOptions) ([]Image, error) {
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	im, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	if opts.KeepTags {
		for _, st := range imgs {
			for _, n := range st.names {
				for _, m := range im.Manifests {
					if n != "" && m.Annotations[AnnotationRefName] == n && m.Digest != st.desc.Digest {
						return nil, fmt.Errorf("image %s: %w (%s); import it under a new tag, or ask an admin of all workspaces to move the tag", n, ErrTagMoved, m.Digest)
					}
				}
			}
		}
	}
	entries, err := os.ReadDir(blobs)
	if err != nil {
		return nil, err
	}
	dst := filepath.Join(s.dir, "blobs", "sha256")
	for _, e := range entries {
		target := filepath.Join(dst, e.Name())
		if _, err := os.Stat(target); err == nil {
			continue // content-addressed: already present
		}
		if err := os.Rename(filepath.Join(blobs, e.Name()), target); err != nil {
			return nil, err
		}
	}
	dirSync(dst)

	var out []Image
	for _, st := range imgs {
		names := st.names
		if len(names) == 0 {
			names = []string{""}
		}
		for _, n := range names {
			d := st.desc
			d.Annotations = map[string]string{}
			for k, v := range st.desc.Annotations {
				d.Annotations[k] = v
			}
			if n != "" {
				d.Annotations[AnnotationRefName] = n
			}
			replaced := false
			for i, m := range im.Manifests {
				if n != "" && m.Annotations[AnnotationRefName] == n {
					im.Manifests[i] = d // the tag moves (or is rewritten identically)
					replaced = true
					break
				}
				if n == "" && m.Digest == d.Digest {
					replaced = true // untagged, already present under some name
					break
				}
			}
			if !replaced {
				im.Manifests = append(im.Manifests, d)
			}
			info := st.info
			info.Name = n
			out = append(out, info)
		}
	}
	if err := s.writeIndex(im); err != nil {
		return nil, err
	}
	if err := s.gc(im); err != nil {
		return out, err
	}
	return out, nil
}

func dirSync(dir string) {
	if f, err := os.Open(dir); err == nil {
		_ = f.Sync()
		f.Close()
	}
}

// Platform returns the platform this machine runs images for.
func Platform() string { return runtime.GOOS + "/" + runtime.GOARCH }

// stageImage verifies one image and writes its blobs to dir.
func stageImage(c candidate, dir string) (staged, error) {
	label := c.label
	fail := func(format string, a ...any) (staged, error) {
		return staged{}, fmt.Errorf("image %s: "+format, append([]any{label}, a...)...)
	}
	img := c.img
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return fail("read config: %w", err)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(rawCfg))
	if err != nil {
		return fail("parse config: %w", err)
	}
	plat := cfg.OS + "/" + cfg.Architecture
	if cfg.Variant != "" {
		plat += "/" + cfg.Variant
	}
	if cfg.OS == "" || cfg.Architecture == "" {
		return fail("config names no platform (os %q, architecture %q), this machine runs %s", cfg.OS, cfg.Architecture, Platform())
	}
	if cfg.OS != runtime.GOOS || cfg.Architecture != runtime.GOARCH {
		return staged{}, fmt.Errorf("image %s is for %s, this machine runs %s", label, plat, Platform())
	}
	m, err := img.Manifest()
	if err != nil {
		return fail("read manifest: %w", err)
	}
	rawManifest, err := img.RawManifest()
	if err != nil {
		return fail("read manifest: %w", err)
	}
	mDigest, err := img.Digest()
	if err != nil {
		return fail("manifest digest: %w", err)
	}
	if got := sha256Hash(rawManifest); got != mDigest {
		return fail("manifest does not match its digest %s (content is %s)", mDigest, got)
	}
	if got := sha256Hash(rawCfg); got != m.Config.Digest {
		return fail("config does not match its digest %s (content is %s)", m.Config.Digest, got)
	}
	if err := writeBlob(dir, mDigest, bytes.NewReader(rawManifest)); err != nil {
		return fail("write manifest: %w", err)
	}
	if err := writeBlob(dir, m.Config.Digest, bytes.NewReader(rawCfg)); err != nil {
		return fail("write config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return fail("read layers: %w", err)
	}
	if len(layers) != len(m.Layers) {
		return fail("manifest lists %d layers, image has %d", len(m.Layers), len(layers))
	}
	if len(cfg.RootFS.DiffIDs) != len(layers) {
		return fail("config lists %d layer diff IDs, manifest has %d layers", len(cfg.RootFS.DiffIDs), len(layers))
	}
	size := int64(len(rawManifest)) + int64(len(rawCfg))
	for i, l := range layers {
		want := m.Layers[i].Digest
		if err := stageLayer(dir, l, want, cfg.RootFS.DiffIDs[i]); err != nil {
			return fail("layer %d (%s): %w", i+1, want, err)
		}
		size += m.Layers[i].Size
	}
	mt, err := img.MediaType()
	if err != nil {
		return fail("media type: %w", err)
	}
	desc := v1.Descriptor{
		MediaType: mt,
		Digest:    mDigest,
		Size:      int64(len(rawManifest)),
		Platform:  &v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant},
		Annotations: map[string]string{
			annotationSize:     strconv.FormatInt(size, 10),
			annotationPlatform: plat,
		},
	}
	if !cfg.Created.IsZero() {
		desc.Annotations[annotationCreated] = cfg.Created.UTC().Format(time.RFC3339Nano)
	}
	return staged{
		names: c.names,
		desc:  desc,
		info:  Image{Digest: mDigest.String(), Size: size, Created: cfg.Created.Time, Platform: plat},
	}, nil
}

// stageLayer copies a layer's compressed bytes to dir, checking them against
// the manifest digest, and checks its uncompressed content against the
// config's diff ID.
func stageLayer(dir string, l v1.Layer, want, diffID v1.Hash) error {
	got, err := l.Digest()
	if err != nil {
		return describeReadErr(err)
	}
	if got != want {
		return fmt.Errorf("content does not match its digest (content is %s)", got)
	}
	rc, err := l.Compressed()
	if err != nil {
		return describeReadErr(err)
	}
	err = writeBlob(dir, want, rc)
	rc.Close()
	if err != nil {
		return err
	}
	urc, err := l.Uncompressed()
	if err != nil {
		return describeReadErr(err)
	}
	defer urc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, urc); err != nil {
		return fmt.Errorf("layer is corrupt: %w", describeReadErr(err))
	}
	if gotDiff := hashOf(h); gotDiff != diffID {
		return fmt.Errorf("uncompressed content is %s, config says %s: layer is corrupt", gotDiff, diffID)
	}
	return nil
}

func describeReadErr(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("layer is missing: %w", err)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("layer is truncated: %w", err)
	}
	return err
}

// writeBlob streams r to dir/<hex>, verifying the sha256 on the way.
func writeBlob(dir string, want v1.Hash, r io.Reader) error {
	if want.Algorithm != "sha256" {
		return fmt.Errorf("unsupported digest algorithm %q", want.Algorithm)
	}
	target := filepath.Join(dir, want.Hex)
	if _, err := os.Stat(target); err == nil {
		return nil
	}
	f, err := os.CreateTemp(dir, ".blob-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), r); err != nil {
		f.Close()
		return describeReadErr(err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if got := hashOf(h); got != want {
		return fmt.Errorf("content does not match its digest %s (content is %s)", want, got)
	}
	return os.Rename(f.Name(), target)
}

func sha256Hash(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

func hashOf(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}

// ---- sources ----

// openSource recognises the import source and lists the images in it. OCI
// layout tars are extracted under stage.
func openSource(path, stage string) ([]candidate, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		if _, err := os.Stat(filepath.Join(path, "index.json")); err != nil {
			return nil, errors.New("directory is not an OCI image layout (no index.json)")
		}
		return layoutCandidates(path, baseName(path))
	}
	entries, err := scanTar(path)
	if err != nil {
		return nil, err
	}
	switch {
	case entries["manifest.json"]:
		return dockerCandidates(path)
	case entries["index.json"]:
		dir := filepath.Join(stage, "src")
		if err := extractTar(path, dir); err != nil {
			return nil, err
		}
		return layoutCandidates(dir, baseName(path))
	default:
		return nil, errors.New("not a docker save archive (no manifest.json) or OCI image layout (no index.json)")
	}
}

func baseName(p string) string {
	b := filepath.Base(filepath.Clean(p))
	for _, ext := range []string{".tar.gz", ".tgz", ".tar", ".oci"} {
		b = strings.TrimSuffix(b, ext)
	}
	return b
}

// scanTar reads the whole archive once so that truncation and corruption are
// reported up front, and returns the (cleaned) names of its regular files.
func scanTar(path string) (map[string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	names := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("archive is corrupt or truncated: %w", err)
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return nil, fmt.Errorf("archive is corrupt or truncated (in %s): %w", h.Name, err)
		}
		if h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeSymlink {
			names[filepath.ToSlash(filepath.Clean(h.Name))] = true
		}
	}
	if len(names) == 0 {
		return nil, errors.New("archive is empty or not a tar file")
	}
	return names, nil
}

// extractTar extracts regular files of an OCI layout tar into dir, refusing
// paths that escape it.
func extractTar(path, dir string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("archive is corrupt or truncated: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		rel := filepath.Clean(filepath.FromSlash(h.Name))
		if filepath.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return fmt.Errorf("archive entry %q escapes the layout", h.Name)
		}
		target := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, tr)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("archive is corrupt or truncated (in %s): %w", h.Name, err)
		}
	}
}

func dockerCandidates(path string) ([]candidate, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(path) }
	mf, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, fmt.Errorf("read manifest.json: %w", err)
	}
	var out []candidate
	for i, d := range mf {
		if len(d.RepoTags) == 0 {
			if len(mf) != 1 {
				return nil, fmt.Errorf("image %d (config %s) has no tag; untagged images are only supported in single-image archives", i+1, d.Config)
			}
			img, err := tarball.Image(opener, nil)
			out = append(out, candidate{label: "config " + d.Config, img: img, err: err})
			continue
		}
		tag, err := name.NewTag(d.RepoTags[0])
		if err != nil {
			return nil, fmt.Errorf("image %d: invalid tag %q: %w", i+1, d.RepoTags[0], err)
		}
		var names []string
		for _, t := range d.RepoTags {
			n, err := NormalizeName(t)
			if err != nil {
				return nil, fmt.Errorf("image %d: invalid tag %q: %w", i+1, t, err)
			}
			names = append(names, n)
		}
		img, err := tarball.Image(opener, &tag)
		out = append(out, candidate{names: names, label: names[0], img: img, err: err})
	}
	return out, nil
}

// layoutCandidates lists the images of an OCI layout. Nested indexes
// (multi-platform images) are resolved to this machine's platform.
func layoutCandidates(dir, fallbackRepo string) ([]candidate, error) {
	ii, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("read OCI layout: %w", err)
	}
	im, err := ii.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("read OCI layout index.json: %w", err)
	}
	var out []candidate
	for _, d := range im.Manifests {
		names, err := layoutNames(d, fallbackRepo)
		if err != nil {
			return nil, err
		}
		label := d.Digest.String()
		if len(names) > 0 {
			label = names[0]
		}
		c := candidate{names: names, label: label}
		switch {
		case d.MediaType.IsIndex():
			c.img, c.err = pickPlatform(ii, d, label)
			var pe *platformError
			c.errNamed = errors.As(c.err, &pe)
		case d.MediaType.IsImage():
			c.img, c.err = ii.Image(d.Digest)
		default:
			continue // signatures, attestations, etc.
		}
		if c.err != nil {
			c.err = describeReadErr(c.err)
		}
		out = append(out, c)
	}
	return out, nil
}

func layoutNames(d v1.Descriptor, fallbackRepo string) ([]string, error) {
	ref := d.Annotations[annotationContainerdName]
	if ref == "" {
		ref = d.Annotations[AnnotationRefName]
		if ref == "" {
			return nil, nil
		}
		if !strings.ContainsAny(ref, ":/@") {
			ref = fallbackRepo + ":" + ref // ref.name holds only a tag
		}
	}
	n, err := NormalizeName(ref)
	if err != nil {
		return nil, fmt.Errorf("image %s: invalid name %q: %w", d.Digest, ref, err)
	}
	return []string{n}, nil
}

func pickPlatform(ii v1.ImageIndex, d v1.Descriptor, label string) (v1.Image, error) {
	child, err := ii.ImageIndex(d.Digest)
	if err != nil {
		return nil, err
	}
	cm, err := child.IndexManifest()
	if err != nil {
		return nil, err
	}
	var seen []string
	for _, m := range cm.Manifests {
		if !m.MediaType.IsImage() || m.Platform == nil {
			continue
		}
		if m.Platform.OS == runtime.GOOS && m.Platform.Architecture == runtime.GOARCH {
			return child.Image(m.Digest)
		}
		seen = append(seen, m.Platform.OS+"/"+m.Platform.Architecture)
	}
	return nil, &platformError{fmt.Sprintf("image %s is for %s, this machine runs %s", label, strings.Join(seen, ", "), Platform())}
}

type platformError struct{ msg string }

func (e *platformError) Error() string { return e.msg }
