package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// FuzzAPIDecode feeds arbitrary bodies to every handler that decodes one:
// the answer is never a 5xx, and a refused spec stores nothing.
func FuzzAPIDecode(f *testing.F) {
	for _, seed := range []string{
		"name: x\ncommand: [a]\n", `{"name":"x","command":["a"]}`, `{"replicas": 3}`, `{"replicas": "x"}`,
		`{"value": "v"}`, `{"role": "viewer", "ttl": "1h"}`, `{"name": "ws"}`, "apiVersion: v1\napp_name: a\ndocker_image: b\n",
		"{", "\x00\xff", "name: x\nreplicas: {min: 5, max: 1}\n", `{"ttl": "-1d"}`,
		"InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region\np3.2xlarge,V100,1,8,61,\"{'Gpus': [{'MemoryInfo': {'SizeInMiB': 16384}}]}\",3.06,,us-east-1\n",
	} {
		f.Add(seed)
	}
	targets := []struct{ method, path string }{
		{"POST", "/api/v1/deployments"},
		{"PUT", "/api/v1/deployments/dep-own"},
		{"POST", "/api/v1/deployments/dep-own/scale"},
		{"POST", "/api/v1/deployments/dep-own/endpoint-tokens"},
		{"PUT", "/api/v1/secrets/fuzz"},
		{"POST", "/api/v1/tokens"},
		{"POST", "/api/v1/workspaces"},
		{"POST", "/api/v1/images"},
		{"POST", "/api/v1/catalogs/fuzz"},
	}
	e := newRBACEnv(f)
	f.Fuzz(func(t *testing.T, body string) {
		before, _ := e.st.ListDeployments(context.Background())
		catalogsBefore, _ := e.st.CatalogClouds(context.Background())
		for _, tg := range targets {
			req, _ := http.NewRequest(tg.method, e.srv.URL+tg.path, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+e.tokens["all"])
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode >= 500 {
				t.Fatalf("%s %s answered %d for body %q", tg.method, tg.path, resp.StatusCode, body)
			}
			if tg.path == "/api/v1/catalogs/fuzz" && resp.StatusCode >= 400 {
				if cs, _ := e.st.CatalogClouds(context.Background()); fmt.Sprint(cs) != fmt.Sprint(catalogsBefore) {
					t.Fatalf("a refused catalog changed the stored one: %q", body)
				}
			}
			if tg.path == "/api/v1/deployments" && resp.StatusCode >= 400 {
				after, _ := e.st.ListDeployments(context.Background())
				if len(after) != len(before) {
					t.Fatalf("a refused spec was stored: %q", body)
				}
			}
		}
	})
}
