package main

// The workers scenario: remote enrichment at scale. One bend process runs
// the distributor and the task server with no in-process workers
// (enrich.workers 0); 1, 2, 4 and 8 `bend work` processes lease its tasks
// over HTTP and run a lookup-style enricher (an HTTP call answering after
// --workers-lookup) that is required, so every activity waits for its task
// and the emit rate is the task rate. Each count is one run over the same
// preloaded input with a fresh group and output topic, every id counted in
// the output. A last run at the middle count SIGKILLs one worker a third of
// the way in and starts a new one 5 s later: what a dying and a joining
// worker cost (tasks/s before, during and after; leases expired).

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

var (
	wkCounts     = flag.String("workers-counts", "1,2,4,8", "workers: numbers of `bend work` processes, one run each")
	wkEvents     = flag.Int64("workers-events", 120000, "workers: records preloaded and drained per run")
	wkGoroutines = flag.Int("workers-goroutines", 16, "workers: goroutines per `bend work` process (--workers)")
	wkBatch      = flag.Int("workers-batch", 64, "workers: tasks leased at once per goroutine (--batch)")
	wkEnricher   = flag.String("workers-enricher", "lookup", "workers: lookup (an HTTP call answering after --workers-lookup) or noop (no work: the task server's own cost)")
	wkLookup     = flag.Duration("workers-lookup", 2*time.Millisecond, "workers: the lookup service's answer time")
)

// wkRun is one run of the workers scenario.
type wkRun struct {
	Workers    int     `json:"workers"`    // `bend work` processes
	Goroutines int     `json:"goroutines"` // per process
	Kill       bool    `json:"kill"`       // one worker SIGKILLed, a new one started
	Enricher   string  `json:"enricher"`   // lookup or noop
	Events     int64   `json:"events"`
	Output     int64   `json:"output"`
	Lost       int64   `json:"lost"`
	Dup        int64   `json:"dup"`
	Seconds    float64 `json:"seconds"` // first result to the last record emitted
	TasksPerS  float64 `json:"tasks_per_s"`
	MedianPerS float64 `json:"median_tasks_per_s"` // median of the full 1 s samples
	// CPU-seconds per million tasks: the bend process (distributor, task
	// server, sink) and all workers together.
	ServerCPU float64 `json:"server_cpu_s_per_million"`
	WorkerCPU float64 `json:"worker_cpu_s_per_million"`
	Expired   int64   `json:"leases_expired"`
	// For the kill run: tasks/s in the 5 s before the kill, the 5 s after
	// it, and the 5 s after the replacement started; and the seconds from
	// the kill; and the lowest full second in the 10 s after the kill (the
	// killed worker's leased tasks wait for their lease to expire).
	BeforeKill   float64   `json:"before_kill_per_s,omitempty"`
	AfterKill    float64   `json:"after_kill_per_s,omitempty"`
	AfterJoin    float64   `json:"after_join_per_s,omitempty"`
	MinAfterKill float64   `json:"min_after_kill_per_s,omitempty"`
	PerSecond    []float64 `json:"per_second"` // tasks/s, second by second
	ServerRSSMB  float64   `json:"server_peak_rss_mb"`
	LoadAverages string    `json:"load"`
}

func runWorkers(brokers, bin, work, out string) error {
	var counts []int
	for _, f := range strings.Split(*wkCounts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("--workers-counts: %q is not a positive number", f)
		}
		counts = append(counts, n)
	}
	tag := fmt.Sprintf("workers.%d", time.Now().Unix())
	in := "bench." + tag + ".in"
	if err := createTopic(brokers, in, 8); err != nil {
		return err
	}
	rate, err := preload(brokers, in, *wkEvents, 0)
	if err != nil {
		return err
	}
	log.Printf("workers: preloaded %d records at %.0f/s into %s", *wkEvents, rate, in)
	lookupURL, _, stop := lookupServer(*wkLookup)
	defer stop()
	var runs []wkRun
	for _, k := range counts {
		r, err := wkRunOne(brokers, bin, work, in, lookupURL, k, false)
		if err != nil {
			return fmt.Errorf("workers %d: %w", k, err)
		}
		runs = append(runs, r)
	}
	mid := counts[len(counts)/2]
	if mid < 2 {
		mid = 2
	}
	// The kill run needs its phases (5 s before, 5 s between the kill and
	// the join, 5 s after) inside the input: --workers-events must last
	// well over 15 s at the middle count's rate.
	r, err := wkRunOne(brokers, bin, work, in, lookupURL, mid, true)
	if err != nil {
		return fmt.Errorf("workers %d with a kill: %w", mid, err)
	}
	runs = append(runs, r)
	b, _ := json.MarshalIndent(runs, "", "  ")
	if err := os.WriteFile(filepath.Join(out, "workers-"+*wkEnricher+".json"), b, 0o644); err != nil {
		return err
	}
	fmt.Print(wkTable(runs))
	return nil
}

