#!/usr/bin/env bash
# `make bench`: load benchmarks of usersvc against this machine's own ceilings.
#
#   scripts/bench/run.sh                  build, then W1..W4 (+ info-logging lines) and the ceilings
#   scripts/bench/run.sh --ceilings-only  PostgreSQL + nginx ceilings only (schema from migrations/, no service)
#   scripts/bench/run.sh --no-ceilings    the service only (ratios then missing)
#   scripts/bench/run.sh -h               this help
#
# Environment (see BENCHMARKS.md, "Load benchmarks"):
#   USERSVC_BIN=path        binary to measure (default: make release -> the shipped static binary)
#   BENCH_VS=path           a second binary or checkout (built there); A and B alternate per workload
#   BENCH_VS=async          B is the async Rust stack (scripts/bench/async-ref: axum + tokio +
#                           tokio-postgres, the same SQL), built here; W2-otel*/W2-cache are A's only
#   BENCH_ROUNDS=n          rounds per workload (default 1; 2 with BENCH_VS: A B A B)
#   BENCH_W2_REF=1          before each round of a W2 variant (W2-idle10k, W2-otel*, W2-cache),
#                           W2 again with binary A: the variant's "× W2" is per round, paired
#   BENCH_DURATION=15       measured seconds per workload      BENCH_WARMUP=3   warm-up seconds
#                           (smoke run under a minute: BENCH_DURATION=2 BENCH_WARMUP=1)
#   BENCH_CONNECTIONS=64    wrk keep-alive connections         BENCH_THREADS=2  wrk threads
#   BENCH_WORKLOADS="W1 W2 W2-idle10k W2-otel0.01 W2-otel1 W2-cache W3 W4 W1-info W2-info"
#                           W2-idle10k: W2 while BENCH_IDLE_CONNS (10000) idle keep-alive
#                           connections are held open (hold_conns.py; MAX_CONNS raised to fit)
#                           W2-otel*: W2 with tracing on (parentbased_traceidratio at 0.01 / 1),
#                           exporting to a local stand-in collector (otlp_sink.py)
#                           W2-cache: W2 with the Redis read-through cache on (a redis-server of
#                           the bench's own, on a free port); the hit ratio is reported
#   BENCH_SWEEP_WORKLOADS="W2 W3" BENCH_SWEEP_CONNECTIONS="16 64 256"  also run these at these
#                           connection counts (binary A, one round) for the throughput/p99 plot
#   BENCH_PLOT=path         the plot (SVG; default BENCHMARKS-throughput-p99.svg beside BENCHMARKS.md)
#   BENCH_PGBENCH_CLIENTS=25 BENCH_PGBENCH_JOBS=2
#   BENCH_PG_SESSION=bench  PostgreSQL in the bench's session (one scheduling group with the
#                           service, wrk and pgbench); own: a session of its own, as a system
#                           service runs (a run to report beside the default)
#   BENCH_PAIRED_CEILINGS=1 the pgbench ceilings of W3 and W4 measured again just before each of
#                           their rounds; a round's ratio is to its own (0: the run's end only)
#   BENCH_DRAIN_DELAY=1ms   DRAIN_DELAY for the service (falls back to its default if refused)
#   BENCH_SERVICE_ENV="K=V ..." extra service environment (e.g. "WORKERS=8 MAX_CONNECTIONS=8")
#   BENCH_OUT=bench-out     output directory   BENCH_KEEP_PG=1 keep the cluster's data afterwards
#
# Output: $BENCH_OUT/results.md, $BENCH_OUT/results.jsonl, logs under $BENCH_OUT/logs, $BENCH_PLOT.
# The host runs as it is: no scheduler or other tuning (BENCHMARKS.md, "Scheduling").
# Traffic goes to 127.0.0.1 only; everything started is stopped on exit, Ctrl-C or failure.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=../lib-postgres.sh
. "$ROOT/scripts/lib-postgres.sh"
# shellcheck source=lib.sh
. "$HERE/lib.sh"
# shellcheck source=pg.sh
. "$HERE/pg.sh"
# shellcheck source=service.sh
. "$HERE/service.sh"
# shellcheck source=load.sh
. "$HERE/load.sh"
# shellcheck source=ceilings.sh
. "$HERE/ceilings.sh"

