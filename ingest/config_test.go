package ingest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigValidateNamesTheKey(t *testing.T) {
	for _, tc := range []struct {
		name    string
		edit    func(*Config)
		wantErr []string
	}{
		{"defaults", func(*Config) {}, nil},
		{"every source on", func(c *Config) {
			c.Stream.Enabled, c.Stream.URL = true, "https://firehose.example/stream"
			c.HTTP.Enabled = true
			c.Files.Paths = []string{"-", "a.ndjson"}
		}, nil},
		{"bad core keys", func(c *Config) {
			c.CloseTimeout, c.KeyField, c.OnInvalid, c.MaxDepth = 0, "author..id", "drop", 0
		}, []string{"ingest.close_timeout", "ingest.key_field", "ingest.on_invalid", "ingest.max_depth"}},
		{"event too large for a record", func(c *Config) { c.MaxEventBytes = c.Producer.BatchBytes }, []string{"ingest.max_event_bytes"}},
		{"buffer below one event", func(c *Config) { c.MaxBufferedBytes = 10 }, []string{"ingest.max_buffered_bytes"}},
		{"producer keys", func(c *Config) { c.Producer.MaxInFlight = 0 }, []string{"ingest.producer.max_in_flight"}},
		{"stream", func(c *Config) {
			c.Stream = StreamConfig{Enabled: true, ConnConfig: ConnConfig{URL: "ftp://x", Token: "t", TokenFile: "f", MinBackoff: time.Second, MaxBackoff: time.Millisecond}}
		}, []string{"ingest.stream.url", "ingest.stream.token_file", "ingest.stream.max_backoff", "ingest.stream.idle_timeout"}},
		{"disabled stream is not checked", func(c *Config) { c.Stream.URL = "::" }, nil},
		{"http", func(c *Config) {
			c.HTTP = HTTPConfig{Enabled: true, Addr: "nohost", Path: "v1", MaxBodyBytes: c.MaxBufferedBytes + 1, AdmitWait: -1}
		}, []string{"ingest.http.addr", "ingest.http.path", "ingest.http.max_body_bytes", "ingest.http.admit_wait",
			"ingest.http.retry_after", "ingest.http.ack_timeout", "ingest.http.read_timeout"}},
		{"http transfer rate", func(c *Config) {
			c.HTTP.Enabled, c.HTTP.MinBytesPerSecond, c.HTTP.MinRateWindow = true, 100, 0
		}, []string{"ingest.http.min_rate_window"}},
		{"negative http transfer rate", func(c *Config) { c.HTTP.Enabled, c.HTTP.MinBytesPerSecond = true, -1 },
			[]string{"ingest.http.min_bytes_per_second"}},
		{"no minimum rate needs no window", func(c *Config) {
			c.HTTP.Enabled, c.HTTP.MinBytesPerSecond, c.HTTP.MinRateWindow = true, 0, 0
		}, nil},
		{"files", func(c *Config) { c.Files = FilesConfig{Paths: []string{"-", "", "-"}, Progress: -1} },
			[]string{"ingest.files.paths[1]", "ingest.files.paths[2]", "ingest.files.progress"}},
		{"synthetic", func(c *Config) { c.Synthetic.Rate = -1 }, []string{"ingest.synthetic.rate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.edit(&cfg)
			err := cfg.Validate()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: nil, want errors naming %q", tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w+":") {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != len(tc.wantErr) {
				t.Errorf("got %d errors, want %d: %v", n, len(tc.wantErr), err)
			}
		})
	}
}

func TestSecretNeverPrints(t *testing.T) {
	cfg := DefaultConfig()
	cfg.HTTP.Token, cfg.Stream.Token = "hunter2", "hunter3"
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		if s := fmt.Sprintf(format, cfg); strings.Contains(s, "hunter") {
			t.Errorf("%s of the config shows the token: %s", format, s)
		}
	}
}

func TestReadToken(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "tok")
	if err := os.WriteFile(good, []byte("  s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, file string
		tok        Secret
		want       Secret
		wantErr    bool
	}{
		{"from config", "", "abc", "abc", false},
		{"from file, trimmed", good, "", "s3cret", false},
		{"empty file", empty, "", "", true},
		{"missing file", filepath.Join(dir, "nope"), "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readToken(tc.tok, tc.file, "ingest.http.token_file")
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("readToken = %q, %v; want %q, error %v", string(got), err, string(tc.want), tc.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "ingest.http.token_file") {
				t.Errorf("error %q does not name the key", err)
			}
		})
	}
}
