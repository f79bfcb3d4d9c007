package e2e

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"

	v1 "github.com/aloft-dev/aloft/api/v1"
)

// Every bad spec gets a 4xx naming the field, through the API and the CLI,
// and nothing is stored.
func TestBadInputIsRejectedAndNothingStored(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name, body string
		code       int
		field      string // expected in the error's fields
		says       string // expected in the message
	}{
		{"malformed yaml", "name: x\nreplicas: [1,\n", 400, "", "yaml"},
		{"unknown field", "name: x\ncommand: [a]\nreplica: 2\n", 400, "replica", `did you mean "replicas"`},
		{"nested unknown field", "name: x\ncommand: [a]\nplacement: {spred: {minClouds: 2}}\n", 400, "placement.spred", `"spread"`},
		{"bad name", "name: Bad_Name\ncommand: [a]\n", 400, "name", "DNS-1123"},
		{"negative replicas", "name: x\ncommand: [a]\nreplicas: -1\n", 400, "replicas", ">= 0"},
		{"port out of range", "name: x\ncommand: [a]\nport: 70000\n", 400, "port", "65535"},
		{"min over max", "name: x\ncommand: [a]\nreplicas: {min: 5, max: 2}\n", 400, "replicas", "max"},
		{"no image or command", "name: x\nreplicas: 1\n", 400, "image", "command"},
		{"wrong type", "name: x\ncommand: [a]\nport: eighty\n", 400, "port", ""},
		{"too large", "name: x\ncommand: [a]\nargs: [\"" + strings.Repeat("a", v1.MaxSpecBytes) + "\"]\n", 413, "", "1 MiB"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := e.do("POST", "/api/v1/deployments", "application/yaml", tc.body)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.code, body)
			}
			var er v1.ErrorResponse
			if err := json.Unmarshal(body, &er); err != nil {
				t.Fatalf("error body is not JSON: %s", body)
			}
			found := tc.field == ""
			for _, f := range er.Fields {
				found = found || strings.HasPrefix(f.Field, tc.field)
			}
			if !found {
				t.Errorf("no error names field %q: %s", tc.field, body)
			}
			text := er.Error
			for _, f := range er.Fields {
				text += " " + f.Reason
			}
			if !strings.Contains(strings.ToLower(text), strings.ToLower(tc.says)) {
				t.Errorf("error does not say %q: %s", tc.says, body)
			}

			// The CLI refuses the same spec with exit code 1 and the same reason.
			if tc.code != 413 {
				_, errOut, code := e.aloft(tc.body, "apply", "-f", "-")
				if code != 1 || !strings.Contains(strings.ToLower(errOut), strings.ToLower(tc.says)) {
					t.Errorf("CLI: exit %d, stderr %s", code, errOut)
				}
			}
		})
	}
	deps, err := e.c.ListDeployments(context.Background())
	if err != nil || len(deps) != 0 {
		t.Fatalf("bad input stored something: %+v %v", deps, err)
	}

	// PUT with a name that differs from the URL.
	resp, err := e.do("PUT", "/api/v1/deployments/a", "", "name: b\ncommand: [x]\n")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("name mismatch: %d", resp.StatusCode)
	}
	// Scale with a negative count.
	e.mustAloft("apply", "-f", e.writeSpec("v", "name: valid\ncommand: [aloft-completions]\nreplicas: 0\n"))
	if _, errOut, code := e.aloft("", "scale", "valid", "--replicas", "-3"); code != 1 || !strings.Contains(errOut, "replicas") {
		t.Errorf("scale -3: exit %d %s", code, errOut)
	}
	if d := e.get("valid"); d.Spec.Replicas.Max != 0 {
		t.Errorf("bad scale changed the spec: %+v", d.Spec.Replicas)
	}
	// Usage errors exit 2; unknown objects 1; unknown cloud action 404.
	if _, _, code := e.aloft("", "scale", "valid"); code != 2 {
		t.Errorf("scale without --replicas: exit %d, want 2", code)
	}
	if _, _, code := e.aloft("", "get", "-o", "xml"); code != 2 {
		t.Errorf("-o xml: exit %d, want 2", code)
	}
	if _, errOut, code := e.aloft("", "cloud", "cordon", "nowhere"); code != 1 || !strings.Contains(errOut, "not found") {
		t.Errorf("cordon unknown cloud: exit %d %s", code, errOut)
	}
	for _, path := range []string{"/api/v1/deployments/valid/events?after=-1", "/api/v1/deployments/valid/logs?tail=x"} {
		resp, err := e.do("GET", path, "", "")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("%s: %d, want 400", path, resp.StatusCode)
		}
	}
	// A server that is not there: exit 4.
	if _, _, code := e.aloft("", "list", "--server", "127.0.0.1:1"); code != 4 {
		t.Errorf("unreachable server: exit %d, want 4", code)
	}
}
