#!/usr/bin/env bash
# Instructions per request of the service itself (valgrind's callgrind), for
# W2 (GET /api/v1/users/{id}) and W3 (POST /api/v1/users). Instruction counts
# do not depend on how busy the machine is, so before/after comparisons hold
# on a shared host where req/s does not.
#
#   scripts/bench/callgrind.sh BINARY [W2|W3 ...]
#
# BINARY: best `cargo build --profile profiling` (release + line tables).
# Environment: CG_DATABASE_URL (default: .dev/test.env's server, a fresh
# database per run, dropped afterwards), CG_SECONDS (10), CG_OUT (bench-out/callgrind).
# Per workload: the service under callgrind with WORKERS=2, 10,000 seeded
# users, a 2 s warm-up with collection off, then `wrk -t1 -c2` for CG_SECONDS
# with collection on; prints `W2 <instructions per request> (<requests>)`.
# Read a profile with `callgrind_annotate --inclusive=yes FILE`.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${1:?usage: callgrind.sh BINARY [W2|W3 ...]}
shift
WORKLOADS=${*:-W2 W3}
SECS=${CG_SECONDS:-10}
OUT=${CG_OUT:-$ROOT/bench-out/callgrind}
mkdir -p "$OUT"
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind not installed (apt-get install valgrind)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "callgrind.sh: wrk not installed" >&2; exit 1; }
if [ -z "${CG_DATABASE_URL:-}" ]; then
  [ -f "$ROOT/.dev/test.env" ] || "$ROOT/scripts/ensure-test-services.sh" >/dev/null
  # shellcheck disable=SC1091
  . "$ROOT/.dev/test.env"
  CG_DATABASE_URL=$USERSVC_TEST_DATABASE_URL
fi
ADMIN_URL=$CG_DATABASE_URL
DB="cg_$(date +%s)_$$"
DB_URL="${ADMIN_URL%/*}/$DB"
PID=""
cleanup() {
  [ -z "$PID" ] || { kill -TERM "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true; }
  psql -X -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

port() { python3 "$HERE/probe.py" free-port; }
wait_ready() { # PORT
  local i
  for ((i = 0; i < 600; i++)); do
    python3 "$HERE/probe.py" get --port "$1" --path /readyz >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "callgrind.sh: the service did not get ready (log: $OUT/$w.log)" >&2
  exit 1
}

for w in $WORKLOADS; do
  case $w in
    W2) lua=$HERE/lua/w2_get_user.lua ;;
    W3) lua=$HERE/lua/w3_create_user.lua ;;
    *) echo "callgrind.sh: unknown workload '$w' (W2 or W3)" >&2; exit 2 ;;
  esac
  psql -X -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
  p=$(port)
  file="$OUT/callgrind.$w.out"
  env -i PATH="$PATH" DATABASE_URL="$DB_URL" ADDR="127.0.0.1:$p" ADMIN_ADDR=off \
    WORKERS=2 MAX_CONNECTIONS=2 LOG_LEVEL=warn DRAIN_DELAY=0s \
    valgrind --tool=callgrind --collect-atstart=no --callgrind-out-file="$file" "$BIN" \
    >"$OUT/$w.log" 2>&1 &
  PID=$!
  wait_ready "$p"
  psql -X -q "$DB_URL" -v n=10000 -f "$HERE/sql/seed.sql" >/dev/null
  wrk -t1 -c2 -d2s -s "$lua" "http://127.0.0.1:$p/" -- "w$$" >/dev/null
  callgrind_control --instr=on "$PID" >/dev/null
  wrk -t1 -c2 -d"${SECS}s" --latency -s "$lua" "http://127.0.0.1:$p/" -- "m$$" >"$OUT/$w.wrk.txt"
  callgrind_control --instr=off "$PID" >/dev/null
  kill -TERM "$PID"
  wait "$PID" 2>/dev/null || true
  PID=""
  reqs=$(python3 -c "import json,re,sys; t=open(sys.argv[1]).read(); m=re.search(r'^BENCH_RESULT (\{.*\})', t, re.M); r=json.loads(m.group(1)); print(r['requests'] if r['non2xx']==0 else 'non2xx:%d' % r['non2xx'])" "$OUT/$w.wrk.txt")
  case $reqs in non2xx*) echo "callgrind.sh: $w answered $reqs (see $OUT/$w.wrk.txt)" >&2; exit 1 ;; esac
  ir=$(callgrind_annotate "$file" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
  echo "$w $((ir / reqs)) instructions/request ($reqs requests, $ir instructions; $file)"
done
