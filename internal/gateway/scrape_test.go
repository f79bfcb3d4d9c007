package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestScrapeMetric(t *testing.T) {
	page := func(body string, status int) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/metrics" {
				http.NotFound(w, r)
				return
			}
			w.WriteHeader(status)
			fmt.Fprint(w, body)
		}))
		t.Cleanup(s.Close)
		return s
	}
	a := page("# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model=\"a\"} 3\nvllm:num_requests_waiting{model=\"b\"} 4\nother 9\n", 200)
	b := page("vllm:num_requests_waiting 2.5\n", 200)
	missing := page("other 1\n", 200)
	broken := page("oops", 500)
	hist := page("# TYPE vllm:num_requests_waiting histogram\nvllm:num_requests_waiting_bucket{le=\"+Inf\"} 1\nvllm:num_requests_waiting_sum 1\nvllm:num_requests_waiting_count 1\n", 200)

	g := New(Options{})
	g.SetBackends("llm", []Backend{
		{ReplicaID: "a", Cloud: "c", URL: a.URL},
		{ReplicaID: "b", Cloud: "c", URL: b.URL},
		{ReplicaID: "missing", Cloud: "c", URL: missing.URL},
		{ReplicaID: "broken", Cloud: "c", URL: broken.URL},
		{ReplicaID: "hist", Cloud: "c", URL: hist.URL},
	})
	err := g.ScrapeMetric(context.Background(), "llm", "vllm:num_requests_waiting", 2*time.Second)
	for _, want := range []string{`replica missing: /metrics has no metric "vllm:num_requests_waiting"`, "replica broken: GET /metrics: 500", "replica hist: metric \"vllm:num_requests_waiting\" is a histogram; use a gauge"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to contain %q", err, want)
		}
	}
	st, ok := g.Stats("llm")
	if !ok {
		t.Fatal("no stats")
	}
	got := map[string]float64{}
	for _, r := range st.Replicas {
		if !r.MetricAt.IsZero() {
			got[r.ReplicaID] = r.Metric
		}
	}
	if len(got) != 2 || got["a"] != 7 || got["b"] != 2.5 {
		t.Fatalf("scraped metrics %v, want a=7 (summed over labels), b=2.5 and none for the failed replicas", got)
	}
	// An unknown deployment is not an error.
	if err := g.ScrapeMetric(context.Background(), "nope", "x", time.Second); err != nil {
		t.Fatal(err)
	}
}
