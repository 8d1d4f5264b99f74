package delayqueue

import (
	"slices"
	"testing"
	"time"
)

var base = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// at returns base plus s seconds.
func at(s int) time.Time { return base.Add(time.Duration(s) * time.Second) }

type pushed struct {
	name string
	due  int // seconds after base
}

// build returns a heap holding ps, pushed in order with increasing seq, and
// the items by name.
func build(ps []pushed) (*dueHeap[string], map[string]*Item[string]) {
	h := &dueHeap[string]{epoch: base}
	byName := map[string]*Item[string]{}
	for i, p := range ps {
		it := &Item[string]{Value: p.name, due: at(p.due), seq: uint64(i), index: -1}
		h.push(it)
		byName[p.name] = it
	}
	return h, byName
}

// checkHeap fails if h's order or index bookkeeping is broken.
func checkHeap(t *testing.T, h *dueHeap[string]) {
	t.Helper()
	for i, it := range h.items {
		if it.index != i {
			t.Fatalf("item %q at %d has index %d", it.Value, i, it.index)
		}
		if i > 0 && h.less(i, (i-1)/2) {
			t.Fatalf("item %q at %d sorts before its parent %q", it.Value, i, h.items[(i-1)/2].Value)
		}
	}
}

func TestDueHeapPopReady(t *testing.T) {
	for _, tc := range []struct {
		name     string
		push     []pushed
		remove   []string
		now      int
		want     []string // popReady(now) until it reports false
		wantNext int      // nextDue after that, in seconds; -1 for an empty heap
	}{
		{"empty", nil, nil, 10, nil, -1},
		{"nothing due yet", []pushed{{"a", 5}}, nil, 4, nil, 5},
		{"due exactly now", []pushed{{"a", 5}}, nil, 5, []string{"a"}, -1},
		{"due order not put order", []pushed{{"c", 3}, {"a", 1}, {"b", 2}}, nil, 3, []string{"a", "b", "c"}, -1},
		{"only the due ones", []pushed{{"c", 30}, {"a", 10}, {"b", 20}}, nil, 20, []string{"a", "b"}, 30},
		{"ties in put order", []pushed{{"x", 1}, {"y", 1}, {"z", 1}, {"w", 0}}, nil, 1, []string{"w", "x", "y", "z"}, -1},
		{"past due", []pushed{{"a", -100}, {"b", -5}}, nil, 0, []string{"a", "b"}, -1},
		{"remove head", []pushed{{"a", 1}, {"b", 2}, {"c", 3}}, []string{"a"}, 9, []string{"b", "c"}, -1},
		{"remove middle", []pushed{{"a", 1}, {"b", 2}, {"c", 3}, {"d", 4}, {"e", 5}}, []string{"c", "e"}, 9, []string{"a", "b", "d"}, -1},
		{"remove last", []pushed{{"a", 1}, {"b", 2}}, []string{"b"}, 9, []string{"a"}, -1},
		{"remove leaves later head", []pushed{{"a", 1}, {"b", 7}}, []string{"a"}, 5, nil, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, byName := build(tc.push)
			for _, n := range tc.remove {
				h.remove(byName[n])
				if byName[n].index != -1 {
					t.Fatalf("removed %q: index = %d, want -1", n, byName[n].index)
				}
				checkHeap(t, h)
			}
			var got []string
			for {
				it, ok := h.popReady(at(tc.now))
				if !ok {
					break
				}
				got = append(got, it.Value)
				checkHeap(t, h)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("popReady(%d) order = %v, want %v", tc.now, got, tc.want)
			}
			next, ok := h.nextDue()
			gotNext := -1
			if ok {
				gotNext = int(next.Sub(base) / time.Second)
			}
			if gotNext != tc.wantNext {
				t.Fatalf("nextDue = %d, want %d", gotNext, tc.wantNext)
			}
		})
	}
}

