package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/distributor"
	"github.com/bendstream/bend/enrich"
	"github.com/bendstream/bend/ingest"
	"github.com/bendstream/bend/internal/config"
	"github.com/bendstream/bend/internal/kafka"
	"github.com/bendstream/bend/internal/localbroker"
	"github.com/bendstream/bend/sink"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"
)

// run runs the whole pipeline until ctx ends, then shuts down in two
// phases: intake stops and the pipeline drains; if that takes longer than
// shutdown_timeout, everything is cancelled. It returns nil after a clean
// drain. progress receives the progress line.
func run(ctx context.Context, cfg config.Config, log *logrus.Logger, progress io.Writer) error {
	reg := metrics.NewRegistry()

	brokers := cfg.Kafka.Brokers
	if len(brokers) == 0 {
		b, err := localbroker.Start(cfg.Kafka.Embedded)
		if err != nil {
			return err
		}
		defer b.Close()
		brokers = b.Addrs()
		log.WithFields(logrus.Fields{"addr": brokers[0], "data_dir": cfg.Kafka.Embedded.DataDir}).
			Warn("using the embedded single-process Kafka broker, for trials only; set kafka.brokers to use a real cluster")
	}
	sc, err := cfg.Kafka.Sarama(reg)
	if err != nil {
		return err
	}
	t := cfg.Kafka.Topics
	if err := kafka.EnsureTopics(brokers, sc, t, t.Input, t.Output, t.DeadLetter); err != nil {
		return err
	}

	enrichers, err := cfg.Enrich.Build()
	if err != nil {
		return err
	}
	work := enrich.NewQueue(cfg.Enrich.QueueSize)
	pool := enrich.NewPool(cfg.Enrich.Workers, enrichers, log.WithField("stage", "enrich"), reg)
	dq, err := distributor.NewQueue(cfg.DelayQueue)
	if err != nil {
		return err
	}
	dist, err := distributor.New(cfg.Distributor, brokers, sc, []string{t.Input}, enrichers, work, dq,
		log.WithField("stage", "distributor"), reg)
	if err != nil {
		return err
	}
	snk, err := sink.New(cfg.Sink, brokers, sc, t.Output, t.DeadLetter, log.WithField("stage", "sink"), reg)
	if err != nil {
		return err
	}
	ing, err := ingest.New(cfg.Ingest, brokers, sc, t.Input, log.WithField("stage", "ingest"), reg)
	if err != nil {
		return err
	}

	root, hardStop := context.WithCancel(context.Background())
	defer hardStop()
	g, gctx := errgroup.WithContext(root)
	intake, stopIntake := context.WithCancel(gctx)
	defer stopIntake()
	workCtx, stopWork := context.WithCancel(gctx)
	defer stopWork()
	records := make(chan *sink.Record, 256)

	g.Go(func() error { return ing.Run(intake) })
	g.Go(func() error {
		defer stopWork() // workers stop once nothing more can be parked
		return dist.Run(gctx, intake, records)
	})
	g.Go(func() error { return pool.Run(workCtx, work) })
	g.Go(func() error { return snk.Run(gctx, records) })
	if cfg.Progress > 0 {
		g.Go(func() error { reportProgress(intake, cfg.Progress, reg, dist, progress); return nil })
	}
	go func() {
		select {
		case <-ctx.Done():
			log.Info("stopping: intake closed, draining in-flight records")
		case <-gctx.Done():
		}
		stopIntake()
		time.AfterFunc(cfg.ShutdownTimeout, func() {
			log.Warn("shutdown_timeout passed; forcing a stop, unacknowledged records will be redelivered")
			hardStop()
		})
	}()
	err = g.Wait()
	if errors.Is(err, context.Canceled) && root.Err() != nil {
		return fmt.Errorf("drain did not finish within shutdown_timeout (%s)", cfg.ShutdownTimeout)
	}
	if err == nil {
		log.WithFields(logrus.Fields{
			"ingested": reg.Get("ingest.published").(metrics.Meter).Count(),
			"emitted":  reg.Get("sink.emitted").(metrics.Meter).Count(),
		}).Info("stopped cleanly")
	}
	return err
}

// reportProgress prints one line every interval until ctx ends.
func reportProgress(ctx context.Context, every time.Duration, reg metrics.Registry, dist *distributor.Distributor, w io.Writer) {
	published := metrics.GetOrRegisterMeter("ingest.published", reg)
	emitted := metrics.GetOrRegisterMeter("sink.emitted", reg)
	dead := metrics.GetOrRegisterMeter("sink.dead_letters", reg)
	parked := reg.Get("delayqueue.len").(metrics.Gauge)
	tk := time.NewTicker(every)
	defer tk.Stop()
	lastIn, lastOut, last := published.Count(), emitted.Count(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tk.C:
			in, out := published.Count(), emitted.Count()
			secs := now.Sub(last).Seconds()
			fmt.Fprintf(w, "%s ingested %7.0f/s  emitted %7.0f/s  lag %7d  in-flight %6d  parked %6d  total in %d out %d dead %d\n",
				now.Format("15:04:05"), float64(in-lastIn)/secs, float64(out-lastOut)/secs,
				dist.Lag(), dist.InFlight(), parked.Value(), in, out, dead.Count())
			lastIn, lastOut, last = in, out, now
		}
	}
}

// saramaLogger routes sarama's log lines to log at debug level.
func saramaLogger(l *logrus.Logger) sarama.StdLogger {
	return log.New(l.WithField("component", "sarama").WriterLevel(logrus.DebugLevel), "", 0)
}
