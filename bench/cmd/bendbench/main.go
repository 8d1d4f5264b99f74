// Command bendbench is bend's load harness: it runs the bend binary as a child
// process against a real Kafka broker with a generated config, samples the
// admin server's /metrics.json and the process's RSS and CPU every second,
// then reads the output topic back to count lost and duplicated ids and to
// compute ingest-to-emit latency. It writes a JSON summary and a PNG plot per
// scenario.
//
// Usage:
//
//	go run ./bench/cmd/bendbench [flags] SCENARIO...
//
// Scenarios: bare (the baseline consume-produce loop, run in-process; see bare.go), steady, steady40, steady60, spike, seedspike, spikecap, drain, iobound, zipf, bigevents, bigevents512, slowenrich (see scenarios below), scaleout (scaleout.go), workers (remote `bend work` processes at scale; workers.go). Without
// --brokers it starts a broker with scripts/kafka (state in --kafka-state) and
// stops it at the end.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/bench/internal/benchkit"
	"github.com/bendstream/bend/internal/pack"
	"github.com/bendstream/bend/internal/synth"
)

// scenario is one load shape.
type scenario struct {
	Name        string  `json:"name"`
	Rate        float64 `json:"rate"`                 // synthetic steady rate, events/s
	Profile     string  `json:"profile"`              // steady or spike
	SpikeRate   float64 `json:"spike_rate,omitempty"` // events/s during the spike
	SpikeEvery  string  `json:"spike_every,omitempty"`
	SpikeFor    string  `json:"spike_for,omitempty"`
	Limit       int64   `json:"limit"`   // events generated (or preloaded, for drain)
	Preload     bool    `json:"preload"` // drain: records produced before bend starts, no synthetic source
	KeySkew     float64 `json:"key_skew"`
	Enricher    string  `json:"enricher"` // noop, stats or lookup
	Workers     int     `json:"workers"`
	QueueSize   int     `json:"queue_size"`
	MaxItems    int     `json:"delayqueue_max_items"`
	Emitters    int     `json:"emitters"`
	LookupDelay string  `json:"lookup_delay,omitempty"`
	// EventBytes pads each preloaded event's text to this size (bigevents).
	EventBytes int `json:"event_bytes,omitempty"`
	// StallFor holds the sink (a webhook bendbench serves) for this long
	// after bend starts, then releases it (bigevents).
	StallFor string `json:"stall_for,omitempty"`
	// MemoryBudget is distributor.memory_budget; 0 keeps the default.
	MemoryBudget int64 `json:"memory_budget,omitempty"`
	// PackEvents preloads packed records of this many events each
	// (internal/pack) and measures raw sarama produce beside the drain
	// (packed.go).
	PackEvents int `json:"pack_events,omitempty"`
}

