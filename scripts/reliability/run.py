#!/usr/bin/env python3
"""The reliability suite (issue 13): every fault, overload and abuse
scenario against the release binary, on loopback only, bounded in time.

One PASS/FAIL line per check with its figure; exit 1 on any FAIL; the table
is written to RELIABILITY.md with the date, machine and commit.

Called by scripts/reliability/run.sh (which builds the binary and makes sure
PostgreSQL is up). Knobs (environment): SOAK_SECS (default 600),
OVERLOAD_SECS (30), STORM_SECS (10), SLOW_SECS (10, per slowhttptest mode),
ONLY (comma-separated scenario names, as in SCENARIOS at the end), KEEP_LOGS
(keep each service log file and print its path, for a failure's request ids),
RELIABILITY_COMMIT (the commit of a tree run outside git, e.g. a `git
archive` of it).

The connection layer's (issue 12), Redis's and the outbox's (issue 15)
scenarios: rolling_restart, slow_readers, held_bodies, redis_stopped (a
redis-server of the suite's own on a free port), outbox_restart (a webhook
receiver in this process on a free port).
"""
import concurrent.futures as cf
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ["USERSVC_BIN"]
# The overload scenario's driver (examples/open_loop.rs), built by run.sh.
OPEN_LOOP = os.environ["OPEN_LOOP_BIN"]
# The binary the scenarios run against right now (BEFORE_BIN for the
# "as it failed before" pass).
CURRENT = {"bin": BIN}
# The defects of issue 13, each re-run against BEFORE_BIN when it is given.
DEFECTS = ["shutdown", "queue_timeout", "log_level", "json_memory", "input_rules", "secret_redaction",
           "frozen_db", "kill_storm"]
