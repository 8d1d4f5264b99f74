#!/usr/bin/env bash
# bench/baselines.sh BROKERS [N]: raw client rates on the broker bendbench used, with pinned settings:
# acks=all, linger 5 ms, 1 MiB batches, no compression (the tools send random bytes that do not compress),
# 300-byte records, 8 partitions, N records (default 1,000,000).
#   1. sarama kafka-producer-performance (the client bend uses; the ratio's denominator)
#   2. Kafka's ProducerPerformance and ConsumerPerformance (Java client), via scripts/kafka perf-tool
#   3. kcat (librdkafka) produce and consume, if installed
# Needs GOBIN tools outside the repo:
#   GOBIN=/tmp/benchbin go install github.com/IBM/sarama/tools/kafka-producer-performance@v1.61.1
# Prints one "tool: records/s" line per measurement; everything else goes to stderr.
set -euo pipefail
B=${1:?usage: bench/baselines.sh BROKERS [N]}
N=${2:-1000000}
SIZE=300
GOBIN=${GOBIN:-/tmp/benchbin}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KAFKA="$ROOT/scripts/kafka"
tag=$(date +%s)

topic() {
  "$KAFKA" perf-tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$B" --create \
    --topic "$1" --partitions 8 --replication-factor 1 >/dev/null
}
rate() { awk -v n="$1" -v s="$2" -v e="$3" 'BEGIN { printf "%.0f", n / ((e - s) / 1e9) }'; }

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

if [[ ${ONLY_KCAT:-} != 1 ]]; then
# 1. sarama, async producer, round robin over 8 partitions.
t=baseline.sarama.$tag; topic "$t"
out=$("$GOBIN/kafka-producer-performance" -brokers "$B" -topic "$t" -message-load "$N" -message-size $SIZE \
  -required-acks -1 -flush-frequency 5ms -flush-bytes 1048576 -max-message-bytes 1048576 \
  -compression none -partitioner roundrobin -version 3.6.0 2>&1 | tail -1)
echo "sarama kafka-producer-performance: $out" >&2
echo "sarama-produce: $(echo "$out" | grep -oE '[0-9.]+ records/sec' | cut -d' ' -f1)"

# 2. Kafka's Java tools.
t=baseline.java.$tag; topic "$t"
out=$("$KAFKA" perf-tool org.apache.kafka.tools.ProducerPerformance --topic "$t" --num-records "$N" \
  --record-size $SIZE --throughput -1 --producer-props bootstrap.servers="$B" acks=all linger.ms=5 \
  batch.size=1048576 compression.type=none 2>/dev/null | tail -1)
echo "ProducerPerformance: $out" >&2
echo "java-produce: $(echo "$out" | grep -oE '[0-9.]+ records/sec' | cut -d' ' -f1)"
out=$("$KAFKA" perf-tool org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$B" --topic "$t" \
  --messages "$N" 2>/dev/null | tail -1)
echo "ConsumerPerformance: $out" >&2
# start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, ...
echo "java-consume: $(echo "$out" | cut -d, -f6 | tr -d ' ')"        # includes the group join
echo "java-consume-fetch: $(echo "$out" | cut -d, -f10 | tr -d ' ')" # fetch time only

fi

# 3. kcat.
if command -v kcat >/dev/null; then
  t=baseline.kcat.$tag; topic "$t"
  f=$(mktemp /tmp/bench-kcat.XXXXXX)
  head -c $((N * SIZE * 3 / 4 + 4096)) /dev/urandom | base64 -w $((SIZE - 1)) | head -n "$N" >"$f" || true # SIGPIPE from head
  s=$(date +%s%N)
  kcat -P -b "$B" -t "$t" -l -X acks=all -X linger.ms=5 -X batch.size=1048576 -X compression.codec=none "$f"
  e=$(date +%s%N)
  echo "kcat-produce: $(rate "$N" "$s" "$e")"
  s=$(date +%s%N)
  got=$(kcat -C -b "$B" -t "$t" -o beginning -e -q | wc -l)
  e=$(date +%s%N)
  echo "kcat consumed $got records" >&2
  echo "kcat-consume: $(rate "$got" "$s" "$e")"
  rm -f "$f"
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
