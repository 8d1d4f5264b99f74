package distributor

import (
	"context"
	"encoding/json"
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
	"github.com/bendstream/bend/sink"
)

// result is the state of one enrichment of a job.
type result struct {
	status   uint8
	value    json.RawMessage
	err      error
	attempts int
}

const (
	statusPending uint8 = iota
	statusOK
	statusFailed
)

// job is one activity in flight: parked in the delay queue while its
// enrichment tasks run, then emitted, then acknowledged.
type job struct {
	msg    *sarama.ConsumerMessage
	cs     *claimState
	read   time.Time
	due    time.Time // read + distributor.delay at read time
	fields activity.Fields
	item   *delayqueue.Item[*job]
	weight int64      // bytes taken from distributor.memory_budget (budget.go)
	pack   *packState // the packed record holding this event, or nil (pack.go)
	index  int32      // the event's index in pack

	mu       sync.Mutex
	sealed   bool // emitted: later results are late
	results  []result
	resBuf   [2]result // results' storage for up to two enrichers
	pending  int       // enrichments not final
	required int       // required enrichments not final
	// deadLetter, when set, is why the job goes to the dead-letter topic.
	deadLetter string
	rec        *sink.Record // prebuilt record for invalid input
	acked      atomic.Bool  // the sink's acknowledgement arrived
}

// settle records a successful first attempt of optional enrichment i, run
// inline, and reports whether that completed the job.
func (j *job) settle(i int, res json.RawMessage) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	r := &j.results[i]
	if j.sealed || r.status != statusPending {
		return false
	}
	r.status, r.value, r.attempts = statusOK, res, 1
	j.pending--
	return j.pending == 0
}

// report returns the callback through which workers deliver the job's
// enrichment attempts. ctx is the claim's: when it ends, pending retry
// hand-offs give up.
func (j *job) report(ctx context.Context, d *Distributor) func(*enrich.Task, json.RawMessage, error) {
	return func(t *enrich.Task, res json.RawMessage, err error) {
		// Not run: stale (nothing to record), or dropped before its
		// attempt (overloaded, deadline): final, never retried.
		unrun := errors.Is(err, enrich.ErrOverloaded) || errors.Is(err, enrich.ErrDeadline) || errors.Is(err, enrich.ErrClosed)
		if errors.Is(err, enrich.ErrStale) {
			return
		}
		if errors.Is(err, enrich.ErrOverloaded) {
			d.overloaded.Inc(1)
		}
		spec := d.enrichers[t.Enricher].Spec
		j.mu.Lock()
		if j.sealed {
			j.mu.Unlock()
			// An attempt that ran and reported after its activity left
			// (an expired lease carries no result).
			if !unrun && !errors.Is(err, enrich.ErrLeaseExpired) {
				d.late.Inc(1)
			}
			return
		}
		r := &j.results[t.Enricher]
		if r.status != statusPending {
			j.mu.Unlock() // a duplicate delivery of a final result
			return
		}
		if !unrun {
			r.attempts = t.Attempt
		}
		switch {
		case err == nil:
			r.status, r.value = statusOK, res
		case !unrun && !errors.Is(err, enrich.ErrCut) && t.Attempt < spec.MaxAttempts &&
			(spec.Required || time.Now().Add(backoff(t, spec)).Before(j.resultDeadline())):
			// An optional enrichment is retried only if the retry can
			// start before its activity's deadline.
			r.err = err
			j.mu.Unlock()
			d.retries.Inc(1)
			d.retry(ctx, j, t, spec)
			return
		default:
			r.status, r.err = statusFailed, err
			if spec.Required && j.deadLetter == "" {
				j.deadLetter = fmt.Sprintf("required enrichment %s failed after %d attempts: %v", spec.Name, t.Attempt, err)
			}
		}
		j.pending--
		if spec.Required {
			j.required--
		}
		done := j.pending == 0
		j.mu.Unlock()
		if done {
			d.dq.Complete(j.item)
		}
	}
}

// resultGuard is how long before its activity's due time an optional
// enrichment's attempt must have reported (Task.Deadline): the time an
// attempt cut at its deadline takes to report, so that its report, like
// every answer, arrives before the emitter seals the activity. At most a
// tenth of the delay.
const resultGuard = 25 * time.Millisecond

// resultDeadline is the Deadline of the job's optional tasks: a little
// before it is due (resultGuard).
func (j *job) resultDeadline() time.Time {
	return j.due.Add(-min(resultGuard, j.due.Sub(j.read)/10))
}

// backoff is the wait before the attempt after t: spec.Backoff doubled per
// attempt made, capped at 10s.
func backoff(t *enrich.Task, spec enrich.Spec) time.Duration {
	return min(spec.Backoff<<min(t.Attempt-1, 16), 10*time.Second)
}

