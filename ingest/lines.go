package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bendstream/bend/internal/ndjson"
	"github.com/sirupsen/logrus"
)

// feeder turns the lines of one stream or file into records: valid events
// to the topic, invalid ones to the dead-letter topic or nowhere, per
// ingest.on_invalid. One feeder serves one goroutine.
type feeder struct {
	in    *Ingest
	m     *sourceMetrics
	log   logrus.FieldLogger
	quiet logEvery // rejections logged at most once per rejectLogEvery
	// check holds the source's rules and format (see formatChecker); nil
	// means the Ingest's own (the bend format, no format header).
	check *checker
}

// rejectLogEvery spaces the log lines about rejected events of a source.
const rejectLogEvery = 5 * time.Second

// feed handles one result of ndjson.Reader.Next: a line numbered n, or the
// overlong line error lerr (line then holds its prefix). a, if not nil,
// collects the acknowledgements of the records sent. feed blocks while
// ingest's buffer is full, and returns an error only when ctx ends.
func (f *feeder) feed(ctx context.Context, line []byte, n int, lerr error, a *acks) error {
	reason := lerr
	if le := (*ndjson.LineError)(nil); errors.As(lerr, &le) {
		reason = fmt.Errorf("%w: line of %d bytes, over the limit of %d (ingest.max_event_bytes)", errTooLarge, le.Size, f.in.cfg.MaxEventBytes)
	}
	chk := f.check
	if chk == nil {
		chk = &f.in.check
	}
	var v verdict
	if reason == nil {
		v, reason = chk.verdict(line)
	}
	if reason == nil && v.kind != "" && chk.format != nil {
		// A container of several events (a Reddit Listing): each is fed
		// on its own, as a slice of the line.
		if parts := chk.format.Split(line); parts != nil {
			for _, p := range parts {
				if err := f.feed(ctx, p, n, nil, a); err != nil {
					return err
				}
			}
			return nil
		}
	}
	var done func(error)
	if a != nil {
		done = a.add()
	}
	// The reader reuses line's array; the producer keeps the value until
	// Kafka acknowledges it.
	var sent bool
	var err error
	if reason == nil {
		sent, err = f.in.publishChecked(ctx, f.m, chk, v, bytes.Clone(line), done)
	} else {
		f.rejected(n, reason)
		if errors.Is(reason, errTooLarge) {
			line = line[:min(len(line), deadLetterPrefix)]
		}
		sent, err = f.in.rejectEvent(ctx, f.m, bytes.Clone(line), n, reason, done)
	}
	if !sent && a != nil {
		a.cancel()
	}
	return err
}

// rejected logs an invalid line, at most once per rejectLogEvery.
func (f *feeder) rejected(n int, reason error) {
	if skipped, ok := f.quiet.allow(time.Now(), rejectLogEvery); ok {
		f.log.WithFields(logrus.Fields{"line": n, "reason": quoteReason(reason), "unlogged_since": skipped}).
			Warnf("invalid event (%s)", f.in.cfg.OnInvalid)
	}
}

// logEvery rate-limits a log line. The zero value is ready; not safe for
// concurrent use.
type logEvery struct {
	next    time.Time
	skipped int
}

// allow reports whether to log at now; if so it also returns how many
// calls were refused since the last allowed one.
func (l *logEvery) allow(now time.Time, every time.Duration) (skipped int, ok bool) {
	if now.Before(l.next) {
		l.skipped++
		return 0, false
	}
	skipped, l.skipped, l.next = l.skipped, 0, now.Add(every)
	return skipped, true
}