func TestDueHeapWait(t *testing.T) {
	for _, tc := range []struct {
		name   string
		push   []pushed
		now    time.Time
		want   time.Duration
		wantOK bool
	}{
		{"empty", nil, at(0), 0, false},
		{"future", []pushed{{"a", 5}, {"b", 3}}, at(1), 2 * time.Second, true},
		{"now", []pushed{{"a", 5}}, at(5), 0, true},
		{"past", []pushed{{"a", 5}}, at(9), 0, true},
		{"sub-second", []pushed{{"a", 1}}, at(1).Add(-time.Millisecond), time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := build(tc.push)
			got, ok := h.wait(tc.now)
			if got != tc.want || ok != tc.wantOK {
				t.Fatalf("wait = %v, %v; want %v, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

// TestDueHeapExtremeTimes checks that the zero Time and far-future times
// order correctly despite time.Sub saturating.
func TestDueHeapExtremeTimes(t *testing.T) {
	h := &dueHeap[string]{epoch: base}
	far := base.AddDate(1000, 0, 0)
	for i, it := range []*Item[string]{
		{Value: "far", due: far},
		{Value: "zero", due: time.Time{}},
		{Value: "base", due: base},
	} {
		it.seq = uint64(i)
		h.push(it)
	}
	var got []string
	for {
		it, ok := h.popReady(base)
		if !ok {
			break
		}
		got = append(got, it.Value)
	}
	if want := []string{"zero", "base"}; !slices.Equal(got, want) {
		t.Fatalf("ready at base = %v, want %v", got, want)
	}
	if d, _ := h.wait(base); d <= 0 {
		t.Fatalf("wait for far future = %v, want > 0", d)
	}
}

func TestNextReady(t *testing.T) {
	for _, tc := range []struct {
		name  string
		push  []pushed
		done  []string // completed, in this order: moved from the heap to the FIFO
		now   int
		drain bool
		want  []string // nextReady until it reports false
	}{
		{"empty", nil, nil, 0, false, nil},
		{"completed before due ones", []pushed{{"a", 1}, {"b", 2}}, []string{"b"}, 5, false, []string{"b", "a"}},
		{"completed in completion order", []pushed{{"a", 1}, {"b", 2}, {"c", 3}}, []string{"c", "a", "b"}, 0, false, []string{"c", "a", "b"}},
		{"completed ready before due", []pushed{{"a", 10}, {"b", 20}}, []string{"b"}, 0, false, []string{"b"}},
		{"due ones by due", []pushed{{"b", 2}, {"a", 1}, {"c", 9}}, nil, 2, false, []string{"a", "b"}},
		{"drain ignores due", []pushed{{"b", 20}, {"a", 10}}, nil, 0, true, []string{"a", "b"}},
		{"drain completed first", []pushed{{"a", 10}, {"b", 20}}, []string{"b"}, 0, true, []string{"b", "a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, byName := build(tc.push)
			var f fifo[string]
			for _, n := range tc.done {
				h.remove(byName[n])
				f.push(byName[n])
			}
			now := at(tc.now)
			var got []string
			for {
				want := hasReady(&f, h, now, tc.drain)
				it, ok := nextReady(&f, h, now, tc.drain)
				if ok != want {
					t.Fatalf("hasReady = %v but nextReady = %v", want, ok)
				}
				if !ok {
					break
				}
				got = append(got, it.Value)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("order = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFIFO(t *testing.T) {
	var f fifo[string]
	var got, want []string
	n := 0
	// Interleave pushes and pops so the buffer compacts and wraps.
	for round := range 50 {
		for range round % 7 {
			f.push(&Item[string]{Value: string(rune('a' + n%26))})
			want = append(want, string(rune('a'+n%26)))
			n++
		}
		for range round % 5 {
			if it, ok := f.pop(); ok {
				got = append(got, it.Value)
			}
		}
	}
	for {
		it, ok := f.pop()
		if !ok {
			break
		}
		got = append(got, it.Value)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("fifo order = %v, want %v", got, want)
	}
	if f.len() != 0 {
		t.Fatalf("len after draining = %d, want 0", f.len())
	}
}

func TestClassify(t *testing.T) {
	h := &dueHeap[string]{epoch: base}
	for _, tc := range []struct {
		name     string
		due, now int
		complete bool
		want     outcome
	}{
		{"complete before due", 5, 4, true, early},
		{"complete at due", 5, 5, true, onTime},
		{"complete after due", 5, 6, true, onTime},
		{"incomplete at due", 5, 5, false, expired},
		{"incomplete after due", 5, 9, false, expired},
		{"incomplete before due", 5, 1, false, drained},
	} {
		t.Run(tc.name, func(t *testing.T) {
			it := &Item[string]{due: at(tc.due), complete: tc.complete}
			it.key = h.key(it.due)
			if got := classify(h, it, at(tc.now)); got != tc.want {
				t.Fatalf("classify = %d, want %d", got, tc.want)
			}
		})
	}
}

// FuzzReadyOrder drives the heap and FIFO with random operations and checks
// every item handed out against a naive model: completed items first in
// completion order, then the due item with the smallest (due, park order),
// and nothing that is not ready.
func FuzzReadyOrder(f *testing.F) {
	f.Add([]byte{0, 3, 0, 9, 0, 1, 3, 0, 2, 5, 3, 3, 3})
	f.Add([]byte{0, 0, 0, 0, 1, 1, 3, 4, 2, 2, 9, 3, 3, 5, 5})
	f.Add([]byte{0, 19, 0, 19, 0, 2, 1, 0, 2, 30, 3, 4, 0, 3, 3, 3, 5})
	f.Fuzz(func(t *testing.T, ops []byte) {
		h := &dueHeap[int]{epoch: base}
		var fq fifo[int]
		type mitem struct {
			it    *Item[int]
			state itemState
		}
		var (
			model []*mitem // every item ever created
			done  []*mitem // model FIFO
			taken []*mitem
			now   = base
			seq   uint64
		)
		next := func(i *int) int {
			if *i >= len(ops) {
				return 0
			}
			b := ops[*i]
			*i++
			return int(b)
		}
		park := func(m *mitem, dueSec int) {
			m.it.due = base.Add(time.Duration(dueSec) * time.Second)
			m.it.seq = seq
			seq++
			m.state = stateParked
			h.push(m.it)
		}
		// wantNext is the model's answer to nextReady.
		wantNext := func(drain bool) *mitem {
			if len(done) > 0 {
				return done[0]
			}
			var best *mitem
			for _, m := range model {
				if m.state != stateParked || (!drain && m.it.due.After(now)) {
					continue
				}
				if best == nil || m.it.due.Before(best.it.due) || (m.it.due.Equal(best.it.due) && m.it.seq < best.it.seq) {
					best = m
				}
			}
			return best
		}
		for i := 0; i < len(ops); {
			switch op := next(&i) % 6; op {
			case 0: // put, due -5s..+14s from now
				m := &mitem{it: &Item[int]{Value: len(model), index: -1}}
				model = append(model, m)
				park(m, int(now.Sub(base)/time.Second)+next(&i)%20-5)
			case 1: // complete a parked item
				var parked []*mitem
				for _, m := range model {
					if m.state == stateParked {
						parked = append(parked, m)
					}
				}
				if len(parked) == 0 {
					continue
				}
				m := parked[next(&i)%len(parked)]
				h.remove(m.it)
				fq.push(m.it)
				m.state = stateReady
				done = append(done, m)
			case 2: // advance the clock 0..6s
				now = now.Add(time.Duration(next(&i)%7) * time.Second)
			case 3, 5: // take; 5 drains
				drain := op == 5
				want := wantNext(drain)
				it, ok := nextReady(&fq, h, now, drain)
				switch {
				case want == nil && ok:
					t.Fatalf("nextReady at %v returned %d (due %v), want nothing ready", now, it.Value, it.due)
				case want != nil && !ok:
					t.Fatalf("nextReady at %v returned nothing, want %d (due %v)", now, want.it.Value, want.it.due)
				case want != nil && it != want.it:
					t.Fatalf("nextReady at %v returned %d (due %v), want %d (due %v)", now, it.Value, it.due, want.it.Value, want.it.due)
				}
				if ok {
					if len(done) > 0 && done[0] == want {
						done = done[1:]
					}
					want.state = stateTaken
					taken = append(taken, want)
				}
			case 4: // repark a taken item
				if len(taken) == 0 {
					continue
				}
				j := next(&i) % len(taken)
				m := taken[j]
				taken = slices.Delete(taken, j, j+1)
				park(m, int(now.Sub(base)/time.Second)+next(&i)%10)
			}
			checkFuzzHeap(t, h)
			nParked := 0
			for _, m := range model {
				if m.state == stateParked {
					nParked++
				}
			}
			if h.len() != nParked || fq.len() != len(done) {
				t.Fatalf("heap/fifo len = %d/%d, want %d/%d", h.len(), fq.len(), nParked, len(done))
			}
		}
	})
}

func checkFuzzHeap(t *testing.T, h *dueHeap[int]) {
	t.Helper()
	for i, it := range h.items {
		if it.index != i {
			t.Fatalf("item %d at %d has index %d", it.Value, i, it.index)
		}
		if i > 0 && h.less(i, (i-1)/2) {
			t.Fatalf("item %d at %d sorts before its parent", it.Value, i)
		}
	}
}