// scenarios are scaled to a few minutes each on a 2-core machine.
var scenarios = map[string]scenario{
	"steady":   {Name: "steady", Rate: 25000, Profile: "steady", Limit: 25000 * 60, Enricher: "noop", Workers: 4, QueueSize: 1024, MaxItems: 10000, Emitters: 2},
	"steady40": {Name: "steady40", Rate: 40000, Profile: "steady", Limit: 40000 * 45, Enricher: "noop", Workers: 4, QueueSize: 1024, MaxItems: 10000, Emitters: 2},
	"steady60": {Name: "steady60", Rate: 60000, Profile: "steady", Limit: 60000 * 30, Enricher: "noop", Workers: 4, QueueSize: 1024, MaxItems: 10000, Emitters: 2},
	"spikecap": {Name: "spikecap", Rate: 3000, Profile: "spike", SpikeRate: 30000, SpikeEvery: "15s", SpikeFor: "5s", Limit: 15*3000 + 5*30000 + 45*3000, Enricher: "lookup", LookupDelay: "50ms", Workers: 300, QueueSize: 600, MaxItems: 2000, Emitters: 2},
	"spike":    {Name: "spike", Rate: 8000, Profile: "spike", SpikeRate: 50000, SpikeEvery: "20s", SpikeFor: "10s", Limit: 20*8000 + 10*50000 + 30*8000, Enricher: "noop", Workers: 2, QueueSize: 256, MaxItems: 2000, Emitters: 2},
	// seedspike is the spike at full length: 8k/s, one 60 s burst of 50k/s, 8k/s again, with
	// enrichment capped at 20k/s (lookup 10 ms x 200 workers), well below the burst: lag must grow and drain.
	"seedspike": {Name: "seedspike", Rate: 8000, Profile: "spike", SpikeRate: 50000, SpikeEvery: "20s", SpikeFor: "60s", Limit: 20*8000 + 60*50000 + 20*8000, Enricher: "lookup", LookupDelay: "10ms", Workers: 200, QueueSize: 400, MaxItems: 4000, Emitters: 2},
	"drain":     {Name: "drain", Rate: 8000, Profile: "steady", Limit: 1000000, Preload: true, Enricher: "noop", Workers: 4, QueueSize: 1024, MaxItems: 10000, Emitters: 2},
	"iobound":   {Name: "iobound", Rate: 2000, Profile: "steady", Limit: 2000 * 45, Enricher: "lookup", LookupDelay: "200ms", Workers: 512, QueueSize: 2048, MaxItems: 4000, Emitters: 2},
	// bigevents: 12,000 preloaded events of 300 KB, the sink (a webhook) stalled for the first 30 s, then released.
	"bigevents": {Name: "bigevents", Rate: 1, Profile: "steady", Limit: 12000, Preload: true, EventBytes: 300 << 10, StallFor: "30s", MemoryBudget: 256 << 20, Enricher: "stats", Workers: 4, QueueSize: 1024, MaxItems: 10000, Emitters: 2},
	// slowenrich: stats plus an optional lookup answering in 500 ms (timeout 1 s) at 5,000 events/s offered;
	// "slowenrich" also runs slowenrich-base (stats alone) first and reports the throughput ratio.
	"slowenrich":      {Name: "slowenrich", Rate: 5000, Profile: "steady", Limit: 5000 * 30, Enricher: "stats+lookup", LookupDelay: "500ms", Workers: 4, QueueSize: 1024, MaxItems: 10000, Emitters: 2},
	"slowenrich-base": {Name: "slowenrich-base", Rate: 5000, Profile: "steady", Limit: 5000 * 30, Enricher: "stats", Workers: 4, QueueSize: 1024, MaxItems: 10000, Emitters: 2},
	"bigevents512":    {Name: "bigevents512", Rate: 1, Profile: "steady", Limit: 8000, Preload: true, EventBytes: 512 << 10, StallFor: "30s", MemoryBudget: 256 << 20, Enricher: "stats", Workers: 4, QueueSize: 1024, MaxItems: 10000, Emitters: 2},
	// packed: drain's 1,000,000 events preloaded 50 to a record, drained with sink.kafka.batching at 50; beside it,
	// raw sarama produce of the same events unpacked. The delay queue counts events: 50,000 is 1,000 packed records.
	"packed": {Name: "packed", Rate: 8000, Profile: "steady", Limit: 1000000, Preload: true, PackEvents: 50, Enricher: "noop", Workers: 4, QueueSize: 1024, MaxItems: 50000, Emitters: 2},
	"zipf":   {Name: "zipf", Rate: 15000, Profile: "steady", Limit: 15000 * 45, KeySkew: 1.1, Enricher: "noop", Workers: 4, QueueSize: 1024, MaxItems: 10000, Emitters: 2},
}

// sample is one second of the run.
type sample struct {
	T          float64 `json:"t"` // seconds since bend started
	IngestRate float64 `json:"ingest_rate"`
	EmitRate   float64 `json:"emit_rate"`
	Ingested   int64   `json:"ingested"`
	Emitted    int64   `json:"emitted"`
	Lag        int64   `json:"lag"`
	InFlight   int64   `json:"in_flight"`
	Parked     int64   `json:"parked"`
	RSSMB      float64 `json:"rss_mb"`
	HeapMB     float64 `json:"heap_mb"`     // go.heap_objects_bytes: live and unswept heap objects
	GoTotalMB  float64 `json:"go_total_mb"` // go.total_bytes: all memory the Go runtime mapped
	CPUPct     float64 `json:"cpu_pct"`     // of one core
	CPUTicks   int64   `json:"cpu_ticks"`   // bend's user+system CPU so far, USER_HZ (100/s)
}

// summary is the JSON written per scenario.
type summary struct {
	Scenario    scenario  `json:"scenario"`
	MemoryLimit int64     `json:"memory_limit"`
	Brokers     string    `json:"brokers"`
	Started     time.Time `json:"started"`
	LoadBefore  string    `json:"load_before"`
	LoadAfter   string    `json:"load_after"`
	PreloadRate float64   `json:"preload_rate,omitempty"` // bendbench's own sarama producer, records/s
	// RawProduceRate is raw sarama produce of the same events unpacked, one
	// per record, events/s: the mean of a run before bend starts and one
	// after it stopped (packed).
	RawProduceRate  float64   `json:"raw_produce_rate,omitempty"`
	RawProduceRates []float64 `json:"raw_produce_rates,omitempty"`
	Seconds         float64   `json:"seconds"` // bend start to last record emitted
	Ingested        int64     `json:"ingested"`
	Emitted         int64     `json:"emitted"`
	DeadLetters     int64     `json:"dead_letters"`
	IngestRate      float64   `json:"ingest_rate"`      // mean over the ingest span
	EmitRate        float64   `json:"emit_rate"`        // mean over the emit span
	MedianEmitRate  float64   `json:"median_emit_rate"` // median of the full 1 s samples inside the emit span
	MaxLag          int64     `json:"max_lag"`
	MaxParked       int64     `json:"max_parked"`
	PeakRSSMB       float64   `json:"peak_rss_mb"`
	PeakHeapMB      float64   `json:"peak_heap_mb"`
	MeanCPUPct      float64   `json:"mean_cpu_pct"`
	// CPUPerM is bend's CPU-seconds per million records emitted: its CPU
	// from the sample before the first emission to the one after the last,
	// over the records emitted.
	CPUPerM       float64            `json:"cpu_seconds_per_million"`
	OutputRecords int64              `json:"output_records"`
	Lost          int64              `json:"lost"`
	Duplicated    int64              `json:"duplicated"`
	Missing       int64              `json:"enrich_missing"`
	LatencyMS     map[string]float64 `json:"latency_ms"` // created_at -> output record timestamp
	// LatencySteadyMS leaves out, as well, the events created in the first
	// warm-up seconds after bend's first emit (the catch-up after the join).
	LatencySteadyMS map[string]float64 `json:"latency_steady_ms"`
	WarmupSeconds   float64            `json:"warmup_seconds"`
	BendExit        string             `json:"bend_exit"`
	Samples         []sample           `json:"samples"`
	LookupMaxActive int64              `json:"lookup_max_concurrent,omitempty"`
	// Enrich is the slow-lookup accounting of a stats+lookup scenario.
	Enrich *enrichFigures `json:"enrich,omitempty"`
}

