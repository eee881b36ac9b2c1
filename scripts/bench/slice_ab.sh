#!/usr/bin/env bash
# What the I/O thread's scheduler slice (src/thread_slice.rs) does to W2, on
# this host as it is: the same binary, W2 at 64 connections, alternately with
# the slice it asks for and with the I/O thread set back to the kernel's
# default slice from outside (sched_setattr with sched_runtime 0 on its tid).
#
#   scripts/bench/slice_ab.sh BINARY [ROUNDS]
#
# Environment: SLICE_DATABASE_URL (default: .dev/test.env's server, a fresh
# database seeded with 10,000 users, dropped afterwards), SLICE_SECONDS (8).
# Prints one line per run: slice, req/s, p50, p99, max. Needs Linux 6.12+
# for the slice to exist at all (older kernels ignore it: both lines alike).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${1:?usage: slice_ab.sh BINARY [ROUNDS]}
ROUNDS=${2:-3}
SECS=${SLICE_SECONDS:-8}
if [ -z "${SLICE_DATABASE_URL:-}" ]; then
  [ -f "$ROOT/.dev/test.env" ] || "$ROOT/scripts/ensure-test-services.sh" >/dev/null
  # shellcheck disable=SC1091
  . "$ROOT/.dev/test.env"
  SLICE_DATABASE_URL=$USERSVC_TEST_DATABASE_URL
fi
DB="slice_$(date +%s)_$$"
DB_URL="${SLICE_DATABASE_URL%/*}/$DB?sslmode=disable"
PID=""
cleanup() {
  [ -z "$PID" ] || { kill -TERM "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true; }
  psql -X -q "$SLICE_DATABASE_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
psql -X -q "$SLICE_DATABASE_URL" -c "CREATE DATABASE $DB" >/dev/null
DATABASE_URL=$DB_URL "$BIN" migrate up >/dev/null
psql -X -q "${DB_URL%%\?*}" -v n=10000 -f "$HERE/sql/seed.sql" >/dev/null

default_slice() { # TID: the kernel's default slice again (sched_runtime 0)
  python3 - "$1" <<'PY'
import ctypes, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
attr = ctypes.create_string_buffer(48)
if libc.syscall(315, int(sys.argv[1]), attr, 48, 0) != 0:  # sched_getattr
    sys.exit(f"sched_getattr: errno {ctypes.get_errno()}")
fields = list(struct.unpack("IIQiIQQQ", attr.raw))
fields[0], fields[2], fields[5] = 48, 0, 0  # size, flags, runtime
if libc.syscall(314, int(sys.argv[1]), ctypes.create_string_buffer(struct.pack("IIQiIQQQ", *fields)), 0) != 0:
    sys.exit(f"sched_setattr: errno {ctypes.get_errno()}")
PY
}

run() { # default|short
  local port admin tid r
  port=$(python3 "$HERE/probe.py" free-port)
  admin=$(python3 "$HERE/probe.py" free-port)
  DATABASE_URL=$DB_URL ADDR=127.0.0.1:$port ADMIN_ADDR=127.0.0.1:$admin LOG_LEVEL=warn DRAIN_DELAY=1ms \
    "$BIN" >/dev/null 2>&1 &
  PID=$!
  for _ in $(seq 1 200); do
    python3 "$HERE/probe.py" get --port "$admin" --path /readyz >/dev/null 2>&1 && break
    sleep 0.05
  done
  if [ "$1" = default ]; then
    for t in /proc/"$PID"/task/*; do
      [ "$(cat "$t/comm")" = http-io ] && tid=${t##*/}
    done
    default_slice "${tid:?no http-io thread}"
  fi
  wrk -t2 -c64 -d2s -s "$HERE/lua/w2_get_user.lua" "http://127.0.0.1:$port/" -- "w$$" >/dev/null
  r=$(wrk -t2 -c64 -d"${SECS}s" -s "$HERE/lua/w2_get_user.lua" "http://127.0.0.1:$port/" -- "m$$" | grep BENCH_RESULT)
  python3 - "$1" "$r" <<'PY'
import json, sys
r = json.loads(sys.argv[2].split(" ", 1)[1])
lat = r["latency_us"]
print(f"{sys.argv[1]:>7} slice: {r['requests'] / (r['duration_us'] / 1e6):8.0f} req/s  p50 {lat['p50'] / 1000:5.2f} ms"
      f"  p99 {lat['p99'] / 1000:6.1f} ms  max {lat['max'] / 1000:6.0f} ms  non-2xx {r['non2xx']}")
PY
  kill -TERM "$PID"
  wait "$PID" || true
  PID=""
}

for ((i = 0; i < ROUNDS; i++)); do
  run default
  run short
done
