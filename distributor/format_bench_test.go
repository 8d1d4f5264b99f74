package distributor

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/enrich"
	"github.com/bendstream/bend/internal/activity"
	"github.com/bendstream/bend/internal/kafkatest"
)

// formatEvents are the events BenchmarkDistributorFormats drains: a bend
// event and the same post in real publishers' formats (as documented, the
// size the publishers send), each with a %d for its sequence number.
var formatEvents = map[string]string{
	activity.PresetBend:      `{"id":"act-%d","seq":1,"verb":"post","author":{"id":"author-4242","handle":"user4242","followers":1234},"text":"Just shipped a new release of the stream pipeline, lag drained in seconds https://example.com/a/b","links":["https://example.com/a/b"],"created_at":"2026-11-30T06:24:05.123456789Z"}`,
	activity.PresetTwitterV1: `{"created_at":"Wed Oct 10 20:19:24 +0000 2018","id":1050118621198%d,"id_str":"1050118621198%d","text":"Just shipped a new release of the stream pipeline, lag drained in seconds https://t.co/MkGjXf9aXm","source":"<a href=\"https://mobile.twitter.com\" rel=\"nofollow\">Twitter Web App</a>","truncated":false,"in_reply_to_status_id":null,"in_reply_to_status_id_str":null,"in_reply_to_user_id":null,"user":{"id":6253282,"id_str":"6253282","name":"Twitter API","screen_name":"TwitterAPI","location":"San Francisco, CA","url":"https://developer.twitter.com","description":"The Real Twitter API.","verified":true,"followers_count":6129794,"friends_count":12,"listed_count":12899,"favourites_count":31,"statuses_count":3658,"created_at":"Wed May 23 06:01:13 +0000 2007","profile_image_url_https":"https://pbs.twimg.com/profile_images/942858479592554497/BbazLO9L_normal.jpg","default_profile":false},"geo":null,"coordinates":null,"place":null,"contributors":null,"is_quote_status":false,"quote_count":0,"reply_count":0,"retweet_count":0,"favorite_count":0,"entities":{"hashtags":[],"urls":[{"url":"https://t.co/MkGjXf9aXm","expanded_url":"https://example.com/a/b","display_url":"example.com/a/b","indices":[74,97]}],"user_mentions":[],"symbols":[]},"favorited":false,"retweeted":false,"possibly_sensitive":false,"filter_level":"low","lang":"en","timestamp_ms":"1539202764000"}`,
	activity.PresetJetstream: `{"did":"did:plc:eygmaihciaxprqvxpfvl6flk","time_us":1725911162%d,"kind":"commit","commit":{"rev":"3l3qo2vutsw2b","operation":"create","collection":"app.bsky.feed.post","rkey":"3l3qo%d","record":{"$type":"app.bsky.feed.post","createdAt":"2024-09-09T19:46:02.102Z","langs":["en"],"text":"Just shipped a new release of the stream pipeline, lag drained in seconds example.com/a/b","facets":[{"$type":"app.bsky.richtext.facet","index":{"byteStart":74,"byteEnd":90},"features":[{"$type":"app.bsky.richtext.facet#link","uri":"https://example.com/a/b"}]}]},"cid":"bafyreidwaivazkwu67xztlmuobx35hs2lnfh3kolmgfmucldvhd3sgzcqi"}}`,
}

func init() {
	// A bend event padded to the size of the twitter_v1 one: the drain of
	// the same bytes, so that the difference is the mapping alone.
	pad := len(formatEvents[activity.PresetTwitterV1]) - len(formatEvents[activity.PresetBend]) - len(`,"pad":""`)
	formatEvents["bend_large"] = strings.TrimSuffix(formatEvents[activity.PresetBend], "}") + `,"pad":"` + strings.Repeat("x", pad) + `"}`
}

// BenchmarkDistributorFormats is BenchmarkDistributorNoop for each format
// in one run on one broker: records stamped with their bend-format header,
// as ingest writes them, drained with a no-op enrichment. The ratio of the
// records/s of a real format to bend's is the cost of mapping it.
func BenchmarkDistributorFormats(b *testing.B) {
	brokers := kafkatest.Brokers(b)
	for _, bc := range []struct{ name, format string }{
		{"bend", activity.PresetBend},
		{"bend_as_large_as_twitter_v1", "bend_large"},
		{activity.PresetTwitterV1, activity.PresetTwitterV1},
		{activity.PresetJetstream, activity.PresetJetstream},
	} {
		name := bc.format
		b.Run(bc.name, func(b *testing.B) {
			topic := kafkatest.CreateTopic(b, brokers, 8)
			n := max(b.N, 1000)
			produceFormat(b, brokers, topic, name, n)
			o := defaultOpts(b)
			ec := enrich.Config{Workers: 4, QueueSize: 1024, Enrichers: []enrich.Spec{{Name: "noop", Type: "noop"}}}
			ens, err := ec.Build(nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			o.enrichers = ens
			c := newCollector()
			c.countOnly = true
			b.ResetTimer()
			start := time.Now()
			p := startPipeline(b, brokers, topic, o, c)
			for c.acked.Load() < int64(n) {
				time.Sleep(time.Millisecond)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(n)/elapsed.Seconds(), "records/s")
			p.stop()
			<-p.done
		})
	}
}

func produceFormat(t testing.TB, brokers []string, topic, format string, n int) {
	t.Helper()
	sc := kafkatest.Config()
	sc.Producer.Return.Successes = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Flush.Frequency = time.Millisecond
	p, err := sarama.NewSyncProducer(brokers, sc)
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	defer p.Close()
	tmpl := formatEvents[format]
	name := strings.TrimSuffix(format, "_large")
	f, err := activity.Preset(name)
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Count(tmpl, "%d")
	var batch []*sarama.ProducerMessage
	for i := 1; i <= n; i++ {
		a := make([]any, args)
		for j := range a {
			a[j] = 100000 + i
		}
		v := fmt.Sprintf(tmpl, a...)
		// The headers ingest writes: the format and, but for bend's, the
		// mapped fields.
		h := []sarama.RecordHeader{{Key: []byte(activity.HeaderFormat), Value: []byte(name)}}
		if fields, err := f.Map([]byte(v)); err != nil {
			t.Fatalf("mapping %s: %v", v, err)
		} else if !f.Fast() {
			h = append(h, sarama.RecordHeader{Key: []byte(activity.HeaderFields), Value: activity.EncodeFields(fields)})
		}
		batch = append(batch, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprint(i)), Value: sarama.StringEncoder(v), Headers: h})
		if len(batch) == 1000 || i == n {
			if err := p.SendMessages(batch); err != nil {
				t.Fatalf("producing: %v", err)
			}
			batch = batch[:0]
		}
	}
}
