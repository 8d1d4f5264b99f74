package activity

import (
	"html"
	"slices"
	"strings"
	"time"

	"github.com/tidwall/gjson"
)

// preset is a built-in format: its paths, and the hooks paths cannot
// express (envelopes, non-activity events).
type preset struct {
	fields   Mapping
	unwrap   func(gjson.Result) gjson.Result
	classify func(gjson.Result) (kind, id string)
	// finish, when set, completes the fields of an activity read from r.
	finish func(r gjson.Result, f *Fields)
	// split, when set, returns the events a container event holds (a
	// Reddit Listing's children), or nil for a single event.
	split func(r gjson.Result) []gjson.Result
}

// presets are the built-in formats, by name. Each follows its publisher's
// documented event format; docs/formats.md lists the paths.
var presets = map[string]preset{
	PresetBend: {fields: Mapping{
		ID: []string{"id"}, Text: []string{"text"}, Links: []string{"links"},
		Author: []string{"author.id"}, CreatedAt: []string{"created_at"},
	}},
	PresetCustom: {},
	// Gnip PowerTrack, Activity Streams 1.0. A retweet ("verb":"share")
	// carries the original activity as its object; tweets over 140
	// characters carry their full text in long_object.
	PresetActivityStreams: {
		fields: Mapping{
			ID:   []string{"id"},
			Text: []string{"object.long_object.body", "object.body", "long_object.body", "body"},
			Links: []string{"gnip.urls[].expanded_url", "twitter_entities.urls[].expanded_url",
				"long_object.twitter_entities.urls[].expanded_url", "object.twitter_entities.urls[].expanded_url",
				"object.long_object.twitter_entities.urls[].expanded_url"},
			Author:    []string{"actor.id"},
			CreatedAt: []string{"postedTime"},
			Lang:      []string{"twitter_lang", "gnip.language.value"},
		},
		classify: classifyActivityStreams,
	},
	// Twitter API v1.1 statuses, streaming (compat mode: extended_tweet)
	// and REST (extended mode: full_text); a retweet's text is the
	// original's, untruncated.
	PresetTwitterV1: {
		fields: Mapping{
			ID: []string{"id_str", "id"},
			Text: []string{"retweeted_status.extended_tweet.full_text", "retweeted_status.full_text", "retweeted_status.text",
				"extended_tweet.full_text", "full_text", "text"},
			Links: []string{"entities.urls[].expanded_url", "extended_tweet.entities.urls[].expanded_url",
				"retweeted_status.entities.urls[].expanded_url", "retweeted_status.extended_tweet.entities.urls[].expanded_url"},
			Author:          []string{"user.id_str", "user.id"},
			CreatedAt:       []string{"created_at"},
			CreatedAtLayout: time.RubyDate,
			Lang:            []string{"lang"},
		},
		classify: classifyTwitterV1,
	},
	// Twitter API v2 filtered/sample stream and lookups of one post; long
	// posts carry their full text in note_tweet.
	PresetTwitterV2: {
		fields: Mapping{
			ID:   []string{"data.id", "id"},
			Text: []string{"data.note_tweet.text", "data.text", "note_tweet.text", "text"},
			Links: []string{"data.entities.urls[].unwound_url", "data.entities.urls[].expanded_url",
				"data.note_tweet.entities.urls[].expanded_url",
				"entities.urls[].unwound_url", "entities.urls[].expanded_url", "note_tweet.entities.urls[].expanded_url"},
			Author:    []string{"data.author_id", "author_id"},
			CreatedAt: []string{"data.created_at", "created_at"},
			Lang:      []string{"data.lang", "lang"},
		},
		classify: classifyTwitterV2,
		finish:   finishTwitterV2,
		split:    splitTwitterV2,
	},
	// Bluesky Jetstream: the id of a record is its AT URI.
	PresetJetstream: {
		fields: Mapping{
			ID:   []string{"at://{did}/{commit.collection}/{commit.rkey}"},
			Text: []string{"commit.record.text"},
			// And the uri of every link facet (finishJetstream).
			Links:     []string{"commit.record.embed.external.uri", "commit.record.embed.media.external.uri"},
			Author:    []string{"did"},
			CreatedAt: []string{"commit.record.createdAt"},
			Lang:      []string{"commit.record.langs.0"},
		},
		classify: classifyJetstream,
		finish:   finishJetstream,
	},
	// Wikimedia EventStreams mediawiki.recentchange.
	PresetWikimedia: {
		fields: Mapping{
			ID:        []string{"meta.id"},
			Text:      []string{"{title}\n\n{comment}"},
			Links:     []string{"meta.uri"},
			Author:    []string{"user"},
			CreatedAt: []string{"meta.dt"},
		},
		classify: classifyWikimedia,
	},
	// Mastodon streaming: the Status of an update (bare, as over SSE, or
	// in the WebSocket envelope); a reblog's text is the original's.
	PresetMastodon: {
		fields: Mapping{
			ID:        []string{"id", "uri"},
			Text:      []string{"content", "reblog.content"},
			Links:     []string{"card.url", "reblog.card.url"},
			Author:    []string{"account.id"},
			CreatedAt: []string{"created_at"},
			Lang:      []string{"language", "reblog.language"},
			HTML:      true,
		},
		unwrap:   unwrapMastodon,
		classify: classifyMastodon,
	},
	// Reddit things (t3 posts, t1 comments, t4 messages), bare or in
	// their {"kind","data"} wrapper.
	PresetReddit: {
		fields: Mapping{
			ID:              []string{"name", "id"},
			Text:            []string{"{title}\n\n{selftext}", "body"},
			Links:           []string{"url_overridden_by_dest"},
			Author:          []string{"author_fullname", "author"},
			CreatedAt:       []string{"created_utc"},
			CreatedAtLayout: "unix",
		},
		unwrap:   unwrapReddit,
		classify: classifyReddit,
		finish:   finishReddit,
		split:    splitReddit,
	},
}

