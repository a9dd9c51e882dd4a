#!/usr/bin/env python3
"""report.py RESULTS SVG: print the benchmark table (figure, target, verdict) and
draw it as an SVG bar chart: each figure as a share of its target, so one scale
fits memory, sizes, latencies and speed-ups. Standard library only."""
import json
import sys
from html import escape

# (key or key prefix ending in ".", what, unit, target, "max" = at most / "min" = at least)
TARGETS = [
    ("idle_rss_mib.", "idle memory", "MiB", 16, "max"),
    ("rss_mib_1000.", "memory, 1,000 objects", "MiB", 40, "max"),
    ("binary_mib.", "stripped binary", "MiB", 12, "max"),
    ("reconcile_p50_ms", "apply → Deployment, median", "ms", None, None),
    ("reconcile_p99_ms", "apply → Deployment, p99", "ms", 250, "max"),
    ("converge_1000_s", "1,000 MediaServers → all Ready", "s", 60, "max"),
    ("converge_1000_deployments_s", "1,000 MediaServers → all Deployments applied", "s", None, None),
    ("steady_writes_per_min", "writes in steady state", "/min", 0, "max"),
    ("failover_s.operator", "node lost → Ready elsewhere, operator", "s", None, None),
    ("failover_s.kubernetes_default", "node lost → Ready elsewhere, Kubernetes defaults", "s", None, None),
    ("failover_speedup", "failover speed-up over Kubernetes", "×", 5, "min"),
    ("device_move_s", "USB stick moved → consumer Ready", "s", None, None),
    ("snapshot_ratio_vs_etcdctl", "snapshot time vs etcdctl", "×", 1.1, "max"),
]


def rows(results):
    out = []
    for key, what, unit, target, sense in TARGETS:
        keys = sorted(k for k in results if k.startswith(key)) if key.endswith(".") else [key]
        for k in keys:
            if k not in results or not isinstance(results[k], (int, float)):
                continue
            v = results[k]
            label = f"{what} ({k[len(key):]})" if key.endswith(".") else what
            met = None
            if target is not None:
                met = v <= target if sense == "max" else v >= target
            out.append((k, label, v, unit, target, sense, met))
    return out


def fmt(v):
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"


def table(rs):
    lines = ["| figure | name | measured | target | |", "|---|---|---|---|---|"]
    for k, label, v, unit, target, sense, met in rs:
        t = "" if target is None else ("≤ " if sense == "max" else "≥ ") + f"{fmt(target)} {unit}"
        verdict = "" if met is None else ("met" if met else "missed")
        lines.append(f"| {label} | `{k}` | {fmt(v)} {unit} | {t} | {verdict} |")
    return "\n".join(lines)


def svg(rs, meta):
    width, left, bar_w, row_h, top = 1040, 330, 420, 26, 70
    charted = [r for r in rs if r[4] is not None]
    other = [r for r in rs if r[4] is None]
    height = top + row_h * len(charted) + 40 + 18 * len(other) + 40
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
         f'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="13">',
         f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
         '<text x="20" y="28" font-size="18" font-weight="bold">homelab-operators: measured against targets</text>',
         f'<text x="20" y="48" fill="#555">{escape(meta)}</text>']
    full = bar_w * 0.8  # the target sits at 80 % of the bar's width
    x_target = left + full
    for i, (k, label, v, unit, target, sense, met) in enumerate(charted):
        y = top + i * row_h
        if sense == "max":
            share = (v / target) if target else (0 if v == 0 else 1.25)
        else:
            share = target / v if v else 1.25
        w = max(2, min(share, 1.25) * full)
        color = "#2e7d32" if met else "#c62828"
        o.append(f'<text x="{left - 8}" y="{y + 16}" text-anchor="end">{escape(label)}</text>')
        o.append(f'<rect x="{left}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" fill="{color}" rx="2"/>')
        t = ("≤ " if sense == "max" else "≥ ") + f"{fmt(target)} {unit}"
        o.append(f'<text x="{left + bar_w + 8}" y="{y + 16}">{fmt(v)} {escape(unit)} (target {escape(t)})</text>')
    y_end = top + row_h * len(charted)
    o.append(f'<line x1="{x_target:.1f}" y1="{top - 4}" x2="{x_target:.1f}" y2="{y_end}" stroke="#333" stroke-dasharray="4 3"/>')
    o.append(f'<text x="{x_target:.1f}" y="{top - 8}" text-anchor="middle" fill="#333" font-size="11">target</text>')
    o.append(f'<text x="{left}" y="{y_end + 16}" fill="#555" font-size="11">bar: share of the target used '
             '(for a speed-up: target ÷ measured); shorter is better, green is met</text>')
    y = y_end + 44
    for k, label, v, unit, *_ in other:
        o.append(f'<text x="{left - 8}" y="{y}" text-anchor="end">{escape(label)}</text>')
        o.append(f'<text x="{left}" y="{y}">{fmt(v)} {escape(unit)}</text>')
        y += 18
    o.append("</svg>")
    return "\n".join(o) + "\n"


def main():
    results_path, svg_path = sys.argv[1], sys.argv[2]
    with open(results_path) as f:
        results = json.load(f)
    rs = rows(results)
    print(table(rs))
    meta = " · ".join(str(results[k]) for k in ("meta.machine", "meta.date") if k in results)
    with open(svg_path, "w") as f:
        f.write(svg(rs, meta))
    print(f"\nchart: {svg_path}")


if __name__ == "__main__":
    main()
