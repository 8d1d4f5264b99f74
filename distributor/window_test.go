package distributor

import (
	"math/rand/v2"
	"testing"
)

func TestWindow(t *testing.T) {
	type op struct {
		off int64
		ok  bool
	}
	for _, tc := range []struct {
		name     string
		read     []int64
		acks     []op
		wantNext int64
		wantIn   int
	}{
		{"nothing acked", []int64{0, 1, 2}, nil, -1, 3},
		{"in order", []int64{0, 1, 2}, []op{{0, true}, {1, true}, {2, true}}, 3, 0},
		{"out of order holds", []int64{0, 1, 2}, []op{{2, true}, {1, true}}, -1, 3},
		{"out of order completes", []int64{0, 1, 2}, []op{{2, true}, {1, true}, {0, true}}, 3, 0},
		{"gaps", []int64{5, 9, 12}, []op{{5, true}, {9, true}}, 10, 1},
		{"failure holds watermark", []int64{0, 1, 2, 3}, []op{{0, true}, {1, false}, {2, true}, {3, true}}, 1, 3},
		{"failure never passed by later ack", []int64{0, 1}, []op{{0, false}, {1, true}, {0, true}}, -1, 2},
		{"unknown offset ignored", []int64{3, 4}, []op{{7, true}, {3, true}}, 4, 1},
		{"duplicate ack ignored", []int64{0, 1}, []op{{1, true}, {1, true}}, -1, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWindow()
			for _, o := range tc.read {
				w.add(o, 0)
			}
			for _, a := range tc.acks {
				w.ack(a.off, a.ok)
			}
			if w.next != tc.wantNext || w.inFlight() != tc.wantIn {
				t.Fatalf("next, inFlight = %d, %d; want %d, %d", w.next, w.inFlight(), tc.wantNext, tc.wantIn)
			}
		})
	}
}

// checkWindow drives a window with reads, acks in a random order and a set of
// failures, and checks the invariant after every step: the commit offset never
// passes a record that was not acknowledged, and it reaches every record that
// is followed only by acknowledged ones.
func checkWindow(t *testing.T, seed uint64, n int, failEvery int) {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b9))
	w := newWindow()
	offs := make([]int64, n)
	var o int64
	for i := range offs {
		o += 1 + int64(r.IntN(3)) // gaps
		offs[i] = o
		w.add(o, 0)
	}
	state := map[int64]uint8{}
	order := r.Perm(n)
	for step, idx := range order {
		off := offs[idx]
		ok := failEvery == 0 || r.IntN(failEvery) != 0
		w.ack(off, ok)
		if ok {
			state[off] = acked
		} else {
			state[off] = failed
		}
		// Expected watermark: one past the longest prefix of acked records.
		want := int64(-1)
		for _, x := range offs {
			if state[x] != acked {
				break
			}
			want = x + 1
		}
		if w.next != want {
			t.Fatalf("seed %d step %d: next = %d, want %d", seed, step, w.next, want)
		}
		for _, x := range offs {
			if x >= w.next {
				break
			}
			if state[x] != acked {
				t.Fatalf("seed %d step %d: commit offset %d passes unacked offset %d", seed, step, w.next, x)
			}
		}
	}
}

func TestWindowRandomOrders(t *testing.T) {
	for seed := range uint64(200) {
		checkWindow(t, seed, 1+int(seed%97), int(seed%5)*3)
	}
}

func FuzzWindow(f *testing.F) {
	f.Add(uint64(1), uint16(10), uint8(0))
	f.Add(uint64(7), uint16(300), uint8(4))
	f.Fuzz(func(t *testing.T, seed uint64, n uint16, failEvery uint8) {
		checkWindow(t, seed, 1+int(n%2000), int(failEvery%16))
	})
}

// TestWindowRanges: entries of several records move the watermark past
// their last offset and free their records only when acknowledged whole,
// in read order.
func TestWindowRanges(t *testing.T) {
	type entry struct {
		first, last int64
		n           int32
	}
	for _, tc := range []struct {
		name     string
		read     []entry
		acks     []int64 // first offsets acked
		wantNext int64
		wantIn   int
	}{
		{"nothing acked", []entry{{0, 9, 10}, {10, 14, 5}}, nil, -1, 15},
		{"first acked", []entry{{0, 9, 10}, {10, 14, 5}}, []int64{0}, 10, 5},
		{"second first holds", []entry{{0, 9, 10}, {10, 14, 5}}, []int64{10}, -1, 15},
		{"both", []entry{{0, 9, 10}, {10, 14, 5}}, []int64{10, 0}, 15, 0},
		{"gaps inside a batch", []entry{{3, 20, 4}}, []int64{3}, 21, 0},
		{"an offset inside a batch is not an entry", []entry{{0, 9, 10}}, []int64{5}, -1, 10},
		{"packed record: one offset, one slot", []entry{{7, 7, 1}, {8, 8, 1}}, []int64{7}, 8, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWindow()
			for _, e := range tc.read {
				w.addRange(e.first, e.last, e.n, 0)
			}
			for _, off := range tc.acks {
				w.ack(off, true)
			}
			if w.next != tc.wantNext || w.inFlight() != tc.wantIn {
				t.Fatalf("next, inFlight = %d, %d; want %d, %d", w.next, w.inFlight(), tc.wantNext, tc.wantIn)
			}
		})
	}
}
