package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
)

// Headers of a record read by a source that can resume (jetstream, sse).
const (
	// HeaderCursor is the event's own cursor at its publisher: Jetstream's
	// time_us in decimal, the SSE id as sent.
	HeaderCursor = "bend-cursor"
	// HeaderSource names the source instance that read the event
	// (ingest.<source>.instance).
	HeaderSource = "bend-source"
	// HeaderResume is "<micros> <cursor>": when the record was sent (Unix
	// microseconds), and the cursor of the newest event such that it and
	// every event the source read before it had been acknowledged by Kafka
	// (or deliberately not written) at that moment. Resuming the publisher
	// after that cursor loses nothing. Absent before the first such event.
	HeaderResume = "bend-resume"
)

var (
	headerCursor = []byte(HeaderCursor)
	headerSource = []byte(HeaderSource)
	headerResume = []byte(HeaderResume)
)

// ResumeConfig is how a source resumes its publisher after a restart: keys
// ingest.<source>.instance, .resume, .resume_scan, .dedup_window.
type ResumeConfig struct {
	// Instance names this source in the bend-source header of its
	// records; on start it resumes from the newest acknowledged cursor of
	// records carrying its name. Two sources reading different streams
	// into one topic must have different names. Default the source's name
	// ("jetstream", "sse").
	Instance string `mapstructure:"instance"`
	// Resume looks up, on start, the newest acknowledged cursor of this
	// instance in the input topic and resumes the publisher from there.
	// Default true.
	Resume bool `mapstructure:"resume"`
	// ResumeScan is how many records, at most, are read from the end of
	// each input partition to find the cursor (and the recent ids to drop
	// as duplicates). Default 20000.
	ResumeScan int `mapstructure:"resume_scan"`
	// DedupWindow is how many recent cursors are remembered to drop an
	// event read twice (the overlap of a resume, seeded from the scanned
	// records); 0 keeps every duplicate. Default 100000.
	DedupWindow int `mapstructure:"dedup_window"`
}

func (c ResumeConfig) validate(prefix string) error {
	var errs []error
	if c.Instance == "" {
		errs = append(errs, fmt.Errorf("%s.instance: must not be empty", prefix))
	}
	if c.ResumeScan < 1 {
		errs = append(errs, fmt.Errorf("%s.resume_scan: must be positive, got %d", prefix, c.ResumeScan))
	}
	if c.DedupWindow < 0 {
		errs = append(errs, fmt.Errorf("%s.dedup_window: must not be negative, got %d", prefix, c.DedupWindow))
	}
	return errors.Join(errs...)
}

// scanQuiet ends the scan of a partition that delivers nothing for this
// long before its end offset (its last offsets are transaction markers).
const scanQuiet = 5 * time.Second

// resumePoint is what the scan of the input topic found for one instance.
type resumePoint struct {
	cursor []byte   // nil: nothing found
	at     int64    // when the record holding it was sent, Unix microseconds
	seen   [][]byte // cursors of the instance's records scanned, oldest first per partition
}

