package v1

import "time"

// Identity is who a token belongs to (GET /api/v1/whoami).
type Identity struct {
	TokenID   string `json:"tokenId"`
	Owner     string `json:"owner"`
	Role      string `json:"role"`
	Workspace string `json:"workspace"` // "*" for all workspaces
}

// TokenRequest asks for a new API token; the workspace is the request's.
type TokenRequest struct {
	Role  string `json:"role"`
	TTL   string `json:"ttl,omitempty"` // e.g. "12h", "30d"; empty means no expiry
	Owner string `json:"owner,omitempty"`
}

// TokenInfo describes an API token; the token itself is never shown again.
type TokenInfo struct {
	ID         string     `json:"id"`
	Owner      string     `json:"owner"`
	Role       string     `json:"role"`
	Workspace  string     `json:"workspace"`
	CreatedAt  time.Time  `json:"createdAt"`
	ExpiresAt  *time.Time `json:"expiresAt,omitempty"`
	LastUsedAt *time.Time `json:"lastUsedAt,omitempty"`
	RevokedAt  *time.Time `json:"revokedAt,omitempty"`
}

// NewToken is the answer to a token creation: the only time the token is shown.
type NewToken struct {
	TokenInfo
	Token string `json:"token"`
}

// Workspace isolates deployments, secrets, tokens and events.
type Workspace struct {
	Name string `json:"name"`
}

// SecretValue is the body of PUT /api/v1/secrets/{name}.
type SecretValue struct {
	Value string `json:"value"`
}

// SecretInfo describes a secret; values are write-only.
type SecretInfo struct {
	Name      string    `json:"name"`
	Workspace string    `json:"workspace"`
	CreatedAt time.Time `json:"createdAt,omitzero"`
	UpdatedAt time.Time `json:"updatedAt,omitzero"`
}

// RotateResult reports a key-encryption-key rotation.
type RotateResult struct {
	Rewrapped int    `json:"rewrapped"`
	KeyID     string `json:"keyId"`
}

// EndpointTokenRequest asks for a gateway token for one deployment.
type EndpointTokenRequest struct {
	Name string `json:"name,omitempty"`
	TTL  string `json:"ttl,omitempty"`
}

// EndpointTokenInfo describes an endpoint token.
type EndpointTokenInfo struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Deployment string     `json:"deployment"`
	CreatedAt  time.Time  `json:"createdAt"`
	ExpiresAt  *time.Time `json:"expiresAt,omitempty"`
	RevokedAt  *time.Time `json:"revokedAt,omitempty"`
}

// NewEndpointToken is shown once, at creation.
type NewEndpointToken struct {
	EndpointTokenInfo
	Token string `json:"token"`
}

// AuditRecord is one entry of the audit log.
type AuditRecord struct {
	Seq       int64     `json:"seq"`
	Time      time.Time `json:"time"`
	TokenID   string    `json:"tokenId"`
	Workspace string    `json:"workspace"`
	Action    string    `json:"action"`
	Object    string    `json:"object"`
	Source    string    `json:"source"`
	Result    string    `json:"result"`
	Hash      string    `json:"hash"`
}

// AuditVerification is the result of recomputing the audit chain.
type AuditVerification struct {
	OK          bool   `json:"ok"`
	Records     int    `json:"records"`
	Head        string `json:"head,omitempty"`
	FirstBadSeq int64  `json:"firstBadSeq,omitempty"`
	Problem     string `json:"problem,omitempty"`
}
