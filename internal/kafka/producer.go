package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/semaphore"
)

// ProducerConfig tunes a Producer. Stages embed it in their own config
// sections, so the keys below are relative to the stage's (for example
// "sink.kafka.max_in_flight").
type ProducerConfig struct {
	// MaxInFlight bounds records handed to Kafka and not yet acknowledged;
	// Send blocks while it is reached. Default 8192.
	MaxInFlight int64 `mapstructure:"max_in_flight"`
	// Compression is none, gzip, snappy, lz4 or zstd. Default lz4.
	Compression string `mapstructure:"compression"`
	// Linger is how long the producer waits to fill a batch. Default 5ms.
	Linger time.Duration `mapstructure:"linger"`
	// BatchBytes is the target batch size in bytes. Default 1 MiB.
	BatchBytes int `mapstructure:"batch_bytes"`
	// RetryBackoff is the first wait before re-sending a record that Kafka
	// did not accept after the client's own retries; it doubles up to 30s.
	// Records are re-sent until accepted or until the producer is closed
	// with a deadline. Default 250ms.
	RetryBackoff time.Duration `mapstructure:"retry_backoff"`
}

// DefaultProducerConfig returns the documented defaults.
func DefaultProducerConfig() ProducerConfig {
	return ProducerConfig{MaxInFlight: 8192, Compression: "lz4", Linger: 5 * time.Millisecond, BatchBytes: 1 << 20, RetryBackoff: 250 * time.Millisecond}
}

// Validate reports every invalid field, prefixing keys with section.
func (c ProducerConfig) Validate(section string) error {
	var errs []error
	if c.MaxInFlight < 1 {
		errs = append(errs, fmt.Errorf("%s.max_in_flight: must be at least 1, got %d", section, c.MaxInFlight))
	}
	var codec sarama.CompressionCodec
	if err := codec.UnmarshalText([]byte(c.Compression)); err != nil {
		errs = append(errs, fmt.Errorf("%s.compression: %w", section, err))
	}
	if c.Linger < 0 {
		errs = append(errs, fmt.Errorf("%s.linger: must not be negative", section))
	}
	if c.BatchBytes < 1 {
		errs = append(errs, fmt.Errorf("%s.batch_bytes: must be at least 1, got %d", section, c.BatchBytes))
	}
	if c.RetryBackoff <= 0 {
		errs = append(errs, fmt.Errorf("%s.retry_backoff: must be positive", section))
	}
	return errors.Join(errs...)
}

// Apply sets the durable, idempotent producer settings bend uses for every
// Kafka write on sc.
func (c ProducerConfig) Apply(sc *sarama.Config) error {
	var codec sarama.CompressionCodec
	if err := codec.UnmarshalText([]byte(c.Compression)); err != nil {
		return err
	}
	sc.Producer.Idempotent = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Net.MaxOpenRequests = 1
	sc.Producer.Retry.Max = 10
	sc.Producer.Retry.Backoff = 100 * time.Millisecond
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	sc.Producer.Compression = codec
	sc.Producer.Flush.Frequency = c.Linger
	sc.Producer.Flush.Bytes = c.BatchBytes
	sc.Producer.MaxMessageBytes = max(sc.Producer.MaxMessageBytes, c.BatchBytes)
	sc.Producer.Partitioner = sarama.NewHashPartitioner
	return nil
}

// Producer is an idempotent, acks=all async producer whose every record ends
// in exactly one call of its done callback: nil once Kafka acknowledged it,
// or an error only when the producer is closed before Kafka accepted it.
// Records Kafka rejects are re-sent with backoff; nothing is dropped.
type Producer struct {
	p       sarama.AsyncProducer
	cfg     ProducerConfig
	log     logrus.FieldLogger
	sem     *semaphore.Weighted
	retries metrics.Counter
	warn    atomic.Int64 // failures since the last success, to rate-limit the log

	giveUp  chan struct{} // closed when Close's deadline passed
	wg      sync.WaitGroup
	closeMu sync.Once
	err     error
}

// Done is the callback attached to a record sent through Producer.
type Done func(err error)

// Completer receives a record's outcome as Done does. A pointer that
// implements it is attached to its message without a closure per record
// (SendTo).
type Completer interface {
	Complete(err error)
}

// NewProducer starts a producer. sc is the base config (Apply is called on a
// copy); metricPrefix names its metrics, e.g. "ingest.producer" gives
// "ingest.producer.retries".
func NewProducer(brokers []string, sc *sarama.Config, cfg ProducerConfig, metricPrefix string, log logrus.FieldLogger, reg metrics.Registry) (*Producer, error) {
	pc := *sc
	if err := cfg.Apply(&pc); err != nil {
		return nil, err
	}
	p, err := sarama.NewAsyncProducer(brokers, &pc)
	if err != nil {
		return nil, fmt.Errorf("starting producer: %w", err)
	}
	k := &Producer{p: p, cfg: cfg, log: log, sem: semaphore.NewWeighted(cfg.MaxInFlight),
		retries: metrics.GetOrRegisterCounter(metricPrefix+".retries", reg), giveUp: make(chan struct{})}
	k.wg.Add(2)
	go k.successes()
	go k.errors()
	return k, nil
}

