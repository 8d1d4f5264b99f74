package ingest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/bendstream/bend/internal/activity"
	"github.com/bendstream/bend/internal/kafka"
	"github.com/bendstream/bend/internal/pack"
	"github.com/bendstream/bend/internal/synth"
)

// What ingest does with an invalid event, the values of Config.OnInvalid.
const (
	// OnInvalidDeadLetter writes each invalid event, with the reason, to the
	// dead-letter topic and goes on with the valid ones.
	OnInvalidDeadLetter = "dead_letter"
	// OnInvalidReject refuses invalid events: an HTTP request holding one is
	// refused whole (400, nothing published); the stream and file sources
	// log, count and skip them.
	OnInvalidReject = "reject"
)

// recordSlack is what a Kafka record may need beyond its event and key:
// record framing and the dead-letter headers. max_event_bytes must leave it
// free within the producer's batch_bytes (sarama's largest record).
const recordSlack = 4096

// Config is the "ingest" section of config.yaml.
type Config struct {
	// Producer tunes the edge producer (keys ingest.producer.*). Its
	// max_in_flight also bounds the records ingest holds unacknowledged.
	Producer kafka.ProducerConfig `mapstructure:"producer"`
	// CloseTimeout bounds the wait for Kafka's acknowledgements, and for
	// HTTP requests in progress, when ingest stops. Default 30s.
	CloseTimeout time.Duration `mapstructure:"close_timeout"`
	// KeyField is the event field whose value is the Kafka key of a
	// received event, a dotted path for nested fields ("author.id"). The
	// value must be a non-empty string or a number. The synthetic source
	// keys by author regardless. Default "id".
	KeyField string `mapstructure:"key_field"`
	// OnInvalid is what happens to an invalid event: "dead_letter" or
	// "reject" (see OnInvalidDeadLetter, OnInvalidReject). Default
	// "dead_letter".
	OnInvalid string `mapstructure:"on_invalid"`
	// MaxEventBytes is the largest event (with its key) accepted, and the
	// longest NDJSON line read. It must leave 4096 bytes of
	// ingest.producer.batch_bytes free, and fit the topic's
	// max.message.bytes. Default 524288 (512 KiB).
	MaxEventBytes int `mapstructure:"max_event_bytes"`
	// MaxDepth is the deepest nesting of objects and arrays accepted in an
	// event, at most 10000. Default 64.
	MaxDepth int `mapstructure:"max_depth"`
	// MaxBufferedBytes bounds the bytes of events ingest holds between
	// reading them and Kafka's acknowledgement (HTTP bodies count as their
	// bytes arrive). When it is reached the stream and file
	// sources stop reading and the HTTP receiver answers 503. Default
	// 67108864 (64 MiB).
	MaxBufferedBytes int64 `mapstructure:"max_buffered_bytes"`
	// Synthetic configures the built-in synthetic firehose source.
	Synthetic SyntheticConfig `mapstructure:"synthetic"`
	// Stream configures the streaming HTTP client source.
	Stream StreamConfig `mapstructure:"stream"`
	// HTTP configures the HTTP receiver source.
	HTTP HTTPConfig `mapstructure:"http"`
	// Files configures the NDJSON file (and stdin) replay source.
	Files FilesConfig `mapstructure:"files"`
	// Jetstream configures the Bluesky Jetstream WebSocket source.
	Jetstream JetstreamConfig `mapstructure:"jetstream"`
	// SSE configures the Server-Sent Events source.
	SSE SSEConfig `mapstructure:"sse"`
	// Batching packs several events of one partition into one record
	// (internal/pack, ingest/pack.go). Off by default: the distributor
	// reads packed records, plain consumers of the input topic do not.
	Batching pack.Config `mapstructure:"batching"`
}

// SyntheticConfig is the "ingest.synthetic" section of config.yaml.
type SyntheticConfig struct {
	// Enabled runs the synthetic source. Default true.
	Enabled bool `mapstructure:"enabled"`
	// Config is the generator's configuration (keys ingest.synthetic.rate, ...).
	synth.Config `mapstructure:",squash"`
}

