package v1

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// wantErr is one expected field error: the exact field path and a substring
// of the reason.
type wantErr struct {
	field  string
	reason string
}

func fieldErrors(t *testing.T, err error) []FieldError {
	t.Helper()
	if err == nil {
		t.Fatalf("expected an error, got nil")
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("expected *ValidationError, got %T: %v", err, err)
	}
	return ve.Fields
}

func checkErrors(t *testing.T, err error, want []wantErr) {
	t.Helper()
	got := fieldErrors(t, err)
	if len(got) != len(want) {
		t.Fatalf("got %d errors, want %d:\n  got:  %v\n  want: %v", len(got), len(want), got, want)
	}
	for i, w := range want {
		if got[i].Field != w.field || !strings.Contains(got[i].Reason, w.reason) {
			t.Errorf("error %d = {%q, %q}, want field %q with reason containing %q\n  all: %v", i, got[i].Field, got[i].Reason, w.field, w.reason, got)
		}
	}
}

const base = "name: web\nimage: nginx:1.27\n"

func TestParseSpecValid(t *testing.T) {
	tests := []struct {
		name  string
		input string
		check func(t *testing.T, s *DeploymentSpec)
	}{
		{"minimal", base, func(t *testing.T, s *DeploymentSpec) {
			if s.Name != "web" || s.Image != "nginx:1.27" {
				t.Errorf("name/image = %q/%q", s.Name, s.Image)
			}
		}},
		{"command only", "name: web\ncommand: [python3, -m, http.server]\nargs: [\"8000\"]\n", func(t *testing.T, s *DeploymentSpec) {
			if !reflect.DeepEqual(s.Command, []string{"python3", "-m", "http.server"}) || !reflect.DeepEqual(s.Args, []string{"8000"}) {
				t.Errorf("command/args = %v %v", s.Command, s.Args)
			}
		}},
		{"json", `{"name": "web", "image": "nginx", "replicas": {"min": 1, "max": 4}, "port": 80}`, func(t *testing.T, s *DeploymentSpec) {
			if s.Replicas != (Replicas{Min: 1, Max: 4}) || s.Port != 80 {
				t.Errorf("replicas/port = %+v %d", s.Replicas, s.Port)
			}
		}},
		{"replicas number", base + "replicas: 3\n", func(t *testing.T, s *DeploymentSpec) {
			if s.Replicas != (Replicas{Min: 3, Max: 3}) {
				t.Errorf("replicas = %+v", s.Replicas)
			}
		}},
		{"replicas object min 0", base + "replicas: {min: 0, max: 3}\n", func(t *testing.T, s *DeploymentSpec) {
			if s.Replicas != (Replicas{Min: 0, Max: 3}) {
				t.Errorf("replicas = %+v", s.Replicas)
			}
		}},
		{"replicas object max only", base + "replicas: {max: 3}\n", func(t *testing.T, s *DeploymentSpec) {
			if s.Replicas != (Replicas{Min: 1, Max: 3}) {
				t.Errorf("replicas = %+v", s.Replicas)
			}
		}},
		{"replicas zero: scaled to zero", base + "replicas: 0\nplacement: {spread: {minClouds: 2}}\n", func(t *testing.T, s *DeploymentSpec) {
			if s.Replicas != Fixed(0) {
				t.Errorf("replicas = %+v", s.Replicas)
			}
		}},
		{"replicas object zero", base + "replicas: {min: 0, max: 0}\n", func(t *testing.T, s *DeploymentSpec) {
			if s.Replicas != Fixed(0) {
				t.Errorf("replicas = %+v", s.Replicas)
			}
		}},
		{"replicas 2.0 is 2", base + "replicas: 2.0\n", func(t *testing.T, s *DeploymentSpec) {
			if s.Replicas != Fixed(2) {
				t.Errorf("replicas = %+v", s.Replicas)
			}
		}},
		{"shape", base + "resources: {shape: gpu.a10}\n", func(t *testing.T, s *DeploymentSpec) {
			if s.Resources != (Resources{Shape: "gpu.a10"}) {
				t.Errorf("resources = %+v", s.Resources)
			}
		}},
		{"explicit resources with numbers", base + "resources: {cpu: 2, memory: 1073741824, gpu: {type: a10, count: 2}}\n", func(t *testing.T, s *DeploymentSpec) {
			if s.Resources.CPU != "2" || s.Resources.Memory != "1073741824" || *s.Resources.GPU != (GPU{Type: "a10", Count: 2}) {
				t.Errorf("resources = %+v", s.Resources)
			}
		}},
		{"millicores", base + "resources: {cpu: 250m, memory: 1Gi}\n", func(t *testing.T, s *DeploymentSpec) {
			if s.Resources.CPU != "250m" {
				t.Errorf("cpu = %q", s.Resources.CPU)
			}
		}},
		{"env", base + "env:\n- {name: GREETING, value: hello}\n- {name: _X1, value: \"\"}\n", func(t *testing.T, s *DeploymentSpec) {
			if len(s.Env) != 2 || s.Env[0] != (EnvVar{Name: "GREETING", Value: "hello"}) {
				t.Errorf("env = %+v", s.Env)
			}
		}},
		{"placement", base + "replicas: 3\nplacement:\n  clouds: [local-a, local-b]\n  regions: [local-east]\n  labels: {jurisdiction: us}\n  spread: {minClouds: 2}\n  maxHourlyCost: 0.5\n", func(t *testing.T, s *DeploymentSpec) {
			want := Placement{Clouds: []string{"local-a", "local-b"}, Regions: []string{"local-east"}, Labels: map[string]string{"jurisdiction": "us"}, Spread: Spread{MinClouds: 2}, MaxHourlyCost: 0.5}
			if !reflect.DeepEqual(s.Placement, want) {
				t.Errorf("placement = %+v", s.Placement)
			}
		}},
		{"placement optimizer fields", base + "replicas: 4\nplacement:\n  spread: {maxPerCloud: 2}\n  budget: 12.5\n  spot: {allowed: true, onDemandBase: 1}\n  traffic: {us-east-1: 3, eu-west-1: 1}\n", func(t *testing.T, s *DeploymentSpec) {
			want := Placement{Spread: Spread{MaxPerCloud: 2}, Budget: 12.5, Spot: &SpotPolicy{Allowed: true, OnDemandBase: 1}, Traffic: map[string]float64{"us-east-1": 3, "eu-west-1": 1}}
			if !reflect.DeepEqual(s.Placement, want) {
				t.Errorf("placement = %+v", s.Placement)
			}
		}},
		{"minClouds equal to replicas", base + "replicas: 2\nplacement: {spread: {minClouds: 2}}\n", nil},
		{"minClouds 1 with 1 replica", base + "placement: {spread: {minClouds: 1}}\n", nil},
		{"health", base + "health: {path: /healthz, periodSeconds: 10, timeoutSeconds: 10, initialDelaySeconds: 3600}\n", func(t *testing.T, s *DeploymentSpec) {
			if s.Health != (HealthCheck{"/healthz", 10, 10, 3600}) {
				t.Errorf("health = %+v", s.Health)
			}
		}},
		{"access public true", base + "access: {public: true}\n", nil},
		{"apiVersion and kind", "apiVersion: v1\nkind: Deployment\n" + base, nil},
		{"null values mean unset", base + "port: null\nreplicas: ~\nenv: null\n", func(t *testing.T, s *DeploymentSpec) {
			if s.Port != 8080 || s.Replicas != Fixed(1) || s.Env != nil {
				t.Errorf("port/replicas/env = %d %+v %v", s.Port, s.Replicas, s.Env)
			}
		}},
		{"empty lists normalised to nil", base + "env: []\nargs: []\nplacement: {clouds: [], labels: {}}\n", func(t *testing.T, s *DeploymentSpec) {
			if s.Env != nil || s.Args != nil || s.Placement.Clouds != nil || s.Placement.Labels != nil {
				t.Errorf("not normalised: %+v", s)
			}
		}},
		{"port bounds", base + "port: 65535\n", nil},
		{"name 63 chars", "name: " + strings.Repeat("a", 63) + "\nimage: x\n", nil},
		{"replicas 1000", base + "replicas: 1000\n", nil},
		{"byte-order mark json", "\ufeff{\"name\": \"web\", \"image\": \"x\"}", nil},
		{"null seed name", "app_name: null\nname: web\nimage: x\n", nil},
		{"comments and document marker", "# my app\n---\n" + base + "...\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSpec([]byte(tt.input))
			if err != nil {
				t.Fatalf("ParseSpec: %v", err)
			}
			if err := s.Validate(); err != nil {
				t.Fatalf("parsed spec does not validate: %v", err)
			}
			if tt.check != nil {
				tt.check(t, s)
			}
		})
	}
}

