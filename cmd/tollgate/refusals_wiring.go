package main

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/usage"
)

// refusalWiring records the refused attempts of known tokens for their
// cards: started with the usage recorder, handed to the edge, stopped
// (and flushed) before the store closes.
type refusalWiring struct {
	rec  *usage.RefusalRecorder
	stop context.CancelFunc
	done chan error
}

func (m *Main) startRefusals() {
	rec := usage.NewRefusalRecorder(usage.RefusalOptions{Store: m.Service, Logger: m.Logger})
	stats := func() usage.RefusalStats { return rec.Stats() }
	counter := func(name, help string, v func(usage.RefusalStats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v(stats())) })
	}
	m.Metrics.Register(
		counter("tollgate_refusals_recorded_total", "Refused attempts of known tokens written for their cards.", func(s usage.RefusalStats) uint64 { return s.Written }),
		counter("tollgate_refusals_dropped_total", "Refused attempts not recorded: hand-off full, or more of one token in a batch than are kept.", func(s usage.RefusalStats) uint64 { return s.Dropped }),
		counter("tollgate_refusals_failed_total", "Refused attempts lost to a failed store write.", func(s usage.RefusalStats) uint64 { return s.Failed }),
	)
	ctx, cancel := context.WithCancel(context.Background())
	m.refusals = refusalWiring{rec: rec, stop: cancel, done: make(chan error, 1)}
	go func() { m.refusals.done <- rec.Run(ctx) }()
}

// refusalSink is the edge's RefusalSink (nil before startRefusals).
func (m *Main) refusalSink() proxy.RefusalSink {
	if m.refusals.rec == nil {
		return nil
	}
	return m.refusals.rec
}

// stopRefusals stops the recorder and writes what it holds. A failed
// last write is logged by the recorder, not an error of Close: refused
// attempts are shown to help, they are no record anyone relies on.
func (m *Main) stopRefusals() error {
	if m.refusals.stop == nil {
		return nil
	}
	m.refusals.stop()
	err := <-m.refusals.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m.refusals.rec.Flush(ctx)
	m.refusals = refusalWiring{}
	return err
}
