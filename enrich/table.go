package enrich

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bendstream/bend/internal/activity"
	"github.com/bendstream/bend/internal/metricnames"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
)

// TableOptions are the options of a "table" enricher, which looks the
// activity up in a table read from a file and reports the key's row, or
// null for a key that is missing (or empty).
//
// The file is checked for changes (modification time, size, or a new file
// renamed into place) at most every ReloadInterval, by the first lookup
// after it passes; a changed file is read and the new table swapped in
// atomically. A file that fails to read or parse leaves the previous table
// in place, and is logged and counted once. Replace the file by renaming a
// complete one into place, so that no lookup sees it half written.
type TableOptions struct {
	// Path is the file. Required; it must load when bend starts.
	Path string `mapstructure:"path"`
	// Format is "csv": a header row naming the columns, then one row per
	// key, reported as an object of all the row's columns as strings; or
	// "json": one object mapping each key to any JSON value, reported as
	// is. Default: Path's extension, .csv or .json.
	Format string `mapstructure:"format"`
	// KeyField is the activity field looked up: "id" or "author.id".
	// Default "author.id".
	KeyField string `mapstructure:"key_field"`
	// KeyColumn is the CSV column holding the keys. Default: the first.
	KeyColumn string `mapstructure:"key_column"`
	// ReloadInterval is how often the file is checked for changes. Default 5s.
	ReloadInterval time.Duration `mapstructure:"reload_interval"`
}

func (o TableOptions) withDefaults() TableOptions {
	if o.Format == "" {
		o.Format = strings.TrimPrefix(strings.ToLower(filepath.Ext(o.Path)), ".")
	}
	if o.KeyField == "" {
		o.KeyField = "author.id"
	}
	if o.ReloadInterval == 0 {
		o.ReloadInterval = 5 * time.Second
	}
	return o
}

func (o TableOptions) validate(key string) []error {
	var errs []error
	if o.Path == "" {
		errs = append(errs, fmt.Errorf("%s.path: required", key))
	}
	if o.Format != "csv" && o.Format != "json" {
		errs = append(errs, fmt.Errorf("%s.format: want csv or json, got %q (set it when the path's extension is neither)", key, o.Format))
	}
	if o.KeyField != "id" && o.KeyField != "author.id" {
		errs = append(errs, fmt.Errorf("%s.key_field: want id or author.id, got %q", key, o.KeyField))
	}
	if o.KeyColumn != "" && o.Format == "json" {
		errs = append(errs, fmt.Errorf("%s.key_column: only for csv tables", key))
	}
	if o.ReloadInterval < 0 {
		errs = append(errs, fmt.Errorf("%s.reload_interval: must not be negative", key))
	}
	return errs
}

// table is the "table" enricher.
type table struct {
	o   TableOptions
	log logrus.FieldLogger
	now func() time.Time // time.Now; tests replace it

	reloads, reloadErrors metrics.Counter

	rows      atomic.Pointer[tableRows]
	nextCheck atomic.Int64 // unix nanoseconds
	// checkMu is held by the one lookup that checks the file; others go on
	// with the current rows.
	checkMu  sync.Mutex
	failed   os.FileInfo // the file version that failed to load; guarded by checkMu
	lastFail string      // the last reload error logged; guarded by checkMu
}

// tableRows is one loaded version of the file.
type tableRows struct {
	rows map[string]json.RawMessage
	info os.FileInfo // of the file read
}

func newTable(name string, o TableOptions, log logrus.FieldLogger, reg metrics.Registry) (*table, error) {
	t := &table{
		o: o, log: log, now: time.Now,
		reloads:      metrics.GetOrRegisterCounter(metricnames.Enricher(name, metricnames.EnricherReloads), reg),
		reloadErrors: metrics.GetOrRegisterCounter(metricnames.Enricher(name, metricnames.EnricherReloadErrors), reg),
	}
	rows, err := loadTable(o)
	if err != nil {
		return nil, err
	}
	t.rows.Store(rows)
	t.nextCheck.Store(t.now().Add(o.ReloadInterval).UnixNano())
	return t, nil
}

