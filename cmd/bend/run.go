package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/distributor"
	"github.com/bendstream/bend/enrich"
	"github.com/bendstream/bend/ingest"
	"github.com/bendstream/bend/internal/activity"
	"github.com/bendstream/bend/internal/admin"
	"github.com/bendstream/bend/internal/config"
	"github.com/bendstream/bend/internal/localbroker"
	"github.com/bendstream/bend/internal/metricnames"
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
	return runWith(ctx, cfg, log, progress, runOptions{})
}

// runOptions are what `bend run` adds to run.
type runOptions struct {
	// reloadable turns on configuration reload: when configPath ("" means
	// ./config.yaml if present, as for config.Load) changes, on every value
	// of hup, and on POST /admin/reload.
	reloadable bool
	configPath string
	hup        <-chan os.Signal
	// force, closed by a second SIGINT/SIGTERM, ends the drain at once.
	force <-chan struct{}
	// notify sends a state to the service manager (sd_notify); nil sends nothing.
	notify func(state string)
	// progressTTY reports whether the progress output is a terminal, for
	// log.progress auto; nil means it is not.
	progressTTY func() bool
	// stage, if not nil, runs as one more stage until intake ends; a test
	// seam to make a stage fail.
	stage func(intake context.Context, dist *distributor.Distributor, reg metrics.Registry) error
}

