package distributor

import (
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/activity"
)

// Config is the "distributor" section of config.yaml.
type Config struct {
	// Group is the Kafka consumer group. Default "bend".
	Group string `mapstructure:"group"`
	// Assignor is the partition assignment strategy: cooperative-sticky,
	// sticky, range or roundrobin. Default cooperative-sticky.
	Assignor string `mapstructure:"assignor"`
	// InitialOffset is where a group with no committed offset starts:
	// oldest or newest. Default oldest.
	InitialOffset string `mapstructure:"initial_offset"`
	// Delay is how long an activity is parked while its enrichments are
	// computed; with delayqueue.early_release it leaves as soon as they are
	// all done. Default 2s.
	Delay time.Duration `mapstructure:"delay"`
	// Emitters is the number of goroutines taking finished activities from
	// the delay queue and handing them to the sink. Default 2.
	Emitters int `mapstructure:"emitters"`
	// FetchBuffer is the number of fetched records buffered per partition
	// (sarama's Consumer.ChannelBufferSize). Default 256.
	FetchBuffer int `mapstructure:"fetch_buffer"`
	// BatchMaxRecords caps the records of one partition that move through
	// the stages as one batch (one delay-queue item, one window entry, one
	// acknowledgement): those already fetched when one is read; a batch
	// never waits for more. Default 256.
	BatchMaxRecords int `mapstructure:"batch_max_records"`
	// BatchMaxBytes caps the bytes (keys and values) of one batch; a
	// single larger record is a batch alone. Default 1048576 (1 MiB).
	BatchMaxBytes int64 `mapstructure:"batch_max_bytes"`
	// MaxPartitionInFlight caps records read from one partition and not yet
	// passed by its commit watermark. Default 10000.
	MaxPartitionInFlight int64 `mapstructure:"max_partition_in_flight"`
	// DrainTimeout bounds the wait for a revoked or stopping partition's
	// records to be acknowledged before its offsets are committed. Records
	// not acknowledged by then are redelivered later. Default 10s.
	DrainTimeout time.Duration `mapstructure:"drain_timeout"`
	// CommitInterval is how often marked offsets are committed. Default 1s.
	CommitInterval time.Duration `mapstructure:"commit_interval"`
	// Ordered emits each partition's records in offset order, so per-key
	// order is kept (a key always maps to one input partition) although
	// enrichment runs in parallel. A record then waits for every earlier
	// record of its partition, so latency follows the slowest one. Forced
	// on by sink.kafka.exactly_once. Default false.
	Ordered bool `mapstructure:"ordered"`
	// InstanceID is this member's static group membership id (Kafka's
	// group.instance.id): a restarted instance with the same id takes its
	// partitions back at once, without a rebalance. Must be unique per
	// instance. Empty means dynamic membership. Default "".
	InstanceID string `mapstructure:"instance_id"`
	// HeartbeatInterval is how often this member heartbeats to the group
	// coordinator, and so how soon it hears of a rebalance. sarama sends
	// the group's requests on the connection it fetches on, and a broker
	// answers one request per connection at a time, so a JoinGroup waiting
	// for the other members to hear of the rebalance holds this member's
	// fetches too: every partition it keeps pauses for up to this long at
	// each join or leave. Must be at most a third of SessionTimeout.
	// Default (and 0) 500ms (Kafka's clients: 3s).
	HeartbeatInterval time.Duration `mapstructure:"heartbeat_interval"`
	// SessionTimeout is how long the coordinator waits for a heartbeat
	// before it removes a member (one that died without leaving) and
	// rebalances its partitions; the broker bounds it
	// (group.min.session.timeout.ms, 6s, to group.max.session.timeout.ms,
	// 30m, by default). Default (and 0) 10s.
	SessionTimeout time.Duration `mapstructure:"session_timeout"`
	// LagRefresh is how often the log-end offsets of the owned partitions
	// are read from their leaders for lag, per-partition lag and time to
	// drain. Default 5s.
	LagRefresh time.Duration `mapstructure:"lag_refresh"`
	// MemoryBudget bounds, in bytes, the records this member holds from
	// fetch to sink acknowledgement: a quarter sizes sarama's fetch buffers
	// (spread over the input partitions), the rest is taken by each record
	// read (its bytes and its enriched copy) until the sink acknowledges
	// it; reading waits while it is spent. Default 268435456 (256 MiB).
	MemoryBudget int64 `mapstructure:"memory_budget"`
	// ExternalCommit leaves committing to the sink: the distributor tracks
	// watermarks but never marks or commits offsets itself. Set by bend in
	// exactly-once mode, where the sink commits offsets inside its
	// transactions; not a config.yaml key.
	ExternalCommit bool `mapstructure:"-"`
	// Format is the format of records without a bend-format header
	// (written by other tools than bend's ingest): a preset name, see
	// activity.Presets. Default "bend".
	Format string `mapstructure:"format"`
	// Formats resolves the bend-format header of records; set by bend from
	// the sources' formats (ingest.Config.FormatConfigs). Nil means the
	// presets only. Not a config.yaml key.
	Formats *activity.Formats `mapstructure:"-"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Group:                "bend",
		Assignor:             sarama.CooperativeStickyBalanceStrategyName,
		InitialOffset:        "oldest",
		Delay:                2 * time.Second,
		Emitters:             2,
		FetchBuffer:          256,
		BatchMaxRecords:      256,
		BatchMaxBytes:        1 << 20,
		MaxPartitionInFlight: 10000,
		DrainTimeout:         10 * time.Second,
		CommitInterval:       time.Second,
		Format:               activity.PresetBend,
		LagRefresh:           5 * time.Second,
		MemoryBudget:         256 << 20,
		HeartbeatInterval:    500 * time.Millisecond,
		SessionTimeout:       10 * time.Second,
	}
}

// Validate reports every invalid field by its config.yaml key.
func (c Config) Validate() error {
	var errs []error
	if c.Group == "" {
		errs = append(errs, errors.New("distributor.group: must not be empty"))
	}
	if _, err := strategy(c.Assignor); err != nil {
		errs = append(errs, fmt.Errorf("distributor.assignor: %w", err))
	}
	if c.InitialOffset != "oldest" && c.InitialOffset != "newest" {
		errs = append(errs, fmt.Errorf("distributor.initial_offset: want oldest or newest, got %q", c.InitialOffset))
	}
	if c.Delay <= 0 {
		errs = append(errs, errors.New("distributor.delay: must be positive"))
	}
	if c.Emitters < 1 {
		errs = append(errs, fmt.Errorf("distributor.emitters: must be at least 1, got %d", c.Emitters))
	}
	if c.FetchBuffer < 1 {
		errs = append(errs, fmt.Errorf("distributor.fetch_buffer: must be at least 1, got %d", c.FetchBuffer))
	}
	if c.BatchMaxRecords < 1 {
		errs = append(errs, fmt.Errorf("distributor.batch_max_records: must be at least 1, got %d", c.BatchMaxRecords))
	}
	if c.BatchMaxBytes < 1 {
		errs = append(errs, fmt.Errorf("distributor.batch_max_bytes: must be at least 1, got %d", c.BatchMaxBytes))
	}
	if c.MaxPartitionInFlight < 1 {
		errs = append(errs, fmt.Errorf("distributor.max_partition_in_flight: must be at least 1, got %d", c.MaxPartitionInFlight))
	}
	if c.DrainTimeout <= 0 {
		errs = append(errs, errors.New("distributor.drain_timeout: must be positive"))
	}
	if c.CommitInterval <= 0 {
		errs = append(errs, errors.New("distributor.commit_interval: must be positive"))
	}
	if c.Formats == nil {
		if _, err := activity.NewFormats("distributor.format", c.Format, nil); err != nil {
			errs = append(errs, err)
		}
	}
	if c.LagRefresh <= 0 {
		errs = append(errs, errors.New("distributor.lag_refresh: must be positive"))
	}
	hb, st := c.groupTimers()
	switch {
	case c.SessionTimeout < 0:
		errs = append(errs, errors.New("distributor.session_timeout: must be positive"))
	case c.HeartbeatInterval < 0:
		errs = append(errs, errors.New("distributor.heartbeat_interval: must be positive"))
	case hb*3 > st:
		errs = append(errs, fmt.Errorf("distributor.heartbeat_interval: %s is more than a third of distributor.session_timeout (%s): a member missing two heartbeats would be removed", hb, st))
	}
	if c.MemoryBudget < minMemoryBudget {
		errs = append(errs, fmt.Errorf("distributor.memory_budget: must be at least %d (16 MiB), got %d", minMemoryBudget, c.MemoryBudget))
	}
	return errors.Join(errs...)
}

// groupTimers returns the heartbeat interval and session timeout, zero
// meaning their defaults.
func (c Config) groupTimers() (heartbeat, session time.Duration) {
	heartbeat, session = c.HeartbeatInterval, c.SessionTimeout
	if heartbeat == 0 {
		heartbeat = 500 * time.Millisecond
	}
	if session == 0 {
		session = 10 * time.Second
	}
	return heartbeat, session
}

func strategy(name string) (sarama.BalanceStrategy, error) {
	switch name {
	case sarama.CooperativeStickyBalanceStrategyName:
		return sarama.NewBalanceStrategyCooperativeSticky(), nil
	case sarama.StickyBalanceStrategyName:
		return sarama.NewBalanceStrategySticky(), nil
	case sarama.RangeBalanceStrategyName:
		return sarama.NewBalanceStrategyRange(), nil
	case sarama.RoundRobinBalanceStrategyName:
		return sarama.NewBalanceStrategyRoundRobin(), nil
	}
	return nil, fmt.Errorf("unknown assignor %q (want cooperative-sticky, sticky, range or roundrobin)", name)
}

// consumerConfig applies the distributor's consumer settings to a copy of sc.
func (c Config) consumerConfig(sc *sarama.Config) *sarama.Config {
	cc := *sc
	s, _ := strategy(c.Assignor)
	cc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{s}
	cc.Consumer.Offsets.Initial = sarama.OffsetOldest
	if c.InitialOffset == "newest" {
		cc.Consumer.Offsets.Initial = sarama.OffsetNewest
	}
	cc.Consumer.Offsets.AutoCommit.Enable = !c.ExternalCommit
	cc.Consumer.Offsets.AutoCommit.Interval = c.CommitInterval
	cc.ChannelBufferSize = c.FetchBuffer
	cc.Consumer.Return.Errors = true
	if c.ExternalCommit {
		// Transactional outputs of other producers are only read once committed.
		cc.Consumer.IsolationLevel = sarama.ReadCommitted
	}
	// A revoked partition may take DrainTimeout to drain; the group waits
	// that long (and a little more) for members to rejoin, and no longer, so
	// a member that died mid-rebalance does not hold the group up for
	// sarama's default minute.
	cc.Consumer.Group.Rebalance.Timeout = c.DrainTimeout + 5*time.Second
	cc.Consumer.Group.Heartbeat.Interval, cc.Consumer.Group.Session.Timeout = c.groupTimers()
	if c.InstanceID != "" {
		cc.Consumer.Group.InstanceId = c.InstanceID
	}
	return &cc
}
