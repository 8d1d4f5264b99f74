package activity

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// want is what a preset must read from one fixture line.
type want struct {
	id, kind, author, lang string
	text                   string // a prefix of the text
	links                  []string
	at                     string // RFC 3339, "" = zero
}

// fixtureWants are the fields of every line of testdata/<preset>.ndjson,
// in order, as the publishers' documentation defines them.
var fixtureWants = map[string][]want{
	PresetBend: {
		{id: "act-1", author: "author-1", text: "The release notes", links: []string{"https://example.com/notes"}},
		{id: "act-2", author: "author-2", text: "Hola a todos"},
	},
	PresetTwitterV1: {
		{id: "1050118621198921728", author: "6253282", lang: "en", text: "To make room for more expression",
			links: []string{"https://twittercommunity.com/t/new-update-to-the-twitter-text-library-emoji-character-count/114607"}, at: "2018-10-10T20:19:24Z"},
		// A retweet: the original's text and links.
		{id: "850007368138018817", author: "6253282", lang: "en", text: "1/ Today we’re sharing",
			links: []string{"https://cards.twitter.com/cards/18ce53wgo4h/3xo1c"}, at: "2017-04-06T15:28:43Z"},
		// Compat mode: the full text and links in extended_tweet; author id over 2^53.
		{id: "1697973285712281601", author: "9007199254740993", lang: "es", text: "Hoy publicamos la guía completa para migrar tus aplicaciones a la nueva versión de la plataforma, con ejemplos paso a paso",
			links: []string{"https://developer.example.com/es/guia-migracion"}, at: "2023-09-02T13:00:00Z"},
		// Extended mode, numeric ids only: digits kept exactly.
		{id: "1697974543567310849", author: "12", text: "Full text from the REST API", links: []string{"https://example.net/extended"}, at: "2023-09-02T13:05:00Z"},
		{id: "1697973285712281601", kind: KindDelete},
		{id: "1234567890123456789", kind: KindWithheld},
		{id: "123456", kind: "user_withheld"},
		{kind: "limit"},
	},
	PresetTwitterV2: {
		{id: "1212092628029698048", author: "2244994945", lang: "en", text: "We believe the best future version",
			links: []string{"https://twitter.com/LovesNandos/status/1211797914437259264/photo/1"}, at: "2019-12-31T19:26:16Z"},
		{id: "1445880548472328192", author: "9007199254740993", lang: "de", text: "Wir haben heute die neue Version veröffentlicht, mit vielen Verbesserungen für alle Entwickler und Entwicklerinnen",
			links: []string{"https://blog.example.de/version-3"}, at: "2021-10-06T22:22:22Z"},
		{id: "1460323737035677698", author: "2244994945", text: "Link with an unwound URL",
			links: []string{"https://www.example.com/final/page", "https://bit.ly/3abc"}},
		{id: "601430178305220608", kind: KindDelete},
		{id: "1234567890", kind: "user_suspend"},
		{kind: "error"},
		// A response of several posts: split by ingest (see TestSplit).
		{kind: "batch"},
	},
	PresetActivityStreams: {
		{id: "tag:search.twitter.com,2005:418130988250570752", author: "id:twitter.com:16958875", lang: "en", text: "Happy New Year",
			links: []string{"http://blog.gnip.com/happy-new-year"}, at: "2013-12-31T21:26:10Z"},
		// A share: the original activity's body and links.
		{id: "tag:search.twitter.com,2005:9007199254740993123", author: "id:twitter.com:99", lang: "es", text: "Feliz año nuevo",
			links: []string{"http://blog.gnip.com/es/feliz"}, at: "2014-01-01T10:00:00Z"},
		{id: "tag:search.twitter.com,2005:700000000000000001", author: "id:twitter.com:7", lang: "en", text: "A long tweet whose full text",
			links: []string{"https://example.com/long"}, at: "2016-01-01T10:00:00Z"},
		{id: "tag:search.twitter.com,2005:601140908713738240", kind: KindDelete},
		{kind: "system"},
	},
	PresetJetstream: {
		{id: "at://did:plc:eygmaihciaxprqvxpfvl6flk/app.bsky.feed.post/3l3qo2vuowo2b", author: "did:plc:eygmaihciaxprqvxpfvl6flk", lang: "en",
			text: "Read the full write-up", links: []string{"https://example.com/blog/migration"}, at: "2024-09-09T19:46:02.102Z"},
		{id: "at://did:plc:ufbl4k27gp6kzas5glhz7fim/app.bsky.feed.post/3l3qo2vuowo2c", author: "did:plc:ufbl4k27gp6kzas5glhz7fim", lang: "fr",
			text: "Nous avons publié", links: []string{"https://example.org/releases/2.0"}, at: "2024-09-09T19:46:03Z"},
		{id: "at://did:plc:ufbl4k27gp6kzas5glhz7fim/app.bsky.actor.profile/self", author: "did:plc:ufbl4k27gp6kzas5glhz7fim"},
		{id: "at://did:plc:eygmaihciaxprqvxpfvl6flk/app.bsky.feed.post/3l3qo2vuowo2b", kind: KindDelete},
		{id: "did:plc:ufbl4k27gp6kzas5glhz7fim#identity@1725516665234703", kind: "identity"},
		{id: "did:plc:ufbl4k27gp6kzas5glhz7fim#account@1725516665333808", kind: "account"},
	},
	PresetWikimedia: {
		{id: "3f1e3d0a-5b4c-4d2e-9f8a-1b2c3d4e5f60", author: "ExampleEditor", text: "Apollo 11\n\nFixed the date of the landing",
			links: []string{"https://en.wikipedia.org/wiki/Apollo_11"}, at: "2024-05-01T12:00:00Z"},
		{id: "6c1b7a3e-2f4d-4a8b-b0c1-d2e3f4a5b6c7", author: "Contributeur", text: "Tour Eiffel\n\nNouvelle page",
			links: []string{"https://fr.wikipedia.org/wiki/Tour_Eiffel"}, at: "2024-05-01T12:00:01Z"},
		{id: "0a0b0c0d-1111-4222-8333-444455556666", author: "Uploader", text: "File:X.jpg",
			links: []string{"https://commons.wikimedia.org/wiki/File:X.jpg"}, at: "2024-05-01T12:00:02Z"},
		{id: "c0ffee00-0000-4000-8000-000000000000", kind: "canary"},
	},
	PresetMastodon: {
		// HTML: tags stripped, entities decoded; the card's url and the link's href (the same).
		{id: "103270115826048975", author: "1", lang: "en", text: `"I lost my inheritance with one wrong digit on my sort code" — the bank would not refund it https://www.theguardian.com/money/2019/dec/07/`,
			links: []string{"https://www.theguardian.com/money/2019/dec/07/i-lost-my-193000-inheritance-with-one-wrong-digit-on-my-sort-code"}, at: "2019-12-08T03:48:33.901Z"},
		// Mentions and hashtags are not links.
		{id: "109876543210987654", author: "42", lang: "de", text: "Guten Morgen @bob! Heute haben wir endlich die neue Bibliothek für unsere Stadt eröffnet #bibliothek Mehr dazu: stadt.example.de/bibliothek",
			links: []string{"https://stadt.example.de/bibliothek"}, at: "2023-01-01T10:00:00Z"},
		// A reblog: the original's text and language.
		{id: "110000000000000001", author: "43", lang: "fr", text: "Le marché du samedi matin", at: "2023-01-02T10:00:00Z"},
		// The WebSocket envelope.
		{id: "110000000000000002", author: "44", lang: "en", text: "Through the WebSocket envelope", at: "2023-01-02T11:00:00Z"},
		// The payload of a delete over SSE: the id alone.
		{id: "109876543210987654", kind: KindDelete},
		{id: "110000000000000001", kind: KindDelete},
	},
	PresetReddit: {
		// A self post: title and selftext; its url is the post itself, not a link.
		{id: "t3_1abcde", author: "t2_abc123", text: "Lessons from building a stream processor in Go\n\nI have been writing", at: "2024-05-01T12:00:00Z"},
		{id: "t3_1fghij", author: "t2_def456", text: "La nouvelle ligne de tramway", links: []string{"https://www.example.fr/tramway-printemps"}, at: "2024-05-01T12:01:40Z"},
		{id: "t1_kq1w2e3", author: "t2_xyz789", text: "Great write-up", at: "2024-05-01T12:03:20Z"},
		{id: "t1_bare1", author: "bare", text: "A bare comment object", at: "2024-05-01T12:05:00Z"},
		{id: "t1_kq1more", kind: "more"},
		{kind: "listing"},
	},
}