// findResume reads the last scan records of every partition of topic and
// returns the newest resume cursor written by instance, with the cursors of
// the records scanned.
func findResume(ctx context.Context, brokers []string, sc *sarama.Config, topic, instance string, scan int) (resumePoint, error) {
	var rp resumePoint
	c, err := sarama.NewClient(brokers, sc)
	if err != nil {
		return rp, err
	}
	defer c.Close()
	parts, err := c.Partitions(topic)
	if err != nil {
		return rp, fmt.Errorf("partitions of %s: %w", topic, err)
	}
	cons, err := sarama.NewConsumerFromClient(c)
	if err != nil {
		return rp, err
	}
	defer cons.Close()
	for _, p := range parts {
		newest, err := c.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return rp, fmt.Errorf("end of %s/%d: %w", topic, p, err)
		}
		oldest, err := c.GetOffset(topic, p, sarama.OffsetOldest)
		if err != nil {
			return rp, fmt.Errorf("start of %s/%d: %w", topic, p, err)
		}
		from := max(oldest, newest-int64(scan))
		if from >= newest {
			continue
		}
		pc, err := cons.ConsumePartition(topic, p, from)
		if err != nil {
			return rp, fmt.Errorf("reading %s/%d: %w", topic, p, err)
		}
		err = func() error {
			defer pc.Close()
			quiet := time.NewTimer(scanQuiet)
			defer quiet.Stop()
			for {
				select {
				case m := <-pc.Messages():
					scanRecord(&rp, m.Headers, instance)
					if m.Offset >= newest-1 {
						return nil
					}
					quiet.Reset(scanQuiet)
				case e := <-pc.Errors():
					return e
				case <-quiet.C:
					// A transaction marker ends the partition: stop here.
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}()
		if err != nil {
			return rp, err
		}
	}
	return rp, nil
}

// scanRecord adds the headers of one scanned record to rp if instance wrote it.
func scanRecord(rp *resumePoint, hs []*sarama.RecordHeader, instance string) {
	var cur, res []byte
	mine := false
	for _, h := range hs {
		switch {
		case bytes.Equal(h.Key, headerSource):
			mine = string(h.Value) == instance
		case bytes.Equal(h.Key, headerCursor):
			cur = h.Value
		case bytes.Equal(h.Key, headerResume):
			res = h.Value
		}
	}
	if !mine {
		return
	}
	if cur != nil {
		rp.seen = append(rp.seen, bytes.Clone(cur))
	}
	at, c, ok := parseResume(res)
	if ok && (rp.cursor == nil || at > rp.at) {
		rp.at, rp.cursor = at, bytes.Clone(c)
	}
}

// parseResume splits a bend-resume header value.
func parseResume(v []byte) (at int64, cursor []byte, ok bool) {
	i := bytes.IndexByte(v, ' ')
	if i < 1 {
		return 0, nil, false
	}
	at, err := strconv.ParseInt(string(v[:i]), 10, 64)
	if err != nil {
		return 0, nil, false
	}
	return at, v[i+1:], true
}

// watermark tracks the events of a source in the order read and knows the
// newest cursor up to which every event has been acknowledged (or settled
// without a record). Its queue holds only unsettled events, so it is
// bounded by ingest's window. Safe for concurrent use.
type watermark struct {
	mu      sync.Mutex
	next    uint64   // sequence number of the next event
	head    uint64   // sequence number of pending[0]
	pending []wmItem // unsettled events and settled ones behind them, oldest first
	low     []byte   // newest cursor with everything up to it settled
}

type wmItem struct {
	cursor  []byte
	settled bool
}

// add registers the next event read, with its cursor, and returns the
// function that settles it (to be called exactly once).
func (w *watermark) add(cursor []byte) func() {
	w.mu.Lock()
	seq := w.next
	w.next++
	w.pending = append(w.pending, wmItem{cursor: cursor})
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.pending[seq-w.head].settled = true
		n := 0
		for n < len(w.pending) && w.pending[n].settled {
			if c := w.pending[n].cursor; c != nil { // an event without a cursor cannot move the resume point
				w.low = c
			}
			n++
		}
		if n > 0 {
			w.pending = append(w.pending[:0], w.pending[n:]...)
			w.head += uint64(n)
		}
	}
}

// resume returns the value of the bend-resume header now, or nil.
func (w *watermark) resume(now time.Time) []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.low == nil {
		return nil
	}
	v := strconv.AppendInt(nil, now.UnixMicro(), 10)
	v = append(v, ' ')
	return append(v, w.low...)
}

// set makes cursor the watermark (the resume point found at start-up).
func (w *watermark) set(cursor []byte) {
	w.mu.Lock()
	w.low = cursor
	w.mu.Unlock()
}

// dedup remembers the last n cursors seen, to drop an event read twice.
// Not safe for concurrent use; the zero value (n 0) remembers nothing.
type dedup struct {
	n    int
	ring []string
	at   int
	set  map[string]struct{}
}

func newDedup(n int) *dedup {
	return &dedup{n: n, set: make(map[string]struct{}, n)}
}

// seen reports whether c was seen among the last n cursors, and remembers it.
func (d *dedup) seen(c []byte) bool {
	if d.n == 0 {
		return false
	}
	if _, ok := d.set[string(c)]; ok {
		return true
	}
	s := string(c)
	if len(d.ring) < d.n {
		d.ring = append(d.ring, s)
	} else {
		delete(d.set, d.ring[d.at])
		d.ring[d.at] = s
		d.at = (d.at + 1) % d.n
	}
	d.set[s] = struct{}{}
	return false
}

