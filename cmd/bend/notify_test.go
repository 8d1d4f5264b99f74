package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bendstream/bend/internal/config"
	"github.com/bendstream/bend/internal/kafkatest"
)

// TestSystemdNotify runs the pipeline with $NOTIFY_SOCKET naming a unixgram
// socket, as systemd does for Type=notify: READY=1 arrives once the group is
// joined, then STOPPING=1 when the shutdown starts, nothing else between.
func TestSystemdNotify(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	dir, err := os.MkdirTemp("", "sd") // short: socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)

	cfg := testConfig(t, brokers, 100)
	log := testLogger(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runWith(ctx, cfg, log, os.Stderr, runOptions{notify: sdNotify(log)}) }()

	read := func(timeout time.Duration) string {
		t.Helper()
		buf := make([]byte, 4096)
		_ = conn.SetReadDeadline(time.Now().Add(timeout))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("reading the notify socket: %v", err)
		}
		return string(buf[:n])
	}
	if got := read(60 * time.Second); got != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	eventually(t, 60*time.Second, "100 records emitted", func() bool { return linesIn(cfg.Sink.File.Path) >= 100 })
	cancel()
	if got := read(30 * time.Second); got != "STOPPING=1" {
		t.Errorf("notification after cancel %q, want STOPPING=1", got)
	}
	waitRun(t, done)
	wantAllIDs(t, "sink file", idsInFile(t, cfg.Sink.File.Path), 100)
}

func TestProgressEvery(t *testing.T) {
	yes, no := func() bool { return true }, func() bool { return false }
	for _, tc := range []struct {
		name    string
		setting string
		every   time.Duration
		tty     func() bool
		want    time.Duration
	}{
		{"auto on a terminal", "auto", 2 * time.Second, yes, 2 * time.Second},
		{"auto, not a terminal", "auto", 2 * time.Second, no, 0},
		{"auto, unknown", "auto", 2 * time.Second, nil, 0},
		{"on, not a terminal", "on", 2 * time.Second, no, 2 * time.Second},
		{"off on a terminal", "off", 2 * time.Second, yes, 0},
		{"on with interval 0", "on", 0, yes, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Log.Progress, cfg.Progress = tc.setting, tc.every
			if got := progressEvery(cfg, tc.tty); got != tc.want {
				t.Errorf("progressEvery = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestProgressFormats: the progress report is a text line in text mode and
// a JSON log record (and no text) in JSON mode.
func TestProgressFormats(t *testing.T) {
	p := progressReport{at: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), inRate: 8000, outRate: 7990,
		lag: 12, inFlight: 34, parked: 56, in: 1000, out: 990, dead: 1}
	for _, tc := range []struct {
		format         string
		wantOut        []string
		wantLog        []string
		wantOutIsEmpty bool
	}{
		{"text", []string{"03:04:05 ingested    8000/s", "lag      12", "total in 1000 out 990 dead 1\n"}, nil, false},
		{"json", nil, []string{`"msg":"progress"`, `"ingested_per_s":8000`, `"lag":12`, `"in_flight":34`,
			`"parked":56`, `"emitted":990`, `"dead_letters":1`}, true},
	} {
		t.Run(tc.format, func(t *testing.T) {
			var out, logged strings.Builder
			c := config.Log{Level: "info", Format: tc.format, Progress: "on"}
			log := newLogger(c, &logged)
			progressSink(c, log, &out)(p)
			for _, w := range tc.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("progress output %q lacks %q", out.String(), w)
				}
			}
			for _, w := range tc.wantLog {
				if !strings.Contains(logged.String(), w) {
					t.Errorf("log %q lacks %q", logged.String(), w)
				}
			}
			if tc.wantOutIsEmpty && out.Len() != 0 {
				t.Errorf("JSON mode wrote text %q", out.String())
			}
		})
	}
}
