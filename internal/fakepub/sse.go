package fakepub

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// SSE is a fake event stream in the shape of Wikimedia EventStreams'
// recentchange: GET /v2/stream/recentchange answers text/event-stream,
// one "message" event per change, its data the recentchange JSON (every
// seventh split over two data: lines, which the standard joins with a
// newline), a comment line every 100 events, and retry: first. Each event
// has an id: with IDs "wikimedia", a JSON array holding the topic,
// partition and offset, as EventStreams sends; with IDs "seq", the event's
// number. Last-Event-ID (either form) replays from the event after it, or
// from the oldest of the replay window if it is older; without one the
// stream starts live.
type SSE struct {
	*server
	ids string
}

// NewSSE starts a fake event stream whose ids are "wikimedia" or "seq";
// its clock starts now.
func NewSSE(cfg Config, ids string) *SSE {
	s := &SSE{ids: ids}
	s.server = newServer(cfg, func(srv *server) http.Handler {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /v2/stream/recentchange", s.stream)
		return mux
	})
	return s
}

// URL is the stream's address.
func (s *SSE) URL() string { return s.srv.URL + "/v2/stream/recentchange" }

// SSEID is the meta.id of event i, the id bend's wikimedia_recentchange
// format gives it.
func SSEID(i int) string { return fmt.Sprintf("7f1c0e2a-0000-4000-8000-%012d", i) }

// ID is the SSE id of event i.
func (s *SSE) ID(i int) string {
	if s.ids == "seq" {
		return strconv.Itoa(i)
	}
	return fmt.Sprintf(`[{"topic":"eqiad.mediawiki.recentchange","partition":0,"offset":%d},{"topic":"codfw.mediawiki.recentchange","partition":0,"offset":-1}]`, i)
}

// parseID is the event number of an id of either form, or false.
func parseID(v string) (int, bool) {
	if n, err := strconv.Atoi(v); err == nil {
		return n, true
	}
	var parts []struct {
		Topic  string `json:"topic"`
		Offset *int   `json:"offset"`
	}
	if err := json.Unmarshal([]byte(v), &parts); err != nil {
		return 0, false
	}
	for _, p := range parts {
		if strings.HasPrefix(p.Topic, "eqiad.") && p.Offset != nil {
			return *p.Offset, true
		}
	}
	return 0, false
}

// Data is the data of event i.
func (s *SSE) Data(i int) string {
	t := s.at(i).UTC()
	return fmt.Sprintf(`{"$schema":"/mediawiki/recentchange/1.0.0","meta":{"uri":"https://en.wikipedia.org/wiki/Page_%d","request_id":"req-%d","id":%q,"dt":%q,"domain":"en.wikipedia.org","stream":"mediawiki.recentchange","topic":"eqiad.mediawiki.recentchange","partition":0,"offset":%d},`+
		`"id":%d,"type":"edit","namespace":0,"title":"Page %d","comment":"Fixed the spelling of the second paragraph and added a reference","timestamp":%d,"user":"Editor%d","bot":false,`+
		`"minor":false,"length":{"old":1000,"new":1010},"revision":{"old":%d,"new":%d},"server_url":"https://en.wikipedia.org","server_name":"en.wikipedia.org","server_script_path":"/w","wiki":"enwiki","parsedcomment":"Fixed the spelling"}`,
		i, i, SSEID(i), t.Format(time.RFC3339), i, 1000000+i, i, t.Unix(), i%50, 2*i, 2*i+1)
}

func (s *SSE) stream(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	first := s.available(now)
	last := r.Header.Get("Last-Event-ID")
	if last != "" {
		n, ok := parseID(last)
		if !ok {
			badRequest(w, "Last-Event-ID: %q", last)
			return
		}
		if n+1 < first {
			first = max(n+1, s.oldest(now))
		}
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "no flushing", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	fmt.Fprint(bw, ": connected\nretry: 200\n\n")
	conn, ctx, end := s.addConn(r.Context(), last)
	defer end()
	_ = s.server.stream(ctx, first, func(i int) error {
		if i%100 == 0 {
			fmt.Fprint(bw, ":heartbeat\n")
		}
		d := s.Data(i)
		if i%7 == 0 {
			cut := strings.Index(d, `"id":`+strconv.Itoa(1000000+i))
			d = d[:cut] + "\ndata: " + d[cut:]
		}
		if _, err := fmt.Fprintf(bw, "event: message\nid: %s\ndata: %s\n\n", s.ID(i), d); err != nil {
			return err
		}
		s.sent(conn, i)
		return nil
	}, func() error {
		if err := bw.Flush(); err != nil {
			return err
		}
		fl.Flush()
		return nil
	})
}
