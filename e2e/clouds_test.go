package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const cloudsYAML = `clouds:
- name: eu-1
  provider: local
  region: eu-west
  labels: {jurisdiction: eu}
  capacity: {cpu: 2, memory: 4Gi}
  prices: {cpu: 0.10, memoryGiB: 0.01}
- name: us-1
  provider: local
  region: us-east
  labels: {jurisdiction: us}
  capacity: {cpu: 8, memory: 16Gi}
  prices: {cpu: 0.02, memoryGiB: 0.002}
`

// A clouds file replaces the default clouds; label rules and capacity hold.
func TestCloudsFileLabelsAndCapacity(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clouds.yaml")
	if err := os.WriteFile(path, []byte(cloudsYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, "--clouds", path)
	if out := e.mustAloft("clouds"); !strings.Contains(out, "eu-1") || strings.Contains(out, "local-a") {
		t.Fatalf("clouds from the file not in use:\n%s", out)
	}
	// Residency: only eu-1 qualifies, though us-1 is cheaper; eu-1 fits 2 replicas of 1 CPU.
	e.mustAloft("apply", "-f", e.writeSpec("eu", `name: eu-only
command: [aloft-completions]
replicas: 3
resources: {cpu: "1", memory: 256Mi}
placement: {labels: {jurisdiction: eu}}
health: {path: /healthz, periodSeconds: 1}
`))
	e.waitFor("two replicas on eu-1 and one unplaceable", 30*time.Second, func() (bool, string) {
		d := e.get("eu-only")
		c := cloudsOf(d)
		placed := false
		for _, cd := range d.Status.Conditions {
			placed = placed || (cd.Type == "Placed" && cd.Status == "False" && strings.Contains(cd.Message, "cannot be placed"))
		}
		return c["eu-1"] == 2 && c["us-1"] == 0 && d.Status.ReadyReplicas == 2 && placed, ""
	})
	evs := e.mustAloft("events", "eu-only")
	if !strings.Contains(evs, "us-1: label jurisdiction=eu required") || !strings.Contains(evs, "PlacementFailed") {
		t.Errorf("events do not explain the placement:\n%s", evs)
	}
}

// A bad clouds file stops the server with an error naming the field.
func TestBadCloudsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clouds.yaml")
	os.WriteFile(path, []byte("clouds:\n- name: x\n  provider: local\n  regoin: here\n  capacity: {cpu: 1, memory: 1Gi}\n"), 0o644)
	cmd := exec.Command(filepath.Join(binDir, "aloft"), "server", "--data", t.TempDir(), "--clouds", path, "--listen", freePort(t), "--gateway-listen", freePort(t))
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("server started with a bad clouds file:\n%s", out)
	}
	if !strings.Contains(string(out), `did you mean "region"`) {
		t.Errorf("error does not name the field:\n%s", out)
	}
}
