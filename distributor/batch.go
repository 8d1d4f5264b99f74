package distributor

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/delayqueue"
	"github.com/bendstream/bend/enrich"
	"github.com/bendstream/bend/internal/activity"
	"github.com/bendstream/bend/sink"
)

// batch is what one ConsumeClaim hands on at once: the records of its
// partition already fetched when it reads one (never waiting for more, up
// to distributor.batch_max_records and batch_max_bytes), or the events of
// one packed record (pack.go). It moves through the stages as one unit:
// one window entry (first..last offset), one take of the memory budget, one
// delay-queue item weighing its records and bytes, one acknowledger for all
// its sink records. Each record keeps its own job: its enrichments, its
// deadline, its dead letter.
//
// Outcomes: the window entry is acknowledged once every record is, or
// nacked at the first record the sink rejects (the claim then ends and the
// partition is read again from the committed offset, as for one record:
// every record after a nacked one is read again anyway).
type batch struct {
	cs     *claimState
	first  int64 // the window entry: the first record's offset (a packed record's own)
	last   int64
	packed bool  // the events of one packed record at offset first
	bad    error // packed: its framing is malformed; one job, dead-lettered whole
	read   time.Time
	due    time.Time // read + distributor.delay at read time
	weight int64     // bytes taken from distributor.memory_budget (budget.go)
	jobs   []job
	recs   []sink.Record // each job's output record, built when it is sealed
	srcs   []sink.Source // exactly-once mode: each record's input position

	// mu is held by the reader from before the batch is parked until it is
	// tracked, then by the emitter holding its item: an emitter that takes
	// a batch due at once must not seal it before its item and window
	// entry are set.
	mu     sync.Mutex
	item   *delayqueue.Item[*batch]
	unsent int // jobs neither handed to the sink nor dropped

	open   atomic.Int32 // jobs whose enrichments are not all final, plus one while parking
	left   atomic.Int32 // records without an outcome (acknowledged, nacked or dropped)
	closed atomic.Bool  // the window entry was nacked or forgotten: it is never acknowledged
}

// jobDone notes that one more job has all its enrichments final (or that
// parking ended); with the last, the batch is complete.
func (b *batch) jobDone(d *Distributor) {
	if b.open.Add(-1) == 0 {
		d.dq.Complete(b.item)
	}
}

// AckRecord is the sink's acknowledgement of record i (sink.Acker). Only the
// first call per record counts; a later one is ignored and counted in
// distributor.double_acks.
func (b *batch) AckRecord(i int32, err error) {
	d := b.cs.d
	if i < 0 || int(i) >= len(b.jobs) || !b.jobs[i].acked.CompareAndSwap(false, true) {
		d.doubleAcks.Inc(1)
		return
	}
	b.outcome(1, err, false)
}

// outcome counts n records' outcomes: err is a nack, drop means they were
// dropped unemitted for redelivery (their claim ended). The first nack or
// drop closes the window entry; the last outcome frees the batch's
// capacity and, if the entry is still open, acknowledges it.
func (b *batch) outcome(n int32, err error, drop bool) {
	d := b.cs.d
	if (err != nil || drop) && b.closed.CompareAndSwap(false, true) {
		if drop {
			b.cs.forget(b.first)
		} else {
			b.cs.ack(b.first, err)
		}
	}
	if err != nil && !b.cs.isFenced() { // a fenced claim's records are counted in distributor.fenced
		d.nacks.Inc(int64(n))
	}
	// distributor.inflight counts records, each until its own outcome; the
	// batch's capacity and budget go back with its last.
	d.inflight.Dec(int64(n))
	if b.left.Add(-n) != 0 {
		return
	}
	d.dq.Release(b.item)
	d.budget.release(b.weight)
	if !b.closed.Load() {
		b.cs.ack(b.first, nil)
	}
}

// maxBatch returns the most records a batch of this claim may hold: the
// configured limit, and never more than the partition's window or the delay
// queue can take at once.
func (d *Distributor) maxBatch() int {
	n := int64(d.cfg.BatchMaxRecords)
	n = min(n, d.cfg.MaxPartitionInFlight)
	if items, _ := d.dq.Cap(); items > 0 {
		n = min(n, items)
	}
	return int(max(n, 1))
}

// gather appends to msgs, after m, the records of in already fetched, up to
// the batch limits; it never waits. A packed record ends the batch and is
// returned as next, to be handled after it, as is a record that would take
// the batch past its byte limit. A closed in ends the batch (the claim is
// ending; the read loop sees it next).
func (d *Distributor) gather(msgs []*sarama.ConsumerMessage, m *sarama.ConsumerMessage, in <-chan *sarama.ConsumerMessage) (batch []*sarama.ConsumerMessage, next *sarama.ConsumerMessage) {
	msgs = append(msgs, m)
	limit := d.maxBatch()
	bytes := len(m.Key) + len(m.Value)
	maxBytes := d.cfg.BatchMaxBytes
	if _, qb := d.dq.Cap(); qb > 0 {
		maxBytes = min(maxBytes, qb)
	}
	for len(msgs) < limit && int64(bytes) < maxBytes {
		select {
		case m2, ok := <-in:
			if !ok {
				return msgs, nil
			}
			if _, packed, _ := packFramed(m2); packed {
				return msgs, m2
			}
			if int64(bytes+len(m2.Key)+len(m2.Value)) > maxBytes {
				return msgs, m2
			}
			bytes += len(m2.Key) + len(m2.Value)
			msgs = append(msgs, m2)
		default:
			return msgs, nil
		}
	}
	return msgs, nil
}

