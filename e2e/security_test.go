package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/client"
	_ "modernc.org/sqlite"
)

// A planted secret reaches the replica's environment and nowhere else: not
// the SQLite file, not the server log, not any API response.
func TestSecretsNeverLeak(t *testing.T) {
	e := newEnv(t)
	const planted = "PLANTED-s3cr3t-9f8e7d6c5b4a"
	// A deployment that needs a missing secret waits, with a condition.
	spec := completionsSpec("secretive", 1, "env: [{name: API_KEY, valueFrom: {secret: api-key}}]\n")
	e.mustAloft("apply", "-f", e.writeSpec("s", spec))
	e.waitFor("SecretsResolved=False", 10*time.Second, func() (bool, string) {
		d := e.get("secretive")
		for _, c := range d.Status.Conditions {
			if c.Type == v1.ConditionSecrets && c.Status == "False" && strings.Contains(c.Message, `"api-key"`) {
				return len(d.Status.Replicas) == 0, "replicas started"
			}
		}
		return false, "no condition"
	})
	keyFile := filepath.Join(t.TempDir(), "value")
	os.WriteFile(keyFile, []byte(planted), 0o600)
	if out := e.mustAloft("secret", "set", "api-key", "--from-file", keyFile); !strings.Contains(out, "created") {
		t.Fatalf("secret set: %s", out)
	}
	d := e.waitRolledOut("secretive", 1, 30*time.Second)
	environ, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(replicaPID(t, d.Status.Replicas[0].ID)), "environ"))
	if err != nil || !bytes.Contains(environ, []byte("API_KEY="+planted)) {
		t.Fatalf("replica did not get the secret in its environment (%v)", err)
	}
	e.mustAloft("secret", "set", "other", "--from-literal", planted+"-2")
	if out := e.mustAloft("secret", "rotate-key"); !strings.Contains(out, "re-wrapped 2 secret(s)") {
		t.Errorf("rotate-key: %s", out)
	}
	// After rotation the secret still opens: a new replica gets it.
	e.mustAloft("scale", "secretive", "--replicas", "2", "--wait", "--timeout", "30s")

	// Now look everywhere for the value.
	var seen []string
	for _, path := range []string{
		"/api/v1/deployments", "/api/v1/deployments/secretive", "/api/v1/deployments/secretive/events",
		"/api/v1/deployments/secretive/revisions", "/api/v1/deployments/secretive/logs", "/api/v1/secrets",
		"/api/v1/audit", "/api/v1/clouds", "/api/v1/tokens", "/metrics", "/api/v1/whoami",
	} {
		resp, err := e.do("GET", path, "", "")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
		}
		if bytes.Contains(b, []byte(planted)) {
			seen = append(seen, "GET "+path)
		}
	}
	for _, args := range [][]string{{"get", "secretive", "-o", "json"}, {"secret", "ls"}, {"events", "secretive"}, {"audit", "ls"}} {
		if out := e.mustAloft(args...); strings.Contains(out, planted) {
			seen = append(seen, "aloft "+strings.Join(args, " "))
		}
	}
	if strings.Contains(e.serverLog(), planted) {
		seen = append(seen, "server log")
	}
	filepath.Walk(e.data, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && !strings.Contains(p, "/clouds/") { // replica dirs hold the app's own output
			if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(planted)) {
				seen = append(seen, "file "+p)
			}
		}
		return nil
	})
	if len(seen) > 0 {
		t.Fatalf("the secret value leaked into: %v", seen)
	}
}

