package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bendstream/bend/internal/fakepub"
	"github.com/bendstream/bend/internal/kafkatest"
	"github.com/tidwall/gjson"
)

// TestKillResumeSources streams 100,000 events at 5,000/s from a fake
// Jetstream, and from a fake EventStreams, into bend while bend is
// SIGKILLed 5 times and restarted: each restart resumes the publisher from
// the cursor Kafka acknowledged (minus the rewind for Jetstream). No event
// may be lost between the publisher and the output topic; duplicates are
// bounded by the rewind (dropped by the duplicate filter) and by the
// distributor's redelivery of what it had not committed. The publishers
// replay the whole stream (as Jetstream's days of history would): on a
// loaded machine a restart can take longer than a short window, and a gap
// at the publisher is a loss bend can only report (ingest's own tests
// check that it does).
func TestKillResumeSources(t *testing.T) {
	if testing.Short() {
		t.Skip("streams for about 30s per protocol")
	}
	const (
		n     = 100000
		rate  = 5000
		kills = 5
	)
	for _, tc := range []struct {
		name   string
		start  func() (url string, id func(int) string, done func() bool, stop func(), from string)
		source func(url, from string) string
		rewind int // events the rewind replays, per kill
	}{
		{
			name: "jetstream",
			start: func() (string, func(int) string, func() bool, func(), string) {
				p := fakepub.NewJetstream(fakepub.Config{Events: n, Rate: rate, Window: n})
				return p.URL(), fakepub.JetstreamID, p.Done, p.Close, fmt.Sprint(p.TimeUS(0))
			},
			source: func(url, from string) string {
				return fmt.Sprintf(`  jetstream: {enabled: true, url: %q, cursor: %s, wanted_collections: [app.bsky.feed.post, app.bsky.feed.like], format: jetstream, rewind: 5s, gap_tolerance: 1s}`, url, from)
			},
			rewind: 5 * rate,
		},
		{
			name: "sse",
			start: func() (string, func(int) string, func() bool, func(), string) {
				p := fakepub.NewSSE(fakepub.Config{Events: n, Rate: rate, Window: n}, "wikimedia")
				return p.URL(), fakepub.SSEID, p.Done, p.Close, p.ID(-1)
			},
			source: func(url, from string) string {
				return fmt.Sprintf(`  sse: {enabled: true, url: %q, last_event_id: %q, events: [message], format: wikimedia_recentchange}`, url, from)
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			brokers := kafkatest.Brokers(t)
			in, out, dlq := kafkatest.Name(t, "in"), kafkatest.Name(t, "out"), kafkatest.Name(t, "dlq")
			group := kafkatest.Name(t, "group")
			// The publisher starts now; bend asks for its first event.
			url, id, pubDone, stop, from := tc.start()
			defer stop()
			cfg := fmt.Sprintf(`kafka:
  brokers: [%s]
  topics: {input: %s, output: %s, dead_letter: %s, partitions: 4}
ingest:
  synthetic: {enabled: false}
%s
distributor: {group: %s, instance_id: bend-test-1, delay: 200ms, commit_interval: 100ms}
delayqueue: {max_items: 500, early_release: false}
progress: 0s
admin: {addr: ""}
shutdown_timeout: 20s
log: {level: info}
`, strings.Join(brokers, ","), in, out, dlq, tc.source(url, from), group)
			path := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			proc := startBend(t, path)
			defer func() { _ = proc.cmd.Process.Kill() }()
			rng := rand.New(rand.NewPCG(uint64(len(tc.name)), 7))
			midStream := 0
			var logs []string // of every process killed
			for k := range kills {
				// Kill a process that is streaming: once its source has
				// connected, after a random while.
				eventually(t, 60*time.Second, "bend's source to connect", func() bool { return strings.Contains(proc.log.String(), "connected") })
				time.Sleep(time.Duration(300+rng.IntN(1500)) * time.Millisecond)
				if !pubDone() {
					midStream++
				}
				if err := proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatalf("kill %d: %v", k, err)
				}
				_ = proc.cmd.Wait()
				logs = append(logs, proc.log.String())
				t.Logf("kill %d: input holds %d records; %s", k+1, hwmSum(brokers, in), resumeLines(proc.log.String()))
				proc = startBend(t, path)
			}
			if midStream < 4 {
				t.Fatalf("only %d of %d kills hit bend while the publisher streamed", midStream, kills)
			}
			// Wait for the last process to catch up with the publisher. A
			// process under the race detector on a loaded machine may take
			// minutes, so the wait ends when the output stops growing for
			// a minute (a stall is a failure below), not at a fixed time.
			var ids map[string]int
			last, progressed := -1, time.Now()
			for {
				ids = sourceIDs(t, brokers, out)
				if len(ids) > last {
					last, progressed = len(ids), time.Now()
				}
				if len(ids) >= n || time.Since(progressed) > time.Minute {
					break
				}
			}
			if err := proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if err := proc.cmd.Wait(); err != nil {
				t.Fatalf("bend did not stop cleanly: %v\n%s", err, tail(proc.log.String()))
			}
			ids = sourceIDs(t, brokers, out)
			lost, dups := 0, 0
			first := ""
			for i := range n {
				switch c := ids[id(i)]; c {
				case 0:
					if lost++; first == "" {
						first = id(i)
					}
				default:
					dups += c - 1
				}
			}
			for i, l := range append(logs, proc.log.String()) {
				if strings.Contains(l, "gap in the stream") {
					t.Errorf("process %d reported a gap, within the publisher's replay window:\n%s", i+1, resumeLines(l))
				}
			}
			if lost > 0 {
				t.Fatalf("%d of %d events lost after %d kills (the first %s); last process log:\n%s", lost, n, kills, first, tail(proc.log.String()))
			}
			if len(ids) != n {
				t.Fatalf("the output holds %d ids, want %d", len(ids), n)
			}
			// Per kill: the rewind's overlap (dropped by the duplicate
			// filter, so usually none), and what the distributor emitted
			// but had not committed (delayqueue.max_items, plus a commit
			// interval's worth).
			bound := kills * (tc.rewind + 2*500)
			t.Logf("%s: %d kills, %d ids, %d duplicates in the output (bound %d)", tc.name, kills, len(ids), dups, bound)
			if dups > bound {
				t.Fatalf("%d duplicates after %d kills; want at most %d", dups, kills, bound)
			}
		})
	}
}

