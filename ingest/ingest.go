// Package ingest is bend's edge: it takes events from firehose sources and
// writes each one into Kafka, keyed, without waiting on anything downstream.
// An event counts as accepted only when Kafka has acknowledged it; sources
// learn that through the done callback of Publish, and the HTTP receiver
// answers 2xx only then.
//
// Sources (any combination, each configured under "ingest"):
//
//   - synthetic: the built-in generator (internal/synth), keyed by author;
//   - stream: a client reading a long-lived chunked NDJSON response, with
//     reconnection (exponential backoff with jitter);
//   - http: a receiver of POSTed NDJSON or JSON arrays, with bearer-token
//     auth, size limits (413), gzip bodies (other encodings 415), a minimum
//     transfer rate (408), per-line errors (400) and 503 + Retry-After
//     when ingest is saturated;
//   - files: NDJSON files (".gz" too) and standard input, replayed once;
//   - jetstream: a Bluesky Jetstream WebSocket client;
//   - sse: a Server-Sent Events client (Wikimedia EventStreams, Mastodon).
//
// The jetstream and sse sources stamp every record with its publisher
// cursor (headers bend-source, bend-cursor, bend-resume) and, on start,
// resume the publisher from the newest cursor Kafka acknowledged (see
// cursor.go and docs/sources.md).
//
// Each source reading events has a format (ingest.<source>.format and
// .fields, see internal/activity and docs/formats.md): the event is mapped
// once, here, onto the fields bend reads; its record carries the headers
// bend-format and bend-fields (the mapped fields), or bend-kind for a
// non-activity event (a delete, a compliance notice), which the source
// passes on, sends to its own topic or drops (ingest.<source>.non_activity).
//
// Every received event is validated at the edge (see checker.check): size,
// UTF-8, NUL bytes, nesting depth, JSON syntax, the "id" and the types bend
// reads, and the key field (ingest.key_field). An invalid event is
// dead-lettered with the reason (headers bend-dlq-reason, bend-dlq-stage =
// ingest, bend-dlq-time, bend-dlq-source, bend-dlq-line) or rejected, per
// ingest.on_invalid; it is always counted and never stops a source.
//
// Backpressure: ingest holds at most ingest.producer.max_in_flight records
// and ingest.max_buffered_bytes of events between reading them and Kafka's
// acknowledgement. When Kafka is slow or down that buffer fills: the stream
// and file sources stop reading (the stream's server sees TCP backpressure),
// the synthetic source falls behind, and the HTTP receiver answers 503.
// Nothing acknowledged is ever dropped: records Kafka refuses are re-sent
// until accepted (internal/kafka.Producer).
//
// Metrics (<source> is synthetic, stream, http or files):
//
//	ingest.published                 meter of events Kafka acknowledged (dead letters excluded)
//	ingest.rejected                  counter of events refused as invalid
//	ingest.dead_letters              counter of invalid events Kafka acknowledged on the dead-letter topic
//	ingest.failed                    counter of records Kafka never acknowledged (forced stop only)
//	ingest.buffered_bytes            gauge of event bytes held until Kafka's acknowledgement
//	ingest.buffered_records          gauge of records held until Kafka's acknowledgement
//	ingest.producer.retries          counter of re-sends after Kafka refused a batch
//	ingest.packed_records            counter of records packing several events (ingest.batching, pack.go)
//	ingest.packed_events             counter of events in them
//	ingest.<source>.events           meter of valid events read
//	ingest.<source>.published        meter of those events Kafka acknowledged
//	ingest.<source>.rejected         counter of invalid events read
//	ingest.<source>.bytes            counter of bytes read (stream, http, files)
//	ingest.stream.connects           counter of streams opened (answered 200)
//	ingest.stream.disconnects        counter of open streams that ended (EOF, error, idle timeout)
//	ingest.stream.reconnects         counter of connection attempts after the first
//	ingest.stream.connect_errors     counter of attempts that failed (network error or non-200)
//	ingest.http.requests             meter of requests received
//	ingest.http.throttled            counter of 503 answers (saturated, or Kafka too slow to ack)
//	ingest.http.unauthorized         counter of 401 answers
//	ingest.http.too_large            counter of 413 answers
//	ingest.http.bad_requests         counter of 400 answers
//	ingest.http.too_slow             counter of 408 answers (body under min_bytes_per_second, or past read_timeout)
//	ingest.files.done                counter of files replayed to the end
//	ingest.<jetstream|sse>.connects, .disconnects, .reconnects, .connect_errors  as for stream
//	ingest.<jetstream|sse>.duplicates counter of events dropped as read twice (the resume overlap)
//	ingest.<jetstream|sse>.gaps       counter of resumes that found the publisher's replay window exceeded
//	ingest.sse.skipped               counter of events of types not in ingest.sse.events
//	ingest.<source>.non_activity     counter of non-activity events written (pass, topic)
//	ingest.<source>.non_activity_dropped  counter of non-activity events dropped
package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/kafka"
	"github.com/bendstream/bend/internal/metricnames"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"
)

