package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// bodyChunk is how much of a request body is read, and given room in
// ingest's buffer, at a time.
const bodyChunk = 32 << 10

// bom is the UTF-8 byte order mark, which some writers put before the first
// line; it is not part of the JSON and is dropped.
var bom = []byte{0xEF, 0xBB, 0xBF}

// errSaturated reports that a body's next bytes found no room in ingest's
// buffer within ingest.http.admit_wait.
var errSaturated = errors.New("no room in ingest's buffer within ingest.http.admit_wait")

// slowBodyError reports a body that arrived too slowly: under
// ingest.http.min_bytes_per_second over a window, or not complete within
// ingest.http.read_timeout.
type slowBodyError struct {
	cfg     HTTPConfig
	got     int64 // bytes of the last window
	timeout bool  // read_timeout passed (else the rate was too low)
}

func (e *slowBodyError) Error() string {
	if e.timeout {
		return fmt.Sprintf("the body did not arrive within %s (ingest.http.read_timeout)", e.cfg.ReadTimeout)
	}
	return fmt.Sprintf("the body is arriving too slowly: %d bytes in %s, under %d bytes/s (ingest.http.min_bytes_per_second)",
		e.got, e.cfg.MinRateWindow, e.cfg.MinBytesPerSecond)
}

// contentEncoding reports whether r's body is gzip-compressed, and false ok
// for an encoding the receiver does not decode.
func contentEncoding(r *http.Request) (gz, ok bool) {
	switch strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))) {
	case "", "identity":
		return false, true
	case "gzip", "x-gzip":
		return true, true
	}
	return false, false
}

// readBody reads r's whole body (gunzipped if gz), taking room in ingest's
// buffer for each chunk as it arrives and waiting up to admit_wait for it
// (else errSaturated). held is the room taken, which the caller releases,
// also on error. It fails with *http.MaxBytesError beyond max_body_bytes
// (decompressed, so a gzip bomb stops there), and with *slowBodyError when
// the body arrives under min_bytes_per_second or past read_timeout.
func (h *httpSource) readBody(w http.ResponseWriter, r *http.Request, gz bool) (body []byte, held int64, err error) {
	h.uploads.Add(1)
	defer func() {
		h.uploads.Add(-1)
		h.reading.Add(-held)
	}()
	rr := newRateReader(r.Body, http.NewResponseController(w), h.cfg, time.Now())
	defer func() {
		rr.finish()
		h.m.bytes.Inc(rr.total)
	}()
	var src io.Reader = http.MaxBytesReader(w, rr, h.cfg.MaxBodyBytes)
	if gz {
		zr, err := gzip.NewReader(src)
		if err != nil {
			return nil, 0, fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		src = &capReader{r: zr, left: h.cfg.MaxBodyBytes}
	}
	buf := make([]byte, bodyChunk)
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if err := h.admit(r.Context(), int64(n), rr); err != nil {
				return body, held, err
			}
			held += int64(n)
			h.reading.Add(int64(n))
			body = append(body, buf[:n]...)
		}
		switch {
		case rerr == io.EOF:
			return body, held, nil
		case rerr != nil && gz && !isBodyLimit(rerr):
			return body, held, fmt.Errorf("gzip: %w", rerr)
		case rerr != nil:
			return body, held, rerr
		}
	}
}

// isBodyLimit reports whether err is the body limit or the rate limit, which
// keep their own answers when they surface through gzip.
func isBodyLimit(err error) bool {
	var tooBig *http.MaxBytesError
	var slow *slowBodyError
	return errors.As(err, &tooBig) || errors.As(err, &slow)
}

// admit takes room for n more body bytes, waiting up to admit_wait. Time
// spent waiting does not count against the client's transfer rate.
func (h *httpSource) admit(ctx context.Context, n int64, rr *rateReader) error {
	start := time.Now()
	actx, cancel := context.WithTimeout(ctx, h.cfg.AdmitWait)
	err := h.in.reserve(actx, 0, n)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return errSaturated
	}
	if time.Since(start) > time.Millisecond {
		rr.restart()
	}
	return nil
}

