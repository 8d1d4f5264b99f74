// Package pack is bend's event batching: several events in one Kafka record.
//
// A packed record's value is its events in NDJSON framing (each event on
// one line, each line ending in '\n'); its headers say so:
//
//	bend-batch-count    the number of events, in decimal
//	bend-batch-framing  "ndjson"
//
// A record without bend-batch-framing is one event, as ever. Only events
// without a line break may be packed (an event in compact JSON has none);
// the packers send any other event alone. Packed records are opt-in at
// both ends (ingest.batching, sink.kafka.batching): a consumer that does
// not read these headers (kcat, a plain Java consumer) must read topics
// written without batching.
package pack

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"github.com/IBM/sarama"
)

// Header keys and the one framing.
const (
	HeaderCount   = "bend-batch-count"
	HeaderFraming = "bend-batch-framing"
	// HeaderSources names, on a record the sink packed, the input record of
	// each event, comma-separated in event order: TOPIC:PARTITION:OFFSET, or
	// TOPIC:PARTITION:OFFSET:INDEX for an event that came packed.
	HeaderSources = "bend-batch-sources"
	// HeaderIndex is the provenance header giving a packed input event's
	// 0-based index in its record, beside bend-source-offset.
	HeaderIndex   = "bend-source-index"
	FramingNDJSON = "ndjson"
)

// Errors of Split and Framed. Both mark a malformed packed record.
var (
	// ErrFraming marks a record whose bend-batch-framing is not "ndjson".
	ErrFraming = errors.New("pack: unknown bend-batch-framing")
	// ErrCount marks a record whose events do not match bend-batch-count.
	ErrCount = errors.New("pack: bend-batch-count does not match the events")
)

var (
	hdrCount   = []byte(HeaderCount)
	hdrFraming = []byte(HeaderFraming)
	ndjson     = []byte(FramingNDJSON)
)

// Packable reports whether v can travel in a packed record: it is not empty
// and holds no line break.
func Packable(v []byte) bool {
	return len(v) > 0 && bytes.IndexByte(v, '\n') < 0 && bytes.IndexByte(v, '\r') < 0
}

// Append appends the event v, framed, to buf. v must be Packable.
func Append(buf, v []byte) []byte {
	buf = append(buf, v...)
	return append(buf, '\n')
}

// Headers appends the headers of a record packing n events to h.
func Headers(h []sarama.RecordHeader, n int) []sarama.RecordHeader {
	return append(h,
		sarama.RecordHeader{Key: hdrCount, Value: strconv.AppendInt(nil, int64(n), 10)},
		sarama.RecordHeader{Key: hdrFraming, Value: ndjson})
}

// Framed reads a consumed record's headers. It returns packed false for a
// record of one plain event. For a packed record it returns the count, or
// an error if the headers are malformed (unknown framing, count missing or
// not a positive number).
func Framed(h []*sarama.RecordHeader) (n int, packed bool, err error) {
	var framing, count []byte
	for _, x := range h {
		if x == nil {
			continue
		}
		switch string(x.Key) {
		case HeaderFraming:
			framing, packed = x.Value, true
		case HeaderCount:
			count = x.Value
		}
	}
	if !packed {
		return 0, false, nil
	}
	if string(framing) != FramingNDJSON {
		return 0, true, fmt.Errorf("%w: %q", ErrFraming, framing)
	}
	c, cerr := strconv.Atoi(string(count))
	if cerr != nil || c < 1 {
		return 0, true, fmt.Errorf("%w: count %q", ErrCount, count)
	}
	return c, true, nil
}

// Split appends the n events of a packed value to dst and returns it. The
// events alias value. The last line may lack its '\n'. It fails with
// ErrCount unless value holds exactly n non-empty lines.
func Split(dst [][]byte, value []byte, n int) ([][]byte, error) {
	start := len(dst)
	for len(value) > 0 {
		i := bytes.IndexByte(value, '\n')
		line := value
		if i >= 0 {
			line, value = value[:i], value[i+1:]
		} else {
			value = nil
		}
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if len(line) == 0 || len(dst)-start == n {
			return dst[:start], fmt.Errorf("%w: want %d", ErrCount, n)
		}
		dst = append(dst, line)
	}
	if len(dst)-start != n {
		return dst[:start], fmt.Errorf("%w: want %d, got %d", ErrCount, n, len(dst)-start)
	}
	return dst, nil
}
