#!/usr/bin/env bash
# The packaging half of `make lint` (tools: scripts/ensure-tools.sh):
#   cargo deny check    licences, advisories, duplicate versions, sources (deny.toml)
#   hadolint            Dockerfile
#   kubernetes-validate --strict on deploy/k8s/*.yaml (schemas ship with the package: offline)
#   systemd-analyze verify on deploy/systemd/usersvc.{socket,service}
#
# Advisories: cargo-deny reads the RustSec database from a git checkout. This
# machine (and CI) reach crates.io, PyPI, Debian and npm only, not the
# database's git host, so the check runs against the snapshot committed in
# deny/advisory-db.tar.gz (commit and date in deny/advisory-db.snapshot).
# Where the host is reachable, `cargo deny fetch` refreshes it first and the
# fresh copy is used instead. Refresh the snapshot: scripts/update-advisory-db.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
step() { echo "==> $*" >&2; }

# ---- cargo deny ------------------------------------------------------------------
# cargo-deny reads `cargo metadata --offline`: every crate of the lock file,
# also those only other platforms build, must be in the local registry.
cargo fetch --quiet
DB_ROOT=target/advisory-dbs   # deny.toml db-path (relative to the repository root)
DB_DIR=$DB_ROOT/advisory-db-3157b0e258782691   # the directory name cargo-deny derives from the URL
read -r snap_commit snap_date <deny/advisory-db.snapshot
if [ "${DENY_ONLINE:-0}" = 1 ] && timeout 60 cargo deny --log-level error fetch db >/dev/null 2>&1; then
  step "cargo deny: advisory database fetched"
elif [ ! -f "$DB_DIR/.snapshot" ] || [ "$(cat "$DB_DIR/.snapshot")" != "$snap_commit" ]; then
  step "cargo deny: advisory database from the committed snapshot ($snap_commit, $snap_date)"
  rm -rf "$DB_DIR" && mkdir -p "$DB_DIR"
  tar -xzf deny/advisory-db.tar.gz -C "$DB_DIR"
  # cargo-deny reads the checkout's HEAD date to judge staleness: give the
  # commit the snapshot's date.
  (cd "$DB_DIR" && git init -q && git add -A &&
    GIT_AUTHOR_DATE=$snap_date GIT_COMMITTER_DATE=$snap_date \
      git -c user.name=snapshot -c user.email=snapshot@localhost commit -qm "advisory-db $snap_commit")
  echo "$snap_commit" >"$DB_DIR/.snapshot"
fi
[ "${DENY_ONLINE:-0}" = 1 ] || step "cargo deny: advisories as of $snap_date (offline snapshot)"
cargo deny --offline --log-level error check advisories bans licenses sources || status=1

# ---- Dockerfile ----------------------------------------------------------------------
step "hadolint Dockerfile"
hadolint Dockerfile || status=1

# ---- Kubernetes ------------------------------------------------------------------------
step "kubernetes-validate --strict deploy/k8s"
# kustomization.yaml is kustomize's own file, not an API object (tests/deploy_manifests.rs
# checks that it lists every manifest).
mapfile -t manifests < <(ls deploy/k8s/*.yaml | grep -v '/kustomization.yaml$')
kubernetes-validate --strict --quiet "${manifests[@]}" || status=1

# ---- systemd -------------------------------------------------------------------------------
step "systemd-analyze verify deploy/systemd"
# verify checks that ExecStart= exists: in a private mount namespace a
# placeholder stands at /usr/local/bin/usersvc (where README installs it).
unshare --mount sh -ec '
  mount -t tmpfs tmpfs /usr/local/bin
  cp /bin/true /usr/local/bin/usersvc
  systemd-analyze verify --man=no deploy/systemd/usersvc.socket deploy/systemd/usersvc.service
' || status=1

exit $status
