package distributor

import (
	"context"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/pack"
)

// A packed input record (internal/pack) is one batch (batch.go): its events
// are jobs of their own (each with its enrichments and its output record),
// parked together as one delay-queue item weighing all of them, while the
// record holds one entry and one slot of its partition's window. The entry
// is acknowledged once every event is: with nil when all were, or at the
// first event's nack (the record, and so every event in it, is then read
// again: the events already emitted are emitted twice). In ordered mode the
// events leave together, in index order, in the record's turn.

var hdrIndex = []byte(pack.HeaderIndex)

// packFramed reports whether m is a packed record, with its event count and
// whether its framing headers are malformed.
func packFramed(m *sarama.ConsumerMessage) (n int, packed bool, err error) {
	return pack.Framed(m.Headers)
}

// handlePack parks the n events of the packed record m (ferr: its headers
// are malformed) as one batch after taking one window slot for it. It
// blocks as handle does.
func (d *Distributor) handlePack(ctx context.Context, cs *claimState, m *sarama.ConsumerMessage, n int, ferr error) error {
	if err := cs.acquire(ctx, 1); err != nil {
		return err
	}
	var events [][]byte
	if ferr == nil {
		events, ferr = pack.Split(make([][]byte, 0, n), m.Value, n)
	}
	if ferr != nil {
		events = [][]byte{m.Value}
	}
	// The events keep the record's headers but its framing ones.
	var hs []*sarama.RecordHeader
	if ferr == nil {
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
	ptrs := make([]*sarama.ConsumerMessage, len(events))
	for i, ev := range events {
		em := &msgs[i]
		*em = *m
		em.Value, em.Headers = ev, hs
		ptrs[i] = em
	}
	return d.parkBatch(ctx, cs, ptrs, &packInfo{off: m.Offset, bad: ferr})
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
