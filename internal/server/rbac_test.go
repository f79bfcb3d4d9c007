package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/auth"
	"github.com/aloft-dev/aloft/internal/cloud"
	"github.com/aloft-dev/aloft/internal/controller"
	"github.com/aloft-dev/aloft/internal/gateway"
	"github.com/aloft-dev/aloft/internal/image"
	"github.com/aloft-dev/aloft/internal/provider"
	"github.com/aloft-dev/aloft/internal/provider/sim"
	"github.com/aloft-dev/aloft/internal/secrets"
	"github.com/aloft-dev/aloft/internal/store"
	"github.com/prometheus/client_golang/prometheus"
)

// rule is the access rule each route must have, written here independently
// of the route table: a route added without a rule fails the test.
type rule struct {
	role   auth.Role
	scoped bool
}

var rules = map[string]rule{
	"GET /api/v1/openapi.json":                               {auth.Viewer, false},
	"GET /metrics":                                           {auth.Admin, false},
	"GET /api/v1/whoami":                                     {auth.Viewer, false},
	"GET /api/v1/deployments":                                {auth.Viewer, true},
	"POST /api/v1/deployments":                               {auth.Developer, true},
	"GET /api/v1/deployments/{name}":                         {auth.Viewer, true},
	"PUT /api/v1/deployments/{name}":                         {auth.Developer, true},
	"DELETE /api/v1/deployments/{name}":                      {auth.Developer, true},
	"POST /api/v1/deployments/{name}/scale":                  {auth.Developer, true},
	"GET /api/v1/deployments/{name}/revisions":               {auth.Viewer, true},
	"GET /api/v1/deployments/{name}/events":                  {auth.Viewer, true},
	"GET /api/v1/deployments/{name}/logs":                    {auth.Developer, true},
	"GET /api/v1/deployments/{name}/endpoint-tokens":         {auth.Developer, true},
	"POST /api/v1/deployments/{name}/endpoint-tokens":        {auth.Developer, true},
	"DELETE /api/v1/deployments/{name}/endpoint-tokens/{id}": {auth.Developer, true},
	"GET /api/v1/secrets":                                    {auth.Viewer, true},
	"PUT /api/v1/secrets/{name}":                             {auth.Developer, true},
	"DELETE /api/v1/secrets/{name}":                          {auth.Developer, true},
	"POST /api/v1/secrets-key/rotate":                        {auth.Admin, false},
	"GET /api/v1/tokens":                                     {auth.Admin, true},
	"POST /api/v1/tokens":                                    {auth.Admin, true},
	"DELETE /api/v1/tokens/{id}":                             {auth.Admin, true},
	"GET /api/v1/workspaces":                                 {auth.Viewer, false},
	"POST /api/v1/workspaces":                                {auth.Admin, false},
	"GET /api/v1/audit":                                      {auth.Admin, true},
	"GET /api/v1/audit/verify":                               {auth.Admin, false},
	"GET /api/v1/clouds":                                     {auth.Viewer, false},
	"POST /api/v1/plan":                                      {auth.Viewer, true},
	"POST /api/v1/clouds/{name}/{action}":                    {auth.Admin, false},
	"POST /api/v1/clouds/{name}/render":                      {auth.Viewer, true},
	"GET /api/v1/images":                                     {auth.Viewer, false},
	"POST /api/v1/images":                                    {auth.Developer, false},
	"DELETE /api/v1/images":                                  {auth.Admin, false},
	"GET /api/v1/catalogs":                                   {auth.Viewer, false},
	"POST /api/v1/catalogs/{cloud}":                          {auth.Admin, false},
	"GET /api/v1/offerings":                                  {auth.Viewer, false},
}

type rbacEnv struct {
	srv    *httptest.Server
	st     *store.SQLite
	tokens map[string]string // "viewer", "developer", "admin" (workspace own), "all" -> secret
	victim map[string]string // workspace -> id of a token to revoke
}

// newSimAPI builds the real API over a temp SQLite store, sim clouds, a key
// file and a controller that is not run (handlers see the stored state
// unchanged). wrap, if set, puts a test hook around the store the API uses.
func newSimAPI(t testing.TB, wrap func(*store.SQLite) store.Store) (*API, *store.SQLite) {
	t.Helper()
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "aloft.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg, err := cloud.NewRegistry(v1.DefaultClouds(), func(c v1.CloudConfig) (provider.Provider, error) {
		return sim.New(sim.Options{Cloud: c.Name}), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctl := controller.New(controller.Options{Store: st, Clouds: reg, Router: gateway.New(gateway.Options{})})
	kek, _ := secrets.GenerateKEK()
	keys := &atomic.Pointer[secrets.Keyring]{}
	keys.Store(secrets.NewKeyring(kek))
	keyFile := filepath.Join(t.TempDir(), "kek")
	if err := secrets.WriteKeyFile(keyFile, kek); err != nil {
		t.Fatal(err)
	}
	images, err := image.Open(filepath.Join(t.TempDir(), "images"))
	if err != nil {
		t.Fatal(err)
	}
	ready := &atomic.Bool{}
	ready.Store(true)
	var apiStore store.Store = st
	if wrap != nil {
		apiStore = wrap(st)
	}
	return &API{Store: apiStore, Controller: ctl, Clouds: reg, Gatherer: prometheus.NewRegistry(), Logger: discardLogger(),
		Ready: ready, Keys: keys, KeyFile: keyFile, Images: images}, st
}

