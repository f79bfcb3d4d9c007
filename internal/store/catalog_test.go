package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aloft-dev/aloft/internal/catalog"
)

func realCatalog(t testing.TB, cloud string) []catalog.Offering {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "catalog", "testdata", cloud+".csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	offs, _, err := catalog.Parse(cloud+".csv", f, cloud)
	if err != nil {
		t.Fatal(err)
	}
	return offs
}

func cloudsOf(t *testing.T, s *SQLite) map[string]CatalogInfo {
	t.Helper()
	infos, err := s.CatalogClouds(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]CatalogInfo{}
	for _, c := range infos {
		m[c.Cloud] = c
	}
	return m
}

// A replace that fails part-way leaves the previous catalog exactly as it was.
func TestReplaceCatalogAtomic(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "aloft.db"))
	lambda := realCatalog(t, "lambda")
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := s.ReplaceCatalog(ctx, "lambda", lambda, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.ReplaceCatalog(ctx, "runpod", realCatalog(t, "runpod"), t0); err != nil {
		t.Fatal(err)
	}
	before, err := s.ListOfferings(ctx, OfferingFilter{Cloud: "lambda"})
	if err != nil || len(before) != len(lambda) {
		t.Fatalf("lambda offerings: %d %v", len(before), err)
	}

	// Half a new catalog, then a row that violates the primary key.
	bad := append([]catalog.Offering{}, lambda[:200]...)
	for i := range bad {
		bad[i].Price += 1
	}
	bad = append(bad, bad[3])
	if err := s.ReplaceCatalog(ctx, "lambda", bad, t0.Add(time.Hour)); err == nil || !strings.Contains(err.Error(), "UNIQUE") {
		t.Fatalf("duplicate key: %v", err)
	}
	// A row that violates a CHECK constraint, at the very end.
	neg := append([]catalog.Offering{}, lambda[:300]...)
	neg[299].Price = -1
	if err := s.ReplaceCatalog(ctx, "lambda", neg, t0.Add(time.Hour)); err == nil || !strings.Contains(err.Error(), "CHECK") {
		t.Fatalf("negative price: %v", err)
	}
	// An offering of another cloud is refused before anything is written.
	other := []catalog.Offering{{Cloud: "aws", Region: "r", InstanceType: "x", Price: 1}}
	if err := s.ReplaceCatalog(ctx, "lambda", other, t0.Add(time.Hour)); err == nil {
		t.Fatal("offering of another cloud accepted")
	}
	after, err := s.ListOfferings(ctx, OfferingFilter{Cloud: "lambda"})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("a failed replace changed the catalog: %d offerings before, %d after", len(before), len(after))
	}
	cs := cloudsOf(t, s)
	if c := cs["lambda"]; c.Offerings != 408 || !c.ImportedAt.Equal(t0) {
		t.Fatalf("lambda catalog info after failed replaces: %+v", c)
	}

	// A successful replace swaps the whole catalog and leaves other clouds alone.
	t1 := t0.Add(2 * time.Hour)
	if err := s.ReplaceCatalog(ctx, "lambda", lambda[:10], t1); err != nil {
		t.Fatal(err)
	}
	cs = cloudsOf(t, s)
	if c := cs["lambda"]; c.Offerings != 10 || !c.ImportedAt.Equal(t1) {
		t.Fatalf("lambda after replace: %+v", c)
	}
	if c := cs["runpod"]; c.Offerings != 2736 || !c.ImportedAt.Equal(t0) {
		t.Fatalf("runpod changed by lambda's replace: %+v", c)
	}
}

