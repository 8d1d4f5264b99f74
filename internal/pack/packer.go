package pack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
	metrics "github.com/rcrowley/go-metrics"
)

// Sender hands one record to Kafka; done is called exactly once unless it
// returns an error (internal/kafka.Producer.Send).
type Sender func(ctx context.Context, m *sarama.ProducerMessage, done func(error)) error

// Classify says how a record may be packed: ok false sends it alone (in
// order with its partition's packs); shared are the headers every event of
// one pack must have in common (compared byte for byte) and the pack
// carries; meta, if not nil, is the event's entry in bend-batch-sources.
type Classify func(m *sarama.ProducerMessage) (shared []sarama.RecordHeader, meta []byte, ok bool)

// Partitions returns the topic's partition count.
type Partitions func(topic string) (int32, error)

// Packer groups records for one topic by partition (the hash of their
// key, as the producer's partitioner does) into packed records, and sends
// them through a Sender from one goroutine, in the order their events were
// added, so per-partition (and so per-key) order holds. A pack is keyed by
// its first event's key, which hashes to the same partition. Each event's
// done is called once, when Kafka acknowledged the record holding it, or
// with an error if the packer stopped first. Add and Close are safe for
// concurrent use.
type Packer struct {
	cfg        Config
	topic      string
	send       Sender
	classify   Classify
	partitions Partitions
	hash       sarama.Partitioner
	records    metrics.Counter // packed records sent
	events     metrics.Counter // events in them

	mu      sync.Mutex
	order   []*batch // in creation order: sealed, then open
	open    map[int32]*batch
	count   int32 // cached partition count
	counted time.Time
	closed  bool
	unacked int // records handed to the Sender and not yet acknowledged
	wake    chan struct{}
	done    chan struct{}
}

type batch struct {
	first  *sarama.ProducerMessage
	shared []sarama.RecordHeader
	value  []byte
	metas  []byte
	dones  []func(error)
	n      int
	sealed bool
}

// NewPacker returns a packer for topic; run it with Run. records and
// events (may be nil) count the packed records sent and their events.
func NewPacker(cfg Config, topic string, send Sender, classify Classify, partitions Partitions, records, events metrics.Counter) *Packer {
	if records == nil {
		records = metrics.NilCounter{}
	}
	if events == nil {
		events = metrics.NilCounter{}
	}
	return &Packer{cfg: cfg, topic: topic, send: send, classify: classify, partitions: partitions,
		hash: sarama.NewHashPartitioner(topic), records: records, events: events,
		open: map[int32]*batch{}, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// Topic returns the packer's topic.
func (p *Packer) Topic() string { return p.topic }

// ErrClosed is the error of Add after Close, and of the events a packer
// stopped by its context did not send.
var ErrClosed = errors.New("pack: packer closed")

// Add queues m (its Topic must be the packer's) and returns at once; done
// is called exactly once, unless Add returns an error (then never). It
// never blocks: what the caller holds is bounded by the caller's window.
func (p *Packer) Add(m *sarama.ProducerMessage, done func(error)) error {
	shared, meta, ok := p.classify(m)
	var v []byte
	if ok {
		v, _ = m.Value.Encode()
		ok = Packable(v) && len(v)+1 <= p.cfg.MaxBytes
	}
	part := int32(-1) // keyless records share one pack and a random partition
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	if m.Key != nil {
		part = p.partitionLocked(m)
	}
	b := p.open[part]
	sealed := false // a pack is ready: wake Run
	if b != nil && (!ok || b.n >= p.cfg.MaxEvents || len(b.value)+len(v)+1 > p.cfg.MaxBytes || !sameHeaders(b.shared, shared)) {
		b.sealed = true
		delete(p.open, part)
		b = nil
		sealed = true
	}
	if b == nil {
		b = &batch{first: m, shared: shared}
		if ok {
			// Room for a full pack of events like this one, so Append
			// rarely grows (and copies) the value.
			b.value = make([]byte, 0, min(p.cfg.MaxBytes, (len(v)+1)*p.cfg.MaxEvents+len(v)))
			b.dones = make([]func(error), 0, p.cfg.MaxEvents)
		}
		p.order = append(p.order, b)
		if ok {
			p.open[part] = b
		} else {
			b.sealed = true // alone
		}
	}
	if ok {
		b.value = Append(b.value, v)
		if meta != nil {
			if len(b.metas) > 0 {
				b.metas = append(b.metas, ',')
			}
			b.metas = append(b.metas, meta...)
		}
	}
	b.dones = append(b.dones, done)
	b.n++
	if ok && b.n >= p.cfg.MaxEvents {
		b.sealed = true
		delete(p.open, part)
	}
	wake := sealed || b.sealed || p.unacked == 0
	p.mu.Unlock()
	if wake {
		p.signal()
	}
	return nil
}

// partitionLocked is m's partition as the hash partitioner picks it, from
// a partition count refreshed every 10s.
func (p *Packer) partitionLocked(m *sarama.ProducerMessage) int32 {
	if now := time.Now(); p.count < 1 || now.Sub(p.counted) > 10*time.Second {
		if n, err := p.partitions(p.topic); err == nil && n > 0 {
			p.count, p.counted = n, now
		}
	}
	if p.count < 1 {
		return -1
	}
	part, err := p.hash.Partition(m, p.count)
	if err != nil {
		return -1
	}
	return part
}

func sameHeaders(a, b []sarama.RecordHeader) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i].Key, b[i].Key) || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}

