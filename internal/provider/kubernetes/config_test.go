package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/provider"
)

const kubeconfigTmpl = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: %q, insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: secret-token}
contexts:
- name: one
  context: {cluster: c, user: u}
- name: two
  context: {cluster: c, user: u}
current-context: %s
`

func writeKubeconfig(t *testing.T, server, current string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(p, fmt.Appendf(nil, kubeconfigTmpl, server, current), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func cloudWith(kc, context string) v1.CloudConfig {
	return v1.CloudConfig{Name: "k8s-x", Provider: v1.ProviderKubernetes, Region: "r",
		Kubernetes: &v1.KubernetesConfig{Kubeconfig: kc, Context: context, UnavailableAfter: "1s"}}
}

func TestNewBadKubeconfig(t *testing.T) {
	dir := t.TempDir()
	malformed := filepath.Join(dir, "malformed")
	os.WriteFile(malformed, []byte("clusters: [this is: not: yaml"), 0o600)
	missing := filepath.Join(dir, "missing")
	good := writeKubeconfig(t, "https://127.0.0.1:1", "one")
	noCurrent := writeKubeconfig(t, "https://127.0.0.1:1", `""`)

	for _, tc := range []struct {
		name, kc, ctx string
		want          []string
	}{
		{"malformed", malformed, "", []string{"cloud k8s-x", "kubeconfig " + malformed, "cannot be read"}},
		{"missing file", missing, "", []string{"kubeconfig " + missing, "no such file"}},
		{"missing context", good, "three", []string{"kubeconfig " + good, `context "three" not found`, "it has: one, two"}},
		{"no current context", noCurrent, "", []string{"has no current-context", "set kubernetes.context", "one, two"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(cloudWith(tc.kc, tc.ctx), Options{})
			if err == nil {
				p.Close()
				t.Fatal("New succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	if _, err := New(v1.CloudConfig{Name: "k"}, Options{}); err == nil || !strings.Contains(err.Error(), "needs a kubernetes section") {
		t.Errorf("no section: %v", err)
	}
	bad := cloudWith(good, "")
	bad.Kubernetes.Namespace = "Bad NS"
	if _, err := New(bad, Options{}); err == nil || !strings.Contains(err.Error(), "kubernetes.namespace") {
		t.Errorf("invalid section: %v", err)
	}
}

// An API server that does not answer: New succeeds, Health fails after
// unavailableAfter naming the cause, and Start fails at once instead of
// hanging; nothing panics.
func TestUnreachable(t *testing.T) {
	p, err := New(cloudWith(writeKubeconfig(t, "https://127.0.0.1:1", "one"), ""), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Health(); err != nil {
		t.Errorf("Health before unavailableAfter: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.Health() == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	err = p.Health()
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "unreachable: connection to https://127.0.0.1:1 refused") || !strings.Contains(err.Error(), "context one") {
		t.Fatalf("Health: %v", err)
	}
	spec := testSpec()
	spec.Resources = v1.Resources{}
	spec.Env = nil
	began := time.Now()
	_, err = p.Start(context.Background(), provider.Replica{ID: "r1", Deployment: "llm", Revision: 1, Spec: spec})
	if !errors.Is(err, ErrUnavailable) || time.Since(began) > time.Second {
		t.Errorf("Start: %v after %v", err, time.Since(began))
	}
	if err := p.Stop(context.Background(), "r1", time.Second); err != nil {
		t.Errorf("Stop of an unknown replica: %v", err)
	}
	if _, err := p.Get("r1"); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("Get: %v", err)
	}
	if c := p.FreeCapacity(); c.CPU != 0 || c.GPUs != nil || c.Memory != "" {
		t.Errorf("capacity %+v", c)
	}
}

func TestStartRejects(t *testing.T) {
	cloud := testCloud()
	cloud.Kubernetes.Kubeconfig = writeKubeconfig(t, "https://127.0.0.1:1", "one")
	p, err := New(cloud, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cmdOnly := v1.DeploymentSpec{Name: "p", Command: []string{"sleep"}}
	cmdOnly.Default()
	if _, err := p.Start(context.Background(), provider.Replica{ID: "r1", Deployment: "p", Revision: 1, Spec: cmdOnly}); err == nil || !strings.Contains(err.Error(), "runs images only") {
		t.Errorf("command-only: %v", err)
	}
	l4 := testSpec()
	l4.Resources.GPU.Type = "l4"
	_, err = p.Start(context.Background(), provider.Replica{ID: "r2", Deployment: "llm", Revision: 1, Spec: l4})
	if !errors.Is(err, provider.ErrCapacity) || !strings.Contains(err.Error(), `GPU type "l4" has no mapping`) {
		t.Errorf("unmapped GPU: %v", err)
	}
	if got := p.Runtimes(); len(got) != 1 || got[0] != "oci" {
		t.Errorf("runtimes %v", got)
	}
	if p.MissingRuntimes()["process"] == "" {
		t.Error("no reason for process")
	}
}

func TestDescribe(t *testing.T) {
	gr := schema.GroupResource{Group: "apps", Resource: "deployments"}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{apierrors.NewUnauthorized("Unauthorized"), "unauthorized: the kubeconfig's credentials were rejected"},
		{apierrors.NewForbidden(gr, "", errors.New(`User "x" cannot list`)), "forbidden by RBAC: deployments.apps is forbidden"},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), "unreachable: connection to https://s refused"},
		{context.DeadlineExceeded, "unreachable: https://s timed out"},
	} {
		if got := describe(tc.err, "https://s"); !strings.HasPrefix(got, tc.want) {
			t.Errorf("describe(%v) = %q, want prefix %q", tc.err, got, tc.want)
		}
	}
	h := newHealth("https://s", time.Second, time.Now())
	h.listed(infDeployments, apierrors.NewForbidden(gr, "", errors.New("no")))
	if err := h.check(time.Now(), infDeployments); err == nil || !strings.Contains(err.Error(), "cannot watch deployments: forbidden") {
		t.Errorf("forbidden watch: %v", err)
	}
	h.listed(infDeployments, nil)
	if err := h.check(time.Now(), infDeployments); err != nil {
		t.Errorf("after a good list: %v", err)
	}
	if err := h.check(time.Now().Add(2*time.Second), infDeployments); err == nil || !strings.Contains(err.Error(), "has not answered for 2s") {
		t.Errorf("silence: %v", err)
	}
}

func TestUnavailableStub(t *testing.T) {
	u := NewUnavailable("k8s-x", errors.New(`kubeconfig /x: context "y" not found`))
	var _ provider.Provider = u
	if err := u.Health(); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), `context "y" not found`) {
		t.Errorf("Health: %v", err)
	}
	if _, err := u.Start(context.Background(), provider.Replica{ID: "r"}); err == nil {
		t.Error("Start succeeded")
	}
	if _, err := u.Adopt(context.Background(), provider.Replica{ID: "r"}, nil); errors.Is(err, provider.ErrGone) || err == nil {
		t.Errorf("Adopt: %v (must not say gone)", err)
	}
}
