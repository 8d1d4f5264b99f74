package enrich

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bendstream/bend/internal/activity"
	metrics "github.com/rcrowley/go-metrics"
)

// redirector is a test server of redirect chains. It counts requests by
// method and path.
type redirector struct {
	*httptest.Server
	mu   sync.Mutex
	hits map[string]int // "HEAD /ok"
	// hold, if set, blocks /hold requests until closed; running counts them.
	hold             chan struct{}
	running, maxSeen atomic.Int64
}

func newRedirector(t *testing.T) *redirector {
	r := &redirector{hits: map[string]int{}}
	mux := http.NewServeMux()
	redirect := func(w http.ResponseWriter, to string, code int) {
		w.Header().Set("Location", to)
		w.WriteHeader(code)
	}
	// /chain?codes=301,302 redirects with each code in turn, then /ok.
	mux.HandleFunc("/chain", func(w http.ResponseWriter, req *http.Request) {
		codes := req.URL.Query().Get("codes")
		if codes == "" {
			redirect(w, "/ok", http.StatusFound)
			return
		}
		first, rest, _ := strings.Cut(codes, ",")
		code, _ := strconv.Atoi(first)
		if rest == "" {
			redirect(w, "/ok", code)
			return
		}
		redirect(w, "/chain?codes="+rest, code)
	})
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("a page")) })
	mux.HandleFunc("/missing", http.NotFound)
	mux.HandleFunc("/fail", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	mux.HandleFunc("/loop/a", func(w http.ResponseWriter, _ *http.Request) { redirect(w, "/loop/b", http.StatusFound) })
	mux.HandleFunc("/loop/b", func(w http.ResponseWriter, _ *http.Request) { redirect(w, "/loop/a", http.StatusFound) })
	mux.HandleFunc("/self", func(w http.ResponseWriter, _ *http.Request) { redirect(w, "/self#top", http.StatusMovedPermanently) })
	mux.HandleFunc("/relative/deep", func(w http.ResponseWriter, _ *http.Request) { redirect(w, "../ok", http.StatusFound) })
	mux.HandleFunc("/nolocation", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusFound) })
	for path, code := range map[string]int{"/nohead": http.StatusMethodNotAllowed, "/nohead501": http.StatusNotImplemented} {
		mux.HandleFunc(path, func(w http.ResponseWriter, req *http.Request) {
			if req.Method == http.MethodHead {
				w.WriteHeader(code)
				return
			}
			redirect(w, "/ok", http.StatusMovedPermanently)
		})
	}
	mux.HandleFunc("/slow", func(w http.ResponseWriter, req *http.Request) {
		select {
		case <-req.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	mux.HandleFunc("/hold", func(w http.ResponseWriter, req *http.Request) {
		n := r.running.Add(1)
		defer r.running.Add(-1)
		for m := r.maxSeen.Load(); n > m && !r.maxSeen.CompareAndSwap(m, n); m = r.maxSeen.Load() {
		}
		<-r.hold
	})
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.hits[req.Method+" "+req.URL.Path]++
		r.mu.Unlock()
		mux.ServeHTTP(w, req)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *redirector) count(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hits[key]
}

func (r *redirector) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, v := range r.hits {
		n += v
	}
	return n
}

type linksOut struct {
	Links []struct {
		URL    string `json:"url"`
		Final  string `json:"final"`
		Hops   int    `json:"hops"`
		Status int    `json:"status"`
		Error  string `json:"error"`
	} `json:"links"`
}

func unwindLinks(t *testing.T, e Enricher, timeout time.Duration, links ...string) (linksOut, error) {
	t.Helper()
	res, err := enrichWithin(e, timeout, &activity.Fields{ID: "a", Links: links})
	var out linksOut
	if err == nil {
		if err := json.Unmarshal(res, &out); err != nil {
			t.Fatalf("output %s: %v", res, err)
		}
		if len(out.Links) != len(links) {
			t.Fatalf("output %s: want %d links", res, len(links))
		}
	}
	return out, err
}

func TestURLsRedirectChains(t *testing.T) {
	srv := newRedirector(t)
	e := build(t, Spec{Name: "urls", URLs: URLOptions{AllowPrivate: true, MaxHops: 4}}, nil)
	for _, tc := range []struct {
		name, path string
		final      string // path
		hops       int
		status     int
		err        string // substring; "" for none
	}{
		{"no redirect", "/ok", "/ok", 0, 200, ""},
		{"301 302 307 308", "/chain?codes=301,302,307,308", "/ok", 4, 200, ""},
		{"303", "/chain?codes=303", "/ok", 1, 200, ""},
		{"relative location", "/relative/deep", "/ok", 1, 200, ""},
		{"too many hops", "/chain?codes=301,301,301,301,301", "/chain?codes=301", 4, 301, "more than max_hops (4)"},
		{"loop", "/loop/a", "/loop/b", 1, 302, "redirect loop"},
		{"redirect to itself", "/self", "/self", 0, 301, "redirect loop"},
		{"HEAD 405, GET redirects", "/nohead", "/ok", 1, 200, ""},
		{"HEAD 501, GET redirects", "/nohead501", "/ok", 1, 200, ""},
		{"dead link is a result", "/missing", "/missing", 0, 404, ""},
		{"redirect without location", "/nolocation", "/nolocation", 0, 302, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := unwindLinks(t, e, 5*time.Second, srv.URL+tc.path)
			if err != nil {
				t.Fatalf("Enrich: %v", err)
			}
			got := out.Links[0]
			if got.URL != srv.URL+tc.path || got.Final != srv.URL+tc.final || got.Hops != tc.hops || got.Status != tc.status {
				t.Errorf("got url %s final %s hops %d status %d\nwant url %s final %s hops %d status %d",
					got.URL, got.Final, got.Hops, got.Status, srv.URL+tc.path, srv.URL+tc.final, tc.hops, tc.status)
			}
			if (tc.err == "") != (got.Error == "") || !strings.Contains(got.Error, tc.err) {
				t.Errorf("error %q, want %q", got.Error, tc.err)
			}
		})
	}
	if got := srv.count("GET /nohead"); got != 1 {
		t.Errorf("GET /nohead: %d requests, want 1 (the fallback from HEAD)", got)
	}
	if got := srv.count("GET /ok"); got != 0 {
		t.Errorf("GET /ok: %d requests, want 0 (HEAD only)", got)
	}
}

