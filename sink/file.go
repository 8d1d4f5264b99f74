package sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
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
// meanwhile Send blocks once the buffer is full, which stops intake.
type writerOutput struct {
	cfg  FileConfig
	log  logrus.FieldLogger
	errs metrics.Counter

	mu      sync.Mutex
	w       io.Writer
	f       *os.File // the file output's file; nil for stdout
	opened  time.Time
	size    int64
	buf     []byte
	pending []*Record
	space   chan struct{} // signalled after a successful flush
	kick    chan struct{} // asks the flusher to flush now

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
	o := &writerOutput{cfg: cfg, log: log, errs: metrics.GetOrRegisterCounter(metricnames.SinkFileWriteErrs, reg),
		w: w, f: f, opened: time.Now(), buf: make([]byte, 0, cfg.BufferBytes),
		space: make(chan struct{}, 1), kick: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	go o.flusher()
	return o
}

// Send appends r's value and a newline. It blocks while the buffer is full
// and cannot be written out; if ctx ends first it returns ctx.Err().
func (o *writerOutput) Send(ctx context.Context, r *Record) error {
	for {
		o.mu.Lock()
		if len(o.buf) == 0 || len(o.buf)+len(r.Value)+1 <= o.cfg.BufferBytes {
			o.buf = append(o.buf, r.Value...)
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

// flush writes the buffer out, acknowledges what it held, and rotates the
// file if it is due. On error the unwritten rest stays buffered.
func (o *writerOutput) flush() error {
	o.mu.Lock()
	if len(o.buf) == 0 && len(o.pending) == 0 {
		o.mu.Unlock()
		return nil
	}
	if len(o.buf) > 0 {
		n, err := o.w.Write(o.buf)
		o.size += int64(n)
		if err == nil && n < len(o.buf) {
			err = io.ErrShortWrite
		}
		// Keep what was not written; its records stay pending.
		o.buf = append(o.buf[:0], o.buf[n:]...)
		if err != nil {
			o.mu.Unlock()
			return err
		}
	}
	if o.f != nil && o.cfg.Fsync {
		if err := o.f.Sync(); err != nil {
			o.mu.Unlock()
			return fmt.Errorf("fsync: %w", err)
		}
	}
	acked := o.pending
	o.pending = nil
	rotErr := o.rotateLocked()
	o.mu.Unlock()
	for _, r := range acked {
		r.done(nil)
	}
	o.signal(o.space)
	return rotErr
}

// rotateLocked starts a new file when the current one is due.
func (o *writerOutput) rotateLocked() error {
	if o.f == nil {
		return nil
	}
	bySize := o.cfg.RotateBytes > 0 && o.size >= o.cfg.RotateBytes
	byAge := o.cfg.RotateInterval > 0 && time.Since(o.opened) >= o.cfg.RotateInterval
	if !bySize && !byAge {
		return nil
	}
	path := o.f.Name()
	if err := o.f.Close(); err != nil {
		return fmt.Errorf("closing %s for rotation: %w", path, err)
	}
	rotated := path + "." + time.Now().UTC().Format("20060102T150405.000000000")
	if err := os.Rename(path, rotated); err != nil {
		return fmt.Errorf("rotating %s: %w", path, err)
	}
	f, size, err := openAppend(path)
	if err != nil {
		return fmt.Errorf("reopening %s: %w", path, err)
	}
	o.f, o.w, o.size, o.opened = f, f, size, time.Now()
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
			break
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 2*time.Second)
	}
	o.mu.Lock()
	left := o.pending
	o.pending = nil
	o.mu.Unlock()
	for _, r := range left {
		r.done(fmt.Errorf("sink output closed before the record was written: %w", err))
	}
	if o.f != nil {
		err = errors.Join(err, o.f.Close())
	}
	return err
}
