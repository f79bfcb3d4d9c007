package server

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/catalog"
	"github.com/aloft-dev/aloft/internal/store"
)

// DefaultMaxCatalogBytes bounds an uploaded catalog CSV when
// API.MaxCatalogBytes is 0 (the largest SkyPilot catalog, aws, is about 3 MB).
const DefaultMaxCatalogBytes int64 = 64 << 20 // 64 MiB

func (a *API) maxCatalogBytes() int64 {
	if a.MaxCatalogBytes > 0 {
		return a.MaxCatalogBytes
	}
	return DefaultMaxCatalogBytes
}

// Offerings list limits: GET /api/v1/offerings?limit=.
const (
	defaultOfferingLimit = 100
	maxOfferingLimit     = 10000
)

func toOffering(o catalog.Offering) v1.Offering {
	return v1.Offering{Cloud: o.Cloud, Region: o.Region, Zone: o.Zone, InstanceType: o.InstanceType, Accelerator: o.Accelerator,
		AcceleratorCount: o.AcceleratorCount, VCPUs: o.VCPUs, MemoryGiB: o.MemoryGiB, GPUMemoryMiB: o.GPUMemoryMiB,
		Price: o.Price, SpotPrice: o.SpotPrice, Arch: o.Arch}
}

// importCatalog replaces the catalog of {cloud} with the SkyPilot catalog
// CSV in the body. The whole file is parsed before anything is stored; any
// problem in it is a 400 naming the file, line and column, and the stored
// catalog stays as it was.
func (a *API) importCatalog(w http.ResponseWriter, r *http.Request) {
	cloud := r.PathValue("cloud")
	if !v1.IsDNS1123Label(cloud) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid cloud name %q: must be a DNS-1123 label (lower-case letters, digits and '-', at most %d characters), e.g. aws", cloud, v1.MaxNameLength),
			v1.FieldError{Field: "cloud", Reason: "must be a DNS-1123 label, e.g. aws"})
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "text/csv" && mt != "application/octet-stream") {
			writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q is not accepted; send the catalog as text/csv or application/octet-stream", ct))
			return
		}
	}
	limit := a.maxCatalogBytes()
	tooLarge := func() {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("catalog is larger than this server's limit of %d bytes (%s)", limit, humanBytes(limit)))
	}
	if r.ContentLength > limit {
		tooLarge()
		return
	}
	body := io.Reader(http.MaxBytesReader(w, r.Body, limit))
	body = &idleDeadlineReader{r: body, rc: http.NewResponseController(w)}
	name := baseNameParam(r, "catalog.csv")
	offs, sum, err := catalog.Parse(name, body, cloud)
	if err != nil {
		io.Copy(io.Discard, body) // so the client, still sending, reads the answer
		var mbe *http.MaxBytesError
		var pe *catalog.ParseError
		switch {
		case errors.As(err, &mbe):
			tooLarge()
		case errors.As(err, &pe):
			writeError(w, http.StatusBadRequest, pe.Error()+"; nothing was imported")
		default:
			writeError(w, http.StatusBadRequest, "reading the catalog: "+err.Error())
		}
		return
	}
	if len(offs) == 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%s has no offerings (%d rows: %d without a price, %d duplicates); nothing was imported",
			name, sum.Rows, sum.SkippedNoPrice, sum.SkippedDuplicates))
		return
	}
	at := time.Now().UTC()
	if err := a.Store.ReplaceCatalog(r.Context(), cloud, offs, at); err != nil {
		a.writeStoreError(w, err, "catalog")
		return
	}
	a.Logger.Info("catalog imported", "cloud", cloud, "file", name, "offerings", sum.Offerings, "rows", sum.Rows,
		"skippedDuplicates", sum.SkippedDuplicates, "skippedNoPrice", sum.SkippedNoPrice)
	writeJSON(w, http.StatusCreated, v1.CatalogImport{Cloud: cloud, ImportedAt: at, Rows: sum.Rows, Offerings: sum.Offerings,
		SkippedDuplicates: sum.SkippedDuplicates, SkippedNoPrice: sum.SkippedNoPrice, AcceleratorOnly: sum.AcceleratorOnly,
		Accelerators: sum.Accelerators, Regions: sum.Regions})
}

func (a *API) listCatalogs(w http.ResponseWriter, r *http.Request) {
	infos, err := a.Store.CatalogClouds(r.Context())
	if err != nil {
		a.writeStoreError(w, err, "catalogs")
		return
	}
	items := make([]v1.CatalogInfo, 0, len(infos))
	for _, c := range infos {
		items = append(items, v1.CatalogInfo{Cloud: c.Cloud, Offerings: c.Offerings, ImportedAt: c.ImportedAt})
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

// listOfferings answers ?cloud=&region=&gpu=&minGpus=&spot=&limit=, cheapest
// first (by spot price with spot=true).
func (a *API) listOfferings(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.OfferingFilter{Cloud: q.Get("cloud"), Region: q.Get("region"), Accelerator: q.Get("gpu")}
	bad := func(field, reason string) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("query parameter %s %s", field, reason), v1.FieldError{Field: field, Reason: reason})
	}
	minGpus, err := queryInt(r, "minGpus", 0)
	if err != nil || minGpus > 1<<20 {
		bad("minGpus", fmt.Sprintf("must be a whole number from 0 to %d, got %q", 1<<20, q.Get("minGpus")))
		return
	}
	f.MinAccelerators = int(minGpus)
	switch q.Get("spot") {
	case "", "false", "0":
	case "true", "1":
		f.SpotOnly = true
	default:
		bad("spot", fmt.Sprintf("must be true or false, got %q", q.Get("spot")))
		return
	}
	limit := int64(defaultOfferingLimit)
	if s := q.Get("limit"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 || n > maxOfferingLimit {
			bad("limit", fmt.Sprintf("must be a whole number from 1 to %d, got %q", maxOfferingLimit, s))
			return
		}
		limit = n
	}
	f.Limit = int(limit) + 1 // one more, to tell whether the list was cut
	offs, err := a.Store.ListOfferings(r.Context(), f)
	if err != nil {
		a.writeStoreError(w, err, "offerings")
		return
	}
	out := v1.OfferingList{Items: make([]v1.Offering, 0, min(len(offs), int(limit)))}
	if len(offs) > int(limit) {
		offs, out.Truncated = offs[:limit], true
	}
	for _, o := range offs {
		out.Items = append(out.Items, toOffering(o))
	}
	writeJSON(w, http.StatusOK, out)
}
