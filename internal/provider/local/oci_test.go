package local

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/image"
	"github.com/aloft-dev/aloft/internal/provider"
)

var (
	ctrHelperOnce sync.Once
	ctrHelperBin  string
	ctrHelperErr  error
)

// ctrHelper builds testdata/ctrhelper as a static binary, once per test run.
func ctrHelper(t *testing.T) string {
	t.Helper()
	ctrHelperOnce.Do(func() {
		dir, err := os.MkdirTemp("", "aloft-ctrhelper")
		if err != nil {
			ctrHelperErr = err
			return
		}
		ctrHelperBin = filepath.Join(dir, "ctrhelper")
		cmd := exec.Command("go", "build", "-o", ctrHelperBin, "./testdata/ctrhelper")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			ctrHelperErr = err
			ctrHelperBin = string(out)
		}
	})
	if ctrHelperErr != nil {
		t.Fatalf("build ctrhelper: %v\n%s", ctrHelperErr, ctrHelperBin)
	}
	return ctrHelperBin
}

// ociEnv is a provider that runs containers, with an image store holding
// the ctrhelper image as "ctrhelper:latest". Tests skip when containers
// cannot run here (not root, no runc), saying why.
type ociEnv struct {
	dir    string
	images *image.Store
	oci    *OCI
}

func newOCIEnv(t *testing.T) *ociEnv {
	t.Helper()
	dir := t.TempDir()
	images, err := image.Open(filepath.Join(dir, "images"))
	if err != nil {
		t.Fatal(err)
	}
	o, err := NewOCI(filepath.Join(dir, "oci"), images, "")
	if err != nil {
		t.Fatal(err)
	}
	if !o.usable() {
		t.Skipf("containers cannot run here: %s", o.Unavailable)
	}
	e := &ociEnv{dir: dir, images: images, oci: o}
	e.importImage(t, "ctrhelper:latest")
	return e
}

// importImage builds an image of ctrhelper (entrypoint /app/ctrhelper, cmd
// "from-image", env FOO=image) and imports it under ref.
func (e *ociEnv) importImage(t *testing.T, ref string) {
	t.Helper()
	bin, err := os.ReadFile(ctrHelper(t))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "app/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777},
		{Name: "app/ctrhelper", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin))},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	tw.Write(bin)
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
	img, err = mutate.ConfigFile(img, &ggcr.ConfigFile{
		OS: "linux", Architecture: goarch(),
		Config: ggcr.Config{Entrypoint: []string{"/app/ctrhelper"}, Cmd: []string{"from-image"}, Env: []string{"FOO=image", "PATH=/app"}, WorkingDir: "/app"},
		RootFS: ggcr.RootFS{Type: "layers", DiffIDs: mustDiffIDs(t, layer)},
	})
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "img.tar")
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		t.Fatal(err)
	}
	if _, err := e.images.Import(path); err != nil {
		t.Fatal(err)
	}
}

func goarch() string { return strings.TrimPrefix(image.Platform(), "linux/") }

func mustDiffIDs(t *testing.T, l ggcr.Layer) []ggcr.Hash {
	d, err := l.DiffID()
	if err != nil {
		t.Fatal(err)
	}
	return []ggcr.Hash{d}
}

func (e *ociEnv) provider(t *testing.T) *Provider {
	opts := testOptions(filepath.Join(e.dir, "cloud"))
	opts.OCI = e.oci
	return newProvider(t, opts)
}

func ctrReplica(id string, env ...v1.EnvVar) provider.Replica {
	return provider.Replica{
		ID: id, Deployment: "hello", Revision: 1,
		Spec: v1.DeploymentSpec{
			Name: "hello", Image: "ctrhelper:latest", Port: 8080,
			Env:    env,
			Health: v1.HealthCheck{Path: "/healthz"},
		},
		Env: []string{"ALOFT_EXTRA=yes"},
	}
}

// get GETs path from a container replica through the provider's dialer.
func ctrGet(t *testing.T, p *Provider, inst provider.Instance, path string) (string, error) {
	t.Helper()
	dial := p.Dialer(inst.ID)
	if dial == nil {
		t.Fatalf("no dialer for container replica %s", inst.ID)
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, DialContext: dial}}
	resp, err := c.Get(inst.Endpoint + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func mountedAt(t *testing.T, path string) bool {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && fields[4] == path {
			return true
		}
	}
	return false
}

