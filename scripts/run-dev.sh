#!/usr/bin/env bash
# `make run`: serves on :8080 against $DATABASE_URL, or, when it is unset,
# against a local PostgreSQL cluster kept under .dev/pg (created, started and
# given a `usersvc` database on first use; installed from Debian's packages if
# missing). Migrations run at start-up (MIGRATE_ON_START, default on).
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
exec "${USERSVC_BIN:-target/debug/usersvc}" "$@"
