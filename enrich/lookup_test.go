package enrich

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bendstream/bend/internal/activity"
	metrics "github.com/rcrowley/go-metrics"
)

// scores is a test JSON service: /authors/ID answers by ID.
type scores struct {
	*httptest.Server
	hits    atomic.Int64
	mu      sync.Mutex
	lastReq *http.Request
	release chan struct{} // "wait" blocks until closed
}

func newScores(t *testing.T) *scores {
	s := &scores{release: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		s.lastReq = r
		s.mu.Unlock()
		id := strings.TrimPrefix(r.URL.EscapedPath(), "/authors/")
		if q := r.URL.Query().Get("author"); q != "" {
			id = q
		}
		switch id {
		case "u1":
			_, _ = w.Write([]byte("{\n  \"score\": 3,\n  \"tier\": \"gold\"\n}\n"))
		case "missing":
			http.NotFound(w, r)
		case "empty":
			w.WriteHeader(http.StatusNoContent)
		case "boom":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "teapot":
			w.WriteHeader(http.StatusTeapot)
		case "slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		case "wait":
			<-s.release
			_, _ = w.Write([]byte(`{"waited":true}`))
		case "big":
			_, _ = w.Write([]byte(`"` + strings.Repeat("x", 200) + `"`))
		case "notjson":
			_, _ = w.Write([]byte("hello"))
		default:
			_, _ = w.Write([]byte(`{"id":"` + strings.ReplaceAll(id, `"`, "") + `"}`))
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *scores) last() *http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastReq
}

func byAuthor(id string) *activity.Fields {
	a := &activity.Fields{ID: "act-1"}
	a.Author.ID = id
	return a
}

func TestLookup(t *testing.T) {
	srv := newScores(t)
	e := build(t, Spec{Name: "scores", Type: "lookup", Lookup: LookupOptions{URL: srv.URL + "/authors/{author.id}", MaxBytes: 100}}, nil)
	for _, tc := range []struct {
		author  string
		want    string // result; "" when an error is wanted
		wantErr string
	}{
		{"u1", `{"score":3,"tier":"gold"}`, ""},
		{"missing", `null`, ""},
		{"empty", `null`, ""},
		{"", `null`, ""},
		{"boom", "", "HTTP 503"},
		{"teapot", "", "HTTP 418"},
		{"big", "", "larger than max_bytes (100)"},
		{"notjson", "", "not JSON"},
		{"a/b?c", `{"id":"a%2Fb%3Fc"}`, ""},
		{"..", `{"id":"%2E%2E"}`, ""},
	} {
		t.Run(tc.author, func(t *testing.T) {
			got, err := enrichWithin(e, time.Second, byAuthor(tc.author))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %s, %v; want an error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %s, %v; want %s", got, err, tc.want)
			}
		})
	}
}

func TestLookupTimeout(t *testing.T) {
	srv := newScores(t)
	e := build(t, Spec{Name: "scores", Type: "lookup", Lookup: LookupOptions{URL: srv.URL + "/authors/{author.id}"}}, nil)
	start := time.Now()
	_, err := enrichWithin(e, 100*time.Millisecond, byAuthor("slow"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %s, want about the 100ms timeout", d)
	}
}

func TestLookupCache(t *testing.T) {
	srv := newScores(t)
	reg := metrics.NewRegistry()
	e := build(t, Spec{Name: "scores", Type: "lookup", Lookup: LookupOptions{URL: srv.URL + "/authors/{author.id}"}}, reg)
	for _, id := range []string{"u1", "u1", "missing", "missing", "boom", "boom", "u1"} {
		_, _ = enrichWithin(e, time.Second, byAuthor(id))
	}
	if got := srv.hits.Load(); got != 4 {
		t.Errorf("server hits: got %d, want 4 (u1 and 404 once, the 503 twice)", got)
	}
	if hits, misses := count(reg, "enrich.scores.cache_hits"), count(reg, "enrich.scores.cache_misses"); hits != 3 || misses != 4 {
		t.Errorf("cache hits/misses: got %d/%d, want 3/4", hits, misses)
	}
}

func TestLookupSharesConcurrentRequests(t *testing.T) {
	srv := newScores(t)
	reg := metrics.NewRegistry()
	e := build(t, Spec{Name: "scores", Type: "lookup", Lookup: LookupOptions{URL: srv.URL + "/authors/{author.id}"}}, reg)
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			if got, err := enrichWithin(e, 5*time.Second, byAuthor("wait")); err != nil || string(got) != `{"waited":true}` {
				t.Errorf("got %s, %v", got, err)
			}
		})
	}
	eventually(t, 2*time.Second, "5 lookups missing the cache", func() bool { return count(reg, "enrich.scores.cache_misses") == 5 })
	close(srv.release)
	wg.Wait()
	if got := srv.hits.Load(); got != 1 {
		t.Errorf("server hits: got %d, want 1", got)
	}
}

