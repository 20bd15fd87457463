#!/usr/bin/env bash
# The cost of a DPoP-bound refresh against an unbound one, per server
# CPU-second: the load generator reads the server's own utime+stime
# (/proc/PID/stat) at the start and end of the measured window
# (`--cpu-of PID`), so its own share of the two cores does not count. Alternates the two scenarios ROUNDS times on each store.
#   cargo build --release --bin tessera --example loadgen
#   bash benches/run-dpop.sh [DURATION_SECONDS] [ROUNDS] [STORES]
# Prints one JSON line per run and a summary per store.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-8}
rounds=${2:-3}
stores=${3:-embedded redis}
target=${CARGO_TARGET_DIR:-target}
bin=$target/release/tessera
loadgen=$target/release/examples/loadgen
port=3101
redis_port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --logfile /dev/null
trap 'redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true; kill "${server:-0}" 2>/dev/null || true' EXIT

for store in $stores; do
  work=$(mktemp -d)
  export TESSERA_DATA_DIR=$work/data TESSERA_KEYS_DIR=$work/keys TESSERA_LISTEN=127.0.0.1:$port
  export TESSERA_ISSUER=http://127.0.0.1:$port TESSERA_LOG=warn TESSERA_SIGNUPS_PER_ADDRESS=1000000
  if [ "$store" = redis ]; then export TESSERA_REDIS_URL=redis://127.0.0.1:$redis_port/0; else unset TESSERA_REDIS_URL; fi
  $bin keys generate --alg RS256 >/dev/null
  $bin serve & server=$!
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.05; done
  for round in $(seq "$rounds"); do
    for scenario in refresh-chain refresh-chain-dpop; do
      # Warm-up and sign-ups happen before the CPU is read.
      result=$($loadgen --url "http://127.0.0.1:$port" --scenario "$scenario" --concurrency 32 \
        --duration "$duration" --warmup 2 --cpu-of "$server" | tail -1)
      echo "$store round=$round $result"
    done
  done
  kill -TERM "$server"; wait "$server" || true
  rm -rf "$work"
done
