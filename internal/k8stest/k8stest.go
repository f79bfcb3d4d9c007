// Package k8stest starts real, independent Kubernetes control planes on
// loopback for tests and benchmarks of aloft's Kubernetes provider.
//
// A cluster is five processes built from Go modules by tools/k8s/build.sh:
// etcd 3.7.0, kube-apiserver, kube-controller-manager and kube-scheduler
// v1.37.2, and kwok v0.8.0, which fakes the kubelets of nodes created with
// the annotation kwok.x-k8s.io/node=fake (pods on them go Running/Ready about
// a second after they are scheduled). The scheduler is the real one, so
// requests for cpu, memory and nvidia.com/gpu are checked against the
// capacities given in Options.Nodes.
//
// Each cluster has its own etcd (--unsafe-no-fsync), its own state directory
// and free loopback ports, static-token authentication and RBAC. The admin
// token (Cluster.Token) is in system:masters; a few more token users (see
// DefaultUsers) start without permissions, and UserKubeconfig binds them to a
// Role for forbidden-path tests.
//
// The binaries are located by BinDir: $ALOFT_K8S_BIN, or the cache that
// tools/k8s/build.sh fills (`make k8s-tools`). StartT skips the test when
// they are missing, unless ALOFT_K8S_REQUIRE=1 (as `make test` sets), in
// which case it fails. See README.md for build and start times.
//
// This package uses only the standard library; it talks to the API server
// with plain JSON over HTTPS (Cluster.Do).
package k8stest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	_ "embed"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// kwokStages are the kwok v0.8.0 stages for fast node initialisation, node
// heartbeats with leases, and pods that become ready, complete (Jobs) and
// are deleted; see the header of the file for their origin and licence.
//
//go:embed kwok-stages.yaml
var kwokStages []byte

// Binaries are the executables BinDir must contain.
var Binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}

// DefaultUsers are the static-token users every cluster has besides the
// admin. They hold no permissions until UserKubeconfig binds rules to them.
var DefaultUsers = []string{"viewer", "editor", "nobody"}

// Node is a fake (kwok) node.
type Node struct {
	Name string
	// CPU and Memory are resource quantities; defaults "32" and "256Gi".
	CPU    string
	Memory string
	// Pods is the pod capacity; default 110.
	Pods int
	// GPUs sets capacity and allocatable nvidia.com/gpu and the label
	// nvidia.com/gpu.count.
	GPUs int
	// GPUProduct sets the label nvidia.com/gpu.product (as NVIDIA's GPU
	// feature discovery would), e.g. "NVIDIA-H100-80GB-HBM3".
	GPUProduct string
	Labels     map[string]string
	Taints     []Taint
}

// Taint is a node taint; Effect is NoSchedule, PreferNoSchedule or NoExecute.
type Taint struct{ Key, Value, Effect string }

// Options configure Start.
type Options struct {
	// Name is the kubeconfig context and cluster name; default "k8stest".
	Name  string
	Nodes []Node
	// Dir is the state directory (etcd data, certificates, kubeconfigs,
	// logs/<component>.log). Default: a new temporary directory that Stop
	// removes. A given Dir is kept.
	Dir string
	// Log, if set, also receives the processes' output, each line prefixed
	// with "[name component] ". The output always goes to Dir/logs.
	Log io.Writer
	// Users are extra static-token users besides DefaultUsers.
	Users []string
	// BinDir overrides BinDir().
	BinDir string
}

// Cluster is a running control plane. Its exported fields are set by Start
// and must not be changed.
type Cluster struct {
	Name string
	// Server is https://127.0.0.1:PORT, with a self-signed certificate.
	Server string
	// Token is a bearer token of an admin in system:masters.
	Token string
	// Kubeconfig is the path of an admin kubeconfig (context Context, with
	// insecure-skip-tls-verify).
	Kubeconfig string
	Context    string
	// Dir is the state directory.
	Dir string
	// Etcd is the etcd client URL.
	Etcd string
	// StartDuration is how long Start took, from its call until the API
	// server was ready, all nodes were Ready and schedulable, and the
	// default ServiceAccount existed.
	StartDuration time.Duration

	bin        string
	ownDir     bool
	logw       io.Writer
	logMu      sync.Mutex
	client     *http.Client
	users      map[string]string // user -> token
	apiPort    int
	apiArgs    []string
	mu         sync.Mutex
	procs      map[string]*proc
	stopped    bool
	stopOnce   sync.Once
	stopErr    error
	kubeconfMu sync.Mutex
}

