#!/usr/bin/env bash
# bench/benthos.sh BENTHOS_BIN BROKERS INPUT_TOPIC N [CONNECTOR [PROCESS]]: Benthos v4.27.0 drains
# INPUT_TOPIC (e.g. the drain scenario's preloaded topic) into a new topic; prints "benthos-drain: records/s"
# from its first to its last sent record (output_sent on :4195/metrics, polled every 0.2 s).
#   CONNECTOR  kafka (sarama; the default) or kafka_franz (franz-go), for both the input and the output
#   PROCESS    enrich (the default): parse each record as JSON and add an "enrichments" object, the job
#              bend does with its no-op enricher; none: pass the records through untouched
# Output pinned like bend's sink: lz4, 5 ms linger, 1 MiB batches, acks=all; the record key is kept.
# BENTHOS_INPUT_BATCH=N batches the input N records at a time (period 5 ms), which Benthos processes
# and sends as one; unset, every record travels through the pipeline alone (Benthos's default).
# Build the binary outside the repository (see /work/shared/notes/peers.md). One with just the components
# this uses builds in about a minute (the full distribution's go.sum does not resolve here):
#   mkdir /tmp/benthos && cd /tmp/benthos && go mod init benthosbench &&
#   go get github.com/benthosdev/benthos/v4@v4.27.0 && cat >main.go <<'GO'
#   package main
#
#   import (
#   	"context"
#
#   	_ "github.com/benthosdev/benthos/v4/public/components/io"
#   	_ "github.com/benthosdev/benthos/v4/public/components/kafka"
#   	_ "github.com/benthosdev/benthos/v4/public/components/prometheus"
#   	_ "github.com/benthosdev/benthos/v4/public/components/pure"
#   	"github.com/benthosdev/benthos/v4/public/service"
#   )
#
#   func main() { service.RunCLI(context.Background()) }
#   GO
#   go mod tidy && go build -o benthos .
set -euo pipefail
BIN=${1:?usage: bench/benthos.sh BENTHOS_BIN BROKERS INPUT_TOPIC N [kafka|kafka_franz [enrich|none]]}
B=${2:?} IN=${3:?} N=${4:?} CONN=${5:-kafka} PROC=${6:-enrich}
tag=$(date +%s)
dir=$(mktemp -d /tmp/bench-benthos.XXXXXX)
case $CONN in
kafka)
  input="  kafka:
    addresses: [\"$B\"]
    topics: [\"$IN\"]
    consumer_group: benthos-bench-$tag
    start_from_oldest: true
    checkpoint_limit: 10000"
  output="  kafka:
    addresses: [\"$B\"]
    topic: benthos-bench-$tag.out
    key: \${! meta(\"kafka_key\") }
    compression: lz4
    ack_replicas: true
    max_in_flight: 64
    max_msg_bytes: 1048576
    batching: {byte_size: 1048576, period: 5ms}"
  ;;
kafka_franz)
  input="  kafka_franz:
    seed_brokers: [\"$B\"]
    topics: [\"$IN\"]
    consumer_group: benthos-bench-$tag
    start_from_oldest: true
    checkpoint_limit: 10000
    commit_period: 1s"
  output="  kafka_franz:
    seed_brokers: [\"$B\"]
    topic: benthos-bench-$tag.out
    key: \${! meta(\"kafka_key\") }
    compression: lz4
    max_in_flight: 64
    max_message_bytes: 1MiB
    batching: {byte_size: 1048576, period: 5ms}"
  ;;
*)
  echo "unknown connector $CONN (want kafka or kafka_franz)" >&2
  exit 2
  ;;
esac
if [[ -n ${BENTHOS_INPUT_BATCH:-} ]]; then
  input+="
    batching: {count: $BENTHOS_INPUT_BATCH, period: 5ms}"
fi
case $PROC in
enrich) processors='    - mapping: |
        root = this
        root.enrichments = {"noop": {}}' ;;
none) processors="    []" ;;
*)
  echo "unknown PROCESS $PROC (want enrich or none)" >&2
  exit 2
  ;;
esac
cat >"$dir/config.yaml" <<EOF
http: {address: 127.0.0.1:4195}
input:
$input
pipeline:
  processors:
$processors
output:
$output
metrics: {prometheus: {}}
logger: {level: WARN}
EOF
echo "benthos $CONN, process $PROC, input batch ${BENTHOS_INPUT_BATCH:-none}: config $dir/config.yaml" >&2
if curl -s -o /dev/null 127.0.0.1:4195/metrics; then
  echo "something already serves 127.0.0.1:4195 (an earlier Benthos?); stop it first" >&2
  exit 1
fi
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"$BIN" -c "$dir/config.yaml" >"$dir/log" 2>&1 &
pid=$!
# Stop it and wait, so the next run finds port 4195 free.
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
sent() { curl -s 127.0.0.1:4195/metrics | awk '/^output_sent[{ ]/ { s += $NF } END { printf "%d", s }'; }
start=""
n0=0
deadline=$((SECONDS + 300))
while ((SECONDS < deadline)); do
  n=$(sent || echo 0)
  now=$(date +%s%N)
  [[ -z $start && ${n:-0} -gt 0 ]] && start=$now && n0=$n
  if [[ ${n:-0} -ge $N ]]; then break; fi
  sleep 0.2
done
echo "benthos sent $n records ($(grep -c . "$dir/log") log lines in $dir/log)" >&2
echo "benthos peak RSS: $(grep VmHWM /proc/$pid/status | awk '{print $2/1024 " MB"}')" >&2
echo "benthos-drain: $(awk -v n="$((n - n0))" -v s="$start" -v e="$now" 'BEGIN { printf "%.0f", n / ((e - s) / 1e9) }')"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
