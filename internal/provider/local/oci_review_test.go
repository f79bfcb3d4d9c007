package local

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/provider"
)

// The controller names replicas <deployment>-<6 chars>, and a deployment
// name may have 63 characters: a 70-character id must still run, although a
// hostname has at most 64.
func TestOCILongReplicaID(t *testing.T) {
	e := newOCIEnv(t)
	p := e.provider(t)
	id := strings.Repeat("d", v1.MaxNameLength) + "-abc123"
	r := ctrReplica(id)
	r.Deployment = strings.Repeat("d", v1.MaxNameLength)
	if _, err := p.Start(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	inst := waitInstance(t, p, id, "to be Ready (or crash)", func(i provider.Instance) bool {
		return i.State == v1.ReplicaReady || i.Restarts > 0
	})
	if inst.State != v1.ReplicaReady {
		t.Fatalf("replica with a %d-character id: %s %q", len(id), inst.State, inst.Message)
	}
	body, err := ctrGet(t, p, inst, "/whoami")
	if err != nil || !strings.Contains(body, "host="+id[:57]+"-abc123 ") {
		t.Fatalf("whoami = %q, %v", body, err)
	}
}

// Stop whose context ends during the grace period still kills the container
// (runc does not relay SIGKILL, and the container is in a process group of
// its own), so nothing keeps running unsupervised.
func TestOCIStopCanceledKillsContainer(t *testing.T) {
	e := newOCIEnv(t)
	p := e.provider(t)
	id := "hello-cancel"
	if _, err := p.Start(context.Background(), ctrReplica(id, v1.EnvVar{Name: "IGNORE_TERM", Value: "1"})); err != nil {
		t.Fatal(err)
	}
	waitReady(t, p, id)
	st, err := e.oci.Runc.State(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := p.Stop(ctx, id, time.Minute); err == nil {
		t.Fatal("stop with an expiring context succeeded")
	}
	waitFor(t, 5*time.Second, "the container's init to die", func() bool { return processGone(st.Pid) })
}

// runc killed while its container lives: the supervisor restarts the
// replica, and the orphaned container does not survive that.
func TestOCIRuncDiesContainerLives(t *testing.T) {
	e := newOCIEnv(t)
	p := e.provider(t)
	id := "hello-orphan"
	if _, err := p.Start(context.Background(), ctrReplica(id)); err != nil {
		t.Fatal(err)
	}
	inst := waitReady(t, p, id)
	h := handleOf(t, inst)
	st, err := e.oci.Runc.State(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(h.PID, syscall.SIGKILL); err != nil { // runc alone
		t.Fatal(err)
	}
	inst = waitInstance(t, p, id, "to restart and be Ready", func(i provider.Instance) bool {
		return i.Restarts == 1 && i.State == v1.ReplicaReady
	})
	if !processGone(st.Pid) {
		t.Fatalf("the first container (pid %d) still runs after the restart", st.Pid)
	}
	if body, err := ctrGet(t, p, inst, "/whoami"); err != nil || !strings.Contains(body, "host="+id) {
		t.Fatalf("after restart: %q %v", body, err)
	}
}

// A replica stopped in BackOff leaves no namespace, no runc state and no
// reference on its root filesystem.
func TestOCIStopInBackOff(t *testing.T) {
	e := newOCIEnv(t)
	opts := testOptions(filepath.Join(e.dir, "cloud"))
	opts.OCI = e.oci
	opts.BackoffBase, opts.BackoffMax = time.Minute, time.Minute
	p := newProvider(t, opts)
	id := "hello-backoff"
	r := ctrReplica(id)
	r.Spec.Command = []string{"/app/nope"}
	if _, err := p.Start(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	inst := waitInstance(t, p, id, "to be in BackOff", func(i provider.Instance) bool { return i.State == v1.ReplicaBackOff })
	if !strings.Contains(inst.Message, "nope") {
		t.Errorf("BackOff message %q does not say what failed", inst.Message)
	}
	netnsPath := filepath.Join(opts.Dir, id, "netns")
	if err := p.Stop(context.Background(), id, time.Second); err != nil {
		t.Fatal(err)
	}
	if mountedAt(t, netnsPath) {
		t.Error("namespace still mounted")
	}
	if _, err := os.Stat(netnsPath); !os.IsNotExist(err) {
		t.Errorf("namespace file left: %v", err)
	}
	if _, err := e.oci.Runc.State(context.Background(), id); err == nil {
		t.Error("runc still knows the container")
	}
	e.oci.mu.Lock()
	n := len(e.oci.inUse)
	e.oci.mu.Unlock()
	if n != 0 {
		t.Errorf("root filesystems still referenced: %v", e.oci.inUse)
	}
}

// An id runc cannot use is refused at Start, not left to crash-loop.
func TestOCIStartRefusesIDRuncRejects(t *testing.T) {
	e := newOCIEnv(t)
	p := e.provider(t)
	for _, id := range []string{"bad id", "bad:id", "-bad"} {
		_, err := p.Start(context.Background(), ctrReplica(id))
		if err == nil || !strings.Contains(err.Error(), "invalid container id") {
			t.Errorf("start %q: %v", id, err)
			if inst, err := p.Get(id); err == nil {
				inst = waitInstance(t, p, id, "to run or crash", func(i provider.Instance) bool {
					return i.State == v1.ReplicaReady || i.Restarts > 0
				})
				t.Logf("%q: %s %q", id, inst.State, inst.Message)
			}
		}
	}
}
