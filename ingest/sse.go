package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/bendstream/bend/internal/activity"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
)

// SSEConfig is the "ingest.sse" section of config.yaml: a Server-Sent
// Events client (Wikimedia EventStreams, Mastodon streaming) that resumes
// with Last-Event-ID from the id Kafka last acknowledged.
type SSEConfig struct {
	// Enabled runs the sse source. Default false.
	Enabled bool `mapstructure:"enabled"`
	// URL is the http or https address of the stream, such as
	// https://stream.wikimedia.org/v2/stream/recentchange. Required when
	// enabled.
	URL string `mapstructure:"url"`
	// Events lists the event types kept (Wikimedia: message; Mastodon:
	// update, status.update, delete); other types are counted
	// (ingest.sse.skipped) and dropped. Empty keeps every type. Default
	// empty.
	Events []string `mapstructure:"events"`
	// LastEventID is sent as Last-Event-ID when there is nothing to resume
	// from; empty starts at the live stream. Default empty.
	LastEventID string `mapstructure:"last_event_id"`
	// Token, when set, is sent as "Authorization: Bearer <token>" (a
	// Mastodon access token). Set it from the environment
	// (BEND_INGEST_SSE_TOKEN) or use TokenFile. Never logged. Default empty.
	Token Secret `mapstructure:"token"`
	// TokenFile names a file holding the token, read at start-up.
	// Exclusive with Token. Default empty.
	TokenFile string `mapstructure:"token_file"`
	// MinBackoff is the wait before the first reconnection (or the
	// server's retry: when longer), doubled on every failed attempt up to
	// MaxBackoff, with jitter. Default 100ms.
	MinBackoff time.Duration `mapstructure:"min_backoff"`
	// MaxBackoff caps the wait between reconnections. Default 30s.
	MaxBackoff time.Duration `mapstructure:"max_backoff"`
	// IdleTimeout drops a connection that sends nothing (comments count)
	// for this long while ingest is ready to read. Default 60s.
	IdleTimeout time.Duration `mapstructure:"idle_timeout"`
	// ResumeConfig: keys ingest.sse.instance, .resume, .resume_scan,
	// .dedup_window. An SSE id is opaque: the stream resumes after the
	// last acknowledged id as it is, without rewind.
	ResumeConfig `mapstructure:",squash"`
	// FormatConfig is how the events are read: keys ingest.sse.format,
	// .fields, .non_activity, .non_activity_topic.
	activity.FormatConfig `mapstructure:",squash"`
}

func defaultSSEConfig() SSEConfig {
	return SSEConfig{Events: []string{},
		MinBackoff: 100 * time.Millisecond, MaxBackoff: 30 * time.Second, IdleTimeout: 60 * time.Second,
		ResumeConfig: ResumeConfig{Instance: "sse", Resume: true, ResumeScan: 20000, DedupWindow: 100000},
		FormatConfig: activity.DefaultFormatConfig(),
	}
}

func (c SSEConfig) validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("ingest.sse."+key+": "+format, args...))
	}
	if u, err := url.Parse(c.URL); err != nil {
		bad("url", "%v", err)
	} else if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("url", "want an absolute http or https URL, got %q", c.URL)
	}
	for i, e := range c.Events {
		if e == "" {
			bad(fmt.Sprintf("events[%d]", i), "empty event type")
		}
	}
	if c.Token != "" && c.TokenFile != "" {
		bad("token_file", "set token or token_file, not both")
	}
	if c.MinBackoff <= 0 {
		bad("min_backoff", "must be positive, got %s", c.MinBackoff)
	}
	if c.MaxBackoff < c.MinBackoff {
		bad("max_backoff", "must be at least ingest.sse.min_backoff (%s), got %s", c.MinBackoff, c.MaxBackoff)
	}
	if c.IdleTimeout <= 0 {
		bad("idle_timeout", "must be positive, got %s", c.IdleTimeout)
	}
	errs = append(errs, c.ResumeConfig.validate("ingest.sse"), c.FormatConfig.Validate("ingest.sse"))
	return errors.Join(errs...)
}

// sseSource reads an event stream. While ingest's buffer is full it stops
// reading, so the server sees TCP backpressure.
type sseSource struct {
	cfg    SSEConfig
	check  *checker
	token  Secret
	client *http.Client
	log    logrus.FieldLogger
	m      *sourceMetrics
	res    *resumer

	connects, disconnects, reconnects, connectErrors, skipped metrics.Counter
}

func newSSESource(cfg SSEConfig, in *Ingest) (*sseSource, error) {
	tok, err := readToken(cfg.Token, cfg.TokenFile, "ingest.sse.token_file")
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("ingest.sse.url: %w", err)
	}
	chk, err := in.formatChecker(cfg.FormatConfig, "ingest.sse", "sse")
	if err != nil {
		return nil, err
	}
	log := in.log.WithFields(logrus.Fields{"source": "sse", "url": u.Scheme + "://" + u.Host + u.Path})
	reg := in.reg
	return &sseSource{cfg: cfg, check: chk, token: tok, log: log,
		client: &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: cfg.IdleTimeout,
			ForceAttemptHTTP2:     true,
		}},
		m:             in.sourceMetrics("sse"),
		res:           in.newResumer("sse", cfg.ResumeConfig, log),
		connects:      metrics.GetOrRegisterCounter("ingest.sse.connects", reg),
		disconnects:   metrics.GetOrRegisterCounter("ingest.sse.disconnects", reg),
		reconnects:    metrics.GetOrRegisterCounter("ingest.sse.reconnects", reg),
		connectErrors: metrics.GetOrRegisterCounter("ingest.sse.connect_errors", reg),
		skipped:       metrics.GetOrRegisterCounter("ingest.sse.skipped", reg),
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
	f := &feeder{in: in, m: s.m, log: s.log, check: s.check}
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
		wait := backoff(attempt, max(s.cfg.MinBackoff, retry), max(s.cfg.MaxBackoff, retry), rand.Float64())
		s.log.WithError(err).WithField("retry_in", wait.Round(time.Millisecond)).Warn("event stream ended; reconnecting")
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

// session reads one connection, sent with Last-Event-ID lastID, until it
// ends; it returns the number of events read, the last event ID, the
// server's retry time, and why it ended. checkGap: the connection resumes
// an id, whose replay is checked (see checkGap).
func (s *sseSource) session(ctx context.Context, f *feeder, lastID []byte, checkGap bool) (read int, id []byte, retry time.Duration, err error) {
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, s.cfg.URL, nil)
	if err != nil {
		return 0, lastID, 0, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	if len(lastID) > 0 {
		req.Header.Set("Last-Event-ID", string(lastID))
	}
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+string(s.token))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.connectErrors.Inc(1)
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, lastID, 0, fmt.Errorf("connecting: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.connectErrors.Inc(1)
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return 0, lastID, 0, fmt.Errorf("server answered %s", resp.Status)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		s.connectErrors.Inc(1)
		return 0, lastID, 0, fmt.Errorf("server answered Content-Type %q, not text/event-stream", resp.Header.Get("Content-Type"))
	}
	s.connects.Inc(1)
	s.log.WithField("last_event_id", string(lastID)).Info("event stream connected")
	defer s.disconnects.Inc(1)

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