// runWith is run with the options of `bend run`.
func runWith(ctx context.Context, cfg config.Config, log *logrus.Logger, progress io.Writer, opts runOptions) error {
	if opts.notify == nil {
		opts.notify = func(string) {}
	}
	started, loaded := time.Now(), cfg // loaded: as read; reloads are compared with it
	reg := metrics.NewRegistry()
	admin.RegisterRuntime(reg)

	brokers := cfg.Kafka.Brokers
	if len(brokers) == 0 {
		b, err := localbroker.Start(cfg.Kafka.Embedded)
		if err != nil {
			return err
		}
		defer b.Close()
		b.Protect(cfg.Kafka.Topics.Input, cfg.Distributor.Group) // never delete input not yet consumed
		retain, stopRetain := context.WithCancel(context.Background())
		retained := make(chan struct{})
		go func() {
			defer close(retained)
			b.RunRetention(retain, localbroker.RetainEvery, log.WithField("stage", "localbroker"))
		}()
		defer func() { stopRetain(); <-retained }()
		brokers = b.Addrs()
		log.WithFields(logrus.Fields{"addr": brokers[0], "data_dir": cfg.Kafka.Embedded.DataDir}).
			Warn("using the embedded single-process Kafka broker, for trials only; set kafka.brokers to use a real cluster")
	}
	sc, err := cfg.Kafka.Sarama(reg)
	if err != nil {
		return err
	}
	t := cfg.Kafka.Topics
	if err := ensureTopics(ctx, brokers, sc, t, log, opts.notify); err != nil {
		return err
	}

	if cfg.Sink.Kafka.ExactlyOnce {
		// The sink commits offsets inside its transactions, which must
		// hold each partition's records in order.
		cfg.Distributor.Ordered = true
		cfg.Distributor.ExternalCommit = true
		if cfg.Sink.Kafka.TransactionalID == "" {
			cfg.Sink.Kafka.TransactionalID = "bend-" + cfg.Distributor.Group
		}
		log.WithField("transactional_id", cfg.Sink.Kafka.TransactionalID).Info("exactly-once mode: outputs and offsets commit in Kafka transactions")
	}
	enrichers, err := cfg.Enrich.Build(log.WithField("stage", "enrich"), reg)
	if err != nil {
		return err
	}
	work := enrich.NewQueue(cfg.Enrich.QueueSize, enrichers, reg)
	pool := enrich.NewPool(cfg.Enrich.Workers, enrichers, log.WithField("stage", "enrich"), reg)
	dq, err := distributor.NewQueue(cfg.DelayQueue)
	if err != nil {
		return err
	}
	// The distributor reads records in the format their source stamped.
	if cfg.Distributor.Formats, err = activity.NewFormats("distributor.format", cfg.Distributor.Format, cfg.Ingest.FormatConfigs()); err != nil {
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
	ing, err := ingest.New(cfg.Ingest, brokers, sc, t.Input, t.DeadLetter, log.WithField("stage", "ingest"), reg)
	if err != nil {
		return err
	}

	var reload func() error
	var rl *config.Reloader
	if opts.reloadable {
		rl = config.NewReloader(opts.configPath, loaded, func(c config.Config) {
			pool.SetWorkers(c.Enrich.Workers)
			dist.SetDelay(c.Distributor.Delay)
			if lvl, err := logrus.ParseLevel(c.Log.Level); err == nil {
				log.SetLevel(lvl)
			}
		}, log.WithField("stage", "config"))
		reload = rl.Reload
	}
	lame := &lameDuck{Distributor: dist}
	adm, err := admin.Start(cfg.Admin, reg, newAdminPipeline(lame, cfg.Kafka.Topics), reload, log.WithField("stage", "admin"))
	if err != nil {
		return err
	}
	defer adm.Close()
	serveRemote, err := listenRemote(cfg.Enrich, work, enrichers, log.WithField("stage", "enrich.remote"), reg)
	if err != nil {
		return err
	}

	// Shutdown in lame-duck order (ctx ends, or a stage fails): readiness
	// false (and STOPPING=1 to systemd), shutdown_grace, the sources stop,
	// the distributor's claims drain (it closes the delay queue and then
	// records), the workers stop, the sink finishes, admin closes (deferred
	// above). Only shutdown_timeout, counted from the end of the grace, or a
	// second signal escalates to the hard stop: root.
	root, hardStop := context.WithCancel(context.Background())
	defer hardStop()
	var g errgroup.Group
	failed := make(chan struct{}) // closed by the first stage that fails
	var failOnce sync.Once
	stage := func(f func() error) {
		g.Go(func() error {
			err := f()
			if err != nil {
				failOnce.Do(func() { close(failed) })
			}
			return err
		})
	}
	sources, stopSources := context.WithCancel(root)
	defer stopSources()
	intake, stopIntake := context.WithCancel(root)
	defer stopIntake()
	workCtx, stopWork := context.WithCancel(root)
	defer stopWork()
	records := make(chan *sink.Record, 256)
	ingested := make(chan struct{})

	stage(func() error { defer close(ingested); return ing.Run(sources) })
	stage(func() error {
		defer stopWork() // workers stop once nothing more can be parked
		return dist.Run(root, intake, records)
	})
	stage(func() error { return pool.Run(workCtx, work) })
	stage(func() error { return serveRemote(workCtx) }) // remote workers share work with pool
	stage(func() error { return snk.Run(root, records) })
	if every := progressEvery(cfg, opts.progressTTY); every > 0 {
		stage(func() error {
			reportProgress(intake, every, reg, dist, progressSink(cfg.Log, log, progress))
			return nil
		})
	}
	if rl != nil {
		stage(func() error { rl.Run(intake, opts.hup); return nil })
	}
	if opts.stage != nil {
		stage(func() error { return opts.stage(intake, dist, reg) })
	}
	stage(func() error { notifyReady(intake, lame, opts.notify, log); return nil })
	var forced atomic.Bool
	finished, shutDown := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(shutDown)
		select {
		case <-ctx.Done():
			log.Info("stopping: readiness off, then intake closes and in-flight records drain")
		case <-failed:
			log.Warn("a stage failed: stopping intake and draining in-flight records")
		case <-finished:
			return
		}
		lame.draining.Store(true)
		opts.notify("STOPPING=1")
		if grace := cfg.ShutdownGrace; grace > 0 && adm.Addr() != nil {
			select {
			case <-time.After(grace):
			case <-opts.force:
			case <-finished:
			}
		}
		timer := time.AfterFunc(cfg.ShutdownTimeout, func() {
			log.Warn("shutdown_timeout passed; forcing a stop, unacknowledged records will be redelivered")
			hardStop()
		})
		defer timer.Stop() // a drain that finished in time must not be cancelled later
		stopSources()
		select { // the sources stop before the claims drain
		case <-ingested:
		case <-root.Done():
		case <-opts.force:
		}
		stopIntake()
		select {
		case <-opts.force:
			forced.Store(true)
			log.WithFields(logrus.Fields{"unacknowledged": dist.InFlight(), "parked": gaugeValue(reg, metricnames.DelayQueueLen)}).
				Warn("second signal: stopping at once; records read and not acknowledged will be redelivered from the committed offsets")
			hardStop()
		case <-root.Done():
		case <-finished:
		}
	}()
	err = g.Wait()
	close(finished)
	<-shutDown
	if errors.Is(err, context.Canceled) && root.Err() != nil {
		err = fmt.Errorf("drain did not finish within shutdown_timeout (%s)", cfg.ShutdownTimeout)
		if forced.Load() {
			err = errors.New("forced stop (second signal) before the drain finished")
		}
	}
	logSummary(log, reg, dist, time.Since(started), err)
	return err
}

