package sink

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	metrics "github.com/rcrowley/go-metrics"
)

// TestRecordDoneOnce: an output completing a record more often than it
// has outputs cannot ack it twice; the extra call is counted.
func TestRecordDoneOnce(t *testing.T) {
	for _, tc := range []struct {
		name        string
		outputs     int32
		calls       int
		wantAcks    int32
		wantIgnored int64
	}{
		{"one output, once", 1, 1, 1, 0},
		{"one output, twice", 1, 2, 1, 1},
		{"two outputs, three calls", 2, 3, 1, 1},
		{"two outputs, one call", 2, 1, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Sink{emitted: metrics.NewMeter(), dead: metrics.NewMeter(), failed: metrics.NewCounter(),
				doubleDone: metrics.NewCounter(), latency: metrics.NewHistogram(metrics.NewUniformSample(10))}
			var acks atomic.Int32
			r := &Record{Ack: func(error) { acks.Add(1) }, sink: s}
			r.pending.Store(tc.outputs)
			for range tc.calls {
				r.done(nil)
			}
			if got := acks.Load(); got != tc.wantAcks {
				t.Errorf("acks = %d, want %d", got, tc.wantAcks)
			}
			if got := s.doubleDone.Count(); got != tc.wantIgnored {
				t.Errorf("sink.double_done = %d, want %d", got, tc.wantIgnored)
			}
		})
	}
}

// TestHardStopNacksQueued: records still waiting in the sink's input at a
// hard stop are nacked, each once.
func TestHardStopNacksQueued(t *testing.T) {
	s := &Sink{outs: []output{instantOutput{}}, emitted: metrics.NewMeter(), dead: metrics.NewMeter(), failed: metrics.NewCounter(),
		doubleDone: metrics.NewCounter(), latency: metrics.NewHistogram(metrics.NewUniformSample(10)), log: quietLog()}
	const n = 8
	in := make(chan *Record, n)
	var nacks, acks atomic.Int32
	for range n {
		in <- &Record{Value: []byte(`{}`), Ack: func(err error) {
			if err != nil {
				nacks.Add(1)
			} else {
				acks.Add(1)
			}
		}}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Run(ctx, in); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	// Run may have delivered some before seeing ctx end (its output
	// acks at once); none may be left without an outcome.
	if got := nacks.Load() + acks.Load(); got != n {
		t.Fatalf("outcomes = %d (nacks %d, acks %d), want %d", got, nacks.Load(), acks.Load(), n)
	}
	if nacks.Load() == 0 {
		t.Errorf("no record nacked at the hard stop")
	}
	if got := s.failed.Count(); got != int64(nacks.Load()) {
		t.Errorf("sink.failed = %d, want %d", got, nacks.Load())
	}
}

// instantOutput holds every record at once.
type instantOutput struct{}

func (instantOutput) Send(_ context.Context, r *Record) error { r.done(nil); return nil }
func (instantOutput) Close() error                            { return nil }
