// Package replay holds the messages of a replay while running: the
// requests `bend replay --live` sends to the admin API of every running
// instance of a consumer group (POST /admin/replay/{pause,reset,resume})
// and their answers. The distributor implements the instance side, the
// admin server carries them as JSON, cmd/bend drives the three phases.
package replay

import "errors"

// Partition is one input partition and an offset: the watermark (next
// offset to commit) in a pause's answer, the target in a reset.
type Partition struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// PauseRequest asks an instance to stop reading, drain and commit.
type PauseRequest struct {
	// ID names the replay; every later request carries it.
	ID string `json:"id"`
	// LeaseMillis is how long the instance stays paused without hearing
	// from the replay again (each request renews it); when it expires the
	// instance resumes on its own. 0 means the instance's default (30 s).
	LeaseMillis int64 `json:"lease_ms"`
}

// PauseAnswer is what a paused instance owns: every claim it holds, drained
// (every record read was acknowledged) and committed at its watermark.
type PauseAnswer struct {
	MemberID     string      `json:"member_id"`
	GenerationID int32       `json:"generation_id"`
	Partitions   []Partition `json:"partitions"`
	// DrainMillis is how long the drain took.
	DrainMillis int64 `json:"drain_ms"`
}

// ResetRequest gives a paused instance the target offsets of its partitions.
type ResetRequest struct {
	ID      string      `json:"id"`
	Offsets []Partition `json:"offsets"`
}

// ResetAnswer lists the partitions whose offsets were committed.
type ResetAnswer struct {
	Reset []Partition `json:"reset"`
}

// ResumeRequest ends a pause. After a reset the instance ends its group
// session and rejoins, so every claim restarts from the committed (reset)
// offsets; without one it reads on from where it stopped.
type ResumeRequest struct {
	ID string `json:"id"`
}

// ResumeAnswer says whether the instance rejoined the group.
type ResumeAnswer struct {
	Rejoined bool `json:"rejoined"`
}

// Status is an instance's replay state (GET /admin/replay).
type Status struct {
	Paused bool   `json:"paused"`
	ID     string `json:"id,omitempty"`
	Reset  bool   `json:"reset"`
	// LeaseLeftMillis is the time until the pause expires.
	LeaseLeftMillis int64 `json:"lease_left_ms,omitempty"`
}

// Errors an instance answers with; the admin server maps them to HTTP
// statuses (409 for the first three, 503 for ErrDrain).
var (
	// ErrBusy: another replay holds the pause.
	ErrBusy = errors.New("replay: another replay is in progress")
	// ErrNotPaused: reset or resume for a replay that does not hold the
	// pause (never paused, resumed, or its lease expired).
	ErrNotPaused = errors.New("replay: not paused by this replay")
	// ErrNotOwned: a reset names a partition this instance does not own.
	ErrNotOwned = errors.New("replay: partition not owned by this instance")
	// ErrDrain: the records in flight were not all acknowledged within
	// distributor.drain_timeout; the instance resumed.
	ErrDrain = errors.New("replay: records in flight not acknowledged in time")
)
