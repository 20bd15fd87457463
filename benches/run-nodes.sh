#!/usr/bin/env bash
# Two Tessera nodes against one, on this machine: the same Redis for token
# state, the same keys dir and the same user store (here the embedded SQLite
# file, shared by both processes through WAL; in production MongoDB). The
# load generator sends each virtual user's requests to the nodes in turn,
# so every refresh chain rotates at both nodes. Prints JSON lines.
#   cargo build --release --bin tessera --example loadgen
#   bash benches/run-nodes.sh [DURATION_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-8}
bin=target/release/tessera
loadgen=target/release/examples/loadgen
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --logfile /dev/null
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
export TESSERA_DATA_DIR=$work/data TESSERA_KEYS_DIR=$work/keys TESSERA_LOG=warn TESSERA_SIGNUPS_PER_ADDRESS=1000000
export TESSERA_REDIS_URL=redis://127.0.0.1:$redis_port/0
$bin keys generate --alg RS256 >/dev/null
client=$($bin clients create --name load --grant client_credentials --scope api --json)
id=$(python3 -c 'import json,sys;print(json.loads(sys.argv[1])["client_id"])' "$client")
secret=$(python3 -c 'import json,sys;print(json.loads(sys.argv[1])["client_secret"])' "$client")

start_node() {
  local port=$1
  TESSERA_LISTEN=127.0.0.1:$port $bin serve & pids+=($!)
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.01; done
}
a=$(free_port); b=$(free_port)
start_node "$a"; start_node "$b"
one=http://127.0.0.1:$a
two=http://127.0.0.1:$a,http://127.0.0.1:$b

for nodes in one two; do
  urls=${!nodes}
  run() { echo "$nodes-node $($loadgen --url "$urls" --duration "$duration" --warmup 2 "$@" | tail -1)"; }
  run --scenario client-credentials --concurrency 64 --client-id "$id" --client-secret "$secret"
  run --scenario refresh-chain --concurrency 64
  run --scenario me --concurrency 64
done
