// Package catalog reads cloud price catalogs: what instance types each cloud
// offers where, with which accelerators, at which on-demand and spot prices.
//
// The input format is SkyPilot's catalog CSV (github.com/skypilot-org/
// skypilot-catalog, vms.csv of schema v6-v8). Columns are found by header
// name, because their order differs per cloud and schema version. Required:
// InstanceType, AcceleratorName, AcceleratorCount, vCPUs, MemoryGiB, Price,
// SpotPrice, Region. Optional: GpuInfo, AvailabilityZone, Arch (others, such
// as Azure's Generation, are ignored).
//
// Rules, in the order they are checked:
//
//   - Numbers are decimal, finite and not negative. AcceleratorCount may be
//     empty only when AcceleratorName is empty (CPU-only types); it must then
//     be empty or 0. With an accelerator it must be above 0 and may be a
//     fraction (a share of one GPU). Price and SpotPrice may be empty.
//   - GpuInfo is a Python-literal dict (single quotes, as SkyPilot writes it)
//     or a bare accelerator name. A dict's Gpus[0].MemoryInfo.SizeInMiB is the
//     per-GPU memory. A value that looks like a dict or list but does not
//     parse, or has the wrong shape, is an error.
//   - GCP accelerator rows: GCP prices GPUs and TPUs apart from the VM, in
//     rows with an empty InstanceType (and empty vCPUs and MemoryGiB), one per
//     accelerator, count and zone. They are kept, under the synthetic
//     instance type AcceleratorInstanceType(name, count), e.g. "H100-8x" or
//     "tpu-v2-8-1x", with 0 vCPUs and memory. Their price is the
//     accelerators' alone: the host VM is priced in its own row. A row
//     with an empty InstanceType and no accelerator is an error.
//   - A price of 0 is the same as no price. A row with neither an on-demand
//     nor a spot price (e.g. aws p5e.48xlarge, gcp a4-highgpu-8g at 0.0/0.0)
//     is skipped and counted in Summary.SkippedNoPrice.
//   - Duplicates: the key of an offering is (cloud, region, zone, instance
//     type, accelerator, accelerator count). Two rows with the same key are
//     an error naming both lines and the first field that differs, unless
//     they are the same offering, equal in every stored field. Then the
//     later row is skipped and counted in Summary.SkippedDuplicates. Byte-
//     identical lines are always equal. The real runpod catalog has 14 of
//     them, and it imports.
//
// Any error is a *ParseError naming the file, the line and the column, and
// Parse then returns no offerings: a catalog is imported whole or not at all.
package catalog

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Offering is one purchasable configuration: an instance type with its
// accelerators, in one region (and zone, where the cloud has them), at the
// catalog's prices.
type Offering struct {
	Cloud, Region, Zone, InstanceType string
	// Accelerator is SkyPilot's accelerator name, e.g. "H100", "A100-80GB",
	// "tpu-v2-8"; "" for CPU-only types.
	Accelerator string
	// AcceleratorCount is the number of accelerators, above 0 when
	// Accelerator is set (a fraction is a share of one), else 0.
	AcceleratorCount float64
	VCPUs, MemoryGiB float64
	// GPUMemoryMiB is the memory of one GPU, from GpuInfo; 0 if unknown.
	GPUMemoryMiB int64
	// Price is the on-demand price in USD per hour; 0 when the catalog has
	// none (not offered on-demand).
	Price float64
	// SpotPrice is the spot/preemptible price in USD per hour; 0 when none.
	SpotPrice float64
	// Arch is the CPU architecture where the catalog says (aws: x86_64,
	// arm64, x86_64_mac, arm64_mac), else "".
	Arch string
}

