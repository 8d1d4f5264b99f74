// Package benchkit holds what bend's load harness (bendbench) and fault
// suite (bendfault) share: the Kafka client settings of their own producers
// and readers, reading an emitted event's id, a process's RSS, free ports.
package benchkit

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
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

// FreeAddr returns a 127.0.0.1 address with a port free at the time of the
// call.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// RSSKB is a process's resident set in KiB (VmRSS in /proc/PID/status), or
// 0 when it cannot be read.
func RSSKB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// Fields extracts, without a full JSON decode, the top-level "id" of an
// event bend emitted (bend's synthetic events carry it first, so it must
// open the object) and its "created_at".
func Fields(v []byte) (id, created string) {
	upToQuote := func(rest []byte) string {
		if j := bytes.IndexByte(rest, '"'); j >= 0 {
			return string(rest[:j])
		}
		return ""
	}
	if rest, ok := bytes.CutPrefix(v, []byte(`{"id":"`)); ok {
		id = upToQuote(rest)
	}
	if _, rest, ok := bytes.Cut(v, []byte(`"created_at":"`)); ok {
		created = upToQuote(rest)
	}
	return id, created
}