// HTTPConfig is the "ingest.http" section of config.yaml: a receiver for
// POSTed NDJSON or JSON arrays that answers 2xx only once Kafka holds every
// event of the request.
type HTTPConfig struct {
	// Enabled runs the HTTP receiver. Default false.
	Enabled bool `mapstructure:"enabled"`
	// Addr is the host:port to listen on. Default "127.0.0.1:8088".
	Addr string `mapstructure:"addr"`
	// Path is the URL path that accepts POSTs. Default "/v1/events".
	Path string `mapstructure:"path"`
	// Token, when set, is the bearer token every request must carry
	// ("Authorization: Bearer <token>"; else 401). Set it from the
	// environment (BEND_INGEST_HTTP_TOKEN) or use TokenFile. Never logged.
	// Empty accepts unauthenticated requests (a warning is logged). Default
	// empty.
	Token Secret `mapstructure:"token"`
	// TokenFile names a file holding the token, read at start-up.
	// Exclusive with Token. Default empty.
	TokenFile string `mapstructure:"token_file"`
	// MaxBodyBytes is the largest request body; larger ones get 413. At
	// most ingest.max_buffered_bytes. Default 16777216 (16 MiB).
	MaxBodyBytes int64 `mapstructure:"max_body_bytes"`
	// AdmitWait is how long a request may wait for room in ingest's buffer
	// (ingest.max_buffered_bytes, ingest.producer.max_in_flight) before it
	// is answered 503 with Retry-After. Default 500ms.
	AdmitWait time.Duration `mapstructure:"admit_wait"`
	// RetryAfter is the wait suggested in Retry-After (whole seconds,
	// rounded up). Default 1s.
	RetryAfter time.Duration `mapstructure:"retry_after"`
	// AckTimeout bounds the wait for Kafka's acknowledgement of a
	// request's events; past it the request is answered 503 (some events
	// may have been written: a resend may duplicate them). Default 30s.
	AckTimeout time.Duration `mapstructure:"ack_timeout"`
	// ReadTimeout bounds reading a request, headers and body. Default 30s.
	ReadTimeout time.Duration `mapstructure:"read_timeout"`
	// FormatConfig is how the events are read: keys ingest.http.format,
	// ingest.http.fields.*, ingest.http.non_activity, ingest.http.non_activity_topic.
	activity.FormatConfig `mapstructure:",squash"`
	// MinBytesPerSecond is the slowest a body may arrive: every
	// MinRateWindow must bring at least MinBytesPerSecond*MinRateWindow
	// bytes, or the request is answered 408 and its connection closed, so
	// slow clients cannot hold connections and buffer room for long. Time
	// the receiver spends waiting for buffer room does not count. 0 sets
	// no minimum. Default 1024.
	MinBytesPerSecond int64 `mapstructure:"min_bytes_per_second"`
	// MinRateWindow is the span over which MinBytesPerSecond is measured.
	// Default 10s.
	MinRateWindow time.Duration `mapstructure:"min_rate_window"`
}

// FilesConfig is the "ingest.files" section of config.yaml: NDJSON files
// replayed once, in order, at start-up.
type FilesConfig struct {
	// Paths lists the files to replay; "-" is standard input (at most
	// once) and a name ending in ".gz" is gunzipped. Empty turns the source
	// off. Default empty.
	Paths []string `mapstructure:"paths"`
	// Progress is how often a progress line (bytes read of the file's size)
	// is logged while a file is replayed; 0 logs only the summary at the
	// end of each file. Default 10s.
	Progress time.Duration `mapstructure:"progress"`
	// FormatConfig is how the events are read: keys ingest.files.format,
	// ingest.files.fields.*, ingest.files.non_activity, ingest.files.non_activity_topic.
	activity.FormatConfig `mapstructure:",squash"`
}

// Secret is a string that formats as "[redacted]" (or "" when empty), so a
// token never reaches a log line or an error message by accident.
type Secret string

// String implements fmt.Stringer.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString implements fmt.GoStringer.
func (s Secret) GoString() string { return `"` + s.String() + `"` }

// DefaultConfig returns the documented defaults: the synthetic source on,
// the other sources off.
func DefaultConfig() Config {
	return Config{
		Producer:         kafka.DefaultProducerConfig(),
		CloseTimeout:     30 * time.Second,
		KeyField:         "id",
		OnInvalid:        OnInvalidDeadLetter,
		MaxEventBytes:    512 << 10,
		MaxDepth:         64,
		MaxBufferedBytes: 64 << 20,
		Synthetic:        SyntheticConfig{Enabled: true, Config: synth.DefaultConfig()},
		Stream:           defaultStreamConfig(),
		HTTP: HTTPConfig{
			Addr:         "127.0.0.1:8088",
			Path:         "/v1/events",
			MaxBodyBytes: 16 << 20,
			AdmitWait:    500 * time.Millisecond,
			RetryAfter:   time.Second,
			AckTimeout:   30 * time.Second,
			ReadTimeout:  30 * time.Second,
			FormatConfig: activity.DefaultFormatConfig(),

			MinBytesPerSecond: 1024,
			MinRateWindow:     10 * time.Second,
		},
		Files:     FilesConfig{Paths: []string{}, Progress: 10 * time.Second, FormatConfig: activity.DefaultFormatConfig()},
		Jetstream: defaultJetstreamConfig(),
		SSE:       defaultSSEConfig(),
		Batching:  pack.DefaultConfig(),
	}
}

