package server

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	apiv1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/auth"
	"github.com/aloft-dev/aloft/internal/image"
	"github.com/aloft-dev/aloft/internal/store"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// imageEnv is the real API (sim clouds, controller not run) with an image
// store, one token per role, and every answer checked against openapi.json.
type imageEnv struct {
	t      *testing.T
	api    *API
	st     *store.SQLite
	srv    *httptest.Server
	router routers.Router
	tokens map[string]string // viewer, developer (workspace default), admin (all workspaces)
}

func newImageEnv(t *testing.T) *imageEnv {
	t.Helper()
	api, st := newSimAPI(t, nil)
	router, err := gorillamux.NewRouter(loadDoc(t))
	if err != nil {
		t.Fatal(err)
	}
	e := &imageEnv{t: t, api: api, st: st, router: router, tokens: map[string]string{}}
	e.srv = httptest.NewServer(api.Handler())
	t.Cleanup(e.srv.Close)
	for _, c := range []struct {
		key  string
		role auth.Role
		ws   string
	}{{"viewer", auth.Viewer, auth.DefaultWorkspace}, {"developer", auth.Developer, auth.DefaultWorkspace}, {"admin", auth.Admin, auth.AllWorkspaces}} {
		tok, err := newAPIToken(c.key, c.role, c.ws, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.CreateToken(context.Background(), tok.Token); err != nil {
			t.Fatal(err)
		}
		e.tokens[c.key] = tok.Secret
	}
	return e
}

// do sends a request as role and checks the answer against openapi.json.
func (e *imageEnv) do(role, method, path string, body io.Reader, ctype string) (int, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.tokens[role])
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	route, params, err := e.router.FindRoute(req)
	if err != nil {
		e.t.Fatalf("%s %s: not in openapi.json: %v", method, path, err)
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{ExcludeRequestBody: true}}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode,
		Header: resp.Header, Body: io.NopCloser(bytes.NewReader(b)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true}}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		e.t.Errorf("%s %s (%d): response does not match openapi.json: %v\n%s", method, path, resp.StatusCode, err, b)
	}
	return resp.StatusCode, b
}

func (e *imageEnv) importTar(role string, data []byte, filename string) (int, []byte) {
	e.t.Helper()
	path := "/api/v1/images"
	if filename != "" {
		path += "?filename=" + url.QueryEscape(filename)
	}
	return e.do(role, "POST", path, bytes.NewReader(data), "application/x-tar")
}

func (e *imageEnv) list() []apiv1.ImageInfo {
	e.t.Helper()
	code, b := e.do("viewer", "GET", "/api/v1/images", nil, "")
	if code != 200 {
		e.t.Fatalf("list images: %d %s", code, b)
	}
	return decodeItems(e.t, b)
}

func (e *imageEnv) remove(role, ref string, force bool) (int, []byte) {
	e.t.Helper()
	q := url.Values{"ref": {ref}}
	if force {
		q.Set("force", "true")
	}
	return e.do(role, "DELETE", "/api/v1/images?"+q.Encode(), nil, "")
}

// assertNoLeftovers checks that the store's scratch dir holds nothing: no
// uploaded archive, no staging directory.
func (e *imageEnv) assertNoLeftovers() {
	e.t.Helper()
	ents, err := os.ReadDir(filepath.Join(e.api.Images.Dir(), "tmp"))
	if err != nil {
		e.t.Fatal(err)
	}
	for _, x := range ents {
		e.t.Errorf("left behind in the image store: tmp/%s", x.Name())
	}
}

func (e *imageEnv) blobCount() int {
	e.t.Helper()
	ents, err := os.ReadDir(filepath.Join(e.api.Images.Dir(), "blobs", "sha256"))
	if err != nil {
		e.t.Fatal(err)
	}
	return len(ents)
}

func decodeItems(t *testing.T, b []byte) []apiv1.ImageInfo {
	t.Helper()
	var l struct {
		Items []apiv1.ImageInfo `json:"items"`
	}
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return l.Items
}

func errorOf(t *testing.T, b []byte) string {
	t.Helper()
	var er apiv1.ErrorResponse
	if err := json.Unmarshal(b, &er); err != nil || er.Error == "" {
		t.Fatalf("not an error answer: %s", b)
	}
	return er.Error
}

