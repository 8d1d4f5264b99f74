package distributor

import (
	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/activity"
	"github.com/bendstream/bend/internal/metricnames"
	metrics "github.com/rcrowley/go-metrics"
	"github.com/tidwall/gjson"
)

// parse reads the fields enrichers read from a consumed record: from its
// bend-fields header when ingest wrote one (ingest mapped and validated the
// event), else from the value in the format its bend-format header names
// (distributor.format when it has none). A record whose bend-kind header
// names a non-activity event is not read: its Fields have only that Kind.
func (c Config) parse(m *sarama.ConsumerMessage) (activity.Fields, error) {
	var name string
	for _, h := range m.Headers {
		switch string(h.Key) {
		case activity.HeaderKind:
			if len(h.Value) > 0 {
				// Passed through untouched, so it must at least be JSON:
				// the header may come from any producer of the topic.
				if !gjson.ValidBytes(m.Value) {
					return activity.Fields{}, activity.ErrInvalidJSON
				}
				return activity.Fields{Kind: string(h.Value)}, nil
			}
		case activity.HeaderFormat:
			name = string(h.Value)
		case activity.HeaderFields:
			return activity.DecodeFields(h.Value, m.Value)
		}
	}
	f, err := c.Formats.Lookup(name)
	if err != nil {
		return activity.Fields{}, err
	}
	return f.Map(m.Value)
}

// passRecord builds the output record of a non-activity event: its bytes
// untouched, with the provenance headers and bend-kind. It counts the
// event in distributor.non_activity.
func (j *job) passRecord(d *Distributor, kind string) {
	metrics.GetOrRegisterCounter(metricnames.DistributorNonActivity, d.reg).Inc(1)
	h := append(j.hdrs[:len(j.hdrs):len(j.hdrs)], sarama.RecordHeader{Key: hdrKind, Value: []byte(kind)})
	j.record(j.msg.Value, h, false)
}
