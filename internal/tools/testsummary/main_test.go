package main

import (
	"strings"
	"testing"
)

// Event lines as `go test -json` (Go 1.26) writes them, trimmed of Time.
const (
	passA = `{"Action":"run","Package":"p/a","Test":"TestA"}
{"Action":"output","Package":"p/a","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"output","Package":"p/a","Test":"TestA","Output":"--- PASS: TestA (0.00s)\n"}
{"Action":"pass","Package":"p/a","Test":"TestA","Elapsed":0}
`
	skipB = `{"Action":"run","Package":"p/a","Test":"TestB"}
{"Action":"output","Package":"p/a","Test":"TestB","Output":"    a_test.go:9: needs a real broker\n"}
{"Action":"skip","Package":"p/a","Test":"TestB","Elapsed":0}
`
	failC = `{"Action":"run","Package":"p/a","Test":"TestC"}
{"Action":"output","Package":"p/a","Test":"TestC","Output":"=== RUN   TestC\n"}
{"Action":"output","Package":"p/a","Test":"TestC","Output":"    a_test.go:12: boom happened\n"}
{"Action":"output","Package":"p/a","Test":"TestC","Output":"--- FAIL: TestC (0.00s)\n"}
{"Action":"fail","Package":"p/a","Test":"TestC","Elapsed":0}
`
	pkgPass = `{"Action":"output","Package":"p/a","Output":"ok  \tp/a\t0.01s\n"}
{"Action":"pass","Package":"p/a","Elapsed":0.01}
`
	pkgFail = `{"Action":"output","Package":"p/a","Output":"FAIL\tp/a\t0.01s\n"}
{"Action":"fail","Package":"p/a","Elapsed":0.01}
`
	noTests = `{"Action":"output","Package":"p/none","Output":"?   \tp/none\t[no test files]\n"}
{"Action":"skip","Package":"p/none","Elapsed":0}
`
	subtests = `{"Action":"run","Package":"p/s","Test":"TestS"}
{"Action":"run","Package":"p/s","Test":"TestS/ok"}
{"Action":"pass","Package":"p/s","Test":"TestS/ok","Elapsed":0}
{"Action":"run","Package":"p/s","Test":"TestS/bad"}
{"Action":"output","Package":"p/s","Test":"TestS/bad","Output":"    s_test.go:6: sub boom\n"}
{"Action":"fail","Package":"p/s","Test":"TestS/bad","Elapsed":0}
{"Action":"fail","Package":"p/s","Test":"TestS","Elapsed":0}
{"Action":"fail","Package":"p/s","Elapsed":0.01}
`
	buildFail = `{"ImportPath":"p/b [p/b.test]","Action":"build-output","Output":"# p/b [p/b.test]\n"}
{"ImportPath":"p/b [p/b.test]","Action":"build-output","Output":"b/b_test.go:3:44: cannot use \"s\" as int value\n"}
{"ImportPath":"p/b [p/b.test]","Action":"build-fail"}
{"Action":"output","Package":"p/b","Output":"FAIL\tp/b [build failed]\n"}
{"Action":"fail","Package":"p/b","Elapsed":0,"FailedBuild":"p/b [p/b.test]"}
`
	timeout = `{"Action":"run","Package":"p/t","Test":"TestQuick"}
{"Action":"pass","Package":"p/t","Test":"TestQuick","Elapsed":0}
{"Action":"run","Package":"p/t","Test":"TestHang"}
{"Action":"output","Package":"p/t","Test":"TestHang","Output":"panic: test timed out after 2s\n"}
{"Action":"fail","Package":"p/t","Elapsed":3.7}
`
	mainFail = `{"Action":"output","Package":"p/m","Output":"TestMain could not set up: no broker\n"}
{"Action":"output","Package":"p/m","Output":"FAIL\tp/m\t0.01s\n"}
{"Action":"fail","Package":"p/m","Elapsed":0.01}
`
	lonelyBuildOutput = `{"ImportPath":"p/w","Action":"build-output","Output":"# p/w\nlinker said something\n"}
`
)

