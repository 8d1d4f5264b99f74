// Package metricnames is the one table of bend's metric names: the
// go-metrics name every stage registers, what each one means, and the kind
// that decides its Prometheus type. Registrants (ingest, distributor, enrich,
// sink) and readers (the admin server, the progress line, the run summary)
// use these constants, so a rename is a compile error rather than a missing
// metric or a failed type assertion at run time.
//
// A name with a variable part (an enricher, a partition, an ingest source)
// is built by a function (Enricher, Partition, Source); the table lists it
// by its pattern, with the variable part carved out, which is also how the
// admin server's Prometheus families are named:
//
//	enrich.lang.latency                  → pattern enrich.latency, label enricher="lang"
//	distributor.partition.T.3.lag        → pattern distributor.partition.lag, labels topic="T", partition="3"
//	ingest.http.events                   → pattern ingest.source.events, label source="http"
//
// sarama registers its own metrics in the same registry; Sarama lists their
// patterns and help texts (from sarama's package documentation).
package metricnames

import (
	"fmt"
	"slices"
	"strings"
)

// Names registered by ingest.
const (
	IngestPublished       = "ingest.published"
	IngestRejected        = "ingest.rejected"
	IngestDeadLetters     = "ingest.dead_letters"
	IngestFailed          = "ingest.failed"
	IngestPackedRecords   = "ingest.packed_records"
	IngestPackedEvents    = "ingest.packed_events"
	IngestBufferedBytes   = "ingest.buffered_bytes"
	IngestBufferedRecords = "ingest.buffered_records"
	IngestProducerRetries = "ingest.producer.retries"
	IngestStreamConnects  = "ingest.stream.connects"
	IngestStreamDisconn   = "ingest.stream.disconnects"
	IngestStreamReconn    = "ingest.stream.reconnects"
	IngestStreamConnErrs  = "ingest.stream.connect_errors"
	// The jetstream source's connections, resumes and messages.
	IngestJetstreamConnects   = "ingest.jetstream.connects"
	IngestJetstreamDisconn    = "ingest.jetstream.disconnects"
	IngestJetstreamReconn     = "ingest.jetstream.reconnects"
	IngestJetstreamConnErrs   = "ingest.jetstream.connect_errors"
	IngestJetstreamDuplicates = "ingest.jetstream.duplicates"
	IngestJetstreamGaps       = "ingest.jetstream.gaps"
	// The sse source's connections, resumes and skipped event types.
	IngestSSEConnects     = "ingest.sse.connects"
	IngestSSEDisconn      = "ingest.sse.disconnects"
	IngestSSEReconn       = "ingest.sse.reconnects"
	IngestSSEConnErrs     = "ingest.sse.connect_errors"
	IngestSSEDuplicates   = "ingest.sse.duplicates"
	IngestSSEGaps         = "ingest.sse.gaps"
	IngestSSESkipped      = "ingest.sse.skipped"
	IngestHTTPRequests    = "ingest.http.requests"
	IngestHTTPThrottled   = "ingest.http.throttled"
	IngestHTTPUnauth      = "ingest.http.unauthorized"
	IngestHTTPTooLarge    = "ingest.http.too_large"
	IngestHTTPBadRequests = "ingest.http.bad_requests"
	IngestHTTPTooSlow     = "ingest.http.too_slow"
	IngestFilesDone       = "ingest.files.done"
)

// Per-source ingest names: Source(source, SourceEvents) is
// "ingest.<source>.events".
const (
	SourceEvents    = "events"
	SourcePublished = "published"
	SourceRejected  = "rejected"
	SourceBytes     = "bytes"
	// SourceNonActivity counts non-activity events written (pass, topic).
	SourceNonActivity = "non_activity"
	// SourceNonActivityDropped counts non-activity events dropped.
	SourceNonActivityDropped = "non_activity_dropped"
)

// Source returns the name of a per-source ingest metric, e.g.
// Source("http", SourceEvents) = "ingest.http.events".
func Source(source, what string) string { return "ingest." + source + "." + what }