func TestOCIRuntimesReported(t *testing.T) {
	e := newOCIEnv(t)
	p := e.provider(t)
	if got := strings.Join(p.Runtimes(), ","); got != "process,oci" {
		t.Fatalf("runtimes = %s, want process,oci", got)
	}
	if m := p.MissingRuntimes(); len(m) != 0 {
		t.Fatalf("missing runtimes = %v", m)
	}
	// A provider without the runtime says why.
	q := newProvider(t, testOptions(t.TempDir()))
	if got := strings.Join(q.Runtimes(), ","); got != "process" {
		t.Fatalf("runtimes without OCI = %s", got)
	}
	if why := q.MissingRuntimes()["oci"]; why == "" {
		t.Fatal("no reason for the missing oci runtime")
	}
	u := newProvider(t, Options{Cloud: "c", Dir: t.TempDir(), OCI: &OCI{Unavailable: "runc not found (install the runc package)"}})
	if why := u.MissingRuntimes()["oci"]; why != "runc not found (install the runc package)" {
		t.Fatalf("missing oci reason = %q", why)
	}
	_, err := u.Start(context.Background(), ctrReplica("c1"))
	if err == nil || !strings.Contains(err.Error(), "runc not found") {
		t.Fatalf("start on a cloud without runc: %v", err)
	}
}

// Three replicas of one image, all listening on 8080, run side by side, each
// in its own namespace, with the image's entrypoint, the spec's env over the
// image's, a read-only root and a writable /tmp.
func TestOCIThreeReplicasSamePort(t *testing.T) {
	e := newOCIEnv(t)
	p := e.provider(t)
	ctx := context.Background()
	ids := []string{"hello-a", "hello-b", "hello-c"}
	for _, id := range ids {
		if _, err := p.Start(ctx, ctrReplica(id, v1.EnvVar{Name: "FOO", Value: "spec"})); err != nil {
			t.Fatalf("start %s: %v", id, err)
		}
	}
	for _, id := range ids {
		inst := waitReady(t, p, id)
		if inst.Endpoint != "http://127.0.0.1:8080" {
			t.Errorf("%s endpoint = %s", id, inst.Endpoint)
		}
		body, err := ctrGet(t, p, inst, "/whoami")
		if err != nil {
			t.Fatalf("whoami %s: %v", id, err)
		}
		want := "host=" + id + " foo=spec argv=from-image root-writable=false tmp-writable=true pid=1"
		if strings.TrimSpace(body) != want {
			t.Errorf("%s answered %q, want %q", id, body, want)
		}
		h := handleOf(t, inst)
		if h.Runtime != "oci" || !strings.HasPrefix(h.Image, "sha256:") || h.Netns == "" {
			t.Errorf("%s handle = %+v", id, h)
		}
		if !mountedAt(t, h.Netns) {
			t.Errorf("%s: network namespace %s is not pinned", id, h.Netns)
		}
	}
	// The host's own 8080 is not theirs.
	if c, err := net.DialTimeout("tcp", "127.0.0.1:8080", time.Second); err == nil {
		c.Close()
		t.Log("something on the host listens on 8080; not asserting isolation through it")
	}
	logs := readLogs(t, p, "hello-b", provider.LogOptions{})
	if !strings.Contains(logs, "start hello-b argv=from-image port=8080") {
		t.Errorf("logs of hello-b: %q", logs)
	}
	for _, id := range ids {
		inst, _ := p.Get(id)
		h := handleOf(t, inst)
		if err := p.Stop(ctx, id, 5*time.Second); err != nil {
			t.Fatalf("stop %s: %v", id, err)
		}
		if mountedAt(t, h.Netns) {
			t.Errorf("%s: namespace still mounted after stop", id)
		}
		if _, err := os.Stat(h.Netns); !os.IsNotExist(err) {
			t.Errorf("%s: namespace file left after stop: %v", id, err)
		}
		if !processGone(h.PID) {
			t.Errorf("%s: runc (pid %d) still runs", id, h.PID)
		}
		if _, err := e.oci.Runc.State(ctx, id); err == nil {
			t.Errorf("%s: runc still knows the container", id)
		}
	}
	if got := readLogs(t, p, "hello-a", provider.LogOptions{}); !strings.Contains(got, "got SIGTERM, shutting down") {
		t.Errorf("hello-a did not get SIGTERM: %q", got)
	}
}

