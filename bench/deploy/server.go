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

// buildAll builds each {name, package} into bin; extraEnv (e.g.
// CGO_ENABLED=0) applies to every build.
func buildAll(bin string, extraEnv []string, pkgs ...[2]string) error {
	for _, b := range pkgs {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, b[0]), b[1])
		cmd.Env = append(os.Environ(), extraEnv...)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s (run from the repository root): %w", b[1], err)
		}
	}
	return nil
}

// benchServer is an aloft server started from bin with its data in dir.
type benchServer struct {
	c    *client.Client
	gw   string // gateway address
	data string
	cmd  *exec.Cmd
}

// startServer starts `aloft server` with bin first on PATH and waits until
// it is ready, logged in as the admin.
func startServer(dir, bin string) (*benchServer, error) {
	s := &benchServer{data: filepath.Join(dir, "data"), gw: freeAddr()}
	api := freeAddr()
	s.cmd = exec.Command(filepath.Join(bin, "aloft"), "server", "--data", s.data, "--listen", api, "--gateway-listen", s.gw, "--log-level", "warn",
		"--secrets-key-file", filepath.Join(dir, "secrets.key"))
	s.cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	s.cmd.Stderr = os.Stderr
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	s.c = client.New(api)
	ctx := context.Background()
	if err := waitUntil(20*time.Second, func() bool { return s.c.Ready(ctx) == nil }); err != nil {
		s.stop()
		return nil, fmt.Errorf("server not ready: %w", err)
	}
	tok, err := os.ReadFile(filepath.Join(s.data, "admin.token"))
	if err != nil {
		s.stop()
		return nil, err
	}
	s.c.Token = strings.TrimSpace(string(tok))
	return s, nil
}

// stop ends the server (SIGTERM: replicas of deployments not deleted keep
// running, as after any server stop, so callers delete theirs first).
func (s *benchServer) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	s.cmd.Wait()
}
