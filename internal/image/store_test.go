package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// makeImage builds a small real image: one layer from an in-memory tar plus
// one random layer, with entrypoint, env and an exposed port.
func makeImage(t *testing.T, arch, msg string) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := []byte("#!/bin/sh\necho " + msg + "\n")
	if err := tw.WriteHeader(&tar.Header{Name: "hello", Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(body)
	tw.Close()
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	rnd, err := random.Layer(512, "application/vnd.oci.image.layer.v1.tar+gzip")
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer, rnd)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = arch
	cf.Created = v1.Time{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	cf.Config.Entrypoint = []string{"/hello"}
	cf.Config.Env = []string{"GREETING=" + msg}
	cf.Config.ExposedPorts = map[string]struct{}{"8080/tcp": {}}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func otherArch() string {
	if runtime.GOARCH == "arm64" {
		return "amd64"
	}
	return "arm64"
}

func writeDocker(t *testing.T, path, tag string, img v1.Image) {
	t.Helper()
	ref, err := name.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(path, ref, img); err != nil {
		t.Fatal(err)
	}
}

func writeLayout(t *testing.T, dir, refName string, img v1.Image) {
	t.Helper()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{AnnotationRefName: refName})); err != nil {
		t.Fatal(err)
	}
}

// tarDir writes dir as a tar archive at path.
func tarDir(t *testing.T, dir, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

func layerDigests(t *testing.T, img v1.Image) []string {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d.String())
	}
	return out
}