// Names registered by the distributor and the delay queue it owns.
const (
	DistributorConsumed       = "distributor.consumed"
	DistributorInflight       = "distributor.inflight"
	DistributorDeadLetters    = "distributor.dead_letters"
	DistributorMissing        = "distributor.missing"
	DistributorRetries        = "distributor.retries"
	DistributorFenced         = "distributor.fenced"
	DistributorAbandoned      = "distributor.abandoned"
	DistributorLate           = "distributor.late_results"
	DistributorNacks          = "distributor.nacks"
	DistributorDoubleAcks     = "distributor.double_acks"
	DistributorRetriesDropped = "distributor.retries_dropped"
	DistributorOverloaded     = "distributor.overloaded"
	DistributorReplayResets   = "distributor.replay.resets"
	DistributorReplayPaused   = "distributor.replay.paused"
	DistributorBudgetUsed     = "distributor.budget.used"
	DistributorBudgetCap      = "distributor.budget.cap"
	DistributorLag            = "distributor.lag"
	DistributorNonActivity    = "distributor.non_activity"
	DelayQueueLen             = "delayqueue.len"
	DelayQueueInUse           = "delayqueue.in_use"
	DelayQueueCap             = "delayqueue.cap"
	DelayQueueWaiters         = "delayqueue.waiters"
	DelayQueueBlockedPutNS    = "delayqueue.blocked_put_ns"
	DelayQueueMisuse          = "delayqueue.misuse"
	EnrichQueueDepth          = "enrich.queue.depth"
	EnrichQueueCap            = "enrich.queue.cap"
)

// Per-partition gauge names: Partition(topic, p) + PartitionLag.
const (
	PartitionLag       = "lag"
	PartitionWatermark = "watermark"
	PartitionInFlight  = "in_flight"
	PartitionBuffered  = "buffered"
)

// PartitionPrefix is the prefix of every per-partition name.
const PartitionPrefix = "distributor.partition."

// Partition returns the prefix of one partition's gauges,
// "distributor.partition.<topic>.<partition>."; append PartitionLag etc.
func Partition(topic string, partition int32) string {
	return fmt.Sprintf("%s%s.%d.", PartitionPrefix, topic, partition)
}

// Names registered by the enrichment pool and the remote-worker server.
const (
	EnrichBusy          = "enrich.busy"
	EnrichUtilisation   = "enrich.utilisation"
	EnrichWorkers       = "enrich.workers"
	EnrichRemoteLeased  = "enrich.remote.leased"
	EnrichRemoteExpired = "enrich.remote.expired"
	EnrichRemoteResults = "enrich.remote.results"
	EnrichRemoteStale   = "enrich.remote.stale"
	EnrichRemoteDropped = "enrich.remote.dropped"
	EnrichRemoteLeases  = "enrich.remote.leases"
)

// Per-enricher names: Enricher(name, EnricherLatency) is
// "enrich.<name>.latency".
const (
	EnricherLatency      = "latency"
	EnricherErrors       = "errors"
	EnricherTimeouts     = "timeouts"
	EnricherInFlight     = "in_flight"
	EnricherWaiting      = "waiting"
	EnricherLimit        = "limit"
	EnricherRequests     = "requests"
	EnricherCacheHits    = "cache_hits"
	EnricherCacheMisses  = "cache_misses"
	EnricherReloads      = "reloads"
	EnricherReloadErrors = "reload_errors"
	EnricherStale        = "stale"
	EnricherQueued       = "queued"
	EnricherQueueDepth   = "lane_depth"
	EnricherQueueCap     = "lane_cap"
	EnricherDeadline     = "deadline"
	EnricherCut          = "cut"
	EnricherOverloaded   = "overloaded"
)

// Enricher returns the name of a per-enricher metric, e.g.
// Enricher("lang", EnricherLatency) = "enrich.lang.latency".
func Enricher(name, what string) string { return "enrich." + name + "." + what }

