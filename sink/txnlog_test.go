package sink

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/IBM/sarama"
	metrics "github.com/rcrowley/go-metrics"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

// TestTxnFailureLoggedOncePerTransaction feeds the producer errors of a
// transaction fenced by a rebalance (thousands of records, as sarama
// reports them) and checks that they make one log line with the counts,
// not one per record, and that the metric counts every record.
func TestTxnFailureLoggedOncePerTransaction(t *testing.T) {
	for _, tc := range []struct {
		name    string
		records int
		failed  int
	}{
		{"rebalance fails every record", 7330, 7330},
		{"a few records fail", 100, 3},
		{"none reported", 10, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log, hook := logtest.NewNullLogger()
			reg := metrics.NewRegistry()
			o := &txnOutput{log: log, perrs: metrics.GetOrRegisterCounter("sink.kafka.txn_produce_errors", reg), topic: "out", dlqTopic: "dlq"}
			errs := make(chan *sarama.ProducerError, 64)
			drained := make(chan struct{})
			go func() { o.drainErrors(errs); close(drained) }()
			batch := make([]*Record, tc.records)
			for i := range batch {
				batch[i] = &Record{Value: fmt.Appendf(nil, `{"id":"%d"}`, i)}
			}
			for i := range tc.failed {
				topic := "out"
				if i%10 == 0 {
					topic = "dlq"
				}
				errs <- &sarama.ProducerError{Msg: &sarama.ProducerMessage{Topic: topic}, Err: sarama.ErrIllegalGeneration}
			}
			close(errs)
			<-drained
			o.failed(batch, 1, fmt.Errorf("commit: %w", sarama.ErrIllegalGeneration)).Warn("transaction fenced by a rebalance; its records will be redelivered")

			entries := hook.AllEntries()
			if len(entries) != 1 {
				t.Fatalf("%d log lines for one failed transaction of %d records, want 1", len(entries), tc.records)
			}
			e := entries[0]
			if e.Data["records"] != tc.records {
				t.Errorf("records = %v, want %d", e.Data["records"], tc.records)
			}
			if tc.failed > 0 {
				if e.Data["produce_errors"] != tc.failed || !strings.Contains(fmt.Sprint(e.Data["first_produce_error"]), "generation") {
					t.Errorf("fields %v, want produce_errors %d and the first error", e.Data, tc.failed)
				}
				topics := e.Data["topics"].(map[string]int)
				if topics["out"]+topics["dlq"] != tc.failed {
					t.Errorf("topics %v, want %d in all", topics, tc.failed)
				}
			} else if _, ok := e.Data["produce_errors"]; ok {
				t.Errorf("fields %v, want no produce_errors", e.Data)
			}
			if err, _ := e.Data["error"].(error); !errors.Is(err, sarama.ErrIllegalGeneration) {
				t.Errorf("error field %v, want the fencing error", e.Data["error"])
			}
			if got := o.perrs.Count(); got != int64(tc.failed) {
				t.Errorf("sink.kafka.txn_produce_errors = %d, want %d", got, tc.failed)
			}
			// The tally is reset for the next transaction.
			if n, _, _ := o.tally.take(); n != 0 {
				t.Errorf("tally after the log line = %d, want 0", n)
			}
		})
	}
}
