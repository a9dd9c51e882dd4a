#!/usr/bin/env python3
"""report.py RESULTS SVG: print the benchmark table — each figure with its limit
(measured in the same run, or the fixed goal where there is nothing to measure),
the ratio of the two, the goal and the verdict — and draw it as an SVG bar chart:
each figure as a share of its goal, so one scale fits memory, latencies, times and
ratios. Standard library only."""
import json
import sys
from html import escape

# Each row: (key, or a key prefix ending in "." for one row per binary; what; unit;
#            limit; goal).
# limit: ("key", K)    the figure K measured in the same run (same unit),
#        ("fixed", V)  no limit to measure: the goal's own value stands in,
#        ("const", V)  a limit by definition (1 reconcile per generation),
#        None          shown without a limit.
# goal:  ("ratio", R)  measured ≤ R × limit,
#        ("max", V)    measured ≤ V,
#        ("min", V)    measured ≥ V,
#        ("plus", V)   measured ≤ limit + V,
#        None          shown for context.
# A key may carry a suffix (".k3s": the controller-manager with a k3s server's
# flags); its limit then carries the same suffix.
ROWS = [
    ("converge_1000_deployments_s", "1,000 MediaServers → 1,000 Deployments applied", "s",
     ("key", "converge_1000_deployments_limit_s"), ("ratio", 1.5)),
    ("converge_1000_s", "1,000 MediaServers → all Ready", "s",
     ("key", "converge_1000_limit_s"), ("ratio", 1.3)),
    ("reconcile_p50_ms", "apply → Deployment in a watch, p50 (200, one at a time)", "ms",
     ("key", "reconcile_empty_p50_ms"), ("max", 20)),
    ("reconcile_p99_ms", "apply → Deployment in a watch, p99 (200, one at a time)", "ms",
     ("key", "reconcile_empty_p99_ms"), ("max", 100)),
    ("rss_mib_1000.", "memory, 1,000 objects", "MiB", ("fixed", 24), ("max", 24)),
    ("idle_rss_mib.", "idle memory", "MiB", ("fixed", 10), ("max", 10)),
    ("failover_s.operator", "node lost → workload Ready elsewhere (kwok nodes)", "s",
     ("key", "failover_limit_s"), ("max", 20)),
    ("failover_s.kubernetes_default", "node lost → Ready elsewhere, Kubernetes' defaults", "s",
     None, None),
    ("failover_speedup", "failover: speed-up over Kubernetes' defaults", "×", None, ("min", 15)),
    ("leader_takeover_s", "active controller's node lost → new leader", "s",
     ("key", "leader_lease_s"), ("plus", 5)),
    ("device_move_s", "stick moved → consumer Ready (kwok nodes)", "s", ("fixed", 5), ("max", 5)),
    ("snapshot_runner_seconds", "snapshot of a 250 MB etcd", "s",
     ("key", "snapshot_etcdctl_seconds"), ("ratio", 1.1)),
    ("reconciles_per_object_1000", "reconciles per object, 1,000 (mediaserver-controller)", "",
     ("const", 1), ("max", 2)),
    ("reconciles_per_object_1000.", "reconciles per object, 1,000", "",
     ("const", 1), ("max", 2)),
    ("binary_mib.", "stripped binary", "MiB", ("fixed", 12), ("max", 12)),
    ("steady_writes_per_min", "writes in steady state", "/min", ("fixed", 0), ("max", 0)),
]

# Figures a limit is made of, printed below the table.
PARTS = [
    ("failover_lease_renew_s", "failover limit: one node-lease renewal interval", "s"),
    ("failover_pod_start_s", "failover limit: the replacement pod's start (creation → Ready)", "s"),
    ("snapshot_ratio_vs_etcdctl", "snapshot: runner ÷ etcdctl, as e2e/bench/snapshot reports it", "×"),
]

SUFFIXES = ["", ".k3s"]


def num(results, k):
    v = results.get(k)
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def rows(results):
    out = []
    for key, what, unit, limit, goal in ROWS:
        if key.endswith("."):
            # One row per binary; the exact key (if any) has its own row.
            keys = sorted(k for k in results if k.startswith(key))
            found = [(k, f"{what} ({k[len(key):]})", "") for k in keys]
        else:
            found = [(key + s, what + (f" [{s[1:]}]" if s else ""), s) for s in SUFFIXES
                     if key + s in results]
        for k, label, suffix in found:
            v = num(results, k)
            if v is None:
                continue
            lim = None
            lim_source = None
            if limit is not None and limit[0] == "key":
                lim = num(results, limit[1] + suffix)
                lim_source = "measured"
            elif limit is not None:
                lim = limit[1]
                lim_source = "goal" if limit[0] == "fixed" else "const"
            ratio = v / lim if lim else None
            met = None
            if goal is not None:
                kind, g = goal
                if kind == "ratio":
                    met = None if ratio is None else ratio <= g
                elif kind == "max":
                    met = v <= g
                elif kind == "min":
                    met = v >= g
                elif kind == "plus":
                    met = None if lim is None else v <= lim + g
            out.append(dict(key=k, label=label, value=v, unit=unit, limit=lim,
                            limit_source=lim_source, ratio=ratio, goal=goal, met=met))
    return out


