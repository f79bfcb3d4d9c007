package v1

import (
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"unicode"
)

// Defaults applied by (*DeploymentSpec).Default.
const (
	DefaultPort                      = 8080
	DefaultReplicas                  = 1
	DefaultHealthPath                = "/"
	DefaultHealthPeriodSeconds       = 5
	DefaultHealthTimeoutSeconds      = 1
	DefaultHealthInitialDelaySeconds = 0
	// DefaultCPU and DefaultMemory apply when no shape is set.
	DefaultCPU    = "0.5"
	DefaultMemory = "256Mi"
)

// Limits checked by Validate.
const (
	MaxReplicas      = 1000
	MaxNameLength    = 63
	MaxProbeSeconds  = 3600
	ReservedEnvPort  = "PORT"
	maxImageLength   = 4096
	maxHealthPathLen = 2048
)

const needImageReason = "set image or command"

var (
	dns1123LabelRe = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	envNameRe      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// IsDNS1123Label reports whether s is a DNS-1123 label: 1-63 lower-case
// letters, digits and '-', starting and ending with a letter or digit.
func IsDNS1123Label(s string) bool {
	return len(s) <= MaxNameLength && dns1123LabelRe.MatchString(s)
}

// Default fills unset fields with their defaults:
//
//	port                         8080
//	replicas                     1 (when Min == Max == 0; ParseSpec keeps an explicit 0)
//	resources.cpu                "0.5"   (only when no shape is set)
//	resources.memory             "256Mi" (only when no shape is set)
//	health.path                  "/"
//	health.periodSeconds         5
//	health.timeoutSeconds        1
//	health.initialDelaySeconds   0
//	access.public                true
//	autoscale.*                  see (*Autoscale).Default (only when autoscale is set)
//
// Zero values count as unset here. ParseSpec is stricter: it defaults only
// fields absent from the document, so an explicit `port: 0` stays 0 and
// fails validation. Default also turns empty lists and maps into nil.
func (s *DeploymentSpec) Default() {
	s.applyDefaults(func(string) bool { return false })
	s.normalize()
}

// applyDefaults fills zero-valued fields unless explicit(path) says the zero
// was given on purpose (only consulted for numeric fields).
func (s *DeploymentSpec) applyDefaults(explicit func(path string) bool) {
	if s.Port == 0 && !explicit("port") {
		s.Port = DefaultPort
	}
	if s.Replicas == (Replicas{}) && !explicit("replicas") {
		s.Replicas = Fixed(DefaultReplicas)
	}
	if s.Resources.Shape == "" {
		if s.Resources.CPU == "" {
			s.Resources.CPU = DefaultCPU
		}
		if s.Resources.Memory == "" {
			s.Resources.Memory = DefaultMemory
		}
	}
	if s.Health.Path == "" {
		s.Health.Path = DefaultHealthPath
	}
	if s.Health.PeriodSeconds == 0 && !explicit("health.periodSeconds") {
		s.Health.PeriodSeconds = DefaultHealthPeriodSeconds
	}
	if s.Health.TimeoutSeconds == 0 && !explicit("health.timeoutSeconds") {
		s.Health.TimeoutSeconds = DefaultHealthTimeoutSeconds
	}
	if s.Access.Public == nil {
		t := true
		s.Access.Public = &t
	}
	if s.Autoscale != nil {
		s.Autoscale.applyDefaults(s.Replicas, explicit)
	}
}

// normalize turns empty lists and maps into nil so that a spec compares
// equal to itself after a JSON round trip.
func (s *DeploymentSpec) normalize() {
	if len(s.Command) == 0 {
		s.Command = nil
	}
	if len(s.Args) == 0 {
		s.Args = nil
	}
	if len(s.Env) == 0 {
		s.Env = nil
	}
	if len(s.Placement.Clouds) == 0 {
		s.Placement.Clouds = nil
	}
	if len(s.Placement.Regions) == 0 {
		s.Placement.Regions = nil
	}
	if len(s.Placement.Traffic) == 0 {
		s.Placement.Traffic = nil
	}
	if len(s.Placement.Labels) == 0 {
		s.Placement.Labels = nil
	}
	if s.Autoscale != nil {
		s.Autoscale.normalize()
	}
}

// Validate checks a (defaulted) spec. It returns *ValidationError listing
// every problem, sorted by field path, or nil. Call Default first: Validate
// does not treat zero values as "use the default" (except an empty
// resources.cpu/memory, which Normalized reads as the defaults).
func (s *DeploymentSpec) Validate() error {
	errs := s.validate()
	if len(errs) == 0 {
		return nil
	}
	return newValidationError("spec", errs)
}

func (s *DeploymentSpec) validate() []FieldError {
	var e errList

	// name
	switch {
	case s.Name == "":
		e.add("name", "required: set a name such as \"my-app\" (lower-case letters, digits and '-')")
	case len(s.Name) > MaxNameLength:
		e.add("name", "must be at most %d characters (got %d); use a shorter name", MaxNameLength, len(s.Name))
	case !dns1123LabelRe.MatchString(s.Name):
		e.add("name", "must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit (got %q)", s.Name)
	}

	// image / command / args
	if s.Image == "" && len(s.Command) == 0 {
		e.add("image", "%s: a deployment needs an image to run or a command to start", needImageReason)
	}
	if s.Image != "" {
		if hasSpace(s.Image) {
			e.add("image", "must not contain whitespace (got %q)", s.Image)
		} else if len(s.Image) > maxImageLength {
			e.add("image", "must be at most %d characters", maxImageLength)
		}
	}
	if len(s.Command) > 0 && strings.TrimSpace(s.Command[0]) == "" {
		e.add("command[0]", "must name the program to run; it is empty")
	}

	// port
	if s.Port < 1 || s.Port > 65535 {
		hint := ""
		if s.Port == 0 {
			hint = fmt.Sprintf("; leave it out to use the default %d", DefaultPort)
		}
		e.add("port", "must be between 1 and 65535 (got %d)%s", s.Port, hint)
	}

	// env
	seenEnv := map[string]int{}
	for i, v := range s.Env {
		p := fmt.Sprintf("env[%d].name", i)
		switch {
		case v.Name == "":
			e.add(p, "required: set the variable's name")
		case !envNameRe.MatchString(v.Name):
			e.add(p, "must start with a letter or '_' and contain only letters, digits and '_' (got %q)", v.Name)
		case v.Name == ReservedEnvPort:
			e.add(p, "PORT is set by aloft to the value of port; remove it and set port instead")
		case v.ValueFrom != nil && v.Value != "":
			e.add(fmt.Sprintf("env[%d]", i), "set value or valueFrom, not both")
		case v.ValueFrom != nil && !IsDNS1123Label(v.ValueFrom.Secret):
			e.add(fmt.Sprintf("env[%d].valueFrom.secret", i), "must name a secret (a DNS-1123 label, e.g. openai-key; got %q)", v.ValueFrom.Secret)
		default:
			if j, dup := seenEnv[v.Name]; dup {
				e.add(p, "duplicate of env[%d] (%q); set each variable once", j, v.Name)
			} else {
				seenEnv[v.Name] = i
			}
		}
	}

	s.validateReplicas(&e)
	s.validateResources(&e)
	s.validatePlacement(&e)
	s.validateHealth(&e)
	if s.Autoscale != nil {
		s.Autoscale.validate(s.Replicas, &e)
	}

	for i, c := range s.Access.AllowCIDRs {
		if _, err := netip.ParsePrefix(c); err != nil {
			if _, aerr := netip.ParseAddr(c); aerr != nil {
				e.add(fmt.Sprintf("access.allowCIDRs[%d]", i), "must be a CIDR such as 10.0.0.0/8 or an address (got %q)", c)
			}
		}
	}
	return e
}

// validateReplicas checks the replica count. A fixed count (Min == Max) is
// reported on "replicas" and may be 0: the deployment is kept but scaled to
// zero (aloft scale --replicas 0). An autoscaling range needs
// 0 <= min <= max, 1 <= max <= MaxReplicas.
func (s *DeploymentSpec) validateReplicas(e *errList) {
	r := s.Replicas
	if r.Min == r.Max {
		switch {
		case r.Min < 0:
			e.add("replicas", "must be >= 0 (got %d)", r.Min)
		case r.Min > MaxReplicas:
			e.add("replicas", "must be <= %d (got %d)", MaxReplicas, r.Min)
		}
		return
	}
	if r.Min < 0 {
		e.add("replicas.min", "must be >= 0 (got %d)", r.Min)
	}
	if r.Max < 1 {
		e.add("replicas.max", "must be >= 1 (got %d); an autoscaling range runs at least one replica", r.Max)
	}
	if r.Max > MaxReplicas {
		e.add("replicas.max", "must be <= %d (got %d)", MaxReplicas, r.Max)
	}
	if r.Min > r.Max {
		e.add("replicas.min", "replicas.min (%d) must be <= replicas.max (%d); raise max or lower min", r.Min, r.Max)
	}
}

func (s *DeploymentSpec) validateResources(e *errList) {
	r := s.Resources
	if r.Shape != "" {
		sh, ok := LookupShape(r.Shape)
		if !ok {
			if sug := suggest(r.Shape, ShapeNames()); sug != "" {
				e.add("resources.shape", "unknown shape %q; did you mean %q? valid shapes: %s", r.Shape, sug, strings.Join(ShapeNames(), ", "))
			} else {
				e.add("resources.shape", "unknown shape %q; valid shapes: %s", r.Shape, strings.Join(ShapeNames(), ", "))
			}
		}
		conflict := func(field, sets string) {
			e.add("resources."+field, "conflicts with resources.shape %q%s; remove %s or the shape", r.Shape, sets, field)
		}
		if r.CPU != "" {
			conflict("cpu", shapeSets(ok, fmt.Sprintf(", which sets cpu to %g", sh.CPU)))
		}
		if r.Memory != "" {
			conflict("memory", shapeSets(ok, ", which sets memory to "+FormatQuantity(sh.MemoryBytes)))
		}
		if r.GPU != nil {
			gpu := "no GPU"
			if sh.GPUCount > 0 {
				gpu = fmt.Sprintf("%dx %s", sh.GPUCount, sh.GPUType)
			}
			conflict("gpu", shapeSets(ok, ", which sets gpu to "+gpu))
		}
		return
	}
	if r.CPU != "" {
		if _, err := ParseCPU(r.CPU); err != nil {
			e.add("resources.cpu", "must be a positive number of cores such as \"0.5\" or \"2\": %v", err)
		}
	}
	if r.Memory != "" {
		if b, err := ParseQuantity(r.Memory); err != nil {
			e.add("resources.memory", "must be a positive quantity such as \"512Mi\" or \"2Gi\": %v", err)
		} else if b <= 0 {
			e.add("resources.memory", "must be > 0 (got %q); use a quantity such as \"512Mi\"", r.Memory)
		}
	}
	if g := r.GPU; g != nil {
		if g.Count < 1 {
			e.add("resources.gpu.count", "must be >= 1 (got %d); remove resources.gpu to run without a GPU", g.Count)
		}
		switch {
		case g.Type == "":
			e.add("resources.gpu.type", "required: name the GPU type, one of %s", strings.Join(GPUTypes(), ", "))
		case !gpuTypeRe.MatchString(g.Type):
			hint := ""
			if l := strings.ToLower(g.Type); gpuTypeRe.MatchString(l) {
				hint = fmt.Sprintf("; GPU types are lower-case: use %q", l)
			}
			e.add("resources.gpu.type", "invalid GPU type %q%s", g.Type, hint)
		}
	}
}

func shapeSets(known bool, s string) string {
	if !known {
		return ""
	}
	return s
}

func (s *DeploymentSpec) validatePlacement(e *errList) {
	p := s.Placement
	seen := map[string]int{}
	for i, c := range p.Clouds {
		f := fmt.Sprintf("placement.clouds[%d]", i)
		if !IsDNS1123Label(c) {
			e.add(f, "must be a cloud name (a DNS-1123 label such as \"local-a\"), got %q", c)
			continue
		}
		if j, dup := seen[c]; dup {
			e.add(f, "duplicate of placement.clouds[%d] (%q); list each cloud once", j, c)
			continue
		}
		seen[c] = i
	}
	seenRegion := map[string]int{}
	for i, r := range p.Regions {
		f := fmt.Sprintf("placement.regions[%d]", i)
		if strings.TrimSpace(r) == "" || hasSpace(r) {
			e.add(f, "must be a region name without whitespace, got %q", r)
			continue
		}
		if j, dup := seenRegion[r]; dup {
			e.add(f, "duplicate of placement.regions[%d] (%q); list each region once", j, r)
			continue
		}
		seenRegion[r] = i
	}
	for _, k := range sortedMapKeys(p.Labels) {
		if strings.TrimSpace(k) == "" || hasSpace(k) {
			e.add(childPath("placement.labels", k), "label names must be non-empty and contain no whitespace, got %q", k)
		}
	}
	mc := p.Spread.MinClouds
	switch {
	case mc < 0:
		e.add("placement.spread.minClouds", "must be >= 0 (got %d)", mc)
	case mc > 1 && s.Replicas.Max >= 1 && mc > s.Replicas.Max:
		e.add("placement.spread.minClouds", "placement.spread.minClouds (%d) must be <= replicas.max (%d): each cloud needs at least one replica; lower minClouds or raise replicas", mc, s.Replicas.Max)
	case mc > 1 && len(p.Clouds) > 0 && mc > len(seen):
		e.add("placement.spread.minClouds", "placement.spread.minClouds (%d) is more than the %d cloud(s) allowed by placement.clouds; lower minClouds or allow more clouds", mc, len(seen))
	}
	if p.MaxHourlyCost < 0 || math.IsNaN(p.MaxHourlyCost) || math.IsInf(p.MaxHourlyCost, 0) {
		e.add("placement.maxHourlyCost", "must be >= 0 (got %g); use 0 for no cap", p.MaxHourlyCost)
	}
	mpc := p.Spread.MaxPerCloud
	switch {
	case mpc < 0:
		e.add("placement.spread.maxPerCloud", "must be >= 0 (got %d); use 0 for no limit", mpc)
	case mpc > 0 && len(p.Clouds) > 0 && mpc*len(seen) < s.Replicas.Max:
		e.add("placement.spread.maxPerCloud", "placement.spread.maxPerCloud (%d) x %d allowed cloud(s) is less than replicas.max (%d); raise maxPerCloud or allow more clouds", mpc, len(seen), s.Replicas.Max)
	}
	if p.Budget < 0 || math.IsNaN(p.Budget) || math.IsInf(p.Budget, 0) {
		e.add("placement.budget", "must be >= 0 (got %g); use 0 for no cap", p.Budget)
	}
	if sp := p.Spot; sp != nil {
		switch {
		case sp.OnDemandBase < 0:
			e.add("placement.spot.onDemandBase", "must be >= 0 (got %d)", sp.OnDemandBase)
		case !sp.Allowed && sp.OnDemandBase > 0:
			e.add("placement.spot.onDemandBase", "is only meaningful with placement.spot.allowed: true; set allowed or drop onDemandBase")
		}
	}
	for _, r := range sortedMapKeys(p.Traffic) {
		w := p.Traffic[r]
		f := childPath("placement.traffic", r)
		switch {
		case strings.TrimSpace(r) == "" || hasSpace(r):
			e.add(f, "must be keyed by a region name without whitespace, got %q", r)
		case w < 0 || math.IsNaN(w) || math.IsInf(w, 0):
			e.add(f, "weight must be a number >= 0 (got %g)", w)
		}
	}
}

func (s *DeploymentSpec) validateHealth(e *errList) {
	h := s.Health
	switch {
	case !strings.HasPrefix(h.Path, "/"):
		e.add("health.path", "must start with \"/\" (got %q)", h.Path)
	case hasSpace(h.Path):
		e.add("health.path", "must not contain whitespace (got %q); percent-encode it", h.Path)
	case len(h.Path) > maxHealthPathLen:
		e.add("health.path", "must be at most %d characters", maxHealthPathLen)
	}
	periodOK := inRange(e, "health.periodSeconds", h.PeriodSeconds, 1, MaxProbeSeconds)
	timeoutOK := inRange(e, "health.timeoutSeconds", h.TimeoutSeconds, 1, MaxProbeSeconds)
	inRange(e, "health.initialDelaySeconds", h.InitialDelaySeconds, 0, MaxProbeSeconds)
	if periodOK && timeoutOK && h.TimeoutSeconds > h.PeriodSeconds {
		e.add("health.timeoutSeconds", "health.timeoutSeconds (%d) must be <= health.periodSeconds (%d); shorten the timeout or probe less often", h.TimeoutSeconds, h.PeriodSeconds)
	}
}

func inRange(e *errList, field string, v, lo, hi int) bool {
	if v < lo || v > hi {
		e.add(field, "must be between %d and %d (got %d)", lo, hi, v)
		return false
	}
	return true
}

func hasSpace(s string) bool {
	return strings.IndexFunc(s, unicode.IsSpace) >= 0
}

func sortedMapKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
