package ingest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/bendstream/bend/internal/activity"
	"github.com/coder/websocket"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
	"github.com/tidwall/gjson"
)

// JetstreamConfig is the "ingest.jetstream" section of config.yaml: a
// WebSocket client of a Bluesky Jetstream instance (its /subscribe
// endpoint), resuming from the cursor Kafka last acknowledged.
type JetstreamConfig struct {
	// Enabled runs the jetstream source. Default false.
	Enabled bool `mapstructure:"enabled"`
	// URL is the ws or wss address of the subscribe endpoint, such as
	// wss://jetstream2.us-east.bsky.network/subscribe; its own query is
	// kept, and the parameters below are added. Required when enabled.
	URL string `mapstructure:"url"`
	// WantedCollections filters commits by collection NSID
	// (app.bsky.feed.post, or a prefix such as app.bsky.graph.*), at most
	// 100; empty receives every collection. Default empty.
	WantedCollections []string `mapstructure:"wanted_collections"`
	// WantedDids filters events by repository DID, at most 10000; empty
	// receives every repository. Default empty.
	WantedDids []string `mapstructure:"wanted_dids"`
	// Cursor is where to start (Unix microseconds, an event's time_us)
	// when there is nothing to resume from; 0 starts at the live stream.
	// Default 0.
	Cursor int64 `mapstructure:"cursor"`
	// Rewind is subtracted from the resume cursor found in Kafka, to
	// replay what was in flight when bend stopped (the duplicates are
	// dropped by dedup_window). Default 5s.
	Rewind time.Duration `mapstructure:"rewind"`
	// GapTolerance: when the first event after a resume is later than the
	// resume cursor (before the rewind) by more than this, the instance's replay window was
	// exceeded and the gap is logged and counted (ingest.jetstream.gaps). A
	// sparse stream (few wanted_dids) can trip it without loss. Default 10s.
	GapTolerance time.Duration `mapstructure:"gap_tolerance"`
	// Compress asks for zstd-compressed messages. Jetstream compresses
	// with a dictionary of its own, which bend does not carry: true is
	// refused at start-up. Default false.
	Compress bool `mapstructure:"compress"`
	// MaxMessageBytes is the largest message read, sent to the server as
	// maxMessageSizeBytes (Jetstream then skips larger events) and set as
	// the WebSocket read limit (a larger message drops the connection).
	// At most ingest.max_event_bytes. Default 524288 (512 KiB).
	MaxMessageBytes int64 `mapstructure:"max_message_bytes"`
	// Token, when set, is sent as "Authorization: Bearer <token>" (public
	// instances need none). Set it from the environment
	// (BEND_INGEST_JETSTREAM_TOKEN) or use TokenFile. Never logged.
	// Default empty.
	Token Secret `mapstructure:"token"`
	// TokenFile names a file holding the token, read at start-up.
	// Exclusive with Token. Default empty.
	TokenFile string `mapstructure:"token_file"`
	// MinBackoff is the wait before the first reconnection, doubled on
	// every failed attempt up to MaxBackoff, with jitter. Default 100ms.
	MinBackoff time.Duration `mapstructure:"min_backoff"`
	// MaxBackoff caps the wait between reconnections. Default 30s.
	MaxBackoff time.Duration `mapstructure:"max_backoff"`
	// IdleTimeout drops a connection that delivers nothing for this long
	// while ingest is ready to read. Default 60s.
	IdleTimeout time.Duration `mapstructure:"idle_timeout"`
	// ResumeConfig: keys ingest.jetstream.instance, .resume, .resume_scan,
	// .dedup_window.
	ResumeConfig `mapstructure:",squash"`
	// FormatConfig is how the events are read: keys ingest.jetstream.format
	// (default jetstream), .fields, .non_activity, .non_activity_topic.
	activity.FormatConfig `mapstructure:",squash"`
}

func defaultJetstreamConfig() JetstreamConfig {
	fc := activity.DefaultFormatConfig()
	fc.Format = activity.PresetJetstream
	return JetstreamConfig{
		WantedCollections: []string{}, WantedDids: []string{},
		Rewind: 5 * time.Second, GapTolerance: 10 * time.Second, MaxMessageBytes: 512 << 10,
		MinBackoff: 100 * time.Millisecond, MaxBackoff: 30 * time.Second, IdleTimeout: 60 * time.Second,
		ResumeConfig: ResumeConfig{Instance: "jetstream", Resume: true, ResumeScan: 20000, DedupWindow: 100000},
		FormatConfig: fc,
	}
}

