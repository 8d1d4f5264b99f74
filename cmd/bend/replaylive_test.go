package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/config"
	"github.com/bendstream/bend/internal/kafkatest"
	rp "github.com/bendstream/bend/internal/replay"
)

// liveInstance is one bend of the group, run in-process.
type liveInstance struct {
	url    string
	done   chan error    // run's result; nothing is sent before the test stops it
	exited chan struct{} // closed when run returned
	stop   context.CancelFunc
}

// startLive runs bend with cfg in-process on its own admin port.
func startLive(t *testing.T, cfg config.Config, name string) *liveInstance {
	t.Helper()
	port := freePort(t)
	cfg.Admin.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	ctx, cancel := context.WithCancel(context.Background())
	in := &liveInstance{url: "http://" + cfg.Admin.Addr, done: make(chan error, 1), exited: make(chan struct{}), stop: cancel}
	log := testLogger(t)
	go func() {
		defer close(in.exited)
		in.done <- run(ctx, cfg, log, io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-in.exited:
		case <-time.After(60 * time.Second):
		}
	})
	return in
}

// running fails t if the instance's run has returned: it restarted or died.
func (in *liveInstance) running(t *testing.T, when string) {
	t.Helper()
	select {
	case err := <-in.done:
		t.Fatalf("%s: bend at %s stopped %s: %v", when, in.url, when, err)
	default:
	}
}

// replayStatus reads an instance's replay state with the token.
func replayStatus(t *testing.T, url, token string) rp.Status {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+"/admin/replay", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s/admin/replay: %v", url, err)
	}
	defer res.Body.Close()
	var st rp.Status
	if res.StatusCode != http.StatusOK || json.NewDecoder(res.Body).Decode(&st) != nil {
		t.Fatalf("GET %s/admin/replay: %s", url, res.Status)
	}
	return st
}

// groupSettled reports whether group is Stable with n members. (With 4
// partitions, each member then owns some; the replay checks ownership
// itself.)
func groupSettled(brokers []string, group string, n int) bool {
	adm, err := sarama.NewClusterAdmin(brokers, kafkatest.Config())
	if err != nil {
		return false
	}
	defer adm.Close()
	descs, err := adm.DescribeConsumerGroups([]string{group})
	return err == nil && len(descs) == 1 && descs[0].State == "Stable" && len(descs[0].Members) == n
}

// topicRecord is one record of a topic: its id, place and timestamp.
type topicRecord struct {
	id        string
	partition int32
	offset    int64
	ts        time.Time
}

// readTopic reads every record of topic up to its high-water marks.
func readTopic(t *testing.T, brokers []string, topic string) []topicRecord {
	t.Helper()
	var recs []topicRecord
	for _, m := range kafkatest.ReadToEnd(t, brokers, topic) {
		var ev struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(m.Value, &ev); err != nil {
			t.Fatalf("%s %d/%d: %v", topic, m.Partition, m.Offset, err)
		}
		recs = append(recs, topicRecord{ev.ID, m.Partition, m.Offset, m.Timestamp})
	}
	return recs
}

// longestGap returns the longest time between consecutive records of recs
// (all partitions, by timestamp) written within [from, to].
func longestGap(recs []topicRecord, from, to time.Time) time.Duration {
	var ts []time.Time
	for _, r := range recs {
		if !r.ts.Before(from) && !r.ts.After(to) {
			ts = append(ts, r.ts)
		}
	}
	slices.SortFunc(ts, time.Time.Compare)
	var gap time.Duration
	for i := 1; i < len(ts); i++ {
		gap = max(gap, ts[i].Sub(ts[i-1]))
	}
	return gap
}

// planRow matches a row of the printed plan: partition, current, new.
var planRow = regexp.MustCompile(`^\s*(\d+)\s+(\d+)\s+->\s+(\d+)\s`)

