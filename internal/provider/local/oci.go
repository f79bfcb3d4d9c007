package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/aloft-dev/aloft/internal/image"
	"github.com/aloft-dev/aloft/internal/netns"
	"github.com/aloft-dev/aloft/internal/oci"
	"github.com/aloft-dev/aloft/internal/provider"
)

// OCI is the container runtime of local clouds: images from the local image
// store, unpacked once per digest into a read-only root filesystem and run by
// runc, each replica in a network namespace of its own that aloft pins on a
// file in the replica's directory. One OCI value is shared by all local
// clouds of a server.
type OCI struct {
	Images *image.Store
	Rootfs *oci.Cache
	// Runc is nil when containers cannot run here; Unavailable says why
	// ("runc not found (install the runc package)").
	Runc        *oci.Runc
	Unavailable string
	// NoLimits, when set, says why cgroup limits from resources cannot be
	// applied on this host; replicas then run without them and say so.
	NoLimits string

	mu    sync.Mutex
	inUse map[string]int // image digest -> container replicas using its rootfs
}

// acquire and release count the replicas using a digest's root filesystem,
// so that Prune never removes one a container runs from.
func (o *OCI) acquire(digest string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.inUse == nil {
		o.inUse = map[string]int{}
	}
	o.inUse[digest]++
}

func (o *OCI) release(digest string) {
	o.mu.Lock()
	o.inUse[digest]--
	last := o.inUse[digest] <= 0
	if last {
		delete(o.inUse, digest)
	}
	o.mu.Unlock()
	if last {
		o.Prune()
	}
}

// Prune removes the unpacked root filesystems of images no longer in the
// image store that no container replica uses. It runs after a replica stops
// and after images are removed.
func (o *OCI) Prune() {
	if o == nil || o.Rootfs == nil || o.Images == nil {
		return
	}
	digests, err := o.Rootfs.List()
	if err != nil {
		return
	}
	for _, d := range digests {
		if _, _, err := o.Images.Get(d); !errors.Is(err, image.ErrNotFound) {
			continue
		}
		o.mu.Lock()
		used := o.inUse[d] > 0
		if !used {
			o.Rootfs.Remove(d) // under mu: a start of d waits for the removal
		}
		o.mu.Unlock()
	}
}

// NewOCI sets up the container runtime under dir (rootfs cache, runc state),
// using the runc binary at runcPath ("" to look for it). It never fails for a
// missing runc or missing privileges: the result then reports the runtime as
// unavailable with the reason.
func NewOCI(dir string, images *image.Store, runcPath string) (*OCI, error) {
	cache, err := oci.NewCache(filepath.Join(dir, "rootfs"))
	if err != nil {
		return nil, err
	}
	o := &OCI{Images: images, Rootfs: cache}
	if err := netns.Check(); err != nil {
		o.Unavailable = err.Error()
		return o, nil
	}
	r, err := oci.FindRunc(filepath.Join(dir, "runc"), runcPath)
	if err != nil {
		o.Unavailable = err.Error()
		return o, nil
	}
	o.Runc = r
	if err := oci.CgroupLimitsUsable(); err != nil {
		o.NoLimits = err.Error()
	}
	return o, nil
}

// Usable reports whether containers can run.
func (o *OCI) usable() bool { return o != nil && o.Runc != nil && o.Images != nil }

// ociReplica is what a container replica adds to a replica.
type ociReplica struct {
	digest string // image manifest digest resolved at Start; restarts keep it
	netns  string // pinned network namespace
	bundle string // holds config.json
	limits *oci.Limits
	probe  *http.Client
}

