package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// A deployment at zero replicas: 50 concurrent requests arrive at once; the
// gateway holds them, the controller starts a replica at once, and every
// request is answered (none lost). Idle again, it scales back to zero.
func TestScaleFromZeroNoLostRequest(t *testing.T) {
	e := newEnv(t)
	e.mustAloft("apply", "-f", e.writeSpec("zero", `name: zero
command: [aloft-completions]
args: ["--token-delay", "1ms"]
replicas: {min: 0, max: 3}
autoscale: {metric: concurrency, target: 20, scaleToZeroAfter: 3s, stableWindow: 6s}
health: {path: /healthz, periodSeconds: 1, timeoutSeconds: 1}
`))
	e.waitFor("zero replicas", 20*time.Second, func() (bool, string) {
		d := e.get("zero")
		return len(d.Status.Replicas) == 0 && d.Status.DesiredReplicas == 0, fmt.Sprint(d.Status)
	})

	const n = 50
	var wg sync.WaitGroup
	codes := make([]int, n)
	errs := make([]error, n)
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", "http://"+e.gateway+"/v1/completions", strings.NewReader(`{"prompt":"Alice was","max_tokens":4}`))
			req.Host = "zero.localhost"
			req.Header.Set("Content-Type", "application/json")
			resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
			if err != nil {
				errs[i] = err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	took := time.Since(start)
	for i := range n {
		if errs[i] != nil || codes[i] != 200 {
			t.Errorf("request %d: %d %v", i, codes[i], errs[i])
		}
	}
	t.Logf("50 requests from zero answered in %v", took)
	if evs := e.mustAloft("events", "zero"); !strings.Contains(evs, "ScaledUp") || !strings.Contains(evs, "scaled 0 → 1") {
		t.Errorf("no scale-up event:\n%s", evs)
	}
	e.waitFor("back to zero after idling", 60*time.Second, func() (bool, string) {
		d := e.get("zero")
		return len(d.Status.Replicas) == 0 && d.Status.DesiredReplicas == 0, fmt.Sprint(d.Status.DesiredReplicas, len(d.Status.Replicas))
	})
	if evs := e.mustAloft("events", "zero"); !strings.Contains(evs, "ScaledDown") {
		t.Errorf("no scale-down event:\n%s", evs)
	}
}

// A custom metric scraped from the replicas' Prometheus /metrics: with one
// generation slot per replica and six long requests, five wait in the queue
// of the only replica; scaling on completions_requests_waiting (target 1
// per replica) brings the deployment to its max of 3.
func TestScaleOnScrapedCustomMetric(t *testing.T) {
	e := newEnv(t)
	e.mustAloft("apply", "-f", e.writeSpec("queue", `name: queue
command: [aloft-completions]
args: ["--token-delay", "40ms", "--max-concurrency", "1"]
replicas: {min: 1, max: 3}
autoscale: {metric: custom, customMetric: "metrics:completions_requests_waiting", target: 1, stableWindow: 6s}
health: {path: /healthz, periodSeconds: 1, timeoutSeconds: 1}
`))
	e.waitRolledOut("queue", 1, 30*time.Second)

	var wg sync.WaitGroup
	defer wg.Wait()
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", "http://"+e.gateway+"/v1/completions", strings.NewReader(`{"prompt":"Alice was","max_tokens":150}`))
			req.Host = "queue.localhost"
			req.Header.Set("Content-Type", "application/json")
			if resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	e.waitFor("scale-up on the scraped queue depth", 30*time.Second, func() (bool, string) {
		d := e.get("queue")
		return d.Status.DesiredReplicas == 3, fmt.Sprint("desired ", d.Status.DesiredReplicas)
	})
	evs := e.mustAloft("events", "queue")
	if !strings.Contains(evs, "ScaledUp") || !strings.Contains(evs, "metrics:completions_requests_waiting") {
		t.Errorf("no scale-up event naming the scraped metric:\n%s", evs)
	}
	if strings.Contains(evs, "MetricScrapeFailed") {
		t.Errorf("scrape failed:\n%s", evs)
	}
}