// Names registered by the sink.
const (
	SinkEmitted        = "sink.emitted"
	SinkDeadLetters    = "sink.dead_letters"
	SinkFailed         = "sink.failed"
	SinkDoubleDone     = "sink.double_done"
	SinkLatency        = "sink.latency"
	SinkKafkaRetries   = "sink.kafka.retries"
	SinkTxnCommits     = "sink.kafka.txn_commits"
	SinkTxnAborts      = "sink.kafka.txn_aborts"
	SinkPackedRecords  = "sink.kafka.packed_records"
	SinkPackedEvents   = "sink.kafka.packed_events"
	SinkTxnProduceErrs = "sink.kafka.txn_produce_errors"
	SinkFileWriteErrs  = "sink.file.write_errors"
	SinkWebhookPosts   = "sink.webhook.posts"
	SinkWebhookRetries = "sink.webhook.retries"
)

// Names registered by the admin server's runtime gauges.
const (
	ProcessResidentBytes = "process.resident_memory_bytes"
	GoHeapObjectsBytes   = "go.heap_objects_bytes"
	GoTotalBytes         = "go.total_bytes"
	GoMemoryLimitBytes   = "go.memory_limit_bytes"
	GoGoroutines         = "go.goroutines"
)

// Kind is the go-metrics type a name is registered with.
type Kind int

// The go-metrics kinds.
const (
	Counter   Kind = iota // a count that only grows: a Prometheus counter
	UpDown                // a go-metrics counter that goes down too: a Prometheus gauge
	Meter                 // a count with moving rates: a Prometheus counter of the count
	Gauge                 // a value: a Prometheus gauge
	Histogram             // a sampled distribution: a Prometheus summary
	Timer                 // a sampled distribution of nanoseconds: a summary in seconds
)

// Entry is one row of the table.
type Entry struct {
	// Pattern is the go-metrics name, or for a name with variable parts
	// the name with them carved out (enrich.latency for enrich.NAME.latency).
	Pattern string
	Kind    Kind
	// Help is the Prometheus HELP text.
	Help string
}