// fixtureLines returns the lines of testdata/<name>.ndjson.
func fixtureLines(t testing.TB, name string) [][]byte {
	t.Helper()
	f, err := os.Open("testdata/" + name + ".ndjson")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if len(sc.Bytes()) > 0 {
			lines = append(lines, slices.Clone(sc.Bytes()))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

func TestPresetFixtures(t *testing.T) {
	for name, wants := range fixtureWants {
		t.Run(name, func(t *testing.T) {
			f, err := Preset(name)
			if err != nil {
				t.Fatal(err)
			}
			lines := fixtureLines(t, name)
			if len(lines) != len(wants) {
				t.Fatalf("%d fixture lines, %d expectations", len(lines), len(wants))
			}
			for i, w := range wants {
				got, err := f.Map(lines[i])
				if err != nil {
					t.Errorf("line %d: %v", i+1, err)
					continue
				}
				if got.ID != w.id || got.Kind != w.kind || got.Author.ID != w.author || got.Lang != w.lang {
					t.Errorf("line %d: id %q kind %q author %q lang %q; want %q %q %q %q", i+1, got.ID, got.Kind, got.Author.ID, got.Lang, w.id, w.kind, w.author, w.lang)
				}
				if !strings.HasPrefix(got.Text, w.text) || (w.text == "" && got.Text != "") {
					t.Errorf("line %d: text %q, want it to start with %q", i+1, got.Text, w.text)
				}
				if len(got.Links) != len(w.links) || (len(w.links) > 0 && !slices.Equal(got.Links, w.links)) {
					t.Errorf("line %d: links %q, want %q", i+1, got.Links, w.links)
				}
				var at time.Time
				if w.at != "" {
					at, _ = time.Parse(time.RFC3339Nano, w.at)
				}
				if !got.CreatedAt.Equal(at) {
					t.Errorf("line %d: created_at %v, want %v", i+1, got.CreatedAt, at)
				}
			}
		})
	}
}

func TestMapExplicitFields(t *testing.T) {
	ev := `{"a":{"b":123456789012345678901},"n":"x","u":[{"v":"https://e.x/1"},{"v":"https://e.x/2"},{"v":null}],"t":"hi","k":"kk","ts":1700000000123,"h":"<b>bold</b> &amp; more"}`
	for _, tc := range []struct {
		name    string
		fields  Mapping
		wantID  string
		wantKey string
		text    string
		links   []string
		at      time.Time
		wantErr string
	}{
		{name: "number id digit-exact", fields: Mapping{ID: []string{"a.b"}}, wantID: "123456789012345678901"},
		{name: "first alternative present", fields: Mapping{ID: []string{"missing", "n"}}, wantID: "x"},
		{name: "template id", fields: Mapping{ID: []string{"{n}/{a.b}"}}, wantID: "x/123456789012345678901"},
		{name: "template id with a part missing falls through", fields: Mapping{ID: []string{"{n}/{zz}", "n"}}, wantID: "x"},
		{name: "array shorthand links", fields: Mapping{ID: []string{"n"}, Links: []string{"u[].v"}}, wantID: "x", links: []string{"https://e.x/1", "https://e.x/2"}},
		{name: "gjson links", fields: Mapping{ID: []string{"n"}, Links: []string{"u.#.v"}}, wantID: "x", links: []string{"https://e.x/1", "https://e.x/2"}},
		{name: "key", fields: Mapping{ID: []string{"n"}, Key: []string{"k"}}, wantID: "x", wantKey: "kk"},
		{name: "text template", fields: Mapping{ID: []string{"n"}, Text: []string{"{t} {nothing}!"}}, wantID: "x", text: "hi !"},
		{name: "html text", fields: Mapping{ID: []string{"n"}, Text: []string{"h"}, HTML: true}, wantID: "x", text: "bold & more"},
		{name: "unix_ms", fields: Mapping{ID: []string{"n"}, CreatedAt: []string{"ts"}, CreatedAtLayout: "unix_ms"}, wantID: "x", at: time.UnixMilli(1700000000123).UTC()},
		{name: "missing id", fields: Mapping{ID: []string{"nope"}}, wantErr: `event has no "id" (nope)`},
		{name: "object id", fields: Mapping{ID: []string{"a"}}, wantErr: `field "a" (id) is an object`},
		{name: "number link", fields: Mapping{ID: []string{"n"}, Links: []string{"a.b"}}, wantErr: `field "a.b" (links) is a number`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := NewFormat("ingest.files", FormatConfig{Format: PresetCustom, Fields: tc.fields})
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.Map([]byte(ev))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Map: %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != tc.wantID || got.Key != tc.wantKey || got.Text != tc.text || !slices.Equal(got.Links, tc.links) || !got.CreatedAt.Equal(tc.at) {
				t.Fatalf("got id %q key %q text %q links %q at %v; want %q %q %q %q %v", got.ID, got.Key, got.Text, got.Links, got.CreatedAt,
					tc.wantID, tc.wantKey, tc.text, tc.links, tc.at)
			}
		})
	}
}

func TestMapErrors(t *testing.T) {
	for _, name := range Presets[1 : len(Presets)-1] {
		f, err := Preset(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			in   string
			want error
		}{
			{`{"id":"a",}`, ErrMalformed},
			{`{"id":"a"} x`, ErrMalformed},
			{``, ErrNotObject},
			{`[1,2]`, ErrNotObject},
			{`{"nothing":"here"}`, ErrMissingID},
		} {
			if _, err := f.Map([]byte(tc.in)); !errors.Is(err, tc.want) {
				t.Errorf("%s: Map(%q) = %v, want %v", name, tc.in, err, tc.want)
			}
		}
	}
	f, _ := Preset(PresetTwitterV1)
	var syn *json.SyntaxError
	if _, err := f.Map([]byte(`{"id_str":"1",}`)); !errors.As(err, &syn) || syn.Offset != 15 {
		t.Errorf("malformed JSON: %v, want a *json.SyntaxError at byte 15", err)
	}
}

func TestFormatConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  FormatConfig
		want string // substring; "" = valid
	}{
		{"defaults", DefaultFormatConfig(), ""},
		{"zero value", FormatConfig{}, ""},
		{"every preset", FormatConfig{Format: PresetMastodon, NonActivity: NonActivityDrop}, ""},
		{"unknown format", FormatConfig{Format: "twitter"}, `ingest.files.format: unknown format "twitter"`},
		{"custom needs an id", FormatConfig{Format: PresetCustom}, "ingest.files.fields.id: the custom format needs"},
		{"bad template", FormatConfig{Fields: Mapping{ID: []string{"{a"}}}, "ingest.files.fields.id[0]: template \"{a\": unclosed {"},
		{"empty path", FormatConfig{Fields: Mapping{Text: []string{""}}}, "ingest.files.fields.text[0]: empty path"},
		{"template link", FormatConfig{Fields: Mapping{Links: []string{"{a}"}}}, "ingest.files.fields.links[0]: want a path"},
		{"bad policy", FormatConfig{NonActivity: "keep"}, "ingest.files.non_activity: want pass, topic or drop"},
		{"topic needs a name", FormatConfig{NonActivity: NonActivityTopic}, "ingest.files.non_activity_topic: required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate("ingest.files")
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate: %v, want %q", err, tc.want)
			}
		})
	}
}

