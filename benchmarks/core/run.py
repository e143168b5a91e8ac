"""One core_nats.py run: servers up, every workload against each, the table and the report.

Runs are interleaved (nats-server, then mq9, per repeat) so that a slow minute of the
machine hits both; the best run of each counts. A server that died is reported once with
its log, and its remaining runs are errors. The report (out/core_nats.json, or
out/core_nats_cluster.json with --cluster) holds every run, the machine's facts and,
for clusters, their Raft views, log tails and the warnings logged during the workloads.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from rich.table import Table

from benchmarks.common import OUT, REPO
from benchmarks.common.cli import BenchError, console
from benchmarks.common.install import build_natsbench, ensure_packages
from benchmarks.common.machine import machine_info
from benchmarks.core.servers import make_clusters, make_servers
from benchmarks.core.workloads import (CLUSTER_WORKLOADS, PUB_TARGET, REQREP_TARGET, WORKLOADS, Workload, best_of,
                                       run_client)


def fmt_rate(r: dict | None) -> str:
    if r is None:
        return "[red]error[/]"
    rate = r.get("rate", 0.0)
    text = f"{rate / 1e6:.2f} M" if rate >= 1e6 else f"{rate / 1e3:.1f} k" if rate >= 1e4 else f"{rate:,.0f}"
    return text if r.get("complete") else text + " *"


def run_workloads(servers: list, workloads: list[Workload], args: argparse.Namespace,
                  deadline: float) -> tuple[list[dict], bool]:
    """Every workload against every server (interleaved, per repeat); entries for the report."""
    results: list[dict] = []
    failed = False
    dead: set[str] = set()
    for w in workloads:
        count = w.quick_count if args.quick else w.count
        runs: dict[str, list[dict]] = {s.name: [] for s in servers}
        for rep in range(args.repeats):
            for s in servers:  # interleaved: nats-server, then mq9, per repeat
                if not s.alive():
                    if s.name not in dead:
                        dead.add(s.name)
                        console.print(f"[bold red]{s.exit_status()}[/]; its log ends:\n{s.log_tail()}")
                    r = {"error": s.exit_status()}
                else:
                    r = run_client(w, s.url, count, deadline, getattr(s, "sub_url", None))
                runs[s.name].append(r)
        progress = " | ".join(f"{name} " + ", ".join("error" if "error" in r else fmt_rate(r) for r in rs)
                              for name, rs in runs.items())
        console.print(f"  [dim]{w.key:<12} {progress} ({w.unit})[/]")
        for name, rs in runs.items():
            for msg in dict.fromkeys(r["error"] for r in rs if "error" in r):
                console.print(f"    [red]{name}: {msg[:400]}[/]")
        entry = {"key": w.key, "title": w.title, "client": w.client, "unit": w.unit, "count": count,
                 "size": w.size, "subs": w.subs, "concurrency": w.concurrency, "servers": {}}
        for name, rs in runs.items():
            best = best_of(rs)
            failed |= best is None
            entry["servers"][name] = {"best": best, "runs": rs}
        b_n = next((v["best"] for k, v in entry["servers"].items() if k.startswith("nats-server")), None)
        b_m = next((v["best"] for k, v in entry["servers"].items() if k.startswith("mq9")), None)
        entry["ratio"] = round(b_m["rate"] / b_n["rate"], 4) if b_n and b_m and b_n.get("rate") else None
        if w.target is not None:
            entry["target"] = w.target
            entry["meets_target"] = entry["ratio"] >= w.target if entry["ratio"] is not None else None
        results.append(entry)
    return results, failed


def chosen_workloads(args: argparse.Namespace) -> list[Workload]:
    known = CLUSTER_WORKLOADS if args.cluster else WORKLOADS
    if not args.workloads:
        return known
    keys = {k.strip() for k in args.workloads.split(",") if k.strip()}
    unknown = keys - {w.key for w in known}
    if unknown:
        raise BenchError(f"unknown workloads {sorted(unknown)}; known: {[w.key for w in known]}")
    return [w for w in known if w.key in keys]


def table_of(results: list[dict], servers: list, args: argparse.Namespace) -> Table:
    if args.cluster:
        title = (f"core NATS across nodes of 3-node clusters (publisher/requester on node 1, subscriber/responder "
                 f"on node 2), 128 B payloads, best of {args.repeats}, higher is better; "
                 f"targets mq9/nats: publish >= {PUB_TARGET}x, request/reply >= {REQREP_TARGET}x")
    else:
        title = f"core NATS, 128 B payloads, best of {args.repeats}, higher is better"
    table = Table(title=title)
    table.add_column("workload")
    table.add_column("client")
    table.add_column("unit")
    for name in (s.name for s in servers):
        table.add_column(name, justify="right")
    if len(servers) == 2:
        table.add_column("mq9/nats", justify="right")
    for e in results:
        row = [e["title"], e["client"], e["unit"]]
        row += [fmt_rate(e["servers"][s.name]["best"]) for s in servers]
        if len(servers) == 2:
            ratio = f"{e['ratio']:.2f}" if e["ratio"] is not None else "-"
            if e.get("meets_target") is not None:
                ratio = f"[green]{ratio}[/]" if e["meets_target"] else f"[red]{e['ratio']:.3f}[/] (< {e['target']})"
            row.append(ratio)
        table.add_row(*row)
    return table


def watch_clusters(servers: list, tails: dict, warnings: dict) -> None:
    """After the workloads: each cluster's log tail, new warnings and Raft view (an election under load)."""
    for s in servers:
        tails[s.name] = s.log_tail()
        warnings[s.name] = s.new_warnings()
        if warnings[s.name]:
            console.print(f"  [yellow]{s.name}: {len(warnings[s.name])} warning/error log lines during "
                          f"the workloads[/], the last:\n    " + "\n    ".join(warnings[s.name][-5:]))
        if s.raft and s.alive():
            s.raft["end"] = s.raft_status()
            console.print(f"  [dim]{s.name} Raft {s.raft_line()}[/]")
            if s.raft_changed():
                console.print(f"  [yellow]{s.name}: the Raft leader or term changed during the run "
                              "(an election under load)[/]")


