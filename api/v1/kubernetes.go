package v1

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// ProviderKubernetes runs replicas as pods of a Kubernetes cluster.
const ProviderKubernetes = "kubernetes"

// Defaults applied by (*KubernetesConfig).Default.
const (
	DefaultKubernetesNamespace        = "default"
	DefaultKubernetesGPULabel         = "nvidia.com/gpu.product"
	DefaultKubernetesUnavailableAfter = Duration("10s")
)

// Limits on KubernetesConfig.UnavailableAfter.
const (
	MinKubernetesUnavailableAfter = time.Second
	MaxKubernetesUnavailableAfter = time.Hour
)

// KubernetesConfig is the kubernetes section of a cloud entry with
// provider: kubernetes. It says which cluster and namespace aloft deploys
// to and how aloft's GPU types map to the cluster's nodes:
//
//	clouds:
//	- name: gke-us
//	  provider: kubernetes
//	  region: us-central1
//	  kubernetes:
//	    kubeconfig: ~/.kube/config       # empty: $KUBECONFIG or ~/.kube/config
//	    context: gke_proj_us-central1_ai # empty: the current context
//	    namespace: aloft                 # default "default"
//	    gpuLabel: nvidia.com/gpu.product # the default
//	    unavailableAfter: 10s            # the default
//	    gpus:
//	      h100:
//	        product: NVIDIA-H100-80GB-HBM3
//	        nodeSelector: {cloud.google.com/gke-accelerator: nvidia-h100-80gb}
//	        tolerations:
//	        - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
type KubernetesConfig struct {
	// Kubeconfig is the path of the kubeconfig file ("~/" is the home
	// directory). Empty: $KUBECONFIG, else ~/.kube/config.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// Context names the kubeconfig context; empty: its current context.
	Context string `json:"context,omitempty"`
	// Namespace receives aloft's Deployments, Services and Secrets.
	Namespace string `json:"namespace,omitempty"`
	// GPULabel is the node label whose value names a node's GPU product.
	GPULabel string `json:"gpuLabel,omitempty"`
	// GPUs maps aloft GPU types ("h100") to the cluster's nodes. A GPU type
	// without an entry cannot run on this cloud.
	GPUs map[string]KubernetesGPU `json:"gpus,omitempty"`
	// UnavailableAfter is how long the API server may go unanswered before
	// the cloud counts as unavailable (default 10s, 1s to 1h).
	UnavailableAfter Duration `json:"unavailableAfter,omitempty"`
}

// KubernetesGPU selects the nodes of one GPU type.
type KubernetesGPU struct {
	// Product is the value of the cloud's gpuLabel on nodes with this GPU,
	// e.g. "NVIDIA-H100-80GB-HBM3".
	Product string `json:"product"`
	// NodeSelector adds further node labels a pod of this GPU type needs.
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// Tolerations let pods of this GPU type onto tainted GPU nodes.
	Tolerations []KubernetesToleration `json:"tolerations,omitempty"`
}

// KubernetesToleration is a pod toleration, as in Kubernetes.
type KubernetesToleration struct {
	Key string `json:"key,omitempty"`
	// Operator is "Equal" (the default) or "Exists".
	Operator string `json:"operator,omitempty"`
	Value    string `json:"value,omitempty"`
	// Effect is "NoSchedule", "PreferNoSchedule", "NoExecute" or empty (all).
	Effect string `json:"effect,omitempty"`
}

// Default fills the unset fields: namespace "default", gpuLabel
// "nvidia.com/gpu.product", unavailableAfter "10s".
func (k *KubernetesConfig) Default() {
	if k.Namespace == "" {
		k.Namespace = DefaultKubernetesNamespace
	}
	if k.GPULabel == "" {
		k.GPULabel = DefaultKubernetesGPULabel
	}
	if k.UnavailableAfter == "" {
		k.UnavailableAfter = DefaultKubernetesUnavailableAfter
	}
	if len(k.GPUs) == 0 {
		k.GPUs = nil
	}
}

// UnavailableAfterDuration returns UnavailableAfter, or the default 10s when
// it is unset or does not parse.
func (k KubernetesConfig) UnavailableAfterDuration() time.Duration {
	if d, err := k.UnavailableAfter.Parse(); err == nil && d > 0 {
		return d
	}
	return DefaultKubernetesUnavailableAfter.Std()
}

// Validate checks the section (unset fields count as their defaults) and
// returns every problem, sorted, with field paths starting at "kubernetes"
// (prefix them with the cloud entry's path, e.g. "clouds[2].").
func (k *KubernetesConfig) Validate() []FieldError {
	var e errList
	k.validate("kubernetes", &e)
	sortFieldErrors(e)
	return e
}

var (
	// labelNameRe is the name part of a Kubernetes label key and a
	// non-empty label value.
	labelNameRe = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
	dnsSubRe    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

const maxLabelName = 63

// labelKeyProblem says why s is not a Kubernetes label key
// ([prefix/]name), or "" when it is one.
func labelKeyProblem(s string) string {
	name := s
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		prefix := s[:i]
		name = s[i+1:]
		if prefix == "" || len(prefix) > 253 || !dnsSubRe.MatchString(prefix) {
			return fmt.Sprintf("the prefix %q must be a DNS subdomain such as \"nvidia.com\"", shorten(prefix))
		}
	}
	if name == "" || len(name) > maxLabelName || !labelNameRe.MatchString(name) {
		return fmt.Sprintf("the name %q must be 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", shorten(name))
	}
	return ""
}

