package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aloft-dev/aloft/internal/image"
)

// staticHello builds a tiny static Linux binary for this machine.
func staticHello(t *testing.T) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("images run Linux binaries")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\n\nfunc main() { println(\"hello\") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "hello")
	cmd := exec.Command("go", "build", "-o", bin, src)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH, "GOFLAGS=", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func mkimage(t *testing.T, args ...string) error {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(args, &out, &errOut)
	if err == nil && !strings.HasPrefix(out.String(), "wrote ") {
		t.Errorf("mkimage printed %q", out.String())
	}
	return err
}

type entry struct {
	mode int64
	typ  byte
	body []byte
	mod  time.Time
}

func TestMkimageDockerArchive(t *testing.T) {
	bin := staticHello(t)
	binBytes, _ := os.ReadFile(bin)
	out := filepath.Join(t.TempDir(), "hello-world.tar")
	if err := mkimage(t, "-bin", bin, "-name", "hello-world:latest", "-port", "8080", "-o", out, "-env", "GREETING=hi", "-env", "PORT=9090"); err != nil {
		t.Fatal(err)
	}
	// Deterministic: the same binary gives the same archive.
	out2 := filepath.Join(t.TempDir(), "again.tar")
	if err := mkimage(t, "-bin", bin, "-name", "hello-world:latest", "-port", "8080", "-o", out2, "-env", "GREETING=hi", "-env", "PORT=9090"); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(out)
	b, _ := os.ReadFile(out2)
	if !bytes.Equal(a, b) {
		t.Error("two builds from the same binary differ")
	}

	st, err := image.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := st.Import(out)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	if len(imgs) != 1 || imgs[0].Name != "hello-world:latest" || imgs[0].Platform != "linux/"+runtime.GOARCH {
		t.Fatalf("imported %+v", imgs)
	}
	// The digest survives the docker save format, and matches the -layout build.
	dir := filepath.Join(t.TempDir(), "layout")
	if err := mkimage(t, "-bin", bin, "-name", "hello-world:latest", "-port", "8080", "-layout", dir, "-env", "GREETING=hi", "-env", "PORT=9090"); err != nil {
		t.Fatal(err)
	}
	fromLayout, err := st.Import(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fromLayout[0].Digest != imgs[0].Digest {
		t.Errorf("digest from the docker archive %s, from the OCI layout %s", imgs[0].Digest, fromLayout[0].Digest)
	}
	img, info, err := st.Get("hello-world")
	if err != nil {
		t.Fatal(err)
	}
	if !info.Created.Equal(time.Unix(0, 0)) {
		t.Errorf("created %v, want the epoch", info.Created)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/app/hello"}) {
		t.Errorf("entrypoint %q", cf.Config.Entrypoint)
	}
	if cf.Config.WorkingDir != "/app" {
		t.Errorf("working dir %q", cf.Config.WorkingDir)
	}
	// -env PORT=9090 overrides the one -port sets; the exposed port is -port's.
	wantEnv := []string{defaultPath, "PORT=9090", "GREETING=hi"}
	if !slices.Equal(cf.Config.Env, wantEnv) {
		t.Errorf("env %q, want %q", cf.Config.Env, wantEnv)
	}
	if _, ok := cf.Config.ExposedPorts["8080/tcp"]; !ok || len(cf.Config.ExposedPorts) != 1 {
		t.Errorf("exposed ports %v", cf.Config.ExposedPorts)
	}

	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got := map[string]entry{}
	var order []string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		got[h.Name] = entry{h.Mode, h.Typeflag, body, h.ModTime}
		order = append(order, h.Name)
	}
	if !slices.Equal(order, []string{"app/", "app/hello", "tmp/"}) {
		t.Fatalf("layer entries %q", order)
	}
	if e := got["app/hello"]; e.typ != tar.TypeReg || e.mode != 0o755 || !bytes.Equal(e.body, binBytes) {
		t.Errorf("app/hello: type %c mode %o, %d bytes (want %d)", e.typ, e.mode, len(e.body), len(binBytes))
	}
	if e := got["tmp/"]; e.typ != tar.TypeDir || e.mode != 0o1777 {
		t.Errorf("tmp/: type %c mode %o, want a directory with mode 1777", e.typ, e.mode)
	}
	for n, e := range got {
		if !e.mod.Equal(time.Unix(0, 0)) {
			t.Errorf("%s has mtime %v, want the epoch", n, e.mod)
		}
	}
}

func TestMkimageLayout(t *testing.T) {
	bin := staticHello(t)
	t.Setenv("SOURCE_DATE_EPOCH", "1767225600") // 2026-01-01
	dir := filepath.Join(t.TempDir(), "layout")
	if err := mkimage(t, "-bin", bin, "-name", "ghcr.io/org/hello:v1", "-port", "0", "-entrypoint", "/app/hello", "-layout", dir); err != nil {
		t.Fatal(err)
	}
	st, err := image.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := st.Import(dir)
	if err != nil {
		t.Fatalf("import layout: %v", err)
	}
	if len(imgs) != 1 || imgs[0].Name != "ghcr.io/org/hello:v1" || !imgs[0].Created.Equal(time.Unix(1767225600, 0)) {
		t.Fatalf("imported %+v", imgs)
	}
	img, _, err := st.Get("ghcr.io/org/hello:v1")
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	if len(cf.Config.ExposedPorts) != 0 || !slices.Equal(cf.Config.Env, []string{defaultPath}) {
		t.Errorf("-port 0: exposed %v env %q", cf.Config.ExposedPorts, cf.Config.Env)
	}
	// A non-empty layout directory is not overwritten.
	if err := mkimage(t, "-bin", bin, "-layout", dir); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("second write into %s: %v", dir, err)
	}
}

func TestMkimageRefuses(t *testing.T) {
	bin := staticHello(t)
	out := filepath.Join(t.TempDir(), "x.tar")
	notELF := filepath.Join(t.TempDir(), "script")
	os.WriteFile(notELF, []byte("#!/bin/sh\necho hi\n"), 0o755)
	cases := []struct {
		args  []string
		want  string
		usage bool
	}{
		{[]string{"-o", out}, "-bin is required", true},
		{[]string{"-bin", bin}, "exactly one of -o", true},
		{[]string{"-bin", bin, "-o", out, "-layout", out}, "exactly one of -o", true},
		{[]string{"-bin", bin, "-o", out, "-env", "NOEQUALS"}, "not K=V", true},
		{[]string{"-bin", bin, "-o", out, "-port", "70000"}, "not a port", true},
		{[]string{"-bin", bin, "-o", out, "-name", "Bad Name"}, "-name", true},
		{[]string{"-bin", notELF, "-o", out}, "not a Linux ELF executable", false},
	}
	if dyn := dynamicBinary(); dyn != "" {
		cases = append(cases, struct {
			args  []string
			want  string
			usage bool
		}{[]string{"-bin", dyn, "-o", out}, "dynamically linked; build with CGO_ENABLED=0", false})
	} else {
		t.Log("no dynamically linked binary found; skipping that case")
	}
	for _, c := range cases {
		err := run(c.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("mkimage %q: %v, want %q", c.args, err, c.want)
			continue
		}
		var ue usageError
		if errors.As(err, &ue) != c.usage {
			t.Errorf("mkimage %q: usage error %v, want %v", c.args, !c.usage, c.usage)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a refused build wrote its output")
	}
}

// dynamicBinary finds a dynamically linked executable on this machine.
func dynamicBinary() string {
	for _, p := range []string{"/bin/sh", "/bin/ls", "/usr/bin/env", "/bin/true"} {
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		for _, pr := range f.Progs {
			if pr.Type == elf.PT_INTERP {
				f.Close()
				return p
			}
		}
		f.Close()
	}
	return ""
}
