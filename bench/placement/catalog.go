package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// A minimal reader of SkyPilot-format catalog CSVs (see
// internal/catalog/testdata/SOURCE.md). Columns are found by header name because
// their order differs per cloud and schema version.

// catalogClouds are the files read from the catalog directory, one per cloud.
var catalogClouds = []string{"aws", "azure", "gcp", "lambda", "runpod"}

// catRow is one catalog line with the fields the bench uses. Price and
// SpotPrice are 0 when empty.
type catRow struct {
	Cloud        string
	InstanceType string
	Accelerator  string
	AccelCount   int
	VCPUs        float64
	MemoryGiB    float64
	Price        float64
	SpotPrice    float64
	Region       string
	Zone         string
}

// readCatalogCSV parses one catalog file of cloud.
func readCatalogCSV(cloud string, r io.Reader) ([]catRow, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: header: %w", cloud, err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))] = i
	}
	for _, need := range []string{"InstanceType", "AcceleratorName", "AcceleratorCount", "vCPUs", "MemoryGiB", "Price", "Region"} {
		if _, ok := col[need]; !ok {
			return nil, fmt.Errorf("%s: no column %q in header %v", cloud, need, header)
		}
	}
	get := func(rec []string, name string) string {
		i, ok := col[name]
		if !ok || i >= len(rec) {
			return ""
		}
		return strings.TrimSpace(rec[i])
	}
	num := func(rec []string, name string) (float64, error) {
		s := get(rec, name)
		if s == "" {
			return 0, nil
		}
		return strconv.ParseFloat(s, 64)
	}
	var rows []catRow
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: line %d: %w", cloud, line, err)
		}
		row := catRow{
			Cloud:        cloud,
			InstanceType: get(rec, "InstanceType"),
			Accelerator:  get(rec, "AcceleratorName"),
			Region:       get(rec, "Region"),
			Zone:         get(rec, "AvailabilityZone"),
		}
		var ac float64
		for _, f := range []struct {
			name string
			dst  *float64
		}{{"AcceleratorCount", &ac}, {"vCPUs", &row.VCPUs}, {"MemoryGiB", &row.MemoryGiB}, {"Price", &row.Price}, {"SpotPrice", &row.SpotPrice}} {
			v, err := num(rec, f.name)
			if err != nil {
				return nil, fmt.Errorf("%s: line %d: %s: %w", cloud, line, f.name, err)
			}
			*f.dst = v
		}
		row.AccelCount = int(ac + 0.5)
		rows = append(rows, row)
	}
	return rows, nil
}

// gcpAttached names the GPUs that come with a GCP accelerator-optimized
// machine type. In the catalog such VM rows carry no AcceleratorName and
// their price covers only vCPUs and memory; the GPUs are priced in separate
// accelerator rows (empty InstanceType) per zone.
func gcpAttached(instanceType string) (gpu string, count int, ok bool) {
	t := strings.TrimSuffix(instanceType, "-nolssd")
	switch {
	case strings.HasPrefix(t, "a2-ultragpu-"):
		gpu = "A100-80GB"
	case strings.HasPrefix(t, "a2-highgpu-"), strings.HasPrefix(t, "a2-megagpu-"):
		gpu = "A100"
	case strings.HasPrefix(t, "a3-highgpu-"), strings.HasPrefix(t, "a3-edgegpu-"):
		gpu = "H100"
	case strings.HasPrefix(t, "a3-megagpu-"):
		gpu = "H100-MEGA"
	case strings.HasPrefix(t, "a3-ultragpu-"):
		gpu = "H200"
	case strings.HasPrefix(t, "a4-highgpu-"):
		gpu = "B200"
	case strings.HasPrefix(t, "g2-standard-"):
		switch t {
		case "g2-standard-24":
			return "L4", 2, true
		case "g2-standard-48":
			return "L4", 4, true
		case "g2-standard-96":
			return "L4", 8, true
		default:
			return "L4", 1, true
		}
	default:
		return "", 0, false
	}
	// a2-highgpu-4g, a3-edgegpu-8g, ...: the count is the number before "g".
	i := strings.LastIndexByte(t, '-')
	n, err := strconv.Atoi(strings.TrimSuffix(t[i+1:], "g"))
	if err != nil || n < 1 {
		return "", 0, false
	}
	return gpu, n, true
}

