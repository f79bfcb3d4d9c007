package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/aloft-dev/aloft/internal/catalog"
)

// OfferingFilter selects offerings; zero fields match everything.
type OfferingFilter struct {
	Cloud  string
	Region string
	// Accelerator matches the accelerator name, ignoring case ("h100" finds "H100").
	Accelerator string
	// MinAccelerators keeps offerings with at least this many accelerators.
	MinAccelerators int
	// SpotOnly keeps offerings with a spot price, and sorts by it.
	SpotOnly bool
	// Limit caps the answer; 0 means no limit.
	Limit int
}

// CatalogInfo describes the stored catalog of one cloud.
type CatalogInfo struct {
	Cloud      string
	Offerings  int
	ImportedAt time.Time
}

const offeringCols = `cloud, region, zone, instance_type, accelerator, accelerator_count, vcpus, memory_gib, gpu_memory_mib, price, spot_price, arch`

// ReplaceCatalog replaces every offering of cloud with offs in one
// transaction: on any error the previous catalog stays as it was.
func (s *SQLite) ReplaceCatalog(ctx context.Context, cloud string, offs []catalog.Offering, at time.Time) error {
	if cloud == "" {
		return fmt.Errorf("replace catalog: no cloud name")
	}
	for i, o := range offs {
		if o.Cloud != "" && o.Cloud != cloud {
			return fmt.Errorf("replace catalog of %s: offering %d is of cloud %q", cloud, i, o.Cloud)
		}
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM offerings WHERE cloud = ?`, cloud); err != nil {
			return err
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO offerings(`+offeringCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, o := range offs {
			if _, err := stmt.ExecContext(ctx, cloud, o.Region, o.Zone, o.InstanceType, o.Accelerator, o.AcceleratorCount,
				o.VCPUs, o.MemoryGiB, o.GPUMemoryMiB, o.Price, o.SpotPrice, o.Arch); err != nil {
				return fmt.Errorf("store offering %s/%s/%s/%s: %w", o.Region, o.Zone, o.InstanceType, o.Accelerator, err)
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO catalogs(cloud, imported_at) VALUES (?, ?)
			ON CONFLICT(cloud) DO UPDATE SET imported_at = excluded.imported_at`, cloud, at.UTC().Format(time.RFC3339Nano))
		return err
	})
}

// ListOfferings returns the offerings f selects, cheapest first: by spot
// price with SpotOnly, else by on-demand price with offerings that have none
// (spot only) last.
func (s *SQLite) ListOfferings(ctx context.Context, f OfferingFilter) ([]catalog.Offering, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		where = append(where, cond)
		args = append(args, v)
	}
	if f.Cloud != "" {
		add("cloud = ?", f.Cloud)
	}
	if f.Region != "" {
		add("region = ?", f.Region)
	}
	if f.Accelerator != "" {
		add("accelerator = ? COLLATE NOCASE", f.Accelerator)
	}
	if f.MinAccelerators > 0 {
		add("accelerator_count >= ?", f.MinAccelerators)
	}
	order := "price = 0, price"
	if f.SpotOnly {
		where = append(where, "spot_price > 0")
		order = "spot_price"
	}
	q := `SELECT ` + offeringCols + ` FROM offerings`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY ` + order + `, cloud, region, zone, instance_type, accelerator, accelerator_count LIMIT ?`
	limit := -1
	if f.Limit > 0 {
		limit = f.Limit
	}
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []catalog.Offering
	for rows.Next() {
		var o catalog.Offering
		if err := rows.Scan(&o.Cloud, &o.Region, &o.Zone, &o.InstanceType, &o.Accelerator, &o.AcceleratorCount,
			&o.VCPUs, &o.MemoryGiB, &o.GPUMemoryMiB, &o.Price, &o.SpotPrice, &o.Arch); err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// CatalogClouds lists the clouds that have an imported catalog, by name.
func (s *SQLite) CatalogClouds(ctx context.Context) ([]CatalogInfo, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT c.cloud, c.imported_at, (SELECT COUNT(*) FROM offerings o WHERE o.cloud = c.cloud)
		FROM catalogs c ORDER BY c.cloud`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []CatalogInfo
	for rows.Next() {
		var c CatalogInfo
		var at string
		if err := rows.Scan(&c.Cloud, &at, &c.Offerings); err != nil {
			return nil, err
		}
		c.ImportedAt = parseTime(at)
		out = append(out, c)
	}
	return out, rows.Err()
}
