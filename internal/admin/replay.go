package admin

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/bendstream/bend/internal/replay"
)

// replayRoutes adds the replay-while-running endpoints, guarded as every
// admin action is (authorized): the token is checked before the body is read.
func (s *Server) replayRoutes(mux *http.ServeMux) {
	rp, _ := s.p.(replayer)
	serve := func(h func(w http.ResponseWriter, r *http.Request, rp replayer)) http.HandlerFunc {
		return s.authorized(func(w http.ResponseWriter, r *http.Request) {
			if rp == nil {
				replayError(w, http.StatusNotImplemented, errors.New("replay: this process runs no distributor"))
				return
			}
			h(w, r, rp)
		})
	}
	mux.HandleFunc("GET /admin/replay", serve(func(w http.ResponseWriter, _ *http.Request, rp replayer) {
		replayAnswer(w, rp.ReplayStatus(), nil)
	}))
	mux.HandleFunc("POST /admin/replay/pause", serve(func(w http.ResponseWriter, r *http.Request, rp replayer) {
		var req replay.PauseRequest
		if readBody(w, r, &req) {
			a, err := rp.ReplayPause(r.Context(), req)
			replayAnswer(w, a, err)
		}
	}))
	mux.HandleFunc("POST /admin/replay/reset", serve(func(w http.ResponseWriter, r *http.Request, rp replayer) {
		var req replay.ResetRequest
		if readBody(w, r, &req) {
			a, err := rp.ReplayReset(req)
			replayAnswer(w, a, err)
		}
	}))
	mux.HandleFunc("POST /admin/replay/resume", serve(func(w http.ResponseWriter, r *http.Request, rp replayer) {
		var req replay.ResumeRequest
		if readBody(w, r, &req) {
			a, err := rp.ReplayResume(req)
			replayAnswer(w, a, err)
		}
	}))
}

// readBody decodes r's JSON body (at most maxBodyBytes, no unknown fields)
// into v, or answers 400 or 413 and returns false.
func readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		code := http.StatusBadRequest
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			code = http.StatusRequestEntityTooLarge
		}
		replayError(w, code, err)
		return false
	}
	return true
}

// ReplayError is the body of a replay endpoint's error answer.
type ReplayError struct {
	Error string `json:"error"`
}

// replayAnswer writes a as JSON, or err with its status: 409 for a pause
// held by another replay, a replay not holding the pause or a partition
// not owned; 503 for a drain that did not finish; 500 otherwise.
func replayAnswer(w http.ResponseWriter, a any, err error) {
	if err != nil {
		code := http.StatusInternalServerError
		switch {
		case errors.Is(err, replay.ErrBusy), errors.Is(err, replay.ErrNotPaused), errors.Is(err, replay.ErrNotOwned):
			code = http.StatusConflict
		case errors.Is(err, replay.ErrDrain):
			code = http.StatusServiceUnavailable
		}
		replayError(w, code, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(a)
}

func replayError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(ReplayError{Error: err.Error()})
}
