// Package buildinfo reports what the running binary was built from: the
// module version, the VCS commit and the Go version, read once from the
// build information the Go toolchain embeds (runtime/debug.ReadBuildInfo).
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"sync"
)

// Info describes the build of the running binary.
type Info struct {
	// Version is the main module's version ("v1.2.3", a pseudo-version, or
	// "(devel)" for a build from a work tree), or the value linked in with
	// -ldflags "-X github.com/bendstream/bend/internal/buildinfo.version=...".
	Version string
	// Commit is the VCS revision the binary was built from ("unknown" when
	// the toolchain recorded none, as with `go run` outside a checkout), or
	// the value linked in with -X github.com/bendstream/bend/internal/buildinfo.commit=....
	Commit string
	// Modified reports uncommitted changes in the work tree at build time.
	Modified bool
	// GoVersion is the Go toolchain that built the binary.
	GoVersion string
}

// version and commit, when set at link time (the Docker build does, since
// its context has no VCS data), override the module version and the VCS
// revision.
var version, commit string

var (
	once sync.Once
	info Info
)

// Get returns the build information of the running binary. Safe for
// concurrent use; the result never changes during the process's life.
func Get() Info {
	once.Do(func() { info = read() })
	return info
}

func read() Info {
	i := Info{Version: "(devel)", Commit: "unknown", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		if v := bi.Main.Version; v != "" {
			i.Version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				i.Commit = s.Value
			case "vcs.modified":
				i.Modified = s.Value == "true"
			}
		}
		if bi.GoVersion != "" {
			i.GoVersion = bi.GoVersion
		}
	}
	if version != "" {
		i.Version = version
	}
	if commit != "" && commit != "unknown" {
		i.Commit = commit
	}
	return i
}

// String formats the information as one line: "bend VERSION (commit COMMIT[, modified]) GOVERSION".
func (i Info) String() string {
	s := "bend " + i.Version + " (commit " + i.Commit
	if i.Modified {
		s += ", modified"
	}
	return s + ") " + i.GoVersion
}
