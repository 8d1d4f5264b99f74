package synth

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// rateConfig returns a seeded config of rate events/s with the fixed clock.
func rateConfig(rate float64) Config {
	return seeded(func(c *Config) { c.Rate = rate })
}

// record runs g until ctx ends, recording the virtual time of each event.
// It must be called inside a synctest bubble.
func record(ctx context.Context, t *testing.T, g *Generator) (emitted []time.Duration, err error) {
	t.Helper()
	start := time.Now()
	err = g.Run(ctx, func(_ context.Context, value []byte, id, _ string) error {
		if !json.Valid(value) {
			t.Errorf("event %s is not valid JSON", id)
		}
		emitted = append(emitted, time.Since(start))
		return nil
	})
	return emitted, err
}

func TestRunPacesByIntegral(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		span time.Duration
	}{
		{"steady 1000/s for 2s", rateConfig(1000), 2 * time.Second},
		{"steady 50000/s for 1s", rateConfig(50000), time.Second},
		{"steady 3/s for 2s", rateConfig(3), 2 * time.Second},
		{"ramp to 1000/s over 1s, for 2s", seeded(func(c *Config) {
			c.Rate, c.Profile, c.RampFor = 1000, ProfileRamp, time.Second
		}), 2 * time.Second},
		{"spikes of 4000/s for 1s every 2s, for 7.5s", seeded(func(c *Config) {
			c.Rate, c.Profile, c.SpikeRate, c.SpikeEvery, c.SpikeFor = 1000, ProfileSpike, 4000, 2*time.Second, time.Second
		}), 7500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(t.Context())
				var emitted []time.Duration
				var err error
				done := make(chan struct{})
				go func() {
					defer close(done)
					emitted, err = record(ctx, t, NewGenerator(tc.cfg, WithClock(fixedClock)))
				}()
				// Stop half a tick after the end, once Run has emitted what
				// was due at the end.
				time.Sleep(tc.span + tick/2)
				cancel()
				<-done
				if err != nil {
					t.Fatalf("Run() = %v, want nil on ctx end", err)
				}
				want := int64(tc.cfg.EventsBy(tc.span))
				if got := int64(len(emitted)); got != want {
					t.Errorf("emitted %d events in %v, want %d", got, tc.span, want)
				}
				// Every event went out within a tick of its scheduled time.
				for i, at := range emitted {
					if due := tc.cfg.EventsBy(at); due < float64(i+1)-1e-6 {
						t.Fatalf("event %d emitted at %v, when only %.2f were due", i+1, at, due)
					}
					if due := tc.cfg.EventsBy(at - tick); due > float64(i+1)+1e-6 {
						t.Fatalf("event %d emitted at %v, more than a tick late (%.2f due a tick earlier)", i+1, at, due)
					}
				}
			})
		})
	}
}

func TestRunLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := rateConfig(1000)
		cfg.Limit = 1234
		g := NewGenerator(cfg)
		emitted, err := record(t.Context(), t, g)
		if err != nil {
			t.Fatalf("Run() = %v, want nil at the limit", err)
		}
		if len(emitted) != 1234 {
			t.Errorf("emitted %d events, want the limit 1234", len(emitted))
		}
		if last := emitted[len(emitted)-1]; last < 1234*time.Millisecond || last > 1234*time.Millisecond+tick {
			t.Errorf("last event at %v, want at 1.234s, paced", last)
		}
		if got := g.Stats(); got != (Stats{Generated: 1234}) {
			t.Errorf("Stats() = %+v, want 1234 generated, no shortfall", got)
		}
	})
}

func TestRunBlockingEmitCountsShortfall(t *testing.T) {
	// At 1000/s, emit blocks for 5s on event 498, in the middle of the batch
	// of events 496-500 due at 0.5s. When it returns at 5.5s, 5500 events
	// are due; Run may lag one second, so it writes off events 499-4500 as
	// shortfall, emits 4501-5500 back to back, then paces: by 7s it has
	// generated 498+1000+1500.
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		g := NewGenerator(rateConfig(1000))
		start := time.Now()
		var emitted []time.Duration
		done := make(chan error)
		go func() {
			done <- g.Run(ctx, func(ctx context.Context, _ []byte, _, _ string) error {
				emitted = append(emitted, time.Since(start))
				if len(emitted) == 498 {
					select {
					case <-time.After(5 * time.Second):
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				return nil
			})
		}()
		// Stats may be read while Run runs.
		for range 10 {
			time.Sleep(time.Second / 2)
			_ = g.Stats()
		}
		time.Sleep(2*time.Second + tick/2) // to 7s
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run() = %v, want nil", err)
		}

		if got, want := g.Stats(), (Stats{Generated: 2998, Shortfall: 4002}); got != want {
			t.Errorf("Stats() = %+v, want %+v", got, want)
		}
		if len(emitted) != 2998 {
			t.Errorf("emitted %d events, want 2998", len(emitted))
		}
		// No burst of more than one second's worth: at most 1000 events at
		// any one instant, and at most 2000 (the catch-up plus one second at
		// the rate) in any second.
		for i := range emitted {
			j, k := i, i
			for j < len(emitted) && emitted[j] == emitted[i] {
				j++
			}
			for k < len(emitted) && emitted[k] < emitted[i]+time.Second {
				k++
			}
			if j-i > 1000 {
				t.Fatalf("%d events emitted at once at %v, want at most 1000", j-i, emitted[i])
			}
			if k-i > 2000 {
				t.Fatalf("%d events emitted in the second from %v, want at most 2000", k-i, emitted[i])
			}
		}
		if first, last := emitted[498], emitted[1497]; first != 5500*time.Millisecond || last != first {
			t.Errorf("the catch-up went out from %v to %v, want all at 5.5s", first, last)
		}
	})
}

func TestRunEmitErrors(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name    string
		cancel  bool // emit cancels ctx before it fails
		wantErr error
	}{
		{"returned", false, boom},
		{"nil after ctx ended", true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				n := 0
				err := NewGenerator(rateConfig(1000)).Run(ctx, func(context.Context, []byte, string, string) error {
					if n++; n == 10 {
						if tc.cancel {
							cancel()
						}
						return boom
					}
					return nil
				})
				if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
					t.Errorf("Run() = %v, want %v", err, tc.wantErr)
				}
				if n != 10 {
					t.Errorf("emit called %d times, want 10", n)
				}
			})
		})
	}
}

func TestRunStopsWhileEmitBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() {
			done <- NewGenerator(rateConfig(1000)).Run(ctx, func(ctx context.Context, _ []byte, _, _ string) error {
				<-ctx.Done() // a sink that never takes anything
				return ctx.Err()
			})
		}()
		time.Sleep(time.Minute)
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v, want nil on ctx end", err)
		}
	})
}

func BenchmarkRun(b *testing.B) {
	for _, tc := range []struct {
		name string
		rate float64
	}{
		// Unpaced: as fast as one goroutine can build and hand over events.
		{"unpaced", 1e9},
		// Paced at the spike rate: must keep up (events/s ≈ 50000).
		{"paced-50k", 50000},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := rateConfig(tc.rate)
			cfg.Limit = int64(b.N)
			g := NewGenerator(cfg)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			err := g.Run(b.Context(), func(context.Context, []byte, string, string) error { return nil })
			elapsed := time.Since(start)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
		})
	}
}
