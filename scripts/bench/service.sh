# shellcheck shell=bash
# Starting, measuring and stopping one usersvc process for the benchmark.
# Needs lib.sh and pg.sh. Every start is fresh: its own ports, log file and
# clean environment (env -i plus the variables below and BENCH_SERVICE_ENV).

SVC_PID="" SVC_PORT="" SVC_ADMIN_PORT="" SVC_STARTUP_MS="" SVC_LOG=""
SVC_IDLE_RSS_KIB="" SVC_IDLE_THREADS="" SVC_TERM_MS="" SVC_TERM_NET_MS="" SVC_EXIT="" SVC_DRAIN_MS=""
# DRAIN_DELAY per binary path: 1ms (BENCH_DRAIN_DELAY) unless the config refuses it.
declare -A SVC_DRAIN=()

has_migrate_subcommand() { # BIN
  "$1" --help 2>&1 | grep -q 'migrate'
}

# svc_migrate BIN: `usersvc migrate up` when the binary has that subcommand
# (returns 0), else returns 1 and the caller relies on MIGRATE_ON_START.
svc_migrate() {
  local bin=$1
  has_migrate_subcommand "$bin" || return 1
  log "migrating: $(basename "$bin") migrate up"
  env -i PATH="$PATH" HOME="${HOME:-/root}" DATABASE_URL="$(pg_url)" LOG_LEVEL=warn "$bin" migrate up \
    >"$BENCH_OUT/logs/migrate.log" 2>&1 || { cat "$BENCH_OUT/logs/migrate.log" >&2; die "migrate up failed"; }
  return 0
}

duration_ms() { # 1ms, 2s, 1m, 500us -> milliseconds (float)
  python3 -c 'import re,sys
m=re.fullmatch(r"([\d.]+)(us|µs|ms|s|m|h)",sys.argv[1])
print(float(m.group(1))*{"us":.001,"µs":.001,"ms":1,"s":1000,"m":60000,"h":3600000}[m.group(2)] if m else "")' "$1"
}

# svc_settle: waits (bounded) until the previous instance's database sessions
# have ended. A dozen backends exiting on two cores would otherwise be timed
# as the next instance's start-up (measured: 10 ms → 12–25 ms).
svc_settle() {
  local i n
  for ((i = 0; i < 100; i++)); do
    n=$(pg_psql "$PG_DB" -tAc "SELECT count(*) FROM pg_stat_activity
      WHERE datname = current_database() AND pid <> pg_backend_pid()
        AND application_name LIKE 'usersvc%'") || return 0
    [ "$n" = 0 ] && break
    sleep 0.05
  done
  sleep "${BENCH_START_SETTLE:-0.2}"
}

# svc_start BIN NAME LOG_LEVEL: spawns the service, polls /readyz every 1 ms
# from before the spawn, records start-up-to-ready, idle RSS and threads.
svc_start() {
  local bin=$1 name=$2 level=$3 try drain
  for try in 1 2; do
    drain=${SVC_DRAIN[$bin]:-${BENCH_DRAIN_DELAY:-1ms}}
    if _svc_spawn "$bin" "$name" "$level" "$drain"; then
      SVC_DRAIN[$bin]=$drain
      return 0
    fi
    if [ "$try" = 1 ] && [ "$drain" != "default" ] && grep -q 'DRAIN_DELAY' "$SVC_LOG"; then
      warn "$(basename "$bin") refused DRAIN_DELAY=$drain; using its default (subtracted from SIGTERM-to-exit)"
      SVC_DRAIN[$bin]=default
      continue
    fi
    tail -20 "$SVC_LOG" >&2
    die "$name did not become ready (log: $SVC_LOG)"
  done
}

_svc_spawn() {
  local bin=$1 name=$2 level=$3 drain=$4 poller rc=0 t0 ready env_extra=()
  SVC_PORT=$(free_port)
  SVC_ADMIN_PORT=$(free_port)
  while [ "$SVC_ADMIN_PORT" = "$SVC_PORT" ]; do SVC_ADMIN_PORT=$(free_port); done
  SVC_LOG="$BENCH_OUT/logs/$name.log"
  local started="$BENCH_OUT/tmp/poller.started" pidfile="$BENCH_OUT/tmp/svc.pid" readyf="$BENCH_OUT/tmp/ready"
  rm -f "$started" "$pidfile" "$readyf"
  python3 "$BENCH_LIB_DIR/probe.py" wait-ready --port "$SVC_PORT" --path /readyz --interval 0.001 \
    --timeout "${BENCH_READY_TIMEOUT:-60}" --pidfile "$pidfile" --started "$started" >"$readyf" 2>>"$SVC_LOG.ready" &
  poller=$!
  track "$poller"
  for _ in $(seq 1 1000); do [ -e "$started" ] && break; sleep 0.01; done
  [ -e "$started" ] || die "the readiness poller did not start"

  # shellcheck disable=SC2206 # word splitting of BENCH_SERVICE_ENV is the point
  env_extra=(${BENCH_SERVICE_ENV:-} ${SVC_WORKLOAD_ENV:-})
  [ "$drain" = "default" ] || env_extra+=("DRAIN_DELAY=$drain")
  svc_settle
  t0=$(now_us)
  env -i PATH="$PATH" HOME="${HOME:-/root}" \
    DATABASE_URL="$(pg_url)" ADDR="127.0.0.1:$SVC_PORT" ADMIN_ADDR="127.0.0.1:$SVC_ADMIN_PORT" \
    LOG_LEVEL="$level" "${env_extra[@]}" "$bin" >"$SVC_LOG" 2>&1 &
  SVC_PID=$!
  track "$SVC_PID"
  echo "$SVC_PID" >"$pidfile"

  wait_bounded "$poller" "$(( ${BENCH_READY_TIMEOUT:-60} + 5 ))" || rc=$?
  untrack "$poller"
  if [ $rc -ne 0 ]; then
    local st=0
    if alive "$SVC_PID"; then kill_tree "$SVC_PID" 5; fi
    wait "$SVC_PID" 2>/dev/null || st=$?
    untrack "$SVC_PID"
    cat "$SVC_LOG.ready" >>"$SVC_LOG" 2>/dev/null
    warn "$name: not ready (poller status $rc, service exit status $st)"
    return 1
  fi
  ready=$(head -1 "$readyf")
  SVC_STARTUP_MS=$(awk -v a="$ready" -v b="$t0" 'BEGIN { printf "%.2f", (a - b) / 1000 }')
  svc_outbox_wait
  sleep "${BENCH_IDLE_SETTLE:-0.5}"
  read -r SVC_IDLE_RSS_KIB SVC_IDLE_THREADS < <(python3 "$BENCH_LIB_DIR/proc.py" mem "$SVC_PID" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["rss_kib"], d["threads"])')
  log "$name: ready in $SVC_STARTUP_MS ms (pid $SVC_PID, :$SVC_PORT), idle RSS $SVC_IDLE_RSS_KIB KiB, $SVC_IDLE_THREADS threads"
}

# svc_outbox_wait: events left by an earlier W3/W4 run are delivered by this
# process's outbox worker; wait (bounded, BENCH_OUTBOX_WAIT s) until the admin
# listener's outbox_pending gauge is 0 so that work does not land in the next
# measurement. Skipped when the metric is not there, and when the service has
# no WEBHOOK_URL: then its events stay pending by design and waiting is moot.
svc_outbox_wait() {
  local i pending
  case " ${BENCH_SERVICE_ENV:-} ${SVC_WORKLOAD_ENV:-} " in *" WEBHOOK_URL="*) ;; *) return 0 ;; esac
  for ((i = 0; i < ${BENCH_OUTBOX_WAIT:-30} * 10; i++)); do
    pending=$(python3 "$BENCH_LIB_DIR/probe.py" get --port "$SVC_ADMIN_PORT" --path /metrics 2>/dev/null |
      awk '$1 == "outbox_pending" { print int($2) }') || true
    [ -n "$pending" ] && [ "$pending" -gt 0 ] || return 0
    [ "$i" -gt 0 ] || log "waiting for the outbox to deliver $pending pending events"
    sleep 0.1
  done
  warn "outbox_pending still $pending after ${BENCH_OUTBOX_WAIT:-30}s; measuring anyway"
}

