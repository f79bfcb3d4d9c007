package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// Endpoint tokens belong to their deployment: once it is removed they must not
// come back to life when a deployment of the same name is created again.
func TestReviewRemoveDeploymentDropsEndpointTokens(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "aloft.db"))
	if _, _, _, err := s.ApplyDeployment(ctx, "default", spec("web", 1), CreateOrUpdate); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateEndpointToken(ctx, EndpointToken{ID: "ept_1", Hash: "h1", Workspace: "default", Deployment: "web", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveDeployment(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := s.ApplyDeployment(ctx, "default", spec("web", 1), CreateOrUpdate); err != nil {
		t.Fatal(err)
	}
	toks, err := s.ListEndpointTokens(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) != 0 {
		t.Fatalf("the removed deployment's endpoint tokens are back on its successor: %+v", toks)
	}
}
