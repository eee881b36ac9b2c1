#!/usr/bin/env python3
"""The reliability suite (issue 13): every fault, overload and abuse
scenario against the release binary, on loopback only, bounded in time.

One PASS/FAIL line per check with its figure; exit 1 on any FAIL; the table
is written to RELIABILITY.md with the date, machine and commit.

Called by scripts/reliability/run.sh (which builds the binary and makes sure
PostgreSQL is up). Knobs (environment): SOAK_SECS (default 600),
OVERLOAD_SECS (30), STORM_SECS (10), SLOW_SECS (10, per slowhttptest mode),
ONLY (comma-separated scenario names).
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
# The binary the scenarios run against right now (BEFORE_BIN for the
# "as it failed before" pass).
CURRENT = {"bin": BIN}
# The defects of issue 13, each re-run against BEFORE_BIN when it is given.
DEFECTS = ["shutdown", "queue_timeout", "log_level", "frozen_db", "kill_storm"]
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

    def __init__(self):
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
        cmd = ["runuser", "-u", "postgres", "--", os.path.join(PG_BIN, prog), *args] if os.geteuid() == 0 else [os.path.join(PG_BIN, prog), *args]
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
    def __init__(self, db_url, **env):
        full = {"PATH": os.environ.get("PATH", ""), "ADDR": "127.0.0.1:0", "ADMIN_ADDR": "127.0.0.1:0",
                "LOG_FORMAT": "json", "DATABASE_URL": db_url, "DRAIN_DELAY": "200ms", "SHUTDOWN_TIMEOUT": "5s"}
        full.update({k: str(v) for k, v in env.items()})
        # The service's log goes to a file, as it would to a log shipper: a
        # reader in this process would compete with the load driver.
        self.log = tempfile.NamedTemporaryFile(prefix="usersvc-rel-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([CURRENT["bin"]], env=full, stdout=self.log, stderr=subprocess.STDOUT)
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

    def proc_stat(self):
        st = open(f"/proc/{self.proc.pid}/status").read()
        get = lambda k: int(next(l.split()[1] for l in st.splitlines() if l.startswith(k)))
        return get("VmRSS:") * 1024, len(os.listdir(f"/proc/{self.proc.pid}/fd")), get("Threads:")

    def stop(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
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
        check(scenario, "integrity: every 2xx stored, no error/unanswered stored",
              not missing and not unknown,
              f"{len(self.told)} requests, {len(ok2xx)} 2xx, {len(missing)} 2xx missing, {len(unknown)} error/unanswered stored")


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


def open_loop(addr, led, rate, secs, threads):
    """Sends `rate` creates/s for `secs` from `threads` keep-alive clients,
    each on its own schedule (a late request is sent at once, never twice)."""
    out = []
    t0 = time.time() + 0.2

    def run(i):
        c = KeepAlive(addr)
        k = 0
        while True:
            at = t0 + (i + k * threads) / rate
            if at - t0 >= secs:
                return
            delay = at - time.time()
            if delay > 0:
                time.sleep(delay)
            out.append(c.create(led))
            k += 1
    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    return out, time.time() - t0


def s_overload():
    db = TempDb()
    secs = float(os.environ.get("OVERLOAD_SECS", "30"))
    svc = Svc(db.url, WORKERS=4, MAX_CONNECTIONS=4, QUEUE_TIMEOUT="1s")
    led = Ledger("overload")
    # Capacity: closed loop, 8 keep-alive clients (2 x WORKERS), 5 s.
    lat, stop = [], threading.Event()

    def closed():
        c = KeepAlive(svc.addr)
        while not stop.is_set():
            lat.append(c.create(led))
    ts = [threading.Thread(target=closed) for _ in range(8)]
    [t.start() for t in ts]
    time.sleep(5)
    stop.set()
    [t.join() for t in ts]
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
    res, elapsed = open_loop(svc.addr, led, 3 * cap, secs, 48)
    stop.set()
    pt.join()
    sent = len(res) / elapsed
    good = sum(1 for s, _ in res if s == 201) / elapsed
    p99 = pct([t for s, t in res if s == 201], 99)
    shed = sum(1 for s, _ in res if s == 503)
    check("overload", "goodput >= 90% of capacity at 3x offered", good >= 0.9 * cap,
          f"{good:.0f}/s vs capacity {cap:.0f}/s; offered {sent:.0f}/s (target {3 * cap:.0f}), {shed} 503")
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
    db.drop()


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
             ("frozen_db", s_frozen), ("db_stopped", s_stopped), ("kill_storm", s_storm),
             ("overload", s_overload), ("slowhttptest", s_slowhttp), ("http_abuse", s_abuse), ("tiny_http_hardening", s_hardening),
             ("schemathesis", s_schemathesis), ("promtool", s_promtool), ("soak", s_soak)]


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
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
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
