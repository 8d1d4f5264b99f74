package distributor

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/replay"
)

// DefaultReplayLease is how long a replay's pause lasts without hearing
// from the replay again, when its request names no lease.
const DefaultReplayLease = 30 * time.Second

// replayState is the instance side of a replay while running (see
// ReplayPause): the intake gate, the pause that holds it and its lease.
//
// The gate is checked once per record by the read loop, with one atomic
// load: gate is nil while reading is open; while paused it holds a
// channel closed at resume. Each claim's busy flag is set before the gate
// is read and cleared after handle returns, so a pause that finds every
// claim not busy, after closing the gate, knows that no record can be
// handled (tracked) any more until it resumes: both sides use sequentially
// consistent atomics (store busy, load gate; store gate, load busy).
type replayState struct {
	gate atomic.Pointer[chan struct{}]

	mu       sync.Mutex
	id       string // the replay holding the pause; "" when not paused
	reset    bool   // offsets were reset: resuming ends the group session
	lease    *leaseTimer
	deadline time.Time
	// endSession ends the current consumer-group session (consume sets it
	// per session), so that the next one starts every claim from the
	// committed offsets.
	endSession context.CancelFunc
	sess       sarama.ConsumerGroupSession // the latest session set up
}

// enter is called by a claim's read loop before it handles a record m
// received from msgs. It returns true at once while reading is open, and
// after a pause that left the claim as it was. It returns false, and m
// must not be handled (the claim ends; the partition is read again from
// the committed offset), when ctx ends, the claim was reset, or a
// rebalance happened during the pause. The caller clears cs.busy after
// handle.
//
// While paused the claim does not receive, so m and what sarama fetched
// after it wait. But sarama tells a claim it is revoked only by closing
// msgs, and waits for its return up to the rebalance timeout before ending
// the whole session; so when the session's generation changes during the
// pause (a rebalance), the claim starts receiving and dropping records,
// to see msgs close at once if it is revoked. A claim that dropped records
// ends at the resume, which ends the session: the next one reads them again.
func (r *replayState) enter(ctx context.Context, cs *claimState, msgs <-chan *sarama.ConsumerMessage) bool {
	for {
		cs.busy.Store(true)
		g := r.gate.Load()
		if g == nil {
			return true
		}
		cs.busy.Store(false)
		if !r.wait(ctx, cs, *g, msgs) {
			return false
		}
	}
}

// wait waits out one pause (gate closes at its end); see enter.
func (r *replayState) wait(ctx context.Context, cs *claimState, gate <-chan struct{}, msgs <-chan *sarama.ConsumerMessage) bool {
	gen := cs.sess.GenerationID()
	tk := time.NewTicker(50 * time.Millisecond)
	defer tk.Stop()
	var drop <-chan *sarama.ConsumerMessage // msgs, once a rebalance happened
	for {
		select {
		case <-gate:
			return ctx.Err() == nil && !cs.isFenced() && drop == nil
		case <-ctx.Done():
			return false
		case <-tk.C:
			if drop == nil && cs.sess.GenerationID() != gen {
				drop = msgs
			}
		case _, ok := <-drop:
			if !ok { // revoked during the pause
				return false
			}
		}
	}
}

// setSession notes the session a new group session runs under and how to
// end it.
func (r *replayState) setSession(end context.CancelFunc) {
	r.mu.Lock()
	r.endSession = end
	r.mu.Unlock()
}

// setup notes the session sarama set up (handler.Setup).
func (r *replayState) setup(sess sarama.ConsumerGroupSession) {
	r.mu.Lock()
	r.sess = sess
	r.mu.Unlock()
}

