package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/bendstream/bend/internal/activity"
	metrics "github.com/rcrowley/go-metrics"
)

// errTooLarge marks the rejection of an event over ingest.max_event_bytes:
// the HTTP receiver answers it with 413 rather than 400.
var errTooLarge = errors.New("event too large")

// checker holds the edge's rules for one event. check is pure: no I/O, no
// clock, no shared state, so it is safe for concurrent use.
type checker struct {
	maxBytes int      // ingest.max_event_bytes
	maxDepth int      // ingest.max_depth
	keyPath  []string // ingest.key_field, split at dots

	// format reads the events (nil: activity.Parse, the bend format);
	// formatName is its bend-format header. See formatChecker.
	format                        *activity.Format
	formatName                    []byte
	nonActivity, nonActivityTopic string
	passed, dropped               metrics.Counter
}

func newChecker(c Config) checker {
	return checker{maxBytes: c.MaxEventBytes, maxDepth: c.MaxDepth, keyPath: strings.Split(c.KeyField, ".")}
}

// check returns the Kafka key of ev, or an error whose message is the
// reason ev is rejected. ev must be one event, without its line ending. The
// rules, in the order checked:
//
//   - at most maxBytes, key included (else an error wrapping errTooLarge);
//   - valid UTF-8, and no NUL byte (escaped "\u0000" inside strings is fine);
//   - objects and arrays nested at most maxDepth deep;
//   - one JSON object, with a non-empty string "id" and the types bend's
//     stages read (activity.Parse): text a string, links strings, author an
//     object whose id is a string;
//   - the key field present, a non-empty string or a number.
func (c checker) check(ev []byte) (key []byte, err error) {
	v, err := c.verdict(ev)
	return v.key, err
}

// verdict is check, also reporting the kind of a non-activity event: such
// an event (recognised by the source's format) is valid whatever the id
// and key rules, and keyed by its id if it has one.
func (c checker) verdict(ev []byte) (verdict, error) {
	var key []byte
	if len(ev) > c.maxBytes {
		return verdict{}, fmt.Errorf("%w: %d bytes, over the limit of %d (ingest.max_event_bytes)", errTooLarge, len(ev), c.maxBytes)
	}
	if !utf8.Valid(ev) {
		return verdict{}, fmt.Errorf("invalid UTF-8 at byte %d", invalidUTF8At(ev))
	}
	if i := bytes.IndexByte(ev, 0); i >= 0 {
		return verdict{}, fmt.Errorf("NUL byte at byte %d", i)
	}
	if i := tooDeepAt(ev, c.maxDepth); i >= 0 {
		return verdict{}, fmt.Errorf("nested deeper than %d levels at byte %d (ingest.max_depth)", c.maxDepth, i)
	}
	var f activity.Fields
	var err error
	if c.format != nil {
		f, err = c.format.Map(ev)
	} else {
		f, err = activity.Parse(ev)
	}
	if err != nil {
		return verdict{}, parseReason(err)
	}
	switch {
	case f.Kind != "":
		key = []byte(f.ID)
	case f.Key != "":
		key = []byte(f.Key)
	case len(c.keyPath) == 1 && c.keyPath[0] == "id":
		key = []byte(f.ID)
	case len(c.keyPath) == 2 && c.keyPath[0] == "author" && c.keyPath[1] == "id" && f.Author.ID != "":
		key = []byte(f.Author.ID)
	default:
		if key, err = c.lookupKey(ev); err != nil {
			return verdict{}, err
		}
	}
	if len(ev)+len(key) > c.maxBytes {
		return verdict{}, fmt.Errorf("%w: %d bytes with its key, over the limit of %d (ingest.max_event_bytes)", errTooLarge, len(ev)+len(key), c.maxBytes)
	}
	v := verdict{key: key, kind: f.Kind}
	if c.format != nil && c.formatName != nil && !c.format.Fast() && f.Kind == "" {
		v.fields = activity.EncodeFields(f)
	}
	return v, nil
}

// lookupKey finds the key field in ev, a valid JSON object.
func (c checker) lookupKey(ev []byte) ([]byte, error) {
	name := strings.Join(c.keyPath, ".")
	raw := json.RawMessage(ev)
	for _, field := range c.keyPath {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			return nil, fmt.Errorf("key field %q: %s is not inside an object", name, field)
		}
		var ok bool
		if raw, ok = obj[field]; !ok {
			return nil, fmt.Errorf("missing key field %q", name)
		}
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("key field %q: %v", name, err)
		}
		if s == "" {
			return nil, fmt.Errorf("key field %q is empty", name)
		}
		return []byte(s), nil
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return raw, nil
	}
	return nil, fmt.Errorf("key field %q is %s, want a string or a number", name, jsonKind(raw[0]))
}

// parseReason turns activity.Parse's error into a short reason.
func parseReason(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var fte *activity.FieldTypeError
	switch {
	case errors.Is(err, activity.ErrNotObject):
		return errors.New("not a JSON object")
	case errors.Is(err, activity.ErrMissingID):
		return errors.New(`missing or empty "id"` + strings.TrimPrefix(err.Error(), activity.ErrMissingID.Error()))
	case errors.As(err, &fte):
		return fte
	case errors.As(err, &syn):
		return fmt.Errorf("malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "(top level)"
		}
		return fmt.Errorf("field %q is %s, want %s", field, article(typ.Value), wantKind(typ.Type))
	}
	return fmt.Errorf("malformed JSON: %v", err)
}

// article returns a JSON kind from UnmarshalTypeError.Value with "a"/"an".
func article(kind string) string {
	if kind == "" {
		return "of the wrong type"
	}
	if strings.ContainsRune("aeiou", rune(kind[0])) {
		return "an " + kind
	}
	return "a " + kind
}

// wantKind names the JSON kind that decodes into t.
func wantKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Bool:
		return "a boolean"
	}
	return "a number"
}

// jsonKind names the kind of JSON value starting with c.
func jsonKind(c byte) string {
	switch c {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "invalid"
}

// invalidUTF8At returns the offset of the first invalid UTF-8 sequence in
// b, or -1.
func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return -1
}

// tooDeepAt returns the offset of the first '{' or '[' outside strings that
// opens level max+1, or -1. It needs no valid JSON: the parser judges that
// afterwards, and its own nesting limit (10000) is far above max.
func tooDeepAt(b []byte, max int) int {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			// Skip the string: find its closing quote, skipping escapes.
			for i++; i < len(b); i++ {
				if b[i] == '\\' {
					i++
				} else if b[i] == '"' {
					break
				}
			}
		case '{', '[':
			if depth++; depth > max {
				return i
			}
		case '}', ']':
			depth--
		}
	}
	return -1
}

// quoteReason shortens a rejection reason for headers and HTTP answers.
func quoteReason(err error) string {
	s := err.Error()
	if len(s) > 512 {
		s = s[:512] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