// testImage builds a one-layer image for arch with a file /hello saying msg.
func testImage(t *testing.T, arch, msg string) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := []byte("#!/bin/sh\necho " + msg + "\n")
	if err := tw.WriteHeader(&tar.Header{Name: "hello", Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
		t.Fatal(err)
	}
	tw.Write(body)
	tw.Close()
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	cf.Config.Entrypoint = []string{"/hello"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// dockerTar is `docker save` of img tagged tag.
func dockerTar(t *testing.T, tag string, img v1.Image) []byte {
	t.Helper()
	ref, err := name.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := tarball.Write(ref, img, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// layoutTar is an OCI image layout holding img under refName, as a tar;
// drop, if set, leaves that blob out.
func layoutTar(t *testing.T, refName string, img v1.Image, drop string) []byte {
	t.Helper()
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{image.AnnotationRefName: refName})); err != nil {
		t.Fatal(err)
	}
	if drop != "" {
		h, _ := v1.NewHash(drop)
		if err := os.Remove(filepath.Join(dir, "blobs", h.Algorithm, h.Hex)); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func otherArch() string {
	if runtime.GOARCH == "arm64" {
		return "amd64"
	}
	return "arm64"
}

func TestImagesImportListRemove(t *testing.T) {
	e := newImageEnv(t)
	if got := e.list(); len(got) != 0 {
		t.Fatalf("fresh store lists %v", got)
	}
	hello := testImage(t, runtime.GOARCH, "hello")
	code, b := e.importTar("developer", dockerTar(t, "docker.io/library/hello-world:latest", hello), "hello.tar")
	if code != http.StatusCreated {
		t.Fatalf("import docker tar: %d %s", code, b)
	}
	got := decodeItems(t, b)
	if len(got) != 1 || got[0].Name != "hello-world:latest" || got[0].Platform != "linux/"+runtime.GOARCH ||
		got[0].Size <= 0 || !strings.HasPrefix(got[0].Digest, "sha256:") || !got[0].Created.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Fatalf("import docker tar answered %+v", got)
	}
	helloDigest := got[0].Digest

	app := testImage(t, runtime.GOARCH, "app")
	code, b = e.importTar("developer", layoutTar(t, "ghcr.io/org/app:v1", app, ""), "")
	if code != http.StatusCreated {
		t.Fatalf("import OCI layout tar: %d %s", code, b)
	}
	appDigest, _ := app.Digest()
	if got := decodeItems(t, b); len(got) != 1 || got[0].Name != "ghcr.io/org/app:v1" || got[0].Digest != appDigest.String() {
		t.Fatalf("import OCI layout tar answered %+v", got)
	}
	// An OCI layout whose index names only a tag takes its repository from ?filename=.
	code, b = e.importTar("developer", layoutTar(t, "v2", app, ""), "myapp.tar")
	if code != http.StatusCreated {
		t.Fatalf("import tag-only OCI layout: %d %s", code, b)
	}
	if got := decodeItems(t, b); len(got) != 1 || got[0].Name != "myapp:v2" {
		t.Fatalf("tag-only OCI layout imported as %+v, want myapp:v2", got)
	}

	list := e.list()
	var names []string
	for _, i := range list {
		names = append(names, i.Name)
	}
	if strings.Join(names, ",") != "ghcr.io/org/app:v1,hello-world:latest,myapp:v2" {
		t.Fatalf("list: %v", names)
	}
	e.assertNoLeftovers()

	// Remove by name (refs carry ':' and '/'), by name@digest, then by digest.
	code, b = e.remove("admin", "ghcr.io/org/app:v1", false)
	if code != 200 {
		t.Fatalf("remove ghcr.io/org/app:v1: %d %s", code, b)
	}
	if got := decodeItems(t, b); len(got) != 1 || got[0].Name != "ghcr.io/org/app:v1" {
		t.Fatalf("remove answered %+v", got)
	}
	code, b = e.remove("admin", "ghcr.io/org/app:v1", false)
	if code != 404 || !strings.Contains(errorOf(t, b), "ghcr.io/org/app:v1 is not imported") {
		t.Fatalf("second remove: %d %s", code, b)
	}
	code, b = e.remove("admin", "hello-world@"+helloDigest, false)
	if code != 200 {
		t.Fatalf("remove by name@digest: %d %s", code, b)
	}
	code, b = e.remove("admin", appDigest.String(), false)
	if code != 200 {
		t.Fatalf("remove by digest: %d %s", code, b)
	}
	if got := e.list(); len(got) != 0 {
		t.Fatalf("after removing everything: %+v", got)
	}
	if n := e.blobCount(); n != 0 {
		t.Errorf("%d blobs left after removing every image", n)
	}
	code, b = e.remove("admin", "nope", false)
	if code != 404 || !strings.Contains(errorOf(t, b), "image nope:latest is not imported") {
		t.Fatalf("remove unknown image: %d %s", code, b)
	}
	for _, bad := range []string{"/api/v1/images", "/api/v1/images?ref=Bad%20Name", "/api/v1/images?ref=x&force=maybe"} {
		if code, b := e.do("admin", "DELETE", bad, nil, ""); code != 400 {
			t.Errorf("DELETE %s: %d %s, want 400", bad, code, b)
		}
	}

	// The audit log names the removed image.
	recs, err := e.st.ListAudit(context.Background(), store.AuditFilter{Action: "image.remove"})
	if err != nil || len(recs) == 0 || !strings.Contains(recs[0].Object+recs[len(recs)-1].Object, "ghcr.io/org/app:v1") {
		t.Errorf("audit records of image.remove: %+v %v", recs, err)
	}
}

func TestImageRemoveInUse(t *testing.T) {
	e := newImageEnv(t)
	ctx := context.Background()
	img := testImage(t, runtime.GOARCH, "in use")
	if code, b := e.importTar("developer", dockerTar(t, "hello-world:latest", img), ""); code != 201 {
		t.Fatalf("import: %d %s", code, b)
	}
	digest := e.list()[0].Digest
	// The same content under a second tag.
	if code, b := e.importTar("developer", dockerTar(t, "hello-world:v2", img), ""); code != 201 {
		t.Fatalf("import: %d %s", code, b)
	}
	deploy := func(ws, name, ref string) {
		t.Helper()
		if ws != auth.DefaultWorkspace {
			if err := e.st.CreateWorkspace(ctx, ws); err != nil {
				t.Fatal(err)
			}
		}
		spec := apiv1.DeploymentSpec{Name: name, Image: ref, Port: 8080, Replicas: apiv1.Replicas{Min: 1, Max: 1}}
		spec.Default()
		if _, _, _, err := e.st.ApplyDeployment(ctx, ws, spec, store.CreateOrUpdate); err != nil {
			t.Fatal(err)
		}
	}
	// docker.io/library/hello-world normalises to hello-world:latest.
	deploy("team-a", "web", "docker.io/library/hello-world")
	code, b := e.remove("admin", "hello-world:latest", false)
	if code != http.StatusConflict {
		t.Fatalf("remove in-use image: %d %s, want 409", code, b)
	}
	if msg := errorOf(t, b); !strings.Contains(msg, "hello-world:latest") || !strings.Contains(msg, "web (workspace team-a)") || !strings.Contains(msg, "force") {
		t.Errorf("409 message: %s", msg)
	}
	// By digest too: that removes both tags.
	if code, b := e.remove("admin", digest, false); code != http.StatusConflict {
		t.Fatalf("remove in-use image by digest: %d %s, want 409", code, b)
	}
	// Removing the other tag is fine: web uses :latest.
	if code, b := e.remove("admin", "hello-world:v2", false); code != 200 {
		t.Fatalf("remove unused tag: %d %s", code, b)
	}
	// A deployment being deleted does not hold the image.
	if _, err := e.st.MarkDeleted(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	deploy(auth.DefaultWorkspace, "pinned", "hello-world@"+digest)
	if code, b := e.remove("admin", "hello-world:latest", false); code != http.StatusConflict || !strings.Contains(string(b), "pinned") || strings.Contains(string(b), "web") {
		t.Fatalf("remove image pinned by digest: %d %s, want 409 naming only pinned", code, b)
	}
	// force removes it anyway.
	if code, b := e.remove("admin", "hello-world:latest", true); code != 200 {
		t.Fatalf("force remove: %d %s", code, b)
	}
	if got := e.list(); len(got) != 0 {
		t.Fatalf("after force remove: %+v", got)
	}
	recs, _ := e.st.ListAudit(ctx, store.AuditFilter{Action: "image.remove"})
	var results []string
	for _, r := range recs {
		results = append(results, r.Result)
	}
	if !strings.Contains(strings.Join(results, ","), "error 409") {
		t.Errorf("the refused removal is not audited: %v", results)
	}
}

func TestImageImportBadArchives(t *testing.T) {
	e := newImageEnv(t)
	keep := testImage(t, runtime.GOARCH, "keep")
	if code, b := e.importTar("developer", dockerTar(t, "keep:1", keep), ""); code != 201 {
		t.Fatalf("import: %d %s", code, b)
	}
	before := e.list()
	blobs := e.blobCount()

	bad := testImage(t, runtime.GOARCH, "bad")
	good := dockerTar(t, "bad:1", bad)
	ls, _ := bad.Layers()
	layerDigest, _ := ls[0].Digest()
	cases := []struct {
		name, filename string
		body           []byte
		want           []string
	}{
		{"not a tar", "junk.tar", []byte("this is not an image archive\x00\xff"), []string{"junk.tar", "corrupt"}},
		{"empty", "", nil, []string{"image.tar", "empty"}},
		{"truncated docker tar", "trunc.tar", good[:len(good)/2+7], []string{"trunc.tar", "corrupt or truncated"}},
		{"other platform", "arm.tar", dockerTar(t, "hello-world:latest", testImage(t, otherArch(), "arm")),
			[]string{"arm.tar", "image hello-world:latest is for linux/" + otherArch() + ", this machine runs " + image.Platform()}},
		{"missing layer", "gone.tar", layoutTar(t, "docker.io/library/bad:1", bad, layerDigest.String()),
			[]string{"gone.tar", "image bad:1", "layer 1 (" + layerDigest.String() + ")", "missing", "lstat blobs/sha256/" + layerDigest.Hex}},
		{"tar without an image", "other.tar", layoutlessTar(t), []string{"not a docker save archive"}},
	}
	for _, c := range cases {
		code, b := e.importTar("developer", c.body, c.filename)
		if code != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", c.name, code, b)
			continue
		}
		msg := errorOf(t, b)
		for _, w := range c.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: message %q does not mention %q", c.name, msg, w)
			}
		}
		if strings.Contains(msg, e.api.Images.Dir()) {
			t.Errorf("%s: message shows the server's path: %q", c.name, msg)
		}
	}
	if after := e.list(); len(after) != len(before) || after[0] != before[0] {
		t.Errorf("refused archives changed the store: %+v, was %+v", after, before)
	}
	if n := e.blobCount(); n != blobs {
		t.Errorf("refused archives left blobs: %d, was %d", n, blobs)
	}
	e.assertNoLeftovers()

	// Wrong content type.
	code, b := e.do("developer", "POST", "/api/v1/images", bytes.NewReader(good), "application/json")
	if code != http.StatusUnsupportedMediaType {
		t.Errorf("JSON content type: %d %s, want 415", code, b)
	}
	code, b = e.do("developer", "POST", "/api/v1/images", bytes.NewReader(good), "application/octet-stream")
	if code != http.StatusCreated {
		t.Errorf("octet-stream: %d %s, want 201", code, b)
	}
}

func layoutlessTar(t *testing.T) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "README", Mode: 0o644, Size: 2, Typeflag: tar.TypeReg})
	tw.Write([]byte("hi"))
	tw.Close()
	return buf.Bytes()
}

