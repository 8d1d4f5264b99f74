package distributor

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
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
	fields activity.Fields
	item   *delayqueue.Item[*job]
	weight int64 // bytes taken from distributor.memory_budget (budget.go)

	mu       sync.Mutex
	sealed   bool // emitted: later results are late
	results  []result
	pending  int // enrichments not final
	required int // required enrichments not final
	// deadLetter, when set, is why the job goes to the dead-letter topic.
	deadLetter string
	rec        *sink.Record // prebuilt record for invalid input
}

// report returns the callback through which workers deliver the job's
// enrichment attempts. stop ends pending retry hand-offs.
func (j *job) report(d *Distributor, stop <-chan struct{}) func(*enrich.Task, json.RawMessage, error) {
	return func(t *enrich.Task, res json.RawMessage, err error) {
		spec := d.enrichers[t.Enricher].Spec
		j.mu.Lock()
		if j.sealed {
			j.mu.Unlock()
			d.late.Inc(1)
			return
		}
		r := &j.results[t.Enricher]
		if r.status != statusPending {
			j.mu.Unlock() // a duplicate delivery of a final result
			return
		}
		r.attempts = t.Attempt
		switch {
		case err == nil:
			r.status, r.value = statusOK, res
		case t.Attempt < spec.MaxAttempts:
			r.err = err
			j.mu.Unlock()
			d.retries.Inc(1)
			d.retry(t, spec, stop)
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

// retry queues the task's next attempt after its backoff.
func (d *Distributor) retry(t *enrich.Task, spec enrich.Spec, stop <-chan struct{}) {
	backoff := spec.Backoff << min(t.Attempt-1, 16)
	backoff = min(backoff, 10*time.Second)
	next := *t
	next.Attempt++
	time.AfterFunc(backoff, func() {
		select {
		case d.work <- &next:
		case <-stop:
		}
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
			if r.err != nil {
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
		Headers:   provenance(j.msg),
		Timestamp: j.msg.Timestamp,
		Ack:       j.ackFunc(d),
		Source:    j.source(),
	}, true
}

// deadLetterRecord builds the dead-letter record: the original bytes, with
// the reason and provenance in headers.
func (j *job) deadLetterRecord(d *Distributor, reason string) *sink.Record {
	d.deadLetters.Inc(1)
	h := append(provenance(j.msg),
		sarama.RecordHeader{Key: []byte("bend-dlq-reason"), Value: []byte(reason)},
		sarama.RecordHeader{Key: []byte("bend-dlq-stage"), Value: []byte("distributor")},
		sarama.RecordHeader{Key: []byte("bend-dlq-time"), Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
	)
	return &sink.Record{Key: j.msg.Key, Value: j.msg.Value, Headers: h, Timestamp: j.msg.Timestamp, DeadLetter: true, Ack: j.ackFunc(d), Source: j.source()}
}

// source names the input record, for sinks that commit offsets themselves.
func (j *job) source() *sink.Source {
	return &sink.Source{Topic: j.msg.Topic, Partition: j.msg.Partition, Offset: j.msg.Offset, Group: j.cs.group}
}

// ackFunc returns the sink acknowledgement of this job: it frees the job's
// delay-queue capacity and marks its offset.
func (j *job) ackFunc(d *Distributor) func(error) {
	return func(err error) {
		d.dq.Release(j.item)
		d.inflight.Dec(1)
		d.budget.release(j.weight)
		j.cs.ack(j.msg.Offset, err)
	}
}
