package ingest

import (
	"strings"
	"testing"
	"time"
)

// TestConnConfigValidate: every dialling source validates the shared
// connection keys under its own section, and each names its key.
func TestConnConfigValidate(t *testing.T) {
	good := ConnConfig{MinBackoff: time.Second, MaxBackoff: time.Minute, IdleTimeout: time.Minute}
	for _, src := range []struct {
		name string
		url  string // a valid URL for the source
		set  func(c *Config, cc ConnConfig)
	}{
		{"stream", "https://x.example/stream", func(c *Config, cc ConnConfig) { c.Stream.Enabled, c.Stream.ConnConfig = true, cc }},
		{"sse", "https://x.example/sse", func(c *Config, cc ConnConfig) { c.SSE.Enabled, c.SSE.ConnConfig = true, cc }},
		{"jetstream", "wss://x.example/subscribe", func(c *Config, cc ConnConfig) { c.Jetstream.Enabled, c.Jetstream.ConnConfig = true, cc }},
	} {
		for _, tc := range []struct {
			name    string
			edit    func(cc *ConnConfig)
			wantKey string // "" = valid
		}{
			{"valid", func(*ConnConfig) {}, ""},
			{"wrong scheme", func(cc *ConnConfig) { cc.URL = "ftp://x.example/" }, "url"},
			{"relative url", func(cc *ConnConfig) { cc.URL = "/stream" }, "url"},
			{"token and token_file", func(cc *ConnConfig) { cc.Token, cc.TokenFile = "t", "f" }, "token_file"},
			{"zero min_backoff", func(cc *ConnConfig) { cc.MinBackoff = 0 }, "min_backoff"},
			{"max_backoff below min_backoff", func(cc *ConnConfig) { cc.MaxBackoff = time.Millisecond }, "max_backoff"},
			{"zero idle_timeout", func(cc *ConnConfig) { cc.IdleTimeout = 0 }, "idle_timeout"},
		} {
			t.Run(src.name+"/"+tc.name, func(t *testing.T) {
				cc := good
				cc.URL = src.url
				tc.edit(&cc)
				cfg := testConfig()
				src.set(&cfg, cc)
				err := cfg.Validate()
				if tc.wantKey == "" {
					if err != nil {
						t.Fatalf("Validate: %v, want nil", err)
					}
					return
				}
				if want := "ingest." + src.name + "." + tc.wantKey + ":"; err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("Validate: %v, want an error naming %s", err, want)
				}
			})
		}
	}
}
