// Package enrich computes enrichments: the per-activity results (language,
// unwound links, lookups) that the distributor waits for while the activity
// is parked in the delay queue.
//
// Work flows as tasks through one Queue with a bounded lane per enricher.
// Workers take a task when they are free, by a fair rule across the lanes
// (see Queue), so any worker can serve any partition's activity, a hot key
// never leaves workers idle, and a slow enricher never holds more than its
// share of the workers while others have work. Each task carries its own
// Report callback; the distributor rejoins results with the parked activity
// through it. A task whose activity has left (Task.Stale) is dropped before
// it runs, and so is an optional task whose activity's deadline
// (Task.Deadline) would pass before its attempt could finish; an attempt's
// context ends at that deadline. The distributor runs optional instant
// enrichers (stats, noop; see Instant) inline when it reads the activity,
// so a slow enricher's tasks never delay them; their attempts are not
// counted in enrich.NAME.latency.
//
// Metrics (go-metrics names, per enricher NAME; the Queue's are listed on
// Queue):
//
//	enrich.NAME.latency   timer of successful attempts
//	enrich.NAME.errors    counter of failed attempts (timeouts included)
//	enrich.NAME.timeouts  counter of attempts that hit the timeout
//	enrich.NAME.cut       counter of attempts cut short at their activity's deadline
//	enrich.NAME.stale     counter of tasks dropped unrun: their activity had left
//	enrich.NAME.deadline  counter of tasks dropped unrun: their activity's deadline
//	                      would pass before the attempt could finish
//	enrich.busy           counter (used as a gauge) of workers running an enricher
//	enrich.utilisation    gauge: busy workers as a percentage of enrich.workers
package enrich

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/bendstream/bend/internal/activity"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
)

// Enricher computes one enrichment of an activity. Enrich must honour ctx,
// which carries the per-attempt timeout, and must be safe for concurrent use.
type Enricher interface {
	Enrich(ctx context.Context, a *activity.Fields) (json.RawMessage, error)
}

// EnricherFunc adapts a function to Enricher.
type EnricherFunc func(ctx context.Context, a *activity.Fields) (json.RawMessage, error)

// Enrich calls f.
func (f EnricherFunc) Enrich(ctx context.Context, a *activity.Fields) (json.RawMessage, error) {
	return f(ctx, a)
}

// Spec is one entry of the "enrich.enrichers" list in config.yaml.
type Spec struct {
	// Name is the key of this enrichment under "enrichments" in the emitted
	// event. Required, unique.
	Name string `mapstructure:"name"`
	// Type selects the implementation: "stats" (word/link/hashtag counts),
	// "noop", "lang", "urls", "lookup" or "table". Default: Name.
	Type string `mapstructure:"type"`
	// Required enrichments are retried until they succeed or MaxAttempts is
	// used up, and then the activity is dead-lettered; the activity is held
	// past its delay until then. Optional ones are emitted at the deadline
	// marked missing. Default false.
	Required bool `mapstructure:"required"`
	// Timeout bounds one attempt. Default 1s.
	Timeout time.Duration `mapstructure:"timeout"`
	// MaxAttempts bounds attempts of a required enrichment (optional ones
	// are tried while their activity is parked, up to this many times). Default 3.
	MaxAttempts int `mapstructure:"max_attempts"`
	// Backoff is the wait before the second attempt; it doubles each retry, capped at 10s. Default 100ms.
	Backoff time.Duration `mapstructure:"backoff"`
	// Concurrency bounds this enricher's attempts running at once, across
	// all workers, so that a slow service is not overrun. An attempt beyond
	// it waits for a slot, and the wait counts against its Timeout. Default 0:
	// no bound (at most enrich.workers run at once).
	Concurrency int `mapstructure:"concurrency"`
	// QueueSize bounds this enricher's own lane of the task queue. Default 0:
	// an equal share of enrich.queue_size (see Config.QueueSize).
	QueueSize int `mapstructure:"queue_size"`
	// Adaptive lets the bound float between 1 and Concurrency: it halves
	// when an attempt fails or times out and grows by one after a bound's
	// worth of successes (AIMD). Needs Concurrency. Default false.
	Adaptive bool `mapstructure:"adaptive"`

	// Options of the enricher types of the same name. Setting the options
	// of a type other than Type is an error.
	Lang   LangOptions   `mapstructure:"lang"`
	URLs   URLOptions    `mapstructure:"urls"`
	Lookup LookupOptions `mapstructure:"lookup"`
	Table  TableOptions  `mapstructure:"table"`
}

// withDefaults fills zero fields with their documented defaults.
func (s Spec) withDefaults() Spec {
	if s.Type == "" {
		s.Type = s.Name
	}
	if s.Timeout == 0 {
		s.Timeout = time.Second
	}
	if s.MaxAttempts == 0 {
		s.MaxAttempts = 3
	}
	if s.Backoff == 0 {
		s.Backoff = 100 * time.Millisecond
	}
	return s.optionDefaults()
}

