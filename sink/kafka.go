package sink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/kafka"
	"github.com/bendstream/bend/internal/pack"
)

// KafkaConfig is the "sink.kafka" section of config.yaml.
type KafkaConfig struct {
	// Enabled writes enriched events to kafka.topics.output. Default true.
	// Dead letters always go to kafka.topics.dead_letter.
	Enabled bool `mapstructure:"enabled"`
	// ProducerConfig tunes the sink's producer (keys sink.kafka.max_in_flight,
	// compression, linger, batch_bytes, retry_backoff).
	kafka.ProducerConfig `mapstructure:",squash"`
	// CloseTimeout bounds the wait for unacknowledged records when the sink
	// stops. Default 30s.
	CloseTimeout time.Duration `mapstructure:"close_timeout"`
	// ExactlyOnce writes enriched events and dead letters through a
	// transactional producer that commits the consumed offsets in the same
	// transaction: a read_committed consumer sees each event exactly once,
	// even across crashes. It turns on distributor.ordered and needs the
	// Kafka output alone (no file or stdout output). Default false.
	ExactlyOnce bool `mapstructure:"exactly_once"`
	// TransactionalID identifies this instance's transactional producer; it
	// must be stable across restarts and unique per instance. Empty means
	// "bend-" + distributor.group. Default "".
	TransactionalID string `mapstructure:"transactional_id"`
	// TxnInterval bounds how long records wait for their transaction to
	// commit. Default 100ms.
	TxnInterval time.Duration `mapstructure:"txn_interval"`
	// TxnMaxRecords bounds the records in one transaction. Default 5000.
	TxnMaxRecords int `mapstructure:"txn_max_records"`
	// TxnTimeout is how long the broker lets a transaction stay open before
	// aborting it: after a crash, read_committed consumers of the output wait
	// at most this long for the dead instance's open transaction. Default 10s.
	TxnTimeout time.Duration `mapstructure:"txn_timeout"`
	// Batching packs enriched events of one output partition into one
	// record for consumers that read packed records (internal/pack,
	// sink/pack.go). Off by default: plain consumers read one event per
	// record. Not with exactly_once.
	Batching pack.Config `mapstructure:"batching"`
}

// DefaultKafkaConfig returns the documented defaults.
func DefaultKafkaConfig() KafkaConfig {
	return KafkaConfig{Enabled: true, ProducerConfig: kafka.DefaultProducerConfig(), CloseTimeout: 30 * time.Second,
		TxnInterval: 100 * time.Millisecond, TxnMaxRecords: 5000, TxnTimeout: 10 * time.Second, Batching: pack.DefaultConfig()}
}

// Validate reports every invalid field by its config.yaml key.
func (c KafkaConfig) Validate() error {
	errs := []error{c.ProducerConfig.Validate("sink.kafka")}
	if c.CloseTimeout <= 0 {
		errs = append(errs, errors.New("sink.kafka.close_timeout: must be positive"))
	}
	if c.TxnInterval <= 0 {
		errs = append(errs, errors.New("sink.kafka.txn_interval: must be positive"))
	}
	if c.TxnTimeout < time.Second || c.TxnTimeout < 2*c.TxnInterval {
		errs = append(errs, errors.New("sink.kafka.txn_timeout: must be at least 1s and twice sink.kafka.txn_interval"))
	}
	if c.TxnMaxRecords < 1 {
		errs = append(errs, fmt.Errorf("sink.kafka.txn_max_records: must be at least 1, got %d", c.TxnMaxRecords))
	}
	errs = append(errs, c.Batching.Validate("sink.kafka.batching", c.BatchBytes))
	if c.ExactlyOnce && c.Batching.Enabled() {
		errs = append(errs, errors.New("sink.kafka.batching: not available with sink.kafka.exactly_once"))
	}
	if c.ExactlyOnce && !c.Enabled {
		errs = append(errs, errors.New("sink.kafka.exactly_once: needs sink.kafka.enabled"))
	}
	return errors.Join(errs...)
}

// topicOutput sends to one topic through a shared producer.
type topicOutput struct {
	p     *kafka.Producer
	topic string
}

// Send hands r to the producer in the message it carries (a record goes to
// one Kafka topic at most): with its key and value as encoders pointing at
// the record, the send allocates nothing.
func (t *topicOutput) Send(ctx context.Context, r *Record) error {
	return t.p.SendTo(ctx, r.message(t.topic), (*outcome)(r))
}

// message fills and returns the producer message r carries, for topic: its
// key and value encoders are r itself (nil key or value stay nil: no key,
// a tombstone).
func (r *Record) message(topic string) *sarama.ProducerMessage {
	r.msg = sarama.ProducerMessage{Topic: topic, Headers: r.Headers}
	if r.Key != nil {
		r.msg.Key = (*keyEncoder)(r)
	}
	if r.Value != nil {
		r.msg.Value = (*valueEncoder)(r)
	}
	return &r.msg
}

// keyEncoder and valueEncoder are a Record seen as the sarama.Encoder of its
// key or value: being pointers, they box into the interface without an
// allocation.
type (
	keyEncoder   Record
	valueEncoder Record
	outcome      Record // a Record as the producer's kafka.Completer
)

func (e *keyEncoder) Encode() ([]byte, error)   { return e.Key, nil }
func (e *keyEncoder) Length() int               { return len(e.Key) }
func (e *valueEncoder) Encode() ([]byte, error) { return e.Value, nil }
func (e *valueEncoder) Length() int             { return len(e.Value) }
func (o *outcome) Complete(err error)           { (*Record)(o).done(err) }

// Close is a no-op: the shared producer is closed by the Sink.
func (t *topicOutput) Close() error { return nil }
