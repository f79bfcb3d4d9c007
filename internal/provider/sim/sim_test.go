package sim_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"sync"
	"testing"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/provider"
	"github.com/aloft-dev/aloft/internal/provider/sim"
)

func rep(id string) provider.Replica {
	return provider.Replica{ID: id, Deployment: "web", Revision: 1, Spec: v1.DeploymentSpec{Name: "web", Command: []string{"serve"}}}
}

type changes struct {
	mu  sync.Mutex
	ids []string
}

func (c *changes) add(id string) { c.mu.Lock(); c.ids = append(c.ids, id); c.mu.Unlock() }
func (c *changes) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.ids
	c.ids = nil
	return out
}

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	var ch changes
	s := sim.New(sim.Options{Cloud: "c1", OnChange: ch.add})
	if got := s.Runtimes(); !slices.Equal(got, []string{"process", "oci"}) {
		t.Fatalf("Runtimes = %v", got)
	}
	in, err := s.Start(ctx, rep("a"))
	if err != nil {
		t.Fatal(err)
	}
	if in.State != v1.ReplicaReady || in.Endpoint != "sim://c1/a" || in.StartedAt.IsZero() {
		t.Fatalf("Start = %+v", in)
	}
	var h sim.Handle
	if err := json.Unmarshal(in.Handle, &h); err != nil || h.ID != "a" {
		t.Fatalf("handle %s: %v", in.Handle, err)
	}
	if _, err := s.Start(ctx, rep("a")); err == nil {
		t.Fatal("second Start of the same id succeeded")
	}

	if err := s.Crash("a"); err != nil {
		t.Fatal(err)
	}
	in, _ = s.Get("a")
	if in.State != v1.ReplicaBackOff || in.Restarts != 1 || in.Message == "" {
		t.Fatalf("after Crash: %+v", in)
	}
	if err := s.SetState("a", v1.ReplicaReady, ""); err != nil {
		t.Fatal(err)
	}
	if in, _ = s.Get("a"); in.State != v1.ReplicaReady || in.Restarts != 1 {
		t.Fatalf("after SetState: %+v", in)
	}
	if got := ch.take(); !slices.Equal(got, []string{"a", "a"}) {
		t.Fatalf("OnChange calls = %v", got)
	}

	rc, err := s.Logs(ctx, "a", provider.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "sim replica a\n" {
		t.Fatalf("Logs = %q", b)
	}

	if _, err := s.Start(ctx, rep("b")); err != nil {
		t.Fatal(err)
	}
	if got := s.Running(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("Running = %v", got)
	}
	for _, id := range []string{"b", "a", "zzz"} {
		if err := s.Stop(ctx, id, 0); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Stopped(); !slices.Equal(got, []string{"b", "a"}) {
		t.Fatalf("Stopped = %v", got)
	}
	if _, err := s.Get("a"); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("Get after Stop: %v", err)
	}
	if n := s.Starts(); n != 3 {
		t.Fatalf("Starts = %d, want 3", n)
	}
}

func TestFailStartsAndHold(t *testing.T) {
	ctx := context.Background()
	var ch changes
	s := sim.New(sim.Options{Cloud: "c1", OnChange: ch.add, Endpoint: func(id string) string { return "http://" + id + ".invalid" }})
	boom := errors.New("no capacity today")
	s.FailStarts(boom)
	if _, err := s.Start(ctx, rep("a")); !errors.Is(err, boom) {
		t.Fatalf("Start = %v, want %v", err, boom)
	}
	if len(s.Running()) != 0 {
		t.Fatal("a failed start left a replica")
	}
	s.FailStarts(nil)

	s.Hold(true)
	for _, id := range []string{"a", "b", "c"} {
		in, err := s.Start(ctx, rep(id))
		if err != nil {
			t.Fatal(err)
		}
		if in.State != v1.ReplicaStarting || in.Endpoint != "http://"+id+".invalid" {
			t.Fatalf("held Start = %+v", in)
		}
	}
	if err := s.Release("b"); err != nil {
		t.Fatal(err)
	}
	if in, _ := s.Get("b"); in.State != v1.ReplicaReady {
		t.Fatalf("released b is %s", in.State)
	}
	if in, _ := s.Get("a"); in.State != v1.ReplicaStarting {
		t.Fatalf("held a is %s", in.State)
	}
	s.Hold(false)
	for _, id := range []string{"a", "c"} {
		if in, _ := s.Get(id); in.State != v1.ReplicaReady {
			t.Fatalf("%s after Hold(false) is %s", id, in.State)
		}
	}
	if got := ch.take(); !slices.Equal(got, []string{"b", "a", "c"}) {
		t.Fatalf("OnChange calls = %v", got)
	}
	// A replica started after Hold(false) is Ready at once.
	if in, _ := s.Start(ctx, rep("d")); in.State != v1.ReplicaReady {
		t.Fatalf("Start after Hold(false) = %s", in.State)
	}
}

