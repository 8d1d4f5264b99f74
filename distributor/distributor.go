// Package distributor is bend's core. It reads activities from Kafka at its
// own pace, parks each one in the delay queue while enrichment tasks for it
// are pulled by workers, rejoins the results with the parked activity and
// hands the enriched event to the sink. When the delay queue is full,
// reading stops: Kafka lag grows and memory stays flat.
//
// Offsets: every record read is tracked per partition claim; the sink's
// acknowledgement marks it, and the committed offset only ever moves to one
// past the highest offset below which every record was acknowledged. A nacked
// record (the sink gave up on it) holds the watermark and ends its claim at
// once: the claim drains what is still pending, commits up to the nacked
// record, and returns, which ends the group session; the next session reads
// the partition again from the committed offset, so the record is
// redelivered instead of stalling its partition.
// When a claim ends (rebalance or stop), reading it stops, its in-flight
// records get up to distributor.drain_timeout to be acknowledged, the marks
// are committed, and acknowledgements arriving later are fenced off.
//
// A packed input record (internal/pack) is unpacked into one job per
// event under one window entry (pack.go); the per-record metrics below
// then count its events.
//
// Metrics:
//
//	distributor.consumed      meter of records read from Kafka
//	distributor.inflight      counter of records read and not yet acknowledged
//	distributor.dead_letters  counter of records sent to the dead-letter topic
//	distributor.missing       counter of optional enrichments emitted missing
//	distributor.retries       counter of enrichment attempts retried
//	distributor.fenced        counter of acknowledgements for ended claims
//	distributor.abandoned     counter of parked records of ended claims dropped for redelivery
//	distributor.late_results  counter of enrichment results after their activity left
//	distributor.nacks         counter of records the sink rejected; each ends its claim
//	                          so the partition is read again from the committed offset
//	distributor.double_acks   counter of acknowledgements after the first (ignored)
//	distributor.retries_dropped counter of retries not queued: claim fenced, activity
//	                          emitted, or an optional enrichment's deadline would pass first
//	distributor.overloaded    counter of optional enrichments not attempted: their
//	                          enricher's lane of the task queue was full (emitted
//	                          missing, reason "overloaded")
//	distributor.lag           gauge: records between the commit watermarks and the log-end
//	                          offsets of owned partitions (refreshed every distributor.lag_refresh)
//	distributor.replay.resets counter of partitions whose offsets a replay while running reset
//	distributor.replay.paused gauge: 1 while a replay holds intake paused
//	distributor.budget.{used,cap}  gauges: bytes of distributor.memory_budget taken by records in flight
//	distributor.partition.TOPIC.P.{lag,watermark,in_flight,buffered}
//	                          gauges per owned partition: lag, next offset to commit,
//	                          records between read and watermark, fetched records buffered
//	delayqueue.*              gauges of the delay queue (len, in_use, cap, waiters, blocked_put_ns, misuse)
//	enrich.queue.*, enrich.NAME.lane_*, enrich.NAME.queued: the task queue's
//	                          gauges, registered by enrich.NewQueue
package distributor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/delayqueue"
	"github.com/bendstream/bend/enrich"
	"github.com/bendstream/bend/internal/activity"
	"github.com/bendstream/bend/internal/metricnames"
	"github.com/bendstream/bend/sink"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"
)

// Distributor consumes one or more topics with a consumer group.
type Distributor struct {
	cfg       Config
	brokers   []string
	sc        *sarama.Config
	topics    []string
	enrichers []enrich.Resolved
	// inline marks the optional instant enrichers (stats, noop): handle
	// runs them at read time instead of queueing a task, so a slow
	// enricher's tasks in the queue can never delay them.
	inline []bool
	// required is the number of required enrichers.
	required int
	// work holds the queued tasks, one lane per enricher: required tasks
	// are pushed (blocking while their lane is full, holding their
	// activity), optional ones offered (a full lane drops its oldest:
	// emitted missing, reason "overloaded").
	work  *enrich.Queue
	dq    *delayqueue.Queue[*batch]
	log   logrus.FieldLogger
	reg   metrics.Registry
	delay atomic.Int64 // distributor.delay, tunable at run time
	ready atomic.Bool  // a group session is running and intake is open

	claimsMu sync.Mutex
	claims   map[*claimState]struct{}
	ends     *logEnds // log-end offsets of the owned partitions (lag.go)
	budget   *budget  // distributor.memory_budget (budget.go)

	consumed    metrics.Meter
	inflight    metrics.Counter
	deadLetters metrics.Counter
	missing     metrics.Counter
	retries     metrics.Counter
	fenced      metrics.Counter
	abandoned   metrics.Counter
	late        metrics.Counter
	nacks       metrics.Counter
	doubleAcks  metrics.Counter
	// retriesDropped counts retries not queued: their claim was fenced,
	// their activity emitted, or (optional) its deadline would pass first.
	retriesDropped metrics.Counter
	overloaded     metrics.Counter

	rp           replayState // replay while running (replay.go)
	replays      metrics.Counter
	replayPaused metrics.Gauge
}

