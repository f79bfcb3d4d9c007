package server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/cloud"
	"github.com/aloft-dev/aloft/internal/controller"
	"github.com/aloft-dev/aloft/internal/gateway"
	"github.com/aloft-dev/aloft/internal/image"
	"github.com/aloft-dev/aloft/internal/provider"
	"github.com/aloft-dev/aloft/internal/provider/local"
	"github.com/aloft-dev/aloft/internal/secrets"
	"github.com/aloft-dev/aloft/internal/store"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/prometheus/client_golang/prometheus"
)

func loadDoc(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(openAPIDocument)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI 3 document: %v", err)
	}
	return doc
}

// Every route the server serves is documented, and every documented operation is served.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc := loadDoc(t)
	served := map[string]bool{}
	for _, r := range Routes {
		served[r.Method+" "+r.Path] = true
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	var missing, extra []string
	for k := range served {
		if !documented[k] {
			missing = append(missing, k)
		}
	}
	for k := range documented {
		if !served[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Fatalf("routes not in openapi.json: %v; documented but not served: %v", missing, extra)
	}
}

// testAPI runs the real API on a temp SQLite store with local clouds; it
// returns the server and the first admin token.
func testAPI(t *testing.T) (*httptest.Server, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.OpenSQLite(filepath.Join(dir, "aloft.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var ctl *controller.Controller
	reg, err := cloud.NewRegistry(v1.DefaultClouds(), func(c v1.CloudConfig) (provider.Provider, error) {
		return local.New(local.Options{Cloud: c.Name, Dir: filepath.Join(dir, c.Name), OnChange: func(id string) {
			if ctl != nil {
				ctl.ReplicaChanged(id)
			}
		}})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	promReg := prometheus.NewRegistry()
	gw := gateway.New(gateway.Options{Registerer: promReg})
	ctl = controller.New(controller.Options{Store: st, Clouds: reg, Router: gw, Registerer: promReg, Resync: 200 * time.Millisecond, StopGrace: 2 * time.Second, DrainTimeout: 2 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ctl.Run(ctx); close(done) }()
	ready := &atomic.Bool{}
	ready.Store(true)
	kek, err := secrets.GenerateKEK()
	if err != nil {
		t.Fatal(err)
	}
	keys := &atomic.Pointer[secrets.Keyring]{}
	keys.Store(secrets.NewKeyring(kek))
	keyFile := filepath.Join(t.TempDir(), "kek")
	if err := secrets.WriteKeyFile(keyFile, kek); err != nil {
		t.Fatal(err)
	}
	images, err := image.Open(filepath.Join(dir, "images"))
	if err != nil {
		t.Fatal(err)
	}
	admin, err := bootstrapAdmin(context.Background(), st, dir)
	if err != nil || admin == "" {
		t.Fatalf("bootstrap admin: %q %v", admin, err)
	}
	srv := httptest.NewServer((&API{Store: st, Controller: ctl, Clouds: reg, Gatherer: promReg, Logger: discardLogger(), Ready: ready,
		Keys: keys, KeyFile: keyFile, Images: images}).Handler())
	t.Cleanup(func() {
		srv.Close()
		// Delete what the test deployed, then stop the controller.
		deps, _ := st.ListDeployments(context.Background())
		for _, d := range deps {
			st.MarkDeleted(context.Background(), d.Name)
			ctl.Enqueue(d.Name)
		}
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if reps, _ := st.ListAllReplicas(context.Background()); len(reps) == 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
		<-done
	})
	return srv, admin
}

// Every response of every route validates against the OpenAPI document.
func TestResponsesMatchOpenAPI(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "aloft-completions")
	build := exec.Command("go", "build", "-o", bin, "../../examples/completions")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatal(err)
	}
	doc := loadDoc(t)
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	srv, admin := testAPI(t)
	spec := "name: web\ncommand: [" + bin + "]\nreplicas: 1\nhealth: {path: /healthz, periodSeconds: 1}\n"
	calls := []struct {
		method, path, body string
		code               int
	}{
		{"GET", "/healthz", "", 200},
		{"GET", "/readyz", "", 200},
		{"GET", "/api/v1/openapi.json", "", 200},
		{"POST", "/api/v1/deployments", spec, 201},
		{"POST", "/api/v1/deployments", spec, 409},
		{"POST", "/api/v1/deployments", "name: Bad\n", 400},
		{"GET", "/api/v1/deployments", "", 200},
		{"GET", "/api/v1/deployments/web", "", 200},
		{"GET", "/api/v1/deployments/nope", "", 404},
		{"PUT", "/api/v1/deployments/web", strings.Replace(spec, "replicas: 1", "replicas: 2", 1), 200},
		{"PUT", "/api/v1/deployments/other", "name: other\ncommand: [" + bin + "]\nreplicas: 0\n", 201},
		{"POST", "/api/v1/deployments/web/scale", `{"replicas": 1}`, 200},
		{"POST", "/api/v1/deployments/web/scale", `{"replicas": "x"}`, 400},
		{"GET", "/api/v1/deployments/web/revisions", "", 200},
		{"GET", "/api/v1/deployments/web/events", "", 200},
		{"GET", "/api/v1/deployments/web/events?after=x", "", 400},
		{"GET", "/api/v1/deployments/web/logs", "", 200},
		{"GET", "/api/v1/clouds", "", 200},
		{"POST", "/api/v1/clouds/local-a/cordon", "", 200},
		{"POST", "/api/v1/clouds/local-a/uncordon", "", 200},
		{"POST", "/api/v1/clouds/nowhere/cordon", "", 404},
		{"DELETE", "/api/v1/deployments/other", "", 202},
		{"DELETE", "/api/v1/deployments/nope", "", 404},
		{"GET", "/metrics", "", 200},
		{"GET", "/api/v1/whoami", "", 200},
		{"POST", "/api/v1/workspaces", `{"name": "team-a"}`, 201},
		{"POST", "/api/v1/workspaces", `{"name": "Bad"}`, 400},
		{"GET", "/api/v1/workspaces", "", 200},
		{"POST", "/api/v1/tokens?workspace=team-a", `{"role": "developer", "ttl": "1h"}`, 201},
		{"POST", "/api/v1/tokens", `{"role": "root"}`, 400},
		{"GET", "/api/v1/tokens", "", 200},
		{"DELETE", "/api/v1/tokens/tok_nope", "", 404},
		{"PUT", "/api/v1/secrets/api-key", `{"value": "s3cret"}`, 201},
		{"PUT", "/api/v1/secrets/api-key", `{"value": "s3cret2"}`, 200},
		{"PUT", "/api/v1/secrets/api-key", `{"nope": 1}`, 400},
		{"GET", "/api/v1/secrets", "", 200},
		{"POST", "/api/v1/secrets-key/rotate", "", 200},
		{"DELETE", "/api/v1/secrets/api-key", "", 204},
		{"DELETE", "/api/v1/secrets/api-key", "", 404},
		{"POST", "/api/v1/deployments/web/endpoint-tokens", `{"name": "ci"}`, 201},
		{"GET", "/api/v1/deployments/web/endpoint-tokens", "", 200},
		{"DELETE", "/api/v1/deployments/web/endpoint-tokens/ept_nope", "", 404},
		{"GET", "/api/v1/audit", "", 200},
		{"GET", "/api/v1/audit?since=yesterday", "", 400},
		{"GET", "/api/v1/audit/verify", "", 200},
		{"GET", "/api/v1/images", "", 200},
		{"DELETE", "/api/v1/images?ref=hello-world:latest", "", 404},
	}
	for _, c := range calls {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer "+admin)
		if c.body != "" {
			req.Header.Set("Content-Type", "application/yaml")
			if strings.HasPrefix(c.body, "{") {
				req.Header.Set("Content-Type", "application/json")
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Errorf("%s %s: %d, want %d: %s", c.method, c.path, resp.StatusCode, c.code, body)
			continue
		}
		route, params, err := router.FindRoute(req)
		if err != nil {
			t.Errorf("%s %s: not in the document: %v", c.method, c.path, err)
			continue
		}
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{ExcludeRequestBody: true}}
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode,
			Header: resp.Header, Body: io.NopCloser(bytes.NewReader(body)),
			Options: &openapi3filter.Options{IncludeResponseStatus: true}}
		if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
			t.Errorf("%s %s (%d): response does not match openapi.json: %v\n%s", c.method, c.path, resp.StatusCode, err, body)
		}
	}
}
