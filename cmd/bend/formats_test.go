package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/enrich"
	"github.com/bendstream/bend/internal/activity"
	"github.com/bendstream/bend/internal/kafkatest"
)

// presetCase is what the pipeline must make of one preset's fixtures
// (internal/activity/testdata): the language detected in every activity
// (by id, "" where the text is too short to say), its number of links, and
// how many non-activity events the fixtures hold.
type presetCase struct {
	preset      string
	langs       map[string]string
	links       map[string]int
	nonActivity int
}

var presetCases = []presetCase{
	{activity.PresetBend, map[string]string{"act-1": "en", "act-2": "es"}, map[string]int{"act-1": 1}, 0},
	{activity.PresetTwitterV1, map[string]string{"1050118621198921728": "en", "850007368138018817": "en", "1697973285712281601": "es", "1697974543567310849": "en"},
		map[string]int{"1050118621198921728": 1, "850007368138018817": 1, "1697973285712281601": 1, "1697974543567310849": 1}, 4},
	{activity.PresetTwitterV2, map[string]string{"1212092628029698048": "en", "1445880548472328192": "de", "1460323737035677698": "",
		"1500000000000000001": "en", "1500000000000000002": "es"},
		map[string]int{"1212092628029698048": 1, "1445880548472328192": 1, "1460323737035677698": 2}, 3},
	{activity.PresetActivityStreams, map[string]string{"tag:search.twitter.com,2005:418130988250570752": "en",
		"tag:search.twitter.com,2005:9007199254740993123": "es", "tag:search.twitter.com,2005:700000000000000001": "en"},
		map[string]int{"tag:search.twitter.com,2005:418130988250570752": 1, "tag:search.twitter.com,2005:9007199254740993123": 1,
			"tag:search.twitter.com,2005:700000000000000001": 1}, 2},
	{activity.PresetJetstream, map[string]string{"at://did:plc:eygmaihciaxprqvxpfvl6flk/app.bsky.feed.post/3l3qo2vuowo2b": "en",
		"at://did:plc:ufbl4k27gp6kzas5glhz7fim/app.bsky.feed.post/3l3qo2vuowo2c": "fr", "at://did:plc:ufbl4k27gp6kzas5glhz7fim/app.bsky.actor.profile/self": "und"},
		map[string]int{"at://did:plc:eygmaihciaxprqvxpfvl6flk/app.bsky.feed.post/3l3qo2vuowo2b": 1, "at://did:plc:ufbl4k27gp6kzas5glhz7fim/app.bsky.feed.post/3l3qo2vuowo2c": 1}, 3},
	{activity.PresetWikimedia, map[string]string{"3f1e3d0a-5b4c-4d2e-9f8a-1b2c3d4e5f60": "en", "6c1b7a3e-2f4d-4a8b-b0c1-d2e3f4a5b6c7": "fr", "0a0b0c0d-1111-4222-8333-444455556666": ""},
		map[string]int{"3f1e3d0a-5b4c-4d2e-9f8a-1b2c3d4e5f60": 1, "6c1b7a3e-2f4d-4a8b-b0c1-d2e3f4a5b6c7": 1, "0a0b0c0d-1111-4222-8333-444455556666": 1}, 1},
	{activity.PresetMastodon, map[string]string{"103270115826048975": "en", "109876543210987654": "de", "110000000000000001": "fr", "110000000000000002": "en"},
		map[string]int{"103270115826048975": 1, "109876543210987654": 1}, 2},
	// The Listing is split into its one child, t3_x.
	{activity.PresetReddit, map[string]string{"t3_1abcde": "en", "t3_1fghij": "fr", "t1_kq1w2e3": "en", "t1_bare1": "en", "t3_x": ""},
		map[string]int{"t3_1fghij": 1}, 1},
}

// message is a record read back with its headers.
type message struct {
	value   []byte
	headers map[string]string
}