def main(args: argparse.Namespace) -> int:
    which = [args.only] if args.only else ["nats", "mq9"]
    workloads = chosen_workloads(args)
    if args.cluster:
        deadline = 10.0 if args.quick else 20.0  # per client run; a slower run reports what it got
    else:
        deadline = 15.0 if args.quick else 30.0

    t0 = time.monotonic()
    ensure_packages(need_server="nats" in which)
    build_natsbench()
    info = machine_info()
    console.print(f"[bold]core NATS benchmark{' across cluster nodes' if args.cluster else ''}[/]  "
                  f"{info['cpu_model']}, {info['cores']} cores, "
                  f"load {info['load_avg_at_start'][0]:.2f}, Python {info['python']}, {info['nats_server']}")

    tails: dict = {}
    warnings: dict = {}
    with tempfile.TemporaryDirectory(prefix="mq9-bench-") as tmp:
        servers = make_clusters(which, Path(tmp)) if args.cluster else make_servers(which, Path(tmp), args.profile)
        try:
            for s in servers:
                s.start(timeout=60.0 if args.cluster else 30.0)
                if args.cluster:
                    console.print(f"  {s.name}: {', '.join(n.url for n in s.nodes)}  (routes up "
                                  f"{s.routes_up_s:.1f}s after start; publisher on n1, subscriber on n2)")
                else:
                    console.print(f"  {s.name} on {s.url}" + ("  (under py-spy)" if s.profiled else ""))
            results, failed = run_workloads(servers, workloads, args, deadline)
            if args.cluster:
                watch_clusters(servers, tails, warnings)
        finally:
            for s in servers:
                s.stop()
    elapsed = time.monotonic() - t0

    console.print(table_of(results, servers, args))
    partial = any(v["best"] and not v["best"].get("complete") for e in results for v in e["servers"].values())
    if partial:
        why = ("within its {:.0f}s deadline, without losing messages between nodes (\"stalled\" in the JSON) "
               "and without a failed request" if args.cluster else
               "within its {:.0f}s deadline (or a request failed)").format(deadline)
        console.print(f"[yellow]* = no run completed {why}; the figure covers what was delivered[/]")
    console.print(f"[dim]took {elapsed:.0f}s[/]")
    if args.profile:
        console.print("[yellow]mq9 ran under py-spy: its figures include the profiler's overhead[/]; "
                      f"flame graph: {OUT / 'core_profile.svg'}")

    c_clients = [v["best"]["client"] for e in results for v in e["servers"].values()
                 if v["best"] and str(v["best"].get("client", "")).startswith("nats.c")]
    info["nats_c"] = c_clients[0].split()[-1] if c_clients else "unknown"
    OUT.mkdir(parents=True, exist_ok=True)
    report = {"machine": info, "quick": args.quick, "repeats": args.repeats, "profile": args.profile,
              "deadline_s": deadline, "elapsed_s": round(elapsed, 1), "workloads": results}
    out_file = OUT / ("core_nats_cluster.json" if args.cluster else "core_nats.json")
    if args.cluster:
        report["cluster"] = {s.name: s.describe() for s in servers}
        report["targets"] = {"pub": PUB_TARGET, "reqrep": REQREP_TARGET}
        report["log_tails_at_end"] = tails
        report["log_warnings_during_workloads"] = warnings
    out_file.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"[dim]wrote {out_file.relative_to(REPO)}[/]")
    return 1 if failed else 0