// Enrich returns the row of the activity's key, or null. It does not block:
// the lookup that checks the file for changes reads it, if changed, before
// answering, while the others use the current rows.
func (t *table) Enrich(ctx context.Context, a *activity.Fields) (json.RawMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t.maybeReload()
	if k := keyOf(a, t.o.KeyField); k != "" {
		if v, ok := t.rows.Load().rows[k]; ok {
			return v, nil
		}
	}
	return jsonNull, nil
}

// maybeReload reloads the file if ReloadInterval has passed since the last
// check and the file changed. Only one caller checks at a time.
func (t *table) maybeReload() {
	now := t.now()
	if now.UnixNano() < t.nextCheck.Load() || !t.checkMu.TryLock() {
		return
	}
	defer t.checkMu.Unlock()
	if now.UnixNano() < t.nextCheck.Load() {
		return // another caller just checked
	}
	t.nextCheck.Store(now.Add(t.o.ReloadInterval).UnixNano())
	cur := t.rows.Load()
	fi, err := os.Stat(t.o.Path)
	if err == nil && (sameVersion(cur.info, fi) || (t.failed != nil && sameVersion(t.failed, fi))) {
		return // unchanged, or the version that failed already
	}
	var rows *tableRows
	if err == nil {
		rows, err = loadTable(t.o)
	}
	if err != nil {
		t.failed = fi
		if msg := err.Error(); msg != t.lastFail {
			t.lastFail = msg
			t.reloadErrors.Inc(1)
			t.log.WithError(err).Warn("table did not reload; keeping the previous version")
		}
		return
	}
	t.failed, t.lastFail = nil, ""
	t.rows.Store(rows)
	t.reloads.Inc(1)
	t.log.WithFields(logrus.Fields{"path": t.o.Path, "rows": len(rows.rows)}).Info("table reloaded")
}

// sameVersion tells whether b is the same file, unchanged, as a.
func sameVersion(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.ModTime().Equal(b.ModTime()) && a.Size() == b.Size()
}

// loadTable reads the table file.
func loadTable(o TableOptions) (*tableRows, error) {
	f, err := os.Open(o.Path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat() // of the file actually read, even if renamed over meanwhile
	if err != nil {
		return nil, err
	}
	var rows map[string]json.RawMessage
	if o.Format == "json" {
		rows, err = parseJSONTable(f)
	} else {
		rows, err = parseCSVTable(f, o.KeyColumn)
	}
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", o.Path, err)
	}
	return &tableRows{rows: rows, info: fi}, nil
}

// parseJSONTable reads one JSON object mapping keys to values.
func parseJSONTable(r io.Reader) (map[string]json.RawMessage, error) {
	var raw map[string]json.RawMessage
	if err := json.NewDecoder(r).Decode(&raw); err != nil {
		return nil, fmt.Errorf("want one JSON object mapping keys to values: %w", err)
	}
	if raw == nil {
		return nil, errors.New("want one JSON object mapping keys to values, got null")
	}
	rows := make(map[string]json.RawMessage, len(raw))
	for k, v := range raw {
		// Compacted, because the result is spliced into one line of NDJSON.
		var b bytes.Buffer
		if err := json.Compact(&b, v); err != nil {
			return nil, err
		}
		rows[k] = b.Bytes()
	}
	return rows, nil
}

// parseCSVTable reads a header row and then rows keyed by keyColumn (the
// first column if empty). A later row of the same key replaces an earlier one.
func parseCSVTable(r io.Reader, keyColumn string) (map[string]json.RawMessage, error) {
	cr := csv.NewReader(r)
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("reading the header row: %w", err)
	}
	header[0] = strings.TrimPrefix(header[0], "\ufeff") // a byte-order mark
	key := 0
	if keyColumn != "" {
		if key = slices.Index(header, keyColumn); key < 0 {
			return nil, fmt.Errorf("no key_column %q in the header %v", keyColumn, header)
		}
	}
	names := make([][]byte, len(header))
	for i, h := range header {
		names[i], _ = json.Marshal(h) // a string always marshals
	}
	rows := map[string]json.RawMessage{}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return rows, nil
		}
		if err != nil {
			return nil, err
		}
		b := []byte{'{'}
		for i, v := range rec {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, names[i]...)
			b = append(b, ':')
			q, _ := json.Marshal(v)
			b = append(b, q...)
		}
		rows[rec[key]] = append(b, '}')
	}
}
