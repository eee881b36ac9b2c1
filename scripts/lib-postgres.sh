# shellcheck shell=bash
# Shared helpers for the scripts that need a PostgreSQL server: find the
# binaries, install them when missing, and run a private cluster under a
# directory of ours (initdb refuses to run as root, so as root the cluster
# belongs to the `postgres` user).

PG_MAJOR=${PG_MAJOR:-15}

pg_bindir() {
  local d
  for d in "/usr/lib/postgresql/$PG_MAJOR/bin" /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

# Installs PostgreSQL from Debian's packages when its server binaries are missing.
pg_install_if_missing() {
  pg_bindir >/dev/null && command -v psql >/dev/null && return 0
  echo "==> installing PostgreSQL (Debian packages)" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-contrib >&2
}

# Runs a command as the cluster owner: `postgres` when we are root, else us.
as_pg_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# pg_private_cluster DIR PORT: creates (once) and starts a cluster in DIR
# listening on 127.0.0.1:PORT with trust auth for local connections.
pg_private_cluster() {
  local dir=$1 port=$2 bindir
  bindir=$(pg_bindir) || { echo "PostgreSQL binaries not found" >&2; return 1; }
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    echo "==> initdb $dir/data" >&2
    as_pg_owner "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  if ! as_pg_owner "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    echo "==> starting PostgreSQL on 127.0.0.1:$port ($dir)" >&2
    as_pg_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 30 start \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300" >/dev/null
  fi
}

pg_ready() { # HOST PORT
  pg_isready -q -h "$1" -p "$2" -t 2 2>/dev/null
}
