package ingest

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/bendstream/bend/internal/activity"
	metrics "github.com/rcrowley/go-metrics"
)

func TestCheckHostileEvents(t *testing.T) {
	deep := func(n int) string { return `{"id":"x","a":` + strings.Repeat("[", n) + strings.Repeat("]", n) + "}" }
	for _, tc := range []struct {
		name     string
		keyField string
		ev       string
		wantKey  string
		wantErr  string // substring of the reason; "" means valid
	}{
		{"valid", "", `{"id":"act-1","text":"hi"}`, "act-1", ""},
		{"unknown fields pass", "", `{"id":"a","x":{"y":[1,2,{"z":null}]}}`, "a", ""},
		{"escaped NUL in a string passes", "", `{"id":"a","text":"\u0000"}`, "a", ""},
		{"nesting at the limit passes", "", deep(63), "x", ""},
		{"malformed JSON", "", `{"id":"a",}`, "", "malformed JSON at byte 11"},
		{"truncated", "", `{"id":"a","text":"hel`, "", "malformed JSON"},
		{"trailing garbage", "", `{"id":"a"} {}`, "", "malformed JSON"},
		{"not an object", "", `["id","a"]`, "", "not a JSON object"},
		{"a string", "", `"act-1"`, "", "not a JSON object"},
		{"empty", "", ``, "", "not a JSON object"},
		{"missing id", "", `{"text":"hi"}`, "", `missing or empty "id"`},
		{"empty id", "", `{"id":""}`, "", `missing or empty "id"`},
		{"numeric id", "", `{"id":42}`, "", `field "id" is a number, want a string`},
		{"wrong type text", "", `{"id":"a","text":5}`, "", `field "text" is a number, want a string`},
		{"wrong type links", "", `{"id":"a","links":"x"}`, "", `field "links" is a string, want an array`},
		{"wrong type author", "", `{"id":"a","author":"bob"}`, "", `field "author" is a string, want an object`},
		{"oversized", "", `{"id":"a","text":"` + strings.Repeat("x", 600) + `"}`, "", "over the limit of 512 (ingest.max_event_bytes)"},
		{"invalid UTF-8", "", "{\"id\":\"a\",\"text\":\"caf\xe9\"}", "", "invalid UTF-8 at byte 21"},
		{"overlong UTF-8 encoding", "", "{\"id\":\"\xc0\xafx\"}", "", "invalid UTF-8 at byte 7"},
		{"raw NUL byte", "", "{\"id\":\"a\x00\"}", "", "NUL byte at byte 8"},
		{"NUL outside strings", "", "\x00{\"id\":\"a\"}", "", "NUL byte at byte 0"},
		{"deep nesting", "", deep(64), "", "nested deeper than 64 levels at byte 77"},
		{"very deep nesting", "", deep(100000)[:300], "", "nested deeper than 64"},
		{"brackets in strings do not nest", "", `{"id":"[[[[","text":"` + strings.Repeat("{", 100) + `\"]"}`, "[[[[", ""},
		{"key author.id", "author.id", `{"id":"a","author":{"id":"u1"}}`, "u1", ""},
		{"key author.id missing", "author.id", `{"id":"a"}`, "", `missing key field "author.id"`},
		{"key nested custom", "meta.shard", `{"id":"a","meta":{"shard":7}}`, "7", ""},
		{"key string custom", "user", `{"id":"a","user":"bob"}`, "bob", ""},
		{"key empty string", "user", `{"id":"a","user":""}`, "", `key field "user" is empty`},
		{"key wrong type", "user", `{"id":"a","user":{"n":1}}`, "", `key field "user" is an object, want a string or a number`},
		{"key null", "user", `{"id":"a","user":null}`, "", `key field "user" is null`},
		{"key path through a scalar", "user.id", `{"id":"a","user":"bob"}`, "", `key field "user.id": id is not inside an object`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.MaxEventBytes = 512
			if tc.keyField != "" {
				cfg.KeyField = tc.keyField
			}
			key, err := newChecker(cfg).check([]byte(tc.ev))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("check: %v, want valid", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("check: valid (key %q), want %q", key, tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("check: %q, want a reason containing %q", err, tc.wantErr)
			case tc.wantErr == "" && string(key) != tc.wantKey:
				t.Fatalf("key %q, want %q", key, tc.wantKey)
			}
			if err != nil && errors.Is(err, errTooLarge) != strings.Contains(tc.name, "oversized") {
				t.Errorf("errors.Is(err, errTooLarge) = %v", errors.Is(err, errTooLarge))
			}
		})
	}
}

