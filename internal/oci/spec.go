package oci

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// DefaultPath is the PATH a container gets when neither the image nor the
// deployment sets one (Docker's default).
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

const (
	cpuPeriod   = 100000 // µs
	minCPUQuota = 1000   // µs, the kernel's minimum
	nofileLimit = 1048576
)

// defaultCapabilities is Docker's default capability set.
var defaultCapabilities = []string{
	"CAP_CHOWN",
	"CAP_DAC_OVERRIDE",
	"CAP_FSETID",
	"CAP_FOWNER",
	"CAP_MKNOD",
	"CAP_NET_RAW",
	"CAP_SETGID",
	"CAP_SETUID",
	"CAP_SETFCAP",
	"CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT",
	"CAP_KILL",
	"CAP_AUDIT_WRITE",
}

// Masked and read-only paths as in `runc spec`.
var (
	maskedPaths = []string{
		"/proc/acpi",
		"/proc/asound",
		"/proc/kcore",
		"/proc/keys",
		"/proc/latency_stats",
		"/proc/timer_list",
		"/proc/timer_stats",
		"/proc/sched_debug",
		"/sys/firmware",
		"/proc/scsi",
	}
	readonlyPaths = []string{
		"/proc/bus",
		"/proc/fs",
		"/proc/irq",
		"/proc/sys",
		"/proc/sysrq-trigger",
	}
)

// Limits are the resource limits of a container. Zero means no limit for that
// resource.
type Limits struct {
	MemoryBytes   int64
	CPUMillicores int64 // 1000 = one CPU; values under 10 are raised to 10
}

// SpecOptions are the inputs of BuildSpec.
type SpecOptions struct {
	Rootfs   string // absolute path (from Cache.Rootfs)
	Hostname string
	Netns    string    // path of a pinned network namespace to join; "" = a new, empty one
	Image    v1.Config // the image config: Entrypoint, Cmd, Env, WorkingDir, User
	// Command replaces the image's Entrypoint and drops its Cmd (Kubernetes
	// semantics).
	Command []string
	// Args replaces the image's Cmd.
	Args []string
	// Env (KEY=VALUE) is applied over the image's Env: a key set in both
	// keeps its place in the image's order with the new value; new keys
	// follow in their order.
	Env         []string
	Limits      *Limits // nil: no linux.resources at all
	CgroupsPath string  // used only with Limits
}

