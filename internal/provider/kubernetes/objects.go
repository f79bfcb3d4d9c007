package kubernetes

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"sigs.k8s.io/yaml"

	v1 "github.com/aloft-dev/aloft/api/v1"
)

// Labels and annotations aloft sets.
const (
	LabelDeployment = "aloft.dev/deployment"
	LabelRevision   = "aloft.dev/revision"
	LabelManagedBy  = "aloft.dev/managed-by"
	ManagedByValue  = "aloft"
	// AnnotationReplica on a pod names the aloft replica it runs.
	AnnotationReplica = "aloft.dev/replica"
	// AnnotationDeletionCost is Kubernetes' hint to the ReplicaSet
	// controller about which pod to remove first on a scale-down.
	AnnotationDeletionCost = "controller.kubernetes.io/pod-deletion-cost"
	// stopCost marks a pod aloft wants removed by the next scale-down.
	stopCost = "-1000000"
)

// Field managers of aloft's writes.
const (
	// FieldManager owns every field aloft applies (Deployment, Service, Secret).
	FieldManager = "aloft"
	// BinderFieldManager owns the replica and deletion-cost annotations on pods.
	BinderFieldManager = "aloft-binder"
)

// Container, port and resource names in the objects aloft builds.
const (
	containerName = "app"
	portName      = "http"
	resourceGPU   = corev1.ResourceName("nvidia.com/gpu")
)

// managedSelector selects everything aloft manages in its namespace.
var managedSelector = LabelManagedBy + "=" + ManagedByValue

// ObjectName is the name of the Deployment (and Secret) of one revision of
// an aloft deployment: "<deployment>-r<revision>".
func ObjectName(deployment string, revision int64) string {
	return deployment + "-r" + strconv.FormatInt(revision, 10)
}

// ServiceName is the name of the Service of an aloft deployment: the
// deployment's name when it is a valid Service name (a DNS-1035 label,
// which starts with a letter), else "svc-" + the name, shortened with a
// hash suffix to fit 63 characters.
func ServiceName(deployment string) string {
	if deployment != "" && deployment[0] >= 'a' && deployment[0] <= 'z' {
		return deployment
	}
	n := "svc-" + deployment
	if len(n) <= v1.MaxNameLength {
		return n
	}
	sum := sha256.Sum256([]byte(deployment))
	return strings.TrimRight(n[:v1.MaxNameLength-9], "-") + "-" + hex.EncodeToString(sum[:4])
}

// objectLabels are the labels of a revision's Deployment, Secret and pods.
func objectLabels(deployment string, revision int64) map[string]string {
	return map[string]string{
		LabelDeployment: deployment,
		LabelRevision:   strconv.FormatInt(revision, 10),
		LabelManagedBy:  ManagedByValue,
	}
}

// objectSelector selects a revision's objects by label.
func objectSelector(deployment string, revision int64) string {
	return fmt.Sprintf("%s=%s,%s=%s,%s=%s", LabelManagedBy, ManagedByValue, LabelDeployment, deployment, LabelRevision, strconv.FormatInt(revision, 10))
}

// deploymentSelector selects all of an aloft deployment's objects by label.
func deploymentSelector(deployment string) string {
	return fmt.Sprintf("%s=%s,%s=%s", LabelManagedBy, ManagedByValue, LabelDeployment, deployment)
}

// objects is what aloft applies for one revision on one cloud.
type objects struct {
	Deployment *appsv1ac.DeploymentApplyConfiguration
	Service    *corev1ac.ServiceApplyConfiguration
	// SecretName names the Secret the pods read referenced secrets from,
	// and SecretKeys its keys (the aloft secret names), sorted; both empty
	// when the spec references no secret.
	SecretName string
	SecretKeys []string
}

// errNoImage is returned for a spec a Kubernetes cloud cannot run.
var errNoImage = errors.New("a kubernetes cloud runs images only: set image (a spec with only command needs a local cloud)")

// gpuMappingError says that a GPU type has no mapping in the cloud config.
type gpuMappingError struct {
	cloud, gpu string
	known      []string
}

func (e *gpuMappingError) Error() string {
	known := "none are configured"
	if len(e.known) > 0 {
		known = "configured: " + strings.Join(e.known, ", ")
	}
	return fmt.Sprintf("GPU type %q has no mapping in cloud %s's kubernetes.gpus (%s)", e.gpu, e.cloud, known)
}

// defaulted returns the cloud's kubernetes section with defaults applied
// (a copy; the caller's config is not changed).
func defaulted(cloud v1.CloudConfig) v1.KubernetesConfig {
	var k v1.KubernetesConfig
	if cloud.Kubernetes != nil {
		k = *cloud.Kubernetes
	}
	k.Default()
	return k
}

