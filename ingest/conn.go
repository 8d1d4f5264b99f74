package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/bendstream/bend/internal/activity"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
)

// ConnConfig is the connection settings every source that dials its
// publisher shares (stream, jetstream, sse), squashed into the source's
// section: keys ingest.<source>.url, .token, .token_file, .min_backoff,
// .max_backoff, .idle_timeout.
type ConnConfig struct {
	// URL is the publisher's address: http or https for stream and sse,
	// ws or wss for jetstream. Required when the source is enabled.
	URL string `mapstructure:"url"`
	// Token, when set, is sent as "Authorization: Bearer <token>". Set it
	// from the environment (BEND_INGEST_<SOURCE>_TOKEN) or use TokenFile
	// rather than writing it into config.yaml. Never logged. Default empty.
	Token Secret `mapstructure:"token"`
	// TokenFile names a file holding the token (surrounding whitespace is
	// trimmed), read at start-up. Exclusive with Token. Default empty.
	TokenFile string `mapstructure:"token_file"`
	// MinBackoff is the wait before the first reconnection; it doubles on
	// every failed attempt up to MaxBackoff, with jitter (a random wait in
	// [d/2, d]). A connection that delivered events resets it. Default 100ms.
	MinBackoff time.Duration `mapstructure:"min_backoff"`
	// MaxBackoff caps the wait between reconnections. Default 30s.
	MaxBackoff time.Duration `mapstructure:"max_backoff"`
	// IdleTimeout drops a connection (and reconnects) when the publisher
	// sends nothing for this long while ingest is ready to read; time spent
	// blocked on Kafka does not count. Default 60s.
	IdleTimeout time.Duration `mapstructure:"idle_timeout"`
}

func defaultConnConfig() ConnConfig {
	return ConnConfig{MinBackoff: 100 * time.Millisecond, MaxBackoff: 30 * time.Second, IdleTimeout: 60 * time.Second}
}

// validate reports every invalid field by its key, prefix.<key> (such as
// ingest.sse.url); schemes are the URL schemes accepted.
func (c ConnConfig) validate(prefix string, schemes ...string) []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf(prefix+"."+key+": "+format, args...))
	}
	if u, err := url.Parse(c.URL); err != nil {
		bad("url", "%v", err)
	} else if !slices.Contains(schemes, u.Scheme) || u.Host == "" {
		bad("url", "want an absolute %s URL, got %q", strings.Join(schemes, " or "), c.URL)
	}
	if c.Token != "" && c.TokenFile != "" {
		bad("token_file", "set token or token_file, not both")
	}
	if c.MinBackoff <= 0 {
		bad("min_backoff", "must be positive, got %s", c.MinBackoff)
	}
	if c.MaxBackoff < c.MinBackoff {
		bad("max_backoff", "must be at least %s.min_backoff (%s), got %s", prefix, c.MinBackoff, c.MaxBackoff)
	}
	if c.IdleTimeout <= 0 {
		bad("idle_timeout", "must be positive, got %s", c.IdleTimeout)
	}
	return errs
}

// connNames are the metric names of a dialling source's connections.
type connNames struct{ connects, disconnects, reconnects, connectErrors string }

// conn is what a dialling source shares with the others: its settings,
// token, log, format checker and metrics. A source uses it from its one
// Run goroutine.
type conn struct {
	cfg   ConnConfig
	token Secret
	log   logrus.FieldLogger
	check *checker
	m     *sourceMetrics

	connects, disconnects, reconnects, connectErrors metrics.Counter
}

// newConn reads the token and builds the connection state and checker
// (of format fc) of the source whose section is ingest.<source>.
func (in *Ingest) newConn(source string, cfg ConnConfig, fc activity.FormatConfig, names connNames) (*conn, error) {
	tok, err := readToken(cfg.Token, cfg.TokenFile, "ingest."+source+".token_file")
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("ingest.%s.url: %w", source, err)
	}
	chk, err := in.formatChecker(fc, "ingest."+source, source)
	if err != nil {
		return nil, err
	}
	// The URL without credentials or query, for logs.
	where := u.Scheme + "://" + u.Host + u.Path
	return &conn{cfg: cfg, token: tok, check: chk, m: in.sourceMetrics(source),
		log:           in.log.WithFields(logrus.Fields{"source": source, "url": where}),
		connects:      metrics.GetOrRegisterCounter(names.connects, in.reg),
		disconnects:   metrics.GetOrRegisterCounter(names.disconnects, in.reg),
		reconnects:    metrics.GetOrRegisterCounter(names.reconnects, in.reg),
		connectErrors: metrics.GetOrRegisterCounter(names.connectErrors, in.reg),
	}, nil
}

// feeder is the feeder of the source's events into in.
func (c *conn) feeder(in *Ingest) *feeder {
	return &feeder{in: in, m: c.m, log: c.log, check: c.check}
}

// authorize adds the bearer token, if any, to h.
func (c *conn) authorize(h http.Header) {
	if c.token != "" {
		h.Set("Authorization", "Bearer "+string(c.token))
	}
}

// httpClient is the client of a source that reads a long-lived HTTP
// response: no overall timeout (the stream lasts), bounded dial, TLS
// handshake and wait for the response headers.
func (c *conn) httpClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: c.cfg.IdleTimeout,
		ForceAttemptHTTP2:     true,
	}}
}

// connectFailed counts a failed connection attempt and returns its error
// for the log: without the url.Error wrapping, whose message repeats the
// URL, query included.
func (c *conn) connectFailed(err error) error {
	c.connectErrors.Inc(1)
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("connecting: %w", err)
}

// connected counts an open connection and logs it with fields; the
// returned function counts its end.
func (c *conn) connected(msg string, fields logrus.Fields) (ended func()) {
	c.connects.Inc(1)
	c.log.WithFields(fields).Info(msg)
	return func() { c.disconnects.Inc(1) }
}

// pause logs why a connection ended (err, in msg) and waits before
// reconnection attempt number attempt (from 0), backing off from lo to hi
// with jitter. It returns false, at once, when ctx ends.
func (c *conn) pause(ctx context.Context, attempt int, lo, hi time.Duration, msg string, err error) bool {
	wait := backoff(attempt, lo, hi, rand.Float64())
	c.log.WithError(err).WithField("retry_in", wait.Round(time.Millisecond)).Warn(msg)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		c.reconnects.Inc(1)
		return true
	case <-ctx.Done():
		return false
	}
}

// backoff returns the wait before reconnection attempt number attempt
// (from 0): lo doubled attempt times, capped at hi, times a jitter factor
// 0.5+u/2 for u in [0, 1), so that clients cut off together do not come
// back together.
func backoff(attempt int, lo, hi time.Duration, u float64) time.Duration {
	d := lo
	for i := 0; i < attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return time.Duration(float64(d) * (0.5 + u/2))
}

// get opens a long-lived GET of u with the token and the headers h, on
// client. It returns the response when the publisher answered 200; else it
// counts the failure and returns why. The caller closes the body.
func (c *conn) get(ctx context.Context, client *http.Client, u string, h http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	maps.Copy(req.Header, h)
	c.authorize(req.Header)
	resp, err := client.Do(req)
	if err != nil {
		return nil, c.connectFailed(err)
	}
	if resp.StatusCode != http.StatusOK {
		c.connectErrors.Inc(1)
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, fmt.Errorf("server answered %s", resp.Status)
	}
	return resp, nil
}