const (
	etcdName       = "etcd"
	apiserverName  = "kube-apiserver"
	controllerName = "kube-controller-manager"
	schedulerName  = "kube-scheduler"
	kwokName       = "kwok"

	// DefaultStartTimeout bounds Start when its context has no deadline.
	DefaultStartTimeout = 3 * time.Minute
)

var binDirCache struct {
	sync.Mutex
	dir string
}

// BinDir returns the directory holding the five binaries: $ALOFT_K8S_BIN if
// set, else what `tools/k8s/build.sh --print-dir` prints (the build cache,
// filled by `make k8s-tools`). It returns an error when the binaries are not
// all there; it never builds them.
func BinDir() (string, error) {
	if d := os.Getenv("ALOFT_K8S_BIN"); d != "" {
		return d, checkBinDir(d)
	}
	binDirCache.Lock()
	defer binDirCache.Unlock()
	if binDirCache.dir != "" {
		return binDirCache.dir, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	script := filepath.Join(root, "tools", "k8s", "build.sh")
	var stderr bytes.Buffer
	cmd := exec.Command(script, "--print-dir")
	cmd.Dir = root
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return "", fmt.Errorf("k8stest: %s", msg)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	dir := strings.TrimSpace(lines[len(lines)-1])
	if err := checkBinDir(dir); err != nil {
		return "", err
	}
	binDirCache.dir = dir
	return dir, nil
}

func checkBinDir(dir string) error {
	var missing []string
	for _, b := range Binaries {
		if st, err := os.Stat(filepath.Join(dir, b)); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("k8stest: %s missing in %s (run `make k8s-tools`)", strings.Join(missing, ", "), dir)
	}
	return nil
}

// moduleRoot finds the main module's root: from this source file when it is
// available, else upwards from the working directory.
func moduleRoot() (string, error) {
	isRoot := func(dir string) bool {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		return err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module github.com/aloft-dev/aloft\n"))
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		if dir := filepath.Dir(filepath.Dir(filepath.Dir(file))); isRoot(dir) {
			return dir, nil
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if isRoot(dir) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("k8stest: cannot find the aloft module root (set ALOFT_K8S_BIN)")
		}
		dir = parent
	}
}

// StartT starts a cluster for a test or benchmark and stops it in
// t.Cleanup. When the binaries are missing it skips, or fails if
// ALOFT_K8S_REQUIRE=1. Unless o.Dir is set, the state directory is removed
// in t.Cleanup too, after logging the tails of the component logs if the
// test failed.
func StartT(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.BinDir == "" {
		dir, err := BinDir()
		if err != nil {
			if os.Getenv("ALOFT_K8S_REQUIRE") == "1" {
				t.Fatalf("k8stest: Kubernetes test binaries required (ALOFT_K8S_REQUIRE=1) but not available: %v", err)
			}
			t.Skipf("k8stest: skipping, Kubernetes test binaries not available (run `make k8s-tools` or set ALOFT_K8S_BIN): %v", err)
		}
		o.BinDir = dir
	}
	if o.Dir == "" {
		// Our own temporary directory rather than Start's, so the logs are
		// still there for the failure report after the test stopped the
		// cluster itself.
		dir, err := os.MkdirTemp("", "k8stest-"+sanitize(o.Name)+"-")
		if err != nil {
			t.Fatal(err)
		}
		o.Dir = dir
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("k8stest: cluster %s logs (tails):\n%s", o.Name, (&Cluster{Dir: dir}).LogTails(40))
			}
			if err := os.RemoveAll(dir); err != nil {
				t.Errorf("k8stest: %v", err)
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultStartTimeout)
	defer cancel()
	c, err := Start(ctx, o)
	if err != nil {
		t.Fatalf("k8stest: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("k8stest: stop %s: %v", c.Name, err)
		}
	})
	t.Logf("k8stest: cluster %s at %s ready in %v", c.Name, c.Server, c.StartDuration.Round(time.Millisecond))
	return c
}

