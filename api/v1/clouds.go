package v1

import (
	"fmt"
	"math"
	"strings"
)

// ProviderLocal runs replicas as local processes.
const ProviderLocal = "local"

// Providers lists the valid values of CloudConfig.Provider.
func Providers() []string { return []string{ProviderLocal, ProviderKubernetes} }

// DefaultClouds returns the three local clouds aloft uses when no clouds file
// is given. They differ in region, jurisdiction, capacity and price; they
// price GPUs but have none.
func DefaultClouds() []CloudConfig {
	return []CloudConfig{
		{
			Name:     "local-a",
			Provider: ProviderLocal,
			Region:   "local-east",
			Labels:   map[string]string{"jurisdiction": "us"},
			Capacity: Capacity{CPU: 8, Memory: "16Gi"},
			Prices: Prices{
				CPU:       0.040,
				MemoryGiB: 0.005,
				GPU:       map[string]float64{"t4": 0.35, "a10": 1.10, "l4": 0.80, "a100": 3.00, "h100": 4.50},
			},
		},
		{
			Name:     "local-b",
			Provider: ProviderLocal,
			Region:   "local-west",
			Labels:   map[string]string{"jurisdiction": "eu"},
			Capacity: Capacity{CPU: 4, Memory: "8Gi"},
			Prices: Prices{
				CPU:       0.030,
				MemoryGiB: 0.004,
				GPU:       map[string]float64{"t4": 0.30, "a10": 1.00, "l4": 0.70, "a100": 2.80, "h100": 4.20},
			},
		},
		{
			Name:     "local-c",
			Provider: ProviderLocal,
			Region:   "local-central",
			Labels:   map[string]string{"jurisdiction": "us"},
			Capacity: Capacity{CPU: 16, Memory: "32Gi"},
			Prices: Prices{
				CPU:       0.050,
				MemoryGiB: 0.006,
				GPU:       map[string]float64{"t4": 0.40, "a10": 1.20, "l4": 0.90, "a100": 3.20, "h100": 4.80},
			},
		},
	}
}

// Validate checks a clouds file and returns *ValidationError or nil.
func (f *CloudsFile) Validate() error {
	errs := f.validate()
	if len(errs) == 0 {
		return nil
	}
	return newValidationError("clouds file", errs)
}

// normalize turns empty maps into nil.
func (f *CloudsFile) normalize() {
	for i := range f.Clouds {
		c := &f.Clouds[i]
		if len(c.Labels) == 0 {
			c.Labels = nil
		}
		if len(c.Capacity.GPUs) == 0 {
			c.Capacity.GPUs = nil
		}
		if len(c.Prices.Shapes) == 0 {
			c.Prices.Shapes = nil
		}
		if len(c.Prices.GPU) == 0 {
			c.Prices.GPU = nil
		}
	}
}

func (f *CloudsFile) validate() []FieldError {
	var e errList
	if len(f.Clouds) == 0 {
		e.add("clouds", "at least one cloud is required: add an entry such as {name: local-a, provider: local, region: local-east, capacity: {cpu: 8, memory: 16Gi}}")
		return e
	}
	seen := map[string]int{}
	for i, c := range f.Clouds {
		p := fmt.Sprintf("clouds[%d]", i)
		c.validate(p, &e)
		if c.Name != "" {
			if j, dup := seen[c.Name]; dup {
				e.add(p+".name", "duplicate of clouds[%d] (%q); cloud names must be unique", j, c.Name)
			} else {
				seen[c.Name] = i
			}
		}
	}
	return e
}