// Validate reports every invalid field by its config.yaml key, joined with
// errors.Join. Sections of disabled sources are not checked.
func (c Config) Validate() error {
	errs := []error{c.Producer.Validate("ingest.producer")}
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("ingest."+key+": "+format, args...))
	}
	if c.CloseTimeout <= 0 {
		bad("close_timeout", "must be positive, got %s", c.CloseTimeout)
	}
	if c.KeyField == "" || strings.Contains("."+c.KeyField+".", "..") {
		bad("key_field", "want a field name or dotted path such as author.id, got %q", c.KeyField)
	}
	if c.OnInvalid != OnInvalidDeadLetter && c.OnInvalid != OnInvalidReject {
		bad("on_invalid", "want dead_letter or reject, got %q", c.OnInvalid)
	}
	switch {
	case c.MaxEventBytes < 1:
		bad("max_event_bytes", "must be positive, got %d", c.MaxEventBytes)
	case c.Producer.BatchBytes > 0 && c.MaxEventBytes > c.Producer.BatchBytes-recordSlack:
		bad("max_event_bytes", "%d leaves less than %d bytes of ingest.producer.batch_bytes (%d) for the key and headers",
			c.MaxEventBytes, recordSlack, c.Producer.BatchBytes)
	}
	if c.MaxDepth < 1 || c.MaxDepth > 10000 {
		bad("max_depth", "must be between 1 and 10000, got %d", c.MaxDepth)
	}
	if c.MaxBufferedBytes < int64(c.MaxEventBytes) {
		bad("max_buffered_bytes", "must be at least ingest.max_event_bytes (%d), got %d", c.MaxEventBytes, c.MaxBufferedBytes)
	}
	if c.Synthetic.Enabled {
		if err := c.Synthetic.Config.Validate(); err != nil {
			errs = append(errs, prefixed("ingest.", err))
		}
	}
	if c.Jetstream.Enabled {
		errs = append(errs, c.Jetstream.validate(c.MaxEventBytes))
	}
	if c.SSE.Enabled {
		errs = append(errs, c.SSE.validate())
	}
	if c.Stream.Enabled {
		errs = append(errs, c.Stream.validate())
	}
	if c.HTTP.Enabled {
		errs = append(errs, c.HTTP.validate(c.MaxBufferedBytes))
	}
	errs = append(errs, c.Files.validate())
	errs = append(errs, c.Batching.Validate("ingest.batching", c.Producer.BatchBytes))
	return errors.Join(errs...)
}

func (c HTTPConfig) validate(maxBuffered int64) error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("ingest.http."+key+": "+format, args...))
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		bad("addr", "want host:port, got %q: %v", c.Addr, err)
	}
	if !strings.HasPrefix(c.Path, "/") {
		bad("path", "must start with /, got %q", c.Path)
	}
	if c.Token != "" && c.TokenFile != "" {
		bad("token_file", "set token or token_file, not both")
	}
	if c.MaxBodyBytes < 1 || c.MaxBodyBytes > maxBuffered {
		bad("max_body_bytes", "must be between 1 and ingest.max_buffered_bytes (%d), got %d", maxBuffered, c.MaxBodyBytes)
	}
	if c.AdmitWait < 0 {
		bad("admit_wait", "must not be negative, got %s", c.AdmitWait)
	}
	if c.RetryAfter <= 0 {
		bad("retry_after", "must be positive, got %s", c.RetryAfter)
	}
	if c.AckTimeout <= 0 {
		bad("ack_timeout", "must be positive, got %s", c.AckTimeout)
	}
	if c.ReadTimeout <= 0 {
		bad("read_timeout", "must be positive, got %s", c.ReadTimeout)
	}
	errs = append(errs, c.FormatConfig.Validate("ingest.http"))
	if c.MinBytesPerSecond < 0 {
		bad("min_bytes_per_second", "must not be negative, got %d", c.MinBytesPerSecond)
	}
	if c.MinBytesPerSecond > 0 && c.MinRateWindow < time.Second {
		bad("min_rate_window", "must be at least 1s when ingest.http.min_bytes_per_second is set, got %s", c.MinRateWindow)
	}
	return errors.Join(errs...)
}

func (c FilesConfig) validate() error {
	var errs []error
	stdin := 0
	for i, p := range c.Paths {
		switch p {
		case "":
			errs = append(errs, fmt.Errorf("ingest.files.paths[%d]: empty path", i))
		case "-":
			if stdin++; stdin == 2 {
				errs = append(errs, fmt.Errorf(`ingest.files.paths[%d]: "-" (standard input) may be listed once`, i))
			}
		}
	}
	if c.Progress < 0 {
		errs = append(errs, fmt.Errorf("ingest.files.progress: must not be negative, got %s", c.Progress))
	}
	errs = append(errs, c.FormatConfig.Validate("ingest.files"))
	return errors.Join(errs...)
}

// readToken returns the token, from tok or else from the file named file.
// key names the token_file key in errors.
func readToken(tok Secret, file, key string) (Secret, error) {
	if file == "" {
		return tok, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("%s: %s is empty", key, file)
	}
	return Secret(t), nil
}

// prefixed puts prefix before every message joined in err.
func prefixed(prefix string, err error) error {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			errs = append(errs, fmt.Errorf("%s%w", prefix, e))
		}
		return errors.Join(errs...)
	}
	return fmt.Errorf("%s%w", prefix, err)
}
