#!/usr/bin/env bash
# Writes scripts/release/text-order.txt: the functions the release binary runs
# in its default configuration — start-up, migrations, every route of both
# listeners, its error answers, the steady GET and create of `make bench`, the
# shutdown — hottest first (instructions spent in each, valgrind's callgrind),
# then those that only the optional parts run (the Redis cache, tracing, the
# webhook), one linker symbol per line. scripts/release/link.sh lays out the code in
# this order, so that what runs shares as few pages as possible (why:
# link.sh's header; measured: BENCHMARKS.md, "Code laid out by use").
#
#   scripts/release/text-order.sh      (`make text-order`; then `make release`)
#
# Rerun it when `make release` reports that few of the listed functions were
# found (a new toolchain or dependency renames them all; a renamed function of
# ours drops out of the order until the next run). Needs valgrind, wrk,
# PostgreSQL (.dev/test.env, as `make test`) and the dist build (it runs
# cargo first).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BENCH=$ROOT/scripts/bench
TARGET=x86_64-unknown-linux-musl
# The dist build before `make release` strips it: callgrind names functions
# by its symbols, and the names must be the shipped build's (a mangled name
# ends in a hash of the crate's build settings).
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/$TARGET/dist/usersvc
OUT=$HERE/text-order.txt
for tool in valgrind wrk psql; do
  command -v "$tool" >/dev/null || { echo "text-order.sh: $tool not installed (apt-get install ${tool/psql/postgresql-client})" >&2; exit 1; }
done

