package ingest

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/metricnames"
	"github.com/bendstream/bend/internal/ndjson"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
)

// maxListed caps the invalid events named in one answer.
const maxListed = 100

// httpSource is the HTTP receiver. Each request's events are published
// together and the request is answered only once Kafka acknowledged every
// record it produced:
//
//	200  every event accepted: {"accepted":N}
//	400  invalid events, named by line (NDJSON) or element (JSON array) with
//	     the reason; with on_invalid=reject nothing was published, with
//	     dead_letter the valid events were accepted and the invalid ones
//	     dead-lettered (do not resend either way); or a body that is not
//	     NDJSON or one JSON array (nothing published)
//	401  missing or wrong bearer token
//	405  not a POST; 404 another path
//	413  body over max_body_bytes, or events over ingest.max_event_bytes
//	     (named; nothing published)
//	503  with Retry-After: ingest's buffer stayed full for admit_wait
//	     (nothing published), Kafka did not acknowledge within ack_timeout
//	     (some events may be in Kafka: a resend may duplicate them), or
//	     ingest is stopping
type httpSource struct {
	cfg   HTTPConfig
	token Secret
	in    *Ingest
	ln    net.Listener
	srv   *http.Server
	log   logrus.FieldLogger
	m     *sourceMetrics
	chunk int64 // records reserved at a time
	check *checker

	requests                                       metrics.Meter
	throttled, unauthorized, tooLarge, badRequests metrics.Counter

	mu       sync.Mutex
	stopping bool
	handlers sync.WaitGroup // handlers running; Add only under mu while !stopping
}

func newHTTPSource(cfg HTTPConfig, in *Ingest) (*httpSource, error) {
	tok, err := readToken(cfg.Token, cfg.TokenFile, "ingest.http.token_file")
	if err != nil {
		return nil, err
	}
	chk, err := in.formatChecker(cfg.FormatConfig, "ingest.http", "http")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("ingest.http.addr: %w", err)
	}
	reg := in.reg
	h := &httpSource{cfg: cfg, token: tok, in: in, ln: ln, check: chk,
		log:          in.log.WithField("source", "http"),
		m:            in.sourceMetrics("http"),
		chunk:        max(1, in.cfg.Producer.MaxInFlight/2),
		requests:     in.meters.meter(metricnames.IngestHTTPRequests),
		throttled:    metrics.GetOrRegisterCounter(metricnames.IngestHTTPThrottled, reg),
		unauthorized: metrics.GetOrRegisterCounter(metricnames.IngestHTTPUnauth, reg),
		tooLarge:     metrics.GetOrRegisterCounter(metricnames.IngestHTTPTooLarge, reg),
		badRequests:  metrics.GetOrRegisterCounter(metricnames.IngestHTTPBadRequests, reg),
	}
	h.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(10*time.Second, cfg.ReadTimeout),
		ReadTimeout:       cfg.ReadTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.New(debugWriter{h.log}, "", 0),
	}
	return h, nil
}

func (h *httpSource) Name() string { return "http" }

// Run serves until ctx ends, then stops accepting requests and lets those
// in progress finish (up to ingest.close_timeout, then closes their
// connections). It returns only after every handler has returned, so none
// touches the producer after Run.
func (h *httpSource) Run(ctx context.Context, in *Ingest) error {
	if h.token == "" {
		h.log.Warn("ingest.http has no token: accepting unauthenticated requests")
	}
	h.log.WithField("addr", h.ln.Addr().String()).Infof("HTTP receiver listening on %s", h.cfg.Path)
	errc := make(chan error, 1)
	go func() { errc <- h.srv.Serve(h.ln) }()
	var err error
	select {
	case err = <-errc:
		err = fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), in.cfg.CloseTimeout)
		if serr := h.srv.Shutdown(sctx); serr != nil {
			h.log.WithError(serr).Warn("requests still running at ingest.close_timeout; closing their connections")
			h.srv.Close()
		}
		cancel()
		<-errc
	}
	h.mu.Lock()
	h.stopping = true
	h.mu.Unlock()
	h.handlers.Wait()
	return err
}

// enter registers a handler; false means Run is returning.
func (h *httpSource) enter() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopping {
		return false
	}
	h.handlers.Add(1)
	return true
}

// answer is the JSON body of every reply of the HTTP receiver.
type answer struct {
	// Accepted counts the events Kafka acknowledged on the topic.
	Accepted int `json:"accepted"`
	// DeadLettered counts the invalid events Kafka acknowledged on the
	// dead-letter topic.
	DeadLettered int `json:"dead_lettered,omitempty"`
	// Error says what went wrong, if anything.
	Error string `json:"error,omitempty"`
	// Invalid names up to maxListed invalid events.
	Invalid []invalid `json:"invalid,omitempty"`
	// Unlisted counts invalid events beyond those named.
	Unlisted int `json:"invalid_unlisted,omitempty"`
}

// invalid names one invalid event of a request.
type invalid struct {
	Line    int    `json:"line,omitempty"`    // NDJSON line number, from 1
	Element int    `json:"element,omitempty"` // JSON array element number, from 1
	Reason  string `json:"reason"`
}

