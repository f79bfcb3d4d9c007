package store

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"

	v1 "github.com/aloft-dev/aloft/api/v1"
)

func spec(name string, replicas int, args ...string) v1.DeploymentSpec {
	return v1.DeploymentSpec{Name: name, Command: []string{"srv"}, Args: args, Port: 8080, Replicas: v1.Replicas{Min: replicas, Max: replicas}}
}

func open(t *testing.T, path string) *SQLite {
	t.Helper()
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestApplyRevisionsAndModes(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "aloft.db"))

	d, created, changed, err := s.ApplyDeployment(ctx, "default", spec("web", 2), CreateOrUpdate)
	if err != nil || !created || !changed || d.Revision != 1 || d.Generation != 1 {
		t.Fatalf("create: %+v created=%v changed=%v err=%v", d, created, changed, err)
	}
	if _, _, _, err := s.ApplyDeployment(ctx, "default", spec("web", 2), CreateOnly); !errors.Is(err, ErrExists) {
		t.Fatalf("CreateOnly on existing: %v", err)
	}
	if _, _, _, err := s.ApplyDeployment(ctx, "default", spec("nope", 1), UpdateOnly); !errors.Is(err, ErrNotFound) {
		t.Fatalf("UpdateOnly on missing: %v", err)
	}
	// Same spec again: nothing changes.
	d, created, changed, err = s.ApplyDeployment(ctx, "default", spec("web", 2), CreateOrUpdate)
	if err != nil || created || changed || d.Generation != 1 {
		t.Fatalf("no-op apply: %+v %v %v %v", d, created, changed, err)
	}
	// Scaling keeps the revision, bumps the generation.
	d, _, changed, err = s.ApplyDeployment(ctx, "default", spec("web", 5), CreateOrUpdate)
	if err != nil || !changed || d.Revision != 1 || d.Generation != 2 || d.Spec.Replicas.Max != 5 {
		t.Fatalf("scale: %+v %v %v", d, changed, err)
	}
	// A template change makes revision 2.
	d, _, _, err = s.ApplyDeployment(ctx, "default", spec("web", 5, "--v2"), CreateOrUpdate)
	if err != nil || d.Revision != 2 {
		t.Fatalf("template change: %+v %v", d, err)
	}
	revs, err := s.ListRevisions(ctx, "web")
	if err != nil || len(revs) != 2 || revs[1].Spec.Args[0] != "--v2" || revs[0].Spec.Replicas.Max != 5 {
		t.Fatalf("revisions: %+v %v", revs, err)
	}

	if _, err := s.MarkDeleted(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := s.ApplyDeployment(ctx, "default", spec("web", 1), CreateOrUpdate); !errors.Is(err, ErrExists) {
		t.Fatalf("apply while deleting: %v", err)
	}
	if err := s.RemoveDeployment(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetDeployment(ctx, "web"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after remove: %v", err)
	}
	if _, err := s.MarkDeleted(ctx, "web"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete missing: %v", err)
	}
}

func TestDurableAcrossReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "aloft.db")
	s := open(t, path)
	if _, _, _, err := s.ApplyDeployment(ctx, "default", spec("api", 3), CreateOrUpdate); err != nil {
		t.Fatal(err)
	}
	r := Replica{ID: "api-1", Deployment: "api", Revision: 1, Cloud: "local-a", State: v1.ReplicaReady,
		Endpoint: "http://127.0.0.1:1", Handle: json.RawMessage(`{"pid":42}`), HourlyCost: 0.5,
		Region: "us-east-1", Zone: "use1-az1", InstanceType: "g5.xlarge", Spot: true}
	if err := s.PutReplica(ctx, r); err != nil {
		t.Fatal(err)
	}
	r.Restarts = 2
	if err := s.PutReplica(ctx, r); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddEvent(ctx, v1.Event{Deployment: "api", Type: "Normal", Reason: "Placed", Message: "api-1 on local-a"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetCloudState(ctx, CloudState{Name: "local-b", Cordoned: true}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s2 := open(t, path)
	if v, err := s2.SchemaVersion(ctx); err != nil || v != len(migrations) {
		t.Fatalf("schema version %d %v", v, err)
	}
	reps, err := s2.ListReplicas(ctx, "api")
	if err != nil || len(reps) != 1 || reps[0].Restarts != 2 || string(reps[0].Handle) != `{"pid":42}` ||
		reps[0].Region != "us-east-1" || reps[0].Zone != "use1-az1" || reps[0].InstanceType != "g5.xlarge" || !reps[0].Spot {
		t.Fatalf("replicas after reopen: %+v %v", reps, err)
	}
	evs, err := s2.ListEvents(ctx, "api", 0, 10)
	if err != nil || len(evs) != 1 || evs[0].Reason != "Placed" {
		t.Fatalf("events after reopen: %+v %v", evs, err)
	}
	if more, _ := s2.ListEvents(ctx, "api", evs[0].ID, 10); len(more) != 0 {
		t.Fatalf("afterID filter: %+v", more)
	}
	cs, err := s2.ListCloudStates(ctx)
	if err != nil || len(cs) != 1 || !cs[0].Cordoned {
		t.Fatalf("cloud state: %+v %v", cs, err)
	}
}

// Replicas, placement and autoscale say how many replicas run where, not
// what they run: changing them is no new revision.
func TestSameTemplateIgnoresScaleFields(t *testing.T) {
	a := spec("web", 2)
	b := spec("web", 2)
	b.Replicas = v1.Replicas{Min: 1, Max: 9}
	b.Placement.Budget = 12
	b.Autoscale = &v1.Autoscale{Metric: "rps", Target: 5}
	if !SameTemplate(a, b) {
		t.Error("a change of replicas, placement or autoscale counted as a template change")
	}
	b.Args = []string{"--v2"}
	if SameTemplate(a, b) {
		t.Error("a change of args did not count")
	}
}
