package kubernetes

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	v1 "github.com/aloft-dev/aloft/api/v1"
)

func testCloud() v1.CloudConfig {
	return v1.CloudConfig{
		Name: "k8s-a", Provider: v1.ProviderKubernetes, Region: "us-test-1",
		Kubernetes: &v1.KubernetesConfig{
			Namespace: "ai",
			GPUs: map[string]v1.KubernetesGPU{
				"h100": {
					Product:      "NVIDIA-H100-80GB-HBM3",
					NodeSelector: map[string]string{"pool": "gpu"},
					Tolerations:  []v1.KubernetesToleration{{Key: "nvidia.com/gpu", Operator: "Exists", Effect: "NoSchedule"}},
				},
				"a10": {Product: "NVIDIA-A10"},
			},
		},
	}
}

func testSpec() v1.DeploymentSpec {
	s := v1.DeploymentSpec{
		Name: "llm", Image: "ghcr.io/example/llm:1.2", Command: []string{"/serve"}, Args: []string{"--model", "m"},
		Port:      9000,
		Env:       []v1.EnvVar{{Name: "MODE", Value: "fast"}, {Name: "API_KEY", ValueFrom: &v1.EnvSource{Secret: "openai-key"}}},
		Resources: v1.Resources{CPU: "1.5", Memory: "8Gi", GPU: &v1.GPU{Type: "h100", Count: 2}},
		Replicas:  v1.Fixed(3),
		Health:    v1.HealthCheck{Path: "/healthz", PeriodSeconds: 7, TimeoutSeconds: 2, InitialDelaySeconds: 3},
	}
	s.Default()
	return s
}

// decodeRender splits Render's output into its typed objects.
func decodeRender(t *testing.T, b []byte) (*appsv1.Deployment, *corev1.Service) {
	t.Helper()
	var dep *appsv1.Deployment
	var svc *corev1.Service
	r := utilyaml.NewYAMLReader(bufioReader(b))
	for {
		doc, err := r.Read()
		if err != nil {
			break
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		switch meta.Kind {
		case "Deployment":
			dep = &appsv1.Deployment{}
			if err := yaml.UnmarshalStrict(doc, dep); err != nil {
				t.Fatal(err)
			}
		case "Service":
			svc = &corev1.Service{}
			if err := yaml.UnmarshalStrict(doc, svc); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("unexpected document kind %q:\n%s", meta.Kind, doc)
		}
	}
	if dep == nil || svc == nil {
		t.Fatalf("render lacks a Deployment or a Service:\n%s", b)
	}
	return dep, svc
}

func stripComments(b []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line...)
			out = append(out, '\n')
		}
	}
	return out
}

