// Command gateway benchmarks aloft's gateway against a direct connection to
// the backend and against nginx as a keepalive reverse proxy, all driven by
// wrk on loopback.
//
//	go run ./bench/gateway                 # direct, nginx and gateway, 3 rounds, table output
//	go run ./bench/gateway -d 20s -c 128   # longer, more connections
//	go run ./bench/gateway -o json         # machine-readable
//	go run ./bench/gateway --aloft-url http://127.0.0.1:8080 --host bench.localhost
//
// The same binary has two helper subcommands it starts as child processes:
// "backend" (a tiny JSON HTTP server) and "gateway" (internal/gateway serving
// one deployment). See README.md.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"
)

func main() {
	var err error
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "backend":
			err = runBackend(os.Args[2:])
			exitOn(err)
			return
		case "gateway":
			err = runGateway(os.Args[2:])
			exitOn(err)
			return
		}
	}
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	var interrupted atomic.Bool
	go func() {
		s := <-sigc
		interrupted.Store(true)
		fmt.Fprintf(os.Stderr, "\n%v: stopping benchmark processes\n", s)
		cleanup()
		os.Exit(130)
	}()
	err = runBench(os.Args[1:])
	cleanup()
	if interrupted.Load() {
		select {} // the signal handler exits
	}
	exitOn(err)
}

func exitOn(err error) {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return
	}
	fmt.Fprintln(os.Stderr, "bench/gateway:", err)
	os.Exit(1)
}

type options struct {
	threads  int
	conns    int
	duration time.Duration
	warmup   time.Duration
	rounds   int
	output   string
	targets  []string
	path     string
	aloftURL string
	host     string
	backend  string
	nginx    string
	wrk      string
	gwEnv    string
}

// target is one thing wrk drives.
type target struct {
	name  string
	url   string
	host  string // Host header to send, if not the URL's
	auth  string // Authorization header to send, if any
	proxy *proc  // the proxy process (nil for direct or an external gateway)
}

// benchEndpointToken is the endpoint token the gateway-token target checks.
const benchEndpointToken = "aloftep_benchmarkbenchmarkbenchmarkbenchmarkbench"

// result is the outcome for one target, the median over rounds.
type result struct {
	Target    string  `json:"target"`
	URL       string  `json:"url"`
	ReqPerSec float64 `json:"req_per_sec"`
	P50ms     float64 `json:"p50_ms"`
	P99ms     float64 `json:"p99_ms"`
	Requests  int64   `json:"requests"`
	Errors    int64   `json:"errors"`
	// CPU time per request of the proxy's processes and of the backend, in
	// microseconds (0 when not measurable, e.g. an external gateway).
	ProxyCPUus   float64   `json:"proxy_cpu_us_per_req"`
	BackendCPUus float64   `json:"backend_cpu_us_per_req"`
	WrkCPUus     float64   `json:"wrk_cpu_us_per_req"`
	Rounds       []roundRe `json:"rounds"`
}

type roundRe struct {
	ReqPerSec    float64 `json:"req_per_sec"`
	P50ms        float64 `json:"p50_ms"`
	P99ms        float64 `json:"p99_ms"`
	ProxyCPUus   float64 `json:"proxy_cpu_us_per_req"`
	BackendCPUus float64 `json:"backend_cpu_us_per_req"`
	WrkCPUus     float64 `json:"wrk_cpu_us_per_req"`
	// Cores is the CPU the benchmark's processes used (proxy, backend, wrk).
	Cores float64 `json:"cores_used"`
}

type report struct {
	Config struct {
		Threads    int     `json:"threads"`
		Conns      int     `json:"connections"`
		DurationS  float64 `json:"duration_s"`
		WarmupS    float64 `json:"warmup_s"`
		Rounds     int     `json:"rounds"`
		CPUs       int     `json:"cpus"`
		GatewayURL string  `json:"gateway_url"`
	} `json:"config"`
	Results []result           `json:"results"`
	Ratios  map[string]float64 `json:"ratios"`
	// TargetMet: gateway req/s >= nginx req/s and gateway p99 <= nginx p99.
	TargetMet *bool `json:"target_met,omitempty"`
}

