package admin

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bendstream/bend/internal/replay"
	metrics "github.com/rcrowley/go-metrics"
)

// fakeReplayer records the replay requests it gets and answers err.
type fakeReplayer struct {
	bare
	calls []string
	err   error
}

func (f *fakeReplayer) ReplayPause(_ context.Context, req replay.PauseRequest) (replay.PauseAnswer, error) {
	f.calls = append(f.calls, "pause "+req.ID)
	return replay.PauseAnswer{MemberID: "m1", Partitions: []replay.Partition{{Topic: "in", Partition: 2, Offset: 40}}}, f.err
}

func (f *fakeReplayer) ReplayReset(req replay.ResetRequest) (replay.ResetAnswer, error) {
	f.calls = append(f.calls, fmt.Sprintf("reset %s %v", req.ID, req.Offsets))
	return replay.ResetAnswer{Reset: req.Offsets}, f.err
}

func (f *fakeReplayer) ReplayResume(req replay.ResumeRequest) (replay.ResumeAnswer, error) {
	f.calls = append(f.calls, "resume "+req.ID)
	return replay.ResumeAnswer{Rejoined: true}, f.err
}

func (f *fakeReplayer) ReplayStatus() replay.Status { return replay.Status{} }

func post(h http.Handler, path, auth, body string) (int, string) {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// TestReplayEndpoints: the replay endpoints need the token (checked before
// the body is read), decode strictly, bound the body and map the
// replayer's errors to statuses.
func TestReplayEndpoints(t *testing.T) {
	const auth = "Bearer r3play"
	for _, tc := range []struct {
		name, path, auth, body string
		err                    error
		wantCode               int
		wantBody, wantCall     string
	}{
		{"pause", "/admin/replay/pause", auth, `{"id":"x","lease_ms":5000}`, nil, 200, `"member_id":"m1"`, "pause x"},
		{"reset", "/admin/replay/reset", auth, `{"id":"x","offsets":[{"topic":"in","partition":2,"offset":7}]}`, nil, 200, `"offset":7`, "reset x [{in 2 7}]"},
		{"resume", "/admin/replay/resume", auth, `{"id":"x"}`, nil, 200, `"rejoined":true`, "resume x"},
		{"no token", "/admin/replay/pause", "", `{"id":"x"}`, nil, 401, "unauthorized", ""},
		{"wrong token", "/admin/replay/pause", "Bearer nope", `{"id":"x"}`, nil, 401, "unauthorized", ""},
		{"unknown field", "/admin/replay/pause", auth, `{"id":"x","bogus":1}`, nil, 400, "bogus", ""},
		{"not JSON", "/admin/replay/resume", auth, `resume!`, nil, 400, "error", ""},
		{"too big", "/admin/replay/reset", auth, `{"id":"` + strings.Repeat("x", maxBodyBytes) + `"}`, nil, 413, "error", ""},
		{"busy", "/admin/replay/pause", auth, `{"id":"y"}`, replay.ErrBusy, 409, "another replay", "pause y"},
		{"not paused", "/admin/replay/resume", auth, `{"id":"y"}`, replay.ErrNotPaused, 409, "not paused", "resume y"},
		{"not owned", "/admin/replay/reset", auth, `{"id":"y","offsets":[]}`, fmt.Errorf("%w: [in/3]", replay.ErrNotOwned), 409, "in/3", "reset y []"},
		{"drain", "/admin/replay/pause", auth, `{"id":"y"}`, replay.ErrDrain, 503, "in flight", "pause y"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeReplayer{err: tc.err}
			s, err := Start(Config{Token: "r3play"}, metrics.NewRegistry(), f, nil, quietLog())
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			code, body := post(s.Handler(), tc.path, tc.auth, tc.body)
			if code != tc.wantCode || !strings.Contains(body, tc.wantBody) {
				t.Errorf("POST %s = %d %q, want %d with %q", tc.path, code, body, tc.wantCode, tc.wantBody)
			}
			got := strings.Join(f.calls, "; ")
			if got != tc.wantCall {
				t.Errorf("replayer calls %q, want %q", got, tc.wantCall)
			}
		})
	}
}

// TestReplayWithoutDistributor: a pipeline without the replay methods
// answers 501.
func TestReplayWithoutDistributor(t *testing.T) {
	s, err := Start(Config{}, metrics.NewRegistry(), bare{}, nil, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if code, body := post(s.Handler(), "/admin/replay/pause", "", `{"id":"x"}`); code != http.StatusNotImplemented {
		t.Errorf("pause without a distributor = %d %q, want 501", code, body)
	}
	if code, _ := get(t, s.Handler(), http.MethodGet, "/admin/replay"); code != http.StatusNotImplemented {
		t.Errorf("GET /admin/replay without a distributor = %d, want 501", code)
	}
}
