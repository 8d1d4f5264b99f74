package distributor

import (
	"context"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/sirupsen/logrus"
)

// topicPartition names one partition.
type topicPartition struct {
	topic     string
	partition int32
}

// logEnds tracks the log-end offsets of the owned partitions, read from
// their leaders with ListOffsets (latest, read_uncommitted: the figure
// Kafka's consumer-groups tool reports as LOG-END-OFFSET) every refresh.
// Unlike the fetch high-water mark, it keeps moving while reading is held
// back. Safe for concurrent use.
type logEnds struct {
	mu   sync.Mutex
	ends map[topicPartition]int64
}

func newLogEnds() *logEnds { return &logEnds{ends: map[topicPartition]int64{}} }

// end returns the last log-end offset read for tp, or fallback before the
// first refresh.
func (le *logEnds) end(tp topicPartition, fallback int64) int64 {
	le.mu.Lock()
	defer le.mu.Unlock()
	if e, ok := le.ends[tp]; ok {
		return e
	}
	return fallback
}

// set records the log-end offsets read, and forgets partitions no longer owned.
func (le *logEnds) set(ends map[topicPartition]int64, owned []topicPartition) {
	le.mu.Lock()
	defer le.mu.Unlock()
	keep := make(map[topicPartition]int64, len(owned))
	for _, tp := range owned {
		if e, ok := ends[tp]; ok {
			keep[tp] = e
		} else if e, ok := le.ends[tp]; ok {
			keep[tp] = e // this refresh failed for tp: keep the last figure
		}
	}
	le.ends = keep
}

// listEnds asks each partition's leader for its log-end offsets, one
// ListOffsets request per broker. Partitions whose leader cannot be found
// or answered with an error are left out.
func listEnds(client sarama.Client, version sarama.KafkaVersion, owned []topicPartition) (map[topicPartition]int64, error) {
	byBroker := map[*sarama.Broker][]topicPartition{}
	var firstErr error
	for _, tp := range owned {
		b, err := client.Leader(tp.topic, tp.partition)
		if err != nil {
			firstErr = err
			continue
		}
		byBroker[b] = append(byBroker[b], tp)
	}
	ends := make(map[topicPartition]int64, len(owned))
	for b, tps := range byBroker {
		req := sarama.NewOffsetRequest(version) // read_uncommitted: the log end, not the last stable offset
		for _, tp := range tps {
			req.AddBlock(tp.topic, tp.partition, sarama.OffsetNewest, 1)
		}
		resp, err := b.GetAvailableOffsets(req)
		if err != nil {
			firstErr = err
			_ = b.Close() // the client reopens it on the next request
			continue
		}
		for _, tp := range tps {
			blk := resp.GetBlock(tp.topic, tp.partition)
			if blk == nil || blk.Err != sarama.ErrNoError {
				if blk != nil && firstErr == nil {
					firstErr = blk.Err
				}
				continue
			}
			ends[tp] = blk.Offset
			if len(blk.Offsets) > 0 { // v0 answers; v1+ fill both
				ends[tp] = blk.Offsets[0]
			}
		}
	}
	return ends, firstErr
}

// trackLogEnds refreshes d.ends every distributor.lag_refresh for the
// partitions this member owns, until ctx ends. It uses its own client so a
// slow ListOffsets never holds up fetching.
func (d *Distributor) trackLogEnds(ctx context.Context) {
	sc := *d.sc
	sc.Consumer.IsolationLevel = sarama.ReadUncommitted
	client, err := sarama.NewClient(d.brokers, &sc)
	if err != nil {
		d.log.WithError(err).Warn("lag tracker: no Kafka client; lag falls back to the fetch high-water marks")
		return
	}
	defer client.Close()
	tk := time.NewTicker(d.cfg.LagRefresh)
	defer tk.Stop()
	warned := false
	for {
		owned := d.ownedPartitions()
		if len(owned) > 0 {
			ends, err := listEnds(client, sc.Version, owned)
			d.ends.set(ends, owned)
			switch {
			case err != nil && !warned:
				d.log.WithError(err).WithFields(logrus.Fields{"partitions": len(owned), "answered": len(ends)}).
					Warn("lag tracker: reading log-end offsets failed; keeping the last figures")
				warned = true
			case err == nil:
				warned = false
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
}

// ownedPartitions lists the partitions of the running claims.
func (d *Distributor) ownedPartitions() []topicPartition {
	d.claimsMu.Lock()
	defer d.claimsMu.Unlock()
	out := make([]topicPartition, 0, len(d.claims))
	for cs := range d.claims {
		out = append(out, topicPartition{cs.topic, cs.partition})
	}
	return out
}
