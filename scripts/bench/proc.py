#!/usr/bin/env python3
"""/proc readings for the load benchmark (stdlib only, Linux).

  proc.py cpu PID            CPU time (user+system, µs) of PID and all its
                             descendants, including reaped children
                             (cutime/cstime), so short-lived PostgreSQL
                             backends are counted too.
  proc.py mem PID            JSON: rss_kib (VmRSS), hwm_kib (VmHWM), threads.
  proc.py sample PID --out F [--interval 0.1] [--max-seconds 600]
                             resets VmHWM (clear_refs 5), samples VmRSS and
                             Threads every INTERVAL until SIGTERM/SIGINT, the
                             process exits or MAX_SECONDS pass; writes JSON to F:
                             peak_rss_kib (max of samples and VmHWM),
                             peak_threads, samples.
"""
import json
import os
import signal
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    rest = data[data.rindex(")") + 2 :].split()
    return rest  # rest[0]=state rest[1]=ppid rest[11..14]=utime stime cutime cstime


def children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(stat_fields(d)[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    return kids


def tree(pid):
    kids = children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_us(pid):
    total = 0
    for p in tree(pid):
        try:
            f = stat_fields(p)
        except OSError:
            continue
        total += sum(int(x) for x in f[11:15])
    return total * 1_000_000 // TICK


def status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
            elif k == "Threads":
                out[k] = int(v)
            elif k == "State":
                out[k] = v.split()[0]
    return out


def mem(pid):
    s = status(pid)
    return {"rss_kib": s.get("VmRSS"), "hwm_kib": s.get("VmHWM"), "threads": s.get("Threads")}


def sample(pid, out, interval, max_seconds):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")  # reset the peak-RSS high-water mark
        reset = True
    except OSError:
        reset = False
    peak_rss = peak_thr = n = 0
    hwm = None
    deadline = time.monotonic() + max_seconds
    while not stop and time.monotonic() < deadline:
        try:
            s = status(pid)
        except OSError:
            break
        if s.get("State") == "Z":
            break
        n += 1
        peak_rss = max(peak_rss, s.get("VmRSS", 0))
        peak_thr = max(peak_thr, s.get("Threads", 0))
        hwm = s.get("VmHWM")
        time.sleep(interval)
    try:
        hwm = status(pid).get("VmHWM", hwm)
    except OSError:
        pass
    res = {
        "peak_rss_kib": max(peak_rss, hwm or 0) if reset else peak_rss,
        "sampled_peak_rss_kib": peak_rss,
        "hwm_kib": hwm,
        "hwm_reset": reset,
        "peak_threads": peak_thr,
        "samples": n,
    }
    with open(out + ".tmp", "w") as f:
        json.dump(res, f)
    os.replace(out + ".tmp", out)


def main():
    cmd, pid = sys.argv[1], int(sys.argv[2])
    if cmd == "cpu":
        print(cpu_us(pid))
    elif cmd == "mem":
        print(json.dumps(mem(pid)))
    elif cmd == "sample":
        args = sys.argv[3:]
        opts = dict(zip(args[::2], args[1::2]))
        sample(pid, opts["--out"], float(opts.get("--interval", 0.1)),
               float(opts.get("--max-seconds", 600)))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