// saturated says why ingest's buffer is full: uploads still arriving hold
// most of it, or Kafka has not acknowledged what was sent.
func (h *httpSource) saturated() string {
	recs, n := h.in.win.held()
	reading := h.reading.Load()
	if reading > 0 && 2*reading >= n {
		return fmt.Sprintf("ingest's buffer is full: %d of its %d bytes (ingest.max_buffered_bytes) are held by %d uploads still being received; retry later",
			reading, h.in.cfg.MaxBufferedBytes, h.uploads.Load())
	}
	return fmt.Sprintf("ingest's buffer is full: %d records (%d bytes) are waiting for Kafka's acknowledgement (Kafka is slow or down); retry later",
		recs, n-reading)
}

// reject logs a refused request, at most once per rejectLogEvery for the
// whole receiver, with the first invalid event of bad if any.
func (h *httpSource) reject(r *http.Request, status int, msg string, bad []invalid) {
	h.quietMu.Lock()
	skipped, ok := h.quiet.allow(time.Now(), rejectLogEvery)
	h.quietMu.Unlock()
	if !ok {
		return
	}
	f := logrus.Fields{"status": status, "remote": r.RemoteAddr, "unlogged_since": skipped}
	if len(bad) > 0 {
		f["invalid"], f["reason"] = len(bad), bad[0].Reason
		if bad[0].Element > 0 {
			f["element"] = bad[0].Element
		} else {
			f["line"] = bad[0].Line
		}
	}
	h.log.WithFields(f).Warn("request rejected: " + msg)
}

// rateReader reads a request body, cutting it off when a window of
// cfg.MinRateWindow brings fewer than MinBytesPerSecond*MinRateWindow bytes:
// it moves the connection's read deadline to the end of the current window
// whenever a window's worth has arrived. Not safe for concurrent use.
type rateReader struct {
	r     io.ReadCloser
	rc    *http.ResponseController
	cfg   HTTPConfig
	need  int64     // bytes each window must bring; 0: no minimum
	until time.Time // read_timeout's deadline
	n     int64     // bytes of the current window
	total int64     // bytes read
}

func newRateReader(r io.ReadCloser, rc *http.ResponseController, cfg HTTPConfig, now time.Time) *rateReader {
	rr := &rateReader{r: r, rc: rc, cfg: cfg, until: now.Add(cfg.ReadTimeout)}
	if cfg.MinBytesPerSecond > 0 {
		rr.need = max(1, int64(float64(cfg.MinBytesPerSecond)*cfg.MinRateWindow.Seconds()))
		rr.restart()
	}
	return rr
}

// restart begins a new window now.
func (rr *rateReader) restart() {
	if rr.need == 0 {
		return
	}
	rr.n = 0
	end := time.Now().Add(rr.cfg.MinRateWindow)
	if end.After(rr.until) {
		end = rr.until
	}
	_ = rr.rc.SetReadDeadline(end) // http.ErrNotSupported: read_timeout still applies
}

// finish puts back read_timeout's deadline, which net/http keeps for the
// rest of the request.
func (rr *rateReader) finish() {
	if rr.need > 0 {
		_ = rr.rc.SetReadDeadline(rr.until)
	}
}

func (rr *rateReader) Read(p []byte) (int, error) {
	n, err := rr.r.Read(p)
	rr.n += int64(n)
	rr.total += int64(n)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		return n, &slowBodyError{cfg: rr.cfg, got: rr.n, timeout: rr.need == 0 || !time.Now().Before(rr.until)}
	}
	if rr.need > 0 && rr.n >= rr.need {
		rr.restart()
	}
	return n, err
}

func (rr *rateReader) Close() error { return rr.r.Close() }

// capReader fails with *http.MaxBytesError once more than left bytes are
// read from r.
type capReader struct {
	r     io.Reader
	left  int64
	limit int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.limit == 0 {
		c.limit = c.left
	}
	if int64(len(p)) > c.left+1 {
		p = p[:c.left+1]
	}
	n, err := c.r.Read(p)
	if int64(n) > c.left {
		n = int(c.left)
		c.left = 0
		return n, &http.MaxBytesError{Limit: c.limit}
	}
	c.left -= int64(n)
	return n, err
}

// trimBOM drops a UTF-8 byte order mark at the start of b.
func trimBOM(b []byte) []byte { return bytes.TrimPrefix(b, bom) }