// Headers of a dead-letter record written by ingest. The record's value is
// the event's raw bytes (of an event over ingest.max_event_bytes, its first
// 4096 bytes); it has no key.
const (
	HeaderDLQReason = "bend-dlq-reason" // why the event was rejected
	HeaderDLQStage  = "bend-dlq-stage"  // "ingest"
	HeaderDLQTime   = "bend-dlq-time"   // RFC 3339 time of the rejection, UTC
	HeaderDLQSource = "bend-dlq-source" // the source: stream, http or files
	HeaderDLQLine   = "bend-dlq-line"   // 1-based line in the file, stream connection or HTTP body (element of a JSON array body)
)

// deadLetterPrefix is how much of an oversized event a dead letter keeps.
const deadLetterPrefix = 4096

// Ingest runs the configured sources and their shared producer. Publish and
// Addr are safe for concurrent use.
type Ingest struct {
	cfg      Config
	topic    string
	dlqTopic string
	producer *kafka.Producer
	log      logrus.FieldLogger
	reg      metrics.Registry
	check    checker
	sources  []source
	brokers  []string       // for the resume scan of the jetstream and sse sources
	sc       *sarama.Config // the producer's copy of the base config

	// win bounds what ingest holds between a source and Kafka's
	// acknowledgement: ingest.producer.max_in_flight records, so that the
	// producer's own window never blocks a record that got room here, and
	// ingest.max_buffered_bytes of event bytes.
	win *window

	packer *packer // ingest.batching, or nil (pack.go)

	meters                        *meters
	published                     metrics.Meter
	rejected, failed, deadLetters metrics.Counter
}

// source is one firehose input. Run publishes through in until ctx ends
// (returning nil), it runs out of input (nil), or it fails.
type source interface {
	Name() string
	Run(ctx context.Context, in *Ingest) error
}

// Option adjusts an Ingest beyond its Config; for tests and embedding.
type Option func(*options)

type options struct {
	stdin io.Reader
}

// WithStdin makes the files source read r for the path "-" instead of
// os.Stdin.
func WithStdin(r io.Reader) Option { return func(o *options) { o.stdin = r } }