func TestRuntimes(t *testing.T) {
	s := sim.New(sim.Options{Cloud: "p", Runtimes: []string{"process"}})
	r := rep("img")
	r.Spec = v1.DeploymentSpec{Name: "web", Image: "example/web:1"}
	if _, err := s.Start(context.Background(), r); err == nil {
		t.Fatal("a process-only sim started an image")
	}
	if _, err := s.Start(context.Background(), rep("cmd")); err != nil {
		t.Fatal(err)
	}
}

func TestCloseAdoptForget(t *testing.T) {
	ctx := context.Background()
	s := sim.New(sim.Options{Cloud: "c1"})
	var handles = map[string]json.RawMessage{}
	for _, id := range []string{"a", "b"} {
		in, err := s.Start(ctx, rep(id))
		if err != nil {
			t.Fatal(err)
		}
		handles[id] = in.Handle
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// After a "restart" the replicas run but are unknown until adopted.
	if got := s.Running(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("Running after Close = %v", got)
	}
	if _, err := s.Get("a"); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("Get of a detached replica: %v", err)
	}
	in, err := s.Adopt(ctx, rep("a"), handles["a"])
	if err != nil || in.State != v1.ReplicaReady {
		t.Fatalf("Adopt = %+v, %v", in, err)
	}
	if _, err := s.Get("a"); err != nil {
		t.Fatalf("Get after Adopt: %v", err)
	}
	if _, err := s.Adopt(ctx, rep("a"), handles["b"]); err == nil {
		t.Fatal("Adopt with another replica's handle succeeded")
	}

	if err := s.Forget("b"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Adopt(ctx, rep("b"), handles["b"]); !errors.Is(err, provider.ErrGone) {
		t.Fatalf("Adopt of a forgotten replica: %v", err)
	}
	if _, err := s.Get("b"); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("Get of a forgotten replica: %v", err)
	}
	if len(s.Stopped()) != 0 {
		t.Fatalf("Forget recorded a stop: %v", s.Stopped())
	}
	if s.Adopts() != 1 {
		t.Fatalf("Adopts = %d", s.Adopts())
	}
	if err := s.Crash("b"); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("Crash of a forgotten replica: %v", err)
	}
}

func TestConcurrent(t *testing.T) {
	ctx := context.Background()
	var calls sync.Map
	var s *sim.Sim
	// OnChange calls back into the Sim: it must not be called under the lock.
	s = sim.New(sim.Options{Cloud: "c", OnChange: func(id string) {
		s.Get(id)
		calls.Store(id, true)
	}})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := string(rune('a' + i))
			if _, err := s.Start(ctx, rep(id)); err != nil {
				t.Error(err)
				return
			}
			s.Crash(id)
			s.SetState(id, v1.ReplicaReady, "")
			s.Running()
			s.Stop(ctx, id, 0)
		}()
	}
	wg.Wait()
	if len(s.Running()) != 0 || len(s.Stopped()) != 20 {
		t.Fatalf("running %v, stopped %d", s.Running(), len(s.Stopped()))
	}
}
