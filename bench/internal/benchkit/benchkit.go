// Package benchkit holds what bend's load harness (bendbench) and fault
// suite (bendfault) share: the Kafka client settings of their own producers
// and readers.
package benchkit

import (
	"time"

	"github.com/IBM/sarama"
)

// Config is a sarama config for the tools' readers and admin calls.
func Config(clientID string) *sarama.Config {
	c := sarama.NewConfig()
	c.Version = sarama.V3_6_0_0
	c.ClientID = clientID
	return c
}

// ProducerConfig is the async producer the tools feed bend's input with,
// set like bend's ingest: idempotent, acks=all, lz4, 5 ms linger, 1 MiB
// batches, successes returned.
func ProducerConfig(clientID string) *sarama.Config {
	c := Config(clientID)
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Idempotent = true
	c.Net.MaxOpenRequests = 1
	c.Producer.Compression = sarama.CompressionLZ4
	c.Producer.Flush.Frequency = 5 * time.Millisecond
	c.Producer.Flush.Bytes = 1 << 20
	c.Producer.MaxMessageBytes = 1 << 20
	c.Producer.Return.Successes = true
	return c
}