func wkRunOne(brokers, bin, work, in, lookupURL string, k int, kill bool) (wkRun, error) {
	r := wkRun{Enricher: *wkEnricher, Workers: k, Goroutines: *wkGoroutines, Kill: kill, Events: *wkEvents, LoadAverages: loadavg()}
	tag := fmt.Sprintf("workers%d.%d", k, time.Now().UnixNano())
	if kill {
		tag = "kill" + tag
	}
	outTopic, dlq := "bench."+tag+".out", "bench."+tag+".dlq"
	admin, tasks := freePort(), freePort()
	cfgPath := filepath.Join(work, tag+".yaml")
	if err := os.WriteFile(cfgPath, []byte(wkConfig(brokers, in, outTopic, dlq, "bench."+tag, admin, tasks, lookupURL)), 0o644); err != nil {
		return r, err
	}
	logf, err := os.Create(filepath.Join(work, tag+".log"))
	if err != nil {
		return r, err
	}
	defer logf.Close()
	start := func(args ...string) (*exec.Cmd, error) {
		c := exec.Command(bin, args...)
		c.Stdout, c.Stderr = logf, logf
		c.Env = append(os.Environ(), "BEND_ENRICH_REMOTE_TOKEN=bench-token")
		return c, c.Start()
	}
	server, err := start("run", "--config", cfgPath)
	if err != nil {
		return r, err
	}
	defer func() { _ = server.Process.Kill(); _ = server.Wait() }()
	startWorker := func() (*exec.Cmd, error) {
		return start("work", "--config", cfgPath, "--distributor", "http://"+tasks,
			"--workers", strconv.Itoa(*wkGoroutines), "--batch", strconv.Itoa(*wkBatch))
	}
	var workers []*exec.Cmd
	var deadWorkerTicks int64
	defer func() {
		for _, w := range workers {
			_ = w.Process.Kill()
			_ = w.Wait()
		}
	}()
	for range k {
		w, err := startWorker()
		if err != nil {
			return r, err
		}
		workers = append(workers, w)
	}
	url := "http://" + admin + "/metrics.json?raw=1"
	deadline := time.Now().Add(6 * time.Minute)
	// Samples every wkPoll from the last one before the first result
	// (whose counters are the run's start) to the first at which every
	// record was emitted.
	var ss []wkSample
	var emitted int64
	var killAt, joinAt time.Time
	var startTicks, workerStart int64
	tick := time.NewTicker(wkPoll)
	defer tick.Stop()
	for emitted < *wkEvents {
		if time.Now().After(deadline) {
			return r, fmt.Errorf("timed out with %d of %d emitted", emitted, *wkEvents)
		}
		<-tick.C
		m, err := rawMetrics(url)
		if err != nil {
			continue // not up yet
		}
		now := time.Now()
		res := m["enrich.remote.results"]
		emitted = int64(m["sink.emitted"])
		r.Expired = int64(m["enrich.remote.expired"])
		if res == 0 || len(ss) == 0 {
			// Before the first result: this reading may be the run's
			// start, so it and its CPU counters replace the last one.
			startTicks, _ = procStats(server.Process.Pid)
			workerStart = 0
			for _, w := range workers {
				t, _ := procStats(w.Process.Pid)
				workerStart += t
			}
			ss = ss[:0]
		}
		ss = append(ss, wkSample{at: now, results: res})
		if res == 0 {
			continue
		}
		if _, rss := procStats(server.Process.Pid); float64(rss)/1024 > r.ServerRSSMB {
			r.ServerRSSMB = float64(rss) / 1024
		}
		if kill && killAt.IsZero() && int64(res) > *wkEvents/3 {
			killAt = now
			t, _ := procStats(workers[0].Process.Pid)
			deadWorkerTicks += t
			_ = workers[0].Process.Signal(syscall.SIGKILL)
			_ = workers[0].Wait()
			workers = workers[1:]
			log.Printf("workers %d: worker SIGKILLed at %.0f results", k, res)
		}
		if kill && !killAt.IsZero() && joinAt.IsZero() && now.Sub(killAt) >= 5*time.Second {
			w, err := startWorker()
			if err != nil {
				return r, err
			}
			workers = append(workers, w)
			joinAt = now
		}
	}
	endTicks, _ := procStats(server.Process.Pid)
	var workerEnd int64 = deadWorkerTicks
	for _, w := range workers {
		t, _ := procStats(w.Process.Pid)
		workerEnd += t
	}
	// The replacement's ticks count whole (it started after the start).
	n, secs := wkSpan(ss)
	r.Seconds = secs
	if secs > 0 {
		r.TasksPerS = n / secs
	}
	results := wkPerSecond(ss) // results[i]: the counter i seconds after the start
	for i := 1; i < len(results); i++ {
		r.PerSecond = append(r.PerSecond, results[i]-results[i-1])
	}
	if len(r.PerSecond) > 2 {
		full := slices.Clone(r.PerSecond[:len(r.PerSecond)-1]) // the last second is partial
		sort.Float64s(full)
		r.MedianPerS = full[len(full)/2]
	}
	const hz = 100.0 // USER_HZ
	if n > 0 {
		r.ServerCPU = float64(endTicks-startTicks) / hz / n * 1e6
		r.WorkerCPU = float64(workerEnd-workerStart) / hz / n * 1e6
	}
	if kill && !killAt.IsZero() {
		second := func(t time.Time) int { return int(t.Sub(ss[0].at) / time.Second) }
		rateOver := func(from, to int) float64 {
			from, to = max(from, 0), min(to, len(results)-1)
			if to <= from {
				return 0
			}
			return (results[to] - results[from]) / float64(to-from)
		}
		ka := second(killAt)
		r.BeforeKill = rateOver(ka-5, ka)
		r.AfterKill = rateOver(ka, ka+5)
		if !joinAt.IsZero() {
			ja := second(joinAt)
			r.AfterJoin = rateOver(ja, ja+5)
		}
		r.MinAfterKill = -1
		for i := ka + 1; i < min(ka+11, len(results)-1); i++ { // the last second is partial
			if d := results[i] - results[i-1]; r.MinAfterKill < 0 || d < r.MinAfterKill {
				r.MinAfterKill = d
			}
		}
	}
	got, lost, dup, _, _, err := verify(brokers, outTopic, *wkEvents, time.Time{}, time.Time{}, nil)
	if err != nil {
		return r, err
	}
	r.Output, r.Lost, r.Dup = got, lost, dup
	log.Printf("workers %d (kill %v): %.0f tasks/s (median %.0f), server %.1f / workers %.1f CPU-s per million, lost %d dup %d, expired %d",
		k, kill, r.TasksPerS, r.MedianPerS, r.ServerCPU, r.WorkerCPU, lost, dup, r.Expired)
	return r, nil
}

