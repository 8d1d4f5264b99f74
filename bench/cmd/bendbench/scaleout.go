package main

// The scaleout scenario: several bend processes in one consumer group over a
// preloaded backlog plus live input, joining and leaving (SIGTERM, SIGKILL)
// on a schedule, once per assignor and membership mode. It measures each
// instance's records/s and CPU-seconds per million records and, per input
// partition, the longest pause in its output around each join or leave, read
// from the output records' timestamps grouped by their bend-source-partition
// header. Every id is counted at both ends.

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/bench/internal/benchkit"
	"github.com/bendstream/bend/internal/synth"
)

// Flags of the scaleout scenario.
var (
	soFull       = flag.Bool("scaleout-full", false, "scaleout: 20 joins and leaves per run instead of the short schedule")
	soPreload    = flag.Int64("scaleout-preload", 150000, "scaleout: records preloaded before the first instance starts")
	soRate       = flag.Float64("scaleout-rate", 2000, "scaleout: live input rate, records/s, while the schedule runs")
	soStep       = flag.Duration("scaleout-step", 15*time.Second, "scaleout: time between joins and leaves")
	soAssignors  = flag.String("scaleout-assignors", "cooperative-sticky,range", "scaleout: assignors, one run each")
	soStatic     = flag.String("scaleout-membership", "dynamic,static", "scaleout: membership modes, one run each (dynamic, static)")
	soGoMaxProcs = flag.Int("scaleout-gomaxprocs", 1, "scaleout: GOMAXPROCS of each bend process")
	soReplot     = flag.String("scaleout-replot", "", "scaleout: no runs; rewrite the table and plot of this scaleout JSON file into --out")
)

// soStepKind is what one step of the schedule does to an instance.
type soStepKind string

const (
	soJoin    soStepKind = "join"    // start the instance
	soTerm    soStepKind = "sigterm" // graceful leave
	soKill    soStepKind = "sigkill" // crash
	soRestart soStepKind = "restart" // start a killed instance again (same instance_id)
)

// soAction is one step: what happens to which instance.
type soAction struct {
	Kind      soStepKind `json:"kind"`
	Instances []int      `json:"instances"`
}

// soSchedule is the steps after instance 1 has started, one every
// --scaleout-step: 1 -> 2 -> 4 instances, then leaves by SIGTERM and
// SIGKILL and a restart of the killed one, back to 1 (8 joins and leaves);
// full repeats that cycle to at least 20.
func soSchedule(full bool) []soAction {
	one := []soAction{{soJoin, []int{2}}, {soJoin, []int{3, 4}}, {soTerm, []int{4}}, {soKill, []int{3}},
		{soRestart, []int{3}}, {soTerm, []int{2}}, {soTerm, []int{3}}}
	if !full {
		return one
	}
	var s []soAction
	for n := 0; n < 20; n += 8 {
		s = append(s, one...)
	}
	return s
}

// soEvent is one join or leave as it happened, with the pauses measured
// around it.
type soEvent struct {
	soAction
	At float64 `json:"at"` // seconds since the first instance started
	// Owners before the event and after it settled, by input partition
	// (instance number, 0 = none).
	OwnersBefore []int `json:"owners_before"`
	OwnersAfter  []int `json:"owners_after"`
	// PauseMS is, per input partition, the longest gap between two
	// consecutive output records of that partition that began in the
	// event's window (see stepPauses), and PauseAt when it began
	// (seconds since the first instance started).
	PauseMS []float64 `json:"pause_ms"`
	PauseAt []float64 `json:"pause_at"`
	// KeptMaxMS and MovedMaxMS are the longest pauses of the partitions
	// that kept their owner and of those that moved.
	KeptMaxMS  float64 `json:"kept_max_ms"`
	MovedMaxMS float64 `json:"moved_max_ms"`
}