// New validates cfg, connects the producer to brokers, and prepares the
// enabled sources: it reads token files, checks that files to replay exist,
// and binds the HTTP receiver's listener (see Addr). Events go to topic;
// invalid events, when ingest.on_invalid is dead_letter, to deadLetterTopic.
// sc is the base sarama config; New does not modify it (its copy gets longer
// metadata and produce retry backoffs, see rideOutRestarts, so if no broker
// answers New fails only after about 45s). The caller must call Run, which
// releases everything.
func New(cfg Config, brokers []string, sc *sarama.Config, topic, deadLetterTopic string, log logrus.FieldLogger, reg metrics.Registry, opts ...Option) (*Ingest, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if topic == "" || (deadLetterTopic == "" && cfg.OnInvalid == OnInvalidDeadLetter) {
		return nil, errors.New("ingest: topic and dead-letter topic must be named")
	}
	o := options{stdin: os.Stdin}
	for _, opt := range opts {
		opt(&o)
	}
	ms := &meters{reg: reg}
	in := &Ingest{cfg: cfg, topic: topic, dlqTopic: deadLetterTopic, log: log, reg: reg,
		check:       newChecker(cfg),
		win:         newWindow(cfg.Producer.MaxInFlight, cfg.MaxBufferedBytes),
		meters:      ms,
		published:   ms.meter(metricnames.IngestPublished),
		rejected:    metrics.GetOrRegisterCounter(metricnames.IngestRejected, reg),
		failed:      metrics.GetOrRegisterCounter(metricnames.IngestFailed, reg),
		deadLetters: metrics.GetOrRegisterCounter(metricnames.IngestDeadLetters, reg),
	}
	reg.GetOrRegister(metricnames.IngestBufferedBytes, metrics.NewFunctionalGauge(func() int64 { _, n := in.win.held(); return n }))
	reg.GetOrRegister(metricnames.IngestBufferedRecords, metrics.NewFunctionalGauge(func() int64 { r, _ := in.win.held(); return r }))

	var err error
	if cfg.Synthetic.Enabled {
		in.sources = append(in.sources, &syntheticSource{cfg: cfg.Synthetic.Config, m: in.sourceMetrics("synthetic")})
	}
	if cfg.Stream.Enabled {
		var s *streamSource
		if s, err = newStreamSource(cfg.Stream, in); err != nil {
			return nil, err
		}
		in.sources = append(in.sources, s)
	}
	if cfg.Jetstream.Enabled {
		var s *jetstreamSource
		if s, err = newJetstreamSource(cfg.Jetstream, in); err != nil {
			return nil, err
		}
		in.sources = append(in.sources, s)
	}
	if cfg.SSE.Enabled {
		var s *sseSource
		if s, err = newSSESource(cfg.SSE, in); err != nil {
			return nil, err
		}
		in.sources = append(in.sources, s)
	}
	if len(cfg.Files.Paths) > 0 {
		var s *filesSource
		if s, err = newFilesSource(cfg.Files, o.stdin, in); err != nil {
			return nil, err
		}
		in.sources = append(in.sources, s)
	}
	// The listener last, so that an error above leaves nothing bound.
	var hs *httpSource
	if cfg.HTTP.Enabled {
		if hs, err = newHTTPSource(cfg.HTTP, in); err != nil {
			return nil, err
		}
	}

	pc := *sc
	rideOutRestarts(&pc)
	in.brokers, in.sc = brokers, &pc
	in.producer, err = kafka.NewProducer(brokers, &pc, cfg.Producer, "ingest.producer", log, reg)
	if err != nil {
		if hs != nil {
			hs.ln.Close()
		}
		return nil, fmt.Errorf("ingest: %w", err)
	}
	if cfg.Batching.Enabled() {
		if in.packer, err = in.newPacker(); err != nil {
			_ = in.producer.Close(context.Background())
			if hs != nil {
				hs.ln.Close()
			}
			return nil, fmt.Errorf("ingest: %w", err)
		}
	}
	if hs != nil {
		in.sources = append(in.sources, hs)
	}
	return in, nil
}

// rideOutRestarts makes sarama itself wait out a broker restart (up to
// about 45s), where the defaults fail records after about a second: when
// sarama cannot refresh metadata it fails a record at once, whatever its
// produce retries, and the records then go through the shared producer's
// re-send loop, which retries them one at a time with a growing backoff
// (see the report on internal/kafka.Producer). Retrying inside sarama also
// keeps the idempotent producer's sequence. Only settings that
// kafka.ProducerConfig.Apply leaves alone are set, and only when unset.
func rideOutRestarts(sc *sarama.Config) {
	if sc.Metadata.Retry.BackoffFunc == nil {
		sc.Metadata.Retry.Max = max(sc.Metadata.Retry.Max, 15)
		sc.Metadata.Retry.BackoffFunc = func(retries, _ int) time.Duration { return backoffStep(retries, 250*time.Millisecond, 4*time.Second) }
	}
	if sc.Producer.Retry.BackoffFunc == nil {
		sc.Producer.Retry.BackoffFunc = retryBackoff
	}
}

// retryBackoff is sarama's wait before its produce retry number retries
// (from 0): 100ms, doubling, capped at 2s; about 13s over Apply's 10 retries.
func retryBackoff(retries, _ int) time.Duration {
	return backoffStep(retries, 100*time.Millisecond, 2*time.Second)
}

