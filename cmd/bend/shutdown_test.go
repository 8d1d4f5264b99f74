package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bendstream/bend/distributor"
	"github.com/bendstream/bend/internal/kafkatest"
	"github.com/bendstream/bend/internal/localbroker"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
)

// TestReadyzFalseBeforeIntakeCloses: from the first moment of a shutdown
// /readyz answers 503 while the HTTP receiver still accepts events (the
// grace period); every event it accepted reaches the output.
func TestReadyzFalseBeforeIntakeCloses(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	cfg := testConfig(t, brokers, 0)
	cfg.Ingest.Synthetic.Enabled = false
	cfg.Ingest.HTTP.Enabled = true
	cfg.Ingest.HTTP.Addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg.Admin.Addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg.ShutdownGrace = time.Second
	ingestURL := "http://" + cfg.Ingest.HTTP.Addr + cfg.Ingest.HTTP.Path
	readyURL := "http://" + cfg.Admin.Addr + "/readyz"

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, testLogger(t), os.Stderr) }()
	eventually(t, 60*time.Second, "/readyz 200", func() bool { return httpCode(readyURL, http.MethodGet) == 200 })

	client := &http.Client{Timeout: 5 * time.Second}
	next := 0
	var accepted []string
	post := func() int {
		next++
		id := fmt.Sprintf("act-%d", next)
		res, err := client.Post(ingestURL, "application/x-ndjson", strings.NewReader(fmt.Sprintf(`{"id":%q,"text":"lame duck"}`+"\n", id)))
		if err != nil {
			return 0
		}
		res.Body.Close()
		if res.StatusCode/100 == 2 {
			accepted = append(accepted, id)
		}
		return res.StatusCode
	}
	for range 20 {
		if code := post(); code/100 != 2 {
			t.Fatalf("POST before the shutdown answered %d", code)
		}
	}
	cancel()
	sawLameDuck := false
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		ready := httpCode(readyURL, http.MethodGet)
		code := post()
		if ready == 200 && code/100 != 2 {
			t.Fatalf("the HTTP receiver answered %d while /readyz still answered 200", code)
		}
		if ready != 200 && code/100 == 2 {
			sawLameDuck = true
		}
		if code/100 != 2 {
			break // intake closed
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !sawLameDuck {
		t.Error("never saw /readyz 503 while the HTTP receiver still accepted events")
	}
	waitRun(t, done)
	// Accepted means in Kafka; what the drain did not reach waits there for
	// the next run, behind the committed offsets.
	in := idsInTopic(t, brokers, cfg.Kafka.Topics.Input, len(accepted))
	for _, id := range accepted {
		if in[id] != 1 {
			t.Errorf("accepted id %s is in the input topic %d times, want once", id, in[id])
		}
	}
	out := idsInFile(t, cfg.Sink.File.Path)
	for id, c := range out {
		if c != 1 || in[id] != 1 {
			t.Errorf("output id %s: %d times in the output, %d in the input, want once each", id, c, in[id])
		}
	}
	if sum, _ := committed(t, brokers, cfg.Distributor.Group, cfg.Kafka.Topics.Input); sum != int64(len(out)) {
		t.Errorf("committed %d input records, emitted %d", sum, len(out))
	}
}

// TestStageErrorDrains: a stage that fails starts the drain; it does not
// abandon the records in flight. Every record in flight at the failure is
// emitted, the committed offsets cover exactly what was emitted, and run
// returns the stage's error.
func TestStageErrorDrains(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	const n = 3000
	cfg := testConfig(t, brokers, n)
	cfg.Distributor.Delay = 500 * time.Millisecond // records stay in flight a while
	boom := errors.New("injected stage failure")
	var inFlightAtFailure, emittedAtFailure int64
	opts := runOptions{stage: func(ctx context.Context, dist *distributor.Distributor, reg metrics.Registry) error {
		published := metrics.GetOrRegisterMeter("ingest.published", reg)
		emitted := metrics.GetOrRegisterMeter("sink.emitted", reg)
		tk := time.NewTicker(5 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return errors.New("intake ended before the stage failed")
			case <-tk.C:
			}
			if published.Count() == n && dist.InFlight() > 0 {
				emittedAtFailure = emitted.Count()
				inFlightAtFailure = dist.InFlight()
				return boom
			}
		}
	}}
	done := make(chan error, 1)
	go func() { done <- runWith(context.Background(), cfg, testLogger(t), os.Stderr, opts) }()
	select {
	case err := <-done:
		if !errors.Is(err, boom) {
			t.Fatalf("run: %v, want the stage's error", err)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("run did not return after the stage failed")
	}
	if inFlightAtFailure == 0 {
		t.Fatal("no record was in flight when the stage failed")
	}
	t.Logf("%d records emitted and %d in flight when the stage failed", emittedAtFailure, inFlightAtFailure)
	out := idsInFile(t, cfg.Sink.File.Path)
	if int64(len(out)) < emittedAtFailure+inFlightAtFailure {
		t.Errorf("%d ids emitted, want at least the %d emitted plus the %d in flight at the failure",
			len(out), emittedAtFailure, inFlightAtFailure)
	}
	for id, c := range out {
		if c != 1 {
			t.Errorf("id %s emitted %d times", id, c)
		}
	}
	if sum, _ := committed(t, brokers, cfg.Distributor.Group, cfg.Kafka.Topics.Input); sum != int64(len(out)) {
		t.Errorf("committed %d input records, emitted %d: the drain abandoned records", sum, len(out))
	}
}

