#!/usr/bin/env bash
# Load tests of a release build, on the embedded store and on Redis, with the
# server's memory and start-up time. Writes results to stdout (JSON lines
# prefixed by the store) — docs/performance.md quotes a run of it.
#   cargo build --release --bin tessera --example loadgen
#   bash benches/run-load.sh [DURATION_SECONDS] [ALG] [STORES]
# ALG: RS256 (default), ES256 or EdDSA; STORES: "embedded redis" (default).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-8}
alg=${2:-RS256}
stores=${3:-embedded redis}
bin=target/release/tessera
loadgen=target/release/examples/loadgen
redis_port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --logfile /dev/null
trap 'redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true; kill "${server:-0}" 2>/dev/null || true' EXIT

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
peak_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

for store in $stores; do
  work=$(mktemp -d)
  export TESSERA_DATA_DIR=$work/data TESSERA_KEYS_DIR=$work/keys TESSERA_LISTEN=127.0.0.1:3100 TESSERA_LOG=warn
  # The load generator signs every virtual user up from 127.0.0.1.
  export TESSERA_SIGNUPS_PER_ADDRESS=1000000
  if [ "$store" = redis ]; then export TESSERA_REDIS_URL=redis://127.0.0.1:$redis_port/0; else unset TESSERA_REDIS_URL; fi
  # The signing key exists before the timed start (first start generates it).
  $bin keys generate --alg "$alg" >/dev/null
  client=$($bin clients create --name load --grant client_credentials --scope api --json)
  id=$(python3 -c 'import json,sys;print(json.loads(sys.argv[1])["client_id"])' "$client")
  secret=$(python3 -c 'import json,sys;print(json.loads(sys.argv[1])["client_secret"])' "$client")

  start=$(date +%s%N)
  $bin serve & server=$!
  until curl -sf http://127.0.0.1:3100/readyz >/dev/null; do sleep 0.005; done
  ready_ms=$(( ($(date +%s%N) - start) / 1000000 ))
  sleep 1
  echo "$store {\"ready_ms\": $ready_ms, \"idle_rss_kb\": $(rss_kb $server)}"

  # Each result line ends with the server's peak RSS so far.
  run() { echo "$store/$alg $($loadgen --url http://127.0.0.1:3100 --duration "$duration" --warmup 2 "$@" | tail -1) peak_rss_kb=$(peak_kb $server)"; }
  run --scenario client-credentials --concurrency 64 --client-id "$id" --client-secret "$secret"
  run --scenario client-credentials --concurrency 16 --client-id "$id" --client-secret "$secret"
  run --scenario refresh-chain --concurrency 64
  run --scenario refresh-chain --concurrency 16
  run --scenario me --concurrency 64
  run --scenario jwks --concurrency 64
  # Login saturates bcrypt; /healthz is measured at the same time.
  $loadgen --url http://127.0.0.1:3100 --duration "$duration" --warmup 2 --scenario login --concurrency 16 > "$work/login.out" &
  login=$!
  sleep 1
  echo "$store healthz-during-login $($loadgen --url http://127.0.0.1:3100 --duration "$duration" --warmup 1 --scenario healthz --concurrency 4 | tail -1)"
  wait $login
  echo "$store $(tail -1 "$work/login.out")"
  echo "$store {\"peak_rss_kb\": $(peak_kb $server)}"
  kill -TERM $server; wait $server || true
  rm -rf "$work"
done
