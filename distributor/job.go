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

// job is one activity in flight, one record of its batch: parked (with the
// batch) in the delay queue while its enrichment tasks run, then sealed
// into its output record, then acknowledged.
type job struct {
	msg    *sarama.ConsumerMessage
	b      *batch
	index  int32 // in b.jobs and b.recs
	hdrs   []sarama.RecordHeader
	fields activity.Fields

	mu       sync.Mutex
	sealed   bool // emitted: later results are late
	results  []result
	resBuf   [2]result // results' storage for up to two enrichers
	pending  int       // enrichments not final
	required int       // required enrichments not final
	// deadLetter, when set, is why the job goes to the dead-letter topic.
	deadLetter string
	prebuilt   bool        // b.recs[index] was built at read time (invalid input, non-activity)
	acked      atomic.Bool // the sink's acknowledgement arrived

	// sent is emitter state, under b.mu: handed to the sink, or dropped.
	// (sealed, set only by the emitter holding b.mu, may be read there
	// without mu.)
	sent bool
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
			(spec.Required || time.Now().Add(backoff(t, spec)).Before(j.b.resultDeadline())):
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
			j.b.jobDone(d)
		}
	}
}

// resultGuard is how long before its activity's due time an optional
// enrichment's attempt must have reported (Task.Deadline): the time an
// attempt cut at its deadline takes to report, so that its report, like
// every answer, arrives before the emitter seals the activity. At most a
// tenth of the delay.
const resultGuard = 25 * time.Millisecond

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
	return sealed || j.b.cs.isFenced()
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
		if gone || j.b.cs.isFenced() {
			d.retriesDropped.Inc(1)
			return
		}
		if !spec.Required {
			next.Deadline = j.b.resultDeadline()
			d.work.Offer(&next)
			return
		}
		_ = d.work.Push(ctx, &next) // fails only when the claim ends: the job is abandoned
	})
}

// seal decides what leaves the delay queue for this job: it builds the
// job's output record in its batch's storage. It returns ready=false while
// a required enrichment is still being attempted: the job is then parked
// again. scratch is the emitter's buffer for the enrichments' JSON.
func (j *job) seal(d *Distributor, scratch *[]byte) (*sink.Record, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	rec := &j.b.recs[j.index]
	if j.prebuilt {
		j.sealed = true
		return rec, true
	}
	if j.required > 0 {
		return nil, false
	}
	j.sealed = true
	if j.deadLetter != "" {
		j.deadLetterRecord(d, j.deadLetter)
		return rec, true
	}
	enr := append((*scratch)[:0], '{')
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
	*scratch = enr
	j.record(activity.WithEnrichments(j.msg.Value, enr), j.hdrs, false)
	return rec, true
}

// record fills the job's output record: its input's key and timestamp,
// value and headers, acknowledged through the batch.
func (j *job) record(value []byte, h []sarama.RecordHeader, deadLetter bool) {
	rec := &j.b.recs[j.index]
	*rec = sink.Record{Key: j.msg.Key, Value: value, Headers: h, Timestamp: j.msg.Timestamp, DeadLetter: deadLetter,
		Acker: j.b, Index: j.index, Source: j.source()}
}

// deadLetterRecord builds the dead-letter record: the original bytes, with
// the reason and provenance in headers.
func (j *job) deadLetterRecord(d *Distributor, reason string) {
	d.deadLetters.Inc(1)
	h := append(j.hdrs[:len(j.hdrs):len(j.hdrs)],
		sarama.RecordHeader{Key: hdrDLQReason, Value: []byte(reason)},
		sarama.RecordHeader{Key: hdrDLQStage, Value: hdrDistributor},
		sarama.RecordHeader{Key: hdrDLQTime, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
	)
	j.record(j.msg.Value, h, true)
}

// source names the input record, for sinks that commit offsets themselves
// (exactly-once mode, where the distributor's commit is external); nil
// otherwise.
func (j *job) source() *sink.Source {
	if j.b.srcs == nil {
		return nil
	}
	return &j.b.srcs[j.index]
}
