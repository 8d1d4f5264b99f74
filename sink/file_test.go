package sink

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	metrics "github.com/rcrowley/go-metrics"
)

// ackLog records the outcome of test records by id.
type ackLog struct {
	mu   sync.Mutex
	acks map[int]error
	n    atomic.Int64
}

func (a *ackLog) record(id int) *Record {
	r := &Record{Value: fmt.Appendf(nil, `{"id":"%d"}`, id), Ack: func(err error) {
		a.mu.Lock()
		if a.acks == nil {
			a.acks = map[int]error{}
		}
		if _, dup := a.acks[id]; dup {
			panic(fmt.Sprintf("record %d acked twice", id))
		}
		a.acks[id] = err
		a.mu.Unlock()
		a.n.Add(1)
	}}
	r.pending.Store(1)
	return r
}

func (a *ackLog) outcome(id int) (error, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	err, ok := a.acks[id]
	return err, ok
}

// TestWriterOutputBrokenPipe writes to a pipe whose reader is gone: every
// record must be nacked (none acked, so all are redelivered), Send must fail
// from then on with an error naming the broken pipe, and the flusher stop.
func TestWriterOutputBrokenPipe(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	pr.Close()
	defer pw.Close()
	cfg := FileConfig{FlushInterval: time.Millisecond, BufferBytes: 4096, RetryBackoff: time.Millisecond}
	o := newWriterOutput(pw, nil, cfg, quietLog(), metrics.NewRegistry())
	var a ackLog
	const n = 20
	var sendErr error
	sent := 0
	for i := range n {
		if sendErr = o.Send(context.Background(), a.record(i)); sendErr != nil {
			break
		}
		sent++
		time.Sleep(time.Millisecond)
	}
	deadline := time.Now().Add(10 * time.Second)
	for a.n.Load() < int64(sent) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	for i := range sent {
		err, ok := a.outcome(i)
		if !ok || err == nil || !errors.Is(err, syscall.EPIPE) {
			t.Errorf("record %d: acked %v with %v, want a nack wrapping EPIPE", i, ok, err)
		}
	}
	if sendErr == nil {
		sendErr = o.Send(context.Background(), a.record(n))
	}
	if sendErr == nil || !strings.Contains(sendErr.Error(), "broken pipe") {
		t.Errorf("Send after the pipe broke = %v, want an error naming the broken pipe", sendErr)
	}
	select {
	case <-o.done:
	case <-time.After(5 * time.Second):
		t.Error("the flusher still runs after the pipe broke")
	}
	if err := o.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// TestFileRotationFailureRecovers makes the reopen after a rotation fail a
// few times: the output must reopen on a later flush and write every record
// exactly once, acknowledging each.
func TestFileRotationFailureRecovers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fails int
	}{
		{"one failure", 1},
		{"several failures", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := DefaultFileConfig()
			cfg.Path = filepath.Join(dir, "out.ndjson")
			cfg.RotateBytes = 1 << 10
			cfg.FlushInterval = time.Millisecond
			cfg.RetryBackoff = time.Millisecond
			o, err := newFileOutput(cfg, quietLog(), metrics.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			var opens atomic.Int64
			o.open = func(path string) (*os.File, int64, error) {
				if opens.Add(1) <= int64(tc.fails) {
					return nil, 0, errors.New("injected: no space left")
				}
				return openAppend(path)
			}
			var a ackLog
			const n = 500
			// In two halves, so that records arrive after the failed
			// rotations too.
			for half := range 2 {
				for i := half * n / 2; i < (half+1)*n/2; i++ {
					if err := o.Send(context.Background(), a.record(i)); err != nil {
						t.Fatal(err)
					}
				}
				deadline := time.Now().Add(20 * time.Second)
				for a.n.Load() < int64((half+1)*n/2) && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
			}
			if err := o.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			for i := range n {
				if err, ok := a.outcome(i); !ok || err != nil {
					t.Errorf("record %d: acked %v with %v, want acked with nil", i, ok, err)
				}
			}
			if opens.Load() <= int64(tc.fails) {
				t.Errorf("%d opens, want more than the %d failed ones", opens.Load(), tc.fails)
			}
			seen := map[string]int{}
			files, _ := filepath.Glob(filepath.Join(dir, "out.ndjson*"))
			for _, p := range files {
				f, err := os.Open(p)
				if err != nil {
					t.Fatal(err)
				}
				sc := bufio.NewScanner(f)
				for sc.Scan() {
					seen[sc.Text()]++
				}
				f.Close()
			}
			for i := range n {
				if id := fmt.Sprintf(`{"id":"%d"}`, i); seen[id] != 1 {
					t.Errorf("%s written %d times, want once", id, seen[id])
				}
			}
		})
	}
}

// TestSlowFsyncDoesNotBlockSend holds the file output's fsync: Send must
// still take records (so the sink's other outputs are not stalled behind
// it) until the second buffer fills, and everything is acknowledged once
// the fsync returns.
func TestSlowFsyncDoesNotBlockSend(t *testing.T) {
	cfg := DefaultFileConfig()
	cfg.Path = filepath.Join(t.TempDir(), "out.ndjson")
	cfg.Fsync = true
	cfg.FlushInterval = time.Millisecond
	o, err := newFileOutput(cfg, quietLog(), metrics.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	inSync, release := make(chan struct{}, 1), make(chan struct{})
	var once sync.Once
	o.sync = func(f *os.File) error {
		once.Do(func() {
			inSync <- struct{}{}
			<-release
		})
		return f.Sync()
	}
	var a ackLog
	if err := o.Send(context.Background(), a.record(0)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-inSync:
	case <-time.After(10 * time.Second):
		t.Fatal("the flusher never reached fsync")
	}
	const n = 100
	sent := make(chan error, 1)
	go func() {
		for i := 1; i <= n; i++ {
			if err := o.Send(context.Background(), a.record(i)); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	select {
	case err := <-sent:
		if err != nil {
			t.Fatalf("Send during a slow fsync: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Send blocked while the flusher was in fsync")
	}
	if got := a.n.Load(); got != 0 {
		t.Errorf("%d records acked before their fsync returned, want 0", got)
	}
	close(release)
	if err := o.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	for i := 0; i <= n; i++ {
		if err, ok := a.outcome(i); !ok || err != nil {
			t.Errorf("record %d: acked %v with %v, want acked with nil", i, ok, err)
		}
	}
}
