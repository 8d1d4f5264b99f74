package synth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/bendstream/bend/internal/activity"
)

// fixedTime is the clock of reproducible tests.
var fixedTime = time.Date(2026, 3, 1, 12, 30, 45, 123456789, time.UTC)

func fixedClock() time.Time { return fixedTime }

// seeded returns DefaultConfig with seed 1 and changes applied.
func seeded(change func(*Config)) Config {
	c := DefaultConfig()
	c.Seed = 1
	if change != nil {
		change(&c)
	}
	return c
}

// decode decodes one generated event strictly: only activity.Activity's
// fields are allowed.
func decode(t *testing.T, b []byte) activity.Activity {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var a activity.Activity
	if err := dec.Decode(&a); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	if dec.More() {
		t.Fatalf("trailing data after event %s", b)
	}
	return a
}

// textWords splits a post into its words of language, dropping the leading
// @mention, hashtags and punctuation.
func textWords(text string) []string {
	var words []string
	for _, f := range strings.Fields(text) {
		if f[0] == '#' || f[0] == '@' {
			continue
		}
		if f = strings.TrimRight(f, ",.!?"); f != "" {
			words = append(words, f)
		}
	}
	return words
}

// segmentsInto reports whether s is a concatenation of pieces.
func segmentsInto(s string, pieces []string) bool {
	ok := make([]bool, len(s)+1) // ok[i]: s[:i] segments
	ok[0] = true
	for i := range len(s) {
		if !ok[i] {
			continue
		}
		for _, p := range pieces {
			if strings.HasPrefix(s[i:], p) {
				ok[i+len(p)] = true
			}
		}
	}
	return ok[len(s)]
}

// languagesOf returns the codes of every language that the text of a post
// is entirely made of.
func languagesOf(text string) []string {
	words := textWords(text)
	var codes []string
	for code, l := range languages {
		if !l.spaced {
			pieces := slices.Concat(l.words, l.particles, l.endings, []string{"、"})
			if len(words) == 1 && segmentsInto(words[0], slices.DeleteFunc(pieces, func(p string) bool { return p == "" })) {
				codes = append(codes, code)
			}
			continue
		}
		all := len(words) > 0
		for i, w := range words {
			if !slices.Contains(l.words, w) && !(i == 0 && slices.Contains(l.words, strings.ToLower(w[:1])+w[1:])) {
				all = false
				break
			}
		}
		if all {
			codes = append(codes, code)
		}
	}
	return codes
}

func TestAppendDecodes(t *testing.T) {
	g := NewGenerator(seeded(nil), WithClock(fixedClock))
	var buf []byte
	verbs := map[string]int{}
	withLinks := 0
	for i := range 5000 {
		var id, key string
		buf, id, key = g.Append(buf[:0])
		if !json.Valid(buf) {
			t.Fatalf("event %d is not valid JSON: %s", i, buf)
		}
		a := decode(t, buf)
		wantSeq := uint64(i + 1)
		if a.Seq != wantSeq {
			t.Fatalf("event %d: seq %d, want %d", i, a.Seq, wantSeq)
		}
		if want := "act-" + strconv.FormatUint(wantSeq, 10); a.ID != want || id != want {
			t.Fatalf("event %d: id %q (returned %q), want %q", i, a.ID, id, want)
		}
		if a.Author.ID != key || !strings.HasPrefix(key, "u") || len(key) != len("u99999") {
			t.Fatalf("event %d: author id %q, key %q, want equal, like u00042", i, a.Author.ID, key)
		}
		if n, _ := strconv.Atoi(key[1:]); a.Author.Handle != string(appendHandle(nil, n)) || a.Author.Followers <= 0 {
			t.Fatalf("event %d: author %+v, want handle and followers of author %d", i, a.Author, n)
		}
		if !a.CreatedAt.Equal(fixedTime) {
			t.Fatalf("event %d: created_at %v, want %v", i, a.CreatedAt, fixedTime)
		}
		verbs[a.Verb]++
		if a.Verb == "reply" != strings.HasPrefix(a.Text, "@") {
			t.Fatalf("event %d: verb %q with text %q: replies, and only they, start with a mention", i, a.Verb, a.Text)
		}
		if len(a.Links) > 0 {
			withLinks++
		}
		if len(a.Links) > 2 {
			t.Fatalf("event %d: %d links, want at most 2", i, len(a.Links))
		}
		for _, l := range a.Links {
			if !strings.HasPrefix(l, "https://t.example/") && !strings.HasPrefix(l, "https://example.com/") && !strings.HasPrefix(l, "https://news.example/") {
				t.Fatalf("event %d: link %q not on an example domain", i, l)
			}
		}
		if !utf8.ValidString(a.Text) {
			t.Fatalf("event %d: text is not UTF-8: %q", i, a.Text)
		}
		if f, err := activity.Parse(buf); err != nil || f.ID != a.ID || f.Author.ID != key {
			t.Fatalf("event %d: activity.Parse = %+v, %v", i, f, err)
		}
	}
	for _, v := range []string{"post", "reply", "share"} {
		if verbs[v] == 0 {
			t.Errorf("no activity with verb %q in %v", v, verbs)
		}
	}
	if share := float64(withLinks) / 5000; share < 0.27 || share > 0.33 {
		t.Errorf("%.3f of activities have links, want about link_ratio 0.3", share)
	}
	if got := g.Stats(); got != (Stats{Generated: 5000}) {
		t.Errorf("Stats() = %+v, want 5000 generated", got)
	}
}

