package kafka

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestProducerResendsUntilAccepted makes the broker refuse every produce
// request for a while: no record may be acknowledged, none may fail, and
// every one must be acknowledged soon after the broker recovers (re-sends
// wait per record, so one outage's backlog goes out together).
func TestProducerResendsUntilAccepted(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(2))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const topic = "refused"
	if err := c.CreateTopic(topic, 2, nil); err != nil {
		t.Fatal(err)
	}
	refuse := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Err: kerr.NotEnoughReplicas, Count: -1})

	sc := sarama.NewConfig()
	sc.Version = sarama.V3_6_0_0
	cfg := DefaultProducerConfig()
	cfg.RetryBackoff = 20 * time.Millisecond
	log := logrus.New()
	log.SetOutput(io.Discard)
	reg := metrics.NewRegistry()
	p, err := NewProducer(c.ListenAddrs(), sc, cfg, "test", log, reg)
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	var ok, failed atomic.Int64
	for i := range n {
		m := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprint(i)), Value: sarama.StringEncoder("v")}
		if err := p.Send(context.Background(), m, func(err error) {
			if err != nil {
				failed.Add(1)
			} else {
				ok.Add(1)
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for reg.Get("test.retries").(metrics.Counter).Count() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := reg.Get("test.retries").(metrics.Counter).Count(); got == 0 {
		t.Fatal("no record came back for a re-send; the outage was not exercised")
	}
	if ok.Load()+failed.Load() != 0 {
		t.Fatalf("%d acked, %d failed while the broker refused every produce", ok.Load(), failed.Load())
	}
	refuse.Remove()
	recovered := time.Now()
	for ok.Load() < n && time.Since(recovered) < 20*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	if ok.Load() != n || failed.Load() != 0 {
		t.Fatalf("after recovery: %d acked, %d failed; want %d, 0", ok.Load(), failed.Load(), n)
	}
	t.Logf("all %d records acknowledged %s after the broker recovered", n, time.Since(recovered).Round(time.Millisecond))
	if err := p.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