// sourceIDs counts the output's events by the id their format gives them
// (a Jetstream record's AT URI, an EventStreams event's meta.id).
//
// It reads every record the topic holds now (its high-water marks), so a
// slow read on a loaded machine waits for them instead of returning part.
func sourceIDs(t *testing.T, brokers []string, topic string) map[string]int {
	t.Helper()
	want := hwmSum(brokers, topic)
	if want < 0 {
		t.Fatalf("reading the high-water marks of %s", topic)
	}
	ids := map[string]int{}
	vals := kafkatest.ReadAll(t, brokers, topic, int(want), 3*time.Minute)
	if len(vals) < int(want) {
		t.Fatalf("read %d of the %d records %s holds", len(vals), want, topic)
	}
	for _, v := range vals {
		var id string
		if r := gjson.GetBytes(v, "commit.rkey"); r.Exists() {
			id = "at://" + gjson.GetBytes(v, "did").Str + "/" + gjson.GetBytes(v, "commit.collection").Str + "/" + r.Str
		} else if m := gjson.GetBytes(v, "meta.id"); m.Exists() {
			id = m.Str
		} else {
			t.Fatalf("output record %.200q has no id", v)
		}
		ids[id]++
	}
	return ids
}

// resumeLines are the log lines of a bend process about resuming its source.
func resumeLines(log string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "resum") || strings.Contains(l, "gap") || strings.Contains(l, "connected") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
