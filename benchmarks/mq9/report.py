"""mq9_bench.py's report: numbers in cells, rounds merged into medians, the table, the plot.

With --rounds N every figure is the median over the rounds that measured it (complete
only if every round was), and the ratio column is the median of the per-round mq9 /
JetStream ratios with their range, since this machine's noise moves single runs more
than most differences. The table's rows are plan.table_rows; each becomes one entry of
the JSON report's "table" too.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from benchmarks.mq9.plan import SWEEP_WINDOWS, SYSTEM_LABEL, Row, Sizes


def fmt_num(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.2f} M"
    if v >= 1e4:
        return f"{v / 1e3:.1f} k"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def cell(r: dict | None, metric: str) -> tuple[str, float | None]:
    if r is None:
        return "[dim]-[/]", None
    if "na" in r:
        return f"[dim]{r['na']}[/]", None
    if "error" in r:
        return "[red]error[/]", None
    v = r.get(metric)
    if v is None:
        return "[dim]-[/]", None
    text = fmt_num(float(v))
    if not r.get("complete", False):
        text += " *"
    return text, float(v)


MERGED_METRICS = ("rate", "p50_ms", "p99_ms", "recovery_s", "peak_rss_mib", "disk_bytes_per_msg")


def merge_rounds(rounds: list[dict[str, dict]], systems: list[str]) -> dict[str, dict]:
    """One result per system and workload: the first round's, with each metric replaced by
    its median over the rounds that measured it (complete only if every round was)."""
    if len(rounds) == 1:
        return rounds[0]
    merged: dict[str, dict] = {s: {} for s in systems}
    for s in systems:
        for key in rounds[0][s]:
            runs = [one[s][key] for one in rounds if key in one[s]]
            out = dict(runs[0])
            if "error" in out:
                merged[s][key] = out
                continue
            for metric in MERGED_METRICS:
                values = [r[metric] for r in runs if r.get(metric) is not None and "error" not in r]
                if values:
                    out[metric] = statistics.median(values)
            out["complete"] = all(r.get("complete", False) for r in runs)
            out["rounds"] = len(runs)
            merged[s][key] = out
    return merged


def round_ratios(rounds: list[dict[str, dict]], key: str, metric: str) -> list[float]:
    """mq9 / JetStream for one figure, per round that measured it on both."""
    out = []
    for one in rounds:
        js, mq9 = one.get("js", {}).get(key, {}), one.get("mq9", {}).get(key, {})
        if js.get(metric) and mq9.get(metric) is not None and "error" not in js and "error" not in mq9:
            out.append(mq9[metric] / js[metric])
    return out


def build_table(rows: list[Row], results: dict, systems: list[str], sizes: Sizes, nodes: int,
                rounds: list[dict[str, dict]] | None = None) -> tuple[Table, list]:
    both = len(systems) == 2
    table = Table(title=f"mq9 vs JetStream, {nodes} node(s) each (JetStream: R{nodes} file stream), "
                        "128 B payloads unless noted"
                        + (f"; medians of {len(rounds)} rounds" if rounds else ""))
    table.add_column("workload")
    table.add_column("client")
    table.add_column("unit")
    for s in systems:
        table.add_column(SYSTEM_LABEL[s], justify="right")
    table.add_column("mq9/JetStream" if both else "", justify="right")
    data = []
    ran = {k for s in systems for k in results.get(s, {})}
    for row in rows:
        if row.key not in ran:
            continue
        title = row.title.format(w4=f"{sizes.w4[0] // 1000}k", w7=f"{sizes.w7[0] / 1e6:g}M"
                                 if sizes.w7[0] >= 1e6 else f"{sizes.w7[0] // 1000}k")
        vals, texts = {}, []
        for s in systems:
            text, v = cell(results.get(s, {}).get(row.key), row.metric)
            texts.append(text)
            vals[s] = v
        ratio = None
        spread = round_ratios(rounds, row.key, row.metric) if rounds and both else []
        if spread:
            ratio = statistics.median(spread)
        elif vals.get("js") and vals.get("mq9") is not None:
            ratio = vals["mq9"] / vals["js"]
        if not both:
            ratio_text = f"[dim]{row.better} is better[/]"
        elif ratio is not None:
            span = escape(f" [{min(spread):.2g}-{max(spread):.2g}]") if len(spread) > 1 else ""
            ratio_text = f"{ratio:.3g}{span} ({row.better} is better)"
        else:
            ratio_text = f"[dim]- ({row.better} is better)[/]"
        table.add_row(title, row.client, row.unit, *texts, ratio_text)
        data.append({"key": row.key, "workload": title, "client": row.client, "metric": row.metric,
                     "unit": row.unit, "better": row.better, **{SYSTEM_LABEL[s]: vals[s] for s in systems},
                     "ratio_mq9_over_js": round(ratio, 4) if ratio is not None else None,
                     "ratios_per_round": [round(x, 4) for x in spread] if spread else None})
    return table, data


def plot_sweep(results: dict, systems: list[str], path: Path) -> str:
    """Throughput and p99 vs window, one line per system. Returns a note for the output."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot (pip install matplotlib to get window_sweep.png)"
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for s in systems:
        pts = [(w, results.get(s, {}).get(f"sweep{w}", {})) for w in SWEEP_WINDOWS]
        pts = [(w, r) for w, r in pts if "rate" in r and "error" not in r]
        if not pts:
            continue
        ax1.plot([w for w, _ in pts], [r["rate"] for _, r in pts], marker="o", label=SYSTEM_LABEL[s])
        ax2.plot([w for w, _ in pts], [r.get("p99_ms") or 0 for _, r in pts], marker="o", label=SYSTEM_LABEL[s])
    for ax, ylabel in ((ax1, "acknowledged msgs/s"), (ax2, "p99 latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(SWEEP_WINDOWS), [str(w) for w in SWEEP_WINDOWS])
        ax.set_xlabel("publishes in flight (nats-py)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend()
    ax1.set_title("throughput vs window")
    ax2.set_title("p99 latency vs window")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"plot: {path}"
