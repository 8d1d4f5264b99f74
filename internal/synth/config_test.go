package synth

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	with := func(f func(*Config)) Config {
		c := DefaultConfig()
		f(&c)
		return c
	}
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr []string // substrings, each a key; nil means valid
	}{
		{"defaults", DefaultConfig(), nil},
		{"ramp", with(func(c *Config) { c.Profile = ProfileRamp }), nil},
		{"spike", with(func(c *Config) { c.Profile = ProfileSpike }), nil},
		{"zipf", with(func(c *Config) { c.KeySkew = 1.1 }), nil},
		{"one author", with(func(c *Config) { c.Authors = 1; c.KeySkew = 2 }), nil},
		{"empty prefix", with(func(c *Config) { c.IDPrefix = "" }), nil},
		{"unused spike fields may be zero", with(func(c *Config) { c.SpikeRate, c.SpikeEvery, c.SpikeFor, c.RampFor = 0, 0, 0, 0 }), nil},
		{"zero rate", with(func(c *Config) { c.Rate = 0 }), []string{"synthetic.rate:"}},
		{"NaN rate", with(func(c *Config) { c.Rate = math.NaN() }), []string{"synthetic.rate:"}},
		{"infinite rate", with(func(c *Config) { c.Rate = math.Inf(1) }), []string{"synthetic.rate:"}},
		{"unknown profile", with(func(c *Config) { c.Profile = "burst" }), []string{"synthetic.profile:"}},
		{"empty profile", with(func(c *Config) { c.Profile = "" }), []string{"synthetic.profile:"}},
		{"negative spike rate", with(func(c *Config) { c.SpikeRate = -1 }), []string{"synthetic.spike_rate:"}},
		{"zero spike rate with spikes", with(func(c *Config) { c.Profile = ProfileSpike; c.SpikeRate = 0 }), []string{"synthetic.spike_rate:"}},
		{"zero spike_every with spikes", with(func(c *Config) { c.Profile = ProfileSpike; c.SpikeEvery = 0 }), []string{"synthetic.spike_every:"}},
		{"negative spike_for", with(func(c *Config) { c.SpikeFor = -time.Second }), []string{"synthetic.spike_for:"}},
		{"zero ramp_for with ramp", with(func(c *Config) { c.Profile = ProfileRamp; c.RampFor = 0 }), []string{"synthetic.ramp_for:"}},
		{"negative limit", with(func(c *Config) { c.Limit = -1 }), []string{"synthetic.limit:"}},
		{"no authors", with(func(c *Config) { c.Authors = 0 }), []string{"synthetic.authors:"}},
		{"skew below 1", with(func(c *Config) { c.KeySkew = 0.5 }), []string{"synthetic.key_skew:"}},
		{"skew of 1", with(func(c *Config) { c.KeySkew = 1 }), []string{"synthetic.key_skew:"}},
		{"negative skew", with(func(c *Config) { c.KeySkew = -2 }), []string{"synthetic.key_skew:"}},
		{"no languages", with(func(c *Config) { c.Languages = nil }), []string{"synthetic.languages:"}},
		{"unknown language", with(func(c *Config) { c.Languages = []string{"en", "xx"} }), []string{`synthetic.languages: unknown language "xx"`}},
		{"link ratio above 1", with(func(c *Config) { c.LinkRatio = 1.5 }), []string{"synthetic.link_ratio:"}},
		{"negative link ratio", with(func(c *Config) { c.LinkRatio = -0.1 }), []string{"synthetic.link_ratio:"}},
		{"every error at once", Config{Rate: -1, Profile: ProfileSpike, KeySkew: 0.9, LinkRatio: 2}, []string{
			"synthetic.rate:", "synthetic.spike_rate:", "synthetic.spike_every:", "synthetic.spike_for:",
			"synthetic.authors:", "synthetic.key_skew:", "synthetic.languages:", "synthetic.link_ratio:",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors naming %q", tc.wantErr)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.wantErr) {
				t.Errorf("Validate() reported %d errors, want %d:\n%v", len(lines), len(tc.wantErr), err)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

// profile returns a small config of the given profile for rate tests:
// 1000/s steady, spikes of 5000/s for 10s every 20s, a 10s ramp.
func profile(p string) Config {
	c := DefaultConfig()
	c.Profile = p
	c.Rate, c.SpikeRate = 1000, 5000
	c.SpikeEvery, c.SpikeFor, c.RampFor = 20*time.Second, 10*time.Second, 10*time.Second
	return c
}

func TestRateAt(t *testing.T) {
	const ns = time.Nanosecond
	for _, tc := range []struct {
		name    string
		profile string
		at      time.Duration
		want    float64
	}{
		{"steady before start", ProfileSteady, -time.Second, 0},
		{"steady at start", ProfileSteady, 0, 1000},
		{"steady after an hour", ProfileSteady, time.Hour, 1000},

		{"ramp before start", ProfileRamp, -ns, 0},
		{"ramp at start", ProfileRamp, 0, 0},
		{"ramp a quarter in", ProfileRamp, 2500 * time.Millisecond, 250},
		{"ramp half way", ProfileRamp, 5 * time.Second, 500},
		{"ramp just before the top", ProfileRamp, 10*time.Second - time.Millisecond, 999.9},
		{"ramp at the top", ProfileRamp, 10 * time.Second, 1000},
		{"ramp long after", ProfileRamp, time.Hour, 1000},

		{"spike profile at start", ProfileSpike, 0, 1000},
		{"just before the first spike", ProfileSpike, 20*time.Second - ns, 1000},
		{"first spike starts", ProfileSpike, 20 * time.Second, 5000},
		{"during the first spike", ProfileSpike, 25 * time.Second, 5000},
		{"last instant of the first spike", ProfileSpike, 30*time.Second - ns, 5000},
		{"first spike ended", ProfileSpike, 30 * time.Second, 1000},
		{"between spikes", ProfileSpike, 45 * time.Second, 1000},
		{"second spike starts", ProfileSpike, 50 * time.Second, 5000},
		{"second spike ended", ProfileSpike, 60 * time.Second, 1000},
		{"hundredth spike", ProfileSpike, 99*30*time.Second + 25*time.Second, 5000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := profile(tc.profile).RateAt(tc.at)
			if math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("RateAt(%v) = %v, want %v", tc.at, got, tc.want)
			}
		})
	}
}

func TestEventsBy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		profile string
		at      time.Duration
		want    float64
	}{
		{"steady before start", ProfileSteady, -time.Second, 0},
		{"steady at start", ProfileSteady, 0, 0},
		{"steady 5ms", ProfileSteady, 5 * time.Millisecond, 5},
		{"steady 2s", ProfileSteady, 2 * time.Second, 2000},
		{"ramp half way", ProfileRamp, 5 * time.Second, 1250},       // 5s rising to 500/s
		{"ramp at the top", ProfileRamp, 10 * time.Second, 5000},    // half of 10s at 1000/s
		{"ramp after the top", ProfileRamp, 12 * time.Second, 7000}, // + 2s at 1000/s
		{"spike profile before spike", ProfileSpike, 20 * time.Second, 20000},
		{"mid first spike", ProfileSpike, 25 * time.Second, 45000},     // 20000 + 5s*5000
		{"after first spike", ProfileSpike, 30 * time.Second, 70000},   // 20000 + 50000
		{"after second spike", ProfileSpike, 60 * time.Second, 140000}, // two cycles
		{"into third cycle", ProfileSpike, 61 * time.Second, 141000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := profile(tc.profile)
			if got := c.EventsBy(tc.at); math.Abs(got-tc.want) > 1e-6 {
				t.Errorf("EventsBy(%v) = %v, want %v", tc.at, got, tc.want)
			}
			if got, want := c.dueBy(tc.at), int64(tc.want); got != want {
				t.Errorf("dueBy(%v) = %d, want %d", tc.at, got, want)
			}
		})
	}
}

// TestEventsByIntegratesRateAt checks EventsBy against a Riemann sum of
// RateAt for every profile.
func TestEventsByIntegratesRateAt(t *testing.T) {
	for _, p := range []string{ProfileSteady, ProfileRamp, ProfileSpike} {
		t.Run(p, func(t *testing.T) {
			c := profile(p)
			const step = time.Millisecond
			sum := 0.0
			for at := time.Duration(0); at <= 95*time.Second; at += step {
				if at%(5*time.Second) == 0 {
					if got := c.EventsBy(at); math.Abs(got-sum) > 5 {
						t.Fatalf("EventsBy(%v) = %v, Riemann sum of RateAt %v", at, got, sum)
					}
				}
				sum += c.RateAt(at) * step.Seconds()
			}
		})
	}
}