// item is one event of a request.
type item struct {
	n      int
	value  []byte
	key    []byte
	kind   string // of a non-activity event
	fields []byte // its bend-fields header
	reason error
}

func (h *httpSource) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.enter() {
		h.throttle(w, answer{Error: "ingest is stopping"})
		return
	}
	defer h.handlers.Done()
	h.requests.Mark(1)
	switch {
	case r.URL.Path != h.cfg.Path:
		reply(w, http.StatusNotFound, answer{Error: "no such path; POST events to " + h.cfg.Path})
	case r.Method != http.MethodPost:
		w.Header().Set("Allow", http.MethodPost)
		reply(w, http.StatusMethodNotAllowed, answer{Error: "POST NDJSON or a JSON array of events"})
	case !h.authorized(r):
		h.unauthorized.Inc(1)
		w.Header().Set("WWW-Authenticate", `Bearer realm="bend"`)
		reply(w, http.StatusUnauthorized, answer{Error: "missing or invalid bearer token"})
	case r.ContentLength > h.cfg.MaxBodyBytes:
		h.tooLarge.Inc(1)
		reply(w, http.StatusRequestEntityTooLarge, answer{Error: fmt.Sprintf(
			"body of %d bytes is over the limit of %d (ingest.http.max_body_bytes)", r.ContentLength, h.cfg.MaxBodyBytes)})
	default:
		h.serve(w, r)
	}
}

// authorized checks the bearer token in constant time.
func (h *httpSource) authorized(r *http.Request) bool {
	if h.token == "" {
		return true
	}
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), []byte(h.token)) == 1
}

// serve handles an authorized POST of acceptable length.
func (h *httpSource) serve(w http.ResponseWriter, r *http.Request) {
	in := h.in
	// Take room for the whole body before reading it, so that bodies being
	// read count against ingest.max_buffered_bytes too. The room is held
	// until Kafka acknowledged every record (their values point into body).
	held := r.ContentLength
	if held < 0 {
		held = h.cfg.MaxBodyBytes
	}
	actx, cancel := context.WithTimeout(r.Context(), h.cfg.AdmitWait)
	err := in.reserve(actx, 0, held)
	cancel()
	if err != nil {
		if r.Context().Err() == nil {
			h.throttle(w, answer{Error: "ingest is saturated (Kafka is slow or down); retry later"})
		}
		return
	}
	releaseBody := func() { in.release(0, held) }

	body, err := readBody(w, r, h.cfg.MaxBodyBytes)
	if err != nil {
		releaseBody()
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.tooLarge.Inc(1)
			reply(w, http.StatusRequestEntityTooLarge, answer{Error: fmt.Sprintf(
				"body is over the limit of %d bytes (ingest.http.max_body_bytes)", h.cfg.MaxBodyBytes)})
			return
		}
		h.badRequests.Inc(1)
		reply(w, http.StatusBadRequest, answer{Error: "reading the body: " + err.Error()})
		return
	}
	h.m.bytes.Inc(int64(len(body)))
	in.release(0, held-int64(len(body)))
	held = int64(len(body))

	items, array, err := h.parse(body)
	if err != nil || len(items) == 0 {
		releaseBody()
		h.badRequests.Inc(1)
		if err == nil {
			err = errors.New("no events")
		}
		reply(w, http.StatusBadRequest, answer{Error: "body: " + err.Error()})
		return
	}
	var bad, large []invalid
	for _, it := range items {
		if it.reason == nil {
			continue
		}
		inv := invalid{Reason: quoteReason(it.reason)}
		if array {
			inv.Element = it.n
		} else {
			inv.Line = it.n
		}
		bad = append(bad, inv)
		if errors.Is(it.reason, errTooLarge) {
			large = append(large, inv)
		}
	}
	if len(large) > 0 || (len(bad) > 0 && in.cfg.OnInvalid == OnInvalidReject) {
		releaseBody()
		in.rejected.Inc(int64(len(bad)))
		h.m.rejected.Inc(int64(len(bad)))
		a := answer{Error: fmt.Sprintf("%d of %d events invalid; nothing was accepted (ingest.on_invalid: %s)", len(bad), len(items), in.cfg.OnInvalid)}
		status := http.StatusBadRequest
		if len(large) > 0 {
			h.tooLarge.Inc(1)
			status, bad = http.StatusRequestEntityTooLarge, large
			a.Error = fmt.Sprintf("%d events over the limit of %d bytes (ingest.max_event_bytes); nothing was accepted", len(large), in.cfg.MaxEventBytes)
		} else {
			h.badRequests.Inc(1)
		}
		a.Invalid, a.Unlisted = listed(bad)
		reply(w, status, a)
		return
	}

	acks := newAcks(releaseBody)
	deadline := time.Now().Add(h.cfg.AckTimeout)
	sent, err := h.publish(r.Context(), items, acks, deadline)
	acks.seal()
	if err != nil {
		if r.Context().Err() == nil {
			msg := "ingest is saturated (Kafka is slow or down); retry later"
			if sent > 0 {
				msg = fmt.Sprintf("Kafka is too slow: %d of %d events were sent and may be written; a resend may duplicate them", sent, len(items))
			}
			h.throttle(w, answer{Error: msg})
		}
		return
	}
	wctx, cancel := context.WithDeadline(r.Context(), deadline)
	err = acks.wait(wctx)
	cancel()
	if err != nil {
		if r.Context().Err() == nil {
			h.throttle(w, answer{Error: fmt.Sprintf("Kafka did not acknowledge every event within %s (%v); some may be written: a resend may duplicate them", h.cfg.AckTimeout, err)})
		}
		return
	}
	a := answer{Accepted: len(items) - len(bad), DeadLettered: len(bad)}
	if len(bad) == 0 {
		reply(w, http.StatusOK, a)
		return
	}
	h.badRequests.Inc(1)
	a.Error = fmt.Sprintf("%d of %d events invalid: dead-lettered; the others were accepted (do not resend)", len(bad), len(items))
	a.Invalid, a.Unlisted = listed(bad)
	reply(w, http.StatusBadRequest, a)
}