func TestLookupTokenAndQuery(t *testing.T) {
	srv := newScores(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		opts     LookupOptions
		a        *activity.Fields
		wantAuth string
		wantURI  string
	}{
		{"token", LookupOptions{URL: srv.URL + "/authors/{author.id}", Token: "abc"}, byAuthor("u7"), "Bearer abc", "/authors/u7"},
		{"token_file", LookupOptions{URL: srv.URL + "/authors/{author.id}", TokenFile: tokenFile}, byAuthor("u8"), "Bearer s3cret", "/authors/u8"},
		{"no token, query", LookupOptions{URL: srv.URL + "/q/{id}?author={author.id}"}, &activity.Fields{ID: "x/y", Author: byAuthor("a&b=c").Author},
			"", "/q/x%2Fy?author=a%26b%3Dc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := build(t, Spec{Name: "k", Type: "lookup", Lookup: tc.opts}, nil)
			if _, err := enrichWithin(e, time.Second, tc.a); err != nil {
				t.Fatal(err)
			}
			r := srv.last()
			if got := r.Header.Get("Authorization"); got != tc.wantAuth {
				t.Errorf("Authorization: got %q, want %q", got, tc.wantAuth)
			}
			if got := r.URL.RequestURI(); got != tc.wantURI {
				t.Errorf("request URI: got %q, want %q", got, tc.wantURI)
			}
		})
	}
	if _, err := newLookup("k", LookupOptions{URL: srv.URL + "/{id}", TokenFile: tokenFile + ".missing"}.withDefaults(), metrics.NewRegistry()); err == nil {
		t.Error("newLookup with a missing token_file: want an error")
	}
}

func TestParseTemplate(t *testing.T) {
	for _, tc := range []struct {
		tmpl, wantErr string
	}{
		{"http://h/a/{id}", ""},
		{"https://h:8080/{author.id}/x?id={id}&v=1", ""},
		{"http://h/static", ""},
		{"http://h/{id", "unclosed"},
		{"http://h/{name}", "unknown placeholder"},
		{"http://{id}/", "before the path"},
		{"http://h{id}/", "before the path"},
		{"{id}", "before the path"},
		{"h/{id}", "before the path"},
		{"mailto:x/{id}", "before the path"},
		{"file:///etc/{id}", "want an http or https URL"},
		{"http:///x/{id}", "want an http or https URL"},
	} {
		t.Run(tc.tmpl, func(t *testing.T) {
			_, err := parseTemplate(tc.tmpl)
			if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("got %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestLookupThroughPool runs a slow lookup as the Pool does: the attempt
// times out, is reported as ErrTimeout and counted.
func TestLookupThroughPool(t *testing.T) {
	srv := newScores(t)
	reg := metrics.NewRegistry()
	c := Config{Workers: 1, QueueSize: 1, Enrichers: []Spec{{Name: "scores", Type: "lookup", Timeout: 100 * time.Millisecond,
		Concurrency: 1, Lookup: LookupOptions{URL: srv.URL + "/authors/{author.id}"}}}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	rs, err := c.Build(nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	p := NewPool(1, rs, nil, reg)
	for _, tc := range []struct {
		author, want string
		wantErr      error
	}{
		{"slow", "", ErrTimeout},
		{"u1", `{"score":3,"tier":"gold"}`, nil},
	} {
		var got json.RawMessage
		var gotErr error
		p.Do(context.Background(), &Task{Activity: byAuthor(tc.author), Attempt: 1,
			Report: func(_ *Task, res json.RawMessage, err error) { got, gotErr = res, err }})
		if !errors.Is(gotErr, tc.wantErr) || string(got) != tc.want {
			t.Errorf("%s: got %s, %v; want %s, %v", tc.author, got, gotErr, tc.want, tc.wantErr)
		}
	}
	if got := count(reg, "enrich.scores.timeouts"); got != 1 {
		t.Errorf("enrich.scores.timeouts: got %d, want 1", got)
	}
	if got := count(reg, "enrich.scores.in_flight"); got != 0 {
		t.Errorf("enrich.scores.in_flight: got %d, want 0", got)
	}
}

// FuzzLookupURL checks that no field value changes the host (or scheme) of
// a lookup URL, nor adds query parameters.
func FuzzLookupURL(f *testing.F) {
	f.Add("http://h/a/{author.id}?x={id}", "u1", "a1")
	f.Add("https://h:1/{id}/{author.id}", "..", "a/b?c#d")
	f.Add("http://h/x?a={author.id}&b={id}", "@evil.example/", "x&y=z")
	f.Fuzz(func(t *testing.T, tmpl, author, id string) {
		tp, err := parseTemplate(tmpl)
		if err != nil {
			return
		}
		want, err := url.Parse(strings.NewReplacer("{id}", "x", "{author.id}", "x").Replace(tmpl))
		if err != nil {
			t.Fatalf("template %q parsed, but not with x for its fields: %v", tmpl, err)
		}
		a := &activity.Fields{ID: id}
		a.Author.ID = author
		s, ok := tp.render(a)
		if !ok {
			return
		}
		got, err := url.Parse(s)
		if err != nil {
			t.Fatalf("render(%q, %q, %q) = %q: %v", tmpl, author, id, s, err)
		}
		if got.Scheme != want.Scheme || got.Host != want.Host || len(got.Query()) != len(want.Query()) {
			t.Fatalf("render(%q, %q, %q) = %q: scheme, host or query keys differ from %q", tmpl, author, id, s, want)
		}
	})
}
