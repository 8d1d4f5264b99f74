// Command bendfault is bend's fault suite: it runs the bend binary against a
// real Apache Kafka broker of its own (scripts/kafka) while injecting faults,
// and checks by id that nothing was lost.
//
// Usage:
//
//	go run ./bench/cmd/bendfault [--long] [flags] FAULT...   (FAULT: kill broker sink worker network sources, or all)
//
// Every fault runs the same job: bendfault produces N synthetic activities
// (ids act-1..act-N, seed 42) into a fresh 8-partition input topic at a
// fixed rate with its own idempotent producer (re-sending whatever Kafka
// refused, so every id is acknowledged once), one or more bend processes read
// it, enrich it and emit it, and bendfault reads the output back as it
// arrives. The fault is injected while the input is still being produced:
//
//	kill     SIGKILL bend at random moments and start it again at once
//	broker   SIGKILL the broker, then SIGTERM it, each followed by a restart on the same data
//	sink     the webhook sink's endpoint answers 503, then hangs past the sink's timeout
//	worker   enrichment only in two remote `bend work` processes; SIGKILL them in turn
//	network  bend reaches Kafka only through toxiproxy: latency, a bandwidth cap,
//	         connection resets, a stall, a full outage
//	sources  no producer: bend reads a fake Jetstream (WebSocket) and a fake
//	         EventStreams (SSE) of internal/fakepub, and is SIGKILLed while they
//	         stream (3 times; --long: 5 times, 100,000 events at 5,000/s each);
//	         each restart resumes both publishers from Kafka's cursor
//
// A fault passes when every id reached the output (lost 0), every output
// record carries its enrichment, and duplicates stay within the bound the
// design gives: per incident, the records between the committed offset and
// the read position (delayqueue.max_items, the fetch buffers and one commit
// interval's worth). The summary goes to --out as JSON; the exit status is 1
// when any fault failed.
//
// --long multiplies the event count by 10 and the number of incidents by 4
// (the sources fault: see faultSources);
// the default (short) version runs in CI in a few minutes.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/bench/internal/benchkit"
	"github.com/bendstream/bend/internal/synth"
)

// toxiproxyModule is built when --toxiproxy is not given.
const toxiproxyModule = "github.com/Shopify/toxiproxy/v2/cmd/server@v2.5.0"

// suite holds what every fault shares: the broker, the proxy, the binary.
type suite struct {
	bin, work   string
	script      string // scripts/kafka
	kstate      string // BEND_KAFKA_STATE of the suite's broker
	brokers     string // the broker's PLAINTEXT listener
	proxied     string // toxiproxy's listener, advertised by the broker's PROXIED listener
	toxiAPI     string // toxiproxy's HTTP API
	long        bool
	rng         *rand.Rand
	stopToxi    func()
	events      int64
	rate        float64
	incidents   int
	deadlineDur time.Duration
}

// result is one fault's outcome.
type result struct {
	Fault       string   `json:"fault"`
	Events      int64    `json:"events"`
	Rate        float64  `json:"rate"`
	Incidents   []string `json:"incidents"`
	Seconds     float64  `json:"seconds"`
	Produced    int64    `json:"produced"`
	Output      int64    `json:"output_records"`
	Lost        int64    `json:"lost"`
	Duplicated  int64    `json:"duplicated"`
	DupBound    int64    `json:"duplicate_bound"`
	Unenriched  int64    `json:"unenriched"`
	DeadLetters int64    `json:"dead_letters"`
	PeakRSSMB   float64  `json:"peak_rss_mb"`
	Detail      string   `json:"detail,omitempty"` // per-source counts, where a fault has several
	Pass        bool     `json:"pass"`
	Error       string   `json:"error,omitempty"`
}

