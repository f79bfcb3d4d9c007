package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// MaxScrapeBytes bounds one replica's /metrics answer.
const MaxScrapeBytes = 4 << 20

// ScrapeMetric reads metric (a Prometheus metric name, e.g.
// "vllm:num_requests_waiting") from the /metrics page of every ready replica
// of the deployment, through the replica's own dialer, and records the sum
// of its samples (over all label sets) as the replica's metric, the value
// Stats reports like that of a metric header. Replicas are scraped in
// parallel, each bounded by timeout. A replica that does not answer, or
// whose page lacks the metric, keeps its last value; the errors are
// returned, joined, naming the replica.
func (g *Gateway) ScrapeMetric(ctx context.Context, deployment, metric string, timeout time.Duration) error {
	d := (*g.deps.Load())[toLower(deployment)]
	if d == nil {
		return nil
	}
	set := d.set.Load()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, b := range set.backends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := scrapeOne(ctx, b.Backend, metric, timeout)
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("replica %s: %w", b.ReplicaID, err))
				mu.Unlock()
				return
			}
			b.rep.storeMetric(v)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func scrapeOne(ctx context.Context, b Backend, metric string, timeout time.Duration) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tr := &http.Transport{DisableKeepAlives: true, Proxy: nil}
	if b.Dial != nil {
		tr.DialContext = b.Dial
	} else {
		tr.DialContext = (&net.Dialer{}).DialContext
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(b.URL, "/")+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(io.LimitReader(resp.Body, MaxScrapeBytes))
	if err != nil {
		return 0, fmt.Errorf("GET /metrics: %w", err)
	}
	f := fams[metric]
	if f == nil {
		return 0, fmt.Errorf("/metrics has no metric %q", metric)
	}
	return sumFamily(f)
}

// sumFamily adds up a gauge, counter or untyped family's samples.
func sumFamily(f *dto.MetricFamily) (float64, error) {
	sum := 0.0
	for _, m := range f.GetMetric() {
		switch {
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Untyped != nil:
			sum += m.Untyped.GetValue()
		default:
			return 0, fmt.Errorf("metric %q is a %s; use a gauge", f.GetName(), strings.ToLower(f.GetType().String()))
		}
	}
	return sum, nil
}
