package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bendstream/bend/deploy"
	"github.com/bendstream/bend/internal/config"
	"github.com/bendstream/bend/internal/kafkatest"
)

// conditional names the families the dashboard and rules use that a
// running pipeline exposes only in some states: no record in flight, a
// growing backlog, no memory limit, no caching enricher configured.
var conditional = map[string]string{
	"bend_oldest_unprocessed_age_seconds": "absent while nothing is in flight",
	"bend_backlog_drain_seconds":          "absent while the backlog grows",
	"bend_go_memory_limit_bytes":          "absent without a memory limit",
	"bend_enrich_cache_misses_total":      "only with a caching enricher",
}

// TestDeployMetricsInLiveScrape runs the pipeline, scrapes /metrics while
// events flow and checks that every metric the Grafana dashboard and the
// alert rules read is in the scrape (the few that only some states expose
// are in deploy's table check), and that sarama's and the distributor's
// topic labels agree.
func TestDeployMetricsInLiveScrape(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	names := [4]string{kafkatest.Name(t, "in.x"), kafkatest.Name(t, "out"), kafkatest.Name(t, "dlq"), kafkatest.Name(t, "group")}
	dir := t.TempDir()
	port := freePort(t)
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(operateConfig(t, brokers, names, filepath.Join(dir, "out.ndjson"), port, 20000, 2, "200ms", 2)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("test config: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runWith(ctx, cfg, testLogger(t), io.Discard, runOptions{}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	var body string
	emitted := regexp.MustCompile(`(?m)^bend_sink_emitted_total [1-9]`)
	eventually(t, 60*time.Second, "events emitted and visible in /metrics", func() bool {
		res, err := http.Get(url)
		if err != nil {
			return false
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		body = string(b)
		return res.StatusCode == 200 && emitted.MatchString(body) && strings.Contains(body, "bend_topic_record_send_total{")
	})
	exposed := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]`).FindAllStringSubmatch(body, -1) {
		exposed[m[1]] = true
	}
	refs, err := deploy.Referenced()
	if err != nil {
		t.Fatal(err)
	}
	for name, where := range refs {
		if !exposed[name] && conditional[name] == "" {
			t.Errorf("%s (used in %s) is not in a live scrape", name, strings.Join(where, "; "))
		}
	}
	// One topic label value per topic: the distributor's and sarama's.
	in := names[0]
	if sanitised := strings.ReplaceAll(in, ".", "_"); strings.Contains(body, `topic="`+sanitised+`"`) {
		t.Errorf("a topic label carries sarama's %q instead of %q", sanitised, in)
	}
	for _, want := range []string{`bend_distributor_partition_lag{partition="0",topic="` + in + `"}`, `topic="` + in + `"} `} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	for _, want := range []string{"bend_build_info{", "go_goroutines ", "process_resident_memory_bytes "} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", body)
	}
}
