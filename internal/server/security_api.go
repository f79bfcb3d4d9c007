package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/audit"
	"github.com/aloft-dev/aloft/internal/auth"
	"github.com/aloft-dev/aloft/internal/secrets"
	"github.com/aloft-dev/aloft/internal/store"
)

// decodeJSON strictly decodes a small JSON body; on failure it has answered 400.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body is larger than %d bytes", mbe.Limit))
			return false
		}
		writeError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
		return false
	}
	return true
}

func (a *API) whoami(w http.ResponseWriter, r *http.Request) {
	c := requestOf(r).caller
	writeJSON(w, http.StatusOK, v1.Identity{TokenID: c.TokenID, Owner: c.Owner, Role: string(c.Role), Workspace: c.Workspace})
}

func toTokenInfo(t store.Token) v1.TokenInfo {
	return v1.TokenInfo{ID: t.ID, Owner: t.Owner, Role: t.Role, Workspace: t.Workspace, CreatedAt: t.CreatedAt,
		ExpiresAt: t.ExpiresAt, LastUsedAt: t.LastUsedAt, RevokedAt: t.RevokedAt}
}

func (a *API) listTokens(w http.ResponseWriter, r *http.Request) {
	req := requestOf(r)
	ws := req.workspace
	if req.caller.Workspace == auth.AllWorkspaces && !req.explicit {
		ws = ""
	}
	toks, err := a.Store.ListTokens(r.Context(), ws)
	if err != nil {
		a.writeStoreError(w, err, "tokens")
		return
	}
	items := make([]v1.TokenInfo, 0, len(toks))
	for _, t := range toks {
		items = append(items, toTokenInfo(t))
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

// createToken makes an API token for the request's workspace ("*" for all,
// which only an all-workspace admin may do: Authorize checks that).
func (a *API) createToken(w http.ResponseWriter, r *http.Request) {
	var in v1.TokenRequest
	if !decodeJSON(w, r, &in) {
		return
	}
	role, err := auth.ParseRole(in.Role)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), v1.FieldError{Field: "role", Reason: err.Error()})
		return
	}
	ttl, err := auth.ParseTTL(in.TTL)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), v1.FieldError{Field: "ttl", Reason: err.Error()})
		return
	}
	ws := requestOf(r).workspace
	if ws != auth.AllWorkspaces && !a.workspaceExists(w, r, ws) {
		return
	}
	owner := in.Owner
	if owner == "" {
		owner = requestOf(r).caller.Owner
	}
	if len(owner) > 200 {
		writeError(w, http.StatusBadRequest, "owner is too long", v1.FieldError{Field: "owner", Reason: "at most 200 characters"})
		return
	}
	tok, err := newAPIToken(owner, role, ws, ttl)
	if err != nil {
		a.writeStoreError(w, err, "token")
		return
	}
	if err := a.Store.CreateToken(r.Context(), tok.Token); err != nil {
		a.writeStoreError(w, err, "token")
		return
	}
	writeJSON(w, http.StatusCreated, v1.NewToken{TokenInfo: toTokenInfo(tok.Token), Token: tok.Secret})
}

type createdToken struct {
	store.Token
	Secret string
}

func newAPIToken(owner string, role auth.Role, ws string, ttl time.Duration) (createdToken, error) {
	secret, hash, err := auth.NewSecret(auth.TokenPrefix)
	if err != nil {
		return createdToken{}, err
	}
	id, err := auth.NewID("tok_")
	if err != nil {
		return createdToken{}, err
	}
	now := time.Now().UTC()
	t := store.Token{ID: id, Hash: hash, Owner: owner, Role: string(role), Workspace: ws, CreatedAt: now}
	if ttl > 0 {
		exp := now.Add(ttl)
		t.ExpiresAt = &exp
	}
	return createdToken{Token: t, Secret: secret}, nil
}

func (a *API) revokeToken(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := a.Store.RevokeToken(r.Context(), id, time.Now()); err != nil {
		a.writeStoreError(w, err, fmt.Sprintf("token %q", id))
		return
	}
	t, err := a.Store.GetToken(r.Context(), id)
	if err != nil {
		a.writeStoreError(w, err, "token")
		return
	}
	writeJSON(w, http.StatusOK, toTokenInfo(t))
}