// enrichFigures checks a stats+lookup run: every lookup the service answered
// (within the 1 s timeout, since it answers at its fixed delay) must be in
// the output, and nothing may run for an activity already emitted.
type enrichFigures struct {
	StatsOK         int64 `json:"stats_ok"`           // output records with stats ok
	LookupOK        int64 `json:"lookup_ok"`          // output records with the lookup's result
	LookupRequests  int64 `json:"lookup_requests"`    // requests the lookup service received
	LookupAnswered  int64 `json:"lookup_answered"`    // requests it answered (after its delay, the client still waiting)
	AnsweredMissing int64 `json:"answered_missing"`   // answered ids whose output lacks the result
	LookupSucceeded int64 `json:"lookup_succeeded"`   // bend's successful lookup attempts (enrich.scores.latency count)
	LateResults     int64 `json:"late_results"`       // attempts that reported after their activity was emitted (distributor.late_results)
	DroppedStale    int64 `json:"dropped_stale"`      // lookup tasks dropped unrun: activity emitted (enrich.scores.stale)
	DroppedDeadline int64 `json:"dropped_deadline"`   // dropped unrun: deadline too near (enrich.scores.deadline)
	DroppedOverload int64 `json:"dropped_overloaded"` // dropped unrun: lane full (enrich.scores.overloaded)
	Cut             int64 `json:"cut"`                // attempts cut at the deadline (enrich.scores.cut)
}

