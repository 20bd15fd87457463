#!/usr/bin/env bash
# The OpenID Connect code flow end to end (`loadgen --scenario oidc-code`:
# authorize with an existing browser session → code → token with an ID
# token; one flow counts as one request), on Tessera with the Redis store,
# with an RS256 and then an ES256 signing key, per server CPU-second
# (`--cpu-of`); with PEER=1 also node-oidc-provider (../shared/peers/oidc-provider).
#   CARGO_TARGET_DIR=/work/target-rel cargo build --release --bin tessera --example loadgen
#   CARGO_TARGET_DIR=/work/target-rel bash benches/run-oidc.sh [DURATION_SECONDS] [CONCURRENCY...]
# Defaults: 8 s, 16 and 64 clients; ALGS="RS256 ES256"; PEER=0 (PEER_DIR: the
# peer's directory, default ../shared/peers/oidc-provider; without its
# node_modules it is copied and `npm ci` run in the copy).
# The relying party is a confidential client registered with only the
# authorization_code grant (so no refresh family per flow: each flow signs
# one access token and one ID token; with an ES256 key alone the ID token
# is ES256 too). The peer's `bench` client also gets a refresh token per
# flow (its configuration issues one always). Password hashing cost 4
# (TESSERA_BCRYPT_COST): only the set-up signs in.
# Prints one JSON line per run, prefixed by the server and algorithm.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-8}
shift || true
concurrencies=${*:-16 64}
algs=${ALGS:-RS256 ES256}
target=${CARGO_TARGET_DIR:-target}
bin=$target/release/tessera
loadgen=$target/release/examples/loadgen
redirect=https://rp.example/callback
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --logfile /dev/null
server=
work=$(mktemp -d)
export PEER_STATE=$work/peer
mkdir -p "$PEER_STATE"; : > "$PEER_STATE/pids"
trap 'kill ${server:-} $(cat "$PEER_STATE/pids") 2>/dev/null || true; redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
export TESSERA_LOG=warn TESSERA_SIGNUPS_PER_ADDRESS=1000000 TESSERA_BCRYPT_COST=${TESSERA_BCRYPT_COST:-4}
export TESSERA_REDIS_URL=redis://127.0.0.1:$redis_port/0

for alg in $algs; do
  port=$(free_port)
  export TESSERA_DATA_DIR=$work/$alg/data TESSERA_KEYS_DIR=$work/$alg/keys
  export TESSERA_LISTEN=127.0.0.1:$port TESSERA_ISSUER=http://127.0.0.1:$port
  $bin keys generate --alg "$alg" >/dev/null
  client=$($bin clients create --name "OIDC load RP" --grant authorization_code \
    --redirect-uri "$redirect" --scope openid --scope profile --scope email --json)
  id=$(python3 -c 'import json,sys;print(json.loads(sys.argv[1])["client_id"])' "$client")
  secret=$(python3 -c 'import json,sys;print(json.loads(sys.argv[1])["client_secret"])' "$client")
  $bin serve & server=$!
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.05; done
  for c in $concurrencies; do
    echo "tessera/$alg $($loadgen --url "http://127.0.0.1:$port" --scenario oidc-code --concurrency "$c" \
      --duration "$duration" --warmup 2 --cpu-of "$server" --client-id "$id" --client-secret "$secret" \
      --redirect-uri "$redirect" | tail -1)"
  done
  kill -TERM "$server"; wait "$server" || true; server=
done

if [ "${PEER:-0}" = 1 ]; then
  peer=${PEER_DIR:-../shared/peers/oidc-provider}
  if [ ! -d "$peer/node_modules/oidc-provider" ]; then
    # The shared copy is read-only: install its locked dependencies in a copy.
    cp -r "$peer" "$work/peer-src"; chmod -R u+w "$work/peer-src"; peer=$work/peer-src
    (cd "$peer" && npm ci --no-audit --no-fund -q >/dev/null)
  fi
  port=$(free_port)
  bash "$peer/run.sh" "$port" >/dev/null
  node_pid=$(tail -1 "$PEER_STATE/pids")
  for c in $concurrencies; do
    # Its development login accepts any account; its grant is the
    # `api` resource's (a JWT access token, RS256) and `openid`.
    echo "peer/RS256 $($loadgen --url "http://127.0.0.1:$port" --peer --scenario oidc-code --concurrency "$c" \
      --duration "$duration" --warmup 2 --cpu-of "$node_pid" --client-id bench --client-secret bench-secret \
      --redirect-uri http://127.0.0.1/cb --scope "openid api" | tail -1)"
  done
fi