func TestLanguages(t *testing.T) {
	for _, tc := range []struct {
		name  string
		langs []string
	}{
		{"default", DefaultConfig().Languages},
		{"german and japanese", []string{"de", "ja"}},
		{"english only", []string{"en"}},
		{"spanish, french, portuguese", []string{"es", "fr", "pt"}},
		{"japanese only", []string{"ja"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewGenerator(seeded(func(c *Config) { c.Languages = tc.langs }), WithClock(fixedClock))
			seen := map[string]int{}
			var buf []byte
			for range 3000 {
				buf, _, _ = g.Append(buf[:0])
				a := decode(t, buf)
				codes := languagesOf(a.Text)
				i := slices.IndexFunc(codes, func(c string) bool { return slices.Contains(tc.langs, c) })
				if i < 0 {
					t.Fatalf("text %q is in none of %v (matches %v)", a.Text, tc.langs, codes)
				}
				seen[codes[i]]++
				if code := codes[i]; languages[code].spaced {
					if n := len(textWords(a.Text)); n < minWords || n > maxWords {
						t.Fatalf("text %q has %d words, want %d-%d", a.Text, n, minWords, maxWords)
					}
				}
			}
			for _, l := range tc.langs {
				if seen[l] < 3000/len(tc.langs)/2 {
					t.Errorf("language %s in %d of 3000 texts, want about %d (%v)", l, seen[l], 3000/len(tc.langs), seen)
				}
			}
		})
	}
}

func TestDeterminism(t *testing.T) {
	run := func(cfg Config) []byte {
		g := NewGenerator(cfg, WithClock(fixedClock))
		var out []byte
		for range 2000 {
			out, _, _ = g.Append(out)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"uniform", seeded(nil)},
		{"zipf", seeded(func(c *Config) { c.KeySkew = 1.2 })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := run(tc.cfg), run(tc.cfg)
			if !bytes.Equal(a, b) {
				t.Error("two generators with the same seed and clock built different bytes")
			}
			other := tc.cfg
			other.Seed = 2
			if bytes.Equal(a, run(other)) {
				t.Error("seeds 1 and 2 built the same bytes")
			}
		})
	}
	t.Run("time-based seed", func(t *testing.T) {
		g := NewGenerator(seeded(func(c *Config) { c.Seed = 0 }))
		if g.Seed() == 0 {
			t.Fatal("Seed() = 0 with a time-based seed")
		}
		replay := NewGenerator(seeded(func(c *Config) { c.Seed = g.Seed() }))
		a, _, _ := g.Append(nil)
		b, _, _ := replay.Append(nil)
		if ta, tb := decode(t, a).Text, decode(t, b).Text; ta != tb {
			t.Errorf("replaying Seed() built text %q, want %q", tb, ta)
		}
	})
}

func TestKeySkew(t *testing.T) {
	const events, authors = 20000, 1000
	topShare := func(skew float64) float64 {
		g := NewGenerator(seeded(func(c *Config) { c.Authors, c.KeySkew = authors, skew }))
		counts := map[string]int{}
		var buf []byte
		for range events {
			var key string
			buf, _, key = g.Append(buf[:0])
			counts[key]++
		}
		top := 0
		for _, n := range counts {
			top = max(top, n)
		}
		return float64(top) / events
	}
	// Uniform: 1/1000 expected; Zipf s=1.1 over 1000 authors: about 18%.
	for _, tc := range []struct {
		name     string
		skew     float64
		min, max float64
	}{
		{"uniform", 0, 0, 0.005},
		{"zipf 1.1", 1.1, 0.10, 0.30},
		{"zipf 2", 2, 0.50, 0.70}, // 1/zeta(2) = 0.61
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := topShare(tc.skew); got < tc.min || got > tc.max {
				t.Errorf("top author has %.4f of events, want %.3f-%.3f", got, tc.min, tc.max)
			}
		})
	}
}

