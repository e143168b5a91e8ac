"""One phase of mq9_bench.py: a fresh cluster of one system, some workloads, the cluster stopped.

A cluster that cannot be made or does not come up turns every workload of the phase
into an error row (with the reason and the node logs), and the run goes on with the
next phase. Before and after each workload the cluster is checked: a node that died on
its own (not the failover's victim) fails the workload, and the rest of the phase.
Every failed mq9 workload carries the nodes' log tails into the report.
"""

from __future__ import annotations

import time
import traceback

from benchmarks.common.install import py_spy_path
from benchmarks.mq9 import console
from benchmarks.mq9.cluster import Cluster
from benchmarks.mq9.js_cluster import JsCluster
from benchmarks.mq9.mq9_cluster import Mq9Cluster
from benchmarks.mq9.plan import SYSTEM_LABEL
from benchmarks.mq9.report import fmt_num
from benchmarks.mq9.workloads import Bench
from harness import HarnessError


def run_phase(bench: Bench, system: str, phase: str, keys: list[str], results: dict, clusters: dict) -> None:
    if not keys:
        return
    args = bench.args
    workdir = bench.workdir / f"{system}-{phase}"
    try:
        if system == "mq9":
            py_spy = py_spy_path(install=True) if args.profile and phase == "main" else None
            cluster: Cluster = Mq9Cluster(args.nodes, workdir, args.mq9_log_level, py_spy)
        else:
            cluster = JsCluster(args.nodes, workdir)
    except HarnessError as exc:  # no free port, no nats-server
        for k in keys:
            results[k] = {"error": str(exc)}
        return
    label = SYSTEM_LABEL[system]
    try:
        t0 = time.monotonic()
        try:
            cluster.start()
        except Exception as exc:
            console.print(f"[bold red]{label} {phase} cluster did not come up:[/] {exc}")
            for k in keys:
                results[k] = {"error": f"{label} cluster did not come up: {str(exc).splitlines()[0]}",
                              "detail": str(exc)}
            return
        info = cluster.describe()
        info["startup_s"] = round(time.monotonic() - t0, 2)
        if cluster.n > 1:
            leader, how = cluster.leader_index()
            info["leader_at_start"] = cluster.nodes[leader].name if leader is not None else None
            info["leader_found_by"] = how
        clusters[f"{system}-{phase}"] = info
        bench.runner.servers = [node.pid for node in cluster.nodes]
        console.print(f"[bold]{label}[/] {phase}: {cluster.n} node(s) up in {info['startup_s']}s "
                      f"({', '.join(cluster.urls)})"
                      + (f", leader {info.get('leader_at_start')}" if cluster.n > 1 else ""))
        for k in keys:
            broken = cluster.broken()
            if broken:
                results[k] = {"error": f"cluster broken before this workload: {broken.splitlines()[0]}",
                              "detail": broken}
                continue
            try:
                if k.startswith("sweep"):
                    r = bench.sweep(cluster, int(k[5:]))
                else:
                    r = getattr(bench, k)(cluster)
            except HarnessError as exc:
                r = {"error": str(exc)}
            except Exception as exc:
                r = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
            broken = cluster.broken()
            if broken and k != "w6":
                r.setdefault("error", f"a node died during this workload: {broken.splitlines()[0]}")
                r["detail"] = broken
            if "error" in r and system == "mq9" and "log_tails" not in r:
                r["log_tails"] = cluster.log_tails()
            results[k] = r
            console.print(f"  {label:>9} {k:<8} {summarize(k, r)}")
    finally:
        cluster.stop()


def summarize(key: str, r: dict) -> str:
    if "na" in r:
        return r["na"]
    if "error" in r:
        return f"[red]error: {r['error'].splitlines()[0][:200]}[/]"
    parts = []
    if "rate" in r:
        parts.append(f"{fmt_num(r['rate'])}/s")
    for k in ("p50_ms", "p99_ms"):
        if r.get(k) is not None:
            parts.append(f"{k[:3]} {r[k]:.2f} ms")
    if "recovery_s" in r:
        parts.append(f"recovered in {r['recovery_s']:.2f}s (killed {r.get('killed_node')})")
    if "peak_rss_mib" in r:
        parts.append(f"peak RSS {r['peak_rss_mib']} MiB, {r.get('disk_bytes_per_msg')} B/msg on disk")
    if "errors_after_kill" in r:
        parts.append(f"{r['errors_after_kill']} failed publishes meanwhile")
    elif not r.get("complete", False):
        parts.append(f"[yellow]incomplete ({r.get('errors', 0)} errors)[/]")
    if r.get("wall_s") and "client_cpu_s" in r:
        busiest = max(r.get("server_cpu_s") or [0.0])
        parts.append(f"[dim]cpu: client {r['client_cpu_s'] / r['wall_s']:.0%}, "
                     f"busiest server {busiest / r['wall_s']:.0%} of a core[/]")
    return ", ".join(parts)