func (c JetstreamConfig) validate(maxEvent int) error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("ingest.jetstream."+key+": "+format, args...))
	}
	if u, err := url.Parse(c.URL); err != nil {
		bad("url", "%v", err)
	} else if (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		bad("url", "want an absolute ws or wss URL, got %q", c.URL)
	}
	if len(c.WantedCollections) > 100 {
		bad("wanted_collections", "at most 100, got %d", len(c.WantedCollections))
	}
	if len(c.WantedDids) > 10000 {
		bad("wanted_dids", "at most 10000, got %d", len(c.WantedDids))
	}
	if c.Cursor < 0 {
		bad("cursor", "must not be negative, got %d", c.Cursor)
	}
	if c.Rewind < 0 {
		bad("rewind", "must not be negative, got %s", c.Rewind)
	}
	if c.GapTolerance <= 0 {
		bad("gap_tolerance", "must be positive, got %s", c.GapTolerance)
	}
	if c.Compress {
		bad("compress", "not supported: Jetstream compresses with its own zstd dictionary; leave it false")
	}
	if c.MaxMessageBytes < 1 || c.MaxMessageBytes > int64(maxEvent) {
		bad("max_message_bytes", "must be between 1 and ingest.max_event_bytes (%d), got %d", maxEvent, c.MaxMessageBytes)
	}
	if c.Token != "" && c.TokenFile != "" {
		bad("token_file", "set token or token_file, not both")
	}
	if c.MinBackoff <= 0 {
		bad("min_backoff", "must be positive, got %s", c.MinBackoff)
	}
	if c.MaxBackoff < c.MinBackoff {
		bad("max_backoff", "must be at least ingest.jetstream.min_backoff (%s), got %s", c.MinBackoff, c.MaxBackoff)
	}
	if c.IdleTimeout <= 0 {
		bad("idle_timeout", "must be positive, got %s", c.IdleTimeout)
	}
	errs = append(errs, c.ResumeConfig.validate("ingest.jetstream"), c.FormatConfig.Validate("ingest.jetstream"))
	return errors.Join(errs...)
}

// jetstreamSource reads a Jetstream subscription. While ingest's buffer is
// full it stops reading, so the server sees TCP backpressure.
type jetstreamSource struct {
	cfg   JetstreamConfig
	check *checker
	token Secret
	where string
	log   logrus.FieldLogger
	m     *sourceMetrics
	res   *resumer

	connects, disconnects, reconnects, connectErrors metrics.Counter
}

func newJetstreamSource(cfg JetstreamConfig, in *Ingest) (*jetstreamSource, error) {
	tok, err := readToken(cfg.Token, cfg.TokenFile, "ingest.jetstream.token_file")
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("ingest.jetstream.url: %w", err)
	}
	chk, err := in.formatChecker(cfg.FormatConfig, "ingest.jetstream", "jetstream")
	if err != nil {
		return nil, err
	}
	where := u.Scheme + "://" + u.Host + u.Path
	log := in.log.WithFields(logrus.Fields{"source": "jetstream", "url": where})
	reg := in.reg
	return &jetstreamSource{cfg: cfg, check: chk, token: tok, where: where, log: log,
		m:             in.sourceMetrics("jetstream"),
		res:           in.newResumer("jetstream", cfg.ResumeConfig, log),
		connects:      metrics.GetOrRegisterCounter("ingest.jetstream.connects", reg),
		disconnects:   metrics.GetOrRegisterCounter("ingest.jetstream.disconnects", reg),
		reconnects:    metrics.GetOrRegisterCounter("ingest.jetstream.reconnects", reg),
		connectErrors: metrics.GetOrRegisterCounter("ingest.jetstream.connect_errors", reg),
	}, nil
}

func (s *jetstreamSource) Name() string { return "jetstream" }