// New builds a distributor reading topics from brokers. Enrichment tasks go
// to work (built with the same enrichers), which the caller's workers
// (enrich.Pool, remote workers through enrich.Server) drain;
// dq parks the activities. sc is the base sarama config.
func New(cfg Config, brokers []string, sc *sarama.Config, topics []string, enrichers []enrich.Resolved,
	work *enrich.Queue, dq *delayqueue.Queue[*batch], log logrus.FieldLogger, reg metrics.Registry) (*Distributor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Formats == nil {
		cfg.Formats, _ = activity.NewFormats("distributor.format", cfg.Format, nil) // checked by Validate
	}
	d := &Distributor{cfg: cfg, brokers: brokers, sc: cfg.consumerConfig(sc), topics: topics,
		enrichers: enrichers, work: work, dq: dq, log: log, reg: reg, claims: map[*claimState]struct{}{},
		ends: newLogEnds(), budget: newBudget(cfg.MemoryBudget, reg),
		consumed:    metrics.GetOrRegisterMeter(metricnames.DistributorConsumed, reg),
		inflight:    metrics.GetOrRegisterCounter(metricnames.DistributorInflight, reg),
		deadLetters: metrics.GetOrRegisterCounter(metricnames.DistributorDeadLetters, reg),
		missing:     metrics.GetOrRegisterCounter(metricnames.DistributorMissing, reg),
		retries:     metrics.GetOrRegisterCounter(metricnames.DistributorRetries, reg),
		fenced:      metrics.GetOrRegisterCounter(metricnames.DistributorFenced, reg),
		abandoned:   metrics.GetOrRegisterCounter(metricnames.DistributorAbandoned, reg),
		late:        metrics.GetOrRegisterCounter(metricnames.DistributorLate, reg),
		nacks:       metrics.GetOrRegisterCounter(metricnames.DistributorNacks, reg),
		doubleAcks:  metrics.GetOrRegisterCounter(metricnames.DistributorDoubleAcks, reg),

		retriesDropped: metrics.GetOrRegisterCounter(metricnames.DistributorRetriesDropped, reg),
	}
	for _, e := range enrichers {
		d.inline = append(d.inline, e.Inline())
		if e.Required {
			d.required++
		}
	}
	d.overloaded = metrics.GetOrRegisterCounter(metricnames.DistributorOverloaded, reg)
	d.replays = metrics.GetOrRegisterCounter(metricnames.DistributorReplayResets, reg)
	d.replayPaused = metrics.GetOrRegisterGauge(metricnames.DistributorReplayPaused, reg)
	d.delay.Store(int64(cfg.Delay))
	reg.GetOrRegister(metricnames.DistributorLag, metrics.NewFunctionalGauge(d.Lag))
	reg.GetOrRegister(metricnames.DelayQueueLen, metrics.NewFunctionalGauge(func() int64 { return int64(dq.Len()) }))
	reg.GetOrRegister(metricnames.DelayQueueInUse, metrics.NewFunctionalGauge(func() int64 { n, _ := dq.InUse(); return n }))
	reg.GetOrRegister(metricnames.DelayQueueCap, metrics.NewFunctionalGauge(func() int64 { n, _ := dq.Cap(); return n }))
	reg.GetOrRegister(metricnames.DelayQueueWaiters, metrics.NewFunctionalGauge(func() int64 { return int64(dq.Waiters()) }))
	reg.GetOrRegister(metricnames.DelayQueueMisuse, metrics.NewFunctionalGauge(func() int64 { return dq.Stats().Misuse }))
	reg.GetOrRegister(metricnames.DelayQueueBlockedPutNS, metrics.NewFunctionalGauge(func() int64 { return int64(dq.Stats().BlockedPut) }))
	return d, nil
}

// NewQueue builds the delay queue a Distributor parks activities in.
func NewQueue(cfg delayqueue.Config) (*delayqueue.Queue[*batch], error) {
	return delayqueue.New[*batch](cfg)
}

// Delay returns how long activities are parked for their enrichments.
func (d *Distributor) Delay() time.Duration { return time.Duration(d.delay.Load()) }

// SetDelay changes distributor.delay for activities read from now on
// (config hot reload). Non-positive values are ignored. Safe for concurrent use.
func (d *Distributor) SetDelay(delay time.Duration) {
	if delay > 0 {
		d.delay.Store(int64(delay))
	}
}

