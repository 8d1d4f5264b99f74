package activity

import (
	"bytes"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	json "github.com/goccy/go-json"
	// gjson reads the few fields bend needs straight out of the event's
	// bytes, by path (arrays included), without decoding the rest; a
	// number's digits are kept as written (Result.Raw), so a 64-bit id is
	// never rounded through float64.
	"github.com/tidwall/gjson"
)

// Record headers through which ingest tells the distributor how to read an
// event.
const (
	// HeaderFormat names the format of a record's value: a preset name, or
	// "ingest.<source>" for a source with its own fields mapping.
	HeaderFormat = "bend-format"
	// HeaderKind names the kind of a non-activity event (delete, identity,
	// ...). A record carrying it is passed on unenriched; an emitted
	// non-activity record carries it too.
	HeaderKind = "bend-kind"
	// HeaderFields carries the fields ingest mapped from a record of a
	// format other than bend, as a bend event ({"id","text","links",
	// "author":{"id"}}; see EncodeFields), so that the distributor reads
	// them without parsing the event again. Left out when larger than
	// MaxFieldsHeader.
	HeaderFields = "bend-fields"
)

// MaxFieldsHeader is the largest bend-fields header ingest writes; the
// fields of an event with more text are mapped again by the distributor.
const MaxFieldsHeader = 2048

// EncodeFields returns f as a bend event, the value of a bend-fields
// header, or nil if that is over MaxFieldsHeader bytes.
func EncodeFields(f Fields) []byte {
	if len(f.Text)+len(f.ID)+len(f.Author.ID) > MaxFieldsHeader {
		return nil
	}
	b, err := json.Marshal(&f)
	if err != nil || len(b) > MaxFieldsHeader {
		return nil
	}
	return b
}

// DecodeFields reads the fields of a record from its bend-fields header
// h; value is the record's value, which must look like a JSON object (it
// was validated by ingest, which wrote the header).
func DecodeFields(h, value []byte) (Fields, error) {
	v := bytes.TrimSpace(value)
	if len(v) < 2 || v[0] != '{' || v[len(v)-1] != '}' {
		return Fields{}, ErrNotObject
	}
	// The header may come from any producer of the topic, not only ingest:
	// a value that is not valid JSON is refused here, never spliced into
	// the output.
	if !gjson.ValidBytes(v) {
		return Fields{}, ErrInvalidJSON
	}
	f, err := Parse(h)
	if err != nil {
		return Fields{}, fmt.Errorf("%s header: %w", HeaderFields, err)
	}
	return f, nil
}

// Preset names, the values of FormatConfig.Format.
const (
	PresetBend            = "bend"
	PresetActivityStreams = "activitystreams"
	PresetTwitterV1       = "twitter_v1"
	PresetTwitterV2       = "twitter_v2"
	PresetJetstream       = "jetstream"
	PresetWikimedia       = "wikimedia_recentchange"
	PresetMastodon        = "mastodon"
	PresetReddit          = "reddit"
	// PresetCustom maps nothing by itself: every field comes from
	// FormatConfig.Fields, whose id is then required.
	PresetCustom = "custom"
)

// Presets lists the preset names, in documentation order.
var Presets = []string{PresetBend, PresetActivityStreams, PresetTwitterV1, PresetTwitterV2,
	PresetJetstream, PresetWikimedia, PresetMastodon, PresetReddit, PresetCustom}

// Kinds of non-activity events shared by several presets. A preset may
// report other kinds (identity, account, limit, ...), named in its docs.
const (
	KindDelete   = "delete"
	KindWithheld = "withheld"
)

// What a source does with non-activity events, the values of
// FormatConfig.NonActivity.
const (
	// NonActivityPass writes them to the input topic with a bend-kind
	// header; the distributor passes them to the output unenriched.
	NonActivityPass = "pass"
	// NonActivityTopic writes them to FormatConfig.NonActivityTopic instead.
	NonActivityTopic = "topic"
	// NonActivityDrop counts and drops them.
	NonActivityDrop = "drop"
)

