#!/usr/bin/env python3
"""Parsing and reporting for the load benchmark (stdlib only).

  report.py record [--kv KEY=VALUE ...] [--wrk FILE] [--pgbench FILE --pgbench-log PREFIX]
                   [--sample FILE]
      prints one JSON measurement: the KEY=VALUEs (numbers parsed, '' = null),
      plus what the wrk output (its BENCH_RESULT line, printed by lua/common.lua),
      the pgbench output and per-transaction logs, and the RSS/thread sampler say.
  report.py show RAW.jsonl
      one console line about the last measurement.
  report.py finalize RAW.jsonl --jsonl OUT.jsonl --md OUT.md [--meta META.json]
      adds each workload's ceiling and ratio, writes results.jsonl and the
      Markdown report (workloads vs ceilings, targets met/missed, A/B ratios).
"""
import argparse
import glob
import json
import os
import re
import statistics
import sys

# workload -> (ceiling target, ceiling workload)
CEILING_OF = {
    "W1": ("nginx", "W1"), "W1-info": ("nginx", "W1"),
    "W2": ("pgbench", "W2"), "W2-info": ("pgbench", "W2"),
    "W2-otel0.01": ("pgbench", "W2"), "W2-otel1": ("pgbench", "W2"),
    "W2-cache": ("pgbench", "W2"), "W2-idle10k": ("pgbench", "W2"),
    "W3": ("pgbench", "W3"), "W4": ("pgbench", "W4"),
}
# workload -> its second ceiling (reported beside the first)
SECOND_CEILING_OF = {"W3": ("pgbench", "W3-insert")}
WORKLOAD_TEXT = {
    "W1": "GET /healthz",
    "W1-info": "GET /healthz, LOG_LEVEL=info",
    "W2": "GET /api/v1/users/{random 1..10000}",
    "W2-info": "GET /api/v1/users/{id}, LOG_LEVEL=info",
    "W2-otel0.01": "GET /api/v1/users/{id}, tracing on, ratio 0.01 (to a local OTLP sink)",
    "W2-otel1": "GET /api/v1/users/{id}, tracing on, ratio 1 (every request exported)",
    "W2-cache": "GET /api/v1/users/{id}, Redis read-through cache on (REDIS_URL, the bench's own redis-server)",
    "W2-idle10k": "GET /api/v1/users/{id} while 10,000 idle keep-alive connections are held open",
    "W3": "POST /api/v1/users (unique email)",
    "W4": "90 % W2 + 10 % W3",
}
MIB = 1024.0


def num(v):
    if v == "" or v is None:
        return None
    for t in (int, float):
        try:
            return t(v)
        except ValueError:
            pass
    return v


def parse_wrk(path):
    text = open(path, errors="replace").read()
    m = re.search(r"^BENCH_RESULT (\{.*\})\s*$", text, re.M)
    if not m:
        raise SystemExit(f"report.py: no BENCH_RESULT line in {path} (did wrk run the bench Lua script?)")
    r = json.loads(m.group(1))
    secs = r["duration_us"] / 1e6
    lat = r["latency_us"]
    e = r["errors"]
    return {
        "requests": r["requests"],
        "duration_s": round(secs, 3),
        "rps": round(r["requests"] / secs, 1) if secs else 0.0,
        "latency_ms": {k: round(lat[k] / 1000.0, 3) for k in ("p50", "p90", "p99", "p999", "max", "mean")},
        "non2xx": r["non2xx"],
        "statuses": r["statuses"],
        "socket_errors": {k: e[k] for k in ("connect", "read", "write", "timeout")},
        "socket_errors_total": e["connect"] + e["read"] + e["write"] + e["timeout"],
    }


