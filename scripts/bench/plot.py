#!/usr/bin/env python3
"""Throughput against p99 latency for W2 and W3 at each connection count
(stdlib only: writes SVG by hand, no plotting package to install).

  plot.py RESULTS.jsonl --out PLOT.svg [--meta META.json]

One panel per workload: x = 2xx responses per second, y = p99 in ms, one point per
connection count (16 / 64 / 256 by default), joined in that order, so a
reader sees what more concurrency buys in throughput and costs in the tail.
The same-run pgbench ceilings are drawn as dashed vertical lines.
"""
import argparse
import json
import os
import sys
from xml.sax.saxutils import escape

WORKLOADS = ("W2", "W3")
TITLES = {"W2": "W2: GET /api/v1/users/{id}", "W3": "W3: POST /api/v1/users"}
W, H = 460, 340  # one panel
M = {"l": 64, "r": 20, "t": 40, "b": 48}


def nice_max(v):
    if v <= 0:
        return 1.0
    mag = 10 ** len(str(int(v))) / 10
    for step in (1, 2, 2.5, 5, 10):
        if v <= step * mag:
            return step * mag
    return 10 * mag


def ticks(vmax, n=5):
    return [vmax * i / n for i in range(n + 1)]


def fmt(v):
    return f"{v:,.0f}" if v >= 100 else (f"{v:.1f}" if v >= 10 else f"{v:.2f}")


def panel(ox, workload, points, ceilings):
    """SVG elements for one panel at x offset ox."""
    out = []
    pw, ph = W - M["l"] - M["r"], H - M["t"] - M["b"]
    x0, y0 = ox + M["l"], M["t"] + ph
    xmax = nice_max(max([p[1] for p in points] + [c[1] for c in ceilings] + [1]) * 1.05)
    ymax = nice_max(max([p[2] for p in points] + [1]) * 1.1)
    sx = lambda v: x0 + v / xmax * pw
    sy = lambda v: y0 - v / ymax * ph
    out.append(f'<text x="{ox + W / 2}" y="22" text-anchor="middle" class="title">{escape(TITLES[workload])}</text>')
    for t in ticks(xmax):
        out.append(f'<line x1="{sx(t):.1f}" y1="{M["t"]}" x2="{sx(t):.1f}" y2="{y0}" class="grid"/>')
        out.append(f'<text x="{sx(t):.1f}" y="{y0 + 16}" text-anchor="middle">{fmt(t)}</text>')
    for t in ticks(ymax):
        out.append(f'<line x1="{x0}" y1="{sy(t):.1f}" x2="{x0 + pw}" y2="{sy(t):.1f}" class="grid"/>')
        out.append(f'<text x="{x0 - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{fmt(t)}</text>')
    out.append(f'<line x1="{x0}" y1="{y0}" x2="{x0 + pw}" y2="{y0}" class="axis"/>')
    out.append(f'<line x1="{x0}" y1="{M["t"]}" x2="{x0}" y2="{y0}" class="axis"/>')
    out.append(f'<text x="{x0 + pw / 2}" y="{H - 8}" text-anchor="middle">2xx responses per second</text>')
    out.append(f'<text transform="translate({ox + 16},{M["t"] + ph / 2}) rotate(-90)" '
               f'text-anchor="middle">p99 latency (ms)</text>')
    for i, (label, rps) in enumerate(ceilings):
        x = sx(rps)
        out.append(f'<line x1="{x:.1f}" y1="{M["t"]}" x2="{x:.1f}" y2="{y0}" class="ceiling"/>')
        out.append(f'<text x="{x - 4:.1f}" y="{M["t"] + 12 + 14 * i}" text-anchor="end" class="note">'
                   f'{escape(label)} {fmt(rps)}</text>')
    if points:
        path = " ".join(f"{sx(r):.1f},{sy(p):.1f}" for _, r, p in points)
        out.append(f'<polyline points="{path}" class="line"/>')
    for label, rps, p99 in points:
        out.append(f'<circle cx="{sx(rps):.1f}" cy="{sy(p99):.1f}" r="4" class="dot"/>')
        out.append(f'<text x="{sx(rps) + 7:.1f}" y="{sy(p99) - 7:.1f}" class="note">{escape(label)}</text>')
    if not points:
        out.append(f'<text x="{x0 + pw / 2}" y="{M["t"] + ph / 2}" text-anchor="middle" class="note">'
                   f'not measured in this run</text>')
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--out", required=True)
    ap.add_argument("--meta")
    a = ap.parse_args()
    recs = [json.loads(l) for l in open(a.results) if l.strip()]
    meta = json.load(open(a.meta)) if a.meta and os.path.exists(a.meta) else {}
    parts = []
    for i, wl in enumerate(WORKLOADS):
        # binary A, first round: one point per connection count
        pts = {}
        for r in recs:
            if (r.get("kind") == "service" and r.get("workload") == wl and r.get("label", "A") == "A"
                    and r.get("round", 1) == 1 and not r.get("ref_for")
                    and r.get("connections") and r.get("rps")):
                p99 = (r.get("latency_ms") or {}).get("p99")
                if p99 is not None:
                    # Goodput: 2xx per second (a shed 503 is no throughput).
                    bad = (r.get("non2xx") or 0) / r["requests"] if r.get("requests") else 0.0
                    label = f"{int(r['connections'])} conns" + (f", {bad:.0%} non-2xx" if bad else "")
                    pts[int(r["connections"])] = (label, r["rps"] * (1 - bad), p99)
        points = [pts[c] for c in sorted(pts)]
        ceilings = [(f"pgbench {r['workload']}", r["rps"]) for r in recs
                    if r.get("kind") == "ceiling" and r.get("target") == "pgbench" and not r.get("paired")
                    and r.get("workload", "").split("-")[0] == wl and r.get("rps")]
        parts += panel(i * W, wl, points, ceilings)
    caption = (f"usersvc, {meta.get('date', '?')}, commit {meta.get('commit', '?')}, "
               f"{meta.get('nproc', '?')} CPUs, {meta.get('duration', '?')} s per point "
               f"(warm-up {meta.get('warmup', '?')} s), 16/256-connection points with QUEUE_DEPTH = connections, scheduling: "
               f"{str(meta.get('scheduling', '?')).split(';')[0]}")
    total_w, total_h = W * len(WORKLOADS), H + 24
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{total_h}" '
        f'viewBox="0 0 {total_w} {total_h}" font-family="sans-serif" font-size="11">',
        "<style>.title{font-size:13px;font-weight:bold}.grid{stroke:#ddd}.axis{stroke:#333}"
        ".ceiling{stroke:#c33;stroke-dasharray:4 3}.line{fill:none;stroke:#36c;stroke-width:2}"
        ".dot{fill:#36c}.note{fill:#444}</style>",
        f'<rect width="{total_w}" height="{total_h}" fill="white"/>',
        *parts,
        f'<text x="8" y="{total_h - 6}" class="note">{escape(caption)}</text>',
        "</svg>",
    ]
    with open(a.out, "w") as f:
        f.write("\n".join(svg) + "\n")
    n = sum(1 for p in parts if p.startswith("<circle"))
    print(f"plot.py: {n} points -> {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