// soInstance is one bend process's figures.
type soInstance struct {
	Instance      int     `json:"instance"`
	Starts        int     `json:"starts"`
	Emitted       int64   `json:"emitted"`
	Seconds       float64 `json:"seconds"` // time alive, all its starts
	RecordsPerSec float64 `json:"records_per_sec"`
	CPUSeconds    float64 `json:"cpu_seconds"`
	CPUPerMillion float64 `json:"cpu_seconds_per_million"`
}

// soRun is one run: one assignor, one membership mode.
type soRun struct {
	Assignor   string    `json:"assignor"`
	Static     bool      `json:"static"`
	Preload    int64     `json:"preload"`
	Live       int64     `json:"live"`
	LiveRate   float64   `json:"live_rate"`
	Seconds    float64   `json:"seconds"`
	Output     int64     `json:"output_records"`
	Lost       int64     `json:"lost"`
	Duplicated int64     `json:"duplicated"`
	DupBound   int64     `json:"duplicate_bound"`
	Events     []soEvent `json:"events"`
	// Rate is the output's records/s (every partition) in bins of
	// RateStep seconds from the first instance's start, for the plot.
	RateStep   float64      `json:"rate_step"`
	Rate       []float64    `json:"rate"`
	Instances  []soInstance `json:"instances"`
	LoadBefore string       `json:"load_before"`
	LoadAfter  string       `json:"load_after"`
	Error      string       `json:"error,omitempty"`
}

// soProc is a running bend process.
type soProc struct {
	cmd    *exec.Cmd
	admin  string
	exited chan struct{} // closed when the process has exited
	// last figures read from it
	emitted int64
	ticks   int64
	owned   []int32
}

const soPartitions = 8

// runScaleout runs every assignor x membership combination and writes
// scaleout.json (scaleout-full.json with --scaleout-full), its tables
// (.md) and its plot (.png). With --scaleout-replot it only rewrites the
// tables and plot of a JSON file written before.
func runScaleout(brokers, bin, work, out string) error {
	name := "scaleout"
	if *soFull {
		name = "scaleout-full"
	}
	var runs []soRun
	if *soReplot != "" {
		b, err := os.ReadFile(*soReplot)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &runs); err != nil {
			return fmt.Errorf("%s: %w", *soReplot, err)
		}
		return soWrite(out, strings.TrimSuffix(filepath.Base(*soReplot), ".json"), runs, false)
	}
	for _, as := range strings.Split(*soAssignors, ",") {
		for _, m := range strings.Split(*soStatic, ",") {
			r, err := soRunOne(brokers, bin, work, strings.TrimSpace(as), strings.TrimSpace(m) == "static")
			if err != nil {
				r.Error = err.Error()
				log.Printf("scaleout %s/%s: %v", as, m, err)
			}
			runs = append(runs, r)
		}
	}
	return soWrite(out, name, runs, true)
}

// soWrite writes name.json (when withJSON), name.md (the tables, also
// printed) and name.png into out.
func soWrite(out, name string, runs []soRun, withJSON bool) error {
	if withJSON {
		b, _ := json.MarshalIndent(runs, "", "  ")
		if err := os.WriteFile(filepath.Join(out, name+".json"), b, 0o644); err != nil {
			return err
		}
	}
	tbl := soTable(runs)
	fmt.Print(tbl)
	if err := os.WriteFile(filepath.Join(out, name+".md"), []byte(tbl), 0o644); err != nil {
		return err
	}
	return plotScaleout(filepath.Join(out, name+".png"), runs)
}

