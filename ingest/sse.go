package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/bendstream/bend/internal/activity"
	"github.com/bendstream/bend/internal/metricnames"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
)

// SSEConfig is the "ingest.sse" section of config.yaml: a Server-Sent
// Events client (Wikimedia EventStreams, Mastodon streaming) that resumes
// with Last-Event-ID from the id Kafka last acknowledged.
type SSEConfig struct {
	// Enabled runs the sse source. Default false.
	Enabled bool `mapstructure:"enabled"`
	// ConnConfig is the connection: keys ingest.sse.url (http or https,
	// such as https://stream.wikimedia.org/v2/stream/recentchange),
	// .token (a Mastodon access token; BEND_INGEST_SSE_TOKEN),
	// .token_file, .min_backoff (or the server's retry: when longer),
	// .max_backoff, .idle_timeout (comments count as data).
	ConnConfig `mapstructure:",squash"`
	// Events lists the event types kept (Wikimedia: message; Mastodon:
	// update, status.update, delete); other types are counted
	// (ingest.sse.skipped) and dropped. Empty keeps every type. Default
	// empty.
	Events []string `mapstructure:"events"`
	// LastEventID is sent as Last-Event-ID when there is nothing to resume
	// from; empty starts at the live stream. Default empty.
	LastEventID string `mapstructure:"last_event_id"`
	// ResumeConfig: keys ingest.sse.instance, .resume, .resume_scan,
	// .dedup_window. An SSE id is opaque: the stream resumes after the
	// last acknowledged id as it is, without rewind.
	ResumeConfig `mapstructure:",squash"`
	// FormatConfig is how the events are read: keys ingest.sse.format,
	// .fields, .non_activity, .non_activity_topic.
	activity.FormatConfig `mapstructure:",squash"`
}

func defaultSSEConfig() SSEConfig {
	return SSEConfig{ConnConfig: defaultConnConfig(), Events: []string{},
		ResumeConfig: ResumeConfig{Instance: "sse", Resume: true, ResumeScan: 20000, DedupWindow: 100000},
		FormatConfig: activity.DefaultFormatConfig(),
	}
}

func (c SSEConfig) validate() error {
	errs := c.ConnConfig.validate("ingest.sse", "http", "https")
	for i, e := range c.Events {
		if e == "" {
			errs = append(errs, fmt.Errorf("ingest.sse.events[%d]: empty event type", i))
		}
	}
	errs = append(errs, c.ResumeConfig.validate("ingest.sse"), c.FormatConfig.Validate("ingest.sse"))
	return errors.Join(errs...)
}

// sseSource reads an event stream. While ingest's buffer is full it stops
// reading, so the server sees TCP backpressure.
type sseSource struct {
	*conn
	cfg     SSEConfig
	client  *http.Client
	res     *resumer
	skipped metrics.Counter
}

func newSSESource(cfg SSEConfig, in *Ingest) (*sseSource, error) {
	c, err := in.newConn("sse", cfg.ConnConfig, cfg.FormatConfig, connNames{metricnames.IngestSSEConnects,
		metricnames.IngestSSEDisconn, metricnames.IngestSSEReconn, metricnames.IngestSSEConnErrs})
	if err != nil {
		return nil, err
	}
	return &sseSource{conn: c, cfg: cfg, client: c.httpClient(),
		res:     in.newResumer(cfg.ResumeConfig, c.log, metricnames.IngestSSEDuplicates, metricnames.IngestSSEGaps),
		skipped: metrics.GetOrRegisterCounter(metricnames.IngestSSESkipped, in.reg),
	}, nil
}

func (s *sseSource) Name() string { return "sse" }

// Run resumes after Kafka's newest acknowledged id, then connects, reads,
// and reconnects with backoff (Last-Event-ID: the last id read) until ctx
// ends; it returns nil then.
func (s *sseSource) Run(ctx context.Context, in *Ingest) error {
	defer s.client.CloseIdleConnections()
	last := []byte(s.cfg.LastEventID)
	resumed := false
	if c, err := s.res.start(ctx, in); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	} else if c != nil {
		last, resumed = c, true
	}
	f := s.feeder(in)
	var retry time.Duration // the server's retry:, 0 until it sends one
	for attempt := 0; ; attempt++ {
		read, id, r, err := s.session(ctx, f, last, resumed)
		if r > 0 {
			retry = r // the reconnection time lasts until the server sets another
		}
		if ctx.Err() != nil {
			return nil
		}
		if read > 0 {
			attempt = 0
		}
		if len(id) > 0 {
			last, resumed = id, true
		}
		if !s.pause(ctx, attempt, max(s.cfg.MinBackoff, retry), max(s.cfg.MaxBackoff, retry), "event stream ended; reconnecting", err) {
			return nil
		}
	}
}

