"""`mq9 top`: a live table of nodes, connections and mailboxes, like `nats top`.

It reads the monitoring endpoints of one or more nodes (`--monitor URL`, repeatable;
`MQ9_MONITOR_URL`), every `--interval` seconds: /raftz and /varz for the node rows,
/connz for the busiest connections, /mailboxz for the fullest mailboxes. Rates are the
difference between two readings divided by the time between them. Plain HTTP with the
standard library: `mq9 top` needs nothing a node does not already serve. `--once`
prints one frame and exits (for scripts and for a terminal without live updates).
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from typing import Optional

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from node.cli.client import fail

console = Console(width=None if sys.stdout.isatty() else 160)  # a pipe gets whole rows, not an 80-column guess


def _get(base: str, path: str, timeout: float = 2.0) -> dict:
    with urllib.request.urlopen(base.rstrip("/") + path, timeout=timeout) as response:
        return json.loads(response.read())


def _rate(now: dict, before: Optional[dict], key: str, seconds: float, unit: int = 1) -> str:
    """Per second between two readings of a counter, in `unit`s (1 << 20: MiB)."""
    if before is None or seconds <= 0:
        return "-"
    value = max(0, now[key] - before[key]) / seconds / unit
    return f"{value:,.1f}" if unit > 1 else f"{value:,.0f}"


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.1f}"


def _table(title: str, left: tuple[str, ...], right: tuple[str, ...]) -> Table:
    table = Table(title=title, title_justify="left")
    for col in left:
        table.add_column(col, overflow="fold")
    for col in right:
        table.add_column(col, justify="right")
    return table


def frame(urls: list[str], previous: dict, limit: int) -> Group:
    """One picture of the cluster; `previous` holds the last readings (updated here)."""
    nodes = _table("Nodes", ("node", "role"), ("conns", "msgs in/s", "msgs out/s", "MiB in/s", "MiB out/s",
                                                "mem MiB", "cpu %", "lag"))
    conns = _table("Connections (busiest first)", ("node", "cid", "name", "lang"),
                   ("subs", "msgs in", "msgs out", "pending"))
    rows: list[tuple] = []
    mailboxes = None
    now = time.monotonic()
    for url in urls:
        try:
            varz, raftz = _get(url, "/varz"), _get(url, "/raftz")
            connz = _get(url, f"/connz?sort=msgs_from&limit={limit}")
            if mailboxes is None:
                mailboxes = _get(url, "/mailboxz?limit=1000")
        except (OSError, ValueError, urllib.error.URLError) as exc:
            nodes.add_row(url, f"[red]unreachable: {exc}[/red]", *[""] * 8)
            continue
        before = previous.get(url)
        seconds = now - before["at"] if before else 0.0
        prev = before["varz"] if before else None
        lag = raftz.get("apply_lag", 0)
        nodes.add_row(varz["server_name"], "[bold]leader[/bold]" if raftz["role"] == "leader" else raftz["role"],
                      str(varz["connections"]), _rate(varz, prev, "in_msgs", seconds),
                      _rate(varz, prev, "out_msgs", seconds),
                      _rate(varz, prev, "in_bytes", seconds, 1 << 20), _rate(varz, prev, "out_bytes", seconds, 1 << 20),
                      _mib(varz["mem"]), f"{varz['cpu']:.0f}", str(lag))
        previous[url] = {"at": now, "varz": varz}
        for c in connz["connections"]:
            rows.append((c["in_msgs"] + c["out_msgs"], varz["server_name"], c))
    for _, node, c in sorted(rows, key=lambda r: -r[0])[:limit]:
        conns.add_row(node, str(c["cid"]), c["name"] or "-", c["lang"] or "-", str(c["subscriptions"]),
                      f"{c['in_msgs']:,}", f"{c['out_msgs']:,}", f"{c['pending_bytes']:,}")
    boxes = _table("Mailboxes (most messages first)", ("mailbox", "public"), ("messages", "MiB", "groups", "in flight"))
    if mailboxes is not None:
        for m in sorted(mailboxes["mailboxes"], key=lambda m: -m["total"])[:limit]:
            boxes.add_row(m["mail_id"], "yes" if m["public"] else "no", f"{m['total']:,}", _mib(m["bytes"]),
                          str(m["groups"]), str(m["in_flight"]))
        boxes.caption = (f"{mailboxes['total_mailboxes']:,} mailboxes, {mailboxes['total_messages']:,} messages "
                         f"stored (counted {mailboxes['census_at']})")
    return Group(nodes, conns, boxes)


def register(app: typer.Typer) -> None:
    @app.command()
    def top(
        monitor: list[str] = typer.Option(
            ["http://127.0.0.1:8222"], "--monitor", "-m", envvar="MQ9_MONITOR_URL",
            help="A node's monitoring URL (its --monitor); repeat for several nodes."),
        interval: float = typer.Option(2.0, "--interval", "-i", help="Seconds between readings."),
        limit: int = typer.Option(10, "--limit", "-n", help="Rows of connections and of mailboxes."),
        once: bool = typer.Option(False, "--once", help="Print one frame and exit."),
    ) -> None:
        """A live view of nodes, connections and mailboxes, read from the monitoring ports (like `nats top`)."""
        urls = [u if "://" in u else f"http://{u}" for item in monitor for u in item.split(",") if u.strip()]
        previous: dict = {}
        try:
            if once:
                console.print(frame(urls, previous, limit))
                return
            with Live(frame(urls, previous, limit), console=console, refresh_per_second=4, screen=False) as live:
                while True:
                    time.sleep(interval)
                    live.update(frame(urls, previous, limit))
        except KeyboardInterrupt:
            pass
        except Exception as exc:  # one line, never a traceback
            fail(f"top: {exc}")