// Send hands one record to Kafka, blocking while MaxInFlight records are
// unacknowledged. done is called exactly once, from another goroutine, unless
// Send returns an error (then never). If ctx ends while Send blocks, it
// returns ctx.Err(). Safe for concurrent use; must not be called after Close.
func (k *Producer) Send(ctx context.Context, m *sarama.ProducerMessage, done Done) error {
	return k.send(ctx, m, done)
}

// SendTo is Send with the outcome delivered to c.Complete.
func (k *Producer) SendTo(ctx context.Context, m *sarama.ProducerMessage, c Completer) error {
	return k.send(ctx, m, c)
}

// send attaches meta, a Done or a Completer, to m and hands it over.
func (k *Producer) send(ctx context.Context, m *sarama.ProducerMessage, meta any) error {
	if err := k.sem.Acquire(ctx, 1); err != nil {
		return err
	}
	m.Metadata = meta
	select {
	case k.p.Input() <- m:
		return nil
	case <-ctx.Done():
		k.sem.Release(1)
		return ctx.Err()
	}
}

func (k *Producer) successes() {
	defer k.wg.Done()
	for m := range k.p.Successes() {
		k.sem.Release(1)
		switch d := m.Metadata.(type) {
		case *resend:
			k.warn.Store(0) // the outage is over: log the next one's first failure
			d.done(nil)
		case Done:
			d(nil)
		case Completer:
			d.Complete(nil)
		}
	}
}

// errors re-sends every record Kafka rejected, each after its own backoff,
// until it is accepted or Close gives up. The reader never sleeps, so one
// outage's burst of failures is re-sent together once the broker is back.
func (k *Producer) errors() {
	defer k.wg.Done()
	for pe := range k.p.Errors() {
		k.retries.Inc(1)
		m := pe.Msg
		r, _ := m.Metadata.(*resend)
		if r == nil {
			var done Done
			switch d := m.Metadata.(type) {
			case Done:
				done = d
			case Completer:
				done = d.Complete
			}
			r = &resend{done: done, backoff: k.cfg.RetryBackoff}
		} else {
			r.backoff = min(2*r.backoff, 30*time.Second)
		}
		wait := r.backoff
		if k.warn.Load() < 1 || k.retries.Count()%1000 == 0 {
			// Log the first failure of an outage and then every 1000th.
			k.log.WithError(pe.Err).WithField("topic", m.Topic).Warnf("produce failed, re-sending in %s", wait)
		}
		k.warn.Add(1)
		m = &sarama.ProducerMessage{Topic: m.Topic, Key: m.Key, Value: m.Value, Headers: m.Headers, Timestamp: m.Timestamp, Metadata: r}
		// At most MaxInFlight such goroutines exist, since each record
		// still holds its slot.
		go func() {
			defer func() {
				// Input is closed once the client shut down.
				if recover() != nil {
					k.giveUpRecord(r, pe.Err)
				}
			}()
			select {
			case <-time.After(wait):
			case <-k.giveUp:
				k.giveUpRecord(r, pe.Err)
				return
			}
			select {
			case k.p.Input() <- m:
			case <-k.giveUp:
				k.giveUpRecord(r, pe.Err)
			}
		}()
	}
}

// resend carries a re-sent record's callback and its current backoff.
type resend struct {
	done    Done
	backoff time.Duration
}

func (k *Producer) giveUpRecord(r *resend, cause error) {
	k.sem.Release(1)
	r.done(fmt.Errorf("producer closed before Kafka accepted the record: %w", cause))
}

// Close waits until every record sent is acknowledged, or ctx ends, then
// closes the client. Records still unacknowledged when ctx ends get a non-nil
// done. Idempotent; returns the first call's error.
func (k *Producer) Close(ctx context.Context) error {
	k.closeMu.Do(func() {
		// All slots free means nothing is in flight, re-sends included.
		if err := k.sem.Acquire(ctx, k.cfg.MaxInFlight); err != nil {
			k.err = fmt.Errorf("records still unacknowledged at close: %w", err)
		}
		close(k.giveUp)
		// AsyncClose, not Close: Close would drain Successes and Errors
		// itself and swallow done callbacks that the readers must make.
		k.p.AsyncClose()
		k.wg.Wait()
	})
	return k.err
}