// session reads one connection, sent with Last-Event-ID lastID, until it
// ends; it returns the number of events read, the last event ID, the
// server's retry time, and why it ended. checkGap: the connection resumes
// an id, whose replay is checked (see checkGap).
func (s *sseSource) session(ctx context.Context, f *feeder, lastID []byte, checkGap bool) (read int, id []byte, retry time.Duration, err error) {
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	h := http.Header{"Accept": {"text/event-stream"}, "Cache-Control": {"no-cache"}}
	if len(lastID) > 0 {
		h.Set("Last-Event-ID", string(lastID))
	}
	resp, err := s.get(cctx, s.client, s.cfg.URL, h)
	if err != nil {
		return 0, lastID, 0, err
	}
	defer resp.Body.Close()
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		s.connectErrors.Inc(1)
		return 0, lastID, 0, fmt.Errorf("server answered Content-Type %q, not text/event-stream", resp.Header.Get("Content-Type"))
	}
	defer s.connected("event stream connected", logrus.Fields{"last_event_id": string(lastID)})()

	idle := &idleReader{r: resp.Body, d: s.cfg.IdleTimeout, t: time.AfterFunc(time.Hour, func() { cancel(errIdle) })}
	idle.t.Stop()
	max := f.in.cfg.MaxEventBytes
	p := newSSEReader(&countingReader{r: idle, c: s.m.bytes}, max+len("data: "), max)
	p.setLastID(lastID)
	for {
		ev, err := p.Next()
		if err != nil {
			if cause := context.Cause(cctx); errors.Is(cause, errIdle) {
				err = errors.New("no data for ingest.sse.idle_timeout")
			} else if err == io.EOF {
				err = errors.New("the server ended the stream")
			}
			return read, p.lastID, p.Retry(), err
		}
		read++
		if checkGap && ev.HasID {
			checkGap = false
			s.checkGap(lastID, ev.ID)
		}
		if len(s.cfg.Events) > 0 && !slices.Contains(s.cfg.Events, ev.Type) {
			s.skipped.Inc(1)
			continue
		}
		var cur []byte
		if ev.HasID && len(ev.ID) > 0 {
			cur = ev.ID
		}
		if ev.TooLarge {
			reason := fmt.Errorf("%w: event data of %d bytes, over the limit of %d (ingest.max_event_bytes)", errTooLarge, ev.Size, max)
			f.rejected(read, reason)
			data := ev.Data[:min(len(ev.Data), deadLetterPrefix)]
			if err := f.publishRejected(ctx, s.res, data, cur, read, reason); err != nil {
				return read, p.lastID, p.Retry(), err
			}
			continue
		}
		if err := f.publishEvent(ctx, s.res, ev.Data, cur, read); err != nil {
			return read, p.lastID, p.Retry(), err
		}
	}
}

// checkGap compares the first id after a resume with the id asked for.
// What is detectable: when both are decimal integers (a sequence number)
// the first must be the next one; a later one is a gap (the server's
// replay window was exceeded, or it ignored Last-Event-ID). Other ids are
// opaque (Wikimedia's JSON arrays of partition offsets or timestamps): no
// gap can be seen in them.
func (s *sseSource) checkGap(asked, first []byte) {
	a, err1 := strconv.ParseUint(string(asked), 10, 64)
	b, err2 := strconv.ParseUint(string(first), 10, 64)
	if err1 != nil || err2 != nil {
		return
	}
	switch {
	case b > a+1:
		s.res.gap("resumed after id %d, the first event is %d: %d events the server did not replay", a, b, b-a-1)
	case b <= a:
		s.log.Warnf("resumed after id %d, the server replays from %d: it ignored Last-Event-ID (duplicates are dropped within ingest.sse.dedup_window)", a, b)
	}
}