// Mapping names, by JSON path, where a format keeps the fields bend reads.
// Every key is a list of alternatives tried in order, the first that yields
// a non-empty value winning (links: every alternative, merged). A path is a
// gjson path (github.com/tidwall/gjson: "user.id_str", "entities.urls.#.expanded_url")
// where "[]" may also stand for every element of an array
// ("entities.urls[].expanded_url"). An alternative holding "{" is a
// template whose {path} parts are replaced by their values
// ("at://{did}/{commit.collection}/{commit.rkey}"); an id or key template
// yields nothing if any part is missing, a text template leaves missing
// parts empty. Numbers are taken digit for digit as written. An empty list
// keeps the preset's paths.
type Mapping struct {
	// ID is the event's unique id; required by every activity.
	ID []string `mapstructure:"id"`
	// Key is the Kafka key; empty means ingest.key_field (by default the id).
	Key []string `mapstructure:"key"`
	// Text is the text the lang and stats enrichers read.
	Text []string `mapstructure:"text"`
	// Links are the URLs the urls enricher reads: strings, or arrays of
	// strings, at any of the paths.
	Links []string `mapstructure:"links"`
	// Author is the author's id.
	Author []string `mapstructure:"author"`
	// CreatedAt is when the event was created, read with CreatedAtLayout.
	CreatedAt []string `mapstructure:"created_at"`
	// CreatedAtLayout is a Go time layout, or "unix", "unix_ms", "unix_us"
	// for a number of seconds, milliseconds or microseconds since the
	// epoch. Empty keeps the preset's (RFC 3339 for custom).
	CreatedAtLayout string `mapstructure:"created_at_layout"`
	// Lang is the language code the publisher tagged the event with.
	Lang []string `mapstructure:"lang"`
	// HTML says the text is HTML: tags are stripped and entities decoded
	// before the enrichers read it, and the href of every link in it that is
	// not a mention or hashtag is added to the links. Default false (true in
	// the mastodon preset).
	HTML bool `mapstructure:"html"`
}

func (m Mapping) empty() bool {
	return len(m.ID) == 0 && len(m.Key) == 0 && len(m.Text) == 0 && len(m.Links) == 0 && len(m.Author) == 0 &&
		len(m.CreatedAt) == 0 && m.CreatedAtLayout == "" && len(m.Lang) == 0 && !m.HTML
}

// FormatConfig is how one source's events are read: the "format",
// "fields", "non_activity" and "non_activity_topic" keys of a source's
// section of config.yaml (ingest.files, ingest.http, ...).
type FormatConfig struct {
	// Format is a preset (see Presets). Default "bend" (also meant by
	// the zero value).
	Format string `mapstructure:"format"`
	// Fields overrides the preset's paths, key by key (see Mapping).
	// Default: nothing overridden.
	Fields Mapping `mapstructure:"fields"`
	// NonActivity is what happens to the preset's non-activity events
	// (deletes, compliance notices, identity events): "pass", "topic" or
	// "drop" (see NonActivityPass, ...). Default "pass" (also meant by the
	// zero value).
	NonActivity string `mapstructure:"non_activity"`
	// NonActivityTopic is the topic of non-activity events when
	// NonActivity is "topic". Default empty.
	NonActivityTopic string `mapstructure:"non_activity_topic"`
}

// DefaultFormatConfig returns the documented defaults: the bend format,
// non-activity events passed on.
func DefaultFormatConfig() FormatConfig {
	return FormatConfig{Format: PresetBend, NonActivity: NonActivityPass, Fields: Mapping{
		ID: []string{}, Key: []string{}, Text: []string{}, Links: []string{}, Author: []string{}, CreatedAt: []string{}, Lang: []string{},
	}}
}