// Summary describes one parsed catalog.
type Summary struct {
	// Rows is the number of data rows read (the header not counted).
	Rows int
	// Offerings is the number of offerings kept.
	Offerings int
	// SkippedDuplicates counts rows that repeat an earlier row exactly.
	SkippedDuplicates int
	// SkippedNoPrice counts rows with neither an on-demand nor a spot price.
	SkippedNoPrice int
	// AcceleratorOnly counts kept offerings that price accelerators
	// without their host VM (GCP accelerator rows).
	AcceleratorOnly int
	// Accelerators and Regions of the kept offerings, sorted, each once.
	Accelerators []string
	Regions      []string
}

// ParseError is a problem with one place of a catalog file.
type ParseError struct {
	File   string
	Line   int    // 1-based; the header is line 1
	Column string // the column's header name; "" when the problem is the whole line
	Msg    string
}

// Error renders e.g. `aws.csv:17: column SpotPrice: bad number "abc"`.
func (e *ParseError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Column != "" {
		b.WriteString("column " + e.Column + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Column names of SkyPilot catalogs.
const (
	ColInstanceType     = "InstanceType"
	ColAcceleratorName  = "AcceleratorName"
	ColAcceleratorCount = "AcceleratorCount"
	ColVCPUs            = "vCPUs"
	ColMemoryGiB        = "MemoryGiB"
	ColGpuInfo          = "GpuInfo"
	ColPrice            = "Price"
	ColSpotPrice        = "SpotPrice"
	ColRegion           = "Region"
	ColAvailabilityZone = "AvailabilityZone"
	ColArch             = "Arch"
)

// RequiredColumns must all be in a catalog's header.
var RequiredColumns = []string{ColInstanceType, ColAcceleratorName, ColAcceleratorCount, ColVCPUs, ColMemoryGiB, ColPrice, ColSpotPrice, ColRegion}

// optionalColumns are read when present.
var optionalColumns = []string{ColGpuInfo, ColAvailabilityZone, ColArch}

// AcceleratorInstanceType is the synthetic instance type of a GCP
// accelerator row (which has none): "<accelerator>-<count>x", e.g. "H100-8x".
func AcceleratorInstanceType(accelerator string, count float64) string {
	return accelerator + "-" + strconv.FormatFloat(count, 'f', -1, 64) + "x"
}

// key identifies an offering within one cloud's catalog.
type key struct {
	region, zone, instanceType, accelerator string
	count                                   float64
}

// Parse reads the catalog CSV r of cloud. file names it in errors. It returns
// every offering, or none and a *ParseError (or, for a failed read, an error
// wrapping the reader's).
func Parse(file string, r io.Reader, cloud string) ([]Offering, Summary, error) {
	var sum Summary
	if cloud == "" {
		return nil, sum, &ParseError{File: file, Msg: "no cloud name given for the catalog"}
	}
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err == io.EOF {
		return nil, sum, &ParseError{File: file, Line: 1, Msg: "empty file: no header line (want columns " + strings.Join(RequiredColumns, ",") + ")"}
	}
	if err != nil {
		return nil, sum, csvError(file, err)
	}
	header = slices.Clone(header) // ReuseRecord: the next Read overwrites it
	col := map[string]int{}
	for i, h := range header {
		h = strings.TrimSpace(h)
		if i == 0 {
			h = strings.TrimPrefix(h, "\ufeff") // a UTF-8 byte order mark
		}
		if h == "" {
			continue
		}
		if _, dup := col[h]; dup {
			return nil, sum, &ParseError{File: file, Line: 1, Column: h, Msg: "appears twice in the header"}
		}
		col[h] = i
	}
	for _, c := range RequiredColumns {
		if _, ok := col[c]; !ok {
			return nil, sum, &ParseError{File: file, Line: 1, Column: c, Msg: fmt.Sprintf("missing from the header (required: %s)", strings.Join(RequiredColumns, ", "))}
		}
	}
	idx := func(name string) int {
		if i, ok := col[name]; ok {
			return i
		}
		return -1
	}
	p := rowParser{file: file, cr: cr, header: header}
	cInst, cAcc, cCount := idx(ColInstanceType), idx(ColAcceleratorName), idx(ColAcceleratorCount)
	cCPU, cMem, cPrice, cSpot, cRegion := idx(ColVCPUs), idx(ColMemoryGiB), idx(ColPrice), idx(ColSpotPrice), idx(ColRegion)
	cGpu, cZone, cArch := idx(ColGpuInfo), idx(ColAvailabilityZone), idx(ColArch)

	var offs []Offering
	seen := map[key]int{} // key -> index in offs
	lines := []int{}      // line of each kept offering
	accs, regions := map[string]bool{}, map[string]bool{}
	gpuMem := map[string]int64{} // GpuInfo values repeat row after row
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, sum, csvError(file, err)
		}
		sum.Rows++
		p.rec = rec
		o := Offering{Cloud: cloud}
		o.Region = p.str(cRegion)
		o.Zone = p.str(cZone)
		o.InstanceType = p.str(cInst)
		o.Accelerator = p.str(cAcc)
		o.Arch = p.str(cArch)
		if p.err != nil {
			return nil, sum, p.err
		}
		if o.Region == "" {
			return nil, sum, p.fail(cRegion, "empty: every row needs a region")
		}
		accOnly := o.InstanceType == ""
		if accOnly && o.Accelerator == "" {
			return nil, sum, p.fail(cInst, "empty, and the row has no AcceleratorName either (only accelerator rows may leave it empty)")
		}
		count, hasCount := p.num(cCount)
		switch {
		case p.err != nil:
		case o.Accelerator != "" && !hasCount:
			p.fail(cCount, fmt.Sprintf("empty, but the row has accelerator %q", o.Accelerator))
		case o.Accelerator != "" && count == 0:
			p.fail(cCount, fmt.Sprintf("0, but the row has accelerator %q", o.Accelerator))
		case o.Accelerator == "" && count != 0:
			p.fail(cCount, fmt.Sprintf("%s, but AcceleratorName is empty", rec[cCount]))
		}
		o.AcceleratorCount = count
		var hasCPU, hasMem bool
		o.VCPUs, hasCPU = p.num(cCPU)
		o.MemoryGiB, hasMem = p.num(cMem)
		if p.err == nil && !accOnly {
			if !hasCPU {
				p.fail(cCPU, "empty: only accelerator rows (empty InstanceType) may leave it empty")
			} else if !hasMem {
				p.fail(cMem, "empty: only accelerator rows (empty InstanceType) may leave it empty")
			}
		}
		o.Price, _ = p.num(cPrice)
		o.SpotPrice, _ = p.num(cSpot)
		if p.err == nil && cGpu >= 0 {
			mib, ok := gpuMem[rec[cGpu]]
			if !ok {
				var err error
				if mib, err = GPUMemoryMiB(rec[cGpu]); err != nil {
					p.fail(cGpu, err.Error())
				} else {
					gpuMem[rec[cGpu]] = mib
				}
			}
			o.GPUMemoryMiB = mib
		}
		if p.err != nil {
			return nil, sum, p.err
		}
		if accOnly {
			o.InstanceType = AcceleratorInstanceType(o.Accelerator, o.AcceleratorCount)
		}
		if o.Price == 0 && o.SpotPrice == 0 {
			sum.SkippedNoPrice++
			continue
		}
		line := p.line(0)
		k := key{o.Region, o.Zone, o.InstanceType, o.Accelerator, o.AcceleratorCount}
		if i, dup := seen[k]; dup {
			if offs[i] == o {
				sum.SkippedDuplicates++
				continue
			}
			field, here, there := firstDifference(o, offs[i])
			return nil, sum, &ParseError{File: file, Line: line, Column: field,
				Msg: fmt.Sprintf("conflicting duplicate of line %d (same region, zone, instance type, accelerator and count): %s here, %s on line %d",
					lines[i], here, there, lines[i])}
		}
		seen[k] = len(offs)
		offs = append(offs, o)
		lines = append(lines, line)
		if accOnly {
			sum.AcceleratorOnly++
		}
		if o.Accelerator != "" {
			accs[o.Accelerator] = true
		}
		regions[o.Region] = true
	}
	sum.Offerings = len(offs)
	sum.Accelerators, sum.Regions = sortedKeys(accs), sortedKeys(regions)
	return offs, sum, nil
}

// rowParser reads the fields of one record, keeping the first error.
type rowParser struct {
	file   string
	cr     *csv.Reader
	header []string
	rec    []string
	err    *ParseError
}

func (p *rowParser) line(i int) int {
	l, _ := p.cr.FieldPos(i)
	return l
}

func (p *rowParser) fail(i int, msg string) *ParseError {
	if p.err == nil {
		p.err = &ParseError{File: p.file, Line: p.line(i), Column: strings.TrimPrefix(strings.TrimSpace(p.header[i]), "\ufeff"), Msg: msg}
	}
	return p.err
}

// str is field i with surrounding spaces removed; "" for an absent column.
func (p *rowParser) str(i int) string {
	if i < 0 {
		return ""
	}
	s := strings.TrimSpace(p.rec[i])
	if strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		p.fail(i, fmt.Sprintf("control character in %q", s))
	}
	return s
}

