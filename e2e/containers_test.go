package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
)

// seedSpec is the seed spec, verbatim.
const seedSpec = `apiVersion: v1
app_name: hello-world
docker_image: hello-world:latest
replicas: 3
port: 8080
`

// needContainers skips when this machine cannot run containers at all (not
// root); as root, runc must be installed (.ci/run installs it).
func needContainers(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("containers need root (network namespaces, runc)")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		if _, err := os.Stat("/usr/sbin/runc"); err != nil {
			t.Fatal("runc is not installed: apt-get install runc (.ci/run does)")
		}
	}
}

func (e *env) runcList() []string {
	e.t.Helper()
	out, err := exec.Command("runc", "--root", filepath.Join(e.data, "oci", "runc"), "list", "-q").Output()
	if err != nil {
		e.t.Fatalf("runc list: %v", err)
	}
	return strings.Fields(string(out))
}

// The seed spec runs verbatim: three container replicas of the imported
// example image, all listening on 8080 in their own namespaces, answer
// through the gateway; they survive a kill -9 of the server and are gone,
// with their namespaces, after delete.
func TestSeedSpecRunsContainers(t *testing.T) {
	needContainers(t)
	e := newEnv(t)
	out := e.mustAloft("image", "import", exampleImage)
	if !strings.Contains(out, "hello-world:latest imported") {
		t.Fatalf("import said %q", out)
	}
	var imgs []v1.ImageInfo
	if err := json.Unmarshal([]byte(e.mustAloft("image", "ls", "-o", "json")), &imgs); err != nil || len(imgs) != 1 || imgs[0].Name != "hello-world:latest" {
		t.Fatalf("image ls: %+v %v", imgs, err)
	}
	var clouds []v1.Cloud
	if err := json.Unmarshal([]byte(e.mustAloft("clouds", "-o", "json")), &clouds); err != nil {
		t.Fatal(err)
	}
	for _, c := range clouds {
		if !strings.Contains(strings.Join(c.Runtimes, ","), "oci") {
			t.Errorf("cloud %s does not offer oci: %v", c.Name, c.Runtimes)
		}
	}

	if o, errOut, code := e.aloft(seedSpec, "apply", "-f", "-", "--wait", "--timeout", "60s"); code != 0 {
		t.Fatalf("apply the seed spec: exit %d\n%s\n%s", code, o, errOut)
	}
	d := e.waitRolledOut("hello-world", 3, 30*time.Second)
	ids := map[string]bool{}
	for _, r := range d.Status.Replicas {
		ids[r.ID] = true
		if r.Endpoint != "http://127.0.0.1:8080" {
			t.Errorf("replica %s endpoint %s, want the image's port inside its namespace", r.ID, r.Endpoint)
		}
	}
	if got := e.runcList(); len(got) != 3 {
		t.Fatalf("runc runs %v, want 3 containers", got)
	}
	if n := len(mountsUnder(e.data)); n != 3 {
		t.Errorf("%d namespace mounts under the data dir, want 3", n)
	}
	answered := func() map[string]bool {
		seen := map[string]bool{}
		for i := 0; i < 30 && len(seen) < 3; i++ {
			code, replica, err := e.request("hello-world")
			if err != nil || code != 200 {
				t.Fatalf("request through the gateway: %d %v", code, err)
			}
			seen[replica] = true
		}
		return seen
	}
	if seen := answered(); len(seen) != 3 {
		t.Fatalf("answers came from %v, want all 3 replicas %v", seen, ids)
	}
	logs := e.mustAloft("logs", "hello-world")
	if !strings.Contains(logs, "POST") && !strings.Contains(logs, "/v1/completions") {
		t.Errorf("container logs lack the requests: %s", tail(logs, 500))
	}

	// kill -9 the server: the containers keep running and are adopted.
	e.kill9()
	e.start()
	d = e.waitRolledOut("hello-world", 3, 30*time.Second)
	for _, r := range d.Status.Replicas {
		if !ids[r.ID] {
			t.Errorf("replica %s is new after the restart; the containers were not adopted", r.ID)
		}
	}
	if seen := answered(); len(seen) != 3 {
		t.Fatalf("after restart answers came from %v", seen)
	}

	e.mustAloft("delete", "hello-world", "--wait")
	if got := e.runcList(); len(got) != 0 {
		t.Errorf("containers left after delete: %v", got)
	}
	if m := mountsUnder(e.data); len(m) != 0 {
		t.Errorf("namespace mounts left after delete: %v", m)
	}
	// Removing the image drops its unpacked root filesystem too.
	unpacked := func() []string {
		m, _ := filepath.Glob(filepath.Join(e.data, "oci", "rootfs", "sha256-*"))
		return m
	}
	if len(unpacked()) != 1 {
		t.Errorf("unpacked root filesystems: %v, want 1", unpacked())
	}
	e.mustAloft("image", "rm", "hello-world:latest")
	if left := unpacked(); len(left) != 0 {
		t.Errorf("root filesystem kept after image rm: %v", left)
	}
}

// A tag that is not imported: the deployment waits with a condition naming
// the image and the fix, and starts once the image is imported.
func TestImageNotImportedThenImported(t *testing.T) {
	needContainers(t)
	e := newEnv(t)
	o, errOut, code := e.aloft(seedSpec, "apply", "-f", "-", "--wait", "--timeout", "3s")
	if code != 3 {
		t.Fatalf("apply with a missing image: exit %d, want 3\n%s\n%s", code, o, errOut)
	}
	if !strings.Contains(errOut, "image hello-world:latest is not imported; run aloft image import FILE") {
		t.Errorf("wait error does not name the missing image: %s", errOut)
	}
	d := e.get("hello-world")
	found := false
	for _, c := range d.Status.Conditions {
		found = found || (c.Type == v1.ConditionPlaced && c.Status == "False" && strings.Contains(c.Message, "hello-world:latest is not imported"))
	}
	if !found {
		t.Errorf("no condition names the missing image: %+v", d.Status.Conditions)
	}
	if got := e.runcList(); len(got) != 0 {
		t.Errorf("containers run without an image: %v", got)
	}
	e.mustAloft("image", "import", exampleImage)
	e.waitRolledOut("hello-world", 3, 90*time.Second)
}

// A corrupt archive is refused with the problem named, and nothing is stored.
func TestImageImportBadArchive(t *testing.T) {
	e := newEnv(t)
	bad := filepath.Join(t.TempDir(), "broken.tar")
	data, err := os.ReadFile(exampleImage)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	o, errOut, code := e.aloft("", "image", "import", bad)
	if code != 1 || !strings.Contains(errOut, "broken.tar") {
		t.Fatalf("import of a truncated archive: exit %d\n%s\n%s", code, o, errOut)
	}
	imgs, err := e.c.ListImages(context.Background())
	if err != nil || len(imgs) != 0 {
		t.Fatalf("after a failed import: %+v %v", imgs, err)
	}
	if _, errOut, code := e.aloft("", "image", "rm", "hello-world:latest"); code != 1 || !strings.Contains(errOut, "not imported") {
		t.Errorf("rm of a missing image: exit %d %s", code, errOut)
	}
}
