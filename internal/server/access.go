package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/aloft-dev/aloft/internal/audit"
	"github.com/aloft-dev/aloft/internal/auth"
	"github.com/aloft-dev/aloft/internal/store"
)

type ctxKey int

const requestKey ctxKey = 1

// request is what the guard learned about a call: who, and which workspace.
type request struct {
	caller auth.Caller
	// workspace the route acts on; "" for unscoped routes.
	workspace string
	// explicit: the client named the workspace (?workspace= or header).
	explicit bool
}

func requestOf(r *http.Request) request {
	v, _ := r.Context().Value(requestKey).(request)
	return v
}

// statusRecorder remembers the status a handler wrote, for the audit log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// guard authenticates, rate-limits, resolves the workspace, authorizes and
// audits one route.
func (a *API) guard(rt Route) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if rt.Public {
			rt.Handler(a, w, r)
			return
		}
		if !rt.RawBody {
			r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		}
		rec := &statusRecorder{ResponseWriter: w}
		caller, err := a.authenticate(r)
		if err != nil {
			a.deny(rec, r, rt, auth.Caller{}, "", http.StatusUnauthorized, err.Error())
			return
		}
		if ok, wait := a.Limiter.Allow(caller.TokenID, time.Now()); !ok {
			rec.Header().Set("Retry-After", strconv.Itoa(auth.RetryAfterSeconds(wait)))
			a.deny(rec, r, rt, caller, "", http.StatusTooManyRequests, "rate limit exceeded for this token; retry later")
			return
		}
		req, err := a.resolveWorkspace(r, rt, caller)
		if err != nil {
			a.deny(rec, r, rt, caller, "", http.StatusBadRequest, err.Error())
			return
		}
		if err := auth.Authorize(caller, auth.Permission{Role: rt.Role, Scoped: rt.Scope != Unscoped}, req.workspace); err != nil {
			a.deny(rec, r, rt, caller, req.workspace, http.StatusForbidden, err.Error())
			return
		}
		rt.Handler(a, rec, r.WithContext(context.WithValue(r.Context(), requestKey, req)))
		if rt.Method != http.MethodGet {
			a.audit(r, rt, caller, req.workspace, resultOf(rec.status))
		}
	}
}

func resultOf(status int) string {
	switch {
	case status == 0 || status < 400:
		return fmt.Sprintf("ok %d", max(status, 200))
	case status == http.StatusUnauthorized || status == http.StatusForbidden || status == http.StatusTooManyRequests:
		return fmt.Sprintf("denied %d", status)
	default:
		return fmt.Sprintf("error %d", status)
	}
}

func (a *API) deny(w http.ResponseWriter, r *http.Request, rt Route, caller auth.Caller, ws string, code int, msg string) {
	writeError(w, code, msg)
	a.audit(r, rt, caller, ws, resultOf(code))
}

// audit appends a record; a failure is logged, the answer already went out.
func (a *API) audit(r *http.Request, rt Route, caller auth.Caller, ws, result string) {
	action := rt.Action
	if action == "" {
		action = "read"
	}
	obj := r.URL.Path
	if n := r.PathValue("name"); n != "" {
		obj = n
	} else if ref := r.URL.Query().Get("ref"); ref != "" {
		obj = ref // DELETE /api/v1/images?ref=
	}
	src, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		src = r.RemoteAddr
	}
	tokenID := caller.TokenID
	if tokenID == "" {
		tokenID = "-"
	}
	_, err = a.Store.AppendAudit(context.WithoutCancel(r.Context()), store.AuditRecord{
		TokenID: tokenID, Workspace: ws, Action: action, Object: r.Method + " " + r.URL.Path + objSuffix(obj, r.URL.Path),
		Source: src, Result: result,
	}, audit.Hash)
	if err != nil {
		a.Logger.Error("audit append failed", "err", err)
	}
}

func objSuffix(obj, path string) string {
	if obj == path {
		return ""
	}
	return " (" + obj + ")"
}

// errUnauthenticated is the 401 text; it never says whether a token exists.
var errInvalidToken = errors.New("unauthorized: the token is not valid (unknown, expired or revoked)")

// authenticate resolves the Authorization header to a caller.
func (a *API) authenticate(r *http.Request) (auth.Caller, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return auth.Caller{}, errors.New("unauthorized: missing \"Authorization: Bearer <token>\" header; see aloft login")
	}
	secret, err := auth.ParseBearer(h, auth.TokenPrefix)
	if err != nil {
		return auth.Caller{}, fmt.Errorf("unauthorized: %w", err)
	}
	t, err := a.Store.TokenByHash(r.Context(), auth.HashSecret(secret))
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			a.Logger.Error("token lookup", "err", err)
		}
		return auth.Caller{}, errInvalidToken
	}
	now := time.Now()
	if t.RevokedAt != nil || (t.ExpiresAt != nil && !now.Before(*t.ExpiresAt)) {
		return auth.Caller{}, errInvalidToken
	}
	a.touch(r.Context(), t.ID, now)
	return auth.Caller{TokenID: t.ID, Owner: t.Owner, Role: auth.Role(t.Role), Workspace: t.Workspace}, nil
}

// touch records a token's last use, at most once a minute per token.
func (a *API) touch(ctx context.Context, id string, now time.Time) {
	a.touchMu.Lock()
	last := a.touched[id]
	stale := now.Sub(last) > time.Minute
	if stale {
		a.touched[id] = now
	}
	a.touchMu.Unlock()
	if stale {
		if err := a.Store.TouchToken(context.WithoutCancel(ctx), id, now); err != nil {
			a.Logger.Error("token last-used", "err", err)
		}
	}
}

// resolveWorkspace finds the workspace a call acts on.
func (a *API) resolveWorkspace(r *http.Request, rt Route, c auth.Caller) (request, error) {
	req := request{caller: c}
	named := r.URL.Query().Get("workspace")
	if named == "" {
		named = r.Header.Get("X-Aloft-Workspace")
	}
	req.explicit = named != ""
	switch rt.Scope {
	case Unscoped:
		return req, nil
	case ScopeDeployment:
		if d, err := a.Store.GetDeployment(r.Context(), r.PathValue("name")); err == nil {
			req.workspace = d.Workspace
			return req, nil
		}
	case ScopeToken:
		if t, err := a.Store.GetToken(r.Context(), r.PathValue("id")); err == nil {
			req.workspace = t.Workspace
			return req, nil
		}
	}
	switch {
	case named != "":
		req.workspace = named
	case c.Workspace != auth.AllWorkspaces:
		req.workspace = c.Workspace
	default:
		req.workspace = auth.DefaultWorkspace
	}
	return req, nil
}
