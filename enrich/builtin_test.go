package enrich

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bendstream/bend/internal/activity"
	"github.com/bendstream/bend/internal/testutil"
	"github.com/go-viper/mapstructure/v2"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/spf13/viper"
)

// build validates a config of the one spec s and builds it.
func build(t testing.TB, s Spec, reg metrics.Registry) Enricher {
	t.Helper()
	c := Config{Workers: 1, QueueSize: 1, Enrichers: []Spec{s}}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	rs, err := c.Build(nil, reg)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return rs[0].Enricher
}

// enrichWithin runs one attempt with a timeout, as the Pool does.
func enrichWithin(e Enricher, timeout time.Duration, a *activity.Fields) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return e.Enrich(ctx, a)
}

// eventually is testutil.Eventually.
var eventually = testutil.Eventually

func count(reg metrics.Registry, name string) int64 {
	if c, ok := reg.Get(name).(metrics.Counter); ok {
		return c.Count()
	}
	return -1
}

func TestValidateNamesTheKey(t *testing.T) {
	for _, tc := range []struct {
		name  string
		specs []Spec
		want  []string // substrings of the error; none: valid
	}{
		{"defaults", DefaultConfig().Enrichers, nil},
		{"every type with its defaults", []Spec{
			{Name: "lang"}, {Name: "urls"},
			{Name: "lookup", Lookup: LookupOptions{URL: "http://scores.local/authors/{author.id}"}},
			{Name: "table", Table: TableOptions{Path: "authors.csv"}},
		}, nil},
		{"lang: unknown language", []Spec{{Name: "l", Type: "lang", Lang: LangOptions{Languages: []string{"en", "xx"}}}},
			[]string{`enrich.enrichers[0].lang.languages: "xx"`}},
		{"lang: upper case", []Spec{{Name: "l", Type: "lang", Lang: LangOptions{Languages: []string{"EN", "de"}}}},
			[]string{`enrich.enrichers[0].lang.languages: "EN"`}},
		{"lang: one language", []Spec{{Name: "l", Type: "lang", Lang: LangOptions{Languages: []string{"en", "en"}}}},
			[]string{"enrich.enrichers[0].lang.languages: need at least two"}},
		{"lang: min_confidence", []Spec{{Name: "l", Type: "lang", Lang: LangOptions{MinConfidence: 1.5}}},
			[]string{"enrich.enrichers[0].lang.min_confidence"}},
		{"urls: negative numbers", []Spec{{Name: "stats"}, {Name: "u", Type: "urls", URLs: URLOptions{
			MaxHops: -1, MaxLinks: -2, PerHostConcurrency: -3, CacheSize: -4, CacheTTL: -time.Second}}},
			[]string{"enrich.enrichers[1].urls.max_hops", "enrich.enrichers[1].urls.max_links",
				"enrich.enrichers[1].urls.per_host_concurrency", "enrich.enrichers[1].urls.cache_size",
				"enrich.enrichers[1].urls.cache_ttl"}},
		{"lookup: no url", []Spec{{Name: "k", Type: "lookup"}}, []string{"enrich.enrichers[0].lookup.url: required"}},
		{"lookup: placeholder in the host", []Spec{{Name: "k", Type: "lookup", Lookup: LookupOptions{URL: "http://{author.id}.example/x"}}},
			[]string{"enrich.enrichers[0].lookup.url: placeholder {author.id} before the path"}},
		{"lookup: unknown placeholder", []Spec{{Name: "k", Type: "lookup", Lookup: LookupOptions{URL: "http://h/{handle}"}}},
			[]string{"enrich.enrichers[0].lookup.url: unknown placeholder {handle}"}},
		{"lookup: not http", []Spec{{Name: "k", Type: "lookup", Lookup: LookupOptions{URL: "ftp://h/{id}"}}},
			[]string{"enrich.enrichers[0].lookup.url: want an http or https URL"}},
		{"lookup: two tokens, bad sizes", []Spec{{Name: "k", Type: "lookup", Lookup: LookupOptions{
			URL: "http://h/{id}", Token: "a", TokenFile: "b", MaxBytes: -1, CacheSize: -1, CacheTTL: -1}}},
			[]string{"enrich.enrichers[0].lookup.token_file", "enrich.enrichers[0].lookup.max_bytes",
				"enrich.enrichers[0].lookup.cache_size", "enrich.enrichers[0].lookup.cache_ttl"}},
		{"table: no path", []Spec{{Name: "t", Type: "table"}}, []string{"enrich.enrichers[0].table.path: required"}},
		{"table: unknown format", []Spec{{Name: "t", Type: "table", Table: TableOptions{Path: "x.txt"}}},
			[]string{"enrich.enrichers[0].table.format"}},
		{"table: bad key_field, interval", []Spec{{Name: "t", Type: "table", Table: TableOptions{
			Path: "x.json", KeyField: "handle", KeyColumn: "k", ReloadInterval: -time.Second}}},
			[]string{"enrich.enrichers[0].table.key_field", "enrich.enrichers[0].table.key_column",
				"enrich.enrichers[0].table.reload_interval"}},
		{"options of another type", []Spec{{Name: "l", Type: "lang", URLs: URLOptions{MaxHops: 3}, Table: TableOptions{Path: "x"}}},
			[]string{"enrich.enrichers[0].urls: options of type urls, but the type is lang", "enrich.enrichers[0].table:"}},
		{"concurrency", []Spec{{Name: "stats", Concurrency: -1}}, []string{"enrich.enrichers[0].concurrency"}},
		{"negative queue_size", []Spec{{Name: "stats", QueueSize: -1}}, []string{"enrich.enrichers[0].queue_size"}},
		{"own queue_size", []Spec{{Name: "stats", QueueSize: 64}}, nil},
		{"adaptive without concurrency", []Spec{{Name: "stats", Adaptive: true}}, []string{"enrich.enrichers[0].adaptive"}},
		{"adaptive", []Spec{{Name: "stats", Concurrency: 4, Adaptive: true}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Config{Workers: 1, QueueSize: 1, Enrichers: tc.specs}.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: nil, want errors naming %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

// TestShippedExamplesAreValid uncomments the example enrichers in
// config.yaml and checks that they decode strictly, as bend reads its
// config, and validate.
func TestShippedExamplesAreValid(t *testing.T) {
	b, err := os.ReadFile("../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var section []string
	in, examples := false, false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case line == "enrich:":
			in = true
		case in && line != "" && line[0] != ' ' && line[0] != '#':
			in = false
		case in && strings.Contains(line, "# examples:"):
			examples = true
		}
		if !in {
			continue
		}
		if examples {
			line = strings.Replace(line, "# ", "", 1)
		}
		section = append(section, line)
	}
	if !examples {
		t.Fatal(`config.yaml has no "# examples:" in its enrich section`)
	}
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(strings.NewReader(strings.Join(section, "\n"))); err != nil {
		t.Fatalf("parsing the uncommented examples: %v\n%s", err, strings.Join(section, "\n"))
	}
	var got struct {
		Enrich Config `mapstructure:"enrich"`
	}
	if err := v.UnmarshalExact(&got, viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
		mapstructure.StringToTimeDurationHookFunc(), mapstructure.StringToSliceHookFunc(",")))); err != nil {
		t.Fatalf("decoding the uncommented examples: %v", err)
	}
	if err := got.Enrich.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	types := map[string]bool{}
	for _, s := range got.Enrich.Enrichers {
		types[s.withDefaults().Type] = true
	}
	for _, n := range builtinNames() {
		if !types[n] && n != "noop" {
			t.Errorf("config.yaml shows no enricher of type %s", n)
		}
	}
}

func TestBuildEveryType(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "authors.json")
	if err := os.WriteFile(path, []byte(`{"u1":{"tier":"gold"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Config{Workers: 1, QueueSize: 1, Enrichers: []Spec{
		{Name: "stats"}, {Name: "noop"}, {Name: "lang"}, {Name: "urls"},
		{Name: "scores", Type: "lookup", Lookup: LookupOptions{URL: "http://127.0.0.1:1/authors/{author.id}"}},
		{Name: "tiers", Type: "table", Table: TableOptions{Path: path}, Concurrency: 2},
	}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	reg := metrics.NewRegistry()
	rs, err := c.Build(nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	if got := rs[3].URLs.MaxHops; got != 5 {
		t.Errorf("urls max_hops default: got %d, want 5", got)
	}
	if got := rs[5].Table.KeyField; got != "author.id" {
		t.Errorf("table key_field default: got %q, want author.id", got)
	}
	a := &activity.Fields{ID: "a1", Text: "Good morning everyone, the weather is great today"}
	a.Author.ID = "u1"
	for _, want := range []struct {
		i   int
		res string
	}{{1, `{}`}, {5, `{"tier":"gold"}`}} {
		res, err := enrichWithin(rs[want.i].Enricher, time.Second, a)
		if err != nil || string(res) != want.res {
			t.Errorf("%s: got %s, %v; want %s", rs[want.i].Name, res, err, want.res)
		}
	}
	if got := reg.Get("enrich.tiers.limit").(metrics.Gauge).Value(); got != 2 {
		t.Errorf("enrich.tiers.limit: got %d, want 2", got)
	}

	c.Enrichers = []Spec{{Name: "tiers", Type: "table", Table: TableOptions{Path: filepath.Join(dir, "missing.csv")}}}
	if _, err := c.Build(nil, nil); err == nil || !strings.Contains(err.Error(), "enricher tiers") {
		t.Errorf("Build with a missing table: got %v, want an error naming the enricher", err)
	}
}

// blocker is an enricher whose attempts block until released, counting the
// most that ran at once.
type blocker struct {
	release          chan struct{}
	running, maxSeen atomic.Int64
	fail             atomic.Bool
}

func (b *blocker) Enrich(ctx context.Context, _ *activity.Fields) (json.RawMessage, error) {
	n := b.running.Add(1)
	defer b.running.Add(-1)
	for {
		m := b.maxSeen.Load()
		if n <= m || b.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	select {
	case <-b.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if b.fail.Load() {
		return nil, errors.New("failed")
	}
	return json.RawMessage(`{}`), nil
}

func TestConcurrencyBoundsAttempts(t *testing.T) {
	for _, adaptive := range []bool{false, true} {
		t.Run(map[bool]string{false: "fixed", true: "adaptive"}[adaptive], func(t *testing.T) {
			reg := metrics.NewRegistry()
			b := &blocker{release: make(chan struct{})}
			e := limit(Spec{Name: "slow", Concurrency: 2, Adaptive: adaptive}, b, reg)
			var wg sync.WaitGroup
			for range 6 {
				wg.Go(func() {
					if _, err := enrichWithin(e, 5*time.Second, &activity.Fields{}); err != nil {
						t.Errorf("Enrich: %v", err)
					}
				})
			}
			eventually(t, 2*time.Second, "2 running, 4 waiting", func() bool {
				return count(reg, "enrich.slow.in_flight") == 2 && count(reg, "enrich.slow.waiting") == 4
			})
			close(b.release)
			wg.Wait()
			if got := b.maxSeen.Load(); got != 2 {
				t.Errorf("most attempts at once: got %d, want 2", got)
			}
			if got := count(reg, "enrich.slow.in_flight"); got != 0 {
				t.Errorf("in_flight after: got %d, want 0", got)
			}
		})
	}
}

func TestConcurrencyWaitHonoursCtxAndPanics(t *testing.T) {
	for _, adaptive := range []bool{false, true} {
		t.Run(map[bool]string{false: "fixed", true: "adaptive"}[adaptive], func(t *testing.T) {
			reg := metrics.NewRegistry()
			var calls atomic.Int64
			hold := make(chan struct{})
			e := limit(Spec{Name: "x", Concurrency: 1, Adaptive: adaptive}, EnricherFunc(
				func(ctx context.Context, _ *activity.Fields) (json.RawMessage, error) {
					if calls.Add(1) == 1 {
						<-hold
						panic("boom")
					}
					return json.RawMessage(`{}`), nil
				}), reg)
			done := make(chan error, 1)
			go func() { _, err := safeEnrich(context.Background(), e, &activity.Fields{}); done <- err }()
			eventually(t, time.Second, "the first attempt to hold the slot", func() bool {
				return count(reg, "enrich.x.in_flight") == 1
			})
			if _, err := enrichWithin(e, 10*time.Millisecond, &activity.Fields{}); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("attempt while the slot is held: got %v, want DeadlineExceeded", err)
			}
			close(hold)
			if err := <-done; err == nil || !strings.Contains(err.Error(), "panicked") {
				t.Fatalf("first attempt: got %v, want the panic as an error", err)
			}
			if _, err := enrichWithin(e, time.Second, &activity.Fields{}); err != nil {
				t.Fatalf("after the panic: %v (slot leaked?)", err)
			}
		})
	}
}

func TestAIMD(t *testing.T) {
	g := metrics.NewGauge()
	a := newAIMD(8, g)
	ctx := context.Background()
	step := func(failed bool) {
		if err := a.acquire(ctx); err != nil {
			t.Fatal(err)
		}
		a.release(failed)
	}
	step(true)
	step(true)
	if got := a.current(); got != 2 {
		t.Fatalf("after two failures from 8: got %d, want 2", got)
	}
	for range 3 {
		step(true)
	}
	if got := a.current(); got != 1 {
		t.Fatalf("floor: got %d, want 1", got)
	}
	for range 2 + 3 + 4 {
		step(false) // 1 -> 2 after 1 success, 2 -> 3 after 2, 3 -> 4 after 3 (about)
	}
	if got := a.current(); got < 3 || got > 4 {
		t.Fatalf("after 9 successes from 1: got %d, want 3 or 4", got)
	}
	if g.Value() != int64(a.current()) {
		t.Errorf("gauge %d, limit %d", g.Value(), a.current())
	}

	// With the bound at 1: one holder, a waiter that gives up, and one
	// that gets the slot when the holder releases it.
	a = newAIMD(1, metrics.NewGauge())
	if err := a.acquire(ctx); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if err := a.acquire(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiter with a short ctx: got %v, want DeadlineExceeded", err)
	}
	got := make(chan error, 1)
	go func() { got <- a.acquire(ctx) }()
	eventually(t, time.Second, "a waiter", func() bool { a.mu.Lock(); defer a.mu.Unlock(); return a.waiters.Len() == 1 })
	a.release(false)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	a.release(false)
	if a.used != 0 || a.waiters.Len() != 0 {
		t.Errorf("after all released: used %d, waiters %d", a.used, a.waiters.Len())
	}
}

func TestAdaptiveShrinksOnFailures(t *testing.T) {
	reg := metrics.NewRegistry()
	b := &blocker{release: make(chan struct{})}
	close(b.release)
	b.fail.Store(true)
	e := limit(Spec{Name: "flaky", Concurrency: 16, Adaptive: true}, b, reg)
	for range 3 {
		_, _ = enrichWithin(e, time.Second, &activity.Fields{})
	}
	if got := reg.Get("enrich.flaky.limit").(metrics.Gauge).Value(); got != 2 {
		t.Errorf("limit after 3 failures from 16: got %d, want 2", got)
	}
}
