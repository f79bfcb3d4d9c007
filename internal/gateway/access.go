package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Access is a deployment's endpoint policy, enforced before any byte reaches
// a replica.
type Access struct {
	// Public admits any caller (subject to Allow).
	Public bool
	// Tokens maps the hex SHA-256 of each valid endpoint token to its expiry
	// (zero: none). Only consulted when Public is false.
	Tokens map[string]time.Time
	// Allow, when not empty, admits only client addresses inside one of the prefixes.
	Allow []netip.Prefix
}

// SetAccess sets a deployment's endpoint policy. Call it before SetBackends
// for a new deployment so it is never reachable without its policy.
func (g *Gateway) SetAccess(deployment string, a Access) {
	g.access.set(strings.ToLower(deployment), a)
}

var deniedText = map[string]string{
	"address":       "your address is not allowed",
	"missing_token": "this deployment needs an endpoint token: Authorization: Bearer aloftep_...",
	"invalid_token": "the endpoint token is not valid (unknown, expired or revoked)",
}

// endpointTokenPrefix marks aloft endpoint tokens (see internal/auth).
const endpointTokenPrefix = "aloftep_"

// accessTable holds the policy of every deployment that has one; a
// deployment without a policy is public.
type accessTable struct {
	mu sync.RWMutex
	m  map[string]*policy
}

// policy is Access prepared for the hot path: token hashes as arrays, so a
// check hashes once and does no encoding.
type policy struct {
	Access
	tokens map[[sha256.Size]byte]time.Time
}

func (t *accessTable) set(name string, a Access) {
	p := &policy{Access: a, tokens: make(map[[sha256.Size]byte]time.Time, len(a.Tokens))}
	for h, exp := range a.Tokens {
		var k [sha256.Size]byte
		if b, err := hex.DecodeString(h); err == nil && len(b) == sha256.Size {
			copy(k[:], b)
			p.tokens[k] = exp
		}
	}
	t.mu.Lock()
	if t.m == nil {
		t.m = map[string]*policy{}
	}
	t.m[name] = p
	t.mu.Unlock()
}

func (t *accessTable) remove(name string) {
	t.mu.Lock()
	delete(t.m, name)
	t.mu.Unlock()
}

// check decides whether r may reach deployment name. It returns 0 when
// allowed, else the status (401 or 403) and a reason for the denial metric.
// On success it removes the endpoint token from the request, so replicas
// never see it.
func (t *accessTable) check(name string, r *http.Request, now time.Time) (int, string) {
	t.mu.RLock()
	a := t.m[name]
	t.mu.RUnlock()
	if a == nil {
		return 0, ""
	}
	if len(a.Allow) > 0 {
		ip, ok := clientAddr(r)
		allowed := false
		for _, p := range a.Allow {
			if ok && p.Contains(ip) {
				allowed = true
				break
			}
		}
		if !allowed {
			return http.StatusForbidden, "address"
		}
	}
	if a.Public {
		return 0, ""
	}
	h := r.Header.Get("Authorization")
	scheme, tok, found := strings.Cut(h, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") || !strings.HasPrefix(strings.TrimSpace(tok), endpointTokenPrefix) {
		return http.StatusUnauthorized, "missing_token"
	}
	exp, ok := a.tokens[sha256.Sum256([]byte(strings.TrimSpace(tok)))]
	if !ok || (!exp.IsZero() && !now.Before(exp)) {
		return http.StatusUnauthorized, "invalid_token"
	}
	r.Header.Del("Authorization")
	return 0, ""
}

func clientAddr(r *http.Request) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}
