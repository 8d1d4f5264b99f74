package distributor

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/sink"
	"golang.org/x/sync/semaphore"
)

// claimState tracks one partition claim's in-flight records and moves its
// commit mark as the sink acknowledges them. Safe for concurrent use.
type claimState struct {
	d         *Distributor
	sess      sarama.ConsumerGroupSession
	claim     sarama.ConsumerGroupClaim
	topic     string
	topicB    []byte // topic, for the provenance header of every record
	partition int32
	slots     *semaphore.Weighted // caps the window (distributor.max_partition_in_flight)
	group     *sarama.ConsumerGroupMetadata
	// buf is the read loop's scratch for the records of a batch.
	buf []*sarama.ConsumerMessage
	// busy is set by the read loop from before it checks the replay gate
	// until handle returns (replay.go).
	busy atomic.Bool

	mu      sync.Mutex
	w       *window
	fenced  bool
	start   int64 // first offset read, -1 before
	changed chan struct{}
	// nacked is closed by the first nack of a record of this claim.
	nacked     chan struct{}
	nackClosed bool
	// abort cancels the claim's context at the first nack, so a handle
	// blocked on the full window (held by the nacked record) returns.
	abort context.CancelFunc

	// Ordered emission (distributor.ordered): records leave in offset order.
	omu     sync.Mutex
	order   []int64                  // window entries parked, in read order, not yet emitted
	ready   map[int64][]*sink.Record // sealed batches waiting for their turn, by window entry
	sending bool                     // an emitter is sending this claim's records
	dropped bool                     // fenced: nothing more is emitted
}

func newClaimState(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim, maxInFlight int64, d *Distributor) *claimState {
	return &claimState{d: d, sess: sess, claim: claim, topic: claim.Topic(), topicB: []byte(claim.Topic()), partition: claim.Partition(),
		slots: semaphore.NewWeighted(maxInFlight), w: newWindow(), start: -1, changed: make(chan struct{}, 1), nacked: make(chan struct{}),
		group: &sarama.ConsumerGroupMetadata{GroupID: d.cfg.Group, GenerationID: sess.GenerationID(), MemberID: sess.MemberID()}}
}

// acquire blocks until the partition's window has room for n records.
func (cs *claimState) acquire(ctx context.Context, n int64) error { return cs.slots.Acquire(ctx, n) }

// received notes that off was fetched, for lag before anything is acked.
func (cs *claimState) received(off int64) {
	cs.mu.Lock()
	if cs.start < 0 {
		cs.start = off
	}
	cs.mu.Unlock()
}

// addRange records that the batch from first to last (holding n of the
// window's slots), its first record written at ts, was parked and now
// awaits its acknowledgement.
func (cs *claimState) addRange(first, last int64, n int32, ts time.Time) {
	cs.mu.Lock()
	cs.w.addRange(first, last, n, ts.UnixNano())
	cs.mu.Unlock()
	if cs.d.cfg.Ordered {
		cs.omu.Lock()
		cs.order = append(cs.order, first)
		cs.omu.Unlock()
	}
}

