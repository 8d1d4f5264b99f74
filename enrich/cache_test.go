package enrich

import (
	"testing"
	"time"

	metrics "github.com/rcrowley/go-metrics"
)

func TestCache(t *testing.T) {
	now := time.Unix(1000, 0)
	reg := metrics.NewRegistry()
	c := newCache[int]("c", 2, time.Minute, reg)
	c.now = func() time.Time { return now }
	type step struct {
		op    string // "add", "get", "wait"
		key   string
		val   int
		found bool
		wait  time.Duration
	}
	for i, s := range []step{
		{op: "get", key: "a"},
		{op: "add", key: "a", val: 1},
		{op: "add", key: "b", val: 2},
		{op: "get", key: "a", val: 1, found: true}, // a is now the most recent
		{op: "add", key: "c", val: 3},              // evicts b
		{op: "get", key: "b"},
		{op: "get", key: "c", val: 3, found: true},
		{op: "add", key: "c", val: 4}, // replaces, evicts nothing
		{op: "get", key: "a", val: 1, found: true},
		{op: "wait", wait: 30 * time.Second},
		{op: "add", key: "a", val: 5}, // a lives on for a minute from now
		{op: "wait", wait: 40 * time.Second},
		{op: "get", key: "c"}, // expired
		{op: "get", key: "a", val: 5, found: true},
		{op: "wait", wait: 20 * time.Second},
		{op: "get", key: "a"}, // expired exactly at its ttl
	} {
		switch s.op {
		case "add":
			c.add(s.key, s.val)
		case "wait":
			now = now.Add(s.wait)
		case "get":
			v, ok := c.get(s.key)
			if ok != s.found || v != s.val {
				t.Fatalf("step %d: get(%s) = %d, %v; want %d, %v", i, s.key, v, ok, s.val, s.found)
			}
		}
		if n := c.len(); n > 2 {
			t.Fatalf("step %d: %d entries, more than the size 2", i, n)
		}
	}
	if hits, misses := count(reg, "enrich.c.cache_hits"), count(reg, "enrich.c.cache_misses"); hits != 4 || misses != 4 {
		t.Errorf("hits/misses: got %d/%d, want 4/4", hits, misses)
	}
	if n := c.len(); n != 0 {
		t.Errorf("entries after every one expired and was looked up: got %d, want 0", n)
	}
}
