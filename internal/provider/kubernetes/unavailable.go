package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/provider"
)

// Unavailable is the provider of a kubernetes cloud that could not be set
// up (New failed: unreadable kubeconfig, missing context): it runs nothing,
// its Health is the error, and the server can keep its other clouds
// working.
type Unavailable struct {
	Cloud string
	Err   error
}

// NewUnavailable returns the stand-in for a cloud whose New failed with err.
func NewUnavailable(cloud string, err error) *Unavailable {
	return &Unavailable{Cloud: cloud, Err: err}
}

var (
	_ provider.Provider         = (*Unavailable)(nil)
	_ provider.HealthReporter   = (*Unavailable)(nil)
	_ provider.CapacityReporter = (*Unavailable)(nil)
)

func (u *Unavailable) err() error { return fmt.Errorf("%w: %w", ErrUnavailable, u.Err) }

// Runtimes implements provider.Provider.
func (u *Unavailable) Runtimes() []string { return []string{"oci"} }

// Start implements provider.Provider: it always fails.
func (u *Unavailable) Start(context.Context, provider.Replica) (provider.Instance, error) {
	return provider.Instance{}, u.err()
}

// Adopt implements provider.Provider: it always fails (not ErrGone: the
// replica may still run).
func (u *Unavailable) Adopt(context.Context, provider.Replica, json.RawMessage) (provider.Instance, error) {
	return provider.Instance{}, u.err()
}

// Get implements provider.Provider.
func (u *Unavailable) Get(id string) (provider.Instance, error) {
	return provider.Instance{}, fmt.Errorf("%s: %w", id, provider.ErrNotFound)
}

// Stop implements provider.Provider: it fails, so the record is kept.
func (u *Unavailable) Stop(context.Context, string, time.Duration) error { return u.err() }

// Logs implements provider.Provider.
func (u *Unavailable) Logs(context.Context, string, provider.LogOptions) (io.ReadCloser, error) {
	return nil, u.err()
}

// Close implements provider.Provider.
func (u *Unavailable) Close() error { return nil }

// Health implements provider.HealthReporter.
func (u *Unavailable) Health() error { return u.err() }

// FreeCapacity implements provider.CapacityReporter: nothing.
func (u *Unavailable) FreeCapacity() v1.Capacity { return v1.Capacity{} }
