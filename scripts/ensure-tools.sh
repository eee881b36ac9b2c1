#!/usr/bin/env bash
# Makes sure the command-line tools some tests call are installed:
#   promtool  (Debian package `prometheus`): `promtool check metrics` lints a
#             live /metrics scrape in tests/metrics_promtool.rs.
# Idempotent and quiet when everything is there; installs from Debian's
# packages otherwise (needs root, as `make test` has on the dev and CI
# machines). Exits non-zero if a tool is still missing afterwards.
set -euo pipefail

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-tools: missing packages ${missing[*]} and not root; install them with apt-get" >&2
  exit 1
fi

echo "==> installing ${missing[*]} (for promtool)" >&2
export DEBIAN_FRONTEND=noninteractive
# `--no-install-recommends`: only the binaries; the package's service is not
# started in a container without systemd, and we only need promtool.
if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; then
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

command -v promtool >/dev/null 2>&1 || {
  echo "ensure-tools: promtool still missing after installing ${missing[*]}" >&2
  exit 1
}
