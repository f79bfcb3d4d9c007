package v1

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

const goodKubernetes = `
kubeconfig: ~/.kube/config
context: gke_proj_us-central1_ai
namespace: aloft
unavailableAfter: 15s
gpus:
  h100:
    product: NVIDIA-H100-80GB-HBM3
    nodeSelector: {cloud.google.com/gke-accelerator: nvidia-h100-80gb}
    tolerations:
    - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
  a10:
    product: NVIDIA-A10
    tolerations:
    - {key: dedicated, value: gpu}
`

func TestKubernetesConfigValid(t *testing.T) {
	var k KubernetesConfig
	if err := yaml.UnmarshalStrict([]byte(goodKubernetes), &k); err != nil {
		t.Fatal(err)
	}
	if errs := k.Validate(); len(errs) != 0 {
		t.Fatalf("Validate: %v", errs)
	}
	k.Default()
	want := KubernetesConfig{
		Kubeconfig: "~/.kube/config", Context: "gke_proj_us-central1_ai", Namespace: "aloft",
		GPULabel: DefaultKubernetesGPULabel, UnavailableAfter: "15s",
		GPUs: map[string]KubernetesGPU{
			"h100": {
				Product:      "NVIDIA-H100-80GB-HBM3",
				NodeSelector: map[string]string{"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"},
				Tolerations:  []KubernetesToleration{{Key: "nvidia.com/gpu", Operator: "Exists", Effect: "NoSchedule"}},
			},
			"a10": {Product: "NVIDIA-A10", Tolerations: []KubernetesToleration{{Key: "dedicated", Value: "gpu"}}},
		},
	}
	if !reflect.DeepEqual(k, want) {
		t.Errorf("got  %+v\nwant %+v", k, want)
	}
	if d := k.UnavailableAfterDuration(); d != 15*time.Second {
		t.Errorf("UnavailableAfterDuration = %v", d)
	}
}

func TestKubernetesConfigDefaults(t *testing.T) {
	var k KubernetesConfig
	if errs := k.Validate(); len(errs) != 0 {
		t.Fatalf("an empty section is valid (all defaults): %v", errs)
	}
	if d := k.UnavailableAfterDuration(); d != 10*time.Second {
		t.Errorf("default UnavailableAfterDuration = %v", d)
	}
	k.Default()
	if k.Namespace != "default" || k.GPULabel != "nvidia.com/gpu.product" || k.UnavailableAfter != "10s" {
		t.Errorf("defaults: %+v", k)
	}
}

func TestKubernetesConfigInvalid(t *testing.T) {
	k := KubernetesConfig{
		Kubeconfig:       " /tmp/kc ",
		Context:          "  ",
		Namespace:        "Not_A_Namespace",
		GPULabel:         "nvidia.com/",
		UnavailableAfter: "soon",
		GPUs: map[string]KubernetesGPU{
			"H100": {Product: "NVIDIA-H100"},
			"a10":  {Product: "NVIDIA-H100"},
			"l4":   {},
			"t4": {
				Product:      "has space",
				NodeSelector: map[string]string{"bad key!": "x", "ok": "bad value!"},
				Tolerations: []KubernetesToleration{
					{Operator: "Equal"},
					{Key: "k", Operator: "Exists", Value: "v"},
					{Key: "k", Operator: "Maybe", Effect: "Sometimes"},
				},
			},
		},
	}
	errs := k.Validate()
	want := map[string]string{
		"kubernetes.kubeconfig":                       "without leading or trailing whitespace",
		"kubernetes.context":                          "must name a context",
		"kubernetes.namespace":                        "DNS-1123 label",
		"kubernetes.gpuLabel":                         "node label key",
		"kubernetes.unavailableAfter":                 "must be a duration",
		"kubernetes.gpus.H100":                        `use "h100"`,
		"kubernetes.gpus.a10.product":                 "same product",
		"kubernetes.gpus.l4.product":                  "required",
		"kubernetes.gpus.t4.product":                  "label value",
		`kubernetes.gpus.t4.nodeSelector["bad key!"]`: "node label key",
		"kubernetes.gpus.t4.nodeSelector.ok":          "label value",
		"kubernetes.gpus.t4.tolerations[0].key":       "required with operator Equal",
		"kubernetes.gpus.t4.tolerations[1].value":     "must be empty with operator Exists",
		"kubernetes.gpus.t4.tolerations[2].operator":  "Equal or Exists",
		"kubernetes.gpus.t4.tolerations[2].effect":    "NoSchedule",
	}
	got := map[string]string{}
	for _, f := range errs {
		if _, dup := got[f.Field]; dup {
			t.Errorf("two errors on %s", f.Field)
		}
		got[f.Field] = f.Reason
	}
	for field, sub := range want {
		if !strings.Contains(got[field], sub) {
			t.Errorf("%s: got %q, want it to contain %q", field, got[field], sub)
		}
	}
	for field, reason := range got {
		if _, ok := want[field]; !ok {
			t.Errorf("unexpected error %s: %s", field, reason)
		}
	}
	for i := 1; i < len(errs); i++ {
		if lessPath(errs[i].Field, errs[i-1].Field) {
			t.Errorf("errors not sorted: %s before %s", errs[i-1].Field, errs[i].Field)
		}
	}
}

func TestKubernetesNodeSelectorGPULabel(t *testing.T) {
	k := KubernetesConfig{GPUs: map[string]KubernetesGPU{"h100": {Product: "H100", NodeSelector: map[string]string{"nvidia.com/gpu.product": "x"}}}}
	errs := k.Validate()
	if len(errs) != 1 || errs[0].Field != `kubernetes.gpus.h100.nodeSelector["nvidia.com/gpu.product"]` || !strings.Contains(errs[0].Reason, "set from product") {
		t.Errorf("errors: %v", errs)
	}
}

func TestKubernetesUnavailableAfterRange(t *testing.T) {
	for _, tc := range []struct {
		v  Duration
		ok bool
	}{{"1s", true}, {"1h", true}, {"500ms", false}, {"2h", false}, {"-5s", false}} {
		k := KubernetesConfig{UnavailableAfter: tc.v}
		if errs := k.Validate(); (len(errs) == 0) != tc.ok {
			t.Errorf("unavailableAfter %q: errors %v, want ok=%v", tc.v, errs, tc.ok)
		}
	}
}

func TestCloudConfigKubernetesJSON(t *testing.T) {
	c := CloudConfig{Name: "k", Provider: ProviderKubernetes, Region: "r", Kubernetes: &KubernetesConfig{Namespace: "ns"}}
	b, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "kubernetes:\n  namespace: ns") {
		t.Errorf("marshalled:\n%s", b)
	}
	var back CloudConfig
	if err := yaml.UnmarshalStrict(b, &back); err != nil || !reflect.DeepEqual(back, c) {
		t.Errorf("round trip: %v %+v", err, back)
	}
}