// Start starts a cluster and returns when the API server is ready, every
// node in o.Nodes is Ready without the not-ready taint, and the default
// ServiceAccount exists in namespace "default". If ctx has no deadline,
// DefaultStartTimeout applies. On error everything started is stopped.
func Start(ctx context.Context, o Options) (c *Cluster, err error) {
	began := time.Now()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultStartTimeout)
		defer cancel()
	}
	if o.Name == "" {
		o.Name = "k8stest"
	}
	if o.BinDir == "" {
		if o.BinDir, err = BinDir(); err != nil {
			return nil, err
		}
	} else if err := checkBinDir(o.BinDir); err != nil {
		return nil, err
	}
	c = &Cluster{
		Name:    o.Name,
		Context: o.Name,
		bin:     o.BinDir,
		procs:   map[string]*proc{},
		users:   map[string]string{},
		client:  newHTTPClient(),
	}
	if o.Log != nil {
		c.logw = o.Log
	}
	if o.Dir == "" {
		if c.Dir, err = os.MkdirTemp("", "k8stest-"+sanitize(o.Name)+"-"); err != nil {
			return nil, err
		}
		c.ownDir = true
	} else {
		if c.Dir, err = filepath.Abs(o.Dir); err != nil {
			return nil, err
		}
	}
	defer func() {
		if err != nil {
			_ = c.Stop()
			err = fmt.Errorf("start cluster %s: %w", o.Name, err)
			c = nil
		}
	}()
	for _, d := range []string{"logs", "pki", "certs", "etcd"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o700); err != nil {
			return c, err
		}
	}
	if err := c.writePKI(o.Users); err != nil {
		return c, err
	}
	stagesPath := filepath.Join(c.Dir, "kwok-stages.yaml")
	if err := os.WriteFile(stagesPath, kwokStages, 0o600); err != nil {
		return c, err
	}

	if err := c.startEtcd(ctx); err != nil {
		return c, err
	}
	if err := c.startAPIServerFresh(ctx); err != nil {
		return c, err
	}
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig.yaml")
	if err := writeKubeconfig(c.Kubeconfig, c.Name, c.Server, "admin", c.Token); err != nil {
		return c, err
	}

	kc := "--kubeconfig=" + c.Kubeconfig
	pki := filepath.Join(c.Dir, "pki")
	if err := c.spawn(controllerName, controllerName,
		kc,
		"--leader-elect=false",
		"--secure-port=0",
		"--service-account-private-key-file="+filepath.Join(pki, "sa.key"),
		"--use-service-account-credentials=false",
		"--controllers=*",
		"--v=1",
	); err != nil {
		return c, err
	}
	if err := c.spawn(schedulerName, schedulerName,
		kc,
		"--leader-elect=false",
		"--secure-port=0",
		"--v=1",
	); err != nil {
		return c, err
	}
	if err := c.spawn(kwokName, kwokName,
		kc,
		"--config="+stagesPath,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
		"--node-ip=10.244.0.1",
		"--cidr=10.244.0.0/16",
		"--node-lease-duration-seconds=40",
	); err != nil {
		return c, err
	}

	for _, n := range o.Nodes {
		if err := c.createNode(ctx, n); err != nil {
			return c, err
		}
	}
	for _, n := range o.Nodes {
		if err := c.waitNodeReady(ctx, n.Name); err != nil {
			return c, err
		}
	}
	if err := c.poll(ctx, "default ServiceAccount in namespace default", func(ctx context.Context) (bool, error) {
		err := c.Do(ctx, "GET", "/api/v1/namespaces/default/serviceaccounts/default", nil, nil)
		if IsStatus(err, http.StatusNotFound) {
			return false, nil
		}
		return err == nil, err
	}); err != nil {
		return c, err
	}
	c.StartDuration = time.Since(began)
	return c, nil
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '.' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, s)
}

