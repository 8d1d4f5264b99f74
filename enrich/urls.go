package enrich

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bendstream/bend/internal/activity"
	"github.com/bendstream/bend/internal/metricnames"
	metrics "github.com/rcrowley/go-metrics"
	"golang.org/x/sync/semaphore"
)

// URLOptions are the options of a "urls" enricher, which follows the
// redirect chain of each of the activity's links and reports
//
//	{"links":[{"url":"https://t.example/x","final":"https://example.com/a","hops":2,"status":200}]}
//
// A link that could not be unwound carries "error" (and final, hops and
// status as far as it got). The attempt fails only if every link failed
// with a transient error (network error, timeout, HTTP 429 or 5xx), so that
// a retry may help. Each hop is a HEAD request, repeated as GET when the
// server answers 405 or 501; response bodies are not read.
type URLOptions struct {
	// MaxHops bounds the redirects followed per link; a longer chain is
	// reported as an error. Default 5.
	MaxHops int `mapstructure:"max_hops"`
	// MaxLinks bounds the links unwound per activity; further links are
	// reported with an error and not fetched. Default 10.
	MaxLinks int `mapstructure:"max_links"`
	// PerHostConcurrency bounds the requests in flight to one host (name
	// and port), across all attempts; a request beyond it waits, under the
	// attempt's timeout. Default 4.
	PerHostConcurrency int `mapstructure:"per_host_concurrency"`
	// CacheSize bounds the links whose results are cached (least recently
	// used first out). Default 10000.
	CacheSize int `mapstructure:"cache_size"`
	// CacheTTL is how long a link's result stays cached. Transient failures
	// are not cached. Default 1h.
	CacheTTL time.Duration `mapstructure:"cache_ttl"`
	// AllowPrivate lets links and their redirects reach loopback, private,
	// link-local and other non-public addresses. Links come from the
	// public: leave it off unless they are trusted. The check is made on
	// every address actually dialled, so a name that resolves (or later
	// re-resolves) to a private address is refused too. Default false.
	AllowPrivate bool `mapstructure:"allow_private"`
	// UserAgent is sent with every request. Default "bend-urls/1".
	UserAgent string `mapstructure:"user_agent"`
}

func (o URLOptions) withDefaults() URLOptions {
	if o.MaxHops == 0 {
		o.MaxHops = 5
	}
	if o.MaxLinks == 0 {
		o.MaxLinks = 10
	}
	if o.PerHostConcurrency == 0 {
		o.PerHostConcurrency = 4
	}
	if o.CacheSize == 0 {
		o.CacheSize = 10000
	}
	if o.CacheTTL == 0 {
		o.CacheTTL = time.Hour
	}
	if o.UserAgent == "" {
		o.UserAgent = "bend-urls/1"
	}
	return o
}

func (o URLOptions) validate(key string) []error {
	var errs []error
	for _, f := range []struct {
		name string
		v    int
	}{{"max_hops", o.MaxHops}, {"max_links", o.MaxLinks}, {"per_host_concurrency", o.PerHostConcurrency}, {"cache_size", o.CacheSize}} {
		if f.v < 1 {
			errs = append(errs, fmt.Errorf("%s.%s: must be at least 1, got %d", key, f.name, f.v))
		}
	}
	if o.CacheTTL < 0 {
		errs = append(errs, fmt.Errorf("%s.cache_ttl: must not be negative", key))
	}
	return errs
}

// errNotPublic is why a dial to a non-public address was refused.
var errNotPublic = errors.New("refusing a non-public address")

// urls is the "urls" enricher.
type urls struct {
	o        URLOptions
	client   *http.Client
	cache    *cache[linkResult]
	hosts    hostLimiter
	requests metrics.Counter
	// permit tells whether an address may be dialled; tests narrow it.
	permit func(netip.Addr) bool
}

// linkResult is one element of the "links" output.
type linkResult struct {
	URL    string `json:"url"`
	Final  string `json:"final,omitempty"`
	Hops   int    `json:"hops"`
	Status int    `json:"status,omitempty"`
	Error  string `json:"error,omitempty"`

	err       error // the error behind Error
	transient bool  // err may go away on a retry: not cached
}