func main() {
	long := flag.Bool("long", false, "the long version: 10x the events, 4x the incidents")
	kstate := flag.String("kafka-state", "/tmp/bendfault-kafka", "BEND_KAFKA_STATE of the suite's own broker")
	work := flag.String("work", "/tmp/bendfault", "scratch directory: the bend binary, configs, logs")
	out := flag.String("out", "", "JSON summary file (default <work>/faults.json)")
	toxi := flag.String("toxiproxy", "", "toxiproxy server binary (default: go install "+toxiproxyModule+" into <work>/bin)")
	seed := flag.Uint64("seed", 1, "seed of the fault timing")
	flag.Parse()
	names := flag.Args()
	if len(names) == 0 || (len(names) == 1 && names[0] == "all") {
		names = []string{"kill", "broker", "sink", "worker", "network", "sources"}
	}
	faults := map[string]func(*suite, *runner) error{
		"kill": faultKill, "broker": faultBroker, "sink": faultSink, "worker": faultWorker, "network": faultNetwork,
		"sources": faultSources,
	}
	for _, n := range names {
		if faults[n] == nil {
			log.Fatalf("unknown fault %q (want kill, broker, sink, worker, network, sources or all)", n)
		}
	}
	must(os.MkdirAll(*work, 0o755))
	if *out == "" {
		*out = filepath.Join(*work, "faults.json")
	}
	s := &suite{work: *work, script: "scripts/kafka", kstate: *kstate, long: *long,
		rng: rand.New(rand.NewPCG(*seed, 7)), events: 60000, rate: 3000, incidents: 2, deadlineDur: 4 * time.Minute}
	if *long {
		s.events, s.rate, s.incidents, s.deadlineDur = 600000, 6000, 8, 15*time.Minute
	}

	s.bin = filepath.Join(*work, "bend")
	log.Printf("building %s", s.bin)
	if b, err := exec.Command("go", "build", "-o", s.bin, "./cmd/bend").CombinedOutput(); err != nil {
		log.Fatalf("go build ./cmd/bend: %v\n%s", err, b)
	}
	if err := s.startBroker(*toxi); err != nil {
		log.Fatal(err)
	}
	defer s.stop()

	var results []result
	failed := false
	for _, n := range names {
		r := s.newRunner(n)
		err := faults[n](s, r)
		res := r.finish(err)
		results = append(results, res)
		detail := ""
		if res.Detail != "" {
			detail = "(" + res.Detail + ") "
		}
		log.Printf("%s: %s in %.0f s: %d events, %d incidents, lost %d, duplicated %d (bound %d), unenriched %d, dead letters %d, peak RSS %.0f MB %s%s",
			n, map[bool]string{true: "PASS", false: "FAIL"}[res.Pass], res.Seconds, res.Events, len(res.Incidents),
			res.Lost, res.Duplicated, res.DupBound, res.Unenriched, res.DeadLetters, res.PeakRSSMB, detail, res.Error)
		failed = failed || !res.Pass
		b, _ := json.MarshalIndent(map[string]any{"long": *long, "kafka": s.kafkaVersion(), "results": results}, "", "  ")
		must(os.WriteFile(*out, b, 0o644))
	}
	log.Printf("summary in %s", *out)
	if failed {
		s.stop()
		os.Exit(1)
	}
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

func freeAddr() string {
	a, err := benchkit.FreeAddr()
	must(err)
	return a
}

func (s *suite) kafka(args ...string) (string, error) {
	cmd := exec.Command(s.script, args...)
	cmd.Env = append(os.Environ(), "BEND_KAFKA_STATE="+s.kstate)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("scripts/kafka %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(b)), nil
}

func (s *suite) kafkaVersion() string { v, _ := s.kafka("version"); return v }

// startBroker starts toxiproxy and a broker whose PROXIED listener
// advertises toxiproxy's address, and creates the proxy.
func (s *suite) startBroker(toxi string) error {
	if toxi == "" {
		gobin := filepath.Join(s.work, "bin")
		toxi = filepath.Join(gobin, "server")
		if _, err := os.Stat(toxi); err != nil {
			log.Printf("building toxiproxy (%s)", toxiproxyModule)
			cmd := exec.Command("go", "install", toxiproxyModule)
			cmd.Env = append(os.Environ(), "GOBIN="+gobin)
			if b, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("go install %s: %v\n%s", toxiproxyModule, err, b)
			}
		}
	}
	s.toxiAPI = freeAddr()
	host, port, _ := net.SplitHostPort(s.toxiAPI)
	tp := exec.Command(toxi, "-host", host, "-port", port)
	tlog, err := os.Create(filepath.Join(s.work, "toxiproxy.log"))
	if err != nil {
		return err
	}
	tp.Stdout, tp.Stderr = tlog, tlog
	if err := tp.Start(); err != nil {
		return fmt.Errorf("toxiproxy: %w", err)
	}
	s.stopToxi = func() { _ = tp.Process.Kill(); _ = tp.Wait(); tlog.Close() }

	s.proxied = freeAddr()
	_, pport, _ := net.SplitHostPort(s.proxied)
	_, _ = s.kafka("stop")
	cmd := exec.Command(s.script, "start")
	cmd.Env = append(os.Environ(), "BEND_KAFKA_STATE="+s.kstate, "BEND_KAFKA_PROXY_PORT="+pport)
	cmd.Stderr = os.Stderr
	b, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("scripts/kafka start: %w", err)
	}
	s.brokers = strings.TrimSpace(string(b))
	upstream, err := s.kafka("proxy-upstream")
	if err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err = s.toxiproxy("POST", "/proxies", map[string]any{"name": "kafka", "listen": s.proxied, "upstream": upstream, "enabled": true})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("creating the toxiproxy proxy: %w", err)
	}
	log.Printf("broker %s (Apache Kafka %s); toxiproxy %s -> %s (API %s)", s.brokers, s.kafkaVersion(), s.proxied, upstream, s.toxiAPI)
	return nil
}

