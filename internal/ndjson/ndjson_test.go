package ndjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// got is one result of Reader.Next, for comparisons.
type got struct {
	n       int
	line    string
	tooLong int64 // size of a skipped line, 0 if none
}

// readAll calls Next until it fails with something other than a LineError,
// and returns the results and that final error.
func readAll(t *testing.T, r *Reader) ([]got, error) {
	t.Helper()
	var out []got
	for i := 0; ; i++ {
		if i > 1e6 {
			t.Fatal("Next does not terminate")
		}
		line, n, err := r.Next()
		var le *LineError
		switch {
		case errors.As(err, &le):
			if !errors.Is(err, ErrLineTooLong) || le.Line != n {
				t.Fatalf("LineError %v: want ErrLineTooLong on line %d", err, n)
			}
			out = append(out, got{n: n, line: string(line), tooLong: le.Size})
		case err != nil:
			return out, err
		default:
			out = append(out, got{n: n, line: string(line)})
		}
	}
}

func TestReaderHostileInputs(t *testing.T) {
	big := strings.Repeat("x", 10<<20) // a 10 MB line
	for _, tc := range []struct {
		name    string
		in      io.Reader
		max     int
		want    []got
		wantErr error
	}{
		{"empty", strings.NewReader(""), 100, nil, io.EOF},
		{"two lines", strings.NewReader("{\"a\":1}\n{\"b\":2}\n"), 100,
			[]got{{1, `{"a":1}`, 0}, {2, `{"b":2}`, 0}}, io.EOF},
		{"no final newline", strings.NewReader("{}\n[1]"), 100, []got{{1, "{}", 0}, {2, "[1]", 0}}, io.EOF},
		{"crlf endings", strings.NewReader("a\r\nb\r\nc\r"), 100, []got{{1, "a", 0}, {2, "b", 0}, {3, "c", 0}}, io.EOF},
		{"blank lines are counted, not returned", strings.NewReader("\n  \n\t\r\nx\n\n"), 100, []got{{4, "x", 0}}, io.EOF},
		{"10 MB line is skipped and reading resumes", io.MultiReader(strings.NewReader("{\"id\":\"1\"}\n"+big+"\n"), strings.NewReader("{\"id\":\"2\"}\n")),
			1 << 20, []got{{1, `{"id":"1"}`, 0}, {2, big[:1<<20], 10 << 20}, {3, `{"id":"2"}`, 0}}, io.EOF},
		{"10 MB last line without newline", strings.NewReader(big), 1 << 20, []got{{1, big[:1<<20], 10 << 20}}, io.EOF},
		{"line exactly at the limit", strings.NewReader("12345\r\n123456\n"), 5, []got{{1, "12345", 0}, {2, "12345", 6}}, io.EOF},
		{"NUL bytes are framed, not judged", strings.NewReader("{\"id\":\"\x00\"}\n\x00\n"), 100,
			[]got{{1, "{\"id\":\"\x00\"}", 0}, {2, "\x00", 0}}, io.EOF},
		{"invalid UTF-8 is framed, not judged", strings.NewReader("\xff\xfe\n{}\n"), 100, []got{{1, "\xff\xfe", 0}, {2, "{}", 0}}, io.EOF},
		{"truncated body drops the partial line",
			io.MultiReader(strings.NewReader("{\"id\":\"1\"}\n{\"id\":"), iotest.ErrReader(io.ErrUnexpectedEOF)), 100,
			[]got{{1, `{"id":"1"}`, 0}}, io.ErrUnexpectedEOF},
		{"read error mid overlong line",
			io.MultiReader(strings.NewReader("x\n"+strings.Repeat("y", 200)), iotest.ErrReader(io.ErrClosedPipe)), 10,
			[]got{{1, "x", 0}}, io.ErrClosedPipe},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(tc.in, tc.max)
			out, err := readAll(t, r)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("final error %v, want %v", err, tc.wantErr)
			}
			if len(out) != len(tc.want) {
				t.Fatalf("got %d lines %.200v, want %d", len(out), out, len(tc.want))
			}
			for i := range out {
				if out[i] != tc.want[i] {
					t.Errorf("line %d: got {%d %.40q %d}, want {%d %.40q %d}", i,
						out[i].n, out[i].line, out[i].tooLong, tc.want[i].n, tc.want[i].line, tc.want[i].tooLong)
				}
			}
			if _, _, again := r.Next(); !errors.Is(again, tc.wantErr) {
				t.Errorf("Next after the end: %v, want %v again", again, tc.wantErr)
			}
		})
	}
}

func TestReaderOffsetCountsEveryByte(t *testing.T) {
	in := "{}\n" + strings.Repeat("z", 300) + "\n\n{}"
	r := NewReader(strings.NewReader(in), 100)
	if _, err := readAll(t, r); err != io.EOF {
		t.Fatalf("err %v, want io.EOF", err)
	}
	if r.Offset() != int64(len(in)) {
		t.Errorf("Offset() = %d, want %d", r.Offset(), len(in))
	}
	if r.Line() != 4 {
		t.Errorf("Line() = %d, want 4", r.Line())
	}
}

