// Package activity is bend's event model: the few fields of a social-media
// activity that bend's stages read, and the byte-level helpers that carry the
// rest of the event through untouched.
//
// bend never re-encodes an event it did not build. Stages decode only the
// fields they need (Fields) and the distributor splices the enrichments into
// the original bytes (WithEnrichments), so unknown fields survive verbatim.
package activity

import (
	"bytes"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"time"

	// A drop-in encoding/json that decodes these events four times as fast
	// as segmentio/encoding, which bend used before and which is slow on
	// any string that is not plain ASCII (the multilingual text of real
	// firehoses), with the same validation: FuzzParseMatchesStdlib checks
	// that it accepts and decodes exactly what encoding/json does. Parse
	// runs once per record in the distributor: it was the largest single
	// cost of a drain.
	json "github.com/goccy/go-json"
)

// Activity is a synthetic or received social-media activity as bend writes it.
// Received events may carry any other fields; only ID is required.
type Activity struct {
	ID        string    `json:"id"`
	Seq       uint64    `json:"seq,omitempty"`
	Verb      string    `json:"verb,omitempty"`
	Author    Author    `json:"author"`
	Text      string    `json:"text,omitempty"`
	Links     []string  `json:"links,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Author is the actor of an activity.
type Author struct {
	ID        string `json:"id"`
	Handle    string `json:"handle,omitempty"`
	Followers int    `json:"followers,omitempty"`
}

// Fields are the parts of an event that bend's enrichers read. Decoding into
// Fields skips every other field of the event.
type Fields struct {
	ID     string   `json:"id"`
	Text   string   `json:"text"`
	Links  []string `json:"links"`
	Author struct {
		ID string `json:"id"`
	} `json:"author"`

	// The fields below are set by a Format's mapping (Format.Map), not
	// by Parse (but for Lang, which the bend-fields header carries), and
	// are not part of the JSON form of Fields.

	// Kind is "" for an activity, or the kind of a non-activity event
	// (KindDelete, ...), which is passed on unenriched.
	Kind string `json:"-"`
	// Key is the mapped Kafka key, when the format names one.
	Key string `json:"-"`
	// Lang is the language the publisher tagged the event with, if any
	// (the lang enricher reports it beside its detection).
	Lang string `json:"lang_hint,omitempty"`
	// CreatedAt is when the event was created, if the format says.
	CreatedAt time.Time `json:"-"`
}

// Errors returned by Parse. Callers branch on them to pick a dead-letter reason.
var (
	// ErrNotObject means the event is not a JSON object.
	ErrNotObject = errors.New("event is not a JSON object")
	// ErrMissingID means the event has no non-empty string "id".
	ErrMissingID = errors.New(`event has no "id"`)
	// ErrInvalidJSON means the event is not valid JSON.
	ErrInvalidJSON = errors.New("event is not valid JSON")
)

// parseOptions make Parse's strings share the event's memory: only a string
// with an escape is copied.
var parseOptions = []json.DecodeOptionFunc{json.DecodeNoCopyString()}

// Parse decodes the fields bend reads from one JSON event. It returns an error
// that wraps ErrNotObject, ErrMissingID or the JSON decoder's error. The
// strings of the result share raw's memory where they need no unescaping
// (no copy per field): raw must not change while they are in use, and
// whoever keeps one beyond the event (a cache) copies it (strings.Clone).
func Parse(raw []byte) (Fields, error) {
	var f Fields
	b := bytes.TrimSpace(raw)
	if len(b) == 0 || b[0] != '{' {
		return f, ErrNotObject
	}
	if err := json.UnmarshalOf(b, &f, parseOptions...); err != nil {
		// The rare path: decode again with encoding/json, whose errors
		// carry what callers report (the byte offset of a syntax error, the
		// JSON type of a mistyped field).
		f = Fields{}
		if err := stdjson.Unmarshal(b, &f); err != nil {
			return f, fmt.Errorf("decoding event: %w", err)
		}
	}
	if f.ID == "" {
		return f, ErrMissingID
	}
	return f, nil
}

// WithEnrichments returns raw, a JSON object, with `"enrichments":enr` added
// as its last member. raw must be a valid JSON object (as checked by Parse);
// enr must be valid JSON. The result is a new slice; raw is not modified.
// An existing "enrichments" member in raw is left in place, and the added one
// follows it, so decoders that keep the last duplicate see bend's.
func WithEnrichments(raw, enr []byte) []byte {
	b := bytes.TrimSpace(raw)
	end := bytes.LastIndexByte(b, '}')
	if end < 0 {
		return append([]byte(nil), raw...)
	}
	body := bytes.TrimSpace(b[1:end])
	out := make([]byte, 0, len(b)+len(enr)+16)
	out = append(out, '{')
	out = append(out, body...)
	if len(body) > 0 {
		out = append(out, ',')
	}
	out = append(out, `"enrichments":`...)
	out = append(out, enr...)
	out = append(out, '}')
	return out
}
