package sink

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/metricnames"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
)

// Source identifies the input record a Record was made from. The
// exactly-once output commits Offset+1 for it inside the same transaction
// as the output, on behalf of Group.
type Source struct {
	Topic     string
	Partition int32
	Offset    int64
	// Group is the consumer group generation that read the record; a
	// transaction never spans two generations, so a member fenced by a
	// rebalance cannot commit.
	Group *sarama.ConsumerGroupMetadata
	// Partial marks a record made from one event of a packed input record
	// (internal/pack) other than its last: the offset is committed with
	// the last, so a transaction holding only some of the events commits
	// the offset below the record (see txnOutput.loop).
	Partial bool
}

// ErrTxnFailed is returned by the exactly-once output once a transaction
// could not be committed after its retries or the producer was fenced: the
// daemon must stop and restart from the committed offsets.
var ErrTxnFailed = errors.New("sink: transaction failed")

// txnOutput writes every record, enriched or dead letter, through one
// transactional producer. Records are grouped into transactions of at most
// sink.kafka.txn_max_records or sink.kafka.txn_interval; each transaction
// also commits the consumed offsets of its records, so a read_committed
// consumer sees each output exactly once. A record is acknowledged when its
// transaction commits. Records must arrive in offset order per partition
// (distributor.ordered), so a transaction's offsets cover exactly what it
// contains.
type txnOutput struct {
	p        sarama.AsyncProducer
	cfg      KafkaConfig
	topic    string
	dlqTopic string
	log      logrus.FieldLogger
	commits  metrics.Timer
	aborts   metrics.Counter
	perrs    metrics.Counter // sink.kafka.txn_produce_errors
	tally    produceErrors   // this transaction's failed records, logged once with it

	in   chan *Record
	done chan struct{}
	mu   sync.Mutex
	err  error // fatal: set once, every later Send fails
}

func newTxnOutput(cfg KafkaConfig, brokers []string, sc *sarama.Config, topic, dlqTopic string, log logrus.FieldLogger, reg metrics.Registry) (*txnOutput, error) {
	pc := *sc
	if err := cfg.ProducerConfig.Apply(&pc); err != nil {
		return nil, fmt.Errorf("sink.kafka: %w", err)
	}
	pc.Producer.Transaction.ID = cfg.TransactionalID
	pc.Producer.Transaction.Timeout = cfg.TxnTimeout
	pc.Producer.Return.Successes = false
	p, err := sarama.NewAsyncProducer(brokers, &pc)
	if err != nil {
		return nil, fmt.Errorf("starting transactional producer %q: %w", cfg.TransactionalID, err)
	}
	o := &txnOutput{p: p, cfg: cfg, topic: topic, dlqTopic: dlqTopic, log: log,
		commits: metrics.GetOrRegisterTimer(metricnames.SinkTxnCommits, reg),
		aborts:  metrics.GetOrRegisterCounter(metricnames.SinkTxnAborts, reg),
		perrs:   metrics.GetOrRegisterCounter(metricnames.SinkTxnProduceErrs, reg),
		in:      make(chan *Record, cfg.TxnMaxRecords), done: make(chan struct{})}
	go o.drainErrors(p.Errors())
	go o.loop()
	return o, nil
}

