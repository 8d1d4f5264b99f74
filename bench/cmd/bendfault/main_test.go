package main

import (
	"errors"
	"testing"
)

func TestTrackerCounts(t *testing.T) {
	const mark = `"enrichments":{"fault":`
	tr := newTracker(5)
	for _, v := range []string{
		`{"id":"act-1","enrichments":{"fault":{}}}`,
		`{"id":"act-2","enrichments":{"fault":{}}}`,
		`{"id":"act-2","enrichments":{"fault":{}}}`, // duplicate
		`{"id":"act-2","enrichments":{"fault":{}}}`, // and another
		`{"id":"act-4"}`, // no enrichment
		`{"id":"act-9","enrichments":{"fault":{}}}`, // outside the range
		`{"id":"other"}`, // not an id of the run
	} {
		tr.add([]byte(v), mark)
	}
	if got := tr.distinctN(); got != 3 {
		t.Errorf("distinct = %d, want 3 (act-1, act-2, act-4)", got)
	}
	total, lost, dup, unenriched := tr.count()
	if total != 7 || lost != 2 || dup != 2 || unenriched != 2 {
		t.Errorf("count = total %d lost %d dup %d unenriched %d, want 7 2 2 2", total, lost, dup, unenriched)
	}
}

func TestDupBound(t *testing.T) {
	r := &runner{rate: 3000, maxItems: 2000}
	r.setBound(0)
	if r.dupBound != 0 {
		t.Errorf("no incident: bound %d, want 0", r.dupBound)
	}
	r.setBound(2)
	if want := int64(2 * (2000 + 8*256 + 6000)); r.dupBound != want {
		t.Errorf("two incidents: bound %d, want %d", r.dupBound, want)
	}
}

func TestTrackerIndexAndRange(t *testing.T) {
	ids := map[string]int64{"at://did:plc:a/app.bsky.feed.post/1": 1, "m-1": 2, "m-2": 3}
	tr := newTracker(3)
	tr.index = func(v []byte) (int64, error) {
		if i, ok := ids[sourceID(v)]; ok {
			return i, nil
		}
		return 0, errors.New("unknown")
	}
	for _, v := range []string{
		`{"did":"did:plc:a","time_us":1,"kind":"commit","commit":{"collection":"app.bsky.feed.post","rkey":"1"}}`,
		`{"did":"did:plc:a","time_us":1,"kind":"commit","commit":{"collection":"app.bsky.feed.post","rkey":"1"}}`,
		`{"meta":{"id":"m-2"}}`,
		`{"meta":{"id":"m-9"}}`, // not of the run
	} {
		tr.add([]byte(v), "")
	}
	if lost, dup := tr.countRange(1, 1); lost != 0 || dup != 1 {
		t.Errorf("jetstream range: lost %d dup %d, want 0 1", lost, dup)
	}
	if lost, dup := tr.countRange(2, 3); lost != 1 || dup != 0 {
		t.Errorf("sse range: lost %d dup %d, want 1 0", lost, dup)
	}
}
