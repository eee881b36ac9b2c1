#!/usr/bin/env bash
# `make release`: the static x86_64 Linux binary users deploy, built as the
# Dockerfile builds it.
#
#   scripts/release/build.sh [CARGO BUILD ARGS...]     e.g. --features ...
#
# cargo's dist profile for x86_64-unknown-linux-musl (static, fat LTO, size-
# optimised), linked by scripts/release/link.sh with the code laid out in
# the order of scripts/release/text-order.txt; says how many of the functions
# listed there the link placed (a list made by another toolchain, or before
# a dependency update, places few of its names: `make text-order` renews it;
# the binary works either way, with more of its code resident); then strips
# the binary. `cargo build --profile dist --target x86_64-unknown-linux-musl`
# alone leaves it with its symbols.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TARGET=x86_64-unknown-linux-musl
DIST=${CARGO_TARGET_DIR:-$ROOT/target}/$TARGET/dist
BIN=$DIST/usersvc
DEPS=$DIST/deps

"$ROOT/scripts/ensure-release-toolchain.sh"
(cd "$ROOT" && "${CARGO:-cargo}" build --locked --profile dist --target "$TARGET" "$@")

# The newest link's report (cargo links only when something changed).
report=$(find "$DEPS" -maxdepth 1 -name 'usersvc-*.text-order' -printf '%T@ %p\n' 2>/dev/null |
  sort -n | tail -1 | cut -d' ' -f2-)
if [ -z "$report" ]; then
  echo "warning: no code-layout report from scripts/release/link.sh beside the binary" >&2
else
  read -r placed _ listed _ <"$report"
  echo "code layout: $(cat "$report")"
  if [ "$listed" -eq 0 ] || [ $((placed * 10)) -lt $((listed * 9)) ]; then
    echo "warning: fewer than 90% of the listed functions exist in this build; \`make text-order\` renews the list" >&2
  fi
fi
# Stripped into a new file (cargo's copy under deps/ keeps its symbols, for
# `make text-order`), then written in place by `install`, as users install
# it. Not `strip -o` alone: its way of writing leaves the file in the page
# cache in blocks that the kernel maps whole, and a process started from it
# mapped 1.5 MiB more of it (BENCHMARKS.md, "Code laid out by use").
strip --strip-all -o "$BIN.stripped" "$BIN"
rm -f "$BIN"
install -m 0755 "$BIN.stripped" "$BIN"
rm -f "$BIN.stripped"
