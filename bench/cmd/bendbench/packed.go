package main

import (
	"fmt"
	"log"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/bench/internal/benchkit"
	"github.com/bendstream/bend/internal/pack"
	"github.com/bendstream/bend/internal/synth"
)

// rawProduce measures raw sarama produce on brokers: the scenario's n
// events (seed 42, unpacked, one per record, ~300 B) to a fresh topic of 8
// partitions, with bend's producer settings. It adds the rate to
// s.RawProduceRates and sets s.RawProduceRate to their mean.
func rawProduce(s *summary, brokers, tag string, n int64) error {
	topic := "bench." + tag + ".raw"
	if err := createTopic(brokers, topic, 8); err != nil {
		return err
	}
	r, err := preload(brokers, topic, n, 0)
	if err != nil {
		return err
	}
	s.RawProduceRates = append(s.RawProduceRates, r)
	var sum float64
	for _, x := range s.RawProduceRates {
		sum += x
	}
	s.RawProduceRate = sum / float64(len(s.RawProduceRates))
	log.Printf("%s: raw sarama produce %d events at %.0f/s to %s", s.Scenario.Name, n, r, topic)
	return nil
}

// preloadPacked produces the n events preload would (seed 42, ids
// act-1..act-n), packed per events to a record: the events of one
// partition (by the hash of their key, over the topic's partitions) in
// NDJSON framing, keyed by the first event's key. It returns events/s.
func preloadPacked(brokers, topic string, n int64, per int) (float64, error) {
	c := benchkit.ProducerConfig("bendbench")
	client, err := sarama.NewClient([]string{brokers}, c)
	if err != nil {
		return 0, err
	}
	defer client.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		return 0, err
	}
	p, err := sarama.NewAsyncProducerFromClient(client)
	if err != nil {
		return 0, err
	}
	gc := synth.DefaultConfig()
	gc.Seed, gc.IDPrefix, gc.Limit = 42, "act-", n
	g := synth.NewGenerator(gc)
	closeProducer := drainProducer(p)
	type open struct {
		key   []byte
		value []byte
		n     int
	}
	hash := sarama.NewHashPartitioner(topic)
	packs := make([]open, len(parts))
	flush := func(o *open) {
		if o.n == 0 {
			return
		}
		p.Input() <- &sarama.ProducerMessage{Topic: topic, Key: sarama.ByteEncoder(o.key), Value: sarama.ByteEncoder(o.value), Headers: pack.Headers(nil, o.n)}
		*o = open{}
	}
	t0 := time.Now()
	for range n {
		v, id, _ := g.Append(nil)
		_ = id
		key := []byte(id)
		part, err := hash.Partition(&sarama.ProducerMessage{Key: sarama.ByteEncoder(key)}, int32(len(parts)))
		if err != nil {
			return 0, err
		}
		o := &packs[part]
		if o.n == 0 {
			o.key = key
			o.value = make([]byte, 0, per*(len(v)+1))
		}
		o.value = pack.Append(o.value, v)
		o.n++
		if o.n == per {
			flush(o)
		}
	}
	for i := range packs {
		flush(&packs[i])
	}
	if errs := closeProducer(); errs > 0 {
		return 0, fmt.Errorf("preload: %d produce errors", errs)
	}
	return float64(n) / time.Since(t0).Seconds(), nil
}
