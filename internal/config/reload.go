package config

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/go-viper/mapstructure/v2"
	"github.com/sirupsen/logrus"
)

// Changed returns the config.yaml keys whose values differ between a and b,
// sorted. A list (kafka.brokers, enrich.enrichers) is one key.
func Changed(a, b Config) []string {
	fa, fb := flat(a), flat(b)
	var keys []string
	for k, va := range fa {
		if vb, ok := fb[k]; !ok || !reflect.DeepEqual(va, vb) {
			keys = append(keys, k)
		}
	}
	for k := range fb {
		if _, ok := fa[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// flat returns c as config.yaml keys and values.
func flat(c Config) map[string]any {
	var m map[string]any
	if err := mapstructure.Decode(c, &m); err != nil {
		// Decoding a Config into a map cannot fail: every field is plain data.
		panic(fmt.Sprintf("config: encoding configuration: %v", err))
	}
	return flatten("", m)
}

// Reloader re-reads the configuration file when it changes, on SIGHUP and
// on demand, and applies the tunable keys of a valid new configuration:
// enrich.workers, distributor.delay and log.level. Changing any other key
// needs a restart. Safe for concurrent use.
type Reloader struct {
	path  string // "" reads ./config.yaml if it exists, as Load does
	apply func(Config)
	log   logrus.FieldLogger

	mu  sync.Mutex
	cur Config // in force
}

// NewReloader returns a Reloader for the file at path ("" means
// ./config.yaml if it exists, as for Load), with cur the configuration in
// force. apply receives the configuration in force after each reload that
// changed a tunable key, and must apply every tunable key of it; it is called
// with no lock held, one call at a time.
func NewReloader(path string, cur Config, apply func(Config), log logrus.FieldLogger) *Reloader {
	return &Reloader{path: path, cur: cur, apply: apply, log: log}
}

// Current returns the configuration in force.
func (r *Reloader) Current() Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur
}

// Reload reads the configuration now, as Load does (file, environment,
// validation). If it is invalid, Reload logs and returns Load's error and
// the configuration in force stays. Otherwise each changed tunable key is
// applied and logged with its old and new value, and every other changed
// key is logged as needing a restart and ignored.
func (r *Reloader) Reload() error {
	next, err := Load(r.path)
	if err != nil {
		r.log.WithError(err).Error("configuration reload rejected; keeping the configuration in force")
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	changed := Changed(r.cur, next)
	if len(changed) == 0 {
		r.log.Info("configuration reloaded: nothing changed")
		return nil
	}
	old, neu := flat(r.cur), flat(next)
	cur := r.cur
	tuned := false
	for _, k := range changed {
		fields := logrus.Fields{"key": k, "old": old[k], "new": neu[k]}
		switch k {
		case "enrich.workers":
			cur.Enrich.Workers = next.Enrich.Workers
		case "distributor.delay":
			cur.Distributor.Delay = next.Distributor.Delay
			fields["old"], fields["new"] = r.cur.Distributor.Delay.String(), next.Distributor.Delay.String()
		case "log.level":
			cur.Log.Level = next.Log.Level
		default:
			r.log.WithFields(fields).Warn("changing " + k + " needs a restart; ignored")
			continue
		}
		tuned = true
		r.log.WithFields(fields).Info("configuration reloaded: applied " + k)
	}
	r.cur = cur
	if tuned {
		r.apply(cur)
	}
	return nil
}

// watchable returns the absolute path of the file Reload reads ("" if
// none) and its content now.
func (r *Reloader) watchable() (string, []byte) {
	file := r.path
	if file == "" {
		if _, err := os.Stat("config.yaml"); err != nil {
			return "", nil
		}
		file = "config.yaml"
	}
	if abs, err := filepath.Abs(file); err == nil {
		file = abs
	}
	b, _ := os.ReadFile(file)
	return file, b
}

// Run reloads when the configuration file changes (debounced: a burst of
// writes is one reload) and on every value from hup, until ctx ends. It
// watches the file's directory, so a file replaced by rename (editors,
// Kubernetes ConfigMaps) is seen; a file whose content did not change is not
// reloaded. Without a file, or if the watch cannot be set up (logged), it
// only serves hup.
func (r *Reloader) Run(ctx context.Context, hup <-chan os.Signal) {
	var events <-chan fsnotify.Event
	var errs <-chan error
	file, last := r.watchable()
	if file != "" {
		w, err := fsnotify.NewWatcher()
		if err == nil {
			err = w.Add(filepath.Dir(file))
		}
		if err != nil {
			r.log.WithError(err).WithField("file", file).Warn("not watching the configuration file; reload with SIGHUP")
		} else {
			defer w.Close()
			events, errs = w.Events, w.Errors
		}
	}
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-hup:
			r.log.WithField("signal", s).Info("reloading the configuration")
			if b, err := os.ReadFile(file); err == nil {
				last = b
			}
			_ = r.Reload() // logged by Reload
		case ev := <-events:
			// Kubernetes swaps a "..data" symlink; editors rename over the file.
			if filepath.Clean(ev.Name) == file || strings.HasPrefix(filepath.Base(ev.Name), "..") {
				debounce.Reset(100 * time.Millisecond)
			}
		case err := <-errs:
			r.log.WithError(err).Warn("watching the configuration file")
		case <-debounce.C:
			b, err := os.ReadFile(file)
			if err != nil || bytes.Equal(b, last) {
				continue // removed (a rename in progress) or unchanged
			}
			last = b
			r.log.WithField("file", file).Info("configuration file changed; reloading")
			_ = r.Reload() // logged by Reload
		}
	}
}
