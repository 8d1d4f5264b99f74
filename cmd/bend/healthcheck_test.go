package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHealthcheck(t *testing.T) {
	ready := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/healthz":
			_, _ = w.Write([]byte("ok\n"))
		case r.URL.Path == "/readyz" && ready:
			_, _ = w.Write([]byte("ready\n"))
		case r.URL.Path == "/readyz":
			http.Error(w, "not ready: consumer group not joined", http.StatusServiceUnavailable)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	for _, tc := range []struct {
		name    string
		ready   bool
		args    []string
		wantErr string
		wantOut string
	}{
		{"ready", true, nil, "", "ready"},
		{"not ready", false, nil, "503 Service Unavailable: not ready", ""},
		{"live while not ready", false, []string{"--live"}, "", "ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ready = tc.ready
			var out bytes.Buffer
			cmd := newHealthcheckCmd(&out)
			cmd.SetArgs(append([]string{"--admin", srv.URL}, tc.args...))
			cmd.SilenceUsage, cmd.SilenceErrors = true, true
			err := cmd.ExecuteContext(context.Background())
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("healthcheck: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("healthcheck error = %v, want one containing %q", err, tc.wantErr)
			}
			if !strings.Contains(out.String(), tc.wantOut) {
				t.Errorf("output %q, want %q", out.String(), tc.wantOut)
			}
		})
	}
}
