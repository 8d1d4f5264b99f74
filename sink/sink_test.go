package sink

import (
	"bufio"
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

// failWriter fails every write after the first n bytes.
type failWriter struct {
	n   int
	err error
}

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n >= len(p) {
		w.n -= len(p)
		return len(p), nil
	}
	return 0, w.err
}

func TestWriterOutputAcksAfterFlush(t *testing.T) {
	for _, tc := range []struct {
		name    string
		w       io.Writer
		wantErr bool
	}{
		{"healthy", io.Discard, false},
		{"disk full", &failWriter{err: errors.New("no space left on device")}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newWriterOutput(tc.w, nil, FileConfig{FlushInterval: 10 * time.Millisecond, BufferBytes: 4096})
			const n = 100
			var ok, failed atomic.Int64
			var wg sync.WaitGroup
			wg.Add(n)
			for i := range n {
				r := &Record{Value: fmt.Appendf(nil, `{"id":"%d"}`, i), Ack: func(err error) {
					if err != nil {
						failed.Add(1)
					} else {
						ok.Add(1)
					}
					wg.Done()
				}}
				r.pending.Store(1)
				if err := o.Send(context.Background(), r); err != nil {
					t.Fatalf("Send: %v", err)
				}
			}
			wg.Wait() // the flusher acks without Close
			closeErr := o.Close()
			if tc.wantErr {
				if failed.Load() != n || closeErr == nil {
					t.Fatalf("failed acks = %d, Close err = %v; want %d and an error", failed.Load(), closeErr, n)
				}
				return
			}
			if ok.Load() != n || closeErr != nil {
				t.Fatalf("ok acks = %d, Close err = %v; want %d and nil", ok.Load(), closeErr, n)
			}
		})
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
