package pack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/testutil"
)

func consumerHeaders(h []sarama.RecordHeader) []*sarama.RecordHeader {
	out := make([]*sarama.RecordHeader, len(h))
	for i := range h {
		out[i] = &h[i]
	}
	return out
}

func TestFramedAndSplit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers []sarama.RecordHeader
		value   string
		want    []string // nil: not packed
		wantErr error
	}{
		{"plain", nil, `{"id":"a"}`, nil, nil},
		{"three", Headers(nil, 3), "{\"id\":\"a\"}\n{\"id\":\"b\"}\n{\"id\":\"c\"}\n", []string{`{"id":"a"}`, `{"id":"b"}`, `{"id":"c"}`}, nil},
		{"no final newline", Headers(nil, 2), "a\nb", []string{"a", "b"}, nil},
		{"crlf", Headers(nil, 2), "a\r\nb\r\n", []string{"a", "b"}, nil},
		{"too few", Headers(nil, 3), "a\nb\n", nil, ErrCount},
		{"too many", Headers(nil, 1), "a\nb\n", nil, ErrCount},
		{"empty line", Headers(nil, 3), "a\n\nb\n", nil, ErrCount},
		{"empty value", Headers(nil, 1), "", nil, ErrCount},
		{"bad count", []sarama.RecordHeader{{Key: []byte(HeaderFraming), Value: []byte("ndjson")}, {Key: []byte(HeaderCount), Value: []byte("x")}}, "a\n", nil, ErrCount},
		{"no count", []sarama.RecordHeader{{Key: []byte(HeaderFraming), Value: []byte("ndjson")}}, "a\n", nil, ErrCount},
		{"other framing", []sarama.RecordHeader{{Key: []byte(HeaderFraming), Value: []byte("avro")}, {Key: []byte(HeaderCount), Value: []byte("1")}}, "a\n", nil, ErrFraming},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, packed, err := Framed(consumerHeaders(tc.headers))
			if !packed {
				if tc.headers != nil {
					t.Fatalf("Framed: not packed, want packed")
				}
				return
			}
			var got [][]byte
			if err == nil {
				got, err = Split(nil, []byte(tc.value), n)
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d events %q, want %q", len(got), got, tc.want)
			}
			for i := range got {
				if string(got[i]) != tc.want[i] {
					t.Errorf("event %d = %q, want %q", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func FuzzSplit(f *testing.F) {
	f.Add([]byte("a\nb\n"), 2)
	f.Add([]byte("a\n\n"), 2)
	f.Add([]byte(""), 1)
	f.Fuzz(func(t *testing.T, v []byte, n int) {
		evs, err := Split(nil, v, n)
		if err != nil {
			return
		}
		if len(evs) != n {
			t.Fatalf("%d events, want %d", len(evs), n)
		}
		var again []byte
		packable := true
		for _, e := range evs {
			if len(e) == 0 || bytes.IndexByte(e, '\n') >= 0 {
				t.Fatalf("event %q is empty or holds a newline", e)
			}
			packable = packable && Packable(e) // a bare CR may stay inside an event
			again = Append(again, e)
		}
		if !packable {
			return
		}
		if back, err := Split(nil, again, n); err != nil || len(back) != n {
			t.Fatalf("re-split: %v", err)
		}
	})
}

// recorder is a Sender that acknowledges every record after a short
// while, keeping them in send order.
type recorder struct {
	mu   sync.Mutex
	msgs []*sarama.ProducerMessage
	fail atomic.Bool
}

func (r *recorder) send(ctx context.Context, m *sarama.ProducerMessage, done func(error)) error {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	go func() {
		time.Sleep(time.Millisecond)
		done(nil)
	}()
	return nil
}

var fmtHdr = []byte("bend-format")

func classify(m *sarama.ProducerMessage) ([]sarama.RecordHeader, []byte, bool) {
	for _, h := range m.Headers {
		if string(h.Key) != "bend-format" {
			return nil, nil, false
		}
	}
	return m.Headers, []byte("t:0:" + string(mustEncode(m.Key))), true
}

func mustEncode(e sarama.Encoder) []byte {
	if e == nil {
		return nil
	}
	b, _ := e.Encode()
	return b
}

// TestPackerCountsAndOrder adds events of many keys (some alone, some
// too big, two formats) and checks that every event is sent once, each
// done called once, packs stay within their limits and one partition's
// events leave in the order they were added.
func TestPackerCountsAndOrder(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cfg       Config
		keys      int
		keyless   bool
		wantPacks bool
	}{
		{"50 per record", Config{MaxEvents: 50, MaxBytes: 1 << 20}, 16, false, true},
		{"byte limit", Config{MaxEvents: 50, MaxBytes: 300}, 4, false, true},
		{"keyless", Config{MaxEvents: 10, MaxBytes: 1 << 20}, 0, true, true},
		{"linger", Config{MaxEvents: 50, MaxBytes: 1 << 20, Linger: time.Millisecond}, 3, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			const parts = 4
			p := NewPacker(tc.cfg, "t", rec.send, classify, func(string) (int32, error) { return parts, nil }, nil, nil)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ran := make(chan error, 1)
			go func() { ran <- p.Run(ctx) }()
			const n = 5000
			var acked atomic.Int64
			dones := make([]atomic.Int32, n)
			for i := range n {
				v := fmt.Sprintf(`{"id":"e%d","seq":%d}`, i, i)
				m := &sarama.ProducerMessage{Topic: "t", Value: sarama.StringEncoder(v)}
				if !tc.keyless {
					m.Key = sarama.StringEncoder(fmt.Sprintf("k%d", i%tc.keys))
				}
				switch {
				case i%97 == 0:
					m.Headers = []sarama.RecordHeader{{Key: []byte("bend-kind"), Value: []byte("delete")}} // alone
				case i%89 == 0:
					m.Value = sarama.StringEncoder("{\n\"id\":\"e" + fmt.Sprint(i) + "\"}") // a line break: alone
				case !tc.keyless && (i%tc.keys)%2 == 0: // a format per key, as per source
					m.Headers = []sarama.RecordHeader{{Key: fmtHdr, Value: []byte("x")}}
				}
				if err := p.Add(m, func(err error) {
					if err != nil {
						t.Errorf("done(%v)", err)
					}
					dones[i].Add(1)
					acked.Add(1)
				}); err != nil {
					t.Fatal(err)
				}
			}
			testutil.Eventually(t, 30*time.Second, "every event acknowledged", func() bool { return acked.Load() == n })
			if err := p.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if err := <-ran; err != nil {
				t.Fatalf("Run: %v", err)
			}
			for i := range dones {
				if got := dones[i].Load(); got != 1 {
					t.Fatalf("event %d: done called %d times", i, got)
				}
			}
			seen := make([]int, n)
			last := map[int32]int{} // partition: last seq
			hash := sarama.NewHashPartitioner("t")
			packs := 0
			for _, m := range rec.msgs {
				v := mustEncode(m.Value)
				var h []*sarama.RecordHeader
				for i := range m.Headers {
					h = append(h, &m.Headers[i])
				}
				events := [][]byte{v}
				if c, packed, err := Framed(h); packed {
					if err != nil {
						t.Fatal(err)
					}
					if c > tc.cfg.MaxEvents || len(v) > tc.cfg.MaxBytes {
						t.Fatalf("pack of %d events, %d bytes: over the limits", c, len(v))
					}
					packs++
					if events, err = Split(nil, v, c); err != nil {
						t.Fatal(err)
					}
				}
				part := int32(-1)
				if m.Key != nil {
					part, _ = hash.Partition(m, parts)
				}
				for _, e := range events {
					var seq int
					if _, err := fmt.Sscanf(string(e[bytes.Index(e, []byte(`"id":"e`))+7:]), "%d", &seq); err != nil {
						t.Fatalf("event %q: %v", e, err)
					}
					seen[seq]++
					if prev, ok := last[part]; ok && seq < prev {
						t.Fatalf("partition %d: event %d after %d", part, seq, prev)
					}
					last[part] = seq
					if m.Key != nil && !strings.Contains(string(e), "\n") {
						want, _ := hash.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(fmt.Sprintf("k%d", seq%tc.keys))}, parts)
						if want != part {
							t.Fatalf("event %d in partition %d, its key's is %d", seq, part, want)
						}
					}
				}
			}
			for i, c := range seen {
				if c != 1 {
					t.Fatalf("event %d sent %d times", i, c)
				}
			}
			if tc.wantPacks && packs == 0 {
				t.Errorf("no packed records among %d", len(rec.msgs))
			}
			t.Logf("%d events in %d records (%d packed)", n, len(rec.msgs), packs)
		})
	}
}

func TestPackerClosed(t *testing.T) {
	p := NewPacker(Config{MaxEvents: 5, MaxBytes: 100}, "t", (&recorder{}).send, classify, func(string) (int32, error) { return 1, nil }, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	failed := make(chan error, 1)
	if err := p.Add(&sarama.ProducerMessage{Topic: "t", Value: sarama.StringEncoder("a")}, func(err error) { failed <- err }); err != nil {
		t.Fatal(err)
	}
	if err := p.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	if err := <-failed; !errors.Is(err, ErrClosed) {
		t.Fatalf("done(%v), want ErrClosed", err)
	}
	if err := p.Add(&sarama.ProducerMessage{Topic: "t", Value: sarama.StringEncoder("b")}, func(error) {}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Add after stop = %v, want ErrClosed", err)
	}
}
