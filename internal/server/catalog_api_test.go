package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	apiv1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/auth"
	"github.com/aloft-dev/aloft/internal/store"
)

func catalogFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "catalog", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (e *imageEnv) importCatalog(role, cloud, filename string, body []byte, ctype string) (int, []byte) {
	e.t.Helper()
	path := "/api/v1/catalogs/" + cloud
	if filename != "" {
		path += "?filename=" + url.QueryEscape(filename)
	}
	return e.do(role, "POST", path, bytes.NewReader(body), ctype)
}

func (e *imageEnv) offerings(role, query string) apiv1.OfferingList {
	e.t.Helper()
	code, b := e.do(role, "GET", "/api/v1/offerings?"+query, nil, "")
	if code != 200 {
		e.t.Fatalf("offerings?%s: %d %s", query, code, b)
	}
	var l apiv1.OfferingList
	if err := json.Unmarshal(b, &l); err != nil {
		e.t.Fatal(err)
	}
	return l
}

func (e *imageEnv) catalogs() []apiv1.CatalogInfo {
	e.t.Helper()
	code, b := e.do("viewer", "GET", "/api/v1/catalogs", nil, "")
	if code != 200 {
		e.t.Fatalf("catalogs: %d %s", code, b)
	}
	var l struct{ Items []apiv1.CatalogInfo }
	if err := json.Unmarshal(b, &l); err != nil {
		e.t.Fatal(err)
	}
	return l.Items
}