MODE=full
for arg in "$@"; do
  case $arg in
    --ceilings-only) MODE=ceilings ;;
    --no-ceilings) MODE=service ;;
    -h | --help) awk 'NR > 1 && /^#/ && !/shellcheck/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown argument '$arg' (try --help)" ;;
  esac
done

BENCH_OUT=${BENCH_OUT:-$ROOT/bench-out}
mkdir -p "$BENCH_OUT"
BENCH_OUT=$(cd "$BENCH_OUT" && pwd)
BENCH_DURATION=$(seconds "${BENCH_DURATION:-15}")
BENCH_WARMUP=$(seconds "${BENCH_WARMUP:-3}")
BENCH_CONNECTIONS=${BENCH_CONNECTIONS:-64}
BENCH_WORKLOADS=${BENCH_WORKLOADS:-W1 W2 W2-idle10k W2-otel0.01 W2-otel1 W2-cache W3 W4 W1-info W2-info}
BENCH_IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
BENCH_SWEEP_WORKLOADS=${BENCH_SWEEP_WORKLOADS-W2 W3}
BENCH_SWEEP_CONNECTIONS=${BENCH_SWEEP_CONNECTIONS-16 64 256}
BENCH_PLOT=${BENCH_PLOT:-$ROOT/BENCHMARKS-throughput-p99.svg}
[ "$BENCH_DURATION" -ge 1 ] || die "BENCH_DURATION must be at least 1 s"
[ "$BENCH_CONNECTIONS" -ge "${BENCH_THREADS:-2}" ] || die "BENCH_CONNECTIONS must be >= BENCH_THREADS"
case ${BENCH_PG_SESSION:-bench} in
  bench | own) ;;
  *) die "BENCH_PG_SESSION must be 'bench' or 'own', not '$BENCH_PG_SESSION'" ;;
esac
for w in $BENCH_WORKLOADS $BENCH_SWEEP_WORKLOADS; do lua_for "$w" >/dev/null; done
for c in $BENCH_SWEEP_CONNECTIONS; do
  case $c in '' | *[!0-9]*) die "BENCH_SWEEP_CONNECTIONS: '$c' is not a connection count" ;; esac
  [ "$c" -ge "${BENCH_THREADS:-2}" ] || die "BENCH_SWEEP_CONNECTIONS: $c is below BENCH_THREADS"
done
RUN_ID=$(date +%s)$$

install_traps
need_tools
sched_check
case " $BENCH_WORKLOADS " in
  *" W2-idle10k "*)
    # The service and the holder each need an fd per held connection (and the
    # service its listeners, the pool, wrk's connections): raise the soft limit.
    need=$((BENCH_IDLE_CONNS + 2048))
    if [ "$(ulimit -Sn)" != unlimited ] && [ "$(ulimit -Sn)" -lt "$need" ]; then
      ulimit -Sn "$need" 2>/dev/null ||
        die "W2-idle10k needs $need open files (ulimit -Hn is $(ulimit -Hn)); raise it or leave W2-idle10k out"
    fi
    ;;
esac

