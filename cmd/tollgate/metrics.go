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
	cacheMode = prometheus.NewDesc("tollgate_cache_mode",
		"1 for the mode the token cache is in (normal, revalidating: an invalidation feed is not live, entries are confirmed with the store; stale: the store is failing), 0 for the others.", []string{"mode"}, nil)
	cacheReplayed = prometheus.NewDesc("tollgate_cache_invalidations_replayed_total",
		"Invalidation log entries applied that Redis had not brought (writer cut from Redis, Redis down, subscription lost).", nil, nil)
	cachePending = prometheus.NewDesc("tollgate_cache_invalidations_pending",
		"Invalidations waiting to reach Redis (this replica's own and replayed ones).", nil, nil)
	cacheRepairs = prometheus.NewDesc("tollgate_cache_redis_repairs_total",
		"Replayed invalidations written back into Redis.", nil, nil)
	cacheL2Ignored = prometheus.NewDesc("tollgate_cache_l2_ignored_total",
		"Redis entries not used: written before an invalidation this replica applied, or no invalidation feed live.", nil, nil)
	cacheLogSeq = prometheus.NewDesc("tollgate_cache_invalidation_log_seq",
		"Sequence number of the last invalidation log entry applied.", nil, nil)
	cacheLogLag = prometheus.NewDesc("tollgate_cache_invalidation_log_lag_seconds",
		"Time since a read of the invalidation log last reached its head (0 before the first).", nil, nil)
	cacheLogReads = prometheus.NewDesc("tollgate_cache_invalidation_log_reads_total",
		"Reads of the invalidation log by result (ok: reached its head, error).", []string{"result"}, nil)
	cacheLogPruned = prometheus.NewDesc("tollgate_cache_invalidation_log_pruned_total",
		"Invalidation log entries this replica deleted as older than cache.invalidation_retention.", nil, nil)
	cachePrunedBehind = prometheus.NewDesc("tollgate_cache_pruned_behind_total",
		"Times this replica found the invalidation log pruned past its last read and dropped its whole cache.", nil, nil)
)

// cacheModes are the values of tollgate_cache_mode's mode label.
var cacheModes = []tokencache.Mode{tokencache.ModeNormal, tokencache.ModeRevalidating, tokencache.ModeStale}

func (c CacheCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{cacheLookups, cacheInvalidations, usageWrites, redisUp, cacheStale, cacheUnavailable,
		cacheMode, cacheReplayed, cachePending, cacheRepairs, cacheL2Ignored, cacheLogSeq, cacheLogLag, cacheLogReads, cacheLogPruned, cachePrunedBehind} {
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
	for _, mode := range cacheModes {
		v := 0.0
		if s.Mode == mode {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(cacheMode, prometheus.GaugeValue, v, string(mode))
	}
	ch <- prometheus.MustNewConstMetric(cacheReplayed, prometheus.CounterValue, float64(s.InvalidationsReplayed))
	ch <- prometheus.MustNewConstMetric(cachePending, prometheus.GaugeValue, float64(s.InvalidationsPending))
	ch <- prometheus.MustNewConstMetric(cacheRepairs, prometheus.CounterValue, float64(s.RedisRepairs))
	ch <- prometheus.MustNewConstMetric(cacheL2Ignored, prometheus.CounterValue, float64(s.L2Ignored))
	ch <- prometheus.MustNewConstMetric(cacheLogSeq, prometheus.GaugeValue, float64(s.LogSeq))
	ch <- prometheus.MustNewConstMetric(cacheLogLag, prometheus.GaugeValue, s.LogLag.Seconds())
	ch <- prometheus.MustNewConstMetric(cacheLogReads, prometheus.CounterValue, float64(s.LogReads), "ok")
	ch <- prometheus.MustNewConstMetric(cacheLogReads, prometheus.CounterValue, float64(s.LogErrors), "error")
	ch <- prometheus.MustNewConstMetric(cacheLogPruned, prometheus.CounterValue, float64(s.LogPruned))
	ch <- prometheus.MustNewConstMetric(cachePrunedBehind, prometheus.CounterValue, float64(s.PrunedBehind))
}

// JobStats counts one background job's rounds on this replica.
type JobStats struct{ Ran, Failed, NotDue uint64 }

// JobsCollector exports how this replica's rounds of the background jobs
// went (jobs_wiring.go): summed over replicas, ran grows by one per job
// and interval.
type JobsCollector struct {
	Stats func() map[string]JobStats // by job name
}

var backgroundJobs = prometheus.NewDesc("tollgate_background_jobs_total",
	"Rounds of a background job (task: auto_pause, sweep_ephemeral, expiry_sweep) on this replica by outcome (ran: this replica won the claim and ran it; failed: the claim or the run failed; not_due: another replica ran it within the interval).",
	[]string{"task", "outcome"}, nil)

func (c JobsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- backgroundJobs }

func (c JobsCollector) Collect(ch chan<- prometheus.Metric) {
	for name, s := range c.Stats() {
		ch <- prometheus.MustNewConstMetric(backgroundJobs, prometheus.CounterValue, float64(s.Ran), name, "ran")
		ch <- prometheus.MustNewConstMetric(backgroundJobs, prometheus.CounterValue, float64(s.Failed), name, "failed")
		ch <- prometheus.MustNewConstMetric(backgroundJobs, prometheus.CounterValue, float64(s.NotDue), name, "not_due")
	}
}
