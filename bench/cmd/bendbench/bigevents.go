package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bendstream/bend/bench/internal/benchkit"
)

// budgetLine is the distributor.memory_budget line of the generated config.
func budgetLine(sc scenario) string {
	if sc.MemoryBudget == 0 {
		return ""
	}
	return fmt.Sprintf("  memory_budget: %d\n", sc.MemoryBudget)
}

// bigEvent is an activity with id whose text pads it to size bytes. The
// padding is pseudo-random words, so it compresses about as real text does
// (a run of one letter would compress a thousandfold, and a fetch of 1 MiB
// of compressed batches would then hold a gigabyte of records).
func bigEvent(id string, size int) []byte {
	head := fmt.Sprintf(`{"id":%q,"created_at":%q,"text":"`, id, time.Now().UTC().Format(time.RFC3339Nano))
	tail := `","links":["https://t.example/1"]}`
	b := make([]byte, 0, size)
	b = append(b, head...)
	x := uint64(len(id))*0x9E3779B97F4A7C15 + uint64(time.Now().UnixNano())
	for len(b) < size-len(tail) {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		if x%7 == 0 {
			b = append(b, ' ')
		} else {
			b = append(b, byte('a'+x%26))
		}
	}
	return append(b, tail...)
}

// webhook is the sink of the stalled-sink scenarios: it holds every POST
// until release, then accepts it and counts the ids of its NDJSON lines.
type webhook struct {
	url     string
	release time.Time
	srv     *http.Server
	mu      sync.Mutex
	seen    []uint8
	n       int64
}

func startWebhook(want int64) *webhook {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	h := &webhook{url: "http://" + l.Addr().String() + "/events", seen: make([]uint8, want+1)}
	h.srv = &http.Server{Handler: http.HandlerFunc(h.serve)}
	go func() {
		if err := h.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Print(err)
		}
	}()
	return h
}

// hold makes POSTs wait until release.
func (h *webhook) hold(release time.Time) {
	h.mu.Lock()
	h.release = release
	h.mu.Unlock()
}

func (h *webhook) serve(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	release := h.release
	h.mu.Unlock()
	select {
	case <-time.After(time.Until(release)):
	case <-r.Context().Done():
		return
	}
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 0, 1<<20), 8<<20)
	var ids []int64
	for sc.Scan() {
		id, _ := benchkit.Fields(sc.Bytes())
		if num, err := strconv.ParseInt(strings.TrimPrefix(id, "act-"), 10, 64); err == nil {
			ids = append(ids, num)
		}
	}
	if err := sc.Err(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest) // bend retries the batch
		return
	}
	h.mu.Lock()
	for _, id := range ids {
		h.n++
		if id >= 1 && id < int64(len(h.seen)) && h.seen[id] < 255 {
			h.seen[id]++
		}
	}
	h.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// count returns the records received, the ids never received and the extra copies.
func (h *webhook) count() (n, lost, dup int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.seen[1:] {
		switch {
		case c == 0:
			lost++
		case c > 1:
			dup += int64(c - 1)
		}
	}
	return h.n, lost, dup
}

func (h *webhook) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = h.srv.Shutdown(ctx)
}
