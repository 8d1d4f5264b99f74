package main

import (
	"github.com/bendstream/bend/distributor"
	"github.com/bendstream/bend/internal/kafka"
)

// adminPipeline is the distributor as the admin server sees it, with bend's
// topic names, so that sarama's per-topic metrics (which carry the topic
// with dots as underscores) are labelled with the real names.
type adminPipeline struct {
	*distributor.Distributor
	topics []string
}

// Topics returns bend's input, output and dead-letter topics.
func (p adminPipeline) Topics() []string { return p.topics }

func newAdminPipeline(d *distributor.Distributor, t kafka.Topics) adminPipeline {
	return adminPipeline{Distributor: d, topics: []string{t.Input, t.Output, t.DeadLetter}}
}