// parkBatch parks the records msgs as one batch and queues their
// enrichment tasks. It blocks while the partition's window, the memory
// budget or the delay queue is full: that is backpressure. pk, when set,
// says msgs are the events of the packed record pk.off, which already holds
// its window slot.
func (d *Distributor) parkBatch(ctx context.Context, cs *claimState, msgs []*sarama.ConsumerMessage, pk *packInfo) error {
	n := len(msgs)
	slots := int64(n) // the window slots the batch holds
	if pk != nil {
		slots = 1 // the packed record's, taken by handlePack
	} else if err := cs.acquire(ctx, slots); err != nil {
		return err
	}
	var w, bytes int64
	for _, m := range msgs {
		w += d.budget.weight(m)
		bytes += int64(len(m.Value))
	}
	w = min(w, d.budget.records)
	if err := d.budget.acquire(ctx, w); err != nil {
		cs.slots.Release(slots)
		return err
	}
	now := time.Now()
	b := &batch{cs: cs, first: msgs[0].Offset, last: msgs[n-1].Offset, read: now, due: now.Add(d.Delay()), weight: w,
		jobs: make([]job, n), recs: make([]sink.Record, n)}
	if pk != nil {
		b.first, b.last, b.packed, b.bad = pk.off, pk.off, true, pk.bad
	}
	if d.cfg.ExternalCommit {
		b.srcs = make([]sink.Source, n)
	}
	hdrs := b.provenance(msgs)
	final := 0 // jobs with nothing to enrich
	for i, m := range msgs {
		j := &b.jobs[i]
		j.msg, j.b, j.index, j.hdrs = m, b, int32(i), hdrs[i]
		if b.srcs != nil {
			b.srcs[i] = sink.Source{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Group: cs.group, Partial: b.packed && i < n-1}
		}
		var f activity.Fields
		var perr error
		if b.bad != nil {
			perr = b.bad
		} else {
			f, perr = d.cfg.parse(m)
		}
		switch {
		case perr != nil:
			j.deadLetter = "invalid event: " + perr.Error()
			j.deadLetterRecord(d, j.deadLetter)
			j.prebuilt = true
			final++
		case f.Kind != "":
			// A non-activity event: passed on unenriched, at once.
			j.passRecord(d, f.Kind)
			j.prebuilt = true
			final++
		case len(d.enrichers) == 0:
			final++
		default:
			j.fields = f
			j.results = j.resBuf[:0]
			if len(d.enrichers) > len(j.resBuf) {
				j.results = make([]result, 0, len(d.enrichers))
			}
			j.results = j.results[:len(d.enrichers)]
			j.pending = len(d.enrichers)
			j.required = d.required
		}
	}
	due := b.due
	if final == n {
		due = now // nothing to wait for: dead letters and pass-through leave at once
	}
	b.open.Store(int32(n - final + 1))
	b.left.Store(int32(n))
	b.unsent = n
	b.mu.Lock()
	it, err := d.dq.PutN(ctx, b, due, int64(n), bytes)
	if err != nil {
		b.mu.Unlock()
		// Not parked, so not tracked: the claim is ending and the records
		// will be read again from the committed offset.
		cs.slots.Release(slots)
		d.budget.release(w)
		return err
	}
	// Tracked only once parked: from here on its acknowledgement is what
	// moves the watermark.
	b.item = it
	d.consumed.Mark(int64(n))
	d.inflight.Inc(int64(n))
	cs.addRange(b.first, b.last, int32(slots), msgs[0].Timestamp)
	b.mu.Unlock()
	if final < n {
		if err := d.queueTasks(ctx, b); err != nil {
			b.jobDone(d)
			return err
		}
	}
	b.jobDone(d) // parking is over
	return nil
}