// writePKI generates the service-account key pair and the static token file.
func (c *Cluster) writePKI(extraUsers []string) error {
	pki := filepath.Join(c.Dir, "pki")
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(pki, "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(pki, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		return err
	}

	c.Token = randomToken()
	var b strings.Builder
	// token,user,uid,"group1,group2"
	fmt.Fprintf(&b, "%s,admin,admin-uid,\"system:masters\"\n", c.Token)
	for _, u := range append(slices.Clone(DefaultUsers), extraUsers...) {
		if u == "" || u == "admin" || strings.ContainsAny(u, ",\"\n") {
			return fmt.Errorf("invalid user name %q", u)
		}
		if _, dup := c.users[u]; dup {
			continue
		}
		tok := randomToken()
		c.users[u] = tok
		fmt.Fprintf(&b, "%s,%s,%s-uid\n", tok, u, u)
	}
	return os.WriteFile(filepath.Join(pki, "tokens.csv"), []byte(b.String()), 0o600)
}

func randomToken() string {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func (c *Cluster) startEtcd(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		ports, err := freePorts(2)
		if err != nil {
			return err
		}
		client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
		peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
		// A fresh data dir: an attempt that lost a port race may have
		// recorded its peer URL.
		data := filepath.Join(c.Dir, "etcd")
		if err := os.RemoveAll(data); err != nil {
			return err
		}
		if err := os.MkdirAll(data, 0o700); err != nil {
			return err
		}
		err = c.spawn(etcdName, etcdName,
			"--name=k8stest",
			"--data-dir="+data,
			"--listen-client-urls="+client,
			"--advertise-client-urls="+client,
			"--listen-peer-urls="+peer,
			"--initial-advertise-peer-urls="+peer,
			"--initial-cluster=k8stest="+peer,
			"--unsafe-no-fsync",
			"--log-level=warn",
		)
		if err != nil {
			return err
		}
		err = c.waitProc(ctx, etcdName, "etcd health", func(ctx context.Context) (bool, error) {
			body, code, err := c.get(ctx, client+"/health", "")
			if err != nil {
				return false, nil
			}
			return code == http.StatusOK && bytes.Contains(body, []byte(`"health":"true"`)), nil
		})
		if err == nil {
			c.Etcd = client
			return nil
		}
		if attempt < 5 && c.exitedOnPortConflict(etcdName) {
			continue
		}
		return err
	}
}

// startAPIServerFresh starts kube-apiserver on a new free port.
func (c *Cluster) startAPIServerFresh(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		ports, err := freePorts(1)
		if err != nil {
			return err
		}
		c.apiPort = ports[0]
		c.Server = fmt.Sprintf("https://127.0.0.1:%d", c.apiPort)
		pki := filepath.Join(c.Dir, "pki")
		c.apiArgs = []string{
			"--etcd-servers=" + c.Etcd,
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(c.apiPort),
			"--cert-dir=" + filepath.Join(c.Dir, "certs"),
			"--token-auth-file=" + filepath.Join(pki, "tokens.csv"),
			"--authorization-mode=RBAC",
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + filepath.Join(pki, "sa.pub"),
			"--service-account-signing-key-file=" + filepath.Join(pki, "sa.key"),
			"--service-cluster-ip-range=10.96.0.0/16",
			"--allow-privileged=true",
			// 1.37 refuses a loopback advertise address with the default
			// endpoint reconciler.
			"--endpoint-reconciler-type=none",
			"--v=1",
		}
		err = c.runAPIServer(ctx)
		if err == nil {
			return nil
		}
		if attempt < 5 && c.exitedOnPortConflict(apiserverName) {
			continue
		}
		return err
	}
}

func (c *Cluster) runAPIServer(ctx context.Context) error {
	if err := c.spawn(apiserverName, apiserverName, c.apiArgs...); err != nil {
		return err
	}
	c.client.Transport.(*http.Transport).CloseIdleConnections()
	return c.waitProc(ctx, apiserverName, "kube-apiserver /readyz", func(ctx context.Context) (bool, error) {
		body, code, err := c.get(ctx, c.Server+"/readyz", c.Token)
		if err != nil {
			return false, nil
		}
		return code == http.StatusOK && bytes.Equal(bytes.TrimSpace(body), []byte("ok")), nil
	})
}

