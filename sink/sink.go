// Package sink delivers enriched activities to their outputs (a Kafka topic,
// an NDJSON file, stdout) and dead letters to the dead-letter topic, and
// acknowledges each record upstream only when every output holds it durably
// by that output's definition. The acknowledgement is what lets the
// distributor move the Kafka offset, so a sink never skips a record: it
// retries with backoff and, while it cannot deliver, lets backpressure stop
// intake.
//
// Metrics:
//
//	sink.emitted         meter of records accepted by every output
//	sink.dead_letters    meter of records written to the dead-letter topic
//	sink.failed          counter of records nacked (only at a forced stop)
//	sink.double_done     counter of output completions beyond a record's outputs (ignored)
//	sink.kafka.retries   counter of Kafka produce retries
//	sink.kafka.txn_commits, sink.kafka.txn_aborts  exactly-once transactions
//	sink.kafka.txn_produce_errors  counter of records a transaction failed to write (logged once per transaction)
//	sink.kafka.packed_records, sink.kafka.packed_events  output records packing several events, and their events (sink.kafka.batching)
//	sink.file.write_errors  counter of failed file/stdout writes (retried)
//	sink.webhook.posts, sink.webhook.retries       webhook batches
//	sink.latency         histogram of ingest-to-emit latency in microseconds
package sink

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/kafka"
	"github.com/bendstream/bend/internal/metricnames"
	"github.com/bendstream/bend/internal/metricsutil"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
)

// Record is one record to deliver. Its outcome is delivered exactly once:
// nil when every output accepted it, or the error that made an output give
// up; to Acker (with Index) when set, else to Ack.
type Record struct {
	Key, Value []byte
	// Headers are copied to Kafka outputs.
	Headers []sarama.RecordHeader
	// Timestamp is when the activity entered bend (its input record's
	// timestamp); the ingest-to-emit latency is measured from it.
	Timestamp time.Time
	// DeadLetter sends the record to the dead-letter topic only.
	DeadLetter bool
	// Ack receives the outcome, unless Acker is set.
	Ack func(err error)
	// Acker, when set, receives the outcome with Index instead of Ack: one
	// acknowledger for a whole batch of records, with no closure per record.
	Acker Acker
	// Index identifies the record to its Acker.
	Index int32
	// Source is the input record this one was made from, if any.
	Source *Source

	pending atomic.Int32
	err     atomic.Pointer[error]
	sink    *Sink                  // set by Sink.send; counts the outcome in done
	msg     sarama.ProducerMessage // the Kafka output's message (kafka.go)
}

// Acker receives the outcomes of the records that name it (Record.Acker),
// each identified by its Record.Index. It must not block.
type Acker interface {
	AckRecord(index int32, err error)
}

// Settle delivers the record's outcome to its Acker or its Ack. Outputs call
// it through done; whoever drops a record without sending it (a fenced
// claim) calls it directly.
func (r *Record) Settle(err error) {
	if r.Acker != nil {
		r.Acker.AckRecord(r.Index, err)
		return
	}
	r.Ack(err)
}

// done is called by each output once; the last one acks upstream. A call
// beyond the outputs' count is ignored and counted in sink.double_done, so a
// defective output can neither ack a record twice nor ack it early.
func (r *Record) done(err error) {
	if err != nil {
		e := err // only a failure allocates
		r.err.CompareAndSwap(nil, &e)
	}
	left := r.pending.Add(-1)
	if left < 0 {
		if r.sink != nil {
			r.sink.doubleDone.Inc(1)
		}
		return
	}
	if left == 0 {
		var final error
		if p := r.err.Load(); p != nil {
			final = *p
		}
		if r.sink != nil {
			r.sink.account(r, final)
		}
		r.Settle(final)
	}
}

// account counts a record's outcome in the sink's metrics.
func (s *Sink) account(r *Record, err error) {
	switch {
	case err != nil:
		s.failed.Inc(1)
	case r.DeadLetter:
		s.dead.Mark(1)
	default:
		s.emitted.Mark(1)
		if !r.Timestamp.IsZero() {
			s.latency.Update(time.Since(r.Timestamp).Microseconds())
		}
	}
}