func newURLs(name string, o URLOptions, reg metrics.Registry) *urls {
	u := &urls{
		o:        o,
		cache:    newCache[linkResult](name, o.CacheSize, o.CacheTTL, reg),
		hosts:    hostLimiter{per: int64(o.PerHostConcurrency), hosts: map[string]*hostSlots{}},
		requests: metrics.GetOrRegisterCounter(metricnames.Enricher(name, metricnames.EnricherRequests), reg),
		permit:   public,
	}
	if o.AllowPrivate {
		u.permit = func(netip.Addr) bool { return true }
	}
	dialer := &net.Dialer{
		KeepAlive: 30 * time.Second,
		// Control sees each address after name resolution, just before the
		// connection is made: the only place where DNS (rebinding included)
		// cannot slip a private address past the check.
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || !u.permit(ap.Addr()) {
				return fmt.Errorf("%w %s (allow_private is off)", errNotPublic, ap.Addr())
			}
			return nil
		},
	}
	u.client = &http.Client{
		Transport: &http.Transport{
			// Never a proxy: the address check must see the real target.
			Proxy:                  nil,
			DialContext:            dialer.DialContext,
			ForceAttemptHTTP2:      true,
			MaxIdleConns:           100,
			MaxIdleConnsPerHost:    o.PerHostConcurrency,
			IdleConnTimeout:        30 * time.Second,
			TLSHandshakeTimeout:    10 * time.Second,
			MaxResponseHeaderBytes: 64 << 10,
			DisableCompression:     true,
		},
		// Redirects are followed by hand, one hop at a time, to count hops,
		// detect loops and hold the per-host bound for each hop.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return u
}

// Enrich unwinds a.Links, those not cached concurrently, each under ctx.
func (u *urls) Enrich(ctx context.Context, a *activity.Fields) (json.RawMessage, error) {
	res := make([]linkResult, len(a.Links))
	var wg sync.WaitGroup
	for i, link := range a.Links {
		if i >= u.o.MaxLinks {
			res[i] = linkResult{URL: link, Error: fmt.Sprintf("not unwound: more than max_links (%d) links", u.o.MaxLinks)}
			continue
		}
		if r, ok := u.cache.get(link); ok {
			res[i] = r
			continue
		}
		wg.Go(func() { res[i] = u.unwind(ctx, link) })
	}
	wg.Wait()
	var errs []error
	for _, r := range res {
		if r.transient {
			errs = append(errs, r.err)
		}
	}
	if len(res) > 0 && len(errs) == len(res) {
		return nil, fmt.Errorf("unwinding %d links: %w", len(res), errors.Join(errs...))
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // keep & in query strings readable
	if err := enc.Encode(struct {
		Links []linkResult `json:"links"`
	}{res}); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// unwind follows link and caches the result unless it is transient.
func (u *urls) unwind(ctx context.Context, link string) linkResult {
	// The activity's strings share its record's buffer (activity.Parse):
	// what is cached must not keep that buffer alive.
	link = strings.Clone(link)
	r := u.follow(ctx, link)
	if r.err != nil {
		r.Error = r.err.Error()
	}
	if !r.transient {
		u.cache.add(link, r)
	}
	return r
}

// follow fetches link and the redirects from it, up to MaxHops of them.
func (u *urls) follow(ctx context.Context, link string) linkResult {
	r := linkResult{URL: link}
	cur, err := parseLink(link, nil)
	if err != nil {
		r.err = err
		return r
	}
	seen := map[string]bool{}
	for {
		r.Final, r.Status = cur.String(), 0
		seen[r.Final] = true
		status, loc, err := u.request(ctx, cur)
		if err != nil {
			r.err, r.transient = err, transient(err)
			return r
		}
		r.Status = status
		if !isRedirect(status) || loc == "" {
			if status == http.StatusTooManyRequests || status >= 500 {
				r.err, r.transient = fmt.Errorf("HTTP %d from %s", status, cur.Host), true
			}
			return r
		}
		next, err := parseLink(loc, cur)
		switch {
		case err != nil:
			r.err = fmt.Errorf("redirect to %w", err)
			return r
		case seen[next.String()]:
			r.err = fmt.Errorf("redirect loop back to %s", next)
			return r
		case r.Hops == u.o.MaxHops:
			r.err = fmt.Errorf("more than max_hops (%d) redirects", u.o.MaxHops)
			return r
		}
		r.Hops++
		cur = next
	}
}

// request sends one hop: HEAD, or GET if the server refuses HEAD. It
// returns the status and the Location header.
func (u *urls) request(ctx context.Context, target *url.URL) (int, string, error) {
	release, err := u.hosts.acquire(ctx, strings.ToLower(target.Host))
	if err != nil {
		return 0, "", err
	}
	defer release()
	status, loc, err := u.do(ctx, http.MethodHead, target)
	if err == nil && (status == http.StatusMethodNotAllowed || status == http.StatusNotImplemented) {
		status, loc, err = u.do(ctx, http.MethodGet, target)
	}
	return status, loc, err
}

func (u *urls) do(ctx context.Context, method string, target *url.URL) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, target.String(), nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("User-Agent", u.o.UserAgent)
	u.requests.Inc(1)
	resp, err := u.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the method and URL are in the result already
		}
		return 0, "", err
	}
	// Read a little so that the connection can be reused, never a page.
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	_ = resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Location"), nil
}

