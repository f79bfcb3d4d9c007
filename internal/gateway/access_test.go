package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func hashOf(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(s[:])
}

// A private deployment admits only valid endpoint tokens and allowed
// addresses; refused requests never reach a replica, and the token is not
// forwarded.
func TestEndpointAccess(t *testing.T) {
	var hits atomic.Int64
	var sawAuth atomic.Value
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		sawAuth.Store(r.Header.Get("Authorization"))
		io.WriteString(w, "ok")
	}))
	defer backend.Close()
	reg := prometheus.NewRegistry()
	g := New(Options{Registerer: reg})
	good, expired, revoked := "aloftep_good", "aloftep_expired", "aloftep_revoked"
	g.SetAccess("priv", Access{Tokens: map[string]time.Time{
		hashOf(good): {}, hashOf(expired): time.Now().Add(-time.Minute),
	}})
	g.SetBackends("priv", []Backend{{ReplicaID: "r1", Cloud: "c", URL: backend.URL}})
	g.SetAccess("nets", Access{Public: true, Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	g.SetBackends("nets", []Backend{{ReplicaID: "r2", Cloud: "c", URL: backend.URL}})
	front := httptest.NewServer(g)
	defer front.Close()

	call := func(dep, auth string) (int, string) {
		req, _ := http.NewRequest("GET", front.URL+"/x", nil)
		req.Header.Set(HeaderDeployment, dep)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		dep, auth string
		code      int
	}{
		{"priv", "", 401}, {"priv", "Bearer " + revoked, 401}, {"priv", "Bearer " + expired, 401},
		{"priv", "Basic " + good, 401}, {"priv", "Bearer aloft_admintoken", 401},
		{"nets", "", 403},
	} {
		if code, body := call(tc.dep, tc.auth); code != tc.code || !strings.Contains(body, "access denied") {
			t.Errorf("%s with %q: %d %s, want %d", tc.dep, tc.auth, code, body, tc.code)
		}
	}
	if hits.Load() != 0 {
		t.Fatalf("%d refused request(s) reached the replica", hits.Load())
	}
	if code, body := call("priv", "Bearer "+good); code != 200 || body != "ok" {
		t.Fatalf("valid token: %d %s", code, body)
	}
	if a, _ := sawAuth.Load().(string); a != "" {
		t.Errorf("the endpoint token was forwarded to the replica: %q", a)
	}
	// Revocation: a new policy without the token refuses it at once.
	g.SetAccess("priv", Access{Tokens: map[string]time.Time{}})
	if code, _ := call("priv", "Bearer "+good); code != 401 {
		t.Errorf("token still admitted after revocation: %d", code)
	}
	// Loopback is inside an allow list that names it.
	g.SetAccess("nets", Access{Public: true, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if code, _ := call("nets", ""); code != 200 {
		t.Errorf("allowed address refused: %d", code)
	}
	if n := testutil.ToFloat64(g.denied.WithLabelValues("priv", "invalid_token")); n != 3 {
		t.Errorf("denied invalid_token count = %v, want 3", n)
	}
	if n := testutil.ToFloat64(g.denied.WithLabelValues("priv", "missing_token")); n != 3 {
		t.Errorf("denied missing_token count = %v, want 3", n)
	}
	if n := testutil.ToFloat64(g.denied.WithLabelValues("nets", "address")); n != 1 {
		t.Errorf("denied address count = %v, want 1", n)
	}
}
