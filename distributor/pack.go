package distributor

import (
	"context"
	"strconv"
	"sync"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/pack"
	"github.com/bendstream/bend/sink"
)

// packState is one packed input record (internal/pack) in flight: its
// events are parked as jobs of their own (each with its delay-queue item
// and its share of the memory budget), while the record holds one entry of
// its partition's window. The entry is acknowledged once every event is:
// with nil when all were, or at the first event's nack (the record, and so
// every event in it, is then read again: the events already emitted are
// emitted twice).
type packState struct {
	cs  *claimState
	off int64
	bad error // a malformed packed record: one job, dead-lettered whole

	mu      sync.Mutex
	n       int            // events parked (all of them unless parking stopped early)
	pending int            // acknowledgements still awaited, plus one while parking
	failed  bool           // the window entry was nacked
	dropped bool           // parking stopped early: the entry was forgotten
	recs    []*sink.Record // ordered mode: sealed records, by index
	arrived int            // ordered mode: events sealed or abandoned, plus one while parking
}

var hdrIndex = []byte(pack.HeaderIndex)

// handlePack parks the n events of the packed record m (ferr: its headers
// are malformed) after taking one window slot for it. It blocks as handle
// does.
func (d *Distributor) handlePack(ctx context.Context, cs *claimState, m *sarama.ConsumerMessage, n int, ferr error) error {
	if err := cs.acquire(ctx); err != nil {
		return err
	}
	ps := &packState{cs: cs, off: m.Offset, pending: 1, arrived: 1}
	var events [][]byte
	if ferr == nil {
		events, ferr = pack.Split(make([][]byte, 0, n), m.Value, n)
	}
	if ferr != nil {
		ps.bad = ferr
		events = [][]byte{m.Value}
	}
	if d.cfg.Ordered {
		ps.recs = make([]*sink.Record, len(events))
	}
	// The events keep the record's headers but its framing ones.
	var hs []*sarama.RecordHeader
	if ps.bad == nil {
		hs = make([]*sarama.RecordHeader, 0, len(m.Headers))
		for _, h := range m.Headers {
			if k := string(h.Key); k != pack.HeaderCount && k != pack.HeaderFraming {
				hs = append(hs, h)
			}
		}
	} else {
		hs = m.Headers
	}
	msgs := make([]sarama.ConsumerMessage, len(events))
	// The window entry first, as handle does under the job's lock: an event
	// due at once may be acknowledged before its siblings are parked.
	cs.add(m.Offset, m.Timestamp)
	for i, ev := range events {
		em := &msgs[i]
		*em = *m
		em.Value, em.Headers = ev, hs
		ps.mu.Lock()
		ps.n++
		ps.pending++
		ps.arrived++
		ps.mu.Unlock()
		if i == len(events)-1 {
			// The reader's hold on ordered emission ends before the last
			// event is parked, so the last arrival is an emitter's (it
			// sends the run), unless parking fails.
			_ = ps.arrive(context.Background(), -1, nil, nil)
		}
		if err := d.park(ctx, cs, em, ps, int32(i)); err != nil {
			ps.mu.Lock()
			ps.n--
			ps.pending--
			ps.dropped = true
			ps.mu.Unlock()
			// Not every event was parked: the claim is ending and the
			// record is read again from the committed offset.
			cs.forget(m.Offset)
			ps.ack(nil)
			if i < len(events)-1 {
				_ = ps.arrive(context.Background(), -1, nil, nil)
			}
			_ = ps.arrive(context.Background(), -2, nil, nil)
			return err
		}
	}
	ps.ack(nil)
	return nil
}

// ack counts one event's outcome (or the end of parking) and acknowledges
// the record's window entry at the first error or with the last outcome.
func (ps *packState) ack(err error) {
	ps.mu.Lock()
	ps.pending--
	nack := err != nil && !ps.failed && !ps.dropped
	last := ps.pending == 0 && !ps.failed && !ps.dropped
	if nack {
		ps.failed = true
	}
	ps.mu.Unlock()
	switch {
	case nack:
		ps.cs.ack(ps.off, err)
	case last:
		ps.cs.ack(ps.off, nil)
	}
}

// arrive hands event i's sealed record (nil: the event was abandoned; i
// -1: the reader's hold ends; -2: an event was never parked) to ordered
// emission; once every event has arrived the
// records leave together, in index order, in the record's turn.
func (ps *packState) arrive(ctx context.Context, i int, rec *sink.Record, out chan<- *sink.Record) error {
	if ps.recs == nil {
		return nil
	}
	ps.mu.Lock()
	if i >= 0 {
		ps.recs[i] = rec
	}
	ps.arrived--
	all := ps.arrived == 0
	ps.mu.Unlock()
	if !all {
		return nil
	}
	run := make([]*sink.Record, 0, len(ps.recs))
	for _, r := range ps.recs[:ps.n] {
		if r != nil {
			run = append(run, r)
		}
	}
	if len(run) > 0 && run[len(run)-1].Source != nil {
		// Exactly-once: the offset is committed with the last event only.
		for _, r := range run[:len(run)-1] {
			r.Source.Partial = true
		}
	}
	if out == nil {
		// The last arrival was an abandoned event, or an event that was
		// never parked: the claim is ending. Drop the others as a fenced
		// claim does, for redelivery.
		if len(run) > 0 {
			ps.cs.forget(ps.off)
			for _, r := range run {
				ps.cs.d.abandoned.Inc(1)
				r.Ack(errFenced)
			}
		}
		return nil
	}
	return ps.cs.emitOrdered(ctx, ps.off, run, out)
}

// emitPacked is emit's ordered hand-off for an event of a packed record.
func (j *job) emitPacked(ctx context.Context, rec *sink.Record, out chan<- *sink.Record) error {
	return j.pack.arrive(ctx, int(j.index), rec, out)
}

// abandoned tells j's packed record, if any, that j was dropped unemitted.
func (j *job) abandoned() {
	if j.pack != nil {
		_ = j.pack.arrive(context.Background(), int(j.index), nil, nil)
	}
}

// ackOffset acknowledges j's input record: its window entry, or, for an
// event of a packed record, its share of the record's.
func (j *job) ackOffset(err error) {
	if j.pack == nil {
		j.cs.ack(j.msg.Offset, err)
		return
	}
	j.pack.ack(err)
}

// provenance returns the provenance headers of j's output: its input
// record, and its index if it came packed.
func (j *job) provenance() []sarama.RecordHeader {
	h := provenance(j.msg, j.cs.topicB)
	if j.pack != nil && j.pack.bad == nil {
		h = append(h, sarama.RecordHeader{Key: hdrIndex, Value: strconv.AppendInt(nil, int64(j.index), 10)})
	}
	return h
}

// forget drops off's window entry without acknowledging it: it holds the
// watermark, as a nack does, but neither counts as one nor ends the claim
// (which is ending already). Its slot is freed.
func (cs *claimState) forget(off int64) {
	cs.mu.Lock()
	if cs.fenced {
		cs.mu.Unlock()
		return
	}
	before := cs.w.inFlight()
	cs.w.ack(off, false)
	freed := before - cs.w.inFlight()
	cs.mu.Unlock()
	if freed > 0 {
		cs.slots.Release(int64(freed))
	}
	select {
	case cs.changed <- struct{}{}:
	default:
	}
}
