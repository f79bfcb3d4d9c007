// Package store keeps aloft's durable state: deployments and their revisions,
// replica records, events, cloud state and cloud price catalogs. Every
// acknowledged API change is in the store before the API answers; controllers
// read desired state from it and write observed state back. The SQLite
// implementation is the embedded default.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/catalog"
)

var (
	// ErrNotFound: no such object.
	ErrNotFound = errors.New("not found")
	// ErrExists: an object of that name already exists (or is still being deleted).
	ErrExists = errors.New("already exists")
	// ErrConflict: the object changed since it was read (optimistic concurrency).
	ErrConflict = errors.New("conflict")
)

// Deployment is the stored desired state of one deployment.
type Deployment struct {
	Name      string
	Workspace string
	Spec      v1.DeploymentSpec
	Revision  int64 // current revision: bumps when the replica template changes
	// Generation bumps on every accepted change (template, replicas, placement).
	Generation int64
	CreatedAt  time.Time
	UpdatedAt  time.Time
	// DeletedAt is set when deletion was requested; the controller removes the
	// row once every replica is gone.
	DeletedAt *time.Time
	Status    v1.DeploymentStatus
}

// Replica is aloft's record of one replica: written before the provider is
// asked to start it, so a crash in between leaves a record to reconcile.
type Replica struct {
	ID         string
	Deployment string
	Revision   int64
	Cloud      string
	State      v1.ReplicaState
	Endpoint   string
	StartedAt  *time.Time
	Restarts   int
	Message    string
	HourlyCost float64
	Handle     json.RawMessage
	CreatedAt  time.Time
	// Draining: removed from routing, to be stopped once idle.
	Draining bool
	// Where placement put the replica in its cloud; empty region, zone and
	// instance type for a cloud that is one offering (a local cloud).
	Region, Zone, InstanceType string
	Spot                       bool
}

// CloudState is the live, stored state of a configured cloud.
type CloudState struct {
	Name     string
	Cordoned bool
	Failed   bool
}

// Store is the persistence interface every implementation provides.
type Store interface {
	// ApplyDeployment creates or updates a deployment. A change to the replica
	// template (anything but replicas and placement) creates a new revision.
	// It reports whether the deployment was created and whether anything changed.
	// A deployment belongs to one workspace; its name is unique across all of them.
	ApplyDeployment(ctx context.Context, workspace string, spec v1.DeploymentSpec, mode ApplyMode) (d Deployment, created, changed bool, err error)
	GetDeployment(ctx context.Context, name string) (Deployment, error)
	ListDeployments(ctx context.Context) ([]Deployment, error)
	// MarkDeleted requests deletion; RemoveDeployment drops the row and its revisions.
	MarkDeleted(ctx context.Context, name string) (Deployment, error)
	RemoveDeployment(ctx context.Context, name string) error
	ListRevisions(ctx context.Context, name string) ([]v1.Revision, error)
	GetRevision(ctx context.Context, name string, revision int64) (v1.Revision, error)
	SetStatus(ctx context.Context, name string, status v1.DeploymentStatus) error

	PutReplica(ctx context.Context, r Replica) error
	DeleteReplica(ctx context.Context, id string) error
	ListReplicas(ctx context.Context, deployment string) ([]Replica, error)
	ListAllReplicas(ctx context.Context) ([]Replica, error)

	AddEvent(ctx context.Context, e v1.Event) (v1.Event, error)
	// ListEvents returns events of a deployment with ID > afterID, oldest first.
	ListEvents(ctx context.Context, deployment string, afterID int64, limit int) ([]v1.Event, error)

	SetCloudState(ctx context.Context, s CloudState) error
	ListCloudStates(ctx context.Context) ([]CloudState, error)

	// ReplaceCatalog replaces the cloud's price catalog in one transaction:
	// its previous offerings are all replaced, or nothing changes.
	ReplaceCatalog(ctx context.Context, cloud string, offs []catalog.Offering, at time.Time) error
	ListOfferings(ctx context.Context, f OfferingFilter) ([]catalog.Offering, error)
	CatalogClouds(ctx context.Context) ([]CatalogInfo, error)

	Security

	Close() error
}

// ApplyMode says whether ApplyDeployment may create, update, or both.
type ApplyMode int

const (
	CreateOrUpdate ApplyMode = iota
	CreateOnly
	UpdateOnly
)