// backoffStep is lo doubled n times, capped at hi.
func backoffStep(n int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 0; i < n && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// Addr returns the address the HTTP receiver listens on, or nil when it is
// disabled. It is bound by New, so Addr is valid before Run.
func (in *Ingest) Addr() net.Addr {
	for _, s := range in.sources {
		if h, ok := s.(*httpSource); ok {
			return h.ln.Addr()
		}
	}
	return nil
}

// Publish sends one event to Kafka, keyed by key. It blocks while ingest's
// buffer is full (ingest.max_buffered_bytes, ingest.producer.max_in_flight);
// if ctx ends first it returns ctx.Err() and done is never called.
// Otherwise done (if not nil) is called exactly once, from another
// goroutine: nil when Kafka acknowledged the event, an error only if ingest
// was stopped before Kafka accepted it. Publish does not validate value;
// value must not be modified afterwards. Safe for concurrent use; must not
// be called after Run returned.
func (in *Ingest) Publish(ctx context.Context, key, value []byte, done func(error)) error {
	return in.publish(ctx, nil, key, value, done)
}

// publish is Publish, counting the event in src's metrics (src may be nil).
func (in *Ingest) publish(ctx context.Context, src *sourceMetrics, key, value []byte, done func(error)) error {
	size := int64(len(value))
	if err := in.reserve(ctx, 1, size); err != nil {
		return err
	}
	return in.send(ctx, in.event(src, key, value), size, src, false, done)
}

// event builds the record of a valid event.
func (in *Ingest) event(src *sourceMetrics, key, value []byte) *sarama.ProducerMessage {
	if src != nil {
		src.events.Mark(1)
	}
	m := &sarama.ProducerMessage{Topic: in.topic, Value: sarama.ByteEncoder(value)}
	if len(key) > 0 {
		m.Key = sarama.ByteEncoder(key)
	}
	return m
}

// deadLetter builds the dead-letter record of an invalid event raw, read
// from the source named source at line (0: unknown).
func (in *Ingest) deadLetter(source string, raw []byte, reason error, line int) *sarama.ProducerMessage {
	h := []sarama.RecordHeader{
		{Key: []byte(HeaderDLQReason), Value: []byte(quoteReason(reason))},
		{Key: []byte(HeaderDLQStage), Value: []byte("ingest")},
		{Key: []byte(HeaderDLQTime), Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
		{Key: []byte(HeaderDLQSource), Value: []byte(source)},
	}
	if line > 0 {
		h = append(h, sarama.RecordHeader{Key: []byte(HeaderDLQLine), Value: strconv.AppendInt(nil, int64(line), 10)})
	}
	return &sarama.ProducerMessage{Topic: in.dlqTopic, Value: sarama.ByteEncoder(raw), Headers: h}
}

// reserve waits until ingest may hold records more records and size more
// bytes, and takes that room. On error (ctx ended) it holds nothing.
func (in *Ingest) reserve(ctx context.Context, records, size int64) error {
	return in.win.acquire(ctx, records, size)
}

// release gives back room taken by reserve.
func (in *Ingest) release(records, size int64) { in.win.release(records, size) }

// send hands m to the producer. The caller must have reserved one record and
// size bytes; send releases them when Kafka acknowledged m, then calls done
// (if not nil), or right away if it returns an error (ctx ended; done is
// then never called). m counts as a published event of src (may be nil), or
// as a dead letter if dead.
func (in *Ingest) send(ctx context.Context, m *sarama.ProducerMessage, size int64, src *sourceMetrics, dead bool, done func(error)) error {
	send := in.producer.Send
	if in.packer != nil && !dead && m.Topic == in.topic {
		send = in.packer.send // packs it with others of its partition
	}
	err := send(ctx, m, func(err error) {
		in.release(1, size)
		switch {
		case err != nil:
			in.failed.Inc(1)
		case dead:
			in.deadLetters.Inc(1)
		default:
			in.published.Mark(1)
			if src != nil {
				src.published.Mark(1)
			}
		}
		if done != nil {
			done(err)
		}
	})
	if err != nil {
		in.release(1, size)
	}
	return err
}

// rejectEvent counts an invalid event of src (raw, at line n) and, if
// ingest.on_invalid is dead_letter, sends its dead letter, blocking like
// Publish; raw must not be modified afterwards. It reports whether a record
// was sent, so that done will be called. It fails only if ctx ends.
func (in *Ingest) rejectEvent(ctx context.Context, src *sourceMetrics, raw []byte, n int, reason error, done func(error)) (sent bool, err error) {
	in.rejected.Inc(1)
	src.rejected.Inc(1)
	if in.cfg.OnInvalid != OnInvalidDeadLetter {
		return false, nil
	}
	if len(raw) > deadLetterPrefix && errors.Is(reason, errTooLarge) {
		raw = raw[:deadLetterPrefix]
	}
	size := int64(len(raw))
	if err := in.reserve(ctx, 1, size); err != nil {
		return false, err
	}
	if err := in.send(ctx, in.deadLetter(src.name, raw, reason, n), size, src, true, done); err != nil {
		return false, err
	}
	return true, nil
}

// Run runs every source until ctx ends or one fails, then waits (up to
// ingest.close_timeout) for Kafka to acknowledge everything published, and
// returns. A stop through ctx is not an error. A source that runs out of
// input (the files source) just stops; Run, and Publish, go on until ctx
// ends. It returns the first source's failure, or the producer's if records
// were still unacknowledged at the deadline. Run must be called exactly
// once.
func (in *Ingest) Run(ctx context.Context) error {
	stopFolding := make(chan struct{})
	defer close(stopFolding)
	if in.packer != nil {
		in.packer.start()
	}
	go in.meters.foldEvery(time.Second, stopFolding)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { <-gctx.Done(); return nil }) // keep the producer until the stop
	for _, s := range in.sources {
		g.Go(func() error {
			err := s.Run(gctx, in)
			if err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("source %s: %w", s.Name(), err)
			}
			return nil
		})
	}
	err := g.Wait()
	cctx, cancel := context.WithTimeout(context.Background(), in.cfg.CloseTimeout)
	defer cancel()
	if in.packer != nil {
		in.packer.close(cctx) // hands what it holds to the producer
	}
	if cerr := in.producer.Close(cctx); cerr != nil {
		err = errors.Join(err, fmt.Errorf("ingest: %w", cerr))
	}
	return err
}