func TestParseSpecErrors(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  []wantErr
	}{
		// strictness
		{"unknown top-level field", base + "replica: 3\n", []wantErr{{"replica", `unknown field "replica"; did you mean "replicas"?`}}},
		{"unknown nested field", base + "placement: {spred: {minClouds: 2}}\n", []wantErr{{"placement.spred", `unknown field "spred"; did you mean "spread"?`}}},
		{"unknown deeply nested field", base + "resources: {gpu: {type: a10, cnt: 1}}\n", []wantErr{
			{"resources.gpu.cnt", `did you mean "count"?`},
			{"resources.gpu.count", "must be >= 1 (got 0)"},
		}},
		{"unknown field in list element", base + "env: [{nmae: A, value: b}]\n", []wantErr{
			{"env[0].name", "required"},
			{"env[0].nmae", `did you mean "name"?`},
		}},
		{"unknown field in replicas object", base + "replicas: {min: 1, maximum: 3}\n", []wantErr{{"replicas.maximum", `did you mean "max"?`}}},
		{"unknown field case differs", "Name: web\nimage: x\n", []wantErr{
			{"Name", `unknown field "Name"; did you mean "name"?`},
			{"name", "required"},
		}},
		{"unknown field snake case", base + "placement: {max_hourly_cost: 1}\n", []wantErr{{"placement.max_hourly_cost", `did you mean "maxHourlyCost"?`}}},
		{"unknown field prefix", base + "healthcheck: {path: /}\n", []wantErr{{"healthcheck", `did you mean "health"?`}}},
		{"unknown field no suggestion", base + "zzzzzz: 1\n", []wantErr{{"zzzzzz", "valid fields here: access, apiVersion"}}},
		{"several unknown fields", base + "b: 1\na: 2\n", []wantErr{{"a", "unknown field"}, {"b", "unknown field"}}},
		{"unknown field in health", base + "health: {periodSecond: 3}\n", []wantErr{{"health.periodSecond", `did you mean "periodSeconds"?`}}},

		// types
		{"string for number", base + "port: eighty\n", []wantErr{{"port", `expected a whole number, got a string ("eighty")`}}},
		{"fraction for integer", base + "port: 80.5\n", []wantErr{{"port", "expected a whole number, got 80.5"}}},
		{"nested type error", base + "resources: {gpu: {type: a10, count: one}}\n", []wantErr{{"resources.gpu.count", "expected a whole number"}}},
		{"number for string", base + "env: [{name: A, value: 8080}]\n", []wantErr{{"env[0].value", "expected a string, got a number (8080); quote the value"}}},
		{"yaml boolean for string", "name: web\nimage: yes\n", []wantErr{{"image", "got a boolean (true); quote the value (YAML reads"}}},
		{"string for list", "name: web\ncommand: ls\n", []wantErr{{"command", "expected a list"}}},
		{"list for object", base + "placement: [a]\n", []wantErr{{"placement", "expected an object with fields clouds, regions"}}},
		{"string for bool", base + "access: {public: maybe}\n", []wantErr{{"access.public", "expected true or false"}}},
		{"replicas string", base + "replicas: three\n", []wantErr{{"replicas", "expected a whole number or an object {min, max}"}}},
		{"replicas fraction", base + "replicas: 2.5\n", []wantErr{{"replicas", "expected a whole number of replicas"}}},
		{"huge number", base + "port: 99999999999999999999\n", []wantErr{{"port", "out of range"}}},
		{"float field", base + "placement: {maxHourlyCost: cheap}\n", []wantErr{{"placement.maxHourlyCost", "expected a number"}}},
		{"control character", base + "env: [{name: A, value: \"a\\x85b\"}]\n", []wantErr{{"env[0].value", "control characters"}}},

		// document
		{"malformed yaml", "name: web\nimage: [nginx\n", []wantErr{{"", "malformed YAML/JSON: line"}}},
		{"malformed json", "{\"name\": \"web\",\n \"image\": }", []wantErr{{"", "malformed JSON: line 2, column 11: invalid character '}'"}}},
		{"json trailing comma", `{"name": "web", "image": "x",}`, []wantErr{{"", "malformed JSON: line 1"}}},
		{"yaml y is a boolean", base + "env: [{name: A, value: y}]\n", []wantErr{{"env[0].value", "got a boolean (true); quote the value"}}},
		{"tab indentation", "name: web\nresources:\n\tcpu: 1\n", []wantErr{{"", "line 3"}}},
		{"duplicate key", base + "name: other\n", []wantErr{{"", `line 3: key "name" already set`}}},
		{"two documents", base + "---\nname: other\n", []wantErr{{"", "line 3: a second YAML document"}}},
		{"top-level list", "- name: web\n", []wantErr{{"", "expected an object"}}},
		{"top-level scalar", "hello\n", []wantErr{{"", "expected an object"}}},
		{"empty", "", []wantErr{{"", "spec is empty"}}},
		{"only comments", "# nothing\n", []wantErr{{"", "spec is empty"}}},
		{"too big", base + "args: [\"" + strings.Repeat("x", MaxSpecBytes) + "\"]\n", []wantErr{{"", "the limit is 1048576 bytes (1 MiB)"}}},

		// seed form
		{"apiVersion wrong", "apiVersion: v2\n" + base, []wantErr{{"apiVersion", `must be "v1" (got a string ("v2"))`}}},
		{"apiVersion number", "apiVersion: 1\n" + base, []wantErr{{"apiVersion", `must be "v1"`}}},
		{"kind wrong", "kind: Service\n" + base, []wantErr{{"kind", `must be "Deployment"`}}},
		{"app_name and name differ", "app_name: a\n" + base, []wantErr{{"app_name", "conflicts with name"}}},
		{"docker_image and image differ", "docker_image: redis\n" + base, []wantErr{{"docker_image", "conflicts with image"}}},
		{"seed errors name seed fields", "app_name: Bad_Name\ndocker_image: 5\n", []wantErr{
			{"app_name", "DNS-1123"},
			{"docker_image", "expected a string"},
		}},
		{"seed unknown field suggestion", "app_nmae: web\ndocker_image: x\n", []wantErr{
			{"app_nmae", `did you mean "app_name"?`},
			{"name", "required"},
		}},

		// name
		{"name missing", "image: x\n", []wantErr{{"name", "required"}}},
		{"name uppercase", "name: Web\nimage: x\n", []wantErr{{"name", "DNS-1123 label"}}},
		{"name leading dash", "name: -web\nimage: x\n", []wantErr{{"name", "DNS-1123 label"}}},
		{"name trailing dash", "name: web-\nimage: x\n", []wantErr{{"name", "DNS-1123 label"}}},
		{"name dot", "name: web.app\nimage: x\n", []wantErr{{"name", "DNS-1123 label"}}},
		{"name too long", "name: " + strings.Repeat("a", 64) + "\nimage: x\n", []wantErr{{"name", "at most 63 characters (got 64)"}}},

		// image / command
		{"no image or command", "name: web\n", []wantErr{{"image", "set image or command"}}},
		{"args without image or command", "name: web\nargs: [x]\n", []wantErr{{"image", "set image or command"}}},
		{"image with space", "name: web\nimage: \"nginx latest\"\n", []wantErr{{"image", "whitespace"}}},
		{"empty command", "name: web\ncommand: [\"\"]\n", []wantErr{{"command[0]", "must name the program"}}},

		// port
		{"port zero", base + "port: 0\n", []wantErr{{"port", "must be between 1 and 65535 (got 0); leave it out to use the default 8080"}}},
		{"port negative", base + "port: -1\n", []wantErr{{"port", "must be between 1 and 65535 (got -1)"}}},
		{"port too big", base + "port: 65536\n", []wantErr{{"port", "must be between 1 and 65535 (got 65536)"}}},

		// replicas
		{"replicas min negative", base + "replicas: {min: -1, max: 3}\n", []wantErr{{"replicas.min", "must be >= 0 (got -1)"}}},
		{"replicas negative number", base + "replicas: -2\n", []wantErr{{"replicas", "must be >= 0 (got -2)"}}},
		{"replicas min > max", base + "replicas: {min: 5, max: 2}\n", []wantErr{{"replicas.min", "replicas.min (5) must be <= replicas.max (2)"}}},
		{"replicas range max 0", base + "replicas: {min: 1, max: 0}\n", []wantErr{{"replicas.max", "must be >= 1 (got 0)"}, {"replicas.min", "replicas.min (1) must be <= replicas.max (0)"}}},
		{"replicas range max negative", base + "replicas: {min: -3, max: -1}\n", []wantErr{{"replicas.max", "must be >= 1 (got -1)"}, {"replicas.min", "must be >= 0 (got -3)"}}},
		{"replicas too many", base + "replicas: 1001\n", []wantErr{{"replicas", "must be <= 1000 (got 1001)"}}},
		{"replicas range too many", base + "replicas: {min: 1, max: 1001}\n", []wantErr{{"replicas.max", "must be <= 1000 (got 1001)"}}},

		// env
		{"env name starts with digit", base + "env: [{name: 1A, value: x}]\n", []wantErr{{"env[0].name", "must start with a letter or '_'"}}},
		{"env name with dash", base + "env: [{name: A-B, value: x}]\n", []wantErr{{"env[0].name", "must start with a letter or '_'"}}},
		{"env name empty", base + "env: [{value: x}]\n", []wantErr{{"env[0].name", "required"}}},
		{"env duplicate", base + "env: [{name: A, value: x}, {name: B, value: w}, {name: A, value: z}]\n", []wantErr{{"env[2].name", "duplicate of env[0]"}}},
		{"env PORT reserved", base + "env: [{name: PORT, value: \"80\"}]\n", []wantErr{{"env[0].name", "PORT is set by aloft"}}},

		// resources
		{"cpu garbage", base + "resources: {cpu: lots}\n", []wantErr{{"resources.cpu", "must be a positive number of cores"}}},
		{"cpu negative", base + "resources: {cpu: -1}\n", []wantErr{{"resources.cpu", "must be a positive number of cores"}}},
		{"cpu zero", base + "resources: {cpu: 0}\n", []wantErr{{"resources.cpu", "must be > 0"}}},
		{"cpu exponent", base + "resources: {cpu: \"1e3\"}\n", []wantErr{{"resources.cpu", "invalid CPU amount"}}},
		{"memory garbage", base + "resources: {memory: lots}\n", []wantErr{{"resources.memory", "must be a positive quantity"}}},
		{"memory bad suffix", base + "resources: {memory: 512MB}\n", []wantErr{{"resources.memory", `unknown suffix "MB"`}}},
		{"memory zero", base + "resources: {memory: \"0\"}\n", []wantErr{{"resources.memory", "must be > 0"}}},
		{"memory negative", base + "resources: {memory: -1Gi}\n", []wantErr{{"resources.memory", "must not be negative"}}},
		{"gpu count zero", base + "resources: {gpu: {type: a10, count: 0}}\n", []wantErr{{"resources.gpu.count", "must be >= 1 (got 0)"}}},
		{"gpu type missing", base + "resources: {gpu: {count: 1}}\n", []wantErr{{"resources.gpu.type", "required"}}},
		{"gpu type upper-case", base + "resources: {gpu: {type: A10, count: 1}}\n", []wantErr{{"resources.gpu.type", `lower-case: use "a10"`}}},
		{"unknown shape", base + "resources: {shape: gpu.a11}\n", []wantErr{{"resources.shape", `unknown shape "gpu.a11"; did you mean "gpu.a10"? valid shapes: cpu.small, cpu.medium`}}},
		{"unknown shape far", base + "resources: {shape: huge}\n", []wantErr{{"resources.shape", "valid shapes: cpu.small"}}},
		{"shape and cpu", base + "resources: {shape: cpu.small, cpu: 2}\n", []wantErr{{"resources.cpu", `conflicts with resources.shape "cpu.small", which sets cpu to 1`}}},
		{"shape and everything", base + "resources: {shape: gpu.t4, cpu: 2, memory: 1Gi, gpu: {type: t4, count: 1}}\n", []wantErr{
			{"resources.cpu", "conflicts with resources.shape"},
			{"resources.gpu", "sets gpu to 1x t4"},
			{"resources.memory", "sets memory to 16Gi"},
		}},

		// placement
		{"minClouds negative", base + "placement: {spread: {minClouds: -1}}\n", []wantErr{{"placement.spread.minClouds", "must be >= 0"}}},
		{"minClouds above replicas", base + "replicas: 2\nplacement: {spread: {minClouds: 3}}\n", []wantErr{{"placement.spread.minClouds", "placement.spread.minClouds (3) must be <= replicas.max (2)"}}},
		{"minClouds above allowed clouds", base + "replicas: 5\nplacement: {clouds: [local-a, local-b], spread: {minClouds: 3}}\n", []wantErr{{"placement.spread.minClouds", "more than the 2 cloud(s) allowed by placement.clouds"}}},
		{"maxHourlyCost negative", base + "placement: {maxHourlyCost: -1}\n", []wantErr{{"placement.maxHourlyCost", "must be >= 0 (got -1)"}}},
		{"maxPerCloud negative", base + "placement: {spread: {maxPerCloud: -1}}\n", []wantErr{{"placement.spread.maxPerCloud", "must be >= 0"}}},
		{"maxPerCloud too small for replicas", base + "replicas: 5\nplacement: {clouds: [local-a, local-b], spread: {maxPerCloud: 2}}\n", []wantErr{{"placement.spread.maxPerCloud", "less than replicas.max (5)"}}},
		{"budget negative", base + "placement: {budget: -2}\n", []wantErr{{"placement.budget", "must be >= 0 (got -2)"}}},
		{"onDemandBase negative", base + "placement: {spot: {allowed: true, onDemandBase: -1}}\n", []wantErr{{"placement.spot.onDemandBase", "must be >= 0"}}},
		{"onDemandBase without spot", base + "placement: {spot: {allowed: false, onDemandBase: 2}}\n", []wantErr{{"placement.spot.onDemandBase", "only meaningful with placement.spot.allowed"}}},
		{"traffic weight negative", base + "placement: {traffic: {us-east-1: -1}}\n", []wantErr{{"placement.traffic.us-east-1", "weight must be a number >= 0"}}},
		{"traffic typo", base + "placement: {trafic: {us-east-1: 1}}\n", []wantErr{{"placement.trafic", "traffic"}}},
		{"cloud name invalid", base + "placement: {clouds: [Local_A]}\n", []wantErr{{"placement.clouds[0]", "DNS-1123"}}},
		{"cloud duplicate", base + "placement: {clouds: [local-a, local-b, local-a]}\n", []wantErr{{"placement.clouds[2]", "duplicate of placement.clouds[0]"}}},
		{"region empty and duplicate", base + "placement: {regions: [\"\", r1, r1]}\n", []wantErr{{"placement.regions[0]", "without whitespace"}, {"placement.regions[2]", "duplicate"}}},
		{"label key empty", base + "placement: {labels: {\"\": x}}\n", []wantErr{{`placement.labels[""]`, "non-empty"}}},

		// health
		{"health path", base + "health: {path: healthz}\n", []wantErr{{"health.path", `must start with "/" (got "healthz")`}}},
		{"health period zero", base + "health: {periodSeconds: 0}\n", []wantErr{{"health.periodSeconds", "must be between 1 and 3600 (got 0)"}}},
		{"health period too big", base + "health: {periodSeconds: 3601, timeoutSeconds: 1}\n", []wantErr{{"health.periodSeconds", "must be between 1 and 3600 (got 3601)"}}},
		{"health timeout zero", base + "health: {timeoutSeconds: 0}\n", []wantErr{{"health.timeoutSeconds", "must be between 1 and 3600"}}},
		{"health initial delay", base + "health: {initialDelaySeconds: -1}\n", []wantErr{{"health.initialDelaySeconds", "must be between 0 and 3600 (got -1)"}}},
		{"health initial delay too big", base + "health: {initialDelaySeconds: 3601}\n", []wantErr{{"health.initialDelaySeconds", "must be between 0 and 3600"}}},
		{"health timeout above period", base + "health: {periodSeconds: 5, timeoutSeconds: 6}\n", []wantErr{{"health.timeoutSeconds", "health.timeoutSeconds (6) must be <= health.periodSeconds (5)"}}},
		{"health timeout above default period", base + "health: {timeoutSeconds: 10}\n", []wantErr{{"health.timeoutSeconds", "(10) must be <= health.periodSeconds (5)"}}},

		// access
		{"bad allow cidr", base + "access: {public: false, allowCIDRs: [10.0.0.0/8, nope]}\n", []wantErr{{"access.allowCIDRs[1]", "must be a CIDR"}}},
		{"env value and valueFrom", base + "env: [{name: K, value: v, valueFrom: {secret: s}}]\n", []wantErr{{"env[0]", "not both"}}},
		{"env bad secret name", base + "env: [{name: K, valueFrom: {secret: Bad_Name}}]\n", []wantErr{{"env[0].valueFrom.secret", "must name a secret"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSpec([]byte(tt.input))
			if s != nil {
				t.Errorf("ParseSpec returned a spec with an error")
			}
			checkErrors(t, err, tt.want)
		})
	}
}