// resumer is what a resumable source shares with ingest: its instance name,
// watermark, duplicate filter and metrics.
type resumer struct {
	cfg  ResumeConfig
	name []byte
	wm   watermark
	dup  *dedup
	log  logrus.FieldLogger

	duplicates, gaps metrics.Counter
}

// newResumer builds the resume state of a source whose duplicates and
// gaps count in the metrics so named.
func (in *Ingest) newResumer(cfg ResumeConfig, log logrus.FieldLogger, duplicates, gaps string) *resumer {
	return &resumer{cfg: cfg, name: []byte(cfg.Instance), dup: newDedup(cfg.DedupWindow), log: log,
		duplicates: metrics.GetOrRegisterCounter(duplicates, in.reg),
		gaps:       metrics.GetOrRegisterCounter(gaps, in.reg),
	}
}

// start finds the resume point in Kafka (if resume is on) and seeds the
// duplicate filter. It returns the cursor to resume after, or nil.
func (r *resumer) start(ctx context.Context, in *Ingest) ([]byte, error) {
	if !r.cfg.Resume || in.brokers == nil {
		return nil, nil
	}
	rp, err := findResume(ctx, in.brokers, in.sc, in.topic, r.cfg.Instance, r.cfg.ResumeScan)
	if err != nil {
		return nil, fmt.Errorf("finding the resume cursor in %s: %w", in.topic, err)
	}
	for _, c := range rp.seen {
		r.dup.seen(c)
	}
	if rp.cursor == nil {
		r.log.WithField("scanned", len(rp.seen)).Info("no resume cursor in the input topic; starting from the live stream")
		return nil, nil
	}
	r.wm.set(rp.cursor)
	r.log.WithFields(logrus.Fields{"cursor": string(rp.cursor), "scanned": len(rp.seen)}).Info("resuming the publisher")
	return rp.cursor, nil
}

// gap logs and counts events the publisher could not replay.
func (r *resumer) gap(format string, args ...any) {
	r.gaps.Inc(1)
	r.log.Warnf("gap in the stream: "+format, args...)
}

// publishEvent checks ev (one event of the source, read with cursor) and
// sends it, with the cursor headers, to the topic, or its dead letter; a
// duplicate of a recent cursor is counted and dropped. It blocks while
// ingest's buffer is full and fails only when ctx ends.
func (f *feeder) publishEvent(ctx context.Context, r *resumer, ev, cursor []byte, n int) error {
	if cursor != nil && r.dup.seen(cursor) {
		r.duplicates.Inc(1)
		return nil
	}
	settle := r.wm.add(cursor)
	done := func(error) { settle() }
	chk := f.check
	if chk == nil {
		chk = &f.in.check
	}
	ev = bytes.Clone(ev)
	v, reason := chk.verdict(ev)
	if reason != nil {
		f.rejected(n, reason)
		return f.reject(ctx, ev, n, reason, settle)
	}
	if chk.drops(v) {
		settle()
		return nil
	}
	size := int64(len(ev))
	if err := f.in.reserve(ctx, 1, size); err != nil {
		return err
	}
	m := f.in.record(f.m, chk, v, ev)
	m.Headers = append(m.Headers, sarama.RecordHeader{Key: headerSource, Value: r.name})
	if cursor != nil {
		m.Headers = append(m.Headers, sarama.RecordHeader{Key: headerCursor, Value: cursor})
	}
	if res := r.wm.resume(time.Now()); res != nil {
		m.Headers = append(m.Headers, sarama.RecordHeader{Key: headerResume, Value: res})
	}
	return f.in.send(ctx, m, size, f.m, false, done)
}

// publishRejected is publishEvent for an event known to be invalid (ev is
// what the dead letter keeps of it).
func (f *feeder) publishRejected(ctx context.Context, r *resumer, ev, cursor []byte, n int, reason error) error {
	if cursor != nil && r.dup.seen(cursor) {
		r.duplicates.Inc(1)
		return nil
	}
	return f.reject(ctx, bytes.Clone(ev), n, reason, r.wm.add(cursor))
}

// reject dead-letters (or counts) an invalid event and settles it in the
// watermark once that is done.
func (f *feeder) reject(ctx context.Context, ev []byte, n int, reason error, settle func()) error {
	sent, err := f.in.rejectEvent(ctx, f.m, ev, n, reason, func(error) { settle() })
	if !sent && err == nil {
		settle()
	}
	return err
}
