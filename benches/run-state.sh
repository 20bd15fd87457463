#!/usr/bin/env bash
# State per refresh family, and refresh rotation as the store fills (issue #22).
# For each fill level: a private redis-server, `famgen` writes that many
# realistic families through the store API (examples/famgen.rs says what
# mix), INFO memory and DBSIZE before and after give bytes and keys per
# family, benches/redis-keys.py measures each kind of key (MEMORY USAGE,
# OBJECT ENCODING of a sample); then the release server runs against that
# Redis and `loadgen --scenario refresh-chain --concurrency 64 --cpu-of PID`
# measures rotations per second and per server CPU-second (which should not
# move from 10k to 1M families). Then the embedded SQLite store: file size
# (and dbstat per table) per family. Then the per-user document size of the
# MongoDB user store (SecantusDB, as the tests run it; users signed up
# through the API; families never live in MongoDB).
#   CARGO_TARGET_DIR=/work/target-rel cargo build --release --bin tessera --example loadgen --example famgen
#   CARGO_TARGET_DIR=/work/target-rel bash benches/run-state.sh
# Settings (environment): LEVELS="10000 100000 1000000" (Redis),
# SQLITE_LEVELS="10000 100000", DURATION=10, WARMUP=2, CONCURRENCY=64,
# ALG=RS256, SEED=1, FAMGEN_CONCURRENCY=128, ROUNDS=0 (after the levels,
# this many more refresh-chain runs per level, the levels taken in turn
# while every filled Redis stays up: on a machine whose speed drifts, only
# interleaved runs compare one level with another), MONGO=auto (1: MongoDB too,
# 0: not; auto: if .venv has secantusd-py), MONGO_USERS=1000,
# OUT=docs/bench/run-6. The password hash cost is TESSERA_BCRYPT_COST=4
# (default here): only the load generator's set-up signs in, nothing
# measured hashes a password.
# A Markdown table on stdout; raw JSON under $OUT (state-*.json*), with the
# commands that produced them in $OUT/state-commands.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
levels=${LEVELS:-10000 100000 1000000}
sqlite_levels=${SQLITE_LEVELS:-10000 100000}
duration=${DURATION:-10}
warmup=${WARMUP:-2}
concurrency=${CONCURRENCY:-64}
alg=${ALG:-RS256}
seed=${SEED:-1}
famgen_concurrency=${FAMGEN_CONCURRENCY:-128}
out=${OUT:-docs/bench/run-6}
target=${CARGO_TARGET_DIR:-target}
bin=$target/release/tessera
loadgen=$target/release/examples/loadgen
famgen=$target/release/examples/famgen
for exe in "$bin" "$loadgen" "$famgen"; do
  [ -x "$exe" ] || { echo "missing $exe: build it first (see the header)" >&2; exit 1; }
done
mkdir -p "$out"
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
work=$(mktemp -d)
redis_port=
server=
rounds=${ROUNDS:-0}
kept=()   # "level port server_pid redis_port" of each level kept up for ROUNDS
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  [ -n "$redis_port" ] && redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
  for entry in "${kept[@]}"; do
    read -r _ _ kept_server kept_redis <<< "$entry"
    kill "$kept_server" 2>/dev/null || true
    redis-cli -p "$kept_redis" shutdown nosave >/dev/null 2>&1 || true
  done
  [ -n "${mongo:-}" ] && kill "$mongo" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
