package ingest

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bendstream/bend/internal/kafkatest"
	metrics "github.com/rcrowley/go-metrics"
)

// TestFilesEndToEnd replays a plain file (with CRLF endings, blank lines,
// an invalid line and an overlong one), standard input through the
// WithStdin seam, and a gzipped file: every valid event must reach Kafka
// exactly once, and the two bad lines must be dead-lettered.
func TestFilesEndToEnd(t *testing.T) {
	dir := t.TempDir()
	var plain bytes.Buffer
	plain.Write(bytes.ReplaceAll(ndjsonBody(1, 700), []byte("\n"), []byte("\r\n")))
	plain.WriteString("\n\n{\"id\":\"act-dup\",\"id\"\n")                            // line 702: malformed
	plain.WriteString(`{"id":"huge","text":"` + strings.Repeat("y", 5000) + "\"}\n") // line 703: over max_event_bytes
	plain.Write(ndjsonBody(700, 1500))
	a := filepath.Join(dir, "a.ndjson")
	if err := os.WriteFile(a, plain.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(ndjsonBody(2500, 4000))
	zw.Close()
	b := filepath.Join(dir, "b.ndjson.gz")
	if err := os.WriteFile(b, gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	cfg := testConfig()
	cfg.MaxEventBytes = 2048
	cfg.Files = FilesConfig{Paths: []string{a, "-", b}, Progress: time.Nanosecond}
	h := start(t, cfg, kafkatest.Brokers(t), WithStdin(bytes.NewReader(ndjsonBody(1500, 2500))))
	eventually(t, 60*time.Second, "3 files replayed", func() bool { return h.counter("ingest.files.done") == 3 })
	if err := h.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}

	wantIDs(t, "topic", countIDs(t, readTopic(t, h.brokers, h.topic)), 1, 4000, true)
	dead := readTopic(t, h.brokers, h.dlq)
	if len(dead) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dead))
	}
	for _, m := range dead {
		switch line := header(m, HeaderDLQLine); line {
		case "702":
			if string(m.Value) != `{"id":"act-dup","id"` || !strings.HasPrefix(header(m, HeaderDLQReason), "malformed JSON") {
				t.Errorf("line 702: dead letter %q reason %q", m.Value, header(m, HeaderDLQReason))
			}
		case "703":
			if len(m.Value) != 2048 || header(m, HeaderDLQReason) != "event too large: line of 5023 bytes, over the limit of 2048 (ingest.max_event_bytes)" {
				t.Errorf("line 703: dead letter of %d bytes, reason %q", len(m.Value), header(m, HeaderDLQReason))
			}
		default:
			t.Errorf("dead letter of line %q: %.80q", line, m.Value)
		}
	}
	if got := h.counter("ingest.files.done"); got != 3 {
		t.Errorf("ingest.files.done = %d, want 3", got)
	}
	if got, want := h.counter("ingest.files.bytes"), int64(plain.Len()+gz.Len()+len(ndjsonBody(1500, 2500))); got != want {
		t.Errorf("ingest.files.bytes = %d, want %d", got, want)
	}
}

// TestFilesCorruptGzipFailsRun: a read error stops the source with an
// error naming the file; what was read before stays acknowledged.
func TestFilesCorruptGzipFailsRun(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(ndjsonBody(1, 2000))
	zw.Close()
	bad := gz.Bytes()[:gz.Len()/2]
	p := filepath.Join(t.TempDir(), "cut.ndjson.gz")
	if err := os.WriteFile(p, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.Files.Paths = []string{p}
	h := start(t, cfg, kafkatest.Brokers(t))
	err := h.wait(t, 60*time.Second)
	if err == nil || !strings.Contains(err.Error(), "source files: "+p) {
		t.Fatalf("Run: %v, want an error naming %s", err, p)
	}
}

// TestNewFailsFast: configuration that cannot work fails in New, naming
// the key, and leaves nothing bound.
func TestNewFailsFast(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	busy := testConfig()
	busy.HTTP.Enabled = true
	h := start(t, busy, brokers)
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"missing file", func(c *Config) { c.Files.Paths = []string{"/nonexistent/x.ndjson"} }, "ingest.files.paths[0]"},
		{"address in use", func(c *Config) { c.HTTP.Enabled, c.HTTP.Addr = true, h.in.Addr().String() }, "ingest.http.addr"},
		{"missing token file", func(c *Config) { c.HTTP.Enabled, c.HTTP.TokenFile = true, "/nonexistent/token" }, "ingest.http.token_file"},
		{"stream token file", func(c *Config) {
			c.Stream = StreamConfig{Enabled: true, ConnConfig: ConnConfig{URL: "http://x", TokenFile: "/nonexistent/t", MinBackoff: 1, MaxBackoff: 1, IdleTimeout: 1}}
		}, "ingest.stream.token_file"},
		{"invalid config", func(c *Config) { c.MaxDepth = 0 }, "ingest.max_depth"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			tc.edit(&cfg)
			_, err := New(cfg, brokers, kafkatest.Config(), "t", "d", testLog(), metrics.NewRegistry())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error naming %s", err, tc.want)
			}
		})
	}
}