func main() {
	brokers := flag.String("brokers", "", "bootstrap address; empty starts one with scripts/kafka")
	kstate := flag.String("kafka-state", "/tmp/bendbench-kafka", "BEND_KAFKA_STATE for a broker bendbench starts")
	out := flag.String("out", "bench/results", "directory for the JSON summaries and PNG plots")
	work := flag.String("work", "/tmp/bendbench", "scratch directory: the bend binary, configs, logs")
	timeout := flag.Duration("timeout", 6*time.Minute, "longest run of one scenario")
	limitScale := flag.Float64("scale", 1, "multiply every scenario's event count (and so its length)")
	flag.Int64Var(&memoryLimit, "memory-limit", 0, "bend's memory_limit (Go soft memory limit, bytes); 0 = off")
	flag.DurationVar(&warmup, "warmup", 10*time.Second, "latency_steady_ms leaves out events created this soon after bend's first emit")
	flag.Parse()
	if flag.NArg() == 0 {
		log.Fatalf("usage: bendbench [flags] SCENARIO... (one of steady steady40 steady60 spike seedspike spikecap drain iobound zipf, or all)")
	}
	names := flag.Args()
	if len(names) == 1 && names[0] == "all" {
		names = []string{"steady", "steady40", "spike", "spikecap", "drain", "iobound", "zipf"}
	}
	for _, n := range names {
		if _, ok := scenarios[n]; !ok && n != "bare" && n != "scaleout" && n != "workers" {
			log.Fatalf("unknown scenario %q", n)
		}
	}
	must(os.MkdirAll(*work, 0o755))
	must(os.MkdirAll(*out, 0o755))

	bin := filepath.Join(*work, "bend")
	log.Printf("building %s", bin)
	if b, err := exec.Command("go", "build", "-o", bin, "./cmd/bend").CombinedOutput(); err != nil {
		log.Fatalf("go build ./cmd/bend: %v\n%s", err, b)
	}

	addr := *brokers
	if addr == "" {
		cmd := exec.Command("scripts/kafka", "start")
		cmd.Env = append(os.Environ(), "BEND_KAFKA_STATE="+*kstate)
		cmd.Stderr = os.Stderr
		b, err := cmd.Output()
		if err != nil {
			log.Fatalf("scripts/kafka start: %v", err)
		}
		addr = strings.TrimSpace(string(b))
		defer func() {
			c := exec.Command("scripts/kafka", "stop")
			c.Env = append(os.Environ(), "BEND_KAFKA_STATE="+*kstate)
			c.Stderr = os.Stderr
			_ = c.Run()
		}()
	}
	log.Printf("broker %s", addr)

	if i := slices.Index(names, "slowenrich"); i >= 0 && !slices.Contains(names, "slowenrich-base") {
		names = slices.Insert(names, i, "slowenrich-base") // the same run without the slow enricher
	}
	emitRates := map[string]float64{}
	for _, n := range names {
		if n == "scaleout" { // several bend processes: scaleout.go
			must(runScaleout(addr, bin, *work, *out))
			continue
		}
		if n == "workers" { // remote `bend work` processes at scale: workers.go
			must(runWorkers(addr, bin, *work, *out))
			continue
		}
		if n == "bare" { // the baseline loop for drain's ratios (bare.go)
			r, err := runBare(addr, int64(float64(scenarios["drain"].Limit)**limitScale), *timeout)
			if err != nil {
				log.Printf("bare: %v", err)
				continue
			}
			b, _ := json.MarshalIndent(r, "", "  ")
			must(os.WriteFile(filepath.Join(*out, "bare.json"), b, 0o644))
			log.Printf("bare: %d records at %.0f/s, %.2f CPU-seconds per million records", r.Records, r.Rate, r.CPUPerMSec)
			continue
		}
		sc := scenarios[n]
		sc.Limit = int64(float64(sc.Limit) * *limitScale)
		s, err := runScenario(sc, addr, bin, *work, *timeout)
		if err != nil {
			log.Printf("%s: %v", n, err)
			continue
		}
		emitRates[n] = s.EmitRate
		if n == "slowenrich" && emitRates["slowenrich-base"] > 0 {
			log.Printf("slowenrich: emit rate %.0f/s with the slow lookup, %.0f/s without: ratio %.2f; %d enrichments missing",
				s.EmitRate, emitRates["slowenrich-base"], s.EmitRate/emitRates["slowenrich-base"], s.Missing)
		}
		b, _ := json.MarshalIndent(s, "", "  ")
		must(os.WriteFile(filepath.Join(*out, n+".json"), b, 0o644))
		if err := plot(filepath.Join(*out, n+".png"), n, s.Samples); err != nil {
			log.Printf("%s: plot: %v", n, err)
		}
		log.Printf("%s: ingest %.0f/s emit %.0f/s lost %d dup %d p50 %.1f ms p99 %.1f ms p99.9 %.1f ms (after %s warm-up: %.1f / %.1f / %.1f ms) max lag %d peak RSS %.0f MB (heap %.0f MB) CPU %.0f%%",
			n, s.IngestRate, s.EmitRate, s.Lost, s.Duplicated, s.LatencyMS["p50"], s.LatencyMS["p99"], s.LatencyMS["p99.9"],
			warmup, s.LatencySteadyMS["p50"], s.LatencySteadyMS["p99"], s.LatencySteadyMS["p99.9"], s.MaxLag, s.PeakRSSMB, s.PeakHeapMB, s.MeanCPUPct)
		if s.CPUPerM > 0 { // CPU over the emit span per record: comparable with bare's figure
			log.Printf("%s: %.2f CPU-seconds per million records", n, s.CPUPerM)
		}
		if s.RawProduceRate > 0 {
			log.Printf("%s: drain %.0f events/s (%d per record), raw sarama produce %.0f events/s (runs %.0f), ratio %.2f",
				n, s.EmitRate, sc.PackEvents, s.RawProduceRate, s.RawProduceRates, s.EmitRate/s.RawProduceRate)
		}
	}
}

// warmup is --warmup; memoryLimit is --memory-limit.
var (
	warmup      time.Duration
	memoryLimit int64
)

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func freePort() string {
	a, err := benchkit.FreeAddr()
	must(err)
	return a
}