// onlyReader hides the length of a body so the client sends it chunked.
type onlyReader struct{ io.Reader }

func TestImageImportTooLarge(t *testing.T) {
	e := newImageEnv(t)
	img := dockerTar(t, "big:1", testImage(t, runtime.GOARCH, "big"))
	e.api.MaxImageBytes = int64(len(img)) - 1
	// Known length: refused before reading.
	code, b := e.importTar("developer", img, "")
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(errorOf(t, b), "limit") {
		t.Fatalf("over the limit: %d %s, want 413", code, b)
	}
	// Streamed (chunked): refused once the limit is crossed.
	code, b = e.do("developer", "POST", "/api/v1/images", onlyReader{bytes.NewReader(img)}, "application/x-tar")
	if code != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked over the limit: %d %s, want 413", code, b)
	}
	if got := e.list(); len(got) != 0 {
		t.Fatalf("an archive over the limit was stored: %+v", got)
	}
	if n := e.blobCount(); n != 0 {
		t.Errorf("%d blobs stored from an archive over the limit", n)
	}
	e.assertNoLeftovers()
	// Exactly at the limit is fine, chunked too.
	e.api.MaxImageBytes = int64(len(img))
	code, b = e.do("developer", "POST", "/api/v1/images", onlyReader{bytes.NewReader(img)}, "application/x-tar")
	if code != http.StatusCreated {
		t.Fatalf("at the limit: %d %s, want 201", code, b)
	}
	e.assertNoLeftovers()
}

