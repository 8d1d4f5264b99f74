// Package localbroker runs bend's embedded Kafka-protocol broker: an
// in-process, single-node broker (franz-go's kfake) that sarama talks to over
// the real wire protocol on 127.0.0.1. It is the zero-setup default for trials
// and for `go test ./...`; production deployments point kafka.brokers at a
// real cluster.
package localbroker

import (
	"errors"
	"fmt"
	"os"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Config is the "kafka.embedded" section of config.yaml.
type Config struct {
	// DataDir holds the broker's log segments and committed offsets so the
	// backlog survives a restart. Empty keeps everything in memory. Default "./data".
	DataDir string `mapstructure:"data_dir"`
	// Port to listen on at 127.0.0.1; 0 picks a free port. Default 0.
	Port int `mapstructure:"port"`
	// Partitions is the partition count of topics created automatically. Default 8.
	Partitions int32 `mapstructure:"partitions"`
	// SyncWrites fsyncs every produced batch before acknowledging it. Default false.
	SyncWrites bool `mapstructure:"sync_writes"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config { return Config{DataDir: "./data", Partitions: 8} }

// Validate reports every invalid field by its config.yaml key.
func (c Config) Validate() error {
	var errs []error
	if c.Port < 0 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("kafka.embedded.port: %d is not a port number", c.Port))
	}
	if c.Partitions < 1 {
		errs = append(errs, fmt.Errorf("kafka.embedded.partitions: must be at least 1, got %d", c.Partitions))
	}
	return errors.Join(errs...)
}

// Broker is a running embedded broker.
type Broker struct {
	c *kfake.Cluster
}

// Start starts a broker. The caller must Close it.
func Start(cfg Config) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(cfg.Port),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(int(cfg.Partitions)),
	}
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			return nil, fmt.Errorf("kafka.embedded.data_dir: %w", err)
		}
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	if cfg.SyncWrites {
		opts = append(opts, kfake.SyncWrites())
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("starting embedded broker: %w", err)
	}
	return &Broker{c: c}, nil
}

// Addrs returns the broker's bootstrap addresses.
func (b *Broker) Addrs() []string { return b.c.ListenAddrs() }

// Close stops the broker, flushing its data directory. Idempotent.
func (b *Broker) Close() { b.c.Close() }
