package placement

import v1 "github.com/aloft-dev/aloft/api/v1"

// This file is the optimizer's contract: a Problem (every deployment's
// demand and every offering with its capacity) goes in, a Plan (how many
// replicas of each deployment run on which offering, what it costs, and why
// every other candidate was not chosen) comes out. Optimize is pure.

// Offering is one way to run one replica: a cloud, region, zone, instance
// type and purchase option (on-demand or spot), with its hourly price and how
// many more instances the cloud can take now.
type Offering struct {
	// ID is unique within a Problem, e.g. "aws/us-east-1/use1-az1/g5.xlarge/spot".
	ID           string
	Cloud        string
	Region       string
	Zone         string // may be empty
	InstanceType string
	// Labels of the cloud (e.g. jurisdiction: eu), matched by placement.labels.
	Labels map[string]string
	// Runtimes the cloud runs ("process", "oci").
	Runtimes []string
	// Accelerator is the GPU model in SkyPilot's naming (e.g. "H100",
	// "A100-80GB"), empty for CPU-only; matched case-insensitively against the
	// request's GPU type.
	Accelerator      string
	AcceleratorCount int
	VCPUs            float64
	MemoryGiB        float64
	Spot             bool
	// Price is USD per hour for one instance at this purchase option.
	Price float64
	// InterruptionsPerHour is the expected spot interruption rate (0 for on-demand).
	InterruptionsPerHour float64
	// Capacity is how many more instances this offering can take now; < 0 means unlimited.
	Capacity int
	// Unavailable, when set, says why the offering cannot be used now (cloud
	// cordoned or failed, capacity block after a provider error, ...); it is
	// reported as the rejection reason.
	Unavailable string
}

// Running is a replica of a deployment that runs now on an offering.
type Running struct {
	OfferingID string
	Count      int
}

// Demand is one deployment's need.
type Demand struct {
	Deployment string
	// Replicas is the total number the deployment should run after the plan.
	Replicas  int
	Runtime   string // "process" or "oci"
	Resources v1.ResourceRequest
	Placement v1.Placement
	// Current replicas (they keep their offering unless moving pays off by
	// more than the churn penalty; their capacity is already taken, so an
	// offering's Capacity does not count them).
	Current []Running
}

// Weights turn the objective's terms into USD per hour. The zero value means
// DefaultWeights.
type Weights struct {
	// LatencyUSDPerMs is charged per replica-hour for each millisecond of
	// traffic-weighted RTT between the deployment's traffic regions and the
	// replica's region.
	LatencyUSDPerMs float64
	// ChurnUSD is charged, per hour of the plan's horizon, for each current
	// replica moved off its offering.
	ChurnUSD float64
	// SpotRiskUSD is charged per expected spot interruption per hour.
	SpotRiskUSD float64
}

// DefaultWeights: 1 ms of weighted RTT costs $0.0005 per replica-hour, moving
// a running replica costs as much as $0.50/h, a spot interruption $0.25.
var DefaultWeights = Weights{LatencyUSDPerMs: 0.0005, ChurnUSD: 0.50, SpotRiskUSD: 0.25}

// Quota limits how many more instances (replicas) all deployments together
// may start in a cloud, or in one region of it, across all its offerings
// (the way AWS and GCP quotas cap running instances per region). Like
// Capacity it counts only new replicas: the ones running now are already
// counted out of Limit, and keeping them needs no quota.
type Quota struct {
	Cloud string
	// Region limits the quota to one region of the cloud; "" is the whole
	// cloud. A region quota and its cloud's quota both apply.
	Region string
	// Limit is how many more new replicas may start in the scope (< 0
	// counts as 0). Two quotas on the same scope: the smaller applies.
	Limit int
}

// Problem is the whole input of Optimize.
type Problem struct {
	Demands   []Demand
	Offerings []Offering
	// Quotas shared by all demands; a quota naming no offering's cloud (and
	// region) limits nothing.
	Quotas []Quota
	// RTTms gives the round-trip time in ms between two regions (in either
	// order); missing pairs count as 0 when equal regions and as
	// DefaultRTTms otherwise.
	RTTms   map[[2]string]float64
	Weights Weights
}

// DefaultRTTms is the RTT assumed between two regions with no entry in Problem.RTTms.
const DefaultRTTms = 100

// Assignment is some replicas of one deployment on one offering.
type Assignment struct {
	OfferingID   string  `json:"offering"`
	Cloud        string  `json:"cloud"`
	Region       string  `json:"region"`
	Zone         string  `json:"zone,omitempty"`
	InstanceType string  `json:"instanceType"`
	Spot         bool    `json:"spot"`
	Replicas     int     `json:"replicas"`
	HourlyCost   float64 `json:"hourlyCost"` // Replicas x Price
}

// CandidateRejection says why an offering was not used for a deployment.
type CandidateRejection struct {
	Candidate string `json:"candidate"` // offering ID, or a group such as "aws/*" when a whole cloud is out
	Reason    string `json:"reason"`
}

// DeploymentPlan is the outcome for one Demand.
type DeploymentPlan struct {
	Deployment string               `json:"deployment"`
	Placements []Assignment         `json:"placements"`
	HourlyCost float64              `json:"hourlyCost"`
	Objective  float64              `json:"objective"` // cost + latency + churn + risk, USD/h
	Moved      int                  `json:"moved"`     // current replicas moved to another offering
	Rejected   []CandidateRejection `json:"rejected,omitempty"`
	// Infeasible is set when the demand cannot be met; it names the binding
	// constraint (e.g. "spread.minClouds=3 but only 2 clouds have a fitting
	// offering"). Placements then hold what could be placed, if anything.
	Infeasible string `json:"infeasible,omitempty"`
	// Unplaced replicas of an infeasible demand.
	Unplaced int `json:"unplaced,omitempty"`
}

// Plan is the outcome of Optimize, in the order of Problem.Demands.
type Plan struct {
	Deployments []DeploymentPlan `json:"deployments"`
	HourlyCost  float64          `json:"hourlyCost"`
	Objective   float64          `json:"objective"`
}