// stale reports whether the job has left: emitted, or its claim fenced (it
// is then abandoned). Workers drop its tasks unrun.
func (j *job) stale() bool {
	j.mu.Lock()
	sealed := j.sealed
	j.mu.Unlock()
	return sealed || j.cs.isFenced()
}

// retry queues the task's next attempt after its backoff, unless by then
// the job's claim was fenced or the job emitted: such a retry is dropped and
// counted in distributor.retries_dropped. A required retry waits for room
// in its lane (until ctx ends); an optional one is offered, with its
// activity's deadline.
func (d *Distributor) retry(ctx context.Context, j *job, t *enrich.Task, spec enrich.Spec) {
	next := *t
	next.Attempt++
	time.AfterFunc(backoff(t, spec), func() {
		j.mu.Lock()
		gone := j.sealed
		j.mu.Unlock()
		if gone || j.cs.isFenced() {
			d.retriesDropped.Inc(1)
			return
		}
		if !spec.Required {
			next.Deadline = j.resultDeadline()
			d.work.Offer(&next)
			return
		}
		_ = d.work.Push(ctx, &next) // fails only when the claim ends: the job is abandoned
	})
}

// seal decides what leaves the delay queue for this job. It returns
// ready=false while a required enrichment is still being attempted: the job
// is then parked again.
func (j *job) seal(d *Distributor) (*sink.Record, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.rec != nil {
		j.sealed = true
		return j.rec, true
	}
	if j.required > 0 {
		return nil, false
	}
	j.sealed = true
	if j.deadLetter != "" {
		return j.deadLetterRecord(d, j.deadLetter), true
	}
	enr := make([]byte, 0, 256)
	enr = append(enr, '{')
	for i, r := range j.results {
		if i > 0 {
			enr = append(enr, ',')
		}
		enr = strconv.AppendQuote(enr, d.enrichers[i].Name)
		enr = append(enr, ':')
		switch r.status {
		case statusOK:
			enr = append(enr, `{"status":"ok","value":`...)
			enr = append(enr, r.value...)
			enr = append(enr, '}')
		default:
			d.missing.Inc(1)
			reason := "deadline"
			switch {
			case errors.Is(r.err, enrich.ErrOverloaded):
				reason = "overloaded"
			case errors.Is(r.err, enrich.ErrDeadline), errors.Is(r.err, enrich.ErrCut):
				reason = "deadline"
			case r.err != nil:
				reason = r.err.Error()
			}
			enr = append(enr, `{"status":"missing","reason":`...)
			enr = strconv.AppendQuote(enr, reason)
			enr = append(enr, `,"attempts":`...)
			enr = strconv.AppendInt(enr, int64(r.attempts), 10)
			enr = append(enr, '}')
		}
	}
	enr = append(enr, '}')
	return &sink.Record{
		Key:       j.msg.Key,
		Value:     activity.WithEnrichments(j.msg.Value, enr),
		Headers:   j.provenance(),
		Timestamp: j.msg.Timestamp,
		Ack:       j.ackFunc(d),
		Source:    j.source(),
	}, true
}

// deadLetterRecord builds the dead-letter record: the original bytes, with
// the reason and provenance in headers.
func (j *job) deadLetterRecord(d *Distributor, reason string) *sink.Record {
	d.deadLetters.Inc(1)
	h := append(j.provenance(),
		sarama.RecordHeader{Key: hdrDLQReason, Value: []byte(reason)},
		sarama.RecordHeader{Key: hdrDLQStage, Value: hdrDistributor},
		sarama.RecordHeader{Key: hdrDLQTime, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
	)
	return &sink.Record{Key: j.msg.Key, Value: j.msg.Value, Headers: h, Timestamp: j.msg.Timestamp, DeadLetter: true, Ack: j.ackFunc(d), Source: j.source()}
}

// source names the input record, for sinks that commit offsets themselves
// (exactly-once mode, where the distributor's commit is external); nil
// otherwise, saving an allocation per record.
func (j *job) source() *sink.Source {
	if !j.cs.d.cfg.ExternalCommit {
		return nil
	}
	return &sink.Source{Topic: j.msg.Topic, Partition: j.msg.Partition, Offset: j.msg.Offset, Group: j.cs.group}
}

// ackFunc returns the sink acknowledgement of this job: it frees the job's
// delay-queue capacity and marks its offset. Only the first call counts; a
// later one is ignored and counted in distributor.double_acks.
func (j *job) ackFunc(d *Distributor) func(error) {
	return func(err error) {
		if !j.acked.CompareAndSwap(false, true) {
			d.doubleAcks.Inc(1)
			return
		}
		d.dq.Release(j.item)
		d.inflight.Dec(1)
		d.budget.release(j.weight)
		j.ackOffset(err)
	}
}
