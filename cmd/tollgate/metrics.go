package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/tokencache"
)

// CacheCollector exports the token cache's counters, read at scrape time.
// It lives here, in the wiring, so that internal/obs imports nothing of
// tollgate: obs owns the registry, tokencache owns the counters, and this
// is where the two meet.
type CacheCollector struct {
	Stats func() tokencache.Stats
}

var (
	cacheLookups = prometheus.NewDesc("tollgate_cache_lookups_total",
		"Token cache lookups by layer (l1, l2, store, negative) and result (hit, miss, error).", []string{"layer", "result"}, nil)
	cacheInvalidations = prometheus.NewDesc("tollgate_cache_invalidations_received_total",
		"Invalidation messages heard on the Redis channel.", nil, nil)
	usageWrites = prometheus.NewDesc("tollgate_usage_writes_total",
		"Batched last-used writes to the store.", nil, nil)
	redisUp = prometheus.NewDesc("tollgate_redis_up",
		"1 while Redis answers (0 without Redis).", nil, nil)
	cacheStale = prometheus.NewDesc("tollgate_cache_stale_answers_total",
		"Answers served from an entry Redis and the store could not confirm (store down).", nil, nil)
	cacheUnavailable = prometheus.NewDesc("tollgate_cache_unavailable_total",
		"Lookups answered 'unavailable' (503).", nil, nil)
)

func (c CacheCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{cacheLookups, cacheInvalidations, usageWrites, redisUp, cacheStale, cacheUnavailable} {
		ch <- d
	}
}

func (c CacheCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.Stats()
	for _, l := range []struct {
		name string
		s    tokencache.LayerStats
	}{{"l1", s.L1}, {"l2", s.L2}, {"store", s.Store}, {"negative", s.Negative}} {
		ch <- prometheus.MustNewConstMetric(cacheLookups, prometheus.CounterValue, float64(l.s.Hit), l.name, "hit")
		ch <- prometheus.MustNewConstMetric(cacheLookups, prometheus.CounterValue, float64(l.s.Miss), l.name, "miss")
		ch <- prometheus.MustNewConstMetric(cacheLookups, prometheus.CounterValue, float64(l.s.Error), l.name, "error")
	}
	ch <- prometheus.MustNewConstMetric(cacheInvalidations, prometheus.CounterValue, float64(s.InvalidationsReceived))
	ch <- prometheus.MustNewConstMetric(usageWrites, prometheus.CounterValue, float64(s.UsageFlushes))
	up := 0.0
	if s.RedisUp {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(redisUp, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(cacheStale, prometheus.CounterValue, float64(s.Stale))
	ch <- prometheus.MustNewConstMetric(cacheUnavailable, prometheus.CounterValue, float64(s.Unavailable))
}
