package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/usage"
)

// usageWiring is the pull-insight recorder of one Main: started by
// startUsage (after the store and Service), handed to the edge by
// usageSink, stopped by stopUsage (after the server drained, before the
// store closes), so that the last pulls are written.
type usageWiring struct {
	rec    *usage.Recorder
	stream io.Closer // the stream file, if any
	stop   context.CancelFunc
	done   chan error
}

// startUsage builds the recorder from config.usage and starts it.
func (m *Main) startUsage() error {
	c := m.Config.Usage
	if !c.Enabled {
		return nil
	}
	o := usage.Options{
		Store:              m.Service,
		Buffer:             c.Buffer,
		FlushInterval:      c.FlushInterval.Duration(),
		DetailRetention:    c.DetailRetention.Duration(),
		AggregateRetention: c.AggregateRetention.Duration(),
		Logger:             m.Logger,
	}
	switch c.Stream {
	case "":
	case "-":
		o.Stream = os.Stdout
	default:
		f, err := os.OpenFile(c.Stream, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("usage.stream: %w", err)
		}
		o.Stream, m.usage.stream = f, f
	}
	rec, err := usage.New(o)
	if err != nil {
		return err
	}
	m.Metrics.Register(usageCollectors(rec.Stats)...)
	ctx, cancel := context.WithCancel(context.Background())
	m.usage.rec, m.usage.stop, m.usage.done = rec, cancel, make(chan error, 1)
	go func() { m.usage.done <- rec.Run(ctx) }()
	return nil
}

// usageSink is the edge's EventSink (nil when recording is off).
func (m *Main) usageSink() proxy.EventSink {
	if m.usage.rec == nil {
		return nil
	}
	return m.usage.rec
}

// stopUsage stops the recorder and writes what it holds (10 s at most).
func (m *Main) stopUsage() error {
	if m.usage.stop == nil {
		return nil
	}
	m.usage.stop()
	errs := []error{<-m.usage.done}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	errs = append(errs, m.usage.rec.Close(ctx))
	cancel()
	if m.usage.stream != nil {
		errs = append(errs, m.usage.stream.Close())
	}
	m.usage = usageWiring{}
	return errors.Join(errs...)
}

// usageCollectors exposes the recorder's counters.
func usageCollectors(stats func() usage.Stats) []prometheus.Collector {
	counter := func(name, help string, v func(usage.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v(stats())) })
	}
	return []prometheus.Collector{
		counter("tollgate_usage_events_total", "Pull events taken by the usage recorder.", func(s usage.Stats) uint64 { return s.Events }),
		counter("tollgate_usage_events_dropped_total", "Pull events dropped: hand-off buffer full or too many aggregates between writes.", func(s usage.Stats) uint64 { return s.Dropped }),
		counter("tollgate_usage_flushes_total", "Batches of pull aggregates written to the store.", func(s usage.Stats) uint64 { return s.Flushes }),
		counter("tollgate_usage_flush_errors_total", "Batches of pull aggregates the store refused (kept for the next write).", func(s usage.Stats) uint64 { return s.FlushErrors }),
		counter("tollgate_usage_stream_errors_total", "Failed writes to the raw pull event stream.", func(s usage.Stats) uint64 { return s.StreamErrors }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tollgate_usage_pending_events", Help: "Pull events waiting in the hand-off buffer."}, func() float64 { return float64(stats().Pending) }),
	}
}