func TestFormatsLookup(t *testing.T) {
	custom := FormatConfig{Format: PresetTwitterV1, Fields: Mapping{Key: []string{"user.id_str"}}}
	fs, err := NewFormats("distributor.format", PresetJetstream, map[string]FormatConfig{"ingest.files": custom})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"": PresetJetstream, PresetReddit: PresetReddit, "ingest.files": "ingest.files"} {
		f, err := fs.Lookup(name)
		if err != nil || f.Name() != want {
			t.Errorf("Lookup(%q) = %v, %v; want %s", name, f, err, want)
		}
	}
	if _, err := fs.Lookup("ingest.http"); err == nil {
		t.Error("Lookup of an unconfigured source: want an error")
	}
	if _, err := NewFormats("distributor.format", "nope", nil); err == nil || !strings.Contains(err.Error(), "distributor.format") {
		t.Errorf("unknown default: %v, want an error naming distributor.format", err)
	}
}

// FuzzMap feeds arbitrary bytes to every preset: Map must never panic,
// and an event it maps as an activity must be valid JSON with an id (the
// distributor splices enrichments into it).
func FuzzMap(f *testing.F) {
	for _, name := range Presets[:len(Presets)-1] {
		for _, l := range fixtureLines(f, name) {
			f.Add(l)
		}
	}
	f.Add([]byte(`{"event":"update","payload":"{\"id\":"}`))
	f.Add([]byte(`{"kind":"commit","commit":{"operation":"delete"}}`))
	formats := make([]*Format, 0, len(Presets))
	for _, name := range Presets[:len(Presets)-1] {
		p, err := Preset(name)
		if err != nil {
			f.Fatal(err)
		}
		formats = append(formats, p)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, p := range formats {
			got, err := p.Map(raw)
			if err != nil || got.Kind != "" {
				continue
			}
			if !json.Valid(raw) || got.ID == "" {
				t.Fatalf("%s mapped %q (id %q), not a valid event", p.Name(), raw, got.ID)
			}
		}
	})
}