// Validate reports every invalid key, named under prefix (a source's
// config.yaml section, such as "ingest.files"), joined with errors.Join. It
// compiles every path, so a bad path fails at start-up.
func (c FormatConfig) Validate(prefix string) error {
	var errs []error
	if _, err := NewFormat(prefix, c); err != nil {
		errs = append(errs, err)
	}
	switch c.NonActivity {
	case "", NonActivityPass, NonActivityDrop:
	case NonActivityTopic:
		if c.NonActivityTopic == "" {
			errs = append(errs, fmt.Errorf("%s.non_activity_topic: required when non_activity is topic", prefix))
		}
	default:
		errs = append(errs, fmt.Errorf("%s.non_activity: want pass, topic or drop, got %q", prefix, c.NonActivity))
	}
	return errors.Join(errs...)
}

// Name is the value of the bend-format header of the events of the source
// whose config section is prefix: the preset, or prefix itself when the
// source overrides fields.
func (c FormatConfig) Name(prefix string) string {
	if c.Fields.empty() {
		if c.Format == "" {
			return PresetBend
		}
		return c.Format
	}
	return prefix
}

// Errors returned by Format.Map, besides ErrNotObject and ErrMissingID.
var (
	// ErrMalformed means the event is not valid JSON. The error wraps
	// encoding/json's *SyntaxError when it has one.
	ErrMalformed = errors.New("malformed JSON")
)

// FieldTypeError reports a mapped field of the wrong JSON type.
type FieldTypeError struct {
	Field string // the mapping key: id, key, text, links, author
	Path  string // the path that held it
	Got   string // the JSON type found: "an object", "a boolean", ...
	Want  string // what the key takes
}

func (e *FieldTypeError) Error() string {
	return fmt.Sprintf("field %q (%s) is %s, want %s", e.Path, e.Field, e.Got, e.Want)
}

// expr is one compiled alternative of a Mapping key: a path, or a
// template of literals and paths.
type expr struct {
	src   string
	path  string   // a plain path
	lits  []string // template: lits[i] precedes paths[i]; len(lits) == len(paths)+1
	paths []string
}

func compileExpr(s string) (expr, error) {
	if s == "" {
		return expr{}, errors.New("empty path")
	}
	if !strings.Contains(s, "{") {
		return expr{src: s, path: gjsonPath(s)}, nil
	}
	e := expr{src: s}
	rest := s
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			if strings.Contains(rest, "}") {
				return expr{}, fmt.Errorf("template %q: unmatched }", s)
			}
			e.lits = append(e.lits, rest)
			return e, nil
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return expr{}, fmt.Errorf("template %q: unclosed {", s)
		}
		p := rest[i+1 : i+j]
		if p == "" {
			return expr{}, fmt.Errorf("template %q: empty {}", s)
		}
		e.lits = append(e.lits, rest[:i])
		e.paths = append(e.paths, gjsonPath(p))
		rest = rest[i+j+1:]
	}
}

// gjsonPath turns the "[]" shorthand into gjson's "#": "a[].b" is "a.#.b",
// and a trailing "[]" means the array itself.
func gjsonPath(s string) string {
	s = strings.TrimSuffix(s, "[]")
	return strings.ReplaceAll(s, "[]", ".#")
}

// scalar returns the value of r as a string: a string's text, a number's
// digits as written. ok is false when r is missing, null or empty.
func scalar(r gjson.Result) (string, bool, string) {
	switch r.Type {
	case gjson.String:
		return r.Str, r.Str != "", ""
	case gjson.Number:
		return r.Raw, true, ""
	case gjson.Null:
		return "", false, ""
	case gjson.True, gjson.False:
		return "", false, "a boolean"
	case gjson.JSON:
		if strings.HasPrefix(r.Raw, "[") {
			return "", false, "an array"
		}
		return "", false, "an object"
	}
	return "", false, ""
}

// value evaluates e on root. strict templates yield nothing when a part is
// missing. bad names the JSON type of a value that is neither a string nor
// a number.
func (e expr) value(root *index, strict bool) (v string, ok bool, bad string) {
	if e.lits == nil {
		return scalar(root.get(e.path))
	}
	var b strings.Builder
	for i, p := range e.paths {
		b.WriteString(e.lits[i])
		s, ok, bad := scalar(root.get(p))
		if bad != "" {
			return "", false, bad
		}
		if !ok && strict {
			return "", false, ""
		}
		b.WriteString(s)
	}
	b.WriteString(e.lits[len(e.lits)-1])
	out := strings.TrimSpace(b.String())
	return out, out != "", ""
}

