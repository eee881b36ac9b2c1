#!/usr/bin/env bash
# Makes sure the services the tests talk to are up, on this machine or a fresh
# one, and writes their addresses to .dev/test.env for `make test`.
#
# PostgreSQL: the machine's server on 127.0.0.1:5432 if it answers; else start
# the Debian cluster (pg_ctlcluster); else install the packages and/or run a
# throwaway cluster under .dev/test-pg on port 55432. Tests create their own
# databases on it (and their own throwaway clusters when they stop one).
#
# Redis: the server on 127.0.0.1:6379 if it answers PING; else start
# redis-server there (no persistence), installing Debian's package first if
# it is missing. Tests use their own key prefixes on it, and start private
# servers on other ports when they stop one.
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

redis_ping() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  echo "==> installing redis-server" >&2
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2
  else
    sudo apt-get update -qq >&2 && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2
  fi
fi
if ! redis_ping; then
  echo "==> starting redis-server on 127.0.0.1:6379" >&2
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >&2
  for _ in $(seq 1 50); do redis_ping && break; sleep 0.1; done
  redis_ping || { echo "redis-server did not start" >&2; exit 1; }
fi
redis_url="redis://127.0.0.1:6379"

cat > .dev/test.env <<ENV
export USERSVC_TEST_DATABASE_URL='$url'
export USERSVC_TEST_REDIS_URL='$redis_url'
ENV
echo "==> tests use $url and $redis_url" >&2
