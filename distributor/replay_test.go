package distributor

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/bendstream/bend/internal/kafkatest"
	"github.com/bendstream/bend/internal/metricnames"
	"github.com/bendstream/bend/internal/replay"
	metrics "github.com/rcrowley/go-metrics"
)

// TestReplayPauseResetResume drives the instance side of a replay while
// running: a pause drains and commits and holds reading still until its
// lease expires on its own; another replay is refused while it holds;
// a reset names only owned partitions; a reset to offset 0 and a resume
// make the claims read the whole topic again, without stopping Run.
func TestReplayPauseResetResume(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	topic := kafkatest.CreateTopic(t, brokers, 4)
	const n = 1000
	produce(t, brokers, topic, 1, n, byIndex)
	c := newCollector()
	o := defaultOpts(t)
	p := startPipeline(t, brokers, topic, o, c)
	d := p.d
	consumed := metrics.GetOrRegisterMeter(metricnames.DistributorConsumed, p.reg)
	eventually(t, 60*time.Second, "every id emitted", func() bool { return c.distinct() == n })
	ctx := context.Background()

	// A pause with a short lease: drained and committed at once.
	a, err := d.ReplayPause(ctx, replay.PauseRequest{ID: "one", LeaseMillis: 1500})
	if err != nil {
		t.Fatalf("pause: %v", err)
	}
	var sum int64
	for _, part := range a.Partitions {
		sum += part.Offset
	}
	if len(a.Partitions) != 4 || sum != n || a.MemberID == "" {
		t.Fatalf("pause answered %+v, want 4 partitions at watermarks summing to %d and a member id", a, n)
	}
	if got := d.InFlight(); got != 0 {
		t.Errorf("in flight after the pause = %d, want 0", got)
	}
	if _, err := d.ReplayPause(ctx, replay.PauseRequest{ID: "two"}); !errors.Is(err, replay.ErrBusy) {
		t.Errorf("a second replay's pause = %v, want ErrBusy", err)
	}
	if _, err := d.ReplayReset(replay.ResetRequest{ID: "two"}); !errors.Is(err, replay.ErrNotPaused) {
		t.Errorf("reset by a replay not holding the pause = %v, want ErrNotPaused", err)
	}
	// Renewing the lease of "one" with a pause of the same id answers again.
	if a2, err := d.ReplayPause(ctx, replay.PauseRequest{ID: "one", LeaseMillis: 1500}); err != nil || len(a2.Partitions) != 4 {
		t.Errorf("renewed pause = %+v, %v", a2, err)
	}
	if _, err := d.ReplayReset(replay.ResetRequest{ID: "one", Offsets: []replay.Partition{{Topic: "elsewhere", Partition: 0}}}); !errors.Is(err, replay.ErrNotOwned) {
		t.Errorf("reset of a partition not owned = %v, want ErrNotOwned", err)
	}
	// New input waits while paused, and flows once the lease expires.
	read := consumed.Count()
	produce(t, brokers, topic, n+1, n, byIndex)
	eventually(t, 30*time.Second, "the lease to expire", func() bool {
		if d.ReplayStatus().Paused && consumed.Count() != read {
			t.Fatalf("read %d records while paused", consumed.Count()-read)
		}
		return !d.ReplayStatus().Paused
	})
	eventually(t, 60*time.Second, "the new ids emitted after the lease expired", func() bool { return c.distinct() == 2*n })

	// A replay from offset 0: every id is emitted again.
	a, err = d.ReplayPause(ctx, replay.PauseRequest{ID: "three"})
	if err != nil {
		t.Fatalf("pause: %v", err)
	}
	req := replay.ResetRequest{ID: "three"}
	for _, part := range a.Partitions {
		req.Offsets = append(req.Offsets, replay.Partition{Topic: part.Topic, Partition: part.Partition, Offset: 0})
	}
	if r, err := d.ReplayReset(req); err != nil || len(r.Reset) != 4 {
		t.Fatalf("reset = %+v, %v", r, err)
	}
	if r, err := d.ReplayResume(replay.ResumeRequest{ID: "three"}); err != nil || !r.Rejoined {
		t.Fatalf("resume = %+v, %v; want a rejoin", r, err)
	}
	if _, err := d.ReplayResume(replay.ResumeRequest{ID: "three"}); !errors.Is(err, replay.ErrNotPaused) {
		t.Errorf("a second resume = %v, want ErrNotPaused", err)
	}
	eventually(t, 60*time.Second, "every id emitted twice", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i := 1; i <= 2*n; i++ {
			if c.ids[fmt.Sprintf("act-%d", i)] < 2 {
				return false
			}
		}
		return true
	})
	select {
	case err := <-p.done:
		t.Fatalf("Run returned during the replay: %v", err)
	default:
	}
	if err := p.shutdown(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestReplayPauseSurvivesRebalance pauses one member, then a second member
// joins: the paused claims must let their partitions go at once (they
// watch for the revocation), not after the rebalance timeout, and after the
// resume every record is emitted by one member or the other.
func TestReplayPauseSurvivesRebalance(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	topic := kafkatest.CreateTopic(t, brokers, 4)
	const n = 1000
	produce(t, brokers, topic, 1, n, byIndex)
	o := defaultOpts(t)
	// A claim that missed its revocation would hold the rebalance for
	// drain_timeout + 5s: make that far longer than the wait below.
	o.cfg.DrainTimeout = 40 * time.Second
	ca := newCollector()
	pa := startPipeline(t, brokers, topic, o, ca)
	eventually(t, 60*time.Second, "every id emitted by the first member", func() bool { return ca.distinct() == n })
	if _, err := pa.d.ReplayPause(context.Background(), replay.PauseRequest{ID: "r", LeaseMillis: 120_000}); err != nil {
		t.Fatalf("pause: %v", err)
	}
	produce(t, brokers, topic, n+1, n, byIndex)
	cb := newCollector()
	joined := time.Now()
	pb := startPipeline(t, brokers, topic, o, cb)
	eventually(t, 30*time.Second, "the second member to emit records of partitions taken from the paused one", func() bool { return cb.distinct() > 0 })
	t.Logf("the joining member emitted its first record %s after it started", time.Since(joined).Round(time.Millisecond))
	if _, err := pa.d.ReplayResume(replay.ResumeRequest{ID: "r"}); err != nil {
		t.Fatalf("resume: %v", err)
	}
	eventually(t, 90*time.Second, "every id emitted by one member or the other", func() bool {
		ca.mu.Lock()
		defer ca.mu.Unlock()
		cb.mu.Lock()
		defer cb.mu.Unlock()
		for i := 1; i <= 2*n; i++ {
			id := fmt.Sprintf("act-%d", i)
			if ca.ids[id]+cb.ids[id] == 0 {
				return false
			}
		}
		return true
	})
	for _, p := range []*pipeline{pa, pb} {
		select {
		case err := <-p.done:
			t.Fatalf("Run returned: %v", err)
		default:
		}
	}
	if err := pb.shutdown(t); err != nil {
		t.Fatalf("second member: %v", err)
	}
	if err := pa.shutdown(t); err != nil {
		t.Fatalf("first member: %v", err)
	}
}