// Import the real aws catalog over HTTP, query it, and check that a bad
// catalog is refused with its file, line and column and changes nothing.
func TestCatalogAPI(t *testing.T) {
	e := newImageEnv(t)
	aws := catalogFile(t, "aws.csv")

	code, b := e.importCatalog("admin", "aws", "aws.csv", aws, "text/csv")
	if code != 201 {
		t.Fatalf("import aws: %d %s", code, b)
	}
	var sum apiv1.CatalogImport
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Cloud != "aws" || sum.Rows != 1513 || sum.Offerings != 1513-78 || sum.SkippedNoPrice != 78 || len(sum.Regions) != 23 ||
		!strings.Contains(strings.Join(sum.Accelerators, ","), "H100") || sum.ImportedAt.IsZero() {
		t.Fatalf("summary: %+v", sum)
	}
	cats := e.catalogs()
	if len(cats) != 1 || cats[0].Cloud != "aws" || cats[0].Offerings != sum.Offerings || !cats[0].ImportedAt.Equal(sum.ImportedAt) {
		t.Fatalf("catalogs: %+v", cats)
	}

	// --gpu H100: case-insensitive, cheapest first, within the limit.
	l := e.offerings("viewer", "gpu=h100&limit=10000")
	if len(l.Items) == 0 || l.Truncated {
		t.Fatalf("H100 offerings: %d truncated=%v", len(l.Items), l.Truncated)
	}
	for i, o := range l.Items {
		if o.Accelerator != "H100" || o.Cloud != "aws" {
			t.Fatalf("gpu=h100 answered %+v", o)
		}
		if i > 0 && o.Price != 0 && o.Price < l.Items[i-1].Price {
			t.Fatalf("not sorted by price at %d: %v after %v", i, o.Price, l.Items[i-1].Price)
		}
	}
	if got := e.offerings("viewer", "gpu=H100&minGpus=8&limit=10000"); len(got.Items) == 0 || len(got.Items) >= len(l.Items) {
		t.Fatalf("minGpus=8: %d of %d", len(got.Items), len(l.Items))
	}
	spot := e.offerings("viewer", "spot=true&region=us-east-1&limit=10000")
	if len(spot.Items) == 0 || !sort.SliceIsSorted(spot.Items, func(i, j int) bool { return spot.Items[i].SpotPrice < spot.Items[j].SpotPrice }) {
		t.Fatalf("spot offerings not sorted by spot price: %d", len(spot.Items))
	}
	for _, o := range spot.Items {
		if o.SpotPrice <= 0 || o.Region != "us-east-1" {
			t.Fatalf("spot=true&region=us-east-1 answered %+v", o)
		}
	}
	if d := e.offerings("viewer", ""); len(d.Items) != 100 || !d.Truncated {
		t.Fatalf("default limit: %d items, truncated=%v", len(d.Items), d.Truncated)
	}
	if d := e.offerings("viewer", "cloud=gcp"); len(d.Items) != 0 || d.Truncated {
		t.Fatalf("cloud=gcp: %+v", d)
	}

	// Bad catalogs: 400 naming file, line and column; nothing changes.
	before := e.offerings("viewer", "cloud=aws&limit=10000")
	lines := strings.SplitAfter(string(aws), "\n") // lines[i] is line i+1; the last is ""
	fields := func(line string) []string {
		f := strings.Split(strings.TrimSuffix(line, "\n"), ",")
		if len(f) != 11 {
			t.Fatalf("want a line with 11 fields (unquoted GpuInfo): %s", line)
		}
		return f
	}
	// Line 42 with a word for its Price (InstanceType,AcceleratorName,
	// AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,...).
	f := fields(lines[41])
	f[6] = "cheap"
	badNumber := strings.Join(lines[:41], "") + strings.Join(f, ",") + "\n" + strings.Join(lines[42:], "")
	// The last row again, at another price.
	f = fields(lines[len(lines)-2])
	f[6] = "999"
	conflict := string(aws) + strings.Join(f, ",") + "\n"
	for _, c := range []struct {
		name, file, body, want string
	}{
		{"bad number", "aws-bad.csv", badNumber, `aws-bad.csv:42: column Price: bad number "cheap"`},
		{"missing column", "", strings.Replace(string(aws), "SpotPrice,", "", 1), "catalog.csv:1: column SpotPrice: missing"},
		{"conflicting duplicate", "dup.csv", conflict, "dup.csv:1515: column Price: conflicting duplicate of line 1514"},
		{"header only", "empty.csv", lines[0], "empty.csv has no offerings"},
		{"junk", "junk.csv", "\x00\xff{", "junk.csv:1: column InstanceType: missing"},
	} {
		code, b := e.importCatalog("admin", "aws", c.file, []byte(c.body), "application/octet-stream")
		if code != 400 || !strings.Contains(errorOf(t, b), c.want) {
			t.Errorf("%s: %d %s, want 400 saying %q", c.name, code, b, c.want)
		}
	}
	after := e.offerings("viewer", "cloud=aws&limit=10000")
	if len(after.Items) != len(before.Items) || after.Items[0] != before.Items[0] {
		t.Fatalf("a refused import changed the catalog: %d -> %d offerings", len(before.Items), len(after.Items))
	}
	if c := e.catalogs(); len(c) != 1 || !c[0].ImportedAt.Equal(sum.ImportedAt) {
		t.Fatalf("a refused import changed the catalog info: %+v", c)
	}

	// Request mistakes.
	for _, c := range []struct {
		method, path, ctype, body string
		code                      int
		field                     string
	}{
		{"POST", "/api/v1/catalogs/AWS", "text/csv", string(aws), 400, "cloud"},
		{"POST", "/api/v1/catalogs/aws_1", "text/csv", string(aws), 400, "cloud"},
		{"POST", "/api/v1/catalogs/aws", "application/json", "{}", 415, ""},
		{"GET", "/api/v1/offerings?limit=0", "", "", 400, "limit"},
		{"GET", "/api/v1/offerings?limit=10001", "", "", 400, "limit"},
		{"GET", "/api/v1/offerings?minGpus=-1", "", "", 400, "minGpus"},
		{"GET", "/api/v1/offerings?spot=maybe", "", "", 400, "spot"},
	} {
		code, b := e.do("admin", c.method, c.path, strings.NewReader(c.body), c.ctype)
		if code != c.code {
			t.Errorf("%s %s: %d %s, want %d", c.method, c.path, code, b, c.code)
			continue
		}
		var er apiv1.ErrorResponse
		json.Unmarshal(b, &er)
		if c.field != "" && (len(er.Fields) != 1 || er.Fields[0].Field != c.field) {
			t.Errorf("%s %s: fields %+v, want %s", c.method, c.path, er.Fields, c.field)
		}
	}

	// Over the size limit: 413, nothing stored.
	e.api.MaxCatalogBytes = 1000
	if code, b := e.do("admin", "POST", "/api/v1/catalogs/small", struct{ *bytes.Reader }{bytes.NewReader(aws)}, "text/csv"); code != 413 {
		t.Errorf("streamed over the limit: %d %s", code, b)
	}
	if code, b := e.importCatalog("admin", "small", "", aws, "text/csv"); code != 413 {
		t.Errorf("Content-Length over the limit: %d %s", code, b)
	}
	if c := e.catalogs(); len(c) != 1 {
		t.Errorf("an oversized catalog was stored: %+v", c)
	}
	e.api.MaxCatalogBytes = 0

	// Re-importing replaces; imports are audited.
	lambda := catalogFile(t, "lambda.csv")
	if code, b := e.importCatalog("admin", "lambda", "lambda.csv", lambda, ""); code != 201 {
		t.Fatalf("import lambda: %d %s", code, b)
	}
	if code, b := e.importCatalog("admin", "aws", "aws.csv", []byte(strings.Join(lines[:11], "")), "text/csv"); code != 201 {
		t.Fatalf("re-import aws: %d %s", code, b)
	}
	cats = e.catalogs()
	if len(cats) != 2 || cats[0].Cloud != "aws" || cats[0].Offerings != 10 || cats[1].Cloud != "lambda" || cats[1].Offerings != 408 {
		t.Fatalf("catalogs after re-import: %+v", cats)
	}
	recs, err := e.st.ListAudit(context.Background(), store.AuditFilter{Action: "catalog.import"})
	if err != nil || len(recs) < 3 || !strings.Contains(recs[0].Object, "/api/v1/catalogs/aws") {
		t.Fatalf("audit: %+v %v", recs, err)
	}
}

// Catalogs are shared by every workspace: only an admin of all workspaces
// may import one; every role may read them.
func TestCatalogAPIRoles(t *testing.T) {
	e := newImageEnv(t)
	tok, err := newAPIToken("ws-admin", auth.Admin, auth.DefaultWorkspace, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.CreateToken(context.Background(), tok.Token); err != nil {
		t.Fatal(err)
	}
	e.tokens["ws-admin"] = tok.Secret
	lambda := catalogFile(t, "lambda.csv")
	for _, role := range []string{"viewer", "developer", "ws-admin"} {
		if code, b := e.importCatalog(role, "lambda", "", lambda, "text/csv"); code != 403 {
			t.Errorf("import as %s: %d %s, want 403", role, code, b)
		}
	}
	if c := e.catalogs(); len(c) != 0 {
		t.Fatalf("a denied import stored a catalog: %+v", c)
	}
	if code, b := e.importCatalog("admin", "lambda", "", lambda, "text/csv"); code != 201 {
		t.Fatalf("import as admin: %d %s", code, b)
	}
	for _, role := range []string{"viewer", "developer", "ws-admin"} {
		if l := e.offerings(role, "gpu=H100&limit=1000"); len(l.Items) == 0 {
			t.Errorf("%s sees no H100 offerings", role)
		}
	}
}