func runScenario(sc scenario, brokers, bin, work string, timeout time.Duration) (*summary, error) {
	tag := fmt.Sprintf("%s.%d", sc.Name, time.Now().Unix())
	in, outTopic, dlq := "bench."+tag+".in", "bench."+tag+".out", "bench."+tag+".dlq"
	s := &summary{Scenario: sc, MemoryLimit: memoryLimit, Brokers: brokers, Started: time.Now().UTC(), LoadBefore: loadavg()}
	log.Printf("%s: load %s, topics bench.%s.*", sc.Name, s.LoadBefore, tag)

	var hook *webhook
	if sc.StallFor != "" {
		hook = startWebhook(sc.Limit)
		defer hook.stop()
	}
	var lookupURL string
	var active *activeCounter
	if sc.Enricher == "lookup" || sc.Enricher == "stats+lookup" {
		d, _ := time.ParseDuration(sc.LookupDelay)
		var stop func()
		lookupURL, active, stop = lookupServer(d)
		defer stop()
	}
	var last *snapshot // the last /metrics.json read
	if sc.Preload {
		if err := createTopic(brokers, in, 8); err != nil {
			return nil, err
		}
		var r float64
		var err error
		if sc.PackEvents > 0 {
			if err := rawProduce(s, brokers, tag, sc.Limit); err != nil {
				return nil, err
			}
			r, err = preloadPacked(brokers, in, sc.Limit, sc.PackEvents)
		} else {
			r, err = preload(brokers, in, sc.Limit, sc.EventBytes)
		}
		if err != nil {
			return nil, err
		}
		s.PreloadRate = r
		log.Printf("%s: preloaded %d records at %.0f/s (sarama, lz4, linger 5ms, 1 MiB batches, acks=all)", sc.Name, sc.Limit, r)
	}

	admin := freePort()
	cfgPath := filepath.Join(work, tag+".yaml")
	must(os.WriteFile(cfgPath, []byte(bendConfig(sc, brokers, in, outTopic, dlq, "bench."+tag, admin, lookupURL, hook)), 0o644))
	logf, err := os.Create(filepath.Join(work, tag+".log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "run", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	t0 := time.Now()
	if hook != nil {
		d, _ := time.ParseDuration(sc.StallFor)
		hook.hold(t0.Add(d))
		log.Printf("%s: sink stalled until %s", sc.Name, t0.Add(d).Format(time.TimeOnly))
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	want := sc.Limit
	var prev sample
	var prevTicks int64 = -1
	var prevT time.Time
	var firstIngest, lastIngest, firstEmit, lastEmit float64 = -1, 0, -1, 0
	// A drain of a preloaded backlog lasts seconds: it is sampled every
	// 100 ms, so its emit span (and rate) is known to within 0.1 s at
	// each end, not 1 s.
	every := time.Second
	if sc.Preload && sc.StallFor == "" {
		every = 100 * time.Millisecond
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	var lastLog float64 = -10
	var firstEmitTicks, lastEmitTicks int64 = -1, 0
	done := false
	var snapErr error
loop:
	for {
		select {
		case err := <-exited:
			s.BendExit = fmt.Sprint(err)
			return nil, fmt.Errorf("bend exited early: %v (log %s)", err, logf.Name())
		case now := <-tick.C:
			snap, err := fetch("http://" + admin + "/metrics.json")
			ticks, rss := procStats(cmd.Process.Pid)
			if err != nil {
				snapErr = err
				if time.Since(t0) > timeout {
					break loop
				}
				continue
			}
			smp := sample{T: now.Sub(t0).Seconds(), Ingested: snap.Totals.Ingested, Emitted: snap.Totals.Emitted, CPUTicks: ticks,
				Lag: snap.Lag, InFlight: snap.InFlight, Parked: snap.Parked, RSSMB: float64(rss) / 1024,
				HeapMB: snap.Metrics.HeapBytes / (1 << 20), GoTotalMB: snap.Metrics.GoTotalBytes / (1 << 20)}
			if !prevT.IsZero() {
				dt := now.Sub(prevT).Seconds()
				smp.IngestRate = float64(smp.Ingested-prev.Ingested) / dt
				smp.EmitRate = float64(smp.Emitted-prev.Emitted) / dt
				if prevTicks >= 0 {
					smp.CPUPct = float64(ticks-prevTicks) / 100 / dt * 100 // USER_HZ is 100 on Linux
				}
			}
			if smp.Ingested > prev.Ingested {
				if firstIngest < 0 {
					firstIngest = prev.T
				}
				lastIngest = smp.T
			}
			if smp.Emitted > prev.Emitted {
				if firstEmit < 0 {
					firstEmit, firstEmitTicks = prev.T, prevTicks
				}
				lastEmit, lastEmitTicks = smp.T, ticks
			}
			prev, prevT, prevTicks = smp, now, ticks
			last = snap
			s.Samples = append(s.Samples, smp)
			s.Ingested, s.Emitted, s.DeadLetters, s.Missing = snap.Totals.Ingested, snap.Totals.Emitted, snap.Totals.DeadLetters, snap.Totals.Missing
			if smp.T-lastLog >= 10 {
				lastLog = smp.T
				log.Printf("%s: t=%3.0fs ingested %d emitted %d lag %d parked %d rss %.0f MB cpu %.0f%%", sc.Name, smp.T, smp.Ingested, smp.Emitted, smp.Lag, smp.Parked, smp.RSSMB, smp.CPUPct)
			}
			if snap.Totals.Emitted+snap.Totals.DeadLetters >= want {
				done = true
				break loop
			}
			if time.Since(t0) > timeout {
				break loop
			}
		}
	}
	if !done {
		log.Printf("%s: timed out after %s (last /metrics.json error: %v)", sc.Name, timeout, snapErr)
	}
	s.Seconds = time.Since(t0).Seconds()
	if lastIngest > firstIngest && firstIngest >= 0 {
		s.IngestRate = float64(s.Ingested) / (lastIngest - firstIngest)
	}
	if lastEmit > firstEmit && firstEmit >= 0 {
		s.EmitRate = float64(s.Emitted) / (lastEmit - firstEmit)
		if firstEmitTicks >= 0 && s.Emitted > 0 {
			s.CPUPerM = float64(lastEmitTicks-firstEmitTicks) / 100 / float64(s.Emitted) * 1e6
		}
	}
	var cpu float64
	var nCPU int
	for _, x := range s.Samples {
		s.MaxLag = max(s.MaxLag, x.Lag)
		s.MaxParked = max(s.MaxParked, x.Parked)
		s.PeakRSSMB = max(s.PeakRSSMB, x.RSSMB)
		s.PeakHeapMB = max(s.PeakHeapMB, x.HeapMB)
		if x.T >= firstEmit && x.T <= lastEmit && x.CPUPct > 0 {
			cpu += x.CPUPct
			nCPU++
		}
	}
	var er []float64
	for i, x := range s.Samples {
		if i > 0 && s.Samples[i-1].T >= firstEmit && x.T < lastEmit {
			er = append(er, x.EmitRate)
		}
	}
	if len(er) > 0 {
		slices.Sort(er)
		s.MedianEmitRate = er[len(er)/2]
	}
	if nCPU > 0 {
		s.MeanCPUPct = cpu / float64(nCPU)
	}
	if active != nil {
		s.LookupMaxActive = active.max()
	}

	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		s.BendExit = fmt.Sprint(err)
	case <-time.After(45 * time.Second):
		_ = cmd.Process.Kill()
		s.BendExit = "killed after 45s"
	}
	s.LoadAfter = loadavg()
	if sc.PackEvents > 0 {
		if err := rawProduce(s, brokers, tag+".after", sc.Limit); err != nil {
			return s, err
		}
	}

	// Latency percentiles leave out events created before bend emitted its
	// first record (the consumer group's start-up, ~3 s on a fresh group):
	// they would measure the join, not the pipeline.
	joinedAt := t0.Add(time.Duration(max(firstEmit, 0) * float64(time.Second)))
	s.WarmupSeconds = warmup.Seconds()
	if hook != nil {
		s.OutputRecords, s.Lost, s.Duplicated = hook.count()
		return s, nil
	}
	var each func(id string, v []byte)
	if sc.Enricher == "stats+lookup" {
		ef := &enrichFigures{}
		s.Enrich = ef
		var mu sync.Mutex
		seenOK := map[string]bool{}
		each = func(id string, v []byte) {
			stats := bytes.Contains(v, []byte(`"stats":{"status":"ok"`))
			lookup := bytes.Contains(v, []byte(`"scores":{"status":"ok"`))
			mu.Lock()
			defer mu.Unlock()
			if stats {
				ef.StatsOK++
			}
			if lookup {
				ef.LookupOK++
				seenOK[id] = true
			}
		}
		defer func() {
			ef.LookupRequests, ef.LookupAnswered = active.requests.Load(), active.answeredCount()
			for _, id := range active.answeredIDs() {
				if !seenOK[id] {
					ef.AnsweredMissing++
				}
			}
			if last != nil {
				m := last.Metrics
				ef.LookupSucceeded, ef.LateResults = m.ScoresLatency.Count, m.Late
				ef.DroppedStale, ef.DroppedDeadline, ef.DroppedOverload, ef.Cut = m.ScoresStale, m.ScoresDeadline, m.ScoresOverloaded, m.ScoresCut
			}
			log.Printf("%s: stats ok %d; lookup: %d requests, %d answered, %d in the output, %d answered but missing; %d succeeded in bend, %d late results; dropped unrun: %d stale, %d deadline, %d overloaded; %d cut at the deadline",
				sc.Name, ef.StatsOK, ef.LookupRequests, ef.LookupAnswered, ef.LookupOK, ef.AnsweredMissing, ef.LookupSucceeded, ef.LateResults,
				ef.DroppedStale, ef.DroppedDeadline, ef.DroppedOverload, ef.Cut)
		}()
	}
	n, lost, dup, lat, steady, err := verify(brokers, outTopic, want, joinedAt, joinedAt.Add(warmup), each)
	if err != nil {
		return s, fmt.Errorf("verifying %s: %w", outTopic, err)
	}
	s.OutputRecords, s.Lost, s.Duplicated, s.LatencyMS, s.LatencySteadyMS = n, lost, dup, lat, steady
	return s, nil
}

// bendConfig is the generated config.yaml. It pins the producers' linger,
// batch size and compression (the defaults, written out).
func bendConfig(sc scenario, brokers, in, out, dlq, group, admin, lookupURL string, hook *webhook) string {
	var b strings.Builder
	fmt.Fprintf(&b, `kafka:
  brokers: [%q]
  topics: {input: %q, output: %q, dead_letter: %q, partitions: 8, replication_factor: 1}
ingest:
  producer: {max_in_flight: 8192, compression: lz4, linger: 5ms, batch_bytes: 1048576}
  synthetic:
    enabled: %t
    rate: %g
    profile: %s
`, brokers, in, out, dlq, !sc.Preload, sc.Rate, sc.Profile)
	if sc.Profile == "spike" {
		fmt.Fprintf(&b, "    spike_rate: %g\n    spike_every: %s\n    spike_for: %s\n", sc.SpikeRate, sc.SpikeEvery, sc.SpikeFor)
	}
	fmt.Fprintf(&b, `    limit: %d
    key_skew: %g
    seed: 42
    id_prefix: act-
distributor:
  group: %q
  initial_offset: oldest
  emitters: %d
%sdelayqueue:
  max_items: %d
enrich:
  workers: %d
  queue_size: %d
  enrichers:
`, sc.Limit, sc.KeySkew, group, sc.Emitters, budgetLine(sc), sc.MaxItems, sc.Workers, sc.QueueSize)
	switch sc.Enricher {
	case "stats+lookup":
		fmt.Fprintf(&b, `    - name: stats
      type: stats
    - name: scores
      type: lookup
      timeout: 1s
      lookup:
        url: %q
`, lookupURL+"/scores/{id}")
	case "lookup":
		fmt.Fprintf(&b, `    - name: scores
      type: lookup
      timeout: 1s
      lookup:
        url: %q
`, lookupURL+"/scores/{id}")
	default:
		fmt.Fprintf(&b, "    - name: %s\n      type: %s\n", sc.Enricher, sc.Enricher)
	}
	if hook != nil {
		fmt.Fprintf(&b, "sink:\n  kafka: {enabled: false}\n  webhook: {url: %q, timeout: 120s}\n", hook.url)
	} else if sc.PackEvents > 0 {
		fmt.Fprintf(&b, "sink:\n  kafka: {enabled: true, max_in_flight: 8192, compression: lz4, linger: 5ms, batch_bytes: 1048576, batching: {max_events: %d}}\n", sc.PackEvents)
	} else {
		b.WriteString("sink:\n  kafka: {enabled: true, max_in_flight: 8192, compression: lz4, linger: 5ms, batch_bytes: 1048576}\n")
	}
	fmt.Fprintf(&b, `admin:
  addr: %q
progress: 10s
shutdown_timeout: 30s
memory_limit: %d
`, admin, memoryLimit)
	return b.String()
}

// snapshot is the part of /metrics.json bendbench reads.
type snapshot struct {
	Totals struct {
		Ingested    int64 `json:"ingested"`
		Emitted     int64 `json:"emitted"`
		DeadLetters int64 `json:"dead_letters"`
		Missing     int64 `json:"missing"`
	} `json:"totals"`
	Lag      int64 `json:"lag"`
	InFlight int64 `json:"in_flight"`
	Parked   int64 `json:"parked"`
	Metrics  struct {
		HeapBytes        float64 `json:"go.heap_objects_bytes"`
		GoTotalBytes     float64 `json:"go.total_bytes"`
		Late             int64   `json:"distributor.late_results"`
		ScoresStale      int64   `json:"enrich.scores.stale"`
		ScoresDeadline   int64   `json:"enrich.scores.deadline"`
		ScoresOverloaded int64   `json:"enrich.scores.overloaded"`
		ScoresCut        int64   `json:"enrich.scores.cut"`
		ScoresLatency    struct {
			Count int64 `json:"count"`
		} `json:"enrich.scores.latency"`
	} `json:"metrics"`
}

var httpc = &http.Client{Timeout: 2 * time.Second}

func fetch(url string) (*snapshot, error) {
	resp, err := httpc.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	var s snapshot
	return &s, json.NewDecoder(resp.Body).Decode(&s)
}

// procStats returns the process's user+system CPU ticks and its RSS in KiB.
func procStats(pid int) (ticks int64, rssKB int64) {
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the parenthesised command name; utime and stime are fields 14 and 15.
		if i := bytes.LastIndexByte(b, ')'); i > 0 {
			f := strings.Fields(string(b[i+1:]))
			if len(f) > 12 {
				u, _ := strconv.ParseInt(f[11], 10, 64)
				st, _ := strconv.ParseInt(f[12], 10, 64)
				ticks = u + st
			}
		}
	}
	rssKB = benchkit.RSSKB(pid)
	return ticks, rssKB
}

func saramaConfig() *sarama.Config { return benchkit.Config("bendbench") }

func createTopic(brokers, topic string, partitions int32) error {
	adm, err := sarama.NewClusterAdmin([]string{brokers}, saramaConfig())
	if err != nil {
		return err
	}
	defer adm.Close()
	return adm.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}, false)
}

