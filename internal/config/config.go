// Package config loads bend's configuration: config.yaml, overridden by
// BEND_-prefixed environment variables (BEND_DISTRIBUTOR_DELAY=5s sets
// distributor.delay), over the documented defaults. Unknown keys are errors,
// and validation reports every bad key at once, by its config path.
package config

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"strings"
	"time"

	"github.com/bendstream/bend/delayqueue"
	"github.com/bendstream/bend/distributor"
	"github.com/bendstream/bend/enrich"
	"github.com/bendstream/bend/ingest"
	"github.com/bendstream/bend/internal/admin"
	"github.com/bendstream/bend/internal/kafka"
	"github.com/bendstream/bend/sink"
	"github.com/go-viper/mapstructure/v2"
	"github.com/sirupsen/logrus"
	"github.com/spf13/viper"
)

// Config is the whole of config.yaml.
type Config struct {
	Kafka       kafka.Config       `mapstructure:"kafka"`
	Ingest      ingest.Config      `mapstructure:"ingest"`
	Distributor distributor.Config `mapstructure:"distributor"`
	DelayQueue  delayqueue.Config  `mapstructure:"delayqueue"`
	Enrich      enrich.Config      `mapstructure:"enrich"`
	Sink        sink.Config        `mapstructure:"sink"`
	Log         Log                `mapstructure:"log"`
	Admin       admin.Config       `mapstructure:"admin"`
	// Progress is how often `bend run` prints its progress line; 0 turns it off. Default 2s.
	Progress time.Duration `mapstructure:"progress"`
	// ShutdownTimeout bounds the drain after SIGINT/SIGTERM before a hard
	// stop. Default 30s.
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout"`
	// ShutdownGrace is the lame-duck period at the start of a shutdown:
	// /readyz answers 503 for this long before intake stops, so load
	// balancers and orchestrators stop sending first. Skipped when the
	// admin server is off. Default 2s.
	ShutdownGrace time.Duration `mapstructure:"shutdown_grace"`
	// MemoryLimit is the Go runtime's soft memory limit in bytes for `bend
	// run` and `bend work` (as GOMEMLIMIT): near it the garbage collector
	// runs more often, so resident memory stays flat when throughput jumps
	// instead of following it. 0 leaves the runtime's own setting
	// (GOMEMLIMIT), else derives one from distributor.memory_budget
	// (budget + budget/4 + 64 MiB). Default 0.
	MemoryLimit int64 `mapstructure:"memory_limit"`
}

// Log is the "log" section of config.yaml.
type Log struct {
	// Level is trace, debug, info, warn or error. Default info.
	Level string `mapstructure:"level"`
	// Format is text or json. Default text.
	Format string `mapstructure:"format"`
	// Progress is auto, on or off: whether `bend run` reports progress
	// (every progress interval). auto reports only when stderr is a
	// terminal. With format json the report is a JSON log record. Default auto.
	Progress string `mapstructure:"progress"`
}

// Default returns the documented defaults: the embedded broker, the
// synthetic firehose, and the Kafka output sink.
func Default() Config {
	return Config{
		Kafka:           kafka.DefaultConfig(),
		Ingest:          ingest.DefaultConfig(),
		Distributor:     distributor.DefaultConfig(),
		DelayQueue:      delayqueue.DefaultConfig(),
		Enrich:          enrich.DefaultConfig(),
		Sink:            sink.DefaultConfig(),
		Log:             Log{Level: "info", Format: "text", Progress: "auto"},
		Admin:           admin.DefaultConfig(),
		Progress:        2 * time.Second,
		ShutdownTimeout: 30 * time.Second,
		ShutdownGrace:   2 * time.Second,
	}
}