commands=$out/state-commands.txt
log() { echo "$*" >> "$commands"; }
: > "$commands"
log "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) levels=[$levels] sqlite=[$sqlite_levels] alg=$alg"
info() { redis-cli -p "$redis_port" info memory | tr -d '\r' | awk -F: -v k="$1" '$1==k {print $2}'; }
json_field() { python3 -c 'import json,sys;print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
export TESSERA_LOG=warn TESSERA_SIGNUPS_PER_ADDRESS=1000000 TESSERA_BCRYPT_COST=${TESSERA_BCRYPT_COST:-4}
log "# server environment: TESSERA_LOG=warn TESSERA_SIGNUPS_PER_ADDRESS=1000000 TESSERA_BCRYPT_COST=$TESSERA_BCRYPT_COST, a fresh TESSERA_DATA_DIR and TESSERA_KEYS_DIR per level, TESSERA_LISTEN/TESSERA_ISSUER on a free port"

redis_rows=()
key_rows=()
for level in $levels; do
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --logfile /dev/null
  until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.05; done
  mem_before=$(info used_memory); keys_before=$(redis-cli -p "$redis_port" dbsize)
  cmd="$famgen --store redis://127.0.0.1:$redis_port --families $level --concurrency $famgen_concurrency --seed $seed"
  log "$cmd"
  gen=$($cmd 2>/dev/null | tail -1)
  echo "$gen" > "$out/state-famgen-redis-$level.json"
  mem_after=$(info used_memory); keys_after=$(redis-cli -p "$redis_port" dbsize)
  redis-cli -p "$redis_port" info memory | tr -d '\r' > "$out/state-redis-info-$level.txt"
  log "python3 benches/redis-keys.py $redis_port $level"
  python3 benches/redis-keys.py "$redis_port" "$level" > "$out/state-redis-keys-$level.json"

  # The server against the filled store.
  port=$(free_port)
  mkdir -p "$work/$level"
  export TESSERA_DATA_DIR=$work/$level/data TESSERA_KEYS_DIR=$work/$level/keys
  export TESSERA_LISTEN=127.0.0.1:$port TESSERA_ISSUER=http://127.0.0.1:$port
  export TESSERA_REDIS_URL=redis://127.0.0.1:$redis_port/0
  "$bin" keys generate --alg "$alg" >/dev/null
  "$bin" serve & server=$!
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.05; done
  cmd="$loadgen --url http://127.0.0.1:$port --scenario refresh-chain --concurrency $concurrency --duration $duration --warmup $warmup --cpu-of $server"
  log "TESSERA_REDIS_URL=redis://127.0.0.1:$redis_port/0 $bin serve  # pid $server, keys --alg $alg"
  log "$cmd"
  load=$($cmd | tail -1)
  echo "$load" > "$out/state-refresh-redis-$level.json"
  if [ "$rounds" -gt 0 ]; then
    kept+=("$level $port $server $redis_port"); server=; redis_port=
  else
    kill -TERM "$server"; wait "$server" || true; server=
    redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true; redis_port=
  fi

  mapfile -t rows < <(python3 - "$level" "$gen" "$load" "$mem_before" "$mem_after" "$keys_before" "$keys_after" "$out/state-redis-keys-$level.json" <<'EOF'
import json, sys
level, gen, load = int(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
mb, ma, kb, ka = map(int, sys.argv[4:8])
keys = json.load(open(sys.argv[8]))
cpu = load.get("per_server_cpu_s") or 0
print(f"| Redis | {level:,} | {gen['users']:,} | {gen['rotations'] / level:.1f} | {(ka - kb) / level:.2f} "
      f"| {(ma - mb) / level:,.0f} | {gen['families_per_s']:,.0f} | {load['rps']:,.0f} "
      f"| {load['p99_ms']:.1f} ms | {cpu:,.0f} | {load['errors']} |")
kinds = "; ".join(f"`{k}` {g['count']:,} ({g['per_family']:.2f}/family, {'/'.join(g['type'])} "
                  f"{','.join(g['encoding'])}, {g['memory_usage_mean']:,.0f} B mean, "
                  f"{g['elements_mean']} elements, {g['bytes_per_family']:,.0f} B/family)"
                  for k, g in keys["groups"].items())
print(f"| {level:,} | {kinds} |")
EOF
)
  redis_rows+=("${rows[0]}")
  key_rows+=("${rows[1]}")
done

# Interleaved rounds: level after level, ROUNDS times, every store still filled.
round_lines=()
if [ "$rounds" -gt 0 ]; then
  : > "$out/state-refresh-rounds.jsonl"
  log "# $rounds interleaved rounds over the levels kept up: the same loadgen command per level"
  for round in $(seq "$rounds"); do
    for entry in "${kept[@]}"; do
      read -r level port kept_server _ <<< "$entry"
      load=$("$loadgen" --url "http://127.0.0.1:$port" --scenario refresh-chain --concurrency "$concurrency" \
        --duration "$duration" --warmup "$warmup" --cpu-of "$kept_server" | tail -1)
      echo "{\"level\":$level,\"round\":$round,\"load\":$load}" >> "$out/state-refresh-rounds.jsonl"
    done
  done
  mapfile -t round_lines < <(python3 - "$out/state-refresh-rounds.jsonl" <<'EOF'
import collections, json, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    runs[r["level"]].append(r["load"]["per_server_cpu_s"] or 0)
for level, values in runs.items():
    print(f"| {level:,} | {' / '.join(f'{v:,.0f}' for v in values)} | {statistics.median(values):,.0f} |")
EOF
)
fi

sqlite_rows=()
for level in $sqlite_levels; do
  dir=$work/sqlite-$level
  cmd="$famgen --store sqlite://$dir --families $level --concurrency $famgen_concurrency --seed $seed"
  # The empty store's size first (migrations only), then the filled one.
  "$famgen" --store "sqlite://$dir" --families 0 >/dev/null 2>&1
  empty=$(python3 -c 'import os,sqlite3,sys;d=sqlite3.connect(sys.argv[1]);d.execute("PRAGMA wal_checkpoint(TRUNCATE)");print(os.path.getsize(sys.argv[1]))' "$dir/tessera.db")
  log "$cmd"
  gen=$($cmd 2>/dev/null | tail -1)
  echo "$gen" > "$out/state-famgen-sqlite-$level.json"
  python3 - "$dir/tessera.db" "$level" "$gen" "$empty" > "$out/state-sqlite-$level.json" <<'EOF'
import json, os, sqlite3, sys
path, level, gen, empty = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])
db = sqlite3.connect(path)
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
report = {"families": level, "file_bytes": os.path.getsize(path), "empty_file_bytes": empty,
          "page_size": db.execute("PRAGMA page_size").fetchone()[0],
          "rows": {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                   for t in ("refresh_families", "refresh_tokens")},
          "famgen": gen}
