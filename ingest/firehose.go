package ingest

import (
	"bufio"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bendstream/bend/internal/synth"
	"github.com/sirupsen/logrus"
)

// FirehoseConfig configures a Firehose. Its keys are the flags of
// `bend firehose`.
type FirehoseConfig struct {
	// Synth configures the generator. Every client gets its own generator,
	// so each stream starts at seq 1 and follows the rate profile from the
	// moment it connects; with a fixed Synth.Seed every client receives the
	// same events.
	Synth synth.Config
	// Token, when set, is the bearer token every client must send
	// ("Authorization: Bearer <token>"; else 401). Default empty (open).
	Token Secret
	// WriteTimeout drops a client that accepts no data for this long.
	// Default 10s.
	WriteTimeout time.Duration
	// FlushInterval is how often buffered events are flushed to a client.
	// Default 50ms.
	FlushInterval time.Duration
}

// DefaultFirehoseConfig returns the defaults: internal/synth's defaults
// (steady 8000 events/s), no token, a 10s write timeout and 50ms flushes.
func DefaultFirehoseConfig() FirehoseConfig {
	return FirehoseConfig{Synth: synth.DefaultConfig(), WriteTimeout: 10 * time.Second, FlushInterval: 50 * time.Millisecond}
}

// Validate reports every invalid field by its flag name (--rate, ...),
// joined with errors.Join.
func (c FirehoseConfig) Validate() error {
	var errs []error
	if err := c.Synth.Validate(); err != nil {
		// synth names its keys "synthetic.spike_rate"; the flag is --spike-rate.
		var list []error
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			list = j.Unwrap()
		} else {
			list = []error{err}
		}
		for _, e := range list {
			key, rest, _ := strings.Cut(strings.TrimPrefix(e.Error(), "synthetic."), ":")
			errs = append(errs, fmt.Errorf("--%s:%s", strings.ReplaceAll(key, "_", "-"), rest))
		}
	}
	if c.WriteTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--write-timeout: must be positive, got %s", c.WriteTimeout))
	}
	if c.FlushInterval <= 0 {
		errs = append(errs, fmt.Errorf("--flush-interval: must be positive, got %s", c.FlushInterval))
	}
	return errors.Join(errs...)
}

// Firehose is a synthetic firehose HTTP server: every GET receives an
// endless (or --limit long) chunked response of NDJSON activities from
// internal/synth, each carrying a gapless seq so that consumers can check
// for loss.
//
// A slow client never makes the server buffer more than a fixed 64 KiB per
// client: the client's own generator blocks on the write (TCP backpressure),
// falls at most one second behind its schedule, and skips (never builds)
// the events beyond that, so seqs stay gapless (synth.Stats.Shortfall,
// logged when the client leaves). A client that accepts nothing for
// WriteTimeout is dropped with a log line. Safe for concurrent use.
type Firehose struct {
	cfg     FirehoseConfig
	log     logrus.FieldLogger
	clients atomic.Int64
	nextID  atomic.Int64
}

// NewFirehose returns a Firehose serving cfg, which must Validate.
func NewFirehose(cfg FirehoseConfig, log logrus.FieldLogger) (*Firehose, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Firehose{cfg: cfg, log: log}, nil
}

// Serve serves on ln until ctx ends, then ends every stream (cleanly, with
// the final chunk), waits for the handlers, and returns nil. It closes ln.
// It returns an error only if serving fails.
func (f *Firehose) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           f,
		ReadHeaderTimeout: 10 * time.Second,
		// Streams end when ctx does: Shutdown alone would wait for them.
		BaseContext: func(net.Listener) context.Context { return ctx },
		ErrorLog:    log.New(debugWriter{f.log}, "", 0),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("firehose: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), f.cfg.WriteTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-errc
	return nil
}

// ServeHTTP streams activities to one client until it leaves, the limit is
// reached, or the server stops.
func (f *Firehose) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := f.log.WithFields(logrus.Fields{"client": f.nextID.Add(1), "remote": r.RemoteAddr})
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "GET the stream", http.StatusMethodNotAllowed)
		return
	}
	if f.cfg.Token != "" {
		scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), []byte(f.cfg.Token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="bend-firehose"`)
			http.Error(w, "missing or invalid bearer token", http.StatusUnauthorized)
			return
		}
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)

	rc := http.NewResponseController(w)
	bw := bufio.NewWriterSize(w, 64<<10)
	var mu sync.Mutex // serializes bw, w and rc between the generator and the flusher
	var werr error    // the first write error, under mu
	failed := func(err error) error {
		if werr == nil {
			werr = err
		}
		return err
	}
	flush := func() error {
		mu.Lock()
		defer mu.Unlock()
		// A write blocked past this deadline fails: the client is dropped.
		if err := rc.SetWriteDeadline(time.Now().Add(f.cfg.WriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return failed(err)
		}
		if err := bw.Flush(); err != nil {
			return failed(err)
		}
		if err := rc.Flush(); err != nil {
			return failed(err)
		}
		return nil
	}
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	if err := flush(); err != nil { // headers out now
		log.WithError(err).Info("client gone before the stream started")
		return
	}
	log.WithField("clients", f.clients.Add(1)).Info("client connected")
	defer f.clients.Add(-1)

	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(f.cfg.FlushInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := flush(); err != nil {
					cancel(err)
					return
				}
			}
		}
	})
	g := synth.NewGenerator(f.cfg.Synth)
	err := g.Run(ctx, func(_ context.Context, value []byte, _, _ string) error {
		mu.Lock()
		defer mu.Unlock()
		if _, err := bw.Write(value); err != nil {
			return failed(err)
		}
		if err := bw.WriteByte('\n'); err != nil {
			return failed(err)
		}
		return nil
	})
	limited := err == nil && ctx.Err() == nil
	cancel(err)
	wg.Wait()
	if limited {
		err = flush()
	}
	st := g.Stats()
	fields := logrus.Fields{"generated": st.Generated, "shortfall": st.Shortfall, "seed": g.Seed()}
	mu.Lock()
	defer mu.Unlock()
	switch {
	case limited && err == nil:
		log.WithFields(fields).Info("client done: limit reached")
	case errors.Is(werr, os.ErrDeadlineExceeded):
		// net/http cancels the request when a write fails, so the write
		// error, not the context, tells a slow client from a gone one.
		log.WithFields(fields).Warnf("dropped slow client: it accepted nothing for %s", f.cfg.WriteTimeout)
	case werr != nil:
		log.WithFields(fields).WithError(werr).Info("client left")
	case r.Context().Err() != nil:
		log.WithFields(fields).Info("client left (or the server is stopping)")
	default:
		log.WithFields(fields).WithError(err).Info("stream ended")
	}
}
