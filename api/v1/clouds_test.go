package v1

import (
	"encoding/json"
	"reflect"
	"testing"

	"sigs.k8s.io/yaml"
)

const goodClouds = `
clouds:
- name: local-a
  provider: local
  region: local-east
  labels: {jurisdiction: us}
  capacity: {cpu: 8, memory: 16Gi}
  prices: {cpu: 0.04, memoryGiB: 0.005, gpu: {a10: 1.1}}
- name: gpu-box
  provider: local
  region: lab
  capacity:
    cpu: 32
    memory: 137438953472
    gpus: {a10: 2, h100: 0}
  prices:
    shapes: {gpu.a10: 1.25, cpu.small: 0.03}
`

func TestParseCloudsValid(t *testing.T) {
	f, err := ParseClouds([]byte(goodClouds))
	if err != nil {
		t.Fatal(err)
	}
	want := &CloudsFile{Clouds: []CloudConfig{
		{
			Name: "local-a", Provider: "local", Region: "local-east",
			Labels:   map[string]string{"jurisdiction": "us"},
			Capacity: Capacity{CPU: 8, Memory: "16Gi"},
			Prices:   Prices{CPU: 0.04, MemoryGiB: 0.005, GPU: map[string]float64{"a10": 1.1}},
		},
		{
			Name: "gpu-box", Provider: "local", Region: "lab",
			Capacity: Capacity{CPU: 32, Memory: "137438953472", GPUs: map[string]int{"a10": 2, "h100": 0}},
			Prices:   Prices{Shapes: map[string]float64{"gpu.a10": 1.25, "cpu.small": 0.03}},
		},
	}}
	if !reflect.DeepEqual(f, want) {
		t.Errorf("got  %+v\nwant %+v", f, want)
	}
	if b, err := f.Clouds[1].Capacity.MemoryBytes(); err != nil || b != 128*GiB {
		t.Errorf("MemoryBytes = %d, %v", b, err)
	}
	// JSON works too.
	j, _ := json.Marshal(f)
	f2, err := ParseClouds(j)
	if err != nil || !reflect.DeepEqual(f, f2) {
		t.Errorf("JSON round trip: %v\n%+v", err, f2)
	}
}

func TestDefaultCloudsValid(t *testing.T) {
	cs := DefaultClouds()
	if len(cs) != 3 || cs[0].Name != "local-a" || cs[1].Name != "local-b" || cs[2].Name != "local-c" {
		t.Fatalf("DefaultClouds() = %+v", cs)
	}
	f := &CloudsFile{Clouds: cs}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	regions := map[string]bool{}
	for _, c := range cs {
		regions[c.Region] = true
		if len(c.Capacity.GPUs) != 0 {
			t.Errorf("%s has GPUs", c.Name)
		}
		if c.Prices.GPU["a10"] <= 0 {
			t.Errorf("%s has no a10 price", c.Name)
		}
		if c.Labels["jurisdiction"] == "" {
			t.Errorf("%s has no jurisdiction", c.Name)
		}
	}
	if len(regions) != 3 {
		t.Errorf("regions not distinct: %v", regions)
	}
	// Through YAML and ParseClouds unchanged.
	y, err := yaml.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseClouds(y)
	if err != nil {
		t.Fatalf("ParseClouds(%s): %v", y, err)
	}
	if !reflect.DeepEqual(back, f) {
		t.Errorf("YAML round trip differs:\n%+v\n%+v", back, f)
	}
	// Callers get fresh copies.
	cs[0].Labels["jurisdiction"] = "xx"
	if DefaultClouds()[0].Labels["jurisdiction"] != "us" {
		t.Error("DefaultClouds shares maps")
	}
}