// Table returns bend's own metrics, a fresh copy each call, sorted by
// pattern.
func Table() []Entry {
	t := []Entry{
		{IngestPublished, Meter, "Events Kafka acknowledged on the input topic (dead letters excluded)."},
		{IngestRejected, Counter, "Events ingest refused as invalid (rejected or dead-lettered)."},
		{IngestDeadLetters, Counter, "Invalid events Kafka acknowledged on the dead-letter topic at ingest."},
		{IngestFailed, Counter, "Records Kafka never acknowledged (only at a forced stop)."},
		{IngestPackedRecords, Counter, "Records written packing several events (ingest.batching)."},
		{IngestPackedEvents, Counter, "Events written in packed records (ingest.batching)."},
		{IngestBufferedBytes, Gauge, "Event bytes held by ingest until Kafka acknowledges them."},
		{IngestBufferedRecords, Gauge, "Records held by ingest until Kafka acknowledges them."},
		{IngestProducerRetries, Counter, "Re-sends of batches Kafka refused (ingest producer)."},
		{"ingest.source." + SourceEvents, Meter, "Valid events read, by source."},
		{"ingest.source." + SourcePublished, Meter, "Events Kafka acknowledged, by source."},
		{"ingest.source." + SourceRejected, Counter, "Invalid events read, by source."},
		{"ingest.source." + SourceBytes, Counter, "Bytes read, by source."},
		{"ingest.source." + SourceNonActivity, Counter, "Non-activity events (deletes, compliance, identity) written, by source."},
		{"ingest.source." + SourceNonActivityDropped, Counter, "Non-activity events dropped (non_activity: drop), by source."},
		{IngestStreamConnects, Counter, "Streams opened by the stream source (answered 200)."},
		{IngestStreamDisconn, Counter, "Open streams that ended (EOF, error, idle timeout)."},
		{IngestStreamReconn, Counter, "Stream connection attempts after the first."},
		{IngestStreamConnErrs, Counter, "Stream connection attempts that failed (network error or non-200)."},
		{IngestJetstreamConnects, Counter, "Jetstream WebSocket connections opened."},
		{IngestJetstreamDisconn, Counter, "Open Jetstream WebSocket connections that ended."},
		{IngestJetstreamReconn, Counter, "Jetstream WebSocket connection attempts after the first."},
		{IngestJetstreamConnErrs, Counter, "Jetstream WebSocket connection attempts that failed."},
		{IngestJetstreamDuplicates, Counter, "Jetstream WebSocket events dropped as read twice (the resume overlap)."},
		{IngestJetstreamGaps, Counter, "Jetstream WebSocket resumes that found the publisher's replay window exceeded."},
		{IngestSSEConnects, Counter, "Server-Sent Events connections opened."},
		{IngestSSEDisconn, Counter, "Open Server-Sent Events connections that ended."},
		{IngestSSEReconn, Counter, "Server-Sent Events connection attempts after the first."},
		{IngestSSEConnErrs, Counter, "Server-Sent Events connection attempts that failed."},
		{IngestSSEDuplicates, Counter, "Server-Sent Events events dropped as read twice (the resume overlap)."},
		{IngestSSEGaps, Counter, "Server-Sent Events resumes that found the publisher's replay window exceeded."},
		{IngestSSESkipped, Counter, "Server-Sent Events of types not in ingest.sse.events, dropped."},
		{IngestHTTPRequests, Meter, "Requests received by the HTTP receiver."},
		{IngestHTTPThrottled, Counter, "HTTP receiver answers 503 (saturated, or Kafka too slow to acknowledge)."},
		{IngestHTTPUnauth, Counter, "HTTP receiver answers 401."},
		{IngestHTTPTooLarge, Counter, "HTTP receiver answers 413."},
		{IngestHTTPBadRequests, Counter, "HTTP receiver answers 400."},
		{IngestHTTPTooSlow, Counter, "HTTP request bodies cut with 408 for arriving slower than ingest.http.min_bytes_per_second."},
		{IngestFilesDone, Counter, "Files replayed to the end by the files source."},

		{DistributorConsumed, Meter, "Records read from the input topic."},
		{DistributorInflight, UpDown, "Records read and not yet acknowledged by the sink."},
		{DistributorDeadLetters, Counter, "Records the distributor sent to the dead-letter topic."},
		{DistributorMissing, Counter, "Optional enrichments emitted missing (no result by the deadline)."},
		{DistributorRetries, Counter, "Enrichment attempts retried."},
		{DistributorFenced, Counter, "Acknowledgements that arrived for claims that had ended."},
		{DistributorAbandoned, Counter, "Parked records of ended claims dropped for redelivery."},
		{DistributorLate, Counter, "Enrichment results that arrived after their activity left."},
		{DistributorNacks, Counter, "Records an output failed to hold; each ends its claim so the partition is read again from the committed offset."},
		{DistributorDoubleAcks, Counter, "Second acknowledgements of one record, ignored (a defect in an output)."},
		{DistributorRetriesDropped, Counter, "Enrichment retries not made because their activity was emitted, fenced or past its deadline."},
		{DistributorOverloaded, Counter, "Optional enrichments emitted missing with reason overloaded: the enricher's share of the task queue was full."},
		{DistributorReplayResets, Counter, "Partitions whose committed offsets a replay while running (bend replay --live) reset."},
		{DistributorReplayPaused, Gauge, "1 while a replay while running holds this instance's intake paused, else 0."},
		{DistributorBudgetUsed, UpDown, "Bytes of distributor.memory_budget held by records between fetch and sink acknowledgement."},
		{DistributorBudgetCap, Gauge, "Bytes of distributor.memory_budget that records may hold (the rest is left to sarama's fetch buffers)."},
		{DistributorNonActivity, Counter, "Non-activity events passed to the output unenriched."},
		{DistributorLag, Gauge, "Records of the owned partitions not yet passed by their commit watermarks."},
		{PartitionPrefix + PartitionLag, Gauge, "Records of one owned partition not yet passed by its commit watermark."},
		{PartitionPrefix + PartitionWatermark, Gauge, "Next offset to commit of one owned partition."},
		{PartitionPrefix + PartitionInFlight, Gauge, "Records of one owned partition between read and the watermark."},
		{PartitionPrefix + PartitionBuffered, Gauge, "Fetched records of one owned partition buffered before the distributor."},
		{DelayQueueLen, Gauge, "Activities parked in the delay queue."},
		{DelayQueueInUse, Gauge, "Delay queue slots in use."},
		{DelayQueueCap, Gauge, "Delay queue capacity (distributor.max_parked)."},
		{DelayQueueWaiters, Gauge, "Goroutines waiting for room in the delay queue."},
		{DelayQueueBlockedPutNS, Gauge, "Total time parking waited for room in the delay queue."},
		{DelayQueueMisuse, Gauge, "Delay-queue calls on items already released or not held (a defect; should stay 0)."},
		{EnrichQueueDepth, Gauge, "Enrichment tasks waiting in the task queue, all lanes."},
		{EnrichQueueCap, Gauge, "Capacity of the enrichment task queue, all lanes."},

		{EnrichBusy, UpDown, "In-process workers running an enricher now."},
		{EnrichUtilisation, Gauge, "Busy in-process workers as a percentage of the running ones."},
		{EnrichWorkers, Gauge, "In-process enrichment workers running."},
		{EnrichRemoteLeased, Counter, "Tasks leased to remote workers."},
		{EnrichRemoteExpired, Counter, "Remote leases that expired before a result."},
		{EnrichRemoteResults, Counter, "Results received from remote workers."},
		{EnrichRemoteStale, Counter, "Remote results for leases no longer held."},
		{EnrichRemoteDropped, Counter, "Tasks dropped at lease time because their activity was already emitted or fenced."},
		{EnrichRemoteLeases, Gauge, "Leases held by remote workers now."},
		{"enrich." + EnricherLatency, Timer, "Latency of successful enrichment attempts, by enricher."},
		{"enrich." + EnricherErrors, Counter, "Failed enrichment attempts (timeouts included), by enricher."},
		{"enrich." + EnricherTimeouts, Counter, "Enrichment attempts that hit the timeout, by enricher."},
		{"enrich." + EnricherInFlight, UpDown, "Enrichment attempts running now under the enricher's concurrency limit."},
		{"enrich." + EnricherWaiting, UpDown, "Enrichment attempts waiting for the enricher's concurrency limit."},
		{"enrich." + EnricherLimit, Gauge, "The enricher's concurrency limit."},
		{"enrich." + EnricherRequests, Counter, "Outbound requests made by the enricher (URL unwinding, lookups)."},
		{"enrich." + EnricherCacheHits, Counter, "Enricher cache hits."},
		{"enrich." + EnricherCacheMisses, Counter, "Enricher cache misses."},
		{"enrich." + EnricherStale, Counter, "Tasks dropped before they ran because their activity was already emitted or fenced, by enricher."},
		{"enrich." + EnricherQueued, Gauge, "Tasks of the enricher waiting in its lane, running or leased, or waiting for room in the lane (for a required enricher: activities it holds)."},
		{"enrich." + EnricherQueueDepth, Gauge, "Tasks waiting in the enricher's lane of the task queue."},
		{"enrich." + EnricherQueueCap, Gauge, "Capacity of the enricher's lane of the task queue."},
		{"enrich." + EnricherDeadline, Counter, "Tasks dropped before they ran because their activity's deadline had passed or was too near for an attempt to finish, by enricher."},
		{"enrich." + EnricherCut, Counter, "Enrichment attempts cut short at their activity's deadline, by enricher."},
		{"enrich." + EnricherOverloaded, Counter, "Optional tasks dropped before they ran because the enricher's lane was full, by enricher."},
		{"enrich." + EnricherReloads, Counter, "Reloads of the enricher's table file."},
		{"enrich." + EnricherReloadErrors, Counter, "Reloads of the enricher's table file that failed (the old table stays)."},

		{SinkEmitted, Meter, "Records accepted by every output."},
		{SinkDeadLetters, Meter, "Records the sink wrote to the dead-letter topic."},
		{SinkFailed, Counter, "Records the sink nacked (only at a forced stop)."},
		{SinkDoubleDone, Counter, "Second completions of one sink record, ignored (a defect in an output)."},
		{SinkLatency, Histogram, "Ingest-to-emit latency of emitted records."},
		{SinkKafkaRetries, Counter, "Re-sends of batches Kafka refused (sink producer)."},
		{SinkTxnCommits, Timer, "Exactly-once transaction commits and their duration."},
		{SinkTxnAborts, Counter, "Exactly-once transactions aborted."},
		{SinkPackedRecords, Counter, "Output records packing several enriched events (sink.kafka.batching)."},
		{SinkPackedEvents, Counter, "Enriched events written in packed output records (sink.kafka.batching)."},
		{SinkTxnProduceErrs, Counter, "Records the transactional producer failed to write (each failure aborts and retries its transaction)."},
		{SinkFileWriteErrs, Counter, "Failed file or stdout writes (retried)."},
		{SinkWebhookPosts, Timer, "Webhook batches posted and their duration."},
		{SinkWebhookRetries, Counter, "Webhook posts retried."},

		{ProcessResidentBytes, Gauge, "Resident memory of the process (Linux; 0 elsewhere)."},
		{GoHeapObjectsBytes, Gauge, "Bytes of live and not yet swept heap objects."},
		{GoTotalBytes, Gauge, "All memory the Go runtime mapped."},
		{GoMemoryLimitBytes, Gauge, "The Go memory limit (memory_limit or GOMEMLIMIT); absent when no limit is set."},
		{GoGoroutines, Gauge, "Goroutines."},
	}
	slices.SortFunc(t, func(a, b Entry) int { return strings.Compare(a.Pattern, b.Pattern) })
	return t
}

