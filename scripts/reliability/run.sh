#!/usr/bin/env bash
# make test-reliability: builds the release binary, makes sure the test
# PostgreSQL is up, then runs every reliability scenario (run.py) against the
# binary, on loopback only, each bounded in time. Prints one PASS/FAIL line
# per check, writes RELIABILITY.md (a full run only), exits non-zero on any
# FAIL. The whole run is bounded by RELIABILITY_TIME_LIMIT (default 40 min).
#
# Knobs: SOAK_SECS (600), OVERLOAD_SECS (30), STORM_SECS (10), SLOW_SECS
# (10 per slowhttptest mode), ONLY=frozen_db,soak (a subset; prints the
# table instead of writing RELIABILITY.md), RELIABILITY_NOTE (a line added to
# the report, e.g. about a shared machine), BEFORE_BIN (a binary from before
# the fixes: the defect scenarios run against it too, reported apart and not
# counted), KEEP_LOGS=1 (keep the service logs). Scenarios: shutdown,
# queue_timeout, log_level, json_memory, input_rules, secret_redaction,
# frozen_db, db_stopped, kill_storm, overload,
# slowhttptest, http_abuse, tiny_http_hardening, schemathesis, promtool,
# rolling_restart, slow_readers, held_bodies, redis_stopped, outbox_restart,
# soak. Honours CARGO_TARGET_DIR (the binary is taken from there).
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/ensure-test-services.sh >/dev/null
# shellcheck disable=SC1091
source .dev/test.env
cargo build --release -q
cargo build --release -q --example open_loop
# The build has just written hundreds of MB: flush them now rather than
# during the first scenarios' measurements.
sync
target_dir=${CARGO_TARGET_DIR:-target}
export USERSVC_BIN=${USERSVC_BIN:-$target_dir/release/usersvc}
export OPEN_LOOP_BIN=${OPEN_LOOP_BIN:-$target_dir/release/examples/open_loop}
exec timeout "${RELIABILITY_TIME_LIMIT:-2400}" python3 scripts/reliability/run.py