func (s *suite) stop() {
	if s.stopToxi != nil {
		s.stopToxi()
		s.stopToxi = nil
	}
	_, _ = s.kafka("stop")
}

// toxiproxy calls toxiproxy's HTTP API.
func (s *suite) toxiproxy(method, path string, body any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+s.toxiAPI+path, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("toxiproxy %s %s: %s %s", method, path, resp.Status, b)
	}
	return nil
}

// ---------------------------------------------------------------- one run

// runner is one fault's job: topics, producer, bend processes, output count.
type runner struct {
	s                  *suite
	name, tag          string
	in, out, dlq       string
	group              string
	n                  int64
	rate               float64
	t0                 time.Time
	ctx                context.Context
	cancel             context.CancelFunc
	produced           atomic.Int64
	produceDone        chan error
	seen               *tracker
	incidents          []string
	mu                 sync.Mutex
	procs              []*proc
	dupBound           int64
	maxItems           int64
	peakRSS            atomic.Int64 // KiB
	readerWG           sync.WaitGroup
	requireEnrichments string // key every output record's "enrichments" must hold
	detail             func() string
}

func (s *suite) newRunner(name string) *runner {
	tag := fmt.Sprintf("%s.%d", name, time.Now().UnixNano())
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{s: s, name: name, tag: tag, in: "fault." + tag + ".in", out: "fault." + tag + ".out", dlq: "fault." + tag + ".dlq",
		group: "fault." + tag, n: s.events, rate: s.rate, t0: time.Now(), ctx: ctx, cancel: cancel,
		seen: newTracker(s.events), maxItems: 2000, requireEnrichments: `"enrichments":{"fault":`}
	log.Printf("%s: topics fault.%s.*", name, tag)
	go r.sample()
	return r
}

// setEvents changes the run's event count (before produce).
func (r *runner) setEvents(n int64) {
	r.n, r.seen = n, newTracker(n)
	log.Printf("%s: %d events at %.0f/s", r.name, r.n, r.rate)
}

// sample records the peak RSS of the run's processes every second.
func (r *runner) sample() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-tick.C:
			r.mu.Lock()
			for _, p := range r.procs {
				if pid := p.pid(); pid > 0 {
					r.peakRSS.Store(max(r.peakRSS.Load(), benchkit.RSSKB(pid)))
				}
			}
			r.mu.Unlock()
		}
	}
}

// addProc adds a process to the run (stopped at the end, sampled meanwhile).
func (r *runner) addProc(p *proc) {
	r.mu.Lock()
	r.procs = append(r.procs, p)
	r.mu.Unlock()
}

// incident records one injected fault.
func (r *runner) incident(format string, args ...any) {
	msg := fmt.Sprintf("t=%.1fs ", time.Since(r.t0).Seconds()) + fmt.Sprintf(format, args...)
	r.incidents = append(r.incidents, msg)
	log.Printf("%s: %s (output %d of %d ids)", r.name, msg, r.seen.distinctN(), r.n)
}

// sleep waits d or until the run is cancelled.
func (r *runner) sleep(d time.Duration) {
	select {
	case <-time.After(d):
	case <-r.ctx.Done():
	}
}

// createTopics creates the run's input, output and dead-letter topics.
func (r *runner) createTopics() error {
	adm, err := sarama.NewClusterAdmin([]string{r.s.brokers}, saramaConfig())
	if err != nil {
		return err
	}
	defer adm.Close()
	for _, t := range []string{r.in, r.out, r.dlq} {
		if err := adm.CreateTopic(t, &sarama.TopicDetail{NumPartitions: 8, ReplicationFactor: 1}, false); err != nil {
			return fmt.Errorf("create %s: %w", t, err)
		}
	}
	return nil
}