// queueTasks runs the inline enrichers of every job of b and queues the
// tasks of the others.
func (d *Distributor) queueTasks(ctx context.Context, b *batch) error {
	for ji := range b.jobs {
		j := &b.jobs[ji]
		if j.prebuilt || j.pending == 0 {
			continue
		}
		// The callbacks are built only when a task is queued (or an
		// inline attempt failed): with only inline enrichers a record
		// costs no closure.
		var report func(*enrich.Task, json.RawMessage, error)
		var stale func() bool
		for i := range d.enrichers {
			if d.inline[i] {
				res, err := enrich.Call(ctx, d.enrichers[i].Enricher, &j.fields)
				if err == nil {
					if j.settle(i, res) {
						b.jobDone(d)
					}
					continue
				}
				if report == nil {
					report, stale = j.report(ctx, d), j.stale
				}
				report(&enrich.Task{Enricher: i, Activity: &j.fields, Attempt: 1, Report: report, Stale: stale}, res, err)
				continue
			}
			if report == nil {
				report, stale = j.report(ctx, d), j.stale
			}
			t := &enrich.Task{Enricher: i, Activity: &j.fields, Attempt: 1, Report: report, Stale: stale}
			if !d.enrichers[i].Required {
				// Offer never blocks: a full lane drops its oldest task,
				// reported as overloaded.
				t.Deadline = b.resultDeadline()
				d.work.Offer(t)
				continue
			}
			if err := d.work.Push(ctx, t); err != nil {
				// The batch stays parked; its claim is ending, so it is
				// abandoned and redelivered.
				return err
			}
		}
	}
	return nil
}

// provenance returns the provenance headers of each record of the batch
// (and, for a packed record's events, their index), with their values in
// one shared allocation.
func (b *batch) provenance(msgs []*sarama.ConsumerMessage) [][]sarama.RecordHeader {
	per := 3
	if b.packed && b.bad == nil {
		per = 4
	}
	all := make([]sarama.RecordHeader, per*len(msgs))
	out := make([][]sarama.RecordHeader, len(msgs))
	num := make([]byte, 0, 24*len(msgs))
	for i, m := range msgs {
		s := len(num)
		num = strconv.AppendInt(num, int64(m.Partition), 10)
		p := len(num)
		num = strconv.AppendInt(num, m.Offset, 10)
		o := len(num)
		h := all[i*per : i*per+per : i*per+per]
		h[0] = sarama.RecordHeader{Key: hdrSourceTopic, Value: b.cs.topicB}
		h[1] = sarama.RecordHeader{Key: hdrSourcePartition, Value: num[s:p:p]}
		h[2] = sarama.RecordHeader{Key: hdrSourceOffset, Value: num[p:o:o]}
		if per == 4 {
			num = strconv.AppendInt(num, int64(i), 10)
			h[3] = sarama.RecordHeader{Key: hdrIndex, Value: num[o:len(num):len(num)]}
		}
		out[i] = h
	}
	return out
}

// resultDeadline is the Deadline of the batch's optional tasks: a little
// before it is due (resultGuard).
func (b *batch) resultDeadline() time.Time {
	return b.due.Add(-min(resultGuard, b.due.Sub(b.read)/10))
}

// emitBatch seals what is ready of the batch taken as it and hands it to
// out: in ordered mode only once every record is sealed, in its
// partition's turn. A batch with a record still waiting for a required
// enrichment is parked again. A batch of a fenced claim is dropped for
// redelivery. buf is scratch space for the records sent, returned for
// reuse; scratch for the enrichments' JSON.
func (d *Distributor) emitBatch(ctx context.Context, it *delayqueue.Item[*batch], out chan<- *sink.Record, buf []*sink.Record, scratch *[]byte) ([]*sink.Record, error) {
	b := it.Value
	b.mu.Lock()
	if b.cs.isFenced() {
		// Its claim ended without these records being acknowledged: they
		// are redelivered from the committed offset.
		n := b.unsent
		for i := range b.jobs {
			b.jobs[i].sent = true
		}
		b.unsent = 0
		b.mu.Unlock()
		d.abandoned.Inc(int64(n))
		if n > 0 {
			b.outcome(int32(n), nil, true)
		}
		return buf, nil
	}
	run := buf[:0]
	all := true
	for i := range b.jobs {
		j := &b.jobs[i]
		if j.sent || j.sealed {
			continue
		}
		rec, ready := j.seal(d, scratch)
		if !ready {
			all = false
			continue
		}
		if !d.cfg.Ordered {
			j.sent = true
			b.unsent--
			run = append(run, rec)
		}
	}
	if d.cfg.Ordered && all {
		// Every record sealed: the batch leaves whole, in offset order.
		run = make([]*sink.Record, len(b.jobs))
		for i := range b.jobs {
			b.jobs[i].sent = true
			run[i] = &b.recs[i]
		}
		b.unsent = 0
	}
	b.mu.Unlock()
	if !all {
		d.dq.Repark(it, time.Now().Add(d.Delay()))
		if d.cfg.Ordered {
			return buf, nil
		}
	}
	if d.cfg.Ordered {
		return buf, b.cs.emitOrdered(ctx, b.first, run, out)
	}
	for _, rec := range run {
		select {
		case out <- rec:
		case <-ctx.Done():
			return run, ctx.Err()
		}
	}
	return run, nil
}

// packInfo describes a packed input record whose events form a batch.
type packInfo struct {
	off int64
	bad error
}