// StopAPIServer stops only kube-apiserver (SIGTERM, then SIGKILL after 2 s),
// so that requests to Server fail as for an unreachable cluster.
// etcd, the controllers and kwok keep running.
func (c *Cluster) StopAPIServer() error {
	c.mu.Lock()
	p := c.procs[apiserverName]
	delete(c.procs, apiserverName)
	c.mu.Unlock()
	if p == nil {
		return errors.New("k8stest: kube-apiserver is not running")
	}
	// While the controllers and kwok hold watches open, a SIGTERMed API
	// server stops listening at once but then waits up to a minute for
	// those connections, so it gets only a short grace period.
	err := stopProcs([]*proc{p}, 2*time.Second)
	c.client.Transport.(*http.Transport).CloseIdleConnections()
	return err
}

// StartAPIServer starts kube-apiserver again after StopAPIServer, on the
// same port with the same etcd, and waits for /readyz.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	c.mu.Lock()
	running, stopped := c.procs[apiserverName] != nil, c.stopped
	c.mu.Unlock()
	if stopped {
		return errors.New("k8stest: cluster is stopped")
	}
	if running {
		return errors.New("k8stest: kube-apiserver is already running")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultStartTimeout)
		defer cancel()
	}
	err := c.runAPIServer(ctx)
	if err != nil {
		c.mu.Lock()
		p := c.procs[apiserverName]
		delete(c.procs, apiserverName)
		c.mu.Unlock()
		if p != nil {
			_ = stopProcs([]*proc{p}, 5*time.Second)
		}
	}
	return err
}

// Stop stops the cluster in phases: kwok, the scheduler and the controller
// manager, then kube-apiserver, then etcd, each with SIGTERM to its process
// group and SIGKILL after a deadline. It waits until every process has
// exited and removes the state directory if Start created it. Stop is
// idempotent.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		c.mu.Lock()
		c.stopped = true
		c.mu.Unlock()
		var errs []error
		for _, phase := range []struct {
			names []string
			grace time.Duration
		}{
			{[]string{kwokName, schedulerName, controllerName}, 5 * time.Second},
			{[]string{apiserverName}, 10 * time.Second},
			{[]string{etcdName}, 5 * time.Second},
		} {
			var ps []*proc
			c.mu.Lock()
			for _, n := range phase.names {
				if p := c.procs[n]; p != nil {
					ps = append(ps, p)
					delete(c.procs, n)
				}
			}
			c.mu.Unlock()
			if err := stopProcs(ps, phase.grace); err != nil {
				errs = append(errs, err)
			}
		}
		c.client.Transport.(*http.Transport).CloseIdleConnections()
		if c.ownDir && len(errs) == 0 {
			if err := os.RemoveAll(c.Dir); err != nil {
				errs = append(errs, err)
			}
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

// PIDs returns the process IDs of the running components by name.
func (c *Cluster) PIDs() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]int, len(c.procs))
	for n, p := range c.procs {
		m[n] = p.pid()
	}
	return m
}

// RSS returns the resident set size in bytes of each running component.
func (c *Cluster) RSS() (map[string]int64, error) {
	m := map[string]int64{}
	for n, pid := range c.PIDs() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				m[n] = kb * 1024
			}
		}
	}
	return m, nil
}

// LogTails returns the last n lines of each component's log.
func (c *Cluster) LogTails(n int) string {
	var b strings.Builder
	for _, name := range []string{etcdName, apiserverName, controllerName, schedulerName, kwokName} {
		fmt.Fprintf(&b, "--- %s\n%s", name, tailFile(filepath.Join(c.Dir, "logs", name+".log"), n))
	}
	return b.String()
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)\n", err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	s := strings.Join(lines, "")
	if s != "" && !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return s
}

// AddNode creates a fake node and waits until it is Ready and schedulable.
func (c *Cluster) AddNode(ctx context.Context, n Node) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Minute)
		defer cancel()
	}
	if err := c.createNode(ctx, n); err != nil {
		return err
	}
	return c.waitNodeReady(ctx, n.Name)
}