func TestParseSpecCollectsAllErrorsSorted(t *testing.T) {
	in := `
name: Bad
port: 0
replicas: {min: 5, max: 2}
replica: 1
env:
- {name: A, value: x}
- {name: "1"}
- {name: B}
- {name: C}
- {name: D}
- {name: E}
- {name: F}
- {name: G}
- {name: H}
- {name: I}
- {name: A}
health: {path: x}
access: {allowCIDRs: [bad]}
`
	_, err := ParseSpec([]byte(in))
	got := fieldErrors(t, err)
	var fields []string
	for _, f := range got {
		fields = append(fields, f.Field)
	}
	want := []string{"access.allowCIDRs[0]", "env[1].name", "env[10].name", "health.path", "image", "name", "port", "replica", "replicas.min"}
	if !reflect.DeepEqual(fields, want) {
		t.Fatalf("fields = %v\nwant     %v", fields, want)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "invalid spec: access.allowCIDRs[0]: must be a CIDR") || !strings.Contains(msg, "; env[1].name: ") {
		t.Errorf("Error() = %s", msg)
	}
}

func TestValidationErrorFormat(t *testing.T) {
	e := &ValidationError{Fields: []FieldError{{Field: "replicas.min", Reason: "must be >= 0 (got -1)"}, {Field: "port", Reason: "bad"}}}
	if got, want := e.Error(), "invalid spec: replicas.min: must be >= 0 (got -1); port: bad"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got := (&ValidationError{Fields: []FieldError{{Reason: "spec is empty"}}}).Error(); got != "invalid spec: spec is empty" {
		t.Errorf("Error() = %q", got)
	}
	r := e.Response()
	if r.Error != e.Error() || len(r.Fields) != 2 {
		t.Errorf("Response() = %+v", r)
	}
	_, err := ParseClouds([]byte("clouds: []"))
	if err == nil || !strings.HasPrefix(err.Error(), "invalid clouds file: clouds: at least one cloud") {
		t.Errorf("clouds error = %v", err)
	}
}

