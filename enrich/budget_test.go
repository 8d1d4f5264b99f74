package enrich

import (
	"strings"
	"testing"
	"time"
)

func TestValidateBudget(t *testing.T) {
	spec := func(required bool, timeout, backoff time.Duration, attempts int) Spec {
		return Spec{Name: "lookup", Type: "lookup", Lookup: LookupOptions{URL: "http://127.0.0.1:1/{id}"}, Required: required, Timeout: timeout, Backoff: backoff, MaxAttempts: attempts}
	}
	for _, tc := range []struct {
		name    string
		spec    Spec
		delay   time.Duration
		wantErr string
	}{
		{"defaults fit the default delay", Spec{Name: "stats"}, 2 * time.Second, ""},
		{"timeout equal to the delay", spec(false, 2*time.Second, 100*time.Millisecond, 3), 2 * time.Second, ""},
		{"timeout past the delay", spec(false, 3*time.Second, 100*time.Millisecond, 1), 2 * time.Second, "enrich.enrichers[0].timeout"},
		{"an instant enricher's timeout does not count", Spec{Name: "stats", Timeout: 3 * time.Second}, 200 * time.Millisecond, ""},
		{"backoff past the delay", spec(false, time.Second, 2*time.Second, 2), 2 * time.Second, "enrich.enrichers[0].backoff"},
		{"long backoff with one attempt", spec(false, time.Second, 5*time.Second, 1), 2 * time.Second, ""},
		{"required may hold past the delay", spec(true, 5*time.Second, 5*time.Second, 3), 2 * time.Second, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Config{Enrichers: []Spec{tc.spec}}.ValidateBudget(tc.delay)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("ValidateBudget = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("ValidateBudget = %v, want an error naming %s", err, tc.wantErr)
			}
		})
	}
}
