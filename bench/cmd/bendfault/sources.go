package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/fakepub"
	"github.com/tidwall/gjson"
)

// sourcesPlan is the sources fault's size: events and rate per publisher,
// and SIGKILLs.
type sourcesPlan struct {
	events int
	rate   float64
	kills  int
}

// plan is the short version's size (CI) or the long one's: the long one is
// the 100,000 events at 5,000/s per publisher and 5 kills of TestKillResumeSources.
func (s *suite) sourcesPlan() sourcesPlan {
	if s.long {
		return sourcesPlan{events: 100000, rate: 5000, kills: 5}
	}
	return sourcesPlan{events: 30000, rate: 2000, kills: 3}
}

// jetstreamRewind is the sources fault's ingest.jetstream.rewind.
const jetstreamRewind = 5 * time.Second

// faultSources streams events from a fake Jetstream (WebSocket) and a fake
// Wikimedia EventStreams (SSE) into one bend, which reads both, while bend
// is SIGKILLed and restarted at once. Every restart resumes each publisher
// from the cursor Kafka acknowledged (Jetstream minus the rewind, whose
// overlap the duplicate filter drops). The publishers replay their whole
// stream, so no gap is allowed: one logged is a failure. Ids are counted
// from the publishers (every event they publish) to the output topic.
func faultSources(s *suite, r *runner) error {
	pl := s.sourcesPlan()
	n := pl.events
	jet := fakepub.NewJetstream(fakepub.Config{Events: n, Rate: pl.rate, Window: n})
	defer jet.Close()
	sse := fakepub.NewSSE(fakepub.Config{Events: n, Rate: pl.rate, Window: n}, "wikimedia")
	defer sse.Close()

	// Jetstream's events are 1..n, the event stream's n+1..2n.
	r.rate = 2 * pl.rate
	r.setEvents(int64(2 * n))
	ids := make(map[string]int64, 2*n)
	for i := range n {
		ids[fakepub.JetstreamID(i)] = int64(i + 1)
		ids[fakepub.SSEID(i)] = int64(n + i + 1)
	}
	r.seen.index = func(v []byte) (int64, error) {
		id := sourceID(v)
		if i, ok := ids[id]; ok {
			return i, nil
		}
		return 0, fmt.Errorf("not an id of the run: %q", id)
	}
	// Per kill: the rewind's overlap (usually dropped at ingest) and what
	// the distributor emitted but had not committed.
	rewound := int64(jetstreamRewind.Seconds() * pl.rate)
	r.dupBound = int64(pl.kills) * (rewound + r.maxItems + 8*256 + int64(2*r.rate))
	inDup := [2]int64{-1, -1} // duplicates in the input topic: what ingest let through
	r.detail = func() string {
		jl, jd := r.seen.countRange(1, int64(n))
		sl, sd := r.seen.countRange(int64(n+1), int64(2*n))
		return fmt.Sprintf("jetstream: %d events, lost %d, duplicated %d (input topic: %d); sse: %d events, lost %d, duplicated %d (input topic: %d); %d kills, bound per kill %d",
			n, jl, jd, inDup[0], n, sl, sd, inDup[1], pl.kills, r.dupBound/int64(pl.kills))
	}

	if err := r.createTopics(); err != nil {
		return err
	}
	sources := fmt.Sprintf(`  jetstream: {enabled: true, url: %q, cursor: %d, wanted_collections: [app.bsky.feed.post, app.bsky.feed.like], format: jetstream, rewind: %s, gap_tolerance: 1s}
  sse: {enabled: true, url: %q, last_event_id: %q, events: [message], format: wikimedia_recentchange}
`, jet.URL(), jet.TimeUS(0), jetstreamRewind, sse.URL(), sse.ID(-1))
	p, err := r.startBend(bendOpts{instanceID: "fault-sources-1", sources: sources})
	if err != nil {
		return err
	}
	if err := r.readKafka(); err != nil {
		return err
	}
	midStream := 0
	for k := range pl.kills {
		// Kill a process that streams: once both its sources connected,
		// after a random while.
		if err := waitLog(r, p, 60*time.Second, "jetstream connected", "event stream connected"); err != nil {
			return err
		}
		r.sleep(300*time.Millisecond + time.Duration(s.rng.Int64N(int64(1200*time.Millisecond))))
		if r.ctx.Err() != nil {
			break
		}
		when := "while the publishers stream"
		if !jet.Done() || !sse.Done() {
			midStream++
		} else {
			when = "after the publishers finished, while bend reads their replay"
		}
		p.kill()
		r.incident("SIGKILL bend (%d of %d) %s", k+1, pl.kills, when)
		if err := p.restart(); err != nil {
			return err
		}
	}
	if midStream < pl.kills-1 {
		return fmt.Errorf("only %d of %d kills hit bend while the publishers streamed", midStream, pl.kills)
	}
	err = r.wait()
	if jet.Done() && sse.Done() {
		r.produced.Store(int64(2 * n))
	}
	if err != nil {
		return err
	}
	// The input topic's duplicates tell the resume overlap ingest let
	// through from the distributor's redelivery of what it had not committed.
	in := newTracker(int64(2 * n))
	in.index = r.seen.index
	if err := r.readAll(r.in, in); err != nil {
		return err
	}
	_, inDup[0] = in.countRange(1, int64(n))
	_, inDup[1] = in.countRange(int64(n+1), int64(2*n))
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err
	}
	if strings.Contains(string(b), "gap in the stream") {
		return fmt.Errorf("bend reported a gap, within the publishers' replay windows (log %s)", p.logPath)
	}
	return nil
}