// BenchmarkMap compares the hot-path read of a bend event by Parse
// (goccy/go-json decoding, the bend preset) with the same fields read by gjson
// paths (the bend paths as an explicit mapping), and the presets of real
// formats on their fixtures.
func BenchmarkMap(b *testing.B) {
	raw := []byte(`{"id":"act-123456","seq":123456,"verb":"post","author":{"id":"author-4242","handle":"user4242","followers":1234},"text":"Just shipped a new release of the stream pipeline, lag drained in seconds https://example.com/a/b","links":["https://example.com/a/b"],"created_at":"2026-11-30T06:24:05.123456789Z"}`)
	viaPaths, err := NewFormat("bench", FormatConfig{Format: PresetBend, Fields: Mapping{ID: []string{"id"}}})
	if err != nil {
		b.Fatal(err)
	}
	bend, _ := Preset(PresetBend)
	for _, bc := range []struct {
		name string
		f    *Format
		raw  []byte
	}{
		{"bend/decode", bend, raw},
		{"bend/gjson", viaPaths, raw},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.f.Map(bc.raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	for _, name := range []string{PresetTwitterV1, PresetJetstream, PresetMastodon} {
		f, _ := Preset(name)
		line := fixtureLines(b, name)[0]
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(line)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.Map(line); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		preset string
		line   int // 1-based line of testdata/<preset>.ndjson
		want   []string
	}{
		{PresetReddit, 6, []string{"t3_x"}},
		{PresetTwitterV2, 7, []string{"1500000000000000001", "1500000000000000002"}},
		{PresetReddit, 1, nil},
		{PresetTwitterV1, 1, nil},
	} {
		f, err := Preset(tc.preset)
		if err != nil {
			t.Fatal(err)
		}
		line := fixtureLines(t, tc.preset)[tc.line-1]
		parts := f.Split(line)
		if len(parts) != len(tc.want) {
			t.Fatalf("%s line %d: %d parts, want %d", tc.preset, tc.line, len(parts), len(tc.want))
		}
		for i, p := range parts {
			got, err := f.Map(p)
			if err != nil || got.ID != tc.want[i] || got.Kind != "" {
				t.Errorf("%s line %d part %d: %+v, %v; want activity %s", tc.preset, tc.line, i, got, err, tc.want[i])
			}
			if !bytes.Contains(line, p) {
				t.Errorf("part %q is not a slice of the line", p)
			}
		}
	}
}