// first returns the first non-empty value of exprs on root.
func first(root *index, exprs []expr, field string, strict bool) (string, error) {
	for _, e := range exprs {
		v, ok, bad := e.value(root, strict)
		if bad != "" {
			return "", &FieldTypeError{Field: field, Path: e.src, Got: bad, Want: "a string or a number"}
		}
		if ok {
			return v, nil
		}
	}
	return "", nil
}

// Format reads the fields bend needs from the events of one format. It is
// immutable and safe for concurrent use.
type Format struct {
	name                                 string
	fast                                 bool // the bend shape as Parse reads it
	id, key, text, author, created, lang []expr
	links                                []string
	layout                               string
	html                                 bool
	// unwrap, when set, returns the object holding the event's fields (a
	// Reddit thing's data, a Mastodon WebSocket payload).
	unwrap func(root gjson.Result) gjson.Result
	// classify, when set, recognises a non-activity event: it returns its
	// kind and id (which may be empty), or "" for an activity.
	classify func(root gjson.Result) (kind, id string)
	finish   func(root gjson.Result, f *Fields)
	split    func(root gjson.Result) []gjson.Result
}

// NewFormat compiles c (its Format and Fields) into a Format. prefix names
// c's config.yaml section in errors.
func NewFormat(prefix string, c FormatConfig) (*Format, error) {
	if c.Format == "" {
		c.Format = PresetBend
	}
	p, ok := presets[c.Format]
	if !ok {
		return nil, fmt.Errorf("%s.format: unknown format %q (want one of %s)", prefix, c.Format, strings.Join(Presets, ", "))
	}
	m := p.fields
	o := c.Fields
	f := &Format{name: c.Name(prefix), unwrap: p.unwrap, classify: p.classify, finish: p.finish, split: p.split, layout: m.CreatedAtLayout, html: m.HTML || o.HTML}
	f.fast = c.Format == PresetBend && o.empty()
	pick := func(over, base []string) []string {
		if len(over) > 0 {
			return over
		}
		return base
	}
	var errs []error
	compile := func(key string, srcs []string) []expr {
		var out []expr
		for i, s := range srcs {
			e, err := compileExpr(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.fields.%s[%d]: %w", prefix, key, i, err))
				continue
			}
			out = append(out, e)
		}
		return out
	}
	f.id = compile("id", pick(o.ID, m.ID))
	f.key = compile("key", pick(o.Key, m.Key))
	f.text = compile("text", pick(o.Text, m.Text))
	f.author = compile("author", pick(o.Author, m.Author))
	f.created = compile("created_at", pick(o.CreatedAt, m.CreatedAt))
	f.lang = compile("lang", pick(o.Lang, m.Lang))
	for i, s := range pick(o.Links, m.Links) {
		if s == "" || strings.Contains(s, "{") {
			errs = append(errs, fmt.Errorf("%s.fields.links[%d]: want a path, got %q", prefix, i, s))
			continue
		}
		f.links = append(f.links, gjsonPath(s))
	}
	if o.CreatedAtLayout != "" {
		f.layout = o.CreatedAtLayout
	}
	if f.layout == "" {
		f.layout = time.RFC3339Nano
	}
	if len(f.id) == 0 && !f.fast {
		errs = append(errs, fmt.Errorf("%s.fields.id: the %s format needs the path of the id", prefix, c.Format))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return f, nil
}

// Preset returns the compiled preset called name, or an error naming the
// presets.
func Preset(name string) (*Format, error) {
	return NewFormat("format", FormatConfig{Format: name})
}

// Split returns the events held by raw when raw is a container of several
// in this format (a Reddit Listing, a Twitter v2 response with a "data"
// array; Map gives it the kind "listing" or "batch"), each a slice of raw,
// untouched; nil otherwise. raw must be valid JSON.
func (f *Format) Split(raw []byte) [][]byte {
	if f.split == nil {
		return nil
	}
	rs := f.split(gjson.ParseBytes(raw))
	if len(rs) == 0 {
		return nil
	}
	out := make([][]byte, 0, len(rs))
	for _, r := range rs {
		if r.Index > 0 && r.Index+len(r.Raw) <= len(raw) {
			out = append(out, raw[r.Index:r.Index+len(r.Raw)])
		} else {
			out = append(out, []byte(r.Raw))
		}
	}
	return out
}

// Fast reports whether f is the bend format read by Parse: its events are
// already bend events, so ingest writes no bend-fields header for them.
func (f *Format) Fast() bool { return f.fast }

// Name is the value of the bend-format header of this format's records.
func (f *Format) Name() string { return f.name }

// Map reads the fields of one event. An activity has Kind ""; a
// non-activity event the preset recognises (a delete notice, ...) has its
// Kind set, and its ID when it has one, and nothing else. Errors wrap
// ErrNotObject, ErrMissingID, ErrMalformed (with encoding/json's
// *SyntaxError), or are a *FieldTypeError; for the bend preset, they are
// Parse's.
func (f *Format) Map(raw []byte) (Fields, error) {
	if f.fast {
		return Parse(raw)
	}
	var out Fields
	b := bytes.TrimSpace(raw)
	if len(b) == 0 {
		return out, ErrNotObject
	}
	if !gjson.ValidBytes(b) {
		// The rare path: encoding/json says where.
		var v any
		if err := stdjson.Unmarshal(b, &v); err != nil {
			return out, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		return out, ErrMalformed
	}
	root := gjson.ParseBytes(b)
	if f.classify != nil {
		if kind, id := f.classify(root); kind != "" {
			out.Kind, out.ID = kind, id
			return out, nil
		}
	}
	if !root.IsObject() {
		return out, ErrNotObject
	}
	if f.unwrap != nil {
		root = f.unwrap(root)
	}
	var ix index
	ix.build(root)
	var err error
	if out.ID, err = first(&ix, f.id, "id", true); err != nil {
		return Fields{}, err
	}
	if out.ID == "" {
		return Fields{}, fmt.Errorf("%w (%s)", ErrMissingID, srcs(f.id))
	}
	if out.Key, err = first(&ix, f.key, "key", true); err != nil {
		return Fields{}, err
	}
	if out.Author.ID, err = first(&ix, f.author, "author", true); err != nil {
		return Fields{}, err
	}
	for _, e := range f.text {
		v, ok, bad := e.value(&ix, false)
		if bad != "" {
			return Fields{}, &FieldTypeError{Field: "text", Path: e.src, Got: bad, Want: "a string"}
		}
		if ok {
			out.Text = v
			break
		}
	}
	for _, p := range f.links {
		if err := addLinks(&out.Links, ix.get(p), p); err != nil {
			return Fields{}, err
		}
	}
	if f.html && out.Text != "" {
		var hrefs []string
		out.Text, hrefs = stripHTML(out.Text)
		for _, h := range hrefs {
			if len(out.Links) < MaxLinks && !slices.Contains(out.Links, h) {
				out.Links = append(out.Links, h)
			}
		}
	}
	if f.finish != nil {
		f.finish(root, &out)
	}
	out.Lang, _ = first(&ix, f.lang, "lang", false)
	if s, _ := first(&ix, f.created, "created_at", false); s != "" {
		out.CreatedAt = parseTime(s, f.layout)
	}
	return out, nil
}

func srcs(es []expr) string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.src
	}
	return strings.Join(s, " or ")
}