rm -rf "$BENCH_OUT/logs" "$BENCH_OUT/tmp" "$BENCH_OUT/raw.jsonl" "$BENCH_OUT/results.jsonl" "$BENCH_OUT/results.md"
mkdir -p "$BENCH_OUT/logs" "$BENCH_OUT/tmp"
: >"$BENCH_OUT/raw.jsonl"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- binaries ---------------------------------------------------------------------
declare -A BIN=()
build_checkout() { # DIR -> prints the binary path
  local dir=$1
  [ -f "$dir/Cargo.toml" ] || die "$dir has no Cargo.toml"
  command -v cargo >/dev/null || die "cargo not found (install rustup) or set USERSVC_BIN"
  log "cargo build --release in $dir"
  (cd "$dir" && CARGO_TARGET_DIR="$dir/target" cargo build --release --quiet >&2) || die "build failed in $dir"
  echo "$dir/target/release/usersvc"
}
# build_async_ref -> prints the binary path: BENCH_VS=async, the async Rust
# stack a user would pick instead (scripts/bench/async-ref: axum, tokio,
# tokio-postgres, the same SQL), built here with its own lock file.
build_async_ref() {
  local dir="$HERE/async-ref" target
  target="$(realpath -m "${CARGO_TARGET_DIR:-$ROOT/target}")/async-ref" # absolute: the build runs in $dir
  command -v cargo >/dev/null || die "cargo not found (install rustup)"
  log "cargo build --release --locked in $dir (the async stack, binary B)"
  (cd "$dir" && CARGO_TARGET_DIR="$target" cargo build --release --locked --quiet >&2) ||
    die "build failed in $dir"
  echo "$target/release/async-ref"
}
# serves WORKLOAD LABEL: whether binary LABEL has what the workload measures.
# The async stack has no tracing exporter and no Redis cache, so the W2
# variants that turn those on are usersvc's alone.
serves() {
  [ "$2" = B ] && [ "${BENCH_VS:-}" = async ] || return 0
  case $1 in W2-otel* | W2-cache) return 1 ;; *) return 0 ;; esac
}
resolve_bin() { # PATH-OR-DIR -> absolute binary path
  local p=$1
  if [ -d "$p" ]; then p=$(build_checkout "$(cd "$p" && pwd)"); fi
  [ -x "$p" ] || die "not an executable: $p"
  echo "$(cd "$(dirname "$p")" && pwd)/$(basename "$p")"
}
if [ "$MODE" != ceilings ]; then
  if [ -n "${USERSVC_BIN:-}" ]; then
    BIN[A]=$(resolve_bin "$USERSVC_BIN")
  else
    # The shipped binary: `make release` (static musl, see BENCHMARKS.md "Static binary").
    log "make release"
    (cd "$ROOT" && make -s release >&2) || die "make release failed"
    BIN[A]=$(resolve_bin "${CARGO_TARGET_DIR:-$ROOT/target}/x86_64-unknown-linux-musl/dist/usersvc")
  fi
  case ${BENCH_VS:-} in
    "") ;;
    async) BIN[B]=$(resolve_bin "$(build_async_ref)") ;;
    *) BIN[B]=$(resolve_bin "$BENCH_VS") ;;
  esac
fi
LABELS=()
for l in A B; do [ -z "${BIN[$l]:-}" ] || LABELS+=("$l"); done
ROUNDS=${BENCH_ROUNDS:-$([ ${#LABELS[@]} -gt 1 ] && echo 2 || echo 1)}
for l in "${LABELS[@]}"; do log "binary $l: ${BIN[$l]} ($(stat -c %s "${BIN[$l]}") bytes)"; done

# ---- database ------------------------------------------------------------------------
pg_start "$BENCH_OUT/pg"
PM_PID=$(pg_postmaster_pid)
FIRST_START_MS=""
if [ "$MODE" = ceilings ]; then
  log "creating the schema from migrations/*.up.sql (no service binary in this mode)"
  pg_apply_migrations "$ROOT/migrations"
elif ! svc_migrate "${BIN[A]}"; then
  log "no migrate subcommand: letting the first start migrate (MIGRATE_ON_START)"
  svc_start "${BIN[A]}" "first-start-A" warn
  FIRST_START_MS=$SVC_STARTUP_MS
  svc_stop "${BIN[A]}"
fi
pg_has_tables || die "no users/events tables after migrating (see $BENCH_OUT/logs)"
pg_seed 10000

# ---- the service ----------------------------------------------------------------------
preflight() { # WORKLOAD: one request of the workload's kind, warn when it is not 2xx
  local out
  case $1 in
    W2* | W4) out=$(python3 "$HERE/probe.py" get --port "$SVC_PORT" --path /api/v1/users/1 2>&1) ;;
    W3) out=$(python3 "$HERE/probe.py" get --port "$SVC_PORT" --path /api/v1/users --method POST \
      --ctype application/json --body "{\"name\":\"Preflight\",\"email\":\"pre-$RUN_ID-$RANDOM$RANDOM@example.com\"}" 2>&1) ;;
    *) out=$(python3 "$HERE/probe.py" get --port "$SVC_PORT" --path /healthz 2>&1) ;;
  esac || warn "preflight for $1 did not answer 2xx: $(echo "$out" | head -c 300)"
}

# The tracing workloads export to a stand-in collector on this machine.
SINK_PORT=""
start_otlp_sink() {
  local ready="$BENCH_OUT/tmp/sink.ready" pid
  SINK_PORT=$(free_port)
  python3 "$HERE/otlp_sink.py" --port "$SINK_PORT" --ready "$ready" >"$BENCH_OUT/logs/otlp-sink.log" 2>&1 &
  pid=$!
  track "$pid"
  for _ in $(seq 1 500); do [ -e "$ready" ] && return 0; sleep 0.01; done
  die "the OTLP sink did not start (log: $BENCH_OUT/logs/otlp-sink.log)"
}
# The cache workload reads through a redis-server of the bench's own (no
# persistence, loopback only), so that its keys and its CPU are this run's.
REDIS_PORT=""
start_redis() {
  command -v redis-server >/dev/null || die "redis-server not found (apt-get install redis-server) for W2-cache"
  REDIS_PORT=$(free_port)
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --daemonize no \
    >"$BENCH_OUT/logs/redis.log" 2>&1 &
  track "$!"
  for _ in $(seq 1 500); do
    redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && return 0
    sleep 0.01
  done
  die "the bench's redis-server did not start (log: $BENCH_OUT/logs/redis.log)"
}
# cache_hit_ratio: from the running service's cache_requests_total{result}:
# prints "HIT_RATIO HITS MISSES ERRORS" (ratio over hits + misses + errors).
cache_hit_ratio() {
  python3 "$HERE/probe.py" get --port "$SVC_ADMIN_PORT" --path /metrics 2>/dev/null | awk '
    /^cache_requests_total\{/ {
      r = $1; sub(/.*result="/, "", r); sub(/".*/, "", r); n[r] = $2
    }
    END {
      t = n["hit"] + n["miss"] + n["error"]
      printf "%s %d %d %d\n", (t > 0 ? sprintf("%.4f", n["hit"] / t) : "null"), n["hit"], n["miss"], n["error"]
    }'
}
workload_env() { # WORKLOAD -> extra service environment
  case $1 in
    W2-idle10k) echo "MAX_CONNS=$((BENCH_IDLE_CONNS + 1024))" ;;
    W2-cache) echo "REDIS_URL=redis://127.0.0.1:$REDIS_PORT" ;;
    W2-otel*)
      echo "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$SINK_PORT" \
        "OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=${1#W2-otel}" ;;
  esac
}