func runBench(args []string) error {
	var o options
	fs := flag.NewFlagSet("bench/gateway", flag.ContinueOnError)
	fs.IntVar(&o.threads, "t", 2, "wrk threads")
	fs.IntVar(&o.conns, "c", 64, "wrk connections")
	fs.DurationVar(&o.duration, "d", 10*time.Second, "measured duration per target and round")
	fs.DurationVar(&o.warmup, "warmup", 3*time.Second, "unmeasured wrk run before each measurement (0 to skip)")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds over all targets (alternating their order); the median of each figure is reported")
	fs.StringVar(&o.output, "o", "table", "output: table or json")
	targets := fs.String("targets", "direct,nginx,gateway", "comma-separated targets to run")
	fs.StringVar(&o.path, "path", "/", "request path")
	fs.StringVar(&o.aloftURL, "aloft-url", "", "measure this running aloft server's gateway instead of starting one (needs --host)")
	fs.StringVar(&o.host, "host", "", "Host header for --aloft-url, e.g. bench.localhost")
	fs.StringVar(&o.backend, "backend-url", "", "use this running backend instead of starting one (e.g. the replica behind --aloft-url)")
	fs.StringVar(&o.nginx, "nginx", "/usr/sbin/nginx", "nginx binary")
	fs.StringVar(&o.wrk, "wrk", "wrk", "wrk binary")
	fs.StringVar(&o.gwEnv, "gateway-env", "", "extra environment for the gateway process, comma-separated KEY=VALUE (e.g. GOGC=200)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run ./bench/gateway [flags]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (subcommands: backend, gateway)", fs.Arg(0))
	}
	o.targets = strings.Split(*targets, ",")
	for _, t := range o.targets {
		if t != "direct" && t != "nginx" && t != "gateway" && t != "gateway-token" {
			return fmt.Errorf("unknown target %q (want direct, nginx, gateway)", t)
		}
	}
	if o.output != "table" && o.output != "json" {
		return fmt.Errorf("-o must be table or json, not %q", o.output)
	}
	if o.rounds < 1 || o.threads < 1 || o.conns < o.threads || o.duration < time.Second {
		return errors.New("need -rounds >= 1, -t >= 1, -c >= -t and -d >= 1s")
	}
	if (o.aloftURL == "") != (o.host == "") {
		return errors.New("--aloft-url and --host go together")
	}
	if !strings.HasPrefix(o.path, "/") {
		return errors.New("-path must start with /")
	}

	// Tools first, with the install hint.
	wrkPath, err := exec.LookPath(o.wrk)
	if err != nil {
		return fmt.Errorf("wrk not found (%v); install it with: apt-get install nginx wrk", err)
	}
	o.wrk = wrkPath
	if slices.Contains(o.targets, "nginx") {
		p, err := exec.LookPath(o.nginx)
		if err != nil {
			return fmt.Errorf("nginx not found at %s (%v); install it with: apt-get install nginx wrk", o.nginx, err)
		}
		o.nginx = p
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	logf := func(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }

	// Backend.
	backendAddr := ""
	var backendProc *proc
	if o.backend != "" {
		u, err := url.Parse(o.backend)
		if err != nil || u.Scheme != "http" || u.Host == "" {
			return fmt.Errorf("--backend-url %q: want http://host:port", o.backend)
		}
		backendAddr = u.Host
	} else {
		p, addr, err := startProc("backend", self, []string{"backend"}, true)
		if err != nil {
			return err
		}
		backendAddr, backendProc = addr, p
	}
	backendURL := "http://" + backendAddr
	logf("backend: %s", backendURL)

	var ts []target
	for _, name := range o.targets {
		switch name {
		case "direct":
			ts = append(ts, target{name: "direct", url: backendURL + o.path})
		case "nginx":
			p, addr, err := startNginx(o.nginx, backendAddr)
			if err != nil {
				return err
			}
			logf("nginx: http://%s (worker_processes auto, upstream keepalive 128)", addr)
			ts = append(ts, target{name: "nginx", url: "http://" + addr + o.path, proxy: p})
		case "gateway-token":
			// The same gateway, for a private deployment: every request carries
			// an endpoint token that the gateway checks before proxying.
			p, addr, err := startProcEnv("gateway-token", self, []string{"gateway", "--backend", backendURL, "--deployment", "bench", "--endpoint-token", benchEndpointToken}, nil, true)
			if err != nil {
				return err
			}
			host := "bench.localhost:" + addr[strings.LastIndexByte(addr, ':')+1:]
			ts = append(ts, target{name: "gateway-token", url: "http://" + addr + o.path, host: host, auth: "Bearer " + benchEndpointToken, proxy: p})
			logf("gateway-token: http://%s (Host: %s, endpoint token checked)", addr, host)
		case "gateway":
			if o.aloftURL != "" {
				ts = append(ts, target{name: "gateway", url: strings.TrimRight(o.aloftURL, "/") + o.path, host: o.host})
				logf("gateway: %s (Host: %s), already running", o.aloftURL, o.host)
				continue
			}
			var env []string
			if o.gwEnv != "" {
				env = strings.Split(o.gwEnv, ",")
			}
			p, addr, err := startProcEnv("gateway", self, []string{"gateway", "--backend", backendURL, "--deployment", "bench"}, env, true)
			if err != nil {
				return err
			}
			host := "bench.localhost:" + addr[strings.LastIndexByte(addr, ':')+1:]
			ts = append(ts, target{name: "gateway", url: "http://" + addr + o.path, host: host, proxy: p})
			logf("gateway: http://%s (Host: %s)", addr, host)
		}
	}
	for _, t := range ts {
		if err := checkTarget(t); err != nil {
			return err
		}
	}

	cfg := wrkConfig{path: o.wrk, threads: o.threads, conns: o.conns}
	runs := make(map[string][]roundRe)
	var requests = map[string]int64{}
	var errs = map[string]int64{}
	for round := 1; round <= o.rounds; round++ {
		// Alternate the order (ABC CBA ...) so that a drift in machine load
		// does not favour whichever target runs first.
		order := slices.Clone(ts)
		if round%2 == 0 {
			slices.Reverse(order)
		}
		for _, t := range order {
			if o.warmup > 0 {
				logf("round %d/%d %-8s warm-up %v", round, o.rounds, t.name, o.warmup)
				if _, err := runWrk(cfg, t.url, t.host, t.auth, o.warmup); err != nil {
					return fmt.Errorf("%s warm-up: %w", t.name, err)
				}
			}
			logf("round %d/%d %-8s measuring -t%d -c%d -d%v", round, o.rounds, t.name, o.threads, o.conns, o.duration)
			proxy0, backend0 := procCPU(t.proxy), procCPU(backendProc)
			r, err := runWrk(cfg, t.url, t.host, t.auth, o.duration)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			rr := roundRe{ReqPerSec: r.ReqPerSec, P50ms: ms(r.P50), P99ms: ms(r.P99)}
			if r.Requests > 0 {
				rr.ProxyCPUus = perReq(proxy0, procCPU(t.proxy), r.Requests)
				rr.BackendCPUus = perReq(backend0, procCPU(backendProc), r.Requests)
				rr.WrkCPUus = perReq(0, r.CPU, r.Requests)
				if rr.ProxyCPUus > 0 || t.proxy == nil {
					rr.Cores = (rr.ProxyCPUus + rr.BackendCPUus + rr.WrkCPUus) * r.ReqPerSec / 1e6
				}
			}
			logf("    %.0f req/s  p50 %v  p99 %v  CPU/req: proxy %.1fus backend %.1fus wrk %.1fus",
				r.ReqPerSec, r.P50, r.P99, rr.ProxyCPUus, rr.BackendCPUus, rr.WrkCPUus)
			runs[t.name] = append(runs[t.name], rr)
			requests[t.name] += r.Requests
			errs[t.name] += r.Non2xx + r.SockErrs
		}
	}

	var rep report
	rep.Config.Threads, rep.Config.Conns, rep.Config.Rounds = o.threads, o.conns, o.rounds
	rep.Config.DurationS, rep.Config.WarmupS = o.duration.Seconds(), o.warmup.Seconds()
	rep.Config.CPUs = runtime.NumCPU()
	byName := map[string]*result{}
	for _, t := range ts {
		res := result{Target: t.name, URL: t.url, Rounds: runs[t.name], Requests: requests[t.name], Errors: errs[t.name]}
		var rps, p50, p99, pcpu, bcpu, wcpu []float64
		for _, rr := range res.Rounds {
			rps, p50, p99 = append(rps, rr.ReqPerSec), append(p50, rr.P50ms), append(p99, rr.P99ms)
			pcpu, bcpu, wcpu = append(pcpu, rr.ProxyCPUus), append(bcpu, rr.BackendCPUus), append(wcpu, rr.WrkCPUus)
		}
		res.ReqPerSec, res.P50ms, res.P99ms = median(rps), median(p50), median(p99)
		res.ProxyCPUus, res.BackendCPUus, res.WrkCPUus = median(pcpu), median(bcpu), median(wcpu)
		if t.name == "gateway" {
			rep.Config.GatewayURL = t.url
		}
		rep.Results = append(rep.Results, res)
		byName[t.name] = &rep.Results[len(rep.Results)-1]
	}
	rep.Ratios = map[string]float64{}
	gw, nx, di := byName["gateway"], byName["nginx"], byName["direct"]
	if gt := byName["gateway-token"]; gt != nil && gw != nil {
		rep.Ratios["gateway-token/gateway req/s"] = gt.ReqPerSec / gw.ReqPerSec
		rep.Ratios["gateway-token/gateway p50"] = gt.P50ms / gw.P50ms
		rep.Ratios["gateway-token/gateway p99"] = gt.P99ms / gw.P99ms
	}
	if gw != nil && nx != nil {
		rep.Ratios["gateway/nginx req/s"] = gw.ReqPerSec / nx.ReqPerSec
		rep.Ratios["gateway/nginx p99"] = gw.P99ms / nx.P99ms
		met := gw.ReqPerSec >= nx.ReqPerSec && gw.P99ms <= nx.P99ms
		rep.TargetMet = &met
	}
	if gw != nil && di != nil {
		rep.Ratios["gateway/direct req/s"] = gw.ReqPerSec / di.ReqPerSec
		rep.Ratios["gateway/direct p99"] = gw.P99ms / di.P99ms
	}
	if nx != nil && di != nil {
		rep.Ratios["nginx/direct req/s"] = nx.ReqPerSec / di.ReqPerSec
		rep.Ratios["nginx/direct p99"] = nx.P99ms / di.P99ms
	}

	if o.output == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printTable(os.Stdout, &rep, o)
	return nil
}