// BuildSpec returns the OCI runtime config of a container: the process from
// the image config and the deployment, a read-only root, a writable tmpfs at
// /tmp, new pid, mount, ipc, uts and network namespaces (the latter joined
// from Netns when set), Docker's default capabilities and no new privileges.
//
// It is pure apart from reading etc/passwd and etc/group in the rootfs,
// confined to it, and this process's RLIMIT_NOFILE (the container gets
// 1048576 open files, or this process's hard limit if lower).
//
// The process gets PATH=DefaultPath when its environment has no PATH, and
// HOME from the user's passwd entry ("/" without one) when it has no HOME.
func BuildSpec(o SpecOptions) (*specs.Spec, error) {
	if o.Rootfs == "" || !filepath.IsAbs(o.Rootfs) {
		return nil, fmt.Errorf("oci: rootfs must be an absolute path, not %q", o.Rootfs)
	}
	if o.Netns != "" && !filepath.IsAbs(o.Netns) {
		return nil, fmt.Errorf("oci: network namespace must be an absolute path, not %q", o.Netns)
	}

	var argv []string
	if len(o.Command) > 0 {
		argv = slices.Concat(o.Command, o.Args)
	} else if len(o.Args) > 0 {
		argv = slices.Concat(o.Image.Entrypoint, o.Args)
	} else {
		argv = slices.Concat(o.Image.Entrypoint, o.Image.Cmd)
	}
	if len(argv) == 0 {
		return nil, errors.New("image has no entrypoint or cmd and the spec sets no command")
	}

	user, err := resolveUser(o.Rootfs, o.Image.User)
	if err != nil {
		return nil, err
	}

	env, err := mergeEnv(o.Image.Env, o.Env)
	if err != nil {
		return nil, err
	}
	if !hasEnv(env, "PATH") {
		env = append(env, "PATH="+DefaultPath)
	}
	if !hasEnv(env, "HOME") {
		env = append(env, "HOME="+user.home)
	}

	cwd := "/"
	if o.Image.WorkingDir != "" {
		cwd = path.Join("/", o.Image.WorkingDir)
	}

	netns := specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: o.Netns}
	spec := &specs.Spec{
		Version:  specs.Version,
		Root:     &specs.Root{Path: o.Rootfs, Readonly: true},
		Hostname: o.Hostname,
		Process: &specs.Process{
			Terminal: false,
			User: specs.User{
				UID:            user.uid,
				GID:            user.gid,
				AdditionalGids: user.groups,
			},
			Args: argv,
			Env:  env,
			Cwd:  cwd,
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  slices.Clone(defaultCapabilities),
				Effective: slices.Clone(defaultCapabilities),
				Permitted: slices.Clone(defaultCapabilities),
			},
			Rlimits: []specs.POSIXRlimit{
				{Type: "RLIMIT_NOFILE", Hard: nofile(), Soft: nofile()},
			},
			NoNewPrivileges: true,
		},
		Mounts: defaultMounts(),
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.MountNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
				netns,
			},
			MaskedPaths:   slices.Clone(maskedPaths),
			ReadonlyPaths: slices.Clone(readonlyPaths),
		},
	}

	if l := o.Limits; l != nil {
		if l.MemoryBytes < 0 || l.CPUMillicores < 0 {
			return nil, fmt.Errorf("oci: negative resource limits %+v", *l)
		}
		res := &specs.LinuxResources{}
		if l.MemoryBytes > 0 {
			m := l.MemoryBytes
			res.Memory = &specs.LinuxMemory{Limit: &m}
		}
		if l.CPUMillicores > 0 {
			quota := max(l.CPUMillicores*cpuPeriod/1000, minCPUQuota)
			period := uint64(cpuPeriod)
			res.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
		}
		spec.Linux.Resources = res
		spec.Linux.CgroupsPath = o.CgroupsPath
	}
	return spec, nil
}

// nofile is the container's RLIMIT_NOFILE: 1048576, or less when this
// process's hard limit is lower: runc inherits it and, without
// CAP_SYS_RESOURCE (as in some sandboxes), could not raise it.
func nofile() uint64 {
	var l unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &l); err == nil && l.Max < nofileLimit {
		return l.Max
	}
	return nofileLimit
}

func defaultMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs",
			Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts",
			Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm",
			Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue",
			Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs",
			Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs",
			Options: []string{"nosuid", "nodev", "mode=1777"}},
	}
}

// mergeEnv applies over (KEY=VALUE) to base. The result lists base's keys in
// their order, then the new keys of over in theirs; for a key set more than
// once the last value wins.
func mergeEnv(base, over []string) ([]string, error) {
	var out []string
	index := map[string]int{}
	set := func(kv string) {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := index[k]; ok {
			out[i] = kv
			return
		}
		index[k] = len(out)
		out = append(out, kv)
	}
	for _, kv := range base {
		set(kv)
	}
	for _, kv := range over {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return nil, fmt.Errorf("oci: invalid environment variable %q: want KEY=VALUE", kv)
		}
		set(kv)
	}
	return out, nil
}

func hasEnv(env []string, key string) bool {
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == key {
			return true
		}
	}
	return false
}

type execUser struct {
	uid, gid uint32
	groups   []uint32 // supplementary
	home     string
}

type passwdEntry struct {
	name     string
	uid, gid uint32
	home     string
}

type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

