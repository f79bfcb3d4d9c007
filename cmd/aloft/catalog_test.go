package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/auth"
	"github.com/aloft-dev/aloft/internal/client"
	"github.com/aloft-dev/aloft/internal/server"
	"github.com/aloft-dev/aloft/internal/store"
	"github.com/prometheus/client_golang/prometheus"
)

// catalogServer runs the real API over a temp store (no clouds or
// controller: the catalog routes need neither) and returns its URL and an
// admin token for all workspaces.
func catalogServer(t *testing.T) (string, string) {
	t.Helper()
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "aloft.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	secret, hash, err := auth.NewSecret(auth.TokenPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateToken(context.Background(), store.Token{ID: "tok_cli", Hash: hash, Owner: "test", Role: string(auth.Admin),
		Workspace: auth.AllWorkspaces, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	api := &server.API{Store: st, Logger: slog.New(slog.DiscardHandler), Gatherer: prometheus.NewRegistry()}
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return srv.URL, secret
}

func runCLIAs(t *testing.T, server, token string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	t.Setenv("ALOFT_CONFIG", filepath.Join(t.TempDir(), "config.json"))
	t.Setenv("ALOFT_TOKEN", token)
	root := newRoot()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"--server", server}, args...))
	err = root.Execute()
	return out.String(), errOut.String(), err
}

func TestCatalogCommands(t *testing.T) {
	url, token := catalogServer(t)
	testdata := filepath.Join("..", "..", "internal", "catalog", "testdata")

	out, _, err := runCLIAs(t, url, token, "catalog", "import", filepath.Join(testdata, "aws.csv"), "--cloud", "aws")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"catalog/aws imported from", "1435 offerings in 23 regions (1513 rows read)", "accelerators (12): A100, A100-80GB, A10G,", "H100", "0 duplicate rows, 78 rows without a price"} {
		if !strings.Contains(out, want) {
			t.Errorf("import output lacks %q:\n%s", want, out)
		}
	}
	out, _, err = runCLIAs(t, url, token, "catalog", "import", filepath.Join(testdata, "runpod.csv"), "--cloud", "runpod", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var sum v1.CatalogImport
	if err := json.Unmarshal([]byte(out), &sum); err != nil || sum.SkippedDuplicates != 14 || sum.Offerings != 2736 {
		t.Fatalf("runpod import -o json: %+v %v\n%s", sum, err, out)
	}
	out, _, err = runCLIAs(t, url, token, "catalog", "import", filepath.Join(testdata, "gcp.csv"), "--cloud", "gcp")
	if err != nil || !strings.Contains(out, "648 offerings price accelerators without their VM") {
		t.Fatalf("gcp import: %v\n%s", err, out)
	}

	// ls --gpu H100 -o table: header, every row an H100, cheapest first.
	out, stderr, err := runCLIAs(t, url, token, "catalog", "ls", "--gpu", "h100", "--limit", "10000", "-o", "table")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if got := strings.Fields(lines[0]); strings.Join(got, " ") != "CLOUD REGION ZONE INSTANCE GPU COUNT VCPUS MEM_GiB PRICE SPOT" {
		t.Fatalf("header: %q", lines[0])
	}
	clouds := map[string]bool{}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) != 10 || f[4] != "H100" {
			t.Fatalf("not an H100 row: %q", l)
		}
		clouds[f[0]] = true
	}
	if !clouds["aws"] || !clouds["gcp"] || !clouds["runpod"] || stderr != "" {
		t.Fatalf("H100 offerings from %v (want aws, gcp, runpod); stderr %q", clouds, stderr)
	}
	// PRICE ascending, with spot-only offerings ("-") last.
	prev, spotOnly := 0.0, false
	for _, l := range lines[1:] {
		p := strings.Fields(l)[8]
		if p == "-" {
			spotOnly = true
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimPrefix(p, "$"), 64)
		if err != nil || f < prev || spotOnly {
			t.Fatalf("PRICE not ascending at %q", l)
		}
		prev = f
	}

	// A cut list says so on stderr; JSON is the items.
	out, stderr, err = runCLIAs(t, url, token, "catalog", "ls", "--cloud", "aws", "--limit", "3")
	if err != nil || len(strings.Split(strings.TrimSpace(out), "\n")) != 4 || !strings.Contains(stderr, "the 3 cheapest shown") {
		t.Fatalf("--limit 3: %v\n%s\n%s", err, out, stderr)
	}
	out, _, err = runCLIAs(t, url, token, "catalog", "ls", "--gpu", "H100", "--min-gpus", "8", "--spot", "--region", "us-east-1", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var offs []v1.Offering
	if err := json.Unmarshal([]byte(out), &offs); err != nil || len(offs) == 0 {
		t.Fatalf("ls -o json: %v\n%s", err, out)
	}
	for i, o := range offs {
		if o.Accelerator != "H100" || o.AcceleratorCount < 8 || o.SpotPrice <= 0 || o.Region != "us-east-1" || (i > 0 && o.SpotPrice < offs[i-1].SpotPrice) {
			t.Fatalf("--gpu H100 --min-gpus 8 --spot --region us-east-1 answered %+v", o)
		}
	}

	out, _, err = runCLIAs(t, url, token, "catalog", "clouds")
	if err != nil || !strings.Contains(out, "CLOUD") || !strings.Contains(out, "aws") || !strings.Contains(out, "2736") {
		t.Fatalf("catalog clouds: %v\n%s", err, out)
	}

	// A bad catalog: the server's message names file, line and column; exit code 1 (error, not usage).
	data, _ := os.ReadFile(filepath.Join(testdata, "lambda.csv"))
	bad := filepath.Join(t.TempDir(), "lambda-bad.csv")
	os.WriteFile(bad, bytes.Replace(data, []byte(",0.2,"), []byte(",-0.2,"), 1), 0o644)
	_, _, err = runCLIAs(t, url, token, "catalog", "import", bad, "--cloud", "lambda")
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(err.Error(), `lambda-bad.csv:2: column Price: negative number "-0.2"`) {
		t.Fatalf("bad catalog: %v", err)
	}
	out, _, _ = runCLIAs(t, url, token, "catalog", "clouds", "-o", "json")
	if strings.Contains(out, "lambda") {
		t.Fatalf("the bad catalog was stored: %s", out)
	}

	// Usage mistakes: exit code 2.
	for _, args := range [][]string{
		{"catalog", "import", bad},
		{"catalog", "import", bad, "--cloud", "AWS"},
		{"catalog", "import", "--cloud", "aws"},
		{"catalog", "ls", "--limit", "20000"},
	} {
		if _, _, err := runCLIAs(t, url, token, args...); !isUsage(err) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
	var ee *exitErr
	if _, _, err := runCLIAs(t, url, token, "catalog", "import", "/nonexistent.csv", "--cloud", "aws"); !errors.As(err, &ee) || ee.code != exitError {
		t.Errorf("missing file: %v", err)
	}
}