// Send queues r for the next transaction, blocking while a full
// transaction's worth of records is waiting.
func (o *txnOutput) Send(ctx context.Context, r *Record) error {
	if err := o.fatal(); err != nil {
		return err
	}
	select {
	case o.in <- r:
		return nil
	case <-o.done:
		return o.fatal()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (o *txnOutput) fatal() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}

func (o *txnOutput) setFatal(err error) {
	o.mu.Lock()
	if o.err == nil {
		o.err = err
	}
	o.mu.Unlock()
}

// loop builds and commits transactions until in is closed.
func (o *txnOutput) loop() {
	defer close(o.done)
	var next *Record
	for {
		first := next
		next = nil
		if first == nil {
			r, ok := <-o.in
			if !ok {
				return
			}
			first = r
		}
		batch := []*Record{first}
		gen := generation(first)
		var open partials // packed input records whose events are not all in batch
		open.note(first)
		timer := time.NewTimer(o.cfg.TxnInterval)
		expired, extended := timer.C, false
	collect:
		for len(batch) < o.cfg.TxnMaxRecords || open.n > 0 {
			select {
			case r, ok := <-o.in:
				if !ok {
					break collect
				}
				if generation(r) != gen {
					next = r // a new group generation starts a new transaction
					break collect
				}
				batch = append(batch, r)
				open.note(r)
				if extended && open.n == 0 {
					break collect
				}
			case <-expired:
				if open.n == 0 || extended {
					// Past the extension (the rest was dropped: its claim
					// ended), the packed record's offset is not committed.
					break collect
				}
				// The rest of a packed record's events is on its way.
				extended = true
				timer.Reset(10 * o.cfg.TxnInterval)
			}
		}
		timer.Stop()
		if err := o.commit(batch); err != nil {
			o.setFatal(err)
			for _, r := range batch {
				r.done(err)
			}
			if next != nil {
				next.done(err)
				next = nil
			}
			// Nack everything still queued and refuse the rest.
			for r := range o.in {
				r.done(err)
			}
			return
		}
	}
}

func generation(r *Record) int32 {
	if r.Source == nil || r.Source.Group == nil {
		return sarama.GroupGenerationUndefined
	}
	return r.Source.Group.GenerationID
}

// commit writes batch and its offsets in one transaction, retrying an
// abortable failure a few times with backoff.
func (o *txnOutput) commit(batch []*Record) error {
	backoff := o.cfg.RetryBackoff
	var err error
	for attempt := 1; attempt <= 5; attempt++ {
		start := time.Now()
		if err = o.try(batch); err == nil {
			o.tally.take()
			o.commits.UpdateSince(start)
			for _, r := range batch {
				r.done(nil)
			}
			return nil
		}
		o.aborts.Inc(1)
		status := o.p.TxnStatus()
		if status&sarama.ProducerTxnFlagFatalError != 0 {
			break
		}
		if status&sarama.ProducerTxnFlagInTransaction != 0 || status&sarama.ProducerTxnFlagAbortableError != 0 {
			if aerr := o.p.AbortTxn(); aerr != nil {
				err = errors.Join(err, fmt.Errorf("aborting: %w", aerr))
				break
			}
		}
		if errors.Is(err, sarama.ErrIllegalGeneration) || errors.Is(err, sarama.ErrUnknownMemberId) || errors.Is(err, sarama.ErrFencedInstancedId) {
			// A rebalance fenced this generation: its records will be
			// redelivered to the partitions' new owners.
			o.failed(batch, attempt, err).Warn("transaction fenced by a rebalance; its records will be redelivered")
			for _, r := range batch {
				r.done(fmt.Errorf("transaction fenced: %w", err))
			}
			return nil
		}
		o.failed(batch, attempt, err).Warnf("transaction failed (attempt %d), retrying in %s", attempt, backoff)
		time.Sleep(backoff)
		backoff = min(2*backoff, 10*time.Second)
	}
	return fmt.Errorf("%w: %w", ErrTxnFailed, err)
}

// drainErrors counts the records the producer failed to write. A failed
// record puts the transaction in error and CommitTxn reports it, so they
// are logged once per transaction (see failed), not once per record: a
// rebalance can fail thousands at once.
func (o *txnOutput) drainErrors(errs <-chan *sarama.ProducerError) {
	for pe := range errs {
		o.perrs.Inc(1)
		o.tally.add(pe)
	}
}

// failed returns the log entry of a failed transaction of batch: its
// records, and how many of them the producer failed to write, on which
// topics, with the first error.
func (o *txnOutput) failed(batch []*Record, attempt int, err error) *logrus.Entry {
	f := logrus.Fields{"records": len(batch), "attempt": attempt}
	if n, first, topics := o.tally.take(); n > 0 {
		f["produce_errors"], f["first_produce_error"], f["topics"] = n, first.Error(), topics
	}
	return o.log.WithError(err).WithFields(f)
}

// produceErrors tallies failed records between two transactions. Safe for
// concurrent use.
type produceErrors struct {
	mu     sync.Mutex
	n      int
	first  error
	topics map[string]int
}

func (p *produceErrors) add(pe *sarama.ProducerError) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n == 0 {
		p.first, p.topics = pe.Err, map[string]int{}
	}
	p.n++
	if pe.Msg != nil {
		p.topics[pe.Msg.Topic]++
	}
}

// take returns the tally and resets it.
func (p *produceErrors) take() (n int, first error, topics map[string]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, first, topics = p.n, p.first, p.topics
	p.n, p.first, p.topics = 0, nil, nil
	return n, first, topics
}

func (o *txnOutput) try(batch []*Record) error {
	if err := o.p.BeginTxn(); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	offsets := map[string][]*sarama.PartitionOffsetMetadata{}
	var group *sarama.ConsumerGroupMetadata
	last := map[string]map[int32]int64{}
	for _, r := range batch {
		topic := o.topic
		if r.DeadLetter {
			topic = o.dlqTopic
		}
		o.p.Input() <- &sarama.ProducerMessage{Topic: topic, Key: sarama.ByteEncoder(r.Key), Value: sarama.ByteEncoder(r.Value), Headers: r.Headers}
		if s := r.Source; s != nil && s.Group != nil {
			group = s.Group
			if last[s.Topic] == nil {
				last[s.Topic] = map[int32]int64{}
			}
			off := s.Offset
			if s.Partial {
				off-- // commit below a packed record not wholly in batch
			}
			if cur, ok := last[s.Topic][s.Partition]; !ok || off > cur {
				last[s.Topic][s.Partition] = off
			}
		}
	}
	if group != nil {
		for t, parts := range last {
			for p, off := range parts {
				offsets[t] = append(offsets[t], &sarama.PartitionOffsetMetadata{Partition: p, Offset: off + 1})
			}
		}
		if err := o.p.AddOffsetsToTxnWithGroupMetadata(offsets, group); err != nil {
			return fmt.Errorf("adding offsets: %w", err)
		}
	}
	if err := o.p.CommitTxn(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Close commits what is queued, then closes the producer.
func (o *txnOutput) Close() error {
	close(o.in)
	<-o.done
	return errors.Join(o.fatal(), o.p.Close())
}

// partials tracks, per input partition, whether the latest record of a
// transaction being built is a packed input record's event other than its
// last (Source.Partial). The distributor sends a packed record's events one
// after the other, so a transaction is extended until they are all in it
// rather than committed with part of them.
type partials struct {
	open map[topicPartition]bool
	n    int
}

type topicPartition struct {
	topic     string
	partition int32
}

func (p *partials) note(r *Record) {
	s := r.Source
	if s == nil || (!s.Partial && p.n == 0) {
		return
	}
	if p.open == nil {
		p.open = map[topicPartition]bool{}
	}
	tp := topicPartition{s.Topic, s.Partition}
	if was := p.open[tp]; was != s.Partial {
		p.open[tp] = s.Partial
		if s.Partial {
			p.n++
		} else {
			p.n--
		}
	}
}
