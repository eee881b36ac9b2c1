#!/usr/bin/env bash
# image-root.sh BINARY DIR: assembles the container image's root filesystem
# in DIR (emptied first). Used by the Dockerfile and by `make image-root`,
# so the root tested here (tests/static_binary.rs) is the image's:
#   /usr/local/bin/usersvc              the static binary
#   /etc/ssl/certs/ca-certificates.crt  the CA bundle (TLS to PostgreSQL,
#                                       OTLP, webhooks)
#   /etc/passwd, /etc/group             user and group 65534 (nobody), so
#                                       tools show a name
#   /tmp                                empty, sticky (nothing uses it today)
# Nothing else: no shell, no libc, no /etc/hosts (Docker and Kubernetes
# mount one).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BINARY DIR" >&2; exit 2; }
bin=$1 root=$2
ca=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[ -x "$bin" ] || { echo "image-root: no executable at $bin (make release)" >&2; exit 1; }
[ -s "$ca" ] || { echo "image-root: no CA bundle at $ca (apt-get install ca-certificates)" >&2; exit 1; }
if file "$bin" 2>/dev/null | grep -q 'dynamically linked'; then
  echo "image-root: $bin is dynamically linked; the image needs the static build (make release)" >&2
  exit 1
fi
rm -rf "$root"
install -d -m 0755 "$root" "$root/usr/local/bin" "$root/etc/ssl/certs"
install -d -m 1777 "$root/tmp"
install -m 0755 "$bin" "$root/usr/local/bin/usersvc"
install -m 0644 "$ca" "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
chmod 0644 "$root/etc/passwd" "$root/etc/group"
echo "image root: $root ($(du -sh "$root" | cut -f1))"