// logSummary logs what a run did; after an unclean stop, also what is left
// for redelivery.
func logSummary(log logrus.FieldLogger, reg metrics.Registry, dist *distributor.Distributor, ran time.Duration, err error) {
	count := func(name string) int64 {
		switch m := reg.Get(name).(type) {
		case metrics.Meter:
			return m.Count()
		case metrics.Counter:
			return m.Count()
		}
		return 0
	}
	f := logrus.Fields{
		"ran":                 ran.Round(time.Second).String(),
		"ingested":            count(metricnames.IngestPublished),
		"consumed":            count(metricnames.DistributorConsumed),
		"emitted":             count(metricnames.SinkEmitted),
		"dead_letters":        deadLetters(reg),
		"ingest_dead_letters": count(metricnames.IngestDeadLetters),
		"retries":             count(metricnames.DistributorRetries),
	}
	if err == nil {
		log.WithFields(f).Info("stopped cleanly")
		return
	}
	f["unacknowledged"] = dist.InFlight()
	log.WithFields(f).Warn("stopped before the drain finished; unacknowledged records will be redelivered from the committed offsets")
}

// deadLetters counts the records written to the dead-letter topic: ingest's
// invalid events (ingest.dead_letters) and the distributor's, through the
// sink (sink.dead_letters).
func deadLetters(reg metrics.Registry) int64 {
	return metrics.GetOrRegisterMeter(metricnames.SinkDeadLetters, reg).Count() +
		metrics.GetOrRegisterCounter(metricnames.IngestDeadLetters, reg).Count()
}

// gaugeValue returns a gauge's value, 0 if it is missing.
func gaugeValue(reg metrics.Registry, name string) int64 {
	if g, ok := reg.Get(name).(metrics.Gauge); ok {
		return g.Value()
	}
	return 0
}

// reportProgress reports progress to emit every interval until ctx ends.
func reportProgress(ctx context.Context, every time.Duration, reg metrics.Registry, dist *distributor.Distributor, emit func(progressReport)) {
	published := metrics.GetOrRegisterMeter(metricnames.IngestPublished, reg)
	emitted := metrics.GetOrRegisterMeter(metricnames.SinkEmitted, reg)
	parked := reg.Get(metricnames.DelayQueueLen).(metrics.Gauge)
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
			emit(progressReport{at: now, inRate: float64(in-lastIn) / secs, outRate: float64(out-lastOut) / secs,
				lag: dist.Lag(), inFlight: dist.InFlight(), parked: parked.Value(), in: in, out: out, dead: deadLetters(reg)})
			lastIn, lastOut, last = in, out, now
		}
	}
}

// saramaLogger routes sarama's log lines to log at debug level.
func saramaLogger(l *logrus.Logger) sarama.StdLogger {
	return log.New(l.WithField("component", "sarama").WriterLevel(logrus.DebugLevel), "", 0)
}
