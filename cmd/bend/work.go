package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/bendstream/bend/enrich"
	"github.com/bendstream/bend/internal/config"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
)

// newWorkCmd returns `bend work`: a remote enrichment worker that leases
// tasks from a distributor's task server (enrich.remote.addr) until
// SIGINT or SIGTERM.
func newWorkCmd(stderr io.Writer) *cobra.Command {
	wc := enrich.WorkerConfig{Workers: 4, Batch: 64, Wait: 10 * time.Second}
	cmd := &cobra.Command{
		Use:   "work",
		Short: "Run a remote enrichment worker pulling tasks from a distributor",
		Long: `Run enrichment workers for a distributor on another machine. They lease
batches of tasks from the distributor's task server (enrich.remote.addr),
run the enrichers of this process's config file (the "enrich" section: the
same names as the distributor's) and post the results back, heartbeating
the leases of tasks in progress.

  bend work --distributor http://dist:9190 --config config.yaml --workers 8

The token is --token, else enrich.remote.token (BEND_ENRICH_REMOTE_TOKEN).
On SIGINT/SIGTERM finished results are posted and unfinished tasks are
abandoned: their leases expire and the distributor retries them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cmd.Flag("config").Value.String())
			if err != nil {
				return fmt.Errorf("invalid configuration:\n%w", err)
			}
			log := newLogger(cfg.Log, stderr)
			applyMemoryLimit(cfg, log)
			if wc.Token == "" {
				wc.Token = cfg.Enrich.Remote.Token
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := work(ctx, cfg.Enrich, wc, log); err != nil {
				log.WithError(err).Error("bend work stopped with an error")
				return loggedError{err}
			}
			return nil
		},
	}
	cmd.SetErr(stderr)
	f := cmd.Flags()
	f.StringVar(&wc.URL, "distributor", "", "URL of the distributor's task server, e.g. http://host:9190 (required)")
	f.StringVar(&wc.Token, "token", "", "bearer token (default enrich.remote.token / $BEND_ENRICH_REMOTE_TOKEN)")
	f.IntVar(&wc.Workers, "workers", wc.Workers, "goroutines running tasks (one more leases for all of them)")
	f.IntVar(&wc.Batch, "batch", wc.Batch, "tasks one lease request asks for, and the prefetch: at most workers+2*batch tasks leased at once")
	f.DurationVar(&wc.Wait, "wait", wc.Wait, "how long a lease request waits for a task (long poll)")
	_ = cmd.MarkFlagRequired("distributor")
	return cmd
}

// work builds the enrichers of cfg and runs a remote worker until ctx ends.
func work(ctx context.Context, cfg enrich.Config, wc enrich.WorkerConfig, log *logrus.Logger) error {
	reg := metrics.NewRegistry()
	enrichers, err := cfg.Build(log.WithField("stage", "enrich"), reg)
	if err != nil {
		return err
	}
	w, err := enrich.NewWorker(wc, enrichers, log.WithField("stage", "work"), reg)
	if err != nil {
		return err
	}
	log.WithFields(logrus.Fields{"distributor": wc.URL, "workers": wc.Workers}).Info("remote worker started")
	if err := w.Run(ctx); err != nil {
		return err
	}
	log.Info("remote worker stopped")
	return nil
}

// listenRemote binds enrich.remote.addr and returns the function serving
// the task server on it until its ctx ends (a no-op when the address is
// ""). The listener is closed by that function, which must be called.
func listenRemote(cfg enrich.Config, q *enrich.Queue, enrichers []enrich.Resolved, log logrus.FieldLogger, reg metrics.Registry) (func(context.Context) error, error) {
	if cfg.Remote.Addr == "" {
		if cfg.Workers == 0 {
			log.Warn("enrich.workers is 0 and enrich.remote.addr is off: no worker will run enrichments")
		}
		return func(context.Context) error { return nil }, nil
	}
	srv, err := enrich.NewServer(cfg.Remote, q, enrichers, log, reg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Remote.Addr)
	if err != nil {
		return nil, fmt.Errorf("enrich.remote.addr: %w", err)
	}
	log.WithField("addr", "http://"+ln.Addr().String()).Info("task server listening for remote workers (bend work)")
	return func(ctx context.Context) error {
		err := srv.Serve(ctx, ln)
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}, nil
}
