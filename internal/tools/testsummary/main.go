// Command testsummary reads `go test -json` on stdin and prints a bounded
// report: the output of failing tests (and of packages that failed outside a
// test, such as build failures or a panic in TestMain), one status line per
// package as it finishes, and a closing summary line
//
//	N passed, N failed, N skipped
//
// Subtests count as tests. A package that failed with no failing test in it
// (build failure, TestMain, a crash outside tests) counts as one failed test,
// so the summary never says "0 failed" for a broken run. It exits 1 if any
// test failed, a package failed, or the build failed (build-fail or
// build-output events), and 0 otherwise.
// Lines on stdin that are not JSON (go command messages) are echoed.
//
// Usage (from the repository root):
//
//	go test -json ./... 2>&1 | go run ./internal/tools/testsummary [-label 'tier embedded'] [-max-lines 300]
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json), including the build
// events that go test emits since Go 1.24.
type event struct {
	Action      string
	Package     string
	Test        string
	Elapsed     float64
	Output      string
	ImportPath  string
	FailedBuild string
}

type testKey struct{ pkg, test string }

type testState struct {
	output []string
	done   bool
}

// summary accumulates the state of one `go test -json` stream.
type summary struct {
	maxLines int
	out      io.Writer

	passed, failed, skipped int
	broken                  bool // a package or the build failed

	tests    map[testKey]*testState
	pkgFails map[string]int // failed tests per package
	order    []testKey
	pkgOut   map[string][]string // package-level output (no Test)
	pkgOrder []string
	pkgSeen  map[string]bool
	buildOut map[string][]string // build-output by import path
}

func newSummary(out io.Writer, maxLines int) *summary {
	return &summary{
		maxLines: maxLines,
		out:      out,
		tests:    map[testKey]*testState{},
		pkgFails: map[string]int{},
		pkgOut:   map[string][]string{},
		pkgSeen:  map[string]bool{},
		buildOut: map[string][]string{},
	}
}

func (s *summary) test(k testKey) *testState {
	t := s.tests[k]
	if t == nil {
		t = &testState{}
		s.tests[k] = t
		s.order = append(s.order, k)
	}
	return t
}

// line handles one input line.
func (s *summary) line(raw string) {
	trimmed := strings.TrimSpace(raw)
	if trimmed == "" {
		return
	}
	var e event
	if !strings.HasPrefix(trimmed, "{") || json.Unmarshal([]byte(trimmed), &e) != nil {
		// Not a test2json event: go command output (downloads, errors before tests ran).
		fmt.Fprintln(s.out, raw)
		return
	}
	switch e.Action {
	case "build-output":
		s.broken = true
		s.buildOut[e.ImportPath] = append(s.buildOut[e.ImportPath], e.Output)
		return
	case "build-fail":
		s.broken = true
		s.printBlock("=== build failed: "+e.ImportPath, s.buildOut[e.ImportPath])
		delete(s.buildOut, e.ImportPath)
		return
	}
	if e.Package != "" && !s.pkgSeen[e.Package] {
		s.pkgSeen[e.Package] = true
		s.pkgOrder = append(s.pkgOrder, e.Package)
	}
	if e.Test == "" {
		s.packageEvent(e)
		return
	}
	k := testKey{e.Package, e.Test}
	t := s.test(k)
	switch e.Action {
	case "output":
		t.output = append(t.output, e.Output)
	case "pass":
		if !t.done {
			t.done = true
			s.passed++
		}
		t.output = nil
	case "skip":
		if !t.done {
			t.done = true
			s.skipped++
		}
		t.output = nil
	case "fail":
		if !t.done {
			t.done = true
			s.failed++
			s.pkgFails[k.pkg]++
		}
		s.printTest(k, t, e.Elapsed)
		t.output = nil
	}
}

func (s *summary) packageEvent(e event) {
	switch e.Action {
	case "output":
		s.pkgOut[e.Package] = append(s.pkgOut[e.Package], e.Output)
	case "pass":
		fmt.Fprintf(s.out, "  pass  %s (%.2fs)\n", e.Package, e.Elapsed)
		delete(s.pkgOut, e.Package)
	case "skip":
		fmt.Fprintf(s.out, "  none  %s (no test files)\n", e.Package)
		delete(s.pkgOut, e.Package)
	case "fail":
		s.broken = true
		if e.FailedBuild != "" {
			fmt.Fprintf(s.out, "  FAIL  %s (build failed: %s)\n", e.Package, e.FailedBuild)
		} else {
			fmt.Fprintf(s.out, "  FAIL  %s (%.2fs)\n", e.Package, e.Elapsed)
		}
		// Tests that started but never finished (panic, timeout, os.Exit) failed too.
		for _, k := range s.order {
			if t := s.tests[k]; k.pkg == e.Package && !t.done {
				t.done = true
				s.failed++
				s.pkgFails[k.pkg]++
				s.printTest(k, t, 0)
			}
		}
		header := fmt.Sprintf("=== package %s failed; its output outside tests:", e.Package)
		if s.pkgFails[e.Package] == 0 {
			s.failed++ // failed with no failing test: count the package itself
			header = fmt.Sprintf("=== package %s failed outside any test (counted as 1 failed); its output:", e.Package)
		}
		s.printBlock(header, s.pkgOut[e.Package])
		delete(s.pkgOut, e.Package)
	}
}

func (s *summary) printTest(k testKey, t *testState, elapsed float64) {
	s.printBlock(fmt.Sprintf("=== FAIL %s %s (%.2fs)", k.pkg, k.test, elapsed), t.output)
}

// printBlock prints a header and the last maxLines lines of out.
func (s *summary) printBlock(header string, out []string) {
	fmt.Fprintln(s.out, header)
	text := strings.Join(out, "")
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return
	}
	if s.maxLines > 0 && len(lines) > s.maxLines {
		fmt.Fprintf(s.out, "    ... %d earlier lines omitted ...\n", len(lines)-s.maxLines)
		lines = lines[len(lines)-s.maxLines:]
	}
	for _, l := range lines {
		fmt.Fprintln(s.out, "    "+l)
	}
}

// finish prints build output and the summary line, and
// reports whether everything passed.
func (s *summary) finish(label string) bool {
	paths := make([]string, 0, len(s.buildOut))
	for p := range s.buildOut {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		name := p
		if name == "" {
			name = "(unknown package)"
		}
		s.printBlock("=== build output for "+name+" (no build-fail event followed):", s.buildOut[p])
	}
	prefix := ""
	if label != "" {
		prefix = label + ": "
	}
	fmt.Fprintf(s.out, "%s%d passed, %d failed, %d skipped\n", prefix, s.passed, s.failed, s.skipped)
	return s.failed == 0 && !s.broken
}

func run(in io.Reader, out io.Writer, label string, maxLines int) (bool, error) {
	s := newSummary(out, maxLines)
	r := bufio.NewReaderSize(in, 1<<20)
	for {
		l, err := r.ReadString('\n')
		if l != "" {
			s.line(strings.TrimRight(l, "\r\n"))
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			s.finish(label)
			return false, err
		}
	}
	return s.finish(label), nil
}

func main() {
	label := flag.String("label", "", "prefix for the summary line, e.g. 'tier embedded'")
	maxLines := flag.Int("max-lines", 300, "print at most this many trailing output lines per failing test (0: all)")
	flag.Parse()
	ok, err := run(os.Stdin, os.Stdout, *label, *maxLines)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}
