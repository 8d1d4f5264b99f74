// Package distributor is bend's core. It reads activities from Kafka at its
// own pace, parks each one in the delay queue while enrichment tasks for it
// are pulled by workers, rejoins the results with the parked activity and
// hands the enriched event to the sink. When the delay queue is full,
// reading stops: Kafka lag grows and memory stays flat.
//
// Offsets: every record read is tracked per partition claim; the sink's
// acknowledgement marks it, and the committed offset only ever moves to one
// past the highest offset below which every record was acknowledged. A nacked
// record holds the watermark until the claim ends, so it is redelivered.
// When a claim ends (rebalance or stop), reading it stops, its in-flight
// records get up to distributor.drain_timeout to be acknowledged, the marks
// are committed, and acknowledgements arriving later are fenced off.
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
//	distributor.lag           gauge: records behind the high-water marks of owned partitions
//	distributor.partition.TOPIC.P.{lag,watermark,in_flight,buffered}
//	                          gauges per owned partition: lag, next offset to commit,
//	                          records between read and watermark, fetched records buffered
//	delayqueue.*              gauges of the delay queue (len, in_use, cap, waiters, blocked_put_ns)
//	enrich.queue.{depth,cap}  gauges of the task queue
package distributor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
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
	work      enrich.Queue
	dq        *delayqueue.Queue[*job]
	log       logrus.FieldLogger
	reg       metrics.Registry
	delay     atomic.Int64 // distributor.delay, tunable at run time
	ready     atomic.Bool  // a group session is running and intake is open

	claimsMu sync.Mutex
	claims   map[*claimState]struct{}

	consumed    metrics.Meter
	inflight    metrics.Counter
	deadLetters metrics.Counter
	missing     metrics.Counter
	retries     metrics.Counter
	fenced      metrics.Counter
	abandoned   metrics.Counter
	late        metrics.Counter
}

// New builds a distributor reading topics from brokers. Enrichment tasks go
// to work, which the caller's workers (enrich.Pool, remote workers) drain;
// dq parks the activities. sc is the base sarama config.
func New(cfg Config, brokers []string, sc *sarama.Config, topics []string, enrichers []enrich.Resolved,
	work enrich.Queue, dq *delayqueue.Queue[*job], log logrus.FieldLogger, reg metrics.Registry) (*Distributor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Formats == nil {
		cfg.Formats, _ = activity.NewFormats("distributor.format", cfg.Format, nil) // checked by Validate
	}
	d := &Distributor{cfg: cfg, brokers: brokers, sc: cfg.consumerConfig(sc), topics: topics,
		enrichers: enrichers, work: work, dq: dq, log: log, reg: reg, claims: map[*claimState]struct{}{},
		consumed:    metrics.GetOrRegisterMeter(metricnames.DistributorConsumed, reg),
		inflight:    metrics.GetOrRegisterCounter(metricnames.DistributorInflight, reg),
		deadLetters: metrics.GetOrRegisterCounter(metricnames.DistributorDeadLetters, reg),
		missing:     metrics.GetOrRegisterCounter(metricnames.DistributorMissing, reg),
		retries:     metrics.GetOrRegisterCounter(metricnames.DistributorRetries, reg),
		fenced:      metrics.GetOrRegisterCounter(metricnames.DistributorFenced, reg),
		abandoned:   metrics.GetOrRegisterCounter(metricnames.DistributorAbandoned, reg),
		late:        metrics.GetOrRegisterCounter(metricnames.DistributorLate, reg),
	}
	d.delay.Store(int64(cfg.Delay))
	reg.GetOrRegister(metricnames.DistributorLag, metrics.NewFunctionalGauge(d.Lag))
	reg.GetOrRegister(metricnames.DelayQueueLen, metrics.NewFunctionalGauge(func() int64 { return int64(dq.Len()) }))
	reg.GetOrRegister(metricnames.DelayQueueInUse, metrics.NewFunctionalGauge(func() int64 { n, _ := dq.InUse(); return n }))
	reg.GetOrRegister(metricnames.DelayQueueCap, metrics.NewFunctionalGauge(func() int64 { n, _ := dq.Cap(); return n }))
	reg.GetOrRegister(metricnames.DelayQueueWaiters, metrics.NewFunctionalGauge(func() int64 { return int64(dq.Waiters()) }))
	reg.GetOrRegister(metricnames.DelayQueueBlockedPutNS, metrics.NewFunctionalGauge(func() int64 { return int64(dq.Stats().BlockedPut) }))
	reg.GetOrRegister(metricnames.EnrichQueueDepth, metrics.NewFunctionalGauge(func() int64 { return int64(len(work)) }))
	reg.GetOrRegister(metricnames.EnrichQueueCap, metrics.NewFunctionalGauge(func() int64 { return int64(cap(work)) }))
	return d, nil
}