func TestImageRoutesRoles(t *testing.T) {
	e := newImageEnv(t)
	img := dockerTar(t, "roles:1", testImage(t, runtime.GOARCH, "roles"))
	if code, _ := e.importTar("viewer", img, ""); code != http.StatusForbidden {
		t.Errorf("viewer import: %d, want 403", code)
	}
	if code, b := e.importTar("developer", img, ""); code != http.StatusCreated {
		t.Fatalf("developer import: %d %s", code, b)
	}
	if code, _ := e.remove("developer", "roles:1", false); code != http.StatusForbidden {
		t.Errorf("developer remove: %d, want 403", code)
	}
	if got := e.list(); len(got) != 1 {
		t.Fatalf("viewer list: %+v", got)
	}
	if code, b := e.remove("admin", "roles:1", false); code != 200 {
		t.Errorf("admin remove: %d %s", code, b)
	}
}

func TestImageRoutesWithoutStore(t *testing.T) {
	e := newImageEnv(t)
	e.api.Images = nil
	if code, b := e.do("viewer", "GET", "/api/v1/images", nil, ""); code != http.StatusNotImplemented {
		t.Errorf("list without a store: %d %s, want 501", code, b)
	}
}

func TestUploadName(t *testing.T) {
	for in, want := range map[string]string{"": "image.tar", "hello.tar": "hello.tar", "../../etc/passwd": "passwd", `C:\x\app.tar`: "app.tar",
		"..": "image.tar", ".hidden": "image.tar", "a\x00b": "image.tar", strings.Repeat("a", 300): "image.tar", "dir/": "dir"} {
		r := httptest.NewRequest("POST", "/api/v1/images?filename="+url.QueryEscape(in), nil)
		if got := uploadName(r); got != want {
			t.Errorf("uploadName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1 KiB", 1536: "1.5 KiB", 16 << 30: "16 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// Images are shared by all workspaces: a developer may add tags and
// re-import the same image, but only an admin of all workspaces may point an
// existing tag at another image.
func TestImageImportMovingATag(t *testing.T) {
	e := newImageEnv(t)
	first := dockerTar(t, "shared:1", testImage(t, runtime.GOARCH, "first"))
	second := dockerTar(t, "shared:1", testImage(t, runtime.GOARCH, "second"))
	if code, b := e.importTar("developer", first, ""); code != http.StatusCreated {
		t.Fatalf("first import: %d %s", code, b)
	}
	before := e.list()
	if code, b := e.importTar("developer", first, ""); code != http.StatusCreated {
		t.Fatalf("re-import of the same image: %d %s", code, b)
	}
	code, b := e.importTar("developer", second, "second.tar")
	if code != http.StatusConflict || !strings.Contains(string(b), "shared:1") || !strings.Contains(string(b), "new tag") {
		t.Fatalf("developer moving a tag: %d %s", code, b)
	}
	if after := e.list(); len(after) != 1 || after[0].Digest != before[0].Digest {
		t.Fatalf("a refused import changed the store: %+v -> %+v", before, after)
	}
	if code, b := e.importTar("admin", second, ""); code != http.StatusCreated {
		t.Fatalf("admin moving a tag: %d %s", code, b)
	}
	if after := e.list(); len(after) != 1 || after[0].Digest == before[0].Digest {
		t.Fatalf("the tag did not move: %+v", after)
	}
}
