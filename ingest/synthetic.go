package ingest

import (
	"context"

	"github.com/bendstream/bend/internal/synth"
)

// syntheticSource publishes generated activities, keyed by author. They are
// valid by construction, so they skip the edge's checks.
type syntheticSource struct {
	cfg synth.Config
	m   *sourceMetrics
}

func (s *syntheticSource) Name() string { return "synthetic" }

func (s *syntheticSource) Run(ctx context.Context, in *Ingest) error {
	g := synth.NewGenerator(s.cfg)
	return g.Run(ctx, func(ctx context.Context, value []byte, _, key string) error {
		// The generator may reuse value's array; the producer keeps it
		// until Kafka acknowledges it.
		v := append([]byte(nil), value...)
		return in.publish(ctx, s.m, []byte(key), v, nil)
	})
}
