# shellcheck shell=bash
# Driving a target with wrk: warm-up, then the measured run with the target's
# CPU (and PostgreSQL's) read from /proc before and after, and its RSS and
# threads sampled every 100 ms. Needs lib.sh.

WRK_THREADS=${BENCH_THREADS:-2}
LUA_DIR="$BENCH_LIB_DIR/lua"

lua_for() { # WORKLOAD -> script path
  case $1 in
    W1 | W1-info) echo "$LUA_DIR/w1_healthz.lua" ;;
    W2 | W2-info | W2-otel0.01 | W2-otel1 | W2-cache | W2-idle10k) echo "$LUA_DIR/w2_get_user.lua" ;;
    W3) echo "$LUA_DIR/w3_create_user.lua" ;;
    W4) echo "$LUA_DIR/w4_mix.lua" ;;
    *) die "unknown workload '$1' (W1 W2 W3 W4 W1-info W2-info W2-otel0.01 W2-otel1 W2-cache W2-idle10k)" ;;
  esac
}

# wrk_once PORT LUA SECONDS OUT NONCE: one bounded wrk run (127.0.0.1 only).
wrk_once() {
  local port=$1 lua=$2 secs=$3 out=$4 nonce=$5 pid rc=0
  wrk -t "$WRK_THREADS" -c "$BENCH_CONNECTIONS" -d "${secs}s" --latency --timeout 5s \
    -s "$lua" "http://127.0.0.1:$port/" -- "$nonce" >"$out" 2>&1 &
  pid=$!
  track "$pid"
  wait_bounded "$pid" "$((secs + 30))" || rc=$?
  untrack "$pid"
  [ $rc -eq 0 ] || { cat "$out" >&2; die "wrk failed (status $rc)"; }
}

# measure_wrk NAME WORKLOAD PORT TARGET_PID DB_PID KV...: warm-up + measured
# run; appends one record (KV plus the measurements) to $BENCH_OUT/raw.jsonl.
measure_wrk() {
  local name=$1 workload=$2 port=$3 pid=$4 db_pid=$5; shift 5
  local lua out sample sampler cpu0 cpu1 db0="" db1="" nonce
  lua=$(lua_for "$workload")
  out="$BENCH_OUT/logs/$name.wrk.txt"
  sample="$BENCH_OUT/tmp/$name.sample.json"
  nonce="${RUN_ID}${name//[^A-Za-z0-9]/}"
  rm -f "$sample"
  python3 "$BENCH_LIB_DIR/proc.py" sample "$pid" --out "$sample" --interval 0.1 \
    --max-seconds "$((BENCH_WARMUP + BENCH_DURATION + 60))" &
  sampler=$!
  track "$sampler"
  if [ "$BENCH_WARMUP" -gt 0 ]; then
    wrk_once "$port" "$lua" "$BENCH_WARMUP" "$BENCH_OUT/logs/$name.warmup.txt" "${nonce}w"
  fi
  cpu0=$(python3 "$BENCH_LIB_DIR/proc.py" cpu "$pid")
  [ -z "$db_pid" ] || db0=$(python3 "$BENCH_LIB_DIR/proc.py" cpu "$db_pid")
  log "$name: wrk -t$WRK_THREADS -c$BENCH_CONNECTIONS -d${BENCH_DURATION}s $(basename "$lua")"
  wrk_once "$port" "$lua" "$BENCH_DURATION" "$out" "$nonce"
  cpu1=$(python3 "$BENCH_LIB_DIR/proc.py" cpu "$pid")
  [ -z "$db_pid" ] || db1=$(python3 "$BENCH_LIB_DIR/proc.py" cpu "$db_pid")
  kill -TERM "$sampler" 2>/dev/null || true
  wait_bounded "$sampler" 10 || true
  untrack "$sampler"
  python3 "$BENCH_LIB_DIR/report.py" record --wrk "$out" --sample "$sample" \
    --kv "name=$name" --kv "workload=$workload" --kv "connections=$BENCH_CONNECTIONS" --kv "cpu_us=$((cpu1 - cpu0))" \
    --kv "db_cpu_us=${db1:+$((db1 - db0))}" "${@/#/--kv=}" >>"$BENCH_OUT/raw.jsonl"
  python3 "$BENCH_LIB_DIR/report.py" show "$BENCH_OUT/raw.jsonl"
}
