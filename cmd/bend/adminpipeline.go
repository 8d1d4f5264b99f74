package main

import (
	"github.com/bendstream/bend/internal/kafka"
)

// adminPipeline is the distributor as the admin server sees it, with bend's
// topic names, so that sarama's per-topic metrics (which carry the topic
// with dots as underscores) are labelled with the real names.
type adminPipeline struct {
	*lameDuck
	topics []string
}

// Topics returns bend's input, output and dead-letter topics.
func (p adminPipeline) Topics() []string { return p.topics }

func newAdminPipeline(l *lameDuck, t kafka.Topics) adminPipeline {
	return adminPipeline{lameDuck: l, topics: []string{t.Input, t.Output, t.DeadLetter}}
}
