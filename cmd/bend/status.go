package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bendstream/bend/internal/admin"
	"github.com/bendstream/bend/internal/config"
	"github.com/spf13/cobra"
)

func newStatusCmd(stdout io.Writer) *cobra.Command {
	var addr string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show a running bend's lag per partition, queues, rates and time to drain",
		Long: `Status asks a running bend's admin server (/metrics.json) for its figures and
prints them. --admin defaults to admin.addr of the configuration.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if addr == "" {
				addr = admin.DefaultConfig().Addr
				if cfg, err := config.Load(cmd.Flag("config").Value.String()); err == nil && cfg.Admin.Addr != "" {
					addr = cfg.Admin.Addr
				}
			}
			url := adminURL(addr)
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			snap, raw, err := fetchStatus(ctx, url)
			if err != nil {
				return err
			}
			if asJSON {
				_, err := stdout.Write(raw)
				return err
			}
			printStatus(stdout, url, snap)
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "admin", "", "admin server of the running bend, http://host:port or host:port (default admin.addr)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print /metrics.json as it is")
	return cmd
}

// fetchStatus reads url/metrics.json.
func fetchStatus(ctx context.Context, url string) (admin.Snapshot, []byte, error) {
	var snap admin.Snapshot
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/metrics.json", nil)
	if err != nil {
		return snap, nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return snap, nil, fmt.Errorf("status: is bend running? %w", err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return snap, nil, fmt.Errorf("status: reading %s: %w", url, err)
	}
	if res.StatusCode != http.StatusOK {
		return snap, nil, fmt.Errorf("status: %s/metrics.json answered %s", url, res.Status)
	}
	if err := json.Unmarshal(raw, &snap); err != nil {
		return snap, nil, fmt.Errorf("status: decoding %s/metrics.json: %w", url, err)
	}
	return snap, raw, nil
}

// printStatus writes the figures an operator checks first.
func printStatus(w io.Writer, url string, s admin.Snapshot) {
	ready := "NOT READY"
	if s.Ready {
		ready = "ready"
	}
	fmt.Fprintf(w, "bend at %s: %s, up %s\n\n", url, ready, fmtSeconds(s.UptimeSeconds))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	r := s.Rates
	fmt.Fprintf(tw, "rates/s\tingested %.0f\tconsumed %.0f\temitted %.0f\tdead letters %.1f\tretries %.1f\n",
		r.Ingested, r.Consumed, r.Emitted, r.DeadLetters, r.Retries)
	drain := "not draining"
	if s.DrainSeconds != nil {
		drain = fmtSeconds(*s.DrainSeconds)
	}
	oldest := "-"
	if s.OldestAgeSeconds != nil {
		oldest = fmtSeconds(*s.OldestAgeSeconds)
	}
	fmt.Fprintf(tw, "backlog\tlag %d\ttime to drain %s\toldest in flight %s\t\n", s.Lag, drain, oldest)
	fmt.Fprintf(tw, "queues\tparked %d/%d\tin flight %d\ttasks %d/%d\tworkers %d busy of %d\tdelay %s\n",
		s.DelayQueue.Len, s.DelayQueue.Cap, s.InFlight, s.TaskQueue.Depth, s.TaskQueue.Cap,
		s.BusyWorkers, s.Workers, fmtSeconds(s.DelaySeconds))
	l := s.Latency
	fmt.Fprintf(tw, "latency\tingest->emit p50 %s\tp95 %s\tp99 %s\tmax %s\t\n",
		fmtSeconds(l.P50), fmtSeconds(l.P95), fmtSeconds(l.P99), fmtSeconds(l.Max))
	for name, q := range s.Enrich {
		fmt.Fprintf(tw, "enrich %s\tp50 %s\tp95 %s\tp99 %s\tmax %s\t\n", name,
			fmtSeconds(q.P50), fmtSeconds(q.P95), fmtSeconds(q.P99), fmtSeconds(q.Max))
	}
	t := s.Totals
	fmt.Fprintf(tw, "totals\tingested %d\temitted %d\tdead letters %d (at ingest %d)\tretries %d\tmissing %d\n",
		t.Ingested, t.Emitted, t.DeadLetters, t.IngestDead, t.Retries, t.Missing)
	_ = tw.Flush()

	fmt.Fprintln(w)
	if len(s.Partitions) == 0 {
		fmt.Fprintln(w, "no partitions owned")
		return
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "topic\tpartition\tlag\tin flight\twatermark\tbuffered\t")
	for _, p := range s.Partitions {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t\n", p.Topic, p.Partition, p.Lag, p.InFlight, p.Watermark, p.Buffered)
	}
	_ = tw.Flush()
}

// fmtSeconds formats seconds as a rounded duration.
func fmtSeconds(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d == 0:
		return "0s"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(100 * time.Microsecond).String()
	case d < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	}
	str := d.Round(time.Second).String()
	if strings.HasSuffix(str, "m0s") {
		str = strings.TrimSuffix(str, "0s")
	}
	return str
}