// labelValueOK reports whether s is a valid Kubernetes label value (empty allowed).
func labelValueOK(s string) bool {
	return s == "" || (len(s) <= maxLabelName && labelNameRe.MatchString(s))
}

func (k *KubernetesConfig) validate(p string, e *errList) {
	if k.Kubeconfig != "" && strings.TrimSpace(k.Kubeconfig) != k.Kubeconfig {
		e.add(p+".kubeconfig", "must be a file path without leading or trailing whitespace (got %q)", k.Kubeconfig)
	}
	if k.Context != "" && strings.TrimSpace(k.Context) == "" {
		e.add(p+".context", "must name a context of the kubeconfig or be left out for its current context (got %q)", k.Context)
	}
	if k.Namespace != "" && !IsDNS1123Label(k.Namespace) {
		e.add(p+".namespace", "must be a namespace name (a DNS-1123 label such as \"aloft\"), got %q", k.Namespace)
	}
	if k.GPULabel != "" {
		if why := labelKeyProblem(k.GPULabel); why != "" {
			e.add(p+".gpuLabel", "must be a node label key such as %q: %s", DefaultKubernetesGPULabel, why)
		}
	}
	if k.UnavailableAfter != "" {
		d, err := k.UnavailableAfter.Parse()
		switch {
		case err != nil:
			e.add(p+".unavailableAfter", "must be a duration such as \"10s\" or \"1m\" (got %q)", string(k.UnavailableAfter))
		case d < MinKubernetesUnavailableAfter || d > MaxKubernetesUnavailableAfter:
			e.add(p+".unavailableAfter", "must be between %s and %s (got %s)", MinKubernetesUnavailableAfter, MaxKubernetesUnavailableAfter, string(k.UnavailableAfter))
		}
	}
	products := map[string]string{}
	for _, t := range sortedMapKeys(k.GPUs) {
		g := k.GPUs[t]
		f := childPath(p+".gpus", t)
		if !gpuTypeRe.MatchString(t) {
			hint := "; GPU types are lower-case such as \"h100\""
			if l := strings.ToLower(t); gpuTypeRe.MatchString(l) {
				hint = fmt.Sprintf("; GPU types are lower-case: use %q", l)
			}
			e.add(f, "invalid GPU type %q%s", t, hint)
		}
		switch {
		case g.Product == "":
			e.add(f+".product", "required: the value of the node label %s on nodes with this GPU, e.g. \"NVIDIA-H100-80GB-HBM3\"", k.gpuLabel())
		case !labelValueOK(g.Product):
			e.add(f+".product", "must be a label value (1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit), got %q", g.Product)
		default:
			if other, dup := products[g.Product]; dup {
				e.add(f+".product", "same product %q as gpus.%s; each GPU type needs its own product", g.Product, other)
			} else {
				products[g.Product] = t
			}
		}
		for _, key := range sortedMapKeys(g.NodeSelector) {
			kf := childPath(f+".nodeSelector", key)
			if why := labelKeyProblem(key); why != "" {
				e.add(kf, "must be keyed by a node label key: %s", why)
			} else if !labelValueOK(g.NodeSelector[key]) {
				e.add(kf, "must be a label value (at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit), got %q", g.NodeSelector[key])
			} else if key == k.gpuLabel() {
				e.add(kf, "conflicts with the product: the GPU label %s is set from product; remove it here", key)
			}
		}
		for i, tol := range g.Tolerations {
			tol.validate(fmt.Sprintf("%s.tolerations[%d]", f, i), e)
		}
	}
}

func (k *KubernetesConfig) gpuLabel() string {
	if k.GPULabel == "" {
		return DefaultKubernetesGPULabel
	}
	return k.GPULabel
}

func (t KubernetesToleration) validate(p string, e *errList) {
	switch t.Operator {
	case "", "Equal":
		if t.Key == "" {
			e.add(p+".key", "required with operator Equal; use operator Exists without a key to tolerate every taint")
		}
		if !labelValueOK(t.Value) {
			e.add(p+".value", "must be a label value (at most 63 letters, digits, '-', '_' or '.'), got %q", t.Value)
		}
	case "Exists":
		if t.Value != "" {
			e.add(p+".value", "must be empty with operator Exists (got %q)", t.Value)
		}
	default:
		e.add(p+".operator", "must be Equal or Exists (got %q)", t.Operator)
	}
	if t.Key != "" {
		if why := labelKeyProblem(t.Key); why != "" {
			e.add(p+".key", "must be a taint key such as \"nvidia.com/gpu\": %s", why)
		}
	}
	switch t.Effect {
	case "", "NoSchedule", "PreferNoSchedule", "NoExecute":
	default:
		e.add(p+".effect", "must be NoSchedule, PreferNoSchedule, NoExecute or empty for all effects (got %q)", t.Effect)
	}
}
