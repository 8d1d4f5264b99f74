package synth

import (
	"encoding/json"
	randv1 "math/rand"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"
)

// Shape of generated posts.
const (
	minWords   = 8  // words of text per post, before mentions and hashtags
	maxWords   = 25 //
	replyPct   = 15 // percent of activities that are replies, starting "@handle "
	sharePct   = 10 // percent of the other activities with verb "share"
	hashtagPct = 25 // percent of posts ending in 1-2 hashtags
)

const (
	// idBatch is how many ids share one allocated string.
	idBatch = 64
	// maxAuthorTable is the largest Authors for which all author ids are
	// built once up front (at most 8 bytes each); above it each activity
	// allocates its key.
	maxAuthorTable = 1 << 20
)

// Stats counts a Generator's work.
type Stats struct {
	// Generated is the number of activities built, by Append or Run: the
	// seq of the last one.
	Generated int64
	// Shortfall is the number of activities Run did not build because emit
	// was slower than the profile's rate and Run fell more than one second
	// behind the schedule.
	Shortfall int64
}

// Option configures a Generator beyond its Config.
type Option func(*Generator)

// WithClock makes the generator stamp created_at from now instead of
// time.Now, so that output is reproducible. Run's pacing always uses the
// time package (and so testing/synctest's virtual clock), not now.
func WithClock(now func() time.Time) Option {
	return func(g *Generator) { g.now = now }
}

// Generator builds synthetic activities and paces them (Run). It is not
// safe for concurrent use, except for Stats and Seed.
type Generator struct {
	cfg  Config
	seed int64
	now  func() time.Time
	rng  *rand.Rand
	zipf *randv1.Zipf // nil picks authors uniformly

	langs      []*language
	jsonPrefix []byte // IDPrefix as it appears inside a JSON string
	seq        uint64 // seq of the last activity built

	// ids holds the ids of seqs idFirst… back to back, ending at idEnds,
	// so that returning an id allocates once every idBatch activities.
	ids     string
	idEnds  [idBatch]int
	idFirst uint64
	scratch []byte

	// authorIDs holds every author id, authorWidth bytes each, so that
	// returning a key never allocates. Empty when Authors > maxAuthorTable.
	authorIDs   string
	authorWidth int

	buf []byte // Run's event buffer, reused for every event

	generated, shortfall atomic.Int64
}

// NewGenerator returns a generator for cfg, seeded with cfg.Seed (or the
// time when it is 0). It panics if cfg.Validate fails: validate
// configuration first.
func NewGenerator(cfg Config, opts ...Option) *Generator {
	if err := cfg.Validate(); err != nil {
		panic("synth.NewGenerator: " + err.Error())
	}
	g := &Generator{cfg: cfg, seed: cfg.Seed, now: time.Now}
	for _, o := range opts {
		o(g)
	}
	if g.seed == 0 {
		g.seed = time.Now().UnixNano()
	}
	g.rng = rand.New(rand.NewPCG(uint64(g.seed), mix(uint64(g.seed))))
	if cfg.KeySkew > 1 && cfg.Authors > 1 {
		g.zipf = randv1.NewZipf(randv1.New(randv1.NewSource(g.seed)), cfg.KeySkew, 1, uint64(cfg.Authors-1))
	}
	for _, l := range cfg.Languages {
		g.langs = append(g.langs, languages[l])
	}
	p, _ := json.Marshal(cfg.IDPrefix) // a string always marshals
	g.jsonPrefix = p[1 : len(p)-1]
	g.authorWidth = 1 + len(strconv.Itoa(cfg.Authors-1))
	if cfg.Authors <= maxAuthorTable {
		b := make([]byte, 0, cfg.Authors*g.authorWidth)
		for i := range cfg.Authors {
			b = g.appendAuthorID(b, i)
		}
		g.authorIDs = string(b)
	}
	return g
}

// Seed returns the seed in use: Config.Seed, or the time-based seed chosen
// when it is 0, so that a run can be reproduced. Safe for concurrent use.
func (g *Generator) Seed() int64 { return g.seed }

// Stats returns the counts so far. Safe for concurrent use, also while Run
// is running.
func (g *Generator) Stats() Stats {
	return Stats{Generated: g.generated.Load(), Shortfall: g.shortfall.Load()}
}

