package delayqueue

import (
	"errors"
	"fmt"
)

// Config configures a Queue. It is the "delayqueue" section of config.yaml.
type Config struct {
	// MaxItems is the capacity in items: Put blocks while this many items
	// are between Put and Release. Required, at least 1. Default 10000.
	MaxItems int64 `mapstructure:"max_items"`
	// MaxBytes is the capacity in bytes, the sum of the weights given to
	// Put over the same span. 0 means unlimited. Default 0.
	MaxBytes int64 `mapstructure:"max_bytes"`
	// EarlyRelease makes a completed item ready at once instead of at its
	// due time. Default true.
	EarlyRelease bool `mapstructure:"early_release"`
}

// DefaultConfig returns the documented defaults: MaxItems 10000, MaxBytes 0
// (unlimited), EarlyRelease true.
func DefaultConfig() Config {
	return Config{MaxItems: 10000, MaxBytes: 0, EarlyRelease: true}
}

// Validate reports every invalid field by its config.yaml key
// ("delayqueue.max_items", ...), joined with errors.Join. It returns nil
// for a valid Config.
func (c Config) Validate() error {
	var errs []error
	if c.MaxItems < 1 {
		errs = append(errs, fmt.Errorf("delayqueue.max_items: must be at least 1, got %d", c.MaxItems))
	}
	if c.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("delayqueue.max_bytes: must be 0 (unlimited) or positive, got %d", c.MaxBytes))
	}
	return errors.Join(errs...)
}