// str returns r's value as a string: a string's text, a number's digits.
func str(r gjson.Result) string {
	if r.Type == gjson.Number {
		return r.Raw
	}
	return r.Str
}

// idOf returns the first non-empty of paths in r, as str.
func idOf(r gjson.Result, paths ...string) string {
	for _, p := range paths {
		if s := str(r.Get(p)); s != "" {
			return s
		}
	}
	return ""
}

// twitterV1Notices are the top-level keys of Twitter v1.1 streaming
// messages that are not statuses, with the kind bend gives them and where
// their id is.
var twitterV1Notices = map[string]struct{ kind, id string }{
	"delete":          {KindDelete, "status.id_str"},
	"status_withheld": {KindWithheld, "id"},
	"user_withheld":   {"user_withheld", "id"},
	"scrub_geo":       {"scrub_geo", "user_id_str"},
	"limit":           {"limit", ""},
	"disconnect":      {"disconnect", ""},
	"warning":         {"warning", ""},
	"friends":         {"friends", ""},
	"friends_str":     {"friends", ""},
	"event":           {"event", ""},
	"direct_message":  {"direct_message", "id_str"},
	"control":         {"control", ""},
}

func classifyTwitterV1(r gjson.Result) (string, string) {
	if !r.IsObject() || r.Get("id_str").Exists() {
		return "", ""
	}
	var kind, id string
	r.ForEach(func(k, v gjson.Result) bool {
		n, ok := twitterV1Notices[k.Str]
		if !ok {
			return true
		}
		kind = n.kind
		if n.id != "" {
			id = idOf(v, n.id, strings.TrimSuffix(n.id, "_str"), "status.id")
		}
		return false
	})
	return kind, id
}

// twitterV2Compliance are the events of the v2 compliance streams, the
// single member of their "data".
var twitterV2Compliance = map[string]string{
	"delete": KindDelete, "withheld": KindWithheld, "tweet_edit": "tweet_edit", "drop": "drop", "undrop": "undrop",
	"scrub_geo": "scrub_geo", "user_delete": "user_delete", "user_undelete": "user_undelete",
	"user_withheld": "user_withheld", "user_protect": "user_protect", "user_unprotect": "user_unprotect",
	"user_suspend": "user_suspend", "user_unsuspend": "user_unsuspend", "user_profile_modification": "user_profile_modification",
}