// parseLink parses s, relative to base if not nil, as an http or https URL.
func parseLink(s string, base *url.URL) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("invalid URL %q", s)
	}
	if base != nil {
		u = base.ResolveReference(u)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("unsupported URL %q: want http or https", u.Redacted())
	}
	if u.Host == "" {
		return nil, fmt.Errorf("URL %q has no host", u.Redacted())
	}
	u.Fragment = "" // never sent; keeps loop detection exact
	return u, nil
}

func isRedirect(status int) bool {
	switch status {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}

// transient tells whether a request error may go away on a retry: all
// network errors but refused addresses, unknown hosts and bad certificates.
func transient(err error) bool {
	var dns *net.DNSError
	var cert *tls.CertificateVerificationError
	switch {
	case errors.Is(err, errNotPublic), errors.As(err, &cert):
		return false
	case errors.As(err, &dns):
		return !dns.IsNotFound
	}
	return true
}

// nonPublic are the special-purpose ranges (RFC 6890 and successors) that
// netip's predicates do not cover.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, broadcast
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
}

// public tells whether a is a public unicast address: not loopback,
// private, link-local, multicast, unspecified or otherwise special.
func public(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsGlobalUnicast() || a.IsPrivate() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// hostLimiter bounds requests in flight per host. Its map holds only hosts
// with requests in flight or waiting, so it is bounded by them.
type hostLimiter struct {
	per   int64
	mu    sync.Mutex
	hosts map[string]*hostSlots
}

type hostSlots struct {
	sem  *semaphore.Weighted
	refs int // requests holding or waiting for sem
}

// acquire blocks until a request to host may start or ctx ends. The caller
// must call release once the request is done.
func (h *hostLimiter) acquire(ctx context.Context, host string) (release func(), err error) {
	h.mu.Lock()
	s := h.hosts[host]
	if s == nil {
		s = &hostSlots{sem: semaphore.NewWeighted(h.per)}
		h.hosts[host] = s
	}
	s.refs++
	h.mu.Unlock()
	if err := s.sem.Acquire(ctx, 1); err != nil {
		h.unref(host, s)
		return nil, err
	}
	return func() { s.sem.Release(1); h.unref(host, s) }, nil
}

func (h *hostLimiter) unref(host string, s *hostSlots) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.refs--; s.refs == 0 {
		delete(h.hosts, host)
	}
}

// len returns the number of hosts tracked.
func (h *hostLimiter) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.hosts)
}
