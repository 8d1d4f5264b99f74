package sink

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metrics "github.com/rcrowley/go-metrics"
)

// webhookServer counts ids it accepted; while down it answers 503.
type webhookServer struct {
	mu       sync.Mutex
	down     bool
	ids      map[string]int
	refused  int
	badToken int
}

func (s *webhookServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer s3cret" {
		s.mu.Lock()
		s.badToken++
		s.mu.Unlock()
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	s.mu.Lock()
	down := s.down
	if down {
		s.refused++
	}
	s.mu.Unlock()
	if down {
		w.Header().Set("Retry-After", "0")
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	var got []string
	sc := bufio.NewScanner(r.Body)
	for sc.Scan() {
		var ev struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			http.Error(w, "bad line", http.StatusBadRequest)
			return
		}
		got = append(got, ev.ID)
	}
	s.mu.Lock()
	for _, id := range got {
		s.ids[id]++
	}
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (s *webhookServer) setDown(d bool) {
	s.mu.Lock()
	s.down = d
	s.mu.Unlock()
}

// TestWebhookOutage: while the endpoint answers 503, nothing is acked and
// Send blocks once a batch is queued (intake stops); after it recovers,
// every record arrives and is acked once.
func TestWebhookOutage(t *testing.T) {
	srv := &webhookServer{down: true, ids: map[string]int{}}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	cfg := DefaultWebhookConfig()
	cfg.URL, cfg.Token = ts.URL, "s3cret"
	cfg.BatchRecords, cfg.Linger, cfg.RetryBackoff = 50, 5*time.Millisecond, 5*time.Millisecond
	o, err := newWebhookOutput(cfg, quietLog(), metrics.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	var acked, nacked, sent atomic.Int64
	go func() {
		for i := range n {
			r := &Record{Value: fmt.Appendf(nil, `{"id":"%d"}`, i), Ack: func(err error) {
				if err != nil {
					nacked.Add(1)
				} else {
					acked.Add(1)
				}
			}}
			r.pending.Store(1)
			if err := o.Send(context.Background(), r); err != nil {
				t.Errorf("Send: %v", err)
				return
			}
			sent.Add(1)
		}
	}()
	time.Sleep(300 * time.Millisecond)
	if s := sent.Load(); s >= n {
		t.Fatalf("all %d records accepted while the endpoint was down; want Send to block", s)
	}
	if a := acked.Load() + nacked.Load(); a != 0 {
		t.Fatalf("%d records acknowledged during the outage, want 0", a)
	}
	srv.setDown(false)
	deadline := time.Now().Add(30 * time.Second)
	for acked.Load() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if acked.Load() != n || nacked.Load() != 0 {
		t.Fatalf("acked %d, nacked %d; want %d, 0", acked.Load(), nacked.Load(), n)
	}
	for i := range n {
		if srv.ids[fmt.Sprint(i)] == 0 {
			t.Fatalf("id %d never reached the endpoint", i)
		}
	}
	if srv.refused == 0 || srv.badToken != 0 {
		t.Fatalf("refused %d, bad tokens %d: the outage was not exercised or auth failed", srv.refused, srv.badToken)
	}
}
