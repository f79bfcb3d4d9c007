package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// ErrUnavailable is wrapped by Health, and by Start and Stop while the
// cloud is unavailable.
var ErrUnavailable = errors.New("kubernetes API server unavailable")

// health tracks whether the API server answers: the /readyz probe and every
// list and watch the informers make report here.
type health struct {
	server string
	after  time.Duration

	mu     sync.Mutex
	lastOK time.Time // last time the server answered the probe
	probe  error     // the probe's last error, nil after a success
	// lists holds the last list or watch error per informer, nil after a
	// success.
	lists map[string]error
}

func newHealth(server string, after time.Duration, now time.Time) *health {
	// The provider starts healthy: a server that never answers becomes
	// unavailable after the same grace as one that stops answering.
	return &health{server: server, after: after, lastOK: now, lists: map[string]error{}}
}

func (h *health) probed(err error, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		h.lastOK = now
	}
	h.probe = err
}

func (h *health) listed(informer string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lists[informer] = err
}

// listErr returns the last list or watch error of an informer.
func (h *health) listErr(informer string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lists[informer]
}

// check returns nil while the server answered within the last h.after and
// aloft may list and watch what it needs; otherwise an error naming why.
func (h *health) check(now time.Time, required ...string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if since := now.Sub(h.lastOK); since > h.after {
		cause := h.probe
		if cause == nil {
			cause = errors.New("no answer")
		}
		return fmt.Errorf("%w: %s has not answered for %s (limit %s): %s", ErrUnavailable, h.server, since.Round(time.Second), h.after, describe(cause, h.server))
	}
	for _, name := range required {
		if err := h.lists[name]; err != nil && (apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err)) {
			return fmt.Errorf("%w: cannot watch %s: %s", ErrUnavailable, name, describe(err, h.server))
		}
	}
	return nil
}

// describe names the cause of an API error for people: unreachable,
// unauthorized, forbidden, or the error itself.
func describe(err error, server string) string {
	var nerr net.Error
	var uerr *url.Error
	switch {
	case err == nil:
		return ""
	case apierrors.IsUnauthorized(err):
		return "unauthorized: the kubeconfig's credentials were rejected (" + err.Error() + ")"
	case apierrors.IsForbidden(err):
		return "forbidden by RBAC: " + err.Error()
	case errors.Is(err, syscall.ECONNREFUSED):
		return "unreachable: connection to " + server + " refused"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &nerr) && nerr.Timeout():
		return "unreachable: " + server + " timed out"
	case errors.As(err, &uerr):
		return "unreachable: " + err.Error()
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return "unreachable: " + err.Error()
	}
	return err.Error()
}