# hold_idle NAME: BENCH_IDLE_CONNS idle keep-alive connections to the
# running service, held by hold_conns.py (HOLDER_PID) until it is stopped;
# sets HELD_KV to what they cost the service (RSS and threads once held).
HOLDER_PID=""
hold_idle() {
  local name=$1 ready="$BENCH_OUT/tmp/$1.held.json" mem i
  rm -f "$ready"
  python3 "$HERE/hold_conns.py" --port "$SVC_PORT" --count "$BENCH_IDLE_CONNS" --ready "$ready" \
    >"$BENCH_OUT/logs/$name.holder.log" 2>&1 &
  HOLDER_PID=$!
  track "$HOLDER_PID"
  for ((i = 0; i < 1200; i++)); do
    [ -s "$ready" ] && break
    kill -0 "$HOLDER_PID" 2>/dev/null || die "hold_conns.py exited (log: $BENCH_OUT/logs/$name.holder.log)"
    sleep 0.1
  done
  [ -s "$ready" ] || die "hold_conns.py did not open $BENCH_IDLE_CONNS connections within 120 s"
  sleep 0.5
  mem=$(python3 "$HERE/proc.py" mem "$SVC_PID")
  HELD_KV=$(python3 -c 'import json, sys
h, m = json.load(open(sys.argv[1])), json.loads(sys.argv[2])
print("held_conns=%d held_failed=%d held_rss_kib=%d held_threads=%d" % (h["held"], h["failed"], m["rss_kib"], m["threads"]))' "$ready" "$mem")
  log "$name: $HELD_KV"
}
release_idle() {
  [ -n "$HOLDER_PID" ] || return 0
  kill -TERM "$HOLDER_PID" 2>/dev/null || true
  wait_bounded "$HOLDER_PID" 10 || true
  untrack "$HOLDER_PID"
  HOLDER_PID=""
}

# is_w2_variant WORKLOAD: W2 with something added, judged as a ratio to W2.
is_w2_variant() {
  case $1 in W2-idle10k | W2-otel* | W2-cache) return 0 ;; *) return 1 ;; esac
}

