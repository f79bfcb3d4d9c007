package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aloft-dev/aloft/internal/auth"
	"github.com/aloft-dev/aloft/internal/secrets"
	"github.com/aloft-dev/aloft/internal/store"
)

// rewrapHook runs after between the re-wrap transaction and the key file commit.
type rewrapHook struct {
	*store.SQLite
	after func()
}

func (h *rewrapHook) RewrapSecrets(ctx context.Context, f func(store.Secret) ([]byte, error)) (int, error) {
	n, err := h.SQLite.RewrapSecrets(ctx, f)
	if h.after != nil {
		h.after()
	}
	return n, err
}

// A secret written while a key rotation is between re-wrapping and replacing
// the key file must still open with the key file alone (after a restart).
func TestReviewSecretPutDuringRotationSurvivesRestart(t *testing.T) {
	var hook *rewrapHook
	api, st := newSimAPI(t, func(st *store.SQLite) store.Store { hook = &rewrapHook{SQLite: st}; return hook })
	keyFile := api.KeyFile
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	tok, _ := newAPIToken("admin", auth.Admin, auth.AllWorkspaces, 0)
	if err := st.CreateToken(context.Background(), tok.Token); err != nil {
		t.Fatal(err)
	}
	do := func(method, path, body string) int {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok.Secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := do("PUT", "/api/v1/secrets/before", `{"value": "v0"}`); code != 201 {
		t.Fatalf("put: %d", code)
	}
	putDone := make(chan struct{})
	hook.after = func() {
		hook.after = nil
		go func() { do("PUT", "/api/v1/secrets/during", `{"value": "v1"}`); close(putDone) }()
		select {
		case <-putDone:
		case <-time.After(300 * time.Millisecond):
		}
	}
	if code := do("POST", "/api/v1/secrets-key/rotate", ``); code != 200 {
		t.Fatalf("rotate: %d", code)
	}
	<-putDone
	// A restarted server has only the key file.
	ring, _, _, err := secrets.Resolve("", keyFile, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"before", "during"} {
		sec, err := st.GetSecret(context.Background(), auth.DefaultWorkspace, name)
		if err != nil {
			t.Fatal(err)
		}
		var sealed secrets.Sealed
		if err := json.Unmarshal(sec.Sealed, &sealed); err != nil {
			t.Fatal(err)
		}
		if _, err := ring.Open(sealed, secretAAD(auth.DefaultWorkspace, name)); err != nil {
			t.Errorf("secret %q no longer opens with the key file after rotation: %v", name, err)
		}
	}
}

// lateDeployment hides deployment name from the first lookup (the guard's),
// as if another workspace created it right after the guard looked.
type lateDeployment struct {
	*store.SQLite
	name   string
	hidden atomic.Bool
}

func (l *lateDeployment) GetDeployment(ctx context.Context, name string) (store.Deployment, error) {
	if name == l.name && !l.hidden.Swap(true) {
		return store.Deployment{}, store.ErrNotFound
	}
	return l.SQLite.GetDeployment(ctx, name)
}

// A token of workspace "other" must not mint an endpoint token for a deployment
// of workspace "own", even when the deployment appears between the guard's
// workspace resolution and the handler.
func TestReviewEndpointTokenForDeploymentCreatedAfterGuard(t *testing.T) {
	e := newRBACEnv(t)
	api, _ := newSimAPI(t, func(*store.SQLite) store.Store { return &lateDeployment{SQLite: e.st, name: "dep-own"} })
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	tok, _ := newAPIToken("dev", auth.Developer, "other", 0)
	if err := e.st.CreateToken(context.Background(), tok.Token); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/api/v1/deployments/dep-own/endpoint-tokens?workspace=other", strings.NewReader(`{}`))
	code, body := e.call(t, req, tok.Secret)
	if code < 400 {
		t.Fatalf("token of workspace other created an endpoint token for own's deployment: %d %s", code, body)
	}
}
