package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/bendstream/bend/internal/metricnames"
	"github.com/bendstream/bend/internal/ndjson"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
)

// errIdle ends a stream connection on which nothing arrived for
// ingest.stream.idle_timeout.
var errIdle = errors.New("no data for ingest.stream.idle_timeout")

// streamSource reads a long-lived NDJSON response (chunked, or HTTP/2) and
// reconnects whenever it ends. While ingest's buffer is full it stops
// reading, so the server sees TCP backpressure. Events sent while it is
// disconnected are the server's business: a firehose has no replay.
type streamSource struct {
	check  *checker
	cfg    StreamConfig
	token  Secret
	where  string // the URL without credentials or query, for logs
	client *http.Client
	log    logrus.FieldLogger
	m      *sourceMetrics

	connects, disconnects, reconnects, connectErrors metrics.Counter
}

func newStreamSource(cfg StreamConfig, in *Ingest) (*streamSource, error) {
	tok, err := readToken(cfg.Token, cfg.TokenFile, "ingest.stream.token_file")
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("ingest.stream.url: %w", err)
	}
	where := u.Scheme + "://" + u.Host + u.Path
	chk, err := in.formatChecker(cfg.FormatConfig, "ingest.stream", "stream")
	if err != nil {
		return nil, err
	}
	reg := in.reg
	return &streamSource{cfg: cfg, token: tok, where: where, check: chk,
		client: &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: cfg.IdleTimeout,
			ForceAttemptHTTP2:     true,
		}},
		log:           in.log.WithFields(logrus.Fields{"source": "stream", "url": where}),
		m:             in.sourceMetrics("stream"),
		connects:      metrics.GetOrRegisterCounter(metricnames.IngestStreamConnects, reg),
		disconnects:   metrics.GetOrRegisterCounter(metricnames.IngestStreamDisconn, reg),
		reconnects:    metrics.GetOrRegisterCounter(metricnames.IngestStreamReconn, reg),
		connectErrors: metrics.GetOrRegisterCounter(metricnames.IngestStreamConnErrs, reg),
	}, nil
}

func (s *streamSource) Name() string { return "stream" }

// Run connects, reads, and reconnects with backoff until ctx ends; it
// returns nil then. It never gives up on the server.
func (s *streamSource) Run(ctx context.Context, in *Ingest) error {
	defer s.client.CloseIdleConnections()
	f := &feeder{in: in, m: s.m, log: s.log, check: s.check}
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
		wait := backoff(attempt, s.cfg.MinBackoff, s.cfg.MaxBackoff, rand.Float64())
		s.log.WithError(err).WithField("retry_in", wait.Round(time.Millisecond)).Warn("stream ended; reconnecting")
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil
		}
		s.reconnects.Inc(1)
	}
}

// session reads one connection until it ends, and returns the number of
// lines read and why it ended.
func (s *streamSource) session(ctx context.Context, f *feeder, u string) (lines int, err error) {
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/x-ndjson")
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+string(s.token))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.connectErrors.Inc(1)
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its message repeats the URL, query included
		}
		return 0, fmt.Errorf("connecting: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.connectErrors.Inc(1)
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return 0, fmt.Errorf("server answered %s", resp.Status)
	}
	s.connects.Inc(1)
	s.log.Info("stream connected")
	defer s.disconnects.Inc(1)

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

// backoff returns the wait before reconnection attempt number attempt
// (from 0): lo doubled attempt times, capped at hi, times a jitter factor
// 0.5+u/2 for u in [0, 1), so that clients cut off together do not come
// back together.
func backoff(attempt int, lo, hi time.Duration, u float64) time.Duration {
	d := lo
	for i := 0; i < attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return time.Duration(float64(d) * (0.5 + u/2))
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
