package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bendstream/bend/internal/config"
	"github.com/bendstream/bend/internal/kafkatest"
)

func TestParseTarget(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in      string
		want    replayTarget
		wantErr bool
	}{
		{"earliest", replayTarget{kind: "earliest"}, false},
		{"Latest", replayTarget{kind: "latest"}, false},
		{"offset 42", replayTarget{kind: "offset", offset: 42}, false},
		{"offset=7", replayTarget{kind: "offset", offset: 7}, false},
		{"offset:0", replayTarget{kind: "offset", offset: 0}, false},
		{"15m", replayTarget{kind: "time", at: now.Add(-15 * time.Minute)}, false},
		{"2026-02-28T10:00:00Z", replayTarget{kind: "time", at: time.Date(2026, 2, 28, 10, 0, 0, 0, time.UTC)}, false},
		{"2026-02-28T10:00:00.5+01:00", replayTarget{kind: "time", at: time.Date(2026, 2, 28, 9, 0, 0, 5e8, time.UTC)}, false},
		{"offset -1", replayTarget{}, true},
		{"offset x", replayTarget{}, true},
		{"-5m", replayTarget{}, true},
		{"yesterday", replayTarget{}, true},
		{"", replayTarget{}, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseTarget(tc.in, now)
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseTarget(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			}
			if got.kind != tc.want.kind || got.offset != tc.want.offset || !got.at.Equal(tc.want.at) {
				t.Errorf("parseTarget(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestTargetResolve(t *testing.T) {
	byTime := func(off int64) func(int64) (int64, error) {
		return func(int64) (int64, error) { return off, nil }
	}
	at := replayTarget{kind: "time", at: time.Unix(100, 0)}
	for _, tc := range []struct {
		name           string
		t              replayTarget
		oldest, newest int64
		byTime         int64
		want           int64
	}{
		{"earliest", replayTarget{kind: "earliest"}, 10, 50, 0, 10},
		{"latest", replayTarget{kind: "latest"}, 10, 50, 0, 50},
		{"offset inside", replayTarget{kind: "offset", offset: 20}, 10, 50, 0, 20},
		{"offset below the log start", replayTarget{kind: "offset", offset: 3}, 10, 50, 0, 10},
		{"offset past the end", replayTarget{kind: "offset", offset: 99}, 10, 50, 0, 50},
		{"time", at, 10, 50, 30, 30},
		{"time after the last record", at, 10, 50, -1, 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.t.resolve(tc.oldest, tc.newest, byTime(tc.byTime))
			if err != nil || got != tc.want {
				t.Errorf("resolve = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

// runUntil runs the pipeline with cfg until done() holds, then stops it
// cleanly. during, if not nil, runs while the pipeline is still running.
func runUntil(t *testing.T, cfg config.Config, what string, done func() bool, during func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, cfg, testLogger(t), io.Discard) }()
	eventually(t, 60*time.Second, what, done)
	if during != nil {
		during()
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("run (%s): %v", what, err)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("run (%s) did not stop", what)
	}
}

// TestReplayFromTimestamp processes two batches of events, a- and b-, with a
// moment in between; replays the group from that moment; and checks that
// exactly the b- events are emitted again, each once. It also checks that
// replay refuses while the group is active and that --dry-run changes
// nothing.
func TestReplayFromTimestamp(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	const n = 1000
	cfg := testConfig(t, brokers, n)
	cfg.Admin.Addr = ""
	group, topic := cfg.Distributor.Group, cfg.Kafka.Topics.Input
	dir := t.TempDir()
	fileWith := func(path string, want int) func() bool {
		return func() bool { return countLines(t, path) >= want }
	}
	committedTo := func(want int64) func() bool {
		return func() bool { sum, _ := committed(t, brokers, group, topic); return sum == want }
	}

	// Batch a.
	cfg.Ingest.Synthetic.IDPrefix = "a-"
	cfg.Sink.File.Path = filepath.Join(dir, "a.ndjson")
	runUntil(t, cfg, "batch a emitted and committed", func() bool {
		return fileWith(cfg.Sink.File.Path, n)() && committedTo(n)()
	}, nil)

	time.Sleep(50 * time.Millisecond)
	mid := time.Now()
	time.Sleep(50 * time.Millisecond)

	// Batch b; while it runs, replay must refuse.
	cfg.Ingest.Synthetic.IDPrefix = "b-"
	cfg.Sink.File.Path = filepath.Join(dir, "b.ndjson")
	runUntil(t, cfg, "batch b emitted and committed", func() bool {
		return fileWith(cfg.Sink.File.Path, n)() && committedTo(2*n)()
	}, func() {
		sc := kafkatest.Config()
		err := replay(brokers, sc, replayOptions{group: group, topic: topic, to: replayTarget{kind: "earliest"}}, io.Discard)
		if !errors.Is(err, errGroupActive) {
			t.Errorf("replay while the group runs = %v, want errGroupActive", err)
		} else {
			t.Logf("refused as expected: %v", err)
		}
	})

	replayCLI := func(extra ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		cmd := newRootCmd(&out, &errOut)
		args := append([]string{"replay", "--brokers", strings.Join(brokers, ","), "--group", group,
			"--topic", topic, "--to", mid.Format(time.RFC3339Nano)}, extra...)
		cmd.SetArgs(args)
		if err := cmd.Execute(); err != nil {
			t.Fatalf("bend %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errOut.String())
		}
		return out.String()
	}
	plan := replayCLI("--dry-run")
	t.Logf("dry run:\n%s", plan)
	if !strings.Contains(plan, strconv.Itoa(n)+" records will be consumed again") || !strings.Contains(plan, "dry run") {
		t.Errorf("dry-run plan does not announce %d records again:\n%s", n, plan)
	}
	if sum, _ := committed(t, brokers, group, topic); sum != 2*n {
		t.Fatalf("dry run changed the committed offsets: sum %d, want %d", sum, 2*n)
	}
	replayCLI()
	if sum, _ := committed(t, brokers, group, topic); sum != n {
		t.Fatalf("after replay the committed offsets sum to %d, want %d (the end of batch a)", sum, n)
	}

	// Consume again, with no new input.
	cfg.Ingest.Synthetic.Enabled = false
	cfg.Sink.File.Path = filepath.Join(dir, "replayed.ndjson")
	runUntil(t, cfg, "the replayed records emitted and committed", func() bool {
		return fileWith(cfg.Sink.File.Path, n)() && committedTo(2*n)()
	}, nil)
	ids := idsInFile(t, cfg.Sink.File.Path)
	if len(ids) != n {
		t.Errorf("replay emitted %d distinct ids, want %d", len(ids), n)
	}
	for i := 1; i <= n; i++ {
		if c := ids["b-"+strconv.Itoa(i)]; c != 1 {
			t.Errorf("b-%d emitted %d times by the replay, want once", i, c)
		}
	}
	for id := range ids {
		if !strings.HasPrefix(id, "b-") {
			t.Errorf("replay emitted %s, which is before the replay time", id)
		}
	}
}

// countLines counts the lines of a file, 0 if it does not exist.
func countLines(t *testing.T, path string) int {
	t.Helper()
	b, err := readFileIfExists(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return bytes.Count(b, []byte("\n"))
}

// readFileIfExists returns a file's content, nil if it does not exist.
func readFileIfExists(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}
