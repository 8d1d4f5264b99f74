package delayqueue

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr []string // substrings; nil means valid
	}{
		{"default", DefaultConfig(), nil},
		{"one item, unlimited bytes", Config{MaxItems: 1}, nil},
		{"byte limit", Config{MaxItems: 5, MaxBytes: 1 << 20}, nil},
		{"zero items", Config{MaxItems: 0}, []string{"delayqueue.max_items"}},
		{"negative items", Config{MaxItems: -3}, []string{"delayqueue.max_items", "-3"}},
		{"negative bytes", Config{MaxItems: 1, MaxBytes: -1}, []string{"delayqueue.max_bytes"}},
		{"every error", Config{MaxItems: 0, MaxBytes: -1}, []string{"delayqueue.max_items", "delayqueue.max_bytes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want error mentioning %q", tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to mention %q", err, w)
				}
			}
			if _, nerr := New[int](tc.cfg); nerr == nil || nerr.Error() != err.Error() {
				t.Errorf("New() error = %v, want %v", nerr, err)
			}
		})
	}
}

func TestDefaultConfig(t *testing.T) {
	got := DefaultConfig()
	want := Config{MaxItems: 10000, MaxBytes: 0, EarlyRelease: true}
	if got != want {
		t.Fatalf("DefaultConfig() = %+v, want %+v", got, want)
	}
}