func soRunOne(brokers, bin, work, assignor string, static bool) (soRun, error) {
	mode := "dynamic"
	if static {
		mode = "static"
	}
	tag := fmt.Sprintf("scaleout.%s.%s.%d", assignor, mode, time.Now().Unix())
	in, outTopic, dlq := "bench."+tag+".in", "bench."+tag+".out", "bench."+tag+".dlq"
	sched := soSchedule(*soFull)
	liveSecs := soStep.Seconds() * float64(len(sched)+1)
	r := soRun{Assignor: assignor, Static: static, Preload: *soPreload, LiveRate: *soRate, LoadBefore: loadavg()}
	r.Live = int64(*soRate * liveSecs)
	want := r.Preload + r.Live
	log.Printf("scaleout %s/%s: load %s, topics bench.%s.*, %d preloaded + %d live", assignor, mode, r.LoadBefore, tag, r.Preload, r.Live)
	if err := createTopic(brokers, in, soPartitions); err != nil {
		return r, err
	}
	prod, err := newSoProducer(brokers, in, want)
	if err != nil {
		return r, err
	}
	if err := prod.send(r.Preload, 0); err != nil {
		return r, err
	}

	procs := map[int]*soProc{}
	inst := map[int]*soInstance{}
	var mu sync.Mutex // guards procs' figures
	start := func(i int) error {
		admin := freePort()
		cfg := filepath.Join(work, fmt.Sprintf("%s.%d.yaml", tag, i))
		iid := ""
		if static {
			iid = fmt.Sprintf("bench-%d", i)
		}
		if err := os.WriteFile(cfg, []byte(soConfig(brokers, in, outTopic, dlq, "bench."+tag, admin, assignor, iid)), 0o644); err != nil {
			return err
		}
		logf, err := os.OpenFile(filepath.Join(work, fmt.Sprintf("%s.%d.log", tag, i)), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		cmd := exec.Command(bin, "run", "--config", cfg)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(*soGoMaxProcs))
		if err := cmd.Start(); err != nil {
			logf.Close()
			return err
		}
		p := &soProc{cmd: cmd, admin: admin, exited: make(chan struct{})}
		go func() { _ = cmd.Wait(); logf.Close(); close(p.exited) }()
		mu.Lock()
		procs[i] = p
		if inst[i] == nil {
			inst[i] = &soInstance{Instance: i}
		}
		inst[i].Starts++
		mu.Unlock()
		return nil
	}
	started := map[int]time.Time{}
	// retire folds a stopped process's last figures into its instance.
	retire := func(i int, p *soProc) {
		mu.Lock()
		defer mu.Unlock()
		in := inst[i]
		in.Emitted += p.emitted
		cpu := float64(p.ticks) / 100
		if ps := p.cmd.ProcessState; ps != nil {
			cpu = (ps.UserTime() + ps.SystemTime()).Seconds() // the whole life, after the last sample too
		}
		in.CPUSeconds += cpu
		in.Seconds += time.Since(started[i]).Seconds()
		delete(procs, i)
	}
	// owners samples each process's figures and returns the owner of each
	// input partition.
	owners := func() []int {
		o := make([]int, soPartitions)
		mu.Lock()
		defer mu.Unlock()
		for i, p := range procs {
			var snap struct {
				Totals struct {
					Emitted int64 `json:"emitted"`
				} `json:"totals"`
				Partitions []struct {
					Topic     string `json:"topic"`
					Partition int32  `json:"partition"`
				} `json:"partitions"`
			}
			b, err := httpGet("http://" + p.admin + "/metrics.json")
			if err != nil || json.Unmarshal(b, &snap) != nil {
				continue
			}
			p.emitted = snap.Totals.Emitted
			p.ticks, _ = procStats(p.cmd.Process.Pid)
			for _, x := range snap.Partitions {
				if x.Topic == in && x.Partition < soPartitions {
					o[x.Partition] = i
				}
			}
		}
		return o
	}

	t0 := time.Now()
	liveErr := make(chan error, 1)
	go func() { liveErr <- prod.send(r.Live, *soRate) }()
	defer func() {
		mu.Lock()
		ps := maps2slice(procs)
		mu.Unlock()
		for _, p := range ps {
			_ = p.cmd.Process.Kill()
		}
	}()
	stop := func(i int, sig syscall.Signal) {
		mu.Lock()
		p := procs[i]
		mu.Unlock()
		if p == nil {
			return
		}
		owners() // last figures before it goes
		_ = p.cmd.Process.Signal(sig)
		go func() {
			select {
			case <-p.exited:
			case <-time.After(60 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.exited
			}
			retire(i, p)
		}()
	}
	prevOwners := make([]int, soPartitions)
	for k, a := range append([]soAction{{soJoin, []int{1}}}, sched...) {
		if k > 0 {
			time.Sleep(time.Until(t0.Add(time.Duration(k) * *soStep)))
			prevOwners = owners()
		}
		ev := soEvent{soAction: a, At: time.Since(t0).Seconds(), OwnersBefore: prevOwners}
		for _, i := range a.Instances {
			switch a.Kind {
			case soJoin, soRestart:
				mu.Lock()
				_, running := procs[i]
				mu.Unlock()
				if running {
					return r, fmt.Errorf("schedule starts instance %d twice", i)
				}
				if err := start(i); err != nil {
					return r, err
				}
				mu.Lock()
				started[i] = time.Now()
				mu.Unlock()
			case soTerm:
				stop(i, syscall.SIGTERM)
			case soKill:
				stop(i, syscall.SIGKILL)
			}
		}
		log.Printf("scaleout %s/%s: t=%.0fs %s instance %v", assignor, mode, ev.At, a.Kind, a.Instances)
		r.Events = append(r.Events, ev)
	}
	time.Sleep(time.Until(t0.Add(time.Duration(len(sched)+1) * *soStep)))
	if err := <-liveErr; err != nil {
		return r, err
	}
	// Settle: wait until the output holds every id at least once (or time out).
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		owners()
		if n, err := topicRecords(brokers, outTopic); err == nil && n >= want {
			break
		}
		time.Sleep(time.Second)
	}
	final := owners()
	for k := range r.Events {
		if k+1 < len(r.Events) {
			r.Events[k].OwnersAfter = r.Events[k+1].OwnersBefore
		} else {
			r.Events[k].OwnersAfter = final
		}
	}
	mu.Lock()
	rest := maps2slice(procs)
	ids := make([]int, 0, len(procs))
	for i := range procs {
		ids = append(ids, i)
	}
	mu.Unlock()
	for _, i := range ids {
		stop(i, syscall.SIGTERM)
	}
	for _, p := range rest {
		select {
		case <-p.exited:
		case <-time.After(70 * time.Second):
		}
	}
	for {
		mu.Lock()
		left := len(procs)
		mu.Unlock()
		if left == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond) // the retire goroutines
	}
	r.Seconds = time.Since(t0).Seconds()
	r.LoadAfter = loadavg()

	n, lost, dup, times, err := soVerify(brokers, outTopic, want)
	if err != nil {
		return r, err
	}
	r.Output, r.Lost, r.Duplicated = n, lost, dup
	leaves := 0
	for _, e := range r.Events {
		if e.Kind == soTerm || e.Kind == soKill {
			leaves += len(e.Instances)
		}
	}
	steps := make([]time.Time, len(r.Events))
	for k, e := range r.Events {
		steps[k] = t0.Add(time.Duration(e.At * float64(time.Second)))
	}
	end := steps[len(steps)-1].Add(*soStep)
	for k := range r.Events {
		r.Events[k].PauseMS = make([]float64, soPartitions)
		r.Events[k].PauseAt = make([]float64, soPartitions)
	}
	for p := range soPartitions {
		for k, g := range stepPauses(times[p], steps, end) {
			r.Events[k].PauseMS[p] = g.ms
			if !g.at.IsZero() {
				r.Events[k].PauseAt[p] = math.Round(g.at.Sub(t0).Seconds()*1000) / 1000
			}
		}
	}
	r.RateStep, r.Rate = soRateBin.Seconds(), outputRate(times, t0, end)
	for k := range r.Events {
		ev := &r.Events[k]
		for p := range soPartitions {
			if ev.OwnersBefore[p] != 0 && ev.OwnersBefore[p] == ev.OwnersAfter[p] {
				ev.KeptMaxMS = max(ev.KeptMaxMS, ev.PauseMS[p])
			} else {
				ev.MovedMaxMS = max(ev.MovedMaxMS, ev.PauseMS[p])
			}
		}
	}
	var top float64
	for i := 1; i <= 4; i++ {
		if in := inst[i]; in != nil {
			if in.Seconds > 0 {
				in.RecordsPerSec = float64(in.Emitted) / in.Seconds
			}
			if in.Emitted > 0 {
				in.CPUPerMillion = in.CPUSeconds / float64(in.Emitted) * 1e6
			}
			r.Instances = append(r.Instances, *in)
			top = max(top, in.RecordsPerSec)
		}
	}
	// DESIGN.md "Delivery modes": at-least-once duplicates are bounded by
	// the in-flight window (delayqueue.max_items) plus one commit
	// interval's (1 s) worth, here per instance that leaves or crashes, at
	// the fastest instance's mean rate.
	r.DupBound = int64(leaves) * (soMaxItems + int64(math.Ceil(top)))
	return r, nil
}