// produce creates the topics and starts producing act-1..act-n at r.rate.
func (r *runner) produce() error {
	if err := r.createTopics(); err != nil {
		return err
	}
	c := benchkit.ProducerConfig("bendfault")
	c.Producer.Retry.Max = 20
	c.Producer.Retry.Backoff = 250 * time.Millisecond
	p, err := sarama.NewAsyncProducer([]string{r.s.brokers}, c)
	if err != nil {
		return err
	}
	r.produceDone = make(chan error, 1)
	gc := synth.DefaultConfig()
	gc.Seed, gc.IDPrefix, gc.Limit = 42, "act-", r.n
	g := synth.NewGenerator(gc)
	resend := make(chan *sarama.ProducerMessage, 1<<16)
	var acked atomic.Int64
	go func() {
		for range p.Successes() {
			r.produced.Add(1)
			acked.Add(1)
		}
	}()
	go func() {
		// Each refused record is re-sent after its own pause (not the
		// producing loop's: while sarama's breaker is open, every record
		// fails at once, and pausing the loop per record stalls the input).
		var n int
		var last time.Time
		for e := range p.Errors() {
			n++
			if time.Since(last) >= time.Second {
				last = time.Now()
				log.Printf("%s: produce %s: %v (re-sending; %d re-sends so far)", r.name, e.Msg.Key, e.Err, n)
			}
			m := e.Msg
			time.AfterFunc(250*time.Millisecond, func() {
				select {
				case resend <- m:
				case <-r.ctx.Done():
				}
			})
		}
	}()
	go func() {
		defer p.AsyncClose()
		perTick := r.rate / 100
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		var sent int64
		var owed float64
		for sent < r.n || acked.Load() < r.n {
			select {
			case <-r.ctx.Done():
				r.produceDone <- r.ctx.Err()
				return
			case m := <-resend:
				p.Input() <- m
			case <-tick.C:
				owed += perTick
				for ; owed >= 1 && sent < r.n; owed-- {
					v, id, _ := g.Append(nil)
					p.Input() <- &sarama.ProducerMessage{Topic: r.in, Key: sarama.StringEncoder(id), Value: sarama.ByteEncoder(v)}
					sent++
				}
			}
		}
		log.Printf("%s: all %d input events acknowledged by Kafka at t=%.1fs", r.name, r.n, time.Since(r.t0).Seconds())
		r.produceDone <- nil
	}()
	return nil
}

// readKafka counts the output topic's ids as they arrive (from the direct
// listener, so the network faults never hit the check).
func (r *runner) readKafka() error {
	client, err := sarama.NewClient([]string{r.s.brokers}, saramaConfig())
	if err != nil {
		return err
	}
	cons, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		client.Close()
		return err
	}
	parts, err := client.Partitions(r.out)
	if err != nil {
		client.Close()
		return err
	}
	for _, p := range parts {
		// A topic just created may not have its leaders known yet
		// (NotLeaderForPartition): refresh and retry for a while.
		var pc sarama.PartitionConsumer
		for attempt := 0; ; attempt++ {
			if pc, err = cons.ConsumePartition(r.out, p, sarama.OffsetOldest); err == nil {
				break
			}
			if attempt == 60 {
				client.Close()
				return fmt.Errorf("consuming %s/%d: %w", r.out, p, err)
			}
			time.Sleep(500 * time.Millisecond)
			_ = client.RefreshMetadata(r.out)
		}
		r.readerWG.Add(1)
		go func() {
			defer r.readerWG.Done()
			defer pc.Close()
			for {
				select {
				case m := <-pc.Messages():
					r.seen.add(m.Value, r.requireEnrichments)
				case <-r.ctx.Done():
					return
				}
			}
		}()
	}
	go func() { r.readerWG.Wait(); cons.Close(); client.Close() }()
	return nil
}

// wait blocks until every id reached the output, sampling the processes'
// RSS, or fails after the suite's deadline.
func (r *runner) wait() error {
	deadline := time.Now().Add(r.s.deadlineDur)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := time.Now()
	for r.seen.distinctN() < r.n {
		select {
		case err := <-r.produceDone:
			if err != nil {
				return fmt.Errorf("producer: %w", err)
			}
		case <-tick.C:
			if time.Since(last) >= 10*time.Second {
				last = time.Now()
				log.Printf("%s: t=%.0fs produced %d, output %d of %d ids", r.name, time.Since(r.t0).Seconds(), r.produced.Load(), r.seen.distinctN(), r.n)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("after %s the output holds %d of %d ids (produced %d)", r.s.deadlineDur, r.seen.distinctN(), r.n, r.produced.Load())
			}
		}
	}
	return nil
}

