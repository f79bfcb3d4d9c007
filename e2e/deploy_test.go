package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
)

// The example spec from examples/ deploys across all three local clouds and
// answers real completions, plain and streamed, through the gateway.
func TestDeployExampleAcrossThreeClouds(t *testing.T) {
	e := newEnv(t)
	spec, err := os.ReadFile("../examples/completions/aloft.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code := e.aloft(string(spec), "apply", "-f", "-", "--wait", "--timeout", "60s")
	if code != 0 {
		t.Fatalf("apply exit %d: %s %s", code, out, errOut)
	}
	for _, want := range []string{"completions", "local-a", "local-b", "local-c", "Ready", "COST/HOUR"} {
		if !strings.Contains(out, want) {
			t.Errorf("apply --wait output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "ready in") {
		t.Errorf("--wait showed no progress: %s", errOut)
	}
	d := e.waitRolledOut("completions", 3, 30*time.Second)
	if got := cloudsOf(d); len(got) != 3 {
		t.Fatalf("replicas not spread over three clouds: %v", got)
	}
	for _, r := range d.Status.Replicas {
		if r.Region == "" || r.Endpoint == "" || r.StartedAt == nil || r.HourlyCost <= 0 {
			t.Errorf("replica status incomplete: %+v", r)
		}
	}

	seen := map[string]int{}
	for range 30 {
		code, replica, err := e.request("completions")
		if err != nil || code != 200 {
			t.Fatalf("request through gateway: %d %v", code, err)
		}
		seen[replica]++
	}
	if len(seen) < 2 {
		t.Errorf("gateway did not balance across replicas: %v", seen)
	}

	// Header routing and streaming: events arrive one by one, then [DONE].
	req, _ := http.NewRequest("POST", "http://"+e.gateway+"/v1/completions",
		strings.NewReader(`{"prompt":"The Queen","max_tokens":6,"stream":true}`))
	req.Header.Set("X-Aloft-Deployment", "completions")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("stream content type %q", ct)
	}
	var events []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			events = append(events, line)
		}
	}
	if len(events) != 7 || events[6] != "[DONE]" {
		t.Fatalf("stream events: %q", events)
	}

	// Unknown deployment: 404 JSON from the gateway.
	code, _, _ = e.request("nope")
	if code != 404 {
		t.Errorf("unknown deployment answered %d", code)
	}

	// Metrics are exported.
	m, err := e.do("GET", "/metrics", "", "")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(m.Body)
	m.Body.Close()
	for _, name := range []string{"aloft_gateway_requests_total", "aloft_gateway_request_duration_seconds", "aloft_replicas", "aloft_reconcile_duration_seconds"} {
		if !strings.Contains(string(body), name) {
			t.Errorf("metrics lack %s", name)
		}
	}

	// Events record placement decisions with reasons.
	evs := e.mustAloft("events", "completions")
	if !strings.Contains(evs, "Placed") || !strings.Contains(evs, "spread.minClouds=3") {
		t.Errorf("events lack placement reasons:\n%s", evs)
	}

	// Logs of one replica, and of all.
	logs := e.mustAloft("logs", "completions", "--replica", d.Status.Replicas[0].ID)
	if !strings.Contains(logs, "/v1/completions") && !strings.Contains(logs, "/healthz") {
		t.Errorf("replica log has no request lines:\n%s", logs)
	}
	all := e.mustAloft("logs", "completions")
	if !strings.Contains(all, "["+d.Status.Replicas[1].ID+"]") {
		t.Errorf("combined logs lack replica prefixes:\n%s", tail(all, 2000))
	}

	// JSON and YAML output.
	var got v1.Deployment
	if err := json.Unmarshal([]byte(e.mustAloft("get", "completions", "-o", "json")), &got); err != nil || got.Name != "completions" {
		t.Errorf("get -o json: %v %+v", err, got)
	}
	if y := e.mustAloft("get", "completions", "-o", "yaml"); !strings.Contains(y, "readyReplicas: 3") {
		t.Errorf("get -o yaml:\n%s", y)
	}
	if cl := e.mustAloft("clouds"); !strings.Contains(cl, "local-b") || !strings.Contains(cl, "0.5/") {
		t.Errorf("clouds table:\n%s", cl)
	}
}

