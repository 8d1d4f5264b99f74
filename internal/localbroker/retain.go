package localbroker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/sirupsen/logrus"
)

// Protect keeps topic's records that group has not committed past: retention
// deletes them only below the group's committed offsets (a partition the
// group never committed keeps everything). It is how the embedded broker's
// bounded disk never loses input bend has not consumed; while the group lags
// more than retention_bytes, that partition grows beyond the bound.
func (b *Broker) Protect(topic, group string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.protect[topic] = group
}

// RunRetention applies retention (Retain) every interval until ctx ends,
// logging what it deleted and any error. It returns at once without a data
// directory or with retention off.
func (b *Broker) RunRetention(ctx context.Context, every time.Duration, log logrus.FieldLogger) {
	if b.cfg.DataDir == "" || (b.cfg.RetentionBytes <= 0 && b.cfg.RetentionTime <= 0) {
		return
	}
	tk := time.NewTicker(every)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
			n, err := b.Retain(time.Now())
			if err != nil {
				log.WithError(err).Warn("embedded broker retention failed; will retry")
			} else if n > 0 {
				log.WithField("segments", n).Debug("embedded broker retention deleted old log segments")
			}
		}
	}
}

// segment is one log segment file of a partition on disk.
type segment struct {
	base     int64
	bytes    int64 // segment and index
	modified time.Time
}

// partitionDir is one partition's directory in the data directory.
type partitionDir struct {
	topic     string
	partition int32
	segments  []segment // by base offset
}

// Retain applies retention once, as of now: for each partition it finds
// the oldest segments beyond retention_bytes or whose last write is older
// than retention_time (never the active, newest one) and deletes the
// records below the first segment it keeps (DeleteRecords), capped at a
// protecting group's committed offset. It returns how many segments'
// records it deleted.
func (b *Broker) Retain(now time.Time) (int, error) {
	parts, err := readPartitions(filepath.Join(b.cfg.DataDir, "partitions"))
	if err != nil || len(parts) == 0 {
		return 0, err
	}
	targets := map[string]map[int32]int64{}
	counts := map[string]map[int32]int{}
	for _, p := range parts {
		to, n := cut(p.segments, b.cfg.RetentionBytes, b.cfg.RetentionTime, now)
		if n == 0 {
			continue
		}
		if targets[p.topic] == nil {
			targets[p.topic], counts[p.topic] = map[int32]int64{}, map[int32]int{}
		}
		targets[p.topic][p.partition], counts[p.topic][p.partition] = to, n
	}
	if len(targets) == 0 {
		return 0, nil
	}
	sc := sarama.NewConfig()
	sc.ClientID = "bend-retention"
	adm, err := sarama.NewClusterAdmin(b.Addrs(), sc)
	if err != nil {
		return 0, fmt.Errorf("retention: %w", err)
	}
	defer adm.Close()
	b.mu.Lock()
	protect := maps.Clone(b.protect)
	b.mu.Unlock()
	deleted := 0
	for topic, tp := range targets {
		if group, ok := protect[topic]; ok {
			var ps []int32
			for p := range tp {
				ps = append(ps, p)
			}
			res, err := adm.ListConsumerGroupOffsets(group, map[string][]int32{topic: ps})
			if errors.Is(err, sarama.ErrGroupIDNotFound) {
				res, err = nil, nil // the group never committed: keep everything
			}
			if err != nil {
				return deleted, fmt.Errorf("retention: committed offsets of %s: %w", group, err)
			}
			for p, to := range tp {
				var committed int64 = -1
				if res != nil {
					if blk := res.GetBlock(topic, p); blk != nil && blk.Err == sarama.ErrNoError {
						committed = blk.Offset
					}
				}
				switch {
				case committed < 0:
					delete(tp, p)
				case committed < to:
					tp[p] = committed
				}
			}
		}
		for p, to := range tp {
			if to <= 0 {
				delete(tp, p)
			}
		}
		if len(tp) == 0 {
			continue
		}
		if err := adm.DeleteRecords(topic, tp); err != nil {
			return deleted, fmt.Errorf("retention: deleting records of %s: %w", topic, err)
		}
		for p := range tp {
			deleted += counts[topic][p]
		}
	}
	return deleted, nil
}

// cut returns the offset below which segs (by base offset) are past
// retention as of now, and how many segments that removes; the newest
// segment is always kept. Pure: no files, no clock.
func cut(segs []segment, maxBytes int64, maxAge time.Duration, now time.Time) (int64, int) {
	if len(segs) < 2 {
		return 0, 0
	}
	var total int64
	for _, s := range segs {
		total += s.bytes
	}
	n := 0
	for n < len(segs)-1 {
		s := segs[n]
		tooBig := maxBytes > 0 && total > maxBytes
		tooOld := maxAge > 0 && now.Sub(s.modified) > maxAge
		if !tooBig && !tooOld {
			break
		}
		total -= s.bytes
		n++
	}
	if n == 0 {
		return 0, 0
	}
	return segs[n].base, n
}

// readPartitions lists the partition directories under dir (kfake's layout:
// dir/<url-escaped topic>-<partition>/<base offset>.dat and .idx).
func readPartitions(dir string) ([]partitionDir, error) {
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("retention: %w", err)
	}
	var out []partitionDir
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		i := strings.LastIndexByte(e.Name(), '-')
		if i < 0 {
			continue
		}
		part, err := strconv.ParseInt(e.Name()[i+1:], 10, 32)
		if err != nil {
			continue
		}
		topic, err := url.PathUnescape(e.Name()[:i])
		if err != nil {
			continue
		}
		files, err := os.ReadDir(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("retention: %w", err)
		}
		bySeg := map[int64]*segment{}
		for _, f := range files {
			name, ext, ok := strings.Cut(f.Name(), ".")
			if !ok || (ext != "dat" && ext != "idx") {
				continue
			}
			base, err := strconv.ParseInt(name, 10, 64)
			if err != nil {
				continue
			}
			info, err := f.Info()
			if err != nil {
				continue // deleted meanwhile
			}
			s := bySeg[base]
			if s == nil {
				s = &segment{base: base}
				bySeg[base] = s
			}
			s.bytes += info.Size()
			if ext == "dat" {
				s.modified = info.ModTime()
			}
		}
		p := partitionDir{topic: topic, partition: int32(part)}
		for _, s := range bySeg {
			p.segments = append(p.segments, *s)
		}
		slices.SortFunc(p.segments, func(a, b segment) int { return cmp.Compare(a.base, b.base) })
		out = append(out, p)
	}
	return out, nil
}