func classifyTwitterV2(r gjson.Result) (string, string) {
	if !r.IsObject() {
		return "", ""
	}
	data := r.Get("data")
	if data.IsArray() {
		return "batch", ""
	}
	if data.IsObject() && !data.Get("id").Exists() {
		var kind, id string
		data.ForEach(func(k, v gjson.Result) bool {
			if n, ok := twitterV2Compliance[k.Str]; ok {
				kind, id = n, idOf(v, "tweet.id", "user.id", "id")
				return false
			}
			return true
		})
		return kind, id
	}
	if !data.Exists() {
		// Stream errors, and the lines of a batch compliance job's result.
		if a := r.Get("action"); a.Type == gjson.String && r.Get("id").Exists() {
			kind := a.Str
			if kind == "deleted" {
				kind = KindDelete
			}
			return kind, str(r.Get("id"))
		}
		if r.Get("errors").IsArray() {
			return "error", ""
		}
	}
	return "", ""
}

// splitTwitterV2 returns the posts of a response holding several
// ({"data":[...]}).
func splitTwitterV2(r gjson.Result) []gjson.Result {
	if d := r.Get("data"); d.IsArray() {
		return d.Array()
	}
	return nil
}

// splitReddit returns the things of a Listing.
func splitReddit(r gjson.Result) []gjson.Result {
	if r.Get("kind").Str == "Listing" {
		return r.Get("data.children").Array()
	}
	return nil
}

func classifyActivityStreams(r gjson.Result) (string, string) {
	if !r.IsObject() {
		return "", ""
	}
	if v := r.Get("verb"); v.Type == gjson.String && v.Str != "post" && v.Str != "share" {
		kind := v.Str
		if kind == "status_withheld" {
			kind = KindWithheld
		}
		return kind, idOf(r, "object.id", "id")
	}
	if !r.Get("id").Exists() {
		// PowerTrack system messages.
		for _, k := range []string{"info", "warn", "error"} {
			if r.Get(k).Exists() {
				return "system", ""
			}
		}
	}
	return "", ""
}

func classifyJetstream(r gjson.Result) (string, string) {
	if !r.IsObject() {
		return "", ""
	}
	kind := r.Get("kind").Str
	if kind == "" {
		// The first Jetstream releases: "type": com, id, acc.
		kind = map[string]string{"com": "commit", "id": "identity", "acc": "account"}[r.Get("type").Str]
	}
	did := r.Get("did").Str
	switch kind {
	case "commit":
		c := r.Get("commit")
		op := c.Get("operation").Str
		if op == "" {
			op = map[string]string{"c": "create", "u": "update", "d": "delete"}[c.Get("type").Str]
		}
		if op == "delete" {
			return KindDelete, "at://" + did + "/" + c.Get("collection").Str + "/" + c.Get("rkey").Str
		}
		return "", ""
	case "identity", "account":
		return kind, did + "#" + kind + "@" + r.Get("time_us").Raw
	case "":
		return "", ""
	}
	return kind, did
}

func classifyWikimedia(r gjson.Result) (string, string) {
	if r.IsObject() && r.Get("meta.domain").Str == "canary" {
		return "canary", r.Get("meta.id").Str
	}
	return "", ""
}

// mastodonPayload returns the event name and payload of a WebSocket
// envelope ({"stream":[...],"event":"update","payload":"<JSON>"}), and
// whether r is one.
func mastodonPayload(r gjson.Result) (event string, payload gjson.Result, ok bool) {
	ev := r.Get("event")
	if ev.Type != gjson.String {
		return "", gjson.Result{}, false
	}
	p := r.Get("payload")
	if !p.Exists() {
		p = r.Get("data")
	}
	if p.Type == gjson.String && (ev.Str != "delete") {
		p = gjson.Parse(p.Str)
	}
	return ev.Str, p, true
}

func unwrapMastodon(r gjson.Result) gjson.Result {
	if _, p, ok := mastodonPayload(r); ok && p.IsObject() {
		return p
	}
	return r
}

