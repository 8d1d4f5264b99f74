// Package testutil holds small helpers shared by bend's tests.
package testutil

import (
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// Eventually polls cond every 10ms until it holds, failing t with what was
// awaited if timeout passes first. It never sleeps longer than needed.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Logger returns a logger that discards everything unless BEND_TEST_LOG is
// set, in which case it writes debug logs to stderr.
func Logger() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	if os.Getenv("BEND_TEST_LOG") != "" {
		l.SetOutput(os.Stderr)
		l.SetLevel(logrus.DebugLevel)
	}
	return l
}

// StatusWithHeader sends method to url with body and a filler header of
// headerBytes bytes (0: none) and returns the response's status code.
func StatusWithHeader(t testing.TB, method, url, body string, headerBytes int) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if headerBytes > 0 {
		req.Header.Set("X-Filler", strings.Repeat("a", headerBytes))
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}