try:
    report["dbstat"] = {name: {"bytes": size, "payload": payload} for name, size, payload in db.execute(
        "SELECT name, SUM(pgsize), SUM(payload) FROM dbstat GROUP BY name ORDER BY 2 DESC")}
except sqlite3.Error as e:
    report["dbstat"] = f"unavailable: {e}"
print(json.dumps(report))
EOF
  sqlite_rows+=("$(python3 - "$out/state-sqlite-$level.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
n = r["families"]
tables = r["dbstat"]
per = ("; ".join(f"{k} {v['bytes'] / n:,.0f}" for k, v in tables.items() if v["bytes"] > 8192)
       if isinstance(tables, dict) else tables)
print(f"| SQLite | {n:,} | {r['file_bytes']:,} | {(r['file_bytes'] - r['empty_file_bytes']) / n:,.0f} | {r['rows']['refresh_tokens'] / n:.1f} "
      f"| {r['famgen']['families_per_s']:,.0f} | {per} |")
EOF
)")
done

mongo_row=
mongo_mode=${MONGO:-auto}
py=.venv/bin/python   # the test tools' venv (bash tests/run.sh installs it)
if [ "$mongo_mode" = auto ]; then
  if [ -x .venv/bin/secantusd-py ]; then mongo_mode=1; else
    mongo_mode=0; echo "MongoDB skipped: no .venv/bin/secantusd-py (bash tests/run.sh installs it)" >&2
  fi
