# shellcheck shell=bash
# The machine's ceilings, measured in the same run as the service:
#   nginx (Debian package, private config, non-daemon child) serving a 2-byte
#   file for W1; pgbench running the service's SQL for W2, W3 and the W4 mix.
# Needs lib.sh, pg.sh and load.sh.

NGINX_PID=""

nginx_start() {
  local dir="$BENCH_OUT/nginx" port i
  rm -rf "$dir"
  mkdir -p "$dir/www" "$dir/tmp"
  printf 'ok' >"$dir/www/ok"
  chmod -R a+rX "$dir"
  port=$(free_port)
  sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" "$BENCH_LIB_DIR/nginx.conf.in" >"$dir/nginx.conf"
  "$(nginx_bin)" -t -q -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" \
    || die "nginx rejected $dir/nginx.conf"
  "$(nginx_bin)" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" &
  NGINX_PID=$!
  track "$NGINX_PID"
  for ((i = 0; i < 500; i++)); do
    python3 "$BENCH_LIB_DIR/probe.py" get --port "$port" --path /healthz >/dev/null 2>&1 && break
    alive "$NGINX_PID" || die "nginx exited: $(tail -5 "$dir/error.log")"
    sleep 0.02
  done
  NGINX_PORT=$port
  log "nginx $("$(nginx_bin)" -v 2>&1 | sed 's|.*/||') on 127.0.0.1:$port (pid $NGINX_PID, $(pgrep -c -P "$NGINX_PID") workers)"
}

nginx_stop() {
  [ -n "$NGINX_PID" ] || return 0
  kill_tree "$NGINX_PID" 10
  untrack "$NGINX_PID"
  NGINX_PID=""
}

ceiling_nginx() {
  nginx_start
  measure_wrk "ceiling-nginx-W1" W1 "$NGINX_PORT" "$NGINX_PID" "" \
    kind=ceiling target=nginx "what=static 2-byte file, keep-alive, access_log off"
  nginx_stop
}

# pgbench_once SECONDS OUT [LOGPREFIX] -- SCRIPT ARGS...
pgbench_once() {
  local secs=$1 out=$2 logp=$3; shift 3
  local pid rc=0 args=(-h 127.0.0.1 -p "$PG_PORT" -U postgres -M prepared
    -c "${BENCH_PGBENCH_CLIENTS:-25}" -j "${BENCH_PGBENCH_JOBS:-2}" -T "$secs" -n
    -D "nonce=$RUN_ID$(basename "$out" .txt | tr -cd 'A-Za-z0-9')" -D k=0)
  [ -z "$logp" ] || args+=(-l --log-prefix="$logp")
  (cd "$BENCH_OUT/tmp" && exec "$(pg_bindir)/pgbench" "${args[@]}" "$@" "$PG_DB") >"$out" 2>&1 &
  pid=$!
  track "$pid"
  wait_bounded "$pid" "$((secs + 60))" || rc=$?
  untrack "$pid"
  [ $rc -eq 0 ] || { tail -5 "$out" >&2; warn "pgbench failed (status $rc), see $out"; return 1; }
}

# ceiling_pgbench WORKLOAD WHAT SCRIPT-ARGS...: one pgbench ceiling. With
# CEILING_ROUND=N it is a paired ceiling: measured just before round N of the
# service's workload and recorded with that round (round=N paired=1).
ceiling_pgbench() {
  local workload=$1 what=$2; shift 2
  local name="ceiling-pgbench-$workload${CEILING_ROUND:+-r$CEILING_ROUND}" out logp pm cpu0 cpu1 paired=()
  out="$BENCH_OUT/logs/$name.txt"
  logp="$BENCH_OUT/tmp/$name"
  rm -f "$logp".*
  pm=$(pg_postmaster_pid)
  [ -z "${CEILING_ROUND:-}" ] || paired=(--kv "round=$CEILING_ROUND" --kv paired=1)
  if writes_rows "$workload"; then pg_reset_writes; fi
  # A failing ceiling (e.g. the service's schema needs columns these scripts do
  # not fill) is reported and skipped: the service's numbers are kept.
  if [ "$BENCH_WARMUP" -gt 0 ]; then
    pgbench_once "$BENCH_WARMUP" "$BENCH_OUT/logs/$name.warmup.txt" "" "$@" || return 0
  fi
  log "$name: pgbench -M prepared -c ${BENCH_PGBENCH_CLIENTS:-25} -j ${BENCH_PGBENCH_JOBS:-2} -T $BENCH_DURATION $*"
  cpu0=$(python3 "$BENCH_LIB_DIR/proc.py" cpu "$pm")
  pgbench_once "$BENCH_DURATION" "$out" "$logp" "$@" || return 0
  cpu1=$(python3 "$BENCH_LIB_DIR/proc.py" cpu "$pm")
  python3 "$BENCH_LIB_DIR/report.py" record --pgbench "$out" --pgbench-log "$logp" \
    --kv "name=$name" --kv "workload=$workload" --kv kind=ceiling --kv target=pgbench \
    --kv "what=$what" --kv "cpu_us=$((cpu1 - cpu0))" "${paired[@]}" >>"$BENCH_OUT/raw.jsonl"
  rm -f "$logp".*
  python3 "$BENCH_LIB_DIR/report.py" show "$BENCH_OUT/raw.jsonl"
}

# pgbench_ceilings_of WORKLOAD: the pgbench ceilings a database workload is
# judged against (W3 has two: its own statement and one INSERT).
pgbench_ceilings_of() {
  local sql="$BENCH_LIB_DIR/sql"
  case $1 in
    W2) ceiling_pgbench W2 "point select (W2's SQL)" -f "$sql/pgbench_w2.sql" ;;
    W3)
      ceiling_pgbench W3 "insert user + event, one statement (W3's SQL)" -f "$sql/pgbench_w3.sql"
      ceiling_pgbench W3-insert "one INSERT of the user, no event" -f "$sql/pgbench_w3_insert.sql"
      ;;
    W4) ceiling_pgbench W4 "90/10 mix of the two scripts" -f "$sql/pgbench_w2.sql@9" -f "$sql/pgbench_w3.sql@1" ;;
    *) die "no pgbench ceiling for '$1'" ;;
  esac
}

# has_paired_ceilings WORKLOAD: a workload that inserts (pg.sh's
# writes_rows), whose ceilings are measured again just before each of its
# rounds (BENCH_PAIRED_CEILINGS=0: off). Writes are where a shared host
# drifts most: the same pgbench script ran at 7.3k to 10.7k tps within
# minutes on one machine (BENCHMARKS.md, "Paired ceilings"), so a ratio to
# a ceiling measured once, at the run's end, says as much about the drift as
# about the service.
has_paired_ceilings() {
  [ "${BENCH_PAIRED_CEILINGS:-1}" != 0 ] && writes_rows "$1"
}

run_ceilings() {
  ceiling_nginx
  pgbench_ceilings_of W2
  pgbench_ceilings_of W3
  pgbench_ceilings_of W4
}
