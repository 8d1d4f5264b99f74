package ingest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bendstream/bend/internal/kafkatest"
)

// envKafkaScript names the environment variable that points at
// scripts/kafka, the harness that runs the broker of BEND_TEST_BROKERS.
const envKafkaScript = "BEND_KAFKA_SCRIPT"

// kafkaScript runs `$BEND_KAFKA_SCRIPT <cmd>` and fails the test if it fails.
func kafkaScript(t *testing.T, script, cmd string) {
	t.Helper()
	start := time.Now()
	out, err := exec.Command(script, cmd).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", script, cmd, err, out)
	}
	t.Logf("%s %s: %s", script, cmd, time.Since(start).Round(time.Millisecond))
}

// TestBrokerRestartLosesNoAcknowledgedEvent POSTs events from 4 clients
// while the real broker is SIGKILLed and restarted: every event answered
// 2xx must be in the topic afterwards. Clients resend a batch until it is
// accepted (503s and broken connections are expected meanwhile), so the
// topic may hold duplicates, but never lacks an acknowledged id.
func TestBrokerRestartLosesNoAcknowledgedEvent(t *testing.T) {
	kafkatest.RequireReal(t, "kills and restarts the broker")
	script := os.Getenv(envKafkaScript)
	if script == "" {
		t.Skipf("set %s to the scripts/kafka that started %s, so that the test may kill and resume the broker", envKafkaScript, kafkatest.EnvBrokers)
	}
	cfg := testConfig()
	cfg.HTTP.Enabled, cfg.HTTP.AckTimeout, cfg.HTTP.AdmitWait = true, 2*time.Minute, time.Second
	cfg.CloseTimeout = time.Minute
	h := start(t, cfg, kafkatest.Brokers(t))
	url := "http://" + h.in.Addr().String() + cfg.HTTP.Path

	const per = 100
	var (
		mu        sync.Mutex
		acked     = map[int]bool{} // batch numbers answered 2xx
		nextBatch atomic.Int64
		refused   atomic.Int64 // 503s and transport errors, all resent
		wg        sync.WaitGroup
	)
	ackedCount := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) * per }
	ctx, stopClients := context.WithCancel(context.Background())
	defer stopClients()
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				b := int(nextBatch.Add(1) - 1)
				body := ndjsonBody(b*per+1, b*per+per+1)
				for ctx.Err() == nil {
					req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
					resp, err := http.DefaultClient.Do(req)
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode == http.StatusOK {
							mu.Lock()
							acked[b] = true
							mu.Unlock()
							break
						}
					}
					refused.Add(1)
					time.Sleep(100 * time.Millisecond)
				}
			}
		})
	}

	eventually(t, time.Minute, "traffic before the kill", func() bool { return ackedCount() >= 5000 })
	before := ackedCount()
	kafkaScript(t, script, "kill")
	time.Sleep(3 * time.Second) // clients keep posting into the dead broker
	kafkaScript(t, script, "resume")
	eventually(t, 3*time.Minute, "traffic after the restart", func() bool { return ackedCount() >= before+5000 })
	stopClients()
	wg.Wait()
	if err := h.stop(t); err != nil {
		t.Logf("Run: %v (requests cut off by the stop)", err)
	}

	ids := countIDs(t, readTopic(t, h.brokers, h.topic))
	mu.Lock()
	defer mu.Unlock()
	missing, dups := 0, 0
	for b := range acked {
		for i := b*per + 1; i <= b*per+per; i++ {
			switch ids[fmt.Sprintf("act-%d", i)] {
			case 0:
				missing++
			case 1:
			default:
				dups++
			}
		}
	}
	t.Logf("%d events acknowledged (%d before the kill), %d requests refused and resent, %d acknowledged ids duplicated, %d distinct ids in the topic",
		len(acked)*per, before, refused.Load(), dups, len(ids))
	if missing > 0 {
		t.Fatalf("%d acknowledged events are missing from the topic", missing)
	}
}
