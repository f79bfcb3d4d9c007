// Command mkimage builds a minimal OCI image around one static Linux binary,
// for aloft's local image store (aloft image import):
//
//	go run ./examples/mkimage -bin bin/aloft-completions -name hello-world:latest -port 8080 -o bin/hello-world.tar
//
// The image has one layer: the binary at /app/<basename> (mode 0755) and an
// empty /tmp (mode 1777). Its config runs the binary as the entrypoint in
// /app, with PORT=<port> in the environment and <port>/tcp exposed. The
// output is a `docker save` archive (-o), or an OCI image layout directory
// (-layout). The same binary and flags always give the same bytes: every
// timestamp is SOURCE_DATE_EPOCH, or 1970-01-01 when it is unset.
package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// defaultPath is the PATH of the image's environment.
const defaultPath = "PATH=/app:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Annotations of OCI layout index entries, as `docker save` (v25+) writes them.
const (
	annotationRefName        = "org.opencontainers.image.ref.name"
	annotationContainerdName = "io.containerd.image.name"
)

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	var ue usageError
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.As(err, &ue):
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

// usageError is a bad flag or argument (exit code 2).
type usageError struct{ error }

// options are mkimage's flags.
type options struct {
	bin, name, out, layoutDir, entrypoint string
	port                                  int
	env                                   []string
	created                               time.Time
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.bin, "bin", "", "the static Linux binary to run (required)")
	fs.StringVar(&o.name, "name", "", "image name[:tag] (default: <binary name>:latest)")
	fs.IntVar(&o.port, "port", 8080, "port the binary listens on: sets PORT and exposes <port>/tcp; 0 for neither")
	fs.StringVar(&o.out, "o", "", "write a `docker save` archive to this file")
	fs.StringVar(&o.layoutDir, "layout", "", "write an OCI image layout to this (new or empty) directory instead")
	fs.StringVar(&o.entrypoint, "entrypoint", "", "entrypoint (default: /app/<binary name>)")
	fs.Func("env", "K=V to add to the environment (repeatable)", func(s string) error {
		k, _, ok := strings.Cut(s, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t\n") {
			return fmt.Errorf("%q is not K=V", s)
		}
		o.env = append(o.env, s)
		return nil
	})
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: mkimage -bin PATH [-name NAME:TAG] [-port N] [-entrypoint PATH] [-env K=V ...] (-o FILE.tar | -layout DIR)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, usageError{err}
	}
	switch {
	case fs.NArg() > 0:
		return o, usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	case o.bin == "":
		return o, usageError{errors.New("-bin is required")}
	case (o.out == "") == (o.layoutDir == ""):
		return o, usageError{errors.New("give exactly one of -o FILE.tar and -layout DIR")}
	case o.port < 0 || o.port > 65535:
		return o, usageError{fmt.Errorf("-port %d is not a port number", o.port)}
	}
	if o.name == "" {
		o.name = filepath.Base(o.bin) + ":latest"
	}
	if o.entrypoint == "" {
		o.entrypoint = "/app/" + filepath.Base(o.bin)
	}
	o.created = time.Unix(0, 0).UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return o, usageError{fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a number of seconds", s)}
		}
		o.created = time.Unix(sec, 0).UTC()
	}
	return o, nil
}

func run(args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	tag, err := name.NewTag(o.name)
	if err != nil {
		return usageError{fmt.Errorf("-name %q: %w", o.name, err)}
	}
	img, err := build(o)
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	if o.out != "" {
		if err := writeDockerArchive(o.out, tag, img); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s (%s, %s)\n", o.out, tag, digest)
		return nil
	}
	if err := writeLayout(o.layoutDir, tag, img); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote OCI layout %s (%s, %s)\n", o.layoutDir, tag, digest)
	return nil
}

// checkBinary returns the GOARCH of a static Linux ELF executable.
func checkBinary(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", fmt.Errorf("%s is not a Linux ELF executable: %w", path, err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return "", fmt.Errorf("%s is not an executable (ELF type %s)", path, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", fmt.Errorf("%s is dynamically linked; build with CGO_ENABLED=0", path)
		}
	}
	arch, ok := map[elf.Machine]string{
		elf.EM_X86_64: "amd64", elf.EM_AARCH64: "arm64", elf.EM_386: "386", elf.EM_ARM: "arm",
		elf.EM_RISCV: "riscv64", elf.EM_PPC64: "ppc64le", elf.EM_S390: "s390x", elf.EM_LOONGARCH: "loong64",
	}[f.Machine]
	if !ok {
		return "", fmt.Errorf("%s: unsupported machine %s", path, f.Machine)
	}
	if arch == "ppc64le" && f.ByteOrder.String() != "LittleEndian" {
		arch = "ppc64"
	}
	return arch, nil
}

// build makes the image: empty base, one layer with the binary, and config.
func build(o options) (v1.Image, error) {
	arch, err := checkBinary(o.bin)
	if err != nil {
		return nil, err
	}
	bin, err := os.ReadFile(o.bin)
	if err != nil {
		return nil, err
	}
	layerTar, err := layerContent(path.Join("app", filepath.Base(o.bin)), bin, o.created)
	if err != nil {
		return nil, err
	}
	// Docker media types (those of empty.Image): a `docker save` archive
	// keeps no manifest, and the one read back from it uses these types, so
	// the image has the same digest in both output formats and in the store.
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.DockerLayer))
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: layer, History: v1.History{
		Created: v1.Time{Time: o.created}, CreatedBy: "mkimage: COPY " + filepath.Base(o.bin) + " /app/",
	}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: o.created}
	cf.Config.Entrypoint = []string{o.entrypoint}
	cf.Config.WorkingDir = "/app"
	cf.Config.Env = []string{defaultPath}
	if o.port > 0 {
		p := strconv.Itoa(o.port)
		cf.Config.Env = append(cf.Config.Env, "PORT="+p)
		cf.Config.ExposedPorts = map[string]struct{}{p + "/tcp": {}}
	}
	cf.Config.Env = mergeEnv(cf.Config.Env, o.env)
	return mutate.ConfigFile(img, cf)
}

// mergeEnv appends extra K=V pairs; a later K replaces an earlier one.
func mergeEnv(env, extra []string) []string {
	for _, kv := range extra {
		k, _, _ := strings.Cut(kv, "=")
		replaced := false
		for i, e := range env {
			if strings.HasPrefix(e, k+"=") {
				env[i], replaced = kv, true
			}
		}
		if !replaced {
			env = append(env, kv)
		}
	}
	return env
}

// layerContent is the layer tar: app/, app/<name> and an empty tmp/, owned
// by root, all with the same timestamp.
func layerContent(binPath string, bin []byte, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdrs := []*tar.Header{
		{Name: "app/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: binPath, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin))},
		{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777},
	}
	for _, h := range hdrs {
		h.ModTime, h.Format = mtime, tar.FormatPAX
		h.Uname, h.Gname = "root", "root"
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(bin); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeDockerArchive writes a `docker save` archive via a temp file and rename.
func writeDockerArchive(out string, tag name.Tag, img v1.Image) error {
	if dir := filepath.Dir(out); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, out)
}

// writeLayout writes an OCI image layout holding img into a new or empty dir.
func writeLayout(dir string, tag name.Tag, img v1.Image) error {
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return fmt.Errorf("-layout %s: directory is not empty", dir)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendImage(img, layout.WithAnnotations(map[string]string{
		annotationContainerdName: tag.Name(),
		annotationRefName:        tag.TagStr(),
	}))
}
