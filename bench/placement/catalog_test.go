package main

import (
	"math"
	"strings"
	"testing"
)

// Rows copied verbatim from the SkyPilot catalog snapshots in
// ../shared/catalog (github.com/skypilot-org/skypilot-catalog; see
// ../shared/catalog/SOURCE.md for commits and licence): each cloud writes
// its columns in its own order.
const (
	awsRows = "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,AvailabilityZone,Arch\n" +
		`g5.xlarge,A10G,1.0,4.0,16.0,"{'Gpus': [{'Name': 'A10G', 'Manufacturer': 'NVIDIA', 'Count': 1, 'MemoryInfo': {'SizeInMiB': 22888}}], 'TotalGpuMemoryInMiB': 22888}",1.459,0.594900,ap-northeast-1,apne1-az1,x86_64` + "\n" +
		"c6i.2xlarge,,,8.0,16.0,,0.404,0.175800,eu-west-3,euw3-az3,x86_64\n"
	lambdaRows = "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,Price,Region,GpuInfo,SpotPrice\r\n" +
		"cpu_4x_generalx,,,4.0,16.0,0.2,us-east-1,,\r\n"
	runpodRows = "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Region,SpotPrice,Price,AvailabilityZone\r\n" +
		"1x_RTX4090_SECURE,RTX4090,1.0,16.0,24.0,RTX4090,CA,0.34,0.69,CA-MTL-1\r\n" +
		"1x_RTX4090_SECURE,RTX4090,1.0,16.0,24.0,RTX4090,CA,0.34,0.69,CA-MTL-1\r\n" // duplicated on purpose
	azureRows = "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,Generation\n" +
		`Standard_NC4as_T4_v3,T4,1,4.0,28,T4,0.594,0.06534,centralus,"V1,V2"` + "\n"
	gcpRows = "InstanceType,vCPUs,MemoryGiB,AcceleratorName,AcceleratorCount,GpuInfo,Region,AvailabilityZone,Price,SpotPrice\n" +
		"a3-highgpu-1g,26.0,234.0,,,,asia-east1,asia-east1-c,1.36923,0.31161\n" +
		"a3-highgpu-1g,26.0,234.0,,,,asia-northeast1,asia-northeast1-b,1.51858,0.34557\n" +
		",,,H100,1,{'Gpus': [{'MemoryInfo': {'SizeInMiB': 81920}}]},asia-east1,asia-east1-c,11.34343,2.5829\n"
)

