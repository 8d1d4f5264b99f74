package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/bendstream/bend/internal/activity"
	"github.com/bendstream/bend/internal/metricnames"
	"github.com/bendstream/bend/internal/ndjson"
	metrics "github.com/rcrowley/go-metrics"
)

// errIdle ends a stream connection on which nothing arrived for
// ingest.stream.idle_timeout.
var errIdle = errors.New("no data for ingest.stream.idle_timeout")

// StreamConfig is the "ingest.stream" section of config.yaml: a client that
// GETs a long-lived, chunked NDJSON response and reconnects when it ends.
type StreamConfig struct {
	// Enabled runs the stream source. Default false.
	Enabled bool `mapstructure:"enabled"`
	// ConnConfig is the connection: keys ingest.stream.url (http or
	// https), .token (BEND_INGEST_STREAM_TOKEN), .token_file,
	// .min_backoff, .max_backoff, .idle_timeout.
	ConnConfig `mapstructure:",squash"`
	// BackfillMinutes, when positive, adds backfillMinutes=N to the query
	// of every reconnection (not the first connection), so that a
	// PowerTrack-style server replays the N minutes before it (duplicates
	// included); 1 to 5 for PowerTrack. 0 turns it off. Default 0.
	BackfillMinutes int `mapstructure:"backfill_minutes"`
	// FormatConfig is how the events are read: keys ingest.stream.format,
	// ingest.stream.fields.*, ingest.stream.non_activity, ingest.stream.non_activity_topic.
	activity.FormatConfig `mapstructure:",squash"`
}

func defaultStreamConfig() StreamConfig {
	return StreamConfig{ConnConfig: defaultConnConfig(), FormatConfig: activity.DefaultFormatConfig()}
}

func (c StreamConfig) validate() error {
	errs := c.ConnConfig.validate("ingest.stream", "http", "https")
	if c.BackfillMinutes < 0 {
		errs = append(errs, fmt.Errorf("ingest.stream.backfill_minutes: must not be negative, got %d", c.BackfillMinutes))
	}
	errs = append(errs, c.FormatConfig.Validate("ingest.stream"))
	return errors.Join(errs...)
}

// streamSource reads a long-lived NDJSON response (chunked, or HTTP/2) and
// reconnects whenever it ends. While ingest's buffer is full it stops
// reading, so the server sees TCP backpressure. Events sent while it is
// disconnected are the server's business: a firehose has no replay.
type streamSource struct {
	*conn
	cfg    StreamConfig
	client *http.Client
}

func newStreamSource(cfg StreamConfig, in *Ingest) (*streamSource, error) {
	c, err := in.newConn("stream", cfg.ConnConfig, cfg.FormatConfig, connNames{metricnames.IngestStreamConnects,
		metricnames.IngestStreamDisconn, metricnames.IngestStreamReconn, metricnames.IngestStreamConnErrs})
	if err != nil {
		return nil, err
	}
	return &streamSource{conn: c, cfg: cfg, client: c.httpClient()}, nil
}

func (s *streamSource) Name() string { return "stream" }

// Run connects, reads, and reconnects with backoff until ctx ends; it
// returns nil then. It never gives up on the server.
func (s *streamSource) Run(ctx context.Context, in *Ingest) error {
	defer s.client.CloseIdleConnections()
	f := s.feeder(in)
	connected := false
	for attempt := 0; ; attempt++ {
		lines, err := s.session(ctx, f, s.streamURL(attempt > 0 || connected))
		connected = connected || lines > 0
		if ctx.Err() != nil {
			return nil
		}
		if lines > 0 {
			attempt = 0 // the server was healthy: start over from min_backoff
		}
		if !s.pause(ctx, attempt, s.cfg.MinBackoff, s.cfg.MaxBackoff, "stream ended; reconnecting", err) {
			return nil
		}
	}
}

// session reads one connection until it ends, and returns the number of
// lines read and why it ended.
func (s *streamSource) session(ctx context.Context, f *feeder, u string) (lines int, err error) {
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	resp, err := s.get(cctx, s.client, u, http.Header{"Accept": {"application/x-ndjson"}})
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	defer s.connected("stream connected", nil)()

	idle := &idleReader{r: resp.Body, d: s.cfg.IdleTimeout, t: time.AfterFunc(time.Hour, func() { cancel(errIdle) })}
	idle.t.Stop()
	rd := ndjson.NewReader(&countingReader{r: idle, c: s.m.bytes}, f.in.cfg.MaxEventBytes)
	for {
		line, n, err := rd.Next()
		var le *ndjson.LineError
		if err != nil && !errors.As(err, &le) {
			if cause := context.Cause(cctx); errors.Is(cause, errIdle) {
				err = cause
			} else if err == io.EOF {
				err = errors.New("the server ended the stream")
			}
			return lines, err
		}
		lines++
		if err := f.feed(ctx, line, n, err, nil); err != nil {
			return lines, err
		}
	}
}

// streamURL is the URL of a connection: with backfillMinutes on a
// reconnection when ingest.stream.backfill_minutes is set.
func (s *streamSource) streamURL(reconnect bool) string {
	if !reconnect || s.cfg.BackfillMinutes == 0 {
		return s.cfg.URL
	}
	u, _ := url.Parse(s.cfg.URL) // validated
	q := u.Query()
	q.Set("backfillMinutes", strconv.Itoa(s.cfg.BackfillMinutes))
	u.RawQuery = q.Encode()
	return u.String()
}

// idleReader fails a Read that waits longer than d for data, by firing t,
// whose function cancels the request. The clock runs only inside Read: time
// spent blocked on Kafka between reads does not count.
type idleReader struct {
	r io.Reader
	d time.Duration
	t *time.Timer
}

func (r *idleReader) Read(p []byte) (int, error) {
	r.t.Reset(r.d)
	n, err := r.r.Read(p)
	r.t.Stop()
	return n, err
}

// countingReader adds the bytes read from r to c.
type countingReader struct {
	r io.Reader
	c metrics.Counter
	n int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n += int64(n)
	if r.c != nil {
		r.c.Inc(int64(n))
	}
	return n, err
}
