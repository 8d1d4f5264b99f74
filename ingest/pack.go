package ingest

import (
	"context"
	"errors"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/activity"
	"github.com/bendstream/bend/internal/kafka"
	"github.com/bendstream/bend/internal/metricnames"
	"github.com/bendstream/bend/internal/pack"
	metrics "github.com/rcrowley/go-metrics"
)

// packer is ingest.batching: valid events for the input topic go through
// it, and it packs up to ingest.batching.max_events of one partition into
// one record (internal/pack), headed by the events' shared bend-format.
// Each event still counts in ingest's window, and its source hears of it
// (done) only once Kafka acknowledged the record holding it. Events with
// any other header (a non-activity kind, a source's cursor) travel alone,
// in order with their partition's packs. A packed event drops its
// bend-fields header: the distributor maps each event itself, by the
// format bend-format names.
type packer struct {
	p      *pack.Packer
	client sarama.Client
	stop   context.CancelFunc // ends Run's context
	done   chan struct{}
}

func (in *Ingest) newPacker() (*packer, error) {
	client, err := sarama.NewClient(in.brokers, in.sc)
	if err != nil {
		return nil, err
	}
	k := &packer{client: client, done: make(chan struct{})}
	send := func(ctx context.Context, m *sarama.ProducerMessage, done func(error)) error {
		return in.producer.Send(ctx, m, done)
	}
	partitions := func(topic string) (int32, error) {
		ps, err := client.Partitions(topic)
		return int32(len(ps)), err
	}
	k.p = pack.NewPacker(in.cfg.Batching, in.topic, send, classifyIngest, partitions,
		metrics.GetOrRegisterCounter(metricnames.IngestPackedRecords, in.reg),
		metrics.GetOrRegisterCounter(metricnames.IngestPackedEvents, in.reg))
	return k, nil
}

// classifyIngest lets an event be packed if its only headers are
// bend-format and bend-fields; the pack shares bend-format.
func classifyIngest(m *sarama.ProducerMessage) (shared []sarama.RecordHeader, meta []byte, ok bool) {
	for i, h := range m.Headers {
		switch string(h.Key) {
		case activity.HeaderFormat:
			shared = m.Headers[i : i+1 : i+1]
		case activity.HeaderFields:
		default:
			return nil, nil, false
		}
	}
	return shared, nil, true
}

func (k *packer) start() {
	ctx, stop := context.WithCancel(context.Background())
	k.stop = stop
	go func() {
		defer close(k.done)
		_ = k.p.Run(ctx)
	}()
}

// send is kafka.Producer.Send through the packer: it never blocks (what
// it holds is bounded by ingest's window).
func (k *packer) send(_ context.Context, m *sarama.ProducerMessage, done kafka.Done) error {
	return k.p.Add(m, done)
}

// close hands everything held to the producer, or gives up when ctx ends
// (the events left get an error), and closes the metadata client.
func (k *packer) close(ctx context.Context) {
	if err := k.p.Close(ctx); err != nil && !errors.Is(err, context.Canceled) {
		k.stop()
	}
	<-k.done
	k.stop()
	k.client.Close()
}