func newRBACEnv(t testing.TB) *rbacEnv {
	t.Helper()
	api, st := newSimAPI(t, nil)
	e := &rbacEnv{srv: httptest.NewServer(api.Handler()), st: st, tokens: map[string]string{}, victim: map[string]string{}}
	t.Cleanup(e.srv.Close)
	ctx := context.Background()
	for _, ws := range []string{"own", "other"} {
		if err := st.CreateWorkspace(ctx, ws); err != nil {
			t.Fatal(err)
		}
		spec := v1.DeploymentSpec{Name: "dep-" + ws, Command: []string{"x"}, Port: 8080, Replicas: v1.Replicas{Min: 0, Max: 0}}
		spec.Default()
		if _, _, _, err := st.ApplyDeployment(ctx, ws, spec, store.CreateOrUpdate); err != nil {
			t.Fatal(err)
		}
		if _, err := st.PutSecret(ctx, store.Secret{Workspace: ws, Name: "s1", Sealed: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
		v, _ := newAPIToken("victim", auth.Viewer, ws, 0)
		if err := st.CreateToken(ctx, v.Token); err != nil {
			t.Fatal(err)
		}
		e.victim[ws] = v.ID
	}
	for _, c := range []struct {
		key  string
		role auth.Role
		ws   string
	}{{"viewer", auth.Viewer, "own"}, {"developer", auth.Developer, "own"}, {"admin", auth.Admin, "own"}, {"all", auth.Admin, auth.AllWorkspaces}} {
		tok, _ := newAPIToken(c.key, c.role, c.ws, 0)
		if err := st.CreateToken(ctx, tok.Token); err != nil {
			t.Fatal(err)
		}
		e.tokens[c.key] = tok.Secret
	}
	return e
}

// requestFor builds a call of route rt aimed at workspace ws ("own" or "other").
func (e *rbacEnv) requestFor(rt Route, ws string) *http.Request {
	path := rt.Path
	body := ""
	switch {
	case strings.Contains(path, "/deployments/{name}"):
		path = strings.Replace(path, "{name}", "dep-"+ws, 1)
	case strings.Contains(path, "/secrets/{name}"):
		path = strings.Replace(path, "{name}", "s1", 1)
	case strings.Contains(path, "/clouds/{name}"):
		path = strings.Replace(path, "{name}", "local-a", 1)
	}
	path = strings.Replace(path, "{cloud}", "rbac", 1)
	path = strings.Replace(path, "{action}", "cordon", 1)
	path = strings.Replace(path, "/tokens/{id}", "/tokens/"+e.victim[ws], 1)
	path = strings.Replace(path, "{id}", "ept_none", 1)
	switch rt.Method + " " + rt.Path {
	case "POST /api/v1/deployments":
		body = "name: new-" + ws + "\ncommand: [x]\nreplicas: 0\n"
	case "POST /api/v1/plan":
		body = "name: plan-" + ws + "\ncommand: [x]\nreplicas: 1\n"
	case "POST /api/v1/clouds/{name}/render":
		body = "name: render-" + ws + "\nimage: x:1\nreplicas: 1\n"
	case "PUT /api/v1/deployments/{name}":
		body = "name: dep-" + ws + "\ncommand: [x]\nreplicas: 0\n"
	case "POST /api/v1/deployments/{name}/scale":
		body = `{"replicas": 0}`
	case "POST /api/v1/deployments/{name}/endpoint-tokens":
		body = `{}`
	case "PUT /api/v1/secrets/{name}":
		body = `{"value": "v"}`
	case "POST /api/v1/tokens":
		body = `{"role": "viewer"}`
	case "POST /api/v1/workspaces":
		body = `{"name": "ws-new"}`
	case "POST /api/v1/catalogs/{cloud}":
		body = "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,Price,SpotPrice,Region\nm5.large,,,2,8,0.096,,us-east-1\n"
	}
	if rt.Scope == ScopeRequest {
		path += "?workspace=" + ws
	}
	req, _ := http.NewRequest(rt.Method, e.srv.URL+path, strings.NewReader(body))
	return req
}

func (e *rbacEnv) call(t *testing.T, req *http.Request, token string) (int, string) {
	t.Helper()
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Every route x every role x own/other workspace is allowed or denied exactly
// as its rule says; denials are 403, and every denial is in the audit log.
func TestRBACEveryRouteRoleWorkspace(t *testing.T) {
	e := newRBACEnv(t)
	for _, rt := range Routes {
		key := rt.Method + " " + rt.Path
		if rt.Public {
			if code, _ := e.call(t, e.requestFor(rt, "own"), ""); code != 200 {
				t.Errorf("%s is public but answered %d without a token", key, code)
			}
			continue
		}
		r, ok := rules[key]
		if !ok {
			t.Errorf("%s has no access rule in rbac_test.go: add one", key)
			continue
		}
		if rt.Role != r.role || (rt.Scope != Unscoped) != r.scoped {
			t.Errorf("%s: route says role %s scoped %v, rule says %s scoped %v", key, rt.Role, rt.Scope != Unscoped, r.role, r.scoped)
		}
		if code, _ := e.call(t, e.requestFor(rt, "own"), ""); code != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d, want 401", key, code)
		}
		for _, role := range []string{"viewer", "developer", "admin", "all"} {
			for _, ws := range []string{"own", "other"} {
				want := wantAllowed(r, role, ws)
				code, body := e.call(t, e.requestFor(rt, ws), e.tokens[role])
				denied := code == http.StatusForbidden
				if want == denied || code == http.StatusUnauthorized || code >= 500 {
					t.Errorf("%s as %s on %s workspace: %d (allowed=%v) %s", key, role, ws, code, want, body)
				}
			}
		}
	}
	for k := range rules {
		found := false
		for _, rt := range Routes {
			found = found || rt.Method+" "+rt.Path == k
		}
		if !found {
			t.Errorf("rule %s has no route", k)
		}
	}
	// Every denial was audited.
	recs, err := e.st.ListAudit(context.Background(), store.AuditFilter{Result: "denied 403"})
	if err != nil || len(recs) == 0 {
		t.Fatalf("no denied calls in the audit log: %v", err)
	}
}

func wantAllowed(r rule, role, ws string) bool {
	rank := map[string]int{"viewer": 1, "developer": 2, "admin": 3, "all": 3}
	need := map[auth.Role]int{auth.Viewer: 1, auth.Developer: 2, auth.Admin: 3}[r.role]
	if rank[role] < need {
		return false
	}
	if role == "all" {
		return true
	}
	if r.scoped {
		return ws == "own"
	}
	return r.role != auth.Admin // unscoped admin actions need an all-workspace token
}

// Missing, malformed, unknown, expired and revoked tokens get 401 with a
// reason that does not reveal whether the token exists.
func TestBadTokens(t *testing.T) {
	e := newRBACEnv(t)
	ctx := context.Background()
	expired, _ := newAPIToken("x", auth.Admin, auth.AllWorkspaces, 1)
	if err := e.st.CreateToken(ctx, expired.Token); err != nil {
		t.Fatal(err)
	}
	revoked, _ := newAPIToken("x", auth.Admin, auth.AllWorkspaces, 0)
	e.st.CreateToken(ctx, revoked.Token)
	unknown, _, _ := auth.NewSecret(auth.TokenPrefix)
	// Revocation takes effect on the next request.
	whoami := func(tok string) (int, string) {
		req, _ := http.NewRequest("GET", e.srv.URL+"/api/v1/whoami", nil)
		return e.call(t, req, tok)
	}
	if code, _ := whoami(revoked.Secret); code != 200 {
		t.Fatalf("fresh token: %d", code)
	}
	if err := e.st.RevokeToken(ctx, revoked.ID, revoked.CreatedAt); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"missing": "", "malformed": "aloft_short", "wrong prefix": "xyz_" + unknown[6:],
		"unknown": unknown, "expired": expired.Secret, "revoked": revoked.Secret,
	}
	var bodies []string
	for name, tok := range cases {
		req, _ := http.NewRequest("GET", e.srv.URL+"/api/v1/deployments", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("%s token: %d, want 401", name, resp.StatusCode)
		}
		var er v1.ErrorResponse
		if json.Unmarshal(b, &er) != nil || er.Error == "" {
			t.Errorf("%s token: no JSON reason: %s", name, b)
		}
		if tok != "" && strings.Contains(string(b), tok) {
			t.Errorf("%s token: the answer echoes the token", name)
		}
		if name == "unknown" || name == "expired" || name == "revoked" {
			bodies = append(bodies, er.Error)
		}
	}
	if bodies[0] != bodies[1] || bodies[1] != bodies[2] {
		t.Errorf("unknown, expired and revoked tokens are told apart: %q", bodies)
	}
}