// Ready reports whether the distributor is consuming: Kafka answered and the
// consumer group has been joined, and intake has not stopped. It stays true
// through a rebalance of a running session. Safe for concurrent use.
func (d *Distributor) Ready() bool { return d.ready.Load() }

// Oldest returns the Kafka timestamp of the oldest record read and not yet
// acknowledged (the record holding a partition's watermark), or the zero
// time when nothing is in flight. Safe for concurrent use.
func (d *Distributor) Oldest() time.Time {
	d.claimsMu.Lock()
	defer d.claimsMu.Unlock()
	var oldest time.Time
	for cs := range d.claims {
		if t, ok := cs.oldest(); ok && (oldest.IsZero() || t.Before(oldest)) {
			oldest = t
		}
	}
	return oldest
}

// Lag returns how many records of the partitions this member owns are not
// yet passed by their commit watermark (log-end offset minus watermark, as
// Kafka's consumer-groups tool reports log-end offset minus committed offset).
func (d *Distributor) Lag() int64 {
	d.claimsMu.Lock()
	defer d.claimsMu.Unlock()
	var lag int64
	for cs := range d.claims {
		lag += cs.lag()
	}
	return lag
}

// InFlight returns the records read and not yet acknowledged by the sink.
func (d *Distributor) InFlight() int64 { return d.inflight.Count() }

