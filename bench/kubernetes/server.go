package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/aloft-dev/aloft/internal/client"
)

// The aloft server of the bench, started the way bench/deploy starts its
// own (a main package cannot be imported, so this is a copy of that
// approach): the binary built from ./cmd/aloft into a temporary directory,
// `aloft server` on free loopback ports, ready when /readyz answers, used
// as the admin through internal/client.

// buildAloft builds ./cmd/aloft into dir and returns the binary's path.
func buildAloft(dir string) (string, error) {
	bin := filepath.Join(dir, "aloft")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/aloft")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build ./cmd/aloft (run from the repository root): %w", err)
	}
	return bin, nil
}

// benchServer is an aloft server with its data in dir.
type benchServer struct {
	c   *client.Client
	cmd *exec.Cmd
	log string // path of the server's output
}

// startServer starts `aloft server --clouds clouds` and waits until it is
// ready, logged in as the admin.
func startServer(ctx context.Context, bin, dir, clouds string) (*benchServer, error) {
	data := filepath.Join(dir, "data")
	s := &benchServer{log: filepath.Join(dir, "server.log")}
	logf, err := os.Create(s.log)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor
	api, gw := freeAddr(), freeAddr()
	s.cmd = exec.Command(bin, "server", "--data", data, "--listen", api, "--gateway-listen", gw,
		"--log-level", "info", "--secrets-key-file", filepath.Join(dir, "secrets.key"), "--clouds", clouds)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	// Its own process group, so a Ctrl-C in the terminal reaches only the
	// bench, which then stops the server itself (after deleting what it
	// deployed).
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	s.c = client.New(api)
	if err := waitUntil(ctx, 30*time.Second, 50*time.Millisecond, func() bool { return s.c.Ready(ctx) == nil }); err != nil {
		s.stop()
		return nil, fmt.Errorf("aloft server not ready: %w\n%s", err, s.logTail(20))
	}
	tok, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		s.stop()
		return nil, err
	}
	s.c.Token = strings.TrimSpace(string(tok))
	return s, nil
}

// stop ends the server: SIGTERM, SIGKILL after 20 s.
func (s *benchServer) stop() {
	if s.cmd.ProcessState != nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

func (s *benchServer) logTail(n int) string {
	b, err := os.ReadFile(s.log)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "aloft server log (tail):\n" + strings.Join(lines, "\n")
}