// soMaxItems is delayqueue.max_items of the scenario's instances.
const soMaxItems = 4000

// soConfig is one instance's config.yaml: no source (the input is
// produced by bendbench), a noop enricher, the Kafka sink.
func soConfig(brokers, in, out, dlq, group, admin, assignor, instanceID string) string {
	return fmt.Sprintf(`kafka:
  brokers: [%q]
  topics: {input: %q, output: %q, dead_letter: %q, partitions: %d, replication_factor: 1}
ingest:
  synthetic: {enabled: false}
distributor:
  group: %q
  assignor: %q
  instance_id: %q
  initial_offset: oldest
delayqueue:
  max_items: %d
enrich:
  workers: 2
  queue_size: 1024
  enrichers:
    - name: noop
      type: noop
sink:
  kafka: {enabled: true, max_in_flight: 8192, compression: lz4, linger: 5ms, batch_bytes: 1048576}
admin:
  addr: %q
progress: 0s
shutdown_timeout: 30s
`, brokers, in, out, dlq, soPartitions, group, assignor, instanceID, soMaxItems, admin)
}

// soProducer feeds the input topic with synthetic activities act-1..act-N
// in order (seed 42), idempotent, acks=all.
type soProducer struct {
	p     sarama.AsyncProducer
	g     *synth.Generator
	topic string
	wg    sync.WaitGroup
	mu    sync.Mutex
	nerr  int64
}