"$ROOT/scripts/ensure-release-toolchain.sh"
(cd "$ROOT" && cargo build --locked --profile dist --target "$TARGET" >&2)
nm "$BIN" >/dev/null 2>&1 || { echo "text-order.sh: $BIN has no symbols" >&2; exit 1; }
[ -f "$ROOT/.dev/test.env" ] || "$ROOT/scripts/ensure-test-services.sh" >/dev/null
# shellcheck disable=SC1091
. "$ROOT/.dev/test.env"
ADMIN_URL=$USERSVC_TEST_DATABASE_URL
DB="text_order_$$"
DB_URL="${ADMIN_URL%/*}/$DB"
WORK=$(mktemp -d)
PID=""
SINK_PID=""
cleanup() {
  [ -z "$PID" ] || { kill -TERM "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true; }
  [ -z "$SINK_PID" ] || kill "$SINK_PID" 2>/dev/null || true
  psql -X -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
psql -X -q "$ADMIN_URL" -c "CREATE DATABASE $DB" >/dev/null

# profile RUN [NAME=value...]: the service under callgrind (RUN.out), the
# request mix, `make bench`'s GET and create in steady state, SIGTERM.
profile() {
  local run=$1 i
  shift
  P=$(python3 "$BENCH/probe.py" free-port)
  A=$(python3 "$BENCH/probe.py" free-port)
  while [ "$A" = "$P" ]; do A=$(python3 "$BENCH/probe.py" free-port); done
  env -i PATH="$PATH" DATABASE_URL="$DB_URL" ADDR="127.0.0.1:$P" ADMIN_ADDR="127.0.0.1:$A" "$@" \
    valgrind --tool=callgrind --demangle=no --callgrind-out-file="$WORK/$run.out" "$BIN" \
    >"$WORK/$run.log" 2>&1 &
  PID=$!
  for ((i = 0; i < 600; i++)); do
    python3 "$BENCH/probe.py" get --port "$A" --path /readyz >/dev/null 2>&1 && break
    kill -0 "$PID" 2>/dev/null || { cat "$WORK/$run.log" >&2; exit 1; }
    sleep 0.1
  done
  # `make bench`'s GET reads the seeded users 1..10,000.
  [ -n "$SEEDED" ] || psql -X -q "$DB_URL" -v n=10000 -f "$BENCH/sql/seed.sql" >/dev/null
  SEEDED=1
  # Every route and its usual errors, on both listeners.
  python3 - "$P" "$A" "$run" <<'PY'
import http.client, json, sys
pub, adm, run = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def call(port, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    h = dict(headers or {})
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    out = r.read()
    c.close()
    return r.status, out
U = "/api/v1/users"
ids = []
for i in range(20):
    s, b = call(pub, "POST", U, {"name": f"Order {i}", "email": f"{run}-{i}@example.com"})
    assert s == 201, (s, b)
    ids.append(json.loads(b)["id"])
call(pub, "POST", U, {"name": "Order", "email": f"{run.upper()}-0@EXAMPLE.com"})          # 409
call(pub, "POST", U, {"name": "", "email": "not-an-address"})                  # 422
call(pub, "POST", U, b"{not json")                                              # 400
call(pub, "POST", U, b"{}", {"Content-Type": "text/plain"})                    # 415
for k in range(2):
    call(pub, "POST", U, {"name": "Keyed", "email": f"{run}-keyed@example.com"}, {"Idempotency-Key": f"{run}-key"})
for i in ids[:10]:
    call(pub, "GET", f"{U}/{i}")
call(pub, "GET", f"{U}/999999999")                                              # 404
call(pub, "GET", f"{U}/abc")                                                    # 400
call(pub, "GET", f"{U}?limit=5")
s, b = call(pub, "GET", f"{U}?limit=5")
cursor = json.loads(b).get("next_cursor")
if cursor:
    call(pub, "GET", f"{U}?limit=5&cursor={cursor}")
call(pub, "PATCH", f"{U}/{ids[0]}", {"name": "Renamed"})
call(pub, "PATCH", f"{U}/{ids[1]}", {"email": "bad"})                          # 422
call(pub, "DELETE", f"{U}/{ids[2]}")
call(pub, "DELETE", f"{U}/{ids[2]}")                                            # 404
call(pub, "PUT", U)                                                             # 405
call(pub, "GET", "/nope")                                                       # 404
call(pub, "GET", "/openapi.json")
for path in ("/healthz", "/readyz", "/livez", "/metrics", "/debug/workers", "/nope"):
    call(adm, "GET", path)
    call(pub, "GET", path)
call(adm, "PUT", "/debug/log-level?level=debug&for=1s")
call(pub, "GET", f"{U}/{ids[3]}")
call(adm, "PUT", "/debug/log-level?level=info")
PY
  wrk -t1 -c4 -d3s -s "$BENCH/lua/w2_get_user.lua" "http://127.0.0.1:$P/" -- "$run" >/dev/null
  wrk -t1 -c4 -d3s -s "$BENCH/lua/w3_create_user.lua" "http://127.0.0.1:$P/" -- "$run" >/dev/null
  kill -TERM "$PID"
  wait "$PID" || { cat "$WORK/$run.log" >&2; exit 1; }
  PID=""
}
SEEDED=""

# 1. The default configuration but for the addresses, with migrations at
# start-up (the code `usersvc migrate up` runs, in one process).
profile default MIGRATE_ON_START=true
# 2. The optional parts on: the Redis cache, tracing every request (to a
# local stand-in collector, which also takes the webhook's deliveries).
# Their functions follow the default set, so a default start maps none of
# them.
SINK=$(python3 "$BENCH/probe.py" free-port)
python3 "$BENCH/otlp_sink.py" --port "$SINK" --ready "$WORK/sink.ready" >"$WORK/sink.log" 2>&1 &
SINK_PID=$!
for ((i = 0; i < 100; i++)); do [ -e "$WORK/sink.ready" ] && break; sleep 0.05; done
profile optional REDIS_URL="$USERSVC_TEST_REDIS_URL" \
  OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$SINK" OTEL_TRACES_SAMPLER=always_on \
  WEBHOOK_URL="http://127.0.0.1:$SINK/events"
kill "$SINK_PID" 2>/dev/null || true
wait "$SINK_PID" 2>/dev/null || true
SINK_PID=""

# Functions by their own instructions, most first: the first run's, then
# those only the second ran. callgrind names a function once, `fn=(id) name`
# (or `cfn=(id) name` where first called), then by its id; a cost line after
# `calls=` is the callee's, not the caller's own. Only Rust functions
# (`_ZN…`, `_R…`, and the static build's own `memcpy` and `memmove`,
# src/memcpy.rs), each once: link.sh places the sections of rustc's objects,
# not the C library's or ring's C code, nor valgrind's addresses or
# "(below main)".
python3 - "$WORK/default.out" "$WORK/optional.out" >"$OUT.tmp" <<'PY'
import re, sys
listed = {}
for path in sys.argv[1:]:
    names, own, fn, callee_cost = {}, {}, None, False
    for line in open(path):
        m = re.match(r"^(c?fn)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
        if m:
            kind, i, name = m.groups()
            if name:
                names[i] = name
            if kind == "fn":
                fn = i
                own.setdefault(i, 0)
            continue
        if line.startswith("calls="):
            callee_cost = True
            continue
        if fn is not None and (line[:1].isdigit() or line[:1] in "+-*"):
            if not callee_cost:
                parts = line.split()
                own[fn] += int(parts[1]) if len(parts) > 1 else 0
            callee_cost = False
    for i in sorted(own, key=lambda i: -own[i]):
        name = names.get(i, "")
        if re.fullmatch(r"(_ZN|_R)[\w.$]*|memcpy|memmove", name):
            listed.setdefault(name, None)
print("\n".join(listed))
PY
mv "$OUT.tmp" "$OUT"
echo "text-order.sh: $(wc -l <"$OUT") functions in $OUT" >&2
