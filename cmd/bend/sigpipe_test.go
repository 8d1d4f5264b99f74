package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bendstream/bend/internal/kafkatest"
)

// TestStdoutBrokenPipe runs the bend binary with the stdout sink into a
// reader that closes after 3 lines, as `bend run | head -3` does: bend must
// log a clear error on stderr and exit with status 1 (not die of SIGPIPE,
// 141 in a shell).
func TestStdoutBrokenPipe(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	path := filepath.Join(t.TempDir(), "config.yaml")
	body := fmt.Sprintf(`kafka:
  brokers: [%s]
  topics: {input: %s, output: %s, dead_letter: %s, partitions: 2}
distributor:
  group: %s
  delay: 50ms
ingest:
  synthetic: {rate: 2000, seed: 1}
sink:
  kafka: {enabled: false}
  stdout: true
admin:
  addr: 127.0.0.1:%d
progress: 0s
shutdown_timeout: 20s
`, strings.Join(brokers, ", "), kafkatest.Name(t, "in"), kafkatest.Name(t, "out"), kafkatest.Name(t, "dlq"),
		kafkatest.Name(t, "group"), freePort(t))
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "run", "--config", path)
	cmd.Env = append(os.Environ(), "BEND_TEST_MAIN=1")
	stderr := &lockedWriter{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for i := range 3 {
		if !sc.Scan() {
			cmd.Process.Kill()
			t.Fatalf("line %d: stdout ended: %v\n%s", i+1, sc.Err(), stderr.String())
		}
	}
	out.Close() // the reader goes away, as head does after 3 lines
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-exited:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("bend did not stop after its stdout closed\n%s", stderr.String())
	}
	var ee *exec.ExitError
	if !errors.As(werr, &ee) || ee.ExitCode() != 1 {
		t.Errorf("exit: %v, want exit status 1\n%s", werr, stderr.String())
	}
	log := stderr.String()
	for _, want := range []string{"sink output stdout", "broken pipe", "will be redelivered"} {
		if !strings.Contains(log, want) {
			t.Errorf("stderr lacks %q:\n%s", want, log)
		}
	}
}
