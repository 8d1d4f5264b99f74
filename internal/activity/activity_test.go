package activity

import (
	"encoding/json"
	"errors"
	"testing"
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
