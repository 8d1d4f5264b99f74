package activity

import (
	"slices"
	"testing"
)

// TestDocumentedShapes maps events in the shapes the publishers document
// beyond the fixture files: a Twitter API v2 retweet with its original in
// includes.tweets (expansions=referenced_tweets.id), and Reddit things
// whose links are only in their rendered, entity-escaped HTML.
func TestDocumentedShapes(t *testing.T) {
	for _, tc := range []struct {
		name, preset, event string
		id, author, text    string
		links               []string
	}{
		{
			name: "v2 retweet: the original's full text and links from includes", preset: PresetTwitterV2,
			event: `{"data":{"id":"1600000000000000002","text":"RT @XDevelopers: Today we are launching a new way to build with the API, read all about the changes and what they mean for your…",` +
				`"author_id":"9007199254740995","referenced_tweets":[{"type":"retweeted","id":"1600000000000000001"}],` +
				`"entities":{"mentions":[{"start":3,"end":15,"username":"XDevelopers","id":"2244994945"}]}},` +
				`"includes":{"tweets":[{"id":"1600000000000000001","text":"Today we are launching a new way to build with the API, read all about the changes and what they mean for your apps here https://t.co/abc",` +
				`"author_id":"2244994945","entities":{"urls":[{"start":120,"end":143,"url":"https://t.co/abc","expanded_url":"https://developer.x.com/en/updates/changelog"}]}}],` +
				`"users":[{"id":"2244994945","name":"Developers","username":"XDevelopers"}]},"matching_rules":[{"id":"1","tag":"api"}]}`,
			id: "1600000000000000002", author: "9007199254740995",
			text:  "Today we are launching a new way to build with the API, read all about the changes and what they mean for your apps here https://t.co/abc",
			links: []string{"https://developer.x.com/en/updates/changelog"},
		},
		{
			name: "v2 retweet of a long post: the original's note_tweet", preset: PresetTwitterV2,
			event: `{"data":{"id":"1600000000000000004","text":"RT @a: short…","author_id":"5","referenced_tweets":[{"type":"retweeted","id":"1600000000000000003"}]},` +
				`"includes":{"tweets":[{"id":"1600000000000000003","text":"short…","note_tweet":{"text":"The whole of a long post, well over the old limit","entities":{"urls":[{"url":"https://t.co/n","expanded_url":"https://example.com/long"}]}}}]}}`,
			id: "1600000000000000004", author: "5", text: "The whole of a long post, well over the old limit", links: []string{"https://example.com/long"},
		},
		{
			name: "v2 retweet without the expansion keeps its own text", preset: PresetTwitterV2,
			event: `{"data":{"id":"1600000000000000006","text":"RT @a: the start of it","author_id":"5","referenced_tweets":[{"type":"retweeted","id":"1600000000000000005"}]}}`,
			id:    "1600000000000000006", author: "5", text: "RT @a: the start of it",
		},
		{
			name: "v2 quote: its own text", preset: PresetTwitterV2,
			event: `{"data":{"id":"1600000000000000008","text":"Worth reading","author_id":"6","referenced_tweets":[{"type":"quoted","id":"1600000000000000007"}]},` +
				`"includes":{"tweets":[{"id":"1600000000000000007","text":"The quoted post"}]}}`,
			id: "1600000000000000008", author: "6", text: "Worth reading",
		},
		{
			name: "reddit comment: links of body_html", preset: PresetReddit,
			event: `{"kind":"t1","data":{"id":"kq9z","name":"t1_kq9z","author":"someone","author_fullname":"t2_s1","link_id":"t3_1abcde","parent_id":"t3_1abcde",` +
				`"body":"See [the docs](https://www.example.com/docs) and u/other","body_html":"&lt;div class=\"md\"&gt;&lt;p&gt;See &lt;a href=\"https://www.example.com/docs\"&gt;the docs&lt;/a&gt; and &lt;a href=\"/u/other\"&gt;u/other&lt;/a&gt;&lt;/p&gt;\n&lt;/div&gt;",` +
				`"created_utc":1714564800.0}}`,
			id: "t1_kq9z", author: "t2_s1", text: "See [the docs](https://www.example.com/docs) and u/other", links: []string{"https://www.example.com/docs"},
		},
		{
			name: "reddit self post: links of selftext_html, not its own url", preset: PresetReddit,
			event: `{"kind":"t3","data":{"id":"1xyz","name":"t3_1xyz","title":"Benchmarks","selftext":"Numbers [here](https://bench.example.org/run/7)",` +
				`"selftext_html":"&lt;!-- SC_OFF --&gt;&lt;div class=\"md\"&gt;&lt;p&gt;Numbers &lt;a href=\"https://bench.example.org/run/7\"&gt;here&lt;/a&gt;&lt;/p&gt;\n&lt;/div&gt;&lt;!-- SC_ON --&gt;",` +
				`"is_self":true,"url":"https://www.reddit.com/r/golang/comments/1xyz/benchmarks/","author_fullname":"t2_b","created_utc":1714564900}}`,
			id: "t3_1xyz", author: "t2_b", text: "Benchmarks\n\nNumbers [here](https://bench.example.org/run/7)", links: []string{"https://bench.example.org/run/7"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Preset(tc.preset)
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.Map([]byte(tc.event))
			if err != nil {
				t.Fatalf("Map: %v", err)
			}
			if got.Kind != "" || got.ID != tc.id || got.Author.ID != tc.author || got.Text != tc.text {
				t.Errorf("got kind %q id %q author %q text %q\nwant an activity, id %q author %q text %q", got.Kind, got.ID, got.Author.ID, got.Text, tc.id, tc.author, tc.text)
			}
			if !slices.Equal(got.Links, tc.links) {
				t.Errorf("links %q, want %q", got.Links, tc.links)
			}
		})
	}
}