// drainProducer reads p's successes and errors until it is closed, and
// returns the function that closes it and reports how many sends failed.
func drainProducer(p sarama.AsyncProducer) (closeAndCount func() int64) {
	var wg sync.WaitGroup
	var errs int64
	wg.Add(2)
	go func() {
		defer wg.Done()
		for range p.Successes() {
		}
	}()
	go func() {
		defer wg.Done()
		for range p.Errors() {
			errs++
		}
	}()
	return func() int64 {
		p.AsyncClose()
		wg.Wait()
		return errs
	}
}

// preload produces n synthetic activities (seed 42, ids act-1..act-n) with
// the same producer settings as bend's ingest, and returns the rate.
func preload(brokers, topic string, n int64, eventBytes int) (float64, error) {
	c := benchkit.ProducerConfig("bendbench")
	p, err := sarama.NewAsyncProducer([]string{brokers}, c)
	if err != nil {
		return 0, err
	}
	gc := synth.DefaultConfig()
	gc.Seed, gc.IDPrefix, gc.Limit = 42, "act-", n
	g := synth.NewGenerator(gc)
	closeProducer := drainProducer(p)
	t0 := time.Now()
	for range n {
		v, id, _ := g.Append(nil)
		if eventBytes > 0 {
			v = bigEvent(id, eventBytes)
		}
		p.Input() <- &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(id), Value: sarama.ByteEncoder(v)}
	}
	if errs := closeProducer(); errs > 0 {
		return 0, fmt.Errorf("preload: %d produce errors", errs)
	}
	return float64(n) / time.Since(t0).Seconds(), nil
}

