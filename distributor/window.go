package distributor

// window tracks the in-flight entries of one partition claim, in the order
// they were read, and computes the offset that may be committed: one past
// the last offset of the longest prefix of acknowledged entries. An entry is
// a batch of consecutive records read together (first to last offset), or
// one record; it is acknowledged as a whole.
//
// It is pure: no locks, no goroutines, no clock. Entries passed to add must
// strictly increase (they come from one partition's fetch stream); gaps are
// fine (compaction, transaction markers). A failed entry is never passed
// over: it holds the watermark until the claim ends (the distributor ends the
// claim at the first failure, so its records are read again).
type window struct {
	first   []int64 // read order; first[head:] are in flight; the entry's key
	last    []int64 // parallel: the entry's last offset
	n       []int32 // parallel: records the entry holds of the claim's slots
	ts      []int64 // parallel: the first record's timestamp, Unix nanoseconds
	state   []uint8 // parallel
	head    int
	held    int   // records of the entries in flight (sum of n[head:])
	next    int64 // offset to commit next; -1 until the first entry is acked
	failed  int   // entries nacked and still holding the watermark
	pending int   // entries with no outcome yet
}

const (
	pending uint8 = iota
	acked
	failed
)

func newWindow() *window { return &window{next: -1} }

// inFlight is the number of records read but not yet passed by the watermark.
func (w *window) inFlight() int { return w.held }

// add records that off, with timestamp ts (Unix nanoseconds), was read: an
// entry of one record.
func (w *window) add(off, ts int64) { w.addRange(off, off, 1, ts) }

// addRange records that the n records from first to last were read as one
// entry, the first written at ts.
func (w *window) addRange(first, last int64, n int32, ts int64) {
	if w.head > 0 && w.head >= len(w.first)/2 {
		k := copy(w.first, w.first[w.head:])
		copy(w.last, w.last[w.head:])
		copy(w.n, w.n[w.head:])
		copy(w.ts, w.ts[w.head:])
		copy(w.state, w.state[w.head:])
		w.first, w.last, w.n, w.ts, w.state, w.head = w.first[:k], w.last[:k], w.n[:k], w.ts[:k], w.state[:k], 0
	}
	w.first = append(w.first, first)
	w.last = append(w.last, last)
	w.n = append(w.n, n)
	w.ts = append(w.ts, ts)
	w.state = append(w.state, pending)
	w.held += int(n)
	w.pending++
}

// oldest returns the timestamp of the entry holding the watermark: the
// oldest one read and not yet passed. ok is false when none is in flight.
func (w *window) oldest() (ts int64, ok bool) {
	if w.head >= len(w.first) {
		return 0, false
	}
	return w.ts[w.head], true
}

// ack marks the entry whose first offset is off acknowledged (ok) or failed
// (!ok) and reports whether the commit offset moved, and where to. Unknown
// or repeated entries are ignored and reported as known=false.
func (w *window) ack(off int64, ok bool) (next int64, moved, known bool) {
	i := w.find(off)
	if i < 0 || w.state[i] != pending {
		return w.next, false, false
	}
	w.pending--
	if !ok {
		w.state[i] = failed
		w.failed++
		return w.next, false, true
	}
	w.state[i] = acked
	for w.head < len(w.first) && w.state[w.head] == acked {
		w.next = w.last[w.head] + 1
		w.held -= int(w.n[w.head])
		w.head++
		moved = true
	}
	return w.next, moved, true
}

// find returns the index of the entry starting at off among those in
// flight, or -1.
func (w *window) find(off int64) int {
	lo, hi := w.head, len(w.first)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if w.first[m] < off {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(w.first) && w.first[lo] == off {
		return lo
	}
	return -1
}