// sourceMetrics are one source's metrics, ingest.<source>.*.
type sourceMetrics struct {
	name      string
	events    metrics.Meter
	published metrics.Meter
	rejected  metrics.Counter
	bytes     metrics.Counter
}

func (in *Ingest) sourceMetrics(name string) *sourceMetrics {
	return &sourceMetrics{name: name,
		events:    in.meters.meter(metricnames.Source(name, metricnames.SourceEvents)),
		published: in.meters.meter(metricnames.Source(name, metricnames.SourcePublished)),
		rejected:  metrics.GetOrRegisterCounter(metricnames.Source(name, metricnames.SourceRejected), in.reg),
		bytes:     metrics.GetOrRegisterCounter(metricnames.Source(name, metricnames.SourceBytes), in.reg),
	}
}

// acks collects the acknowledgements of a group of records (one HTTP
// request, one file): done closes once the group is sealed and every record
// added has been acknowledged (or cancelled). Safe for concurrent use.
type acks struct {
	mu       sync.Mutex
	pending  int
	sealed   bool
	complete bool
	failed   int
	err      error // the first failure
	done     chan struct{}
	onDone   func() // called once, when done closes
}

func newAcks(onDone func()) *acks { return &acks{done: make(chan struct{}), onDone: onDone} }

// add counts one more record and returns its done callback. If the record
// is not sent after all, call cancel instead of the callback.
func (a *acks) add() func(error) {
	a.mu.Lock()
	a.pending++
	a.mu.Unlock()
	return a.ack
}

func (a *acks) ack(err error) {
	a.mu.Lock()
	a.pending--
	if err != nil {
		a.failed++
		if a.err == nil {
			a.err = err
		}
	}
	a.finishLocked()
}

// cancel uncounts a record added but never sent.
func (a *acks) cancel() {
	a.mu.Lock()
	a.pending--
	a.finishLocked()
}

// seal says no record will be added any more.
func (a *acks) seal() {
	a.mu.Lock()
	a.sealed = true
	a.finishLocked()
}

// finishLocked closes done when the group is complete, and unlocks a.mu.
func (a *acks) finishLocked() {
	now := a.sealed && a.pending == 0 && !a.complete
	if now {
		a.complete = true
	}
	a.mu.Unlock()
	if now {
		close(a.done)
		if a.onDone != nil {
			a.onDone()
		}
	}
}

// wait blocks until the group is complete or ctx ends, and returns the
// first failure, or ctx.Err().
func (a *acks) wait(ctx context.Context) error {
	select {
	case <-a.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return fmt.Errorf("%d records not acknowledged by Kafka: %w", a.failed, a.err)
	}
	return nil
}
