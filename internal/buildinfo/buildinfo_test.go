package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestGet(t *testing.T) {
	i := Get()
	if i.Version == "" || i.Commit == "" {
		t.Fatalf("Get() = %+v, want a version and a commit (or their placeholders)", i)
	}
	if i.GoVersion != runtime.Version() {
		t.Errorf("GoVersion = %q, want %q", i.GoVersion, runtime.Version())
	}
	if s := i.String(); !strings.HasPrefix(s, "bend "+i.Version+" (commit "+i.Commit) || !strings.HasSuffix(s, i.GoVersion) {
		t.Errorf("String() = %q", s)
	}
}

func TestStringModified(t *testing.T) {
	got := Info{Version: "v1.0.0", Commit: "abc", Modified: true, GoVersion: "go1.26.8"}.String()
	if want := "bend v1.0.0 (commit abc, modified) go1.26.8"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
