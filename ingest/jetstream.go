package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/bendstream/bend/internal/activity"
	"github.com/bendstream/bend/internal/metricnames"
	"github.com/coder/websocket"
	"github.com/klauspost/compress/zstd"
	"github.com/sirupsen/logrus"
	"github.com/tidwall/gjson"
)

// JetstreamConfig is the "ingest.jetstream" section of config.yaml: a
// WebSocket client of a Bluesky Jetstream instance (its /subscribe
// endpoint), resuming from the cursor Kafka last acknowledged.
type JetstreamConfig struct {
	// Enabled runs the jetstream source. Default false.
	Enabled bool `mapstructure:"enabled"`
	// ConnConfig is the connection: keys ingest.jetstream.url (the ws or
	// wss address of the subscribe endpoint, such as
	// wss://jetstream2.us-east.bsky.network/subscribe; its own query is
	// kept, and the parameters below are added), .token (public instances
	// need none; BEND_INGEST_JETSTREAM_TOKEN), .token_file, .min_backoff,
	// .max_backoff, .idle_timeout.
	ConnConfig `mapstructure:",squash"`
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
	// Compress asks for zstd-compressed messages (compress=true), which
	// Jetstream sends as binary messages compressed with its own zstd
	// dictionary: ZstdDictionary must name it. Default false.
	Compress bool `mapstructure:"compress"`
	// ZstdDictionary is the path of the zstd dictionary the Jetstream
	// server compresses with (the zstd_dictionary file its project
	// publishes), in zstd's dictionary format; read at start-up. Required
	// when Compress is true. Default empty.
	ZstdDictionary string `mapstructure:"zstd_dictionary"`
	// MaxMessageBytes is the largest message read, decompressed, sent to
	// the server as maxMessageSizeBytes (Jetstream then skips larger
	// events) and set as the WebSocket read limit (a larger message drops
	// the connection); a compressed message that decompresses to more is
	// dead-lettered. At most ingest.max_event_bytes. Default 524288 (512 KiB).
	MaxMessageBytes int64 `mapstructure:"max_message_bytes"`
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
	return JetstreamConfig{ConnConfig: defaultConnConfig(),
		WantedCollections: []string{}, WantedDids: []string{},
		Rewind: 5 * time.Second, GapTolerance: 10 * time.Second, MaxMessageBytes: 512 << 10,
		ResumeConfig: ResumeConfig{Instance: "jetstream", Resume: true, ResumeScan: 20000, DedupWindow: 100000},
		FormatConfig: fc,
	}
}

func (c JetstreamConfig) validate(maxEvent int) error {
	errs := c.ConnConfig.validate("ingest.jetstream", "ws", "wss")
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("ingest.jetstream."+key+": "+format, args...))
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
	if c.Compress && c.ZstdDictionary == "" {
		bad("zstd_dictionary", "required when ingest.jetstream.compress is true: the path of the zstd dictionary the Jetstream server publishes")
	}
	if c.MaxMessageBytes < 1 || c.MaxMessageBytes > int64(maxEvent) {
		bad("max_message_bytes", "must be between 1 and ingest.max_event_bytes (%d), got %d", maxEvent, c.MaxMessageBytes)
	}
	errs = append(errs, c.ResumeConfig.validate("ingest.jetstream"), c.FormatConfig.Validate("ingest.jetstream"))
	return errors.Join(errs...)
}

// zstdSlack is what a compressed message may take beyond its decompressed
// bound: the frame header and block headers of an incompressible message.
const zstdSlack = 4096

// jetstreamSource reads a Jetstream subscription. While ingest's buffer is
// full it stops reading, so the server sees TCP backpressure.
type jetstreamSource struct {
	*conn
	cfg JetstreamConfig
	res *resumer
	// zstd decodes compressed messages (nil unless compress is on), at most
	// max_message_bytes each.
	zstd *zstd.Decoder
}

func newJetstreamSource(cfg JetstreamConfig, in *Ingest) (*jetstreamSource, error) {
	c, err := in.newConn("jetstream", cfg.ConnConfig, cfg.FormatConfig, connNames{metricnames.IngestJetstreamConnects,
		metricnames.IngestJetstreamDisconn, metricnames.IngestJetstreamReconn, metricnames.IngestJetstreamConnErrs})
	if err != nil {
		return nil, err
	}
	s := &jetstreamSource{conn: c, cfg: cfg,
		res: in.newResumer(cfg.ResumeConfig, c.log, metricnames.IngestJetstreamDuplicates, metricnames.IngestJetstreamGaps),
	}
	if cfg.Compress {
		if s.zstd, err = newZstdDecoder(cfg.ZstdDictionary, cfg.MaxMessageBytes); err != nil {
			return nil, fmt.Errorf("ingest.jetstream.zstd_dictionary: %w", err)
		}
	}
	return s, nil
}