// Config is the "enrich" section of config.yaml.
type Config struct {
	// Workers is the number of in-process workers pulling tasks. Default 4.
	Workers int `mapstructure:"workers"`
	// QueueSize bounds the task queue. Default 1024. Each enricher has its
	// own lane (see Queue): one with its own queue_size gets that; each of
	// the others that queue tasks (all but the optional stats and noop,
	// which run inline) gets an equal share of QueueSize. A required task
	// waits for room in its lane, holding its activity; when an optional
	// enricher's lane is full its oldest task is dropped and that
	// enrichment emitted missing, reason "overloaded".
	QueueSize int `mapstructure:"queue_size"`
	// Enrichers lists the enrichments computed for every activity, in the
	// order they appear in the emitted event. Default: one optional "stats".
	Enrichers []Spec `mapstructure:"enrichers"`
	// Remote serves the task queue to `bend work` processes; off by default.
	Remote RemoteConfig `mapstructure:"remote"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{Workers: 4, QueueSize: 1024, Enrichers: []Spec{{Name: "stats", Type: "stats", Timeout: time.Second, MaxAttempts: 3, Backoff: 100 * time.Millisecond}},
		Remote: DefaultRemoteConfig()}
}

// Validate reports every invalid field by its config.yaml key.
func (c Config) Validate() error {
	var errs []error
	if c.Workers < 0 {
		errs = append(errs, fmt.Errorf("enrich.workers: must not be negative, got %d", c.Workers))
	}
	if c.QueueSize < 1 {
		errs = append(errs, fmt.Errorf("enrich.queue_size: must be at least 1, got %d", c.QueueSize))
	}
	if err := c.Remote.Validate(); err != nil {
		errs = append(errs, err)
	}
	seen := map[string]bool{}
	for i, s := range c.Enrichers {
		key := fmt.Sprintf("enrich.enrichers[%d]", i)
		s = s.withDefaults()
		if s.Name == "" {
			errs = append(errs, fmt.Errorf("%s.name: must not be empty", key))
		} else if seen[s.Name] {
			errs = append(errs, fmt.Errorf("%s.name: %q is used twice", key, s.Name))
		}
		seen[s.Name] = true
		if _, ok := builtins[s.Type]; !ok {
			errs = append(errs, fmt.Errorf("%s.type: unknown enricher type %q (have %s)", key, s.Type, strings.Join(builtinNames(), ", ")))
		} else {
			errs = append(errs, s.validateOptions(key)...)
		}
		if s.Timeout < 0 {
			errs = append(errs, fmt.Errorf("%s.timeout: must not be negative", key))
		}
		if s.MaxAttempts < 0 {
			errs = append(errs, fmt.Errorf("%s.max_attempts: must not be negative", key))
		}
		if s.Backoff < 0 {
			errs = append(errs, fmt.Errorf("%s.backoff: must not be negative", key))
		}
		if s.Concurrency < 0 {
			errs = append(errs, fmt.Errorf("%s.concurrency: must not be negative, got %d", key, s.Concurrency))
		}
		if s.QueueSize < 0 {
			errs = append(errs, fmt.Errorf("%s.queue_size: must not be negative, got %d", key, s.QueueSize))
		}
		if s.Adaptive && s.Concurrency == 0 {
			errs = append(errs, fmt.Errorf("%s.adaptive: needs concurrency, the upper bound", key))
		}
	}
	return errors.Join(errs...)
}

// ValidateBudget reports, by config.yaml key, every optional enricher whose
// settings cannot finish inside delay (distributor.delay), the time its
// activity is parked: an attempt may use its whole timeout, so a timeout
// longer than delay is missing whenever it is needed (stats and noop never
// wait, so their timeout does not count); and the first retry
// starts no earlier than backoff after the activity was read, so with
// max_attempts above 1 a backoff of delay or more is never used. Required
// enrichers hold their activity past delay (up to max_attempts attempts and
// their backoffs) and are not bound by it. A non-positive delay is left to
// the distributor's own validation.
func (c Config) ValidateBudget(delay time.Duration) error {
	if delay <= 0 {
		return nil
	}
	var errs []error
	for i, s := range c.Enrichers {
		s = s.withDefaults()
		if s.Required {
			continue
		}
		key := fmt.Sprintf("enrich.enrichers[%d]", i)
		// An instant enricher (stats, noop) never uses its timeout and
		// never fails, so neither its timeout nor its backoff matters.
		if s.Type == "stats" || s.Type == "noop" {
			continue
		}
		if s.Timeout > delay {
			errs = append(errs, fmt.Errorf("%s.timeout: %s is longer than distributor.delay (%s), so an attempt that needs it is always emitted missing; shorten it or raise the delay", key, s.Timeout, delay))
		}
		if s.MaxAttempts > 1 && s.Backoff >= delay {
			errs = append(errs, fmt.Errorf("%s.backoff: %s is not shorter than distributor.delay (%s), so no retry can start before the activity is emitted; shorten it or set max_attempts: 1", key, s.Backoff, delay))
		}
	}
	return errors.Join(errs...)
}

// Resolved is an enricher ready to run, with its spec's defaults applied.
type Resolved struct {
	Spec
	Enricher
}

// Inline reports whether the distributor runs r inline when it reads an
// activity instead of queueing a task: an optional instant enricher (see
// Instant). Its lane of the task queue carries only retries.
func (r Resolved) Inline() bool { return !r.Required && Instant(r.Enricher) }

// Build resolves every configured enricher: it loads language models, reads
// tables and sets up HTTP clients and caches. log receives the enrichers'
// warnings (a table that fails to reload) and reg their metrics (see the
// package doc); nil means discard. Call Validate first. Build starts no
// goroutines, and the enrichers need no closing: idle HTTP connections close
// after 30s.
func (c Config) Build(log logrus.FieldLogger, reg metrics.Registry) ([]Resolved, error) {
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	if reg == nil {
		reg = metrics.NewRegistry()
	}
	out := make([]Resolved, 0, len(c.Enrichers))
	for _, s := range c.Enrichers {
		s = s.withDefaults()
		b, ok := builtins[s.Type]
		if !ok {
			return nil, fmt.Errorf("enricher %s: unknown type %q", s.Name, s.Type)
		}
		e, err := b.build(s, log.WithField("enricher", s.Name), reg)
		if err != nil {
			return nil, fmt.Errorf("enricher %s: %w", s.Name, err)
		}
		out = append(out, Resolved{Spec: s, Enricher: limit(s, e, reg)})
	}
	return out, nil
}
