package sink

import (
	"context"
	"errors"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/kafka"
	"github.com/bendstream/bend/internal/metricnames"
	"github.com/bendstream/bend/internal/pack"
	metrics "github.com/rcrowley/go-metrics"
)

// packedOutput is the Kafka output with sink.kafka.batching: it packs up
// to sink.kafka.batching.max_events enriched events of one output
// partition into one record (internal/pack). A packed record names each
// event's input record in bend-batch-sources instead of the per-record
// provenance headers. Events with other headers (a passed-through
// non-activity event's bend-kind) are written alone, in order with their
// partition's packs. Every event is acknowledged when Kafka acknowledged
// the record holding it. Only consumers that read the batching headers
// should read its topic.
type packedOutput struct {
	p       *pack.Packer
	client  sarama.Client
	stop    context.CancelFunc
	done    chan struct{}
	timeout time.Duration
}

func newPackedOutput(cfg KafkaConfig, brokers []string, sc *sarama.Config, p *kafka.Producer, topic string, reg metrics.Registry) (*packedOutput, error) {
	client, err := sarama.NewClient(brokers, sc)
	if err != nil {
		return nil, err
	}
	send := func(ctx context.Context, m *sarama.ProducerMessage, done func(error)) error {
		return p.Send(ctx, m, done)
	}
	partitions := func(topic string) (int32, error) {
		ps, err := client.Partitions(topic)
		return int32(len(ps)), err
	}
	ctx, stop := context.WithCancel(context.Background())
	o := &packedOutput{client: client, stop: stop, done: make(chan struct{}), timeout: cfg.CloseTimeout,
		p: pack.NewPacker(cfg.Batching, topic, send, classifySink, partitions,
			metrics.GetOrRegisterCounter(metricnames.SinkPackedRecords, reg),
			metrics.GetOrRegisterCounter(metricnames.SinkPackedEvents, reg))}
	go func() {
		defer close(o.done)
		_ = o.p.Run(ctx)
	}()
	return o, nil
}

// classifySink packs a record whose only headers are its provenance; its
// entry in bend-batch-sources is TOPIC:PARTITION:OFFSET[:INDEX].
func classifySink(m *sarama.ProducerMessage) (shared []sarama.RecordHeader, meta []byte, ok bool) {
	var topic, part, off, idx []byte
	for _, h := range m.Headers {
		switch string(h.Key) {
		case "bend-source-topic":
			topic = h.Value
		case "bend-source-partition":
			part = h.Value
		case "bend-source-offset":
			off = h.Value
		case pack.HeaderIndex:
			idx = h.Value
		default:
			return nil, nil, false
		}
	}
	if topic != nil {
		meta = make([]byte, 0, len(topic)+len(part)+len(off)+len(idx)+3)
		meta = append(append(append(append(append(meta, topic...), ':'), part...), ':'), off...)
		if idx != nil {
			meta = append(append(meta, ':'), idx...)
		}
	}
	return nil, meta, true
}

func (o *packedOutput) Send(_ context.Context, r *Record) error {
	return o.p.Add(r.message(o.p.Topic()), r.done)
}

// Close hands every pack to the shared producer (which the Sink closes
// next), waiting up to sink.kafka.close_timeout.
func (o *packedOutput) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	err := o.p.Close(ctx)
	if err != nil {
		o.stop()
	}
	<-o.done
	o.stop()
	return errors.Join(err, o.client.Close())
}