// Tokens: created tokens print alone on stdout, roles and workspaces are
// enforced through the CLI, and revocation takes effect on the next call.
func TestTokensWorkspacesAndRevocation(t *testing.T) {
	e := newEnv(t)
	e.mustAloft("workspace", "create", "team-a")
	dev := strings.TrimSpace(e.mustAloft("token", "create", "--role", "developer", "--workspace", "team-a", "--ttl", "1h"))
	if !strings.HasPrefix(dev, "aloft_") || strings.Contains(dev, "\n") {
		t.Fatalf("token create printed more than the token: %q", dev)
	}
	viewer := strings.TrimSpace(e.mustAloft("token", "create", "--role", "viewer", "--workspace", "team-a"))
	as := func(tok string, args ...string) (string, string, int) {
		saved := e.token
		e.token = tok
		defer func() { e.token = saved }()
		return e.aloft("", args...)
	}
	if _, errOut, code := as(dev, "apply", "-f", e.writeSpec("a", "name: in-team-a\ncommand: [aloft-completions]\nreplicas: 0\n")); code != 0 {
		t.Fatalf("developer apply: %d %s", code, errOut)
	}
	if _, errOut, code := as(viewer, "apply", "-f", e.writeSpec("b", "name: by-viewer\ncommand: [x]\nreplicas: 0\n")); code != 1 || !strings.Contains(errOut, "needs role developer") {
		t.Errorf("viewer apply: %d %s", code, errOut)
	}
	// The admin's deployment in the default workspace is invisible/forbidden to team-a.
	e.mustAloft("apply", "-f", e.writeSpec("c", "name: in-default\ncommand: [x]\nreplicas: 0\n"))
	if out, _, _ := as(viewer, "list"); strings.Contains(out, "in-default") || !strings.Contains(out, "in-team-a") {
		t.Errorf("viewer list crosses workspaces:\n%s", out)
	}
	if _, errOut, code := as(dev, "delete", "in-default"); code != 1 || !strings.Contains(errOut, "forbidden") {
		t.Errorf("developer deletes another workspace's deployment: %d %s", code, errOut)
	}
	if _, errOut, code := as(dev, "token", "ls"); code != 1 || !strings.Contains(errOut, "needs role admin") {
		t.Errorf("developer lists tokens: %d %s", code, errOut)
	}
	// Revoke the developer token: its next call is refused.
	var id string
	toks, _ := e.c.ListTokens(context.Background())
	for _, k := range toks {
		if k.Role == "developer" {
			id = k.ID
		}
	}
	e.mustAloft("token", "revoke", id)
	if _, errOut, code := as(dev, "list"); code != 1 || !strings.Contains(errOut, "not valid") {
		t.Errorf("revoked token still works: %d %s", code, errOut)
	}
	if out := e.mustAloft("token", "ls"); !strings.Contains(out, id) {
		t.Errorf("token ls lacks %s:\n%s", id, out)
	}
	// Login stores the credential with mode 0600, and ALOFT_TOKEN overrides it.
	tokFile := filepath.Join(e.data, "admin.token")
	saved := e.token
	e.token = ""
	out := e.mustAloft("login", "--server", "http://"+e.api, "--token-file", tokFile)
	if !strings.Contains(out, "role admin") {
		t.Errorf("login: %s", out)
	}
	info, err := os.Stat(filepath.Join(e.data, "cli-config.json"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("config file mode: %v %v", info, err)
	}
	if out := e.mustAloft("whoami"); !strings.Contains(out, "role admin") {
		t.Errorf("whoami from the login: %s", out)
	}
	e.token = viewer
	if out := e.mustAloft("whoami"); !strings.Contains(out, "role viewer") {
		t.Errorf("ALOFT_TOKEN does not override the login: %s", out)
	}
	e.token = saved
	if st, err := os.Stat(tokFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("admin.token mode: %v", st.Mode())
	}
}

// The audit log records mutations and denials, and verify names the first
// record that was altered behind aloft's back.
func TestAuditChainDetectsTampering(t *testing.T) {
	e := newEnv(t)
	e.mustAloft("apply", "-f", e.writeSpec("a", "name: audited\ncommand: [x]\nreplicas: 0\n"))
	e.mustAloft("scale", "audited", "--replicas", "0")
	saved := e.token
	e.token = "aloft_" + strings.Repeat("A", 43)
	e.aloft("", "delete", "audited") // denied: unknown token
	e.token = saved
	out := e.mustAloft("audit", "ls")
	for _, want := range []string{"deployment.apply", "deployment.scale", "denied 401"} {
		if !strings.Contains(out, want) {
			t.Errorf("audit ls lacks %q:\n%s", want, out)
		}
	}
	if out := e.mustAloft("audit", "verify"); !strings.Contains(out, "intact") {
		t.Fatalf("verify on an intact log: %s", out)
	}
	// Alter record 2 directly in the database.
	db, err := sql.Open("sqlite", filepath.Join(e.data, "aloft.db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE audit SET result = 'denied 403' WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, errOut, code := e.aloft("", "audit", "verify")
	if code != 1 || !strings.Contains(errOut, "record 2") || !strings.Contains(errOut, "altered") {
		t.Fatalf("verify after tampering: exit %d %s", code, errOut)
	}
}

// --tls-auto serves the API and gateway over TLS with a local CA; the CLI
// trusts it with --ca and refuses without it.
func TestTLSAuto(t *testing.T) {
	e := &env{t: t, data: t.TempDir(), api: freePort(t), gateway: freePort(t), extra: []string{"--tls-auto"}}
	e.keyFile = filepath.Join(t.TempDir(), "secrets.key")
	e.startTLS()
	t.Cleanup(func() { e.cmd.Process.Kill(); e.cmd.Wait(); killReplicas(e.data) })
	ca := filepath.Join(e.data, "tls", "ca.crt")
	out, errOut, code := e.aloft("", "--server", "https://"+e.api, "--ca", ca, "clouds")
	if code != 0 || !strings.Contains(out, "local-a") {
		t.Fatalf("clouds over TLS with --ca: %d %s %s", code, out, errOut)
	}
	if _, errOut, code := e.aloft("", "--server", "https://"+e.api, "clouds"); code == 0 || !strings.Contains(errOut, "certificate") {
		t.Errorf("without --ca the CLI trusted the server: %d %s", code, errOut)
	}
	e.mustAloft("--server", "https://"+e.api, "--ca", ca, "apply", "-f", e.writeSpec("t", completionsSpec("tls", 1, "")), "--wait", "--timeout", "30s")
	c := client.New("https://" + e.gateway)
	pem, _ := os.ReadFile(ca)
	if err := c.WithCA(pem); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", "https://"+e.gateway+"/v1/completions", strings.NewReader(`{"prompt":"Alice","max_tokens":2}`))
	req.Header.Set("X-Aloft-Deployment", "tls")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		t.Fatalf("gateway over TLS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("gateway over TLS: %d", resp.StatusCode)
	}
	e.mustAloft("--server", "https://"+e.api, "--ca", ca, "delete", "tls", "--wait", "--timeout", "30s")
}

// startTLS starts a server whose API answers only over TLS.
func (e *env) startTLS() {
	args := append([]string{"server", "--data", e.data, "--listen", e.api, "--gateway-listen", e.gateway, "--secrets-key-file", e.keyFile}, e.extra...)
	e.cmd = exec.Command(filepath.Join(binDir, "aloft"), args...)
	e.cmd.Env = e.environ()
	e.log, e.logMu = &bytes.Buffer{}, new(sync.Mutex)
	e.cmd.Stdout = lockedWriter{e.logMu, e.log}
	e.cmd.Stderr = lockedWriter{e.logMu, e.log}
	if err := e.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.waitFor("admin token", 20*time.Second, func() (bool, string) {
		tok, err := os.ReadFile(filepath.Join(e.data, "admin.token"))
		e.token = strings.TrimSpace(string(tok))
		_, cerr := os.Stat(filepath.Join(e.data, "tls", "ca.crt"))
		return err == nil && cerr == nil && e.token != "", "missing"
	})
	e.waitFor("TLS API ready", 20*time.Second, func() (bool, string) {
		_, _, code := e.aloft("", "--server", "https://"+e.api, "--ca", filepath.Join(e.data, "tls", "ca.crt"), "whoami")
		return code == 0, "not ready"
	})
}

// Per-token rate limits answer 429 with Retry-After.
func TestRateLimit(t *testing.T) {
	e := newEnv(t, "--rate-limit", "2")
	limited := 0
	retry := ""
	for range 20 {
		resp, err := e.do("GET", "/api/v1/clouds", "", "")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			limited++
			retry = resp.Header.Get("Retry-After")
		}
	}
	if limited == 0 || retry == "" {
		t.Fatalf("no 429 with Retry-After after 20 quick calls at 2/s (limited=%d)", limited)
	}
	// /healthz is open and not limited.
	resp, err := http.Get("http://" + e.api + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v", err)
	}
	resp.Body.Close()
}

// A private deployment answers only with an endpoint token; revoking the
// token shuts it out again.
func TestPrivateEndpoint(t *testing.T) {
	e := newEnv(t)
	e.mustAloft("apply", "-f", e.writeSpec("p", completionsSpec("private", 1, "access: {public: false}\n")), "--wait", "--timeout", "30s")
	call := func(tok string) int {
		req, _ := http.NewRequest("POST", "http://"+e.gateway+"/v1/completions", strings.NewReader(`{"prompt":"Alice","max_tokens":2}`))
		req.Host = "private.localhost"
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := call(""); code != 401 {
		t.Fatalf("no token: %d, want 401", code)
	}
	if code := call(e.token); code != 401 {
		t.Fatalf("an API token opened the endpoint: %d", code)
	}
	tok := strings.TrimSpace(e.mustAloft("endpoint-token", "create", "private", "--name", "ci"))
	if !strings.HasPrefix(tok, "aloftep_") {
		t.Fatalf("endpoint-token create printed %q", tok)
	}
	e.waitFor("token admitted", 10*time.Second, func() (bool, string) { return call(tok) == 200, "refused" })
	list, err := e.c.ListEndpointTokens(context.Background(), "private")
	if err != nil || len(list) != 1 {
		t.Fatalf("endpoint-token ls: %+v %v", list, err)
	}
	e.mustAloft("endpoint-token", "revoke", "private", list[0].ID)
	e.waitFor("token refused after revoke", 10*time.Second, func() (bool, string) { return call(tok) == 401, "admitted" })
	resp, err := e.do("GET", "/metrics", "", "")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `aloft_gateway_denied_total{deployment="private",reason="missing_token"}`) {
		t.Errorf("denied requests are not counted")
	}
}