// FuzzDecodeEvent feeds arbitrary bytes to the edge's checks: they must
// never panic, and whatever they accept must be what the distributor can
// read: valid UTF-8 JSON, an object with an id, within the limits.
func FuzzDecodeEvent(f *testing.F) {
	for _, s := range []string{`{"id":"a"}`, `{"id":"a","author":{"id":"u"}}`, "{\"id\":\"\xff\"}", `[`, `{"id":"a","x":[[[[[[]]]]]]}`,
		`{"id":1}`, "\x00", `{"id":"a"}{"id":"b"}`, `{"id":"\"[{"}`} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, ev []byte, byAuthor bool) {
		cfg := DefaultConfig()
		cfg.MaxEventBytes, cfg.MaxDepth = 256, 4
		if byAuthor {
			cfg.KeyField = "author.id"
		}
		key, err := newChecker(cfg).check(ev)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty reason")
			}
			return
		}
		if !utf8.Valid(ev) || !json.Valid(ev) || len(ev)+len(key) > 256 || len(key) == 0 {
			t.Fatalf("accepted %q (key %q)", ev, key)
		}
		if f, err := activity.Parse(ev); err != nil || f.ID == "" {
			t.Fatalf("accepted %q, which activity.Parse refuses: %v", ev, err)
		}
		if tooDeepAt(ev, 4) >= 0 {
			t.Fatalf("accepted %q, nested too deep", ev)
		}
	})
}

func TestVerdictOfFormats(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fc       activity.FormatConfig
		ev       string
		wantKey  string
		wantKind string
		wantErr  string
	}{
		{"twitter id over 2^53 exact", activity.FormatConfig{Format: activity.PresetTwitterV1}, `{"id":1050118621198921728,"text":"hi","user":{"id":1}}`, "1050118621198921728", "", ""},
		{"twitter delete notice", activity.FormatConfig{Format: activity.PresetTwitterV1}, `{"delete":{"status":{"id":1,"id_str":"17"}}}`, "17", activity.KindDelete, ""},
		{"mapped key", activity.FormatConfig{Format: activity.PresetTwitterV1, Fields: activity.Mapping{Key: []string{"user.id_str"}}}, `{"id_str":"5","user":{"id_str":"u9"}}`, "u9", "", ""},
		{"jetstream composed id", activity.FormatConfig{Format: activity.PresetJetstream}, `{"did":"did:plc:a","kind":"commit","commit":{"operation":"create","collection":"app.bsky.feed.post","rkey":"r1","record":{"text":"x"}}}`, "at://did:plc:a/app.bsky.feed.post/r1", "", ""},
		{"mastodon delete payload", activity.FormatConfig{Format: activity.PresetMastodon}, `109876543210987654`, "109876543210987654", activity.KindDelete, ""},
		{"missing id names the paths", activity.FormatConfig{Format: activity.PresetTwitterV1}, `{"text":"no id"}`, "", "", `missing or empty "id" (id_str or id)`},
		{"wrong type", activity.FormatConfig{Format: activity.PresetReddit}, `{"name":{"x":1}}`, "", "", `field "name" (id) is an object`},
		{"malformed", activity.FormatConfig{Format: activity.PresetWikimedia}, `{"meta":{"id":"a"},}`, "", "", "malformed JSON at byte 20"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarnessless(t)
			c, err := h.formatChecker(tc.fc, "ingest.files", "files")
			if err != nil {
				t.Fatal(err)
			}
			v, err := c.verdict([]byte(tc.ev))
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("verdict: %v, want %q", err, tc.wantErr)
				}
			case err != nil:
				t.Fatalf("verdict: %v", err)
			case string(v.key) != tc.wantKey || v.kind != tc.wantKind:
				t.Fatalf("key %q kind %q, want %q %q", v.key, v.kind, tc.wantKey, tc.wantKind)
			case v.kind == "" && v.fields == nil:
				t.Fatal("no bend-fields header for a mapped activity")
			}
		})
	}
}

// newHarnessless returns an Ingest with the default config and a registry,
// enough to build checkers.
func newHarnessless(t *testing.T) *Ingest {
	t.Helper()
	return &Ingest{cfg: DefaultConfig(), reg: metrics.NewRegistry()}
}