def fmt(v):
    if v is None:
        return "—"
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"


def with_unit(v, unit):
    return "—" if v is None else f"{fmt(v)} {unit}".strip()


def goal_text(r):
    if r["goal"] is None:
        return ""
    kind, g = r["goal"]
    unit = r["unit"]
    return {
        "ratio": f"≤ {fmt(g)} × the limit",
        "max": f"≤ {with_unit(g, unit)}",
        "min": f"≥ {with_unit(g, unit)}",
        "plus": f"≤ the limit + {with_unit(g, unit)}",
    }[kind]


def limit_text(r):
    if r["limit"] is None:
        return "—"
    text = with_unit(r["limit"], r["unit"])
    return f"{text} (goal)" if r["limit_source"] == "goal" else text


def verdict(r):
    return "" if r["met"] is None else ("met" if r["met"] else "missed")


def table(rs, results):
    lines = ["| figure | name | measured | limit | ratio | goal | |",
             "|---|---|---|---|---|---|---|"]
    for r in rs:
        ratio = "—" if r["ratio"] is None else f"{fmt(r['ratio'])} ×"
        lines.append(f"| {r['label']} | `{r['key']}` | {with_unit(r['value'], r['unit'])} | "
                     f"{limit_text(r)} | {ratio} | {goal_text(r)} | {verdict(r)} |")
    parts = [(k, what, unit) for k, what, unit in PARTS if num(results, k) is not None]
    if parts:
        lines.append("")
        for k, what, unit in parts:
            lines.append(f"- {what} (`{k}`): {with_unit(num(results, k), unit)}")
    return "\n".join(lines)


def share(r):
    """How much of its goal a figure uses (1 = exactly at the goal)."""
    kind, g = r["goal"]
    v = r["value"]
    if kind == "ratio":
        return None if r["ratio"] is None else r["ratio"] / g
    if kind == "max":
        return (v / g) if g else (0 if v == 0 else 1.25)
    if kind == "min":
        return g / v if v else 1.25
    if kind == "plus":
        return None if r["limit"] is None else v / (r["limit"] + g)
    return None


def svg(rs, meta):
    width, left, bar_w, row_h, top = 1180, 430, 380, 26, 70
    charted = [r for r in rs if r["goal"] is not None and share(r) is not None]
    other = [r for r in rs if r not in charted]
    height = top + row_h * len(charted) + 40 + 18 * len(other) + 40
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
         f'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="13">',
         f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
         '<text x="20" y="28" font-size="18" font-weight="bold">'
         'homelab-operators: measured against limits and goals</text>',
         f'<text x="20" y="48" fill="#555">{escape(meta)}</text>']
    full = bar_w * 0.8  # the goal sits at 80 % of the bar's width
    x_goal = left + full
    for i, r in enumerate(charted):
        y = top + i * row_h
        w = max(2, min(share(r), 1.25) * full)
        color = "#2e7d32" if r["met"] else "#c62828"
        o.append(f'<text x="{left - 8}" y="{y + 16}" text-anchor="end">{escape(r["label"])}</text>')
        o.append(f'<rect x="{left}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" fill="{color}" rx="2"/>')
        detail = f'{with_unit(r["value"], r["unit"])}'
        if r["limit_source"] in ("measured", "const"):
            detail += f' (limit {with_unit(r["limit"], r["unit"])}, {fmt(r["ratio"])} ×)'
        detail += f'; goal {goal_text(r)}'
        o.append(f'<text x="{left + bar_w + 8}" y="{y + 16}">{escape(detail)}</text>')
    y_end = top + row_h * len(charted)
    o.append(f'<line x1="{x_goal:.1f}" y1="{top - 4}" x2="{x_goal:.1f}" y2="{y_end}" '
             'stroke="#333" stroke-dasharray="4 3"/>')
    o.append(f'<text x="{x_goal:.1f}" y="{top - 8}" text-anchor="middle" fill="#333" font-size="11">goal</text>')
    o.append(f'<text x="{left}" y="{y_end + 16}" fill="#555" font-size="11">bar: share of the goal used '
             '(for a ratio goal: ratio ÷ allowed ratio; for a speed-up: goal ÷ measured); '
             'shorter is better, green is met</text>')
    y = y_end + 44
    for r in other:
        o.append(f'<text x="{left - 8}" y="{y}" text-anchor="end">{escape(r["label"])}</text>')
        text = with_unit(r["value"], r["unit"])
        if r["limit"] is not None:
            text += f' (limit {limit_text(r)})'
        o.append(f'<text x="{left}" y="{y}">{escape(text)}</text>')
        y += 18
    o.append("</svg>")
    return "\n".join(o) + "\n"


def main():
    results_path, svg_path = sys.argv[1], sys.argv[2]
    with open(results_path) as f:
        results = json.load(f)
    rs = rows(results)
    print(table(rs, results))
    meta = " · ".join(str(results[k]) for k in ("meta.machine", "meta.date") if k in results)
    with open(svg_path, "w") as f:
        f.write(svg(rs, meta))
    print(f"\nchart: {svg_path}")


if __name__ == "__main__":
    main()
