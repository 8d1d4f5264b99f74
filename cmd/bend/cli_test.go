package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/bendstream/bend/internal/buildinfo"
)

// TestErrorsPrintedOnce runs the CLI in-process and checks that every failing
// command exits 1 and prints its error exactly once on stderr.
func TestErrorsPrintedOnce(t *testing.T) {
	dir := t.TempDir()
	badCfg := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badCfg, []byte("enrich:\n  workers: -3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	memCfg := filepath.Join(dir, "mem.yaml")
	if err := os.WriteFile(memCfg, []byte("kafka:\n  embedded:\n    data_dir: \"\"\nadmin:\n  addr: \"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string // appears exactly once on stderr
	}{
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag", []string{"run", "--bogus"}, "unknown flag: --bogus"},
		{"unknown root flag", []string{"--bogus"}, "unknown flag: --bogus"},
		{"run with an argument", []string{"run", "extra-arg"}, `unknown command "extra-arg" for "bend run"`},
		{"version with an argument", []string{"version", "x"}, `unknown command "x" for "bend version"`},
		{"check-config invalid", []string{"check-config", "--config", badCfg}, "enrich.workers"},
		{"run invalid config", []string{"run", "--config", badCfg}, "enrich.workers"},
		{"missing config file", []string{"check-config", "--config", filepath.Join(dir, "nope.yaml")}, "no such file or directory"},
		{"status with nothing running", []string{"status", "--admin", "127.0.0.1:1"}, "is bend running?"},
		{"replay without --to", []string{"replay", "--config", memCfg}, `required flag(s) "to" not set`},
		{"replay bad --to", []string{"replay", "--config", memCfg, "--to", "yesterday"}, `--to "yesterday"`},
		{"replay without data dir", []string{"replay", "--config", memCfg, "--to", "earliest"}, "keeps no data directory"},
		{"replay --live without an admin address", []string{"replay", "--config", memCfg, "--to", "15m", "--live"}, "admin.addr is off and no --admin"},
		{"replay --admin without brokers", []string{"replay", "--config", memCfg, "--to", "15m", "--admin", "127.0.0.1:1"}, "give the running bend's embedded broker with --brokers"},
		{"replay lease below timeout", []string{"replay", "--config", memCfg, "--to", "15m", "--lease", "1s"}, "--lease 1s must be at least --timeout 30s"},
		{"firehose bad flags", []string{"firehose", "--rate", "-5"}, "--rate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := execute(tc.args, &stdout, &stderr)
			if code != 1 {
				t.Errorf("exit status %d, want 1", code)
			}
			if n := strings.Count(stderr.String(), tc.want); n != 1 {
				t.Errorf("stderr has %q %d times, want once:\n%s", tc.want, n, stderr.String())
			}
			if !strings.HasPrefix(stderr.String(), "bend: ") && !strings.Contains(stderr.String(), "level=") {
				t.Errorf("stderr does not start with \"bend: \":\n%s", stderr.String())
			}
		})
	}
}

// TestVersion checks both spellings print the build information: module
// version, commit and Go version.
func TestVersion(t *testing.T) {
	want := buildinfo.Get().String()
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var stdout, stderr bytes.Buffer
		if code := execute(args, &stdout, &stderr); code != 0 {
			t.Fatalf("bend %s: exit status %d, stderr %q", args[0], code, stderr.String())
		}
		got := strings.TrimSpace(stdout.String())
		if got != want {
			t.Errorf("bend %s printed %q, want %q", args[0], got, want)
		}
		for _, part := range []string{"commit ", runtime.Version()} {
			if !strings.Contains(got, part) {
				t.Errorf("bend %s printed %q, lacking %q", args[0], got, part)
			}
		}
	}
}

// TestBinaryPrintsErrorOnce runs the bend binary (this test binary acting as
// bend, see TestMain) as a process: an unknown command exits 1 with the error
// once on stderr, nothing on stdout.
func TestBinaryPrintsErrorOnce(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"status with nothing running", []string{"status", "--admin", "127.0.0.1:1"}, "is bend running?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(exe, tc.args...)
			cmd.Env = append(os.Environ(), "BEND_TEST_MAIN=1")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 1 {
				t.Fatalf("exit: %v, want status 1; stderr %q", err, stderr.String())
			}
			if n := strings.Count(stderr.String(), tc.want); n != 1 {
				t.Errorf("stderr has %q %d times, want once:\n%s", tc.want, n, stderr.String())
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q, want nothing", stdout.String())
			}
		})
	}
}

// TestCheckConfigWarnsUnknownEnv: a BEND_ variable naming no key is a
// warning, not an error.
func TestCheckConfigWarnsUnknownEnv(t *testing.T) {
	t.Setenv("BEND_ENRICH_WORKRES", "3")
	var stdout, stderr bytes.Buffer
	if code := execute([]string{"check-config", "--config", "../../config.yaml"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit status %d, stderr %q", code, stderr.String())
	}
	want := "BEND_ENRICH_WORKRES is set but names no configuration key; it is ignored (did you mean BEND_ENRICH_WORKERS?)"
	if n := strings.Count(stderr.String(), want); n != 1 {
		t.Errorf("stderr has the warning %d times, want once:\n%s", n, stderr.String())
	}
	if !strings.Contains(stdout.String(), "configuration OK") {
		t.Errorf("stdout %q lacks \"configuration OK\"", stdout.String())
	}
}

// TestBuiltBinary builds bend as a release does (the version linked into
// internal/buildinfo, as the Dockerfile does) and runs it: --version shows
// that version and the Go version, and an error is printed once.
func TestBuiltBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	bin := filepath.Join(t.TempDir(), "bend")
	build := exec.Command(goTool, "build", "-o", bin,
		"-ldflags", "-X github.com/bendstream/bend/internal/buildinfo.version=v9.9.9-test", ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("bend --version: %v", err)
	}
	for _, want := range []string{"bend v9.9.9-test (commit ", runtime.Version()} {
		if !strings.Contains(string(out), want) {
			t.Errorf("bend --version printed %q, lacking %q", out, want)
		}
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "run", "extra-arg")
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil {
		t.Fatal("bend run extra-arg succeeded")
	}
	if n := strings.Count(stderr.String(), `unknown command "extra-arg" for "bend run"`); n != 1 {
		t.Errorf("stderr has the error %d times, want once:\n%s", n, stderr.String())
	}
}