// build returns the objects of one revision with the given replica count.
// It is the only place objects are made: Render prints its result and the
// provider applies it, so the two cannot differ.
func build(spec v1.DeploymentSpec, cloud v1.CloudConfig, revision int64, replicas int) (objects, error) {
	k := defaulted(cloud)
	name := spec.Name
	if !v1.IsDNS1123Label(name) {
		return objects{}, fmt.Errorf("deployment name %q is not a DNS-1123 label", name)
	}
	if revision < 0 {
		return objects{}, fmt.Errorf("revision %d is negative", revision)
	}
	if replicas < 0 || replicas > math.MaxInt32 {
		return objects{}, fmt.Errorf("replica count %d out of range", replicas)
	}
	if spec.Image == "" {
		return objects{}, fmt.Errorf("deployment %q: %w", name, errNoImage)
	}
	port := spec.Port
	if port == 0 {
		port = v1.DefaultPort
	}
	if port < 1 || port > 65535 {
		return objects{}, fmt.Errorf("deployment %q: port %d out of range", name, port)
	}
	req, err := spec.Resources.Normalized()
	if err != nil {
		return objects{}, fmt.Errorf("deployment %q: resources: %w", name, err)
	}
	var gpu *v1.KubernetesGPU
	if req.GPUCount > 0 {
		g, ok := k.GPUs[req.GPUType]
		if !ok {
			known := make([]string, 0, len(k.GPUs))
			for t := range k.GPUs {
				known = append(known, t)
			}
			slices.Sort(known)
			return objects{}, &gpuMappingError{cloud: cloud.Name, gpu: req.GPUType, known: known}
		}
		gpu = &g
	}

	objName := ObjectName(name, revision)
	labels := objectLabels(name, revision)
	out := objects{}

	// Environment: the spec's (secrets by reference), then PORT and aloft's.
	var env []*corev1ac.EnvVarApplyConfiguration
	keys := map[string]bool{}
	for _, e := range spec.Env {
		ev := corev1ac.EnvVar().WithName(e.Name)
		if e.ValueFrom != nil {
			keys[e.ValueFrom.Secret] = true
			ev.WithValueFrom(corev1ac.EnvVarSource().WithSecretKeyRef(
				corev1ac.SecretKeySelector().WithName(objName).WithKey(e.ValueFrom.Secret)))
		} else {
			ev.WithValue(e.Value)
		}
		env = append(env, ev)
	}
	if len(keys) > 0 {
		out.SecretName = objName
		for key := range keys {
			out.SecretKeys = append(out.SecretKeys, key)
		}
		slices.Sort(out.SecretKeys)
	}
	env = append(env,
		corev1ac.EnvVar().WithName(v1.ReservedEnvPort).WithValue(strconv.Itoa(port)),
		corev1ac.EnvVar().WithName("ALOFT_DEPLOYMENT").WithValue(name),
		corev1ac.EnvVar().WithName("ALOFT_REVISION").WithValue(strconv.FormatInt(revision, 10)),
		corev1ac.EnvVar().WithName("ALOFT_CLOUD").WithValue(cloud.Name),
		corev1ac.EnvVar().WithName("ALOFT_POD_NAME").WithValueFrom(corev1ac.EnvVarSource().WithFieldRef(
			corev1ac.ObjectFieldSelector().WithFieldPath("metadata.name"))),
	)

	res := corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewMilliQuantity(int64(math.Ceil(req.CPU*1000)), resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(req.MemoryBytes, resource.BinarySI),
	}
	if req.GPUCount > 0 {
		res[resourceGPU] = *resource.NewQuantity(int64(req.GPUCount), resource.DecimalSI)
	}

	h := spec.Health
	path := h.Path
	if path == "" {
		path = v1.DefaultHealthPath
	}
	probe := corev1ac.Probe().
		WithHTTPGet(corev1ac.HTTPGetAction().WithPath(path).WithPort(intstr.FromString(portName))).
		WithPeriodSeconds(int32(orDefault(h.PeriodSeconds, v1.DefaultHealthPeriodSeconds))).
		WithTimeoutSeconds(int32(orDefault(h.TimeoutSeconds, v1.DefaultHealthTimeoutSeconds)))
	if h.InitialDelaySeconds > 0 {
		probe.WithInitialDelaySeconds(int32(h.InitialDelaySeconds))
	}

	c := corev1ac.Container().
		WithName(containerName).
		WithImage(spec.Image).
		WithPorts(corev1ac.ContainerPort().WithName(portName).WithContainerPort(int32(port)).WithProtocol(corev1.ProtocolTCP)).
		WithEnv(env...).
		WithResources(corev1ac.ResourceRequirements().WithRequests(res).WithLimits(res)).
		WithReadinessProbe(probe)
	if len(spec.Command) > 0 {
		c.WithCommand(spec.Command...)
	}
	if len(spec.Args) > 0 {
		c.WithArgs(spec.Args...)
	}

	pod := corev1ac.PodSpec().
		WithContainers(c).
		WithEnableServiceLinks(false).
		WithAutomountServiceAccountToken(false)
	if gpu != nil {
		sel := map[string]string{}
		for key, val := range gpu.NodeSelector {
			sel[key] = val
		}
		sel[k.GPULabel] = gpu.Product
		pod.WithNodeSelector(sel)
		for _, t := range gpu.Tolerations {
			tol := corev1ac.Toleration()
			if t.Key != "" {
				tol.WithKey(t.Key)
			}
			if t.Operator != "" {
				tol.WithOperator(corev1.TolerationOperator(t.Operator))
			}
			if t.Value != "" {
				tol.WithValue(t.Value)
			}
			if t.Effect != "" {
				tol.WithEffect(corev1.TaintEffect(t.Effect))
			}
			pod.WithTolerations(tol)
		}
	}

	out.Deployment = appsv1ac.Deployment(objName, k.Namespace).
		WithLabels(labels).
		WithSpec(appsv1ac.DeploymentSpec().
			WithReplicas(int32(replicas)).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(labels)).
			WithTemplate(corev1ac.PodTemplateSpec().
				WithLabels(labels).
				WithSpec(pod)))

	out.Service = corev1ac.Service(ServiceName(name), k.Namespace).
		WithLabels(map[string]string{LabelDeployment: name, LabelManagedBy: ManagedByValue}).
		WithSpec(corev1ac.ServiceSpec().
			WithSelector(map[string]string{LabelDeployment: name, LabelManagedBy: ManagedByValue}).
			WithPorts(corev1ac.ServicePort().
				WithName(portName).
				WithProtocol(corev1.ProtocolTCP).
				WithPort(int32(port)).
				WithTargetPort(intstr.FromString(portName))))
	return out, nil
}

