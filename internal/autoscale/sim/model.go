package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// Model is the replica, gateway, SLO and price model of a run. See the
// package documentation for what each field means.
type Model struct {
	Slots             int           `json:"slots"`             // concurrent requests a replica serves
	PrefillRate       float64       `json:"prefillRate"`       // prompt tokens per second, per request
	DecodeRate        float64       `json:"decodeRate"`        // generated tokens per second, per request
	Queue             int           `json:"queue"`             // requests a replica holds waiting beyond its slots
	ColdStart         time.Duration `json:"coldStart"`         // asked for → ready
	ActivationQueue   int           `json:"activationQueue"`   // requests the gateway holds while no replica is ready
	ActivationTimeout time.Duration `json:"activationTimeout"` // longest wait in the activation queue
	SLOSlack          time.Duration `json:"sloSlack"`          // allowed latency beyond the service time
	PricePerHour      float64       `json:"pricePerHour"`      // USD per replica-hour
	MaxReplicas       int           `json:"maxReplicas"`       // upper bound for every policy
	Utilization       float64       `json:"utilization"`       // target slot utilisation: aloft's and kpa-tuned's concurrency target is Utilization x Slots; static and skyserve are sized with it
}

// DefaultModel is the model `aloft sim` uses without flags.
func DefaultModel() Model {
	return Model{
		Slots:             8,
		PrefillRate:       2000,
		DecodeRate:        40,
		Queue:             120,
		ColdStart:         30 * time.Second,
		ActivationQueue:   1000,
		ActivationTimeout: 60 * time.Second,
		SLOSlack:          2 * time.Second,
		PricePerHour:      2,
		MaxReplicas:       100,
		Utilization:       0.7,
	}
}

// Validate says which field is out of range.
func (m Model) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if m.Slots < 1 {
		bad("slots must be at least 1, not %d", m.Slots)
	}
	if !(m.PrefillRate > 0) || math.IsInf(m.PrefillRate, 0) {
		bad("prefill rate must be a positive number of tokens per second, not %g", m.PrefillRate)
	}
	if !(m.DecodeRate > 0) || math.IsInf(m.DecodeRate, 0) {
		bad("decode rate must be a positive number of tokens per second, not %g", m.DecodeRate)
	}
	if m.Queue < 0 {
		bad("queue must not be negative, not %d", m.Queue)
	}
	if m.ColdStart < 0 {
		bad("cold start must not be negative, not %s", m.ColdStart)
	}
	if m.ActivationQueue < 0 {
		bad("activation queue must not be negative, not %d", m.ActivationQueue)
	}
	if m.ActivationTimeout <= 0 {
		bad("activation timeout must be positive, not %s", m.ActivationTimeout)
	}
	if m.SLOSlack < 0 {
		bad("SLO slack must not be negative, not %s", m.SLOSlack)
	}
	if m.PricePerHour < 0 || math.IsNaN(m.PricePerHour) || math.IsInf(m.PricePerHour, 0) {
		bad("price must be a non-negative number of USD per hour, not %g", m.PricePerHour)
	}
	if m.MaxReplicas < 1 {
		bad("max replicas must be at least 1, not %d", m.MaxReplicas)
	}
	if !(m.Utilization > 0 && m.Utilization <= 1) {
		bad("utilization must be in (0, 1], not %g", m.Utilization)
	}
	return errors.Join(errs...)
}

// ServiceTime is how long a request holds a slot: prefill plus decode.
func (m Model) ServiceTime(in, out int) time.Duration {
	s := float64(in)/m.PrefillRate + float64(out)/m.DecodeRate
	return time.Duration(math.Round(s * float64(time.Second)))
}

// ReplicaQPS is the request rate one replica sustains at the model's target
// utilisation for requests of the given mean service time.
func (m Model) ReplicaQPS(meanService time.Duration) float64 {
	if meanService <= 0 {
		return math.Inf(1)
	}
	return m.Utilization * float64(m.Slots) / meanService.Seconds()
}

// MarshalJSON writes the durations as Go duration strings ("30s").
func (m Model) MarshalJSON() ([]byte, error) {
	type plain Model
	return json.Marshal(struct {
		plain
		ColdStart         string `json:"coldStart"`
		ActivationTimeout string `json:"activationTimeout"`
		SLOSlack          string `json:"sloSlack"`
	}{plain(m), m.ColdStart.String(), m.ActivationTimeout.String(), m.SLOSlack.String()})
}
