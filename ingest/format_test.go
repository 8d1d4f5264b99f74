package ingest

import (
	"net/http"
	"testing"

	"github.com/bendstream/bend/internal/activity"
	"github.com/bendstream/bend/internal/kafkatest"
)

// TestHTTPFormat posts events of a publisher's format to the HTTP
// receiver: activities are keyed by their mapped id and carry bend-format
// and bend-fields, a Reddit Listing is split into its things, non-activity
// events are dropped and counted, and an event without an id is
// dead-lettered with the paths tried.
func TestHTTPFormat(t *testing.T) {
	cfg := testConfig()
	cfg.HTTP.Enabled = true
	cfg.HTTP.Format = activity.PresetReddit
	cfg.HTTP.NonActivity = activity.NonActivityDrop
	h := start(t, cfg, kafkatest.Brokers(t))

	body := `{"kind":"t3","data":{"name":"t3_a","title":"A post","selftext":"its text"}}` + "\n" +
		`{"kind":"Listing","data":{"children":[{"kind":"t1","data":{"name":"t1_b","body":"a comment"}},{"kind":"t1","data":{"name":"t1_c","body":"another"}}]}}` + "\n" +
		`{"kind":"more","data":{"name":"t1__","children":["x"]}}` + "\n" +
		`{"kind":"t3","data":{"title":"no name"}}` + "\n"
	r := post(t, h, "", []byte(body), false)
	if r.status != http.StatusBadRequest || r.body.Accepted != 3 || r.body.DeadLettered != 1 {
		t.Fatalf("POST: %d %s, want 400 accepting 3 (one dropped), dead-lettering 1", r.status, r.raw)
	}
	got := map[string]bool{}
	for _, m := range readTopic(t, h.brokers, h.topic) {
		if header(m, activity.HeaderFormat) != activity.PresetReddit || header(m, activity.HeaderFields) == "" {
			t.Errorf("record %q: headers %v, want bend-format reddit and bend-fields", m.Value, m.Headers)
		}
		got[string(m.Key)] = true
	}
	if len(got) != 3 || !got["t3_a"] || !got["t1_b"] || !got["t1_c"] {
		t.Errorf("keys %v, want t3_a, t1_b, t1_c", got)
	}
	dead := readTopic(t, h.brokers, h.dlq)
	if len(dead) != 1 || header(dead[0], HeaderDLQReason) != `missing or empty "id" (name or id)` {
		t.Errorf("dead letters %v, want one, missing id", dead)
	}
	if n := h.counter("ingest.http.non_activity_dropped"); n != 1 {
		t.Errorf("ingest.http.non_activity_dropped = %d, want 1", n)
	}
}