# svc_write_batches NAME: how many requests the service's single-statement
# writes answered, from db_write_statement_requests (warm-up included), as a
# log line: above 1 each, creates were written together (group commit).
# Nothing for a binary without the metric (the async stack).
svc_write_batches() {
  local stats
  stats=$(python3 "$BENCH_LIB_DIR/probe.py" get --port "$SVC_ADMIN_PORT" --path /metrics 2>/dev/null |
    awk '$1 == "db_write_statement_requests_sum" { s = $2 }
         $1 == "db_write_statement_requests_count" { c = $2 }
         END { if (c > 0) printf "%d requests in %d statements (%.2f each)", s, c, s / c }') || true
  [ -z "$stats" ] || log "$1: single-statement writes: $stats"
}

# svc_stop BIN: SIGTERM, wait for exit (bounded), SIGTERM-to-exit time with
# and without the DRAIN_DELAY the process ran with.
svc_stop() {
  local bin=$1 t0 t1 drain_ms
  SVC_EXIT=0
  t0=$(now_us)
  kill -TERM "$SVC_PID"
  wait_bounded "$SVC_PID" "${BENCH_STOP_TIMEOUT:-60}" || SVC_EXIT=$?
  t1=$WAIT_EXIT_US
  untrack "$SVC_PID"
  SVC_TERM_MS=$(awk -v a="$t1" -v b="$t0" 'BEGIN { printf "%.2f", (a - b) / 1000 }')
  if [ "${SVC_DRAIN[$bin]}" = default ]; then
    drain_ms=$(duration_ms "${BENCH_DEFAULT_DRAIN_DELAY:-2s}")
  else
    drain_ms=$(duration_ms "${SVC_DRAIN[$bin]}")
  fi
  SVC_DRAIN_MS=${drain_ms:-0}
  SVC_TERM_NET_MS=$(awk -v a="$SVC_TERM_MS" -v d="$SVC_DRAIN_MS" 'BEGIN { printf "%.2f", a - d }')
  [ "$SVC_EXIT" = 0 ] || warn "service exited with status $SVC_EXIT after SIGTERM"
  log "stopped: SIGTERM to exit $SVC_TERM_MS ms (drain delay $SVC_DRAIN_MS ms), status $SVC_EXIT"
}