func newSoProducer(brokers, topic string, n int64) (*soProducer, error) {
	p, err := sarama.NewAsyncProducer([]string{brokers}, benchkit.ProducerConfig("bendbench"))
	if err != nil {
		return nil, err
	}
	gc := synth.DefaultConfig()
	gc.Seed, gc.IDPrefix, gc.Limit = 42, "act-", n
	sp := &soProducer{p: p, g: synth.NewGenerator(gc)}
	sp.wg.Add(2)
	go func() {
		defer sp.wg.Done()
		for range p.Successes() {
		}
	}()
	go func() {
		defer sp.wg.Done()
		for range p.Errors() {
			sp.mu.Lock()
			sp.nerr++
			sp.mu.Unlock()
		}
	}()
	sp.topic = topic
	return sp, nil
}

// send produces n records, at rate per second (0 = as fast as it can),
// and waits for their acknowledgements only at the end of the live part.
func (sp *soProducer) send(n int64, rate float64) error {
	t0 := time.Now()
	for i := range n {
		if rate > 0 && i%100 == 0 {
			time.Sleep(time.Until(t0.Add(time.Duration(float64(i) / rate * float64(time.Second)))))
		}
		v, id, _ := sp.g.Append(nil)
		sp.p.Input() <- &sarama.ProducerMessage{Topic: sp.topic, Key: sarama.StringEncoder(id), Value: sarama.ByteEncoder(v)}
	}
	if rate > 0 {
		sp.p.AsyncClose()
		sp.wg.Wait()
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.nerr > 0 {
		return fmt.Errorf("input: %d produce errors", sp.nerr)
	}
	return nil
}

// topicRecords sums the topic's high-water marks.
func topicRecords(brokers, topic string) (int64, error) {
	client, err := sarama.NewClient([]string{brokers}, saramaConfig())
	if err != nil {
		return 0, err
	}
	defer client.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, p := range parts {
		h, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return 0, err
		}
		n += h
	}
	return n, nil
}

