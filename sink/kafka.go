package sink

import (
	"context"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/kafka"
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
}

// DefaultKafkaConfig returns the documented defaults.
func DefaultKafkaConfig() KafkaConfig {
	return KafkaConfig{Enabled: true, ProducerConfig: kafka.DefaultProducerConfig(), CloseTimeout: 30 * time.Second}
}

// Validate reports every invalid field by its config.yaml key.
func (c KafkaConfig) Validate() error { return c.ProducerConfig.Validate("sink.kafka") }

// topicOutput sends to one topic through a shared producer.
type topicOutput struct {
	p     *kafka.Producer
	topic string
}

func (t *topicOutput) Send(ctx context.Context, r *Record) error {
	m := &sarama.ProducerMessage{Topic: t.topic, Key: sarama.ByteEncoder(r.Key), Value: sarama.ByteEncoder(r.Value), Headers: r.Headers}
	return t.p.Send(ctx, m, r.done)
}

// Close is a no-op: the shared producer is closed by the Sink.
func (t *topicOutput) Close() error { return nil }
