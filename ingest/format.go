package ingest

import (
	"context"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/activity"
	"github.com/bendstream/bend/internal/metricnames"
	metrics "github.com/rcrowley/go-metrics"
)

// verdict is what the edge's checks say of a valid event: its Kafka key,
// and its kind when it is not an activity (a delete notice, ...).
type verdict struct {
	key    []byte
	kind   string
	fields []byte // the bend-fields header, for formats other than bend
}

// formatChecker returns the checker of a source reading events of format
// fc; prefix is the source's config.yaml section (ingest.files) and names
// it in the bend-format header of its records when it maps fields of its
// own. Non-activity events dropped by the source are counted in
// ingest.<source>.non_activity_dropped, those written in
// ingest.<source>.non_activity.
func (in *Ingest) formatChecker(fc activity.FormatConfig, prefix, source string) (*checker, error) {
	f, err := activity.NewFormat(prefix, fc)
	if err != nil {
		return nil, err
	}
	c := newChecker(in.cfg)
	c.format = f
	c.formatName = []byte(f.Name())
	c.nonActivity, c.nonActivityTopic = fc.NonActivity, fc.NonActivityTopic
	c.passed = metrics.GetOrRegisterCounter(metricnames.Source(source, metricnames.SourceNonActivity), in.reg)
	c.dropped = metrics.GetOrRegisterCounter(metricnames.Source(source, metricnames.SourceNonActivityDropped), in.reg)
	return &c, nil
}

// drops reports whether the event of v is a non-activity event the source
// drops; it counts it if so.
func (c *checker) drops(v verdict) bool {
	if v.kind == "" || c.nonActivity != activity.NonActivityDrop {
		return false
	}
	if c.dropped != nil {
		c.dropped.Inc(1)
	}
	return true
}

// record builds the record of a valid event checked by c: in the input
// topic (a non-activity event, in the non-activity topic if so
// configured), with the bend-format header, and bend-kind for a
// non-activity event.
func (in *Ingest) record(src *sourceMetrics, c *checker, v verdict, value []byte) *sarama.ProducerMessage {
	m := in.event(src, v.key, value)
	if c == nil || c.format == nil {
		return m
	}
	if v.kind == "" {
		m.Headers = []sarama.RecordHeader{{Key: headerFormat, Value: c.formatName}}
		if v.fields != nil {
			m.Headers = append(m.Headers, sarama.RecordHeader{Key: headerFields, Value: v.fields})
		}
		return m
	}
	m.Headers = []sarama.RecordHeader{{Key: headerFormat, Value: c.formatName}, {Key: headerKind, Value: []byte(v.kind)}}
	if c.nonActivity == activity.NonActivityTopic {
		m.Topic = c.nonActivityTopic
	}
	if c.passed != nil {
		c.passed.Inc(1)
	}
	return m
}

var (
	headerFormat = []byte(activity.HeaderFormat)
	headerKind   = []byte(activity.HeaderKind)
	headerFields = []byte(activity.HeaderFields)
)

// FormatConfigs returns the format of every event source of c that maps
// fields of its own, by the name its records carry in the bend-format
// header: what the distributor needs to read them (activity.NewFormats).
//
// A source reading events embeds activity.FormatConfig in its section,
// builds its checker with formatChecker (its feeder's check), and is listed
// here.
func (c Config) FormatConfigs() map[string]activity.FormatConfig {
	out := map[string]activity.FormatConfig{}
	for prefix, fc := range map[string]activity.FormatConfig{
		"ingest.files": c.Files.FormatConfig, "ingest.http": c.HTTP.FormatConfig, "ingest.stream": c.Stream.FormatConfig,
		"ingest.jetstream": c.Jetstream.FormatConfig, "ingest.sse": c.SSE.FormatConfig,
	} {
		if n := fc.Name(prefix); n == prefix {
			out[n] = fc
		}
	}
	return out
}

// publishChecked sends one valid event checked by c, as Publish does (c
// nil: the bend format, no headers). A non-activity event c drops is
// counted and not sent: sent is then false and done never called.
func (in *Ingest) publishChecked(ctx context.Context, src *sourceMetrics, c *checker, v verdict, value []byte, done func(error)) (sent bool, err error) {
	if c != nil && c.drops(v) {
		return false, nil
	}
	size := int64(len(value))
	if err := in.reserve(ctx, 1, size); err != nil {
		return false, err
	}
	if err := in.send(ctx, in.record(src, c, v, value), size, src, false, done); err != nil {
		return false, err
	}
	return true, nil
}
