#!/usr/bin/env python3
"""TEST STAND-IN ONLY: a tiny stdlib HTTP server that impersonates usersvc's
command line and routes well enough to exercise scripts/bench/run.sh end to
end before the real service serves. Never used unless USERSVC_BIN points here.
It does not talk to PostgreSQL while serving (users live in memory); only
`migrate up` runs the project's migrations/*.up.sql through psql.

  fake_usersvc.py --help | migrate up | (serve, configured like usersvc by env)

Env: ADDR, ADMIN_ADDR, DATABASE_URL, LOG_LEVEL, DRAIN_DELAY (refused below
FAKE_MIN_DRAIN_MS, exit 2, like a strict config), FAKE_DELAY_MS (per request,
to make one side of an A/B run slower), FAKE_SHED_EVERY (every Nth user lookup
503), FAKE_STARTUP_MS, FAKE_AUTOMIGRATE=1
(no `migrate` subcommand; applies the schema at start, like MIGRATE_ON_START).
The wrappers next to it set these, since run.sh starts services with env -i.
"""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_duration(v):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", v or "")
    if not m:
        return None
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def addr(v, default):
    host, _, port = (v or default).rpartition(":")
    return (host or "0.0.0.0", int(port))


STATE = {"ready": False, "draining": False}
LOCK = threading.Lock()
USERS = {}            # id -> user
EMAILS = set()
NEXT_ID = [10001]     # the bench seeds ids 1..10000
DELAY = int(os.environ.get("FAKE_DELAY_MS", "0")) / 1000.0
STARTED = time.monotonic()
INFO = os.environ.get("LOG_LEVEL", "info") in ("info", "debug", "trace")
# FAKE_UNLOGGED_PROBES=1: /healthz writes no line (the selftest's service
# that would flatter W1-info).
UNLOGGED_PROBES = os.environ.get("FAKE_UNLOGGED_PROBES") == "1"
# FAKE_SHED_EVERY=N: every Nth user lookup is answered 503 at once, as a
# full queue is (the selftest's B that sheds: the A/B table must show it).
SHED_EVERY = int(os.environ.get("FAKE_SHED_EVERY", "0"))
LOOKUPS = [0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-usersvc"
    wbufsize = 65536                 # one write per response (flushed by the base class)
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def send(self, status, body, ctype="application/json"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        if INFO and not (UNLOGGED_PROBES and self.path == "/healthz"):
            sys.stdout.write(json.dumps({"level": "INFO", "msg": "request completed",
                                         "method": self.command, "path": self.path, "status": status}) + "\n")

    def do_GET(self):
        if DELAY:
            time.sleep(DELAY)
        if self.path == "/healthz":
            return self.send(200, "ok", "text/plain")
        if self.path == "/metrics":   # an outbox that drains within 0.3 s of start
            pending = max(0, int((STARTED + 0.3 - time.monotonic()) * 100))
            return self.send(200, f"# TYPE outbox_pending gauge\noutbox_pending {pending}\n", "text/plain")
        if self.path == "/readyz":
            if STATE["draining"]:
                return self.send(503, '{"status":"draining"}')
            if not STATE["ready"]:
                return self.send(503, '{"status":"starting"}')
            return self.send(200, '{"status":"ready","checks":{"database":"ok"}}')
        m = re.fullmatch(r"/api/v1/users/(\d+)", self.path)
        if m:
            uid = int(m.group(1))
            with LOCK:
                u = USERS.get(uid)
                LOOKUPS[0] += 1
                shed = SHED_EVERY and LOOKUPS[0] % SHED_EVERY == 0
            if shed:
                return self.send(503, '{"status":503}', "application/problem+json")
            if u is None and 1 <= uid <= 10000:
                u = {"id": uid, "name": f"Seed User {uid}", "email": f"seed-{uid}@example.com",
                     "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}
            if u is None:
                return self.send(404, '{"status":404}', "application/problem+json")
            return self.send(200, json.dumps(u))
        self.send(404, '{"status":404}', "application/problem+json")

    def do_POST(self):
        if DELAY:
            time.sleep(DELAY)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/api/v1/users":
            return self.send(404, '{"status":404}', "application/problem+json")
        if self.headers.get("Content-Type", "").split(";")[0] != "application/json":
            return self.send(415, '{"status":415}', "application/problem+json")
        try:
            req = json.loads(body)
            name, email = req["name"], req["email"]
        except (ValueError, KeyError, TypeError):
            return self.send(400, '{"status":400}', "application/problem+json")
        with LOCK:
            if email.lower() in EMAILS:
                return self.send(409, '{"status":409}', "application/problem+json")
            EMAILS.add(email.lower())
            uid = NEXT_ID[0]
            NEXT_ID[0] += 1
            u = {"id": uid, "name": name, "email": email,
                 "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}
            USERS[uid] = u
        self.send(201, json.dumps(u))


def migrate():
    url = os.environ.get("DATABASE_URL")
    if not url:
        print("DATABASE_URL: required", file=sys.stderr)
        return 2
    psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url]
    have = subprocess.run(psql + ["-tAc", "SELECT to_regclass('users') IS NOT NULL"],
                          capture_output=True, text=True)
    if have.returncode != 0:
        sys.stderr.write(have.stderr)
        return have.returncode
    if have.stdout.strip() == "t":
        return 0  # already migrated: like the real one, a second run changes nothing
    migrations = os.path.join(HERE, "..", "..", "..", "migrations")
    files = sorted(f for f in os.listdir(migrations) if f.endswith(".up.sql"))
    args = psql + ["-1"]
    for f in files:
        args += ["-f", os.path.join(migrations, f)]
    return subprocess.call(args)


def serve():
    errors = []
    drain = parse_duration(os.environ.get("DRAIN_DELAY", "2s"))
    if drain is None:
        errors.append(f"DRAIN_DELAY: {os.environ.get('DRAIN_DELAY')!r} is not a duration")
    elif drain * 1000 < int(os.environ.get("FAKE_MIN_DRAIN_MS", "0")):
        errors.append(f"DRAIN_DELAY: {os.environ['DRAIN_DELAY']!r} is below the minimum")
    if not os.environ.get("DATABASE_URL"):
        errors.append("DATABASE_URL: required")
    if errors:
        for e in errors:
            print(json.dumps({"level": "ERROR", "msg": "invalid configuration", "error": e}), flush=True)
        return 2
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 1024
    servers = [ThreadingHTTPServer(addr(os.environ.get("ADDR"), ":8080"), Handler)]
    if os.environ.get("ADMIN_ADDR", "") != "off":
        servers.append(ThreadingHTTPServer(addr(os.environ.get("ADMIN_ADDR"), "127.0.0.1:9090"), Handler))
    if os.environ.get("FAKE_AUTOMIGRATE") == "1" and migrate() != 0:   # like MIGRATE_ON_START
        return 1
    for s in servers:
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    time.sleep(int(os.environ.get("FAKE_STARTUP_MS", "0")) / 1000.0)
    STATE["ready"] = True
    stop = threading.Event()

    def on_signal(signum, _frame):
        if stop.is_set():
            os._exit(130)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop.wait(0.05):
        pass
    STATE["draining"] = True
    time.sleep(drain)
    for s in servers:
        s.shutdown()
        s.server_close()
    print(json.dumps({"level": "INFO", "msg": "shutdown complete"}), flush=True)
    return 0


def main():
    args = sys.argv[1:]
    no_cmd = os.environ.get("FAKE_AUTOMIGRATE") == "1"   # no subcommand: migrates on start
    if args[:1] in (["--help"], ["-h"]):
        print("fake usersvc (test stand-in)\n\nUSAGE: usersvc [flags]")
        if not no_cmd:
            print("       usersvc migrate up|down [N]|status")
        return 0
    if args[:2] == ["migrate", "up"] and not no_cmd:
        return migrate()
    if args:
        print(f"unsupported: {args}", file=sys.stderr)
        return 2
    return serve()


if __name__ == "__main__":
    sys.exit(main())
