package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/bendstream/bend/internal/metricnames"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
)

// FileConfig is the "sink.file" section of config.yaml; FlushInterval,
// BufferBytes and RetryBackoff also apply to stdout.
type FileConfig struct {
	// Path of the NDJSON file to append to. Empty disables the file output. Default "".
	Path string `mapstructure:"path"`
	// FlushInterval bounds how long a record waits in the write buffer;
	// records are acknowledged after the flush. Default 100ms.
	FlushInterval time.Duration `mapstructure:"flush_interval"`
	// Fsync syncs the file before acknowledging a flush. Default false.
	Fsync bool `mapstructure:"fsync"`
	// BufferBytes is the write buffer size: a full buffer is flushed at
	// once, and while writes fail Send blocks once it is full. Default 1 MiB.
	BufferBytes int `mapstructure:"buffer_bytes"`
	// RetryBackoff is the first wait before retrying a failed write (a full
	// disk, say); it doubles up to 10s. Records are never skipped. Default 100ms.
	RetryBackoff time.Duration `mapstructure:"retry_backoff"`
	// RotateBytes starts a new file once the current one reaches this size;
	// 0 never rotates by size. Default 0.
	RotateBytes int64 `mapstructure:"rotate_bytes"`
	// RotateInterval starts a new file this long after the current one was
	// opened; 0 never rotates by time. Rotated files are renamed
	// PATH.YYYYmmddTHHMMSS.NNNNNNNNN. Default 0.
	RotateInterval time.Duration `mapstructure:"rotate_interval"`
}

// DefaultFileConfig returns the documented defaults.
func DefaultFileConfig() FileConfig {
	return FileConfig{FlushInterval: 100 * time.Millisecond, BufferBytes: 1 << 20, RetryBackoff: 100 * time.Millisecond}
}

// Validate reports every invalid field by its config.yaml key.
func (c FileConfig) Validate() error {
	var errs []error
	if c.FlushInterval <= 0 {
		errs = append(errs, errors.New("sink.file.flush_interval: must be positive"))
	}
	if c.BufferBytes < 4096 {
		errs = append(errs, fmt.Errorf("sink.file.buffer_bytes: must be at least 4096, got %d", c.BufferBytes))
	}
	if c.RetryBackoff <= 0 {
		errs = append(errs, errors.New("sink.file.retry_backoff: must be positive"))
	}
	if c.RotateBytes < 0 {
		errs = append(errs, errors.New("sink.file.rotate_bytes: must not be negative"))
	}
	if c.RotateInterval < 0 {
		errs = append(errs, errors.New("sink.file.rotate_interval: must not be negative"))
	}
	return errors.Join(errs...)
}

// writerOutput appends NDJSON lines to a buffer that a flusher writes out,
// acknowledging the records after each successful write (and fsync, if
// configured). A failed write is retried with backoff until it succeeds;
// meanwhile Send blocks once the buffer is full, which stops intake. A
// broken pipe (the reader of stdout went away) is final: the records not
// written are nacked, so they are redelivered, and Send fails from then on.
//
// The buffer is double: the flusher takes what Send appended and writes it
// without holding mu, so a slow write or fsync never blocks Send (and so
// the sink's other outputs) until the second buffer is full too.
type writerOutput struct {
	cfg  FileConfig
	name string // the path, or "stdout"
	log  logrus.FieldLogger
	errs metrics.Counter
	open func(path string) (*os.File, int64, error) // openAppend; tests inject failures
	sync func(*os.File) error                       // (*os.File).Sync; tests inject slowness

	mu      sync.Mutex
	buf     []byte
	pending []*Record
	broken  error         // set once the output can never be written again
	dead    chan struct{} // closed when broken is set
	space   chan struct{} // signalled when the flusher took the buffer
	kick    chan struct{} // asks the flusher to flush now

	// Owned by the flusher (and by Close once the flusher stopped).
	w          io.Writer
	f          *os.File // the file output's file; nil for stdout, or while it must be reopened
	reopen     bool     // a rotation closed f and has not opened the new file yet
	opened     time.Time
	size       int64
	out        []byte    // taken from buf, not yet written
	outPending []*Record // records of out

	stop chan struct{}
	done chan struct{}
}

