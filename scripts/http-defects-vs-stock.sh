#!/usr/bin/env bash
# Runs vendor/tiny_http/tests/hardening.rs against stock tiny_http 0.12.0 (crates.io) and against
# our vendored copy, each test in its own process with a time limit, and prints a table.
#
#   scripts/http-defects-vs-stock.sh            # markdown table on stdout
#   TEST_TIMEOUT=30 scripts/http-defects-vs-stock.sh
#
# Stock result: FAIL (assertion), HANG (killed after TEST_TIMEOUT s), CRASH (killed by a signal,
# or its child process was). Uses CARGO_TARGET_DIR (default /work/target-shared) for builds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TEST_FILE="$ROOT/vendor/tiny_http/tests/hardening.rs"
TEST_TIMEOUT="${TEST_TIMEOUT:-30}"
TARGET="${CARGO_TARGET_DIR:-/work/target-shared}"
OFFLINE="${CARGO_OFFLINE:---offline}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# --- the stock crate ---------------------------------------------------------------------------
mkdir -p "$work/stock/tests" "$work/stock/src"
cat >"$work/stock/Cargo.toml" <<'EOF'
[package]
name = "tiny-http-stock-check"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
tiny_http = "=0.12.0"

[dev-dependencies]
socket2 = { version = "0.6", features = ["all"] }

[lints.rust]
unexpected_cfgs = { level = "allow", check-cfg = ["cfg(stock_tiny_http)"] }

[workspace]
EOF
: >"$work/stock/src/lib.rs"
cp "$TEST_FILE" "$work/stock/tests/hardening.rs"

test_binary() { # cargo test --no-run output -> path of the hardening test executable
    sed -n 's/.*Executable tests\/hardening.rs (\(.*\))$/\1/p' | tail -n1
}

echo "building against stock tiny_http 0.12.0..." >&2
stock_bin="$(cd "$work/stock" &&
    RUSTFLAGS="--cfg stock_tiny_http" CARGO_TARGET_DIR="$TARGET/http-stock-check" \
        cargo test $OFFLINE --no-run --test hardening 2>&1 | tee "$work/stock-build.log" | test_binary)"
[ -x "$stock_bin" ] || { cat "$work/stock-build.log" >&2; exit 1; }

echo "building against vendor/tiny_http..." >&2
ours_bin="$(cd "$ROOT" && CARGO_TARGET_DIR="$TARGET" \
    cargo test $OFFLINE -p tiny_http --no-run --test hardening 2>&1 | tee "$work/ours-build.log" | test_binary)"
[ -x "$ours_bin" ] || { cat "$work/ours-build.log" >&2; exit 1; }

run_one() { # binary test -> PASS|FAIL|HANG|CRASH
    local out rc
    set +e
    out="$(cd "$work" && timeout -k 5 "$TEST_TIMEOUT" "$1" --exact "$2" --test-threads=1 2>&1)"
    rc=$?
    set -e
    if [ $rc -eq 0 ]; then echo PASS
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then echo HANG
    elif [ $rc -gt 128 ]; then echo "CRASH"
    elif grep -q "child process failed (signal" <<<"$out"; then echo "CRASH"
    elif grep -q "child process timed out" <<<"$out"; then echo "HANG"
    else echo FAIL
    fi
}

mapfile -t tests < <("$ours_bin" --list 2>/dev/null | sed -n 's/: test$//p')

echo "| test | stock 0.12.0 | ours |"
echo "|---|---|---|"
for t in "${tests[@]}"; do
    echo "running $t" >&2
    s="$(run_one "$stock_bin" "$t")"
    o="$(run_one "$ours_bin" "$t")"
    echo "| \`$t\` | $s | $o |"
done
