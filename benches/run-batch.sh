#!/usr/bin/env bash
# The whole issue-#22 batch, in one go and in a fixed order, so that every
# figure of a `docs/performance.md` session comes from one run on one
# machine: the signing limits, the pinned and unpinned CPU runs, Tessera and
# the peer at 64 clients, the OpenID Connect code flow with the peer, the
# limit and pinned refresh in pairs, then the state per family at each fill
# level. Do not edit these scripts while a batch runs: bash reads them as
# it goes. Nothing else may run meanwhile
# (no build, no test): every figure is CPU time on a 2-core machine.
#   export CARGO_TARGET_DIR=/work/target-rel   # or leave unset: target/
#   cargo build --release --bin tessera --example loadgen --example famgen
#   cargo bench --bench tokens --no-run
#   bash benches/run-batch.sh docs/bench/run-N
# Settings (environment): DURATION=8, RUNS=3 (pinned RS256 repetitions),
# RATIO_ROUNDS=6 (benches/run-ratio.sh), STATE_ROUNDS=3 (run-state.sh ROUNDS),
# LEVELS and SQLITE_LEVELS as benches/run-state.sh, BEFORE=path/to/tessera
# (an earlier build, measured pinned and profiled beside this one).
# Writes into OUT the files its README lists (see docs/bench/run-8/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: run-batch.sh OUT}
duration=${DURATION:-8}
runs=${RUNS:-3}
mkdir -p "$out"
step() { printf '\n== %s %s\n' "$(date -u +%T)" "$*" >&2; }

step limits
{
  echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD)"
  echo "# taskset -c 1 cargo bench --bench tokens -- sign/"
  taskset -c 1 cargo bench --bench tokens -- sign/ 2>&1 | grep -E '^sign/|time:' || true
  echo "# openssl speed -seconds 5 rsa2048"
  openssl speed -seconds 5 rsa2048 2>/dev/null | tail -2 || true
} > "$out/limits.txt"

step "pinned RS256 x$runs"
: > "$out/cpu-pinned-rs256.jsonl"
for _ in $(seq "$runs"); do
  PIN=1 SCENARIOS="refresh-chain client-credentials refresh-chain-dpop" \
    bash benches/run-cpu.sh "$duration" RS256 >> "$out/cpu-pinned-rs256.jsonl"
done
if [ -n "${BEFORE:-}" ]; then
  step "pinned RS256 before x$runs"
  : > "$out/cpu-pinned-rs256-before.jsonl"
  for _ in $(seq "$runs"); do
    BIN=$BEFORE PIN=1 SCENARIOS="refresh-chain client-credentials" \
      bash benches/run-cpu.sh "$duration" RS256 >> "$out/cpu-pinned-rs256-before.jsonl"
  done
fi
step profiles
# Flat profiles of the pinned server, refresh-chain, 20 s each (this build,
# then BEFORE); the grouped table is profile.md, the raw data is not kept.
for alg in RS256 ES256; do
  PIN=1 PERF_OUT=$out/profile SCENARIOS=refresh-chain \
    bash benches/run-cpu.sh 20 "$alg" >> "$out/profile-runs.jsonl"
  if [ -n "${BEFORE:-}" ]; then
    BIN=$BEFORE PIN=1 PERF_OUT=$out/profile-before SCENARIOS=refresh-chain \
      bash benches/run-cpu.sh 20 "$alg" >> "$out/profile-runs-before.jsonl"
  fi
done
python3 benches/profile-summary.py "$out"/profile*/*.data > "$out/profile.md" || true
rm -rf "$out/profile" "$out/profile-before"
step "pinned ES256"
PIN=1 bash benches/run-cpu.sh "$duration" ES256 > "$out/cpu-pinned-es256.jsonl"
step "unpinned RS256, ES256"
bash benches/run-cpu.sh "$duration" RS256 > "$out/cpu-rs256.jsonl"
bash benches/run-cpu.sh "$duration" ES256 > "$out/cpu-es256.jsonl"
step "Tessera at 64 clients"
for alg in RS256 ES256; do
  CONCURRENCY=64 SCENARIOS="refresh-chain client-credentials" \
    bash benches/run-cpu.sh "$duration" "$alg" > "$out/tessera-64-${alg,,}.jsonl"
done
step peer
bash benches/run-peer.sh "$duration" > "$out/peer.jsonl" 2> "$out/peer.err"
step "OpenID Connect code flow"
PEER=1 bash benches/run-oidc.sh "$duration" 16 64 > "$out/oidc.jsonl" 2> "$out/oidc.err"
step "limit and pinned refresh in pairs"
CORES="1 0" bash benches/run-ratio.sh "${RATIO_ROUNDS:-6}" "$duration" > "$out/ratio.jsonl"
step "state per family"
OUT=$out ROUNDS=${STATE_ROUNDS:-3} bash benches/run-state.sh > "$out/state.md"
step done