// Run sends packs until Close was called and everything added was handed
// to the Sender, or ctx ends; then it calls done(ErrClosed) for whatever it
// did not send. It returns nil after Close, ctx.Err() otherwise. Run must
// be called exactly once.
func (p *Packer) Run(ctx context.Context) error {
	defer close(p.done)
	for {
		select {
		case <-p.wake:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			p.fail(ctx.Err())
			return ctx.Err()
		}
		if p.cfg.Linger > 0 {
			t := time.NewTimer(p.cfg.Linger)
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
		}
		p.mu.Lock()
		var take []*batch
		if p.unacked == 0 || p.closed {
			take = p.order
			p.order = nil
			clear(p.open)
		} else {
			// Kafka has records of ours: send full packs only; the rest
			// fills until the last record is acknowledged (as Nagle's
			// algorithm does), so a busy producer gets full packs and an
			// idle one gets every event at once.
			keep := p.order[:0]
			for _, b := range p.order {
				if b.sealed {
					take = append(take, b)
				} else {
					keep = append(keep, b)
				}
			}
			clear(p.order[len(keep):])
			p.order = keep
		}
		p.unacked += len(take)
		closed := p.closed
		p.mu.Unlock()
		for i, b := range take {
			if err := p.send(ctx, p.message(b), p.ack(b)); err != nil {
				for _, b := range take[i:] {
					for _, d := range b.dones {
						d(fmt.Errorf("sending packed record: %w", err))
					}
				}
				p.fail(err)
				return err
			}
		}
		p.mu.Lock()
		empty, idle := len(p.order) == 0, p.unacked == 0
		p.mu.Unlock()
		if empty && closed {
			return nil
		}
		if !empty && (idle || closed) {
			p.signal()
		}
	}
}

func (p *Packer) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// acked counts one record of ours acknowledged (or failed) by Kafka, and
// wakes Run to send the partial packs once none is left.
func (p *Packer) acked() {
	p.mu.Lock()
	p.unacked--
	wake := p.unacked == 0 && len(p.order) > 0
	p.mu.Unlock()
	if wake {
		p.signal()
	}
}

// message builds the record of b: its first record if b holds one event,
// else the packed record.
func (p *Packer) message(b *batch) *sarama.ProducerMessage {
	if b.n == 1 {
		return b.first
	}
	h := make([]sarama.RecordHeader, 0, len(b.shared)+3)
	h = append(h, b.shared...)
	h = Headers(h, b.n)
	if len(b.metas) > 0 {
		h = append(h, sarama.RecordHeader{Key: hdrSources, Value: b.metas})
	}
	p.records.Inc(1)
	p.events.Inc(int64(b.n))
	return &sarama.ProducerMessage{Topic: p.topic, Key: b.first.Key, Value: sarama.ByteEncoder(b.value), Headers: h, Timestamp: b.first.Timestamp}
}

var hdrSources = []byte(HeaderSources)

func (p *Packer) ack(b *batch) func(error) {
	return func(err error) {
		p.acked()
		for _, d := range b.dones {
			d(err)
		}
	}
}

// fail calls done(ErrClosed) for everything not taken yet.
func (p *Packer) fail(cause error) {
	p.mu.Lock()
	take := p.order
	p.order, p.closed = nil, true
	clear(p.open)
	p.mu.Unlock()
	for _, b := range take {
		for _, d := range b.dones {
			d(fmt.Errorf("%w: %w", ErrClosed, cause))
		}
	}
}

// Close stops Add and waits until Run handed every pack to the Sender (the
// Sender's done callbacks may still be pending), or ctx ends. Idempotent.
func (p *Packer) Close(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