// The spec's command and args replace the image's entrypoint and cmd.
func TestOCICommandOverride(t *testing.T) {
	e := newOCIEnv(t)
	p := e.provider(t)
	r := ctrReplica("hello-cmd")
	r.Spec.Command = []string{"/app/ctrhelper"}
	r.Spec.Args = []string{"x", "y"}
	if _, err := p.Start(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	inst := waitReady(t, p, "hello-cmd")
	body, err := ctrGet(t, p, inst, "/whoami")
	if err != nil || !strings.Contains(body, "foo=image argv=x,y ") {
		t.Fatalf("whoami = %q, %v", body, err)
	}
}

func TestOCICrashRestart(t *testing.T) {
	e := newOCIEnv(t)
	p := e.provider(t)
	if _, err := p.Start(context.Background(), ctrReplica("hello-crash")); err != nil {
		t.Fatal(err)
	}
	inst := waitReady(t, p, "hello-crash")
	ctrGet(t, p, inst, "/crash") // the connection drops
	inst = waitInstance(t, p, "hello-crash", "to restart and be Ready", func(i provider.Instance) bool {
		return i.Restarts == 1 && i.State == v1.ReplicaReady
	})
	if body, err := ctrGet(t, p, inst, "/whoami"); err != nil || !strings.Contains(body, "host=hello-crash") {
		t.Fatalf("after restart: %q %v", body, err)
	}
	logs := readLogs(t, p, "hello-crash", provider.LogOptions{})
	if strings.Count(logs, "start hello-crash") != 2 || !strings.Contains(logs, "crashing now") {
		t.Fatalf("logs: %q", logs)
	}
}

func TestOCIStopKillsAfterGrace(t *testing.T) {
	e := newOCIEnv(t)
	p := e.provider(t)
	if _, err := p.Start(context.Background(), ctrReplica("hello-stubborn", v1.EnvVar{Name: "IGNORE_TERM", Value: "1"})); err != nil {
		t.Fatal(err)
	}
	inst := waitReady(t, p, "hello-stubborn")
	h := handleOf(t, inst)
	start := time.Now()
	if err := p.Stop(context.Background(), "hello-stubborn", 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Errorf("stop took %v, less than the grace period", el)
	}
	if !processGone(h.PID) {
		t.Error("runc still runs")
	}
	if _, err := e.oci.Runc.State(context.Background(), "hello-stubborn"); err == nil {
		t.Error("container still exists")
	}
	if got := readLogs(t, p, "hello-stubborn", provider.LogOptions{}); !strings.Contains(got, "got SIGTERM, ignoring it") {
		t.Errorf("logs: %q", got)
	}
}

// A later server adopts a running container from its handle; a container
// whose runc is gone is reported gone and Remove cleans it up.
func TestOCIAdopt(t *testing.T) {
	e := newOCIEnv(t)
	opts := testOptions(filepath.Join(e.dir, "cloud"))
	opts.OCI = e.oci
	p1, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := ctrReplica("hello-adopt")
	if _, err := p1.Start(ctx, r); err != nil {
		t.Fatal(err)
	}
	inst := waitReady(t, p1, "hello-adopt")
	before, _ := ctrGet(t, p1, inst, "/whoami")
	p1.Close()

	p2 := newProvider(t, opts)
	got, err := p2.Adopt(ctx, r, inst.Handle)
	if err != nil {
		t.Fatalf("adopt: %v", err)
	}
	got = waitReady(t, p2, got.ID)
	after, err := ctrGet(t, p2, got, "/whoami")
	if err != nil || after != before {
		t.Fatalf("adopted container answered %q (%v), before %q: not the same process", after, err, before)
	}
	h := handleOf(t, got)
	if err := p2.Stop(ctx, "hello-adopt", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if mountedAt(t, h.Netns) || !processGone(h.PID) {
		t.Fatal("stop after adopt left the namespace or runc behind")
	}
	if _, err := p2.Adopt(ctx, r, inst.Handle); err == nil {
		t.Fatal("adopted a stopped container")
	}
}

// A server that died after starting a container but before recording its
// handle leaves a container behind; Remove by id alone cleans it up.
func TestOCIRemoveCleansUpUnrecorded(t *testing.T) {
	e := newOCIEnv(t)
	opts := testOptions(filepath.Join(e.dir, "cloud"))
	opts.OCI = e.oci
	p1, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p1.Start(context.Background(), ctrReplica("hello-lost")); err != nil {
		t.Fatal(err)
	}
	inst := waitReady(t, p1, "hello-lost")
	h := handleOf(t, inst)
	p1.Close()

	p2 := newProvider(t, opts)
	if err := p2.Remove("hello-lost"); err != nil {
		t.Fatalf("remove: %v", err)
	}
	waitFor(t, 10*time.Second, "runc to exit", func() bool { return processGone(h.PID) })
	if mountedAt(t, h.Netns) {
		t.Error("namespace still mounted")
	}
	if _, err := e.oci.Runc.State(context.Background(), "hello-lost"); err == nil {
		t.Error("container still exists")
	}
	if _, err := os.Stat(filepath.Join(opts.Dir, "hello-lost")); !os.IsNotExist(err) {
		t.Errorf("replica dir left: %v", err)
	}
}

func TestOCIImageNotImported(t *testing.T) {
	e := newOCIEnv(t)
	p := e.provider(t)
	r := ctrReplica("hello-missing")
	r.Spec.Image = "nope:1"
	_, err := p.Start(context.Background(), r)
	if err == nil || !strings.Contains(err.Error(), "nope:1 is not imported") {
		t.Fatalf("start with a missing image: %v", err)
	}
	if _, err := p.Get("hello-missing"); err == nil {
		t.Fatal("a failed start left a replica")
	}
}

// The unpacked root filesystem of an image removed from the store stays
// while a container runs from it and goes when the last one stops.
func TestOCIPruneRootfs(t *testing.T) {
	e := newOCIEnv(t)
	p := e.provider(t)
	ctx := context.Background()
	if _, err := p.Start(ctx, ctrReplica("hello-prune")); err != nil {
		t.Fatal(err)
	}
	waitReady(t, p, "hello-prune")
	digests, err := e.oci.Rootfs.List()
	if err != nil || len(digests) != 1 {
		t.Fatalf("rootfs cache: %v %v", digests, err)
	}
	e.oci.Prune()
	if got, _ := e.oci.Rootfs.List(); len(got) != 1 {
		t.Fatal("pruned the rootfs of an imported image")
	}
	if err := e.images.Remove("ctrhelper:latest"); err != nil {
		t.Fatal(err)
	}
	e.oci.Prune()
	if got, _ := e.oci.Rootfs.List(); len(got) != 1 {
		t.Fatal("pruned the rootfs a running container uses")
	}
	if err := p.Stop(ctx, "hello-prune", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.oci.Rootfs.List(); len(got) != 0 {
		t.Fatalf("rootfs of a removed image kept after its last container stopped: %v", got)
	}
}

// A replica this provider does not run cannot be dialed: the gateway must not
// fall back to the host's port.
func TestDialerOfUnknownReplicaFails(t *testing.T) {
	p := newProvider(t, testOptions(t.TempDir()))
	dial := p.Dialer("gone-1")
	if dial == nil {
		t.Fatal("no dialer for an unknown replica: the gateway would dial the host")
	}
	if c, err := dial(context.Background(), "tcp", "127.0.0.1:1"); err == nil {
		c.Close()
		t.Fatal("dialed a replica that does not run")
	}
}

// resources become cgroup limits where the host allows them.
func TestOCICgroupLimits(t *testing.T) {
	e := newOCIEnv(t)
	if e.oci.NoLimits != "" {
		t.Skipf("cgroup limits cannot be applied here: %s", e.oci.NoLimits)
	}
	p := e.provider(t)
	r := ctrReplica("hello-limits")
	r.Spec.Resources = v1.Resources{CPU: "0.5", Memory: "96Mi"}
	if _, err := p.Start(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	waitReady(t, p, "hello-limits")
	mem, cpu := cgroupLimits(t, "aloft/hello-limits")
	if mem != 96<<20 {
		t.Errorf("memory limit %d, want %d", mem, 96<<20)
	}
	if cpu != 0.5 {
		t.Errorf("cpu limit %.3f cores, want 0.5", cpu)
	}
}

// cgroupLimits reads the memory limit (bytes) and CPU quota (cores) of a
// cgroup path under cgroup v1 or v2.
func cgroupLimits(t *testing.T, path string) (int64, float64) {
	t.Helper()
	read := func(f string) string {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("read %s: %v", f, err)
		}
		return strings.TrimSpace(string(b))
	}
	atoi := func(s string) int64 {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("not a number: %q", s)
		}
		return n
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		mem := atoi(read("/sys/fs/cgroup/" + path + "/memory.max"))
		f := strings.Fields(read("/sys/fs/cgroup/" + path + "/cpu.max"))
		return mem, float64(atoi(f[0])) / float64(atoi(f[1]))
	}
	mem := atoi(read("/sys/fs/cgroup/memory/" + path + "/memory.limit_in_bytes"))
	quota := atoi(read("/sys/fs/cgroup/cpu/" + path + "/cpu.cfs_quota_us"))
	period := atoi(read("/sys/fs/cgroup/cpu/" + path + "/cpu.cfs_period_us"))
	return mem, float64(quota) / float64(period)
}

// Where the host cannot apply limits, the replica runs without them and its
// status says so.
func TestOCINoLimitsSaysSo(t *testing.T) {
	e := newOCIEnv(t)
	e.oci.NoLimits = "no cgroup v1 memory hierarchy at /sys/fs/cgroup/memory"
	p := e.provider(t)
	if _, err := p.Start(context.Background(), ctrReplica("hello-nolimits")); err != nil {
		t.Fatal(err)
	}
	inst := waitReady(t, p, "hello-nolimits")
	if !strings.Contains(inst.Message, "resource limits not applied: no cgroup v1 memory hierarchy") {
		t.Errorf("message %q does not say limits are missing", inst.Message)
	}
	if h := handleOf(t, inst); h.Limits != nil {
		t.Errorf("limits recorded though not applied: %+v", h.Limits)
	}
}
