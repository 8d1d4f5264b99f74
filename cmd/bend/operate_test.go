package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bendstream/bend/internal/admin"
	"github.com/bendstream/bend/internal/config"
	"github.com/bendstream/bend/internal/kafkatest"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

// operateConfig is the config file of TestReloadWhileRunning: tunables
// first, the rest fixed for the test.
func operateConfig(t *testing.T, brokers []string, names [4]string, out string, port int, n int64, workers int, delay string, emitters int) string {
	t.Helper()
	return fmt.Sprintf(`kafka:
  brokers: [%s]
  topics: {input: %s, output: %s, dead_letter: %s, partitions: 4}
distributor:
  group: %s
  delay: %s
  emitters: %d
ingest:
  synthetic: {rate: 4000, limit: %d, seed: 1}
enrich:
  workers: %d
sink:
  file: {path: %s}
admin:
  addr: 127.0.0.1:%d
progress: 0s
`, strings.Join(brokers, ", "), names[0], names[1], names[2], names[3], delay, emitters, n, workers, out, port)
}

func getJSON(t *testing.T, url string) (admin.Snapshot, bool) {
	t.Helper()
	var s admin.Snapshot
	res, err := http.Get(url + "/metrics.json")
	if err != nil {
		return s, false
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || json.NewDecoder(res.Body).Decode(&s) != nil {
		return s, false
	}
	return s, true
}

func httpCode(url, method string) int {
	req, _ := http.NewRequest(method, url, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	res.Body.Close()
	return res.StatusCode
}

// TestReloadWhileRunning runs the daemon in-process from a config file and
// operates it while events flow: /readyz, a promtool check of a live
// /metrics scrape, `bend status`, then reloads that change the worker count
// and the delay (file change, SIGHUP, POST /admin/reload, and an invalid
// file that must be rejected), observed through /metrics.json. Every id
// must be in the input topic and reach the output, none lost.
func TestReloadWhileRunning(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	const n = 20000
	names := [4]string{kafkatest.Name(t, "in"), kafkatest.Name(t, "out"), kafkatest.Name(t, "dlq"), kafkatest.Name(t, "group")}
	dir := t.TempDir()
	out := filepath.Join(dir, "out.ndjson")
	port := freePort(t)
	path := filepath.Join(dir, "config.yaml")
	write := func(body string) {
		t.Helper()
		// Write and rename, as an editor or a config-management tool does.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(operateConfig(t, brokers, names, out, port, n, 2, "200ms", 2))
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("test config: %v", err)
	}
	log := testLogger(t)
	hook := test.NewLocal(log)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hup := make(chan os.Signal, 1)
	done := make(chan error, 1)
	go func() {
		done <- runWith(ctx, cfg, log, io.Discard, runOptions{reloadable: true, configPath: path, hup: hup})
	}()
	var snap admin.Snapshot
	observe := func(what string, cond func(admin.Snapshot) bool) {
		t.Helper()
		eventually(t, 30*time.Second, what, func() bool {
			s, ok := getJSON(t, url)
			snap = s
			return ok && cond(s)
		})
	}
	observe("ready, events flowing, 2 workers", func(s admin.Snapshot) bool {
		return s.Ready && s.Totals.Emitted > 0 && s.Workers == 2 && s.DelaySeconds == 0.2
	})
	if code := httpCode(url+"/readyz", "GET"); code != 200 {
		t.Errorf("/readyz = %d while ready", code)
	}
	if code := httpCode(url+"/healthz", "GET"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}

	t.Run("promtool", func(t *testing.T) {
		promtool, err := exec.LookPath("promtool")
		if err != nil {
			t.Skip("promtool not on PATH (Debian: apt-get install prometheus); live /metrics not linted")
		}
		res, err := http.Get(url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if !bytes.Contains(body, []byte(`bend_distributor_partition_lag{partition="0",topic="`+names[0]+`"}`)) {
			t.Errorf("live /metrics lacks per-partition lag of %s", names[0])
		}
		if !bytes.Contains(body, []byte("bend_request_latency_seconds")) {
			t.Errorf("live /metrics lacks sarama's request latency")
		}
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics on a live scrape: %v\n%s", err, out)
		}
	})
	t.Run("status", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		cmd := newRootCmd(&stdout, &stderr)
		cmd.SetArgs([]string{"status", "--admin", url})
		if err := cmd.Execute(); err != nil {
			t.Fatalf("bend status: %v\n%s", err, stderr.String())
		}
		for _, want := range []string{": ready", names[0], "workers", "time to drain"} {
			if !strings.Contains(stdout.String(), want) {
				t.Errorf("bend status lacks %q:\n%s", want, stdout.String())
			}
		}
	})

	// A file change: two tunables and a key that needs a restart.
	write(operateConfig(t, brokers, names, out, port, n, 6, "500ms", 3))
	observe("6 workers and a 500ms delay after the file changed", func(s admin.Snapshot) bool {
		return s.Workers == 6 && s.DelaySeconds == 0.5
	})
	t.Logf("file reload applied with %d of %d events emitted", snap.Totals.Emitted, n)
	eventually(t, 5*time.Second, "the restart key logged", func() bool {
		for _, e := range hook.AllEntries() {
			if e.Level == logrus.WarnLevel && strings.Contains(e.Message, "changing distributor.emitters needs a restart") {
				return true
			}
		}
		return false
	})

	// SIGHUP rereads even what the watcher cannot see: the environment.
	t.Setenv("BEND_ENRICH_WORKERS", "1")
	hup <- syscall.SIGHUP
	observe("1 worker after SIGHUP", func(s admin.Snapshot) bool { return s.Workers == 1 })

	t.Setenv("BEND_ENRICH_WORKERS", "3")
	if code := httpCode(url+"/admin/reload", "POST"); code != 200 {
		t.Errorf("POST /admin/reload = %d, want 200", code)
	}
	observe("3 workers after POST /admin/reload", func(s admin.Snapshot) bool { return s.Workers == 3 })

	write(operateConfig(t, brokers, names, out, port, n, 8, "1s", 2) + "enrich_workers: 8\n") // unknown key
	if code := httpCode(url+"/admin/reload", "POST"); code != 422 {
		t.Errorf("POST /admin/reload of an invalid file = %d, want 422", code)
	}
	time.Sleep(300 * time.Millisecond) // the watcher sees the invalid file too
	if s, _ := getJSON(t, url); s.Workers != 3 || s.DelaySeconds != 0.5 {
		t.Errorf("after an invalid file: workers %d delay %gs, want 3 and 0.5s kept", s.Workers, s.DelaySeconds)
	}

	outIDs := idsInTopic(t, brokers, names[1], n)
	wantAllIDs(t, "output topic", outIDs, n)
	eventually(t, 30*time.Second, "offsets committed up to the high-water mark", func() bool {
		sum, hwm := committed(t, brokers, names[3], names[0])
		return hwm == n && sum == hwm
	})
	cancel()
	waitRun(t, done)
	wantAllIDs(t, "input topic", idsInTopic(t, brokers, names[0], n), n)
	wantAllIDs(t, "sink file", idsInFile(t, out), n)
	if code := httpCode(url+"/healthz", "GET"); code != 0 {
		t.Errorf("/healthz answered %d after run returned; the admin server must be closed", code)
	}
}

// lockedWriter is a bytes.Buffer safe for the logger and the test at once.
type lockedWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *lockedWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *lockedWriter) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestSecondSignalForcesStop runs `bend run` in-process with activities
// held in the delay queue far longer than the test waits, sends SIGINT
// (the drain starts and would take a minute), then SIGINT again: bend must
// stop at once, exit with an error, and log what is left for redelivery.
func TestSecondSignalForcesStop(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	port := freePort(t)
	path := filepath.Join(t.TempDir(), "config.yaml")
	body := fmt.Sprintf(`kafka:
  brokers: [%s]
  topics: {input: %s, output: %s, dead_letter: %s, partitions: 4}
distributor:
  group: %s
  delay: 60s
  drain_timeout: 60s
delayqueue:
  early_release: false
ingest:
  synthetic: {rate: 2000, seed: 1}
sink:
  kafka: {enabled: false}
  file: {path: %s}
admin:
  addr: 127.0.0.1:%d
progress: 0s
shutdown_timeout: 60s
`, strings.Join(brokers, ", "), kafkatest.Name(t, "in"), kafkatest.Name(t, "out"), kafkatest.Name(t, "dlq"),
		kafkatest.Name(t, "group"), filepath.Join(t.TempDir(), "out.ndjson"), port)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	stderr := &lockedWriter{}
	cmd := newRootCmd(&stdout, stderr)
	cmd.SetArgs([]string{"run", "--config", path})
	done := make(chan error, 1)
	go func() { done <- cmd.Execute() }()
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	// The run command's signal handlers are installed before the admin
	// server answers, so the signals below reach them, not the default
	// action that would kill the test binary.
	eventually(t, 30*time.Second, "activities parked", func() bool {
		s, ok := getJSON(t, url)
		return ok && s.Parked > 0
	})
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the drain started", func() bool {
		return strings.Contains(stderr.String(), "send the signal again to stop at once")
	})
	time.Sleep(500 * time.Millisecond) // the drain is under way and blocked on the parked records
	start := time.Now()
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "forced stop") {
			t.Errorf("bend run = %v, want a forced-stop error", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("bend run still running 20s after the second SIGINT")
	}
	t.Logf("stopped %s after the second signal", time.Since(start).Round(time.Millisecond))
	log := stderr.String()
	for _, want := range []string{"second signal: stopping at once", "unacknowledged=", "stopped before the drain finished"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, tailLines(log, 30))
		}
	}
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
