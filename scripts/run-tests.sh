#!/usr/bin/env bash
# `make test`: every test against the PostgreSQL server named in .dev/test.env
# (written by scripts/ensure-test-services.sh).
#
# Each test creates a database of its own, named usersvc_t_<run>_<random>,
# and drops it when it ends; a test killed half-way (a timeout, Ctrl-C)
# cannot, so when the run ends this script drops the databases of *this run*
# that are still there, and says so. Only this run's: other runs (another
# checkout, CI) may share the server.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=/dev/null
. .dev/test.env
CARGO=${CARGO:-cargo}

run="r$(date +%s)p$$"
export USERSVC_TEST_RUN=$run
status=0
"$CARGO" test --workspace "$@" || status=$?

# The loom model tests (worker pool hand-off and shutdown, readiness single
# flight): the lib's unit tests named `loom`, in a build of their own (its
# own target directory; `--cfg usersvc_loom` turns on cfg(loom) for usersvc
# only, see build.rs).
echo "==> loom model tests" >&2
RUSTFLAGS="--cfg usersvc_loom" CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/loom" \
  "$CARGO" test --lib loom || status=$?

left=$(psql -X -qAt -d "$USERSVC_TEST_DATABASE_URL" -c \
  "select datname from pg_database where datname like 'usersvc\\_t\\_${run}\\_%'" 2>/dev/null || true)
dropped=0
for db in $left; do
  if psql -X -q -d "$USERSVC_TEST_DATABASE_URL" -c "drop database if exists \"$db\" with (force)" >/dev/null 2>&1; then
    dropped=$((dropped + 1))
  fi
done
if [ "$dropped" -gt 0 ]; then
  echo "==> dropped $dropped test database(s) this run left behind (usersvc_t_${run}_*)" >&2
else
  echo "==> no test database of this run left behind" >&2
fi
exit "$status"