// emitOrdered hands recs (the records of the batch whose window entry is
// off) to out once every batch read before it on this partition has been
// handed over. Emitters
// deposit their records; whichever finds the claim idle sends the
// contiguous run for all of them, so the order holds across emitters.
func (cs *claimState) emitOrdered(ctx context.Context, off int64, recs []*sink.Record, out chan<- *sink.Record) error {
	cs.omu.Lock()
	if cs.dropped {
		cs.omu.Unlock()
		for _, rec := range recs {
			cs.d.abandoned.Inc(1)
			rec.Settle(errFenced)
		}
		return nil
	}
	if cs.ready == nil {
		cs.ready = map[int64][]*sink.Record{}
	}
	cs.ready[off] = recs
	if cs.sending {
		cs.omu.Unlock()
		return nil
	}
	cs.sending = true
	for {
		var run []*sink.Record
		for len(cs.order) > 0 {
			r, ok := cs.ready[cs.order[0]]
			if !ok {
				break
			}
			delete(cs.ready, cs.order[0])
			cs.order = cs.order[1:]
			run = append(run, r...)
		}
		if len(run) == 0 {
			cs.sending = false
			cs.omu.Unlock()
			return nil
		}
		cs.omu.Unlock()
		for _, r := range run {
			select {
			case out <- r:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		cs.omu.Lock()
	}
}

// dropOrdered releases the records still waiting for their turn when the
// claim is fenced: they are redelivered from the committed offset.
func (cs *claimState) dropOrdered() {
	cs.omu.Lock()
	waiting := cs.ready
	cs.ready, cs.order, cs.dropped = nil, nil, true
	cs.omu.Unlock()
	for _, rs := range waiting {
		for _, r := range rs {
			cs.d.abandoned.Inc(1)
			r.Settle(errFenced)
		}
	}
}

// ack records the sink's outcome for off and marks the new commit offset.
// After fence it only counts the acknowledgement as fenced.
func (cs *claimState) ack(off int64, err error) {
	cs.mu.Lock()
	if cs.fenced {
		cs.mu.Unlock()
		cs.d.fenced.Inc(1)
		return
	}
	before := cs.w.inFlight()
	next, moved, _ := cs.w.ack(off, err == nil)
	freed := before - cs.w.inFlight()
	if moved && !cs.d.cfg.ExternalCommit {
		cs.sess.MarkOffset(cs.topic, cs.partition, next, "")
	}
	first := false
	if err != nil && !cs.nackClosed {
		cs.nackClosed, first = true, true
		close(cs.nacked)
		if cs.abort != nil {
			cs.abort()
		}
	}
	cs.mu.Unlock()
	if freed > 0 {
		cs.slots.Release(int64(freed))
	}
	// One line per claim: the first nack ends the claim, and the records
	// nacked after it (a failed transaction nacks all of its records) are
	// only counted in distributor.nacks.
	if first {
		cs.d.log.WithError(err).WithField("topic", cs.topic).WithField("partition", cs.partition).
			WithField("offset", off).Error("record not accepted by the sink; its offset will not be committed, the claim ends and the partition is read again from the committed offset (later nacks of this claim are counted in distributor.nacks)")
	}
	select {
	case cs.changed <- struct{}{}:
	default:
	}
}

// inFlight returns the records read and not yet passed by the watermark.
func (cs *claimState) inFlight() int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.w.inFlight()
}

// drain waits until every record read has its outcome and reports whether
// all were acknowledged (true). It gives up (false) when timeout passes or
// hard closes. A nacked record makes the result false, but the records still
// pending are waited for, so the commit covers as many as it can.
func (cs *claimState) drain(timeout time.Duration, hard <-chan struct{}) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		cs.mu.Lock()
		n, pending := cs.w.inFlight(), cs.w.pending
		cs.mu.Unlock()
		if n == 0 {
			return true
		}
		if pending == 0 {
			return false
		}
		select {
		case <-cs.changed:
		case <-t.C:
			return false
		case <-hard:
			return false
		}
	}
}

// fence stops the claim from marking offsets: acknowledgements that arrive
// later belong to records that will be redelivered.
func (cs *claimState) fence() {
	cs.mu.Lock()
	cs.fenced = true
	cs.mu.Unlock()
	cs.dropOrdered()
}

// errFenced nacks records of a claim that ended before they were emitted.
var errFenced = errors.New("distributor: claim ended before the record was emitted")

func (cs *claimState) isFenced() bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.fenced
}

// oldest returns the timestamp of the oldest record read and not yet
// passed by the watermark.
func (cs *claimState) oldest() (time.Time, bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	ts, ok := cs.w.oldest()
	return time.Unix(0, ts), ok
}

// watermark is the next offset to commit (-1 before the first ack).
func (cs *claimState) watermark() int64 {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.w.next
}

// lag is the number of records between the commit watermark and the
// partition's log end: the later of the log-end offset last read (see
// logEnds), which keeps moving while reading is held back, and the fetch
// high-water mark, which is fresher while reading keeps up. Neither is ever
// past the true log end.
func (cs *claimState) lag() int64 {
	fetched := cs.claim.HighWaterMarkOffset()
	hwm := max(cs.d.ends.end(topicPartition{cs.topic, cs.partition}, fetched), fetched)
	cs.mu.Lock()
	pos := cs.w.next
	if pos < 0 {
		pos = cs.start
	}
	if pos < 0 {
		pos = cs.claim.InitialOffset()
	}
	cs.mu.Unlock()
	if pos < 0 || hwm < pos {
		return 0
	}
	return hwm - pos
}

// position is where the claim would resume: its watermark, else the first
// offset read, else the offset it started at.
func (cs *claimState) position() int64 {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	switch {
	case cs.w.next >= 0:
		return cs.w.next
	case cs.start >= 0:
		return cs.start
	}
	return cs.claim.InitialOffset()
}