func TestRun(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		label    string
		maxLines int
		ok       bool
		summary  string   // last line
		contains []string // in the output
		absent   []string // not in the output
	}{
		{name: "empty input", in: "", ok: true, summary: "0 passed, 0 failed, 0 skipped"},
		{
			name: "pass and skip", in: passA + skipB + pkgPass + noTests, ok: true,
			summary:  "1 passed, 0 failed, 1 skipped",
			contains: []string{"pass  p/a", "none  p/none"},
			absent:   []string{"=== RUN", "needs a real broker"},
		},
		{
			name: "label", in: passA + skipB + pkgPass, label: "tier embedded", ok: true,
			summary: "tier embedded: 1 passed, 0 failed, 1 skipped",
		},
		{
			name: "failing test prints its output only", in: passA + failC + pkgFail, ok: false,
			summary:  "1 passed, 1 failed, 0 skipped",
			contains: []string{"=== FAIL p/a TestC", "boom happened", "FAIL  p/a"},
			absent:   []string{"--- PASS: TestA"},
		},
		{
			name: "subtests count as tests", in: subtests, ok: false,
			summary:  "1 passed, 2 failed, 0 skipped",
			contains: []string{"=== FAIL p/s TestS/bad", "sub boom", "=== FAIL p/s TestS "},
		},
		{
			name: "build failure counts as a failure", in: passA + pkgPass + buildFail, ok: false,
			summary:  "1 passed, 1 failed, 0 skipped",
			contains: []string{"build failed: p/b [p/b.test]", "cannot use", "FAIL  p/b (build failed"},
		},
		{
			name: "timeout fails the unfinished test", in: timeout, ok: false,
			summary:  "1 passed, 1 failed, 0 skipped",
			contains: []string{"=== FAIL p/t TestHang", "test timed out"},
		},
		{
			name: "package failing outside tests counts once", in: mainFail, ok: false,
			summary:  "0 passed, 1 failed, 0 skipped",
			contains: []string{"package p/m failed outside any test", "TestMain could not set up"},
		},
		{
			name: "build output without build-fail still fails", in: passA + pkgPass + lonelyBuildOutput, ok: false,
			summary:  "1 passed, 0 failed, 0 skipped",
			contains: []string{"linker said something"},
		},
		{
			name: "non-JSON lines are echoed", in: "go: downloading example.com/x v1.0.0\n" + passA + pkgPass, ok: true,
			summary:  "1 passed, 0 failed, 0 skipped",
			contains: []string{"go: downloading example.com/x v1.0.0"},
		},
		{
			name: "output is bounded", in: passA + strings.Replace(failC, "boom happened", `l1\nl2\nl3\nl4`, 1) + pkgFail,
			maxLines: 2, ok: false,
			summary:  "1 passed, 1 failed, 0 skipped",
			contains: []string{"4 earlier lines omitted", "l4", "--- FAIL: TestC"},
			absent:   []string{"l3"},
		},
		{
			name: "CRLF input", in: strings.ReplaceAll(passA+pkgPass, "\n", "\r\n"), ok: true,
			summary: "1 passed, 0 failed, 0 skipped",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			ok, err := run(strings.NewReader(tc.in), &out, tc.label, tc.maxLines)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			got := out.String()
			if ok != tc.ok {
				t.Errorf("ok = %v, want %v; output:\n%s", ok, tc.ok, got)
			}
			lines := strings.Split(strings.TrimRight(got, "\n"), "\n")
			if last := lines[len(lines)-1]; last != tc.summary {
				t.Errorf("last line = %q, want %q; output:\n%s", last, tc.summary, got)
			}
			for _, s := range tc.contains {
				if !strings.Contains(got, s) {
					t.Errorf("output lacks %q:\n%s", s, got)
				}
			}
			for _, s := range tc.absent {
				if strings.Contains(got, s) {
					t.Errorf("output has %q:\n%s", s, got)
				}
			}
		})
	}
}
