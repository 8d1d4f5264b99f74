package pack

import (
	"errors"
	"fmt"
	"time"
)

// Config is a batching section of config.yaml ("ingest.batching",
// "sink.kafka.batching"). The zero value is off.
type Config struct {
	// MaxEvents is the most events packed into one record; 0 or 1 is off
	// (every event its own record, what plain consumers read). Default 0.
	MaxEvents int `mapstructure:"max_events"`
	// MaxBytes bounds a packed record's value. It must fit the producer's
	// batch_bytes and the topic's max.message.bytes (the broker's
	// message.max.bytes, 1 MiB by default); an event larger than it is
	// sent alone. Default 262144 (256 KiB).
	MaxBytes int `mapstructure:"max_bytes"`
	// Linger is how long a partly filled pack waits for more events once
	// nothing else is buffered. 0 sends what is buffered at once: packs fill
	// while the producer is busy, and add no latency when it is not.
	// Default 0.
	Linger time.Duration `mapstructure:"linger"`
}

// DefaultConfig returns the documented defaults: off.
func DefaultConfig() Config { return Config{MaxBytes: 256 << 10} }

// Enabled reports whether events are packed.
func (c Config) Enabled() bool { return c.MaxEvents > 1 }

// Validate reports every invalid field, its key prefixed with section;
// batchBytes is the producer's batch_bytes, which a packed record must fit.
func (c Config) Validate(section string, batchBytes int) error {
	var errs []error
	if c.MaxEvents < 0 {
		errs = append(errs, fmt.Errorf("%s.max_events: must not be negative, got %d", section, c.MaxEvents))
	}
	if c.Enabled() && (c.MaxBytes < 1 || c.MaxBytes > batchBytes-4096) {
		errs = append(errs, fmt.Errorf("%s.max_bytes: must be positive and leave 4096 bytes of the producer's batch_bytes (%d), got %d", section, batchBytes, c.MaxBytes))
	}
	if c.Linger < 0 || c.Linger > time.Second {
		errs = append(errs, fmt.Errorf("%s.linger: must be between 0 and 1s, got %s", section, c.Linger))
	}
	return errors.Join(errs...)
}
