package oci

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

func TestFindRuncErrors(t *testing.T) {
	root := t.TempDir()
	if _, err := FindRunc(root, "/nonexistent/runc"); err == nil || err.Error() != "runc not found at /nonexistent/runc" {
		t.Errorf("missing path: %v", err)
	}
	if _, err := FindRunc(root, "/bin/false"); err == nil || !strings.Contains(err.Error(), "does not run") {
		t.Errorf("broken runc: %v", err)
	}
}

func TestRuncStateOfUnknownContainer(t *testing.T) {
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc not installed")
	}
	r, err := FindRunc(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := r.State(ctx, "aloft-no-such"); !errors.Is(err, ErrNoContainer) {
		t.Errorf("state of an unknown container: %v", err)
	}
	if err := r.Delete(ctx, "aloft-no-such"); err != nil {
		t.Errorf("delete of an unknown container: %v", err)
	}
	if err := r.Kill(ctx, "aloft-no-such", 15); err != nil {
		t.Errorf("kill of an unknown container: %v", err)
	}
	if ids, err := r.List(ctx); err != nil || len(ids) != 0 {
		t.Errorf("list of an empty root: %v %v", ids, err)
	}
}

func TestValidID(t *testing.T) {
	for _, id := range []string{"hello-abc123", "a.b_c+d", "A9"} {
		if err := ValidID(id); err != nil {
			t.Errorf("%q: %v", id, err)
		}
	}
	for _, id := range []string{"", ".", "..", "-x", "a b", "a:b", "a/b", "é"} {
		if err := ValidID(id); err == nil {
			t.Errorf("%q accepted", id)
		}
	}
}