func mustDigest(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "images"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustList(t *testing.T, s *Store) []Image {
	t.Helper()
	l, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func blobNames(t *testing.T, s *Store) []string {
	t.Helper()
	es, err := os.ReadDir(filepath.Join(s.Dir(), "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func TestImportListGetRemove(t *testing.T) {
	src := t.TempDir()
	hello := makeImage(t, runtime.GOARCH, "hello")
	web := makeImage(t, runtime.GOARCH, "web")
	dockerTar := filepath.Join(src, "hello.tar")
	writeDocker(t, dockerTar, "hello-world:latest", hello)
	webDir := filepath.Join(src, "web")
	writeLayout(t, webDir, "v1", web)

	s := openStore(t)
	got, err := s.Import(dockerTar)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "hello-world:latest" {
		t.Fatalf("import docker tar = %+v", got)
	}
	if _, err := s.Import(webDir); err != nil {
		t.Fatal(err)
	}

	list := mustList(t, s)
	if len(list) != 2 {
		t.Fatalf("List = %+v", list)
	}
	if list[0].Name != "hello-world:latest" || list[1].Name != "web:v1" {
		t.Fatalf("names = %q, %q", list[0].Name, list[1].Name)
	}
	if list[1].Digest != mustDigest(t, web) {
		t.Errorf("web digest = %s, want %s", list[1].Digest, mustDigest(t, web))
	}
	for _, im := range list {
		if !strings.HasPrefix(im.Digest, "sha256:") || im.Size <= 0 || im.Platform != Platform() ||
			!im.Created.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
			t.Errorf("bad entry %+v", im)
		}
	}

	// Get by name, by default tag, by fully qualified name and by digest.
	for _, ref := range []string{"hello-world:latest", "hello-world", "docker.io/library/hello-world:latest", list[0].Digest} {
		img, info, err := s.Get(ref)
		if err != nil {
			t.Fatalf("Get(%q): %v", ref, err)
		}
		if info.Digest != list[0].Digest {
			t.Errorf("Get(%q) digest = %s", ref, info.Digest)
		}
		if !reflect.DeepEqual(layerDigests(t, img), layerDigests(t, hello)) {
			t.Errorf("Get(%q) layers differ", ref)
		}
		if d := mustDigest(t, img); d != info.Digest {
			t.Errorf("stored manifest digest %s != %s", d, info.Digest)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Config.Entrypoint[0] != "/hello" || cf.Config.Env[0] != "GREETING=hello" {
			t.Errorf("config = %+v", cf.Config)
		}
		// The layer content is readable and matches.
		ls, _ := img.Layers()
		rc, err := ls[0].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Contains(b, []byte("echo hello")) {
			t.Errorf("layer content wrong")
		}
	}
	img, _, err := s.Get("web:v1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(layerDigests(t, img), layerDigests(t, web)) {
		t.Errorf("web layers differ")
	}

	// A reopened store sees the same images.
	s2, err := Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if l := mustList(t, s2); !reflect.DeepEqual(l, list) {
		t.Errorf("reopened List = %+v", l)
	}

	// Remove by name, then by digest; blobs are collected.
	if err := s.Remove("hello-world"); err != nil {
		t.Fatal(err)
	}
	if l := mustList(t, s); len(l) != 1 || l[0].Name != "web:v1" {
		t.Fatalf("after remove: %+v", l)
	}
	_, _, err = s.Get("hello-world:latest")
	if err == nil || err.Error() != "image hello-world:latest is not imported; run aloft image import FILE: image not imported" || !errors.Is(err, ErrNotFound) {
		t.Errorf("Get removed: %v", err)
	}
	if err := s.Remove("hello-world"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove: %v", err)
	}
	if err := s.Remove(list[1].Digest); err != nil {
		t.Fatal(err)
	}
	if l := mustList(t, s); len(l) != 0 {
		t.Fatalf("after remove all: %+v", l)
	}
	if b := blobNames(t, s); len(b) != 0 {
		t.Errorf("blobs left after removing everything: %v", b)
	}
}

func TestGetNotImported(t *testing.T) {
	s := openStore(t)
	_, _, err := s.Get("hello-world")
	if err == nil || !strings.Contains(err.Error(), "image hello-world:latest is not imported; run aloft image import FILE") {
		t.Fatalf("err = %v", err)
	}
}

func TestReimportIsIdempotent(t *testing.T) {
	src := t.TempDir()
	img := makeImage(t, runtime.GOARCH, "x")
	p := filepath.Join(src, "x.tar")
	writeDocker(t, p, "example.com/team/x:1.0", img)
	s := openStore(t)
	for i := 0; i < 3; i++ {
		if _, err := s.Import(p); err != nil {
			t.Fatal(err)
		}
	}
	l := mustList(t, s)
	if len(l) != 1 || l[0].Name != "example.com/team/x:1.0" {
		t.Fatalf("List = %+v", l)
	}
	blobs := blobNames(t, s)
	if len(blobs) != 4 { // manifest, config, 2 layers
		t.Errorf("blobs = %v", blobs)
	}
	// Moving the tag to another image replaces it and collects the old blobs.
	writeDocker(t, p, "example.com/team/x:1.0", makeImage(t, runtime.GOARCH, "y"))
	if _, err := s.Import(p); err != nil {
		t.Fatal(err)
	}
	l2 := mustList(t, s)
	if len(l2) != 1 || l2[0].Digest == l[0].Digest {
		t.Fatalf("after retag: %+v", l2)
	}
	if b := blobNames(t, s); len(b) != 4 {
		t.Errorf("blobs after retag = %v", b)
	}
}

func TestImportOCILayoutTar(t *testing.T) {
	src := t.TempDir()
	img := makeImage(t, runtime.GOARCH, "oci")
	dir := filepath.Join(src, "layout")
	writeLayout(t, dir, "docker.io/library/ocitest:2", img)
	p := filepath.Join(src, "ocitest.tar")
	tarDir(t, dir, p)
	s := openStore(t)
	got, err := s.Import(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "ocitest:2" || got[0].Digest != mustDigest(t, img) {
		t.Fatalf("got %+v", got)
	}
	if _, info, err := s.Get("ocitest:2"); err != nil || info.Digest != mustDigest(t, img) {
		t.Fatalf("Get: %+v %v", info, err)
	}
}

func TestMultiImageDockerTar(t *testing.T) {
	src := t.TempDir()
	a := makeImage(t, runtime.GOARCH, "a")
	b := makeImage(t, runtime.GOARCH, "b")
	ta, _ := name.NewTag("a:1")
	ta2, _ := name.NewTag("a:latest")
	tb, _ := name.NewTag("b:1")
	p := filepath.Join(src, "multi.tar")
	if err := tarball.MultiRefWriteToFile(p, map[name.Reference]v1.Image{ta: a, ta2: a, tb: b}); err != nil {
		t.Fatal(err)
	}
	s := openStore(t)
	if _, err := s.Import(p); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, im := range mustList(t, s) {
		names = append(names, im.Name)
	}
	if !reflect.DeepEqual(names, []string{"a:1", "a:latest", "b:1"}) {
		t.Fatalf("names = %v", names)
	}
	// Removing one tag keeps the other tag's blobs.
	if err := s.Remove("a:1"); err != nil {
		t.Fatal(err)
	}
	img, _, err := s.Get("a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := img.ConfigFile(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(layerDigests(t, img), layerDigests(t, a)) {
		t.Error("a layers differ")
	}
}

func TestBadInputs(t *testing.T) {
	src := t.TempDir()
	good := makeImage(t, runtime.GOARCH, "good")
	goodTar := filepath.Join(src, "good.tar")
	writeDocker(t, goodTar, "good:1", good)

	bad := makeImage(t, runtime.GOARCH, "bad")
	badLayers := layerDigests(t, bad)

	cases := []struct {
		name    string
		prepare func(t *testing.T) string
		want    []string
	}{
		{
			name: "truncated docker tar",
			prepare: func(t *testing.T) string {
				p := filepath.Join(t.TempDir(), "trunc.tar")
				writeDocker(t, p, "bad:1", bad)
				b, _ := os.ReadFile(p)
				os.WriteFile(p, b[:len(b)/2], 0o644)
				return p
			},
			want: []string{"trunc.tar", "corrupt or truncated"},
		},
		{
			name: "flipped layer bytes in docker tar",
			prepare: func(t *testing.T) string {
				p := filepath.Join(t.TempDir(), "flip.tar")
				writeDocker(t, p, "bad:1", bad)
				b, _ := os.ReadFile(p)
				ls, _ := bad.Layers()
				rc, _ := ls[1].Compressed()
				lb, _ := io.ReadAll(rc)
				rc.Close()
				i := bytes.Index(b, lb)
				if i < 0 {
					t.Fatal("layer bytes not found in tar")
				}
				for j := len(lb) / 2; j < len(lb)/2+8; j++ {
					b[i+j] ^= 0xff
				}
				os.WriteFile(p, b, 0o644)
				return p
			},
			// docker save archives carry no compressed digests, so the one in
			// the message is that of the damaged bytes; the diff ID catches it.
			want: []string{"flip.tar", "image bad:1", "layer 2 (sha256:", "corrupt"},
		},
		{
			name: "blob deleted from layout dir",
			prepare: func(t *testing.T) string {
				dir := filepath.Join(t.TempDir(), "bad")
				writeLayout(t, dir, "1", bad)
				h, _ := v1.NewHash(badLayers[0])
				if err := os.Remove(filepath.Join(dir, "blobs", h.Algorithm, h.Hex)); err != nil {
					t.Fatal(err)
				}
				return dir
			},
			want: []string{"image bad:1", "layer 1 (" + badLayers[0] + ")", "missing"},
		},
		{
			name: "other platform",
			prepare: func(t *testing.T) string {
				p := filepath.Join(t.TempDir(), "arm.tar")
				writeDocker(t, p, "hello-world:latest", makeImage(t, otherArch(), "arm"))
				return p
			},
			want: []string{"arm.tar", "image hello-world:latest is for linux/" + otherArch() + ", this machine runs " + Platform()},
		},
		{
			name: "other platform in OCI layout tar",
			prepare: func(t *testing.T) string {
				dir := filepath.Join(t.TempDir(), "l")
				writeLayout(t, dir, "docker.io/library/hello-world:latest", makeImage(t, otherArch(), "arm"))
				p := filepath.Join(t.TempDir(), "armoci.tar")
				tarDir(t, dir, p)
				return p
			},
			want: []string{"armoci.tar", "image hello-world:latest is for linux/" + otherArch() + ", this machine runs " + Platform()},
		},
		{
			name: "not an archive",
			prepare: func(t *testing.T) string {
				p := filepath.Join(t.TempDir(), "junk.tar")
				os.WriteFile(p, bytes.Repeat([]byte("junk"), 1000), 0o644)
				return p
			},
			want: []string{"junk.tar"},
		},
		{
			name: "missing file",
			prepare: func(t *testing.T) string {
				return filepath.Join(t.TempDir(), "nope.tar")
			},
			want: []string{"nope.tar", "no such file"},
		},
		{
			// A good image and a bad one in the same archive: nothing is imported.
			name: "half-good multi-image tar",
			prepare: func(t *testing.T) string {
				p := filepath.Join(t.TempDir(), "mixed.tar")
				t1, _ := name.NewTag("fine:1")
				t2, _ := name.NewTag("arm:1")
				if err := tarball.MultiRefWriteToFile(p, map[name.Reference]v1.Image{
					t1: makeImage(t, runtime.GOARCH, "fine"), t2: makeImage(t, otherArch(), "arm"),
				}); err != nil {
					t.Fatal(err)
				}
				return p
			},
			want: []string{"mixed.tar", "image arm:1 is for linux/" + otherArch()},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			if _, err := s.Import(goodTar); err != nil {
				t.Fatal(err)
			}
			before := mustList(t, s)
			beforeBlobs := blobNames(t, s)
			p := tc.prepare(t)
			_, err := s.Import(p)
			if err == nil {
				t.Fatal("import succeeded")
			}
			t.Logf("error: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if after := mustList(t, s); !reflect.DeepEqual(after, before) {
				t.Errorf("List changed: %+v -> %+v", before, after)
			}
			if after := blobNames(t, s); !reflect.DeepEqual(after, beforeBlobs) {
				t.Errorf("blobs changed: %v -> %v", beforeBlobs, after)
			}
			if es, _ := os.ReadDir(filepath.Join(s.Dir(), "tmp")); len(es) != 0 {
				t.Errorf("staging left behind: %v", es)
			}
		})
	}
}

func TestConcurrentImports(t *testing.T) {
	src := t.TempDir()
	s := openStore(t)
	var paths []string
	for _, tag := range []string{"c1:1", "c2:1", "c3:1", "c4:1"} {
		p := filepath.Join(src, tag[:2]+".tar")
		writeDocker(t, p, tag, makeImage(t, runtime.GOARCH, tag))
		paths = append(paths, p)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(paths))
	for _, p := range paths {
		for k := 0; k < 2; k++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.Import(p); err != nil {
					errs <- err
				}
				if _, err := s.List(); err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if l := mustList(t, s); len(l) != 4 {
		t.Fatalf("List = %+v", l)
	}
	if b := blobNames(t, s); len(b) != 16 {
		t.Errorf("blobs = %d, want 16", len(b))
	}
}

func TestCorruptBlobInLayout(t *testing.T) {
	img := makeImage(t, runtime.GOARCH, "c")
	dir := filepath.Join(t.TempDir(), "c")
	writeLayout(t, dir, "1", img)
	ld := layerDigests(t, img)[1]
	h, _ := v1.NewHash(ld)
	p := filepath.Join(dir, "blobs", "sha256", h.Hex)
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 0xff
	os.WriteFile(p, b, 0o644)
	s := openStore(t)
	_, err := s.Import(dir)
	if err == nil || !strings.Contains(err.Error(), "image c:1: layer 2 ("+ld+"): content does not match its digest") {
		t.Fatalf("err = %v", err)
	}
	if l := mustList(t, s); len(l) != 0 {
		t.Fatalf("List = %+v", l)
	}
}

func TestMultiPlatformLayout(t *testing.T) {
	native := makeImage(t, runtime.GOARCH, "native")
	other := makeImage(t, otherArch(), "other")
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: otherArch()}}},
		mutate.IndexAddendum{Add: native, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
	)
	dir := filepath.Join(t.TempDir(), "multi")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{AnnotationRefName: "docker.io/library/multi:1"})); err != nil {
		t.Fatal(err)
	}
	s := openStore(t)
	got, err := s.Import(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "multi:1" || got[0].Digest != mustDigest(t, native) || got[0].Platform != Platform() {
		t.Fatalf("got %+v", got)
	}

	// An index with no image for this machine is refused.
	idx2 := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: otherArch()}}})
	dir2 := filepath.Join(t.TempDir(), "armonly")
	p2, err := layout.Write(dir2, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p2.AppendIndex(idx2, layout.WithAnnotations(map[string]string{AnnotationRefName: "armonly:1"})); err != nil {
		t.Fatal(err)
	}
	_, err = s.Import(dir2)
	want := "image armonly:1 is for linux/" + otherArch() + ", this machine runs " + Platform()
	if err == nil || !strings.HasSuffix(err.Error(), ": "+want) {
		t.Fatalf("err = %v, want %q", err, want)
	}
	if l := mustList(t, s); len(l) != 1 {
		t.Fatalf("List = %+v", l)
	}
}

// A crash mid-import leaves staging behind; the next Open removes it and
// the store's images are untouched.
func TestOpenRemovesLeftoverStaging(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := s.List()
	for _, name := range []string{"import-123/src", "upload-456"} {
		if err := os.MkdirAll(filepath.Join(dir, "tmp", name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "tmp", name, "partial"), []byte("half"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if es, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(es) != 0 {
		t.Fatalf("leftover staging kept: %v", es)
	}
	if after, _ := s.List(); len(after) != len(before) {
		t.Fatalf("images changed: %v -> %v", before, after)
	}
}
