// Package ndjson frames newline-delimited JSON into lines, and JSON arrays
// into elements, with bounded memory. It checks framing only: whether a line
// holds valid JSON, and what that JSON must contain, is the caller's
// business.
//
// Reader never holds more than the line limit (plus its read buffer) in
// memory: a longer line is reported as an *ErrLineTooLong-wrapping LineError
// and skipped, and reading resumes at the next line, so one hostile line
// cannot stop a stream.
package ndjson

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
)

// ErrLineTooLong is wrapped by the LineError that Reader.Next returns for a
// line longer than the Reader's limit.
var ErrLineTooLong = errors.New("ndjson: line too long")

// LineError reports a line that Reader.Next skipped.
type LineError struct {
	// Line is the 1-based number of the line.
	Line int
	// Size is the length of the line in bytes, without its line ending.
	Size int64
	// Err is ErrLineTooLong.
	Err error
}

// Error implements error.
func (e *LineError) Error() string {
	return fmt.Sprintf("line %d: %d bytes: %v", e.Line, e.Size, e.Err)
}

// Unwrap returns Err.
func (e *LineError) Unwrap() error { return e.Err }

// bom is the UTF-8 byte order mark.
var bom = []byte{0xEF, 0xBB, 0xBF}

// readBuffer is the size of Reader's read buffer.
const readBuffer = 64 << 10

// Reader reads the lines of newline-delimited JSON from an io.Reader. Lines
// end in "\n" or "\r\n"; blank lines (only spaces, tabs and "\r") are
// skipped but counted. A UTF-8 byte order mark at the start of the input is
// dropped. Reader is not safe for concurrent use.
type Reader struct {
	br   *bufio.Reader
	max  int
	line int   // number of the last line read
	off  int64 // bytes consumed from the underlying reader
	buf  []byte
	err  error // sticky read error
}

// NewReader returns a Reader of r whose lines may hold at most max bytes,
// line ending excluded. max must be positive.
func NewReader(r io.Reader, max int) *Reader {
	return newReaderSize(r, max, readBuffer)
}

// newReaderSize is NewReader with a read buffer of size bytes (at least 16),
// so that tests can exercise lines that span buffer refills.
func newReaderSize(r io.Reader, max, size int) *Reader {
	if max < 1 {
		panic("ndjson.NewReader: max must be positive")
	}
	return &Reader{br: bufio.NewReaderSize(r, size), max: max}
}

// Next returns the next non-blank line without its line ending, and its
// 1-based line number. The line is valid only until the next call.
//
// A line longer than the limit is skipped up to its end: Next returns its
// first max bytes and a *LineError wrapping ErrLineTooLong, and the next call
// continues with the following line.
//
// At the end of the input Next returns io.EOF; a last line without a line
// ending is returned before, like any other. If the underlying reader fails,
// a partial line read so far is dropped (it may be truncated) and Next
// returns that error, as is, on this and every later call; for example
// io.ErrUnexpectedEOF when an HTTP body ends early.
func (r *Reader) Next() (line []byte, n int, err error) {
	for {
		if r.err != nil {
			return nil, r.line, r.err
		}
		line, size, err := r.read()
		if err != nil {
			r.err = err
			return nil, r.line, err
		}
		r.line++
		if r.line == 1 && bytes.HasPrefix(line, bom) {
			// A byte order mark before the first line is not part of it.
			line, size = line[len(bom):], size-int64(len(bom))
		}
		if size > int64(r.max) {
			return line[:r.max], r.line, &LineError{Line: r.line, Size: size, Err: ErrLineTooLong}
		}
		if blank(line) {
			continue
		}
		return line, r.line, nil
	}
}

// Line returns the number of the last line read (0 before the first).
func (r *Reader) Line() int { return r.line }

// Offset returns the number of bytes consumed from the underlying reader.
func (r *Reader) Offset() int64 { return r.off }

// read returns the next physical line without its ending, truncated to
// max+2 bytes, and its full size without the ending. It returns io.EOF only
// when no byte is left.
func (r *Reader) read() (line []byte, size int64, err error) {
	r.buf = r.buf[:0]
	var last2 [2]byte // the line's last two bytes, to find a "\r\n" ending
	for {
		frag, err := r.br.ReadSlice('\n')
		r.off += int64(len(frag))
		size += int64(len(frag))
		switch {
		case len(frag) >= 2:
			last2 = [2]byte{frag[len(frag)-2], frag[len(frag)-1]}
		case len(frag) == 1:
			last2 = [2]byte{last2[1], frag[0]}
		}
		switch {
		case err == nil && len(r.buf) == 0:
			// The common case: the whole line is in the read buffer.
			line = frag
		case len(r.buf)+len(frag) <= r.max+2:
			r.buf = append(r.buf, frag...)
			line = r.buf
		case len(r.buf) < r.max+2:
			r.buf = append(r.buf, frag[:r.max+2-len(r.buf)]...)
			line = r.buf
		default:
			line = r.buf // already holds all we keep of an overlong line
		}
		switch {
		case err == nil:
			end := 1
			if last2 == [2]byte{'\r', '\n'} {
				end = 2
			}
			size -= int64(end)
			if size <= int64(r.max) { // then line holds all of it, ending included
				line = line[:size]
			}
			return line, size, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF:
			if size == 0 {
				return nil, 0, io.EOF
			}
			if last2[1] == '\r' { // a lone trailing "\r" is part of the ending
				size--
				if size < int64(len(line)) {
					line = line[:size]
				}
			}
			return line, size, nil
		default:
			return nil, 0, err
		}
	}
}

// blank reports whether b holds only spaces, tabs and carriage returns.
func blank(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\r' {
			return false
		}
	}
	return true
}

// SplitArray returns the elements of the JSON array in body, as sub-slices
// of body, in order. It fails if body is not exactly one well-formed JSON
// array (surrounding whitespace allowed); the error names the element
// (1-based) and byte offset where decoding stopped. It checks only framing
// and JSON syntax (up to encoding/json's nesting limit), not the elements'
// contents.
func SplitArray(body []byte) ([][]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("not a JSON array: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, fmt.Errorf("not a JSON array: starts with %v", tok)
	}
	var elems [][]byte
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("element %d (byte %d): %w", len(elems)+1, dec.InputOffset(), err)
		}
		end := int(dec.InputOffset())
		elems = append(elems, body[end-len(raw):end:end])
	}
	if _, err := dec.Token(); err != nil { // the closing ']'
		return nil, fmt.Errorf("element %d (byte %d): %w", len(elems)+1, dec.InputOffset(), err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("data after the array at byte %d", dec.InputOffset())
	}
	return elems, nil
}

// Lines yields the non-blank lines of body with their 1-based numbers, as
// sub-slices of body without their line endings: the same lines as a Reader
// of body with no length limit. It is for bodies already in memory.
func Lines(body []byte) iter.Seq2[int, []byte] {
	return func(yield func(int, []byte) bool) {
		for n := 1; len(body) > 0; n++ {
			line := body
			if i := bytes.IndexByte(body, '\n'); i >= 0 {
				line, body = body[:i], body[i+1:]
			} else {
				body = nil
			}
			line = bytes.TrimSuffix(line, []byte("\r"))
			if blank(line) {
				continue
			}
			if !yield(n, line[:len(line):len(line)]) {
				return
			}
		}
	}
}
