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
	metrics "github.com/rcrowley/go-metrics"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

// TestDeadLettersCountsBoth checks that the progress line's and the stop
// summary's dead-letter count adds ingest's dead letters to the sink's.
func TestDeadLettersCountsBoth(t *testing.T) {
	for _, tc := range []struct {
		name         string
		sink, ingest int64
	}{
		{"ingest only", 0, 7},
		{"sink only", 5, 0},
		{"both", 3, 4},
		{"none", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := metrics.NewRegistry()
			metrics.GetOrRegisterMeter("sink.dead_letters", reg).Mark(tc.sink)
			metrics.GetOrRegisterCounter("ingest.dead_letters", reg).Inc(tc.ingest)
			if got, want := deadLetters(reg), tc.sink+tc.ingest; got != want {
				t.Errorf("deadLetters = %d, want %d", got, want)
			}
			log, hook := logtest.NewNullLogger()
			logSummary(log, reg, nil, time.Second, nil)
			e := hook.LastEntry()
			if e == nil {
				t.Fatal("no summary logged")
			}
			if got, want := e.Data["dead_letters"], tc.sink+tc.ingest; got != want {
				t.Errorf("summary dead_letters = %v, want %d", got, want)
			}
			if got := e.Data["ingest_dead_letters"]; got != tc.ingest {
				t.Errorf("summary ingest_dead_letters = %v, want %d", got, tc.ingest)
			}
		})
	}
}

// TestStatusShowsIngestDeadLetters checks that `bend status` shows the dead
// letters of both ingest and the distributor.
func TestStatusShowsIngestDeadLetters(t *testing.T) {
	snap := admin.Snapshot{Time: time.Now(), Totals: admin.Totals{DeadLetters: 100013, IngestDead: 100011}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(snap)
	}))
	defer srv.Close()
	var out, errOut bytes.Buffer
	cmd := newRootCmd(&out, &errOut)
	cmd.SetArgs([]string{"status", "--admin", srv.URL})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("status: %v\n%s", err, errOut.String())
	}
	if want := "dead letters 100013 (at ingest 100011)"; !strings.Contains(out.String(), want) {
		t.Errorf("status output lacks %q:\n%s", want, out.String())
	}
}