func TestURLsBadLinks(t *testing.T) {
	e := build(t, Spec{Name: "urls", URLs: URLOptions{AllowPrivate: true, MaxLinks: 3}}, nil)
	out, err := unwindLinks(t, e, time.Second, "ftp://example.com/x", "not a url\x7f", "/relative", "http://example.com/4")
	if err != nil {
		t.Fatalf("Enrich: %v (permanent errors must not fail the attempt)", err)
	}
	for i, want := range []string{"unsupported URL", "invalid URL", "unsupported URL", "more than max_links (3)"} {
		if !strings.Contains(out.Links[i].Error, want) {
			t.Errorf("link %d: error %q, want %q", i, out.Links[i].Error, want)
		}
	}
}

func TestURLsFailsOnlyWhenEveryLinkFailedTransiently(t *testing.T) {
	srv := newRedirector(t)
	e := build(t, Spec{Name: "urls", URLs: URLOptions{AllowPrivate: true}}, nil)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close() // connection refused from now on
	for _, tc := range []struct {
		name    string
		links   []string
		wantErr error // nil: the attempt succeeds
		timeout time.Duration
	}{
		{"no links", nil, nil, time.Second},
		{"every link 5xx or refused", []string{srv.URL + "/fail", closed.URL + "/x"}, errors.New(""), 5 * time.Second},
		{"one transient, one permanent", []string{srv.URL + "/fail", "ftp://x/"}, nil, 5 * time.Second},
		{"one transient, one fine", []string{closed.URL + "/x", srv.URL + "/ok"}, nil, 5 * time.Second},
		{"every link timed out", []string{srv.URL + "/slow", srv.URL + "/slow?2"}, context.DeadlineExceeded, 200 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := unwindLinks(t, e, tc.timeout, tc.links...)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Errorf("Enrich: %v, want success", err)
			case tc.wantErr != nil && err == nil:
				t.Errorf("Enrich succeeded, want an error")
			case errors.Is(tc.wantErr, context.DeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded):
				t.Errorf("Enrich: %v, want it to wrap DeadlineExceeded (the Pool counts it as a timeout)", err)
			}
		})
	}
}

