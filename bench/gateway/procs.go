package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a child process the benchmark started. Every child runs in its own
// process group (so nginx's workers and anything else it forks are stopped
// with it) and gets SIGKILL if the benchmark itself dies (Pdeathsig).
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // exit status, valid after done
	log  *tailBuffer   // last bytes of stderr (and stdout after the first line)
}

var (
	procsMu  sync.Mutex
	procs    []*proc
	tempDirs []string
	cleaning bool
)

// startProc starts name with args. If wantAddr, it reads the first stdout line,
// which must be "listening <addr>", and returns addr.
func startProc(name, path string, args []string, wantAddr bool) (*proc, string, error) {
	return startProcEnv(name, path, args, nil, wantAddr)
}

// startProcEnv is startProc with extra environment variables.
func startProcEnv(name, path string, args, env []string, wantAddr bool) (*proc, string, error) {
	procsMu.Lock()
	if cleaning {
		procsMu.Unlock()
		return nil, "", errors.New("shutting down")
	}
	procsMu.Unlock()

	cmd := exec.Command(path, args...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: &tailBuffer{max: 8 << 10}}
	cmd.Stderr = p.log
	var stdout io.ReadCloser
	if wantAddr {
		var err error
		if stdout, err = cmd.StdoutPipe(); err != nil {
			return nil, "", err
		}
	} else {
		cmd.Stdout = p.log
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start %s: %w", name, err)
	}
	procsMu.Lock()
	procs = append(procs, p)
	procsMu.Unlock()

	addrc := make(chan string, 1)
	if wantAddr {
		go func() {
			br := bufio.NewReader(stdout)
			line, _ := br.ReadString('\n')
			addrc <- strings.TrimSpace(strings.TrimPrefix(line, "listening "))
			io.Copy(p.log, br)
		}()
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	if !wantAddr {
		return p, "", nil
	}
	select {
	case addr := <-addrc:
		if addr == "" {
			<-p.done
			return nil, "", fmt.Errorf("%s exited: %v: %s", name, p.err, p.log.String())
		}
		return p, addr, nil
	case <-time.After(15 * time.Second):
		return nil, "", fmt.Errorf("%s did not report its address within 15s: %s", name, p.log.String())
	}
}

// stop asks the process group to terminate, and kills it if it lingers.
func (p *proc) stop() {
	pgid := p.cmd.Process.Pid
	select {
	case <-p.done:
	default:
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(3 * time.Second):
		}
	}
	// Kill whatever is left in the group (nginx workers, if the master went first).
	syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.done
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// cleanup stops every child process and removes every temp dir. It runs
// once; concurrent callers (main and the signal handler) wait for it.
func cleanup() { cleanupOnce.Do(doCleanup) }

var cleanupOnce sync.Once

func doCleanup() {
	procsMu.Lock()
	cleaning = true
	ps := procs
	procs = nil
	dirs := tempDirs
	tempDirs = nil
	procsMu.Unlock()
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop() }()
	}
	wg.Wait()
	for _, d := range dirs {
		os.RemoveAll(d)
	}
}

func makeTempDir() (string, error) {
	d, err := os.MkdirTemp("", "aloft-bench-gateway-")
	if err != nil {
		return "", err
	}
	procsMu.Lock()
	tempDirs = append(tempDirs, d)
	procsMu.Unlock()
	return d, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b.Write(p)
	if over := t.b.Len() - t.max; over > 0 {
		t.b.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(t.b.String())
}
