// Package synth is bend's synthetic firehose: a seeded generator of
// realistic social-media activities (activity.Activity as JSON) and a pacer
// that emits them at a steady, ramping or spiking rate. The synthetic ingest
// source, the `bend firehose` server and the load harness all use it.
//
// A Generator builds one activity at a time (Append) with ids prefix+seq, seq
// counting from 1 without gaps, so consumers can check for loss. Run paces it
// by the integral of the configured rate profile (Config.RateAt, EventsBy)
// and, when emit blocks, lags at most one second behind the schedule: events
// further behind are not generated but counted as Stats.Shortfall, so a stall
// is never followed by an unbounded burst.
//
// The package keeps no mutable global state: randomness comes from the
// configured seed and the clock is injectable (WithClock).
package synth

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Rate profiles, the values of Config.Profile.
const (
	// ProfileSteady emits Config.Rate events per second throughout.
	ProfileSteady = "steady"
	// ProfileRamp rises linearly from 0 to Config.Rate over Config.RampFor,
	// then holds Config.Rate.
	ProfileRamp = "ramp"
	// ProfileSpike emits Config.Rate, except for spikes of Config.SpikeRate
	// lasting Config.SpikeFor, each starting Config.SpikeEvery after the
	// previous one ended (the first SpikeEvery after start).
	ProfileSpike = "spike"
)

// Config is the "synthetic" section of config.yaml. Start from DefaultConfig;
// NewGenerator panics on a Config that does not Validate.
type Config struct {
	// Rate is the steady rate in events per second. Must be positive.
	// Default 8000.
	Rate float64 `mapstructure:"rate"`
	// Profile is the rate profile: "steady", "ramp" or "spike" (see
	// ProfileSteady, ProfileRamp, ProfileSpike). Default "steady".
	Profile string `mapstructure:"profile"`
	// SpikeRate is the rate in events per second during a spike. Must be
	// positive with the spike profile, not negative otherwise. Default 50000.
	SpikeRate float64 `mapstructure:"spike_rate"`
	// SpikeEvery is the time from start to the first spike, and from the end
	// of each spike to the start of the next. Must be positive with the
	// spike profile, not negative otherwise. Default 2m.
	SpikeEvery time.Duration `mapstructure:"spike_every"`
	// SpikeFor is the length of a spike. Must be positive with the spike
	// profile, not negative otherwise. Default 60s.
	SpikeFor time.Duration `mapstructure:"spike_for"`
	// RampFor is how long the ramp profile takes to rise linearly from 0 to
	// Rate. Must be positive with the ramp profile, not negative otherwise.
	// Default 60s.
	RampFor time.Duration `mapstructure:"ramp_for"`
	// Limit stops Run after the generator has built this many activities;
	// 0 means unlimited. Must not be negative. Default 0.
	Limit int64 `mapstructure:"limit"`
	// Authors is the number of distinct authors; author ids are "u" plus a
	// zero-padded index. Must be at least 1. Default 100000.
	Authors int `mapstructure:"authors"`
	// KeySkew picks authors, and so partition keys: 0 means uniform; a
	// value above 1 is the s parameter of a Zipf distribution over authors
	// (1.1 is a realistic skew, 2 an extreme one; author u0…0 is the
	// hottest). Values in (0, 1] are invalid: Zipf needs s > 1. Default 0.
	KeySkew float64 `mapstructure:"key_skew"`
	// Languages are the languages of generated text, each one of en, es,
	// fr, de, pt, ja, chosen uniformly per activity (list a language twice
	// to double its share). Must not be empty. Default en, es, fr, de, pt, ja.
	Languages []string `mapstructure:"languages"`
	// LinkRatio is the fraction of activities that carry 1 or 2 links, in
	// [0, 1]. Default 0.3.
	LinkRatio float64 `mapstructure:"link_ratio"`
	// Seed seeds the generator; the same seed, config and clock give the
	// same bytes. 0 means a time-based seed (see Generator.Seed). Default 0.
	Seed int64 `mapstructure:"seed"`
	// IDPrefix is prepended to seq to form each activity's id, so consumers
	// can check for gaps. May be empty. Default "act-".
	IDPrefix string `mapstructure:"id_prefix"`
}

// DefaultConfig returns the documented defaults: steady 8000 events/s,
// spikes of 50000/s for 60s every 2m (spike profile), a 60s ramp (ramp
// profile), no limit, 100000 uniformly chosen authors, all six languages,
// 30% of activities with links, a time-based seed and ids "act-<seq>".
func DefaultConfig() Config {
	return Config{
		Rate:       8000,
		Profile:    ProfileSteady,
		SpikeRate:  50000,
		SpikeEvery: 2 * time.Minute,
		SpikeFor:   60 * time.Second,
		RampFor:    60 * time.Second,
		Authors:    100000,
		Languages:  []string{"en", "es", "fr", "de", "pt", "ja"},
		LinkRatio:  0.3,
		IDPrefix:   "act-",
	}
}

