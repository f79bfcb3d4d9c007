package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/image"
	"github.com/google/go-containerregistry/pkg/name"
	cr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// fakeImageServer serves the three image routes over a real image store and
// records what the CLI sent.
type fakeImageServer struct {
	st *image.Store
	mu sync.Mutex
	// Per import: the Content-Length, the Expect header and ?filename=.
	lengths   []int64
	expects   []string
	filenames []string
	forced    []bool
}

func (f *fakeImageServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	items := func(code int, imgs []image.Image) {
		out := []v1.ImageInfo{}
		for _, i := range imgs {
			out = append(out, v1.ImageInfo{Name: i.Name, Digest: i.Digest, Size: i.Size, Created: i.Created, Platform: i.Platform})
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]any{"items": out})
	}
	fail := func(code int, err error) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(v1.ErrorResponse{Error: err.Error()})
	}
	switch r.Method {
	case "GET":
		imgs, err := f.st.List()
		if err != nil {
			fail(500, err)
			return
		}
		items(200, imgs)
	case "POST":
		fn := r.URL.Query().Get("filename")
		f.mu.Lock()
		f.lengths, f.expects, f.filenames = append(f.lengths, r.ContentLength), append(f.expects, r.Header.Get("Expect")), append(f.filenames, fn)
		f.mu.Unlock()
		dir, _ := os.MkdirTemp("", "upload-")
		defer os.RemoveAll(dir)
		p := filepath.Join(dir, filepath.Base(fn))
		out, _ := os.Create(p)
		io.Copy(out, r.Body)
		out.Close()
		imgs, err := f.st.Import(p)
		if err != nil {
			fail(400, err)
			return
		}
		items(201, imgs)
	case "DELETE":
		ref := r.URL.Query().Get("ref")
		f.mu.Lock()
		f.forced = append(f.forced, r.URL.Query().Get("force") == "true")
		f.mu.Unlock()
		_, info, err := f.st.Get(ref)
		if err == nil {
			err = f.st.Remove(ref)
		}
		if errors.Is(err, image.ErrNotFound) {
			fail(404, err)
			return
		}
		if err != nil {
			fail(500, err)
			return
		}
		items(200, []image.Image{info})
	}
}

func runCLI(t *testing.T, server string, args ...string) (string, error) {
	t.Helper()
	t.Setenv("ALOFT_CONFIG", filepath.Join(t.TempDir(), "config.json"))
	t.Setenv("ALOFT_TOKEN", "aloft_test")
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(io.Discard)
	root.SetArgs(append([]string{"--server", server}, args...))
	err := root.Execute()
	return out.String(), err
}

func cliTestImage(t *testing.T) cr.Image {
	t.Helper()
	l, err := random.Layer(256, "application/vnd.oci.image.layer.v1.tar+gzip")
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = cr.Time{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestImageCommands(t *testing.T) {
	st, err := image.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeImageServer{st: st}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	src := t.TempDir()

	// A docker save archive.
	img := cliTestImage(t)
	archive := filepath.Join(src, "hello.tar")
	if err := tarball.WriteToFile(archive, name.MustParseReference("hello-world:latest").(name.Tag), img); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, srv.URL, "image", "import", archive)
	if err != nil {
		t.Fatalf("image import FILE: %v", err)
	}
	if !strings.HasPrefix(out, "image/hello-world:latest imported (") || !strings.Contains(out, "linux/"+runtime.GOARCH) {
		t.Errorf("image import FILE printed %q", out)
	}
	fi, _ := os.Stat(archive)
	if fake.lengths[0] != fi.Size() || fake.expects[0] != "100-continue" || fake.filenames[0] != "hello.tar" {
		t.Errorf("import FILE sent length %d (file %d), Expect %q, filename %q", fake.lengths[0], fi.Size(), fake.expects[0], fake.filenames[0])
	}

	// An OCI layout directory, in a subdirectory: streamed as a tar with
	// paths relative to it; its tag-only ref name takes the directory name.
	dir := filepath.Join(src, "nested", "myapp")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(cliTestImage(t), layout.WithAnnotations(map[string]string{image.AnnotationRefName: "v2"})); err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, srv.URL, "image", "import", dir)
	if err != nil {
		t.Fatalf("image import DIR: %v", err)
	}
	if !strings.HasPrefix(out, "image/myapp:v2 imported") {
		t.Errorf("image import DIR printed %q", out)
	}
	if fake.lengths[1] != -1 || fake.filenames[1] != "myapp.tar" {
		t.Errorf("import DIR sent length %d, filename %q; want a stream named myapp.tar", fake.lengths[1], fake.filenames[1])
	}
	if _, err := runCLI(t, srv.URL, "image", "import", src); err == nil || !strings.Contains(err.Error(), "not an OCI image layout directory") {
		t.Errorf("import of a plain directory: %v", err)
	}
	if _, err := runCLI(t, srv.URL, "image", "import", filepath.Join(src, "nope.tar")); err == nil {
		t.Error("import of a missing file succeeded")
	}

	// ls: table and JSON.
	out, err = runCLI(t, srv.URL, "image", "ls")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "NAME DIGEST SIZE CREATED PLATFORM" {
		t.Fatalf("image ls printed %q", out)
	}
	row := strings.Fields(lines[1])
	if row[0] != "hello-world:latest" || len(row[1]) != 12 || !strings.HasSuffix(row[2], "kB") || row[len(row)-1] != "linux/"+runtime.GOARCH {
		t.Errorf("image ls row %q", lines[1])
	}
	out, err = runCLI(t, srv.URL, "image", "ls", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var listed []v1.ImageInfo
	if err := json.Unmarshal([]byte(out), &listed); err != nil || len(listed) != 2 || listed[1].Name != "myapp:v2" {
		t.Fatalf("image ls -o json: %v %s", err, out)
	}
	if row[1] != strings.TrimPrefix(listed[0].Digest, "sha256:")[:12] {
		t.Errorf("image ls DIGEST %q is not the first 12 hex digits of %s", row[1], listed[0].Digest)
	}

	// rm.
	out, err = runCLI(t, srv.URL, "image", "rm", "hello-world", "--force")
	if err != nil || out != "image/hello-world:latest removed\n" || !fake.forced[0] {
		t.Errorf("image rm --force: %q %v (forced %v)", out, err, fake.forced)
	}
	if _, err := runCLI(t, srv.URL, "image", "rm", "hello-world"); err == nil || !strings.Contains(err.Error(), "not imported") {
		t.Errorf("second image rm: %v", err)
	}
	if _, err := runCLI(t, srv.URL, "image", "rm"); !isUsage(err) {
		t.Errorf("image rm without a ref: %v, want a usage error", err)
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 999: "999B", 1000: "1.0kB", 7300: "7.3kB", 12_500_000: "12.5MB", 999_990: "1.0MB", 16 << 30: "17.2GB"} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", n, got, want)
		}
	}
	if got := shortDigest("sha256:0123456789abcdef0123"); got != "0123456789ab" {
		t.Errorf("shortDigest = %q", got)
	}
}
