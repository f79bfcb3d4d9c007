package v1

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
)

// Shape is a named bundle of resources, e.g. "gpu.a10".
type Shape struct {
	Name        string
	CPU         float64 // cores
	MemoryBytes int64
	GPUType     string // lower-case, "" for none
	GPUCount    int
}

const (
	// KiB, MiB and GiB in bytes.
	KiB int64 = 1 << 10
	MiB int64 = 1 << 20
	GiB int64 = 1 << 30
)

// shapes in order of size; ShapeNames returns them in this order.
var shapes = []Shape{
	{Name: "cpu.small", CPU: 1, MemoryBytes: 2 * GiB},
	{Name: "cpu.medium", CPU: 2, MemoryBytes: 4 * GiB},
	{Name: "cpu.large", CPU: 4, MemoryBytes: 8 * GiB},
	{Name: "gpu.t4", CPU: 4, MemoryBytes: 16 * GiB, GPUType: "t4", GPUCount: 1},
	{Name: "gpu.a10", CPU: 8, MemoryBytes: 32 * GiB, GPUType: "a10", GPUCount: 1},
	{Name: "gpu.l4", CPU: 8, MemoryBytes: 32 * GiB, GPUType: "l4", GPUCount: 1},
	{Name: "gpu.a100", CPU: 12, MemoryBytes: 85 * GiB, GPUType: "a100", GPUCount: 1},
	{Name: "gpu.h100", CPU: 26, MemoryBytes: 200 * GiB, GPUType: "h100", GPUCount: 1},
}

// LookupShape returns the shape with the given name (case-sensitive).
func LookupShape(name string) (Shape, bool) {
	for _, s := range shapes {
		if s.Name == name {
			return s, true
		}
	}
	return Shape{}, false
}

// ShapeNames returns the known shape names, smallest first.
func ShapeNames() []string {
	out := make([]string, len(shapes))
	for i, s := range shapes {
		out[i] = s.Name
	}
	return out
}

// GPUTypes returns the GPU types used by the known shapes ("t4", "a10", ...).
func GPUTypes() []string {
	var out []string
	for _, s := range shapes {
		if s.GPUType != "" {
			out = append(out, s.GPUType)
		}
	}
	return out
}

// ResourceRequest is Resources in numbers, with any shape expanded.
type ResourceRequest struct {
	CPU         float64 // cores
	MemoryBytes int64
	GPUType     string
	GPUCount    int
	Shape       string // the shape asked for, "" if explicit
}

// MemoryGiB returns the memory in GiB.
func (r ResourceRequest) MemoryGiB() float64 { return float64(r.MemoryBytes) / float64(GiB) }

// Normalized converts r to numbers. A shape is expanded (and may not be
// combined with cpu, memory or gpu); an empty cpu or memory means the default
// (DefaultCPU, DefaultMemory).
func (r Resources) Normalized() (ResourceRequest, error) {
	if r.Shape != "" {
		sh, ok := LookupShape(r.Shape)
		if !ok {
			return ResourceRequest{}, fmt.Errorf("unknown shape %q; valid shapes: %s", shorten(r.Shape), strings.Join(ShapeNames(), ", "))
		}
		if r.CPU != "" || r.Memory != "" || r.GPU != nil {
			return ResourceRequest{}, fmt.Errorf("shape %q cannot be combined with explicit cpu, memory or gpu", shorten(r.Shape))
		}
		return ResourceRequest{CPU: sh.CPU, MemoryBytes: sh.MemoryBytes, GPUType: sh.GPUType, GPUCount: sh.GPUCount, Shape: sh.Name}, nil
	}
	cpuStr, memStr := r.CPU, r.Memory
	if cpuStr == "" {
		cpuStr = DefaultCPU
	}
	if memStr == "" {
		memStr = DefaultMemory
	}
	var req ResourceRequest
	var err error
	if req.CPU, err = ParseCPU(cpuStr); err != nil {
		return ResourceRequest{}, fmt.Errorf("cpu: %w", err)
	}
	if req.MemoryBytes, err = ParseQuantity(memStr); err != nil {
		return ResourceRequest{}, fmt.Errorf("memory: %w", err)
	}
	if req.MemoryBytes <= 0 {
		return ResourceRequest{}, errors.New("memory: must be > 0")
	}
	if r.GPU != nil {
		if r.GPU.Count < 1 {
			return ResourceRequest{}, fmt.Errorf("gpu.count: must be >= 1 (got %d)", r.GPU.Count)
		}
		if !gpuTypeRe.MatchString(r.GPU.Type) {
			return ResourceRequest{}, fmt.Errorf("gpu.type: invalid GPU type %q", shorten(r.GPU.Type))
		}
		req.GPUType, req.GPUCount = r.GPU.Type, r.GPU.Count
	}
	return req, nil
}

var (
	cpuDecimalRe = regexp.MustCompile(`^([0-9]+(\.[0-9]+)?|\.[0-9]+)$`)
	cpuMilliRe   = regexp.MustCompile(`^[0-9]+m$`)
	gpuTypeRe    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
)

// MaxCPU is the largest CPU request accepted, in cores.
const MaxCPU = 1024