func TestRenderDeployment(t *testing.T) {
	b, err := Render(testSpec(), testCloud(), 4, 3)
	if err != nil {
		t.Fatal(err)
	}
	dep, svc := decodeRender(t, b)

	if dep.APIVersion != "apps/v1" || dep.Name != "llm-r4" || dep.Namespace != "ai" {
		t.Errorf("deployment identity: %s %s/%s", dep.APIVersion, dep.Namespace, dep.Name)
	}
	wantLabels := map[string]string{LabelDeployment: "llm", LabelRevision: "4", LabelManagedBy: "aloft"}
	for _, l := range []map[string]string{dep.Labels, dep.Spec.Selector.MatchLabels, dep.Spec.Template.Labels} {
		if !equalMaps(l, wantLabels) {
			t.Errorf("labels %v, want %v", l, wantLabels)
		}
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 3 {
		t.Errorf("replicas %v", dep.Spec.Replicas)
	}
	ps := dep.Spec.Template.Spec
	if len(ps.Containers) != 1 {
		t.Fatalf("containers: %d", len(ps.Containers))
	}
	c := ps.Containers[0]
	if c.Image != "ghcr.io/example/llm:1.2" || strings.Join(c.Command, " ") != "/serve" || strings.Join(c.Args, " ") != "--model m" {
		t.Errorf("container: image %q command %q args %q", c.Image, c.Command, c.Args)
	}
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != 9000 || c.Ports[0].Name != "http" {
		t.Errorf("ports %+v", c.Ports)
	}
	env := map[string]corev1.EnvVar{}
	var order []string
	for _, e := range c.Env {
		env[e.Name] = e
		order = append(order, e.Name)
	}
	if got := strings.Join(order, ","); got != "MODE,API_KEY,PORT,ALOFT_DEPLOYMENT,ALOFT_REVISION,ALOFT_CLOUD,ALOFT_POD_NAME" {
		t.Errorf("env order %s", got)
	}
	if env["MODE"].Value != "fast" || env["PORT"].Value != "9000" || env["ALOFT_CLOUD"].Value != "k8s-a" || env["ALOFT_REVISION"].Value != "4" {
		t.Errorf("env values %+v", c.Env)
	}
	if ref := env["API_KEY"].ValueFrom; ref == nil || ref.SecretKeyRef == nil || ref.SecretKeyRef.Name != "llm-r4" || ref.SecretKeyRef.Key != "openai-key" || env["API_KEY"].Value != "" {
		t.Errorf("secret env %+v", env["API_KEY"])
	}
	for _, rl := range []corev1.ResourceList{c.Resources.Requests, c.Resources.Limits} {
		if q := rl[corev1.ResourceCPU]; q.Cmp(resource.MustParse("1500m")) != 0 {
			t.Errorf("cpu %s", q.String())
		}
		if q := rl[corev1.ResourceMemory]; q.Cmp(resource.MustParse("8Gi")) != 0 {
			t.Errorf("memory %s", q.String())
		}
		if q := rl["nvidia.com/gpu"]; q.Value() != 2 {
			t.Errorf("gpu %s", q.String())
		}
	}
	p := c.ReadinessProbe
	if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.StrVal != "http" ||
		p.PeriodSeconds != 7 || p.TimeoutSeconds != 2 || p.InitialDelaySeconds != 3 {
		t.Errorf("readiness probe %+v", p)
	}
	if !equalMaps(ps.NodeSelector, map[string]string{"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "pool": "gpu"}) {
		t.Errorf("node selector %v", ps.NodeSelector)
	}
	if len(ps.Tolerations) != 1 || ps.Tolerations[0].Key != "nvidia.com/gpu" || ps.Tolerations[0].Operator != corev1.TolerationOpExists || ps.Tolerations[0].Effect != corev1.TaintEffectNoSchedule {
		t.Errorf("tolerations %+v", ps.Tolerations)
	}
	if ps.EnableServiceLinks == nil || *ps.EnableServiceLinks || ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		t.Errorf("service links / token: %v %v", ps.EnableServiceLinks, ps.AutomountServiceAccountToken)
	}
	if ps.TerminationGracePeriodSeconds != nil {
		t.Errorf("termination grace set: %d (the spec has no grace setting)", *ps.TerminationGracePeriodSeconds)
	}

	if svc.Name != "llm" || svc.Namespace != "ai" || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 9000 || svc.Spec.Ports[0].TargetPort.StrVal != "http" {
		t.Errorf("service %+v", svc)
	}
	if !equalMaps(svc.Spec.Selector, map[string]string{LabelDeployment: "llm", LabelManagedBy: "aloft"}) {
		t.Errorf("service selector %v", svc.Spec.Selector)
	}
	// The secret is named in a comment, its value nowhere.
	if !bytes.Contains(b, []byte("# The pods read secrets from Secret ai/llm-r4, keys: openai-key")) {
		t.Errorf("no secret comment:\n%s", b)
	}
}

func TestRenderMatchesBuild(t *testing.T) {
	spec, cloud := testSpec(), testCloud()
	b, err := Render(spec, cloud, 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := build(spec, cloud, 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	dy, _ := yaml.Marshal(objs.Deployment)
	sy, _ := yaml.Marshal(objs.Service)
	if !bytes.Contains(b, dy) || !bytes.Contains(b, sy) {
		t.Errorf("render differs from the applied objects:\n%s", b)
	}
}

func TestRenderCPUOnlyDefaults(t *testing.T) {
	s := v1.DeploymentSpec{Name: "web", Image: "nginx:1"}
	s.Default()
	b, err := Render(s, v1.CloudConfig{Name: "k", Kubernetes: &v1.KubernetesConfig{}}, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	dep, svc := decodeRender(t, b)
	ps := dep.Spec.Template.Spec
	if dep.Namespace != "default" || len(ps.NodeSelector) != 0 || len(ps.Tolerations) != 0 {
		t.Errorf("namespace %q selector %v tolerations %v", dep.Namespace, ps.NodeSelector, ps.Tolerations)
	}
	c := ps.Containers[0]
	if c.Command != nil || c.Args != nil {
		t.Errorf("command/args set: %q %q", c.Command, c.Args)
	}
	if q := c.Resources.Limits[corev1.ResourceCPU]; q.String() != "500m" {
		t.Errorf("default cpu %s", q.String())
	}
	if q := c.Resources.Limits[corev1.ResourceMemory]; q.String() != "256Mi" {
		t.Errorf("default memory %s", q.String())
	}
	if _, ok := c.Resources.Limits["nvidia.com/gpu"]; ok {
		t.Error("gpu limit on a CPU spec")
	}
	if c.ReadinessProbe.HTTPGet.Path != "/" || svc.Spec.Ports[0].Port != 8080 {
		t.Errorf("probe %q port %d", c.ReadinessProbe.HTTPGet.Path, svc.Spec.Ports[0].Port)
	}
	if bytes.Contains(b, []byte("Secret")) {
		t.Errorf("secret comment without secrets:\n%s", b)
	}
}

func TestRenderErrors(t *testing.T) {
	cloud := testCloud()
	noImage := testSpec()
	noImage.Image = ""
	if _, err := Render(noImage, cloud, 1, 1); !errors.Is(err, errNoImage) {
		t.Errorf("command-only spec: %v", err)
	}
	unmapped := testSpec()
	unmapped.Resources.GPU.Type = "l4"
	_, err := Render(unmapped, cloud, 1, 1)
	var gm *gpuMappingError
	if !errors.As(err, &gm) || !strings.Contains(err.Error(), `GPU type "l4" has no mapping in cloud k8s-a's kubernetes.gpus (configured: a10, h100)`) {
		t.Errorf("unmapped GPU: %v", err)
	}
	badName := testSpec()
	badName.Name = "Bad_Name"
	if _, err := Render(badName, cloud, 1, 1); err == nil {
		t.Error("bad name accepted")
	}
	if _, err := Render(testSpec(), cloud, 1, -1); err == nil {
		t.Error("negative replicas accepted")
	}
}

func TestNames(t *testing.T) {
	if got := ObjectName("llm", 12); got != "llm-r12" {
		t.Errorf("ObjectName %q", got)
	}
	if got := ServiceName("llm"); got != "llm" {
		t.Errorf("ServiceName %q", got)
	}
	if got := ServiceName("7b-chat"); got != "svc-7b-chat" {
		t.Errorf("ServiceName of a digit-led name %q", got)
	}
	long := "9" + strings.Repeat("a", 62)
	got := ServiceName(long)
	if len(got) > 63 || !strings.HasPrefix(got, "svc-9aaa") || ServiceName(long[:62]+"b") == got {
		t.Errorf("ServiceName of a long name %q (%d)", got, len(got))
	}
	if !v1.IsDNS1123Label(got) {
		t.Errorf("%q is not a DNS label", got)
	}
}

func TestSecretValues(t *testing.T) {
	spec := testSpec()
	vals, ok := secretValues(spec, []string{"API_KEY=sk-123=x", "OTHER=1"})
	if !ok || len(vals) != 1 || vals["openai-key"] != "sk-123=x" {
		t.Errorf("values %v ok %v", vals, ok)
	}
	if _, ok := secretValues(spec, nil); ok {
		t.Error("missing value reported complete")
	}
	s := secretObject("llm", 4, "ai", vals)
	if *s.Name != "llm-r4" || *s.Namespace != "ai" || string(s.Data["openai-key"]) != "sk-123=x" || s.Labels[LabelRevision] != "4" {
		t.Errorf("secret %+v", s)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
