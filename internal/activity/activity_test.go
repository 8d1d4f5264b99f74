package activity

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unsafe"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		wantID  string
		wantErr error
	}{
		{"minimal", `{"id":"a1"}`, "a1", nil},
		{"extra fields", `{"x":[1,2,{"y":null}],"id":"a2","text":"hi","links":["http://e.x"]}`, "a2", nil},
		{"leading space", "  \n{\"id\":\"a3\"}\n", "a3", nil},
		{"array", `[{"id":"a"}]`, "", ErrNotObject},
		{"empty", ``, "", ErrNotObject},
		{"no id", `{"text":"x"}`, "", ErrMissingID},
		{"empty id", `{"id":""}`, "", ErrMissingID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse([]byte(tc.in))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Parse(%q) err = %v, want %v", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil || f.ID != tc.wantID {
				t.Fatalf("Parse(%q) = %q, %v; want %q", tc.in, f.ID, err, tc.wantID)
			}
		})
	}
	if _, err := Parse([]byte(`{"id":7}`)); err == nil {
		t.Fatal("numeric id: want a type error")
	}
}

func TestWithEnrichments(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"empty object", `{}`},
		{"one field", `{"id":"x"}`},
		{"nested", ` {"id":"x","a":{"b":"}"}} `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := WithEnrichments([]byte(tc.in), []byte(`{"lang":{"value":"en"}}`))
			var m map[string]any
			if err := json.Unmarshal(out, &m); err != nil {
				t.Fatalf("result %s is not JSON: %v", out, err)
			}
			e, ok := m["enrichments"].(map[string]any)
			if !ok || e["lang"] == nil {
				t.Fatalf("result %s lacks enrichments.lang", out)
			}
		})
	}
}

func FuzzWithEnrichments(f *testing.F) {
	f.Add([]byte(`{"id":"a"}`))
	f.Add([]byte(`{"id":"a","t":"}}}"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if _, err := Parse(raw); err != nil || !json.Valid(raw) {
			return
		}
		out := WithEnrichments(raw, []byte(`{"k":1}`))
		if !json.Valid(out) {
			t.Fatalf("WithEnrichments(%q) = %q: not valid JSON", raw, out)
		}
	})
}

// TestParseSharesRaw checks what Parse's doc promises: a string without an
// escape is raw's own bytes (no copy), one with an escape is a copy, and a
// later Parse (the decoder reuses its buffers) leaves an earlier result as
// it was.
func TestParseSharesRaw(t *testing.T) {
	raw := []byte(`{"id":"act-1","text":"plain text","author":{"id":"u1"},"links":["https://a.example/x"]}`)
	esc := []byte(`{"id":"act-2","text":"line\none","author":{"id":"u2"}}`)
	within := func(s string, b []byte) bool {
		p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		base := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
		return p >= base && p+uintptr(len(s)) <= base+uintptr(len(b))
	}
	f, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]string{"id": f.ID, "text": f.Text, "author.id": f.Author.ID, "links[0]": f.Links[0]} {
		if !within(s, raw) {
			t.Errorf("%s %q is a copy, want raw's bytes", name, s)
		}
	}
	g, err := Parse(esc)
	if err != nil {
		t.Fatal(err)
	}
	if g.Text != "line\none" || within(g.Text, esc) {
		t.Errorf("escaped text = %q (within raw: %v), want a decoded copy", g.Text, within(g.Text, esc))
	}
	if f.ID != "act-1" || f.Text != "plain text" || f.Author.ID != "u1" || f.Links[0] != "https://a.example/x" {
		t.Errorf("first result changed by a later Parse: %+v", f)
	}
}

// BenchmarkParse decodes typical synthetic events (~300 bytes): one in
// ASCII, one in Japanese (multi-byte UTF-8, as much of real firehoses is).
func BenchmarkParse(b *testing.B) {
	for _, bc := range []struct{ name, raw string }{
		{"ascii", `{"id":"act-123456","seq":123456,"verb":"post","author":{"id":"author-4242","handle":"user4242","followers":1234},"text":"Just shipped a new release of the stream pipeline, lag drained in seconds https://example.com/a/b","links":["https://example.com/a/b"],"created_at":"2026-11-30T06:24:05.123456789Z"}`},
		{"utf8", `{"id":"act-2","seq":2,"verb":"reply","author":{"id":"u52674","handle":"joao_52674","followers":577},"text":"@felix_22759 本当にも東京を嬉しいは夜にこれが人、試合試合が電車週末… #映画 #今日の一枚","links":["https://t.example/YyaEy0E"],"created_at":"2026-12-02T06:48:39.969204537Z"}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			raw := []byte(bc.raw)
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzParseMatchesStdlib checks that Parse accepts exactly the events
// encoding/json accepts and decodes the same fields: a malformed event must
// never pass Parse (WithEnrichments would then emit invalid JSON).
func FuzzParseMatchesStdlib(f *testing.F) {
	for _, s := range []string{
		`{"id":"a","text":"t","links":["u"],"author":{"id":"x"}}`,
		`{"id":"a","x":[1,2,}`, `{"id":"a","x":"` + "\x01" + `"}`, `{"id":"a","x":{"y":1,}}`, `{"id":"a","x":01}`,
		`{"id":"a","x":1.}`, `{"id":"a","x":"\q"}`, `{"id":"a","x":"\u12"}`, `{"id":"a","x":[1 2]}`, `{"id":"a"} x`,
		`{"id":"a","x":"` + "\xff" + `"}`, `{"id":"a\u00e9\ud83d\ude00","text":"\"\\\/\b\f\n\r\t"}`, `{"id":"a","id":"b"}`,
		`{"id":1}`, `{"id":"a","links":null,"author":null}`, `{"id":"a","x":1e5,"y":-0.5E-3,"z":[true,false,null]}`,
		// Hostile and unusual inputs: nesting past encoding/json's depth
		// limit, invalid UTF-8 and lone surrogates in a decoded string,
		// keys matched case-insensitively, a repeated object merged.
		`{"id":"a","x":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`,
		`{"id":"a","x":` + strings.Repeat(`{"a":`, 10001) + "1" + strings.Repeat("}", 10001) + `}`,
		`{"id":"a","text":"x` + "\xff\xfe" + `y","links":["` + "\xc3" + `"]}`, `{"id":"a","text":"\ud800 \udc00x"}`,
		`{"ID":"a","Text":"t","AUTHOR":{"Id":"x"}}`, `{"id":"a","author":{"id":"x"},"author":{"handle":"y"}}`,
		`{"id":"a","links":["x"],"links":["y",null]}`, `{"id":"a","x":1e400}`, "{\"id\":\"a\"}\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := Parse(raw)
		var want Fields
		stdErr := json.Unmarshal(raw, &want)
		if stdErr != nil {
			if err == nil {
				t.Fatalf("Parse accepted %q, encoding/json says %v", raw, stdErr)
			}
			return
		}
		if err != nil {
			// Parse also requires an object with an id.
			if !errors.Is(err, ErrNotObject) && !errors.Is(err, ErrMissingID) {
				t.Fatalf("Parse rejected %q (%v), encoding/json accepts it", raw, err)
			}
			return
		}
		if got.ID != want.ID || got.Text != want.Text || got.Author.ID != want.Author.ID || len(got.Links) != len(want.Links) {
			t.Fatalf("Parse(%q) = %+v, encoding/json decodes %+v", raw, got, want)
		}
		for i := range got.Links {
			if got.Links[i] != want.Links[i] {
				t.Fatalf("Parse(%q) links %q, encoding/json %q", raw, got.Links, want.Links)
			}
		}
	})
}