// wkPoll is how often a run reads the server's counters: it bounds the
// error of a run's span (at its start and at its end) whatever the run's
// length; a run of well under a second still gets a rate.
const wkPoll = 100 * time.Millisecond

// wkSample is one reading of the server's enrich.remote.results.
type wkSample struct {
	at      time.Time
	results float64
}

// wkSpan returns the tasks run and the seconds they took, from samples ss
// (in order) whose first is the last reading before the first result, if
// one was taken (the run starts after it), and whose last is the first at
// which every record was emitted.
func wkSpan(ss []wkSample) (tasks, secs float64) {
	if len(ss) < 2 {
		return 0, 0
	}
	return ss[len(ss)-1].results - ss[0].results, ss[len(ss)-1].at.Sub(ss[0].at).Seconds()
}

// wkPerSecond returns the results counter at each whole second from the
// first sample (the latest reading at or before it), and last the final
// reading (a partial second).
func wkPerSecond(ss []wkSample) []float64 {
	if len(ss) == 0 {
		return nil
	}
	var out []float64
	next := ss[0].at
	for i, s := range ss {
		for !s.at.Before(next) {
			v := s.results
			if s.at.After(next) && i > 0 {
				v = ss[i-1].results // the reading at or before the mark
			}
			out = append(out, v)
			next = next.Add(time.Second)
		}
	}
	if last := ss[len(ss)-1]; last.at.After(next.Add(-time.Second)) {
		out = append(out, last.results)
	}
	return out
}

