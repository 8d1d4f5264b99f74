// Package localbroker runs bend's embedded Kafka-protocol broker: an
// in-process, single-node broker (franz-go's kfake) that sarama talks to over
// the real wire protocol on 127.0.0.1. It is the zero-setup default for trials
// and for `go test ./...`; production deployments point kafka.brokers at a
// real cluster.
//
// The data directory is locked while a broker runs (a second bend on the same
// directory fails at once), and its size is bounded: Retain deletes the oldest
// log segments of each partition beyond retention_bytes or older than
// retention_time, never above a protected consumer group's committed offset.
package localbroker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"golang.org/x/sys/unix"
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
	// RetentionBytes bounds each partition's log on disk: older segments
	// beyond it are deleted (the partition keeps up to one segment,
	// SegmentBytes, more). 0 keeps everything. Default 134217728 (128 MiB;
	// with 8 partitions and three topics, at most about 3.4 GB).
	RetentionBytes int64 `mapstructure:"retention_bytes"`
	// RetentionTime deletes segments whose newest record is older. 0 keeps
	// everything. Default 24h.
	RetentionTime time.Duration `mapstructure:"retention_time"`

	segmentBytes int // 0: SegmentBytes; tests roll smaller segments
}

func (c Config) segment() int64 {
	if c.segmentBytes > 0 {
		return int64(c.segmentBytes)
	}
	return SegmentBytes
}

// SegmentBytes is the size at which the embedded broker rolls a
// partition's log segment; retention deletes whole segments.
const SegmentBytes = 16 << 20

// RetainEvery is how often RunRetention applies retention.
const RetainEvery = 30 * time.Second

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{DataDir: "./data", Partitions: 8, RetentionBytes: 128 << 20, RetentionTime: 24 * time.Hour}
}

// Validate reports every invalid field by its config.yaml key.
func (c Config) Validate() error {
	var errs []error
	if c.Port < 0 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("kafka.embedded.port: %d is not a port number", c.Port))
	}
	if c.Partitions < 1 {
		errs = append(errs, fmt.Errorf("kafka.embedded.partitions: must be at least 1, got %d", c.Partitions))
	}
	if c.RetentionBytes != 0 && c.RetentionBytes < c.segment() {
		errs = append(errs, fmt.Errorf("kafka.embedded.retention_bytes: want 0 (keep everything) or at least %d (one segment), got %d",
			c.segment(), c.RetentionBytes))
	}
	if c.RetentionTime < 0 {
		errs = append(errs, fmt.Errorf("kafka.embedded.retention_time: must not be negative, got %s", c.RetentionTime))
	}
	return errors.Join(errs...)
}

// ErrLocked is returned by Start when another process holds the data directory.
var ErrLocked = errors.New("localbroker: data directory in use")

// Broker is a running embedded broker. Its methods are safe for concurrent use.
type Broker struct {
	c    *kfake.Cluster
	cfg  Config
	lock *os.File // holds the data directory's flock; nil in memory

	mu      sync.Mutex
	protect map[string]string // topic -> consumer group whose commits bound deletion

	once sync.Once
}

// LockFile is the file in the data directory a running broker holds locked.
const LockFile = "bend.lock"

// Start starts a broker. The caller must Close it. With a data directory,
// Start locks it (a second broker on it fails with ErrLocked, naming the
// process that holds it); RunRetention bounds its size.
func Start(cfg Config) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(cfg.Port),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(int(cfg.Partitions)),
		kfake.BrokerConfigs(map[string]string{"log.segment.bytes": strconv.FormatInt(cfg.segment(), 10)}),
	}
	b := &Broker{cfg: cfg, protect: map[string]string{}}
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			return nil, fmt.Errorf("kafka.embedded.data_dir: %w", err)
		}
		lock, err := lockDir(cfg.DataDir)
		if err != nil {
			return nil, err
		}
		b.lock = lock
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	if cfg.SyncWrites {
		opts = append(opts, kfake.SyncWrites())
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		b.unlock()
		return nil, fmt.Errorf("starting embedded broker: %w", err)
	}
	b.c = c
	return b, nil
}

// lockDir takes an exclusive, non-blocking flock on dir's lock file and
// writes this process's id into it. The lock ends with the process, so a
// crash leaves nothing to clean up.
func lockDir(dir string) (*os.File, error) {
	p := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("kafka.embedded.data_dir: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(p)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			who := "another process"
			if pid := strings.TrimSpace(string(holder)); pid != "" {
				who = "process " + pid
			}
			return nil, fmt.Errorf("%w: kafka.embedded.data_dir %s is used by %s (another bend?); stop it first, or set another data_dir",
				ErrLocked, dir, who)
		}
		return nil, fmt.Errorf("kafka.embedded.data_dir: locking %s: %w", p, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

func (b *Broker) unlock() {
	if b.lock != nil {
		b.lock.Close() // closing the descriptor releases the flock
		b.lock = nil
	}
}

// Addrs returns the broker's bootstrap addresses.
func (b *Broker) Addrs() []string { return b.c.ListenAddrs() }

// Close stops the broker, flushing its data directory, and releases the
// directory's lock. Idempotent.
func (b *Broker) Close() {
	b.once.Do(func() {
		b.c.Close()
		b.unlock()
	})
}
