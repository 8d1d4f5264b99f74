package ingest

import (
	"bufio"
	"bytes"
	"io"
	"time"
)

// sseEvent is one event dispatched by an sseReader.
type sseEvent struct {
	// Type is the event type ("message" unless an event: field named one).
	Type string
	// Data is the data buffer, its lines joined with "\n". Valid until the
	// next call of Next. When TooLarge it holds a prefix.
	Data []byte
	// ID is the last event ID (it carries over events without an id:
	// field); HasID says whether this event set it.
	ID    []byte
	HasID bool
	// TooLarge marks an event whose data, or one of whose lines, exceeded
	// the reader's limits; Size is the data size seen.
	TooLarge bool
	Size     int
}

// sseReader parses a text/event-stream as the WHATWG HTML standard
// ("Server-sent events", event stream interpretation) says: lines end in
// CRLF, LF or CR; a leading BOM is skipped; ":" starts a comment; a field
// name is followed by a colon and one optional space; data lines are joined
// with LF; an empty line dispatches the event (none if its data is empty);
// an id containing NUL is ignored; retry takes ASCII digits only; an event
// cut off by the end of the stream is discarded. Lines are bounded by
// maxLine bytes and an event's data by maxData: over either, the event is
// returned marked TooLarge. Not safe for concurrent use.
type sseReader struct {
	r                *bufio.Reader
	maxLine, maxData int
	started, skipLF  bool

	line     []byte
	lineOver bool

	data, typ []byte
	hasID     bool
	over      bool
	size      int
	lastID    []byte
	retry     time.Duration
}

func newSSEReader(r io.Reader, maxLine, maxData int) *sseReader {
	return &sseReader{r: bufio.NewReaderSize(r, 64<<10), maxLine: maxLine, maxData: maxData}
}

// setLastID sets the last event ID buffer (the id a connection resumed).
func (p *sseReader) setLastID(id []byte) { p.lastID = id }

// Retry returns the reconnection time the server set with retry:, or 0.
func (p *sseReader) Retry() time.Duration { return p.retry }

// Next returns the next event, or the error that ended the stream (io.EOF
// at its end).
func (p *sseReader) Next() (sseEvent, error) {
	if !p.started {
		p.started = true
		if b, err := p.r.Peek(3); err == nil && bytes.Equal(b, []byte("\xef\xbb\xbf")) {
			_, _ = p.r.Discard(3)
		}
	}
	for {
		line, err := p.readLine()
		if err != nil {
			return sseEvent{}, err
		}
		if p.lineOver {
			p.over = true
		}
		if len(line) == 0 && !p.lineOver {
			if len(p.data) == 0 && !p.over {
				p.typ, p.hasID = p.typ[:0], false
				continue
			}
			ev := sseEvent{Type: "message", Data: bytes.TrimSuffix(p.data, []byte("\n")), ID: p.lastID,
				HasID: p.hasID, TooLarge: p.over, Size: p.size}
			if len(p.typ) > 0 {
				ev.Type = string(p.typ)
			}
			if ev.Size > 0 {
				ev.Size-- // the last line's LF
			}
			p.data, p.typ, p.hasID, p.over, p.size = p.data[:0], p.typ[:0], false, false, 0
			return ev, nil
		}
		if p.lineOver || line[0] == ':' {
			continue
		}
		name, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			name, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(name) {
		case "event":
			p.typ = append(p.typ[:0], value...)
		case "data":
			p.size += len(value) + 1
			if len(p.data)+len(value)+1 > p.maxData+1 {
				p.over = true
			}
			if !p.over {
				p.data = append(append(p.data, value...), '\n')
			}
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				p.lastID, p.hasID = bytes.Clone(value), true
			}
		case "retry":
			if ms, ok := digits(value); ok {
				p.retry = time.Duration(ms) * time.Millisecond
			}
		}
	}
}

// digits parses a non-empty string of ASCII digits.
func digits(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// readLine returns the next line without its ending; p.lineOver says
// whether it was longer than maxLine (the line then holds a prefix).
func (p *sseReader) readLine() ([]byte, error) {
	p.line, p.lineOver = p.line[:0], false
	for {
		n := p.r.Buffered()
		if n == 0 {
			if _, err := p.r.Peek(1); err != nil {
				return nil, err // a line cut off by the end is discarded
			}
			n = p.r.Buffered()
		}
		buf, _ := p.r.Peek(n)
		if p.skipLF {
			p.skipLF = false
			if buf[0] == '\n' {
				_, _ = p.r.Discard(1)
				continue
			}
		}
		i := bytes.IndexAny(buf, "\r\n")
		end := i
		if i < 0 {
			end = len(buf)
		}
		if room := p.maxLine - len(p.line); end > room {
			p.line = append(p.line, buf[:max(room, 0)]...)
			p.lineOver = true
		} else if !p.lineOver {
			p.line = append(p.line, buf[:end]...)
		}
		if i < 0 {
			_, _ = p.r.Discard(len(buf))
			continue
		}
		if buf[i] == '\r' {
			if i+1 < len(buf) {
				if buf[i+1] == '\n' {
					i++
				}
			} else {
				p.skipLF = true
			}
		}
		_, _ = p.r.Discard(i + 1)
		return p.line, nil
	}
}
