// Package obs is tollgate's observability: Prometheus metrics, the
// per-request access log, request ids and the client address behind
// trusted proxies. Labels never carry a secret, a token id or an account
// name: only route classes, results, reasons and kinds.
package obs

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds every collector. A nil *Metrics is valid and records
// nothing, so packages can take one optionally.
type Metrics struct {
	Registry *prometheus.Registry

	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	decisions       *prometheus.CounterVec
	tokenIssue      prometheus.Histogram
	authorization   prometheus.Histogram
	upstreamLatency *prometheus.HistogramVec
	upstreamErrors  *prometheus.CounterVec
	bytes           *prometheus.CounterVec
	inflight        prometheus.Gauge
	rateLimited     *prometheus.CounterVec
	cut             *prometheus.CounterVec
}

// NewMetrics registers tollgate's collectors (and the Go runtime's and the
// process's) in a registry of their own.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_http_requests_total", Help: "HTTP requests by route class and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tollgate_http_request_duration_seconds", Help: "Time to the end of the response, by route class.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 30, 120},
		}, []string{"route"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_auth_decisions_total", Help: "Authentication and authorization decisions by result and reason.",
		}, []string{"result", "reason"}),
		tokenIssue: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tollgate_token_issue_duration_seconds", Help: "Time to answer /token.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .5},
		}),
		authorization: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tollgate_authorization_duration_seconds", Help: "Time to authorize a registry or package request before it is forwarded.",
			Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .05},
		}),
		upstreamLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tollgate_upstream_request_duration_seconds", Help: "Time to the upstream's response headers.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}, []string{"upstream"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_upstream_errors_total", Help: "Upstream requests that failed (no response, or 5xx).",
		}, []string{"upstream"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_bytes_streamed_total", Help: "Response body bytes sent to clients, by kind.",
		}, []string{"kind"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tollgate_inflight_streams", Help: "Registry and package responses being streamed now.",
		}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_rate_limited_total", Help: "Requests refused with 429 by the failed-authentication limit.",
		}, []string{"route"}),
		cut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_http_responses_cut_total", Help: "Requests that did not end with their whole response sent, by route class and outcome (client_gone, aborted, truncated, panic).",
		}, []string{"route", "outcome"}),
	}
	reg.MustRegister(m.requests, m.duration, m.decisions, m.tokenIssue, m.authorization,
		m.upstreamLatency, m.upstreamErrors, m.bytes, m.inflight, m.rateLimited, m.cut,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Decision counts one auth decision; reason "ok" for a pass.
func (m *Metrics) Decision(reason string) {
	if m == nil {
		return
	}
	result := "denied"
	if reason == "" || reason == "ok" {
		result, reason = "ok", "ok"
	}
	m.decisions.WithLabelValues(result, reason).Inc()
}

// TokenIssued observes the time /token took.
func (m *Metrics) TokenIssued(seconds float64) {
	if m != nil {
		m.tokenIssue.Observe(seconds)
	}
}

// Authorized observes the time a request's authorization took.
func (m *Metrics) Authorized(seconds float64) {
	if m != nil {
		m.authorization.Observe(seconds)
	}
}

// Upstream observes one upstream round trip; failed is true for no
// response or a 5xx.
func (m *Metrics) Upstream(name string, seconds float64, failed bool) {
	if m == nil {
		return
	}
	m.upstreamLatency.WithLabelValues(name).Observe(seconds)
	if failed {
		m.upstreamErrors.WithLabelValues(name).Inc()
	}
}

// RateLimited counts a 429.
func (m *Metrics) RateLimited(route string) {
	if m != nil {
		m.rateLimited.WithLabelValues(route).Inc()
	}
}

// Register adds more collectors (the token cache's) to the registry.
func (m *Metrics) Register(cs ...prometheus.Collector) {
	if m != nil {
		m.Registry.MustRegister(cs...)
	}
}
