#!/usr/bin/env bash
# Makes sure `make release` can build the static binary: the Rust target
# x86_64-unknown-linux-musl (rustup) and musl-gcc (Debian's musl-tools, for
# ring's C and assembly). Idempotent and quiet when both are there.
set -euo pipefail

TARGET=x86_64-unknown-linux-musl
if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
  echo "==> rustup target add $TARGET" >&2
  rustup target add "$TARGET" >&2
fi

if ! command -v musl-gcc >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-release-toolchain: musl-gcc missing and not root; apt-get install musl-tools" >&2
    exit 1
  fi
  echo "==> apt-get install musl-tools" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends musl-tools >&2; then
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends musl-tools >&2
  fi
fi
command -v musl-gcc >/dev/null 2>&1 || { echo "ensure-release-toolchain: musl-gcc still missing" >&2; exit 1; }
