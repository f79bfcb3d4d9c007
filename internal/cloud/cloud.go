// Package cloud holds the configured clouds: each one's configuration and the
// provider that runs replicas on it. Live state (cordoned, failed) lives in the
// store; this package only pairs names with configs and providers.
package cloud

import (
	"fmt"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/provider"
)

// Cloud is one configured cloud and its provider.
type Cloud struct {
	Config   v1.CloudConfig
	Provider provider.Provider
}

// Factory builds the provider for a cloud config.
type Factory func(v1.CloudConfig) (provider.Provider, error)

// Registry is the fixed set of clouds a server runs with, in config order.
type Registry struct {
	list   []*Cloud
	byName map[string]*Cloud
}

// NewRegistry builds a provider for every config.
func NewRegistry(cfgs []v1.CloudConfig, factory Factory) (*Registry, error) {
	r := &Registry{byName: map[string]*Cloud{}}
	for _, cfg := range cfgs {
		if _, dup := r.byName[cfg.Name]; dup {
			return nil, fmt.Errorf("cloud %q configured twice", cfg.Name)
		}
		p, err := factory(cfg)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("cloud %s: %w", cfg.Name, err)
		}
		c := &Cloud{Config: cfg, Provider: p}
		r.list = append(r.list, c)
		r.byName[cfg.Name] = c
	}
	return r, nil
}

// List returns the clouds in config order.
func (r *Registry) List() []*Cloud { return r.list }

// Get returns a cloud by name.
func (r *Registry) Get(name string) (*Cloud, bool) {
	c, ok := r.byName[name]
	return c, ok
}

// Close closes every provider (replicas keep running for the next server).
func (r *Registry) Close() error {
	var first error
	for _, c := range r.list {
		if err := c.Provider.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