func readMessages(t *testing.T, brokers []string, topic string, want int, timeout time.Duration) []message {
	t.Helper()
	c, err := sarama.NewConsumer(brokers, kafkatest.Config())
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	defer c.Close()
	parts, err := c.Partitions(topic)
	if err != nil {
		t.Fatalf("partitions of %s: %v", topic, err)
	}
	out := make(chan message, 64)
	done := make(chan struct{})
	defer close(done)
	for _, p := range parts {
		pc, err := c.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatalf("consume %s/%d: %v", topic, p, err)
		}
		defer pc.AsyncClose()
		go func() {
			for m := range pc.Messages() {
				h := map[string]string{}
				for _, rh := range m.Headers {
					h[string(rh.Key)] = string(rh.Value)
				}
				select {
				case out <- message{m.Value, h}:
				case <-done:
					return
				}
			}
		}()
	}
	var got []message
	deadline := time.After(timeout)
	for len(got) < want {
		select {
		case m := <-out:
			got = append(got, m)
		case <-deadline:
			return got
		}
	}
	// Anything beyond want would be a duplicate: give it a moment to show.
	select {
	case m := <-out:
		got = append(got, m)
	case <-time.After(500 * time.Millisecond):
	}
	return got
}

// TestPresetsEndToEnd replays each preset's fixtures through the files
// source, Kafka, the distributor with the lang, urls and stats enrichers,
// and the Kafka sink. Every activity must be emitted once with its exact
// id, its language detected from its real text and its real links given to
// urls; every non-activity event must be passed on untouched with its
// bend-kind header (or go to its own topic, or be dropped, as configured);
// an invalid event must be dead-lettered with its reason.
func TestPresetsEndToEnd(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	// Links point at a local server: the fixtures' hosts are rewritten.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer srv.Close()
	links := strings.NewReplacer("https://", srv.URL+"/s/", "http://", srv.URL+"/p/")
	type variant struct {
		presetCase
		policy string
	}
	var cases []variant
	for _, pc := range presetCases {
		cases = append(cases, variant{pc, activity.NonActivityPass})
	}
	cases = append(cases, variant{presetCases[1], activity.NonActivityTopic}, variant{presetCases[6], activity.NonActivityDrop})
	for _, tc := range cases {
		t.Run(tc.preset+"/"+tc.policy, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("..", "..", "internal", "activity", "testdata", tc.preset+".ndjson"))
			if err != nil {
				t.Fatal(err)
			}
			input := links.Replace(string(raw)) + `{"unrelated":true}` + "\n"
			path := filepath.Join(t.TempDir(), "in.ndjson")
			if err := os.WriteFile(path, []byte(input), 0o644); err != nil {
				t.Fatal(err)
			}
			inputLines := map[string]bool{}
			sc := bufio.NewScanner(strings.NewReader(input))
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				inputLines[sc.Text()] = true
			}

			cfg := testConfig(t, brokers, 0)
			cfg.Ingest.Synthetic.Enabled = false
			cfg.Ingest.Files.Paths = []string{path}
			cfg.Ingest.Files.Format = tc.preset
			cfg.Ingest.Files.NonActivity = tc.policy
			if tc.policy == activity.NonActivityTopic {
				cfg.Ingest.Files.NonActivityTopic = kafkatest.Name(t, "nonact")
			}
			cfg.Sink.File.Path = ""
			cfg.Enrich.Enrichers = []enrich.Spec{
				{Name: "lang", Type: "lang", Timeout: 5 * time.Second, MaxAttempts: 1, Lang: enrich.LangOptions{Languages: []string{"en", "es", "fr", "de"}}},
				{Name: "urls", Type: "urls", Timeout: 5 * time.Second, MaxAttempts: 1, URLs: enrich.URLOptions{AllowPrivate: true}},
				{Name: "stats", Type: "stats", Timeout: time.Second, MaxAttempts: 1},
			}
			cfg.Distributor.Delay = 10 * time.Second // early release: out as soon as enriched
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- run(ctx, cfg, testLogger(t), io.Discard) }()
			defer func() { cancel(); waitRun(t, done) }()

			f, err := activity.Preset(tc.preset)
			if err != nil {
				t.Fatal(err)
			}
			wantOut := len(tc.langs)
			if tc.policy == activity.NonActivityPass {
				wantOut += tc.nonActivity
			}
			out := readMessages(t, brokers, cfg.Kafka.Topics.Output, wantOut, 60*time.Second)
			seen := map[string]int{}
			kinds := 0
			for _, m := range out {
				if kind := m.headers[activity.HeaderKind]; kind != "" {
					kinds++
					if !inputLines[string(m.value)] {
						t.Errorf("non-activity %s record %q is not an input line, untouched", kind, m.value)
					}
					continue
				}
				var ev struct {
					Enrichments struct {
						Lang struct {
							Status string `json:"status"`
							Value  struct {
								Lang string `json:"lang"`
							} `json:"value"`
						} `json:"lang"`
						URLs struct {
							Status string `json:"status"`
							Value  struct {
								Links []struct {
									URL    string `json:"url"`
									Status int    `json:"status"`
								} `json:"links"`
							} `json:"value"`
						} `json:"urls"`
						Stats struct {
							Status string `json:"status"`
						} `json:"stats"`
					} `json:"enrichments"`
				}
				if err := json.Unmarshal(m.value, &ev); err != nil {
					t.Fatalf("output %q: %v", m.value, err)
				}
				fields, err := f.Map(m.value)
				if err != nil {
					t.Fatalf("output %q: %v", m.value, err)
				}
				id := fields.ID
				seen[id]++
				lang, ok := tc.langs[id]
				if !ok {
					t.Errorf("unexpected activity %q in the output", id)
					continue
				}
				if ev.Enrichments.Lang.Status != "ok" || (lang != "" && ev.Enrichments.Lang.Value.Lang != lang) {
					t.Errorf("%s: lang %+v, want %q", id, ev.Enrichments.Lang, lang)
				}
				if n := tc.links[id]; n > 0 {
					got := ev.Enrichments.URLs.Value.Links
					if ev.Enrichments.URLs.Status != "ok" || len(got) != n {
						t.Errorf("%s: urls %+v, want %d links", id, ev.Enrichments.URLs, n)
					}
					for _, l := range got {
						if !strings.HasPrefix(l.URL, srv.URL) || l.Status != 200 {
							t.Errorf("%s: link %+v, want one of the event's links, answered 200", id, l)
						}
					}
				}
				if ev.Enrichments.Stats.Status != "ok" {
					t.Errorf("%s: no stats", id)
				}
			}
			for id := range tc.langs {
				if seen[id] != 1 {
					t.Errorf("activity %q emitted %d times, want once", id, seen[id])
				}
			}
			switch tc.policy {
			case activity.NonActivityPass:
				if kinds != tc.nonActivity {
					t.Errorf("%d non-activity records in the output, want %d", kinds, tc.nonActivity)
				}
			case activity.NonActivityTopic:
				if kinds != 0 {
					t.Errorf("%d non-activity records in the output, want them in their topic", kinds)
				}
				side := readMessages(t, brokers, cfg.Ingest.Files.NonActivityTopic, tc.nonActivity, 30*time.Second)
				if len(side) != tc.nonActivity {
					t.Errorf("%d records in the non-activity topic, want %d", len(side), tc.nonActivity)
				}
				for _, m := range side {
					if m.headers[activity.HeaderKind] == "" || !inputLines[string(m.value)] {
						t.Errorf("non-activity topic record %q (headers %v): want an input line with bend-kind", m.value, m.headers)
					}
				}
			case activity.NonActivityDrop:
				if kinds != 0 {
					t.Errorf("%d non-activity records in the output, want them dropped", kinds)
				}
			}
			dlq := readMessages(t, brokers, cfg.Kafka.Topics.DeadLetter, 1, 30*time.Second)
			if len(dlq) != 1 || !bytes.Equal(dlq[0].value, []byte(`{"unrelated":true}`)) ||
				!strings.Contains(dlq[0].headers["bend-dlq-reason"], `missing or empty "id"`) {
				t.Errorf("dead letters %+v, want the invalid event with its reason", dlq)
			}
		})
	}
}
