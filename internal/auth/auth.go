// Package auth is aloft's identity and access model: API tokens (random
// 256-bit secrets stored only as SHA-256 hashes), roles, workspaces, the
// permission each API action needs, and per-token rate limits.
//
// The decision core, Authorize, is pure: a function of the caller and the
// action, table-tested over every route, role and workspace.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Role is what a token may do.
type Role string

const (
	// Viewer reads deployments, events, clouds.
	Viewer Role = "viewer"
	// Developer also deploys, scales, deletes, reads logs and manages secrets and endpoint tokens.
	Developer Role = "developer"
	// Admin also manages API tokens, clouds, workspaces and reads the audit log.
	Admin Role = "admin"
)

// Roles lists every role, weakest first.
var Roles = []Role{Viewer, Developer, Admin}

func (r Role) rank() int {
	for i, x := range Roles {
		if x == r {
			return i + 1
		}
	}
	return 0
}

// ParseRole validates a role name.
func ParseRole(s string) (Role, error) {
	r := Role(strings.ToLower(strings.TrimSpace(s)))
	if r.rank() == 0 {
		return "", fmt.Errorf("unknown role %q: use viewer, developer or admin", s)
	}
	return r, nil
}

// DefaultWorkspace is where objects live when no workspace is named.
const DefaultWorkspace = "default"

// AllWorkspaces is the workspace of a token that spans every workspace (the
// first admin token).
const AllWorkspaces = "*"

// Permission is the least role an action needs and whether the action is
// confined to one workspace.
type Permission struct {
	Role Role
	// Scoped: the action touches objects of one workspace, and a token of
	// another workspace is refused. Unscoped actions (clouds, tokens of all
	// workspaces) need a token that spans every workspace when they change things.
	Scoped bool
}

// Caller is the authenticated identity of a request.
type Caller struct {
	TokenID   string
	Owner     string
	Role      Role
	Workspace string // a workspace name, or AllWorkspaces
}

// Errors of Authorize.
var (
	ErrForbiddenRole      = errors.New("forbidden: role")
	ErrForbiddenWorkspace = errors.New("forbidden: workspace")
)

// Authorize decides whether caller may perform an action that needs p on
// objects of workspace ws ("" for unscoped actions).
func Authorize(c Caller, p Permission, ws string) error {
	if c.Role.rank() < p.Role.rank() {
		return fmt.Errorf("%w: %s needs role %s, token has %s", ErrForbiddenRole, "this action", p.Role, c.Role)
	}
	if c.Workspace == AllWorkspaces {
		return nil
	}
	if p.Scoped {
		if ws != c.Workspace {
			return fmt.Errorf("%w: token is for workspace %q, not %q", ErrForbiddenWorkspace, c.Workspace, ws)
		}
		return nil
	}
	// Unscoped admin actions (clouds, workspaces) need a token for all workspaces.
	if p.Role == Admin {
		return fmt.Errorf("%w: this action needs an admin token for all workspaces", ErrForbiddenWorkspace)
	}
	return nil
}

// TokenPrefix starts every API token, so leaked tokens are easy to find.
const TokenPrefix = "aloft_"

// EndpointTokenPrefix starts every endpoint token (gateway access).
const EndpointTokenPrefix = "aloftep_"

// secretBytes is the token entropy: 256 bits.
const secretBytes = 32

// NewSecret returns a fresh random token with the given prefix, and its hash.
func NewSecret(prefix string) (secret, hash string, err error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	secret = prefix + base64.RawURLEncoding.EncodeToString(b)
	return secret, HashSecret(secret), nil
}

// HashSecret is the stored form of a token: hex SHA-256. Tokens are 256-bit
// random values, so a fast hash is enough (no password stretching needed).
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// EqualHash compares two hashes in constant time.
func EqualHash(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// NewID returns a short public identifier for a token ("tok_" + 12 hex).
func NewID(prefix string) (string, error) {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return prefix + hex.EncodeToString(b), nil
}

// ErrMalformed is returned for an Authorization header that is not a well-formed token.
var ErrMalformed = errors.New("malformed token")

// encodedLen is the length of the base64 part of a token.
var encodedLen = base64.RawURLEncoding.EncodedLen(secretBytes)

// ParseBearer extracts a token from an Authorization header value. It checks
// the shape only (scheme, prefix, length, alphabet); whether the token exists
// is the store's question. Errors never echo the header.
func ParseBearer(header, prefix string) (string, error) {
	scheme, rest, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", fmt.Errorf("%w: expected \"Authorization: Bearer <token>\"", ErrMalformed)
	}
	return ParseToken(strings.TrimSpace(rest), prefix)
}

// ParseToken checks a bare token's shape.
func ParseToken(tok, prefix string) (string, error) {
	body, ok := strings.CutPrefix(tok, prefix)
	if !ok {
		return "", fmt.Errorf("%w: token must start with %q", ErrMalformed, prefix)
	}
	if len(body) != encodedLen {
		return "", fmt.Errorf("%w: token has the wrong length", ErrMalformed)
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return "", fmt.Errorf("%w: token has a character outside base64url", ErrMalformed)
		}
	}
	if _, err := base64.RawURLEncoding.DecodeString(body); err != nil {
		return "", fmt.Errorf("%w: token is not base64url", ErrMalformed)
	}
	return tok, nil
}

// MaxTTL is the longest token lifetime accepted (10 years).
const MaxTTL = 10 * 365 * 24 * time.Hour

// ParseTTL reads a token lifetime such as "30d", "12h" or "90m"; "" or "0"
// means no expiry. Lifetimes over MaxTTL are refused.
func ParseTTL(s string) (time.Duration, error) {
	d, err := parseTTL(s)
	if err == nil && d > MaxTTL {
		return 0, fmt.Errorf("ttl %q is longer than 10 years; leave it out for a token that does not expire", s)
	}
	return d, err
}

func parseTTL(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return 0, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		if _, err := fmt.Sscanf(d, "%d", &n); err != nil || n <= 0 || n > 3650*10 || fmt.Sprint(n) != d {
			return 0, fmt.Errorf("ttl %q: use a positive number of days like 30d, or a duration like 12h", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("ttl %q: use a positive duration like 12h or 30d", s)
	}
	return d, nil
}
