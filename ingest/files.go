package ingest

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/bendstream/bend/internal/metricnames"
	"github.com/bendstream/bend/internal/ndjson"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
)

// filesSource replays NDJSON files, and standard input for "-", once, in
// order. Each file's summary is logged, and ingest.files.done counted, once
// Kafka acknowledged every record read from it. When the last file is done
// the source returns; ingest runs on until stopped.
type filesSource struct {
	check *checker
	cfg   FilesConfig
	stdin io.Reader
	log   logrus.FieldLogger
	m     *sourceMetrics
	done  metrics.Counter
}

func newFilesSource(cfg FilesConfig, stdin io.Reader, in *Ingest) (*filesSource, error) {
	for i, p := range cfg.Paths {
		if p == "-" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("ingest.files.paths[%d]: %w", i, err)
		}
	}
	chk, err := in.formatChecker(cfg.FormatConfig, "ingest.files", "files")
	if err != nil {
		return nil, err
	}
	return &filesSource{cfg: cfg, stdin: stdin, check: chk,
		log:  in.log.WithField("source", "files"),
		m:    in.sourceMetrics("files"),
		done: metrics.GetOrRegisterCounter(metricnames.IngestFilesDone, in.reg),
	}, nil
}

func (s *filesSource) Name() string { return "files" }

// Run replays every file and returns nil, or the first error reading one
// (the rest of that file, and the files after it, are not replayed). If ctx
// ends first it returns nil.
func (s *filesSource) Run(ctx context.Context, in *Ingest) error {
	for _, p := range s.cfg.Paths {
		if err := s.replay(ctx, in, p); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	return nil
}

// progressEvery is how many lines pass between looks at the clock.
const progressEvery = 1024

func (s *filesSource) replay(ctx context.Context, in *Ingest, path string) error {
	name, size := path, int64(-1)
	var r io.Reader
	if path == "-" {
		name, r = "stdin", s.stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			size = st.Size()
		}
		r = f
	}
	log := s.log.WithField("file", name)
	raw := &countingReader{r: r, c: s.m.bytes}
	var src io.Reader = raw
	if strings.HasSuffix(path, ".gz") {
		gz, err := gzip.NewReader(raw)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		defer gz.Close()
		src = gz
	}

	start := time.Now()
	next := start.Add(s.cfg.Progress)
	f := &feeder{in: in, m: s.m, log: log, check: s.check}
	a := newAcks(nil)
	events, rejected := s.m.events.Count(), s.m.rejected.Count()
	rd := ndjson.NewReader(src, in.cfg.MaxEventBytes)
	for count := 1; ; count++ {
		line, n, err := rd.Next()
		var le *ndjson.LineError
		if err == io.EOF {
			break
		}
		if err != nil && !errors.As(err, &le) {
			a.seal()
			return fmt.Errorf("%s: reading line %d: %w", name, rd.Line()+1, err)
		}
		if err := f.feed(ctx, line, n, err, a); err != nil {
			a.seal()
			return err
		}
		if s.cfg.Progress > 0 && count%progressEvery == 0 && time.Now().After(next) {
			next = time.Now().Add(s.cfg.Progress)
			log.WithField("lines", n).Info(progress(raw.n, size))
		}
	}
	a.seal()
	if err := a.wait(ctx); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	s.done.Inc(1)
	log.WithFields(logrus.Fields{
		"lines":    rd.Line(),
		"events":   s.m.events.Count() - events,
		"rejected": s.m.rejected.Count() - rejected,
		"bytes":    raw.n,
		"took":     time.Since(start).Round(time.Millisecond),
	}).Info("file replayed; Kafka acknowledged every event")
	return nil
}

// progress describes how far a replay got: read of size bytes (size < 0:
// unknown).
func progress(read, size int64) string {
	if size <= 0 {
		return fmt.Sprintf("replaying: %s read", mib(read))
	}
	return fmt.Sprintf("replaying: %s of %s read (%.0f%%)", mib(read), mib(size), 100*float64(read)/float64(size))
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
