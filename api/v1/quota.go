package v1

import "slices"

// CloudQuota caps the replicas a cloud runs, all deployments together:
// in the whole cloud, and in single regions of it (both apply). In a
// clouds file: quota: {replicas: 100, regions: {us-east-1: 20}}.
type CloudQuota struct {
	// Replicas caps the whole cloud; nil: no cap but the regions'.
	Replicas *int `json:"replicas,omitempty"`
	// Regions caps single regions (a region not listed: no cap of its own).
	Regions map[string]int `json:"regions,omitempty"`
}

// validate checks q (nil: nothing to check) of cloud c at path p.
func (q *CloudQuota) validate(p string, c CloudConfig, e *errList) {
	if q == nil {
		return
	}
	if q.Replicas != nil && *q.Replicas < 0 {
		e.add(p+".replicas", "must be a whole number of replicas >= 0 (got %d)", *q.Replicas)
	}
	for _, r := range sortedMapKeys(q.Regions) {
		f := childPath(p+".regions", r)
		switch {
		case r == "" || hasSpace(r):
			e.add(f, "must be a region name without whitespace, got %q", r)
			continue
		case c.Catalog == "" && c.Region != "" && r != c.Region:
			e.add(f, "the cloud runs only in its region %q; cap it with quota.replicas or name that region", c.Region)
		case c.Catalog != "" && len(c.Regions) > 0 && !slices.Contains(c.Regions, r):
			e.add(f, "not one of the cloud's regions (%v)", c.Regions)
		}
		if n := q.Regions[r]; n < 0 {
			e.add(f, "must be a whole number of replicas >= 0 (got %d)", n)
		}
	}
}