// ReplayPause starts (or, for the replay already holding it, renews) a
// replay's pause: every claim stops reading before its next record, the
// records in flight get up to distributor.drain_timeout to be acknowledged,
// the marks are committed, and the answer lists every claim with its
// watermark. The pause lasts until ReplayResume or until the lease
// (DefaultReplayLease when 0) passes without another request of the
// replay; then the instance resumes on its own. If the drain does not
// finish, or ctx ends first, the instance resumes and ReplayPause returns
// an error wrapping replay.ErrDrain (or ctx's). Another replay holding the
// pause gives replay.ErrBusy. Safe for concurrent use.
func (d *Distributor) ReplayPause(ctx context.Context, req replay.PauseRequest) (replay.PauseAnswer, error) {
	if req.ID == "" {
		return replay.PauseAnswer{}, fmt.Errorf("%w: the request names no replay id", replay.ErrNotPaused)
	}
	lease := time.Duration(req.LeaseMillis) * time.Millisecond
	if lease <= 0 {
		lease = DefaultReplayLease
	}
	r := &d.rp
	r.mu.Lock()
	switch r.id {
	case "":
		r.id, r.reset = req.ID, false
		g := make(chan struct{})
		r.gate.Store(&g)
		d.replayPaused.Update(1)
		d.log.WithField("replay", req.ID).Info("replay: pausing intake to drain")
	case req.ID:
	default:
		held := r.id
		r.mu.Unlock()
		return replay.PauseAnswer{}, fmt.Errorf("%w (%s)", replay.ErrBusy, held)
	}
	r.renewLocked(d, lease)
	r.mu.Unlock()

	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, d.cfg.DrainTimeout)
	defer cancel()
	if err := d.drainPaused(dctx); err != nil {
		d.log.WithError(err).WithField("replay", req.ID).Warn("replay: drain did not finish; resuming")
		_, _ = d.ReplayResume(replay.ResumeRequest{ID: req.ID})
		if ctx.Err() != nil {
			return replay.PauseAnswer{}, ctx.Err()
		}
		return replay.PauseAnswer{}, fmt.Errorf("%w within distributor.drain_timeout (%s): %v", replay.ErrDrain, d.cfg.DrainTimeout, err)
	}
	a := replay.PauseAnswer{DrainMillis: time.Since(start).Milliseconds()}
	for _, sess := range d.commitClaims() {
		a.MemberID, a.GenerationID = sess.MemberID(), sess.GenerationID()
	}
	r.mu.Lock()
	if a.MemberID == "" && r.sess != nil {
		a.MemberID, a.GenerationID = r.sess.MemberID(), r.sess.GenerationID()
	}
	held := r.id == req.ID
	r.mu.Unlock()
	if !held { // the lease expired during the drain
		return replay.PauseAnswer{}, fmt.Errorf("%w: the lease expired during the drain", replay.ErrNotPaused)
	}
	d.claimsMu.Lock()
	for cs := range d.claims {
		if cs.isFenced() {
			continue
		}
		a.Partitions = append(a.Partitions, replay.Partition{Topic: cs.topic, Partition: cs.partition, Offset: cs.position()})
	}
	d.claimsMu.Unlock()
	slices.SortFunc(a.Partitions, func(x, y replay.Partition) int {
		if x.Topic != y.Topic {
			if x.Topic < y.Topic {
				return -1
			}
			return 1
		}
		return int(x.Partition - y.Partition)
	})
	return a, nil
}

// drainPaused waits until no claim is handling a record and none has a
// record in flight. It polls: a pause is rare, and the claims' changed
// channels belong to their own drains.
func (d *Distributor) drainPaused(ctx context.Context) error {
	tk := time.NewTicker(10 * time.Millisecond)
	defer tk.Stop()
	for {
		idle := true
		d.claimsMu.Lock()
		for cs := range d.claims {
			// busy before inFlight: see replayState.
			if cs.busy.Load() || cs.inFlight() > 0 {
				idle = false
				break
			}
		}
		d.claimsMu.Unlock()
		if idle {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d records in flight", d.InFlight())
		case <-tk.C:
		}
	}
}

// commitClaims commits the marks of every session a claim runs in
// (synchronously) and returns those sessions.
func (d *Distributor) commitClaims() []sarama.ConsumerGroupSession {
	var sessions []sarama.ConsumerGroupSession
	d.claimsMu.Lock()
	for cs := range d.claims {
		if !slices.Contains(sessions, cs.sess) {
			sessions = append(sessions, cs.sess)
		}
	}
	d.claimsMu.Unlock()
	for _, s := range sessions {
		s.Commit()
	}
	return sessions
}

