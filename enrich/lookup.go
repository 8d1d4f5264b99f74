package enrich

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/bendstream/bend/internal/activity"
	"github.com/bendstream/bend/internal/metricnames"
	metrics "github.com/rcrowley/go-metrics"
	"golang.org/x/sync/singleflight"
)

// LookupOptions are the options of a "lookup" enricher, which GETs a JSON
// document from an HTTP service at a URL built from the activity and
// reports it as is (compacted): the body of a 2xx response, or null on 404
// or 204 and for an activity without the fields the URL needs. Any other
// status, a body that is not JSON and one larger than MaxBytes fail the
// attempt, so that it is retried. Results, null included, are cached, and
// concurrent lookups of one URL share one request.
type LookupOptions struct {
	// URL is the template of the URL: "{id}" and "{author.id}" are replaced
	// by the activity's fields, escaped for their place (path or query).
	// Placeholders may appear only after the host. Required.
	URL string `mapstructure:"url"`
	// Token, if set, is sent as "Authorization: Bearer <token>".
	Token string `mapstructure:"token"`
	// TokenFile names a file holding the token (surrounding space trimmed),
	// read once by Build; it keeps the secret out of config.yaml. Not
	// together with token.
	TokenFile string `mapstructure:"token_file"`
	// MaxBytes bounds the response body. Default 65536.
	MaxBytes int64 `mapstructure:"max_bytes"`
	// CacheSize bounds the cached results. Default 10000.
	CacheSize int `mapstructure:"cache_size"`
	// CacheTTL is how long a result stays cached. Default 1m.
	CacheTTL time.Duration `mapstructure:"cache_ttl"`
}

func (o LookupOptions) withDefaults() LookupOptions {
	if o.MaxBytes == 0 {
		o.MaxBytes = 64 << 10
	}
	if o.CacheSize == 0 {
		o.CacheSize = 10000
	}
	if o.CacheTTL == 0 {
		o.CacheTTL = time.Minute
	}
	return o
}

func (o LookupOptions) validate(key string) []error {
	var errs []error
	if o.URL == "" {
		errs = append(errs, fmt.Errorf("%s.url: required", key))
	} else if _, err := parseTemplate(o.URL); err != nil {
		errs = append(errs, fmt.Errorf("%s.url: %w", key, err))
	}
	if o.Token != "" && o.TokenFile != "" {
		errs = append(errs, fmt.Errorf("%s.token_file: set together with token; choose one", key))
	}
	if o.MaxBytes < 1 {
		errs = append(errs, fmt.Errorf("%s.max_bytes: must be at least 1, got %d", key, o.MaxBytes))
	}
	if o.CacheSize < 1 {
		errs = append(errs, fmt.Errorf("%s.cache_size: must be at least 1, got %d", key, o.CacheSize))
	}
	if o.CacheTTL < 0 {
		errs = append(errs, fmt.Errorf("%s.cache_ttl: must not be negative", key))
	}
	return errs
}

// lookup is the "lookup" enricher.
type lookup struct {
	o        LookupOptions
	tmpl     urlTemplate
	token    string
	client   *http.Client
	cache    *cache[json.RawMessage]
	flight   singleflight.Group
	requests metrics.Counter
}

var jsonNull = json.RawMessage("null")