// verify reads the whole output topic and counts the ids act-1..act-want:
// lost (never seen) and duplicated (extra copies). Latency is the output
// record's timestamp (the sink producer's send time; bend does not carry the
// input timestamp) minus the event's created_at. each, if set, sees every
// record (from several goroutines at once).
func verify(brokers, topic string, want int64, from, steadyFrom time.Time, each func(id string, v []byte)) (n, lost, dup int64, lat, steady map[string]float64, err error) {
	client, err := sarama.NewClient([]string{brokers}, saramaConfig())
	if err != nil {
		return 0, 0, 0, nil, nil, err
	}
	defer client.Close()
	cons, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return 0, 0, 0, nil, nil, err
	}
	defer cons.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		return 0, 0, 0, nil, nil, err
	}
	seen := make([]uint8, want+1)
	var mu sync.Mutex
	var lats, steadyLats []float64
	var other int64
	var wg sync.WaitGroup
	errc := make(chan error, len(parts))
	for _, p := range parts {
		hwm, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return 0, 0, 0, nil, nil, err
		}
		if hwm == 0 {
			continue
		}
		pc, err := cons.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			return 0, 0, 0, nil, nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer pc.Close()
			local := make([]float64, 0, 1<<16)
			localSteady := make([]float64, 0, 1<<16)
			timer := time.NewTimer(60 * time.Second)
			defer timer.Stop()
			for {
				select {
				case m := <-pc.Messages():
					events := [][]byte{m.Value}
					if c, packed, err := pack.Framed(m.Headers); packed && err == nil {
						if evs, err := pack.Split(nil, m.Value, c); err == nil {
							events = evs
						}
					}
					for _, v := range events {
						id, created := benchkit.Fields(v)
						if each != nil {
							each(id, v)
						}
						num, perr := strconv.ParseInt(strings.TrimPrefix(id, "act-"), 10, 64)
						mu.Lock()
						n++
						if perr != nil || num < 1 || num > want {
							other++
						} else if seen[num] < 255 {
							seen[num]++
						}
						mu.Unlock()
						if t, err := time.Parse(time.RFC3339Nano, created); err == nil && !t.Before(from) {
							l := float64(m.Timestamp.Sub(t).Microseconds()) / 1000
							local = append(local, l)
							if !t.Before(steadyFrom) {
								localSteady = append(localSteady, l)
							}
						}
					}
					if m.Offset >= hwm-1 {
						mu.Lock()
						lats = append(lats, local...)
						steadyLats = append(steadyLats, localSteady...)
						mu.Unlock()
						return
					}
				case <-timer.C:
					errc <- fmt.Errorf("partition %d: timed out before offset %d", p, hwm)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return 0, 0, 0, nil, nil, err
	}
	for i := int64(1); i <= want; i++ {
		switch {
		case seen[i] == 0:
			lost++
		case seen[i] > 1:
			dup += int64(seen[i] - 1)
		}
	}
	if other > 0 {
		log.Printf("verify: %d records with ids outside act-1..act-%d", other, want)
	}
	return n, lost, dup, percentiles(lats), percentiles(steadyLats), nil
}