// soVerify reads the output topic: the ids act-1..act-want counted (lost,
// duplicated) and, per input partition (bend-source-partition header), the
// sorted timestamps of its output records.
func soVerify(brokers, topic string, want int64) (n, lost, dup int64, times [][]time.Time, err error) {
	client, err := sarama.NewClient([]string{brokers}, saramaConfig())
	if err != nil {
		return 0, 0, 0, nil, err
	}
	defer client.Close()
	cons, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return 0, 0, 0, nil, err
	}
	defer cons.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		return 0, 0, 0, nil, err
	}
	seen := make([]uint8, want+1)
	times = make([][]time.Time, soPartitions)
	var other, noHeader int64
	for _, p := range parts {
		hwm, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return 0, 0, 0, nil, err
		}
		if hwm == 0 {
			continue
		}
		pc, err := cons.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			return 0, 0, 0, nil, err
		}
		timer := time.NewTimer(60 * time.Second)
	read:
		for {
			select {
			case m := <-pc.Messages():
				n++
				id, _ := benchkit.Fields(m.Value)
				num, perr := strconv.ParseInt(strings.TrimPrefix(id, "act-"), 10, 64)
				if perr != nil || num < 1 || num > want {
					other++
				} else if seen[num] < 255 {
					seen[num]++
				}
				src := -1
				for _, h := range m.Headers {
					if string(h.Key) == "bend-source-partition" {
						src, _ = strconv.Atoi(string(h.Value))
					}
				}
				if src >= 0 && src < soPartitions {
					times[src] = append(times[src], m.Timestamp)
				} else {
					noHeader++
				}
				if m.Offset >= hwm-1 {
					break read
				}
			case <-timer.C:
				pc.Close()
				return 0, 0, 0, nil, fmt.Errorf("partition %d: timed out before offset %d", p, hwm)
			}
		}
		timer.Stop()
		pc.Close()
	}
	for i := int64(1); i <= want; i++ {
		switch {
		case seen[i] == 0:
			lost++
		case seen[i] > 1:
			dup += int64(seen[i] - 1)
		}
	}
	if other > 0 || noHeader > 0 {
		log.Printf("verify: %d records with ids outside act-1..act-%d, %d without bend-source-partition", other, want, noHeader)
	}
	for p := range times {
		slices.SortFunc(times[p], func(a, b time.Time) int { return a.Compare(b) })
	}
	return n, lost, dup, times, nil
}

// soLead is how long before a step's recorded time its window starts:
// the last output record before the step's pause may have been written a
// few milliseconds before the step was logged (a SIGKILL is sent right
// after), and one output record follows another within milliseconds.
const soLead = 500 * time.Millisecond

// soPause is one output pause of a partition: how long, and when it began.
type soPause struct {
	ms float64
	at time.Time
}

