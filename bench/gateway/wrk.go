package main

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// wrkResult is what one wrk run reports.
type wrkResult struct {
	Requests           int64
	ReqPerSec          float64
	P50, P75, P90, P99 time.Duration
	Non2xx, SockErrs   int64
	CPU                time.Duration // wrk's own user+system CPU time
}

type wrkConfig struct {
	path    string
	threads int
	conns   int
}

// runWrk drives url for d and parses wrk's report.
func runWrk(cfg wrkConfig, url, host, auth string, d time.Duration) (wrkResult, error) {
	args := []string{
		"-t", strconv.Itoa(cfg.threads),
		"-c", strconv.Itoa(cfg.conns),
		"-d", fmt.Sprintf("%ds", max(1, int(d.Round(time.Second)/time.Second))),
		"--latency",
		"--timeout", "10s",
	}
	if host != "" {
		args = append(args, "-H", "Host: "+host)
	}
	if auth != "" {
		args = append(args, "-H", "Authorization: "+auth)
	}
	args = append(args, url)
	p, _, err := startProc("wrk", cfg.path, args, false)
	if err != nil {
		return wrkResult{}, err
	}
	select {
	case <-p.done:
	case <-time.After(d + 30*time.Second):
		p.stop()
		return wrkResult{}, errors.New("wrk did not finish in time")
	}
	out := p.log.String()
	if p.err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %v: %s", p.err, out)
	}
	r, err := parseWrk(out)
	if st := p.cmd.ProcessState; st != nil {
		r.CPU = st.UserTime() + st.SystemTime()
	}
	return r, err
}

var (
	reReqSec  = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	reTotal   = regexp.MustCompile(`(?m)^\s*(\d+) requests in`)
	rePct     = regexp.MustCompile(`(?m)^\s*(50|75|90|99)%\s+([0-9.]+)(us|ms|s|m)\s*$`)
	reNon2xx  = regexp.MustCompile(`(?m)Non-2xx or 3xx responses:\s+(\d+)`)
	reSockErr = regexp.MustCompile(`(?m)Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// parseWrk reads wrk's text report (run with --latency).
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	m := reReqSec.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no Requests/sec in wrk output:\n%s", out)
	}
	r.ReqPerSec, _ = strconv.ParseFloat(m[1], 64)
	if m := reTotal.FindStringSubmatch(out); m != nil {
		r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	}
	found := 0
	for _, m := range rePct.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute}[m[3]]
		d := time.Duration(v * float64(unit))
		switch m[1] {
		case "50":
			r.P50 = d
		case "75":
			r.P75 = d
		case "90":
			r.P90 = d
		case "99":
			r.P99 = d
		}
		found++
	}
	if found < 4 {
		return r, fmt.Errorf("no latency distribution in wrk output (need --latency):\n%s", out)
	}
	if m := reNon2xx.FindStringSubmatch(out); m != nil {
		r.Non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := reSockErr.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.SockErrs += n
		}
	}
	if strings.Contains(out, "requests in") && r.Requests == 0 {
		return r, fmt.Errorf("wrk made no requests:\n%s", out)
	}
	return r, nil
}
