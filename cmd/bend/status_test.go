package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bendstream/bend/internal/admin"
)

func TestAdminURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"127.0.0.1:9180", "http://127.0.0.1:9180"},
		{":9180", "http://127.0.0.1:9180"},
		{"0.0.0.0:9180", "http://127.0.0.1:9180"},
		{"[::]:9180", "http://127.0.0.1:9180"},
		{"bend.internal:80", "http://bend.internal:80"},
		{"http://h:1/", "http://h:1"},
		{"https://h:1", "https://h:1"},
	} {
		if got := adminURL(tc.in); got != tc.want {
			t.Errorf("adminURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestFmtSeconds(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want string
	}{
		{0, "0s"}, {0.0000123, "12µs"}, {0.01234, "12.3ms"}, {1.234, "1.23s"}, {70, "1m10s"}, {120, "2m"}, {3725, "1h2m5s"},
	} {
		if got := fmtSeconds(tc.in); got != tc.want {
			t.Errorf("fmtSeconds(%g) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestStatusCommand runs `bend status` against a stand-in admin server.
func TestStatusCommand(t *testing.T) {
	drain := 42.0
	snap := admin.Snapshot{
		Time: time.Now(), UptimeSeconds: 75, Ready: true,
		Rates:        admin.Rates{Ingested: 8000, Consumed: 9000, Emitted: 9000},
		Lag:          42000,
		DrainSeconds: &drain,
		InFlight:     1234,
		Parked:       1000,
		DelayQueue:   admin.DelayQueue{Len: 1000, InUse: 1234, Cap: 10000},
		TaskQueue:    admin.TaskQueue{Depth: 17, Cap: 1024},
		Workers:      4, BusyWorkers: 3, DelaySeconds: 2,
		Latency:    admin.Quantiles{Count: 10, P50: 0.003, P95: 0.01, P99: 0.02, Max: 0.05},
		Totals:     admin.Totals{Ingested: 100, Emitted: 90, DeadLetters: 1},
		Partitions: []admin.Partition{{Topic: "bend.activities", Partition: 3, Lag: 42000, InFlight: 1234, Watermark: 777}},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics.json" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(snap)
	}))
	defer srv.Close()

	var out, errOut bytes.Buffer
	cmd := newRootCmd(&out, &errOut)
	cmd.SetArgs([]string{"status", "--admin", srv.URL})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("status: %v\n%s", err, errOut.String())
	}
	got := out.String()
	for _, want := range []string{
		"ready, up 1m15s", "ingested 8000", "emitted 9000", "lag 42000", "time to drain 42s",
		"parked 1000/10000", "in flight 1234", "tasks 17/1024", "workers 3 busy of 4", "delay 2s",
		"p99 20ms", "bend.activities", "777",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("status output lacks %q:\n%s", want, got)
		}
	}

	cmd = newRootCmd(&out, &errOut)
	cmd.SetArgs([]string{"status", "--admin", "127.0.0.1:1"})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "is bend running") {
		t.Errorf("status against nothing = %v, want an error asking whether bend runs", err)
	}
}