func (a *API) listWorkspaces(w http.ResponseWriter, r *http.Request) {
	ws, err := a.Store.ListWorkspaces(r.Context())
	if err != nil {
		a.writeStoreError(w, err, "workspaces")
		return
	}
	c := requestOf(r).caller
	items := []v1.Workspace{}
	for _, n := range ws {
		if c.Workspace == auth.AllWorkspaces || c.Workspace == n {
			items = append(items, v1.Workspace{Name: n})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

func (a *API) createWorkspace(w http.ResponseWriter, r *http.Request) {
	var in v1.Workspace
	if !decodeJSON(w, r, &in) {
		return
	}
	if !v1.IsDNS1123Label(in.Name) {
		writeError(w, http.StatusBadRequest, "invalid workspace name", v1.FieldError{Field: "name", Reason: "must be a DNS-1123 label (lower-case letters, digits, '-')"})
		return
	}
	if err := a.Store.CreateWorkspace(r.Context(), in.Name); err != nil {
		a.writeStoreError(w, err, "workspace")
		return
	}
	writeJSON(w, http.StatusCreated, in)
}

// Secrets: values go in, never come out.

func (a *API) listSecrets(w http.ResponseWriter, r *http.Request) {
	list, err := a.Store.ListSecrets(r.Context(), requestOf(r).workspace)
	if err != nil {
		a.writeStoreError(w, err, "secrets")
		return
	}
	items := make([]v1.SecretInfo, 0, len(list))
	for _, s := range list {
		items = append(items, v1.SecretInfo{Name: s.Name, Workspace: s.Workspace, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt})
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

// secretAAD binds a sealed value to its workspace and name.
func secretAAD(ws, name string) []byte { return []byte("aloft-secret\x00" + ws + "\x00" + name) }

func (a *API) putSecret(w http.ResponseWriter, r *http.Request) {
	name, ws := r.PathValue("name"), requestOf(r).workspace
	if !v1.IsDNS1123Label(name) {
		writeError(w, http.StatusBadRequest, "invalid secret name", v1.FieldError{Field: "name", Reason: "must be a DNS-1123 label such as openai-key"})
		return
	}
	var in v1.SecretValue
	if !decodeJSON(w, r, &in) {
		return
	}
	if in.Value == "" {
		writeError(w, http.StatusBadRequest, "value is required", v1.FieldError{Field: "value", Reason: "must not be empty"})
		return
	}
	if !a.workspaceExists(w, r, ws) {
		return
	}
	// Not during a key rotation: a value sealed under the old key after the
	// re-wrap would not open once the old key file is replaced.
	a.rotateMu.Lock()
	defer a.rotateMu.Unlock()
	plain := []byte(in.Value)
	sealed, err := a.Keys.Load().Seal(plain, secretAAD(ws, name))
	secrets.Zero(plain)
	if err != nil {
		a.Logger.Error("seal secret", "workspace", ws, "secret", name, "err", err)
		writeError(w, http.StatusInternalServerError, "could not encrypt the secret")
		return
	}
	blob, _ := json.Marshal(sealed)
	created, err := a.Store.PutSecret(r.Context(), store.Secret{Workspace: ws, Name: name, Sealed: blob})
	if err != nil {
		a.writeStoreError(w, err, "secret")
		return
	}
	a.Controller.EnqueueAll() // deployments waiting for it can start
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	writeJSON(w, code, v1.SecretInfo{Name: name, Workspace: ws})
}

func (a *API) deleteSecret(w http.ResponseWriter, r *http.Request) {
	name, ws := r.PathValue("name"), requestOf(r).workspace
	if err := a.Store.DeleteSecret(r.Context(), ws, name); err != nil {
		a.writeStoreError(w, err, fmt.Sprintf("secret %q in workspace %q", name, ws))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// rotateKey re-wraps every data key under a new key-encryption key. The new
// key is written beside the old one first, so a crash at any point leaves
// every secret readable (the server loads both on start).
func (a *API) rotateKey(w http.ResponseWriter, r *http.Request) {
	if a.KeyFile == "" {
		writeError(w, http.StatusConflict, "the key-encryption key comes from the environment (ALOFT_SECRETS_KEY); rotate it there, or start the server with --secrets-key-file")
		return
	}
	a.rotateMu.Lock()
	defer a.rotateMu.Unlock()
	newKEK, err := secrets.BeginRotation(a.KeyFile)
	if err != nil {
		a.Logger.Error("begin key rotation", "err", err)
		writeError(w, http.StatusInternalServerError, "could not write the new key file")
		return
	}
	// Loading the key file now yields the new key as current and the old one beside it.
	ring, _, _, err := secrets.Resolve("", a.KeyFile, false)
	if err != nil || ring.Current().ID != newKEK.ID {
		a.Logger.Error("reload keys for rotation", "err", err)
		writeError(w, http.StatusInternalServerError, "could not load the new key; the old key still opens every secret")
		return
	}
	n, err := a.Store.RewrapSecrets(r.Context(), func(s store.Secret) ([]byte, error) {
		var sealed secrets.Sealed
		if err := json.Unmarshal(s.Sealed, &sealed); err != nil {
			return nil, err
		}
		re, err := ring.Rewrap(sealed)
		if err != nil {
			return nil, err
		}
		return json.Marshal(re)
	})
	if err != nil {
		a.Logger.Error("rewrap secrets", "err", err)
		writeError(w, http.StatusInternalServerError, "re-wrapping failed; the old key still opens every secret")
		return
	}
	if err := secrets.CommitRotation(a.KeyFile); err != nil {
		a.Logger.Error("commit key rotation", "err", err)
		writeError(w, http.StatusInternalServerError, "secrets were re-wrapped but the key file could not be replaced; both keys are kept")
		a.Keys.Store(ring)
		return
	}
	a.Keys.Store(ring)
	writeJSON(w, http.StatusOK, v1.RotateResult{Rewrapped: n, KeyID: newKEK.ID})
}

// Endpoint tokens: gateway access to one private deployment.

func (a *API) listEndpointTokens(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, err := a.deploymentInScope(r); err != nil {
		a.writeStoreError(w, err, fmt.Sprintf("deployment %q", name))
		return
	}
	toks, err := a.Store.ListEndpointTokens(r.Context(), name)
	if err != nil {
		a.writeStoreError(w, err, "endpoint tokens")
		return
	}
	items := make([]v1.EndpointTokenInfo, 0, len(toks))
	for _, t := range toks {
		items = append(items, v1.EndpointTokenInfo{ID: t.ID, Name: t.Name, Deployment: t.Deployment, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt, RevokedAt: t.RevokedAt})
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

func (a *API) createEndpointToken(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	d, err := a.deploymentInScope(r)
	if err != nil {
		a.writeStoreError(w, err, fmt.Sprintf("deployment %q", name))
		return
	}
	var in v1.EndpointTokenRequest
	if !decodeJSON(w, r, &in) {
		return
	}
	ttl, err := auth.ParseTTL(in.TTL)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), v1.FieldError{Field: "ttl", Reason: err.Error()})
		return
	}
	if len(in.Name) > 100 {
		writeError(w, http.StatusBadRequest, "name is too long", v1.FieldError{Field: "name", Reason: "at most 100 characters"})
		return
	}
	secret, hash, err := auth.NewSecret(auth.EndpointTokenPrefix)
	if err != nil {
		a.writeStoreError(w, err, "endpoint token")
		return
	}
	id, _ := auth.NewID("ept_")
	now := time.Now().UTC()
	t := store.EndpointToken{ID: id, Hash: hash, Workspace: d.Workspace, Deployment: name, Name: in.Name, CreatedAt: now}
	if ttl > 0 {
		exp := now.Add(ttl)
		t.ExpiresAt = &exp
	}
	if err := a.Store.CreateEndpointToken(r.Context(), t); err != nil {
		a.writeStoreError(w, err, "endpoint token")
		return
	}
	a.Controller.Enqueue(name)
	writeJSON(w, http.StatusCreated, v1.NewEndpointToken{
		EndpointTokenInfo: v1.EndpointTokenInfo{ID: id, Name: in.Name, Deployment: name, CreatedAt: now, ExpiresAt: t.ExpiresAt},
		Token:             secret,
	})
}

func (a *API) revokeEndpointToken(w http.ResponseWriter, r *http.Request) {
	name, id := r.PathValue("name"), r.PathValue("id")
	if _, err := a.deploymentInScope(r); err != nil {
		a.writeStoreError(w, err, fmt.Sprintf("deployment %q", name))
		return
	}
	if err := a.Store.RevokeEndpointToken(r.Context(), name, id, time.Now()); err != nil {
		a.writeStoreError(w, err, fmt.Sprintf("endpoint token %q of deployment %q", id, name))
		return
	}
	a.Controller.Enqueue(name)
	w.WriteHeader(http.StatusNoContent)
}

// Audit log.

func (a *API) listAudit(w http.ResponseWriter, r *http.Request) {
	req := requestOf(r)
	q := r.URL.Query()
	f := store.AuditFilter{Workspace: req.workspace, TokenID: q.Get("token"), Action: q.Get("action"), Result: q.Get("result")}
	if req.caller.Workspace == auth.AllWorkspaces && !req.explicit {
		f.Workspace = ""
	}
	if s := q.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			writeError(w, http.StatusBadRequest, "since must be an RFC 3339 time such as 2026-01-02T15:04:05Z", v1.FieldError{Field: "since", Reason: "not an RFC 3339 time"})
			return
		}
		f.Since = t
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 10000 {
			writeError(w, http.StatusBadRequest, "limit must be 1..10000", v1.FieldError{Field: "limit", Reason: "must be 1..10000"})
			return
		}
		f.Limit = n
	}
	recs, err := a.Store.ListAudit(r.Context(), f)
	if err != nil {
		a.writeStoreError(w, err, "audit")
		return
	}
	items := make([]v1.AuditRecord, 0, len(recs))
	for _, rec := range recs {
		items = append(items, v1.AuditRecord{Seq: rec.Seq, Time: rec.Time, TokenID: rec.TokenID, Workspace: rec.Workspace,
			Action: rec.Action, Object: rec.Object, Source: rec.Source, Result: rec.Result, Hash: rec.Hash})
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

func (a *API) verifyAudit(w http.ResponseWriter, r *http.Request) {
	recs, err := a.Store.ListAudit(r.Context(), store.AuditFilter{})
	if err != nil {
		a.writeStoreError(w, err, "audit")
		return
	}
	res := v1.AuditVerification{Records: len(recs), OK: true}
	if len(recs) > 0 {
		res.Head = recs[len(recs)-1].Hash
	}
	if p := audit.Verify(recs); p != nil {
		res.OK, res.FirstBadSeq, res.Problem = false, p.Seq, p.Reason
	}
	writeJSON(w, http.StatusOK, res)
}