# run_one WORKLOAD LABEL ROUND KV...: a fresh start of binary LABEL, the
# workload at $BENCH_CONNECTIONS, the stop; one record in raw.jsonl.
run_one() {
  local w=$1 l=$2 round=$3 level=warn name pid n; shift 3
  HELD_KV=""
  case $w in *-info) level=info ;; esac
  name="$w-$l$round"
  [ -z "${REF_FOR:-}" ] || name="$name-ref-$REF_FOR"
  [ "$BENCH_CONNECTIONS" = "$BENCH_CONNECTIONS_MAIN" ] || name="$name-c$BENCH_CONNECTIONS"
  SVC_WORKLOAD_ENV=$(workload_env "$w")
  if writes_rows "$w"; then pg_reset_writes; fi
  svc_start "${BIN[$l]}" "$name" "$level"
  preflight "$w"
  pid=$SVC_PID
  case $w in W2-idle10k) hold_idle "$name" ;; esac
  # shellcheck disable=SC2086 # HELD_KV: words KEY=VALUE
  measure_wrk "$name" "$w" "$SVC_PORT" "$pid" "$PM_PID" $HELD_KV \
    kind=service target=usersvc "label=$l" "round=$round" "log_level=$level" \
    "binary=${BIN[$l]}" "binary_size=$(stat -c %s "${BIN[$l]}")" \
    "startup_ms=$SVC_STARTUP_MS" "idle_rss_kib=$SVC_IDLE_RSS_KIB" "idle_threads=$SVC_IDLE_THREADS" \
    "first_start_ms=$FIRST_START_MS" "$@" >/dev/null
  local cache="null 0 0 0" logged=null
  case $w in W2-cache) cache=$(cache_hit_ratio) ;; esac
  if writes_rows "$w"; then svc_write_batches "$name"; fi
  release_idle
  svc_stop "${BIN[$l]}"
  # An info run's claim is that every request was logged: its lines are
  # counted (warm-up included), and the report checks them against the
  # requests measured, so that a request the service does not log cannot
  # make an "INFO logging" number look good.
  if [ "$level" = info ]; then
    logged=$(grep -cE '"msg": ?"request completed"' "$SVC_LOG" || true)
  fi
  # the stop numbers (and the cache's hit ratio) belong to the record just written
  # shellcheck disable=SC2086 # four words
  python3 - "$BENCH_OUT/raw.jsonl" "$SVC_TERM_MS" "$SVC_TERM_NET_MS" "$SVC_DRAIN_MS" "$SVC_EXIT" "$logged" $cache <<'PY'
import json, sys
path, term, net, drain, code, logged, ratio, hits, misses, errors = sys.argv[1:]
lines = open(path).read().splitlines()
r = json.loads(lines[-1])
r.update(sigterm_to_exit_ms=float(term), sigterm_net_ms=float(net), drain_delay_ms=float(drain), exit_status=int(code))
if logged != "null":
    r.update(logged_request_lines=int(logged))
if ratio != "null":
    r.update(cache_hit_ratio=float(ratio), cache_hits=int(hits), cache_misses=int(misses), cache_errors=int(errors))
lines[-1] = json.dumps(r, sort_keys=True)
open(path, "w").write("\n".join(lines) + "\n")
PY
  if [ "$level" = info ] && [ -f "$SVC_LOG" ]; then
    # keep the info-level log small: line count, then the last lines
    n=$(wc -l <"$SVC_LOG")
    tail -200 "$SVC_LOG" >"$SVC_LOG.tail" && mv "$SVC_LOG.tail" "$SVC_LOG"
    echo "($n log lines during the run; last 200 kept)" >>"$SVC_LOG"
  fi
}