// subscribeURL is the subscribe URL asking for events from cursor (0: live).
func (s *jetstreamSource) subscribeURL(cursor int64) string {
	u, _ := url.Parse(s.cfg.URL) // validated
	q := u.Query()
	for _, c := range s.cfg.WantedCollections {
		q.Add("wantedCollections", c)
	}
	for _, d := range s.cfg.WantedDids {
		q.Add("wantedDids", d)
	}
	q.Set("maxMessageSizeBytes", strconv.FormatInt(s.cfg.MaxMessageBytes, 10))
	if cursor > 0 {
		q.Set("cursor", strconv.FormatInt(cursor, 10))
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// Run resumes from Kafka's newest acknowledged cursor, then connects,
// reads, and reconnects with backoff until ctx ends; it returns nil then.
func (s *jetstreamSource) Run(ctx context.Context, in *Ingest) error {
	cursor := s.cfg.Cursor
	need := int64(0) // the events after this one must come: the gap check's reference
	if c, err := s.res.start(ctx, in); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	} else if c != nil {
		us, err := strconv.ParseInt(string(c), 10, 64)
		if err != nil {
			return fmt.Errorf("the resume cursor %q in the input topic is not a time_us: %w", c, err)
		}
		cursor, need = max(1, us-s.cfg.Rewind.Microseconds()), us
	}
	f := &feeder{in: in, m: s.m, log: s.log, check: s.check}
	for attempt := 0; ; attempt++ {
		read, last, err := s.session(ctx, f, cursor, need)
		if ctx.Err() != nil {
			return nil
		}
		if read > 0 {
			attempt = 0
			// Within the process every event read is held: carry on
			// from the last one (its repeat is a duplicate).
			cursor, need = last, last
		}
		wait := backoff(attempt, s.cfg.MinBackoff, s.cfg.MaxBackoff, rand.Float64())
		s.log.WithError(err).WithField("retry_in", wait.Round(time.Millisecond)).Warn("jetstream ended; reconnecting")
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

// session reads one connection from cursor until it ends, and returns the
// number of messages read, the time_us of the last one, and why it ended.
// need, when positive, is the time_us after which every event is wanted (a
// resume): a first event later than it by more than gap_tolerance is a gap.
func (s *jetstreamSource) session(ctx context.Context, f *feeder, cursor, need int64) (read int, last int64, err error) {
	opts := &websocket.DialOptions{HTTPHeader: http.Header{}}
	if s.token != "" {
		opts.HTTPHeader.Set("Authorization", "Bearer "+string(s.token))
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second+s.cfg.IdleTimeout)
	conn, resp, err := websocket.Dial(dctx, s.subscribeURL(cursor), opts)
	cancel()
	if err != nil {
		s.connectErrors.Inc(1)
		if resp != nil {
			return 0, cursor, fmt.Errorf("server answered %s", resp.Status)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, cursor, fmt.Errorf("connecting: %w", err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(s.cfg.MaxMessageBytes)
	s.connects.Inc(1)
	s.log.WithField("cursor", cursor).Info("jetstream connected")
	defer s.disconnects.Inc(1)
	last = cursor
	for {
		rctx, cancel := context.WithTimeout(ctx, s.cfg.IdleTimeout)
		typ, msg, err := conn.Read(rctx)
		idle := rctx.Err() != nil && ctx.Err() == nil
		cancel()
		if err != nil {
			if idle {
				err = errors.New("no message for ingest.jetstream.idle_timeout")
			}
			return read, last, err
		}
		read++
		s.m.bytes.Inc(int64(len(msg)))
		if typ != websocket.MessageText {
			// Binary frames are compressed or CBOR messages, never asked for.
			f.rejected(read, errors.New("binary WebSocket message"))
			if _, err := f.in.rejectEvent(ctx, f.m, msg, read, errors.New("binary WebSocket message (compressed or CBOR), not asked for"), nil); err != nil {
				return read, last, err
			}
			continue
		}
		var cur []byte
		if t := gjson.GetBytes(msg, "time_us"); t.Type == gjson.Number {
			if us, err := strconv.ParseInt(t.Raw, 10, 64); err == nil {
				cur = []byte(t.Raw)
				if need > 0 {
					if us-need > s.cfg.GapTolerance.Microseconds() {
						s.res.gap("resumed after time_us %d (asked for cursor %d), the first event is at %d, %s later (the instance's replay window was exceeded; ingest.jetstream.gap_tolerance %s)",
							need, cursor, us, time.Duration(us-need)*time.Microsecond, s.cfg.GapTolerance)
					}
					need = 0
				}
				last = us
			}
		}
		if err := f.publishEvent(ctx, s.res, msg, cur, read); err != nil {
			return read, last, err
		}
	}
}
