package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bendstream/bend/internal/fakepub"
	"github.com/bendstream/bend/internal/kafkatest"
	"github.com/bendstream/bend/internal/metricnames"
	"github.com/coder/websocket"
	"github.com/klauspost/compress/zstd"
)

// writeDictionary writes the fake's zstd dictionary to a file of the test
// and returns its path.
func writeDictionary(t *testing.T, pub *fakepub.Jetstream) string {
	t.Helper()
	dict, err := pub.Dictionary()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "zstd_dictionary")
	if err := os.WriteFile(path, dict, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestJetstreamCompressed reads a fake Jetstream with compress=true: every
// event arrives as a zstd frame compressed with the fake's dictionary, and
// the topic holds each one, decompressed, exactly once.
func TestJetstreamCompressed(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	const n = 2000
	pub := fakepub.NewJetstream(fakepub.Config{Events: n, Rate: 4000, Window: n})
	defer pub.Close()
	cfg := testConfig()
	cfg.Jetstream.Enabled, cfg.Jetstream.URL, cfg.Jetstream.Cursor = true, pub.URL(), pub.TimeUS(0)
	cfg.Jetstream.Compress, cfg.Jetstream.ZstdDictionary = true, writeDictionary(t, pub)
	topic := kafkatest.CreateTopic(t, brokers, 4)
	h := startOn(t, cfg, brokers, topic)
	eventually(t, 30*time.Second, "every event in the topic", func() bool {
		return h.counter("ingest.jetstream.published") >= n
	})
	if err := h.stop(t); err != nil {
		t.Fatal(err)
	}
	ids, _ := countByID(t, brokers, topic, "jetstream")
	if dups := checkIDs(t, ids, n, fakepub.JetstreamID, func(int) bool { return true }); dups != 0 {
		t.Errorf("%d duplicates in the topic", dups)
	}
	if r := h.counter("ingest.jetstream.rejected"); r != 0 {
		t.Errorf("%d events rejected, want none", r)
	}
	// The wire carried fewer bytes than the events hold.
	var raw int64
	for i := range n {
		raw += int64(len(pub.Event(i)))
	}
	if got := h.counter("ingest.jetstream.bytes"); got <= 0 || got >= raw {
		t.Errorf("%d bytes read for %d bytes of events: want fewer (compressed)", got, raw)
	}
	t.Logf("%d events: %d bytes of JSON, %d bytes on the wire", n, raw, h.counter("ingest.jetstream.bytes"))
}

// TestJetstreamZstdBomb: a compressed message that decompresses beyond
// max_message_bytes (64 MiB of zeros, with its size in the frame header or
// without) is dead-lettered as too large, without being decompressed
// whole; so is a frame of another dictionary; and the connection goes on.
func TestJetstreamZstdBomb(t *testing.T) {
	pub := fakepub.NewJetstream(fakepub.Config{Events: 1, Rate: 1, Window: 1})
	defer pub.Close()
	dictPath := writeDictionary(t, pub)
	zeros := make([]byte, 64<<20)
	withSize, _ := zstd.NewWriter(nil)
	defer withSize.Close()
	var streamed bytes.Buffer // no content size in the frame header
	sw, _ := zstd.NewWriter(&streamed)
	_, _ = sw.Write(zeros)
	_ = sw.Close()
	var samples [][]byte
	for i := range 64 {
		samples = append(samples, fmt.Appendf(nil, `{"kind":"account","did":"did:plc:other%d","time_us":%d,"account":{"active":true,"seq":%d}}`, i, 1000+i, i))
	}
	other, err := zstd.BuildDict(zstd.BuildDictOptions{ID: 7, Contents: samples, History: bytes.Join(samples[:8], nil), Offsets: [3]int{1, 4, 8}})
	if err != nil {
		t.Fatal(err)
	}
	otherEnc, _ := zstd.NewWriter(nil, zstd.WithEncoderDict(other))
	defer otherEnc.Close()
	dict, _ := pub.Dictionary()
	good, _ := zstd.NewWriter(nil, zstd.WithEncoderDict(dict))
	defer good.Close()
	frames := [][]byte{withSize.EncodeAll(zeros, nil), streamed.Bytes(), otherEnc.EncodeAll([]byte(`{"kind":"commit"}`), nil),
		good.EncodeAll(pub.Event(0), nil)}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("compress") != "true" {
			http.Error(w, "want compress=true", http.StatusBadRequest)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for _, f := range frames {
			if err := c.Write(r.Context(), websocket.MessageBinary, f); err != nil {
				return
			}
		}
		<-r.Context().Done()
	}))
	defer srv.Close()
	cfg := testConfig()
	cfg.Jetstream.Enabled, cfg.Jetstream.URL = true, "ws"+strings.TrimPrefix(srv.URL, "http")
	cfg.Jetstream.Compress, cfg.Jetstream.ZstdDictionary, cfg.Jetstream.MaxMessageBytes = true, dictPath, 64<<10
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := newJetstreamSource(cfg.Jetstream, bareIngest(cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer s.zstd.Close()
	for i, f := range frames[:2] {
		if _, err := s.decompress(f); !errors.Is(err, errTooLarge) || !strings.Contains(err.Error(), "ingest.jetstream.max_message_bytes") {
			t.Errorf("bomb %d (%d bytes): %v, want too large naming ingest.jetstream.max_message_bytes", i, len(f), err)
		}
	}
	if _, err := s.decompress(frames[2]); err == nil || !strings.Contains(err.Error(), "ingest.jetstream.zstd_dictionary") {
		t.Errorf("a frame of another dictionary: %v, want refused naming ingest.jetstream.zstd_dictionary", err)
	}

	// End to end: the three are dead-lettered with their reasons, the
	// good event after them is published, on the same connection.
	brokers := kafkatest.Brokers(t)
	h := start(t, cfg, brokers)
	eventually(t, 30*time.Second, "the good event published and three dead letters", func() bool {
		return h.counter("ingest.jetstream.published") == 1 && h.counter(metricnames.IngestDeadLetters) == 3
	})
	if c := h.counter(metricnames.IngestJetstreamConnects); c != 1 {
		t.Errorf("%d connections, want 1: a refused message must not drop the connection", c)
	}
	if err := h.stop(t); err != nil {
		t.Fatal(err)
	}
	dead := readTopic(t, brokers, h.dlq)
	if len(dead) != 3 {
		t.Fatalf("%d dead letters, want 3", len(dead))
	}
	for i, m := range dead {
		want := "ingest.jetstream.max_message_bytes"
		if i == 2 {
			want = "ingest.jetstream.zstd_dictionary"
		}
		if r := header(m, HeaderDLQReason); !strings.Contains(r, want) {
			t.Errorf("dead letter %d: reason %q, want one naming %s", i, r, want)
		}
	}
	if out := readTopic(t, brokers, h.topic); len(out) != 1 || !bytes.Equal(out[0].Value, pub.Event(0)) {
		t.Errorf("topic holds %d records, want the good event decompressed", len(out))
	}
}

// TestJetstreamDictionaryFile: a missing or malformed dictionary fails the
// start naming its key.
func TestJetstreamDictionaryFile(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "not-a-dictionary")
	if err := os.WriteFile(bad, []byte("plain text, not zstd"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, path string }{
		{"missing", filepath.Join(t.TempDir(), "absent")},
		{"malformed", bad},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Jetstream.Enabled, cfg.Jetstream.URL = true, "ws://127.0.0.1:1/subscribe"
			cfg.Jetstream.Compress, cfg.Jetstream.ZstdDictionary = true, tc.path
			_, err := newJetstreamSource(cfg.Jetstream, bareIngest(cfg))
			if err == nil || !strings.Contains(err.Error(), "ingest.jetstream.zstd_dictionary") {
				t.Fatalf("got %v, want an error naming ingest.jetstream.zstd_dictionary", err)
			}
		})
	}
}
