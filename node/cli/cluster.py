"""Operator commands: `mq9 local-cluster` (three nodes on loopback) and `mq9 cluster status`.

`local-cluster` runs N `mq9 serve` processes with ports 4222+i (clients) and 6222+i
(Raft), data under `--data`, and prints their logs interleaved with a coloured prefix;
Ctrl-C drains and stops them all. `cluster status` asks the given node, then every
node it knows (INFO `connect_urls`), for its Raft view on `$mq9.AI.NODE.STATUS` and
shows leader, term, commit and applied index and lag per node.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from node.cli.client import ServerOpt, connect, servers_of, with_connection_options

console = Console()
cluster_app = typer.Typer(help="Inspect a running cluster.", no_args_is_help=True)
COLORS = ["cyan", "magenta", "green", "yellow", "blue", "red", "white"]


async def _node_status(url: str, timeout: float) -> dict:
    nc = await connect([url], connect_timeout=2, max_reconnect_attempts=1, allow_reconnect=False)
    try:
        msg = await nc.request("$mq9.AI.NODE.STATUS", b"", timeout=timeout)
        status = json.loads(msg.data)
        status["connect_urls"] = nc._server_info.get("connect_urls", [])
        return status
    finally:
        await nc.close()


async def gather_status(servers: list[str], timeout: float = 3.0) -> dict:
    """Every reachable node's status, found from the given URLs and their connect_urls."""
    todo = list(servers_of(servers))
    seen: set[str] = set()
    nodes: list[dict] = []
    errors: dict[str, str] = {}
    while todo:
        url = todo.pop(0)
        if url in seen:
            continue
        seen.add(url)
        try:
            status = await _node_status(url, timeout)
        except Exception as exc:  # a dead node is part of the picture
            errors[url] = str(exc) or type(exc).__name__
            continue
        nodes.append(status)
        for other in status.get("connect_urls", []) + [p["client_url"] for p in status.get("peers", []) if p["client_url"]]:
            other_url = other if "://" in other else f"nats://{other}"
            if other_url not in seen:
                todo.append(other_url)
    by_raft = {}
    for n in nodes:
        by_raft.setdefault(n["raft"], n)
    nodes = sorted(by_raft.values(), key=lambda n: n["name"])
    leaders = [n for n in nodes if n["state"] == "leader"]
    leader = leaders[0]["name"] if len(leaders) == 1 else None
    top_commit = max((n["commit_index"] or 0 for n in nodes), default=0)
    for n in nodes:
        n["lag"] = top_commit - (n["applied_index"] or 0)
    return {"leader": leader, "nodes": nodes, "unreachable": errors}


@cluster_app.command()
@with_connection_options
def status(
    server: list[str] = ServerOpt,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON; top-level 'leader' names the leader."),
    timeout: float = typer.Option(3.0, "--timeout", help="Seconds to wait for each node."),
) -> None:
    """Show leader, term, commit and applied index and lag of every node."""
    result = asyncio.run(gather_status(server, timeout))
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    table = Table(title=f"leader: {result['leader'] or 'none'}")
    for col in ("node", "role", "term", "commit", "applied", "lag", "quorum"):
        table.add_column(col, no_wrap=True)
    table.add_column("raft", overflow="fold")
    table.add_column("clients", overflow="fold")
    for n in result["nodes"]:
        role = n["state"]
        style = "bold green" if role == "leader" else ""
        table.add_row(n["name"], f"[{style}]{role}[/{style}]" if style else role, str(n["term"]),
                      str(n["commit_index"]), str(n["applied_index"]), str(n["lag"]),
                      "yes" if n["has_quorum"] else "no", n["raft"], n["client_url"])
    console.print(table)
    for url, err in result["unreachable"].items():
        console.print(f"[red]unreachable[/red] {url}: {err}")
    if not result["nodes"]:
        raise typer.Exit(1)


def local_cluster(
    nodes: int = typer.Option(3, "--nodes", "-n", help="How many nodes (odd numbers survive failures)."),
    base_port: int = typer.Option(4222, "--base-port", help="Client port of the first node; Raft ports are +2000."),
    data: str = typer.Option("./data/local", "--data", help="Each node keeps its data in DATA/nI."),
    cluster_secret: str = typer.Option("", "--cluster-secret", envvar="MQ9_CLUSTER_SECRET",
                                       help="Shared secret for Raft traffic."),
    log_level: str = typer.Option("info", "--log-level", help="Log level of every node."),
    name_prefix: Optional[str] = typer.Option("n", "--name-prefix", help="Nodes are named PREFIX1, PREFIX2, ..."),
    monitor_port: int = typer.Option(8222, "--monitor-port", help="Monitoring port of the first node (the next are +1, "
                                                                    "on 127.0.0.1); 0: no monitoring ports."),
) -> None:
    """Start a cluster of NODES nodes on loopback in the foreground, with their logs."""
    names = [f"{name_prefix}{i + 1}" for i in range(nodes)]
    rafts = [f"127.0.0.1:{base_port + 2000 + i}" for i in range(nodes)]
    procs: list[subprocess.Popen] = []
    for i, name in enumerate(names):
        cmd = [sys.executable, "-m", "node.cli", "serve", "--name", name, "--listen", f"127.0.0.1:{base_port + i}",
               "--data", os.path.join(data, name), "--raft", rafts[i], "--log-level", log_level]
        if monitor_port:
            cmd += ["--monitor", f"127.0.0.1:{monitor_port + i}"]
        for j, other in enumerate(rafts):
            if j != i:
                cmd += ["--peer", other]
        env = dict(os.environ)
        if cluster_secret:
            env["MQ9_CLUSTER_SECRET"] = cluster_secret
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                                      start_new_session=True))
    urls = ",".join(f"nats://127.0.0.1:{base_port + i}" for i in range(nodes))
    console.print(f"[bold]{nodes} nodes[/bold]: {urls}  (Ctrl-C stops them)")
    if monitor_port:
        console.print(f"web console and monitoring: http://127.0.0.1:{monitor_port}/ (and ports up to "
                      f"{monitor_port + nodes - 1})")

    def pump(i: int) -> None:
        color = COLORS[i % len(COLORS)]
        for line in procs[i].stdout:
            console.print(f"[{color}]{names[i]:>4}[/{color}] {line.rstrip()}", highlight=False, markup=True,
                          soft_wrap=True)

    threads = [threading.Thread(target=pump, args=(i,), daemon=True) for i in range(nodes)]
    for t in threads:
        t.start()
    stopping = threading.Event()

    def stop(*_: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping.is_set() and all(p.poll() is None for p in procs):
        stopping.wait(0.2)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
    for t in threads:
        t.join(1)
    failed = [names[i] for i, p in enumerate(procs) if p.returncode not in (0, -signal.SIGTERM)]
    if failed:
        console.print(f"[red]node(s) exited with an error: {', '.join(failed)}[/red]")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(cluster_app, name="cluster")
    app.command(name="local-cluster")(local_cluster)