func TestParseCloudsErrors(t *testing.T) {
	cloud := func(extra string) string {
		return "clouds:\n- name: a\n  provider: local\n  region: r\n  capacity: {cpu: 1, memory: 1Gi}\n" + extra
	}
	tests := []struct {
		name  string
		input string
		want  []wantErr
	}{
		{"empty file", "", []wantErr{{"", "clouds file is empty"}}},
		{"no clouds", "clouds: []\n", []wantErr{{"clouds", "at least one cloud is required"}}},
		{"clouds missing", "{}\n", []wantErr{{"clouds", "at least one cloud is required"}}},
		{"malformed", "clouds: [\n", []wantErr{{"", "malformed YAML/JSON: line"}}},
		{"too big", "# " + string(make([]byte, MaxSpecBytes)), []wantErr{{"", "the limit is"}}},
		{"unknown top field", "cloud: []\n", []wantErr{{"cloud", `did you mean "clouds"?`}, {"clouds", "at least one"}}},
		{"unknown nested field", cloud("  capcity: {}\n"), []wantErr{{"clouds[0].capcity", `did you mean "capacity"?`}}},
		{"unknown deep field", cloud("  prices: {memoryGB: 1}\n"), []wantErr{{"clouds[0].prices.memoryGB", `did you mean "memoryGiB"?`}}},
		{"type error", cloud("  labels: {a: [1]}\n"), []wantErr{{"clouds[0].labels.a", "expected a string, got a list"}}},
		{"name missing", "clouds: [{provider: local, region: r, capacity: {cpu: 1, memory: 1Gi}}]\n", []wantErr{{"clouds[0].name", "required"}}},
		{"name invalid", "clouds: [{name: Cloud_A, provider: local, region: r, capacity: {cpu: 1, memory: 1Gi}}]\n", []wantErr{{"clouds[0].name", "DNS-1123"}}},
		{"name duplicate", cloud("- name: a\n  provider: local\n  region: r2\n  capacity: {cpu: 1, memory: 1Gi}\n"), []wantErr{{"clouds[1].name", "duplicate of clouds[0]"}}},
		{"provider missing", "clouds: [{name: a, region: r, capacity: {cpu: 1, memory: 1Gi}}]\n", []wantErr{{"clouds[0].provider", "required; valid providers: local"}}},
		{"provider unknown", "clouds: [{name: a, provider: aws, region: r, capacity: {cpu: 1, memory: 1Gi}}]\n", []wantErr{{"clouds[0].provider", `unknown provider "aws"; valid providers: local, kubernetes`}}},
		{"region missing", "clouds: [{name: a, provider: local, capacity: {cpu: 1, memory: 1Gi}}]\n", []wantErr{{"clouds[0].region", "required"}}},
		{"catalog not a name", "clouds: [{name: a, provider: local, region: r, catalog: \"AWS cloud\", capacity: {cpu: 1, memory: 1Gi}}]\n", []wantErr{{"clouds[0].catalog", "must name an imported catalog"}}},
		{"regions without catalog", "clouds: [{name: a, provider: local, region: r, regions: [us-east-1], capacity: {cpu: 1, memory: 1Gi}}]\n", []wantErr{{"clouds[0].regions", "only applies to a cloud with a catalog"}}},
		{"spot rate negative", "clouds: [{name: a, provider: local, region: r, catalog: aws, spotInterruptionsPerHour: -1, capacity: {cpu: 1, memory: 1Gi}}]\n", []wantErr{{"clouds[0].spotInterruptionsPerHour", "must be a number >= 0"}}},
		{"cpu zero", "clouds: [{name: a, provider: local, region: r, capacity: {cpu: 0, memory: 1Gi}}]\n", []wantErr{{"clouds[0].capacity.cpu", "must be > 0"}}},
		{"cpu missing and memory garbage", "clouds: [{name: a, provider: local, region: r, capacity: {memory: lots}}]\n", []wantErr{
			{"clouds[0].capacity.cpu", "must be > 0"},
			{"clouds[0].capacity.memory", "invalid quantity"},
		}},
		{"memory missing", "clouds: [{name: a, provider: local, region: r, capacity: {cpu: 1}}]\n", []wantErr{{"clouds[0].capacity.memory", "required"}}},
		{"negative gpus", "clouds: [{name: a, provider: local, region: r, capacity: {cpu: 1, memory: 1Gi, gpus: {a10: -1, H100: 1}}}]\n", []wantErr{
			{"clouds[0].capacity.gpus.H100", "lower-case"},
			{"clouds[0].capacity.gpus.a10", "must be >= 0"},
		}},
		{"negative prices", cloud("  prices: {cpu: -1, memoryGiB: -0.1, gpu: {a10: -2}, shapes: {cpu.small: -1, gpu.x: 1}}\n"), []wantErr{
			{"clouds[0].prices.cpu", "must be a price >= 0"},
			{"clouds[0].prices.gpu.a10", "must be a price >= 0"},
			{"clouds[0].prices.memoryGiB", "must be a price >= 0"},
			{`clouds[0].prices.shapes["cpu.small"]`, "must be a price >= 0"},
			{`clouds[0].prices.shapes["gpu.x"]`, `unknown shape "gpu.x"`},
		}},
		{"kubernetes without its section", "clouds: [{name: k, provider: kubernetes, region: r}]\n", []wantErr{{"clouds[0].kubernetes", "required with provider kubernetes"}}},
		{"kubernetes with capacity and catalog", "clouds: [{name: k, provider: kubernetes, region: r, catalog: aws, capacity: {cpu: 1, memory: 1Gi}, kubernetes: {kubeconfig: /k, context: c}}]\n", []wantErr{
			{"clouds[0].capacity", "does not apply to a kubernetes cloud"},
			{"clouds[0].catalog", "does not apply to a kubernetes cloud"},
		}},
		{"kubernetes section checked", "clouds: [{name: k, provider: kubernetes, region: r, kubernetes: {kubeconfig: /k, context: c, unavailableAfter: 1ms}}]\n", []wantErr{{"clouds[0].kubernetes.unavailableAfter", ""}}},
		{"kubernetes section on a local cloud", cloud("  kubernetes: {kubeconfig: /k, context: c}\n"), []wantErr{{"clouds[0].kubernetes", "only applies to provider kubernetes"}}},
		{"all clouds checked", "clouds: [{name: a}, {name: b}]\n", []wantErr{
			{"clouds[0].capacity.cpu", ""}, {"clouds[0].capacity.memory", ""}, {"clouds[0].provider", ""}, {"clouds[0].region", ""},
			{"clouds[1].capacity.cpu", ""}, {"clouds[1].capacity.memory", ""}, {"clouds[1].provider", ""}, {"clouds[1].region", ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseClouds([]byte(tt.input))
			if f != nil {
				t.Error("ParseClouds returned a file with an error")
			}
			checkErrors(t, err, tt.want)
		})
	}
}
