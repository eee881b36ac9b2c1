#!/usr/bin/env python3
"""Holds idle keep-alive connections open against a server (stdlib only).

  hold_conns.py --port P --count N --ready FILE [--path /healthz]

Opens N connections to 127.0.0.1:P, sends one `GET PATH` on each and reads
its answer (so that every connection has been served and is idle between
requests, as a keep-alive client leaves it), then writes FILE as JSON
({"held": n, "failed": k, "seconds": s}) and holds them, sending nothing,
until SIGTERM or SIGINT. Raises its own RLIMIT_NOFILE to what N needs.
"""
import argparse
import json
import os
import resource
import signal
import socket
import sys
import time


def recv_by(s, deadline):
    """One recv, waiting until `deadline` at most (b"" on timeout or close)."""
    left = deadline - time.monotonic()
    if left <= 0:
        return b""
    s.settimeout(left)
    try:
        return s.recv(4096)
    except OSError:
        return b""


def read_answer(s, deadline):
    """Reads one HTTP response with a Content-Length body; True if it was 2xx."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = recv_by(s, deadline)
        if not chunk:
            return False
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = recv_by(s, deadline)
        if not chunk:
            return False
        body += chunk
    return head.split(b" ", 2)[1].startswith(b"2")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--ready", required=True)
    p.add_argument("--path", default="/healthz")
    a = p.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = a.count + 64
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            sys.exit(f"hold_conns.py: RLIMIT_NOFILE hard limit {hard} < {need} (raise it: ulimit -Hn)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    started = time.monotonic()
    request = f"GET {a.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    held, failed = [], 0
    # In batches: connect and send a batch, then read its answers.
    batch = 500
    for first in range(0, a.count, batch):
        if stop:
            break
        opened = []
        for _ in range(first, min(first + batch, a.count)):
            try:
                s = socket.create_connection(("127.0.0.1", a.port), timeout=5)
                s.sendall(request)
                opened.append(s)
            except OSError:
                failed += 1
        deadline = time.monotonic() + 10
        for s in opened:
            if read_answer(s, deadline):
                held.append(s)
            else:
                failed += 1
                s.close()
    with open(a.ready + ".tmp", "w") as f:
        json.dump({"held": len(held), "failed": failed, "seconds": round(time.monotonic() - started, 2)}, f)
    os.rename(a.ready + ".tmp", a.ready)
    while not stop:
        signal.pause()
    for s in held:
        s.close()


if __name__ == "__main__":
    main()