// publish sends a record for every item: the event, or its dead letter. It
// reserves room for up to h.chunk records at a time, waiting admit_wait for
// the first chunk and until deadline for the others. It returns how many
// records it sent, and an error if it could not send them all (a sent
// record's acknowledgement still goes to acks).
func (h *httpSource) publish(ctx context.Context, items []item, acks *acks, deadline time.Time) (sent int, err error) {
	in := h.in
	for len(items) > 0 {
		k := min(int64(len(items)), h.chunk)
		wait := h.cfg.AdmitWait
		if sent > 0 {
			wait = time.Until(deadline)
		}
		rctx, cancel := context.WithTimeout(ctx, wait)
		err := in.reserve(rctx, k, 0)
		cancel()
		if err != nil {
			return sent, err
		}
		for i, it := range items[:k] {
			var m *sarama.ProducerMessage
			if it.reason == nil {
				m = in.record(h.m, h.check, verdict{key: it.key, kind: it.kind, fields: it.fields}, it.value)
			} else {
				in.rejected.Inc(1)
				h.m.rejected.Inc(1)
				m = in.deadLetter("http", it.value, it.reason, it.n)
			}
			// The body's bytes are held by the request, not the record.
			if err := in.send(ctx, m, 0, h.m, it.reason != nil, acks.add()); err != nil {
				acks.cancel()
				in.release(k-int64(i)-1, 0) // the chunk's unsent records
				return sent, err
			}
			sent++
		}
		items = items[k:]
	}
	return sent, nil
}

// parse splits body into events, a JSON array if it starts with '[' (array
// is then true), else NDJSON, and checks each. It fails only if body is
// neither.
func (h *httpSource) parse(body []byte) (items []item, array bool, err error) {
	var check func(n int, v []byte)
	check = func(n int, v []byte) {
		it := item{n: n, value: v}
		var vd verdict
		vd, it.reason = h.check.verdict(v)
		if it.reason == nil && vd.kind != "" && h.check.format != nil {
			if parts := h.check.format.Split(v); parts != nil {
				for _, p := range parts { // a container of several events
					check(n, p)
				}
				return
			}
		}
		if it.reason == nil && h.check.drops(vd) {
			return // a non-activity event dropped by ingest.http.non_activity
		}
		it.key, it.kind, it.fields = vd.key, vd.kind, vd.fields
		items = append(items, it)
	}
	if t := bytes.TrimLeft(body, " \t\r\n"); len(t) > 0 && t[0] == '[' {
		elems, err := ndjson.SplitArray(body)
		if err != nil {
			return nil, true, err
		}
		for i, e := range elems {
			check(i+1, e)
		}
		return items, true, nil
	}
	for n, line := range ndjson.Lines(body) {
		check(n, line)
	}
	return items, false, nil
}

// readBody reads the whole body, failing with *http.MaxBytesError beyond
// limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	rd := http.MaxBytesReader(w, r.Body, limit)
	if r.ContentLength >= 0 {
		b := make([]byte, r.ContentLength)
		_, err := io.ReadFull(rd, b)
		return b, err
	}
	return io.ReadAll(rd)
}

// listed returns the invalid events to name in an answer, and how many are
// left out.
func listed(bad []invalid) ([]invalid, int) {
	if len(bad) > maxListed {
		return bad[:maxListed], len(bad) - maxListed
	}
	return bad, 0
}

// throttle answers 503 with Retry-After.
func (h *httpSource) throttle(w http.ResponseWriter, a answer) {
	h.throttled.Inc(1)
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(h.cfg.RetryAfter.Seconds()))))
	reply(w, http.StatusServiceUnavailable, a)
}

// reply writes a as JSON with status.
func reply(w http.ResponseWriter, status int, a answer) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(a) // the client may be gone; nothing to do then
}

// debugWriter sends net/http's own error log lines (TLS handshake errors,
// bad requests) to the debug level.
type debugWriter struct{ log logrus.FieldLogger }

func (d debugWriter) Write(p []byte) (int, error) {
	d.log.Debug(strings.TrimSpace(string(p)))
	return len(p), nil
}