func (c *Cluster) createNode(ctx context.Context, n Node) error {
	if n.Name == "" {
		return errors.New("k8stest: node without a name")
	}
	if n.CPU == "" {
		n.CPU = "32"
	}
	if n.Memory == "" {
		n.Memory = "256Gi"
	}
	if n.Pods == 0 {
		n.Pods = 110
	}
	labels := map[string]string{
		"kubernetes.io/hostname": n.Name,
		"kubernetes.io/os":       "linux",
		"kubernetes.io/arch":     "amd64",
		"type":                   "kwok",
	}
	capacity := map[string]string{
		"cpu":               n.CPU,
		"memory":            n.Memory,
		"pods":              strconv.Itoa(n.Pods),
		"ephemeral-storage": "1Ti",
	}
	if n.GPUs > 0 {
		capacity["nvidia.com/gpu"] = strconv.Itoa(n.GPUs)
		labels["nvidia.com/gpu.count"] = strconv.Itoa(n.GPUs)
	}
	if n.GPUProduct != "" {
		labels["nvidia.com/gpu.product"] = n.GPUProduct
	}
	for k, v := range n.Labels {
		labels[k] = v
	}
	taints := []map[string]string{}
	for _, t := range n.Taints {
		taints = append(taints, map[string]string{"key": t.Key, "value": t.Value, "effect": t.Effect})
	}
	obj := map[string]any{
		"apiVersion": "v1",
		"kind":       "Node",
		"metadata": map[string]any{
			"name":   n.Name,
			"labels": labels,
			"annotations": map[string]string{
				"kwok.x-k8s.io/node":           "fake",
				"node.alpha.kubernetes.io/ttl": "0",
			},
		},
		"spec": map[string]any{"taints": taints},
		// kwok's node-initialize stage keeps a capacity set at creation.
		"status": map[string]any{"capacity": capacity, "allocatable": capacity},
	}
	if err := c.Do(ctx, "POST", "/api/v1/nodes", obj, nil); err != nil {
		return fmt.Errorf("create node %s: %w", n.Name, err)
	}
	return nil
}

// waitNodeReady waits for the Ready condition and for the not-ready taint,
// which admission adds at creation, to be removed by the node lifecycle
// controller; only then does the scheduler place pods there.
func (c *Cluster) waitNodeReady(ctx context.Context, name string) error {
	return c.poll(ctx, "node "+name+" Ready", func(ctx context.Context) (bool, error) {
		var node struct {
			Spec struct {
				Taints []struct{ Key string } `json:"taints"`
			} `json:"spec"`
			Status struct {
				Conditions []struct{ Type, Status string } `json:"conditions"`
			} `json:"status"`
		}
		if err := c.Do(ctx, "GET", "/api/v1/nodes/"+name, nil, &node); err != nil {
			return false, err
		}
		for _, t := range node.Spec.Taints {
			if t.Key == "node.kubernetes.io/not-ready" || t.Key == "node.kubernetes.io/unreachable" {
				return false, nil
			}
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == "Ready" {
				return cond.Status == "True", nil
			}
		}
		return false, nil
	})
}

// Rule is one rule of an RBAC Role or ClusterRole.
type Rule struct {
	APIGroups       []string `json:"apiGroups,omitempty"`
	Resources       []string `json:"resources,omitempty"`
	Verbs           []string `json:"verbs"`
	ResourceNames   []string `json:"resourceNames,omitempty"`
	NonResourceURLs []string `json:"nonResourceURLs,omitempty"`
}

// ReadOnly lets a user get, list and watch every resource.
var ReadOnly = Rule{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"get", "list", "watch"}}

// UserToken returns the bearer token of a static user (DefaultUsers or
// Options.Users), or "admin" for Token.
func (c *Cluster) UserToken(user string) (string, bool) {
	if user == "admin" {
		return c.Token, true
	}
	tok, ok := c.users[user]
	return tok, ok
}

