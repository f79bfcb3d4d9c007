// Package provider defines the one small interface through which aloft starts,
// observes and stops replicas on a cloud. Nothing above it knows which
// implementation (local processes, OCI containers, Kubernetes) it talks to.
package provider

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
)

// Replica is what a provider is asked to run: one copy of a deployment revision.
type Replica struct {
	ID         string
	Deployment string
	Revision   int64
	// Spec is the normalised deployment spec of Revision (defaults applied).
	Spec v1.DeploymentSpec
	// Env is extra environment aloft adds (ALOFT_REPLICA_ID etc.); PORT is the provider's job.
	Env []string
	// Where placement put the replica within the cloud: region, zone,
	// instance type and purchase option (empty for a cloud that is one
	// offering, such as a local cloud without a catalog).
	Region, Zone, InstanceType string
	Spot                       bool
}

// Instance is what a provider observes of one replica it runs.
type Instance struct {
	ID        string
	State     v1.ReplicaState // Starting, Ready, BackOff or Failed
	Endpoint  string          // base URL the gateway dials, e.g. http://127.0.0.1:41234
	StartedAt time.Time
	Restarts  int
	Message   string
	// Handle is the provider's own record (pid, start time, paths), persisted by
	// aloft so that Adopt can find the replica again after a server restart.
	Handle json.RawMessage
}

// LogOptions select what Logs returns.
type LogOptions struct {
	Follow bool
	// TailBytes limits the initial output to the last N bytes; 0 means all kept.
	TailBytes int64
}

// ErrNotFound is returned for a replica the provider does not run.
var ErrNotFound = errors.New("replica not found")

// ErrGone is returned by Adopt when the replica no longer runs.
var ErrGone = errors.New("replica is gone")

// ErrCapacity is wrapped by Start when the cloud has no capacity for the
// replica's instance type in its region and zone now (a stock-out or quota
// error). Placement then avoids that offering for a while and re-plans.
var ErrCapacity = errors.New("no capacity")

// Provider runs replicas on one cloud.
type Provider interface {
	// Runtimes lists what this cloud can run: "process", "oci".
	Runtimes() []string
	// Start launches the replica and returns at once; readiness is reported later
	// through Get and the change callback.
	Start(ctx context.Context, r Replica) (Instance, error)
	// Adopt takes over a replica started by an earlier server process, from the
	// Handle it returned then. It returns ErrGone if the replica no longer runs.
	Adopt(ctx context.Context, r Replica, handle json.RawMessage) (Instance, error)
	// Get returns the current observation of a replica.
	Get(id string) (Instance, error)
	// Stop terminates the replica: SIGTERM (or equivalent), up to grace, then kill.
	// Stopping a replica that is not running is not an error.
	Stop(ctx context.Context, id string, grace time.Duration) error
	// Logs streams the replica's captured stdout and stderr.
	Logs(ctx context.Context, id string, opts LogOptions) (io.ReadCloser, error)
	// Close releases the provider's resources without stopping replicas, so a
	// later server process can adopt them.
	Close() error
}

// Dialer is implemented by providers whose replicas are not reached by a
// plain TCP dial of their Endpoint, e.g. containers that each listen on the
// same port inside a network namespace of their own. Dialer returns the dial
// function for one replica, or nil when a plain dial does.
type Dialer interface {
	Dialer(replicaID string) func(ctx context.Context, network, addr string) (net.Conn, error)
}

// RuntimeReporter is implemented by providers that can say why a runtime is
// not offered, e.g. {"oci": "runc not found (install the runc package)"}.
type RuntimeReporter interface {
	MissingRuntimes() map[string]string
}

// HealthReporter is implemented by providers whose cloud can become
// unreachable as a whole, such as a Kubernetes cluster whose API server
// stops answering. Health returns nil while the cloud answers, else an
// error naming the cause.
type HealthReporter interface {
	Health() error
}

// CapacityReporter is implemented by providers that observe how much of
// their cloud is free now (CPU cores, memory and GPUs per aloft GPU type).
type CapacityReporter interface {
	FreeCapacity() v1.Capacity
}
