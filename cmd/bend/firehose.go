package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/bendstream/bend/ingest"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
)

// firehoseTokenEnv names the environment variable read for the token when
// --token is not given, so that it need not appear in the process list.
const firehoseTokenEnv = "BEND_FIREHOSE_TOKEN"

// newFirehoseCmd returns `bend firehose`: a standalone synthetic firehose
// HTTP server for load tests and for ingest.stream. It runs until SIGINT,
// SIGTERM or the command's context ends.
func newFirehoseCmd(stdout, stderr io.Writer) *cobra.Command {
	cfg := ingest.DefaultFirehoseConfig()
	var addr, token, level string
	cmd := &cobra.Command{
		Use:   "firehose",
		Short: "Serve a synthetic firehose: a chunked NDJSON stream of activities per GET",
		Long: `Serve a synthetic firehose over HTTP. Every GET receives its own chunked
NDJSON stream of activities (ids act-1, act-2, ... with a gapless "seq"), paced
by the rate profile from the moment it connects, e.g. 8000/s with 50000/s
spikes lasting 60s:

  bend firehose --profile spike --rate 8000 --spike-rate 50000 --spike-for 60s --spike-every 2m

A slow client blocks its own generator: the server never buffers more than
64 KiB per client, the generator falls at most one second behind and skips
the events beyond (seqs stay gapless; the shortfall is logged when the client
leaves). A client that accepts nothing for --write-timeout is dropped, with a
log line.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if token == "" {
				token = os.Getenv(firehoseTokenEnv)
			}
			cfg.Token = ingest.Secret(token)
			lvl, err := logrus.ParseLevel(level)
			if err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			log := logrus.New()
			log.SetOutput(stderr)
			log.SetLevel(lvl)
			log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
			fh, err := ingest.NewFirehose(cfg, log.WithField("component", "firehose"))
			if err != nil {
				return fmt.Errorf("firehose: invalid flags:\n%w", err)
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("--addr: %w", err)
			}
			fmt.Fprintf(stdout, "firehose: streaming NDJSON at http://%s/ (profile %s, %g events/s per client)\n",
				ln.Addr(), cfg.Synth.Profile, cfg.Synth.Rate)
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
			defer stop()
			return fh.Serve(ctx, ln)
		},
	}
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	s := &cfg.Synth
	f := cmd.Flags()
	f.StringVar(&addr, "addr", "127.0.0.1:8089", "host:port to listen on (port 0 picks a free one)")
	f.Float64Var(&s.Rate, "rate", s.Rate, "steady rate, events per second per client")
	f.StringVar(&s.Profile, "profile", s.Profile, "rate profile: steady, ramp or spike")
	f.Float64Var(&s.SpikeRate, "spike-rate", s.SpikeRate, "rate during a spike (spike profile)")
	f.DurationVar(&s.SpikeFor, "spike-for", s.SpikeFor, "length of a spike (spike profile)")
	f.DurationVar(&s.SpikeEvery, "spike-every", s.SpikeEvery, "quiet time before each spike (spike profile)")
	f.DurationVar(&s.RampFor, "ramp-for", s.RampFor, "time to ramp from 0 to --rate (ramp profile)")
	f.Int64Var(&s.Limit, "limit", s.Limit, "end each stream after this many events; 0 = never")
	f.Int64Var(&s.Seed, "seed", s.Seed, "generator seed; 0 = time-based (per client)")
	f.IntVar(&s.Authors, "authors", s.Authors, "distinct authors")
	f.Float64Var(&s.KeySkew, "key-skew", s.KeySkew, "Zipf exponent (> 1) for author choice; 0 = uniform")
	f.StringVar(&token, "token", "", "bearer token clients must send (default $"+firehoseTokenEnv+"; empty = open)")
	f.DurationVar(&cfg.WriteTimeout, "write-timeout", cfg.WriteTimeout, "drop a client that accepts nothing for this long")
	f.DurationVar(&cfg.FlushInterval, "flush-interval", 50*time.Millisecond, "how often buffered events are flushed to each client")
	f.StringVar(&level, "log-level", "info", "trace, debug, info, warn or error")
	return cmd
}