// logLines collects log messages.
type logLines struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logLines) Levels() []logrus.Level { return logrus.AllLevels }
func (l *logLines) Fire(e *logrus.Entry) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, e.Message)
	return nil
}
func (l *logLines) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.msgs {
		if strings.Contains(m, sub) {
			return true
		}
	}
	return false
}

// TestCleanStopStopsTheTimer: after a drain that finished in time, the
// shutdown_timeout timer never fires.
func TestCleanStopStopsTheTimer(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	cfg := testConfig(t, brokers, 200)
	// Long enough for a clean stop under -race on a loaded machine; the
	// test then waits until the timer would have fired.
	cfg.ShutdownTimeout = 4 * time.Second
	log := testLogger(t)
	lines := &logLines{}
	log.AddHook(lines)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, log, os.Stderr) }()
	eventually(t, 60*time.Second, "200 records emitted", func() bool { return linesIn(cfg.Sink.File.Path) >= 200 })
	stopped := time.Now()
	cancel()
	waitRun(t, done)
	time.Sleep(time.Until(stopped.Add(cfg.ShutdownTimeout + cfg.ShutdownGrace + time.Second)))
	if lines.has("shutdown_timeout passed") {
		t.Error("the shutdown_timeout timer fired after a clean stop")
	}
	wantAllIDs(t, "sink file", idsInFile(t, cfg.Sink.File.Path), 200)
}

// TestWaitsForKafka: with kafka.brokers naming a broker that is not up
// yet, run retries until it comes up, then runs; every id arrives.
func TestWaitsForKafka(t *testing.T) {
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := testConfig(t, []string{addr}, 300)
	log := testLogger(t)
	lines := &logLines{}
	log.AddHook(lines)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, log, os.Stderr) }()
	eventually(t, 30*time.Second, "a retry logged", func() bool { return lines.has("Kafka not reachable; retrying") })
	select {
	case err := <-done:
		t.Fatalf("run returned while Kafka was down: %v", err)
	default:
	}
	bcfg := localbroker.DefaultConfig()
	bcfg.DataDir, bcfg.Port = "", port
	b, err := localbroker.Start(bcfg)
	if err != nil {
		t.Fatalf("starting the broker: %v", err)
	}
	defer b.Close()
	eventually(t, 90*time.Second, "300 records emitted", func() bool { return linesIn(cfg.Sink.File.Path) >= 300 })
	cancel()
	waitRun(t, done)
	wantAllIDs(t, "sink file", idsInFile(t, cfg.Sink.File.Path), 300)
	if !lines.has("Kafka reachable") {
		t.Error("no log line saying Kafka became reachable")
	}
}

// TestWaitForKafkaEndsWithCtx: the retry ends with ctx, naming the brokers.
func TestWaitForKafkaEndsWithCtx(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := testConfig(t, []string{addr}, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err = run(ctx, cfg, testLogger(t), os.Stderr)
	if err == nil || !strings.Contains(err.Error(), "no Kafka broker reachable at "+addr) {
		t.Errorf("run = %v, want an error naming %s", err, addr)
	}
}

// linesIn counts the lines of the file at path, 0 if it does not exist yet.
func linesIn(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\n")
}

// TestSecondRunOnDataDirFails: a second bend on the embedded broker's data
// directory fails at once, naming the directory and the holder; the first
// runs on undisturbed and every id arrives.
func TestSecondRunOnDataDirFails(t *testing.T) {
	cfg := testConfig(t, nil, 500)
	cfg.Kafka.Brokers = nil
	cfg.Kafka.Embedded.DataDir = filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, testLogger(t), os.Stderr) }()
	eventually(t, 60*time.Second, "records emitted", func() bool { return linesIn(cfg.Sink.File.Path) > 0 })

	second := cfg
	second.Sink.File.Path = filepath.Join(t.TempDir(), "second.ndjson")
	err := run(context.Background(), second, testLogger(t), os.Stderr)
	if !errors.Is(err, localbroker.ErrLocked) {
		t.Fatalf("second run: %v, want localbroker.ErrLocked", err)
	}
	for _, want := range []string{cfg.Kafka.Embedded.DataDir, fmt.Sprintf("process %d", os.Getpid()), "stop it first"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	// bend replay on the same directory: "stop it first", printed once.
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	body := fmt.Sprintf("kafka:\n  embedded:\n    data_dir: %s\nadmin:\n  addr: \"\"\n", cfg.Kafka.Embedded.DataDir)
	if err := os.WriteFile(cfgFile, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr strings.Builder
	if code := execute([]string{"replay", "--config", cfgFile, "--to", "earliest"}, &stdout, &stderr); code != 1 {
		t.Errorf("bend replay while bend runs: exit status %d, want 1", code)
	}
	if n := strings.Count(stderr.String(), "stop it first"); n != 1 {
		t.Errorf("bend replay's stderr has \"stop it first\" %d times, want once:\n%s", n, stderr.String())
	}
	eventually(t, 60*time.Second, "500 records emitted", func() bool { return linesIn(cfg.Sink.File.Path) >= 500 })
	cancel()
	waitRun(t, done)
	wantAllIDs(t, "sink file", idsInFile(t, cfg.Sink.File.Path), 500)
}
