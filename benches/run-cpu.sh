#!/usr/bin/env bash
# Requests per server CPU-second (the server's own utime+stime around each
# measured window: `loadgen --cpu-of PID`) for the token endpoint, the
# resource layer, UserInfo and introspection, on Redis.
#   cargo build --release --bin tessera --example loadgen
#   bash benches/run-cpu.sh [DURATION_SECONDS] [ALG]
# Prints one JSON line per scenario.
# PIN=1 runs the server on CPU 1, the load generator and Redis on CPU 0 (taskset):
# the server then has one core and one async worker to itself, so its CPU
# time is its own work, without preemption by the load generator or
# hand-offs between its two workers (SERVER_CPU=0 swaps the cores). SCENARIOS="refresh-chain ..." limits
# the scenarios; BIN=path/to/tessera measures another build (a baseline);
# CONCURRENCY (default 32) sets the clients. PERF_OUT=DIR also records a
# flat `perf` profile of the server (PERF_ARGS, default "-F 499"; the middle
# of each measured window) into DIR/ALG-SCENARIO.data; benches/profile-summary.py
# groups it. PERF_ARGS="-F 299 --call-graph dwarf,16384" records call graphs.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-8}
alg=${2:-RS256}
target=${CARGO_TARGET_DIR:-target}
bin=${BIN:-$target/release/tessera}
loadgen=$target/release/examples/loadgen
port=3102
redis_port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
server_cpu=${SERVER_CPU:-1}
if [ "${PIN:-0}" = 1 ]; then
  pin_server="taskset -c $server_cpu"; pin_load="taskset -c $((1 - server_cpu))"
else pin_server=""; pin_load=""; fi
$pin_load redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --logfile /dev/null
trap 'redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true; kill "${server:-0}" 2>/dev/null || true' EXIT

work=$(mktemp -d)
export TESSERA_DATA_DIR=$work/data TESSERA_KEYS_DIR=$work/keys TESSERA_LISTEN=127.0.0.1:$port
export TESSERA_ISSUER=http://127.0.0.1:$port TESSERA_LOG=warn TESSERA_SIGNUPS_PER_ADDRESS=1000000
# Only the load generator's set-up hashes passwords: a low cost keeps it short.
export TESSERA_BCRYPT_COST=4
export TESSERA_REDIS_URL=redis://127.0.0.1:$redis_port/0
$bin keys generate --alg "$alg" >/dev/null
client=$($bin clients create --name load --grant client_credentials --scope api --json)
id=$(python3 -c 'import json,sys;print(json.loads(sys.argv[1])["client_id"])' "$client")
secret=$(python3 -c 'import json,sys;print(json.loads(sys.argv[1])["client_secret"])' "$client")
$pin_server $bin serve & server=$!
until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.05; done

run() {
  if [ -n "${SCENARIOS:-}" ] && [[ " $SCENARIOS " != *" $2 "* ]]; then return 0; fi
  local profiler=
  if [ -n "${PERF_OUT:-}" ]; then
    mkdir -p "$PERF_OUT"
    # After the 2 s warm-up and one more second, for all but the last second.
    (sleep 3; exec $pin_load perf record -q ${PERF_ARGS:--F 499} -p "$server" -o "$PERF_OUT/${alg,,}-$2.data" \
      -- sleep $((duration > 3 ? duration - 2 : 1)) >/dev/null 2>&1) & profiler=$!
  fi
  echo "$alg $($pin_load $loadgen --url "http://127.0.0.1:$port" --duration "$duration" --warmup 2 \
    --cpu-of "$server" "$@" | tail -1)"
  if [ -n "$profiler" ]; then wait "$profiler" || true; fi
}
run --scenario client-credentials --concurrency "${CONCURRENCY:-32}" --client-id "$id" --client-secret "$secret"
run --scenario refresh-chain --concurrency "${CONCURRENCY:-32}"
run --scenario refresh-chain-dpop --concurrency "${CONCURRENCY:-32}"
run --scenario me --concurrency "${CONCURRENCY:-32}"
run --scenario userinfo --concurrency "${CONCURRENCY:-32}"
run --scenario introspect --concurrency "${CONCURRENCY:-32}" --client-id "$id" --client-secret "$secret"
kill -TERM "$server"; wait "$server" || true
rm -rf "$work"
