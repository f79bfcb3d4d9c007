package v1

// PlanResult is the placement optimizer's dry run for a spec
// (POST /api/v1/plan, aloft plan -f spec.yaml): where its replicas would run
// and why every other candidate was not chosen. Nothing is stored.
type PlanResult struct {
	Deployment string          `json:"deployment"`
	HourlyCost float64         `json:"hourlyCost"`
	Placements []PlanPlacement `json:"placements"`
	Rejected   []PlanRejection `json:"rejected"`
	// Moved counts replicas of the running deployment the plan would move.
	Moved int `json:"moved,omitempty"`
	// Error is set, with Unplaced, when the spec cannot be placed; it names
	// the binding constraint.
	Error    string `json:"error,omitempty"`
	Unplaced int    `json:"unplaced,omitempty"`
}

// PlanPlacement is some replicas on one offering.
type PlanPlacement struct {
	Cloud        string  `json:"cloud"`
	Region       string  `json:"region"`
	Zone         string  `json:"zone,omitempty"`
	InstanceType string  `json:"instanceType"`
	Replicas     int     `json:"replicas"`
	Spot         bool    `json:"spot"`
	HourlyCost   float64 `json:"hourlyCost"`
}

// PlanRejection says why a candidate offering (or a whole cloud, "cloud/*")
// was not used.
type PlanRejection struct {
	Candidate string `json:"candidate"`
	Reason    string `json:"reason"`
}
