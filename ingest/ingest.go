// Package ingest is bend's edge: it takes events from firehose sources and
// writes each one into Kafka, keyed, without waiting on anything downstream.
// An event counts as accepted only when Kafka has acknowledged it; sources
// learn that through the done callback of Publish.
//
// When Kafka is slow, the producer's bounded in-flight window fills and
// Publish blocks: the sources stop reading (or answer 503), which is the
// edge's backpressure. Nothing acknowledged is ever dropped.
//
// Metrics:
//
//	ingest.published         meter of events Kafka acknowledged
//	ingest.rejected          counter of events refused as invalid
//	ingest.failed            counter of events Kafka never acknowledged (forced stop only)
//	ingest.producer.retries  counter of re-sends after Kafka refused a batch
package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/kafka"
	"github.com/bendstream/bend/internal/synth"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"
)

// Config is the "ingest" section of config.yaml.
type Config struct {
	// Producer tunes the edge producer (keys ingest.producer.*).
	Producer kafka.ProducerConfig `mapstructure:"producer"`
	// CloseTimeout bounds the wait for Kafka's acknowledgements when ingest
	// stops. Default 30s.
	CloseTimeout time.Duration `mapstructure:"close_timeout"`
	// Synthetic configures the built-in synthetic firehose source.
	Synthetic SyntheticConfig `mapstructure:"synthetic"`
}

// SyntheticConfig is the "ingest.synthetic" section of config.yaml.
type SyntheticConfig struct {
	// Enabled runs the synthetic source. Default true.
	Enabled bool `mapstructure:"enabled"`
	// Config is the generator's configuration (keys ingest.synthetic.rate, ...).
	synth.Config `mapstructure:",squash"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Producer:     kafka.DefaultProducerConfig(),
		CloseTimeout: 30 * time.Second,
		Synthetic:    SyntheticConfig{Enabled: true, Config: synth.DefaultConfig()},
	}
}

// Validate reports every invalid field by its config.yaml key.
func (c Config) Validate() error {
	errs := []error{c.Producer.Validate("ingest.producer")}
	if c.CloseTimeout <= 0 {
		errs = append(errs, errors.New("ingest.close_timeout: must be positive"))
	}
	if c.Synthetic.Enabled {
		if err := c.Synthetic.Config.Validate(); err != nil {
			errs = append(errs, prefixed("ingest.", err))
		}
	}
	return errors.Join(errs...)
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

// Ingest runs the configured sources and their shared producer.
type Ingest struct {
	cfg       Config
	topic     string
	producer  *kafka.Producer
	log       logrus.FieldLogger
	reg       metrics.Registry
	published metrics.Meter
	failed    metrics.Counter
	sources   []source
}

// source is one firehose input. Run publishes through in until ctx ends
// (returning nil) or it fails.
type source interface {
	Name() string
	Run(ctx context.Context, in *Ingest) error
}

// New connects the producer to brokers and prepares the sources. Events go
// to topic. sc is the base sarama config.
func New(cfg Config, brokers []string, sc *sarama.Config, topic string, log logrus.FieldLogger, reg metrics.Registry) (*Ingest, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p, err := kafka.NewProducer(brokers, sc, cfg.Producer, "ingest.producer", log, reg)
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	in := &Ingest{cfg: cfg, topic: topic, producer: p, log: log, reg: reg,
		published: metrics.GetOrRegisterMeter("ingest.published", reg),
		failed:    metrics.GetOrRegisterCounter("ingest.failed", reg),
	}
	if cfg.Synthetic.Enabled {
		in.sources = append(in.sources, &syntheticSource{cfg: cfg.Synthetic.Config})
	}
	return in, nil
}

// Publish sends one event to Kafka, keyed by key. It blocks while the
// producer's in-flight window is full; if ctx ends first it returns
// ctx.Err() and done is never called. Otherwise done is called exactly once:
// nil when Kafka acknowledged the event. value must not be modified
// afterwards. Safe for concurrent use.
func (in *Ingest) Publish(ctx context.Context, key, value []byte, done func(error)) error {
	m := &sarama.ProducerMessage{Topic: in.topic, Key: sarama.ByteEncoder(key), Value: sarama.ByteEncoder(value)}
	return in.producer.Send(ctx, m, func(err error) {
		if err != nil {
			in.failed.Inc(1)
		} else {
			in.published.Mark(1)
		}
		if done != nil {
			done(err)
		}
	})
}

// Run runs every source until ctx ends, then waits (up to
// ingest.close_timeout) for Kafka to acknowledge everything published, and
// returns. A stop through ctx is not an error.
func (in *Ingest) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
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
	if cerr := in.producer.Close(cctx); cerr != nil {
		err = errors.Join(err, fmt.Errorf("ingest: %w", cerr))
	}
	return err
}