// finish stops the processes (SIGTERM: each must exit cleanly), lets the
// reader catch up and counts.
func (r *runner) finish(runErr error) result {
	res := result{Fault: r.name, Events: r.n, Rate: r.rate, Incidents: r.incidents}
	r.mu.Lock()
	procs := r.procs
	r.mu.Unlock()
	for _, p := range procs {
		if err := p.stop(); err != nil && runErr == nil {
			runErr = err
		}
	}
	// Records emitted just before the stop, and any duplicate, arrive late.
	time.Sleep(3 * time.Second)
	r.cancel()
	res.Seconds = time.Since(r.t0).Seconds()
	res.Produced = r.produced.Load()
	res.Output, res.Lost, res.Duplicated, res.Unenriched = r.seen.count()
	res.DupBound = r.dupBound
	if r.detail != nil {
		res.Detail = r.detail()
	}
	res.DeadLetters = r.deadLetters()
	res.PeakRSSMB = float64(r.peakRSS.Load()) / 1024
	switch {
	case runErr != nil:
		res.Error = runErr.Error()
	case res.Lost > 0:
		res.Error = fmt.Sprintf("%d ids lost", res.Lost)
	case res.Unenriched > 0:
		res.Error = fmt.Sprintf("%d output records without the enrichment", res.Unenriched)
	case res.Duplicated > res.DupBound:
		res.Error = fmt.Sprintf("%d duplicates, above the bound %d", res.Duplicated, res.DupBound)
	case res.DeadLetters > 0:
		res.Error = fmt.Sprintf("%d dead letters", res.DeadLetters)
	default:
		res.Pass = true
	}
	if !res.Pass {
		for _, p := range procs {
			log.Printf("%s: log of %s: %s", r.name, p.name, p.logPath)
		}
	}
	return res
}

// deadLetters counts the records of the dead-letter topic.
func (r *runner) deadLetters() int64 {
	client, err := sarama.NewClient([]string{r.s.brokers}, saramaConfig())
	if err != nil {
		return -1
	}
	defer client.Close()
	parts, _ := client.Partitions(r.dlq)
	var n int64
	for _, p := range parts {
		hwm, err := client.GetOffset(r.dlq, p, sarama.OffsetNewest)
		if err != nil {
			return -1
		}
		n += hwm
	}
	return n
}

// setBound sets the duplicate bound for k incidents of the given config:
// per incident the records between the committed offset and the read
// position (delayqueue.max_items plus 8 partitions' fetch buffers) and two
// commit intervals of input.
func (r *runner) setBound(k int) {
	r.dupBound = int64(k) * (r.maxItems + 8*256 + int64(2*r.rate))
}

// ---------------------------------------------------------------- bend processes

// proc is one bend child process.
type proc struct {
	name, logPath string
	args          []string
	bin           string
	cmd           *exec.Cmd
	exited        chan error
	done          bool
	curPid        atomic.Int64 // 0 while not running
}

// pid is the running process's pid, or 0.
func (p *proc) pid() int { return int(p.curPid.Load()) }

// start runs bin with args, its output in logPath (appended).
func startProc(name, bin, logPath string, args ...string) (*proc, error) {
	p := &proc{name: name, bin: bin, logPath: logPath, args: args}
	return p, p.restart()
}

func (p *proc) restart() error {
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "---- %s start\n", time.Now().UTC().Format(time.RFC3339Nano))
	p.cmd = exec.Command(p.bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return err
	}
	p.exited = make(chan error, 1)
	p.done = false
	p.curPid.Store(int64(p.cmd.Process.Pid))
	cmd, exited := p.cmd, p.exited
	go func() { err := cmd.Wait(); p.curPid.Store(0); f.Close(); exited <- err }()
	return nil
}

