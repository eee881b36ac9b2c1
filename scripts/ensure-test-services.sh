#!/usr/bin/env bash
# Makes sure the services the tests talk to are up, on this machine or a fresh
# one, and writes their addresses to .dev/test.env for `make test`.
#
# PostgreSQL: the machine's server on 127.0.0.1:5432 if it answers; else start
# the Debian cluster (pg_ctlcluster); else install the packages and/or run a
# throwaway cluster under .dev/test-pg on port 55432. Tests create their own
# databases on it (and their own throwaway clusters when they stop one).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-postgres.sh

mkdir -p .dev
url=""
pg_install_if_missing

if ! pg_ready 127.0.0.1 5432 && command -v pg_ctlcluster >/dev/null; then
  for c in /etc/postgresql/*/main; do
    [ -d "$c" ] || continue
    v=$(basename "$(dirname "$c")")
    echo "==> starting the Debian PostgreSQL $v cluster" >&2
    pg_ctlcluster --skip-systemctl-redirect "$v" main start >&2 || true
  done
  for _ in $(seq 1 30); do pg_ready 127.0.0.1 5432 && break; sleep 0.5; done
fi

if pg_ready 127.0.0.1 5432 && psql -X -q -h 127.0.0.1 -p 5432 -U postgres -d postgres -c 'select 1' >/dev/null 2>&1; then
  url="postgres://postgres@127.0.0.1:5432/postgres"
  echo "==> using the PostgreSQL server already running on 127.0.0.1:5432 (this machine's):" >&2
  echo "    each test creates a database usersvc_t_<run>_<random> on it and drops it;" >&2
  echo "    any left when the run ends are dropped then (scripts/run-tests.sh)" >&2
else
  pg_private_cluster .dev/test-pg 55432
  url="postgres://postgres@127.0.0.1:55432/postgres"
fi

cat > .dev/test.env <<ENV
export USERSVC_TEST_DATABASE_URL='$url'
ENV
echo "==> tests use $url" >&2