func newLookup(name string, o LookupOptions, reg metrics.Registry) (*lookup, error) {
	tmpl, err := parseTemplate(o.URL)
	if err != nil {
		return nil, err
	}
	l := &lookup{
		o: o, tmpl: tmpl, token: o.Token,
		cache:    newCache[json.RawMessage](name, o.CacheSize, o.CacheTTL, reg),
		requests: metrics.GetOrRegisterCounter(metricnames.Enricher(name, metricnames.EnricherRequests), reg),
	}
	if o.TokenFile != "" {
		b, err := os.ReadFile(o.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("reading token_file: %w", err)
		}
		l.token = strings.TrimSpace(string(b))
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	tr.IdleConnTimeout = 30 * time.Second
	l.client = &http.Client{Transport: tr}
	return l, nil
}

// Enrich looks the activity up, in the cache first. The request runs under
// ctx. A lookup of a URL already being fetched by another attempt waits for
// that request (or for its own ctx) and shares its outcome, failure included.
func (l *lookup) Enrich(ctx context.Context, a *activity.Fields) (json.RawMessage, error) {
	target, ok := l.tmpl.render(a)
	if !ok {
		return jsonNull, nil
	}
	if v, ok := l.cache.get(target); ok {
		return v, nil
	}
	ch := l.flight.DoChan(target, func() (any, error) {
		v, err := l.fetch(ctx, target)
		if err == nil {
			l.cache.add(target, v)
		}
		return v, err
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(json.RawMessage), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// fetch GETs target and returns its compacted JSON, or null on 404 or 204.
func (l *lookup) fetch(ctx context.Context, target string) (json.RawMessage, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if l.token != "" {
		req.Header.Set("Authorization", "Bearer "+l.token)
	}
	l.requests.Inc(1)
	resp, err := l.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("GET %s: %w", target, err)
	}
	defer func() { _ = resp.Body.Close() }()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusNoContent:
		return jsonNull, nil
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return nil, fmt.Errorf("GET %s: HTTP %d", target, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, l.o.MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", target, err)
	}
	if int64(len(body)) > l.o.MaxBytes {
		return nil, fmt.Errorf("GET %s: response larger than max_bytes (%d)", target, l.o.MaxBytes)
	}
	// Compacted, because the result is spliced into one line of NDJSON.
	var b bytes.Buffer
	if err := json.Compact(&b, body); err != nil {
		return nil, fmt.Errorf("GET %s: response is not JSON: %w", target, err)
	}
	return b.Bytes(), nil
}

// urlTemplate is a parsed LookupOptions.URL.
type urlTemplate []tmplPart

// tmplPart is a literal, or a field placeholder when field is set.
type tmplPart struct {
	lit   string
	field string // "id" or "author.id"
	query bool   // in the query: query-escaped, else path-escaped
}

// parseTemplate parses an http(s) URL template with {id} and {author.id}
// placeholders after its host.
func parseTemplate(s string) (urlTemplate, error) {
	var t urlTemplate
	var probe strings.Builder // s with every placeholder replaced by "x"
	inQuery := false
	for rest := s; rest != ""; {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			t = append(t, tmplPart{lit: rest})
			probe.WriteString(rest)
			inQuery = inQuery || strings.ContainsRune(rest, '?')
			break
		}
		if i > 0 {
			t = append(t, tmplPart{lit: rest[:i]})
			probe.WriteString(rest[:i])
			inQuery = inQuery || strings.ContainsRune(rest[:i], '?')
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("unclosed { in %q", s)
		}
		field := rest[i+1 : i+j]
		if field != "id" && field != "author.id" {
			return nil, fmt.Errorf("unknown placeholder {%s} in %q (have {id}, {author.id})", field, s)
		}
		if p := probe.String(); !strings.Contains(p, "://") || !strings.Contains(p[strings.Index(p, "://")+3:], "/") {
			return nil, fmt.Errorf("placeholder {%s} before the path in %q: the host must be fixed", field, s)
		}
		t = append(t, tmplPart{field: field, query: inQuery})
		probe.WriteString("x")
		rest = rest[i+j+1:]
	}
	u, err := url.Parse(probe.String())
	if err != nil {
		return nil, fmt.Errorf("invalid URL %q: %w", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("want an http or https URL with a host, got %q", s)
	}
	return t, nil
}

// render returns the URL for a, or false if a field it needs is empty.
func (t urlTemplate) render(a *activity.Fields) (string, bool) {
	var b strings.Builder
	for _, p := range t {
		if p.field == "" {
			b.WriteString(p.lit)
			continue
		}
		v := keyOf(a, p.field)
		switch {
		case v == "":
			return "", false
		case p.query:
			b.WriteString(url.QueryEscape(v))
		case v == "." || v == "..":
			b.WriteString(strings.Repeat("%2E", len(v))) // never a path step
		default:
			b.WriteString(url.PathEscape(v))
		}
	}
	return b.String(), true
}