// kill sends SIGKILL and waits for the exit.
func (p *proc) kill() {
	if p.done {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	p.done = true
}

// stop sends SIGTERM and requires a clean exit within 60 s.
func (p *proc) stop() error {
	if p.done {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.done = true
		if err != nil {
			return fmt.Errorf("%s did not stop cleanly: %v (log %s)", p.name, err, p.logPath)
		}
		return nil
	case <-time.After(60 * time.Second):
		p.kill()
		return fmt.Errorf("%s did not stop within 60 s of SIGTERM (log %s)", p.name, p.logPath)
	}
}

// bendOpts are the parts of the generated config that differ per fault.
type bendOpts struct {
	brokers    string
	instanceID string
	webhook    string // sink.webhook.url; the Kafka sink is off when set
	remoteAddr string // enrich.remote.addr; local workers 0 when set
	token      string
	sources    string // lines added to the ingest section (indented two spaces)
}

// startBend writes the config and starts `bend run`.
func (r *runner) startBend(o bendOpts) (*proc, error) {
	if o.brokers == "" {
		o.brokers = r.s.brokers
	}
	workers := 4
	if o.remoteAddr != "" {
		workers = 0
	}
	cfg := fmt.Sprintf(`kafka:
  brokers: [%q]
  topics: {input: %q, output: %q, dead_letter: %q, partitions: 8}
ingest:
  synthetic: {enabled: false}
%sdistributor:
  group: %q
  instance_id: %q
  commit_interval: 1s
delayqueue: {max_items: %d}
enrich:
  workers: %d
  remote: {addr: %q, token: %q, lease: 3s}
  enrichers:
    - {name: fault, type: stats, required: true, max_attempts: 1000, backoff: 100ms}
sink:
  kafka: {enabled: %t}
  webhook: {url: %q, timeout: 2s, retry_backoff: 200ms}
admin: {addr: ""}
progress: 10s
shutdown_timeout: 40s
log: {level: info}
`, o.brokers, r.in, r.out, r.dlq, o.sources, r.group, o.instanceID, r.maxItems, workers, o.remoteAddr, o.token, o.webhook == "", o.webhook)
	path := filepath.Join(r.s.work, r.tag+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	p, err := startProc("bend", r.s.bin, filepath.Join(r.s.work, r.tag+".bend.log"), "run", "--config", path)
	if err != nil {
		return nil, err
	}
	r.addProc(p)
	return p, nil
}

// ---------------------------------------------------------------- faults

// faultKill SIGKILLs bend at random moments while the input is produced
// and restarts it at once (static membership keeps its partitions).
func faultKill(s *suite, r *runner) error {
	kills := 2 * s.incidents
	r.setBound(kills)
	if err := r.produce(); err != nil {
		return err
	}
	p, err := r.startBend(bendOpts{instanceID: "fault-kill-1"})
	if err != nil {
		return err
	}
	if err := r.readKafka(); err != nil {
		return err
	}
	span := time.Duration(float64(r.n)/r.rate*float64(time.Second)) * 8 / 10
	gap := span / time.Duration(kills+1)
	for k := range kills {
		r.sleep(gap/2 + time.Duration(s.rng.Int64N(int64(gap))))
		if r.ctx.Err() != nil {
			break
		}
		p.kill()
		r.incident("SIGKILL bend (%d of %d)", k+1, kills)
		if err := p.restart(); err != nil {
			return err
		}
	}
	return r.wait()
}

// faultBroker kills the broker hard and stops it cleanly, in turn, each
// time restarting it on its data a few seconds later.
func faultBroker(s *suite, r *runner) error {
	r.setBound(s.incidents)
	if err := r.produce(); err != nil {
		return err
	}
	if _, err := r.startBend(bendOpts{instanceID: "fault-broker-1"}); err != nil {
		return err
	}
	if err := r.readKafka(); err != nil {
		return err
	}
	span := time.Duration(float64(r.n)/r.rate*float64(time.Second)) * 7 / 10
	gap := span / time.Duration(s.incidents+1)
	for k := range s.incidents {
		r.sleep(gap)
		if r.ctx.Err() != nil {
			break
		}
		if k%2 == 0 {
			if _, err := s.kafka("kill"); err != nil {
				return err
			}
			r.incident("broker SIGKILL")
		} else {
			pidb, err := os.ReadFile(filepath.Join(s.kstate, "pid"))
			if err != nil {
				return err
			}
			pid, _ := strconv.Atoi(strings.TrimSpace(string(pidb)))
			_ = syscall.Kill(pid, syscall.SIGTERM)
			for i := 0; i < 300 && syscall.Kill(pid, 0) == nil; i++ {
				time.Sleep(100 * time.Millisecond)
			}
			r.incident("broker SIGTERM (clean shutdown)")
		}
		r.sleep(5 * time.Second)
		if _, err := s.kafka("resume"); err != nil {
			return err
		}
		r.incident("broker restarted")
	}
	return r.wait()
}

// faultSink points the sink at a webhook that refuses (503) and hangs in
// turn; bend must hold, retry and deliver every id.
func faultSink(s *suite, r *runner) error {
	r.setBound(s.incidents)
	var mode atomic.Int32 // 0 ok, 1 refuse, 2 hang
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch mode.Load() {
		case 1:
			_, _ = io.Copy(io.Discard, req.Body)
			http.Error(w, "sink outage", http.StatusServiceUnavailable)
			return
		case 2:
			_, _ = io.Copy(io.Discard, req.Body)
			select { // past the sink's 2 s timeout; the batch is not taken
			case <-time.After(5 * time.Second):
			case <-req.Context().Done():
			}
			http.Error(w, "too late", http.StatusGatewayTimeout)
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for line := range bytes.SplitSeq(body, []byte("\n")) {
			if len(bytes.TrimSpace(line)) > 0 {
				r.seen.add(line, r.requireEnrichments)
			}
		}
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	if err := r.produce(); err != nil {
		return err
	}
	if _, err := r.startBend(bendOpts{instanceID: "fault-sink-1", webhook: "http://" + l.Addr().String() + "/ingest"}); err != nil {
		return err
	}
	span := time.Duration(float64(r.n)/r.rate*float64(time.Second)) * 7 / 10
	gap := span / time.Duration(s.incidents+1)
	for k := range s.incidents {
		r.sleep(gap)
		m := int32(1 + k%2)
		mode.Store(m)
		r.incident("sink endpoint %s", map[int32]string{1: "answers 503", 2: "hangs past the sink timeout"}[m])
		r.sleep(6 * time.Second)
		mode.Store(0)
		r.incident("sink endpoint back")
	}
	return r.wait()
}

// faultWorker runs enrichment only in two remote workers and SIGKILLs
// them in turn (a killed worker's leased tasks must be re-queued).
func faultWorker(s *suite, r *runner) error {
	r.setBound(0)
	remote := freeAddr()
	token := fmt.Sprintf("fault-%d", s.rng.Uint64())
	if err := r.produce(); err != nil {
		return err
	}
	if _, err := r.startBend(bendOpts{instanceID: "fault-worker-1", remoteAddr: remote, token: token}); err != nil {
		return err
	}
	if err := r.readKafka(); err != nil {
		return err
	}
	wcfg := filepath.Join(r.s.work, r.tag+".worker.yaml")
	if err := os.WriteFile(wcfg, []byte(`enrich:
  enrichers:
    - {name: fault, type: stats, required: true}
log: {level: info}
`), 0o600); err != nil {
		return err
	}
	var workers []*proc
	for i := range 2 {
		p, err := startProc(fmt.Sprintf("worker-%d", i+1), r.s.bin, filepath.Join(r.s.work, fmt.Sprintf("%s.worker%d.log", r.tag, i+1)),
			"work", "--config", wcfg, "--distributor", "http://"+remote, "--token", token, "--workers", "4", "--wait", "2s")
		if err != nil {
			return err
		}
		workers = append(workers, p)
		r.addProc(p)
	}
	kills := 2 * s.incidents
	span := time.Duration(float64(r.n)/r.rate*float64(time.Second)) * 8 / 10
	gap := span / time.Duration(kills+1)
	for k := range kills {
		r.sleep(gap)
		if r.ctx.Err() != nil {
			break
		}
		w := workers[k%2]
		w.kill()
		r.incident("SIGKILL %s (its leases expire after 3 s)", w.name)
		r.sleep(gap / 2)
		if err := w.restart(); err != nil {
			return err
		}
		r.incident("%s restarted", w.name)
	}
	return r.wait()
}

// faultNetwork puts toxiproxy between bend and Kafka and runs through
// latency, a bandwidth cap, connection resets, a stall and an outage.
func faultNetwork(s *suite, r *runner) error {
	type toxic struct {
		what  string
		name  string
		typ   string
		attrs map[string]any
		hold  time.Duration
	}
	phases := []toxic{
		{"latency 100 ms ± 50 ms both ways", "lat", "latency", map[string]any{"latency": 100, "jitter": 50}, 8 * time.Second},
		{"bandwidth 256 KB/s downstream", "bw", "bandwidth", map[string]any{"rate": 256}, 8 * time.Second},
		{"connection resets (reset_peer)", "reset", "reset_peer", map[string]any{"timeout": 0}, 2 * time.Second},
		{"stall: data held, connections open (timeout toxic)", "stall", "timeout", map[string]any{"timeout": 0}, 6 * time.Second},
		{"outage: proxy disabled, connections refused", "", "", nil, 6 * time.Second},
	}
	if s.long {
		phases = append(phases, phases...)
	}
	// Enough input that data flows through every phase.
	gap := 4 * time.Second
	span := time.Duration(len(phases)+1) * gap
	for _, p := range phases {
		span += p.hold
	}
	r.setEvents(int64(r.rate * span.Seconds() * 1.25))
	r.setBound(len(phases))
	if err := r.produce(); err != nil {
		return err
	}
	if _, err := r.startBend(bendOpts{instanceID: "fault-network-1", brokers: s.proxied}); err != nil {
		return err
	}
	if err := r.readKafka(); err != nil {
		return err
	}
	for _, p := range phases {
		r.sleep(gap)
		if r.ctx.Err() != nil {
			break
		}
		if p.typ == "" {
			if err := s.toxiproxy("POST", "/proxies/kafka", map[string]any{"enabled": false}); err != nil {
				return err
			}
			r.incident("network: %s", p.what)
			r.sleep(p.hold)
			if err := s.toxiproxy("POST", "/proxies/kafka", map[string]any{"enabled": true}); err != nil {
				return err
			}
			r.incident("network: proxy enabled again")
			continue
		}
		streams := []string{"downstream", "upstream"}
		if p.typ == "bandwidth" {
			streams = []string{"downstream"}
		}
		for _, st := range streams {
			if err := s.toxiproxy("POST", "/proxies/kafka/toxics", map[string]any{"name": p.name + "_" + st, "type": p.typ, "stream": st, "toxicity": 1, "attributes": p.attrs}); err != nil {
				return err
			}
		}
		r.incident("network: %s", p.what)
		r.sleep(p.hold)
		for _, st := range streams {
			if err := s.toxiproxy("DELETE", "/proxies/kafka/toxics/"+p.name+"_"+st, nil); err != nil {
				return err
			}
		}
		r.incident("network: %s removed", p.name)
	}
	return r.wait()
}

// ---------------------------------------------------------------- counting

// tracker counts the output's ids act-1..act-n (or, with index set, the
// numbers index gives the records).
type tracker struct {
	mu                       sync.Mutex
	seen                     []uint8
	total, distinct, missing int64
	other                    int64
	// index maps an output record to its number in 1..n; nil reads the
	// synthetic id act-N.
	index func(v []byte) (int64, error)
}

func newTracker(n int64) *tracker { return &tracker{seen: make([]uint8, n+1)} }

// actIndex is the N of a synthetic record's id act-N.
func actIndex(v []byte) (int64, error) {
	id, _ := benchkit.Fields(v)
	return strconv.ParseInt(strings.TrimPrefix(id, "act-"), 10, 64)
}

// add counts one output record; it lacks the enrichment unless it holds
// mark.
func (t *tracker) add(v []byte, mark string) {
	index := t.index
	if index == nil {
		index = actIndex
	}
	num, err := index(v)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total++
	if mark != "" && !bytes.Contains(v, []byte(mark)) {
		t.missing++
	}
	if err != nil || num < 1 || num >= int64(len(t.seen)) {
		t.other++
		return
	}
	if t.seen[num] == 0 {
		t.distinct++
	}
	if t.seen[num] < 255 {
		t.seen[num]++
	}
}

func (t *tracker) distinctN() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.distinct
}

// countRange returns the ids never seen and the extra copies among the
// numbers lo..hi.
func (t *tracker) countRange(lo, hi int64) (lost, dup int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := max(lo, 1); i <= hi && i < int64(len(t.seen)); i++ {
		switch {
		case t.seen[i] == 0:
			lost++
		case t.seen[i] > 1:
			dup += int64(t.seen[i] - 1)
		}
	}
	return lost, dup
}

// count returns the records read, ids never seen, extra copies, and
// records without the enrichment.
func (t *tracker) count() (total, lost, dup, unenriched int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := 1; i < len(t.seen); i++ {
		switch {
		case t.seen[i] == 0:
			lost++
		case t.seen[i] > 1:
			dup += int64(t.seen[i] - 1)
		}
	}
	if t.other > 0 {
		log.Printf("%d output records with ids outside the run's range", t.other)
	}
	return t.total, lost, dup, t.missing
}

func saramaConfig() *sarama.Config {
	c := benchkit.Config("bendfault")
	c.Consumer.Retry.Backoff = 500 * time.Millisecond
	c.Metadata.Retry.Max = 20
	c.Metadata.Retry.Backoff = 500 * time.Millisecond
	return c
}