// UserKubeconfig writes a kubeconfig for a static token user (one of
// DefaultUsers or Options.Users) and returns its path; its context is named
// Context, like the admin kubeconfig. If rules are given they are applied as
// the Role "k8stest:<user>" in namespace (created if missing) bound to the
// user, or, with namespace "", as a ClusterRole and ClusterRoleBinding.
// Without rules the user only has what RBAC gives every authenticated user
// (discovery), so every resource request is forbidden. It returns once the
// authorizer allows the new rules. Calling it again for the same user and
// namespace replaces the rules (removed permissions may linger for a moment).
func (c *Cluster) UserKubeconfig(ctx context.Context, user, namespace string, rules ...Rule) (string, error) {
	tok, ok := c.users[user]
	if !ok {
		return "", fmt.Errorf("k8stest: unknown user %q: static token users must exist when the API server starts (DefaultUsers or Options.Users)", user)
	}
	if len(rules) > 0 {
		if err := c.bindRules(ctx, user, namespace, rules); err != nil {
			return "", err
		}
	}
	path := filepath.Join(c.Dir, "kubeconfig-"+sanitize(user)+".yaml")
	c.kubeconfMu.Lock()
	defer c.kubeconfMu.Unlock()
	if err := writeKubeconfig(path, c.Name, c.Server, user, tok); err != nil {
		return "", err
	}
	return path, nil
}

func (c *Cluster) bindRules(ctx context.Context, user, namespace string, rules []Rule) error {
	name := "k8stest:" + user
	const rbac = "/apis/rbac.authorization.k8s.io/v1"
	subjects := []map[string]string{{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user}}
	roleKind, bindingKind := "ClusterRole", "ClusterRoleBinding"
	rolePath, bindingPath := rbac+"/clusterroles/", rbac+"/clusterrolebindings/"
	meta := map[string]any{"name": name}
	if namespace != "" {
		roleKind, bindingKind = "Role", "RoleBinding"
		rolePath = rbac + "/namespaces/" + namespace + "/roles/"
		bindingPath = rbac + "/namespaces/" + namespace + "/rolebindings/"
		meta["namespace"] = namespace
		ns := map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": namespace}}
		if err := c.Apply(ctx, "/api/v1/namespaces/"+namespace, ns); err != nil {
			return err
		}
	}
	role := map[string]any{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": roleKind, "metadata": meta, "rules": rules}
	if err := c.Apply(ctx, rolePath+name, role); err != nil {
		return err
	}
	binding := map[string]any{
		"apiVersion": "rbac.authorization.k8s.io/v1", "kind": bindingKind, "metadata": meta,
		"roleRef":  map[string]string{"apiGroup": "rbac.authorization.k8s.io", "kind": roleKind, "name": name},
		"subjects": subjects,
	}
	if err := c.Apply(ctx, bindingPath+name, binding); err != nil {
		return err
	}
	// The RBAC authorizer works from informer caches: wait until it allows
	// each rule (a SubjectAccessReview for the rule's own first entries),
	// so the caller's first request sees the new permissions.
	for _, r := range rules {
		if len(r.Verbs) == 0 {
			continue
		}
		spec := map[string]any{"user": user}
		if len(r.NonResourceURLs) > 0 {
			spec["nonResourceAttributes"] = map[string]string{"path": r.NonResourceURLs[0], "verb": r.Verbs[0]}
		} else {
			attrs := map[string]string{"verb": r.Verbs[0], "namespace": namespace}
			if len(r.APIGroups) > 0 {
				attrs["group"] = r.APIGroups[0]
			}
			if len(r.Resources) > 0 {
				res, sub, _ := strings.Cut(r.Resources[0], "/")
				attrs["resource"], attrs["subresource"] = res, sub
			}
			if len(r.ResourceNames) > 0 {
				attrs["name"] = r.ResourceNames[0]
			}
			spec["resourceAttributes"] = attrs
		}
		sar := map[string]any{"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
		err := Poll(ctx, 30*time.Second, 50*time.Millisecond, "RBAC rules of "+user+" in effect", func(ctx context.Context) (bool, error) {
			var out struct{ Status struct{ Allowed bool } }
			err := c.Do(ctx, "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", sar, &out)
			return out.Status.Allowed, err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func writeKubeconfig(path, name, server, user, token string) error {
	q := strconv.Quote
	s := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: %[1]s
  cluster:
    server: %[2]s
    insecure-skip-tls-verify: true
users:
- name: %[3]s
  user:
    token: %[4]s
contexts:
- name: %[1]s
  context:
    cluster: %[1]s
    user: %[3]s
current-context: %[1]s
`, q(name), q(server), q(name+"-"+user), q(token))
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
