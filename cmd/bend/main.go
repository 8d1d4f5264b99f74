// Command bend is a backpressure-aware stream ingestion pipeline: firehose
// sources into Kafka, a distributor that parks activities in a bounded delay
// queue while workers enrich them, and sinks that acknowledge back to the
// Kafka offsets. Under a spike it bends (lag grows, then drains); it does not
// break (nothing dropped, memory bounded).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/config"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := newRootCmd(os.Stdout, os.Stderr).Execute(); err != nil {
		os.Exit(1)
	}
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	var cfgPath string
	root := &cobra.Command{
		Use:           "bend",
		Short:         "Backpressure-aware stream ingestion: bends under spikes, never breaks",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVarP(&cfgPath, "config", "c", "", "config file (default ./config.yaml if present)")

	load := func() (config.Config, *logrus.Logger, error) {
		cfg, err := config.Load(cfgPath)
		if err != nil {
			fmt.Fprintf(stderr, "bend: invalid configuration:\n%v\n", err)
			return cfg, nil, err
		}
		return cfg, newLogger(cfg.Log, stderr), nil
	}

	root.AddCommand(&cobra.Command{
		Use:   "run",
		Short: "Run the pipeline (embedded broker and synthetic firehose by default)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := load()
			if err != nil {
				return err
			}
			applyMemoryLimit(cfg, log)
			// sarama's one global, set only here: its chatter goes to debug.
			sarama.Logger = saramaLogger(log)
			// The first SIGINT/SIGTERM drains; a second one stops at once.
			sigs := make(chan os.Signal, 2)
			signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
			defer signal.Stop(sigs)
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			sigCtx, stop := context.WithCancel(context.Background())
			defer stop()
			force, exited := make(chan struct{}), make(chan struct{})
			defer close(exited)
			go func() {
				select {
				case s := <-sigs:
					log.WithField("signal", s.String()).Info("draining; send the signal again to stop at once")
					stop()
				case <-exited:
					return
				}
				select {
				case <-sigs:
					close(force)
				case <-exited:
				}
			}()
			opts := runOptions{reloadable: true, configPath: cfgPath, hup: hup, force: force}
			if err := runWith(sigCtx, cfg, log, stderr, opts); err != nil {
				log.WithError(err).Error("bend stopped with an error")
				return err
			}
			return nil
		},
	})
	root.AddCommand(&cobra.Command{
		Use:     "check-config",
		Aliases: []string{"check"},
		Short:   "Validate the configuration and exit",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, _, err := load(); err != nil {
				return errors.New("invalid configuration")
			}
			fmt.Fprintln(stdout, "configuration OK")
			return nil
		},
	})
	root.AddCommand(newStatusCmd(stdout))
	root.AddCommand(newHealthcheckCmd(stdout))
	root.AddCommand(newReplayCmd(stdout))
	root.AddCommand(newFirehoseCmd(stdout, stderr))
	root.AddCommand(newWorkCmd(stderr))
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print bend's version",
		Run:   func(*cobra.Command, []string) { fmt.Fprintln(stdout, "bend", version) },
	})
	return root
}

func newLogger(c config.Log, w io.Writer) *logrus.Logger {
	log := logrus.New()
	log.SetOutput(w)
	lvl, _ := logrus.ParseLevel(c.Level)
	log.SetLevel(lvl)
	if c.Format == "json" {
		log.SetFormatter(&logrus.JSONFormatter{})
	} else {
		log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	}
	return log
}

// applyMemoryLimit sets the Go runtime's soft memory limit from
// memory_limit. It is the one setting of the whole process, so only the
// commands that run a pipeline or a worker call it.
func applyMemoryLimit(cfg config.Config, log logrus.FieldLogger) {
	if cfg.MemoryLimit > 0 {
		debug.SetMemoryLimit(cfg.MemoryLimit)
		log.WithField("memory_limit", cfg.MemoryLimit).Info("Go soft memory limit set")
	}
}