// reference splits in the obvious, unbounded way: what Reader must return.
func reference(in []byte, max int) []got {
	parts := bytes.Split(in, []byte("\n"))
	if len(parts[len(parts)-1]) == 0 {
		parts = parts[:len(parts)-1]
	}
	var out []got
	for i, p := range parts {
		p = bytes.TrimSuffix(p, []byte("\r"))
		switch {
		case len(p) > max:
			out = append(out, got{n: i + 1, line: string(p[:max]), tooLong: int64(len(p))})
		case blank(p):
		default:
			out = append(out, got{n: i + 1, line: string(p)})
		}
	}
	return out
}

func FuzzDecodeLines(f *testing.F) {
	for _, s := range []string{"", "\n", "{}\n{}", "a\r\nb\r", "\r\r\n\r", strings.Repeat("x", 40) + "\ny\n", "\x00\xff\n\n"} {
		f.Add([]byte(s), uint8(8), false)
	}
	f.Fuzz(func(t *testing.T, in []byte, max uint8, oneByte bool) {
		m := int(max%64) + 1
		var src io.Reader = bytes.NewReader(in)
		if oneByte {
			src = iotest.OneByteReader(src)
		}
		out, err := readAll(t, newReaderSize(src, m, 16))
		if err != io.EOF {
			t.Fatalf("final error %v, want io.EOF", err)
		}
		want := reference(in, m)
		if len(out) != len(want) {
			t.Fatalf("got %+v, want %+v", out, want)
		}
		for i := range out {
			if out[i] != want[i] {
				t.Fatalf("result %d: got %+v, want %+v", i, out[i], want[i])
			}
		}
		// Lines is the unlimited, in-memory form: the same lines, whole.
		var lines []got
		for n, l := range Lines(in) {
			lines = append(lines, got{n: n, line: string(l)})
		}
		whole := reference(in, len(in)+1)
		if fmt.Sprint(lines) != fmt.Sprint(whole) {
			t.Fatalf("Lines: got %+v, want %+v", lines, whole)
		}
	})
}

func TestSplitArray(t *testing.T) {
	for _, tc := range []struct {
		name    string
		body    string
		want    []string
		wantErr string
	}{
		{"empty array", " [ ] ", nil, ""},
		{"elements keep their bytes", `[{"id":"1"}, {"id" : "2"},3,"x",[[]]]`, []string{`{"id":"1"}`, `{"id" : "2"}`, `3`, `"x"`, `[[]]`}, ""},
		{"object is not an array", `{"id":"1"}`, nil, "not a JSON array"},
		{"empty body", ``, nil, "not a JSON array"},
		{"truncated", `[{"id":"1"},{"id":`, nil, "element 2"},
		{"missing bracket", `[{"id":"1"}`, nil, "element 2"},
		{"trailing data", `[1] [2]`, nil, "data after the array"},
		{"NUL byte", "[{\"id\":\"1\"},\x00]", nil, "element 2"},
		{"deep nesting", "[" + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + "]", nil, "element 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			elems, err := SplitArray([]byte(tc.body))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("err %v", err)
			}
			if len(elems) != len(tc.want) {
				t.Fatalf("got %q, want %q", elems, tc.want)
			}
			for i := range elems {
				if string(elems[i]) != tc.want[i] {
					t.Errorf("element %d: got %q, want %q", i, elems[i], tc.want[i])
				}
			}
		})
	}
}

func FuzzSplitArray(f *testing.F) {
	for _, s := range []string{`[]`, `[1,2]`, `[{"id":"a"},"b",null]`, `[`, `[1,]`, `[1] x`, "[\"\xff\"]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		elems, err := SplitArray(body)
		var want []json.RawMessage
		werr := json.Unmarshal(body, &want)
		if (err == nil) != (werr == nil) {
			t.Fatalf("SplitArray err %v, json.Unmarshal err %v", err, werr)
		}
		if err != nil {
			return
		}
		if len(elems) != len(want) {
			t.Fatalf("%d elements, want %d", len(elems), len(want))
		}
		for i := range elems {
			if !bytes.Equal(elems[i], want[i]) {
				t.Fatalf("element %d: %q, want %q", i, elems[i], want[i])
			}
		}
	})
}

// TestReaderDropsBOM checks that a UTF-8 byte order mark before the first
// line is dropped, and one elsewhere is kept.
func TestReaderDropsBOM(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"before the first line", "\xEF\xBB\xBF{\"id\":1}\n{\"id\":2}\n", []string{`{"id":1}`, `{"id":2}`}},
		{"alone on the first line", "\xEF\xBB\xBF\n{\"id\":2}", []string{`{"id":2}`}},
		{"on a later line", "{\"id\":1}\n\xEF\xBB\xBF{\"id\":2}", []string{`{"id":1}`, "\xEF\xBB\xBF{\"id\":2}"}},
		{"none", "{\"id\":1}", []string{`{"id":1}`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(tc.in), 64)
			var got []string
			for {
				line, _, err := r.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, string(line))
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("lines %q, want %q", got, tc.want)
			}
		})
	}
}