func TestURLsRefusesPrivateTargets(t *testing.T) {
	srv := newRedirector(t)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	for _, tc := range []struct {
		name    string
		allow   bool
		link    string
		wantErr string
	}{
		{"loopback address", false, srv.URL + "/ok", "non-public address 127.0.0.1"},
		{"name resolving to loopback", false, "http://localhost:" + port + "/ok", "non-public address"},
		{"allowed", true, srv.URL + "/ok", ""},
		{"allowed by name", true, "http://localhost:" + port + "/ok", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := srv.total()
			e := build(t, Spec{Name: "urls", URLs: URLOptions{AllowPrivate: tc.allow}}, nil)
			out, err := unwindLinks(t, e, 2*time.Second, tc.link)
			if err != nil {
				t.Fatalf("Enrich: %v (a refusal is permanent, not an attempt failure)", err)
			}
			got := out.Links[0]
			if (tc.wantErr == "") != (got.Error == "") || !strings.Contains(got.Error, tc.wantErr) {
				t.Errorf("error %q, want %q", got.Error, tc.wantErr)
			}
			if hit := srv.total() - before; tc.wantErr != "" && hit != 0 {
				t.Errorf("the server got %d requests, want none", hit)
			}
		})
	}
}

// TestURLsRefusesPrivateRedirect follows a redirect from an allowed address
// to a refused one: the check applies to every hop, at dial time.
func TestURLsRefusesPrivateRedirect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no 127.0.0.2 on this machine: %v", err)
	}
	var hits atomic.Int64
	private := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	private.Listener = ln
	private.Start()
	t.Cleanup(private.Close)
	outer := httptest.NewServer(http.RedirectHandler(private.URL+"/secret", http.StatusFound))
	t.Cleanup(outer.Close)

	u := newURLs("urls", URLOptions{}.withDefaults(), metrics.NewRegistry())
	u.permit = func(a netip.Addr) bool { return a == netip.MustParseAddr("127.0.0.1") } // stands in for a public address
	res, err := u.Enrich(context.Background(), &activity.Fields{Links: []string{outer.URL + "/go"}})
	if err != nil {
		t.Fatal(err)
	}
	var out linksOut
	if err := json.Unmarshal(res, &out); err != nil {
		t.Fatal(err)
	}
	got := out.Links[0]
	if !strings.Contains(got.Error, "non-public address 127.0.0.2") || got.Hops != 1 || got.Final != private.URL+"/secret" || got.Status != 0 {
		t.Errorf("got %+v, want a refusal at hop 1 to %s/secret", got, private.URL)
	}
	if hits.Load() != 0 {
		t.Errorf("the private server got %d requests, want none", hits.Load())
	}
}

