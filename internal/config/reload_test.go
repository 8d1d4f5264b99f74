package config

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

func TestChanged(t *testing.T) {
	base := Default()
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   []string
	}{
		{"nothing", func(*Config) {}, nil},
		{"tunables", func(c *Config) { c.Enrich.Workers = 9; c.Distributor.Delay = time.Minute; c.Log.Level = "debug" },
			[]string{"distributor.delay", "enrich.workers", "log.level"}},
		{"restart keys", func(c *Config) { c.Kafka.Brokers = []string{"a:1"}; c.Admin.Addr = "" },
			[]string{"admin.addr", "kafka.brokers"}},
		{"squashed synthetic key", func(c *Config) { c.Ingest.Synthetic.Rate = 1 }, []string{"ingest.synthetic.rate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.change(&c)
			if got := Changed(base, c); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Changed = %q, want %q", got, tc.want)
			}
		})
	}
}

// applied records what a Reloader applied.
type applied struct {
	mu   sync.Mutex
	cfgs []Config
}

func (a *applied) apply(c Config) { a.mu.Lock(); a.cfgs = append(a.cfgs, c); a.mu.Unlock() }

func (a *applied) last() (Config, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.cfgs) == 0 {
		return Config{}, 0
	}
	return a.cfgs[len(a.cfgs)-1], len(a.cfgs)
}

func newTestReloader(t *testing.T, body string) (*Reloader, *applied, *test.Hook, string) {
	t.Helper()
	path := writeFile(t, body)
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	log, hook := test.NewNullLogger()
	log.SetOutput(io.Discard)
	a := &applied{}
	return NewReloader(path, cfg, a.apply, log), a, hook, path
}

func logged(hook *test.Hook, level logrus.Level, substr string) bool {
	for _, e := range hook.AllEntries() {
		if e.Level == level && strings.Contains(e.Message, substr) {
			return true
		}
	}
	return false
}

func TestReloadAppliesTunablesOnly(t *testing.T) {
	r, a, hook, path := newTestReloader(t, "enrich:\n  workers: 4\ndistributor:\n  delay: 2s\n")
	body := "enrich:\n  workers: 8\ndistributor:\n  delay: 5s\n  group: other\nlog:\n  level: debug\n"
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	got, n := a.last()
	if n != 1 {
		t.Fatalf("apply called %d times, want 1", n)
	}
	if got.Enrich.Workers != 8 || got.Distributor.Delay != 5*time.Second || got.Log.Level != "debug" {
		t.Errorf("applied workers %d delay %s level %s, want 8 5s debug", got.Enrich.Workers, got.Distributor.Delay, got.Log.Level)
	}
	if got.Distributor.Group != "bend" {
		t.Errorf("applied distributor.group %q; a restart key must keep its running value bend", got.Distributor.Group)
	}
	if !logged(hook, logrus.WarnLevel, "changing distributor.group needs a restart") {
		t.Errorf("restart key not logged as needing a restart; log: %v", messages(hook))
	}
	if !logged(hook, logrus.InfoLevel, "applied enrich.workers") {
		t.Errorf("applied key not logged; log: %v", messages(hook))
	}
	if r.Current().Enrich.Workers != 8 {
		t.Errorf("Current().Enrich.Workers = %d, want 8", r.Current().Enrich.Workers)
	}

	// Reloading the same file again changes nothing and applies nothing.
	if err := r.Reload(); err != nil {
		t.Fatalf("second Reload: %v", err)
	}
	if _, n := a.last(); n != 1 {
		t.Errorf("apply called %d times after an unchanged reload, want 1", n)
	}
}

func TestReloadRejectsInvalidConfig(t *testing.T) {
	r, a, hook, path := newTestReloader(t, "enrich:\n  workers: 4\n")
	if err := os.WriteFile(path, []byte("enrich:\n  workers: -1\n  wrokers: 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := r.Reload()
	if err == nil {
		t.Fatal("Reload of an invalid file succeeded")
	}
	if _, n := a.last(); n != 0 {
		t.Errorf("apply called %d times for an invalid file", n)
	}
	if r.Current().Enrich.Workers != 4 {
		t.Errorf("configuration in force changed to workers %d", r.Current().Enrich.Workers)
	}
	if !logged(hook, logrus.ErrorLevel, "reload rejected") {
		t.Errorf("rejection not logged: %v", messages(hook))
	}
}

func TestRunReloadsOnFileChangeAndHUP(t *testing.T) {
	r, a, _, path := newTestReloader(t, "enrich:\n  workers: 4\n")
	ctx, cancel := context.WithCancel(context.Background())
	hup := make(chan os.Signal, 1)
	done := make(chan struct{})
	go func() { r.Run(ctx, hup); close(done) }()
	defer func() {
		cancel()
		<-done
	}()
	waitApplied := func(what string, want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if c, n := a.last(); n > 0 && c.Enrich.Workers == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: workers %d never applied", what, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Give the watcher a moment to be set up before the first write.
	time.Sleep(200 * time.Millisecond)

	if err := os.WriteFile(path, []byte("enrich:\n  workers: 6\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitApplied("write in place", 6)

	// Replace by rename, as editors and Kubernetes do.
	tmp := filepath.Join(filepath.Dir(path), ".config.yaml.tmp")
	if err := os.WriteFile(tmp, []byte("enrich:\n  workers: 7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	waitApplied("rename over the file", 7)

	// SIGHUP reloads even when the watcher saw nothing: simulate a change
	// the watcher cannot see by updating the environment.
	t.Setenv("BEND_ENRICH_WORKERS", "3")
	hup <- os.Interrupt // any signal value: Run does not look at it
	waitApplied("hup", 3)
}

func messages(hook *test.Hook) []string {
	var out []string
	for _, e := range hook.AllEntries() {
		out = append(out, e.Level.String()+": "+e.Message)
	}
	return out
}
