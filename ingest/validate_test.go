package ingest

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/bendstream/bend/internal/activity"
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
