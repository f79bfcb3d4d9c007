package catalog

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

const hdr = "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,AvailabilityZone"

func csvOf(lines ...string) string { return strings.Join(lines, "\n") + "\n" }

func TestParseErrorMessage(t *testing.T) {
	e := &ParseError{File: "aws.csv", Line: 17, Column: "SpotPrice", Msg: `bad number "abc"`}
	if got, want := e.Error(), `aws.csv:17: column SpotPrice: bad number "abc"`; got != want {
		t.Fatalf("Error() = %s, want %s", got, want)
	}
	e = &ParseError{File: "x.csv", Line: 3, Msg: "wrong number of fields"}
	if got, want := e.Error(), "x.csv:3: wrong number of fields"; got != want {
		t.Fatalf("Error() = %s, want %s", got, want)
	}
}

// Every bad input is a *ParseError naming the file, line and column, and
// nothing is returned.
func TestParseBadInput(t *testing.T) {
	good := "p3.2xlarge,V100,1.0,8.0,61.0,,3.06,0.9,us-east-1,use1-az1"
	cases := []struct {
		name   string
		in     string
		line   int
		column string
		msg    string // substring of Error()
	}{
		{"empty file", "", 1, "", "empty file"},
		{"missing column", csvOf("InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,Price,Region", "a,,,1,1,1,r"), 1, "SpotPrice", "missing from the header"},
		{"missing region column", csvOf("InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,Price,SpotPrice", "a,,,1,1,1,"), 1, "Region", "missing"},
		{"column twice", csvOf(hdr+",Price", good+",1"), 1, "Price", "twice"},
		{"bad number", csvOf(hdr, good, "m5.large,,,2,8,,0.096,abc,us-east-1,use1-az1"), 3, "SpotPrice", `bad number "abc"`},
		{"bad vcpus", csvOf(hdr, "m5.large,,,two,8,,0.096,,us-east-1,use1-az1"), 2, "vCPUs", `bad number "two"`},
		{"negative price", csvOf(hdr, "m5.large,,,2,8,,-0.096,,us-east-1,use1-az1"), 2, "Price", `negative number "-0.096"`},
		{"negative memory", csvOf(hdr, "m5.large,,,2,-8,,0.096,,us-east-1,use1-az1"), 2, "MemoryGiB", "negative"},
		{"NaN", csvOf(hdr, "m5.large,,,2,8,,NaN,,us-east-1,use1-az1"), 2, "Price", `bad number "NaN"`},
		{"Inf", csvOf(hdr, "m5.large,,,2,8,,0.1,+Inf,us-east-1,use1-az1"), 2, "SpotPrice", `bad number "+Inf"`},
		{"huge", csvOf(hdr, "m5.large,,,2,8,,1e400,,us-east-1,use1-az1"), 2, "Price", "out of range"},
		{"hex float", csvOf(hdr, "m5.large,,,0x1p3,8,,0.1,,us-east-1,use1-az1"), 2, "vCPUs", "bad number"},
		{"conflicting duplicate", csvOf(hdr, good, "m5.large,,,2,8,,0.096,,us-east-1,use1-az1", "p3.2xlarge,V100,1,8,61,,3.07,0.9,us-east-1,use1-az1"), 4, "Price", "conflicting duplicate of line 2"},
		{"conflicting duplicate spot", csvOf(hdr, good, strings.Replace(good, ",0.9,", ",0.8,", 1)), 3, "SpotPrice", "0.8 here, 0.9 on line 2"},
		{"junk GpuInfo unterminated", csvOf(hdr, `p3.2xlarge,V100,1.0,8.0,61.0,"{'Gpus': [{'MemoryInfo': {'SizeInMiB': 16384}}",3.06,,us-east-1,a`), 2, "GpuInfo", "not a Python-literal dict"},
		{"junk GpuInfo shape", csvOf(hdr, `p3.2xlarge,V100,1.0,8.0,61.0,"{'Gpus': 5}",3.06,,us-east-1,a`), 2, "GpuInfo", "Gpus is a number, not a list"},
		{"junk GpuInfo size", csvOf(hdr, `p3.2xlarge,V100,1.0,8.0,61.0,"{'Gpus': [{'MemoryInfo': {'SizeInMiB': 'big'}}]}",3.06,,us-east-1,a`), 2, "GpuInfo", "SizeInMiB"},
		{"junk GpuInfo bare key", csvOf(hdr, `p3.2xlarge,V100,1.0,8.0,61.0,{Gpus: 1},3.06,,us-east-1,a`), 2, "GpuInfo", "unexpected"},
		{"junk GpuInfo list", csvOf(hdr, `p3.2xlarge,V100,1.0,8.0,61.0,"['V100']",3.06,,us-east-1,a`), 2, "GpuInfo", "a list, not a dict"},
		{"junk GpuInfo name", csvOf(hdr, `p3.2xlarge,V100,1.0,8.0,61.0,V100'},3.06,,us-east-1,a`), 2, "GpuInfo", "neither"},
		{"junk GpuInfo deep", csvOf(hdr, `p3.2xlarge,V100,1.0,8.0,61.0,`+strings.Repeat("[", 100)+`,3.06,,us-east-1,a`), 2, "GpuInfo", "nested too deeply"},
		{"count without accelerator", csvOf(hdr, "m5.large,,2,2,8,,0.096,,us-east-1,a"), 2, "AcceleratorCount", "AcceleratorName is empty"},
		{"accelerator without count", csvOf(hdr, "p3.2xlarge,V100,,8,61,,3.06,,us-east-1,a"), 2, "AcceleratorCount", "empty"},
		{"accelerator with count 0", csvOf(hdr, "p3.2xlarge,V100,0,8,61,,3.06,,us-east-1,a"), 2, "AcceleratorCount", "0, but"},
		{"no instance type nor accelerator", csvOf(hdr, ",,,8,61,,3.06,,us-east-1,a"), 2, "InstanceType", "empty"},
		{"no region", csvOf(hdr, "m5.large,,,2,8,,0.096,,,a"), 2, "Region", "empty"},
		{"no vcpus on a vm row", csvOf(hdr, "m5.large,,,,8,,0.096,,us-east-1,a"), 2, "vCPUs", "empty"},
		{"no memory on a vm row", csvOf(hdr, "m5.large,,,2,,,0.096,,us-east-1,a"), 2, "MemoryGiB", "empty"},
		{"control character", csvOf(hdr, "\"m5.\nlarge\",,,2,8,,0.096,,us-east-1,a"), 2, "InstanceType", "control character"},
		{"wrong field count", csvOf(hdr, good, "m5.large,,,2,8,,0.096,,us-east-1"), 3, "", "wrong number of fields"},
		{"bare quote", csvOf(hdr, good, `m5."large,,,2,8,,0.096,,us-east-1,a`), 3, "", "bare \" in non-quoted-field"},
		{"unterminated quote", csvOf(hdr, good, `m5.large,,,2,8,"{'a': 1},0.096,,us-east-1,a`), 3, "", "extraneous or missing \""},
		// Line numbers count physical lines: a quoted field spanning two
		// lines moves the following rows down.
		{"line after multi-line field", csvOf(hdr, `p3.2xlarge,V100,1.0,8.0,61.0,"{'Gpus':`+"\n"+` []}",3.06,,us-east-1,a`, "m5.large,,,2,8,,x,,us-east-1,a"), 4, "Price", `bad number "x"`},
		{"CRLF bad number", strings.ReplaceAll(csvOf(hdr, good, "m5.large,,,2,8,,0.096,1..2,us-east-1,a"), "\n", "\r\n"), 3, "SpotPrice", `bad number "1..2"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			offs, _, err := Parse("test.csv", strings.NewReader(c.in), "aws")
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("want a *ParseError, got %v", err)
			}
			if offs != nil {
				t.Errorf("offerings returned with the error: %d", len(offs))
			}
			if pe.File != "test.csv" || pe.Line != c.line || pe.Column != c.column {
				t.Errorf("error at %s:%d column %q, want line %d column %q: %v", pe.File, pe.Line, pe.Column, c.line, c.column, err)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q does not say %q", err, c.msg)
			}
			if !strings.HasPrefix(err.Error(), "test.csv:") {
				t.Errorf("error %q does not start with the file name", err)
			}
		})
	}
}

// A failed read is reported as such, wrapped, not as a parse error.
func TestParseReadError(t *testing.T) {
	boom := errors.New("boom")
	_, _, err := Parse("x.csv", iotest.ErrReader(boom), "aws")
	if !errors.Is(err, boom) {
		t.Fatalf("read error not wrapped: %v", err)
	}
	if _, _, err := Parse("x.csv", strings.NewReader(csvOf(hdr)), ""); err == nil {
		t.Fatal("no cloud name accepted")
	}
}

func TestParseGoodInput(t *testing.T) {
	in := "\ufeff" + csvOf(
		"Region,SpotPrice,Price,AvailabilityZone,MemoryGiB,vCPUs,GpuInfo,AcceleratorCount,AcceleratorName,InstanceType,Arch,Extra",
		// quoted dict with commas
		`us-east-1,0.9,3.06,use1-az1,61.0,8.0,"{'Gpus': [{'Name': 'V100', 'Manufacturer': 'NVIDIA', 'Count': 1, 'MemoryInfo': {'SizeInMiB': 16384}}], 'TotalGpuMemoryInMiB': 16384}",1.0,V100,p3.2xlarge,x86_64,"a, b"`,
		// the same row again, quoted differently: skipped as a duplicate
		`"us-east-1","0.90",3.06,use1-az1,61,8,"{'Gpus': [{'MemoryInfo': {'SizeInMiB': 16384.0}}]}",1,"V100",p3.2xlarge,x86_64,other`,
		// CPU only, no spot price
		`us-east-1,,0.096,use1-az1,8,2,,,,m5.large,x86_64,`,
		// no price at all: skipped
		`us-east-1,,,use1-az1,2048,192,,8.0,H200,p5e.48xlarge,x86_64,`,
		// 0.0/0.0 is no price either
		`us-east-1,0.0,0,use1-az2,2048,192,,8.0,B200,a4,x86_64,`,
		// GCP-style accelerator row: empty InstanceType, vCPUs and memory; bare GpuInfo
		`us-east-1,1.35,4.5,use1-az1,,,tpu-v2-8,1,tpu-v2-8,,,`,
		// fractional accelerator share, spot only
		`us-east-1,0.05,,use1-az1,14,6,A10,0.5,A10,NV6ads_A10_v5,x86_64,`,
	)
	offs, sum, err := Parse("good.csv", strings.NewReader(in), "aws")
	if err != nil {
		t.Fatal(err)
	}
	want := []Offering{
		{Cloud: "aws", Region: "us-east-1", Zone: "use1-az1", InstanceType: "p3.2xlarge", Accelerator: "V100", AcceleratorCount: 1, VCPUs: 8, MemoryGiB: 61, GPUMemoryMiB: 16384, Price: 3.06, SpotPrice: 0.9, Arch: "x86_64"},
		{Cloud: "aws", Region: "us-east-1", Zone: "use1-az1", InstanceType: "m5.large", VCPUs: 2, MemoryGiB: 8, Price: 0.096, Arch: "x86_64"},
		{Cloud: "aws", Region: "us-east-1", Zone: "use1-az1", InstanceType: "tpu-v2-8-1x", Accelerator: "tpu-v2-8", AcceleratorCount: 1, Price: 4.5, SpotPrice: 1.35},
		{Cloud: "aws", Region: "us-east-1", Zone: "use1-az1", InstanceType: "NV6ads_A10_v5", Accelerator: "A10", AcceleratorCount: 0.5, VCPUs: 6, MemoryGiB: 14, SpotPrice: 0.05, Arch: "x86_64"},
	}
	if !slices.Equal(offs, want) {
		t.Errorf("offerings:\n got %+v\nwant %+v", offs, want)
	}
	wantSum := Summary{Rows: 7, Offerings: 4, SkippedDuplicates: 1, SkippedNoPrice: 2, AcceleratorOnly: 1,
		Accelerators: []string{"A10", "V100", "tpu-v2-8"}, Regions: []string{"us-east-1"}}
	if !summaryEqual(sum, wantSum) {
		t.Errorf("summary %+v, want %+v", sum, wantSum)
	}
	// A header alone is a catalog with nothing in it.
	offs, sum, err = Parse("h.csv", strings.NewReader(hdr+"\r\n"), "aws")
	if err != nil || len(offs) != 0 || sum.Rows != 0 {
		t.Fatalf("header only: %v %+v %v", offs, sum, err)
	}
}

func summaryEqual(a, b Summary) bool {
	return a.Rows == b.Rows && a.Offerings == b.Offerings && a.SkippedDuplicates == b.SkippedDuplicates &&
		a.SkippedNoPrice == b.SkippedNoPrice && a.AcceleratorOnly == b.AcceleratorOnly &&
		slices.Equal(a.Accelerators, b.Accelerators) && slices.Equal(a.Regions, b.Regions)
}

func TestGPUMemoryMiB(t *testing.T) {
	for in, want := range map[string]int64{
		"":             0,
		"A100-80GB":    0,
		"tpu-v2-8":     0,
		"{}":           0,
		"{'Gpus': []}": 0,
		"{'Gpus': [{'Name': 'A10G', 'Manufacturer': 'NVIDIA', 'Count': 1, 'MemoryInfo': {'SizeInMiB': 22888}}], 'TotalGpuMemoryInMiB': 22888}": 22888,
		"{'Gpus': [{'MemoryInfo': {'SizeInMiB': 81920}}]}":                                     81920,
		`{"Gpus": [{"Count": 8.0, "MemoryInfo": {"SizeInMiB": 1.5e3}}], 'x': (1, True, None)}`: 1500,
		"{'Gpus': [{'Name': 'it\\'s', 'MemoryInfo': {'SizeInMiB': 10,},},],}":                  10,
	} {
		got, err := GPUMemoryMiB(in)
		if err != nil || got != want {
			t.Errorf("GPUMemoryMiB(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, junk := range []string{"{", "{'a'}", "{'a': }", "{1: 2}", "{'a': 1 'b': 2}", "[1, 2", "{'a': 'b", "{'a': 1} x",
		"{'Gpus': [1]}", "{'Gpus': [{'MemoryInfo': 3}]}", "{'Gpus': [{'MemoryInfo': {'SizeInMiB': -1}}]}", "{'a': 1e999}",
		"{'a': ---}", "{'a': Truth}", "V100}", "a'b", strings.Repeat("{'a': ", 50) + "1" + strings.Repeat("}", 50)} {
		if _, err := GPUMemoryMiB(junk); err == nil {
			t.Errorf("GPUMemoryMiB(%q) accepted junk", junk)
		}
	}
}

// FuzzGPUMemoryMiB: no input makes the literal parser panic or hang.
func FuzzGPUMemoryMiB(f *testing.F) {
	for _, s := range []string{"{'Gpus': [{'MemoryInfo': {'SizeInMiB': 81920}}]}", "[", "{'a': (1, 2)}", "A100"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := GPUMemoryMiB(s)
		if err == nil && n < 0 {
			t.Fatalf("negative memory %d for %q", n, s)
		}
	})
}

// FuzzParse: no input makes Parse panic, and an error never comes with offerings.
func FuzzParse(f *testing.F) {
	f.Add(csvOf(hdr, "p3.2xlarge,V100,1.0,8.0,61.0,,3.06,0.9,us-east-1,use1-az1"))
	f.Add(csvOf(hdr, ",,,,,,,,,"))
	f.Fuzz(func(t *testing.T, s string) {
		offs, sum, err := Parse("f.csv", strings.NewReader(s), "c")
		if err != nil && offs != nil {
			t.Fatal("offerings with an error")
		}
		if err == nil && sum.Offerings != len(offs) {
			t.Fatalf("summary says %d offerings, got %d", sum.Offerings, len(offs))
		}
	})
}

func parseFile(t testing.TB, name string) ([]Offering, Summary) {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name+".csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	offs, sum, err := Parse(name+".csv", f, name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if sum.Offerings != len(offs) || sum.Rows != sum.Offerings+sum.SkippedDuplicates+sum.SkippedNoPrice {
		t.Fatalf("%s: summary does not add up: %+v (%d offerings)", name, sum, len(offs))
	}
	return offs, sum
}

func find(offs []Offering, f func(Offering) bool) []Offering {
	var out []Offering
	for _, o := range offs {
		if f(o) {
			out = append(out, o)
		}
	}
	return out
}

// The real catalogs in testdata (see testdata/SOURCE.md) parse, with the
// facts known about them.
func TestParseRealCatalogs(t *testing.T) {
	t.Run("lambda", func(t *testing.T) {
		offs, sum := parseFile(t, "lambda")
		if sum.Rows != 408 || sum.Offerings != 408 || len(sum.Regions) != 17 || sum.SkippedDuplicates != 0 || sum.SkippedNoPrice != 0 {
			t.Errorf("summary %+v", sum)
		}
		wantAcc := []string{"A10", "A100", "A100-80GB", "A6000", "B200", "GH200", "H100", "RTX6000", "V100"}
		if !slices.Equal(sum.Accelerators, wantAcc) {
			t.Errorf("accelerators %v, want %v", sum.Accelerators, wantAcc)
		}
		if n := len(find(offs, func(o Offering) bool { return o.SpotPrice != 0 })); n != 0 {
			t.Errorf("%d lambda offerings with a spot price; lambda has none", n)
		}
		if n := len(find(offs, func(o Offering) bool { return o.Accelerator != "" })); n != 374 {
			t.Errorf("%d GPU offerings, want 374", n)
		}
		h := find(offs, func(o Offering) bool { return o.InstanceType == "gpu_8x_h100_sxm5" })
		if len(h) == 0 || h[0].Accelerator != "H100" || h[0].AcceleratorCount != 8 || h[0].GPUMemoryMiB != 81920 || h[0].Zone != "" || h[0].Arch != "" {
			t.Errorf("gpu_8x_h100_sxm5: %+v", h)
		}
	})
	t.Run("runpod", func(t *testing.T) {
		offs, sum := parseFile(t, "runpod")
		if sum.Rows != 2750 || sum.SkippedDuplicates != 14 || sum.Offerings != 2736 || len(sum.Regions) != 8 || len(sum.Accelerators) != 20 {
			t.Errorf("summary %+v", sum)
		}
		if n := len(find(offs, func(o Offering) bool { return o.Accelerator == "L40S" && o.SpotPrice > o.Price })); n != 100 {
			t.Errorf("%d L40S offerings with spot > on-demand, want 100 (kept as listed)", n)
		}
		if n := len(find(offs, func(o Offering) bool { return o.InstanceType == "2x_B200_SECURE" && o.Region == "US" })); n != 14 {
			t.Errorf("2x_B200_SECURE in US: %d offerings, want the 14 distinct ones", n)
		}
	})
	t.Run("azure", func(t *testing.T) {
		offs, sum := parseFile(t, "azure")
		if sum.Rows != 836 || sum.SkippedNoPrice != 9 || len(sum.Regions) != 9 {
			t.Errorf("summary %+v", sum)
		}
		wantAcc := []string{"A10", "A100", "A100-80GB", "H100", "K80", "M60", "Radeon MI25", "T4", "V100", "V100-32GB"}
		if !slices.Equal(sum.Accelerators, wantAcc) {
			t.Errorf("accelerators %v, want %v", sum.Accelerators, wantAcc)
		}
		nd := find(offs, func(o Offering) bool { return o.InstanceType == "Standard_ND96isr_H100_v5" })
		if len(nd) == 0 || nd[0].AcceleratorCount != 12 || nd[0].Accelerator != "H100" {
			t.Errorf("Standard_ND96isr_H100_v5: %+v", nd)
		}
	})
	t.Run("aws", func(t *testing.T) {
		offs, sum := parseFile(t, "aws")
		if sum.Rows != 1513 || sum.SkippedNoPrice != 78 || sum.SkippedDuplicates != 0 || len(sum.Regions) != 23 {
			t.Errorf("summary %+v", sum)
		}
		wantAcc := []string{"A100", "A100-80GB", "A10G", "B200", "H100", "H200", "L4", "L40S", "T4", "T4g", "V100", "V100-32GB"}
		if !slices.Equal(sum.Accelerators, wantAcc) {
			t.Errorf("accelerators %v, want %v", sum.Accelerators, wantAcc)
		}
		p5 := find(offs, func(o Offering) bool { return o.InstanceType == "p5.48xlarge" })
		if len(p5) == 0 || p5[0].Accelerator != "H100" || p5[0].AcceleratorCount != 8 || p5[0].GPUMemoryMiB != 81920 || p5[0].Zone == "" {
			t.Errorf("p5.48xlarge: %+v", p5)
		}
		if n := len(find(offs, func(o Offering) bool { return o.Arch == "arm64" })); n == 0 {
			t.Error("no arm64 offerings (g5g)")
		}
		// Spot only: p5e.48xlarge rows with a spot price but no on-demand price.
		if n := len(find(offs, func(o Offering) bool { return o.Price == 0 && o.SpotPrice > 0 })); n != 4 {
			t.Errorf("%d spot-only offerings, want 4", n)
		}
	})
	t.Run("gcp", func(t *testing.T) {
		offs, sum := parseFile(t, "gcp")
		if sum.Rows != 1525 || len(sum.Regions) != 40 || sum.AcceleratorOnly != 648 || sum.SkippedNoPrice != 11 {
			t.Errorf("summary %+v", sum)
		}
		h := find(offs, func(o Offering) bool { return o.InstanceType == "H100-8x" })
		if len(h) != 29 || h[0].Accelerator != "H100" || h[0].AcceleratorCount != 8 || h[0].VCPUs != 0 || h[0].GPUMemoryMiB != 81920 {
			t.Errorf("H100-8x accelerator rows: %d, first %+v", len(h), h)
		}
		if n := len(find(offs, func(o Offering) bool { return o.InstanceType == "a4-highgpu-8g" })); n != 0 {
			t.Errorf("a4-highgpu-8g (priced 0.0/0.0) kept %d times", n)
		}
		tpu := find(offs, func(o Offering) bool { return o.Accelerator == "tpu-v2-8" })
		if len(tpu) != 5 || tpu[0].InstanceType != "tpu-v2-8-1x" {
			t.Errorf("tpu-v2-8: %+v", tpu)
		}
	})
}

// Whole real files with CRLF endings parse the same as with LF.
func TestParseCRLFSameAsLF(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "lambda.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte("\r\n")) {
		t.Fatal("lambda.csv is expected to have CRLF line endings")
	}
	a, _, err := Parse("crlf.csv", bytes.NewReader(data), "lambda")
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := Parse("lf.csv", bytes.NewReader(bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))), "lambda")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a, b) {
		t.Fatal("CRLF and LF parse differently")
	}
}

func BenchmarkParseAll(b *testing.B) {
	names := []string{"aws", "azure", "gcp", "lambda", "runpod"}
	files := make([][]byte, len(names))
	var total int64
	for i, n := range names {
		data, err := os.ReadFile(filepath.Join("testdata", n+".csv"))
		if err != nil {
			b.Fatal(err)
		}
		files[i] = data
		total += int64(len(data))
	}
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		for i, n := range names {
			if _, _, err := Parse(n+".csv", bytes.NewReader(files[i]), n); err != nil {
				b.Fatal(err)
			}
		}
	}
}