func TestLessPath(t *testing.T) {
	in := []FieldError{{Field: "env[10].name"}, {Field: "port"}, {Field: "env[2].name"}, {Field: ""}, {Field: "env[2]"}, {Field: "clouds[1].name"}, {Field: "clouds[0].region"}}
	sortFieldErrors(in)
	var got []string
	for _, f := range in {
		got = append(got, f.Field)
	}
	want := []string{"", "clouds[0].region", "clouds[1].name", "env[2]", "env[2].name", "env[10].name", "port"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sorted = %v, want %v", got, want)
	}
}

func TestSeedFormEqualsNative(t *testing.T) {
	pairs := []struct{ seed, native string }{
		{
			"apiVersion: v1\napp_name: hello\ndocker_image: nginx:1.27\nreplicas: 2\nport: 80\n",
			"name: hello\nimage: nginx:1.27\nreplicas: 2\nport: 80\n",
		},
		{
			"apiVersion: v1\nkind: Deployment\napp_name: hello\ndocker_image: nginx\n",
			`{"name": "hello", "image": "nginx", "replicas": 1, "port": 8080}`,
		},
		{
			// seed names mixed with native fields, and a repeated equal value
			"app_name: hello\nname: hello\ndocker_image: nginx\nresources: {shape: cpu.small}\nplacement: {clouds: [local-a]}\n",
			"name: hello\nimage: nginx\nresources: {shape: cpu.small}\nplacement: {clouds: [local-a]}\napiVersion: v1\n",
		},
	}
	for i, p := range pairs {
		a, err := ParseSpec([]byte(p.seed))
		if err != nil {
			t.Fatalf("%d: seed: %v", i, err)
		}
		b, err := ParseSpec([]byte(p.native))
		if err != nil {
			t.Fatalf("%d: native: %v", i, err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%d: seed and native differ:\n  %+v\n  %+v", i, a, b)
		}
	}
}

func TestDefaults(t *testing.T) {
	s, err := ParseSpec([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	want := &DeploymentSpec{
		Name:      "web",
		Image:     "nginx:1.27",
		Port:      8080,
		Resources: Resources{CPU: "0.5", Memory: "256Mi"},
		Replicas:  Replicas{Min: 1, Max: 1},
		Health:    HealthCheck{Path: "/", PeriodSeconds: 5, TimeoutSeconds: 1, InitialDelaySeconds: 0},
		Access:    AccessPolicy{Public: &yes},
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("defaults:\n got  %+v\n want %+v", s, want)
	}

	// Default() on a struct built in code gives the same.
	d := DeploymentSpec{Name: "web", Image: "nginx:1.27", Env: []EnvVar{}}
	d.Default()
	if !reflect.DeepEqual(&d, want) {
		t.Errorf("Default():\n got  %+v\n want %+v", d, want)
	}
	if err := d.Validate(); err != nil {
		t.Errorf("Validate after Default: %v", err)
	}

	// A shape suppresses the cpu/memory defaults; explicit values are kept.
	s, err = ParseSpec([]byte(base + "resources: {shape: cpu.large}\nport: 9000\nreplicas: {min: 0, max: 2}\nhealth: {path: /ready, periodSeconds: 30}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Resources != (Resources{Shape: "cpu.large"}) || s.Port != 9000 || s.Replicas != (Replicas{0, 2}) ||
		s.Health != (HealthCheck{Path: "/ready", PeriodSeconds: 30, TimeoutSeconds: 1}) {
		t.Errorf("explicit values changed: %+v", s)
	}

	// Only memory given: cpu still defaults.
	s, err = ParseSpec([]byte(base + "resources: {memory: 1Gi}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Resources.CPU != DefaultCPU || s.Resources.Memory != "1Gi" {
		t.Errorf("resources = %+v", s.Resources)
	}

	// Validate without Default reports the zero values.
	var zero DeploymentSpec
	if err := zero.Validate(); err == nil {
		t.Error("zero spec validated")
	}
}

func TestReplicasJSON(t *testing.T) {
	tests := []struct {
		r    Replicas
		json string
	}{
		{Replicas{3, 3}, `3`},
		{Replicas{1, 1}, `1`},
		{Replicas{0, 0}, `0`},
		{Replicas{1, 5}, `{"min":1,"max":5}`},
		{Replicas{0, 2}, `{"min":0,"max":2}`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.r)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != tt.json {
			t.Errorf("Marshal(%+v) = %s, want %s", tt.r, b, tt.json)
		}
		var back Replicas
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if back != tt.r {
			t.Errorf("round trip %+v -> %s -> %+v", tt.r, b, back)
		}
		// Through a pointer and inside a spec too.
		b, _ = json.Marshal(&DeploymentSpec{Replicas: tt.r})
		if !strings.Contains(string(b), `"replicas":`+tt.json) {
			t.Errorf("spec JSON %s lacks replicas %s", b, tt.json)
		}
	}

	unmarshal := []struct {
		in   string
		want Replicas
		err  bool
	}{
		{`4`, Replicas{4, 4}, false},
		{`4.0`, Replicas{4, 4}, false},
		{`1e1`, Replicas{10, 10}, false},
		{`{}`, Replicas{1, 1}, false},
		{`{"max": 4}`, Replicas{1, 4}, false},
		{`{"min": 3}`, Replicas{3, 3}, false},
		{`{"max": 0}`, Replicas{0, 0}, false},
		{`4.5`, Replicas{}, true},
		{`"4"`, Replicas{}, true},
		{`[4]`, Replicas{}, true},
		{`true`, Replicas{}, true},
		{`{"min": 1, "mx": 2}`, Replicas{}, true},
	}
	for _, tt := range unmarshal {
		var r Replicas
		err := json.Unmarshal([]byte(tt.in), &r)
		if (err != nil) != tt.err {
			t.Errorf("Unmarshal(%s) err = %v, want error %v", tt.in, err, tt.err)
			continue
		}
		if !tt.err && r != tt.want {
			t.Errorf("Unmarshal(%s) = %+v, want %+v", tt.in, r, tt.want)
		}
	}
	// null leaves the value alone.
	r := Replicas{2, 3}
	if err := json.Unmarshal([]byte(`null`), &r); err != nil || r != (Replicas{2, 3}) {
		t.Errorf("null: %+v %v", r, err)
	}
}

func TestSpecRoundTrip(t *testing.T) {
	in := base + `
replicas: {min: 2, max: 6}
command: [./server]
args: [--verbose]
env: [{name: A, value: "1"}]
resources: {cpu: 1.5, memory: 3Gi, gpu: {type: l4, count: 1}}
placement: {clouds: [local-a, local-c], regions: [local-east], labels: {jurisdiction: us}, spread: {minClouds: 2}, maxHourlyCost: 2.25}
health: {path: /healthz, periodSeconds: 10, timeoutSeconds: 2, initialDelaySeconds: 3}
access: {public: true}
`
	s, err := ParseSpec([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := ParseSpec(b)
	if err != nil {
		t.Fatalf("re-parse %s: %v", b, err)
	}
	if !reflect.DeepEqual(s, s2) {
		t.Errorf("round trip differs:\n %+v\n %+v", s, s2)
	}
	var s3 DeploymentSpec
	if err := json.Unmarshal(b, &s3); err != nil || !reflect.DeepEqual(s, &s3) {
		t.Errorf("plain json.Unmarshal differs: %v\n %+v\n %+v", err, s, s3)
	}
}

func TestSuggest(t *testing.T) {
	cands := []string{"name", "image", "replicas", "placement", "maxHourlyCost", "env"}
	tests := map[string]string{
		"replica":         "replicas",
		"REPLICAS":        "replicas",
		"imag":            "image",
		"envs":            "env",
		"max-hourly-cost": "maxHourlyCost",
		"placment":        "placement",
		"xyz":             "",
		"q":               "",
	}
	for in, want := range tests {
		if got := suggest(in, cands); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}
