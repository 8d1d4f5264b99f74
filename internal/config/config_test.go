package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestShippedConfigIsTheDefaults keeps config.yaml honest: it must parse
// strictly and state exactly the built-in defaults.
func TestShippedConfigIsTheDefaults(t *testing.T) {
	got, err := Load("../../config.yaml")
	if err != nil {
		t.Fatalf("Load(config.yaml): %v", err)
	}
	want := Default()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("config.yaml differs from the defaults:\n got %+v\nwant %+v", got, want)
	}
}

func TestLoadErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown top-level key", "bogus: 1\n", []string{"bogus"}},
		{"unknown nested key", "distributor:\n  dealy: 2s\n", []string{"dealy"}},
		{"bad duration", "distributor:\n  delay: soon\n", []string{"delay"}},
		{"several bad values at once", "distributor:\n  delay: 0s\n  emitters: 0\ndelayqueue:\n  max_items: 0\n",
			[]string{"distributor.delay", "distributor.emitters", "delayqueue.max_items"}},
		{"bad log level", "log:\n  level: loud\n", []string{"log.level"}},
		{"admin addr without port", "admin:\n  addr: localhost\n", []string{"admin.addr"}},
		{"unknown admin key", "admin:\n  port: 9180\n", []string{"port"}},
		{"bad enricher type", "enrich:\n  enrichers:\n    - name: x\n      type: magic\n", []string{"enrich.enrichers[0].type"}},
		{"bad synthetic rate", "ingest:\n  synthetic:\n    rate: -1\n", []string{"rate"}},
		{"memory limit too small", "memory_limit: 1000\n", []string{"memory_limit"}},
		{"negative memory limit", "memory_limit: -1\n", []string{"memory_limit"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeFile(t, tc.yaml))
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

func TestEnvOverrides(t *testing.T) {
	t.Setenv("BEND_DISTRIBUTOR_DELAY", "7s")
	t.Setenv("BEND_KAFKA_BROKERS", "a:9092,b:9092")
	t.Setenv("BEND_ENRICH_WORKERS", "9")
	cfg, err := Load(writeFile(t, "distributor:\n  delay: 3s\n"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.Distributor.Delay != 7*time.Second {
		t.Errorf("distributor.delay = %s, want 7s from the environment", cfg.Distributor.Delay)
	}
	if !reflect.DeepEqual(cfg.Kafka.Brokers, []string{"a:9092", "b:9092"}) {
		t.Errorf("kafka.brokers = %q, want [a:9092 b:9092]", cfg.Kafka.Brokers)
	}
	if cfg.Enrich.Workers != 9 {
		t.Errorf("enrich.workers = %d, want 9", cfg.Enrich.Workers)
	}
}

// TestCheckReportsEverything: decoding and validation errors come together,
// each with its key, value and origin; durations need a unit; a typo names
// the nearest key.
func TestCheckReportsEverything(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		env  map[string]string
		want []string
	}{
		{"bare shutdown_timeout", "shutdown_timeout: 30\n", nil,
			[]string{"shutdown_timeout: 30 is a bare number", "write 30s", "config.yaml:1"}},
		{"bare distributor.delay", "log:\n  level: info\ndistributor:\n  delay: 2\n", nil,
			[]string{"distributor.delay: 2 is a bare number", "write 2s", "config.yaml:4"}},
		{"bare fractional duration", "progress: 1.5\n", nil, []string{"progress: 1.5 is a bare number", "write 1.5s"}},
		{"bare duration in the environment", "", map[string]string{"BEND_SHUTDOWN_TIMEOUT": "30"},
			[]string{"shutdown_timeout: 30 is a bare number", "write 30s", `BEND_SHUTDOWN_TIMEOUT="30"`}},
		{"bare duration in the environment overrides the file", "distributor:\n  delay: 2s\n",
			map[string]string{"BEND_DISTRIBUTOR_DELAY": "2"}, []string{"distributor.delay: 2 is a bare number", "BEND_DISTRIBUTOR_DELAY"}},
		{"not a duration", "distributor:\n  delay: soon\n", nil, []string{`distributor.delay: "soon" is not a duration`, "config.yaml:2"}},
		{"typo does not hide a bad value", "distributor:\n  dealy: 2s\nenrich:\n  workers: -3\n", nil,
			[]string{"distributor.dealy: unknown key; did you mean distributor.delay?", "config.yaml:2",
				"enrich.workers", `value "-3" at`, "config.yaml:4"}},
		{"typo in a list element", "enrich:\n  enrichers:\n    - name: s\n      type: stats\n      timeout: 1s\n      tiemout: 2s\n", nil,
			[]string{"enrich.enrichers[0].tiemout: unknown key; did you mean enrich.enrichers[0].timeout?", "config.yaml:6"}},
		{"top-level typo", "shutdown_timout: 30s\n", nil, []string{"shutdown_timout: unknown key; did you mean shutdown_timeout?"}},
		{"type error and validation error", "distributor:\n  emitters: many\ndelayqueue:\n  max_items: 0\n", nil,
			[]string{"distributor.emitters", `value "many" at`, "delayqueue.max_items", "config.yaml:4"}},
		{"bad value from the environment", "", map[string]string{"BEND_ENRICH_WORKERS": "-3"},
			[]string{"enrich.workers", `BEND_ENRICH_WORKERS="-3"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := Load(writeFile(t, tc.yaml))
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestZeroDurationNeedsNoUnit(t *testing.T) {
	cfg, err := Load(writeFile(t, "progress: 0\n"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.Progress != 0 {
		t.Errorf("progress = %s, want 0", cfg.Progress)
	}
}

func TestUnknownEnvWarned(t *testing.T) {
	for _, tc := range []struct {
		name    string
		environ []string
		want    []string
	}{
		{"known variable", []string{"BEND_ENRICH_WORKERS=3", "HOME=/x"}, nil},
		{"tooling variables", []string{"BEND_TEST_BROKERS=127.0.0.1:9092", "BEND_KAFKA_STATE=/tmp/k", "BEND_KAFKA_CACHE=/tmp/c"}, nil},
		{"typo", []string{"BEND_ENRICH_WORKRES=3"},
			[]string{"BEND_ENRICH_WORKRES is set but names no configuration key; it is ignored (did you mean BEND_ENRICH_WORKERS?)"}},
		{"far from every key", []string{"BEND_XYZZY_PLUGH_FROTZ_WIBBLE=1"},
			[]string{"BEND_XYZZY_PLUGH_FROTZ_WIBBLE is set but names no configuration key; it is ignored"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, warns, err := load(writeFile(t, ""), tc.environ)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			if !reflect.DeepEqual(warns, tc.want) {
				t.Errorf("warnings %q, want %q", warns, tc.want)
			}
		})
	}
}
