#!/usr/bin/env python3
"""HTTP/port probes for the load benchmark (stdlib only, 127.0.0.1 only).

  probe.py free-port
      prints a TCP port that was free on 127.0.0.1 a moment ago.
  probe.py wait-ready --port P [--path /readyz] [--interval 0.001] [--timeout 30]
                      [--pidfile F] [--started F]
      polls GET PATH every INTERVAL seconds until it answers 200, then prints
      the wall-clock time of that answer in microseconds since the epoch.
      Touches --started once it is polling (so the caller can spawn the
      service after it). Exits 3 when the pid in --pidfile has exited, 4 on
      timeout.
  probe.py get --port P --path /x [--method GET] [--body B] [--ctype T]
      one request; prints the status and body. Exit 0 on 2xx, else 1.
"""
import argparse
import os
import socket
import sys
import time

HOST = "127.0.0.1"


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    print(port)


def request(port, path, method="GET", body=b"", ctype=None, timeout=1.0):
    """Minimal HTTP/1.1 request on a fresh connection; returns (status, body)."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n"
        if ctype:
            head += f"Content-Type: {ctype}\r\n"
        if body or method in ("POST", "PUT", "PATCH"):
            head += f"Content-Length: {len(body)}\r\n"
        s.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data:
                # stop early once Content-Length bytes are in
                hdr, _, rest = data.partition(b"\r\n\r\n")
                for line in hdr.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length" and len(rest) >= int(v):
                        return int(hdr.split()[1]), rest[: int(v)]
    if not data:
        raise ConnectionError("empty response")
    hdr, _, rest = data.partition(b"\r\n\r\n")
    return int(hdr.split()[1]), rest


def pid_gone(pidfile):
    if not pidfile or not os.path.exists(pidfile):
        return False
    try:
        pid = int(open(pidfile).read().strip())
    except ValueError:
        return False
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("State:"):
                    return "Z" in line.split()[1]
    except FileNotFoundError:
        return True
    return False


def wait_ready(a):
    deadline = time.monotonic() + a.timeout
    if a.started:
        open(a.started, "w").close()
    polls = 0
    last = "no answer"
    while time.monotonic() < deadline:
        polls += 1
        try:
            status, body = request(a.port, a.path, timeout=1.0)
            if status == 200:
                print(time.time_ns() // 1000)
                print(f"ready after {polls} polls", file=sys.stderr)
                return 0
            last = f"{status} {body[:200]!r}"
        except (OSError, ValueError, IndexError) as e:
            last = str(e)
        if pid_gone(a.pidfile):
            print(f"the process exited before {a.path} answered 200 (last: {last})", file=sys.stderr)
            return 3
        time.sleep(a.interval)
    print(f"timed out after {a.timeout}s waiting for {a.path} (last: {last})", file=sys.stderr)
    return 4


def get(a):
    status, body = request(a.port, a.path, a.method, a.body.encode(), a.ctype, timeout=5.0)
    print(status)
    print(body.decode(errors="replace"))
    return 0 if 200 <= status < 300 else 1


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("free-port")
    w = sub.add_parser("wait-ready")
    w.add_argument("--port", type=int, required=True)
    w.add_argument("--path", default="/readyz")
    w.add_argument("--interval", type=float, default=0.001)
    w.add_argument("--timeout", type=float, default=30.0)
    w.add_argument("--pidfile")
    w.add_argument("--started")
    g = sub.add_parser("get")
    g.add_argument("--port", type=int, required=True)
    g.add_argument("--path", required=True)
    g.add_argument("--method", default="GET")
    g.add_argument("--body", default="")
    g.add_argument("--ctype")
    a = p.parse_args()
    if a.cmd == "free-port":
        free_port()
        return 0
    if a.cmd == "wait-ready":
        return wait_ready(a)
    return get(a)


if __name__ == "__main__":
    sys.exit(main())
