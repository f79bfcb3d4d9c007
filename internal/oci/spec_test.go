package oci

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func buildSpec(t *testing.T, o SpecOptions) *specs.Spec {
	t.Helper()
	if o.Rootfs == "" {
		o.Rootfs = t.TempDir()
	}
	s, err := BuildSpec(o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := json.Marshal(s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBuildSpecArgv(t *testing.T) {
	for _, tc := range []struct {
		name            string
		entrypoint, cmd []string
		command, args   []string
		want            []string
	}{
		{name: "entrypoint and cmd", entrypoint: []string{"/ep", "-x"}, cmd: []string{"c1", "c2"},
			want: []string{"/ep", "-x", "c1", "c2"}},
		{name: "cmd only", cmd: []string{"/bin/sh", "-c", "echo"}, want: []string{"/bin/sh", "-c", "echo"}},
		{name: "entrypoint only", entrypoint: []string{"/ep"}, want: []string{"/ep"}},
		{name: "args replace cmd", entrypoint: []string{"/ep"}, cmd: []string{"c"}, args: []string{"a1", "a2"},
			want: []string{"/ep", "a1", "a2"}},
		{name: "args without entrypoint", cmd: []string{"c"}, args: []string{"/a"}, want: []string{"/a"}},
		{name: "command replaces entrypoint and drops cmd", entrypoint: []string{"/ep"}, cmd: []string{"c"},
			command: []string{"/cmd", "-v"}, want: []string{"/cmd", "-v"}},
		{name: "command and args", entrypoint: []string{"/ep"}, cmd: []string{"c"},
			command: []string{"/cmd"}, args: []string{"a"}, want: []string{"/cmd", "a"}},
		{name: "command without image argv", command: []string{"/cmd"}, want: []string{"/cmd"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := v1.Config{Entrypoint: tc.entrypoint, Cmd: tc.cmd}
			s := buildSpec(t, SpecOptions{Image: img, Command: tc.command, Args: tc.args})
			if !slices.Equal(s.Process.Args, tc.want) {
				t.Errorf("argv = %q, want %q", s.Process.Args, tc.want)
			}
			// The inputs are not aliased.
			if len(s.Process.Args) > 0 {
				s.Process.Args[0] = "changed"
				for _, in := range [][]string{tc.entrypoint, tc.cmd, tc.command, tc.args} {
					if slices.Contains(in, "changed") {
						t.Error("argv aliases an input slice")
					}
				}
			}
		})
	}
}

func TestBuildSpecEnv(t *testing.T) {
	for _, tc := range []struct {
		name     string
		image    []string
		env      []string
		user     string
		want     []string
		errMatch string
	}{
		{name: "merge keeps image order, new keys after",
			image: []string{"A=1", "PATH=/x", "B=2", "HOME=/h"},
			env:   []string{"B=20", "C=3", "A=10", "D=", "C=30"},
			want:  []string{"A=10", "PATH=/x", "B=20", "HOME=/h", "C=30", "D="}},
		{name: "default PATH and HOME",
			image: []string{"A=1"},
			want:  []string{"A=1", "PATH=" + DefaultPath, "HOME=/root"}},
		{name: "PATH from the deployment",
			env:  []string{"PATH=/opt/bin", "HOME=/x"},
			want: []string{"PATH=/opt/bin", "HOME=/x"}},
		{name: "value with equals signs",
			env:  []string{"Q=a=b", "PATH=/p", "HOME=/"},
			want: []string{"Q=a=b", "PATH=/p", "HOME=/"}},
		{name: "HOME of the user", user: "app", image: []string{"PATH=/p"},
			want: []string{"PATH=/p", "HOME=/home/app"}},
		{name: "invalid", env: []string{"NOEQUALS"}, errMatch: `"NOEQUALS"`},
		{name: "empty key", env: []string{"=v"}, errMatch: `"=v"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			imageEnv := slices.Clone(tc.image)
			s, err := BuildSpec(SpecOptions{
				Rootfs: userRootfs(t),
				Image:  v1.Config{Env: tc.image, Cmd: []string{"/x"}, User: tc.user},
				Env:    tc.env,
			})
			if tc.errMatch != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errMatch) {
					t.Fatalf("err = %v, want one containing %s", err, tc.errMatch)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(s.Process.Env, tc.want) {
				t.Errorf("env = %q, want %q", s.Process.Env, tc.want)
			}
			if !slices.Equal(tc.image, imageEnv) {
				t.Errorf("image env modified: %q", tc.image)
			}
		})
	}
}

// userRootfs makes a rootfs with etc/passwd and etc/group.
func userRootfs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	passwd := `# comment
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
app:x:1000:1001:App:/home/app:/bin/sh
broken:x:notanumber:1::/:/bin/sh

nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
`
	group := `root:x:0:
wheel:x:10:root,app
app:x:1001:
extra:x:20:daemon,app
video:x:44:
nogroup:x:65534:
`
	for name, data := range map[string]string{"etc/passwd": passwd, "etc/group": group} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestBuildSpecUser(t *testing.T) {
	withFiles := userRootfs(t)
	bare := t.TempDir() // no etc/passwd, no etc/group
	escaping := t.TempDir()
	if err := os.MkdirAll(filepath.Join(escaping, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	// etc/passwd pointing at the host's: must not be read.
	if err := os.Symlink("/etc/passwd", filepath.Join(escaping, "etc/passwd")); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name     string
		rootfs   string
		user     string
		uid, gid uint32
		groups   []uint32
		home     string
		errMatch string
	}{
		{name: "empty", rootfs: withFiles, user: "", uid: 0, gid: 0, groups: []uint32{10}, home: "/root"},
		{name: "root", rootfs: withFiles, user: "root", uid: 0, gid: 0, groups: []uint32{10}, home: "/root"},
		{name: "name", rootfs: withFiles, user: "app", uid: 1000, gid: 1001, groups: []uint32{10, 20}, home: "/home/app"},
		{name: "uid of an entry", rootfs: withFiles, user: "1000", uid: 1000, gid: 1001, groups: []uint32{10, 20}, home: "/home/app"},
		{name: "unknown uid", rootfs: withFiles, user: "1234", uid: 1234, gid: 0, home: "/"},
		{name: "name:group", rootfs: withFiles, user: "app:video", uid: 1000, gid: 44, home: "/home/app"},
		{name: "uid:gid", rootfs: withFiles, user: "1000:20", uid: 1000, gid: 20, home: "/home/app"},
		{name: "name:gid", rootfs: withFiles, user: "daemon:5", uid: 1, gid: 5, home: "/usr/sbin"},
		{name: "uid:group", rootfs: withFiles, user: "4242:wheel", uid: 4242, gid: 10, home: "/"},
		{name: "unknown name", rootfs: withFiles, user: "ghost", errMatch: `"ghost" not found`},
		{name: "unknown group", rootfs: withFiles, user: "app:ghosts", errMatch: `"ghosts" not found`},
		{name: "empty group", rootfs: withFiles, user: "app:", errMatch: `invalid user "app:"`},
		{name: "bare empty", rootfs: bare, user: "", uid: 0, gid: 0, home: "/"},
		{name: "bare root", rootfs: bare, user: "root", uid: 0, gid: 0, home: "/"},
		{name: "bare numeric", rootfs: bare, user: "1000:1000", uid: 1000, gid: 1000, home: "/"},
		{name: "bare uid", rootfs: bare, user: "1000", uid: 1000, gid: 0, home: "/"},
		{name: "bare name", rootfs: bare, user: "app", errMatch: `"app"`},
		{name: "bare group name", rootfs: bare, user: "0:wheel", errMatch: `"wheel"`},
		{name: "passwd escaping the rootfs", rootfs: escaping, user: "root", uid: 0, gid: 0, home: "/"},
		{name: "passwd escaping the rootfs, by name", rootfs: escaping, user: "daemon", errMatch: `"daemon"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := BuildSpec(SpecOptions{Rootfs: tc.rootfs, Image: v1.Config{User: tc.user, Cmd: []string{"/x"}}})
			if tc.errMatch != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errMatch) {
					t.Fatalf("err = %v, want one containing %s", err, tc.errMatch)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			u := s.Process.User
			if u.UID != tc.uid || u.GID != tc.gid || !slices.Equal(u.AdditionalGids, tc.groups) {
				t.Errorf("user = %d:%d %v, want %d:%d %v", u.UID, u.GID, u.AdditionalGids, tc.uid, tc.gid, tc.groups)
			}
			if !slices.Contains(s.Process.Env, "HOME="+tc.home) {
				t.Errorf("env %q lacks HOME=%s", s.Process.Env, tc.home)
			}
		})
	}
}

func TestBuildSpecLimits(t *testing.T) {
	t.Run("none", func(t *testing.T) {
		s := buildSpec(t, SpecOptions{Image: v1.Config{Cmd: []string{"/x"}}, CgroupsPath: "/aloft/ignored"})
		if s.Linux.Resources != nil || s.Linux.CgroupsPath != "" {
			t.Errorf("resources %+v, cgroups path %q; want none", s.Linux.Resources, s.Linux.CgroupsPath)
		}
		b, _ := json.Marshal(s)
		if bytes.Contains(b, []byte(`"resources"`)) {
			t.Error("config.json has linux.resources")
		}
	})
	for _, tc := range []struct {
		name          string
		limits        Limits
		memory        int64 // 0: no memory limit
		quota, period int64 // 0: no cpu limit
	}{
		{"both", Limits{MemoryBytes: 256 << 20, CPUMillicores: 500}, 256 << 20, 50000, 100000},
		{"memory", Limits{MemoryBytes: 64 << 20}, 64 << 20, 0, 0},
		{"cpu", Limits{CPUMillicores: 2500}, 0, 250000, 100000},
		{"tiny cpu", Limits{CPUMillicores: 1}, 0, 1000, 100000},
		{"zero", Limits{}, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := tc.limits
			s := buildSpec(t, SpecOptions{Image: v1.Config{Cmd: []string{"/x"}}, Limits: &l, CgroupsPath: "/aloft/c1"})
			r := s.Linux.Resources
			if r == nil || s.Linux.CgroupsPath != "/aloft/c1" {
				t.Fatalf("resources %+v, cgroups path %q", r, s.Linux.CgroupsPath)
			}
			switch {
			case tc.memory == 0 && r.Memory != nil:
				t.Errorf("memory %+v, want none", r.Memory)
			case tc.memory != 0 && (r.Memory == nil || r.Memory.Limit == nil || *r.Memory.Limit != tc.memory):
				t.Errorf("memory %+v, want limit %d", r.Memory, tc.memory)
			}
			switch {
			case tc.quota == 0 && r.CPU != nil:
				t.Errorf("cpu %+v, want none", r.CPU)
			case tc.quota != 0 && (r.CPU == nil || r.CPU.Quota == nil || r.CPU.Period == nil ||
				*r.CPU.Quota != tc.quota || int64(*r.CPU.Period) != tc.period):
				t.Errorf("cpu %+v, want quota %d period %d", r.CPU, tc.quota, tc.period)
			}
		})
	}
	t.Run("negative", func(t *testing.T) {
		_, err := BuildSpec(SpecOptions{Rootfs: t.TempDir(), Image: v1.Config{Cmd: []string{"/x"}}, Limits: &Limits{MemoryBytes: -1}})
		if err == nil {
			t.Fatal("negative memory accepted")
		}
	})
}

func TestBuildSpecLayout(t *testing.T) {
	rootfs := t.TempDir()
	for _, netns := range []string{"", "/run/netns/aloft-1"} {
		t.Run("netns="+netns, func(t *testing.T) {
			s := buildSpec(t, SpecOptions{
				Rootfs: rootfs, Hostname: "web-1", Netns: netns,
				Image: v1.Config{Cmd: []string{"/x"}, WorkingDir: "/srv", ExposedPorts: map[string]struct{}{"80/tcp": {}}},
			})
			if s.Version != specs.Version {
				t.Errorf("version %q", s.Version)
			}
			if s.Root == nil || s.Root.Path != rootfs || !s.Root.Readonly {
				t.Errorf("root %+v, want %s read-only", s.Root, rootfs)
			}
			if s.Hostname != "web-1" {
				t.Errorf("hostname %q", s.Hostname)
			}
			var types []specs.LinuxNamespaceType
			for _, ns := range s.Linux.Namespaces {
				types = append(types, ns.Type)
				want := ""
				if ns.Type == specs.NetworkNamespace {
					want = netns
				}
				if ns.Path != want {
					t.Errorf("%s namespace path %q, want %q", ns.Type, ns.Path, want)
				}
			}
			slices.Sort(types)
			if want := []specs.LinuxNamespaceType{"ipc", "mount", "network", "pid", "uts"}; !slices.Equal(types, want) {
				t.Errorf("namespaces %v, want %v", types, want)
			}

			p := s.Process
			if p.Terminal || !p.NoNewPrivileges || p.Cwd != "/srv" {
				t.Errorf("terminal %v, no new privileges %v, cwd %q", p.Terminal, p.NoNewPrivileges, p.Cwd)
			}
			c := p.Capabilities
			if len(c.Bounding) != 14 || !slices.Equal(c.Bounding, c.Effective) || !slices.Equal(c.Bounding, c.Permitted) ||
				!slices.Contains(c.Bounding, "CAP_NET_BIND_SERVICE") || slices.Contains(c.Bounding, "CAP_SYS_ADMIN") ||
				len(c.Inheritable) != 0 || len(c.Ambient) != 0 {
				t.Errorf("capabilities %+v", c)
			}
			if len(p.Rlimits) != 1 || p.Rlimits[0].Type != "RLIMIT_NOFILE" || p.Rlimits[0].Soft != p.Rlimits[0].Hard ||
				p.Rlimits[0].Hard == 0 || p.Rlimits[0].Hard > 1048576 {
				t.Errorf("rlimits %+v", p.Rlimits)
			}

			mounts := map[string]specs.Mount{}
			for _, m := range s.Mounts {
				mounts[m.Destination] = m
			}
			for dest, typ := range map[string]string{"/proc": "proc", "/dev": "tmpfs", "/dev/pts": "devpts",
				"/dev/shm": "tmpfs", "/dev/mqueue": "mqueue", "/sys": "sysfs", "/tmp": "tmpfs"} {
				if mounts[dest].Type != typ {
					t.Errorf("mount %s: %+v, want type %s", dest, mounts[dest], typ)
				}
			}
			if len(mounts) != 7 {
				t.Errorf("%d mounts: %+v", len(s.Mounts), s.Mounts)
			}
			if o := mounts["/tmp"].Options; !slices.Contains(o, "mode=1777") || !slices.Contains(o, "nosuid") ||
				!slices.Contains(o, "nodev") || slices.Contains(o, "ro") {
				t.Errorf("/tmp options %q", o)
			}
			if !slices.Contains(mounts["/sys"].Options, "ro") {
				t.Errorf("/sys options %q", mounts["/sys"].Options)
			}
			if !slices.Contains(s.Linux.MaskedPaths, "/proc/kcore") || !slices.Contains(s.Linux.ReadonlyPaths, "/proc/sys") {
				t.Errorf("masked %q read-only %q", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
			}
		})
	}
	t.Run("default cwd", func(t *testing.T) {
		if s := buildSpec(t, SpecOptions{Image: v1.Config{Cmd: []string{"/x"}}}); s.Process.Cwd != "/" {
			t.Errorf("cwd %q", s.Process.Cwd)
		}
	})
}

func TestBuildSpecErrors(t *testing.T) {
	good := SpecOptions{Rootfs: t.TempDir(), Image: v1.Config{Cmd: []string{"/x"}}}
	for _, tc := range []struct {
		name  string
		edit  func(*SpecOptions)
		match string
	}{
		{"no argv", func(o *SpecOptions) { o.Image.Cmd = nil }, "image has no entrypoint or cmd and the spec sets no command"},
		{"args only without image argv", func(o *SpecOptions) { o.Image.Cmd = nil; o.Args = nil }, "no entrypoint or cmd"},
		{"relative rootfs", func(o *SpecOptions) { o.Rootfs = "rootfs" }, "rootfs"},
		{"no rootfs", func(o *SpecOptions) { o.Rootfs = "" }, "rootfs"},
		{"relative netns", func(o *SpecOptions) { o.Netns = "netns/x" }, "network namespace"},
		{"unknown user", func(o *SpecOptions) { o.Image.User = "nobody-here" }, "nobody-here"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.edit(&o)
			if _, err := BuildSpec(o); err == nil || !strings.Contains(err.Error(), tc.match) {
				t.Fatalf("err = %v, want one containing %q", err, tc.match)
			}
		})
	}
}

// TestRuncRun runs a container with runc: the rootfs from Cache, the config
// from BuildSpec.
func TestRuncRun(t *testing.T) {
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("runc not installed")
	}
	if os.Geteuid() != 0 {
		t.Skip("running containers with runc needs root")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to build the test program")
	}

	// A static program that reports what the container gives it.
	src := t.TempDir()
	const prog = `package main

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

func main() {
	wd, _ := os.Getwd()
	fmt.Printf("argv=%q\n", os.Args)
	fmt.Printf("FOO=%s uid=%d gid=%d cwd=%s\n", os.Getenv("FOO"), os.Getuid(), os.Getgid(), wd)
	fmt.Println("write /tmp:", os.WriteFile("/tmp/probe", []byte("x"), 0o644))
	err := os.WriteFile("/probe", []byte("x"), 0o644)
	fmt.Println("write / read-only:", errors.Is(err, syscall.EROFS))
}
`
	for name, data := range map[string]string{"main.go": prog, "go.mod": "module probe\n\ngo 1.22\n"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(src, "probe")
	build := exec.Command(goTool, "build", "-o", bin, ".")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	binData, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}

	img, digest := imageOf(t, layerOf(t, tarOf(t, dirE("app/", 0o755), fileE("app/probe", 0o755, string(binData))), nil))
	cache := newCache(t)
	rootfs, _, err := cache.Rootfs(context.Background(), digest, img)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := BuildSpec(SpecOptions{
		Rootfs:   rootfs,
		Hostname: "probe",
		Image: v1.Config{
			Entrypoint: []string{"/app/probe"},
			Cmd:        []string{"image-cmd"},
			Env:        []string{"FOO=from-image"},
			WorkingDir: "/app",
		},
		Args: []string{"one", "two words"},
		Env:  []string{"FOO=bar"},
	})
	if err != nil {
		t.Fatal(err)
	}
	bundle := t.TempDir()
	cfg, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}

	state := t.TempDir()
	id := "aloft-oci-test-" + strings.ToLower(rand.Text()[:12])
	t.Cleanup(func() { _ = exec.Command(runc, "--root", state, "delete", "-f", id).Run() })
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(runc, "--root", state, "run", "--bundle", bundle, id)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("runc run: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	want := `argv=["/app/probe" "one" "two words"]
FOO=bar uid=0 gid=0 cwd=/app
write /tmp: <nil>
write / read-only: true
`
	if stdout.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s\nstderr:\n%s", stdout.String(), want, stderr.String())
	}
	if _, err := os.Lstat(filepath.Join(rootfs, "tmp/probe")); err == nil {
		t.Error("the container's /tmp write reached the shared rootfs")
	}
}