// num parses field i as a finite, non-negative decimal; ok is false when it
// is empty.
func (p *rowParser) num(i int) (v float64, ok bool) {
	s := strings.TrimSpace(p.rec[i])
	if s == "" {
		return 0, false
	}
	v, err := strconv.ParseFloat(s, 64)
	switch {
	case err != nil && errors.Is(err, strconv.ErrRange):
		p.fail(i, fmt.Sprintf("number out of range %q", s))
	case err != nil || math.IsNaN(v) || math.IsInf(v, 0) || !isDecimal(s):
		p.fail(i, fmt.Sprintf("bad number %q", s))
	case v < 0:
		p.fail(i, fmt.Sprintf("negative number %q", s))
	default:
		return v, true
	}
	return 0, false
}

// isDecimal accepts what catalogs write: digits, one point, an exponent;
// not hex floats, underscores, "Inf" or "NaN", which ParseFloat also takes.
func isDecimal(s string) bool {
	for _, r := range s {
		if !strings.ContainsRune("0123456789.eE+-", r) {
			return false
		}
	}
	return true
}

// csvError turns an encoding/csv error into a ParseError with its line.
func csvError(file string, err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		msg := pe.Err.Error()
		if errors.Is(pe.Err, csv.ErrFieldCount) {
			msg = "wrong number of fields: every line needs as many as the header"
		}
		if pe.Column > 0 && !errors.Is(pe.Err, csv.ErrFieldCount) {
			msg += fmt.Sprintf(" (character %d)", pe.Column)
		}
		return &ParseError{File: file, Line: pe.Line, Msg: msg}
	}
	return fmt.Errorf("%s: read: %w", file, err)
}

// firstDifference names the first stored field in which a and b differ,
// with both values.
func firstDifference(a, b Offering) (field, va, vb string) {
	num := func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
	q := func(s string) string { return strconv.Quote(s) }
	switch {
	case a.VCPUs != b.VCPUs:
		return ColVCPUs, num(a.VCPUs), num(b.VCPUs)
	case a.MemoryGiB != b.MemoryGiB:
		return ColMemoryGiB, num(a.MemoryGiB), num(b.MemoryGiB)
	case a.GPUMemoryMiB != b.GPUMemoryMiB:
		return ColGpuInfo, fmt.Sprintf("%d MiB per GPU", a.GPUMemoryMiB), fmt.Sprintf("%d MiB per GPU", b.GPUMemoryMiB)
	case a.Price != b.Price:
		return ColPrice, num(a.Price), num(b.Price)
	case a.SpotPrice != b.SpotPrice:
		return ColSpotPrice, num(a.SpotPrice), num(b.SpotPrice)
	default:
		return ColArch, q(a.Arch), q(b.Arch)
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