func (c CloudConfig) validate(p string, e *errList) {
	switch {
	case c.Name == "":
		e.add(p+".name", "required: set a name such as \"local-a\"")
	case !IsDNS1123Label(c.Name):
		e.add(p+".name", "must be a DNS-1123 label (lower-case letters, digits and '-', at most %d characters), got %q", MaxNameLength, c.Name)
	}
	valid := strings.Join(Providers(), ", ")
	switch {
	case c.Provider == "":
		e.add(p+".provider", "required; valid providers: %s", valid)
	case c.Provider != ProviderLocal && c.Provider != ProviderKubernetes:
		e.add(p+".provider", "unknown provider %q; valid providers: %s", c.Provider, valid)
	}
	kube := c.Provider == ProviderKubernetes
	switch {
	case kube && c.Kubernetes == nil:
		e.add(p+".kubernetes", "required with provider kubernetes: set at least kubeconfig (a path) and context")
	case kube:
		c.Kubernetes.validate(p+".kubernetes", e)
		if c.Catalog != "" {
			e.add(p+".catalog", "does not apply to a kubernetes cloud (its capacity is its nodes'); price it with prices")
		}
	case c.Kubernetes != nil:
		e.add(p+".kubernetes", "only applies to provider kubernetes (this cloud's provider is %q)", c.Provider)
	}
	if c.Catalog != "" && !IsDNS1123Label(c.Catalog) {
		e.add(p+".catalog", "must name an imported catalog (a DNS-1123 label such as \"aws\"), got %q", c.Catalog)
	}
	for i, r := range c.Regions {
		if strings.TrimSpace(r) == "" || hasSpace(r) {
			e.add(fmt.Sprintf("%s.regions[%d]", p, i), "must be a region name without whitespace, got %q", r)
		}
	}
	if len(c.Regions) > 0 && c.Catalog == "" {
		e.add(p+".regions", "only applies to a cloud with a catalog; set catalog or use region")
	}
	if r := c.SpotInterruptionsPerHour; r < 0 || math.IsNaN(r) || math.IsInf(r, 0) {
		e.add(p+".spotInterruptionsPerHour", "must be a number >= 0 (got %g)", r)
	}
	c.Quota.validate(p+".quota", c, e)
	switch {
	case strings.TrimSpace(c.Region) == "":
		e.add(p+".region", "required: set the region the cloud runs in, e.g. \"local-east\"")
	case hasSpace(c.Region):
		e.add(p+".region", "must not contain whitespace (got %q)", c.Region)
	}
	for _, k := range sortedMapKeys(c.Labels) {
		if strings.TrimSpace(k) == "" || hasSpace(k) {
			e.add(childPath(p+".labels", k), "label names must be non-empty and contain no whitespace, got %q", k)
		}
	}

	// capacity: a catalog cloud's capacity is per offering (unlimited
	// until a provider reports none), so it needs none configured.
	if c.Catalog != "" && c.Capacity.CPU == 0 && c.Capacity.Memory == "" && len(c.Capacity.GPUs) == 0 {
		return
	}
	// A kubernetes cloud's capacity is what its nodes have free, observed
	// live; a configured one would be ignored.
	if kube {
		if c.Capacity.CPU != 0 || c.Capacity.Memory != "" || len(c.Capacity.GPUs) > 0 {
			e.add(p+".capacity", "does not apply to a kubernetes cloud: aloft reads its nodes' allocatable resources; remove it")
		}
		c.validatePrices(p, e)
		return
	}
	if !(c.Capacity.CPU > 0) || math.IsInf(c.Capacity.CPU, 0) {
		e.add(p+".capacity.cpu", "must be > 0 cores (got %g)", c.Capacity.CPU)
	}
	if strings.TrimSpace(c.Capacity.Memory) == "" {
		e.add(p+".capacity.memory", "required: set the memory the cloud offers, e.g. \"16Gi\"")
	} else if b, err := ParseQuantity(c.Capacity.Memory); err != nil {
		e.add(p+".capacity.memory", "%v", err)
	} else if b <= 0 {
		e.add(p+".capacity.memory", "must be > 0 (got %q)", c.Capacity.Memory)
	}
	for _, t := range sortedMapKeys(c.Capacity.GPUs) {
		f := childPath(p+".capacity.gpus", t)
		if !gpuTypeRe.MatchString(t) {
			e.add(f, "invalid GPU type %q; GPU types are lower-case such as \"a10\"", t)
		}
		if n := c.Capacity.GPUs[t]; n < 0 {
			e.add(f, "must be >= 0 (got %d)", n)
		}
	}

	c.validatePrices(p, e)
}

func (c CloudConfig) validatePrices(p string, e *errList) {
	for _, sh := range sortedMapKeys(c.Prices.Shapes) {
		f := childPath(p+".prices.shapes", sh)
		if _, ok := LookupShape(sh); !ok {
			e.add(f, "unknown shape %q; valid shapes: %s", sh, strings.Join(ShapeNames(), ", "))
		}
		nonNegative(e, f, c.Prices.Shapes[sh])
	}
	nonNegative(e, p+".prices.cpu", c.Prices.CPU)
	nonNegative(e, p+".prices.memoryGiB", c.Prices.MemoryGiB)
	for _, t := range sortedMapKeys(c.Prices.GPU) {
		f := childPath(p+".prices.gpu", t)
		if !gpuTypeRe.MatchString(t) {
			e.add(f, "invalid GPU type %q; GPU types are lower-case such as \"a10\"", t)
		}
		nonNegative(e, f, c.Prices.GPU[t])
	}
}

func nonNegative(e *errList, field string, v float64) {
	if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		e.add(field, "must be a price >= 0 in USD per hour (got %g)", v)
	}
}
