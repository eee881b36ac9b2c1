# shellcheck shell=bash
# The throwaway PostgreSQL cluster the benchmark runs against: created fresh
# under $BENCH_OUT/pg on every run, normal durability (fsync, synchronous_commit
# and full_page_writes on), stopped and removed on exit.
# Needs lib.sh and the project's scripts/lib-postgres.sh (pg_bindir, as_pg_owner).

PG_DIR=""
PG_PORT=""
PG_DB=usersvc

# pg_start DIR: initdb + start on a free 127.0.0.1 port; sets PG_DIR, PG_PORT.
pg_start() {
  local dir=$1 bindir
  bindir=$(pg_bindir) || die "PostgreSQL binaries not found"
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_pg_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ "$(id -u)" -ne 0 ] || chown postgres: "$dir"
  PG_DIR=$dir
  PG_PORT=${BENCH_PG_PORT:-$(free_port)}
  log "initdb $dir/data (PostgreSQL $("$bindir/postgres" --version | awk '{print $3}'), port $PG_PORT)"
  as_pg_owner "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  cat >>"$dir/data/postgresql.conf" <<CONF

# --- usersvc load benchmark (scripts/bench/pg.sh) ---
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$dir'
max_connections = 200
shared_buffers = 128MB
fsync = on
synchronous_commit = on
full_page_writes = on
logging_collector = off
log_min_messages = warning
CONF
  on_exit "pg_stop"
  # The postmaster is started directly, not with `pg_ctl start` (which gives
  # it a session of its own), so that under autogroup scheduling (the host's
  # default) PostgreSQL, the service, wrk, pgbench and nginx share one group
  # and are measured on the same terms. BENCH_PG_SESSION=own starts it in a
  # session of its own instead, as a system service runs (its own autogroup,
  # so as much CPU as the bench's whole session when both are busy): a run
  # to report beside, not the default (BENCHMARKS.md, "Paired ceilings").
  # (run.sh refuses any other value before anything starts.)
  if [ "${BENCH_PG_SESSION:-bench}" = own ]; then
    as_pg_owner setsid -w "$bindir/postgres" -D "$dir/data" >"$dir/postgres.log" 2>&1 &
  else
    as_pg_owner "$bindir/postgres" -D "$dir/data" >"$dir/postgres.log" 2>&1 &
  fi
  local i
  for ((i = 0; i < 600; i++)); do
    "$bindir/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 1 && break
    sleep 0.1
  done
  "$bindir/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 1 \
    || { tail -20 "$dir/postgres.log" >&2; die "PostgreSQL did not start"; }
  pg_psql postgres -c "CREATE DATABASE $PG_DB" >/dev/null
}

# pg_apply_migrations DIR: the service's own migrations (DIR/*.up.sql, in
# order) through psql, for runs without a service binary to run them.
pg_apply_migrations() {
  local f
  for f in "$1"/*.up.sql; do
    pg_psql "$PG_DB" -f "$f" >/dev/null || die "applying $f failed"
  done
}

# sched_groups PID...: the autogroup of each process ("-" when the kernel has
# none), for the report: the measured processes should share one.
sched_groups() {
  local p
  for p in "$@"; do
    awk '{ print $1 }' "/proc/$p/autogroup" 2>/dev/null || echo "-"
  done | sort -u | paste -sd' ' -
}

# pg_stop: stops the cluster (bounded), removes its data unless BENCH_KEEP_PG=1.
pg_stop() {
  [ -n "$PG_DIR" ] && [ -d "$PG_DIR/data" ] || return 0
  local bindir pid
  bindir=$(pg_bindir)
  if [ -f "$PG_DIR/data/postmaster.pid" ]; then
    pid=$(head -1 "$PG_DIR/data/postmaster.pid")
    as_pg_owner "$bindir/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 30 stop >/dev/null 2>&1 \
      || { warn "pg_ctl stop failed; killing postmaster $pid"; kill -QUIT "$pid" 2>/dev/null; sleep 1; kill -KILL "$pid" 2>/dev/null; }
  fi
  if [ "${BENCH_KEEP_PG:-0}" != 1 ]; then rm -rf "$PG_DIR/data"; fi
  PG_DIR=""
}

pg_postmaster_pid() { head -1 "$PG_DIR/data/postmaster.pid"; }

pg_url() { echo "postgres://postgres@127.0.0.1:$PG_PORT/$PG_DB"; }

# pg_psql DB ARGS...: psql over TCP, stop on the first error.
pg_psql() {
  local db=$1; shift
  "$(pg_bindir)/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$db" "$@"
}

pg_has_tables() {
  [ "$(pg_psql "$PG_DB" -tAc "SELECT to_regclass('users') IS NOT NULL AND to_regclass('events') IS NOT NULL")" = t ]
}

# pg_seed N: N users with one INSERT ... SELECT generate_series; checks that ids
# 1..N exist (W2 reads them), analyzes and checkpoints so the first workload
# does not pay for them.
pg_seed() {
  local n=$1 have
  log "seeding $n users"
  pg_psql "$PG_DB" -v n="$n" -f "$BENCH_LIB_DIR/sql/seed.sql" >/dev/null
  have=$(pg_psql "$PG_DB" -tAc "SELECT count(*) FROM users WHERE id BETWEEN 1 AND $n")
  [ "$have" = "$n" ] || die "after seeding, users with ids 1..$n: $have (expected $n; is the table fresh?)"
  pg_psql "$PG_DB" -c "VACUUM ANALYZE users" -c "CHECKPOINT" >/dev/null
  PG_SEEDED=$n
}

# PG_SEEDED: the users pg_seed made (pg_reset_writes makes them again).
PG_SEEDED=""

# writes_rows WORKLOAD: a workload (or its pgbench ceiling) that inserts users.
writes_rows() {
  case $1 in W3 | W3-insert | W4) return 0 ;; *) return 1 ;; esac
}

# pg_reset_writes: back to the seeded state (the PG_SEEDED users, no events,
# no keys), vacuumed, analyzed and checkpointed, before each measurement of a
# workload that inserts, the service's and pgbench's alike. Each then starts
# from the same tables and the same point of the checkpoint cycle: a create
# costs PostgreSQL more as its tables and indexes grow (147 µs of CPU on the
# seeded tables against 198 µs after the run's other inserts, the same
# pgbench script on one machine, BENCHMARKS.md "Paired ceilings"), so
# whichever ran later in a run was judged on bigger tables.
pg_reset_writes() {
  [ -n "$PG_SEEDED" ] || return 0
  log "tables reset to the $PG_SEEDED seeded users"
  pg_psql "$PG_DB" -c "TRUNCATE users, events, idempotency_keys RESTART IDENTITY" >/dev/null
  pg_seed "$PG_SEEDED"
}

# pg_settings_summary: the settings that matter, for the report.
pg_settings_summary() {
  pg_psql "$PG_DB" -tAc "SELECT string_agg(name || '=' || current_setting(name), ' ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync','synchronous_commit','shared_buffers','max_connections','full_page_writes','wal_level','server_version')"
}