// Append builds the next activity and appends it to dst as one JSON object
// (no trailing newline) that decodes into activity.Activity. It returns the
// extended slice, the activity's id (Config.IDPrefix + seq, seq counting
// from 1 without gaps) and its key, the author id, so that key skew shows
// as partition skew. created_at is the generation time from the clock.
// With a large enough dst, Append does not allocate, except for one id
// string per 64 activities and, above 2^20 authors, the key.
func (g *Generator) Append(dst []byte) (out []byte, id, key string) {
	g.seq++
	seq := g.seq
	id = g.id(seq)
	author := g.author()
	key = g.authorKey(author)
	lang := g.langs[g.rng.IntN(len(g.langs))]
	mention := -1
	verb := "post"
	switch {
	case g.rng.IntN(100) < replyPct:
		verb, mention = "reply", g.rng.IntN(g.cfg.Authors)
	case g.rng.IntN(100) < sharePct:
		verb = "share"
	}

	dst = append(dst, `{"id":"`...)
	dst = append(dst, g.jsonPrefix...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `","seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"verb":"`...)
	dst = append(dst, verb...)
	dst = append(dst, `","author":{"id":"`...)
	dst = append(dst, key...)
	dst = append(dst, `","handle":"`...)
	dst = appendHandle(dst, author)
	dst = append(dst, `","followers":`...)
	dst = strconv.AppendInt(dst, followers(author), 10)
	dst = append(dst, `},"text":"`...)
	if mention >= 0 {
		dst = append(dst, '@')
		dst = appendHandle(dst, mention)
		dst = append(dst, ' ')
	}
	dst = g.appendText(dst, lang)
	dst = append(dst, '"')
	if g.rng.Float64() < g.cfg.LinkRatio {
		n := 1
		if g.rng.IntN(4) == 0 {
			n = 2
		}
		dst = append(dst, `,"links":[`...)
		for i := range n {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = g.appendLink(dst)
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `,"created_at":"`...)
	dst = g.now().UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `"}`...)
	g.generated.Add(1)
	return dst, id, key
}

// id returns IDPrefix + seq, from the current batch of ids.
func (g *Generator) id(seq uint64) string {
	if seq < g.idFirst || seq-g.idFirst >= idBatch || g.ids == "" {
		b := g.scratch[:0]
		for i := range uint64(idBatch) {
			b = append(b, g.cfg.IDPrefix...)
			b = strconv.AppendUint(b, seq+i, 10)
			g.idEnds[i] = len(b)
		}
		g.scratch = b
		g.ids, g.idFirst = string(b), seq
	}
	i := seq - g.idFirst
	start := 0
	if i > 0 {
		start = g.idEnds[i-1]
	}
	return g.ids[start:g.idEnds[i]]
}

// author picks an author index in [0, Authors).
func (g *Generator) author() int {
	if g.zipf != nil {
		return int(g.zipf.Uint64())
	}
	if g.cfg.Authors == 1 {
		return 0
	}
	return g.rng.IntN(g.cfg.Authors)
}

// authorKey returns the id of author i.
func (g *Generator) authorKey(i int) string {
	if g.authorIDs != "" {
		return g.authorIDs[i*g.authorWidth : (i+1)*g.authorWidth]
	}
	g.scratch = g.appendAuthorID(g.scratch[:0], i)
	return string(g.scratch)
}

// appendAuthorID appends "u" and i zero-padded to authorWidth-1 digits.
func (g *Generator) appendAuthorID(dst []byte, i int) []byte {
	var d [20]byte
	digits := strconv.AppendUint(d[:0], uint64(i), 10)
	dst = append(dst, 'u')
	for range g.authorWidth - 1 - len(digits) {
		dst = append(dst, '0')
	}
	return append(dst, digits...)
}

// appendHandle appends author i's handle, a name stem and i: "maria_42".
func appendHandle(dst []byte, i int) []byte {
	dst = append(dst, handleStems[mix(uint64(i))%uint64(len(handleStems))]...)
	dst = append(dst, '_')
	return strconv.AppendUint(dst, uint64(i), 10)
}

// followers is author i's follower count: fixed per author, heavy-tailed,
// highest for the authors Zipf picks most (low indexes).
func followers(i int) int64 {
	return int64((mix(uint64(i))>>32)%500) + 5_000_000/int64(i+1)
}

// appendText appends 8-25 words of language l, then sometimes hashtags.
func (g *Generator) appendText(dst []byte, l *language) []byte {
	n := minWords + g.rng.IntN(maxWords-minWords+1)
	for i := range n {
		w := l.words[g.rng.IntN(len(l.words))]
		if !l.spaced {
			dst = append(dst, w...)
			if i < n-1 {
				switch r := g.rng.IntN(10); {
				case r < 5:
					dst = append(dst, l.particles[g.rng.IntN(len(l.particles))]...)
				case r == 5:
					dst = append(dst, "、"...)
				}
			}
			continue
		}
		if i > 0 {
			dst = append(dst, ' ')
		}
		if i == 0 && w[0] >= 'a' && w[0] <= 'z' {
			dst = append(dst, w[0]-'a'+'A')
			w = w[1:]
		}
		dst = append(dst, w...)
		if i < n-1 && g.rng.IntN(12) == 0 {
			dst = append(dst, ',')
		}
	}
	dst = append(dst, l.endings[g.rng.IntN(len(l.endings))]...)
	if g.rng.IntN(100) < hashtagPct {
		for range 1 + g.rng.IntN(2) {
			dst = append(dst, " #"...)
			dst = append(dst, l.tags[g.rng.IntN(len(l.tags))]...)
		}
	}
	return dst
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// appendLink appends a quoted short link on an example domain.
func (g *Generator) appendLink(dst []byte) []byte {
	dst = append(dst, '"')
	dst = append(dst, linkHosts[g.rng.IntN(len(linkHosts))]...)
	u := g.rng.Uint64()
	for range 7 {
		dst = append(dst, base62[u%62])
		u /= 62
	}
	return append(dst, '"')
}

// mix is the splitmix64 finalizer: a cheap, well-spread hash.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
