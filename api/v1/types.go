// Package v1 holds aloft's public API types: the deployment spec users write,
// the status aloft reports, clouds, events, and the validation rules for all of
// them. It imports nothing else of aloft so clients can depend on it alone.
package v1

import "time"

// DeploymentSpec is what a user asks for. It is stored as given (after
// normalisation) and is the desired state every controller works towards.
type DeploymentSpec struct {
	// Name is a DNS-1123 label: lower-case letters, digits and '-', at most 63.
	Name string `json:"name"`
	// Image is an OCI image reference. Local process clouds cannot run it.
	Image string `json:"image,omitempty"`
	// Command and Args run the replica as a process (or override the image's entrypoint).
	Command []string `json:"command,omitempty"`
	Args    []string `json:"args,omitempty"`
	// Port is the port an image's server listens on (default 8080). A process
	// replica instead listens on the port aloft picks and passes in PORT.
	Port      int          `json:"port,omitempty"`
	Env       []EnvVar     `json:"env,omitempty"`
	Resources Resources    `json:"resources,omitempty"`
	Replicas  Replicas     `json:"replicas"`
	Placement Placement    `json:"placement,omitempty"`
	Health    HealthCheck  `json:"health,omitempty"`
	Access    AccessPolicy `json:"access,omitempty"`
	// Autoscale sizes the deployment within replicas {min, max}; nil uses
	// the defaults for a range and does nothing for a fixed count.
	Autoscale *Autoscale `json:"autoscale,omitempty"`
}

// EnvVar is one environment variable given to every replica: a literal
// value, or a secret's value resolved when the replica starts.
type EnvVar struct {
	Name      string     `json:"name"`
	Value     string     `json:"value,omitempty"`
	ValueFrom *EnvSource `json:"valueFrom,omitempty"`
}

// EnvSource names where an env value comes from.
type EnvSource struct {
	// Secret is the name of a secret in the deployment's workspace.
	Secret string `json:"secret"`
}

// Resources is what one replica needs. Either a named Shape or explicit
// CPU/Memory/GPU; a shape fills in the explicit fields.
type Resources struct {
	// CPU in cores, as a decimal string or number ("0.5", "2").
	CPU string `json:"cpu,omitempty"`
	// Memory as a quantity such as "512Mi" or "2Gi".
	Memory string `json:"memory,omitempty"`
	GPU    *GPU   `json:"gpu,omitempty"`
	// Shape names a resource shape such as "cpu.small" or "gpu.a10".
	Shape string `json:"shape,omitempty"`
}

// GPU asks for Count accelerators of Type (e.g. "a10", "h100").
type GPU struct {
	Type  string `json:"type"`
	Count int    `json:"count"`
}

// Replicas is either a fixed count or a {min, max} range for autoscaling.
// In JSON/YAML it is written as a number or as an object.
type Replicas struct {
	Min int `json:"min"`
	Max int `json:"max"`
}

// Placement constrains where replicas may run.
type Placement struct {
	Clouds  []string `json:"clouds,omitempty"`
	Regions []string `json:"regions,omitempty"`
	// Labels a cloud must carry, e.g. {"jurisdiction": "eu"}.
	Labels map[string]string `json:"labels,omitempty"`
	Spread Spread            `json:"spread,omitempty"`
	// MaxHourlyCost caps the price of one replica-hour in USD; 0 means no cap.
	MaxHourlyCost float64 `json:"maxHourlyCost,omitempty"`
	// Budget caps the hourly cost of all the deployment's replicas together
	// in USD; 0 means no cap.
	Budget float64 `json:"budget,omitempty"`
	// Spot allows spot (preemptible) instances; nil means on-demand only.
	Spot *SpotPolicy `json:"spot,omitempty"`
	// Traffic weighs where requests come from, by region (e.g.
	// {"us-east-1": 3, "eu-west-1": 1}); replicas far from the traffic pay
	// a latency penalty in placement. Empty: latency does not matter.
	Traffic map[string]float64 `json:"traffic,omitempty"`
}

// Spread asks for replicas in at least MinClouds distinct clouds and at most
// MaxPerCloud (0: no limit) in any one cloud.
type Spread struct {
	MinClouds   int `json:"minClouds,omitempty"`
	MaxPerCloud int `json:"maxPerCloud,omitempty"`
}