// joinGCP folds GCP accelerator rows into the VM rows of the machine types
// they come with (same zone): the VM price plus the accelerator price.
// Accelerator rows that attach to VM types not in the catalog slice (n1 with
// T4/V100/P100/P4, TPUs) and VM rows whose GPU price is missing are dropped,
// since their full price is unknown.
func joinGCP(rows []catRow) []catRow {
	type key struct {
		acc  string
		n    int
		zone string
	}
	acc := map[key]catRow{}
	for _, r := range rows {
		if r.InstanceType == "" && r.Accelerator != "" {
			acc[key{r.Accelerator, r.AccelCount, r.Zone}] = r
		}
	}
	var out []catRow
	for _, r := range rows {
		if r.InstanceType == "" {
			continue
		}
		gpu, n, ok := gcpAttached(r.InstanceType)
		if !ok {
			out = append(out, r)
			continue
		}
		a, ok := acc[key{gpu, n, r.Zone}]
		if !ok || r.Price == 0 && a.Price == 0 {
			continue
		}
		r.Accelerator, r.AccelCount = gpu, n
		r.Price += a.Price
		if r.SpotPrice > 0 && a.SpotPrice > 0 {
			r.SpotPrice += a.SpotPrice
		} else {
			r.SpotPrice = 0
		}
		out = append(out, r)
	}
	return out
}

// poolOffering is a catalog offering before an instance gives it capacity,
// runtimes, labels and availability.
type poolOffering struct {
	ID           string
	Cloud        string
	Region       string
	Zone         string
	InstanceType string
	Accelerator  string
	AccelCount   int
	VCPUs        float64
	MemoryGiB    float64
	Spot         bool
	Price        float64
}

// loadPool reads the five catalogs from dir and returns every priced
// offering: each row on-demand, plus a spot variant when SpotPrice is set.
// Rows without a price, without vCPUs or memory are skipped; duplicate IDs
// (runpod repeats 14 lines) are kept once.
func loadPool(dir string) ([]poolOffering, error) {
	var pool []poolOffering
	seen := map[string]bool{}
	for _, cloud := range catalogClouds {
		path := filepath.Join(dir, cloud+".csv")
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("catalog: %w (run from the repository root, or pass -catalog DIR with aws.csv, azure.csv, gcp.csv, lambda.csv, runpod.csv)", err)
		}
		rows, err := readCatalogCSV(cloud, f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("catalog %s: %w", path, err)
		}
		if cloud == "gcp" {
			rows = joinGCP(rows)
		}
		pool = append(pool, rowsToPool(rows, seen)...)
	}
	sort.SliceStable(pool, func(i, j int) bool { return pool[i].ID < pool[j].ID })
	return pool, nil
}

func rowsToPool(rows []catRow, seen map[string]bool) []poolOffering {
	var out []poolOffering
	for _, r := range rows {
		if r.InstanceType == "" || r.Region == "" || r.VCPUs <= 0 || r.MemoryGiB <= 0 {
			continue
		}
		base := poolOffering{
			Cloud: r.Cloud, Region: r.Region, Zone: r.Zone, InstanceType: r.InstanceType,
			Accelerator: r.Accelerator, AccelCount: r.AccelCount, VCPUs: r.VCPUs, MemoryGiB: r.MemoryGiB,
		}
		if r.Accelerator == "" {
			base.AccelCount = 0
		}
		add := func(spot bool, price float64) {
			if price <= 0 {
				return
			}
			o := base
			o.Spot, o.Price = spot, price
			kind := "ondemand"
			if spot {
				kind = "spot"
			}
			o.ID = strings.Join([]string{o.Cloud, o.Region, o.Zone, o.InstanceType, kind}, "/")
			if seen[o.ID] {
				return
			}
			seen[o.ID] = true
			out = append(out, o)
		}
		add(false, r.Price)
		add(true, r.SpotPrice)
	}
	return out
}
