// Package kafka holds what bend's stages share about talking to Kafka: the
// "kafka" section of config.yaml, the base sarama configuration built from
// it, and topic setup.
package kafka

import (
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/localbroker"
	metrics "github.com/rcrowley/go-metrics"
)

// Config is the "kafka" section of config.yaml.
type Config struct {
	// Brokers is the bootstrap list of a real cluster. Empty starts the
	// embedded single-process broker (see Embedded). Default empty.
	Brokers []string `mapstructure:"brokers"`
	// ClientID is sent to the brokers with every request. Default "bend".
	ClientID string `mapstructure:"client_id"`
	// Version is the lowest Kafka version bend may assume of the cluster.
	// Default "3.6.0" (works with Kafka 3.x and 4.x and the embedded broker).
	Version string `mapstructure:"version"`
	// Embedded configures the in-process broker used when Brokers is empty.
	Embedded localbroker.Config `mapstructure:"embedded"`
	// Topics names the topics bend reads and writes.
	Topics Topics `mapstructure:"topics"`
	// TLS encrypts and authenticates the connections to Brokers. Default off.
	TLS TLS `mapstructure:"tls"`
	// SASL authenticates bend to Brokers. Default off.
	SASL SASL `mapstructure:"sasl"`
}

// Topics names bend's topics and how bend creates them when they are missing.
type Topics struct {
	// Input receives raw activities from ingest. Default "bend.activities".
	Input string `mapstructure:"input"`
	// Output receives enriched activities from the Kafka sink. Default "bend.enriched".
	Output string `mapstructure:"output"`
	// DeadLetter receives records bend could not process, with the reason in
	// headers. Default "bend.deadletter".
	DeadLetter string `mapstructure:"dead_letter"`
	// Partitions is the partition count bend uses when it creates a missing
	// topic. Existing topics are left as they are. Default 8.
	Partitions int32 `mapstructure:"partitions"`
	// ReplicationFactor is used when bend creates a missing topic. Default 1.
	ReplicationFactor int16 `mapstructure:"replication_factor"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		ClientID: "bend",
		Version:  "3.6.0",
		Embedded: localbroker.DefaultConfig(),
		Topics: Topics{
			Input:             "bend.activities",
			Output:            "bend.enriched",
			DeadLetter:        "bend.deadletter",
			Partitions:        8,
			ReplicationFactor: 1,
		},
	}
}

// Validate reports every invalid field by its config.yaml key.
func (c Config) Validate() error {
	var errs []error
	if c.ClientID == "" {
		errs = append(errs, errors.New("kafka.client_id: must not be empty"))
	}
	if _, err := sarama.ParseKafkaVersion(c.Version); err != nil {
		errs = append(errs, fmt.Errorf("kafka.version: %w", err))
	}
	for i, b := range c.Brokers {
		if b == "" {
			errs = append(errs, fmt.Errorf("kafka.brokers[%d]: empty address", i))
		}
	}
	if len(c.Brokers) == 0 {
		errs = append(errs, c.Embedded.Validate())
		// The embedded broker listens in plaintext without authentication:
		// a client set up for TLS or SASL could not talk to it.
		if c.TLS.Enabled {
			errs = append(errs, errors.New("kafka.tls.enabled: needs kafka.brokers (the embedded broker does not serve TLS)"))
		}
		if c.SASL.Mechanism != "" {
			errs = append(errs, errors.New("kafka.sasl.mechanism: needs kafka.brokers (the embedded broker does not authenticate)"))
		}
	}
	errs = append(errs, c.TLS.validate(), c.SASL.validate())
	for key, v := range map[string]string{"input": c.Topics.Input, "output": c.Topics.Output, "dead_letter": c.Topics.DeadLetter} {
		if v == "" {
			errs = append(errs, fmt.Errorf("kafka.topics.%s: must not be empty", key))
		}
	}
	if c.Topics.Partitions < 1 {
		errs = append(errs, fmt.Errorf("kafka.topics.partitions: must be at least 1, got %d", c.Topics.Partitions))
	}
	if c.Topics.ReplicationFactor < 1 {
		errs = append(errs, fmt.Errorf("kafka.topics.replication_factor: must be at least 1, got %d", c.Topics.ReplicationFactor))
	}
	return errors.Join(errs...)
}

// Sarama returns the base client configuration every stage starts from,
// with TLS and SASL set from the "kafka.tls" and "kafka.sasl" sections (it
// reads their files: the CA, client certificate and password file).
// reg receives sarama's own metrics; nil disables them.
func (c Config) Sarama(reg metrics.Registry) (*sarama.Config, error) {
	v, err := sarama.ParseKafkaVersion(c.Version)
	if err != nil {
		return nil, fmt.Errorf("kafka.version: %w", err)
	}
	sc := sarama.NewConfig()
	sc.Version = v
	sc.ClientID = c.ClientID
	if reg != nil {
		sc.MetricRegistry = reg
	} else {
		sc.MetricRegistry = metrics.NewRegistry()
	}
	sc.Metadata.RefreshFrequency = time.Minute
	sc.Net.DialTimeout = 10 * time.Second
	if err := c.applySecurity(sc); err != nil {
		return nil, err
	}
	return sc, nil
}

// EnsureTopics creates each topic that does not exist yet, with the
// configured partition count and replication factor.
func EnsureTopics(brokers []string, sc *sarama.Config, t Topics, names ...string) error {
	admin, err := sarama.NewClusterAdmin(brokers, sc)
	if err != nil {
		return fmt.Errorf("connecting admin client: %w", err)
	}
	defer admin.Close()
	existing, err := admin.ListTopics()
	if err != nil {
		return fmt.Errorf("listing topics: %w", err)
	}
	for _, name := range names {
		if _, ok := existing[name]; ok {
			continue
		}
		err := admin.CreateTopic(name, &sarama.TopicDetail{
			NumPartitions:     t.Partitions,
			ReplicationFactor: t.ReplicationFactor,
		}, false)
		if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
			return fmt.Errorf("creating topic %s: %w", name, err)
		}
	}
	return nil
}