fi
if [ "$mongo_mode" = 1 ]; then
  users=${MONGO_USERS:-1000}
  mongo_port=$(free_port); port=$(free_port)
  "$(dirname "$py")/secantusd-py" --port "$mongo_port" --storage-path "$work/mongo" >/dev/null 2>&1 & mongo=$!
  for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/"$mongo_port") 2>/dev/null && break; sleep 0.1; done
  unset TESSERA_REDIS_URL
  export TESSERA_DATA_DIR=$work/mongo-data TESSERA_KEYS_DIR=$work/mongo-keys
  export TESSERA_LISTEN=127.0.0.1:$port TESSERA_ISSUER=http://127.0.0.1:$port
  export TESSERA_MONGODB_URI=mongodb://127.0.0.1:$mongo_port TESSERA_MONGODB_DB=state
  "$bin" keys generate --alg "$alg" >/dev/null
  "$bin" serve & server=$!
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.05; done
  log "# MongoDB (SecantusDB): $users sign-ups through POST /api/users/signup, then \$bsonSize of users"
  "$py" - "$port" "$mongo_port" "$users" > "$out/state-mongo.json" <<'EOF'
import json, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
port, mongo_port, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def signup(i):
    body = json.dumps({"email": f"state-{i}@example.com", "password": "state test password",
                       "fname": "State", "lname": "Test"}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/users/signup", body,
                                 {"content-type": "application/json"})
    urllib.request.urlopen(req).read()
with ThreadPoolExecutor(8) as pool:
    list(pool.map(signup, range(n)))
import pymongo
db = pymongo.MongoClient(f"mongodb://127.0.0.1:{mongo_port}")["state"]
report = {"users": db.users.count_documents({})}
try:
    sizes = [d["s"] for d in db.users.aggregate([{"$project": {"s": {"$bsonSize": "$$ROOT"}}}])]
    report["bson_bytes_mean"] = sum(sizes) / len(sizes)
except Exception as e:  # the stand-in may not know $bsonSize
    import bson
    sizes = [len(bson.encode(d)) for d in db.users.find({})]
    report["bson_bytes_mean"] = sum(sizes) / len(sizes)
    report["bson_size_from"] = f"client-side bson.encode ({type(e).__name__})"
try:
    stats = db.command("collStats", "users")
    report["collStats"] = {k: stats.get(k) for k in ("count", "size", "avgObjSize", "storageSize",
                                                      "totalIndexSize", "nindexes")}
except Exception as e:
    report["collStats"] = f"unavailable: {type(e).__name__}: {e}"
print(json.dumps(report))
EOF
  kill -TERM "$server"; wait "$server" || true; server=
  kill "$mongo"; wait "$mongo" 2>/dev/null || true; mongo=
  mongo_row=$(python3 - "$out/state-mongo.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
stats = r["collStats"]
index = (f"{stats['totalIndexSize'] / r['users']:,.0f} B ({stats['nindexes']} indexes)"
         if isinstance(stats, dict) and stats.get("totalIndexSize") else str(stats))
print(f"| {r['users']:,} | {r['bson_bytes_mean']:,.0f} | {index} |")
EOF
)
fi

echo "## Redis: state per family and refresh rotation by fill level ($alg, $concurrency clients, ${duration}s)"
echo
echo "| store | families | users | rotations/family | keys/family | bytes/family (used_memory) | famgen families/s | refresh req/s | p99 | per server CPU-s | errors |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${redis_rows[@]}"
echo
echo "### Redis keys by kind (MEMORY USAGE SAMPLES 0 of a sample of each kind)"
echo
echo "| families | kinds |"
echo "|---|---|"
printf '%s\n' "${key_rows[@]}"
if [ ${#round_lines[@]} -gt 0 ]; then
  echo
  echo "### Refresh per server CPU-second, $rounds interleaved rounds (state-refresh-rounds.jsonl)"
  echo
  echo "| families | each round | median |"
  echo "|---|---|---|"
  printf '%s\n' "${round_lines[@]}"
fi
if [ ${#sqlite_rows[@]} -gt 0 ]; then
  echo
  echo "## Embedded SQLite store"
  echo
  echo "| store | families | file bytes | bytes/family (over the empty file) | token rows/family | famgen families/s | bytes/family by table or index (dbstat) |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${sqlite_rows[@]}"
fi
if [ -n "$mongo_row" ]; then
  echo
  echo "## MongoDB user store (SecantusDB; users signed up through the API)"
  echo
  echo "| users | BSON bytes per user document | index bytes per user |"
  echo "|---|---|---|"
  echo "$mongo_row"
fi
