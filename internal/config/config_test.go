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
