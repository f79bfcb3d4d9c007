package v1

import (
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestParseQuantity(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  string
	}{
		{"1000", 1000, ""},
		{"0", 0, ""},
		{"512Mi", 512 << 20, ""},
		{"2Gi", 2 << 30, ""},
		{"1G", 1_000_000_000, ""},
		{"1k", 1000, ""},
		{"1K", 1000, ""},
		{"1Ki", 1024, ""},
		{"1Ti", 1 << 40, ""},
		{"1.5Gi", 3 << 29, ""},
		{"0.5", 1, ""}, // rounds up to whole bytes
		{".5Ki", 512, ""},
		{" 256Mi ", 256 << 20, ""},
		{"+1Mi", 1 << 20, ""},
		{"7Ei", 7 << 60, ""},
		{"8Ei", 0, "out of range"},
		{"", 0, "empty quantity"},
		{"  ", 0, "empty quantity"},
		{"-1", 0, "must not be negative"},
		{"-512Mi", 0, "must not be negative"},
		{"lots", 0, "invalid quantity"},
		{"Mi", 0, "invalid quantity"},
		{"1.", 0, "invalid quantity"},
		{"1e3", 0, "invalid quantity"},
		{"512MB", 0, `unknown suffix "MB"`},
		{"512mi", 0, `unknown suffix "mi"`},
		{"1 Gi", 0, "invalid quantity"},
		{"0x10", 0, "invalid quantity"},
		{strings.Repeat("9", 40), 0, "out of range"},
	}
	for _, tt := range tests {
		got, err := ParseQuantity(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseQuantity(%q) = %d, %v; want error containing %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseQuantity(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestFormatQuantity(t *testing.T) {
	for in, want := range map[int64]string{0: "0", 1000: "1000", 1024: "1Ki", 512 << 20: "512Mi", 2 << 30: "2Gi", 85 << 30: "85Gi", 3 << 29: "1536Mi"} {
		if got := FormatQuantity(in); got != want {
			t.Errorf("FormatQuantity(%d) = %q, want %q", in, got, want)
		}
		if back, err := ParseQuantity(FormatQuantity(in)); err != nil || back != in {
			t.Errorf("ParseQuantity(FormatQuantity(%d)) = %d, %v", in, back, err)
		}
	}
}

func TestParseCPU(t *testing.T) {
	tests := []struct {
		in   string
		want float64
		ok   bool
	}{
		{"0.5", 0.5, true},
		{"2", 2, true},
		{".25", 0.25, true},
		{"500m", 0.5, true},
		{"1024", 1024, true},
		{"0", 0, false},
		{"0m", 0, false},
		{"-1", 0, false},
		{"1e3", 0, false},
		{"NaN", 0, false},
		{"Inf", 0, false},
		{"two", 0, false},
		{"", 0, false},
		{"1025", 0, false},
		{"0x1p-2", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseCPU(tt.in)
		if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
			t.Errorf("ParseCPU(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestShapes(t *testing.T) {
	want := map[string]Shape{
		"cpu.small":  {"cpu.small", 1, 2 * GiB, "", 0},
		"cpu.medium": {"cpu.medium", 2, 4 * GiB, "", 0},
		"cpu.large":  {"cpu.large", 4, 8 * GiB, "", 0},
		"gpu.t4":     {"gpu.t4", 4, 16 * GiB, "t4", 1},
		"gpu.a10":    {"gpu.a10", 8, 32 * GiB, "a10", 1},
		"gpu.l4":     {"gpu.l4", 8, 32 * GiB, "l4", 1},
		"gpu.a100":   {"gpu.a100", 12, 85 * GiB, "a100", 1},
		"gpu.h100":   {"gpu.h100", 26, 200 * GiB, "h100", 1},
	}
	names := ShapeNames()
	if len(names) != len(want) {
		t.Fatalf("ShapeNames() = %v", names)
	}
	if names[0] != "cpu.small" || names[len(names)-1] != "gpu.h100" {
		t.Errorf("ShapeNames() order = %v", names)
	}
	for _, n := range names {
		s, ok := LookupShape(n)
		if !ok || s != want[n] {
			t.Errorf("LookupShape(%q) = %+v, %v; want %+v", n, s, ok, want[n])
		}
		if s.GPUType != strings.ToLower(s.GPUType) {
			t.Errorf("shape %s GPU type not lower-case", n)
		}
	}
	for _, bad := range []string{"", "gpu.A10", "cpu", "gpu.a11"} {
		if _, ok := LookupShape(bad); ok {
			t.Errorf("LookupShape(%q) found", bad)
		}
	}
	names[0] = "mutated"
	if ShapeNames()[0] != "cpu.small" {
		t.Error("ShapeNames returns shared slice")
	}
	if !reflect.DeepEqual(GPUTypes(), []string{"t4", "a10", "l4", "a100", "h100"}) {
		t.Errorf("GPUTypes() = %v", GPUTypes())
	}
}

func TestNormalized(t *testing.T) {
	tests := []struct {
		name string
		r    Resources
		want ResourceRequest
		err  string
	}{
		{"shape", Resources{Shape: "gpu.a100"}, ResourceRequest{CPU: 12, MemoryBytes: 85 * GiB, GPUType: "a100", GPUCount: 1, Shape: "gpu.a100"}, ""},
		{"cpu shape", Resources{Shape: "cpu.medium"}, ResourceRequest{CPU: 2, MemoryBytes: 4 * GiB, Shape: "cpu.medium"}, ""},
		{"explicit", Resources{CPU: "1.5", Memory: "512Mi"}, ResourceRequest{CPU: 1.5, MemoryBytes: 512 * MiB}, ""},
		{"millicores", Resources{CPU: "250m", Memory: "1G"}, ResourceRequest{CPU: 0.25, MemoryBytes: 1e9}, ""},
		{"gpu", Resources{CPU: "4", Memory: "16Gi", GPU: &GPU{Type: "a10", Count: 2}}, ResourceRequest{CPU: 4, MemoryBytes: 16 * GiB, GPUType: "a10", GPUCount: 2}, ""},
		{"defaults", Resources{}, ResourceRequest{CPU: 0.5, MemoryBytes: 256 * MiB}, ""},
		{"unknown shape", Resources{Shape: "gpu.b200"}, ResourceRequest{}, "unknown shape"},
		{"shape conflict", Resources{Shape: "cpu.small", CPU: "1"}, ResourceRequest{}, "cannot be combined"},
		{"bad cpu", Resources{CPU: "x"}, ResourceRequest{}, "cpu:"},
		{"bad memory", Resources{Memory: "x"}, ResourceRequest{}, "memory:"},
		{"zero memory", Resources{Memory: "0"}, ResourceRequest{}, "memory: must be > 0"},
		{"gpu count", Resources{GPU: &GPU{Type: "a10"}}, ResourceRequest{}, "gpu.count"},
		{"gpu type", Resources{GPU: &GPU{Type: "A10", Count: 1}}, ResourceRequest{}, "gpu.type"},
	}
	for _, tt := range tests {
		got, err := tt.r.Normalized()
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: Normalized() = %+v, %v; want error containing %q", tt.name, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: Normalized() = %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
	}
}

func TestPriceFor(t *testing.T) {
	cloud := CloudConfig{
		Name: "c1",
		Prices: Prices{
			Shapes:    map[string]float64{"gpu.a10": 1.5},
			CPU:       0.04,
			MemoryGiB: 0.005,
			GPU:       map[string]float64{"a10": 1.1},
		},
	}
	shapeOnly := CloudConfig{Name: "c2", Prices: Prices{Shapes: map[string]float64{"cpu.small": 0.05}}}
	small, _ := Resources{Shape: "cpu.small"}.Normalized()
	a10, _ := Resources{Shape: "gpu.a10"}.Normalized()
	l4, _ := Resources{Shape: "gpu.l4"}.Normalized()
	explicit, _ := Resources{CPU: "2", Memory: "4Gi"}.Normalized()
	explicitGPU, _ := Resources{CPU: "1", Memory: "1Gi", GPU: &GPU{Type: "a10", Count: 2}}.Normalized()
	tests := []struct {
		name   string
		cloud  CloudConfig
		req    ResourceRequest
		price  float64
		ok     bool
		reason string
	}{
		{"listed shape wins", cloud, a10, 1.5, true, ""},
		{"unlisted shape from unit prices", cloud, small, 0.04*1 + 0.005*2, true, ""},
		{"explicit", cloud, explicit, 0.04*2 + 0.005*4, true, ""},
		{"explicit with gpus", cloud, explicitGPU, 0.04 + 0.005 + 2*1.1, true, ""},
		{"gpu type unpriced", cloud, l4, 0, false, `no price for GPU type "l4"`},
		{"shape-only cloud, listed", shapeOnly, small, 0.05, true, ""},
		{"shape-only cloud, unlisted shape", shapeOnly, a10, 0, false, `no price for shape "gpu.a10" and no unit prices`},
		{"shape-only cloud, explicit request is free", shapeOnly, explicit, 0, true, ""},
	}
	for _, tt := range tests {
		price, ok, reason := tt.cloud.PriceFor(tt.req)
		if ok != tt.ok || math.Abs(price-tt.price) > 1e-12 || !strings.Contains(reason, tt.reason) || (tt.ok && reason != "") {
			t.Errorf("%s: PriceFor = %v, %v, %q; want %v, %v, %q", tt.name, price, ok, reason, tt.price, tt.ok, tt.reason)
		}
	}
	// A live Cloud prices the same way.
	live := Cloud{Name: cloud.Name, Prices: cloud.Prices}
	if p, ok, _ := live.PriceFor(a10); !ok || p != 1.5 {
		t.Errorf("Cloud.PriceFor = %v %v", p, ok)
	}
}

func TestDefaultCloudsPrices(t *testing.T) {
	req, _ := Resources{CPU: "1", Memory: "1Gi"}.Normalized()
	prices := map[string]float64{}
	for _, c := range DefaultClouds() {
		p, ok, reason := c.PriceFor(req)
		if !ok {
			t.Fatalf("%s: %s", c.Name, reason)
		}
		prices[c.Name] = p
		if p, ok, _ := c.PriceFor(ResourceRequest{CPU: 8, MemoryBytes: 32 * GiB, GPUType: "a10", GPUCount: 1, Shape: "gpu.a10"}); !ok || p <= 1 {
			t.Errorf("%s: gpu.a10 price %v %v", c.Name, p, ok)
		}
	}
	if !(prices["local-b"] < prices["local-a"] && prices["local-a"] < prices["local-c"]) {
		t.Errorf("price order: %v", prices)
	}
	if math.Abs(prices["local-a"]-0.045) > 1e-12 {
		t.Errorf("local-a 1 core + 1GiB = %v, want 0.045", prices["local-a"])
	}
}