// stepPauses returns, for each step of steps (sorted), the longest pause
// in a partition's output (ts: its output records' timestamps, sorted)
// that began in the step's window: from soLead before the step to soLead
// before the next one (the last: to end). A pause begins at an output
// record and lasts until the next one, however many windows later, so it
// counts in full, and once, for the step at which the output stopped; a
// pause still running at a later step is not that step's. With no output
// yet, the pause runs from the step to the first record; after the last
// record, to end.
func stepPauses(ts []time.Time, steps []time.Time, end time.Time) []soPause {
	out := make([]soPause, len(steps))
	for k, at := range steps {
		from, to := at.Add(-soLead), end
		if k+1 < len(steps) {
			to = steps[k+1].Add(-soLead)
		}
		take := func(begin, next time.Time) {
			if g := float64(next.Sub(begin).Microseconds()) / 1000; g > out[k].ms {
				out[k] = soPause{ms: g, at: begin}
			}
		}
		i, _ := slices.BinarySearchFunc(ts, from, func(a, b time.Time) int { return a.Compare(b) })
		if i == 0 && (len(ts) == 0 || ts[0].After(at)) {
			next := end
			if len(ts) > 0 {
				next = ts[0]
			}
			take(at, next) // no output yet
		}
		for ; i < len(ts) && ts[i].Before(to); i++ {
			next := end
			if i+1 < len(ts) {
				next = ts[i+1]
			}
			take(ts[i], next)
		}
	}
	return out
}

// soRateBin is the width of outputRate's bins.
const soRateBin = 500 * time.Millisecond

// outputRate is the output's records/s, every partition, in soRateBin
// bins from t0 to end.
func outputRate(times [][]time.Time, t0, end time.Time) []float64 {
	n := int(end.Sub(t0)/soRateBin) + 1
	rate := make([]float64, n)
	for _, ts := range times {
		for _, t := range ts {
			if b := int(t.Sub(t0) / soRateBin); b >= 0 && b < n {
				rate[b] += 1 / soRateBin.Seconds()
			}
		}
	}
	return rate
}

// soTable renders the runs as Markdown tables.
func soTable(runs []soRun) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "| assignor\t| membership\t| output\t| lost\t| dup (bound)\t| event\t| max pause kept (ms)\t| max pause moved (ms)\t|")
	fmt.Fprintln(tw, "|---\t|---\t|---\t|---\t|---\t|---\t|---\t|---\t|")
	for _, r := range runs {
		mode := "dynamic"
		if r.Static {
			mode = "static"
		}
		for k, e := range r.Events {
			a, m, o, l, d := "", "", "", "", ""
			if k == 0 {
				a, m, o, l, d = r.Assignor, mode, strconv.FormatInt(r.Output, 10), strconv.FormatInt(r.Lost, 10), fmt.Sprintf("%d (%d)", r.Duplicated, r.DupBound)
				if r.Error != "" {
					o = "error: " + r.Error
				}
			}
			fmt.Fprintf(tw, "| %s\t| %s\t| %s\t| %s\t| %s\t| t=%.0fs %s %v\t| %s\t| %s\t|\n", a, m, o, l, d, e.At, e.Kind, e.Instances, msOrDash(e.KeptMaxMS), msOrDash(e.MovedMaxMS))
		}
	}
	tw.Flush()
	b.WriteString("\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "| assignor\t| membership\t| instance\t| starts\t| emitted\t| records/s\t| CPU-s per million\t|")
	fmt.Fprintln(tw, "|---\t|---\t|---\t|---\t|---\t|---\t|---\t|")
	for _, r := range runs {
		mode := "dynamic"
		if r.Static {
			mode = "static"
		}
		for _, in := range r.Instances {
			fmt.Fprintf(tw, "| %s\t| %s\t| %d\t| %d\t| %d\t| %.0f\t| %.1f\t|\n", r.Assignor, mode, in.Instance, in.Starts, in.Emitted, in.RecordsPerSec, in.CPUPerMillion)
		}
	}
	tw.Flush()
	return b.String()
}

func msOrDash(v float64) string {
	if v == 0 || math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.0f", v)
}

func maps2slice(m map[int]*soProc) []*soProc {
	s := make([]*soProc, 0, len(m))
	for _, p := range m {
		s = append(s, p)
	}
	return s
}

func httpGet(url string) ([]byte, error) {
	resp, err := httpc.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return io.ReadAll(resp.Body)
}
