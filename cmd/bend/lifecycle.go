package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/distributor"
	"github.com/bendstream/bend/internal/config"
	"github.com/bendstream/bend/internal/kafka"
	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// lameDuck is the pipeline as the admin server sees it: ready while the
// distributor is, and not ready from the first moment of a shutdown, so
// /readyz answers 503 before any intake closes.
type lameDuck struct {
	*distributor.Distributor
	draining atomic.Bool
}

// Ready reports whether bend takes traffic: the consumer group is joined
// and no shutdown has started.
func (l *lameDuck) Ready() bool { return !l.draining.Load() && l.Distributor.Ready() }

// notifyReady sends READY=1 once the consumer group is joined (what /readyz
// reports), or returns when ctx ends first.
func notifyReady(ctx context.Context, l *lameDuck, notify func(string), log logrus.FieldLogger) {
	tk := time.NewTicker(50 * time.Millisecond)
	defer tk.Stop()
	for !l.Ready() {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
	log.Info("ready: consumer group joined")
	notify("READY=1")
}

// sdNotify sends state to systemd when it started bend with Type=notify
// ($NOTIFY_SOCKET set), and does nothing otherwise.
func sdNotify(log logrus.FieldLogger) func(string) {
	return func(state string) {
		if _, err := daemon.SdNotify(false, state); err != nil {
			log.WithError(err).WithField("state", state).Warn("telling systemd the service state failed")
		}
	}
}

// isTerminal reports whether fd is a terminal.
func isTerminal(fd uintptr) bool {
	_, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
	return err == nil
}

// progressEvery is how often `bend run` reports progress: progress, unless
// log.progress is off, or auto and stderr is not a terminal (tty nil or false).
func progressEvery(cfg config.Config, tty func() bool) time.Duration {
	switch cfg.Log.Progress {
	case "off":
		return 0
	case "auto":
		if tty == nil || !tty() {
			return 0
		}
	}
	return cfg.Progress
}

// progressReport is one progress report.
type progressReport struct {
	at                                   time.Time
	inRate, outRate                      float64
	lag, inFlight, parked, in, out, dead int64
}

// String is the progress line.
func (p progressReport) String() string {
	return fmt.Sprintf("%s ingested %7.0f/s  emitted %7.0f/s  lag %7d  in-flight %6d  parked %6d  total in %d out %d dead %d",
		p.at.Format("15:04:05"), p.inRate, p.outRate, p.lag, p.inFlight, p.parked, p.in, p.out, p.dead)
}

// progressSink writes reports as text lines to w, or, with log.format
// json, as JSON log records ("msg":"progress") through log.
func progressSink(c config.Log, log logrus.FieldLogger, w io.Writer) func(progressReport) {
	if c.Format == "json" {
		return func(p progressReport) {
			log.WithFields(logrus.Fields{
				"ingested_per_s": p.inRate, "emitted_per_s": p.outRate, "lag": p.lag, "in_flight": p.inFlight,
				"parked": p.parked, "ingested": p.in, "emitted": p.out, "dead_letters": p.dead,
			}).Info("progress")
		}
	}
	return func(p progressReport) { fmt.Fprintln(w, p) }
}

// ensureTopics is kafka.EnsureTopics that waits for Kafka: while no broker
// answers it logs and retries with exponential backoff (250ms doubling to
// 30s) until ctx ends. Other errors return at once.
func ensureTopics(ctx context.Context, brokers []string, sc *sarama.Config, t kafka.Topics, log logrus.FieldLogger, notify func(string)) error {
	wait := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := kafka.EnsureTopics(brokers, sc, t, t.Input, t.Output, t.DeadLetter)
		if err == nil {
			if attempt > 1 {
				log.WithField("brokers", strings.Join(brokers, ",")).Info("Kafka reachable")
			}
			return nil
		}
		if !unreachable(err) {
			return err
		}
		log.WithError(err).WithFields(logrus.Fields{"brokers": strings.Join(brokers, ","), "attempt": attempt, "retry_in": wait.String()}).
			Warn("Kafka not reachable; retrying")
		notify("STATUS=waiting for Kafka at " + strings.Join(brokers, ","))
		select {
		case <-ctx.Done():
			return fmt.Errorf("no Kafka broker reachable at %s (gave up after %d attempts): %w", strings.Join(brokers, ","), attempt, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// unreachable reports whether err means no broker answered.
func unreachable(err error) bool {
	var ne net.Error
	return errors.Is(err, sarama.ErrOutOfBrokers) || errors.Is(err, sarama.ErrClosedClient) ||
		errors.Is(err, unix.ECONNREFUSED) || errors.As(err, &ne)
}
