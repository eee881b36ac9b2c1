#!/usr/bin/env bash
# Self-test of the benchmark harness, without the real service: shellcheck,
# the ceilings, an end-to-end run against the Python stand-in
# (testdata/fake_usersvc.py) with the connection sweep and the plot, A/B, the no-migrate-subcommand and
# refused-DRAIN_DELAY paths, a binary that never gets ready, and Ctrl-C.
# After every case: no process of ours is left (postgres, nginx, wrk, pgbench,
# stand-ins). About 3 minutes. Output in bench-out/selftest.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=$ROOT/bench-out/selftest
TD=$HERE/testdata
export BENCH_OUT=$OUT BENCH_DURATION=2 BENCH_WARMUP=1 BENCH_PLOT=$OUT/plot.svg
fails=0

ok() { printf 'ok    %s\n' "$*"; }
bad() { printf 'FAIL  %s\n' "$*"; fails=$((fails + 1)); }

leftovers() {
  sleep 0.3
  pgrep -af -- "$OUT|$HERE/(lua|testdata)|pgbench .*-D k=0" | grep -v -e pgrep -e selftest.sh || true
}
check_clean() {
  local l
  l=$(leftovers)
  if [ -z "$l" ]; then ok "$1: nothing left running"; else bad "$1: left running: $l"; fi
}
run() { # NAME EXPECTED_STATUS CMD...: bounded by `timeout`
  local name=$1 want=$2 rc=0; shift 2
  timeout -k 10 300 "$@" >"$OUT.$name.log" 2>&1 || rc=$?
  if [ "$rc" = "$want" ]; then ok "$name: exit status $rc"; else bad "$name: exit status $rc, wanted $want (log $OUT.$name.log)"; fi
  check_clean "$name"
}
expect() { # DESCRIPTION CMD...
  local what=$1; shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}
jq_py() { python3 -c "import json,sys; R=[json.loads(l) for l in open('$OUT/results.jsonl')]; $1"; }

mkdir -p "$(dirname "$OUT")"

if ! command -v shellcheck >/dev/null; then
  # shellcheck source=lib.sh
  (. "$HERE/lib.sh" && apt_install shellcheck) || true
fi
if command -v shellcheck >/dev/null; then
  if shellcheck -x "$HERE/run.sh" "$HERE/selftest.sh" "$TD"/fake_usersvc_*; then ok "shellcheck"; else bad "shellcheck"; fi
