#!/usr/bin/env bash
# Refreshes deny/advisory-db.tar.gz, the RustSec advisory database snapshot
# `make lint` checks against offline (scripts/lint-deploy.sh). Needs access
# to the database's git repository; run it where that exists and commit the
# two files in deny/.
set -euo pipefail
cd "$(dirname "$0")/.."
url=${ADVISORY_DB_URL:-https://github.com/rustsec/advisory-db}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git clone -q --depth 1 "$url" "$tmp/db"
git -C "$tmp/db" archive --format=tar HEAD crates rust support.toml LICENSE.txt README.md |
  gzip -9n >deny/advisory-db.tar.gz
git -C "$tmp/db" log -1 --format='%H %cI' >deny/advisory-db.snapshot
echo "deny/advisory-db.tar.gz: $(cat deny/advisory-db.snapshot)"