// Run consumes until intake ends, then lets every claim drain (up to
// distributor.drain_timeout), commits, and returns after the last record it
// emitted was acknowledged or fenced. It sends enriched records and dead
// letters to out and closes out before returning. ctx is the hard stop: when
// it ends, Run returns at once with ctx.Err(), committing nothing more.
func (d *Distributor) Run(ctx, intake context.Context, out chan<- *sink.Record) error {
	defer close(out)
	n, err := countPartitions(d.brokers, d.sc, d.topics)
	if err != nil {
		d.log.WithError(err).Warn("counting input partitions; fetch buffers sized for one")
		n = 1
	}
	sc := fetchConfig(d.sc, d.cfg.MemoryBudget, n, d.cfg.FetchBuffer)
	group, err := sarama.NewConsumerGroup(d.brokers, d.cfg.Group, sc)
	if err != nil {
		return fmt.Errorf("distributor: joining group %s: %w", d.cfg.Group, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	lagCtx, stopLag := context.WithCancel(gctx)
	defer stopLag()
	lagDone := make(chan struct{})
	go func() { defer close(lagDone); d.trackLogEnds(lagCtx) }()
	defer func() { stopLag(); <-lagDone }()
	g.Go(func() error {
		// Closing the queue lets the emitters flush it and return.
		defer d.dq.Close()
		err := d.consume(gctx, intake, group)
		if cerr := group.Close(); cerr != nil {
			d.log.WithError(cerr).Warn("closing consumer group")
		}
		return err
	})
	for range d.cfg.Emitters {
		g.Go(func() error { return d.emit(gctx, out) })
	}
	return g.Wait()
}

// consume runs consumer-group sessions until intake ends.
func (d *Distributor) consume(ctx, intake context.Context, group sarama.ConsumerGroup) error {
	go func() {
		for err := range group.Errors() {
			log := d.log.WithError(err)
			var ce *sarama.ConsumerError
			if errors.As(err, &ce) {
				log = log.WithFields(logrus.Fields{"topic": ce.Topic, "partition": ce.Partition})
			}
			log.Warn("consumer group error")
		}
	}()
	// Sessions end at intake's end (drain and commit) or at ctx's (hard stop).
	sessCtx, cancel := context.WithCancel(intake)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	h := &handler{d: d, hard: ctx.Done()}
	for sessCtx.Err() == nil {
		// A replay ends one session (replay.go) to restart every claim
		// from the reset offsets; the loop then rejoins.
		one, end := context.WithCancel(sessCtx)
		d.rp.setSession(end)
		err := group.Consume(one, d.topics, h)
		ended := one.Err() != nil && sessCtx.Err() == nil
		end()
		if err != nil {
			d.ready.Store(false) // until the next session is set up
		}
		switch {
		case errors.Is(err, sarama.ErrClosedConsumerGroup):
			return nil
		case ended:
			d.log.Info("group session ended for a replay; rejoining")
		case err != nil:
			d.log.WithError(err).Warn("consumer group session failed; rejoining")
			select {
			case <-time.After(time.Second):
			case <-sessCtx.Done():
			}
		}
	}
	d.ready.Store(false)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

// emit takes finished batches from the delay queue and sends their records
// on. It returns when the queue is closed and empty.
func (d *Distributor) emit(ctx context.Context, out chan<- *sink.Record) error {
	var buf []*sink.Record
	scratch := make([]byte, 0, 512)
	for {
		it, err := d.dq.Take(ctx)
		if errors.Is(err, delayqueue.ErrClosed) {
			return nil
		}
		if err != nil {
			return err
		}
		if buf, err = d.emitBatch(ctx, it, out, buf, &scratch); err != nil { // batch.go
			return err
		}
		clear(buf) // the records may be acknowledged and collected
	}
}

// handler implements sarama.ConsumerGroupHandler.
type handler struct {
	d    *Distributor
	hard <-chan struct{}
}

// Setup marks the distributor ready: the group has been joined.
func (h *handler) Setup(s sarama.ConsumerGroupSession) error {
	h.d.rp.setup(s)
	h.d.ready.Store(true)
	return nil
}

func (h *handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim reads one partition until the claim ends, then drains it.
func (h *handler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	d := h.d
	cs := newClaimState(sess, claim, d.cfg.MaxPartitionInFlight, d)
	d.claimsMu.Lock()
	d.claims[cs] = struct{}{}
	d.claimsMu.Unlock()
	prefix := metricnames.Partition(claim.Topic(), claim.Partition())
	gauges := map[string]func() int64{
		metricnames.PartitionLag:       cs.lag,
		metricnames.PartitionWatermark: cs.watermark,
		metricnames.PartitionInFlight:  func() int64 { return int64(cs.inFlight()) },
		metricnames.PartitionBuffered:  func() int64 { return int64(len(claim.Messages())) },
	}
	for name, fn := range gauges {
		d.reg.Unregister(prefix + name)
		_ = d.reg.Register(prefix+name, metrics.NewFunctionalGauge(fn))
	}
	defer func() {
		d.claimsMu.Lock()
		delete(d.claims, cs)
		d.claimsMu.Unlock()
		for name := range gauges {
			d.reg.Unregister(prefix + name)
		}
	}()
	log := d.log.WithFields(logrus.Fields{"topic": claim.Topic(), "partition": claim.Partition()})
	log.WithField("offset", claim.InitialOffset()).Debug("claim started")

	ctx, abort := context.WithCancel(sess.Context())
	defer abort()
	cs.mu.Lock()
	cs.abort = abort
	cs.mu.Unlock()
	var err error
read:
	for {
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				break read
			}
			if !d.rp.enter(ctx, cs, claim.Messages()) { // paused by a replay: the session ends at its resume
				break read
			}
			err = d.handle(ctx, cs, m, claim.Messages())
			cs.busy.Store(false)
			if err != nil {
				break read
			}
		case <-ctx.Done():
			break read
		}
	}
	select {
	case <-cs.nacked:
		// A failed record holds the watermark: the claim (and so the
		// session) ends, to read the partition again from it.
		log.Warn("a record was not accepted by the sink; ending the claim to read the partition again from the committed offset")
	default:
	}
	// Stop intake for this partition, give what was read a bounded time to
	// be acknowledged, commit, then fence late acknowledgements.
	drained := cs.drain(d.cfg.DrainTimeout, h.hard)
	cs.fence()
	if !drained {
		log.WithField("in_flight", cs.inFlight()).Warn("claim ended before its records were acknowledged; they will be redelivered")
	}
	sess.Commit()
	log.Debug("claim ended")
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// handle parks m, with the records of its partition already fetched after
// it (in), as one batch and queues their enrichment tasks (batch.go). A
// packed record is a batch of its own (pack.go). It blocks while the delay
// queue, the memory budget or the partition's window is full: that is
// backpressure.
func (d *Distributor) handle(ctx context.Context, cs *claimState, m *sarama.ConsumerMessage, in <-chan *sarama.ConsumerMessage) error {
	cs.received(m.Offset)
	for m != nil {
		if n, packed, ferr := packFramed(m); packed {
			if err := d.handlePack(ctx, cs, m, n, ferr); err != nil {
				return err
			}
			m = nil
			// Then whatever else is already fetched.
			select {
			case m2, ok := <-in:
				if ok {
					m = m2
				}
			default:
			}
			continue
		}
		var msgs []*sarama.ConsumerMessage
		msgs, m = d.gather(cs.buf[:0], m, in)
		err := d.parkBatch(ctx, cs, msgs, nil)
		clear(msgs)
		cs.buf = msgs[:0]
		if err != nil {
			return err
		}
	}
	return nil
}

// Header keys and constant values, allocated once. Sinks only read them.
var (
	hdrSourceTopic     = []byte("bend-source-topic")
	hdrSourcePartition = []byte("bend-source-partition")
	hdrSourceOffset    = []byte("bend-source-offset")
	hdrKind            = []byte(activity.HeaderKind)
	hdrDLQReason       = []byte("bend-dlq-reason")
	hdrDLQStage        = []byte("bend-dlq-stage")
	hdrDLQTime         = []byte("bend-dlq-time")
	hdrDistributor     = []byte("distributor")
)