func TestListOfferingsFilters(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "aloft.db"))
	at := time.Now()
	offs := map[string][]catalog.Offering{
		"aws": {
			{Region: "us-east-1", Zone: "use1-az1", InstanceType: "p5.48xlarge", Accelerator: "H100", AcceleratorCount: 8, VCPUs: 192, MemoryGiB: 2048, GPUMemoryMiB: 81920, Price: 98.32, SpotPrice: 30.1, Arch: "x86_64"},
			{Region: "us-east-1", Zone: "use1-az1", InstanceType: "p5.4xlarge", Accelerator: "H100", AcceleratorCount: 1, VCPUs: 16, MemoryGiB: 256, Price: 6.88, Arch: "x86_64"},
			{Region: "us-west-2", Zone: "usw2-az1", InstanceType: "p5e.48xlarge", Accelerator: "H200", AcceleratorCount: 8, SpotPrice: 8.7},
			{Region: "us-east-1", Zone: "use1-az1", InstanceType: "m5.large", VCPUs: 2, MemoryGiB: 8, Price: 0.096, SpotPrice: 0.04},
		},
		"lambda": {
			{Region: "us-east-1", InstanceType: "gpu_8x_h100_sxm5", Accelerator: "H100", AcceleratorCount: 8, Price: 23.92},
			{Region: "us-south-1", InstanceType: "gpu_1x_h100_pcie", Accelerator: "H100", AcceleratorCount: 1, Price: 2.49},
		},
	}
	for cloud, o := range offs {
		if err := s.ReplaceCatalog(ctx, cloud, o, at); err != nil {
			t.Fatal(err)
		}
	}
	names := func(f OfferingFilter) string {
		t.Helper()
		got, err := s.ListOfferings(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var n []string
		for _, o := range got {
			n = append(n, o.Cloud+"/"+o.InstanceType)
		}
		return strings.Join(n, " ")
	}
	for _, c := range []struct {
		f    OfferingFilter
		want string
	}{
		{OfferingFilter{}, "aws/m5.large lambda/gpu_1x_h100_pcie aws/p5.4xlarge lambda/gpu_8x_h100_sxm5 aws/p5.48xlarge aws/p5e.48xlarge"},
		{OfferingFilter{Limit: 2}, "aws/m5.large lambda/gpu_1x_h100_pcie"},
		{OfferingFilter{Cloud: "aws"}, "aws/m5.large aws/p5.4xlarge aws/p5.48xlarge aws/p5e.48xlarge"},
		{OfferingFilter{Region: "us-east-1"}, "aws/m5.large aws/p5.4xlarge lambda/gpu_8x_h100_sxm5 aws/p5.48xlarge"},
		{OfferingFilter{Accelerator: "h100"}, "lambda/gpu_1x_h100_pcie aws/p5.4xlarge lambda/gpu_8x_h100_sxm5 aws/p5.48xlarge"},
		{OfferingFilter{Accelerator: "H100", MinAccelerators: 8}, "lambda/gpu_8x_h100_sxm5 aws/p5.48xlarge"},
		{OfferingFilter{MinAccelerators: 2}, "lambda/gpu_8x_h100_sxm5 aws/p5.48xlarge aws/p5e.48xlarge"},
		{OfferingFilter{SpotOnly: true}, "aws/m5.large aws/p5e.48xlarge aws/p5.48xlarge"},
		{OfferingFilter{SpotOnly: true, Accelerator: "H200"}, "aws/p5e.48xlarge"},
		{OfferingFilter{Accelerator: "A100"}, ""},
		{OfferingFilter{Cloud: "gcp"}, ""},
	} {
		if got := names(c.f); got != c.want {
			t.Errorf("%+v:\n got %s\nwant %s", c.f, got, c.want)
		}
	}
	got, _ := s.ListOfferings(ctx, OfferingFilter{Cloud: "aws", Accelerator: "H100", MinAccelerators: 8})
	want := offs["aws"][0]
	want.Cloud = "aws"
	if len(got) != 1 || got[0] != want {
		t.Errorf("round trip: %+v, want %+v", got, want)
	}
}

// BenchmarkReplaceCatalog10k imports a 10,000-offering catalog over an
// existing one (the time an API import spends in the store).
func BenchmarkReplaceCatalog10k(b *testing.B) {
	ctx := context.Background()
	s, err := OpenSQLite(filepath.Join(b.TempDir(), "aloft.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	offs := make([]catalog.Offering, 10000)
	for i := range offs {
		offs[i] = catalog.Offering{Region: fmt.Sprintf("region-%d", i%40), Zone: fmt.Sprintf("zone-%d", i%3), InstanceType: fmt.Sprintf("type-%d", i/120),
			Accelerator: "H100", AcceleratorCount: 8, VCPUs: 192, MemoryGiB: 2048, GPUMemoryMiB: 81920, Price: float64(i) / 100, SpotPrice: float64(i) / 300, Arch: "x86_64"}
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.ReplaceCatalog(ctx, "big", offs, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}