BENCH_CONNECTIONS_MAIN=$BENCH_CONNECTIONS
if [ "$MODE" != ceilings ]; then
  # In this shell (not in a $(...)), so that cleanup stops it.
  case " $BENCH_WORKLOADS " in *" W2-otel"*) start_otlp_sink ;; esac
  case " $BENCH_WORKLOADS " in *" W2-cache "*) start_redis ;; esac
  for w in $BENCH_WORKLOADS; do
    for ((round = 1; round <= ROUNDS; round++)); do
      for l in "${LABELS[@]}"; do
        # A variant of W2 (idle connections held, tracing, the cache) is
        # judged against W2 measured just before it, in the same round with
        # the same binary: throughput drifts through a run on a shared host,
        # and the run's own W2 rounds come first (BENCH_W2_REF=0: off).
        if [ "$l" = A ] && [ "${BENCH_W2_REF:-1}" != 0 ] && is_w2_variant "$w"; then
          REF_FOR=$w run_one W2 A "$round" "ref_for=$w"
        fi
        # A write workload's ceiling is measured again just before its round,
        # and the round's ratio is to that ceiling (ceilings.sh).
        if [ "$l" = A ] && [ "$MODE" = full ] && has_paired_ceilings "$w"; then
          CEILING_ROUND=$round pgbench_ceilings_of "$w"
        fi
        if serves "$w" "$l"; then run_one "$w" "$l" "$round"; fi
      done
    done
  done
  # Throughput against p99 at other connection counts (binary A, one round;
  # the main run stands for BENCH_CONNECTIONS): the plot's points. Each runs
  # with QUEUE_DEPTH = its connections (unless BENCH_SERVICE_ENV sets one), so
  # nothing is shed: with the default (4 x WORKERS = 100) 256 connections are
  # partly answered 503 at once, and those fast answers would hide the
  # queueing tail the plot is for.
  for w in $BENCH_SWEEP_WORKLOADS; do
    case " $BENCH_WORKLOADS " in *" $w "*) ;; *) continue ;; esac
    for c in $BENCH_SWEEP_CONNECTIONS; do
      [ "$c" != "$BENCH_CONNECTIONS_MAIN" ] || continue
      extra=${BENCH_SERVICE_ENV:-}
      case " $extra " in *" QUEUE_DEPTH="*) ;; *) extra="$extra QUEUE_DEPTH=$c" ;; esac
      BENCH_CONNECTIONS=$c BENCH_SERVICE_ENV=$extra run_one "$w" A 1 sweep=1 "service_env=${extra# }"
    done
  done
fi

# ---- ceilings --------------------------------------------------------------------------
[ "$MODE" = service ] || run_ceilings

# ---- report ----------------------------------------------------------------------------
SCHED="sched_autogroup_enabled=$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo n/a);\
 autogroups of PostgreSQL and of the bench's session (service, wrk, pgbench, nginx):\
 $(sched_groups "$(pg_postmaster_pid 2>/dev/null)" $$)"
python3 - "$BENCH_OUT/meta.json" <<PY
import json, subprocess, sys, os
def sh(c):
    try: return subprocess.run(c, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception: return ""
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
bins = {}
for lab, p in (("A", "${BIN[A]:-}"), ("B", "${BIN[B]:-}")):
    if p: bins[lab] = {"path": p, "size": os.path.getsize(p)}
meta = {
  "date": sh("date -u +%Y-%m-%dT%H:%M:%SZ"),
  "commit": sh("git -C '$ROOT' rev-parse --short HEAD") + (" (dirty)" if sh("git -C '$ROOT' status --porcelain -uno") else ""),
  "cpu": cpu, "nproc": os.cpu_count(),
  "loadavg_start": "$LOAD_START", "loadavg_end": " ".join(open("/proc/loadavg").read().split()[:3]),
  "wrk_threads": ${BENCH_THREADS:-2}, "connections": $BENCH_CONNECTIONS,
  "duration": $BENCH_DURATION, "warmup": $BENCH_WARMUP,
  "pgbench_clients": ${BENCH_PGBENCH_CLIENTS:-25}, "pgbench_jobs": ${BENCH_PGBENCH_JOBS:-2},
  "pg_settings": """$(pg_settings_summary)""",
  "binaries": bins, "drain_delay": "${BENCH_DRAIN_DELAY:-1ms}", "service_env": "${BENCH_SERVICE_ENV:-}",
  "first_start_ms": "$FIRST_START_MS", "mode": "$MODE", "scheduling": "$SCHED",
  "workers": json.loads(sh("env -i ${BENCH_SERVICE_ENV:-} DATABASE_URL=postgres://bench@127.0.0.1/bench '${BIN[A]:-true}' --print-config 2>/dev/null") or "{}").get("WORKERS"),
}
json.dump(meta, open(sys.argv[1], "w"), indent=1)
PY
python3 "$HERE/report.py" finalize "$BENCH_OUT/raw.jsonl" --jsonl "$BENCH_OUT/results.jsonl" \
  --md "$BENCH_OUT/results.md" --meta "$BENCH_OUT/meta.json"
if [ "$MODE" != ceilings ]; then
  python3 "$HERE/plot.py" "$BENCH_OUT/results.jsonl" --meta "$BENCH_OUT/meta.json" --out "$BENCH_PLOT" \
    && log "plot: $BENCH_PLOT"
fi
rm -rf "$BENCH_OUT/tmp"
echo >&2
cat "$BENCH_OUT/results.md"
log "results: $BENCH_OUT/results.md, $BENCH_OUT/results.jsonl"