func TestLinkRatio(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ratio    float64
		min, max float64
	}{
		{"none", 0, 0, 0},
		{"all", 1, 1, 1},
		{"half", 0.5, 0.47, 0.53},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewGenerator(seeded(func(c *Config) { c.LinkRatio = tc.ratio }))
			n := 0
			var buf []byte
			for range 5000 {
				buf, _, _ = g.Append(buf[:0])
				if len(decode(t, buf).Links) > 0 {
					n++
				}
			}
			if got := float64(n) / 5000; got < tc.min || got > tc.max {
				t.Errorf("%.3f of activities have links, want %.2f-%.2f", got, tc.min, tc.max)
			}
		})
	}
}

func TestIDsAndKeys(t *testing.T) {
	for _, tc := range []struct {
		name    string
		prefix  string
		authors int
		wantKey string // a key of the right shape
	}{
		{"empty prefix", "", 10, "u7"},
		{"prefix needing JSON escapes", `a"b\c<`, 100, "u07"},
		{"authors beyond the id table", "x-", maxAuthorTable + 1, "u0000007"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewGenerator(seeded(func(c *Config) { c.IDPrefix, c.Authors = tc.prefix, tc.authors }))
			var buf []byte
			for i := range 3 * idBatch {
				var id, key string
				buf, id, key = g.Append(buf[:0])
				a := decode(t, buf)
				if want := fmt.Sprintf("%s%d", tc.prefix, i+1); a.ID != want || id != want {
					t.Fatalf("event %d: id %q (returned %q), want %q", i, a.ID, id, want)
				}
				if a.Author.ID != key || len(key) != len(tc.wantKey) {
					t.Fatalf("event %d: author id %q, key %q, want equal and like %q", i, a.Author.ID, key, tc.wantKey)
				}
			}
		})
	}
}

func TestAuthorIsStable(t *testing.T) {
	g := NewGenerator(seeded(func(c *Config) { c.Authors = 50 }))
	byID := map[string]activity.Author{}
	var buf []byte
	for range 2000 {
		buf, _, _ = g.Append(buf[:0])
		a := decode(t, buf).Author
		if prev, ok := byID[a.ID]; ok && prev != a {
			t.Fatalf("author %s is %+v, earlier %+v", a.ID, a, prev)
		}
		byID[a.ID] = a
	}
	if len(byID) != 50 {
		t.Errorf("saw %d distinct authors, want 50", len(byID))
	}
}

func TestWordsAreJSONSafe(t *testing.T) {
	check := func(t *testing.T, what string, ss []string) {
		t.Helper()
		for _, s := range ss {
			b, _ := json.Marshal(s)
			if string(b) != `"`+s+`"` || strings.ContainsAny(s, " \t\n") && what != "endings" {
				t.Errorf("%s %q: needs JSON escaping or contains white space", what, s)
			}
			if what == "words" && (s == "" || strings.ContainsAny(s[len(s)-1:], ",.!?#@")) {
				t.Errorf("word %q: empty or ends in punctuation", s)
			}
		}
	}
	for code, l := range languages {
		t.Run(code, func(t *testing.T) {
			check(t, "words", l.words)
			check(t, "tags", l.tags)
			check(t, "particles", l.particles)
			check(t, "endings", l.endings)
		})
	}
	check(t, "handle stems", handleStems)
	check(t, "link hosts", linkHosts)
}

func TestNewGeneratorPanicsOnInvalidConfig(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "synthetic.rate") {
			t.Errorf("recovered %v, want a panic naming synthetic.rate", r)
		}
	}()
	NewGenerator(Config{})
}

func TestAppendAllocs(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"uniform", seeded(nil)},
		{"zipf", seeded(func(c *Config) { c.KeySkew = 1.1 })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewGenerator(tc.cfg)
			buf := make([]byte, 0, 4096)
			// AllocsPerRun rounds down: one id string per 64 events is 0.
			if got := testing.AllocsPerRun(1000, func() { buf, _, _ = g.Append(buf[:0]) }); got != 0 {
				t.Errorf("Append allocates %v times per activity, want 0", got)
			}
		})
	}
}

func BenchmarkAppend(b *testing.B) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"uniform", seeded(nil)},
		{"zipf1.1", seeded(func(c *Config) { c.KeySkew = 1.1 })},
	} {
		b.Run(tc.name, func(b *testing.B) {
			g := NewGenerator(tc.cfg)
			buf := make([]byte, 0, 4096)
			total := 0
			b.ReportAllocs()
			for b.Loop() {
				buf, _, _ = g.Append(buf[:0])
				total += len(buf)
			}
			b.ReportMetric(float64(total)/float64(b.N), "bytes/event")
		})
	}
}