// SpotPolicy says whether replicas may run on spot instances.
type SpotPolicy struct {
	Allowed bool `json:"allowed"`
	// OnDemandBase replicas always run on-demand; only those above it may be spot.
	OnDemandBase int `json:"onDemandBase,omitempty"`
}

// HealthCheck is the HTTP readiness probe for replicas.
type HealthCheck struct {
	Path                string `json:"path,omitempty"`
	PeriodSeconds       int    `json:"periodSeconds,omitempty"`
	TimeoutSeconds      int    `json:"timeoutSeconds,omitempty"`
	InitialDelaySeconds int    `json:"initialDelaySeconds,omitempty"`
}

// AccessPolicy says who may call the deployment through the gateway.
type AccessPolicy struct {
	// Public: anyone who reaches the gateway (default). When false, a request
	// needs one of the deployment's endpoint tokens (Authorization: Bearer).
	Public *bool `json:"public,omitempty"`
	// AllowCIDRs, when set, admits only clients whose address is in one of them.
	AllowCIDRs []string `json:"allowCIDRs,omitempty"`
}

// Deployment is a spec with its status, as the API returns it.
type Deployment struct {
	Name      string           `json:"name"`
	Workspace string           `json:"workspace"`
	Spec      DeploymentSpec   `json:"spec"`
	Revision  int64            `json:"revision"`
	CreatedAt time.Time        `json:"createdAt"`
	UpdatedAt time.Time        `json:"updatedAt"`
	Status    DeploymentStatus `json:"status"`
}

// Phase is the deployment's overall state.
type Phase string

const (
	PhasePending     Phase = "Pending"     // nothing ready yet
	PhaseProgressing Phase = "Progressing" // some replicas ready, or a rollout running
	PhaseReady       Phase = "Ready"       // all desired replicas of the current revision ready
	PhaseFailed      Phase = "Failed"      // cannot be placed or keeps failing
	PhaseDeleting    Phase = "Deleting"    // deletion requested, replicas draining
)

// DeploymentStatus is observed state, written by the controller.
type DeploymentStatus struct {
	Phase           Phase           `json:"phase"`
	DesiredReplicas int             `json:"desiredReplicas"`
	ReadyReplicas   int             `json:"readyReplicas"`
	Replicas        []ReplicaStatus `json:"replicas"`
	Conditions      []Condition     `json:"conditions"`
	// HourlyCost is the summed price of all replicas that are running now.
	HourlyCost float64 `json:"hourlyCost"`
}

// ReplicaState is the lifecycle state of one replica.
type ReplicaState string

const (
	ReplicaPending  ReplicaState = "Pending"  // placed, not started yet
	ReplicaStarting ReplicaState = "Starting" // process running, not ready yet
	ReplicaReady    ReplicaState = "Ready"    // passing its health check, receives traffic
	ReplicaBackOff  ReplicaState = "BackOff"  // crashed, waiting to restart
	ReplicaDraining ReplicaState = "Draining" // no new traffic, finishing in-flight requests
	ReplicaFailed   ReplicaState = "Failed"   // gone for good; will be replaced
)

// ReplicaStatus is one replica as users see it.
type ReplicaStatus struct {
	ID       string `json:"id"`
	Revision int64  `json:"revision"`
	Cloud    string `json:"cloud"`
	Region   string `json:"region"`
	// Zone, InstanceType and Spot are set on clouds with a catalog.
	Zone         string       `json:"zone,omitempty"`
	InstanceType string       `json:"instanceType,omitempty"`
	Spot         bool         `json:"spot,omitempty"`
	State        ReplicaState `json:"state"`
	Endpoint     string       `json:"endpoint,omitempty"`
	StartedAt    *time.Time   `json:"startedAt,omitempty"`
	Restarts     int          `json:"restarts"`
	HourlyCost   float64      `json:"hourlyCost"`
	Message      string       `json:"message,omitempty"`
}

// Condition is a named fact about a deployment, with the reason it holds.
type Condition struct {
	Type               string    `json:"type"`
	Status             string    `json:"status"` // "True" or "False"
	Reason             string    `json:"reason,omitempty"`
	Message            string    `json:"message,omitempty"`
	LastTransitionTime time.Time `json:"lastTransitionTime"`
}

