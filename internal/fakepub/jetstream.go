package fakepub

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/klauspost/compress/zstd"
)

// Jetstream is a fake Jetstream instance: GET /subscribe upgrades to a
// WebSocket that sends one JSON text message per event, as Jetstream does
// (kind commit, time_us in microseconds). Query parameters honoured:
// wantedCollections (repeated; a trailing ".*" is a prefix),
// wantedDids (repeated), cursor (replay from the first event whose time_us
// is at least it, or from the oldest event of the replay window if it is
// older; none, or one in the future, starts at the live stream) and
// maxMessageSizeBytes (larger events are skipped) and compress=true (each
// event a binary message, one zstd frame compressed with Dictionary, as
// Jetstream compresses with the dictionary it publishes).
// Event i is a create of app.bsky.feed.post, or of app.bsky.feed.like
// when i%4 == 3, by one of 50 DIDs.
type Jetstream struct {
	*server
	base int64 // time_us of event 0

	dictOnce sync.Once
	dict     []byte
	enc      *zstd.Encoder // compresses with dict; EncodeAll is safe for concurrent use
	dictErr  error
}

// NewJetstream starts a fake Jetstream; its clock starts now.
func NewJetstream(cfg Config) *Jetstream {
	j := &Jetstream{}
	j.server = newServer(cfg, func(s *server) http.Handler {
		j.base = s.start.UnixMicro()
		mux := http.NewServeMux()
		mux.HandleFunc("GET /subscribe", j.subscribe)
		return mux
	})
	return j
}

// URL is the subscribe endpoint, ws://host:port/subscribe.
func (j *Jetstream) URL() string { return "ws" + strings.TrimPrefix(j.srv.URL, "http") + "/subscribe" }

// TimeUS is the time_us of event i.
func (j *Jetstream) TimeUS(i int) int64 { return j.base + int64(float64(i)*1e6/j.cfg.Rate) }

// JetstreamCollection is the collection of event i.
func JetstreamCollection(i int) string {
	if i%4 == 3 {
		return "app.bsky.feed.like"
	}
	return "app.bsky.feed.post"
}

// JetstreamDID is the repository of event i.
func JetstreamDID(i int) string { return fmt.Sprintf("did:plc:fake%022d", i%50) }

// JetstreamRkey is the record key of event i.
func JetstreamRkey(i int) string { return fmt.Sprintf("3l%011s", strconv.FormatInt(int64(i), 32)) }

// JetstreamID is the AT URI of the record of event i, the id bend's
// jetstream format gives it.
func JetstreamID(i int) string {
	return "at://" + JetstreamDID(i) + "/" + JetstreamCollection(i) + "/" + JetstreamRkey(i)
}

// Event is the message of event i.
func (j *Jetstream) Event(i int) []byte {
	t := j.TimeUS(i)
	created := time.UnixMicro(t).UTC().Format("2006-01-02T15:04:05.000Z")
	var record string
	if JetstreamCollection(i) == "app.bsky.feed.like" {
		record = fmt.Sprintf(`{"$type":"app.bsky.feed.like","createdAt":%q,"subject":{"cid":"bafyreifake%d","uri":"at://%s/app.bsky.feed.post/%s"}}`,
			created, i, JetstreamDID(i+1), JetstreamRkey(i-1))
	} else {
		record = fmt.Sprintf(`{"$type":"app.bsky.feed.post","createdAt":%q,"langs":["en"],"text":"Post number %d about the weather today, see https://example.com/p/%d"`+
			`,"facets":[{"index":{"byteStart":47,"byteEnd":70},"features":[{"$type":"app.bsky.richtext.facet#link","uri":"https://example.com/p/%d"}]}]}`,
			created, i, i, i)
	}
	return fmt.Appendf(nil, `{"did":%q,"time_us":%d,"kind":"commit","commit":{"rev":"3l%011drev","operation":"create","collection":%q,"rkey":%q,"record":%s,"cid":"bafyreifake%d"}}`,
		JetstreamDID(i), t, i, JetstreamCollection(i), JetstreamRkey(i), record, i)
}

// wanted reports whether event i passes the subscription's filters.
func wanted(i int, collections, dids []string) bool {
	if len(dids) > 0 && !slices.Contains(dids, JetstreamDID(i)) {
		return false
	}
	if len(collections) == 0 {
		return true
	}
	c := JetstreamCollection(i)
	for _, w := range collections {
		if w == c || (strings.HasSuffix(w, ".*") && strings.HasPrefix(c, strings.TrimSuffix(w, "*"))) {
			return true
		}
	}
	return false
}

func (j *Jetstream) subscribe(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	compress := q.Get("compress") == "true"
	if compress {
		if _, err := j.Dictionary(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	maxSize := int64(0)
	if v := q.Get("maxMessageSizeBytes"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			badRequest(w, "maxMessageSizeBytes: %q", v)
			return
		}
		maxSize = n
	}
	now := time.Now()
	first := j.available(now) // live
	cursor := q.Get("cursor")
	if cursor != "" {
		c, err := strconv.ParseInt(cursor, 10, 64)
		if err != nil {
			badRequest(w, "cursor: %q", cursor)
			return
		}
		if c <= j.TimeUS(first) {
			// The first event at or after c, within the replay window.
			i := max(0, int((float64(c-j.base)*j.cfg.Rate)/1e6)-1)
			for i < first && j.TimeUS(i) < c {
				i++
			}
			first = max(i, j.oldest(now))
		}
	}
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer conn.CloseNow()
	id, ctx, end := j.addConn(conn.CloseRead(r.Context()), cursor) // the client sends nothing bend needs
	defer end()
	collections, dids := q["wantedCollections"], q["wantedDids"]
	_ = j.stream(ctx, first, func(i int) error {
		if !wanted(i, collections, dids) {
			return nil
		}
		ev := j.Event(i)
		if maxSize > 0 && int64(len(ev)) > maxSize {
			return nil
		}
		typ := websocket.MessageText
		if compress {
			typ, ev = websocket.MessageBinary, j.enc.EncodeAll(ev, nil)
		}
		if err := conn.Write(ctx, typ, ev); err != nil {
			return err
		}
		j.sent(id, i)
		return nil
	}, nil)
	conn.Close(websocket.StatusGoingAway, "")
}

// Dictionary is the zstd dictionary (zstd's dictionary format, id 1) the
// fake compresses with when a client asks for compress=true, built once
// from its own first events, as Jetstream's is trained on real ones.
// Safe for concurrent use.
func (j *Jetstream) Dictionary() ([]byte, error) {
	j.dictOnce.Do(func() {
		var samples [][]byte
		var history []byte
		for i := range 64 {
			ev := j.Event(i)
			samples = append(samples, ev)
			if i < 16 {
				history = append(history, ev...)
			}
		}
		j.dict, j.dictErr = zstd.BuildDict(zstd.BuildDictOptions{ID: 1, Contents: samples, History: history, Offsets: [3]int{1, 4, 8}})
		if j.dictErr != nil {
			return
		}
		j.enc, j.dictErr = zstd.NewWriter(nil, zstd.WithEncoderDict(j.dict), zstd.WithEncoderConcurrency(1))
	})
	return j.dict, j.dictErr
}