// NewQueue builds the delay queue a Distributor parks activities in.
func NewQueue(cfg delayqueue.Config) (*delayqueue.Queue[*job], error) {
	return delayqueue.New[*job](cfg)
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
// yet passed by their commit watermark (high-water mark minus watermark).
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
	group, err := sarama.NewConsumerGroup(d.brokers, d.cfg.Group, d.sc)
	if err != nil {
		return fmt.Errorf("distributor: joining group %s: %w", d.cfg.Group, err)
	}
	g, gctx := errgroup.WithContext(ctx)
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
		err := group.Consume(sessCtx, d.topics, h)
		if err != nil {
			d.ready.Store(false) // until the next session is set up
		}
		switch {
		case errors.Is(err, sarama.ErrClosedConsumerGroup):
			return nil
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

// emit takes finished activities from the delay queue and sends them on.
// It returns when the queue is closed and empty.
func (d *Distributor) emit(ctx context.Context, out chan<- *sink.Record) error {
	for {
		it, err := d.dq.Take(ctx)
		if errors.Is(err, delayqueue.ErrClosed) {
			return nil
		}
		if err != nil {
			return err
		}
		j := it.Value
		if j.cs.isFenced() {
			// Its claim ended without this record being acknowledged:
			// the record is redelivered from the committed offset.
			d.abandoned.Inc(1)
			d.inflight.Dec(1)
			d.dq.Release(it)
			continue
		}
		rec, ready := j.seal(d)
		if !ready {
			d.dq.Repark(it, time.Now().Add(d.Delay()))
			continue
		}
		if d.cfg.Ordered {
			if err := j.cs.emitOrdered(ctx, j.msg.Offset, rec, out); err != nil {
				return err
			}
			continue
		}
		select {
		case out <- rec:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// handler implements sarama.ConsumerGroupHandler.
type handler struct {
	d    *Distributor
	hard <-chan struct{}
}

// Setup marks the distributor ready: the group has been joined.
func (h *handler) Setup(sarama.ConsumerGroupSession) error   { h.d.ready.Store(true); return nil }
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

	ctx := sess.Context()
	var err error
read:
	for {
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				break read
			}
			if err = d.handle(ctx, cs, m); err != nil {
				break read
			}
		case <-ctx.Done():
			break read
		}
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

// handle parks one record and queues its enrichment tasks. It blocks while
// the delay queue or the partition's window is full: that is backpressure.
func (d *Distributor) handle(ctx context.Context, cs *claimState, m *sarama.ConsumerMessage) error {
	cs.received(m.Offset)
	if err := cs.acquire(ctx); err != nil {
		return err
	}
	d.consumed.Mark(1)
	j := &job{msg: m, cs: cs, read: time.Now()}
	due := j.read.Add(d.Delay())
	f, perr := d.cfg.parse(m)
	if perr != nil {
		j.deadLetter = "invalid event: " + perr.Error()
		due = j.read
	} else if f.Kind != "" {
		// A non-activity event: passed on unenriched, at once. Its record
		// is built before it is parked, where an emitter may seal it.
		due = j.read
		j.rec = j.passRecord(d, f.Kind)
	} else {
		j.fields = f
		j.results = make([]result, len(d.enrichers))
		j.pending = len(d.enrichers)
		for _, e := range d.enrichers {
			if e.Required {
				j.required++
			}
		}
	}
	it, err := d.dq.Put(ctx, j, due, int64(len(m.Value)))
	if err != nil {
		// Not parked, so not tracked: the claim is ending and the record
		// will be read again from the committed offset.
		cs.slots.Release(1)
		return err
	}
	// Track the offset only once the record is parked: from here on its
	// acknowledgement is what moves the watermark.
	j.item = it
	d.inflight.Inc(1)
	cs.add(m.Offset, m.Timestamp)
	if perr != nil {
		j.rec = j.deadLetterRecord(d, j.deadLetter)
		d.dq.Complete(it)
		return nil
	}
	if f.Kind != "" {
		d.dq.Complete(it)
		return nil
	}
	if len(d.enrichers) == 0 {
		d.dq.Complete(it)
		return nil
	}
	stop := ctx.Done()
	for i := range d.enrichers {
		t := &enrich.Task{Enricher: i, Activity: &j.fields, Attempt: 1, Report: j.report(d, stop)}
		if err := d.work.Push(ctx, t); err != nil {
			// The job stays parked; its claim is ending, so it is
			// abandoned and redelivered.
			return err
		}
	}
	return nil
}

// provenance returns the provenance headers of an emitted record.
func provenance(m *sarama.ConsumerMessage) []sarama.RecordHeader {
	return []sarama.RecordHeader{
		{Key: []byte("bend-source-topic"), Value: []byte(m.Topic)},
		{Key: []byte("bend-source-partition"), Value: strconv.AppendInt(nil, int64(m.Partition), 10)},
		{Key: []byte("bend-source-offset"), Value: strconv.AppendInt(nil, m.Offset, 10)},
	}
}
