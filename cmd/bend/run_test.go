package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/config"
	"github.com/bendstream/bend/internal/kafkatest"
	"github.com/bendstream/bend/internal/testutil"
	"github.com/sirupsen/logrus"
)

// testConfig returns a pipeline config writing to fresh topics on the test
// broker, with the synthetic source producing limit events.
func testConfig(t *testing.T, brokers []string, limit int64) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Kafka.Brokers = brokers
	cfg.Kafka.Topics.Input = kafkatest.Name(t, "in")
	cfg.Kafka.Topics.Output = kafkatest.Name(t, "out")
	cfg.Kafka.Topics.DeadLetter = kafkatest.Name(t, "dlq")
	cfg.Kafka.Topics.Partitions = 4
	cfg.Distributor.Group = kafkatest.Name(t, "group")
	cfg.Distributor.Delay = 200 * time.Millisecond
	cfg.Ingest.Synthetic.Rate = 20000
	cfg.Ingest.Synthetic.Limit = limit
	cfg.Ingest.Synthetic.Seed = 1
	cfg.Sink.File.Path = filepath.Join(t.TempDir(), "out.ndjson")
	cfg.Progress = 0
	cfg.Admin.Addr = "" // tests run side by side; no fixed port
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config invalid: %v", err)
	}
	return cfg
}

func testLogger(t *testing.T) *logrus.Logger {
	log := logrus.New()
	log.SetOutput(io.Discard)
	if testing.Verbose() {
		log.SetOutput(os.Stderr)
	}
	return log
}