// newZstdDecoder reads the dictionary file and returns a decoder of frames
// compressed with it, refusing any that decompresses to more than limit
// bytes (before allocating them).
func newZstdDecoder(path string, limit int64) (*zstd.Decoder, error) {
	dict, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	d, err := zstd.NewReader(nil, zstd.WithDecoderDicts(dict), zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(uint64(limit)), zstd.WithDecoderMaxWindow(max(uint64(limit), zstd.MinWindowSize)))
	if err != nil {
		return nil, fmt.Errorf("%s is not a zstd dictionary: %w", path, err)
	}
	return d, nil
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
	if s.cfg.Compress {
		q.Set("compress", "true")
	}
	if cursor > 0 {
		q.Set("cursor", strconv.FormatInt(cursor, 10))
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// Run resumes from Kafka's newest acknowledged cursor, then connects,
// reads, and reconnects with backoff until ctx ends; it returns nil then.
func (s *jetstreamSource) Run(ctx context.Context, in *Ingest) error {
	if s.zstd != nil {
		defer s.zstd.Close()
	}
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
	f := s.feeder(in)
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
		if !s.pause(ctx, attempt, s.cfg.MinBackoff, s.cfg.MaxBackoff, "jetstream ended; reconnecting", err) {
			return nil
		}
	}
}

// session reads one connection from cursor until it ends, and returns the
// number of messages read, the time_us of the last one, and why it ended.
// need, when positive, is the time_us after which every event is wanted (a
// resume): a first event later than it by more than gap_tolerance is a gap.
func (s *jetstreamSource) session(ctx context.Context, f *feeder, cursor, need int64) (read int, last int64, err error) {
	opts := &websocket.DialOptions{HTTPHeader: http.Header{}}
	s.authorize(opts.HTTPHeader)
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second+s.cfg.IdleTimeout)
	conn, resp, err := websocket.Dial(dctx, s.subscribeURL(cursor), opts)
	cancel()
	if err != nil {
		if resp != nil {
			s.connectErrors.Inc(1)
			return 0, cursor, fmt.Errorf("server answered %s", resp.Status)
		}
		return 0, cursor, s.connectFailed(err)
	}
	defer conn.CloseNow()
	limit := s.cfg.MaxMessageBytes
	if s.zstd != nil {
		limit += zstdSlack
	}
	conn.SetReadLimit(limit)
	defer s.connected("jetstream connected", logrus.Fields{"cursor": cursor})()
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
			if msg, err = s.decompress(msg); err != nil {
				f.rejected(read, err)
				if _, err := f.in.rejectEvent(ctx, f.m, msg, read, err, nil); err != nil {
					return read, last, err
				}
				continue
			}
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

// errBinary is the reason a binary message is refused when compress is off:
// compressed or CBOR messages, never asked for.
var errBinary = errors.New("binary WebSocket message (compressed or CBOR), not asked for (ingest.jetstream.compress is false)")

// decompress returns the JSON of a binary message: its zstd frame
// decompressed with the dictionary. On failure it returns msg, for the
// dead letter, and why: a message that would decompress beyond
// max_message_bytes is refused before it is decompressed.
func (s *jetstreamSource) decompress(msg []byte) ([]byte, error) {
	if s.zstd == nil {
		return msg, errBinary
	}
	out, err := s.zstd.DecodeAll(msg, nil)
	switch {
	case errors.Is(err, zstd.ErrDecoderSizeExceeded), errors.Is(err, zstd.ErrWindowSizeExceeded):
		return msg, fmt.Errorf("%w: a compressed message of %d bytes decompresses to more than ingest.jetstream.max_message_bytes (%d)", errTooLarge, len(msg), s.cfg.MaxMessageBytes)
	case err != nil:
		return msg, fmt.Errorf("a compressed message of %d bytes does not decompress with ingest.jetstream.zstd_dictionary: %w", len(msg), err)
	}
	return out, nil
}
