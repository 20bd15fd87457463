#!/usr/bin/env bash
# Refresh rotation against the RS256 signing limit, measured in pairs: each
# round times our signing path alone on one core (criterion, `sign/RS256`),
# then refresh-chain with the server alone on that same core (`PIN=1
# benches/run-cpu.sh`), so the ratio of each pair compares two figures taken
# seconds apart on the same core. This machine's speed drifts by more than
# the effect being measured from one minute to the next, which a limit taken
# once at the start of a batch does not see.
#   cargo build --release --bin tessera --example loadgen && cargo bench --bench tokens --no-run
#   bash benches/run-ratio.sh [ROUNDS] [DURATION_SECONDS]
# One JSON line per round: core, limit_us, limit_per_s, per_server_cpu_s, ratio.
# CORES="1 0" alternates the server's core between rounds (default: 1).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
duration=${2:-8}
read -r -a cores <<< "${CORES:-1}"
for round in $(seq "$rounds"); do
  core=${cores[$(( (round - 1) % ${#cores[@]} ))]}
  limit_us=$(taskset -c "$core" cargo bench -q --bench tokens -- sign/RS256 \
      --warm-up-time 1 --measurement-time 4 2>/dev/null |
    python3 -c '
import re, sys
m = re.search(r"time:\s+\[\S+ \S+ (\S+) (\S+)", sys.stdin.read())
value, unit = float(m.group(1)), m.group(2)
print(value * {"ns": 1e-3, "µs": 1.0, "us": 1.0, "ms": 1e3}[unit])')
  line=$(SERVER_CPU=$core PIN=1 SCENARIOS=refresh-chain bash benches/run-cpu.sh "$duration" RS256)
  python3 -c '
import json, sys
core, limit_us, line = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
run = json.loads(line.split(" ", 1)[1])
limit = 1e6 / limit_us
print(json.dumps({"core": core, "limit_us": round(limit_us, 1), "limit_per_s": round(limit),
                  "per_server_cpu_s": round(run["per_server_cpu_s"]),
                  "ratio": round(run["per_server_cpu_s"] / limit, 3), "errors": run["errors"]}))
' "$core" "$limit_us" "$line"
done