// idsInFile returns how often each activity id appears in an NDJSON file, and
// fails if any line lacks an enrichment.
func idsInFile(t *testing.T, path string) map[string]int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("opening sink file: %v", err)
	}
	defer f.Close()
	ids := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev struct {
			ID          string                     `json:"id"`
			Enrichments map[string]json.RawMessage `json:"enrichments"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("sink line %q: %v", sc.Text(), err)
		}
		if ev.Enrichments["stats"] == nil {
			t.Fatalf("sink line %q has no stats enrichment", sc.Text())
		}
		ids[ev.ID]++
	}
	return ids
}

func idsInTopic(t *testing.T, brokers []string, topic string, want int) map[string]int {
	t.Helper()
	ids := map[string]int{}
	for _, v := range kafkatest.ReadAll(t, brokers, topic, want, 60*time.Second) {
		var ev struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(v, &ev); err != nil {
			t.Fatalf("record %q: %v", v, err)
		}
		ids[ev.ID]++
	}
	return ids
}

// committed returns the group's committed offsets summed over the topic's
// partitions, and the sum of the partitions' high-water marks.
func committed(t *testing.T, brokers []string, group, topic string) (sum, hwm int64) {
	t.Helper()
	client, err := sarama.NewClient(brokers, kafkatest.Config())
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	defer client.Close()
	om, err := sarama.NewOffsetManagerFromClient(group, client)
	if err != nil {
		t.Fatalf("offset manager: %v", err)
	}
	defer om.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatalf("partitions: %v", err)
	}
	for _, p := range parts {
		pom, err := om.ManagePartition(topic, p)
		if err != nil {
			t.Fatalf("manage partition: %v", err)
		}
		off, _ := pom.NextOffset()
		pom.AsyncClose()
		if off > 0 {
			sum += off
		}
		h, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatalf("high-water mark: %v", err)
		}
		hwm += h
	}
	return sum, hwm
}

// waitRun waits for run's result on done after its ctx was cancelled, and
// fails t if run failed or did not return within a minute.
func waitRun(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

// eventually is testutil.Eventually.
var eventually = testutil.Eventually

func wantAllIDs(t *testing.T, where string, ids map[string]int, n int) {
	t.Helper()
	if len(ids) != n {
		t.Errorf("%s: %d distinct ids, want %d", where, len(ids), n)
	}
	for i := 1; i <= n; i++ {
		id := "act-" + strconv.Itoa(i)
		if ids[id] == 0 {
			t.Errorf("%s: id %s missing", where, id)
			return
		}
	}
}

// TestRunEndToEnd runs the whole daemon in-process: synthetic source ->
// Kafka -> distributor -> enrichment -> file and Kafka sinks. Every id must
// arrive at both outputs, and after a clean stop the group's committed
// offsets must cover the whole input topic.
func TestRunEndToEnd(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	const n = 5000
	cfg := testConfig(t, brokers, n)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, testLogger(t), io.Discard) }()

	out := idsInTopic(t, brokers, cfg.Kafka.Topics.Output, n)
	wantAllIDs(t, "output topic", out, n)
	eventually(t, 30*time.Second, "offsets committed up to the high-water mark", func() bool {
		sum, hwm := committed(t, brokers, cfg.Distributor.Group, cfg.Kafka.Topics.Input)
		return hwm == n && sum == hwm
	})
	cancel()
	waitRun(t, done)
	wantAllIDs(t, "sink file", idsInFile(t, cfg.Sink.File.Path), n)
}

// freePort returns a currently free TCP port on 127.0.0.1.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestRestartKeepsBacklog runs the default setup (embedded broker with a
// data directory), stops it while most of the input is still backlog, and
// starts it again: the second run must continue from the committed offsets
// and emit the rest, so every id arrives, with at most the first run's
// in-flight window emitted twice.
func TestRestartKeepsBacklog(t *testing.T) {
	const n = 20000
	cfg := config.Default()
	cfg.Kafka.Embedded.DataDir = t.TempDir()
	cfg.Kafka.Embedded.Port = freePort(t)
	cfg.Kafka.Topics.Partitions = 4
	cfg.Distributor.Delay = time.Second
	cfg.DelayQueue.EarlyRelease = false // hold records so the first run stops mid-backlog
	cfg.DelayQueue.MaxItems = 2000
	cfg.Ingest.Synthetic.Rate = 1e6
	cfg.Ingest.Synthetic.Limit = n
	cfg.Ingest.Synthetic.Seed = 1
	cfg.Sink.File.Path = filepath.Join(t.TempDir(), "out.ndjson")
	cfg.Progress = 0
	cfg.Admin.Addr = ""
	addr := []string{fmt.Sprintf("127.0.0.1:%d", cfg.Kafka.Embedded.Port)}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, testLogger(t), io.Discard) }()
	eventually(t, 30*time.Second, "the whole input ingested", func() bool {
		return hwmSum(addr, cfg.Kafka.Topics.Input) == n
	})
	eventually(t, 30*time.Second, "the first records emitted", func() bool {
		_, err := os.Stat(cfg.Sink.File.Path)
		return err == nil && len(idsInFile(t, cfg.Sink.File.Path)) > 0
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("first run: %v", err)
	}
	first := idsInFile(t, cfg.Sink.File.Path)
	if len(first) == 0 || len(first) >= n {
		t.Fatalf("first run emitted %d ids; the test needs it to stop mid-backlog", len(first))
	}

	cfg.Ingest.Synthetic.Enabled = false
	cfg.DelayQueue.EarlyRelease = true
	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- run(ctx, cfg, testLogger(t), io.Discard) }()
	eventually(t, 60*time.Second, "the backlog drained after the restart", func() bool {
		return len(idsInFile(t, cfg.Sink.File.Path)) == n
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("second run: %v", err)
	}
	all := idsInFile(t, cfg.Sink.File.Path)
	wantAllIDs(t, "sink file", all, n)
	dups := 0
	for _, c := range all {
		dups += c - 1
	}
	t.Logf("first run emitted %d, second the rest; %d duplicates", len(first), dups)
	if dups > int(cfg.DelayQueue.MaxItems) {
		t.Fatalf("%d duplicates after a clean restart; want at most the in-flight window %d", dups, cfg.DelayQueue.MaxItems)
	}
}

// hwmSum returns the sum of topic's high-water marks, or -1 if unreachable.
func hwmSum(brokers []string, topic string) int64 {
	client, err := sarama.NewClient(brokers, kafkatest.Config())
	if err != nil {
		return -1
	}
	defer client.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		return -1
	}
	var sum int64
	for _, p := range parts {
		h, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return -1
		}
		sum += h
	}
	return sum
}
