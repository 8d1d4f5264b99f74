package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestFirehoseCommand runs `bend firehose` in-process: it must print its
// address, serve each authorized GET a gapless stream of --limit activities,
// refuse a missing token, and stop cleanly when its context ends.
func TestFirehoseCommand(t *testing.T) {
	var stdout, stderr lockedWriter
	cmd := newFirehoseCmd(&stdout, &stderr)
	cmd.SetArgs([]string{"--addr", "127.0.0.1:0", "--rate", "20000", "--limit", "500", "--seed", "3", "--token", "s3cret"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()

	addrRE := regexp.MustCompile(`http://(127\.0\.0\.1:\d+)/`)
	var addr string
	for deadline := time.Now().Add(10 * time.Second); addr == ""; time.Sleep(10 * time.Millisecond) {
		if m := addrRE.FindStringSubmatch(stdout.String()); m != nil {
			addr = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no address printed; stdout %q stderr %q", stdout.String(), stderr.String())
		}
	}

	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET without token: %v %v, want 401", resp.Status, err)
	}
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var seq uint64
	for sc.Scan() {
		var ev struct {
			ID  string `json:"id"`
			Seq uint64 `json:"seq"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		if seq++; ev.Seq != seq {
			t.Fatalf("seq %d after %d", ev.Seq, seq-1)
		}
	}
	if err := sc.Err(); err != nil || seq != 500 {
		t.Fatalf("stream: %d events, %v; want 500 and a clean end", seq, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("firehose: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("firehose did not stop within 10s of cancel")
	}
	if strings.Contains(stderr.String(), "s3cret") {
		t.Error("the token appears in the log")
	}
}

func TestFirehoseCommandRejectsBadFlags(t *testing.T) {
	var stdout, stderr lockedWriter
	if code := execute([]string{"firehose", "--addr", "127.0.0.1:0", "--rate", "-5", "--profile", "wobble"}, &stdout, &stderr); code != 1 {
		t.Fatalf("exit status %d with invalid flags, want 1", code)
	}
	for _, flag := range []string{"--rate", "--profile"} {
		if !strings.Contains(stderr.String(), flag) {
			t.Errorf("stderr %q does not name %s", stderr.String(), flag)
		}
	}
}
