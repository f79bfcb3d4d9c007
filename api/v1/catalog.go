package v1

import "time"

// Offering is one entry of a cloud price catalog (GET /api/v1/offerings):
// an instance type with its accelerators in one region and zone, at the
// catalog's list prices. Catalogs are shared by every workspace.
type Offering struct {
	Cloud  string `json:"cloud"`
	Region string `json:"region"`
	// Zone is the availability zone where the catalog has one, else "".
	Zone string `json:"zone"`
	// InstanceType is the provider's type name. GCP prices accelerators apart
	// from their VM; such an offering is named "<accelerator>-<count>x"
	// (e.g. "H100-8x"), has no vCPUs or memory, and its price excludes the VM.
	InstanceType string `json:"instanceType"`
	// Accelerator is SkyPilot's accelerator name ("H100", "A100-80GB",
	// "tpu-v2-8"); "" for CPU-only types.
	Accelerator      string  `json:"accelerator"`
	AcceleratorCount float64 `json:"acceleratorCount"`
	VCPUs            float64 `json:"vcpus"`
	MemoryGiB        float64 `json:"memoryGiB"`
	// GPUMemoryMiB is the memory of one GPU; 0 if the catalog does not say.
	GPUMemoryMiB int64 `json:"gpuMemoryMiB"`
	// Price is the on-demand price in USD per hour; 0 when not offered on-demand.
	Price float64 `json:"price"`
	// SpotPrice is the spot price in USD per hour; 0 when there is none.
	SpotPrice float64 `json:"spotPrice"`
	// Arch is the CPU architecture where the catalog says (aws), else "".
	Arch string `json:"arch,omitempty"`
}

// CatalogImport is the answer to POST /api/v1/catalogs/{cloud}.
type CatalogImport struct {
	Cloud      string    `json:"cloud"`
	ImportedAt time.Time `json:"importedAt"`
	// Rows is the number of data rows in the file.
	Rows      int `json:"rows"`
	Offerings int `json:"offerings"`
	// SkippedDuplicates counts rows that repeat an earlier row exactly.
	SkippedDuplicates int `json:"skippedDuplicates"`
	// SkippedNoPrice counts rows with neither an on-demand nor a spot price.
	SkippedNoPrice int `json:"skippedNoPrice"`
	// AcceleratorOnly counts offerings that price accelerators without their VM (GCP).
	AcceleratorOnly int      `json:"acceleratorOnly"`
	Accelerators    []string `json:"accelerators"`
	Regions         []string `json:"regions"`
}

// CatalogInfo describes one cloud's imported catalog (GET /api/v1/catalogs).
type CatalogInfo struct {
	Cloud      string    `json:"cloud"`
	Offerings  int       `json:"offerings"`
	ImportedAt time.Time `json:"importedAt"`
}

// OfferingList is the answer to GET /api/v1/offerings.
type OfferingList struct {
	Items []Offering `json:"items"`
	// Truncated says that more offerings matched than the limit allowed.
	Truncated bool `json:"truncated"`
}
