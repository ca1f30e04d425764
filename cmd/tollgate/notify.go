package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/notify"
	"github.com/tollgate/tollgate/proxy"
)

// deliverers holds each running Main's notification deliverer, so that
// Close can stop it before the store closes (kept here rather than in a
// field of Main while server.go is edited by others).
var deliverers sync.Map // *Main → *runningDeliverer

type runningDeliverer struct {
	cancel   context.CancelFunc
	done     chan struct{}
	refusals *notify.Refusals // the edge's token.refused sink
}

// notifySink is the token.refused sink of this replica's deliverer, nil
// when it runs none (refusals are reported by the replica that refused).
func (m *Main) notifySink() proxy.RefusalSink {
	if v, ok := deliverers.Load(m); ok {
		return v.(*runningDeliverer).refusals
	}
	return nil
}

// refusalSinks hands each refusal to every sink that is not nil: the
// card's recorder and the notification sink. Both take it without
// blocking.
type refusalSinks []proxy.RefusalSink

func (s refusalSinks) Refused(x tollgate.TokenRefusal) {
	for _, sink := range s {
		sink.Refused(x)
	}
}

func bothRefusalSinks(sinks ...proxy.RefusalSink) proxy.RefusalSink {
	var out refusalSinks
	for _, s := range sinks {
		if s != nil {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// startNotify starts the outbox deliverer of this replica (see package
// notify): every replica runs one; they share the work through the
// store. notify.interval 0 turns it off here.
func (m *Main) startNotify(ctx context.Context) error {
	n := m.Config.Notify
	if n.Interval.Duration() <= 0 {
		return nil
	}
	var mail *notify.SMTP
	if s := n.SMTP; s.Addr != "" {
		mail = &notify.SMTP{Addr: s.Addr, From: s.From, Insecure: s.Insecure, Username: s.Username}
		if s.PasswordFile != "" {
			b, err := os.ReadFile(s.PasswordFile)
			if err != nil {
				return fmt.Errorf("notify.smtp.password_file: %w", err)
			}
			mail.Password = tollgate.Secret(strings.TrimSpace(string(b)))
		}
	}
	consoleURL := n.ConsoleURL
	if consoleURL == "" {
		consoleURL = strings.TrimRight(m.Config.PublicURL, "/") + "/console"
	}
	d, err := notify.New(notify.Options{
		Service: m.Service, Logger: m.Logger, Interval: n.Interval.Duration(), RetryFor: n.RetryFor.Duration(), Lease: n.Lease.Duration(),
		AllowPrivate: n.AllowPrivateWebhooks, SMTP: mail, ConsoleURL: consoleURL,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r := &runningDeliverer{cancel: cancel, done: make(chan struct{}), refusals: notify.NewRefusals(m.Service, m.Logger, nil)}
	deliverers.Store(m, r)
	go func() {
		defer close(r.done)
		refusing := make(chan struct{})
		go func() { defer close(refusing); r.refusals.Run(ctx) }()
		d.Run(ctx)
		<-refusing
	}()
	return nil
}

// stopNotify stops the deliverer and waits for it (a delivery in flight
// finishes and is recorded). Call it before the store closes.
func (m *Main) stopNotify() {
	v, ok := deliverers.LoadAndDelete(m)
	if !ok {
		return
	}
	r := v.(*runningDeliverer)
	r.cancel()
	<-r.done
}