// rawMetrics reads the numeric raw metrics of /metrics.json (counters and
// gauges; meters by their count).
func rawMetrics(url string) (map[string]float64, error) {
	b, err := httpGet(url)
	if err != nil {
		return nil, err
	}
	var s struct {
		Metrics map[string]json.RawMessage `json:"metrics"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	out := make(map[string]float64, len(s.Metrics))
	for k, v := range s.Metrics {
		var f float64
		if json.Unmarshal(v, &f) == nil {
			out[k] = f
			continue
		}
		var m struct {
			Count float64 `json:"count"`
		}
		if json.Unmarshal(v, &m) == nil {
			out[k] = m.Count
		}
	}
	return out, nil
}

func wkConfig(brokers, in, out, dlq, group, admin, tasks, lookupURL string) string {
	enricher := fmt.Sprintf(`    - name: scores
      type: lookup
      required: true
      timeout: 1s
      max_attempts: 1000
      lookup:
        url: %q
`, lookupURL+"/scores/{id}")
	if *wkEnricher == "noop" {
		enricher = `    - name: noop
      type: noop
      required: true
      max_attempts: 1000
`
	}
	return fmt.Sprintf(`kafka:
  brokers: [%q]
  topics: {input: %q, output: %q, dead_letter: %q, partitions: 8, replication_factor: 1}
ingest:
  synthetic: {enabled: false}
distributor:
  group: %q
  initial_offset: oldest
delayqueue:
  max_items: 10000
enrich:
  workers: 0
  queue_size: 4096
  remote:
    addr: %q
    lease: 3s
    max_batch: 256
  enrichers:
%ssink:
  kafka: {enabled: true, max_in_flight: 8192, compression: lz4, linger: 5ms, batch_bytes: 1048576}
admin:
  addr: %q
progress: 0s
shutdown_timeout: 30s
`, brokers, in, out, dlq, group, tasks, enricher, admin)
}

func wkTable(runs []wkRun) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "| workers\t| goroutines each\t| tasks/s\t| median/s\t| server CPU-s/M\t| worker CPU-s/M\t| lost\t| dup\t| expired\t| notes\t|")
	fmt.Fprintln(tw, "|---\t|---\t|---\t|---\t|---\t|---\t|---\t|---\t|---\t|---\t|")
	for _, r := range runs {
		note := ""
		if r.Kill {
			note = fmt.Sprintf("1 SIGKILLed: %.0f/s before, %.0f/s 5 s after, %.0f/s after a new one joined; lowest second in the 10 s after the kill %.0f/s", r.BeforeKill, r.AfterKill, r.AfterJoin, r.MinAfterKill)
		}
		// A run of under three seconds has no median of full seconds.
		fmt.Fprintf(tw, "| %d\t| %d\t| %.0f\t| %s\t| %.1f\t| %.1f\t| %d\t| %d\t| %d\t| %s\t|\n",
			r.Workers, r.Goroutines, r.TasksPerS, msOrDash(r.MedianPerS), r.ServerCPU, r.WorkerCPU, r.Lost, r.Dup, r.Expired, note)
	}
	_ = tw.Flush()
	return b.String()
}
