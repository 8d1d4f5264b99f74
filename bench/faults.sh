#!/usr/bin/env bash
# bench/faults.sh [--long] [FAULT...]: bend's fault suite (bench/cmd/bendfault) against a real Apache Kafka
# broker of its own, with toxiproxy between bend and the broker for the network faults.
#
#   bench/faults.sh            the short version CI runs: 60k events at 3k/s per fault (the network
#                              fault: as many as keep data flowing through its phases; the sources
#                              fault: 30k events at 2k/s from each of two fake publishers), ~5 min
#   bench/faults.sh --long     10x the events at 6k/s, 4x the incidents; writes
#                              bench/results/faults-long.json, ~15-20 min on 2 cores
#
# FAULT is kill, broker, sink, worker, network or sources (default: all). Needs Go, Java 17+ and Maven; toxiproxy
# (github.com/Shopify/toxiproxy/v2 v2.5.0) is built into the scratch directory on first use.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
args=()
out=/tmp/bendfault/faults.json
if [[ ${1:-} == --long ]]; then
  shift
  args+=(--long)
  out=bench/results/faults-long.json
fi
exec go run ./bench/cmd/bendfault "${args[@]}" --out "$out" "${@:-all}"
