package sink

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bendstream/bend/internal/kafkatest"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
)

func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// outageWriter fails every write while down is set, and records what it
// wrote otherwise.
type outageWriter struct {
	mu   sync.Mutex
	down bool
	buf  bytes.Buffer
	errs int
}

func (w *outageWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.down {
		w.errs++
		return 0, errors.New("no space left on device")
	}
	return w.buf.Write(p)
}

func (w *outageWriter) set(down bool) {
	w.mu.Lock()
	w.down = down
	w.mu.Unlock()
}

// TestWriterOutputOutage simulates a full disk: while writes fail, nothing
// is acknowledged and Send blocks once the buffer is full (intake stops);
// when the disk recovers, every record is written, in order, and acked once.
func TestWriterOutputOutage(t *testing.T) {
	w := &outageWriter{down: true}
	o := newWriterOutput(w, nil, FileConfig{FlushInterval: 5 * time.Millisecond, BufferBytes: 4096, RetryBackoff: time.Millisecond}, quietLog(), metrics.NewRegistry())
	const n = 100
	var ok, failed, sent atomic.Int64
	var wg sync.WaitGroup
	wg.Add(n)
	go func() {
		for i := range n {
			r := &Record{Value: fmt.Appendf(nil, `{"id":"%03d","pad":"%0200d"}`, i, 0), Ack: func(err error) {
				if err != nil {
					failed.Add(1)
				} else {
					ok.Add(1)
				}
				wg.Done()
			}}
			r.pending.Store(1)
			if err := o.Send(context.Background(), r); err != nil {
				t.Errorf("Send: %v", err)
			}
			sent.Add(1)
		}
	}()
	time.Sleep(200 * time.Millisecond)
	if s := sent.Load(); s >= n {
		t.Fatalf("all %d records were accepted into a 4 KiB buffer while the disk was full; want Send to block", s)
	}
	if a := ok.Load() + failed.Load(); a != 0 {
		t.Fatalf("%d records acknowledged during the outage, want 0", a)
	}
	w.set(false)
	wg.Wait()
	if err := o.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if ok.Load() != n || failed.Load() != 0 {
		t.Fatalf("after recovery: %d ok, %d failed; want %d, 0", ok.Load(), failed.Load(), n)
	}
	lines := strings.Split(strings.TrimSpace(w.buf.String()), "\n")
	if len(lines) != n {
		t.Fatalf("wrote %d lines, want %d", len(lines), n)
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, fmt.Sprintf(`{"id":"%03d"`, i)) {
			t.Fatalf("line %d = %.20q, want id %03d: order or content broken", i, l, i)
		}
	}
	if w.errs == 0 {
		t.Fatal("the outage caused no failed write; the test did not exercise it")
	}
}

// TestWriterOutputCloseNacks checks that records still unwritten when the
// output closes during a lasting outage are nacked, not acked.
func TestWriterOutputCloseNacks(t *testing.T) {
	w := &outageWriter{down: true}
	o := newWriterOutput(w, nil, FileConfig{FlushInterval: 5 * time.Millisecond, BufferBytes: 4096, RetryBackoff: time.Millisecond}, quietLog(), metrics.NewRegistry())
	var failed atomic.Int64
	for i := range 10 {
		r := &Record{Value: fmt.Appendf(nil, `{"id":"%d"}`, i), Ack: func(err error) {
			if err != nil {
				failed.Add(1)
			}
		}}
		r.pending.Store(1)
		if err := o.Send(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Close(); err == nil {
		t.Fatal("Close during an outage returned nil")
	}
	if failed.Load() != 10 {
		t.Fatalf("%d records nacked, want 10", failed.Load())
	}
}

// TestFileRotation writes past sink.file.rotate_bytes and checks that the
// records are spread over rotated files with none lost.
func TestFileRotation(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultFileConfig()
	cfg.Path = filepath.Join(dir, "out.ndjson")
	cfg.RotateBytes = 10 << 10
	cfg.FlushInterval = time.Millisecond
	o, err := newFileOutput(cfg, quietLog(), metrics.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	var wg sync.WaitGroup
	wg.Add(n)
	for i := range n {
		r := &Record{Value: fmt.Appendf(nil, `{"id":"%d"}`, i), Ack: func(err error) {
			if err != nil {
				t.Errorf("nack: %v", err)
			}
			wg.Done()
		}}
		r.pending.Store(1)
		if err := o.Send(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		if i%100 == 0 {
			time.Sleep(2 * time.Millisecond) // let flushes, and so rotations, happen
		}
	}
	wg.Wait()
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(cfg.Path + "*")
	if len(files) < 2 {
		t.Fatalf("%d files, want the output rotated at least once", len(files))
	}
	seen := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if l != "" {
				seen[l] = true
			}
		}
	}
	if len(seen) != n {
		t.Fatalf("%d distinct records across %d files, want %d", len(seen), len(files), n)
	}
}

// TestSinkFanOut checks that a record is acknowledged once, after both the
// file and the Kafka output hold it, and that every id reaches both.
func TestSinkFanOut(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	topic := kafkatest.CreateTopic(t, brokers, 2)
	dlq := kafkatest.CreateTopic(t, brokers, 1)
	path := filepath.Join(t.TempDir(), "out.ndjson")
	cfg := DefaultConfig()
	cfg.File.Path = path
	reg := metrics.NewRegistry()
	s, err := New(cfg, brokers, kafkatest.Config(), topic, dlq, quietLog(), reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	const n = 500
	in := make(chan *Record)
	acks := make([]atomic.Int32, n+1)
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background(), in) }()
	for i := range n + 1 {
		in <- &Record{
			Key: []byte(fmt.Sprint(i)), Value: fmt.Appendf(nil, `{"id":"%d"}`, i),
			DeadLetter: i == n, // the last one goes to the dead-letter topic only
			Ack: func(err error) {
				if err != nil {
					t.Errorf("record %d nacked: %v", i, err)
				}
				acks[i].Add(1)
			},
		}
	}
	close(in)
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	for i := range acks {
		if got := acks[i].Load(); got != 1 {
			t.Fatalf("record %d acked %d times, want 1", i, got)
		}
	}
	if got := len(kafkatest.ReadAll(t, brokers, topic, n, 30*time.Second)); got != n {
		t.Errorf("output topic has %d records, want %d", got, n)
	}
	if got := len(kafkatest.ReadAll(t, brokers, dlq, 1, 30*time.Second)); got != 1 {
		t.Errorf("dead-letter topic has %d records, want 1", got)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines := 0
	for sc := bufio.NewScanner(f); sc.Scan(); {
		lines++
	}
	if lines != n {
		t.Errorf("file has %d lines, want %d (dead letters must not reach it)", lines, n)
	}
	if got := reg.Get("sink.emitted").(metrics.Meter).Count(); got != n {
		t.Errorf("sink.emitted = %d, want %d", got, n)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mod     func(*Config)
		wantErr string
	}{
		{"defaults", func(*Config) {}, ""},
		{"no output", func(c *Config) { c.Kafka.Enabled = false }, "sink: no output enabled"},
		{"bad compression", func(c *Config) { c.Kafka.Compression = "brotli" }, "sink.kafka.compression"},
		{"zero in flight", func(c *Config) { c.Kafka.MaxInFlight = 0 }, "sink.kafka.max_in_flight"},
		{"zero flush", func(c *Config) { c.File.FlushInterval = 0 }, "sink.file.flush_interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			err := c.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate() = %v, want an error naming %q", err, tc.wantErr)
			}
		})
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