ADMIN_URL = os.environ.get("USERSVC_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
PG_BIN = os.environ.get("USERSVC_PG_BIN", "/usr/lib/postgresql/15/bin")
RESULTS = []


BEFORE = []


def check(scenario, name, ok, figure):
    if CURRENT["bin"] != BIN:
        BEFORE.append((scenario, name, "PASS" if ok else "FAIL", figure))
        print(f"BEFORE {'PASS' if ok else 'FAIL'}  {scenario:<14} {name:<48} {figure}", flush=True)
        return
    RESULTS.append((scenario, name, "PASS" if ok else "FAIL", figure))
    print(f"{'PASS' if ok else 'FAIL'}  {scenario:<14} {name:<48} {figure}", flush=True)


def psql(url, sql):
    out = subprocess.run(["psql", "-X", "-qAt", url, "-c", sql], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return out.stdout.strip()


def with_db(url, name):
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


class TempDb:
    def __init__(self):
        self.name = "usersvc_rel_" + uuid.uuid4().hex[:12]
        psql(ADMIN_URL, f"CREATE DATABASE {self.name}")
        self.url = with_db(ADMIN_URL, self.name)

    def drop(self):
        psql(ADMIN_URL, f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Cluster:
    """A throwaway PostgreSQL the scenario may stop, freeze and kill."""

    def __init__(self, cpus=None):
        self.cpus = cpus  # the postmaster (and so every backend) pinned to these CPUs
        self.dir = tempfile.mkdtemp(prefix="usersvc-rel-pg-")
        self.data = os.path.join(self.dir, "data")
        os.makedirs(self.data)
        os.makedirs(os.path.join(self.dir, "sock"))
        shutil.chown(self.dir, "postgres", "postgres")
        shutil.chown(self.data, "postgres", "postgres")
        shutil.chown(os.path.join(self.dir, "sock"), "postgres", "postgres")
        os.chmod(self.data, 0o700)
        self.pg("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        self.port = free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"
        self.start()

    def pg(self, prog, *args):
        pin = ["taskset", "-c", self.cpus] if self.cpus and prog == "pg_ctl" else []
        prog_path = [*pin, os.path.join(PG_BIN, prog)]
        cmd = ["runuser", "-u", "postgres", "--", *prog_path, *args] if os.geteuid() == 0 else [*prog_path, *args]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"{prog}: {out.stdout}{out.stderr}")

    def start(self):
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.dir}/sock -c fsync=off"
        self.pg("pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "log"), "-o", opts, "-w", "start")

    def stop(self, mode="immediate"):
        self.pg("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def pids(self):
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            pm = f.readline().strip()
        pids = [pm]
        for p in os.listdir("/proc"):
            if p.isdigit():
                try:
                    stat = open(f"/proc/{p}/stat").read()
                except OSError:
                    continue
                if stat.rsplit(") ", 1)[-1].split()[1] == pm:
                    pids.append(p)
        return pids

    def signal(self, sig):
        # The postmaster first (pids() lists it first), then its children,
        # again until no new child appears: a backend forked meanwhile is
        # caught too.
        done = set()
        while True:
            fresh = [p for p in self.pids() if p not in done]
            if not fresh:
                return
            for p in fresh:
                try:
                    os.kill(int(p), sig)
                except ProcessLookupError:
                    pass
            done.update(fresh)

    def destroy(self):
        try:
            self.signal(signal.SIGCONT)
            self.stop()
        except Exception:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class Svc:
    def __init__(self, db_url, cpus=None, **env):
        full = {"PATH": os.environ.get("PATH", ""), "ADDR": "127.0.0.1:0", "ADMIN_ADDR": "127.0.0.1:0",
                "LOG_FORMAT": "json", "DATABASE_URL": db_url, "DRAIN_DELAY": "200ms", "SHUTDOWN_TIMEOUT": "5s"}
        full.update({k: str(v) for k, v in env.items()})
        # The service's log goes to a file, as it would to a log shipper: a
        # reader in this process would compete with the load driver.
        self.log = tempfile.NamedTemporaryFile(prefix="usersvc-rel-", suffix=".log", delete=False)
        # cpus: pinned to those CPUs (taskset), away from the load driver
        pin = ["taskset", "-c", cpus] if cpus else []
        self.proc = subprocess.Popen([*pin, CURRENT["bin"]], env=full, stdout=self.log, stderr=subprocess.STDOUT)
        listening = self.wait_log(lambda v: v.get("msg") == "listening", 20)
        self.addr = listening["addr"]
        self.admin = listening["admin_addr"]
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if request(self.addr, "GET", "/readyz", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("not ready:\n" + "\n".join(self.lines()[-20:]))

    def lines(self):
        with open(self.log.name, errors="replace") as f:
            return f.read().splitlines()

    def logs(self):
        out = []
        for l in self.lines():
            try:
                out.append(json.loads(l))
            except ValueError:
                pass
        return out

    def wait_log(self, pred, timeout):
        deadline = time.time() + timeout
        while True:
            for v in self.logs():
                if pred(v):
                    return v
            if time.time() >= deadline:
                raise RuntimeError("log line not seen:\n" + "\n".join(self.lines()[-20:]))
            time.sleep(0.02)

    def metric(self, name):
        text = request(self.admin, "GET", "/metrics")[1].decode()
        for l in text.splitlines():
            if l.startswith(name + " "):
                return float(l.split()[1])
        return 0.0

    def busy_workers(self, settle=1.0):
        """Busy workers, once they have had `settle` s to go idle (a worker
        marks itself idle just after its client has the answer)."""
        deadline = time.time() + settle
        while True:
            v = json.loads(request(self.admin, "GET", "/debug/workers")[1])
            busy = sum(1 for w in v["workers"] if w.get("state") == "busy")
            if busy == 0 or time.time() >= deadline:
                return busy
            time.sleep(0.05)

    def status(self, key):
        """A number from /proc/PID/status (`VmRSS:` and `VmHWM:` in KiB)."""
        st = open(f"/proc/{self.proc.pid}/status").read()
        return int(next(l.split()[1] for l in st.splitlines() if l.startswith(key)))

    def proc_stat(self):
        return self.status("VmRSS:") * 1024, len(os.listdir(f"/proc/{self.proc.pid}/fd")), self.status("Threads:")

    def peak_rss(self):
        return self.status("VmHWM:") * 1024

    def stop(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            if os.environ.get("KEEP_LOGS"):
                print(f"# service log kept: {self.log.name}", flush=True)
            else:
                os.unlink(self.log.name)


def request(addr, method, path, body=None, timeout=10, conn=None):
    host, port = addr.rsplit(":", 1)
    c = conn or http.client.HTTPConnection(host, int(port), timeout=timeout)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    if conn is None:
        c.close()
    return r.status, data, dict(r.getheaders())


class Ledger:
    """Per-request ids (emails) and what their clients were told."""

    def __init__(self, scenario):
        self.prefix = f"rel-{scenario}-{uuid.uuid4().hex[:6]}-"
        self.n = 0
        self.told = {}
        self.lock = threading.Lock()

    def create(self, addr, conn=None, timeout=10):
        with self.lock:
            self.n += 1
            email = f"{self.prefix}{self.n}@example.com"
        t = time.time()
        try:
            status = request(addr, "POST", "/api/v1/users", json.dumps({"name": "R", "email": email}), timeout, conn)[0]
        except (OSError, http.client.HTTPException):
            status = None
        with self.lock:
            self.told[email] = status
        return status, time.time() - t

    def integrity(self, scenario, db_url):
        rows = set(psql(db_url, f"SELECT email FROM users WHERE email LIKE '{self.prefix}%'").split())
        ok2xx = {e for e, s in self.told.items() if s is not None and 200 <= s < 300}
        missing = ok2xx - rows
        unknown = {e for e, s in self.told.items() if s is None or s >= 300} & rows
        told = sorted({str(self.told[e]) for e in unknown})
        check(scenario, "integrity: every 2xx stored, no error/unanswered stored",
              not missing and not unknown,
              f"{len(self.told)} requests, {len(ok2xx)} 2xx, {len(missing)} 2xx missing, {len(unknown)} error/unanswered stored"
              + (f" (told {'/'.join(told)}: {', '.join(sorted(unknown)[:2])})" if unknown else ""))


def pct(values, p):
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


# ---------------------------------------------------------------- scenarios

def s_shutdown():
    db = TempDb()
    svc = Svc(db.url, WORKERS=1, SHUTDOWN_TIMEOUT="1s", QUEUE_TIMEOUT="30s")
    lock = subprocess.Popen(["psql", "-X", "-q", db.url], stdin=subprocess.PIPE, text=True)
    lock.stdin.write("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE;\n")
    lock.stdin.flush()
    time.sleep(0.5)
    led = Ledger("shutdown")
    pool = cf.ThreadPoolExecutor(5)
    futs = [pool.submit(led.create, svc.addr, None, 15)]
    time.sleep(0.3)
    futs += [pool.submit(led.create, svc.addr, None, 15) for _ in range(4)]
    deadline = time.time() + 5
    while svc.metric("http_queue_depth") < 4 and time.time() < deadline:
        time.sleep(0.05)
    svc.proc.send_signal(signal.SIGTERM)
    svc.wait_log(lambda v: v.get("msg", "").startswith("shutdown timeout reached"), 10)
    lock.stdin.write("ROLLBACK;\n")
    lock.stdin.close()
    code = svc.proc.wait(15)
    lock.wait(10)
    [f.result() for f in futs]
    dropped = sum(1 for v in svc.logs() if v.get("level") == "ERROR" and "dropped without running" in v.get("msg", ""))
    check("shutdown", "exit status says forced (3)", code == 3, f"exit {code}")
    check("shutdown", "queued jobs dropped unexecuted, logged at ERROR", dropped == 4, f"{dropped} of 4")
    stored = int(psql(db.url, f"SELECT count(*) FROM users WHERE email LIKE '{led.prefix}%'"))
    check("shutdown", "nothing written for clients told nothing", stored == 0, f"{stored} rows of 5 unanswered")
    led.integrity("shutdown", db.url)
    svc.stop()
    db.drop()


def s_queue_timeout():
    db = TempDb()
    svc = Svc(db.url, WORKERS=1, QUEUE_TIMEOUT="300ms")
    lock = subprocess.Popen(["psql", "-X", "-q", db.url], stdin=subprocess.PIPE, text=True)
    lock.stdin.write("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE;\n")
    lock.stdin.flush()
    time.sleep(0.5)
    led = Ledger("queue")
    pool = cf.ThreadPoolExecutor(5)
    first = pool.submit(led.create, svc.addr)
    time.sleep(0.3)
    late = [pool.submit(led.create, svc.addr) for _ in range(3)]
    time.sleep(0.6)
    lock.stdin.write("ROLLBACK;\n")
    lock.stdin.close()
    lock.wait(10)
    statuses = [f.result()[0] for f in late]
    check("queue_timeout", "queued past QUEUE_TIMEOUT: 503, not run", statuses == [503] * 3 and first.result()[0] == 201,
          f"first {first.result()[0]}, queued {statuses}")
    check("queue_timeout", "counted", svc.metric("http_requests_queue_expired_total") == 3,
          f"http_requests_queue_expired_total {svc.metric('http_requests_queue_expired_total'):.0f}")
    led.integrity("queue_timeout", db.url)
    svc.stop()
    db.drop()


def s_log_level():
    db = TempDb()
    svc = Svc(db.url)
    host, port = svc.admin.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    request(svc.admin, "PUT", "/debug/log-level?level=debug&for=1h", conn=conn)
    before = svc.proc_stat()
    for _ in range(2000):
        request(svc.admin, "PUT", "/debug/log-level?level=debug&for=1h", conn=conn)
    after = svc.proc_stat()
    check("log_level", "2,000 PUT for=1h: thread count flat", after[2] - before[2] <= 1,
          f"threads {before[2]} -> {after[2]}, RSS {before[0] >> 20} -> {after[0] >> 20} MiB")
    st = request(svc.admin, "PUT", "/debug/log-level?level=debug&for=5124095576h", conn=conn)[0]
    check("log_level", "absurd `for` refused", st == 400, f"status {st}")
    svc.stop()
    db.drop()


def s_json_memory():
    """50 concurrent creates, each a 1 MiB body whose unknown member is
    `"x":[[],[],...]`: the service must not build what it skips. Before the
    fix the body went through a `serde_json::Value` (500-700 MiB peak)."""
    db = TempDb()
    budget = 32 << 20  # MAX_BODY_BUFFER's default
    svc = Svc(db.url, WORKERS=4, MAX_BODY_BUFFER=budget)
    led = Ledger("json")
    base = svc.peak_rss()
    filler = ",".join(["[]"] * 340_000)  # ~1 MB of empty arrays

    def one(i):
        email = f"{led.prefix}{i}@example.com"
        body = json.dumps({"name": "R", "email": email})[:-1] + ', "x": [' + filler + "]}"
        try:
            status = request(svc.addr, "POST", "/api/v1/users", body, timeout=60)[0]
        except (OSError, http.client.HTTPException):
            status = None
        with led.lock:
            led.told[email] = status
        return status

    with cf.ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(one, range(50)))
    peak = svc.peak_rss() - base
    counts = {s: statuses.count(s) for s in sorted(set(statuses), key=str)}
    check("json_memory", "50 x 1 MiB of unknown nested arrays: answered 201 or 503", set(statuses) <= {201, 503},
          f"statuses {counts}")
    check("json_memory", "peak RSS growth <= 2 x MAX_BODY_BUFFER", peak <= 2 * budget,
          f"+{peak / 2**20:.0f} MiB (budget {budget >> 20} MiB)")
    led.integrity("json_memory", db.url)
    svc.stop()
    db.drop()


def s_input_rules():
    """What the API refuses (422, 400, 409), on create and patch, and that a
    refused request changes nothing."""
    db = TempDb()
    svc = Svc(db.url)
    led = Ledger("input")
    p = led.prefix

    def create(body):
        status, data, _ = request(svc.addr, "POST", "/api/v1/users", body)
        return status, data

    refused = {
        "duplicate key": ('{"name":"R","email":"bad","email":"%sdup@x.io"}' % p, {400, 422}, f"{p}dup@x.io"),
        "name of U+200B only": (json.dumps({"name": "\u200b", "email": f"{p}zw@x.io"}), {422}, f"{p}zw@x.io"),
        "name with U+202E": (json.dumps({"name": "a\u202eb", "email": f"{p}bidi@x.io"}), {422}, f"{p}bidi@x.io"),
        "name with U+2028": (json.dumps({"name": "a\u2028b", "email": f"{p}ls@x.io"}), {422}, f"{p}ls@x.io"),
    }
    for what, (body, want, email) in refused.items():
        status, _ = create(body)
        stored = psql(db.url, f"SELECT count(*) FROM users WHERE email = '{email}'").strip()
        check("input_rules", f"create, {what}: refused, nothing stored", status in want and stored == "0",
              f"status {status}, rows {stored}")
    first, data = create(json.dumps({"name": "R", "email": f"{p}u@b\u00fccher.de"}))
    again, _ = create(json.dumps({"name": "R", "email": f"{p}u@xn--bcher-kva.de"}))
    rows = psql(db.url, f"SELECT count(*) FROM users WHERE email LIKE '{p}u@%'").strip()
    check("input_rules", "the same mailbox in IDNA form: 409", first == 201 and again == 409 and rows == "1",
          f"statuses {first}, {again}; rows {rows}")
    if first == 201:
        uid = json.loads(data)["id"]
        before = psql(db.url, f"SELECT name FROM users WHERE id = {uid}").strip()
        status = request(svc.addr, "PATCH", f"/api/v1/users/{uid}", json.dumps({"name": "\u200b\u200b"}))[0]
        after = psql(db.url, f"SELECT name FROM users WHERE id = {uid}").strip()
        check("input_rules", "patch to an invisible name: 422, unchanged", status == 422 and before == after,
              f"status {status}, name {before!r} -> {after!r}")
    svc.stop()
    db.drop()


def s_secret_redaction():
    """`--print-config` with passwords DATABASE_URL parsers trip on: no
    piece of the password may print."""
    at, odd = "S3cr3t@Pwxyz", "S3cr3t@Pw#x/y?z"  # an unencoded `@`; and `#`, `/`, `?` besides
    cases = [
        (at, f"postgres://alice:{at}@db.example:5432/app"),
        (at, f"postgresql://alice:{at}@db.example/app?sslmode=require"),
        (odd, f"postgres://alice:{odd}@db.example:5432/app"),
        (odd, f"host=db.example user=alice password={odd} dbname=app"),
        (at, f"postgres://alice:{at}@/app"),
        (at, f"postgres://:{at}@@db.example/app"),
    ]
    leaks = []
    for password, url in cases:
        pieces = {password[i:i + 4] for i in range(len(password) - 3)}
        out = subprocess.run([CURRENT["bin"], "--print-config"], env={"PATH": os.environ.get("PATH", ""), "DATABASE_URL": url},
                             capture_output=True, text=True, timeout=10)
        text = out.stdout + out.stderr
        found = sorted(x for x in pieces if x in text)
        if found:
            leaks.append(f"{url.replace(password, '<pw>')} printed {found[0]!r}")
    check("secret_redaction", f"--print-config with {len(cases)} malformed URLs: no 4 bytes of the password",
          not leaks, "; ".join(leaks[:2]) if leaks else f"{len(cases)} URLs, nothing of the password printed")


def s_frozen():
    cl = Cluster()
    try:
        svc = Svc(cl.url, WORKERS=2, MAX_CONNECTIONS=2, DB_ACQUIRE_TIMEOUT="1s", DB_STATEMENT_TIMEOUT="2s", QUEUE_TIMEOUT="1s")
        led = Ledger("frozen")
        st, _ = led.create(svc.addr)
        cl.signal(signal.SIGSTOP)
        pool = cf.ThreadPoolExecutor(6)
        # One request per worker: each must get its 503 within the bound.
        res = list(pool.map(lambda _: led.create(svc.addr, None, 15), range(2)))
        worst = max(t for _, t in res)
        check("frozen_db", "503 within ACQUIRE+STATEMENT+1s (4 s) per request", all(s == 503 for s, _ in res) and worst <= 4.0,
              f"statuses {[s for s, _ in res]}, slowest {worst:.2f} s")
        # More than the workers: the queued ones expire (QUEUE_TIMEOUT 1 s).
        res = list(pool.map(lambda _: led.create(svc.addr, None, 15), range(6)))
        worst = max(t for _, t in res)
        check("frozen_db", "6 requests on 2 workers: all 503, bounded", all(s == 503 for s, _ in res) and worst <= 5.0,
              f"statuses {[s for s, _ in res]}, slowest {worst:.2f} s")
        busy = svc.busy_workers(settle=0.2)
        cl.signal(signal.SIGCONT)
        t0 = time.time()
        check("frozen_db", "no stuck worker while frozen", busy == 0, f"{busy} busy")
        rec = None
        while time.time() - t0 < 5:
            if led.create(svc.addr, None, 2)[0] == 201:
                rec = time.time() - t0
                break
            time.sleep(0.05)
        check("frozen_db", "full service within 2 s of SIGCONT", rec is not None and rec <= 2, f"{rec if rec is None else round(rec, 2)} s")
        svc.stop()
        led.integrity("frozen_db", cl.url)
    finally:
        cl.destroy()


def s_stopped():
    cl = Cluster()
    try:
        svc = Svc(cl.url, WORKERS=2, MAX_CONNECTIONS=2, DB_ACQUIRE_TIMEOUT="1s", DB_STATEMENT_TIMEOUT="2s")
        led = Ledger("stopped")
        led.create(svc.addr)
        cl.stop()
        res = [led.create(svc.addr, None, 30) for _ in range(4)]
        worst = max(t for _, t in res)
        check("db_stopped", "bounded 503s while stopped", all(s == 503 for s, _ in res) and worst <= 4.0,
              f"statuses {[s for s, _ in res]}, slowest {worst:.2f} s")
        cl.start()
        t0 = time.time()
        rec = None
        while time.time() - t0 < 10:
            if led.create(svc.addr, None, 3)[0] == 201:
                rec = time.time() - t0
                break
            time.sleep(0.1)
        check("db_stopped", "full service after restart, no service restart", rec is not None and rec <= 3,
              f"{rec if rec is None else round(rec, 2)} s after pg_ctl start returned")
        busy = svc.busy_workers()
        check("db_stopped", "no stuck worker", busy == 0, f"{busy} busy")
        svc.stop()
        led.integrity("db_stopped", cl.url)
    finally:
        cl.destroy()


def load(addr, led, stop, threads, lat, kind="create"):
    def run():
        host, port = addr.rsplit(":", 1)
        while not stop.is_set():
            st, t = led.create(addr, None, 10)
            lat.append((st, t))
    ts = [threading.Thread(target=run) for _ in range(threads)]
    [t.start() for t in ts]
    return ts


def s_storm():
    cl = Cluster()
    secs = float(os.environ.get("STORM_SECS", "10"))
    try:
        svc = Svc(cl.url, WORKERS=4, MAX_CONNECTIONS=4, DB_ACQUIRE_TIMEOUT="1s", DB_STATEMENT_TIMEOUT="2s")
        led = Ledger("storm")
        stop = threading.Event()
        lat = []
        ts = load(svc.addr, led, stop, 8, lat)
        t0 = time.time()
        kills = 0
        while time.time() - t0 < secs:
            out = psql(cl.url, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'usersvc'")
            kills += int(out or 0)
            time.sleep(0.1)
        stop.set()
        [t.join() for t in ts]
        worst = max((t for _, t in lat), default=0)
        errs = sum(1 for s, _ in lat if s != 201)
        check("kill_storm", "bounded answers during the storm", worst <= 4.0,
              f"{len(lat)} requests, {errs} non-201, {kills} backends killed, slowest {worst:.2f} s")
        ok = [led.create(svc.addr)[0] for _ in range(20)]
        busy = svc.busy_workers()
        check("kill_storm", "full service after, no stuck worker", ok == [201] * 20 and busy == 0,
              f"{ok.count(201)}/20 201, {busy} busy")
        svc.stop()
        led.integrity("kill_storm", cl.url)
    finally:
        cl.destroy()


class KeepAlive:
    """One keep-alive connection, reopened when the server closes it."""

    def __init__(self, addr):
        self.host, port = addr.rsplit(":", 1)
        self.port = int(port)
        self.conn = None

    def create(self, led):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        with led.lock:
            led.n += 1
            email = f"{led.prefix}{led.n}@example.com"
        t = time.time()
        try:
            self.conn.request("POST", "/api/v1/users", body=json.dumps({"name": "R", "email": email}),
                              headers={"Content-Type": "application/json"})
            r = self.conn.getresponse()
            r.read()
            status = r.status
            if r.getheader("Connection", "").lower() == "close":
                self.conn.close()
                self.conn = None
        except (OSError, http.client.HTTPException):
            status = None
            self.conn.close()
            self.conn = None
        with led.lock:
            led.told[email] = status
        return status, time.time() - t


def s_overload():
    # The system under test (the service and a PostgreSQL of its own) gets
    # CPU 0 and the load driver CPU 1, for the capacity and the 3x phase
    # alike: offering 3x the capacity costs the driver CPU of its own, which
    # it would otherwise take from what it measures. The driver is compiled
    # (examples/open_loop.rs): the suite's Python driver, one core under the
    # GIL, could offer only ~1.3x once the service got faster.
    cpus = os.cpu_count() or 1
    svc_cpu, driver_cpu = ("0", {1}) if cpus >= 2 else (None, None)
    cl = Cluster(cpus=svc_cpu)
    all_cpus = os.sched_getaffinity(0)
    if driver_cpu:
        os.sched_setaffinity(0, driver_cpu)  # threads started below inherit it
    try:
        overload_pinned(cl, svc_cpu, driver_cpu)
    finally:
        os.sched_setaffinity(0, all_cpus)
        cl.destroy()


def drive(addr, led, rate, secs, conns, tag, spin=False):
    """Runs the open-loop driver (examples/open_loop.rs): `rate` creates/s for
    `secs` over `conns` keep-alive connections; records what each request was
    told in `led`; returns [(status or None, seconds)] and the elapsed time.
    `spin`: the driver never sleeps (it has a core of its own), so the
    service's core does not pay for waking it with every answer."""
    t0 = time.time()
    out = subprocess.run([OPEN_LOOP, "--addr", addr, "--rate", str(rate), "--secs", str(secs),
                          "--conns", str(conns), "--prefix", f"{led.prefix}{tag}-"] + (["--spin"] if spin else []),
                         capture_output=True, text=True, timeout=secs + 60)
    elapsed = time.time() - t0 - 0.2
    if out.returncode != 0:
        raise RuntimeError(f"open_loop exit {out.returncode}: {out.stderr.strip()}")
    res = []
    with led.lock:
        for line in out.stdout.splitlines():
            email, status, lat_us, _late = line.split(",")
            st = int(status) or None
            led.told[email] = st
            res.append((st, int(lat_us) / 1e6))
    return res, elapsed


def overload_pinned(db, svc_cpu, driver_cpu):
    secs = float(os.environ.get("OVERLOAD_SECS", "30"))
    svc = Svc(db.url, cpus=svc_cpu, WORKERS=4, MAX_CONNECTIONS=4, QUEUE_TIMEOUT="1s")
    led = Ledger("overload")
    # Capacity: closed loop (the driver always behind its schedule), 8
    # keep-alive clients (2 x WORKERS), 5 s, after 3 s of the same to warm
    # up (the pool's connections, PostgreSQL's caches and the new table).
    spin = driver_cpu is not None
    drive(svc.addr, led, 1_000_000, 3, 8, "warm", spin)
    lat, _ = drive(svc.addr, led, 1_000_000, 5, 8, "cap", spin)
    cap = sum(1 for s, _ in lat if s == 201) / 5
    handler_p99 = pct([t for s, t in lat if s == 201], 99)
    # 3 x capacity, open loop, while a prober checks /healthz every 100 ms.
    probes, stop = [], threading.Event()

    def probe():
        while not stop.is_set():
            t = time.time()
            try:
                request(svc.addr, "GET", "/healthz", timeout=2)
                probes.append(time.time() - t)
            except OSError:
                probes.append(2.0)
            time.sleep(0.1)
    pt = threading.Thread(target=probe)
    pt.start()
    res, elapsed = drive(svc.addr, led, round(3 * cap), secs, 128, "3x", spin)
    stop.set()
    pt.join()
    sent = len(res) / elapsed
    good = sum(1 for s, _ in res if s == 201) / elapsed
    p99 = pct([t for s, t in res if s == 201], 99)
    shed = sum(1 for s, _ in res if s == 503)
    check("overload", "goodput >= 90% of capacity at 3x offered", good >= 0.9 * cap,
          f"{good:.0f}/s vs capacity {cap:.0f}/s; offered {sent:.0f}/s (target {3 * cap:.0f}), {shed} 503"
          + (f"; service + its PostgreSQL on CPU {svc_cpu}, driver on CPU {min(driver_cpu)}" if svc_cpu else ""))
    check("overload", "p99 of 2xx <= QUEUE_TIMEOUT + handler p99", p99 <= 1.0 + handler_p99,
          f"p99 {p99 * 1000:.0f} ms (handler p99 at capacity {handler_p99 * 1000:.0f} ms)")
    check("overload", "probes < 100 ms", pct(probes, 100) < 0.1,
          f"max {pct(probes, 100) * 1000:.0f} ms, p99 {pct(probes, 99) * 1000:.0f} ms over {len(probes)}")
    t1 = time.time()
    st = led.create(svc.addr)[0]
    rec = time.time() - t1
    check("overload", "recovery within 1 s", st == 201 and rec <= 1.0, f"{st} in {rec * 1000:.0f} ms")
    svc.stop()
    led.integrity("overload", db.url)


def slope(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs) or 1
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den


def s_soak():
    db = TempDb()
    secs = float(os.environ.get("SOAK_SECS", "600"))
    svc = Svc(db.url, WORKERS=4, MAX_CONNECTIONS=4)
    led = Ledger("soak")
    stop, lat = threading.Event(), []
    ts = load(svc.addr, led, stop, 3, lat)

    def reader():
        while not stop.is_set():
            try:
                request(svc.addr, "GET", "/api/v1/users?limit=20")
            except OSError:
                pass
    rt = threading.Thread(target=reader)
    rt.start()
    samples = []
    t0 = time.time()
    time.sleep(min(10, secs / 5))  # warm-up, not sampled
    while time.time() - t0 < secs:
        samples.append((time.time() - t0, *svc.proc_stat()))
        time.sleep(2)
    stop.set()
    [t.join() for t in ts]
    rt.join()
    xs = [s[0] / 60 for s in samples]
    rss = slope(xs, [s[1] / 2 ** 20 for s in samples])
    fds = slope(xs, [s[2] for s in samples])
    thr = slope(xs, [s[3] for s in samples])
    check("soak", f"RSS flat over {secs:.0f} s (slope < 1 MiB/min)", rss < 1.0, f"{rss:+.3f} MiB/min, {len(lat)} writes")
    check("soak", "fds flat (slope < 1/min)", abs(fds) < 1.0, f"{fds:+.3f} fd/min")
    check("soak", "threads flat (slope < 1/min)", abs(thr) < 1.0, f"{thr:+.3f} threads/min")
    svc.stop()
    led.integrity("soak", db.url)
    db.drop()


# ------------------------------------ connection layer, Redis, outbox scenarios

def s_rolling():
    """Issue 12: three rolling restarts on one port (REUSE_PORT=true): a new
    instance binds the port, becomes ready (new connections steered to it),
    the old one gets SIGTERM and drains, under new-connection and keep-alive
    load. tests/process_connlayer.rs's approach: keep-alive clients retry once,
    on a new connection, a request whose reused connection closed before any
    byte of the answer (as HTTP client libraries do); nothing else is retried."""
    db = TempDb()
    env = dict(REUSE_PORT="true", WORKERS=2, MAX_CONNECTIONS=2, DRAIN_DELAY="200ms",
               # what is measured is the hand-over, not how fast a loaded
               # machine opens a second pooled connection
               DB_ACQUIRE_TIMEOUT="10s")
    steered = lambda v: v.get("msg") == "new connections on the shared port now come to this instance"

    def start(addr):
        svc = Svc(db.url, ADDR=addr, **env)
        svc.wait_log(steered, 20)
        return svc
    old = start("127.0.0.1:0")
    addr = old.addr
    host, port = addr.rsplit(":", 1)
    st, body, _ = request(addr, "POST", "/api/v1/users", json.dumps({"name": "R", "email": f"roll-{uuid.uuid4().hex[:6]}@example.com"}))
    uid = json.loads(body)["id"]
    led = Ledger("rolling")
    stop = threading.Event()
    served, failed = [0], []
    lock = threading.Lock()

    def one(conn, kind):
        """One request on `conn`; (status, response). Raises on no answer."""
        if kind == "get":
            conn.request("GET", f"/api/v1/users/{uid}")
            r = conn.getresponse()
            r.read()
            return r
        with led.lock:
            led.n += 1
            email = f"{led.prefix}{led.n}@example.com"
        with led.lock:
            led.told[email] = None
        conn.request("POST", "/api/v1/users", body=json.dumps({"name": "R", "email": email}),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        with led.lock:
            led.told[email] = r.status
        return r

    def client(keep_alive, kind):
        conn = None
        while not stop.is_set():
            reused = conn is not None
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, int(port), timeout=10)
                try:
                    r = one(conn, kind)
                except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected) as e:
                    # closed before any byte of the answer: retry once on a new connection
                    conn.close()
                    if not reused:
                        raise
                    conn = http.client.HTTPConnection(host, int(port), timeout=10)
                    r = one(conn, kind)
                if r.status in (200, 201):
                    with lock:
                        served[0] += 1
                else:
                    with lock:
                        failed.append(f"{kind} status {r.status}")
                if not keep_alive or (r.getheader("Connection") or "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    failed.append(f"{kind} {type(e).__name__}: {e}")
                if conn is not None:
                    conn.close()
                conn = None
    ts = [threading.Thread(target=client, args=(ka, kind))
          for ka, kind in [(True, "get"), (False, "get"), (True, "get"), (False, "get"), (True, "post"), (False, "post")]]
    [t.start() for t in ts]
    codes, drains, stalls = [], [], 0
    try:
        for _ in range(3):
            time.sleep(1.0)
            new = start(f"127.0.0.1:{port}")
            before = served[0]
            t = time.time()
            old.proc.send_signal(signal.SIGTERM)
            try:
                codes.append(old.proc.wait(20))
            except subprocess.TimeoutExpired:
                codes.append(None)
            drains.append(time.time() - t)
            old.stop()
            old = new
            deadline = time.time() + 5
            while served[0] <= before + 50 and time.time() < deadline:
                time.sleep(0.05)
            stalls += served[0] <= before + 50
        time.sleep(1.0)
    finally:
        stop.set()
        [t.join() for t in ts]
    check("rolling_restart", "3 rolling restarts, REUSE_PORT: 0 failed requests",
          not failed and served[0] > 500 and stalls == 0,
          f"{served[0]} served, {len(failed)} failed{' ' + '; '.join(failed[:3]) if failed else ''}; "
          f"6 clients (3 keep-alive, 3 new connection each request)")
    check("rolling_restart", "old instances exit 0 after draining", codes == [0, 0, 0],
          f"exits {codes}, drained in {', '.join(f'{d:.1f}' for d in drains)} s")
    old.stop()
    led.integrity("rolling_restart", db.url)
    db.drop()


def s_slow_readers():
    """Issue 12: two clients pipelining list requests and reading their
    answers a few hundred bytes a second at WORKERS=2 hold no worker: other
    clients' p99 < 50 ms, no 503."""
    db = TempDb()
    svc = Svc(db.url, WORKERS=2, MAX_CONNECTIONS=2, WRITE_TIMEOUT="20s")
    led = Ledger("slowread")
    ids = []
    for i in range(60):
        with led.lock:
            led.n += 1
            email = f"{led.prefix}{led.n}@example.com"
        st, body, _ = request(svc.addr, "POST", "/api/v1/users", json.dumps({"name": f"Slow {i} " + "x" * 80, "email": email}))
        led.told[email] = st
        if st == 201:
            ids.append(json.loads(body)["id"])
    host, port = svc.addr.rsplit(":", 1)
    stop = threading.Event()
    read = [0, 0]

    def slow(i):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((host, int(port)))
        s.sendall(b"GET /api/v1/users?limit=100 HTTP/1.1\r\nHost: t\r\n\r\n" * 30)
        s.settimeout(1)
        while not stop.is_set():
            try:
                chunk = s.recv(32)
            except socket.timeout:
                continue
            except OSError:
                break
            if not chunk:
                break
            read[i] += len(chunk)
            time.sleep(0.1)  # ~320 bytes a second
        s.close()
    ts = [threading.Thread(target=slow, args=(i,)) for i in range(2)]
    [t.start() for t in ts]
    time.sleep(0.5)
    times, statuses = [], []
    t0, k = time.time(), 0
    while time.time() - t0 < 5:  # other clients for 5 s, a new connection each
        k += 1
        t = time.time()
        try:
            st = request(svc.addr, "GET", f"/api/v1/users/{ids[k % len(ids)]}", timeout=10)[0]
        except OSError:
            st = None
        times.append(time.time() - t)
        statuses.append(st)
    stop.set()
    [t.join() for t in ts]
    bad = [s for s in statuses if s != 200]
    check("slow_readers", "2 slow readers at WORKERS=2: others' p99 < 50 ms, no 503",
          pct(times, 99) < 0.05 and not bad and all(n > 0 for n in read),
          f"p99 {pct(times, 99) * 1000:.1f} ms (max {max(times) * 1000:.0f} ms) over {len(times)}, "
          f"{len(bad)} non-200 ({statuses.count(503)} 503); slow readers read {read} bytes")
    svc.stop()
    led.integrity("slow_readers", db.url)
    db.drop()


def s_held_bodies():
    """Issue 12: 150 clients each send all but the last byte of a 1 MiB body
    against MAX_BODY_BUFFER=16MiB: RSS grows by at most the budget + 10%,
    the clients beyond the budget are answered 503 + Retry-After at once."""
    clients, body, budget = 150, 1 << 20, 16
    db = TempDb()
    svc = Svc(db.url, WORKERS=2, MAX_CONNECTIONS=2, MAX_BODY_BYTES="1MiB", MAX_BODY_BUFFER=f"{budget}MiB", READ_TIMEOUT="30s")
    led = Ledger("heldbody")
    host, port = svc.addr.rsplit(":", 1)
    rss_before = svc.proc_stat()[0]
    sent, release = [0], threading.Event()
    answers = [None] * clients
    socks = [None] * clients

    def client(i):
        with led.lock:
            led.n += 1
            email = f"{led.prefix}{led.n}@example.com"
            led.told[email] = None
        doc = json.dumps({"name": "R", "email": email}).encode()
        # valid JSON once its last byte (a space) arrives: a held body that
        # were ever run would store a row the integrity check finds
        data = (b"POST /api/v1/users HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {body}\r\n\r\n".encode() + doc + b" " * (body - len(doc) - 1))
        s = socket.create_connection((host, int(port)), timeout=30)
        socks[i] = s
        try:
            s.sendall(data)
        except OSError:
            pass  # refused clients see their writes fail once the server closes
        with led.lock:
            sent[0] += 1
        s.settimeout(0.1)
        buf = b""
        while not release.is_set():
            try:
                chunk = s.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
        answers[i] = buf
        line = buf.split(b"\r\n", 1)[0].split()
        with led.lock:
            led.told[email] = int(line[1]) if len(line) > 1 and line[1].isdigit() else None
    ts = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t0 = time.time()
    [t.start() for t in ts]
    while sent[0] < clients and time.time() - t0 < 60:
        time.sleep(0.05)
    time.sleep(0.3)
    rss_held = svc.proc_stat()[0]
    release.set()
    [t.join() for t in ts]
    refused = [a for a in answers if a and a.startswith(b"HTTP/1.1 503")]
    retry_after = sum(1 for a in refused if b"Retry-After:" in a)
    held = sum(1 for a in answers if not a)
    other = clients - held - len(refused)
    growth = (rss_held - rss_before) / 2 ** 20
    check("held_bodies", f"150 x 1 MiB held: RSS growth <= MAX_BODY_BUFFER ({budget} MiB) + 10%",
          sent[0] == clients and growth <= budget * 1.1,
          f"RSS {rss_before / 2 ** 20:.1f} -> {rss_held / 2 ** 20:.1f} MiB (+{growth:.1f}), {held} bodies held")
    check("held_bodies", "the excess answered 503 + Retry-After at once",
          held <= budget and len(refused) == clients - held and retry_after == len(refused),
          f"{held} held, {len(refused)} 503 ({retry_after} with Retry-After), {other} other")
    [s.close() for s in socks if s]
    svc.stop()
    led.integrity("held_bodies", db.url)
    db.drop()


class Redis:
    """A throwaway redis-server on a free loopback port, no persistence."""

    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=1)
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    s.close()
                    return
                s.close()
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def s_redis_stopped():
    """Issue 15: Redis stopped mid-load: every GET still 200 from PostgreSQL,
    /readyz 200 degraded, p99 < 50 ms; started again: hits resume without a
    service restart."""
    if not shutil.which("redis-server"):
        check("redis_stopped", "scenario ran", False, "redis-server not installed")
        return
    db = TempDb()
    rd = Redis()
    svc = None
    try:
        svc = Svc(db.url, WORKERS=2, MAX_CONNECTIONS=2, REDIS_URL=rd.url)
        led = Ledger("redis")
        ids = []
        for _ in range(50):
            with led.lock:
                led.n += 1
                email = f"{led.prefix}{led.n}@example.com"
            st, body, _ = request(svc.addr, "POST", "/api/v1/users", json.dumps({"name": "R", "email": email}))
            led.told[email] = st
            if st == 201:
                ids.append(json.loads(body)["id"])
        hit = 'cache_requests_total{result="hit"}'
        phase = ["up"]
        res = {"up": [], "down": [], "again": []}
        stop = threading.Event()

        def reader(i):
            c = KeepAlive(svc.addr)
            k = i
            while not stop.is_set():
                if c.conn is None:
                    c.conn = http.client.HTTPConnection(c.host, c.port, timeout=10)
                t = time.time()
                try:
                    c.conn.request("GET", f"/api/v1/users/{ids[k % len(ids)]}")
                    r = c.conn.getresponse()
                    r.read()
                    st = r.status
                except (OSError, http.client.HTTPException):
                    st = None
                    c.conn.close()
                    c.conn = None
                res[phase[0]].append((st, time.time() - t))
                k += 2
                time.sleep(0.005)

        def writer():
            while not stop.is_set():
                led.create(svc.addr)
                time.sleep(0.05)
        ts = [threading.Thread(target=reader, args=(i,)) for i in range(2)] + [threading.Thread(target=writer)]
        [t.start() for t in ts]
        time.sleep(3)
        hits_up = svc.metric(hit)
        rd.stop()
        phase[0] = "down"
        t0 = time.time()
        ready = None
        while time.time() - t0 < 5:
            st, body, _ = request(svc.addr, "GET", "/readyz", timeout=5)
            ready = (st, json.loads(body).get("status"), json.loads(body).get("checks", {}).get("redis"))
            if ready[1] == "degraded":
                break
            time.sleep(0.1)
        seen = time.time() - t0
        time.sleep(max(0.0, 5 - (time.time() - t0)))
        st, body, _ = request(svc.addr, "GET", "/readyz", timeout=5)
        ready_end = (st, json.loads(body).get("status"))
        errors = svc.metric('cache_requests_total{result="error"}')
        pid = svc.proc.pid
        rd.start()
        phase[0] = "again"
        hits_back = svc.metric(hit)
        t1 = time.time()
        resumed = None
        while time.time() - t1 < 10:
            if svc.metric(hit) > hits_back + 20:
                resumed = time.time() - t1
                break
            time.sleep(0.1)
        time.sleep(1)
        stop.set()
        [t.join() for t in ts]
        down = res["down"]
        bad = [s for s, _ in down if s != 200]
        p99 = pct([t for _, t in down], 99)
        check("redis_stopped", "Redis stopped mid-load: every GET 200 from PostgreSQL",
              down and not bad and all(s == 200 for s, _ in res["up"] + res["again"]),
              f"{len(down)} GETs while stopped, {len(bad)} not 200; before {len(res['up'])}, after {len(res['again'])}; "
              f"cache errors {errors:.0f}, hits before the stop {hits_up:.0f}")
        check("redis_stopped", "p99 of GETs while stopped < 50 ms", down and p99 < 0.05,
              f"p99 {p99 * 1000:.1f} ms, max {pct([t for _, t in down], 100) * 1000:.0f} ms (p99 with Redis up "
              f"{pct([t for _, t in res['up']], 99) * 1000:.1f} ms)")
        check("redis_stopped", "/readyz 200 degraded while Redis is down",
              ready[:2] == (200, "degraded") and ready_end == (200, "degraded"),
              f"{ready[0]} {ready[1]} ({ready[2]}) after {seen:.1f} s; at the end {ready_end[0]} {ready_end[1]}")
        check("redis_stopped", "Redis started again: hits resume, no service restart",
              resumed is not None and svc.proc.poll() is None and svc.proc.pid == pid,
              f"+20 hits {'within %.1f s' % resumed if resumed is not None else 'not seen in 10 s'} of redis-server "
              f"answering PING (hits {hits_back:.0f} -> {svc.metric(hit):.0f}), same pid")
        svc.stop()
        svc = None
        led.integrity("redis_stopped", db.url)
    finally:
        if svc:
            svc.stop()
        rd.stop()
        db.drop()


def s_outbox_restart():
    """Issue 15: 1,000 creates while a webhook receiver records deliveries,
    SIGTERM midway, restart: every event delivered at least once, none lost,
    duplicates only with the same id; exit 0 within the shutdown budget."""
    import http.server
    got, glock = [], threading.Lock()

    class Receiver(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            time.sleep(0.003)  # a receiver with some latency: a backlog is pending at the signal
            try:
                ev = json.loads(data)
                rec = (ev.get("id"), self.headers.get("Idempotency-Key"), ev.get("type"), (ev.get("data") or {}).get("id"))
            except ValueError:
                rec = (None, self.headers.get("Idempotency-Key"), None, None)
            with glock:
                got.append(rec)
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{srv.server_address[1]}/hook"
    db = TempDb()
    env = dict(WORKERS=2, MAX_CONNECTIONS=2, WEBHOOK_URL=hook, WEBHOOK_TIMEOUT="2s", DRAIN_DELAY="200ms", SHUTDOWN_TIMEOUT="5s")
    budget = 0.2 + 5 + 2  # DRAIN_DELAY + SHUTDOWN_TIMEOUT + the 2 s margin of TERMINATION_GRACE_PERIOD's check
    led = Ledger("outbox")
    total, attempts = 1000, [0]
    svc = Svc(db.url, **env)
    try:
        def creator(addr, limit, until_exit=None):
            """Creates until `limit` were sent; with `until_exit`, until the
            instance stops answering (refused or exited) instead."""
            c = KeepAlive(addr)
            while True:
                with led.lock:
                    if until_exit is None and attempts[0] >= limit:
                        return
                    if until_exit is not None and until_exit.poll() is not None:
                        return
                    attempts[0] += 1
                if c.create(led)[0] is None and until_exit is not None:
                    return
        # First half, then SIGTERM while the clients keep sending (to a draining
        # instance: answered, then refused) until it has exited.
        ts = [threading.Thread(target=creator, args=(svc.addr, total // 2)) for _ in range(4)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        pending_at_signal = int(psql(db.url, "SELECT count(*) FROM events WHERE delivered_at IS NULL"))
        t0 = time.time()
        svc.proc.send_signal(signal.SIGTERM)
        ts = [threading.Thread(target=creator, args=(svc.addr, None, svc.proc)) for _ in range(2)]
        [t.start() for t in ts]
        try:
            code = svc.proc.wait(budget + 10)
        except subprocess.TimeoutExpired:
            code = None
        took = time.time() - t0
        [t.join() for t in ts]
        at_exit = attempts[0]
        pending_after = int(psql(db.url, "SELECT count(*) FROM events WHERE delivered_at IS NULL"))
        with glock:
            got_at_exit = len(got)
        svc.stop()
        check("outbox_restart", "SIGTERM midway: exit 0 within DRAIN_DELAY + SHUTDOWN_TIMEOUT + 2 s",
              code == 0 and took <= budget,
              f"exit {code} in {took:.1f} s (budget {budget:.1f} s); {pending_at_signal} events pending at the signal, "
              f"{pending_after} left pending, {got_at_exit} deliveries received")
        svc = Svc(db.url, **env)
        ts = [threading.Thread(target=creator, args=(svc.addr, total)) for _ in range(4)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        deadline = time.time() + 60
        while time.time() < deadline:
            if psql(db.url, "SELECT count(*) FROM events WHERE delivered_at IS NULL") == "0":
                break
            time.sleep(0.2)
        time.sleep(0.5)
        events = {r.split("|")[0]: r.split("|")[1:] for r in
                  psql(db.url, "SELECT id, type, payload->>'id', delivered_at IS NOT NULL, failed_at IS NOT NULL FROM events").split()}
        with glock:
            recs = list(got)
        ids = [r[0] for r in recs]
        received = set(ids)
        lost = [e for e in events if e not in received]
        unknown = received - set(events)
        dups = len(ids) - len(received)
        # a duplicate is the same event (same id, same Idempotency-Key), never
        # the same change under another id
        per_change = {}
        for r in recs:
            per_change.setdefault((r[2], r[3]), set()).add(r[0])
        renamed = [k for k, v in per_change.items() if len(v) > 1]
        keymismatch = sum(1 for r in recs if r[0] != r[1])
        created = {e: v for e, v in events.items() if v[0] == "user.created"}
        ok201 = sum(1 for s in led.told.values() if s == 201)
        check("outbox_restart", "every event delivered at least once, none lost",
              not lost and not unknown and len(created) == ok201 and all(v[2] == "t" for v in events.values()),
              f"{attempts[0]} creates sent ({at_exit} by the exit), {ok201} 201, {len(events)} events stored, "
              f"{len(received)} received, {len(lost)} lost, {len(unknown)} unknown")
        check("outbox_restart", "duplicates only with the same id",
              not renamed and keymismatch == 0,
              f"{dups} duplicate deliveries, {len(renamed)} changes under two ids, {keymismatch} Idempotency-Key != id")
        svc.stop()
        svc = None
        led.integrity("outbox_restart", db.url)
    finally:
        if svc:
            svc.stop()
        srv.shutdown()
        db.drop()


def run_tool(scenario, name, cmd, timeout):
    t = time.time()
    try:
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        tail = (out.stdout + out.stderr).strip().splitlines()[-1:] or [""]
        check(scenario, name, out.returncode == 0, f"exit {out.returncode} in {time.time() - t:.0f} s: {tail[0][:80]}")
    except subprocess.TimeoutExpired:
        check(scenario, name, False, f"timed out after {timeout} s")


def s_slowhttp():
    secs = os.environ.get("SLOW_SECS", "10")
    t = time.time()
    try:
        out = subprocess.run(["env", f"USERSVC_BIN={CURRENT['bin']}", "scripts/slowhttptest.sh", secs, "1000"],
                             cwd=ROOT, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        check("slowhttptest", "ran", False, "timed out after 600 s")
        return
    rows = [l.split("|")[1:-1] for l in out.stdout.splitlines() if l.startswith("| ") and l.split("|")[1].strip() in ("H", "B", "X")]
    for r in rows:
        _, attack, conns, ok, fail, worst = (c.strip() for c in r)
        check("slowhttptest", f"{attack} x{conns} vs WORKERS=4: probes answered", fail == "0",
              f"{ok} answered, {fail} failed, slowest {worst} ({secs} s)")
    if len(rows) != 3 or out.returncode != 0:
        check("slowhttptest", "all three modes ran, service alive", False,
              f"exit {out.returncode}, {len(rows)} modes in {time.time() - t:.0f} s: {(out.stdout + out.stderr).strip()[-120:]}")


def s_hardening():
    run_tool("tiny_http_hardening", "vendored tiny_http hardening.rs (release build)",
             ["cargo", "test", "--release", "-q", "--manifest-path", "vendor/tiny_http/Cargo.toml", "--test", "hardening"], 900)


ABUSE = [
    # (name, raw bytes, acceptable statuses; None = the server may just close)
    ("CL + TE (smuggling)", b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400}),
    ("two Content-Lengths", b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", {400}),
    ("negative Content-Length", b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", {400}),
    ("bad chunk size", b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", {400}),
    ("unknown transfer coding", b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", {400, 501}),
    ("100 KB request line", b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", {414, 431, 400}),
    ("64 KiB header", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 65536 + b"\r\n\r\n", {431}),
    ("10,000 headers", b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 10000 + b"\r\n", {431}),
    ("body over MAX_BODY_BYTES", b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n{", {413}),
    ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", {505, 400, None}),
    ("HTTP/3.0 version", b"GET /healthz HTTP/3.0\r\nHost: x\r\n\r\n", {505}),
    ("NUL in a header", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", {400}),
    ("obs-fold header", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", {400}),
    ("binary garbage", bytes(range(256)) * 4, {400, None}),
    ("space before colon", b"GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n", {400}),
]


def raw_status(addr, data, timeout=5):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    try:
        try:
            s.sendall(data)
        except OSError:
            pass  # the server may answer and close before reading it all
        buf = b""
        while b"\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
        line = buf.split(b"\r\n", 1)[0].split()
        return int(line[1]) if len(line) > 1 and line[1].isdigit() else None
    except (OSError, ValueError):
        return None
    finally:
        s.close()


def s_abuse():
    db = TempDb()
    svc = Svc(db.url, WORKERS=4, MAX_CONNECTIONS=4)
    # The baseline once start-up has settled: ready comes before the pool's
    # min-idle fill and the outbox's connection (+3-4 fds within ~300 ms).
    request(svc.addr, "GET", "/api/v1/users?limit=1")
    time.sleep(1)
    before = svc.proc_stat()
    for name, data, want in ABUSE:
        got = raw_status(svc.addr, data)
        check("http_abuse", f"raw: {name}", got in want, f"answered {got}, want {sorted(w for w in want if w) or 'close'}")
    st = request(svc.addr, "GET", "/healthz")[0]
    time.sleep(0.5)
    after = svc.proc_stat()
    check("http_abuse", "alive after the battery; fds and threads back", st == 200 and after[1] <= before[1] + 2 and after[2] <= before[2] + 2,
          f"/healthz {st}, fds {before[1]} -> {after[1]}, threads {before[2]} -> {after[2]}")
    svc.stop()
    db.drop()


def s_schemathesis():
    run_tool("schemathesis", "openapi.yaml conformance (--checks all)",
             ["env", f"USERSVC_BIN={BIN}", "MAX_EXAMPLES=20", "ST_TIME_LIMIT=240", "scripts/schemathesis.sh"], 400)


def s_promtool():
    if not shutil.which("promtool"):
        subprocess.run(["scripts/ensure-tools.sh"], cwd=ROOT, capture_output=True)
    db = TempDb()
    svc = Svc(db.url)
    Ledger("promtool").create(svc.addr)
    text = request(svc.admin, "GET", "/metrics")[1]
    out = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True)
    check("promtool", "promtool check metrics on a live scrape", out.returncode == 0,
          (out.stdout + out.stderr).decode().strip()[:80] or "clean")
    svc.stop()
    db.drop()


SCENARIOS = [("shutdown", s_shutdown), ("queue_timeout", s_queue_timeout), ("log_level", s_log_level),
             ("json_memory", s_json_memory), ("input_rules", s_input_rules), ("secret_redaction", s_secret_redaction),
             ("frozen_db", s_frozen), ("db_stopped", s_stopped), ("kill_storm", s_storm),
             ("overload", s_overload), ("slowhttptest", s_slowhttp), ("http_abuse", s_abuse), ("tiny_http_hardening", s_hardening),
             ("schemathesis", s_schemathesis), ("promtool", s_promtool),
             ("rolling_restart", s_rolling), ("slow_readers", s_slow_readers), ("held_bodies", s_held_bodies),
             ("redis_stopped", s_redis_stopped), ("outbox_restart", s_outbox_restart), ("soak", s_soak)]


def main():
    only = set(filter(None, os.environ.get("ONLY", "").split(",")))
    started = time.time()
    load_start = open("/proc/loadavg").read().split()[:3]
    before_bin = os.environ.get("BEFORE_BIN")
    if before_bin:
        CURRENT["bin"] = before_bin
        for name, fn in SCENARIOS:
            if name in DEFECTS and (not only or name in only):
                try:
                    fn()
                except Exception as e:
                    check(name, "scenario ran", False, f"{type(e).__name__}: {str(e)[:100]}")
        CURRENT["bin"] = BIN
    for name, fn in SCENARIOS:
        if only and name not in only:
            continue
        try:
            fn()
        except Exception as e:  # a scenario that cannot run is a failure, not a skip
            check(name, "scenario ran", False, f"{type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}")
    # RELIABILITY_COMMIT: the commit a tree outside git (a `git archive` of
    # it, away from a checkout others are editing) was taken from.
    commit = os.environ.get("RELIABILITY_COMMIT") or subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = "" if os.environ.get("RELIABILITY_COMMIT") else subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
    fails = sum(1 for r in RESULTS if r[2] == "FAIL")
    lines = ["# Reliability", "",
             "Written by `make test-reliability` (scripts/reliability/run.py): every scenario runs against the",
             "release binary on loopback; each line is one check with its measured figure.", "",
             f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             f"- machine: {platform.node()}, {os.cpu_count()} cores, {cpu}, Linux {platform.release()}",
             f"- load average (1/5/15 min) at start {' '.join(load_start)}, at end {' '.join(open('/proc/loadavg').read().split()[:3])}",
             f"- commit: {commit}{' (with uncommitted changes)' if dirty else ''}",
             f"- knobs: SOAK_SECS={os.environ.get('SOAK_SECS', '600')} OVERLOAD_SECS={os.environ.get('OVERLOAD_SECS', '30')} "
             f"STORM_SECS={os.environ.get('STORM_SECS', '10')} SLOW_SECS={os.environ.get('SLOW_SECS', '10')}",
             f"- total: {len(RESULTS)} checks, {fails} failed, {time.time() - started:.0f} s", ""]
    if os.environ.get("RELIABILITY_NOTE"):
        lines += [os.environ["RELIABILITY_NOTE"], ""]
    lines += ["| scenario | check | result | figure |", "|---|---|---|---|"]
    lines += [f"| {s} | {n} | {r} | {f.replace('|', '/')} |" for s, n, r, f in RESULTS]
    if BEFORE:
        lines += ["", "## As each defect failed before the fix", "",
                  f"The same scenarios against `BEFORE_BIN` ({before_bin}), the binary before these fixes;",
                  "not counted in the exit status.", "",
                  "| scenario | check | result | figure |", "|---|---|---|---|"]
        lines += [f"| {s} | {n} | {r} | {f.replace('|', '/')} |" for s, n, r, f in BEFORE]
    if not only:
        with open(os.path.join(ROOT, "RELIABILITY.md"), "w") as f:
            f.write("\n".join(lines) + "\n")
    else:
        print("\n".join(lines))
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