func classifyMastodon(r gjson.Result) (string, string) {
	switch r.Type {
	case gjson.String, gjson.Number:
		// The payload of a delete event over SSE: the status id alone.
		return KindDelete, str(r)
	}
	if !r.IsObject() {
		return "", ""
	}
	if ev, p, ok := mastodonPayload(r); ok {
		switch ev {
		case "update", "status.update":
			if !p.IsObject() {
				return "", ""
			}
			r = p
		case "delete":
			return KindDelete, str(p)
		default:
			return ev, idOf(p, "id")
		}
	}
	// A notification (user streams) has a type and no content.
	if r.Get("type").Type == gjson.String && !r.Get("content").Exists() {
		return "notification", idOf(r, "id")
	}
	return "", ""
}

func unwrapReddit(r gjson.Result) gjson.Result {
	if d := r.Get("data"); d.IsObject() && r.Get("kind").Type == gjson.String {
		return d
	}
	return r
}

func classifyReddit(r gjson.Result) (string, string) {
	if !r.IsObject() {
		return "", ""
	}
	switch r.Get("kind").Str {
	case "Listing":
		return "listing", ""
	case "more":
		return "more", idOf(r, "data.name", "data.id")
	}
	return "", ""
}

// finishReddit adds the url of a link post (a self post's url is the post
// itself) and the links of the text: the hrefs of selftext_html (a post)
// or body_html (a comment), the rendered markdown, which Reddit sends
// entity-escaped.
func finishReddit(r gjson.Result, f *Fields) {
	if u := r.Get("url").Str; u != "" && !r.Get("is_self").Bool() && !slices.Contains(f.Links, u) {
		f.Links = append(f.Links, u)
	}
	for _, k := range []string{"selftext_html", "body_html"} {
		h := r.Get(k)
		if h.Type != gjson.String || h.Str == "" {
			continue
		}
		_, hrefs := stripHTML(html.UnescapeString(h.Str))
		for _, u := range hrefs {
			if len(f.Links) < MaxLinks && !slices.Contains(f.Links, u) {
				f.Links = append(f.Links, u)
			}
		}
	}
}

// finishTwitterV2 reads a retweet from the post it retweets: in v2 a
// retweet's own text is "RT @user: " and the start of the original, cut
// short, and its entities are the cut text's; the original, with
// expansions=referenced_tweets.id, is in includes.tweets (its note_tweet
// when it is long). A retweet without the expansion keeps its own text.
func finishTwitterV2(root gjson.Result, f *Fields) {
	data := root.Get("data")
	if !data.IsObject() {
		return
	}
	var rt string
	data.Get("referenced_tweets").ForEach(func(_, ref gjson.Result) bool {
		if ref.Get("type").Str == "retweeted" {
			rt = str(ref.Get("id"))
			return false
		}
		return true
	})
	if rt == "" {
		return
	}
	var orig gjson.Result
	root.Get("includes.tweets").ForEach(func(_, t gjson.Result) bool {
		if str(t.Get("id")) == rt {
			orig = t
			return false
		}
		return true
	})
	if !orig.Exists() {
		return
	}
	if t := orig.Get("note_tweet.text"); t.Type == gjson.String && t.Str != "" {
		f.Text = t.Str
	} else if t := orig.Get("text"); t.Type == gjson.String && t.Str != "" {
		f.Text = t.Str
	}
	for _, p := range []string{"entities.urls", "note_tweet.entities.urls"} {
		orig.Get(p).ForEach(func(_, u gjson.Result) bool {
			link := u.Get("unwound_url").Str
			if link == "" {
				link = u.Get("expanded_url").Str
			}
			if link != "" && len(f.Links) < MaxLinks && !slices.Contains(f.Links, link) {
				f.Links = append(f.Links, link)
			}
			return true
		})
	}
}

// finishJetstream adds the uri of every app.bsky.richtext.facet#link
// feature of the post's facets (one walk: cheaper than a gjson query).
func finishJetstream(r gjson.Result, f *Fields) {
	facets := r.Get("commit.record.facets")
	if !facets.IsArray() {
		return
	}
	facets.ForEach(func(_, facet gjson.Result) bool {
		facet.Get("features").ForEach(func(_, feat gjson.Result) bool {
			if feat.Get(`\$type`).Str == "app.bsky.richtext.facet#link" {
				if u := feat.Get("uri").Str; u != "" && !slices.Contains(f.Links, u) {
					f.Links = append(f.Links, u)
				}
			}
			return true
		})
		return true
	})
}