// TestReplayWhileRunning runs two bends in one group over a 4-partition
// topic with live input, replays the last seconds while both run (bend
// replay --live, through both admin APIs, with the admin token), and
// checks that every record of the replayed range is emitted again, that
// nothing outside it is lost or emitted twice, and that neither bend
// restarted. Before that, a dry run changes nothing and a wrong token is
// refused with one error line, leaving both instances reading.
func TestReplayWhileRunning(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	began := time.Now()
	step := func(what string) { t.Logf("%6.1fs %s", time.Since(began).Seconds(), what) }
	const token = "replay-test-token"
	cfg := testConfig(t, brokers, 0)
	cfg.Ingest.Synthetic.Enabled = false
	cfg.Sink.File.Path = ""
	cfg.Admin.Token = token
	cfg.Distributor.CommitInterval = 100 * time.Millisecond
	in, out, group := cfg.Kafka.Topics.Input, cfg.Kafka.Topics.Output, cfg.Distributor.Group
	// The input topic exists before anything asks for it: a metadata
	// request could create it with the broker's default partition count.
	adm, err := sarama.NewClusterAdmin(brokers, kafkatest.Config())
	if err != nil {
		t.Fatal(err)
	}
	if err := adm.CreateTopic(in, &sarama.TopicDetail{NumPartitions: 4, ReplicationFactor: 1}, false); err != nil {
		t.Fatalf("creating %s: %v", in, err)
	}
	_ = adm.Close()
	a := startLive(t, cfg, "a")
	b := startLive(t, cfg, "b")
	eventually(t, 90*time.Second, "both bends ready in a stable group of two", func() bool {
		return httpCode(a.url+"/readyz", http.MethodGet) == http.StatusOK && httpCode(b.url+"/readyz", http.MethodGet) == http.StatusOK &&
			groupSettled(brokers, group, 2)
	})
	step("group stable with two members")

	// Live input: ids r-1, r-2, ... in batches, until stopped.
	var produced atomic.Int64
	stopProducing := make(chan struct{})
	var pwg sync.WaitGroup
	pwg.Go(func() {
		sc := kafkatest.Config()
		sc.Producer.Return.Successes = true
		sc.Producer.Flush.Frequency = time.Millisecond
		p, err := sarama.NewSyncProducer(brokers, sc)
		if err != nil {
			t.Errorf("producer: %v", err)
			return
		}
		defer p.Close()
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stopProducing:
				return
			case <-tk.C:
			}
			batch := make([]*sarama.ProducerMessage, 0, 20)
			for range 20 {
				i := produced.Add(1)
				batch = append(batch, &sarama.ProducerMessage{Topic: in, Key: sarama.StringEncoder(strconv.FormatInt(i, 10)),
					Value: sarama.StringEncoder(fmt.Sprintf(`{"id":"r-%d","text":"replay while running %d"}`, i, i))})
			}
			if err := p.SendMessages(batch); err != nil {
				t.Errorf("producing: %v", err)
				return
			}
		}
	})
	defer func() {
		select {
		case <-stopProducing:
		default:
			close(stopProducing)
		}
		pwg.Wait()
	}()
	emitted := func() int64 { return hwmSum(brokers, out) }
	eventually(t, 60*time.Second, "1000 records emitted", func() bool { return emitted() >= 1000 })
	from := time.Now()
	eventually(t, 60*time.Second, "1000 more records emitted", func() bool { return emitted() >= 2000 })

	cliCfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cliCfg, []byte("admin: {addr: \"\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cliTo := func(admins []string, args ...string) (code int, stdout, stderr string) {
		var o, e bytes.Buffer
		args = append([]string{"replay", "--config", cliCfg, "--brokers", strings.Join(brokers, ","), "--group", group,
			"--topic", in}, args...)
		for _, u := range admins {
			args = append(args, "--admin", u)
		}
		code = execute(args, &o, &e)
		return code, o.String(), e.String()
	}
	cli := func(args ...string) (code int, stdout, stderr string) { return cliTo([]string{a.url, b.url}, args...) }
	ago := func() string { return fmt.Sprintf("%dms", time.Since(from).Milliseconds()+1) }

	// A wrong token: refused, printed once, nobody left paused.
	code, stdout, stderr := cli("--to", ago(), "--token", "wrong")
	if code != 1 || strings.Count(stderr, "bend: ") != 1 || strings.Count(stderr, "refused the admin token") != 2 {
		t.Errorf("replay with a wrong token: exit %d, stderr %q (want 1, one error naming both refusals)", code, stderr)
	}
	if strings.Count(stderr, "\n") != 1 {
		t.Errorf("replay with a wrong token printed %d lines on stderr, want 1:\n%s", strings.Count(stderr, "\n"), stderr)
	}
	t.Logf("wrong token: %s", strings.TrimSpace(stderr))
	for _, in := range []*liveInstance{a, b} {
		if st := replayStatus(t, in.url, token); st.Paused {
			t.Errorf("%s paused after a refused replay: %+v", in.url, st)
		}
	}

	// Naming one instance of two: refused after the pause (the other
	// member owns partitions), and the one paused is resumed unchanged.
	code, _, stderr = cliTo([]string{a.url}, "--to", ago(), "--token", token)
	if code != 1 || strings.Count(stderr, "bend: ") != 1 || !strings.Contains(stderr, "are not the whole group") {
		t.Errorf("replay naming one of two instances: exit %d, stderr %q", code, stderr)
	}
	t.Logf("one of two instances: %s", strings.TrimSpace(stderr))
	if st := replayStatus(t, a.url, token); st.Paused {
		t.Errorf("%s still paused after a refused replay: %+v", a.url, st)
	}

	// A dry run: the plan and both instances reading, nothing paused.
	code, stdout, stderr = cli("--to", ago(), "--token", token, "--dry-run")
	if code != 0 || !strings.Contains(stdout, "dry run") || strings.Count(stdout, ": reading\n") != 2 {
		t.Fatalf("dry run: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	t.Logf("dry run:\n%s", stdout)

	// The replay, while both run and input flows.
	step("replaying")
	replayed := time.Now()
	code, stdout, stderr = cli("--to", ago(), "--token", token)
	if code != 0 {
		t.Fatalf("replay: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	t.Logf("replay:\n%s", stdout)
	a.running(t, "after the replay")
	b.running(t, "after the replay")
	replayDone := time.Now()
	rng := map[int32][2]int64{} // partition -> [new, current)
	for line := range strings.SplitSeq(stdout, "\n") {
		if m := planRow.FindStringSubmatch(line); m != nil {
			p, _ := strconv.ParseInt(m[1], 10, 32)
			cur, _ := strconv.ParseInt(m[2], 10, 64)
			next, _ := strconv.ParseInt(m[3], 10, 64)
			rng[int32(p)] = [2]int64{next, cur}
		}
	}
	if len(rng) != 4 {
		t.Fatalf("the plan has %d partitions, want 4:\n%s", len(rng), stdout)
	}
	pause := regexp.MustCompile(`paused for (\S+)`).FindStringSubmatch(stdout)
	if pause == nil {
		t.Fatalf("the replay did not report its pause:\n%s", stdout)
	}

	// More input after the replay, then stop it and let everything drain.
	after := produced.Load()
	eventually(t, 60*time.Second, "input after the replay", func() bool { return produced.Load() >= after+1000 })
	close(stopProducing)
	pwg.Wait()
	step("input stopped")
	total := hwmSum(brokers, in)
	eventually(t, 120*time.Second, "every record committed", func() bool {
		sum, hwm := committed(t, brokers, group, in)
		return hwm == total && sum == total
	})
	step("everything committed")
	a.running(t, "at the end")
	b.running(t, "at the end")
	for _, in := range []*liveInstance{a, b} {
		in.stop()
		waitRun(t, in.done)
	}
	step("both stopped cleanly")

	inputs := map[string]topicRecord{}
	for _, r := range readTopic(t, brokers, in) {
		inputs[r.id] = r
	}
	outRecs := readTopic(t, brokers, out)
	outs := map[string]int{}
	for _, r := range outRecs {
		outs[r.id]++
	}
	// The output's longest silence around the replay: the pause (drain
	// and reset), the rejoin and the first records read again. Input
	// flows at about 1000 records/s, so the usual gap is milliseconds.
	gap := longestGap(outRecs, replayed.Add(-time.Second), replayDone.Add(5*time.Second))
	baseline := longestGap(outRecs, replayed.Add(-time.Second), replayed)
	step("output read")
	var inRange, again, lost, dupsOutside int
	for id, r := range inputs {
		bounds := rng[r.partition]
		c := outs[id]
		if r.offset >= bounds[0] && r.offset < bounds[1] {
			inRange++
			if c >= 2 {
				again++
			} else {
				t.Errorf("%s (partition %d offset %d) is in the replayed range [%d, %d) but was emitted %d time(s)", id, r.partition, r.offset, bounds[0], bounds[1], c)
			}
			continue
		}
		switch {
		case c == 0:
			lost++
		case c > 1:
			dupsOutside += c - 1
		}
	}
	t.Logf("input %d records; replayed range %d records (%v), %d emitted again; outside it %d lost, %d duplicates; replay command took %s (pause to resume %s); longest output gap around it %s (in the second before it %s)",
		len(inputs), inRange, rng, again, lost, dupsOutside, replayDone.Sub(replayed).Round(time.Millisecond), pause[1],
		gap.Round(time.Millisecond), baseline.Round(time.Millisecond))
	if int64(len(inputs)) != total {
		t.Errorf("input has %d distinct ids, want %d", len(inputs), total)
	}
	if inRange == 0 {
		t.Errorf("the replayed range is empty: %v", rng)
	}
	if lost != 0 {
		t.Errorf("%d records outside the replayed range lost", lost)
	}
	// Every claim was drained before the reset and the group was stable
	// before any input: nothing outside the range is emitted twice.
	if dupsOutside != 0 {
		t.Errorf("%d duplicates outside the replayed range, want 0", dupsOutside)
	}
}