// Validate reports every invalid field by its config.yaml key
// ("synthetic.rate", ...), joined with errors.Join. It returns nil for a
// valid Config.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("synthetic."+key+": "+format, args...))
	}
	finite := func(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

	if !(c.Rate > 0) || !finite(c.Rate) {
		bad("rate", "must be positive, got %v", c.Rate)
	}
	switch c.Profile {
	case ProfileSteady, ProfileRamp, ProfileSpike:
	default:
		bad("profile", "want steady, ramp or spike, got %q", c.Profile)
	}
	spike, ramp := c.Profile == ProfileSpike, c.Profile == ProfileRamp
	if !finite(c.SpikeRate) || c.SpikeRate < 0 || (spike && c.SpikeRate == 0) {
		bad("spike_rate", "must be positive, got %v", c.SpikeRate)
	}
	for _, d := range []struct {
		key  string
		v    time.Duration
		used bool
	}{
		{"spike_every", c.SpikeEvery, spike},
		{"spike_for", c.SpikeFor, spike},
		{"ramp_for", c.RampFor, ramp},
	} {
		if d.v < 0 || (d.used && d.v == 0) {
			bad(d.key, "must be positive, got %v", d.v)
		}
	}
	if c.Limit < 0 {
		bad("limit", "must be 0 (unlimited) or positive, got %d", c.Limit)
	}
	if c.Authors < 1 {
		bad("authors", "must be at least 1, got %d", c.Authors)
	}
	if !(c.KeySkew == 0 || c.KeySkew > 1) || !finite(c.KeySkew) {
		bad("key_skew", "want 0 (uniform) or a Zipf exponent above 1, got %v", c.KeySkew)
	}
	if len(c.Languages) == 0 {
		bad("languages", "must not be empty")
	}
	for _, l := range c.Languages {
		if languages[l] == nil {
			bad("languages", "unknown language %q, want one of en, es, fr, de, pt, ja", l)
		}
	}
	if !(c.LinkRatio >= 0 && c.LinkRatio <= 1) {
		bad("link_ratio", "must be between 0 and 1, got %v", c.LinkRatio)
	}
	return errors.Join(errs...)
}

// RateAt returns the profile's rate in events per second at elapsed since
// start: 0 before start (elapsed < 0). A spike covers [start, end): at its
// first instant the rate is SpikeRate, at its end it is Rate again. c must
// be valid.
func (c Config) RateAt(elapsed time.Duration) float64 {
	if elapsed < 0 {
		return 0
	}
	switch c.Profile {
	case ProfileRamp:
		if elapsed < c.RampFor {
			return c.Rate * float64(elapsed) / float64(c.RampFor)
		}
	case ProfileSpike:
		if cycle := c.SpikeEvery + c.SpikeFor; cycle > 0 && elapsed%cycle >= c.SpikeEvery {
			return c.SpikeRate
		}
	}
	return c.Rate
}

// EventsBy returns the number of events the profile schedules in the first
// elapsed since start: the integral of RateAt from 0 to elapsed (0 for
// elapsed <= 0). Run emits floor(EventsBy(t)) events by t, less any
// shortfall. c must be valid.
func (c Config) EventsBy(elapsed time.Duration) float64 {
	if elapsed <= 0 {
		return 0
	}
	// Sum in event-nanoseconds and divide once, so that whole numbers of
	// events come out exact (1000/s over 2s is 2000, not 1999.9999).
	t := float64(elapsed)
	switch c.Profile {
	case ProfileRamp:
		if elapsed < c.RampFor {
			return c.Rate * t / float64(c.RampFor) * t / 2 / 1e9
		}
		return c.Rate * (t - float64(c.RampFor)/2) / 1e9
	case ProfileSpike:
		cycle := c.SpikeEvery + c.SpikeFor
		if cycle <= 0 {
			break
		}
		full, phase := elapsed/cycle, elapsed%cycle
		ns := float64(full) * (c.Rate*float64(c.SpikeEvery) + c.SpikeRate*float64(c.SpikeFor))
		if phase < c.SpikeEvery {
			ns += c.Rate * float64(phase)
		} else {
			ns += c.Rate*float64(c.SpikeEvery) + c.SpikeRate*float64(phase-c.SpikeEvery)
		}
		return ns / 1e9
	}
	return c.Rate * t / 1e9
}

// dueBy is the whole number of events scheduled by elapsed.
func (c Config) dueBy(elapsed time.Duration) int64 {
	// The epsilon absorbs rounding just below a whole number.
	return int64(math.Floor(c.EventsBy(elapsed) + 1e-6))
}