// MaxLinks is the most links a mapping reads from one event; the rest are
// not read. It bounds the work a hostile event can cause (links are
// de-duplicated by a linear search) far above what the urls enricher
// unwinds (enrich's max_links).
const MaxLinks = 256

// addLinks appends every non-empty string in r (a string, or nested arrays
// of strings), skipping duplicates, up to MaxLinks.
func addLinks(links *[]string, r gjson.Result, path string) error {
	switch {
	case r.Type == gjson.String:
		if r.Str != "" && len(*links) < MaxLinks && !slices.Contains(*links, r.Str) {
			*links = append(*links, r.Str)
		}
	case r.IsArray():
		var err error
		r.ForEach(func(_, v gjson.Result) bool {
			err = addLinks(links, v, path)
			return err == nil
		})
		return err
	case r.Type == gjson.Null || !r.Exists():
	default:
		_, _, bad := scalar(r)
		if bad == "" {
			bad = "a number"
		}
		return &FieldTypeError{Field: "links", Path: path, Got: bad, Want: "a string or an array of strings"}
	}
	return nil
}

// parseTime reads s with layout, or as a Unix time; the zero time if it
// cannot.
func parseTime(s, layout string) time.Time {
	unit := map[string]float64{"unix": 1, "unix_ms": 1e3, "unix_us": 1e6}
	if u, ok := unit[layout]; ok {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			switch layout {
			case "unix":
				return time.Unix(n, 0).UTC()
			case "unix_ms":
				return time.UnixMilli(n).UTC()
			default:
				return time.UnixMicro(n).UTC()
			}
		}
		if x, err := strconv.ParseFloat(s, 64); err == nil {
			return time.Unix(0, int64(x/u*1e9)).UTC()
		}
		return time.Time{}
	}
	t, err := time.Parse(layout, s)
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}

