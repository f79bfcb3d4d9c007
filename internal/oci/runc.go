package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// Runc drives the runc binary. Root is runc's state directory (--root), so
// aloft's containers never mix with other users of runc on the host.
type Runc struct {
	Path string
	Root string
}

// FindRunc locates a usable runc: the given path, or else runc on PATH (or
// at one of the Debian locations); it must answer --version. The error says
// what is missing in words a user can act on ("runc not found (install the
// runc package)").
func FindRunc(root, path string) (*Runc, error) {
	if path != "" {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("runc not found at %s", path)
		}
		return checkRunc(root, path)
	}
	path, err := exec.LookPath("runc")
	if err != nil {
		for _, p := range []string{"/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc", "/usr/local/bin/runc"} {
			if fi, serr := os.Stat(p); serr == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				path, err = p, nil
				break
			}
		}
	}
	if err != nil {
		return nil, errors.New("runc not found (install the runc package)")
	}
	return checkRunc(root, path)
}

func checkRunc(root, path string) (*Runc, error) {
	out, err := exec.Command(path, "--version").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("runc at %s does not run: %v: %s", path, err, firstLine(out))
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("runc state directory: %w", err)
	}
	return &Runc{Path: path, Root: root}, nil
}

// Version returns the first line of `runc --version`.
func (r *Runc) Version() string {
	out, _ := exec.Command(r.Path, "--version").CombinedOutput()
	return firstLine(out)
}

// RunArgv is the argv that runs container id from bundle in the foreground:
// runc stays the container's parent, relays its stdio and signals, and exits
// with its exit status.
func (r *Runc) RunArgv(bundle, id string) []string {
	return []string{r.Path, "--root", r.Root, "run", "--bundle", bundle, id}
}

// ValidID reports whether runc accepts id as a container id (letters,
// digits, '_', '+', '-' and '.', not starting with '-', which runc would
// take for a flag).
func ValidID(id string) error {
	ok := id != "" && id != "." && id != ".." && id[0] != '-'
	for i := 0; ok && i < len(id); i++ {
		c := id[i]
		ok = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("_+-.", c) >= 0
	}
	if !ok {
		return fmt.Errorf("invalid container id %q (runc accepts letters, digits, '_', '+', '-' and '.')", id)
	}
	return nil
}

// Kill sends sig to the container's init process.
func (r *Runc) Kill(ctx context.Context, id string, sig syscall.Signal) error {
	_, err := r.run(ctx, "kill", id, fmt.Sprint(int(sig)))
	if err != nil && notExist(err) {
		return nil
	}
	return err
}

// Delete removes the container, killing it first if it still runs. A
// container runc does not know is not an error.
func (r *Runc) Delete(ctx context.Context, id string) error {
	// runc keeps a container's state in Root/<id>; without it there is
	// nothing to delete, and no need to pay for running runc.
	if _, err := os.Lstat(filepath.Join(r.Root, id)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	_, err := r.run(ctx, "delete", "--force", id)
	if err != nil && notExist(err) {
		return nil
	}
	return err
}

// State is the part of `runc state` aloft uses.
type State struct {
	ID     string `json:"id"`
	Status string `json:"status"` // creating, created, running, paused, stopped
	Pid    int    `json:"pid"`
}

// ErrNoContainer is returned by State for a container runc does not know.
var ErrNoContainer = errors.New("no such container")

// State returns runc's view of container id.
func (r *Runc) State(ctx context.Context, id string) (State, error) {
	out, err := r.run(ctx, "state", id)
	if err != nil {
		if notExist(err) {
			return State{}, fmt.Errorf("container %s: %w", id, ErrNoContainer)
		}
		return State{}, err
	}
	var st State
	if err := json.Unmarshal(out, &st); err != nil {
		return State{}, fmt.Errorf("runc state %s: %w", id, err)
	}
	return st, nil
}

// List returns the ids of the containers in Root.
func (r *Runc) List(ctx context.Context) ([]string, error) {
	out, err := r.run(ctx, "list", "--format", "json")
	if err != nil {
		return nil, err
	}
	var list []State
	if s := bytes.TrimSpace(out); len(s) > 0 && !bytes.Equal(s, []byte("null")) {
		if err := json.Unmarshal(s, &list); err != nil {
			return nil, fmt.Errorf("runc list: %w", err)
		}
	}
	ids := make([]string, 0, len(list))
	for _, s := range list {
		ids = append(ids, s.ID)
	}
	return ids, nil
}

type runcError struct {
	args []string
	msg  string
	err  error
}

func (e *runcError) Error() string {
	return fmt.Sprintf("runc %s: %v: %s", strings.Join(e.args, " "), e.err, e.msg)
}

func (e *runcError) Unwrap() error { return e.err }

func notExist(err error) bool {
	var re *runcError
	return errors.As(err, &re) && (strings.Contains(re.msg, "does not exist") || strings.Contains(re.msg, "not exist"))
}

func (r *Runc) run(ctx context.Context, args ...string) ([]byte, error) {
	full := append([]string{"--root", r.Root}, args...)
	cmd := exec.CommandContext(ctx, r.Path, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, &runcError{args: args, msg: firstLine(stderr.Bytes()), err: err}
	}
	return stdout.Bytes(), nil
}

func firstLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
