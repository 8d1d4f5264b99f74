package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/kafkatest"
)

// TestMain lets the test binary act as the bend binary for the kill tests:
// with BEND_TEST_MAIN=1 it runs bend's main instead of the tests.
func TestMain(m *testing.M) {
	if os.Getenv("BEND_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// produceInput writes activities act-1..act-n to topic.
func produceInput(t *testing.T, brokers []string, topic string, n int) {
	t.Helper()
	sc := kafkatest.Config()
	sc.Producer.Return.Successes = true
	sc.Producer.Flush.Frequency = time.Millisecond
	p, err := sarama.NewSyncProducer(brokers, sc)
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	defer p.Close()
	batch := make([]*sarama.ProducerMessage, 0, n)
	for i := 1; i <= n; i++ {
		batch = append(batch, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprint(i)),
			Value: sarama.StringEncoder(fmt.Sprintf(`{"id":"act-%d","text":"kill test %d"}`, i, i))})
	}
	if err := p.SendMessages(batch); err != nil {
		t.Fatalf("producing input: %v", err)
	}
}

// bendProcess is bend running as a child process.
type bendProcess struct {
	cmd *exec.Cmd
	log *lockedWriter
}

func startBend(t *testing.T, cfgPath string) *bendProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "run", "--config", cfgPath)
	cmd.Env = append(os.Environ(), "BEND_TEST_MAIN=1")
	log := &lockedWriter{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting bend: %v", err)
	}
	return &bendProcess{cmd: cmd, log: log}
}

// TestKillRestart SIGKILLs a bend process at random points while it drains
// a backlog, several times, and restarts it. At-least-once: no id may be
// lost. Exactly-once: a read_committed consumer of the output must see every
// id exactly once.
func TestKillRestart(t *testing.T) {
	for _, tc := range []struct {
		name string
		eos  bool
	}{
		{"at-least-once", false},
		{"exactly-once", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			brokers := kafkatest.Brokers(t)
			const n = 20000
			in, out, dlq := kafkatest.Name(t, "in"), kafkatest.Name(t, "out"), kafkatest.Name(t, "dlq")
			group := kafkatest.Name(t, "group")
			cfg := fmt.Sprintf(`kafka:
  brokers: [%s]
  topics: {input: %s, output: %s, dead_letter: %s, partitions: 4}
ingest:
  synthetic: {enabled: false}
distributor: {group: %s, instance_id: bend-test-1, delay: 200ms, commit_interval: 100ms}
delayqueue: {max_items: 500, early_release: false}
sink:
  kafka: {exactly_once: %v, transactional_id: %s}
progress: 0s
admin: {addr: ""}
shutdown_timeout: 20s
log: {level: warn}
`, strings.Join(brokers, ","), in, out, dlq, group, tc.eos, "bend-"+group)
			path := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			// Create the topics with bend's own setup, then fill the input.
			first := startBend(t, path)
			eventually(t, 30*time.Second, "bend to create its topics", func() bool { return hwmSum(brokers, in) == 0 })
			produceInput(t, brokers, in, n)

			rng := rand.New(rand.NewPCG(uint64(len(tc.name)), 99))
			proc := first
			const kills = 4
			midStream := 0
			for k := range kills {
				// Kill a process that works: once the output has grown
				// since it started (start-up, the group join and, in
				// exactly-once mode, the first commit take seconds on a
				// loaded machine), after a random while.
				before := hwmSum(brokers, out)
				eventually(t, 60*time.Second, "the output to grow", func() bool { return hwmSum(brokers, out) > before })
				time.Sleep(time.Duration(rng.IntN(600)) * time.Millisecond)
				if err := proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatalf("kill %d: %v", k, err)
				}
				_ = proc.cmd.Wait()
				// The output's high-water mark (records, and transaction
				// markers in exactly-once mode): short of n while the
				// input is not all emitted.
				got := hwmSum(brokers, out)
				if got > before && got < int64(n) {
					midStream++
				}
				t.Logf("kill %d: output high-water mark %d", k+1, got)
				proc = startBend(t, path)
			}
			if midStream < 2 {
				t.Fatalf("only %d of %d kills hit a process in mid-stream; the test must crash bend while it works", midStream, kills)
			}
			// The last process drains the rest, then stops cleanly.
			deadline := time.Now().Add(120 * time.Second)
			for len(outputIDs(t, brokers, out, tc.eos, 2*n, 2*time.Second)) != n {
				if time.Now().After(deadline) {
					sum, hwm := committed(t, brokers, group, in)
					t.Fatalf("the output never held every id (%d of %d); committed %d of %d; last process log:\n%s", len(outputIDs(t, brokers, out, tc.eos, 2*n, 2*time.Second)), n, sum, hwm, tail(proc.log.String()))
				}
			}
			if err := proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if err := proc.cmd.Wait(); err != nil {
				t.Fatalf("bend did not stop cleanly: %v\n%s", err, tail(proc.log.String()))
			}
			ids := outputIDs(t, brokers, out, tc.eos, 2*n, 3*time.Second) // reads until quiet, duplicates included
			dups := 0
			for i := 1; i <= n; i++ {
				c := ids[fmt.Sprintf("act-%d", i)]
				if c == 0 {
					t.Fatalf("act-%d lost after %d kills", i, kills)
				}
				dups += c - 1
			}
			t.Logf("%s: %d kills, %d ids, %d duplicates seen by a %s consumer", tc.name, kills, len(ids), dups,
				map[bool]string{true: "read_committed", false: "read_uncommitted"}[tc.eos])
			// At-least-once redelivers what was emitted but not committed at
			// each kill: at most the in-flight window (delayqueue.max_items)
			// plus what was acked in the last commit interval.
			if !tc.eos && dups > kills*2*500 {
				t.Fatalf("%d duplicates after %d kills; want at most %d", dups, kills, kills*2*500)
			}
			if tc.eos && dups != 0 {
				t.Fatalf("exactly-once: %d duplicates seen by a read_committed consumer", dups)
			}
		})
	}
}

// outputIDs counts the ids in the output topic (read_committed when eos).
func outputIDs(t *testing.T, brokers []string, topic string, eos bool, want int, timeout time.Duration) map[string]int {
	t.Helper()
	read := kafkatest.ReadAll
	if eos {
		read = kafkatest.ReadCommitted
	}
	ids := map[string]int{}
	for _, v := range read(t, brokers, topic, want, timeout) {
		var ev struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(v, &ev); err != nil {
			t.Fatalf("output record %q: %v", v, err)
		}
		ids[ev.ID]++
	}
	return ids
}

func tail(s string) string {
	if len(s) > 4000 {
		return s[len(s)-4000:]
	}
	return s
}