// A crashed replica is restarted in place and serves again.
func TestReplicaCrashIsRestarted(t *testing.T) {
	e := newEnv(t)
	e.mustAloft("apply", "-f", e.writeSpec("c", completionsSpec("crashy", 1, "")), "--wait", "--timeout", "60s")
	d := e.get("crashy")
	id := d.Status.Replicas[0].ID
	pid := replicaPID(t, id)
	if pid == 0 {
		t.Fatalf("no process for replica %s", id)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	e.waitFor("restart", 20*time.Second, func() (bool, string) {
		d := e.get("crashy")
		r := d.Status.Replicas
		return len(r) == 1 && r[0].ID == id && r[0].Restarts >= 1 && r[0].State == v1.ReplicaReady, "restarts"
	})
	if np := replicaPID(t, id); np == 0 || np == pid {
		t.Fatalf("replica pid after restart %d (was %d)", np, pid)
	}
	if code, _, err := e.request("crashy"); err != nil || code != 200 {
		t.Fatalf("after restart: %d %v", code, err)
	}
	if evs := e.mustAloft("events", "crashy"); !strings.Contains(evs, "ReplicaCrashed") {
		t.Errorf("no crash event:\n%s", evs)
	}
}

// Scaling up and down changes the replica count; scale-down drains.
func TestScaleUpAndDown(t *testing.T) {
	e := newEnv(t)
	e.mustAloft("apply", "-f", e.writeSpec("s", completionsSpec("scaly", 1, "")), "--wait", "--timeout", "60s")
	e.mustAloft("scale", "scaly", "--replicas", "4", "--wait", "--timeout", "60s")
	e.waitRolledOut("scaly", 4, 30*time.Second)
	l := e.startLoad("scaly", 4)
	e.mustAloft("scale", "scaly", "--replicas", "1")
	e.waitRolledOut("scaly", 1, 30*time.Second)
	ok, failed, last := l.finish()
	if failed > 0 || ok == 0 {
		t.Fatalf("scale-down under load: %d ok, %d failed (%s)", ok, failed, last)
	}
	// Still one revision: scaling is not a template change.
	if revs := e.mustAloft("revisions", "scaly"); strings.Count(revs, "\n") != 2 {
		t.Errorf("scaling made a revision:\n%s", revs)
	}
}

// Changing the template rolls out revision 2 with no failed request.
func TestRollingUpdateNoFailedRequests(t *testing.T) {
	e := newEnv(t)
	e.mustAloft("apply", "-f", e.writeSpec("r", completionsSpec("roll", 2, "")), "--wait", "--timeout", "60s")
	before := e.get("roll")
	l := e.startLoad("roll", 4)
	spec2 := strings.Replace(completionsSpec("roll", 2, ""), `"1ms"`, `"2ms"`, 1)
	out := e.mustAloft("apply", "-f", e.writeSpec("r2", spec2), "--wait", "--timeout", "60s")
	if !strings.Contains(out, "configured (revision 2)") {
		t.Errorf("apply output: %s", out)
	}
	d := e.waitRolledOut("roll", 2, 30*time.Second)
	ok, failed, last := l.finish()
	if failed > 0 || ok == 0 {
		t.Fatalf("rolling update under load: %d ok, %d failed (%s)", ok, failed, last)
	}
	for _, r := range d.Status.Replicas {
		for _, old := range before.Status.Replicas {
			if r.ID == old.ID {
				t.Errorf("replica %s of revision 1 survived", r.ID)
			}
		}
	}
	revs, err := e.c.Revisions(context.Background(), "roll")
	if err != nil || len(revs) != 2 || revs[1].Spec.Args[1] != "2ms" {
		t.Fatalf("revisions: %+v %v", revs, err)
	}
}

// Changing placement.clouds migrates with no failed request; cordon moves
// replicas off a cloud; a failed cloud's replicas are replaced elsewhere.
func TestMigrationCordonAndCloudFailure(t *testing.T) {
	e := newEnv(t)
	e.mustAloft("apply", "-f", e.writeSpec("m", completionsSpec("mig", 2, "placement: {clouds: [local-a, local-b]}\n")), "--wait", "--timeout", "60s")
	l := e.startLoad("mig", 4)
	e.mustAloft("apply", "-f", e.writeSpec("m2", completionsSpec("mig", 2, "placement: {clouds: [local-c]}\n")))
	e.waitFor("migrated to local-c", 30*time.Second, func() (bool, string) {
		d := e.get("mig")
		c := cloudsOf(d)
		return c["local-c"] == 2 && len(c) == 1 && d.Status.ReadyReplicas == 2, ""
	})
	ok, failed, last := l.finish()
	if failed > 0 || ok == 0 {
		t.Fatalf("migration under load: %d ok, %d failed (%s)", ok, failed, last)
	}
	if revs, _ := e.c.Revisions(context.Background(), "mig"); len(revs) != 1 {
		t.Errorf("placement change made a new revision: %d", len(revs))
	}

	// Cordon local-c: replicas move to other clouds, again with no failed request.
	e.mustAloft("apply", "-f", e.writeSpec("m3", completionsSpec("mig", 2, "")))
	l = e.startLoad("mig", 4)
	e.mustAloft("cloud", "cordon", "local-c")
	e.waitFor("off local-c", 30*time.Second, func() (bool, string) {
		d := e.get("mig")
		c := cloudsOf(d)
		return c["local-c"] == 0 && d.Status.ReadyReplicas == 2 && len(d.Status.Replicas) == 2, ""
	})
	ok, failed, last = l.finish()
	if failed > 0 || ok == 0 {
		t.Fatalf("cordon under load: %d ok, %d failed (%s)", ok, failed, last)
	}
	if cl := e.mustAloft("clouds"); !strings.Contains(cl, "Cordoned") {
		t.Errorf("clouds table does not show the cordon:\n%s", cl)
	}

	// Fail the cloud that holds a replica: it is replaced on another cloud.
	d := e.get("mig")
	victim := d.Status.Replicas[0].Cloud
	pid := replicaPID(t, d.Status.Replicas[0].ID)
	e.mustAloft("cloud", "fail", victim)
	e.waitFor("replaced after cloud failure", 30*time.Second, func() (bool, string) {
		d := e.get("mig")
		c := cloudsOf(d)
		return c[victim] == 0 && c["local-c"] == 0 && d.Status.ReadyReplicas == 2 && len(d.Status.Replicas) == 2, ""
	})
	e.waitFor("failed cloud's process gone", 10*time.Second, func() (bool, string) {
		return syscall.Kill(pid, 0) != nil, "alive"
	})
	if evs := e.mustAloft("events", "mig"); !strings.Contains(evs, "ReplicaLost") {
		t.Errorf("no ReplicaLost event:\n%s", evs)
	}
	e.mustAloft("cloud", "recover", victim)
	e.mustAloft("cloud", "uncordon", "local-c")
	if code, _, err := e.request("mig"); err != nil || code != 200 {
		t.Fatalf("after drills: %d %v", code, err)
	}
}

// kill -9 of the server loses nothing: the same replicas are re-adopted (not
// duplicated) and the gateway serves again.
func TestServerKill9AndRestart(t *testing.T) {
	e := newEnv(t)
	e.mustAloft("apply", "-f", e.writeSpec("k", completionsSpec("durable", 3, "")), "--wait", "--timeout", "60s")
	before := e.get("durable")
	pids := map[string]int{}
	for _, r := range before.Status.Replicas {
		pids[r.ID] = replicaPID(t, r.ID)
	}
	e.kill9()
	e.start()
	d := e.waitRolledOut("durable", 3, 20*time.Second)
	for _, r := range d.Status.Replicas {
		p, had := pids[r.ID]
		if !had {
			t.Errorf("replica %s is new: the old ones were not adopted", r.ID)
		} else if got := replicaPID(t, r.ID); got != p {
			t.Errorf("replica %s pid %d, was %d: restarted instead of adopted", r.ID, got, p)
		}
	}
	e.waitFor("gateway serves after restart", 10*time.Second, func() (bool, string) {
		code, _, err := e.request("durable")
		return err == nil && code == 200, ""
	})
	if evs := e.mustAloft("events", "durable"); !strings.Contains(evs, "Adopted") {
		t.Errorf("no Adopted event:\n%s", evs)
	}

	// A replica that died while the server was down is replaced.
	e.kill9()
	victim := d.Status.Replicas[0].ID
	syscall.Kill(replicaPID(t, victim), syscall.SIGKILL)
	e.start()
	e.waitFor("lost replica replaced", 20*time.Second, func() (bool, string) {
		d := e.get("durable")
		for _, r := range d.Status.Replicas {
			if r.ID == victim {
				return false, "victim still listed"
			}
		}
		return d.Status.ReadyReplicas == 3, ""
	})
}

// On a server whose clouds cannot run images (no runc), an image spec stays
// Pending with a condition that says why.
func TestImageWithoutRuncStaysPending(t *testing.T) {
	e := newEnv(t, "--runc", "/nonexistent/runc")
	seed := "apiVersion: v1\napp_name: hello-world\ndocker_image: hello-world:latest\nreplicas: 3\nport: 8080\n"
	out, errOut, code := e.aloft(seed, "apply", "-f", "-", "--wait", "--timeout", "5s")
	if code != 3 {
		t.Fatalf("apply --wait of an image-only spec: exit %d, want 3 (timeout)\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "run images") || !strings.Contains(errOut, "runc not found at /nonexistent/runc") {
		t.Errorf("timeout reason does not say images cannot run and why: %s", errOut)
	}
	d := e.get("hello-world")
	if d.Spec.Image != "hello-world:latest" || d.Spec.Replicas.Max != 3 || d.Spec.Port != 8080 {
		t.Errorf("seed spec not normalised: %+v", d.Spec)
	}
	if d.Status.Phase == v1.PhaseReady || len(d.Status.Replicas) != 0 {
		t.Errorf("image-only spec got replicas: %+v", d.Status)
	}
	found := false
	for _, c := range d.Status.Conditions {
		found = found || (c.Type == v1.ConditionUnsupported && strings.Contains(c.Message, "images"))
	}
	if !found {
		t.Errorf("no Unsupported condition: %+v", d.Status.Conditions)
	}
}

// Delete drains and removes everything; the replica processes stop.
func TestDeleteStopsReplicas(t *testing.T) {
	e := newEnv(t)
	e.mustAloft("apply", "-f", e.writeSpec("d", completionsSpec("gone", 2, "")), "--wait", "--timeout", "60s")
	d := e.get("gone")
	var pids []int
	for _, r := range d.Status.Replicas {
		pids = append(pids, replicaPID(t, r.ID))
	}
	e.mustAloft("delete", "gone", "--wait", "--timeout", "30s")
	for _, p := range pids {
		if syscall.Kill(p, 0) == nil {
			t.Errorf("replica process %d still running after delete", p)
		}
	}
	if _, errOut, code := e.aloft("", "get", "gone"); code != 1 || !strings.Contains(errOut, "not found") {
		t.Errorf("get after delete: exit %d %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(e.data, "aloft.db")); err != nil {
		t.Fatal(err)
	}
}
