#!/usr/bin/env bash
# Throughput of a 2-byte GET with our hardened tiny_http against stock 0.12.0,
# measured in one run, alternating A/B so that machine noise hits both.
#
# Both servers are built from the SAME source (queue mode: N threads calling
# `server.recv()`, the only API both crates share); only the tiny_http
# dependency differs. A third server uses handler mode, the way usersvc does.
#
# Usage: scripts/http-throughput-vs-stock.sh [seconds-per-run] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
secs=${1:-5}
rounds=${2:-3}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

make_crate() { # NAME DEP MAIN
  mkdir -p "$work/$1/src"
  cat > "$work/$1/Cargo.toml" <<TOML
[package]
name = "$1"
version = "0.0.0"
edition = "2021"
[dependencies]
tiny_http = $2
[profile.release]
lto = "fat"
codegen-units = 1
[workspace]
TOML
  cp "$3" "$work/$1/src/main.rs"
}

cat > "$work/queue.rs" <<'RS'
use std::sync::Arc;
fn main() {
    let addr = std::env::args().nth(1).expect("addr");
    let server = Arc::new(tiny_http::Server::http(addr.as_str()).expect("bind"));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let s = Arc::clone(&server);
            std::thread::spawn(move || loop {
                if let Ok(rq) = s.recv() {
                    let _ = rq.respond(tiny_http::Response::from_string("ok"));
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}
RS
cat > "$work/handler.rs" <<'RS'
use std::sync::Arc;
fn main() {
    let addr = std::env::args().nth(1).expect("addr");
    let listener = std::net::TcpListener::bind(addr.as_str()).expect("bind");
    let _server = tiny_http::Server::from_listener(
        listener,
        tiny_http::Limits::default(),
        tiny_http::Dispatch::Handler(Arc::new(|rq: tiny_http::Request| {
            let _ = rq.respond(tiny_http::Response::from_string("ok"));
        })),
    )
    .expect("server");
    loop {
        std::thread::park();
    }
}
RS
make_crate stock '"=0.12.0"' "$work/queue.rs"
make_crate ours "{ path = \"$root/vendor/tiny_http\" }" "$work/queue.rs"
make_crate ours_handler "{ path = \"$root/vendor/tiny_http\" }" "$work/handler.rs"
for c in stock ours ours_handler; do
  echo "==> building $c" >&2
  (cd "$work/$c" && CARGO_TARGET_DIR="$work/target-$c" cargo build --release -q)
done

port=18431
start() { # NAME -> pid
  "$work/target-$1/release/$1" "127.0.0.1:$port" & pids+=($!)
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/" >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "server $1 did not start" >&2; return 1
}
run() { # NAME -> req/s
  start "$1"
  wrk -t2 -c64 -d1s "http://127.0.0.1:$port/" >/dev/null
  local rps
  rps=$(wrk -t2 -c64 -d"${secs}s" "http://127.0.0.1:$port/" | awk '/Requests\/sec/ {print $2}')
  kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
  echo "$rps"
}

declare -A total=([stock]=0 [ours]=0 [ours_handler]=0)
printf '%-6s %-14s %12s\n' round server req/s
for r in $(seq "$rounds"); do
  for c in stock ours ours_handler; do
    rps=$(run "$c")
    printf '%-6s %-14s %12s\n' "$r" "$c" "$rps"
    total[$c]=$(python3 -c "print(${total[$c]} + $rps)")
  done
done
python3 - "${total[stock]}" "${total[ours]}" "${total[ours_handler]}" <<'PY'
import sys
stock, ours, handler = map(float, sys.argv[1:])
print(f"ours (queue mode) / stock   = {ours / stock:.3f}")
print(f"ours (handler mode) / stock = {handler / stock:.3f}")
print("within 5% of stock:", "yes" if ours / stock >= 0.95 else "NO")
PY
