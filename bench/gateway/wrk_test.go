package main

import (
	"strings"
	"testing"
	"time"
)

const sampleWrk = `Running 10s test @ http://127.0.0.1:41053/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.71ms    1.21ms  45.89ms   92.65%
    Req/Sec    19.68k     1.63k   23.02k    71.50%
  Latency Distribution
     50%    1.48ms
     75%    1.87ms
     90%    2.51ms
     99%    4.58ms
  391742 requests in 10.01s, 66.50MB read
  Non-2xx or 3xx responses: 3
  Socket errors: connect 0, read 1, write 0, timeout 2
Requests/sec:  39138.49
Transfer/sec:      6.64MB
`

func TestParseWrk(t *testing.T) {
	r, err := parseWrk(sampleWrk)
	if err != nil {
		t.Fatal(err)
	}
	if r.ReqPerSec != 39138.49 || r.Requests != 391742 {
		t.Errorf("req/s %v requests %v", r.ReqPerSec, r.Requests)
	}
	if r.P50 != 1480*time.Microsecond || r.P99 != 4580*time.Microsecond || r.P90 != 2510*time.Microsecond {
		t.Errorf("percentiles %v %v %v", r.P50, r.P90, r.P99)
	}
	if r.Non2xx != 3 || r.SockErrs != 3 {
		t.Errorf("errors %d %d", r.Non2xx, r.SockErrs)
	}
	us := strings.Replace(sampleWrk, "1.48ms", "870.00us", 1)
	if r, err := parseWrk(us); err != nil || r.P50 != 870*time.Microsecond {
		t.Errorf("us unit: %v %v", r.P50, err)
	}
	if _, err := parseWrk("Running 1s test\nconnection refused\n"); err == nil {
		t.Error("no error for output without results")
	}
	noLatency := strings.Replace(sampleWrk, "     99%    4.58ms\n", "", 1)
	if _, err := parseWrk(noLatency); err == nil {
		t.Error("no error without the full latency distribution")
	}
}

func TestNginxConfigStaysInTempDir(t *testing.T) {
	for _, want := range []string{"daemon off;", "master_process on;", "worker_processes auto;", "keepalive 128;",
		"proxy_http_version 1.1;", `proxy_set_header Connection "";`, "access_log off;", "pid {{DIR}}/nginx.pid;",
		"error_log {{DIR}}/error.log", "client_body_temp_path {{DIR}}/"} {
		if !strings.Contains(nginxConfig, want) {
			t.Errorf("nginx config lacks %q", want)
		}
	}
	if strings.Contains(nginxConfig, "/var/") || strings.Contains(nginxConfig, "/etc/") {
		t.Error("nginx config refers to /etc or /var")
	}
}