// Condition types.
const (
	ConditionAvailable   = "Available"       // at least one replica ready
	ConditionPlaced      = "Placed"          // every desired replica has a cloud
	ConditionRolledOut   = "RolledOut"       // every ready replica is of the current revision
	ConditionUnsupported = "Unsupported"     // no cloud can run this kind of workload
	ConditionSecrets     = "SecretsResolved" // every referenced secret exists
)

// Event records one decision or observation of a controller.
type Event struct {
	ID         int64     `json:"id"`
	Time       time.Time `json:"time"`
	Deployment string    `json:"deployment"`
	Type       string    `json:"type"` // "Normal" or "Warning"
	Reason     string    `json:"reason"`
	Message    string    `json:"message"`
}

// Revision is one stored version of a deployment's spec.
type Revision struct {
	Revision  int64          `json:"revision"`
	Spec      DeploymentSpec `json:"spec"`
	CreatedAt time.Time      `json:"createdAt"`
}

// Cloud is a place replicas can run, as configured plus its live state.
type Cloud struct {
	Name     string            `json:"name"`
	Provider string            `json:"provider"` // "local" for now
	Region   string            `json:"region"`
	Labels   map[string]string `json:"labels,omitempty"`
	Capacity Capacity          `json:"capacity"`
	Prices   Prices            `json:"prices"`
	// Quota caps the replicas the cloud runs (from the clouds file).
	Quota *CloudQuota `json:"quota,omitempty"`
	// Runtimes the cloud can run: "process", later "oci".
	Runtimes []string `json:"runtimes,omitempty"`
	// State is live: Cordoned (no new replicas), Failed (replicas evicted).
	Cordoned bool `json:"cordoned"`
	Failed   bool `json:"failed"`
	// Unreachable says why the cloud does not answer now (its API server
	// is down); empty while it answers.
	Unreachable string   `json:"unreachable,omitempty"`
	Used        Capacity `json:"used"`
}

// Capacity is the total resources a cloud offers (or uses).
type Capacity struct {
	CPU    float64        `json:"cpu"`
	Memory string         `json:"memory"`
	GPUs   map[string]int `json:"gpus,omitempty"`
}

// Prices are per replica-hour in USD. A named shape's price wins; otherwise a
// replica costs CPU*cores + MemoryGiB*GiB + GPU[type]*count.
type Prices struct {
	Shapes    map[string]float64 `json:"shapes,omitempty"`
	CPU       float64            `json:"cpu,omitempty"`
	MemoryGiB float64            `json:"memoryGiB,omitempty"`
	GPU       map[string]float64 `json:"gpu,omitempty"`
}

// CloudsFile is the --clouds YAML document.
type CloudsFile struct {
	Clouds []CloudConfig `json:"clouds"`
}

// CloudConfig is one cloud entry in the clouds file.
type CloudConfig struct {
	Name     string            `json:"name"`
	Provider string            `json:"provider"`
	Region   string            `json:"region"`
	Labels   map[string]string `json:"labels,omitempty"`
	Capacity Capacity          `json:"capacity"`
	Prices   Prices            `json:"prices"`
	// Catalog names an imported price catalog (aloft catalog import FILE
	// --cloud NAME). With one, the cloud offers the catalog's instance types
	// in the catalog's regions at its on-demand and spot prices, and
	// placement picks region, instance type and purchase option; Capacity
	// and Prices then do not apply. Empty: the cloud is one offering in
	// Region, priced by Prices within Capacity.
	Catalog string `json:"catalog,omitempty"`
	// Regions limits a catalog cloud to these regions (empty: all of the catalog's).
	Regions []string `json:"regions,omitempty"`
	// SpotInterruptionsPerHour is the expected interruption rate of this
	// cloud's spot instances, for placement's spot risk (default 0.05).
	SpotInterruptionsPerHour float64 `json:"spotInterruptionsPerHour,omitempty"`
	// Kubernetes configures a cloud with provider: kubernetes.
	Kubernetes *KubernetesConfig `json:"kubernetes,omitempty"`
	// Quota caps how many instances (replicas, of all deployments
	// together) the cloud, or one region of it, runs at a time, the way
	// AWS and GCP quotas cap running instances per region; nil: no cap.
	Quota *CloudQuota `json:"quota,omitempty"`
}

// ErrorResponse is the JSON body of every non-2xx API answer.
type ErrorResponse struct {
	Error  string       `json:"error"`
	Fields []FieldError `json:"fields,omitempty"`
}

// FieldError names the field path that is wrong, why, and how to fix it.
type FieldError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}
