package activity

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// TestDecodeFieldsRefusesInvalidJSON: a bend-fields header can come from
// any producer of the input topic, so the value it describes must be valid
// JSON before it is passed on with enrichments spliced in.
func TestDecodeFieldsRefusesInvalidJSON(t *testing.T) {
	h := []byte(`{"id":"a-1","text":"hello"}`)
	for _, tc := range []struct {
		name, value string
		want        error
	}{
		{"valid", `{"id":"a-1","text":"hello"}`, nil},
		{"bare word", `{oops}`, ErrInvalidJSON},
		{"trailing comma", `{"a":1,}`, ErrInvalidJSON},
		{"two objects", `{"a":1}{"b":2}`, ErrInvalidJSON},
		{"not an object", `[1,2]`, ErrNotObject},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := DecodeFields(h, []byte(tc.value))
			if !errors.Is(err, tc.want) {
				t.Fatalf("DecodeFields(%s) error = %v, want %v", tc.value, err, tc.want)
			}
			if tc.want == nil && f.ID != "a-1" {
				t.Errorf("ID = %q, want a-1", f.ID)
			}
		})
	}
}

// TestLinksBounded: an event with far more links than any enricher reads
// maps to at most MaxLinks of them, in their order, without duplicates.
func TestLinksBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"id":"x","links":[`)
	for i := range 5000 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"https://example.com/` + strings.Repeat("a", i%7) + `/` + strconv.Itoa(i) + `"`)
	}
	b.WriteString(`]}`)
	fc := DefaultFormatConfig()
	fc.Format = "custom"
	fc.Fields.ID = []string{"id"}
	fc.Fields.Links = []string{"links"}
	fs, err := NewFormats("test", PresetBend, map[string]FormatConfig{"src": fc})
	if err != nil {
		t.Fatal(err)
	}
	f, err := fs.Lookup("src")
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.Map([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Links) != MaxLinks {
		t.Fatalf("got %d links, want %d", len(got.Links), MaxLinks)
	}
	if want := "https://example.com//0"; got.Links[0] != want {
		t.Errorf("first link = %q, want %q", got.Links[0], want)
	}
}