// sourceID is the id the output record v has in its format: a Jetstream
// record's AT URI, an EventStreams event's meta.id.
func sourceID(v []byte) string {
	if rk := gjson.GetBytes(v, "commit.rkey"); rk.Exists() {
		return "at://" + gjson.GetBytes(v, "did").Str + "/" + gjson.GetBytes(v, "commit.collection").Str + "/" + rk.Str
	}
	return gjson.GetBytes(v, "meta.id").Str
}

// waitLog waits until the log of p's current process holds every one of
// lines, the process exits, or d passes.
func waitLog(r *runner, p *proc, d time.Duration, lines ...string) error {
	deadline := time.Now().Add(d)
	for {
		b, err := os.ReadFile(p.logPath)
		if err != nil {
			return err
		}
		cur := string(b)
		if i := strings.LastIndex(cur, "\n---- "); i >= 0 {
			cur = cur[i:]
		}
		all := true
		for _, l := range lines {
			all = all && strings.Contains(cur, l)
		}
		switch {
		case all:
			return nil
		case p.pid() == 0:
			return fmt.Errorf("bend exited before its log held %q (log %s)", lines, p.logPath)
		case time.Now().After(deadline):
			return fmt.Errorf("after %s bend's log does not hold %q (log %s)", d, lines, p.logPath)
		case r.ctx.Err() != nil:
			return r.ctx.Err()
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readAll counts into t every record topic holds now (up to its
// high-water marks).
func (r *runner) readAll(topic string, t *tracker) error {
	client, err := sarama.NewClient([]string{r.s.brokers}, saramaConfig())
	if err != nil {
		return err
	}
	defer client.Close()
	cons, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return err
	}
	defer cons.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		return err
	}
	for _, p := range parts {
		hwm, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return err
		}
		if hwm == 0 {
			continue
		}
		pc, err := cons.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			return err
		}
		timeout := time.After(2 * time.Minute)
		for done := false; !done; {
			select {
			case m := <-pc.Messages():
				t.add(m.Value, "")
				done = m.Offset >= hwm-1
			case <-timeout:
				pc.Close()
				return fmt.Errorf("reading %s/%d: no record at offset %d within 2 minutes", topic, p, hwm-1)
			}
		}
		pc.Close()
	}
	return nil
}
