# shellcheck shell=bash
# Common helpers for the load benchmark: logging, a registry of everything we
# start (stopped by the EXIT/INT/TERM trap), bounded waits, free ports and the
# installation of missing tools. Sourced by run.sh; no side effects on load.

BENCH_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export LC_ALL=C

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# ---- time -------------------------------------------------------------------
now_us() { local t=${EPOCHREALTIME/./}; echo "$((10#$t))"; }

# seconds VALUE: accepts 15, 15s, 1m, 500ms (>= 1 s for wrk/pgbench); prints whole seconds.
seconds() {
  local v=$1
  case $v in
    *ms) echo $(( (${v%ms} + 999) / 1000 )) ;;
    *s) echo "${v%s}" ;;
    *m) echo $(( ${v%m} * 60 )) ;;
    *[!0-9]* | '') die "not a duration in seconds: '$v' (use 15, 15s or 1m)" ;;
    *) echo "$v" ;;
  esac
}

# ---- processes we own ---------------------------------------------------------
BENCH_PIDS=()      # started in the background; killed (whole tree) on exit
BENCH_STOPS=()     # extra commands run on exit (pg_ctl stop, ...)

track() { BENCH_PIDS+=("$1"); }
untrack() {
  local p keep=()
  for p in "${BENCH_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  BENCH_PIDS=("${keep[@]}")
}
on_exit() { BENCH_STOPS+=("$1"); }

descendants() { # PID: prints every descendant, children before parents
  local c
  for c in $(pgrep -P "$1" 2>/dev/null); do descendants "$c"; echo "$c"; done
}

alive() { [ -e "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

# kill_tree PID [GRACE_SECONDS]: TERM the process and its descendants, KILL
# whatever is still there after the grace period (bounded), reap if ours.
kill_tree() {
  local pid=$1 grace=${2:-5} all p i
  alive "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
  all="$(descendants "$pid") $pid"
  # shellcheck disable=SC2086
  kill -TERM $all 2>/dev/null || true
  for ((i = 0; i < grace * 20; i++)); do
    local any=0
    for p in $all; do alive "$p" && any=1; done
    [ $any = 0 ] && break
    sleep 0.05
  done
  for p in $all; do alive "$p" && kill -KILL "$p" 2>/dev/null; done
  wait "$pid" 2>/dev/null || true
}

# The bench measures the host as users run it: the kernel's default
# scheduling (Debian: sched_autogroup_enabled=1) and no other tuning. It used
# to turn autogroup scheduling off for the run (p99 looked 10-70x better on
# two shared cores); that flattered the service against every other stack
# measured on a stock host, so the switch is gone. The report records the
# setting it ran with. BENCH_AUTOGROUP is refused rather than ignored.
sched_check() {
  [ -z "${BENCH_AUTOGROUP:-}" ] \
    || die "BENCH_AUTOGROUP is no longer supported: the bench runs with the host's default scheduling (tune the host yourself and report that run beside, see BENCHMARKS.md)"
}

bench_cleanup() {
  local rc=$? p s
  trap - EXIT INT TERM
  set +e
  for ((p = ${#BENCH_PIDS[@]} - 1; p >= 0; p--)); do kill_tree "${BENCH_PIDS[p]}" 5; done
  for ((s = ${#BENCH_STOPS[@]} - 1; s >= 0; s--)); do eval "${BENCH_STOPS[s]}"; done
  BENCH_PIDS=(); BENCH_STOPS=()
  return $rc
}

install_traps() {
  trap 'bench_cleanup' EXIT
  trap 'echo "bench: interrupted" >&2; exit 130' INT
  trap 'echo "bench: terminated" >&2; exit 143' TERM
}

# run_bg_wait CMD...: runs CMD in the background and waits for it, so that a
# signal to this script runs the trap at once (bash defers traps while a
# foreground child runs). Returns CMD's exit status.
run_bg_wait() {
  local pid rc=0
  "$@" &
  pid=$!
  track "$pid"
  wait "$pid" || rc=$?
  untrack "$pid"
  return $rc
}

# wait_bounded PID SECONDS: waits for our child PID, KILLing it after SECONDS.
# Prints nothing; returns its exit status (137 when killed). WAIT_EXIT_US is
# when the wait returned (before the watchdog is cleaned up, which takes
# tens of milliseconds and must not count as the process's own time).
wait_bounded() {
  local pid=$1 secs=$2 wd rc=0
  # `&&`: a watchdog whose sleep was interrupted (Ctrl-C, cleanup) kills nothing.
  ( sleep "$secs" && kill -KILL "$pid" 2>/dev/null ) &
  wd=$!
  track "$wd"
  wait "$pid" || rc=$?
  WAIT_EXIT_US=$(now_us)
  kill_tree "$wd" 1
  untrack "$wd"
  return $rc
}

# ---- network -------------------------------------------------------------------
free_port() { python3 "$BENCH_LIB_DIR/probe.py" free-port; }

# ---- tools ----------------------------------------------------------------------
apt_install() { # PACKAGE...
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  command -v apt-get >/dev/null || die "missing tools ($*) and no apt-get to install them"
  log "installing $* (apt-get)"
  if [ -z "${BENCH_APT_UPDATED:-}" ]; then
    $sudo apt-get update -qq >&2
    BENCH_APT_UPDATED=1
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# need_tools: installs whatever the benchmark needs and is missing.
need_tools() {
  local pkgs=()
  command -v python3 >/dev/null || pkgs+=(python3)
  command -v pgrep >/dev/null || pkgs+=(procps)
  command -v wrk >/dev/null || pkgs+=(wrk)
  if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then pkgs+=(nginx); fi
  command -v runuser >/dev/null || pkgs+=(util-linux)
  [ ${#pkgs[@]} -eq 0 ] || apt_install "${pkgs[@]}"
  # PostgreSQL server + pgbench: the project's own helper (Debian packages).
  pg_install_if_missing
  [ -x "$(pg_bindir)/pgbench" ] || apt_install "postgresql-$PG_MAJOR"
  id postgres >/dev/null 2>&1 || die "no 'postgres' user to own the throwaway cluster"
}

nginx_bin() { command -v nginx 2>/dev/null || echo /usr/sbin/nginx; }
