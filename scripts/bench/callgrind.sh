#!/usr/bin/env bash
# Instructions per request of the service itself (valgrind's callgrind), for
# W1 (GET /healthz; W1-info: at LOG_LEVEL=info), W2 (GET /api/v1/users/{id}), W3 (POST /api/v1/users) and SHED (a create
# answered 503 because the queue is full: what overload costs per request).
# Instruction counts do not depend on how busy the machine is, so
# before/after comparisons hold on a shared host where req/s does not.
#
#   scripts/bench/callgrind.sh BINARY [W1|W1-info|W2|W3|SHED ...]
#
# BINARY: best `cargo build --profile profiling` (release + line tables).
# Environment: CG_DATABASE_URL (default: .dev/test.env's server, a fresh
# database per run, dropped afterwards), CG_SECONDS (10), CG_OUT (bench-out/callgrind),
# CG_TOOL=dhat for heap allocations per request instead (the run minus a run
# without load, over the requests), CG_SERVICE_ENV (more NAME=value settings
# for the service, e.g. the OTEL_* ones to profile tracing).
# Per workload: the service under callgrind with WORKERS=2, 10,000 seeded
# users, a 2 s warm-up, counters zeroed, `wrk -t1 -c2` for CG_SECONDS, counters
# dumped (FILE.1: the measured requests only); prints `W2 <instructions per request> (<requests>)`.
# SHED: both workers held by a table lock, the one-slot queue full, INFO
# logging (JSON, the default level: every shed request logs its line), then
# the same wrk run of creates, every one of them answered 503.
# Read a profile with `callgrind_annotate --inclusive=yes FILE`.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${1:?usage: callgrind.sh BINARY [W2|W3|SHED ...]}
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
# No TLS by default, like `make bench`'s cluster (CG_SSLMODE=prefer for the
# server's default): TLS adds ~20% to a GET's instructions.
DB_URL="${ADMIN_URL%/*}/$DB?sslmode=${CG_SSLMODE:-disable}"
PID=""
LOCKER=""
cleanup() {
  [ -z "$LOCKER" ] || kill "$LOCKER" 2>/dev/null || true
  [ -z "$PID" ] || { kill -TERM "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true; }
  psql -X -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

port() { python3 "$HERE/probe.py" free-port; }
wait_ready() { # PORT
  local i
  for ((i = 0; i < 600; i++)); do
    python3 "$HERE/probe.py" get --port "$1" --path /readyz >/dev/null 2>&1 && return 0
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "callgrind.sh: the service did not get ready (log: $OUT/$w.log)" >&2
  exit 1
}

# start_service WORKLOAD-LABEL VALGRIND-ARGS...: the service under valgrind on
# a fresh database, ready and seeded; sets PID and P.
start_service() {
  local label=$1; shift
  psql -X -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null 2>&1
  P=$(port)
  # shellcheck disable=SC2206 # word splitting of CG_SERVICE_ENV is the point
  local extra=(${CG_SERVICE_ENV:-} ${WORKLOAD_ENV:-})
  env -i PATH="$PATH" DATABASE_URL="$DB_URL" ADDR="127.0.0.1:$P" ADMIN_ADDR=off \
    WORKERS=2 MAX_CONNECTIONS=2 LOG_LEVEL=warn DRAIN_DELAY=1ms "${extra[@]}" \
    valgrind "$@" "$BIN" >"$OUT/$label.log" 2>&1 &
  PID=$!
  w=$label wait_ready "$P"
  psql -X -q "$DB_URL" -v n=10000 -f "$HERE/sql/seed.sql" >/dev/null
}
stop_service() {
  kill -TERM "$PID"
  wait "$PID" 2>/dev/null || true
  PID=""
}
requests_of() { # WRK-OUTPUT [shed]: the requests, or fails on any non-2xx (with `shed`: on any 2xx)
  python3 -c "import json,re,sys; t=open(sys.argv[1]).read(); m=re.search(r'^BENCH_RESULT (\{.*\})', t, re.M); r=json.loads(m.group(1)); shed=len(sys.argv)>2; bad=r['requests']-r['non2xx'] if shed else r['non2xx']; sys.exit('%s answers: %d' % ('2xx' if shed else 'non-2xx', bad)) if bad else print(r['requests'])" "$@"
}
# hold_workers: a transaction locks the users table; two creates wait on it
# (both workers busy) and a third fills the queue (QUEUE_DEPTH=1).
hold_workers() {
  psql -X -q "$DB_URL" -c "BEGIN; LOCK TABLE users; SELECT pg_sleep(3600)" >/dev/null 2>&1 &
  LOCKER=$!
  sleep 1
  python3 - "$P" <<'PY' &
import http.client, json, sys, threading
def create(i):
    c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=3600)
    c.request("POST", "/api/v1/users", body=json.dumps({"name": "held", "email": f"held{i}@example.com"}),
              headers={"Content-Type": "application/json"})
    c.getresponse().read()
ts = [threading.Thread(target=create, args=(i,)) for i in range(3)]
for t in ts:
    t.start()
for t in ts:
    t.join()
PY
  sleep 2
}
dhat_blocks() { # LOG: total heap blocks allocated over the run
  awk '/Total:/ { for (i = 1; i <= NF; i++) if ($i == "blocks") { gsub(",", "", $(i-1)); print $(i-1); exit } }' "$1"
}

for w in $WORKLOADS; do
  case $w in
    W1 | W1-info) lua=$HERE/lua/w1_healthz.lua ;;
    W2) lua=$HERE/lua/w2_get_user.lua ;;
    W3) lua=$HERE/lua/w3_create_user.lua ;;
    SHED) lua=$HERE/lua/w3_create_user.lua ;;
    *) echo "callgrind.sh: unknown workload '$w' (W1, W1-info, W2, W3 or SHED)" >&2; exit 2 ;;
  esac
  WORKLOAD_ENV=""
  [ "$w" != W1-info ] || WORKLOAD_ENV="LOG_LEVEL=info"
  shed=""
  if [ "$w" = SHED ]; then
    [ "${CG_TOOL:-callgrind}" = callgrind ] || { echo "callgrind.sh: SHED is measured with callgrind only" >&2; exit 2; }
    WORKLOAD_ENV="QUEUE_DEPTH=1 QUEUE_TIMEOUT=3600s DB_STATEMENT_TIMEOUT=3600s LOG_LEVEL=info LOG_FORMAT=json"
    shed=shed
  fi
  if [ "${CG_TOOL:-callgrind}" = dhat ]; then
    # dhat cannot zero its counters: a run without load is the baseline.
    start_service "$w-dhat-idle" --tool=dhat --dhat-out-file="$OUT/dhat.$w.idle.json"
    stop_service
    start_service "$w-dhat" --tool=dhat --dhat-out-file="$OUT/dhat.$w.json"
    wrk -t1 -c2 -d"${SECS}s" -s "$lua" "http://127.0.0.1:$P/" -- "d$$" >"$OUT/$w.dhat.wrk.txt"
    stop_service
    reqs=$(requests_of "$OUT/$w.dhat.wrk.txt")
    b0=$(dhat_blocks "$OUT/$w-dhat-idle.log")
    b1=$(dhat_blocks "$OUT/$w-dhat.log")
    echo "$w $(((b1 - b0) / reqs)) allocations/request ($reqs requests; $b1 blocks, $b0 without load)"
    continue
  fi
  file="$OUT/callgrind.$w.out"
  start_service "$w" --tool=callgrind --callgrind-out-file="$file"
  [ -z "$shed" ] || hold_workers
  wrk -t1 -c2 -d2s -s "$lua" "http://127.0.0.1:$P/" -- "w$$" >/dev/null
  rm -f "$file".*
  callgrind_control --zero "$PID" >/dev/null
  wrk -t1 -c2 -d"${SECS}s" --latency -s "$lua" "http://127.0.0.1:$P/" -- "m$$" >"$OUT/$w.wrk.txt"
  # The counts since --zero: the measured requests only (dumped to $file.1).
  callgrind_control --dump "$PID" >/dev/null
  if [ -n "$LOCKER" ]; then
    # The lock's session ends (a killed client alone is not noticed during pg_sleep).
    psql -X -q "$ADMIN_URL" -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
      WHERE datname = '$DB' AND query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()" >/dev/null
    kill "$LOCKER" 2>/dev/null || true
    wait "$LOCKER" 2>/dev/null || true
    LOCKER=""
  fi
  stop_service
  reqs=$(requests_of "$OUT/$w.wrk.txt" $shed)
  ir=$(callgrind_annotate "$file.1" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
  case $ir in '' | *[!0-9]*) echo "callgrind.sh: no instruction total in $file.1" >&2; exit 1 ;; esac
  echo "$w $((ir / reqs)) instructions/request ($reqs requests, $ir instructions; $file.1)"
done
