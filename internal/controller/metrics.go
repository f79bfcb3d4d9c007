package controller

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	duration prometheus.Histogram
	errors   prometheus.Counter
	events   *prometheus.CounterVec
	replicas *prometheus.GaugeVec
	scaled   *prometheus.CounterVec
	cloudUp  *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "aloft_reconcile_duration_seconds", Help: "Time one deployment reconcile takes.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aloft_reconcile_errors_total", Help: "Reconciles that ended in an error.",
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aloft_controller_events_total", Help: "Controller decisions recorded as events, by reason.",
		}, []string{"reason"}),
		replicas: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "aloft_replicas", Help: "Replicas by cloud and state.",
		}, []string{"cloud", "state"}),
		scaled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aloft_autoscaler_decisions_total", Help: "Autoscaler changes of a deployment's replica count, by direction.",
		}, []string{"direction"}),
		cloudUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "aloft_cloud_up", Help: "1 while a cloud answers, 0 while it is unreachable (clouds that report their health).",
		}, []string{"cloud"}),
	}
	if reg != nil {
		reg.MustRegister(m.duration, m.errors, m.events, m.replicas, m.scaled, m.cloudUp)
	}
	return m
}

func (c *Controller) updateReplicaGauge(ctx context.Context) {
	all, err := c.st.ListAllReplicas(ctx)
	if err != nil {
		return
	}
	c.metrics.replicas.Reset()
	for _, r := range all {
		c.metrics.replicas.WithLabelValues(r.Cloud, string(r.State)).Inc()
	}
}
