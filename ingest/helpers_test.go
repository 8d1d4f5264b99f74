package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/kafkatest"
	"github.com/bendstream/bend/internal/testutil"
	metrics "github.com/rcrowley/go-metrics"
)

// testLog is testutil.Logger.
var testLog = testutil.Logger

// testConfig is the default config with every source off and short waits.
func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Synthetic.Enabled = false
	cfg.CloseTimeout = 20 * time.Second
	cfg.Producer.Linger = time.Millisecond
	cfg.HTTP.Addr = "127.0.0.1:0"
	return cfg
}

// harness is an Ingest running in the background on fresh topics.
type harness struct {
	in       *Ingest
	brokers  []string
	topic    string
	dlq      string
	reg      metrics.Registry
	stopOnce sync.Once
	stopErr  error
	cancel   context.CancelFunc
	done     chan error
}

// start creates the topics, builds an Ingest of cfg and runs it until the
// test ends (or stop).
func start(t *testing.T, cfg Config, brokers []string, opts ...Option) *harness {
	t.Helper()
	return startOn(t, cfg, brokers, kafkatest.CreateTopic(t, brokers, 4), opts...)
}

// startOn is start with the topic already created.
func startOn(t *testing.T, cfg Config, brokers []string, topic string, opts ...Option) *harness {
	t.Helper()
	h := &harness{brokers: brokers, reg: metrics.NewRegistry(), done: make(chan error, 1),
		topic: topic, dlq: kafkatest.CreateTopic(t, brokers, 1)}
	in, err := New(cfg, brokers, kafkatest.Config(), h.topic, h.dlq, testLog(), h.reg, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.in = in
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- in.Run(ctx) }()
	t.Cleanup(func() { h.stop(t) })
	return h
}

// stop cancels Run and returns its error.
func (h *harness) stop(t *testing.T) error {
	t.Helper()
	h.cancel()
	return h.wait(t, 60*time.Second)
}

// wait waits for Run to return, for at most timeout, and returns its error.
func (h *harness) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	h.stopOnce.Do(func() {
		select {
		case h.stopErr = <-h.done:
		case <-time.After(timeout):
			t.Fatalf("Run did not return within %s", timeout)
		}
	})
	return h.stopErr
}

func (h *harness) counter(name string) int64 {
	switch m := h.reg.Get(name).(type) {
	case metrics.Counter:
		return m.Count()
	case metrics.Meter:
		return m.Count()
	case metrics.Gauge:
		return m.Value()
	}
	return -1
}

// eventually is testutil.Eventually.
var eventually = testutil.Eventually

// event returns a valid event of about 300 bytes with id act-<i>.
func event(i int) string {
	return fmt.Sprintf(`{"id":"act-%d","seq":%d,"verb":"post","author":{"id":"u%05d","handle":"maria_%d","followers":1234},`+
		`"text":"Morning run along the river, the light was perfect and the coffee after even better #running","links":["https://t.example/%d"],`+
		`"created_at":"2026-01-02T03:04:05.123456789Z"}`, i, i, i%1000, i%1000, i)
}

// ndjsonBody returns events from..to-1 as NDJSON.
func ndjsonBody(from, to int) []byte {
	var b bytes.Buffer
	for i := from; i < to; i++ {
		b.WriteString(event(i))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// readTopic returns every record of topic up to each partition's
// high-water mark at the time of the call.
func readTopic(t *testing.T, brokers []string, topic string) []*sarama.ConsumerMessage {
	t.Helper()
	return kafkatest.ReadToEnd(t, brokers, topic)
}

// countIDs counts the ids of records holding JSON events.
func countIDs(t *testing.T, msgs []*sarama.ConsumerMessage) map[string]int {
	t.Helper()
	ids := map[string]int{}
	for _, m := range msgs {
		var ev struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(m.Value, &ev); err != nil {
			t.Fatalf("record %.100q: %v", m.Value, err)
		}
		ids[ev.ID]++
		if string(m.Key) != ev.ID {
			t.Fatalf("record %s has key %q, want its id", ev.ID, m.Key)
		}
	}
	return ids
}

// wantIDs fails unless ids holds exactly act-from..act-(to-1), each at
// least once (exactly once if exact).
func wantIDs(t *testing.T, where string, ids map[string]int, from, to int, exact bool) {
	t.Helper()
	var missing, dup []string
	for i := from; i < to; i++ {
		id := fmt.Sprintf("act-%d", i)
		switch n := ids[id]; {
		case n == 0:
			missing = append(missing, id)
		case n > 1 && exact:
			dup = append(dup, id)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%s: %d ids missing, e.g. %s", where, len(missing), strings.Join(missing[:min(5, len(missing))], " "))
	}
	if len(dup) > 0 {
		t.Errorf("%s: %d ids duplicated, e.g. %s", where, len(dup), strings.Join(dup[:min(5, len(dup))], " "))
	}
	if extra := len(ids) - (to - from); len(missing) == 0 && extra != 0 {
		t.Errorf("%s: %d ids beyond act-%d..act-%d", where, extra, from, to-1)
	}
}

// header returns the value of header key of m.
func header(m *sarama.ConsumerMessage, key string) string {
	for _, h := range m.Headers {
		if string(h.Key) == key {
			return string(h.Value)
		}
	}
	return ""
}
