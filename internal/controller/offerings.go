package controller

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/aloft-dev/aloft/internal/catalog"
	"github.com/aloft-dev/aloft/internal/placement"
	"github.com/aloft-dev/aloft/internal/store"
)

// defaultSpotInterruptions is the spot interruption rate assumed for a cloud
// that does not set spotInterruptionsPerHour.
const defaultSpotInterruptions = 0.05

// catalogs caches the imported catalogs by cloud; an import (a newer
// imported-at time) reloads one.
type catalogs struct {
	mu      sync.Mutex
	byCloud map[string]cachedCatalog
}

type cachedCatalog struct {
	at   time.Time
	offs []catalog.Offering
}

// load returns the offerings of every imported catalog in names.
func (cc *catalogs) load(ctx context.Context, st store.Store, names map[string]bool) (map[string][]catalog.Offering, error) {
	if len(names) == 0 {
		return nil, nil
	}
	infos, err := st.CatalogClouds(ctx)
	if err != nil {
		return nil, err
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.byCloud == nil {
		cc.byCloud = map[string]cachedCatalog{}
	}
	out := map[string][]catalog.Offering{}
	for _, info := range infos {
		if !names[info.Cloud] {
			continue
		}
		cached, ok := cc.byCloud[info.Cloud]
		if !ok || !cached.at.Equal(info.ImportedAt) {
			offs, err := st.ListOfferings(ctx, store.OfferingFilter{Cloud: info.Cloud})
			if err != nil {
				return nil, err
			}
			cached = cachedCatalog{at: info.ImportedAt, offs: offs}
			cc.byCloud[info.Cloud] = cached
		}
		out[info.Cloud] = cached.offs
	}
	return out, nil
}

// capacityBlocks remembers offerings whose provider reported no capacity,
// until a deadline: placement avoids them meanwhile (SkyPilot-style
// failover, in seconds rather than minutes).
type capacityBlocks struct {
	mu    sync.Mutex
	until map[string]time.Time
	why   map[string]string
}

func (b *capacityBlocks) block(id, why string, until time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.until == nil {
		b.until, b.why = map[string]time.Time{}, map[string]string{}
	}
	b.until[id], b.why[id] = until, why
}

// reason returns why id is blocked at now, or "".
func (b *capacityBlocks) reason(id string, now time.Time) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	until, ok := b.until[id]
	if !ok {
		return ""
	}
	if !now.Before(until) {
		delete(b.until, id)
		delete(b.why, id)
		return ""
	}
	return fmt.Sprintf("blocked until %s after a capacity error: %s", until.UTC().Format(time.RFC3339), b.why[id])
}

// catalogOfferings lists the offerings of the clouds that have a catalog,
// as placement sees them now: failed and cordoned clouds and blocked
// offerings are unavailable with the reason.
func (c *Controller) catalogOfferings(ctx context.Context, states map[string]store.CloudState) ([]placement.Offering, error) {
	names := map[string]bool{}
	for _, cl := range c.clouds.List() {
		if cl.Config.Catalog != "" {
			names[cl.Config.Catalog] = true
		}
	}
	cats, err := c.catalogs.load(ctx, c.st, names)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var out []placement.Offering
	for _, cl := range c.clouds.List() {
		cfg := cl.Config
		if cfg.Catalog == "" {
			continue
		}
		st := states[cfg.Name]
		down := ""
		switch {
		case st.Failed:
			down = "cloud has failed"
		case st.Cordoned:
			down = "cloud is cordoned"
		}
		rate := cfg.SpotInterruptionsPerHour
		if rate == 0 {
			rate = defaultSpotInterruptions
		}
		runtimes := cl.Provider.Runtimes()
		for _, o := range cats[cfg.Catalog] {
			if len(cfg.Regions) > 0 && !slices.Contains(cfg.Regions, o.Region) {
				continue
			}
			base := placement.Offering{
				Cloud: cfg.Name, Region: o.Region, Zone: o.Zone, InstanceType: o.InstanceType,
				Labels: cfg.Labels, Runtimes: runtimes,
				Accelerator: o.Accelerator, AcceleratorCount: int(math.Floor(o.AcceleratorCount + 1e-9)),
				VCPUs: o.VCPUs, MemoryGiB: o.MemoryGiB, Capacity: -1, Unavailable: down,
			}
			for _, spot := range []bool{false, true} {
				of := base
				of.Spot = spot
				of.Price = o.Price
				if spot {
					of.Price, of.InterruptionsPerHour = o.SpotPrice, rate
				}
				if of.Price <= 0 {
					continue
				}
				of.ID = placement.OfferingID(cfg.Name, o.Region, o.Zone, o.InstanceType, spot)
				if of.Unavailable == "" {
					of.Unavailable = c.blocks.reason(of.ID, now)
				}
				out = append(out, of)
			}
		}
	}
	return out, nil
}

// offeringOf names the offering a replica runs on: its catalog offering, or
// its cloud for a cloud without a catalog.
func offeringOf(r store.Replica) string {
	if r.InstanceType == "" {
		return r.Cloud
	}
	return placement.OfferingID(r.Cloud, r.Region, r.Zone, r.InstanceType, r.Spot)
}
