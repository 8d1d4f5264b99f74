package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bendstream/bend/enrich"
	"github.com/bendstream/bend/internal/activity"
	"github.com/bendstream/bend/internal/kafkatest"
	metrics "github.com/rcrowley/go-metrics"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

// killable is a transport that fails every request once killed, as if the
// worker's process had died: no more heartbeats, no more results.
type killable struct{ dead atomic.Bool }

func (k *killable) RoundTrip(r *http.Request) (*http.Response, error) {
	if k.dead.Load() {
		return nil, errors.New("worker killed")
	}
	return http.DefaultTransport.RoundTrip(r)
}

// okIDs returns, per activity id in the NDJSON sink file, how often it was
// emitted with enrichments.<name>.status "ok"; other statuses count as -1000.
func okIDs(t *testing.T, path, name string) map[string]int {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ids := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev struct {
			ID          string `json:"id"`
			Enrichments map[string]struct {
				Status string `json:"status"`
			} `json:"enrichments"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			continue // a line being written
		}
		if ev.Enrichments[name].Status == "ok" {
			ids[ev.ID]++
		} else {
			ids[ev.ID] -= 1000
		}
	}
	return ids
}

// TestWorkRemoteWorkersEndToEnd runs the daemon with no local workers and
// its task server on; two remote workers enrich, and one is killed
// mid-run (its requests fail from then on, as if the process died, and
// its context ends). Its leased tasks expire and are retried, so every
// activity is emitted with the required enrichment done.
func TestWorkRemoteWorkersEndToEnd(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	const n = 3000
	cfg := testConfig(t, brokers, n)
	cfg.Ingest.Synthetic.Rate = 2000 // so the kill lands mid-run
	cfg.Enrich.Workers = 0
	// A 500 ms lease makes the killed worker's leases expire quickly; on a
	// loaded machine a survivor's lease can expire too (a lease answer or
	// heartbeat delayed past it), a legitimate failed attempt. Ten attempts
	// keep such retries from exhausting a required enrichment, which would
	// dead-letter its activity and say nothing about the kill.
	cfg.Enrich.Enrichers = []enrich.Spec{{Name: "stats", Type: "stats", Required: true, Timeout: time.Second, MaxAttempts: 10, Backoff: 50 * time.Millisecond}}
	cfg.Enrich.Remote.Addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg.Enrich.Remote.Token = "work-test-token"
	cfg.Enrich.Remote.Lease = 500 * time.Millisecond
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := testLogger(t)
	hook := logtest.NewLocal(log)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, log, io.Discard) }()
	url := "http://" + cfg.Enrich.Remote.Addr

	// The doomed worker: slow, and from its 305th task on it holds each
	// task until it is killed, so that it dies with leases in progress
	// (with 4 goroutines, at least 301 tasks are done by then). Without the
	// hold, the other worker may have drained the queue at the kill.
	reg1 := metrics.NewRegistry()
	built, err := cfg.Enrich.Build(nil, reg1)
	if err != nil {
		t.Fatal(err)
	}
	inner := built[0].Enricher
	var calls atomic.Int64
	holding := make(chan struct{})
	var holdOnce sync.Once
	built[0].Enricher = enrich.EnricherFunc(func(ctx context.Context, a *activity.Fields) (json.RawMessage, error) {
		if calls.Add(1) > 304 {
			holdOnce.Do(func() { close(holding) })
			<-ctx.Done()
			return nil, ctx.Err()
		}
		select {
		case <-time.After(2 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return inner.Enrich(ctx, a)
	})
	tr := &killable{}
	w1, err := enrich.NewWorker(enrich.WorkerConfig{URL: url, Token: cfg.Enrich.Remote.Token, Workers: 4, Batch: 16,
		Wait: 500 * time.Millisecond, Client: &http.Client{Transport: tr}}, built, log.WithField("worker", 1), reg1)
	if err != nil {
		t.Fatal(err)
	}
	ctx1, kill1 := context.WithCancel(context.Background())
	defer kill1()
	done1 := make(chan error, 1)
	go func() { done1 <- w1.Run(ctx1) }()

	// The surviving worker runs the real `bend work` code path.
	ctx2, stop2 := context.WithCancel(context.Background())
	defer stop2()
	done2 := make(chan error, 1)
	go func() {
		done2 <- work(ctx2, cfg.Enrich, enrich.WorkerConfig{URL: url, Token: cfg.Enrich.Remote.Token, Workers: 2, Batch: 8, Wait: 500 * time.Millisecond}, log)
	}()

	ran1 := metrics.GetOrRegisterTimer("enrich.stats.latency", reg1)
	eventually(t, 60*time.Second, "the doomed worker enriched 300 tasks and holds the next", func() bool {
		select {
		case <-holding:
			return ran1.Count() >= 300
		default:
			return false
		}
	})
	tr.dead.Store(true)
	kill1()
	if err := <-done1; err != nil {
		t.Errorf("killed worker: %v", err)
	}
	t.Logf("killed worker 1 after %d attempts", ran1.Count())

	eventually(t, 90*time.Second, "every activity emitted with stats ok", func() bool {
		return len(okIDs(t, cfg.Sink.File.Path, "stats")) == n
	})
	cancel()
	waitRun(t, done)
	stop2()
	if err := <-done2; err != nil {
		t.Errorf("surviving worker: %v", err)
	}
	requeued := false
	for _, e := range hook.AllEntries() {
		requeued = requeued || strings.Contains(e.Message, "leases expired")
	}
	if !requeued {
		t.Error("no lease expired: the kill did not interrupt leased tasks, so the test proves nothing")
	}
	ids := okIDs(t, cfg.Sink.File.Path, "stats")
	wantAllIDs(t, "sink file", ids, n)
	for id, c := range ids {
		if c < 1 {
			t.Errorf("%s emitted without stats ok (%d)", id, c)
		}
	}
}

// TestWorkCommandNeedsDistributor: `bend work` without --distributor fails
// before doing anything.
func TestWorkCommandNeedsDistributor(t *testing.T) {
	var out, errOut strings.Builder
	root := newRootCmd(&out, &errOut)
	root.SetArgs([]string{"work"})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "distributor") {
		t.Errorf("bend work: %v, want an error naming --distributor", err)
	}
}