// ParseCPU parses a CPU amount in cores: a positive decimal ("0.5", "2") or
// millicores ("500m").
func ParseCPU(s string) (float64, error) {
	s = strings.TrimSpace(s)
	var f float64
	switch {
	case cpuDecimalRe.MatchString(s):
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, fmt.Errorf("invalid CPU amount %q", shorten(s))
		}
		f = v
	case cpuMilliRe.MatchString(s):
		v, err := strconv.ParseFloat(strings.TrimSuffix(s, "m"), 64)
		if err != nil {
			return 0, fmt.Errorf("invalid CPU amount %q", shorten(s))
		}
		f = v / 1000
	default:
		return 0, fmt.Errorf("invalid CPU amount %q: write cores as a decimal such as \"0.5\" or \"2\", or millicores such as \"500m\"", shorten(s))
	}
	if f <= 0 {
		return 0, fmt.Errorf("CPU amount %q must be > 0", shorten(s))
	}
	if f > MaxCPU {
		return 0, fmt.Errorf("CPU amount %q is more than %d cores", shorten(s), MaxCPU)
	}
	return f, nil
}

var (
	quantityRe  = regexp.MustCompile(`^([+-]?)([0-9]+(?:\.[0-9]+)?|\.[0-9]+)([A-Za-z]*)$`)
	quantityMul = map[string]int64{
		"":  1,
		"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
		"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60,
	}
)

// ParseQuantity parses a byte quantity: a plain number of bytes ("1000"), or
// a number with a binary (Ki, Mi, Gi, Ti, Pi, Ei) or decimal (k, M, G, T, P,
// E) suffix: "512Mi", "2Gi", "1G", "1.5Gi". Fractions of a byte round up.
// Negative, malformed and out-of-range values are errors.
func ParseQuantity(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, errors.New("empty quantity: write bytes such as \"512Mi\" or \"2Gi\"")
	}
	m := quantityRe.FindStringSubmatch(t)
	if m == nil {
		return 0, fmt.Errorf("invalid quantity %q: write a number with an optional suffix Ki, Mi, Gi, Ti (binary) or k, M, G, T (decimal), e.g. \"512Mi\"", shorten(s))
	}
	mul, ok := quantityMul[m[3]]
	if !ok {
		return 0, fmt.Errorf("invalid quantity %q: unknown suffix %q; use Ki, Mi, Gi, Ti, Pi, Ei or k, M, G, T, P, E", shorten(s), shorten(m[3]))
	}
	if m[1] == "-" {
		return 0, fmt.Errorf("invalid quantity %q: must not be negative", shorten(s))
	}
	if len(m[2]) > 30 {
		return 0, fmt.Errorf("invalid quantity %q: out of range", shorten(s))
	}
	num, ok := new(big.Rat).SetString(m[2])
	if !ok {
		return 0, fmt.Errorf("invalid quantity %q", shorten(s))
	}
	num.Mul(num, new(big.Rat).SetInt64(mul))
	// Round up to whole bytes.
	q, r := new(big.Int).QuoRem(num.Num(), num.Denom(), new(big.Int))
	if r.Sign() != 0 {
		q.Add(q, big.NewInt(1))
	}
	if !q.IsInt64() {
		return 0, fmt.Errorf("invalid quantity %q: out of range", shorten(s))
	}
	return q.Int64(), nil
}

// FormatQuantity renders bytes with the largest binary suffix that divides
// them exactly ("512Mi", "2Gi", "1000").
func FormatQuantity(b int64) string {
	for _, u := range []struct {
		s string
		n int64
	}{{"Ei", 1 << 60}, {"Pi", 1 << 50}, {"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
		if b != 0 && b%u.n == 0 {
			return strconv.FormatInt(b/u.n, 10) + u.s
		}
	}
	return strconv.FormatInt(b, 10)
}

// MemoryBytes parses Memory; an empty Memory is 0.
func (c Capacity) MemoryBytes() (int64, error) {
	if strings.TrimSpace(c.Memory) == "" {
		return 0, nil
	}
	return ParseQuantity(c.Memory)
}

// PriceFor returns the price of one replica-hour of req in USD on this
// cloud. A listed shape price wins; otherwise the price is
// CPU*cores + MemoryGiB*GiB + GPU[type]*count. It is not ok (and reason says
// why) when the request's GPU type has no price, or when a shape was asked
// for that is not listed and the cloud has no CPU or memory unit prices.
func (c CloudConfig) PriceFor(req ResourceRequest) (price float64, ok bool, reason string) {
	p := c.Prices
	if req.Shape != "" {
		if sp, listed := p.Shapes[req.Shape]; listed {
			return sp, true, ""
		}
		if p.CPU == 0 && p.MemoryGiB == 0 {
			return 0, false, fmt.Sprintf("cloud %q has no price for shape %q and no unit prices for cpu or memory", c.Name, req.Shape)
		}
	}
	price = p.CPU*req.CPU + p.MemoryGiB*req.MemoryGiB()
	if req.GPUCount > 0 {
		gp, priced := p.GPU[req.GPUType]
		if !priced {
			return 0, false, fmt.Sprintf("cloud %q has no price for GPU type %q", c.Name, req.GPUType)
		}
		price += gp * float64(req.GPUCount)
	}
	if math.IsNaN(price) || math.IsInf(price, 0) {
		return 0, false, fmt.Sprintf("cloud %q: price is not a finite number", c.Name)
	}
	return price, true, ""
}

// Config returns the configured part of a live cloud.
func (c Cloud) Config() CloudConfig {
	return CloudConfig{Name: c.Name, Provider: c.Provider, Region: c.Region, Labels: c.Labels, Capacity: c.Capacity, Prices: c.Prices}
}

// PriceFor is CloudConfig.PriceFor for a live cloud.
func (c Cloud) PriceFor(req ResourceRequest) (float64, bool, string) {
	return c.Config().PriceFor(req)
}
