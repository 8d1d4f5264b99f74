package sink

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// FileConfig is the "sink.file" section of config.yaml; FlushInterval also
// applies to stdout.
type FileConfig struct {
	// Path of the NDJSON file to append to. Empty disables the file output. Default "".
	Path string `mapstructure:"path"`
	// FlushInterval bounds how long a record waits in the write buffer;
	// records are acknowledged after the flush. Default 100ms.
	FlushInterval time.Duration `mapstructure:"flush_interval"`
	// Fsync syncs the file before acknowledging a flush. Default false.
	Fsync bool `mapstructure:"fsync"`
	// BufferBytes is the write buffer size; a full buffer is flushed at once. Default 1 MiB.
	BufferBytes int `mapstructure:"buffer_bytes"`
}

// DefaultFileConfig returns the documented defaults.
func DefaultFileConfig() FileConfig {
	return FileConfig{FlushInterval: 100 * time.Millisecond, BufferBytes: 1 << 20}
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
	return errors.Join(errs...)
}

// writerOutput appends NDJSON lines to a buffered writer and acknowledges
// them after each flush (and fsync, if configured).
type writerOutput struct {
	mu      sync.Mutex
	w       *bufio.Writer
	f       *os.File // nil for stdout: no fsync, not closed
	fsync   bool
	pending []*Record
	err     error // sticky write error: every later record fails

	stop chan struct{}
	done chan struct{}
}

func newFileOutput(cfg FileConfig) (*writerOutput, error) {
	f, err := os.OpenFile(cfg.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("sink.file.path: %w", err)
	}
	return newWriterOutput(f, f, cfg), nil
}

func newStdoutOutput(cfg FileConfig) *writerOutput { return newWriterOutput(os.Stdout, nil, cfg) }

func newWriterOutput(w io.Writer, f *os.File, cfg FileConfig) *writerOutput {
	o := &writerOutput{w: bufio.NewWriterSize(w, cfg.BufferBytes), f: f, fsync: cfg.Fsync && f != nil,
		stop: make(chan struct{}), done: make(chan struct{})}
	go o.flusher(cfg.FlushInterval)
	return o
}

func (o *writerOutput) flusher(every time.Duration) {
	defer close(o.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			o.mu.Lock()
			o.flushLocked()
			o.mu.Unlock()
		case <-o.stop:
			return
		}
	}
}

// Send appends r's value and a newline. A full buffer is flushed at once.
func (o *writerOutput) Send(_ context.Context, r *Record) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err == nil && len(r.Value)+1 > o.w.Available() && o.w.Buffered() > 0 {
		o.flushLocked()
	}
	if o.err == nil {
		_, _ = o.w.Write(r.Value)
		o.err = o.w.WriteByte('\n')
	}
	o.pending = append(o.pending, r)
	if o.err != nil {
		o.flushLocked()
	}
	return nil
}

// flushLocked writes the buffer out and acknowledges what it held. A write
// error is sticky: those records and every later one are nacked, so their
// offsets are never committed.
func (o *writerOutput) flushLocked() {
	if len(o.pending) == 0 {
		return
	}
	if o.err == nil {
		o.err = o.w.Flush()
	}
	if o.err == nil && o.fsync {
		o.err = o.f.Sync()
	}
	for _, r := range o.pending {
		r.done(o.err)
	}
	clear(o.pending)
	o.pending = o.pending[:0]
}

// Close flushes, acknowledges and closes the file.
func (o *writerOutput) Close() error {
	close(o.stop)
	<-o.done
	o.mu.Lock()
	defer o.mu.Unlock()
	o.flushLocked()
	if o.f != nil {
		return errors.Join(o.err, o.f.Close())
	}
	return o.err
}
