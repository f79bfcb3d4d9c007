package local

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// procStat is the part of /proc/<pid>/stat this package needs.
type procStat struct {
	state     byte   // field 3: R, S, D, Z, X, ...
	pgrp      int    // field 5
	startTime uint64 // field 22, clock ticks after boot
}

// readStat parses /proc/<pid>/stat. The command name (field 2) may contain
// spaces and parentheses, so fields are counted from its last ')'.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return procStat{}, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+2:]))
	// f[0] is field 3, so field k is f[k-3].
	if len(f) < 20 || len(f[0]) == 0 {
		return procStat{}, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	var st procStat
	st.state = f[0][0]
	if st.pgrp, err = strconv.Atoi(f[2]); err != nil {
		return procStat{}, fmt.Errorf("malformed /proc/%d/stat: %w", pid, err)
	}
	if st.startTime, err = strconv.ParseUint(f[19], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("malformed /proc/%d/stat: %w", pid, err)
	}
	return st, nil
}

func (st procStat) dead() bool { return st.state == 'Z' || st.state == 'X' || st.state == 'x' }

// proc is one OS process run (or adopted) for a replica. It is the leader of
// its own process group (pgid == pid).
type proc struct {
	pid       int
	startTime uint64

	mu          sync.Mutex
	exited      bool
	statusKnown bool
	status      syscall.WaitStatus
}

// spawn starts argv in its own process group with stdin from /dev/null and
// stdout and stderr appended to logPath. The process is not tied to this
// server: no pipes, no parent-death signal.
func spawn(path string, argv, env []string, dir, logPath string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer devnull.Close()
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Dir:   dir,
		Env:   env,
		Files: []uintptr{devnull.Fd(), logf.Fd(), logf.Fd()},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	if err != nil {
		return nil, fmt.Errorf("exec %s: %w", path, err)
	}
	pr := &proc{pid: pid}
	// The child is ours and not yet reaped, so /proc/<pid> exists.
	st, err := readStat(pid)
	if err != nil {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		pr.poll()
		return nil, fmt.Errorf("read start time of pid %d: %w", pid, err)
	}
	pr.startTime = st.startTime
	return pr, nil
}

// poll reports whether the process has exited, reaping it if it is a child of
// this server (which records its wait status). For a process that is not our
// child (adopted), exit is detected through /proc: gone, a zombie, or a
// different start time (pid reused). poll is safe for concurrent use and
// never blocks.
func (pr *proc) poll() bool {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.exited {
		return true
	}
	for {
		var ws syscall.WaitStatus
		wpid, err := syscall.Wait4(pr.pid, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err == nil && wpid == pr.pid {
			pr.exited, pr.statusKnown, pr.status = true, true, ws
			return true
		}
		if err == nil && wpid == 0 {
			// A child of ours with this pid has not exited (or is still
			// exiting: its other threads are dying). It is our process
			// unless ours was reaped elsewhere and the pid reused.
			if st, err := readStat(pr.pid); err == nil && st.startTime != pr.startTime {
				pr.exited = true
				return true
			}
			return false
		}
		break // ECHILD: not our child; look at /proc
	}
	st, err := readStat(pr.pid)
	if err != nil || st.startTime != pr.startTime || st.dead() {
		pr.exited = true
		return true
	}
	return false
}

// running reports whether the process runs and is not already dying (a
// killed multi-threaded process shows its leader as a zombie before it can be
// reaped).
func (pr *proc) running() bool {
	if pr.poll() {
		return false
	}
	st, err := readStat(pr.pid)
	return err == nil && st.startTime == pr.startTime && !st.dead()
}

// exitStatus describes how the process ended, for messages.
func (pr *proc) exitStatus() string {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if !pr.statusKnown {
		return "exited (status unknown: the process was adopted from an earlier server)"
	}
	ws := pr.status
	switch {
	case ws.Exited():
		return fmt.Sprintf("exited with exit status %d", ws.ExitStatus())
	case ws.Signaled():
		s := fmt.Sprintf("was killed by signal %d (%s)", int(ws.Signal()), ws.Signal())
		if ws.CoreDump() {
			s += ", core dumped"
		}
		return s
	default:
		return fmt.Sprintf("exited (wait status %#x)", uint32(ws))
	}
}

// signal sends sig to the process group; if the group cannot be signalled but
// the leader still runs, to the leader alone.
func (pr *proc) signal(sig syscall.Signal) {
	if pr.poll() {
		// The leader is gone; signal stragglers in its group, if any.
		pr.signalStragglers(sig)
		return
	}
	if err := syscall.Kill(-pr.pid, sig); err != nil {
		_ = syscall.Kill(pr.pid, sig)
	}
}

// signalStragglers signals what is left of the group after its leader exited.
// A pid that is the pgid of a live group is not handed out again, so if the
// pid now belongs to another process, the group is empty and that process
// (which may lead a group of its own) must not be signalled.
func (pr *proc) signalStragglers(sig syscall.Signal) {
	if !pr.pidReused() {
		_ = syscall.Kill(-pr.pid, sig)
	}
}

// pidReused reports whether pr's pid now names a different process.
func (pr *proc) pidReused() bool {
	st, err := readStat(pr.pid)
	return err == nil && st.startTime != pr.startTime
}

// groupAlive reports whether a live process remains in pr's process group.
func (pr *proc) groupAlive() bool {
	return !pr.pidReused() && groupAlive(pr.pid)
}

// groupAlive reports whether any live (non-zombie) process is in process
// group pgid.
func groupAlive(pgid int) bool {
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err == nil && st.pgrp == pgid && !st.dead() {
			return true
		}
	}
	return false
}