// ReplayReset commits the target offsets of a paused replay's partitions
// (moving them backward or forward) and fences those claims: nothing
// they read before can move their offsets again. Reading stays paused;
// ReplayResume then ends the group session so that every claim starts
// again from the committed offsets. Every partition must be owned by this
// instance, else nothing is reset and the error wraps replay.ErrNotOwned.
// It renews the lease. Safe for concurrent use.
func (d *Distributor) ReplayReset(req replay.ResetRequest) (replay.ResetAnswer, error) {
	r := &d.rp
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.id == "" || r.id != req.ID {
		return replay.ResetAnswer{}, replay.ErrNotPaused
	}
	r.renewLocked(d, r.lease.leaseLen)
	owned := map[topicPartition]*claimState{}
	d.claimsMu.Lock()
	for cs := range d.claims {
		if !cs.isFenced() {
			owned[topicPartition{cs.topic, cs.partition}] = cs
		}
	}
	d.claimsMu.Unlock()
	var missing []string
	for _, p := range req.Offsets {
		if owned[topicPartition{p.Topic, p.Partition}] == nil {
			missing = append(missing, fmt.Sprintf("%s/%d", p.Topic, p.Partition))
		}
	}
	if len(missing) > 0 {
		return replay.ResetAnswer{}, fmt.Errorf("%w: %v", replay.ErrNotOwned, missing)
	}
	var a replay.ResetAnswer
	var sessions []sarama.ConsumerGroupSession
	for _, p := range req.Offsets {
		cs := owned[topicPartition{p.Topic, p.Partition}]
		// Fence first: no acknowledgement can mark past the target after
		// it is set (the claim was drained, so none is expected).
		cs.fence()
		// ResetOffset only moves back, MarkOffset only forward.
		cs.sess.ResetOffset(p.Topic, p.Partition, p.Offset, "bend replay "+req.ID)
		cs.sess.MarkOffset(p.Topic, p.Partition, p.Offset, "bend replay "+req.ID)
		if !slices.Contains(sessions, cs.sess) {
			sessions = append(sessions, cs.sess)
		}
		a.Reset = append(a.Reset, p)
	}
	for _, s := range sessions {
		s.Commit()
	}
	if len(a.Reset) > 0 {
		r.reset = true
		d.replays.Inc(int64(len(a.Reset)))
	}
	d.log.WithField("replay", req.ID).WithField("partitions", len(a.Reset)).Info("replay: offsets reset")
	return a, nil
}

// ReplayResume ends a replay's pause. After a reset it first ends the
// current group session: its claims return, sarama rejoins the group, and
// the new claims start from the committed (reset) offsets. Without a reset
// the claims read on from where they stopped. The pause must be held by
// req.ID, else replay.ErrNotPaused. Safe for concurrent use.
func (d *Distributor) ReplayResume(req replay.ResumeRequest) (replay.ResumeAnswer, error) {
	r := &d.rp
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.id == "" || r.id != req.ID {
		return replay.ResumeAnswer{}, replay.ErrNotPaused
	}
	return r.resumeLocked(d), nil
}

// ReplayStatus reports whether a replay holds the pause. Safe for
// concurrent use.
func (d *Distributor) ReplayStatus() replay.Status {
	r := &d.rp
	r.mu.Lock()
	defer r.mu.Unlock()
	s := replay.Status{Paused: r.id != "", ID: r.id, Reset: r.reset}
	if s.Paused {
		s.LeaseLeftMillis = max(time.Until(r.deadline).Milliseconds(), 0)
	}
	return s
}

// resumeLocked ends the pause; r.mu is held.
func (r *replayState) resumeLocked(d *Distributor) replay.ResumeAnswer {
	if r.lease != nil {
		r.lease.Stop()
		r.lease = nil
	}
	// End the session before opening the gate, so that no claim reads on
	// from its old position after its offset was reset.
	a := replay.ResumeAnswer{Rejoined: r.reset && r.endSession != nil}
	if a.Rejoined {
		r.endSession()
	}
	d.log.WithField("replay", r.id).WithField("reset", r.reset).Info("replay: resuming intake")
	r.id, r.reset = "", false
	if g := r.gate.Swap(nil); g != nil {
		close(*g)
	}
	d.replayPaused.Update(0)
	return a
}

// renewLocked (re)starts the pause's lease; r.mu is held.
func (r *replayState) renewLocked(d *Distributor, lease time.Duration) {
	if r.lease != nil {
		r.lease.Stop()
	}
	id := r.id
	r.deadline = time.Now().Add(lease)
	t := &leaseTimer{leaseLen: lease}
	t.Timer = time.AfterFunc(lease, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.id != id || r.lease != t {
			return
		}
		d.log.WithField("replay", id).WithField("lease", lease.String()).
			Warn("replay: the pause's lease expired without a resume; resuming on its own")
		r.resumeLocked(d)
	})
	r.lease = t
}

// leaseTimer is a pause's lease timer and its length, for renewals.
type leaseTimer struct {
	*time.Timer
	leaseLen time.Duration
}