// resolveUser resolves an image's User ("", "user", "user:group", each part a
// name or a number) like Docker and runc: names are looked up in the rootfs's
// etc/passwd and etc/group; a user without a group gets the primary group of
// its passwd entry (0 without one) and the groups that list it as a member.
func resolveUser(rootfs, spec string) (execUser, error) {
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	if hasGroup && groupPart == "" {
		return execUser{}, fmt.Errorf("oci: invalid user %q", spec)
	}
	if userPart == "" {
		userPart = "root"
	}
	// A numeric user or root needs no passwd entry: errors matter only for
	// other names.
	users, usersErr := readPasswd(rootfs)

	u := execUser{home: "/"}
	var entry *passwdEntry
	if n, err := strconv.ParseUint(userPart, 10, 32); err == nil {
		u.uid = uint32(n)
		entry = findUser(users, func(e passwdEntry) bool { return e.uid == u.uid })
	} else {
		entry = findUser(users, func(e passwdEntry) bool { return e.name == userPart })
		switch {
		case entry != nil, userPart == "root":
		case usersErr != nil:
			return execUser{}, fmt.Errorf("oci: image user %q: %w", userPart, usersErr)
		default:
			return execUser{}, fmt.Errorf("oci: image user %q not found in the image's /etc/passwd", userPart)
		}
	}
	if entry != nil {
		u.uid, u.gid = entry.uid, entry.gid
		if entry.home != "" {
			u.home = entry.home
		}
	}

	switch {
	case hasGroup:
		if n, err := strconv.ParseUint(groupPart, 10, 32); err == nil {
			u.gid = uint32(n)
			break
		}
		groups, err := readGroup(rootfs)
		if err != nil {
			return execUser{}, fmt.Errorf("oci: image group %q: %w", groupPart, err)
		}
		i := slices.IndexFunc(groups, func(g groupEntry) bool { return g.name == groupPart })
		if i < 0 {
			return execUser{}, fmt.Errorf("oci: image group %q not found in the image's /etc/group", groupPart)
		}
		u.gid = groups[i].gid
	case entry != nil:
		groups, _ := readGroup(rootfs) // supplementary groups are best effort
		for _, g := range groups {
			if g.gid != u.gid && slices.Contains(g.members, entry.name) && !slices.Contains(u.groups, g.gid) {
				u.groups = append(u.groups, g.gid)
			}
		}
	}
	return u, nil
}

func findUser(users []passwdEntry, match func(passwdEntry) bool) *passwdEntry {
	if i := slices.IndexFunc(users, match); i >= 0 {
		return &users[i]
	}
	return nil
}

// readEtc reads a file of the rootfs without following links out of it.
func readEtc(rootfs, name string) (string, error) {
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return "", err
	}
	defer root.Close()
	b, err := root.ReadFile(name)
	if err != nil {
		return "", fmt.Errorf("reading /%s: %w", name, err)
	}
	return string(b), nil
}

func readPasswd(rootfs string) ([]passwdEntry, error) {
	data, err := readEtc(rootfs, "etc/passwd")
	if err != nil {
		return nil, err
	}
	var users []passwdEntry
	for _, fields := range etcLines(data) {
		if len(fields) < 4 {
			continue
		}
		uid, err1 := strconv.ParseUint(fields[2], 10, 32)
		gid, err2 := strconv.ParseUint(fields[3], 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		e := passwdEntry{name: fields[0], uid: uint32(uid), gid: uint32(gid)}
		if len(fields) > 5 {
			e.home = fields[5]
		}
		users = append(users, e)
	}
	return users, nil
}

func readGroup(rootfs string) ([]groupEntry, error) {
	data, err := readEtc(rootfs, "etc/group")
	if err != nil {
		return nil, err
	}
	var groups []groupEntry
	for _, fields := range etcLines(data) {
		if len(fields) < 3 {
			continue
		}
		gid, err := strconv.ParseUint(fields[2], 10, 32)
		if err != nil {
			continue
		}
		g := groupEntry{name: fields[0], gid: uint32(gid)}
		if len(fields) > 3 && fields[3] != "" {
			g.members = strings.Split(fields[3], ",")
		}
		groups = append(groups, g)
	}
	return groups, nil
}

// etcLines splits a passwd/group style file into the fields of its entries.
func etcLines(data string) [][]string {
	var out [][]string
	for line := range strings.Lines(data) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, strings.Split(line, ":"))
	}
	return out
}