fi
expect "python parses" python3 -c 'import ast, sys; [ast.parse(open(f).read(), f) for f in sys.argv[1:]]' "$HERE"/*.py "$TD"/*.py

run ceilings 0 "$HERE/run.sh" --ceilings-only
expect "ceilings: 5 ceilings measured" jq_py 'c=[r for r in R if r["kind"]=="ceiling" and r["rps"]>0]; sys.exit(0 if len(c)==5 else 1)'
expect "ceilings: the one-INSERT ceiling beside the same-statement one" jq_py 'w={r["workload"] for r in R if r["kind"]=="ceiling"}; sys.exit(0 if {"W3","W3-insert"} <= w else 1)'

run pg-session-typo 1 env BENCH_PG_SESSION=owned "$HERE/run.sh" --ceilings-only
expect "pg-session-typo: refused before anything starts" grep -q "BENCH_PG_SESSION must be 'bench' or 'own'" "$OUT.pg-session-typo.log"
if [ "$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null)" = 1 ]; then
  run pg-session-own 0 env BENCH_PG_SESSION=own BENCH_DURATION=1 "$HERE/run.sh" --ceilings-only
  expect "pg-session-own: PostgreSQL in an autogroup of its own" \
    grep -qE 'autogroups of PostgreSQL and of the bench.*: /autogroup-[0-9]+ /autogroup-[0-9]+' "$OUT/results.md"
fi

run e2e 0 env USERSVC_BIN="$TD/fake_usersvc.py" BENCH_IDLE_CONNS=200 "$HERE/run.sh"
expect "e2e: the 10 default workloads + 4 sweep runs, no errors, ratios, process numbers" jq_py 's=[r for r in R if r["kind"]=="service"]
assert len([r for r in s if not r.get("sweep") and not r.get("ref_for")])==10, len(s)
refs=sorted(r["ref_for"] for r in s if r.get("ref_for"))
assert refs==["W2-cache","W2-idle10k","W2-otel0.01","W2-otel1"] and all(r["workload"]=="W2" for r in s if r.get("ref_for")), refs
sw=sorted((r["workload"], r["connections"]) for r in s if r.get("sweep"))
assert sw==[("W2",16),("W2",256),("W3",16),("W3",256)], sw
assert all(r.get("ceiling2_ratio") for r in s if r["workload"]=="W3")
assert all(r["non2xx"]==0 and r["socket_errors_total"]==0 and r["requests"]>0 for r in s)
assert all(r.get("ceiling_ratio") for r in s)
assert all(r.get("startup_ms") and r.get("idle_rss_kib") and r.get("peak_rss_kib") and r.get("exit_status")==0 for r in s)
w4=[r for r in s if r["workload"]=="W4"][0]["statuses"]; assert "201" in w4 and "200" in w4'
expect "e2e: results.md has the targets table" grep -q '## Targets' "$OUT/results.md"
expect "e2e: W1 with INFO logging is a target" grep -q 'W1 with INFO logging of every request' "$OUT/results.md"
expect "e2e: the info runs' request lines are counted, one or more per request" jq_py 'i=[r for r in R if r["kind"]=="service" and r["workload"].endswith("-info")]
assert i and all(r["logged_request_lines"] >= r["requests"] > 0 for r in i), [(r.get("logged_request_lines"), r["requests"]) for r in i]'
expect "e2e: a W2 variant is judged against W2 run just before it" grep -q 'W2-otel1 req/s ≥ 0.85 × W2 (tracing off) | [0-9.]* (per round against W2 just before it' "$OUT/results.md"
expect "e2e: W3 against the one-INSERT ceiling is a target" grep -q 'W3 ≥ 0.60 × pgbench one-INSERT' "$OUT/results.md"
expect "e2e: W3 and W4 are judged against ceilings measured just before their round" jq_py 'c=[r for r in R if r["kind"]=="ceiling"]
p=sorted((r["workload"], r["round"]) for r in c if r.get("paired"))
assert p==[("W3",1),("W3-insert",1),("W4",1)], p
assert len([r for r in c if not r.get("paired")])==5
s=[r for r in R if r["kind"]=="service" and r["workload"] in ("W3","W4")]
assert all(r["ceiling"]["paired"] == (not r.get("sweep")) for r in s), [(r["workload"], r.get("sweep"), r["ceiling"]) for r in s]
assert all(r["ceiling2"]["paired"] for r in s if r["workload"]=="W3" and not r.get("sweep"))'
# Reset before each measurement that inserts: W3 and W4 (1 round), W3's two
# sweep points, the paired ceilings (W3, W3-insert, W4) and the run's (the same three).
expect "e2e: every measurement that inserts starts from the seeded tables" \
  test "$(grep -c 'tables reset to the 10000 seeded users' "$OUT.e2e.log")" = 10
expect "e2e: the paired ratios are shown per round" grep -q 'W3 ≥ 0.90 × pgbench, same statement | [0-9.]* (per round against pgbench just before it: [0-9.]*)' "$OUT/results.md"
expect "e2e: the plot has 6 points (W2, W3 at 16/64/256)" python3 -c 'import sys,xml.dom.minidom as m; d=m.parse(sys.argv[1]); sys.exit(0 if len(d.getElementsByTagName("circle"))==6 else 1)' "$OUT/plot.svg"

run ab 0 env USERSVC_BIN="$TD/fake_usersvc.py" BENCH_VS="$TD/fake_usersvc_slow" BENCH_WORKLOADS=W2 "$HERE/run.sh" --no-ceilings
expect "ab: ran A1 B1 A2 B2, then the sweep with A" jq_py 'l=[r["label"]+str(r["round"]) for r in R if not r.get("sweep")]; sw=[(r["label"], r["connections"]) for r in R if r.get("sweep")]; sys.exit(0 if l==["A1","B1","A2","B2"] and sw==[("A",16),("A",256)] else 1)'
expect "ab: results.md has the A/B table" grep -q '## A/B' "$OUT/results.md"
expect "ab: the A/B table shows that B shed (503s) and A did not" \
  grep -qE '^\| W2 \|.*\| 0 / [1-9][0-9]* \|$' "$OUT/results.md"

run unlogged 0 env USERSVC_BIN="$TD/fake_usersvc.py" BENCH_SERVICE_ENV=FAKE_UNLOGGED_PROBES=1 BENCH_WORKLOADS=W1-info BENCH_ROUNDS=1 "$HERE/run.sh" --no-ceilings
expect "unlogged: W1-info that did not log its requests is a missed target" grep -q 'missed\*\* (a run logged fewer lines' "$OUT/results.md"

run automigrate 0 env USERSVC_BIN="$TD/fake_usersvc_automigrate" BENCH_WORKLOADS=W1 "$HERE/run.sh" --no-ceilings
expect "automigrate: first start migrated" grep -q 'letting the first start migrate' "$OUT.automigrate.log"

run drain 0 env USERSVC_BIN="$TD/fake_usersvc_strict_drain" BENCH_WORKLOADS=W1 "$HERE/run.sh" --no-ceilings
expect "drain: refused 1ms, default 2s subtracted" jq_py 'r=R[0]; sys.exit(0 if r["drain_delay_ms"]==2000 and r["sigterm_net_ms"] < r["sigterm_to_exit_ms"] - 1999 else 1)'

run never-ready 1 env USERSVC_BIN=/bin/true BENCH_WORKLOADS=W1 "$HERE/run.sh" --no-ceilings
run no-tuning 1 env USERSVC_BIN="$TD/fake_usersvc.py" BENCH_AUTOGROUP=off BENCH_WORKLOADS=W1 "$HERE/run.sh" --no-ceilings
expect "no-tuning: BENCH_AUTOGROUP refused, scheduler untouched" grep -q 'BENCH_AUTOGROUP is no longer supported' "$OUT.no-tuning.log"

# Ctrl-C: SIGINT to the whole process group in the middle of a wrk run.
rc=0
timeout -k 10 120 python3 - "$HERE/run.sh" "$TD/fake_usersvc.py" >"$OUT.ctrl-c.log" 2>&1 <<'PY' || rc=$?
import os, signal, subprocess, sys, time
env = dict(os.environ, USERSVC_BIN=sys.argv[2], BENCH_WORKLOADS="W2", BENCH_DURATION="20")
p = subprocess.Popen([sys.argv[1], "--no-ceilings"], env=env, start_new_session=True,
                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
time.sleep(8)
os.killpg(p.pid, signal.SIGINT)
sys.exit(p.wait(timeout=60))
PY
if [ "$rc" = 130 ]; then ok "ctrl-c: exit status 130"; else bad "ctrl-c: exit status $rc (log $OUT.ctrl-c.log)"; fi
check_clean "ctrl-c"

echo
if [ $fails -eq 0 ]; then echo "selftest: all passed"; else echo "selftest: $fails failed"; exit 1; fi