func newOCIReplica(dir, digest string, limits *oci.Limits) *ociReplica {
	o := &ociReplica{digest: digest, netns: filepath.Join(dir, "netns"), bundle: filepath.Join(dir, "bundle"), limits: limits}
	path := o.netns
	o.probe = &http.Client{
		Transport: &http.Transport{
			Proxy:             nil,
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return netns.Dial(ctx, path, network, addr)
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return o
}

// limitsFor turns the spec's resources into cgroup limits.
func limitsFor(r provider.Replica) (*oci.Limits, error) {
	req, err := r.Spec.Resources.Normalized()
	if err != nil {
		return nil, err
	}
	l := &oci.Limits{MemoryBytes: req.MemoryBytes}
	if req.CPU > 0 {
		l.CPUMillicores = int64(math.Ceil(req.CPU * 1000))
	}
	return l, nil
}

// startOCI is Start for a replica of an image: it resolves the image now (a
// tag that is not imported fails the start at once) and leaves unpacking and
// running to the supervisor, so Start returns quickly even for a large image.
// p.mu is held.
func (p *Provider) startOCILocked(r provider.Replica) (*replica, error) {
	o := p.opts.OCI
	if !o.usable() {
		why := "no container runtime configured"
		if o != nil && o.Unavailable != "" {
			why = o.Unavailable
		}
		return nil, fmt.Errorf("cloud %q cannot run images: %s", p.opts.Cloud, why)
	}
	if err := oci.ValidID(r.ID); err != nil {
		return nil, err
	}
	_, info, err := o.Images.Get(r.Spec.Image)
	if err != nil {
		return nil, err
	}
	var limits *oci.Limits
	if o.NoLimits == "" {
		if limits, err = limitsFor(r); err != nil {
			return nil, err
		}
	}
	dir := filepath.Join(p.opts.Dir, r.ID)
	rep := p.newReplica(r, dir, r.Spec.Port)
	rep.oci = newOCIReplica(dir, info.Digest, limits)
	if o.NoLimits != "" {
		rep.note = "resource limits not applied: " + o.NoLimits
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create replica dir: %w", err)
	}
	rep.message = "preparing image " + r.Spec.Image
	o.acquire(info.Digest)
	return rep, nil
}

// prepareOCI makes everything runc needs for the next run of the replica:
// the unpacked root filesystem, a fresh network namespace and config.json.
// It is called without r.mu held (unpacking can take long).
func (r *replica) prepareOCI(ctx context.Context) error {
	o := r.p.opts.OCI
	if !o.usable() {
		return errors.New("container runtime unavailable")
	}
	img, _, err := o.Images.Get(r.oci.digest)
	if err != nil {
		return fmt.Errorf("image %s (%s): %w", r.spec.Image, r.oci.digest, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("image %s: read config: %w", r.spec.Image, err)
	}
	rootfs, cached, err := o.Rootfs.Rootfs(ctx, r.oci.digest, img)
	if err != nil {
		return err
	}
	if !cached {
		r.p.log.Info("image unpacked", "replica", r.id, "image", r.spec.Image, "digest", r.oci.digest)
	}
	// A container left by an earlier run (crash, server restart) goes first.
	if err := o.Runc.Delete(ctx, r.id); err != nil {
		return err
	}
	if err := netns.Remove(r.oci.netns); err != nil {
		return fmt.Errorf("remove old network namespace: %w", err)
	}
	if err := netns.Create(r.oci.netns); err != nil {
		return fmt.Errorf("network namespace: %w", err)
	}
	spec, err := oci.BuildSpec(oci.SpecOptions{
		Rootfs:      rootfs,
		Hostname:    containerHostname(r.id),
		Netns:       r.oci.netns,
		Image:       cfg.Config,
		Command:     r.spec.Command,
		Args:        r.spec.Args,
		Env:         r.containerEnv(),
		Limits:      r.oci.limits,
		CgroupsPath: "/aloft/" + r.id,
	})
	if err != nil {
		return fmt.Errorf("image %s: %w", r.spec.Image, err)
	}
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(r.oci.bundle, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(r.oci.bundle, "config.json"), data, 0o600)
}

// maxHostname is the kernel's limit on a hostname (sethostname fails beyond).
const maxHostname = 64

// containerHostname is the replica id, shortened to a valid hostname when
// longer: ids are "<deployment>-<6 random chars>" with deployment names of up
// to 63 characters, so the name is cut short and the unique tail kept.
func containerHostname(id string) string {
	if len(id) <= maxHostname {
		return id
	}
	const tail = 7
	return id[:maxHostname-tail] + id[len(id)-tail:]
}

// containerEnv is the spec's env, aloft's extra env, ALOFT_* and PORT (the
// port the image listens on), applied over the image's own env by BuildSpec.
// Nothing of the server's environment leaks in.
func (r *replica) containerEnv() []string {
	env := make([]string, 0, len(r.spec.Env)+len(r.extraEnv)+4)
	for _, e := range r.spec.Env {
		env = append(env, e.Name+"="+e.Value)
	}
	env = append(env, r.extraEnv...)
	return append(env,
		"ALOFT_REPLICA_ID="+r.id,
		"ALOFT_DEPLOYMENT="+r.deployment,
		"ALOFT_CLOUD="+r.p.opts.Cloud,
		"PORT="+strconv.Itoa(r.port))
}

// spawnOCILocked runs the prepared bundle with runc in the foreground: runc
// is the supervised process (its own process group, output to the replica's
// log), relays signals to the container and exits with its status.
func (r *replica) spawnOCILocked() error {
	runc := r.p.opts.OCI.Runc
	argv := runc.RunArgv(r.oci.bundle, r.id)
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	pr, err := spawn(runc.Path, argv, env, r.oci.bundle, r.logPath())
	if err != nil {
		return err
	}
	r.proc = pr
	r.startedAt = time.Now()
	r.state = v1.ReplicaStarting
	r.stable = false
	r.message = ""
	return nil
}

// cleanupOCI removes what a container replica leaves on the host: the runc
// container (killing it if it still runs) and the pinned network namespace.
// It works from the replica id alone, so it also cleans up after a replica
// this server never adopted.
func (p *Provider) cleanupOCI(ctx context.Context, id, dir string) error {
	o := p.opts.OCI
	var errs []error
	// No bundle: runc never ran this replica (a process, or a container
	// that never got that far).
	if _, err := os.Stat(filepath.Join(dir, "bundle")); err == nil && o != nil && o.Runc != nil {
		if err := o.Runc.Delete(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	if err := netns.Remove(filepath.Join(dir, "netns")); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Dialer implements provider.Dialer: a container replica is reached inside
// its network namespace; a process replica (nil) by plain TCP.
func (p *Provider) Dialer(id string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	p.mu.Lock()
	rep := p.replicas[id]
	p.mu.Unlock()
	if rep == nil {
		// Not running here (stopped meanwhile): dialing must fail rather
		// than reach whatever listens on the host at the replica's port.
		return func(context.Context, string, string) (net.Conn, error) {
			return nil, fmt.Errorf("replica %s: %w", id, provider.ErrNotFound)
		}
	}
	if rep.oci == nil {
		return nil
	}
	path := rep.oci.netns
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return netns.Dial(ctx, path, network, addr)
	}
}

// MissingRuntimes implements provider.RuntimeReporter.
func (p *Provider) MissingRuntimes() map[string]string {
	o := p.opts.OCI
	switch {
	case o.usable():
		return nil
	case o == nil:
		return map[string]string{"oci": "no container runtime configured"}
	default:
		return map[string]string{"oci": o.Unavailable}
	}
}
