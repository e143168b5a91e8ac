"""One mq9_bench.py run: every round, system and phase, then the table, the notes and the report.

The systems take turns going first from round to round, so a machine that slows down
during a run does not always hurt the same one. Temporary data and logs live in one
directory, removed at the end unless --keep. The JSON report (out/mq9_bench.json) has
the machine, the configuration, each phase's cluster, the table, every result (medians
when rounds > 1) and each round's, the window sweep, and the notes printed under the
table; the exit status is 1 if any workload reported an error.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from benchmarks.common import OUT, REPO
from benchmarks.common.install import build_natsbench, ensure_packages, py_spy_path
from benchmarks.common.machine import machine_info
from benchmarks.mq9 import console
from benchmarks.mq9.phases import run_phase
from benchmarks.mq9.plan import (FULL, JSON_OUT, PHASES, QUICK, SWEEP_PNG, SWEEP_WINDOWS, SYSTEM_LABEL, phase_keys,
                                 table_rows)
from benchmarks.mq9.report import build_table, merge_rounds, plot_sweep
from benchmarks.mq9.runner import Runner
from benchmarks.mq9.workloads import Bench


def run_rounds(args: argparse.Namespace, systems: list[str], clusters: dict) -> list[dict[str, dict]]:
    rounds: list[dict[str, dict]] = []
    workdir = Path(tempfile.mkdtemp(prefix="mq9-bench-"))
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, transient=True, disable=not console.is_terminal)
    try:
        with progress:
            bench = Bench(args, Runner(progress, workdir), workdir)
            for number in range(max(1, args.rounds)):
                if args.rounds > 1:
                    console.print(f"[bold]round {number + 1} of {args.rounds}[/]")
                results: dict[str, dict] = {s: {} for s in systems}
                for system in (systems if number % 2 == 0 else systems[::-1]):  # take turns going first
                    for phase, keys in PHASES:
                        keys = phase_keys(args, keys)
                        if keys == ["w6"] and args.nodes < 3:
                            results[system]["w6"] = {"na": "n/a (1 node)"}
                            continue
                        run_phase(bench, system, phase, keys, results[system],
                                  clusters if number == 0 else {})
                rounds.append(results)
    finally:
        if args.keep:
            console.print(f"[dim]kept {workdir}[/]")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return rounds


def notes_for(args: argparse.Namespace, rounds: list, results: dict, systems: list[str]) -> list[str]:
    notes = [
        "* = stopped at its time cap, or saw errors / lost messages: the figure covers what was done",
        "ratio = mq9 / JetStream: above 1 is better for mq9 on 'higher is better' rows, worse on 'lower' rows",
        "nats-server's file store syncs to disk every 2 minutes by default (sync_interval); mq9 commits "
        "through its Raft journal: durability policies differ",
        "mq9 nodes log at --mq9-log-level (default info: lifecycle lines only) so the leader can be read from "
        "the logs",
    ]
    if len(rounds) > 1:
        notes.append(f"{len(rounds)} rounds, the systems taking turns to go first: figures are medians, the ratio "
                     "is the median of the per-round ratios, [low-high] their range")
    if args.no_c:
        notes.append("nats.c variants skipped (--no-c)")
    if args.profile:
        notes.append("mq9 nodes of the main phase ran under py-spy (figures include its overhead): "
                     + ", ".join(f"out/mq9_node{i + 1}.svg" for i in range(args.nodes)))
    if args.window_sweep:
        notes.append(plot_sweep(results, systems, SWEEP_PNG))
    return notes


def print_errors(rounds: list, systems: list[str]) -> list:
    errs = [(s, k, r) for one in rounds for s in systems for k, r in one[s].items() if "error" in r]
    if errs:
        console.print("[bold red]errors[/]")
        for s, k, r in errs:
            console.print(f"  [red]{SYSTEM_LABEL[s]} {k}:[/] {r['error'][:600]}")
        shown = set()
        for s, k, r in errs:
            tails = r.get("log_tails") or r.get("detail")
            if tails and tails not in shown and s == "mq9":
                shown.add(tails)
                console.print(f"[dim]mq9 node logs after {k}:[/]\n{tails}")
    return errs


def main(args: argparse.Namespace) -> int:
    systems = [args.only] if args.only else ["js", "mq9"]
    t0 = time.monotonic()
    ensure_packages(need_server="js" in systems)
    build_natsbench()
    if args.profile and "mq9" in systems:
        py_spy_path(install=True)
    info = machine_info(more=True)
    sizes = QUICK if args.quick else FULL
    console.print(f"[bold]mq9 vs JetStream[/]  {info['cpu_model']}, {info['cores']} cores, {info.get('ram_gib')} GiB, "
                  f"kernel {info['kernel']}, load {info['load_avg_at_start'][0]:.2f}, Python {info['python']}, "
                  f"{info['nats_server']}, commit {info['git_commit']}{' (dirty)' if info.get('git_dirty') else ''}")
    console.print(f"[dim]{'quick' if args.quick else 'full'} run, {args.nodes} node(s), workloads "
                  f"{','.join(map(str, args.workloads))}{', window sweep' if args.window_sweep else ''}"
                  f"{', mq9 under py-spy' if args.profile else ''}[/]")

    clusters: dict[str, dict] = {}
    rounds = run_rounds(args, systems, clusters)
    elapsed = time.monotonic() - t0

    results = merge_rounds(rounds, systems)
    table, rows = build_table(table_rows(args.window_sweep), results, systems, sizes, args.nodes,
                              rounds if len(rounds) > 1 else None)
    console.print(table)
    notes = notes_for(args, rounds, results, systems)
    for n in notes:
        console.print(f"[dim]{escape(n)}[/]")
    errs = print_errors(rounds, systems)
    console.print(f"[dim]took {elapsed:.0f}s[/]")

    c_clients = [r.get("client", "") for s in systems for r in results[s].values()
                 if str(r.get("client", "")).startswith("nats.c")]
    info["nats_c"] = c_clients[0].split()[-1] if c_clients else "unknown"
    OUT.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": info,
        "config": {"nodes": args.nodes, "quick": args.quick, "only": args.only, "workloads": args.workloads,
                   "no_c": args.no_c, "profile": args.profile, "rounds": args.rounds, "window_sweep": args.window_sweep,
                   "mq9_log_level": args.mq9_log_level, "sizes": sizes.__dict__},
        "clusters": clusters,
        "table": rows,
        "results": {SYSTEM_LABEL[s]: results[s] for s in systems},  # medians when rounds > 1
        "rounds": [{SYSTEM_LABEL[s]: one[s] for s in systems} for one in rounds] if len(rounds) > 1 else None,
        "window_sweep": {SYSTEM_LABEL[s]: [{"window": w, **{k: results[s].get(f"sweep{w}", {}).get(k)
                                                           for k in ("rate", "p50_ms", "p99_ms", "error")}}
                                          for w in SWEEP_WINDOWS] for s in systems} if args.window_sweep else None,
        "notes": notes,
        "elapsed_s": round(elapsed, 1),
    }
    JSON_OUT.write_text(json.dumps(report, indent=2, default=str) + "\n")
    console.print(f"[dim]wrote {JSON_OUT.relative_to(REPO)}[/]")
    return 1 if errs else 0
