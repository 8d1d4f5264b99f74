package distributor

// window tracks the in-flight records of one partition claim, in the order
// they were read, and computes the offset that may be committed: one past
// the highest offset below which every record has been acknowledged.
//
// It is pure: no locks, no goroutines, no clock. Offsets passed to add must
// strictly increase (they come from one partition's fetch stream); gaps are
// fine (compaction, transaction markers). A failed record is never passed
// over: it holds the watermark until the claim ends (the distributor ends the
// claim at the first failure, so the record is read again).
type window struct {
	offs    []int64 // read order; offs[head:] are in flight
	ts      []int64 // parallel to offs: record timestamps, Unix nanoseconds
	state   []uint8 // parallel to offs
	head    int
	next    int64 // offset to commit next; -1 until the first record is acked
	failed  int   // records nacked and still holding the watermark
	pending int   // records with no outcome yet
}

const (
	pending uint8 = iota
	acked
	failed
)

func newWindow() *window { return &window{next: -1} }

// inFlight is the number of records read but not yet passed by the watermark.
func (w *window) inFlight() int { return len(w.offs) - w.head }

// add records that off, with timestamp ts (Unix nanoseconds), was read.
func (w *window) add(off, ts int64) {
	if w.head > 0 && w.head >= len(w.offs)/2 {
		n := copy(w.offs, w.offs[w.head:])
		copy(w.ts, w.ts[w.head:])
		copy(w.state, w.state[w.head:])
		w.offs, w.ts, w.state, w.head = w.offs[:n], w.ts[:n], w.state[:n], 0
	}
	w.offs = append(w.offs, off)
	w.ts = append(w.ts, ts)
	w.state = append(w.state, pending)
	w.pending++
}

// oldest returns the timestamp of the record holding the watermark: the
// oldest one read and not yet passed. ok is false when none is in flight.
func (w *window) oldest() (ts int64, ok bool) {
	if w.head >= len(w.offs) {
		return 0, false
	}
	return w.ts[w.head], true
}

// ack marks off acknowledged (ok) or failed (!ok) and reports whether the
// commit offset moved, and where to. Unknown or repeated offsets are ignored
// and reported as known=false.
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
	for w.head < len(w.offs) && w.state[w.head] == acked {
		w.next = w.offs[w.head] + 1
		w.head++
		moved = true
	}
	return w.next, moved, true
}

// find returns the index of off among the in-flight records, or -1.
func (w *window) find(off int64) int {
	lo, hi := w.head, len(w.offs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if w.offs[m] < off {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(w.offs) && w.offs[lo] == off {
		return lo
	}
	return -1
}