func TestReadCatalogByHeaderName(t *testing.T) {
	seen := map[string]bool{}
	var pool []poolOffering
	for cloud, text := range map[string]string{"aws": awsRows, "lambda": lambdaRows, "runpod": runpodRows, "azure": azureRows, "gcp": gcpRows} {
		rows, err := readCatalogCSV(cloud, strings.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		if cloud == "gcp" {
			rows = joinGCP(rows)
		}
		pool = append(pool, rowsToPool(rows, seen)...)
	}
	byID := map[string]poolOffering{}
	for _, o := range pool {
		byID[o.ID] = o
	}
	want := map[string]poolOffering{
		"aws/ap-northeast-1/apne1-az1/g5.xlarge/ondemand":         {Accelerator: "A10G", AccelCount: 1, VCPUs: 4, MemoryGiB: 16, Price: 1.459},
		"aws/ap-northeast-1/apne1-az1/g5.xlarge/spot":             {Accelerator: "A10G", AccelCount: 1, VCPUs: 4, MemoryGiB: 16, Price: 0.5949, Spot: true},
		"aws/eu-west-3/euw3-az3/c6i.2xlarge/ondemand":             {VCPUs: 8, MemoryGiB: 16, Price: 0.404},
		"aws/eu-west-3/euw3-az3/c6i.2xlarge/spot":                 {VCPUs: 8, MemoryGiB: 16, Price: 0.1758, Spot: true},
		"lambda/us-east-1//cpu_4x_generalx/ondemand":              {VCPUs: 4, MemoryGiB: 16, Price: 0.2},
		"runpod/CA/CA-MTL-1/1x_RTX4090_SECURE/ondemand":           {Accelerator: "RTX4090", AccelCount: 1, VCPUs: 16, MemoryGiB: 24, Price: 0.69},
		"runpod/CA/CA-MTL-1/1x_RTX4090_SECURE/spot":               {Accelerator: "RTX4090", AccelCount: 1, VCPUs: 16, MemoryGiB: 24, Price: 0.34, Spot: true},
		"azure/centralus//Standard_NC4as_T4_v3/ondemand":          {Accelerator: "T4", AccelCount: 1, VCPUs: 4, MemoryGiB: 28, Price: 0.594},
		"azure/centralus//Standard_NC4as_T4_v3/spot":              {Accelerator: "T4", AccelCount: 1, VCPUs: 4, MemoryGiB: 28, Price: 0.06534, Spot: true},
		"gcp/asia-east1/asia-east1-c/a3-highgpu-1g/ondemand":      {Accelerator: "H100", AccelCount: 1, VCPUs: 26, MemoryGiB: 234, Price: 1.36923 + 11.34343},
		"gcp/asia-east1/asia-east1-c/a3-highgpu-1g/spot":          {Accelerator: "H100", AccelCount: 1, VCPUs: 26, MemoryGiB: 234, Price: 0.31161 + 2.5829, Spot: true},
		"gcp/asia-northeast1/asia-northeast1-b/a3-highgpu-1g/...": {}, // no H100 row for that zone in this fixture: dropped
	}
	if len(pool) != len(want)-1 {
		t.Errorf("%d offerings, want %d: %v", len(pool), len(want)-1, pool)
	}
	for id, w := range want {
		got, ok := byID[id]
		if strings.HasSuffix(id, "/...") {
			for gid := range byID {
				if strings.HasPrefix(gid, strings.TrimSuffix(id, "...")) {
					t.Errorf("%s should have been dropped", gid)
				}
			}
			continue
		}
		if !ok {
			t.Errorf("missing %s", id)
			continue
		}
		if got.Accelerator != w.Accelerator || got.AccelCount != w.AccelCount || got.VCPUs != w.VCPUs ||
			got.MemoryGiB != w.MemoryGiB || got.Spot != w.Spot || math.Abs(got.Price-w.Price) > 1e-9 {
			t.Errorf("%s = %+v, want %+v", id, got, w)
		}
	}
}

func TestGCPAttached(t *testing.T) {
	for it, want := range map[string]struct {
		gpu string
		n   int
	}{
		"a2-ultragpu-4g": {"A100-80GB", 4}, "a3-highgpu-2g": {"H100", 2}, "a3-edgegpu-8g-nolssd": {"H100", 8},
		"a3-megagpu-8g": {"H100-MEGA", 8}, "a3-ultragpu-8g": {"H200", 8}, "a4-highgpu-8g": {"B200", 8},
		"g2-standard-24": {"L4", 2}, "g2-standard-12": {"L4", 1}, "a2-megagpu-16g": {"A100", 16},
	} {
		gpu, n, ok := gcpAttached(it)
		if !ok || gpu != want.gpu || n != want.n {
			t.Errorf("%s: %s x%d %v, want %s x%d", it, gpu, n, ok, want.gpu, want.n)
		}
	}
	if _, _, ok := gcpAttached("n2d-standard-16"); ok {
		t.Error("n2d-standard-16 has no GPU")
	}
}

// The real catalogs (copied with their attribution into internal/catalog/testdata).
func TestLoadPoolRealCatalogs(t *testing.T) {
	dir := "../../internal/catalog/testdata"
	pool, err := loadPool(dir)
	if err != nil {
		t.Fatal(err)
	}
	clouds := map[string]int{}
	for _, o := range pool {
		clouds[o.Cloud]++
		if o.Price <= 0 || o.VCPUs <= 0 || o.MemoryGiB <= 0 {
			t.Fatalf("bad offering %+v", o)
		}
		if _, ok := regions[o.Region]; !ok {
			t.Errorf("region %q of %s has no location", o.Region, o.ID)
		}
	}
	if len(clouds) != 5 || len(pool) < 8000 {
		t.Errorf("pool: %d offerings, per cloud %v", len(pool), clouds)
	}
}
