package synth

import (
	"context"
	"fmt"
	"time"
)

const (
	// tick is how often Run wakes to emit, in one batch, the events that
	// have come due: 250 events per wake-up at 50000/s.
	tick = 5 * time.Millisecond
	// maxLag is how far behind the schedule Run may fall while emit blocks.
	// It bounds the catch-up burst after a stall to one second's worth of
	// events; anything older is shortfall.
	maxLag = time.Second
)

// Run paces the generator: it builds activities with Append and calls emit
// for each, at the rate of the configured profile measured from the call,
// until ctx ends or the generator has built Config.Limit activities (both
// return nil), or emit returns an error (returned, wrapped; but nil if ctx
// has ended by then).
//
// emit may block; that is backpressure. Run then falls behind the schedule,
// but never by more than one second's worth of events: when emit returns,
// Run emits at most that many back to back and counts the older ones, which
// it never builds, in Stats.Shortfall. Seqs stay gapless.
//
// value is valid only until emit returns: Run reuses its array. Run wakes
// every 5ms and emits what has come due since in one batch; it neither
// sleeps per event nor spins. It must not run concurrently with Append or
// another Run.
func (g *Generator) Run(ctx context.Context, emit func(ctx context.Context, value []byte, id, key string) error) error {
	done := ctx.Done()
	start := time.Now()
	var sched int64 // events accounted for since start: emitted or shortfall
	// plan returns how many events are due by el, first writing off as
	// shortfall those due more than maxLag before el.
	plan := func(el time.Duration) int64 {
		if floor := g.cfg.dueBy(el - maxLag); sched < floor {
			g.shortfall.Add(floor - sched)
			sched = floor
		}
		return g.cfg.dueBy(el)
	}
	limited := func() bool { return g.cfg.Limit > 0 && g.generated.Load() >= g.cfg.Limit }

	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		el := time.Since(start)
		due := plan(el)
		for sched < due && !limited() {
			select {
			case <-done:
				return nil
			default:
			}
			var id, key string
			g.buf, id, key = g.Append(g.buf[:0])
			if err := emit(ctx, g.buf, id, key); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("emitting %s: %w", id, err)
			}
			sched++
			// emit may have blocked. Re-plan as soon as a tick has passed so
			// a stall is capped now, rather than after this batch's
			// remainder has gone out late on top of the catch-up.
			if now := time.Since(start); now-el >= tick {
				el, due = now, plan(now)
			}
		}
		if limited() {
			return nil
		}
		select {
		case <-t.C:
		case <-done:
			return nil
		}
	}
}
