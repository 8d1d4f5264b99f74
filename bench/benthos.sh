#!/usr/bin/env bash
# bench/benthos.sh BENTHOS_BIN BROKERS INPUT_TOPIC N: Benthos v4.27.0 (sarama `kafka` input and output,
# no processors) drains INPUT_TOPIC (e.g. the drain scenario's preloaded topic) into a new topic; prints
# "benthos-drain: records/s" from its first to its last sent record (output_sent on :4195/metrics,
# polled every 0.2 s). Output pinned like bend's sink: lz4, 5 ms linger, 1 MiB batches, acks=all.
# Build the binary outside the repository (see /work/shared/notes/peers.md):
#   cd /tmp/benthos && go mod init x && go get github.com/benthosdev/benthos/v4@v4.27.0 &&
#   go build -ldflags=-checklinkname=0 -o benthos github.com/benthosdev/benthos/v4/cmd/benthos
set -euo pipefail
BIN=${1:?usage: bench/benthos.sh BENTHOS_BIN BROKERS INPUT_TOPIC N}
B=${2:?} IN=${3:?} N=${4:?}
tag=$(date +%s)
dir=$(mktemp -d /tmp/bench-benthos.XXXXXX)
cat >"$dir/config.yaml" <<EOF
http: {address: 127.0.0.1:4195}
input:
  kafka:
    addresses: ["$B"]
    topics: ["$IN"]
    consumer_group: benthos-bench-$tag
    start_from_oldest: true
    checkpoint_limit: 10000
output:
  kafka:
    addresses: ["$B"]
    topic: benthos-bench-$tag.out
    compression: lz4
    ack_replicas: true
    max_in_flight: 64
    max_msg_bytes: 1048576
    batching: {byte_size: 1048576, period: 5ms}
metrics: {prometheus: {}}
logger: {level: WARN}
EOF
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"$BIN" -c "$dir/config.yaml" >"$dir/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
sent() { curl -s 127.0.0.1:4195/metrics | awk '/^output_sent[{ ]/ { s += $NF } END { printf "%d", s }'; }
start=""
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
