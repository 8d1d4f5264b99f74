package fakepub

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/klauspost/compress/zstd"
)

// TestJetstreamReplayAndFilter: a cursor replays from the event at it, a
// cursor older than the window from the window's oldest, and only wanted
// collections are sent.
func TestJetstreamReplayAndFilter(t *testing.T) {
	j := NewJetstream(Config{Events: 400, Rate: 2000, Window: 100})
	defer j.Close()
	for !j.Done() {
		time.Sleep(10 * time.Millisecond)
	}
	for _, tc := range []struct {
		name        string
		cursor      int64
		first, want int // first event sent, events sent (posts only)
	}{
		{"within the window", j.TimeUS(350), 350, 37},
		{"older than the window", j.TimeUS(10), 300, 75},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			url := j.URL() + "?wantedCollections=app.bsky.feed.post&cursor=" + strconv.FormatInt(tc.cursor, 10)
			c, _, err := websocket.Dial(ctx, url, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			prev := int64(0)
			for n := range tc.want {
				_, msg, err := c.Read(ctx)
				if err != nil {
					t.Fatalf("after %d events: %v", n, err)
				}
				var ev struct {
					TimeUS int64 `json:"time_us"`
					Kind   string
					Commit struct{ Collection string }
				}
				if err := json.Unmarshal(msg, &ev); err != nil {
					t.Fatal(err)
				}
				if ev.Kind != "commit" || ev.Commit.Collection != "app.bsky.feed.post" || ev.TimeUS <= prev {
					t.Fatalf("event %d: %s", n, msg)
				}
				if n == 0 && ev.TimeUS != j.TimeUS(tc.first) {
					t.Fatalf("first event at %d, want %d (event %d)", ev.TimeUS, j.TimeUS(tc.first), tc.first)
				}
				prev = ev.TimeUS
			}
			rctx, rcancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer rcancel()
			if _, msg, err := c.Read(rctx); err == nil {
				t.Fatalf("an event beyond the stream's end: %s", msg)
			}
		})
	}
}

// TestSSELastEventID: the stream resumes after the id sent, and its
// framing is a real event stream.
func TestSSELastEventID(t *testing.T) {
	s := NewSSE(Config{Events: 300, Rate: 3000, Window: 300}, "wikimedia")
	defer s.Close()
	for !s.Done() {
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL(), nil)
	req.Header.Set("Last-Event-ID", s.ID(199))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("Content-Type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	next, data := 200, ""
	for next < 300 && sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			if line[4:] != s.ID(next) {
				t.Fatalf("id %s, want %s", line[4:], s.ID(next))
			}
		case strings.HasPrefix(line, "data: "):
			data += line[6:] + "\n"
		case line == "" && data != "":
			var ev struct{ Meta struct{ ID string } }
			if err := json.Unmarshal([]byte(data), &ev); err != nil || ev.Meta.ID != SSEID(next) {
				t.Fatalf("event %d: %v, data %q", next, err, data)
			}
			next, data = next+1, ""
		}
	}
	if next != 300 {
		t.Fatalf("read up to event %d of 300: %v", next, sc.Err())
	}
}

// TestJetstreamCompress: with compress=true every event is a binary
// message, one zstd frame that decodes, with Dictionary, to the event.
func TestJetstreamCompress(t *testing.T) {
	j := NewJetstream(Config{Events: 50, Rate: 5000, Window: 50})
	defer j.Close()
	dict, err := j.Dictionary()
	if err != nil {
		t.Fatal(err)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderDicts(dict))
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, j.URL()+"?compress=true&cursor="+strconv.FormatInt(j.TimeUS(0), 10), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	for i := range 50 {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		got, err := dec.DecodeAll(msg, nil)
		if typ != websocket.MessageBinary || err != nil || string(got) != string(j.Event(i)) {
			t.Fatalf("event %d: type %v, %v, decoded %.80q, want %.80q", i, typ, err, got, j.Event(i))
		}
	}
}
