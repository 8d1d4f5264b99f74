package sink

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestOneLine: every value written to an NDJSON output is one line, so a
// pretty-printed event cannot split into several records for a reader.
func TestOneLine(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"compact", `{"id":"a","text":"x"}`, `{"id":"a","text":"x"}`},
		{"pretty", "{\n  \"id\": \"a\",\n  \"text\": \"line\\nbreak\"\r\n}", `{"id":"a","text":"line\nbreak"}`},
		{"not JSON", "raw\nbytes\r", "raw bytes "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := oneLine([]byte(tc.in))
			if string(got) != tc.want {
				t.Fatalf("oneLine(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if bytes.ContainsAny(got, "\r\n") {
				t.Errorf("oneLine(%q) = %q holds a line break", tc.in, got)
			}
			if json.Valid([]byte(tc.in)) && !json.Valid(got) {
				t.Errorf("oneLine(%q) = %q is no longer valid JSON", tc.in, got)
			}
		})
	}
	v := []byte(`{"id":"a"}`)
	if got := oneLine(v); &got[0] != &v[0] {
		t.Error("oneLine copied a value without line breaks")
	}
}