func newFileOutput(cfg FileConfig, log logrus.FieldLogger, reg metrics.Registry) (*writerOutput, error) {
	f, size, err := openAppend(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("sink.file.path: %w", err)
	}
	o := newWriterOutput(f, f, cfg, log, reg)
	o.size = size
	return o, nil
}

func openAppend(path string) (*os.File, int64, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

func newStdoutOutput(cfg FileConfig, log logrus.FieldLogger, reg metrics.Registry) *writerOutput {
	return newWriterOutput(os.Stdout, nil, cfg, log, reg)
}

func newWriterOutput(w io.Writer, f *os.File, cfg FileConfig, log logrus.FieldLogger, reg metrics.Registry) *writerOutput {
	name := "stdout"
	if f != nil {
		name = f.Name()
	}
	o := &writerOutput{cfg: cfg, name: name, log: log, errs: metrics.GetOrRegisterCounter(metricnames.SinkFileWriteErrs, reg),
		open: openAppend, sync: (*os.File).Sync,
		w: w, f: f, opened: time.Now(), buf: make([]byte, 0, cfg.BufferBytes), out: make([]byte, 0, cfg.BufferBytes),
		dead: make(chan struct{}), space: make(chan struct{}, 1), kick: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	go o.flusher()
	return o
}

// Send appends r's value and a newline. It blocks while the buffer is full
// and cannot be written out; if ctx ends first it returns ctx.Err(). Once
// the output is broken it returns that error.
func (o *writerOutput) Send(ctx context.Context, r *Record) error {
	v := oneLine(r.Value)
	for {
		o.mu.Lock()
		if err := o.broken; err != nil {
			o.mu.Unlock()
			return err
		}
		if len(o.buf) == 0 || len(o.buf)+len(v)+1 <= o.cfg.BufferBytes {
			o.buf = append(o.buf, v...)
			o.buf = append(o.buf, '\n')
			o.pending = append(o.pending, r)
			full := len(o.buf) >= o.cfg.BufferBytes
			o.mu.Unlock()
			if full {
				o.signal(o.kick)
			}
			return nil
		}
		o.mu.Unlock()
		o.signal(o.kick)
		select {
		case <-o.space:
		case <-o.dead:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (o *writerOutput) signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (o *writerOutput) flusher() {
	defer close(o.done)
	backoff := o.cfg.RetryBackoff
	t := time.NewTimer(o.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-o.kick:
		case <-o.stop:
			return
		}
		wait := o.cfg.FlushInterval
		if err := o.flush(); err != nil {
			if o.isBroken() {
				return
			}
			o.errs.Inc(1)
			o.log.WithError(err).Warnf("sink output write failed; retrying in %s (intake stops while the buffer is full)", backoff)
			wait, backoff = backoff, min(2*backoff, 10*time.Second)
		} else {
			backoff = o.cfg.RetryBackoff
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(wait)
	}
}

func (o *writerOutput) isBroken() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.broken != nil
}

// flush writes out what the flusher holds, or else takes Send's buffer and
// writes that, acknowledges the records written, and rotates the file if it
// is due. mu is held only to take the buffer, never across I/O. On error the
// unwritten rest stays held for the next flush. Only the flusher calls it
// (and Close, after the flusher stopped).
func (o *writerOutput) flush() error {
	if len(o.out) == 0 && len(o.outPending) == 0 {
		o.mu.Lock()
		o.out, o.buf = o.buf, o.out[:0]
		o.outPending, o.pending = o.pending, o.outPending[:0]
		o.mu.Unlock()
		o.signal(o.space)
	}
	if o.reopen {
		if err := o.reopenFile(); err != nil {
			return err
		}
	}
	if len(o.out) == 0 && len(o.outPending) == 0 {
		return nil
	}
	if len(o.out) > 0 {
		n, err := o.w.Write(o.out)
		o.size += int64(n)
		if err == nil && n < len(o.out) {
			err = io.ErrShortWrite
		}
		// Keep what was not written; its records stay pending.
		o.out = o.out[:copy(o.out, o.out[n:])]
		if errors.Is(err, syscall.EPIPE) {
			return o.fail(err)
		}
		if err != nil {
			return err
		}
	}
	if o.f != nil && o.cfg.Fsync {
		if err := o.sync(o.f); err != nil {
			return fmt.Errorf("fsync: %w", err)
		}
	}
	for i, r := range o.outPending {
		r.done(nil)
		o.outPending[i] = nil
	}
	o.outPending = o.outPending[:0]
	return o.rotate()
}

// fail marks the output broken by err: it nacks every record not written
// and makes Send fail from now on.
func (o *writerOutput) fail(err error) error {
	err = fmt.Errorf("sink output %s: %w: its reader went away; the records not written are not acknowledged and will be redelivered", o.name, err)
	o.mu.Lock()
	if o.broken == nil {
		o.broken = err
		close(o.dead)
	}
	left := o.pending
	o.pending, o.buf = nil, o.buf[:0]
	o.mu.Unlock()
	n := len(o.outPending) + len(left)
	for _, r := range o.outPending {
		r.done(err)
	}
	for _, r := range left {
		r.done(err)
	}
	o.out, o.outPending = o.out[:0], nil
	o.log.WithError(err).WithField("unwritten", n).Error("sink output broken; stopping")
	return err
}

// rotate starts a new file when the current one is due. Once it closed the
// current file, a failure leaves reopen set, so that the next flush opens
// the file again (appending) and nothing is lost.
func (o *writerOutput) rotate() error {
	if o.f == nil {
		return nil
	}
	bySize := o.cfg.RotateBytes > 0 && o.size >= o.cfg.RotateBytes
	byAge := o.cfg.RotateInterval > 0 && time.Since(o.opened) >= o.cfg.RotateInterval
	if !bySize && !byAge {
		return nil
	}
	path := o.f.Name()
	err := o.f.Close()
	o.f, o.w, o.reopen = nil, nil, true
	if err != nil {
		return fmt.Errorf("closing %s for rotation: %w", path, err)
	}
	rotated := path + "." + time.Now().UTC().Format("20060102T150405.000000000")
	if err := os.Rename(path, rotated); err != nil {
		return fmt.Errorf("rotating %s: %w", path, err)
	}
	return o.reopenFile()
}

// reopenFile opens the file output's path after a rotation closed it.
func (o *writerOutput) reopenFile() error {
	f, size, err := o.open(o.name)
	if err != nil {
		return fmt.Errorf("reopening %s: %w", o.name, err)
	}
	o.f, o.w, o.size, o.opened, o.reopen = f, f, size, time.Now(), false
	return nil
}

// Close stops the flusher and writes out what is left, retrying with
// backoff up to CloseTimeout-like bounds: after 10 failed attempts the
// remaining records are nacked (their offsets are not committed).
func (o *writerOutput) Close() error {
	close(o.stop)
	<-o.done
	backoff := o.cfg.RetryBackoff
	var err error
	for range 10 {
		if err = o.flush(); err == nil {
			// What Send appended meanwhile, if anything.
			if err = o.flush(); err == nil {
				break
			}
		}
		if o.isBroken() {
			break
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 2*time.Second)
	}
	o.mu.Lock()
	left := append(o.outPending, o.pending...)
	o.pending, o.outPending = nil, nil
	o.mu.Unlock()
	for _, r := range left {
		r.done(fmt.Errorf("sink output closed before the record was written: %w", err))
	}
	if o.f != nil {
		err = errors.Join(err, o.f.Close())
	}
	if o.isBroken() {
		return nil // logged once, by fail; Send reported it
	}
	return err
}

// oneLine returns v as one NDJSON line: a value holding a line break (a
// pretty-printed event, valid JSON whose whitespace spans lines) is
// compacted, since a break inside a JSON string is always escaped; any
// other value is returned as it is, without a copy.
func oneLine(v []byte) []byte {
	if bytes.IndexByte(v, '\n') < 0 && bytes.IndexByte(v, '\r') < 0 {
		return v
	}
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		// Not JSON (a producer's raw bytes): break no line of the output.
		return bytes.ReplaceAll(bytes.ReplaceAll(v, []byte{'\n'}, []byte{' '}), []byte{'\r'}, []byte{' '})
	}
	return b.Bytes()
}