// Sarama returns the metrics sarama registers, by pattern (the per-broker,
// per-topic, per-group and per-API-key parts carved out), with help texts
// from sarama's package documentation. A fresh copy each call.
func Sarama() []Entry {
	return []Entry{
		{"incoming-byte-rate", Meter, "Bytes read from Kafka brokers (sarama)."},
		{"outgoing-byte-rate", Meter, "Bytes written to Kafka brokers (sarama)."},
		{"request-rate", Meter, "Requests sent to Kafka brokers (sarama)."},
		{"request-size", Histogram, "Request size in bytes (sarama)."},
		{"request-latency-in-ms", Histogram, "Request latency (sarama)."},
		{"response-rate", Meter, "Responses received from Kafka brokers (sarama)."},
		{"response-size", Histogram, "Response size in bytes (sarama)."},
		{"requests-in-flight", UpDown, "Requests awaiting a response (sarama)."},
		{"protocol-requests-rate", Meter, "Requests sent, by Kafka API key (sarama)."},
		{"throttle-time-in-ms", Histogram, "Throttle time reported by the brokers (sarama)."},
		{"batch-size", Histogram, "Bytes sent per partition per produce request (sarama)."},
		{"record-send-rate", Meter, "Records sent (sarama)."},
		{"records-per-request", Histogram, "Records per produce request (sarama)."},
		{"compression-ratio", Histogram, "Compression ratio times 100 of record batches (sarama)."},
		{"consumer-batch-size", Histogram, "Messages per fetched batch (sarama)."},
		{"consumer-fetch-rate", Meter, "Fetch requests sent (sarama)."},
		{"consumer-fetch-response-size", Histogram, "Fetch response size in bytes (sarama)."},
		{"consumer-group-join-total", Counter, "Consumer group join attempts (sarama)."},
		{"consumer-group-join-failed", Counter, "Consumer group join failures (sarama)."},
		{"consumer-group-sync-total", Counter, "Consumer group sync attempts (sarama)."},
		{"consumer-group-sync-failed", Counter, "Consumer group sync failures (sarama)."},
	}
}

// Lookup returns the entry of pattern, from Table or Sarama. It builds both
// tables on each call: readers on a hot path keep their own map.
func Lookup(pattern string) (Entry, bool) {
	for _, t := range [][]Entry{Table(), Sarama()} {
		for _, e := range t {
			if e.Pattern == pattern {
				return e, true
			}
		}
	}
	return Entry{}, false
}