// checkTarget makes one request and insists on a 200 from the backend.
func checkTarget(t target) error {
	req, err := http.NewRequest("GET", t.url, nil)
	if err != nil {
		return err
	}
	if t.auth != "" {
		req.Header.Set("Authorization", t.auth)
	}
	if t.host != "" {
		req.Host = t.host
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("%s: check request: %w", t.name, err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: check request: %s: %s", t.name, resp.Status, body)
	}
	return nil
}

// waitHTTP polls url until it answers (any status) or p exits or 10s pass.
func waitHTTP(p *proc, url, host string) error {
	deadline := time.Now().Add(10 * time.Second)
	c := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequest("GET", url, nil)
		if host != "" {
			req.Host = host
		}
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not answering at %s: %v", p.name, url, err)
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited: %v", p.name, p.err)
		case <-tick.C:
		}
	}
}

func printTable(w io.Writer, rep *report, o options) {
	fmt.Fprintf(w, "wrk -t%d -c%d -d%v --latency (warm-up %v, %d round(s), median), %d CPUs\n\n",
		o.threads, o.conns, o.duration, o.warmup, o.rounds, rep.Config.CPUs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\treq/s\tp50\tp99\terrors\tCPU/req: proxy\tbackend\twrk\t")
	for _, r := range rep.Results {
		pc := "-"
		if r.ProxyCPUus > 0 {
			pc = fmt.Sprintf("%.1fus", r.ProxyCPUus)
		}
		bc := "-"
		if r.BackendCPUus > 0 {
			bc = fmt.Sprintf("%.1fus", r.BackendCPUus)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.2fms\t%.2fms\t%d\t%s\t%s\t%.1fus\t\n", r.Target, r.ReqPerSec, r.P50ms, r.P99ms, r.Errors, pc, bc, r.WrkCPUus)
	}
	tw.Flush()
	if len(rep.Ratios) > 0 {
		fmt.Fprintln(w)
		for _, pair := range []string{"gateway/nginx", "gateway/direct", "nginx/direct", "gateway-token/gateway"} {
			rps, ok1 := rep.Ratios[pair+" req/s"]
			p99, ok2 := rep.Ratios[pair+" p99"]
			if ok1 && ok2 {
				fmt.Fprintf(w, "%-23s req/s %.2fx   p99 %.2fx\n", pair+":", rps, p99)
			}
		}
	}
	if rep.TargetMet != nil {
		verdict := "MET"
		if !*rep.TargetMet {
			verdict = "NOT MET"
		}
		fmt.Fprintf(w, "\ntarget (gateway req/s >= nginx, gateway p99 <= nginx): %s\n", verdict)
	}
}

// procCPU is the CPU time used so far by p's process group (-1 if unknown).
func procCPU(p *proc) time.Duration {
	if p == nil {
		return -1
	}
	return groupCPU(p.cmd.Process.Pid)
}

func perReq(before, after time.Duration, n int64) float64 {
	if before < 0 || after < 0 {
		return 0
	}
	return float64(after-before) / float64(time.Microsecond) / float64(n)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