func orDefault(v, d int) int {
	if v == 0 {
		return d
	}
	return v
}

// secretObject is the Secret holding the values of the secrets a revision
// references, keyed by aloft secret name.
func secretObject(deployment string, revision int64, namespace string, values map[string]string) *corev1ac.SecretApplyConfiguration {
	data := make(map[string][]byte, len(values))
	for k, v := range values {
		data[k] = []byte(v)
	}
	return corev1ac.Secret(ObjectName(deployment, revision), namespace).
		WithLabels(objectLabels(deployment, revision)).
		WithType(corev1.SecretTypeOpaque).
		WithData(data)
}

// secretValues picks the values of the secrets spec references from env
// (NAME=value, as the controller resolves them). ok is false when a value
// is missing.
func secretValues(spec v1.DeploymentSpec, env []string) (values map[string]string, ok bool) {
	byName := map[string]string{}
	for _, kv := range env {
		if k, v, found := strings.Cut(kv, "="); found {
			byName[k] = v
		}
	}
	values = map[string]string{}
	ok = true
	for _, e := range spec.Env {
		if e.ValueFrom == nil {
			continue
		}
		v, found := byName[e.Name]
		if !found {
			ok = false
			continue
		}
		values[e.ValueFrom.Secret] = v
	}
	return values, ok
}

// Render returns the manifests aloft applies for revision of spec on cloud
// with the given replica count: the Deployment and the Service as a
// multi-document YAML stream for `kubectl apply --server-side
// --field-manager=aloft -f -`. It reads no cluster. Secret values are not
// rendered: when the spec references secrets, a comment names the Secret
// and the keys the Deployment reads, which must exist before its pods
// start.
func Render(spec v1.DeploymentSpec, cloud v1.CloudConfig, revision int64, replicas int) ([]byte, error) {
	objs, err := build(spec, cloud, revision, replicas)
	if err != nil {
		return nil, err
	}
	k := defaulted(cloud)
	var b bytes.Buffer
	fmt.Fprintf(&b, "# aloft deployment %s, revision %d, on cloud %s (namespace %s): %d replica(s)\n", spec.Name, revision, cloud.Name, k.Namespace, replicas)
	if objs.SecretName != "" {
		fmt.Fprintf(&b, "# The pods read secrets from Secret %s/%s, keys: %s. aloft creates it with the\n", k.Namespace, objs.SecretName, strings.Join(objs.SecretKeys, ", "))
		fmt.Fprintf(&b, "# values it holds; to apply these manifests without aloft, create it first:\n")
		fmt.Fprintf(&b, "#   kubectl -n %s create secret generic %s", k.Namespace, objs.SecretName)
		for _, key := range objs.SecretKeys {
			fmt.Fprintf(&b, " --from-literal=%s=...", key)
		}
		b.WriteString("\n")
	}
	for _, o := range []any{objs.Deployment, objs.Service} {
		y, err := yaml.Marshal(o)
		if err != nil {
			return nil, err
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	return b.Bytes(), nil
}
