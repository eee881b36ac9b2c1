#!/usr/bin/env bash
# `make run`: serves on :8080 against $DATABASE_URL, or, when it is unset,
# against a local PostgreSQL cluster kept under .dev/pg (created, started and
# given a `usersvc` database on first use; installed from Debian's packages if
# missing). Migrations run at start-up (MIGRATE_ON_START, default on). When the
# service exits, it says that the local cluster keeps running and how to stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-postgres.sh

if [ -z "${DATABASE_URL:-}" ]; then
  port=${DEV_PG_PORT:-5433}
  pg_install_if_missing
  pg_private_cluster .dev/pg "$port"
  if ! psql -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc \
      "select 1 from pg_database where datname = 'usersvc'" | grep -q 1; then
    psql -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -c 'create database usersvc'
  fi
  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/usersvc"
  echo "==> DATABASE_URL=$DATABASE_URL (local cluster in .dev/pg; 'make clean' removes it)" >&2
fi
export LOG_FORMAT=${LOG_FORMAT:-text}
if [ -z "${port:-}" ]; then
  exec "${USERSVC_BIN:-target/debug/usersvc}" "$@"
fi
# In the foreground (Ctrl-C reaches the service, which drains and exits), then
# say what is still running: the local cluster outlives the service.
status=0
"${USERSVC_BIN:-target/debug/usersvc}" "$@" || status=$?
echo "==> usersvc exited (status $status); the local PostgreSQL keeps running on 127.0.0.1:$port" >&2
echo "    (.dev/pg). Stop it with: make clean (also removes .dev/ and build output), or" >&2
echo "    $(pg_bindir)/pg_ctl -D .dev/pg/data stop$( [ "$(id -u)" -eq 0 ] && echo ' (as the postgres user)')" >&2
exit "$status"