// Config is the "sink" section of config.yaml.
type Config struct {
	// Kafka writes enriched events to kafka.topics.output.
	Kafka KafkaConfig `mapstructure:"kafka"`
	// File writes enriched events as NDJSON to a file.
	File FileConfig `mapstructure:"file"`
	// Stdout writes enriched events as NDJSON to standard output. Default false.
	Stdout bool `mapstructure:"stdout"`
	// Webhook POSTs enriched events in NDJSON batches to an HTTP endpoint.
	Webhook WebhookConfig `mapstructure:"webhook"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{Kafka: DefaultKafkaConfig(), File: DefaultFileConfig(), Webhook: DefaultWebhookConfig()}
}

// Validate reports every invalid field by its config.yaml key.
func (c Config) Validate() error {
	var errs []error
	errs = append(errs, c.Kafka.Validate(), c.File.Validate(), c.Webhook.Validate())
	if c.Kafka.ExactlyOnce && (c.File.Path != "" || c.Stdout || c.Webhook.URL != "") {
		errs = append(errs, errors.New("sink.kafka.exactly_once: the file, stdout and webhook outputs cannot take part in a transaction; turn them off"))
	}
	if !c.Kafka.Enabled && c.File.Path == "" && !c.Stdout && c.Webhook.URL == "" {
		errs = append(errs, errors.New("sink: no output enabled; set sink.kafka.enabled, sink.file.path, sink.stdout or sink.webhook.url"))
	}
	return errors.Join(errs...)
}

// output is one destination. Send hands r over, blocking while the output
// is saturated; the output calls r.done exactly once. Close flushes, waits for
// every outstanding done call, and releases the output.
type output interface {
	Send(ctx context.Context, r *Record) error
	Close() error
}

// Sink fans records out to its outputs.
type Sink struct {
	outs    []output
	dlq     output
	dlqOuts []output // []output{dlq}, built once
	// producer is shared by the output and dead-letter topics; closed last.
	producer     *kafka.Producer
	closeTimeout time.Duration
	log          logrus.FieldLogger
	emitted      metrics.Meter
	dead         metrics.Meter
	failed       metrics.Counter
	doubleDone   metrics.Counter
	latency      metrics.Histogram
}

// New builds a sink. producerCfg is the base sarama config (metrics registry
// set) and brokers the cluster to write to; outputTopic and deadLetterTopic
// name the Kafka topics.
func New(cfg Config, brokers []string, producerCfg *sarama.Config, outputTopic, deadLetterTopic string, log logrus.FieldLogger, reg metrics.Registry) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sink{
		log:     log,
		emitted: metrics.GetOrRegisterMeter(metricnames.SinkEmitted, reg),
		dead:    metrics.GetOrRegisterMeter(metricnames.SinkDeadLetters, reg),
		failed:  metrics.GetOrRegisterCounter(metricnames.SinkFailed, reg),

		doubleDone: metrics.GetOrRegisterCounter(metricnames.SinkDoubleDone, reg),
		latency:    metricsutil.GetOrRegisterHistogram(metricnames.SinkLatency, reg),
	}
	if cfg.Kafka.ExactlyOnce {
		if cfg.Kafka.TransactionalID == "" {
			return nil, errors.New("sink.kafka.transactional_id: must be set in exactly-once mode")
		}
		t, err := newTxnOutput(cfg.Kafka, brokers, producerCfg, outputTopic, deadLetterTopic, log, reg)
		if err != nil {
			return nil, err
		}
		s.outs = []output{t}
		s.dlq, s.dlqOuts = t, []output{t}
		return s, nil
	}
	p, err := kafka.NewProducer(brokers, producerCfg, cfg.Kafka.ProducerConfig, "sink.kafka", log, reg)
	if err != nil {
		return nil, fmt.Errorf("kafka sink: %w", err)
	}
	s.producer = p
	s.closeTimeout = cfg.Kafka.CloseTimeout
	s.dlq = &topicOutput{p: p, topic: deadLetterTopic}
	s.dlqOuts = []output{s.dlq}
	switch {
	case cfg.Kafka.Enabled && cfg.Kafka.Batching.Enabled():
		o, err := newPackedOutput(cfg.Kafka, brokers, producerCfg, p, outputTopic, reg) // pack.go
		if err != nil {
			_ = p.Close(context.Background())
			return nil, fmt.Errorf("kafka sink: %w", err)
		}
		s.outs = append(s.outs, o)
	case cfg.Kafka.Enabled:
		s.outs = append(s.outs, &topicOutput{p: p, topic: outputTopic})
	}
	if cfg.File.Path != "" {
		f, err := newFileOutput(cfg.File, log, reg)
		if err != nil {
			_ = p.Close(context.Background())
			return nil, err
		}
		s.outs = append(s.outs, f)
	}
	if cfg.Stdout {
		s.outs = append(s.outs, newStdoutOutput(cfg.File, log, reg))
	}
	if cfg.Webhook.URL != "" {
		w, err := newWebhookOutput(cfg.Webhook, log, reg)
		if err != nil {
			s.close()
			return nil, err
		}
		s.outs = append(s.outs, w)
	}
	return s, nil
}

// Run delivers records from in until in is closed, then flushes every
// output, waits for every acknowledgement and returns. If ctx ends first,
// records not yet delivered are nacked with ctx's error (the distributor will
// not commit past them) and Run returns ctx.Err().
func (s *Sink) Run(ctx context.Context, in <-chan *Record) error {
	defer s.close()
	for {
		select {
		case r, ok := <-in:
			if !ok {
				return nil
			}
			if err := s.send(ctx, r); err != nil {
				s.nackRest(in, err)
				return err
			}
		case <-ctx.Done():
			s.nackRest(in, ctx.Err())
			return ctx.Err()
		}
	}
}

// nackRest nacks, with err, the records already waiting in in at a hard
// stop, so none is left without an outcome. It does not wait for more.
func (s *Sink) nackRest(in <-chan *Record, err error) {
	for {
		select {
		case r, ok := <-in:
			if !ok {
				return
			}
			s.failed.Inc(1)
			r.Settle(err)
		default:
			return
		}
	}
}

func (s *Sink) send(ctx context.Context, r *Record) error {
	outs := s.outs
	if r.DeadLetter {
		outs = s.dlqOuts
	}
	r.sink = s // done counts the outcome, without a closure per record
	r.pending.Store(int32(len(outs)))
	for i, o := range outs {
		if err := o.Send(ctx, r); err != nil {
			// This and every later output will never call done.
			for range outs[i:] {
				r.done(err)
			}
			return fmt.Errorf("sink: %w", err)
		}
	}
	return nil
}

func (s *Sink) close() {
	for _, o := range s.outs {
		if err := o.Close(); err != nil {
			s.log.WithError(err).Error("closing sink output")
		}
	}
	if s.producer == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.closeTimeout)
	defer cancel()
	if err := s.producer.Close(ctx); err != nil {
		s.log.WithError(err).Error("closing kafka sink producer")
	}
}
