#!/usr/bin/env bash
# The peer (node-oidc-provider, ../shared/peers/oidc-provider) under the same
# load generator as Tessera, in the same session: client_credentials and
# refresh rotation (each virtual user always presents its newest token) at
# 16 and 64 clients, plus its memory. Prints one JSON line per run.
#   cargo build --release --example loadgen
#   bash benches/run-peer.sh [DURATION_SECONDS]
# The peer's directory may be read-only: without its node_modules it is
# copied under the target directory once and `npm ci` runs in the copy.
# The peer's refresh tokens come from its login pages (get_refresh.py, which
# needs Python `requests`: installed here into the git-ignored .venv-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-8}
peer=../shared/peers/oidc-provider
target=${CARGO_TARGET_DIR:-target}
loadgen=$target/release/examples/loadgen
port=4100
if [ ! -x .venv-bench/bin/python ]; then
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install -q --disable-pip-version-check requests==2.32.5
fi
export PEER_STATE
PEER_STATE=$(mktemp -d)
trap 'kill $(cat "$PEER_STATE/pids") 2>/dev/null || true' EXIT
if [ ! -d "$peer/node_modules/oidc-provider" ]; then
  if [ ! -d "$target/peer/node_modules/oidc-provider" ]; then
    rm -rf "$target/peer"; cp -r "$peer" "$target/peer"; chmod -R u+w "$target/peer"
    (cd "$target/peer" && npm ci --no-audit --no-fund -q >/dev/null)
  fi
  peer=$target/peer
fi
bash "$peer/run.sh" "$port" >/dev/null
base=http://127.0.0.1:$port
node_pid=$(tail -1 "$PEER_STATE/pids")
.venv-bench/bin/python "$peer/get_refresh.py" "$base" 64 "$PEER_STATE/refresh.txt" >/dev/null

run() { echo "peer $($loadgen --url "$base" --duration "$duration" --warmup 2 --client-id bench --client-secret bench-secret --form resource=urn:tessera:api "$@" | tail -1)"; }
echo "peer {\"idle_rss_kb\": $(awk '/^VmRSS/ {print $2}' /proc/"$node_pid"/status)}"
run --scenario client-credentials --concurrency 64
run --scenario client-credentials --concurrency 16
# Each chain starts from its own token; 64 chains, then 16 fresh ones.
run --scenario refresh-chain --concurrency 64 --refresh-tokens "$PEER_STATE/refresh.txt"
.venv-bench/bin/python "$peer/get_refresh.py" "$base" 16 "$PEER_STATE/refresh16.txt" >/dev/null
run --scenario refresh-chain --concurrency 16 --refresh-tokens "$PEER_STATE/refresh16.txt"
echo "peer {\"peak_rss_kb\": $(awk '/^VmHWM/ {print $2}' /proc/"$node_pid"/status)}"
