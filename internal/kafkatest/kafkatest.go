// Package kafkatest gives bend's tests a Kafka broker: the real cluster named
// by BEND_TEST_BROKERS when it is set, otherwise one embedded broker per test
// binary, started on first use. Tests create their own uniquely named topics
// and groups, so they can share either broker.
package kafkatest

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/localbroker"
)

// EnvBrokers names the environment variable holding a real cluster's
// bootstrap addresses, comma separated.
const EnvBrokers = "BEND_TEST_BROKERS"

var (
	once     sync.Once
	embedded *localbroker.Broker
	startErr error
	seq      atomic.Int64
)

// Real reports whether tests run against a real cluster (BEND_TEST_BROKERS).
func Real() bool { return os.Getenv(EnvBrokers) != "" }

// RequireReal skips t, saying why, unless a real cluster is configured.
// Use it for behaviour the embedded broker does not have (throttling,
// broker restarts, TLS/SASL listeners).
func RequireReal(t testing.TB, why string) {
	t.Helper()
	if !Real() {
		t.Skipf("needs a real Apache Kafka broker (%s); set %s=host:port (scripts/kafka start)", why, EnvBrokers)
	}
}

// Brokers returns the bootstrap addresses tests should use.
func Brokers(t testing.TB) []string {
	t.Helper()
	if v := os.Getenv(EnvBrokers); v != "" {
		return strings.Split(v, ",")
	}
	once.Do(func() {
		embedded, startErr = localbroker.Start(localbroker.Config{Partitions: 4})
	})
	if startErr != nil {
		t.Fatalf("starting embedded broker: %v", startErr)
	}
	return embedded.Addrs()
}

// Name returns a name unique to this test run, for topics and groups.
func Name(t testing.TB, kind string) string {
	t.Helper()
	// Kafka topic names allow only ASCII alphanumerics, '.', '_' and '-'.
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '_'
	}, t.Name())
	if len(clean) > 60 {
		clean = clean[:60]
	}
	return fmt.Sprintf("bendtest.%s.%s.%d.%d", kind, clean, time.Now().UnixNano()%1e9, seq.Add(1))
}

// Config returns a sarama config suitable for tests against Brokers.
func Config() *sarama.Config {
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_6_0_0
	sc.ClientID = "bendtest"
	return sc
}

// CreateTopic creates a topic with the given partition count and returns its name.
func CreateTopic(t testing.TB, brokers []string, partitions int32) string {
	t.Helper()
	name := Name(t, "topic")
	admin, err := sarama.NewClusterAdmin(brokers, Config())
	if err != nil {
		t.Fatalf("admin client: %v", err)
	}
	defer admin.Close()
	if err := admin.CreateTopic(name, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}, false); err != nil {
		t.Fatalf("creating topic %s: %v", name, err)
	}
	return name
}

// ReadAll consumes every partition of topic from the oldest offset until
// want records were read or timeout passed, and returns the values.
func ReadAll(t testing.TB, brokers []string, topic string, want int, timeout time.Duration) [][]byte {
	t.Helper()
	return read(t, brokers, Config(), topic, want, timeout)
}

// ReadCommitted is ReadAll with read_committed isolation: records of open or
// aborted transactions are not returned.
func ReadCommitted(t testing.TB, brokers []string, topic string, want int, timeout time.Duration) [][]byte {
	t.Helper()
	sc := Config()
	sc.Consumer.IsolationLevel = sarama.ReadCommitted
	return read(t, brokers, sc, topic, want, timeout)
}

func read(t testing.TB, brokers []string, sc *sarama.Config, topic string, want int, timeout time.Duration) [][]byte {
	t.Helper()
	c, err := sarama.NewConsumer(brokers, sc)
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	defer c.Close()
	parts, err := c.Partitions(topic)
	if err != nil {
		t.Fatalf("partitions of %s: %v", topic, err)
	}
	out := make(chan []byte, 1024)
	done := make(chan struct{})
	defer close(done)
	for _, p := range parts {
		pc, err := c.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatalf("consume %s/%d: %v", topic, p, err)
		}
		defer pc.AsyncClose()
		go func() {
			for m := range pc.Messages() {
				select {
				case out <- m.Value:
				case <-done:
					return
				}
			}
		}()
	}
	var vals [][]byte
	deadline := time.After(timeout)
	for len(vals) < want {
		select {
		case v := <-out:
			vals = append(vals, v)
		case <-deadline:
			return vals
		}
	}
	return vals
}

// ReadToEnd returns every record of topic, a topic written without
// transactions, up to the high-water marks it has when called, partition
// by partition. It fails the test if a partition does not deliver them
// within 60s.
func ReadToEnd(t testing.TB, brokers []string, topic string) []*sarama.ConsumerMessage {
	t.Helper()
	client, err := sarama.NewClient(brokers, Config())
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	defer client.Close()
	c, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	defer c.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatalf("partitions of %s: %v", topic, err)
	}
	var out []*sarama.ConsumerMessage
	for _, p := range parts {
		hwm, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatalf("high-water mark of %s/%d: %v", topic, p, err)
		}
		if hwm == 0 {
			continue
		}
		pc, err := c.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatalf("consume %s/%d: %v", topic, p, err)
		}
		timeout := time.After(60 * time.Second)
	read:
		for {
			select {
			case m := <-pc.Messages():
				out = append(out, m)
				if m.Offset >= hwm-1 {
					break read
				}
			case <-timeout:
				t.Fatalf("reading %s/%d: timed out before offset %d", topic, p, hwm-1)
			}
		}
		pc.Close()
	}
	return out
}
