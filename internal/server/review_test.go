package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/auth"
	"github.com/aloft-dev/aloft/internal/cloud"
	"github.com/aloft-dev/aloft/internal/controller"
	"github.com/aloft-dev/aloft/internal/gateway"
	"github.com/aloft-dev/aloft/internal/provider"
	"github.com/aloft-dev/aloft/internal/provider/sim"
	"github.com/aloft-dev/aloft/internal/secrets"
	"github.com/aloft-dev/aloft/internal/store"
	"github.com/prometheus/client_golang/prometheus"
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
	dir := t.TempDir()
	st, err := store.OpenSQLite(filepath.Join(dir, "aloft.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg, err := cloud.NewRegistry(v1.DefaultClouds(), func(c v1.CloudConfig) (provider.Provider, error) {
		return sim.New(sim.Options{Cloud: c.Name}), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctl := controller.New(controller.Options{Store: st, Clouds: reg, Router: gateway.New(gateway.Options{})})
	kek, _ := secrets.GenerateKEK()
	keys := &atomic.Pointer[secrets.Keyring]{}
	keys.Store(secrets.NewKeyring(kek))
	keyFile := filepath.Join(t.TempDir(), "kek")
	if err := secrets.WriteKeyFile(keyFile, kek); err != nil {
		t.Fatal(err)
	}
	hook := &rewrapHook{SQLite: st}
	api := &API{Store: hook, Controller: ctl, Clouds: reg, Gatherer: prometheus.NewRegistry(), Logger: discardLogger(),
		Keys: keys, KeyFile: keyFile}
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
	late := &lateDeployment{SQLite: e.st, name: "dep-own"}
	kek, _ := secrets.GenerateKEK()
	keys := &atomic.Pointer[secrets.Keyring]{}
	keys.Store(secrets.NewKeyring(kek))
	reg, _ := cloud.NewRegistry(v1.DefaultClouds(), func(c v1.CloudConfig) (provider.Provider, error) {
		return sim.New(sim.Options{Cloud: c.Name}), nil
	})
	ctl := controller.New(controller.Options{Store: e.st, Clouds: reg, Router: gateway.New(gateway.Options{})})
	api := &API{Store: late, Controller: ctl, Clouds: reg, Gatherer: prometheus.NewRegistry(), Logger: discardLogger(), Keys: keys}
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