def percentile(sorted_vals, p):
    if not sorted_vals:
        return None
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def parse_pgbench(path, log_prefix):
    text = open(path, errors="replace").read()
    out = {}
    m = re.search(r"^tps = ([\d.]+)", text, re.M)
    out["rps"] = round(float(m.group(1)), 1) if m else 0.0
    m = re.search(r"number of transactions actually processed: (\d+)", text)
    out["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"number of failed transactions: (\d+)", text)
    failed = int(m.group(1)) if m else 0
    aborted = len(re.findall(r"aborted|error", text, re.I))
    out["non2xx"] = failed
    out["socket_errors_total"] = aborted
    out["socket_errors"] = {"aborted_or_error_lines": aborted}
    lats = []
    for f in glob.glob(log_prefix + ".*"):
        with open(f) as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 3 and parts[2].isdigit():
                    lats.append(int(parts[2]))
    lats.sort()
    if lats:
        out["latency_ms"] = {
            "p50": percentile(lats, 50) / 1000.0, "p90": percentile(lats, 90) / 1000.0,
            "p99": percentile(lats, 99) / 1000.0, "p999": percentile(lats, 99.9) / 1000.0,
            "max": lats[-1] / 1000.0, "mean": round(sum(lats) / len(lats) / 1000.0, 3),
        }
    else:
        m = re.search(r"latency average = ([\d.]+) ms", text)
        out["latency_ms"] = {"mean": float(m.group(1)) if m else None}
    return out


def record(a):
    rec = {}
    for kv in a.kv or []:
        k, _, v = kv.partition("=")
        rec[k] = num(v)
    if a.wrk:
        rec.update(parse_wrk(a.wrk))
    if a.pgbench:
        rec.update(parse_pgbench(a.pgbench, a.pgbench_log))
    if a.sample and os.path.exists(a.sample):
        s = json.load(open(a.sample))
        rec["peak_rss_kib"] = s.get("peak_rss_kib")
        rec["peak_threads"] = s.get("peak_threads")
    reqs = rec.get("requests") or 0
    for src, dst in (("cpu_us", "cpu_us_per_req"), ("db_cpu_us", "db_cpu_us_per_req")):
        if rec.get(src) is not None and reqs:
            rec[dst] = round(rec[src] / reqs, 2)
    print(json.dumps(rec, sort_keys=True))


# ---------------------------------------------------------------- finalize
def fmt(v, nd=1):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def mib(kib):
    return None if kib is None else kib / MIB


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def finalize(a):
    recs = [json.loads(l) for l in open(a.raw) if l.strip()]
    meta = json.load(open(a.meta)) if a.meta and os.path.exists(a.meta) else {}
    # The run's ceilings (measured once, at its end), and the paired ones
    # (`paired`: measured just before one round of a write workload). A
    # round with a paired ceiling is judged against it, B's round too (it
    # runs right after A's); sweep runs and the rest against the run's.
    ceil, paired = {}, {}
    for r in recs:
        if r.get("kind") == "ceiling" and r.get("paired"):
            paired[(r["target"], r["workload"], r.get("round"))] = r
        elif r.get("kind") == "ceiling":
            ceil[(r["target"], r["workload"])] = r
    def ceiling_for(key, r):
        if key is None:
            return None
        c = None if r.get("sweep") else paired.get(key + (r.get("round"),))
        return c or ceil.get(key)
    for r in recs:
        if r.get("kind") == "service" and r.get("workload") in CEILING_OF:
            c = ceiling_for(CEILING_OF[r["workload"]], r)
            if c and c.get("rps"):
                r["ceiling"] = {"target": c["target"], "workload": c["workload"], "rps": c["rps"],
                                "paired": bool(c.get("paired"))}
                r["ceiling_ratio"] = round(r["rps"] / c["rps"], 3)
            c2 = ceiling_for(SECOND_CEILING_OF.get(r["workload"]), r)
            if c2 and c2.get("rps"):
                r["ceiling2"] = {"target": c2["target"], "workload": c2["workload"], "rps": c2["rps"],
                                 "paired": bool(c2.get("paired"))}
                r["ceiling2_ratio"] = round(r["rps"] / c2["rps"], 3)
    with open(a.jsonl, "w") as f:
        for r in recs:
            f.write(json.dumps(r, sort_keys=True) + "\n")

    svc = [r for r in recs if r.get("kind") == "service"]
    labels = sorted({r.get("label", "A") for r in svc})
    md = ["# usersvc load benchmark", ""]
    md.append(f"- date: {meta.get('date', '?')}; commit: `{meta.get('commit', '?')}`; "
              f"host: {meta.get('cpu', '?')}, {meta.get('nproc', '?')} CPUs, "
              f"load average at start {meta.get('loadavg_start', '?')}, at end {meta.get('loadavg_end', '?')}")
    md.append(f"- wrk: {meta.get('wrk_threads', '?')} threads, {meta.get('connections', '?')} connections, "
              f"{meta.get('warmup', '?')} s warm-up then {meta.get('duration', '?')} s; "
              f"pgbench: -M prepared -c {meta.get('pgbench_clients', '?')} -j {meta.get('pgbench_jobs', '?')}, same timing")
    md.append(f"- PostgreSQL: {meta.get('pg_settings', '?')}")
    md.append(f"- scheduling: {meta.get('scheduling', '?')}")
    for lab in labels:
        b = meta.get("binaries", {}).get(lab, {})
        md.append(f"- binary {lab}: `{b.get('path', '?')}` ({fmt(b.get('size'))} bytes)")
    drains = sorted({r.get("drain_delay_ms") for r in recs if r.get("kind") == "service" and r.get("drain_delay_ms") is not None})
    md.append(f"- service env: LOG_LEVEL=warn unless the workload says info; DRAIN_DELAY requested "
              f"{meta.get('drain_delay', '?')}, ran with {', '.join(fmt(d, 0) + ' ms' for d in drains) or '–'} "
              f"(subtracted from SIGTERM-to-exit); extra: `{meta.get('service_env', '') or 'none'}`")
    if meta.get("first_start_ms"):
        md.append(f"- first start (migrating an empty database): {meta['first_start_ms']} ms to ready")
    try:
        load = float(str(meta.get("loadavg_start", "0")).split()[0])
        if load > 0.5 * int(meta.get("nproc", 1)):
            md.append(f"- **caveat: the machine was busy at start (load {load}); treat absolute numbers as a smoke test.**")
    except ValueError:
        pass
    md.append("")

    if svc:
        md += ["## Workloads vs ceilings", ""]
        rows = []
        for r in svc:
            l = r.get("latency_ms", {})
            ratio = fmt(r.get("ceiling_ratio"), 3)
            if r.get("ceiling2_ratio") is not None:
                ratio += f" ({fmt(r['ceiling2_ratio'], 3)} of {r['ceiling2']['workload']})"
            rows.append([
                r["workload"] + (f" (ref. for {r['ref_for']})" if r.get("ref_for") else ""), r.get("label", "A"), fmt(r.get("round")), fmt(r.get("connections")), fmt(r.get("rps")),
                f"{r['ceiling']['target']} {fmt(r['ceiling']['rps'])}" if r.get("ceiling") else "–",
                ratio, fmt(l.get("p50"), 2), fmt(l.get("p99"), 2), fmt(l.get("max"), 1),
                fmt(r.get("non2xx")), fmt(r.get("socket_errors_total")),
                fmt(r.get("cpu_us_per_req")), fmt(r.get("db_cpu_us_per_req")),
                fmt(mib(r.get("idle_rss_kib")), 2), fmt(mib(r.get("peak_rss_kib")), 2),
                f"{fmt(r.get('idle_threads'))}/{fmt(r.get('peak_threads'))}",
            ])
        md.append(table(["workload", "bin", "round", "conns", "req/s", "ceiling req/s", "ratio", "p50 ms", "p99 ms",
                         "max ms", "non-2xx", "sock err", "svc CPU µs/req", "PG CPU µs/req",
                         "idle RSS MiB", "peak RSS MiB", "threads idle/peak"], rows))
        md.append("")
        md.append("Status codes: " + "; ".join(
            f"{r['workload']}/{r.get('label', 'A')}{r.get('round', '')}: "
            + ", ".join(f"{k}×{v}" for k, v in sorted(r.get("statuses", {}).items())) for r in svc))
        md.append("")

    cl = [r for r in recs if r.get("kind") == "ceiling"]
    if cl:
        md += ["## Ceilings (same machine, same run)", ""]
        rows = []
        for r in cl:
            l = r.get("latency_ms", {})
            what = r.get("what", "") + (f" (paired: just before round {fmt(r.get('round'))})" if r.get("paired") else "")
            rows.append([r["target"], r["workload"], what, fmt(r.get("rps")), fmt(l.get("p50"), 2),
                         fmt(l.get("p99"), 2), fmt(l.get("max"), 1), fmt(r.get("non2xx")),
                         fmt(r.get("socket_errors_total")), fmt(r.get("cpu_us_per_req"))])
        md.append(table(["ceiling", "for", "what", "req/s (tps)", "p50 ms", "p99 ms", "max ms",
                         "non-2xx / failed tx", "errors", "server CPU µs/req"], rows))
        md.append("")

    # ---- targets (binary A)
    # W2 measured again just before a variant's round (`ref_for`): those runs
    # are the variants' references, not more rounds of W2.
    refs = [r for r in svc if r.get("ref_for")]
    A = [r for r in svc if r.get("label", "A") == "A" and not r.get("sweep") and not r.get("ref_for")]
    def w(name):
        return [r for r in A if r["workload"] == name]
    def ratio(name):
        return med([r.get("ceiling_ratio") for r in w(name)])
    def p99(name):
        return med([r.get("latency_ms", {}).get("p99") for r in w(name)])
    starts = [r.get("startup_ms") for r in A]
    idle = [r.get("idle_rss_kib") for r in A if r.get("idle_rss_kib") is not None]
    # W2-idle10k's peak includes its 10,000 held connections: its own target below.
    peak = [r.get("peak_rss_kib") for r in A if r.get("peak_rss_kib") is not None and r["workload"] != "W2-idle10k"]
    term = [r.get("sigterm_net_ms") for r in A]
    rows = []
    def target(name, value, ok, shown):
        state = "n/a" if value is None else ("**met**" if ok(value) else "**missed**")
        rows.append([name, shown, state])
    def ratio2(name):
        return med([r.get("ceiling2_ratio") for r in w(name)])
    target("W1 ≥ 0.90 × nginx", ratio("W1"), lambda v: v >= 0.90, fmt(ratio("W1"), 3))
    # "Every request logged" is checked, not assumed: each info run's
    # `request completed` lines (warm-up included) against its measured requests.
    unlogged = [r for r in w("W1-info") if (r.get("logged_request_lines") or 0) < (r.get("requests") or 0)]
    lines_per_req = med([r["logged_request_lines"] / r["requests"] for r in w("W1-info")
                         if r.get("requests") and r.get("logged_request_lines") is not None])
    shown = f"{fmt(ratio('W1-info'), 3)} ({fmt(lines_per_req, 2)} request lines logged per measured request)"
    if unlogged:
        rows.append(["W1 with INFO logging of every request ≥ 0.85 × nginx", shown,
                     "**missed** (a run logged fewer lines than the requests it measured)"])
    else:
        target("W1 with INFO logging of every request ≥ 0.85 × nginx", ratio("W1-info"), lambda v: v >= 0.85, shown)
    target("W2 ≥ 0.35 × pgbench point select", ratio("W2"), lambda v: v >= 0.35, fmt(ratio("W2"), 3))
    def per_round(name, key="ceiling"):
        """How a write workload's ratio was measured: each round's, when
        its ceilings were paired."""
        rs = [r for r in w(name) if r.get(key + "_ratio") is not None]
        if rs and all(r[key].get("paired") for r in rs):
            return f" (per round against pgbench just before it: {', '.join(fmt(r[key + '_ratio'], 3) for r in rs)})"
        return " (against the run's ceiling)" if rs else ""
    target("W3 ≥ 0.90 × pgbench, same statement", ratio("W3"), lambda v: v >= 0.90,
           fmt(ratio("W3"), 3) + per_round("W3"))
    target("W3 ≥ 0.60 × pgbench one-INSERT", ratio2("W3"), lambda v: v >= 0.60,
           fmt(ratio2("W3"), 3) + per_round("W3", "ceiling2"))
    target("W3 p99 ≤ 30 ms", p99("W3"), lambda v: v <= 30, fmt(p99("W3"), 2) + " ms" if p99("W3") is not None else "–")
    target("W4 (90/10 mix) ≥ 0.60 × its pgbench mix", ratio("W4"), lambda v: v >= 0.60,
           fmt(ratio("W4"), 3) + per_round("W4"))
    target("W1 p99 < 10 ms", p99("W1"), lambda v: v < 10, fmt(p99("W1"), 2) + " ms" if p99("W1") is not None else "–")
    target("W2 p99 ≤ 8 ms (at ≥ 0.35 × its ceiling, row above)", p99("W2"), lambda v: v <= 8,
           fmt(p99("W2"), 2) + " ms" if p99("W2") is not None else "–")
    w2_rps = med([r.get("rps") for r in w("W2")])
    def times_w2(name):
        """A W2 variant's req/s over W2's: the median of each round's ratio to
        the W2 run just before it (`ref_for`), else over the run's W2 median.
        Returns (ratio, how it was measured)."""
        pairs = []
        for r in w(name):
            ref = [x for x in refs if x.get("ref_for") == name and x.get("round") == r.get("round")]
            if ref and ref[0].get("rps") and r.get("rps"):
                pairs.append(r["rps"] / ref[0]["rps"])
        if pairs:
            return med(pairs), f"per round against W2 just before it: {', '.join(fmt(p, 3) for p in pairs)}"
        rps = med([r.get("rps") for r in w(name)])
        return (rps / w2_rps if rps and w2_rps else None), "against the run's W2 median"
    for name, floor in (("W2-otel0.01", 0.97), ("W2-otel1", 0.85)):
        rel, how = times_w2(name)
        target(f"{name} req/s ≥ {floor} × W2 (tracing off)", rel, lambda v, f=floor: v >= f,
               f"{fmt(rel, 3)} ({how})")
    held = w("W2-idle10k")
    if held:
        rel, how = times_w2("W2-idle10k")
        n = med([r.get("held_conns") for r in held])
        n = int(n) if n is not None else None
        target(f"W2 with {fmt(n)} idle keep-alive connections held open ≥ 0.95 × W2 without them", rel,
               lambda v: v >= 0.95, f"{fmt(rel, 3)} ({how})")
        grow = [r["peak_rss_kib"] - r["idle_rss_kib"] for r in held
                if r.get("peak_rss_kib") is not None and r.get("idle_rss_kib") is not None]
        mx_grow = max(grow) if grow else None
        target("… their RSS: peak − idle ≤ 40 MiB", mx_grow, lambda v: v <= 40 * 1024,
               fmt(mib(mx_grow), 2) + " MiB" if grow else "–")
        ths = [r.get("peak_threads") for r in held if r.get("peak_threads") is not None]
        mx_th = max(ths) if ths else None
        workers = meta.get("workers")
        target(f"… threads with them ≤ WORKERS + 8 (WORKERS = {fmt(workers)}; peak)",
               mx_th if workers else None, lambda v: v <= workers + 8,
               f"{fmt(mx_th)} = WORKERS + {fmt(mx_th - workers)}" if mx_th and workers else "–")
    cache = w("W2-cache")
    if cache:
        c_rps = med([r.get("rps") for r in cache])
        hit = med([r.get("cache_hit_ratio") for r in cache])
        rel, _ = times_w2("W2-cache")
        rows.append(["W2-cache (Redis read-through) beside W2 (cache off)",
                     f"{fmt(c_rps)} req/s = {fmt(rel, 3)} × W2; hit ratio {fmt(hit, 4)}; p99 "
                     f"{fmt(med([r.get('latency_ms', {}).get('p99') for r in cache]), 2)} ms "
                     f"(W2 {fmt(p99('W2'), 2)} ms); errors {sum(r.get('cache_errors') or 0 for r in cache)}",
                     "reported"])
    mx_idle = max(idle) if idle else None
    target("idle RSS < 4 MiB (worst start)", mx_idle, lambda v: v < 4 * 1024, fmt(mib(mx_idle), 2) + " MiB" if idle else "–")
    # the default configuration: tracing (its batch thread) and Redis (its pool's thread) off
    idle_threads = [r.get("idle_threads") for r in A if r.get("idle_threads") is not None
                    and "-otel" not in r["workload"] and "-cache" not in r["workload"]]
    workers = meta.get("workers")
    mx_threads = max(idle_threads) if idle_threads else None
    target(f"threads at idle ≤ WORKERS + 4 (WORKERS = {fmt(workers)}; worst start, tracing and Redis off)",
           mx_threads if workers else None, lambda v: v <= workers + 4,
           f"{fmt(mx_threads)} = WORKERS + {fmt(mx_threads - workers)}" if mx_threads and workers else "–")
    mx_peak = max(peak) if peak else None
    target("peak RSS < 10 MiB (worst workload but W2-idle10k)", mx_peak, lambda v: v < 10 * 1024, fmt(mib(mx_peak), 2) + " MiB" if peak else "–")
    st = med(starts)
    target("start-up to ready < 15 ms (median of starts)", st, lambda v: v < 15,
           (fmt(st, 1) + f" ms (all: {', '.join(fmt(s, 1) for s in starts if s is not None)})") if st is not None else "–")
    errs = sum((r.get("non2xx") or 0) + (r.get("socket_errors_total") or 0) for r in A + refs) if A else None
    target("no non-2xx, no socket errors", errs, lambda v: v == 0, fmt(errs))
    size = meta.get("binaries", {}).get("A", {}).get("size")
    rows.append(["binary size", f"{fmt(size)} bytes ({fmt(mib(size / 1024) if size else None, 2)} MiB)" if size else "–", "reported"])
    tm = med(term)
    raw_term = med([r.get("sigterm_to_exit_ms") for r in A])
    rows.append(["SIGTERM to exit (minus DRAIN_DELAY, median)",
                 f"{fmt(tm, 1)} ms (raw {fmt(raw_term, 1)} ms, exit status "
                 f"{', '.join(sorted({str(r.get('exit_status')) for r in A}))})" if A else "–", "reported"])
    md += ["## Targets (binary A)", "", table(["target", "measured", "state"], rows), ""]

    # ---- A/B
    if "B" in labels:
        md += ["## A/B (alternating A, B per round; medians)", ""]
        rows = []
        for name in dict.fromkeys(r["workload"] for r in svc):
            ra = [r for r in svc if r["workload"] == name and r.get("label") == "A" and not r.get("sweep")
                  and not r.get("ref_for")]
            rb = [r for r in svc if r["workload"] == name and r.get("label") == "B"]
            if not ra and not rb:
                continue  # only W2's references for its variants
            a_rps, b_rps = med([r.get("rps") for r in ra]), med([r.get("rps") for r in rb])
            a_p99 = med([r.get("latency_ms", {}).get("p99") for r in ra])
            b_p99 = med([r.get("latency_ms", {}).get("p99") for r in rb])
            a_cpu, b_cpu = med([r.get("cpu_us_per_req") for r in ra]), med([r.get("cpu_us_per_req") for r in rb])
            # Each binary's own ratio to the workload's ceiling (a round's
            # paired one for W3/W4): where both stand against the host.
            a_ceil, b_ceil = med([r.get("ceiling_ratio") for r in ra]), med([r.get("ceiling_ratio") for r in rb])
            # req/s counts every answer: a binary that sheds (503s answered
            # at once) looks faster than one that serves, unless this shows.
            non2xx = f"{sum(r.get('non2xx') or 0 for r in ra)} / {sum(r.get('non2xx') or 0 for r in rb)}"
            rows.append([name, fmt(a_rps), fmt(b_rps), fmt(b_rps / a_rps if a_rps and b_rps else None, 3),
                         fmt(a_p99, 2), fmt(b_p99, 2), fmt(b_p99 / a_p99 if a_p99 and b_p99 else None, 3),
                         fmt(a_cpu), fmt(b_cpu), fmt(b_cpu / a_cpu if a_cpu and b_cpu else None, 3),
                         fmt(a_ceil, 3), fmt(b_ceil, 3), non2xx])
        md.append(table(["workload", "A req/s", "B req/s", "B/A req/s", "A p99 ms", "B p99 ms", "B/A p99",
                         "A CPU µs/req", "B CPU µs/req", "B/A CPU", "A × ceiling", "B × ceiling",
                         "non-2xx A / B (all rounds)"], rows))
        md.append("")
    md.append("Raw numbers: `results.jsonl` (one object per measurement); wrk/pgbench outputs and service logs under `logs/`.")
    with open(a.md, "w") as f:
        f.write("\n".join(md) + "\n")


def show(a):
    """One line about the last record of a raw.jsonl, for the console."""
    r = json.loads(open(a.raw).read().splitlines()[-1])
    l = r.get("latency_ms", {})
    unit, bad = ("tps", "failed tx") if r.get("target") == "pgbench" else ("req/s", "non-2xx")
    print(f"    {r.get('rps', 0):,.0f} {unit}  p50 {l.get('p50')} ms  p99 {l.get('p99')} ms  max {l.get('max')} ms  "
          f"{bad} {r.get('non2xx')}  errors {r.get('socket_errors_total')}  "
          f"server CPU {r.get('cpu_us_per_req')} µs/req" +
          (f"  PG CPU {r.get('db_cpu_us_per_req')} µs/req" if r.get("db_cpu_us_per_req") is not None else ""),
          file=sys.stderr)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("--kv", action="append")
    r.add_argument("--wrk")
    r.add_argument("--pgbench")
    r.add_argument("--pgbench-log")
    r.add_argument("--sample")
    f = sub.add_parser("finalize")
    f.add_argument("raw")
    f.add_argument("--jsonl", required=True)
    f.add_argument("--md", required=True)
    f.add_argument("--meta")
    sh = sub.add_parser("show")
    sh.add_argument("raw")
    a = p.parse_args()
    {"record": record, "finalize": finalize, "show": show}[a.cmd](a)


if __name__ == "__main__":
    main()