// percentiles sorts lats and returns p50, p99, p99.9, max and the count.
func percentiles(lats []float64) map[string]float64 {
	slices.Sort(lats)
	q := func(p float64) float64 {
		if len(lats) == 0 {
			return 0
		}
		return lats[min(len(lats)-1, int(p*float64(len(lats))))]
	}
	return map[string]float64{"p50": q(0.5), "p99": q(0.99), "p99.9": q(0.999), "max": q(1), "count": float64(len(lats))}
}

// activeCounter tracks the lookup server's requests: concurrent ones, and
// the ids it answered.
type activeCounter struct {
	mu       sync.Mutex
	cur, top int64
	requests atomic.Int64
	answered []string
}

func (a *activeCounter) answer(id string) {
	a.mu.Lock()
	a.answered = append(a.answered, id)
	a.mu.Unlock()
}

func (a *activeCounter) answeredCount() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return int64(len(a.answered))
}

func (a *activeCounter) answeredIDs() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.answered)
}

func (a *activeCounter) add(d int64) {
	a.mu.Lock()
	a.cur += d
	a.top = max(a.top, a.cur)
	a.mu.Unlock()
}

func (a *activeCounter) max() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.top
}

// lookupServer answers every request after delay with a small JSON object.
func lookupServer(delay time.Duration) (string, *activeCounter, func()) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	a := &activeCounter{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.add(1)
		defer a.add(-1)
		a.requests.Add(1)
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
		if r.Context().Err() != nil {
			return // the client gave up as the delay ended
		}
		w.Header().Set("Content-Type", "application/json")
		if _, err := io.WriteString(w, `{"score":0.5,"tier":"gold"}`); err == nil {
			a.answer(strings.TrimPrefix(r.URL.Path, "/scores/"))
		}
	})}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Print(err)
		}
	}()
	return "http://" + l.Addr().String(), a, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
}
