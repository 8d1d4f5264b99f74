package localbroker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

func TestDataDirLocked(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	first, err := Start(cfg)
	if err != nil {
		t.Fatalf("first Start: %v", err)
	}
	// A second open of the same directory (flock is per open file, so this
	// is what a second process sees).
	_, err = Start(cfg)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Start: %v, want ErrLocked", err)
	}
	for _, want := range []string{dir, "process " + strconv.Itoa(os.Getpid()), "stop it first"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	first.Close()
	again, err := Start(cfg)
	if err != nil {
		t.Fatalf("Start after Close: %v", err)
	}
	again.Close()
}

func TestCut(t *testing.T) {
	now := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	old, fresh := now.Add(-48*time.Hour), now.Add(-time.Minute)
	segs := []segment{{0, 100, old}, {10, 100, old}, {20, 100, fresh}, {30, 100, fresh}}
	for _, tc := range []struct {
		name     string
		segs     []segment
		maxBytes int64
		maxAge   time.Duration
		wantTo   int64
		wantN    int
	}{
		{"within both bounds", segs, 1000, 72 * time.Hour, 0, 0},
		{"size: drop until within", segs, 250, 0, 20, 2},
		{"size: never the newest segment", segs, 1, 0, 30, 3},
		{"age: drop the old ones", segs, 0, 24 * time.Hour, 20, 2},
		{"age and size together", segs, 150, 24 * time.Hour, 30, 3},
		{"one segment", segs[:1], 1, time.Nanosecond, 0, 0},
		{"retention off", segs, 0, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			to, n := cut(tc.segs, tc.maxBytes, tc.maxAge, now)
			if to != tc.wantTo || n != tc.wantN {
				t.Errorf("cut = %d, %d; want %d, %d", to, n, tc.wantTo, tc.wantN)
			}
		})
	}
}

// dirBytes sums the sizes of the files under dir.
func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			n += info.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRetentionBoundsDataDir writes far more than retention_bytes to two
// topics: the unprotected one stays within the bound on disk; the protected
// one keeps every record its group has not committed past, and shrinks once
// the group commits.
func TestRetentionBoundsDataDir(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.DataDir, cfg.Partitions = dir, 1
	cfg.segmentBytes = 64 << 10
	cfg.RetentionBytes = 256 << 10
	b, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.Protect("in", "g")

	sc := sarama.NewConfig()
	sc.Producer.Return.Successes = true
	sc.Producer.Flush.MaxMessages = 1
	client, err := sarama.NewClient(b.Addrs(), sc)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	prod, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	const n, size = 1024, 4 << 10 // 4 MiB a topic, 16 times the bound
	value := make([]byte, size)
	for _, topic := range []string{"out", "in"} {
		msgs := make([]*sarama.ProducerMessage, 0, 64)
		for i := range n {
			msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(value)})
			if len(msgs) == cap(msgs) || i == n-1 {
				if err := prod.SendMessages(msgs); err != nil {
					t.Fatalf("producing to %s: %v", topic, err)
				}
				msgs = msgs[:0]
			}
		}
	}
	outDir, inDir := filepath.Join(dir, "partitions", "out-0"), filepath.Join(dir, "partitions", "in-0")
	if got := dirBytes(t, outDir); got < 2*(n*size)/3 {
		t.Fatalf("before retention out-0 holds %d bytes, want most of %d", got, n*size)
	}
	if _, err := b.Retain(time.Now()); err != nil {
		t.Fatalf("Retain: %v", err)
	}
	bound := cfg.RetentionBytes + cfg.segment()
	if got := dirBytes(t, outDir); got > bound {
		t.Errorf("after retention out-0 holds %d bytes, want at most %d", got, bound)
	}
	oldest := func(topic string) int64 {
		t.Helper()
		o, err := client.GetOffset(topic, 0, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	if o := oldest("out"); o == 0 {
		t.Error("out: the oldest offset is still 0 after retention")
	}
	if o := oldest("in"); o != 0 {
		t.Errorf("in: oldest offset %d, want 0: group g committed nothing", o)
	}

	// The group commits offset 900: retention may delete below it, not above.
	kc, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs()...), kgo.MaxVersions(kversion.V3_8_0())) // topic names, not ids
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group, req.Generation = "g", -1
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = "in"
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Offset = 900
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), kc)
	if err != nil {
		t.Fatalf("committing: %v", err)
	}
	if err := kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode); err != nil {
		t.Fatalf("committing: %v", err)
	}
	if _, err := b.Retain(time.Now()); err != nil {
		t.Fatalf("Retain: %v", err)
	}
	o := oldest("in")
	if o == 0 || o > 900 {
		t.Errorf("in: oldest offset %d after the group committed 900, want in (0, 900]", o)
	}
	if got := dirBytes(t, inDir); got > (n-o)*size+cfg.segment()+bound {
		t.Errorf("in-0 holds %d bytes for %d records", got, n-o)
	}
}
