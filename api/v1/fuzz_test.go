package v1

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

func FuzzParseSpec(f *testing.F) {
	seeds := []string{
		base,
		"apiVersion: v1\napp_name: hello\ndocker_image: nginx\nreplicas: 2\nport: 80\n",
		`{"name": "web", "image": "nginx", "replicas": {"min": 1, "max": 4}}`,
		base + "replicas: {min: 0, max: 3}\nresources: {cpu: 1.5, memory: 3Gi, gpu: {type: l4, count: 1}}\n",
		base + "resources: {shape: gpu.a10}\nplacement: {clouds: [local-a, local-b], spread: {minClouds: 2}, maxHourlyCost: 2.5}\nreplicas: 3\n",
		"name: web\ncommand: [./run, \"--x=1\"]\nenv: [{name: A, value: \"\\u00e9\"}]\nhealth: {path: /h, periodSeconds: 9, timeoutSeconds: 9, initialDelaySeconds: 1}\n",
		base + "placement: {labels: {jurisdiction: eu, \"a.b/c\": \"\"}, regions: [r1]}\naccess: {public: true}\n",
		base + "replica: 3\n",
		base + "replicas: {min: 0, max: 6}\nautoscale: {metric: rps, target: 12.5, scaleToZeroAfter: 90s, upscaleDelay: 15s, stableWindow: 2m, panicWindow: 10s, predictive: {enabled: true, horizon: 20m, season: 24h}}\n",
		base + "replicas: {min: 1, max: 9}\nautoscale: {metric: custom, customMetric: \"header:X-Queue-Depth\", target: 4, schedule: [{days: \"mon-fri\", from: \"09:00\", to: \"18:00\", min: 4, timezone: Europe/Paris}, {days: sat, from: \"22:00\", to: \"06:00\", min: 2}]}\n",
		base + "replicas: 3\nautoscale: {metric: cpu, target: 0, schedule: [{days: weekdays, from: 9am, to: \"25:00\", min: 0}]}\n",
		"a: [1\n",
		"",
		"- 1",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Go's fuzzer has no per-input timeout: crash (and so record the
		// input) if one parse takes unreasonably long.
		tm := time.AfterFunc(10*time.Second, func() { panic("ParseSpec took more than 10s") })
		defer tm.Stop()
		spec, err := ParseSpec(data)
		if err != nil {
			if spec != nil {
				t.Fatal("spec returned with an error")
			}
			if _, ok := err.(*ValidationError); !ok {
				t.Fatalf("error is %T, not *ValidationError", err)
			}
			return
		}
		if err := spec.Validate(); err != nil {
			t.Fatalf("accepted spec does not validate: %v", err)
		}
		if _, err := spec.Resources.Normalized(); err != nil {
			t.Fatalf("accepted spec has resources that do not normalise: %v", err)
		}
		j, err := json.Marshal(spec)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		again, err := ParseSpec(j)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", j, err)
		}
		if !reflect.DeepEqual(spec, again) {
			t.Fatalf("JSON round trip differs:\n %+v\n %+v", spec, again)
		}
		y, err := yaml.Marshal(spec)
		if err != nil {
			t.Fatalf("yaml marshal: %v", err)
		}
		again, err = ParseSpec(y)
		if err != nil {
			t.Fatalf("re-parse of YAML %s: %v", y, err)
		}
		if !reflect.DeepEqual(spec, again) {
			t.Fatalf("YAML round trip differs:\n %+v\n %+v", spec, again)
		}
	})
}