// Validate reports every invalid key, joined.
func (c Config) Validate() error {
	errs := []error{
		c.Kafka.Validate(), c.Ingest.Validate(), c.Distributor.Validate(),
		c.DelayQueue.Validate(), c.Enrich.Validate(), c.Sink.Validate(), c.Admin.Validate(),
		c.Enrich.ValidateBudget(c.Distributor.Delay),
	}
	if _, err := logrus.ParseLevel(c.Log.Level); err != nil {
		errs = append(errs, fmt.Errorf("log.level: %w", err))
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		errs = append(errs, fmt.Errorf("log.format: want text or json, got %q", c.Log.Format))
	}
	if c.Log.Progress != "auto" && c.Log.Progress != "on" && c.Log.Progress != "off" {
		errs = append(errs, fmt.Errorf("log.progress: want auto, on or off, got %q", c.Log.Progress))
	}
	if c.ShutdownGrace < 0 {
		errs = append(errs, errors.New("shutdown_grace: must not be negative"))
	}
	if c.Progress < 0 {
		errs = append(errs, errors.New("progress: must not be negative"))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("shutdown_timeout: must be positive"))
	}
	if c.MemoryLimit != 0 && c.MemoryLimit < 32<<20 {
		errs = append(errs, fmt.Errorf("memory_limit: want 0 (off) or at least 33554432 (32 MiB), got %d", c.MemoryLimit))
	}
	return errors.Join(errs...)
}

// Load reads path (optional: "" reads ./config.yaml if it exists, else only
// defaults and environment), applies BEND_ environment overrides, and
// validates. Every problem is reported at once, decoding and validation
// alike, each naming its key, the offending value and where it came from
// (file and line, or the BEND_ variable); an unknown key names the nearest
// known one.
func Load(path string) (Config, error) {
	cfg, _, err := Check(path)
	return cfg, err
}

// Check is Load that also returns warnings: BEND_ environment variables
// that name no configuration key.
func Check(path string) (Config, []string, error) {
	return load(path, os.Environ())
}

// load is Load with the environment given (to find unknown BEND_ variables;
// the overrides themselves come from the process environment, as viper reads it).
func load(path string, environ []string) (Config, []string, error) {
	cfg := Default()
	v := viper.New()
	// Register every key with its default so environment overrides reach
	// keys the file does not mention.
	var defaults map[string]any
	if err := mapstructure.Decode(cfg, &defaults); err != nil {
		return cfg, nil, fmt.Errorf("encoding defaults: %w", err)
	}
	known := flatten("", defaults)
	for k, val := range known {
		v.SetDefault(k, val)
	}
	v.SetEnvPrefix("BEND")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	if path == "" {
		if _, err := os.Stat("config.yaml"); err == nil {
			path = "config.yaml"
		}
	}
	src := sources{env: envOf(environ)}
	if path != "" {
		v.SetConfigFile(path)
		if err := v.ReadInConfig(); err != nil {
			return cfg, nil, fmt.Errorf("reading %s: %w", path, err)
		}
		if data, err := os.ReadFile(path); err == nil {
			src.file, src.lines = path, yamlPositions(data)
		}
	}
	var md mapstructure.Metadata
	decodeErr := v.Unmarshal(&cfg, viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
		durationHook,
		mapstructure.StringToSliceHookFunc(","),
	)), func(dc *mapstructure.DecoderConfig) { dc.Metadata = &md })
	if len(cfg.Kafka.Brokers) == 0 {
		cfg.Kafka.Brokers = nil // "brokers: []" and an absent key mean the same
	}
	keys := maps.Clone(known) // and the keys decoded, such as enrich.enrichers[0].timeout, for suggestions
	for _, k := range md.Keys {
		keys[k] = nil
	}
	return cfg, unknownEnv(environ, known), report(decodeErr, md.Unused, cfg.Validate(), keys, src)
}

// flatten turns nested maps into dotted keys.
func flatten(prefix string, m map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
			for sk, sv := range flatten(key, sub) {
				out[sk] = sv
			}
			continue
		}
		out[key] = v
	}
	return out
}
