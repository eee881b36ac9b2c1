#!/usr/bin/env bash
# Slow-client attacks against the real service, with more attacking
# connections than workers: slowloris (-H), slow body (-B) and slow read (-X).
# While each runs, a prober sends a normal API request and a probe every
# 250 ms; the service passes when every probe is answered (2 s client limit).
#
# Usage: scripts/slowhttptest.sh [seconds-per-mode] [connections]
# Needs: slowhttptest (installed from Debian if missing), a PostgreSQL for a
# throwaway database (scripts/ensure-test-services.sh), a built binary
# (USERSVC_BIN, default target/release/usersvc, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
conns=${2:-1000}
command -v slowhttptest >/dev/null || { apt-get update -qq && apt-get install -y -qq slowhttptest; }
scripts/ensure-test-services.sh
# shellcheck disable=SC1091
source .dev/test.env
bin=${USERSVC_BIN:-target/release/usersvc}
[ -x "$bin" ] || cargo build --release -q

db="usersvc_slowhttp_$$"
admin_url=$USERSVC_TEST_DATABASE_URL
psql -X -q "$admin_url" -c "CREATE DATABASE $db"
svc_pid=""
cleanup() {
  [ -n "$svc_pid" ] && kill "$svc_pid" 2>/dev/null && wait "$svc_pid" 2>/dev/null
  psql -X -q "$admin_url" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
}
trap cleanup EXIT

port=18555
out=$(mktemp -d)
DATABASE_URL="${admin_url%/*}/$db" ADDR="127.0.0.1:$port" ADMIN_ADDR=off \
  WORKERS=4 MAX_CONNECTIONS=4 LOG_LEVEL=warn "$bin" >"$out/service.log" 2>&1 &
svc_pid=$!
for _ in $(seq 200); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.05; done
curl -fs -X POST -H 'Content-Type: application/json' \
  -d '{"name":"Probe","email":"probe@example.com"}' "http://127.0.0.1:$port/api/v1/users" >/dev/null

probe() { # until the file $1 exists: one API request + one probe every 250 ms
  local ok=0 fail=0 worst=0 t
  while [ ! -e "$1" ]; do
    for path in /api/v1/users/1 /healthz; do
      if t=$(curl -s -o /dev/null -m 2 -w '%{http_code} %{time_total}' "http://127.0.0.1:$port$path"); then
        read -r code secs_taken <<<"$t"
        if [ "$code" = 200 ]; then ok=$((ok + 1)); else fail=$((fail + 1)); fi
        worst=$(python3 -c "print(max($worst, $secs_taken))")
      else
        fail=$((fail + 1))
      fi
    done
    sleep 0.25
  done
  echo "$ok $fail $worst"
}

declare -A args=(
  [H]="-H -u http://127.0.0.1:$port/api/v1/users -i 5 -x 24"
  [B]="-B -u http://127.0.0.1:$port/api/v1/users -t POST -s 8192 -i 5 -x 24 -f application/json"
  [X]="-X -u http://127.0.0.1:$port/openapi.json -k 3 -n 5 -w 10 -y 20 -z 32"
)
status=0
printf '\n| mode | attack | connections | probes answered | probes failed | slowest probe |\n|---|---|---|---|---|---|\n' >"$out/table.md"
for mode in H B X; do
  name=$(case $mode in H) echo "slowloris (-H)";; B) echo "slow body (-B)";; X) echo "slow read (-X)";; esac)
  echo "==> $name: $conns connections for ${secs}s" >&2
  stop="$out/stop-$mode"
  probe "$stop" >"$out/probe-$mode" &
  probe_pid=$!
  # shellcheck disable=SC2086
  timeout $((secs + 30)) slowhttptest ${args[$mode]} -c "$conns" -r 200 -l "$secs" -p 3 \
    >"$out/slowhttptest-$mode.log" 2>&1 || true
  touch "$stop"
  wait "$probe_pid"
  read -r ok fail worst <"$out/probe-$mode"
  printf '| %s | %s | %s | %s | %s | %.3f s |\n' "$mode" "$name" "$conns" "$ok" "$fail" "$worst" >>"$out/table.md"
  [ "$fail" -eq 0 ] || status=1
  kill -0 "$svc_pid" || { echo "the service died" >&2; status=1; break; }
  sleep 2
done
cat "$out/table.md"
echo
echo "service available throughout: $([ $status -eq 0 ] && echo yes || echo NO)"
echo "logs: $out" >&2
exit $status
