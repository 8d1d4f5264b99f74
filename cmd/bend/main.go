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
	"github.com/bendstream/bend/internal/buildinfo"
	"github.com/bendstream/bend/internal/config"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
)

func main() {
	os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
}

// execute runs bend with args and returns the exit status: 0, or 1 after
// printing the error once on stderr (an error already logged is not printed
// again).
func execute(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	var logged loggedError
	if !errors.As(err, &logged) {
		fmt.Fprintf(stderr, "bend: %v\n", err)
	}
	return 1
}

// loggedError is an error the command has already logged; execute only
// sets the exit status for it.
type loggedError struct{ error }

func (e loggedError) Unwrap() error { return e.error }

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	var cfgPath string
	root := &cobra.Command{
		Use:           "bend",
		Short:         "Backpressure-aware stream ingestion: bends under spikes, never breaks",
		SilenceUsage:  true,
		SilenceErrors: true, // execute prints the error, once
		Version:       buildinfo.Get().String(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVarP(&cfgPath, "config", "c", "", "config file (default ./config.yaml if present)")

	// load reads the configuration; its warnings go to the log (in its
	// format) once there is one, else to stderr.
	load := func() (config.Config, *logrus.Logger, error) {
		cfg, warns, err := config.Check(cfgPath)
		if err != nil {
			for _, w := range warns {
				fmt.Fprintf(stderr, "bend: warning: %s\n", w)
			}
			return cfg, nil, fmt.Errorf("invalid configuration:\n%w", err)
		}
		log := newLogger(cfg.Log, stderr)
		for _, w := range warns {
			log.Warn(w)
		}
		return cfg, log, nil
	}

	root.AddCommand(&cobra.Command{
		Use:   "run",
		Short: "Run the pipeline (embedded broker and synthetic firehose by default)",
		Args:  cobra.NoArgs,
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
			// With SIGPIPE handled, a write to a closed stdout pipe
			// (`bend run | head`) returns EPIPE, which the stdout sink
			// reports and stops on, instead of the runtime killing bend.
			pipe := make(chan os.Signal, 1)
			signal.Notify(pipe, syscall.SIGPIPE)
			defer signal.Stop(pipe)
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
			opts := runOptions{reloadable: true, configPath: cfgPath, hup: hup, force: force, notify: sdNotify(log),
				progressTTY: func() bool { return isTerminal(os.Stderr.Fd()) }}
			if err := runWith(sigCtx, cfg, log, stderr, opts); err != nil {
				log.WithError(err).Error("bend stopped with an error")
				return loggedError{err}
			}
			return nil
		},
	})
	root.AddCommand(&cobra.Command{
		Use:     "check-config",
		Aliases: []string{"check"},
		Short:   "Validate the configuration and exit",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, _, err := load(); err != nil {
				return err
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
		Args:  cobra.NoArgs,
		Run:   func(*cobra.Command, []string) { fmt.Fprintln(stdout, buildinfo.Get()) },
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
		return
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); set {
		return
	}
	// Without either, derive one from the byte budget, so the garbage
	// collector keeps the heap near what the budget holds instead of
	// letting it double (GOGC=100) under big records.
	limit := derivedMemoryLimit(cfg.Distributor.MemoryBudget)
	debug.SetMemoryLimit(limit)
	log.WithField("memory_limit", limit).Debug("Go soft memory limit derived from distributor.memory_budget")
}

// derivedMemoryLimit is the soft memory limit used when memory_limit and
// GOMEMLIMIT are unset: the budget, a quarter more for the garbage not yet
// collected, and 64 MiB for the runtime and the rest of the process.
func derivedMemoryLimit(budget int64) int64 { return budget + budget/4 + 64<<20 }