// Formats resolves the bend-format header of a record to the Format that
// reads it: the presets by name, the sources' own mappings by their
// config.yaml section, and a default for records without the header. It is
// immutable and safe for concurrent use.
type Formats struct {
	def    *Format
	byName map[string]*Format
}

// NewFormats compiles every preset and every mapping of sources (keyed by
// the name their records carry, FormatConfig.Name), with the preset def as
// the default. key names def's config.yaml key in errors.
func NewFormats(key, def string, sources map[string]FormatConfig) (*Formats, error) {
	fs := &Formats{byName: map[string]*Format{}}
	for _, p := range Presets {
		if p == PresetCustom {
			continue
		}
		f, err := Preset(p)
		if err != nil {
			return nil, err
		}
		fs.byName[p] = f
	}
	var errs []error
	for name, c := range sources {
		f, err := NewFormat(name, c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fs.byName[name] = f
	}
	var ok bool
	if fs.def, ok = fs.byName[def]; !ok || def == PresetCustom {
		errs = append(errs, fmt.Errorf("%s: unknown format %q (want a preset other than custom: %s)", key, def, strings.Join(Presets[:len(Presets)-1], ", ")))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return fs, nil
}

// Lookup returns the Format called name, or the default if name is empty.
func (fs *Formats) Lookup(name string) (*Format, error) {
	if name == "" {
		return fs.def, nil
	}
	if f, ok := fs.byName[name]; ok {
		return f, nil
	}
	return nil, fmt.Errorf("unknown format %q in the %s header (not a preset, nor a source configured here)", name, HeaderFormat)
}

// index holds the top-level members of an event, read in one pass, so
// that a path whose first member is missing (most alternatives of a
// preset) costs a few comparisons instead of a scan of the whole event.
type index struct {
	root  gjson.Result
	n     int
	keys  [64]string
	vals  [64]gjson.Result
	whole bool // every member is indexed
}

func (ix *index) build(root gjson.Result) {
	ix.root, ix.whole = root, root.IsObject()
	if !ix.whole {
		return
	}
	root.ForEach(func(k, v gjson.Result) bool {
		if ix.n == len(ix.keys) {
			ix.whole = false
			return false
		}
		ix.keys[ix.n], ix.vals[ix.n] = k.Str, v
		ix.n++
		return true
	})
}

// get is root.Get(p).
func (ix *index) get(p string) gjson.Result {
	head, rest, dotted := strings.Cut(p, ".")
	if !ix.whole || strings.ContainsAny(head, `#*?\|@!`) {
		return ix.root.Get(p)
	}
	for i := range ix.n {
		if ix.keys[i] == head {
			if !dotted {
				return ix.vals[i]
			}
			return ix.vals[i].Get(rest)
		}
	}
	return gjson.Result{}
}
