// Package fakepub runs local publishers that speak real firehose protocols,
// for tests and trials: a Bluesky Jetstream instance (WebSocket, cursor in
// time_us, wantedCollections/wantedDids filters, zstd compression with a
// dictionary of its own) and a Server-Sent Events
// stream in the shape of Wikimedia EventStreams (Last-Event-ID). Each
// publishes a fixed number of numbered events at a steady rate from the
// moment it starts, keeps a bounded replay window of the newest ones, and
// replays from a client's cursor within that window.
package fakepub

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"
)

// Config is what a fake publisher publishes.
type Config struct {
	// Events is how many events it publishes (numbered 0..Events-1).
	Events int
	// Rate is how many events per second become available.
	Rate float64
	// Window is how many of the newest available events it can replay.
	Window int
}

// clock says how many events are available at a time.
type clock struct {
	cfg   Config
	start time.Time
}

func (c clock) available(now time.Time) int {
	n := int(now.Sub(c.start).Seconds() * c.cfg.Rate)
	return min(max(n, 0), c.cfg.Events)
}

// oldest is the oldest event that can still be replayed.
func (c clock) oldest(now time.Time) int { return max(0, c.available(now)-c.cfg.Window) }

// at is when event i becomes available.
func (c clock) at(i int) time.Time {
	return c.start.Add(time.Duration(float64(i) / c.cfg.Rate * float64(time.Second)))
}

// server is what both fakes share: the HTTP server, the clock, and a log of
// connections.
type server struct {
	clock
	srv *httptest.Server

	mu      sync.Mutex
	conns   []Conn
	served  int
	closing chan struct{}
	once    sync.Once
	drops   map[int]context.CancelFunc // open connections, by index in conns
}

// Conn is one client connection: the cursor it asked for (as sent: empty
// for none) and the first event it was sent (-1 until one was).
type Conn struct {
	Cursor string
	First  int
}

func newServer(cfg Config, h func(s *server) http.Handler) *server {
	s := &server{clock: clock{cfg: cfg, start: time.Now()}, closing: make(chan struct{}), drops: map[int]context.CancelFunc{}}
	s.srv = httptest.NewServer(h(s))
	return s
}

// addConn logs a connection and returns its index, and the context of its
// stream, which Drop cancels; end must be called when it ends.
func (s *server) addConn(ctx context.Context, cursor string) (id int, sctx context.Context, end func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns = append(s.conns, Conn{Cursor: cursor, First: -1})
	id = len(s.conns) - 1
	sctx, cancel := context.WithCancel(ctx)
	s.drops[id] = cancel
	return id, sctx, func() {
		cancel()
		s.mu.Lock()
		delete(s.drops, id)
		s.mu.Unlock()
	}
}

// Drop ends every open connection, as a network cut or a publisher restart
// would; the server goes on accepting new ones.
func (s *server) Drop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, cancel := range s.drops {
		cancel()
	}
}

func (s *server) sent(conn, i int) {
	s.mu.Lock()
	if s.conns[conn].First < 0 {
		s.conns[conn].First = i
	}
	s.served++
	s.mu.Unlock()
}

// Conns returns the connections so far.
func (s *server) Conns() []Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Conn(nil), s.conns...)
}

// Served is how many events were written to clients, repeats included.
func (s *server) Served() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.served
}

// Done reports whether every event has become available.
func (s *server) Done() bool { return s.available(time.Now()) == s.cfg.Events }

// Close ends every connection and stops the server.
func (s *server) Close() {
	s.once.Do(func() { close(s.closing) })
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// stream calls send for every event from first on, as each becomes
// available, until send fails, ctx ends or the server closes; after the
// last event it waits. It returns send's error or nil.
func (s *server) stream(ctx context.Context, first int, send func(i int) error, flush func() error) error {
	i := first
	for {
		n := s.available(time.Now())
		for ; i < n; i++ {
			if err := send(i); err != nil {
				return err
			}
		}
		if flush != nil {
			if err := flush(); err != nil {
				return err
			}
		}
		wait := 2 * time.Millisecond
		if i >= s.cfg.Events {
			wait = time.Hour
		} else if d := time.Until(s.at(i)); d > wait {
			wait = d
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-s.closing:
			t.Stop()
			return nil
		}
	}
}

func badRequest(w http.ResponseWriter, format string, args ...any) {
	http.Error(w, fmt.Sprintf(format, args...), http.StatusBadRequest)
}