func TestPublic(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"8.8.8.8", true}, {"93.184.216.34", true}, {"2606:4700:4700::1111", true},
		{"127.0.0.1", false}, {"127.1.2.3", false}, {"::1", false},
		{"10.0.0.1", false}, {"172.16.5.4", false}, {"192.168.1.1", false}, {"fd00::1", false},
		{"169.254.169.254", false}, {"fe80::1", false}, {"fe80::1%eth0", false},
		{"0.0.0.0", false}, {"::", false}, {"100.64.0.1", false}, {"198.18.0.1", false},
		{"224.0.0.1", false}, {"ff02::1", false}, {"255.255.255.255", false}, {"240.0.0.1", false},
		{"::ffff:127.0.0.1", false}, {"::ffff:10.1.1.1", false}, {"::ffff:8.8.8.8", true},
		{"2001:db8::1", false}, {"192.0.2.10", false},
	} {
		if got := public(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("public(%s): got %v, want %v", tc.addr, got, tc.want)
		}
	}
}

func TestURLsCache(t *testing.T) {
	srv := newRedirector(t)
	reg := metrics.NewRegistry()
	e := build(t, Spec{Name: "links", Type: "urls", URLs: URLOptions{AllowPrivate: true}}, reg)
	link := srv.URL + "/chain?codes=301"
	for i := range 3 {
		out, err := unwindLinks(t, e, time.Second, link, srv.URL+"/fail", srv.URL+"/missing")
		if err != nil {
			t.Fatal(err)
		}
		if out.Links[0].Final != srv.URL+"/ok" || out.Links[0].Hops != 1 {
			t.Fatalf("call %d: got %+v", i, out.Links[0])
		}
	}
	if got := srv.count("HEAD /chain") + srv.count("HEAD /ok"); got != 2 {
		t.Errorf("requests for the cached chain: got %d, want 2 (one per hop, first call only)", got)
	}
	if got := srv.count("HEAD /missing"); got != 1 {
		t.Errorf("requests for the dead link: got %d, want 1 (permanent results are cached)", got)
	}
	if got := srv.count("HEAD /fail"); got != 3 {
		t.Errorf("requests for the failing link: got %d, want 3 (transient failures are not cached)", got)
	}
	if hits, misses := count(reg, "enrich.links.cache_hits"), count(reg, "enrich.links.cache_misses"); hits != 4 || misses != 5 {
		t.Errorf("cache hits/misses: got %d/%d, want 4/5", hits, misses)
	}
	if got := count(reg, "enrich.links.requests"); got != 6 {
		t.Errorf("requests: got %d, want 6", got)
	}
}

func TestURLsPerHostConcurrency(t *testing.T) {
	srv := newRedirector(t)
	srv.hold = make(chan struct{})
	u := newURLs("urls", URLOptions{AllowPrivate: true, PerHostConcurrency: 2}.withDefaults(), metrics.NewRegistry())
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			if _, err := u.Enrich(context.Background(), &activity.Fields{Links: []string{fmt.Sprintf("%s/hold?%d", srv.URL, i)}}); err != nil {
				t.Error(err)
			}
		})
	}
	eventually(t, 2*time.Second, "two requests held by the server", func() bool { return srv.running.Load() == 2 })
	if n := u.hosts.len(); n != 1 {
		t.Errorf("hosts tracked while busy: got %d, want 1", n)
	}
	close(srv.hold)
	wg.Wait()
	if got := srv.maxSeen.Load(); got != 2 {
		t.Errorf("most requests at once to one host: got %d, want 2", got)
	}
	if n := u.hosts.len(); n != 0 {
		t.Errorf("hosts tracked when idle: got %d, want 0", n)
	}
}

// BenchmarkURLsCached measures an activity with two cached links.
func BenchmarkURLsCached(b *testing.B) {
	srv := httptest.NewServer(http.RedirectHandler("/final", http.StatusFound))
	defer srv.Close()
	e := build(b, Spec{Name: "urls", URLs: URLOptions{AllowPrivate: true, MaxHops: 1}}, nil)
	a := &activity.Fields{ID: "a", Links: []string{srv.URL + "/x", srv.URL + "/y"}}
	ctx := context.Background()
	if _, err := e.Enrich(ctx, a); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Enrich(ctx, a); err != nil {
			b.Fatal(err)
		}
	}
}
