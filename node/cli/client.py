"""How every `mq9` client command reaches a broker: shared options, connect, request, output.

The commands are ordinary NATS clients (nats-py), exactly like an agent: they talk to
any node given with `--server` (one or more URLs; `MQ9_SERVER` or `NATS_URL` also
work). A broker's error reply or a failed request becomes one line on stderr and exit
status 1. nats-py is imported when a command runs, so `mq9 --help` stays quick.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)

ServerOpt = typer.Option(
    ["nats://127.0.0.1:4222"], "--server", "-s", envvar=["MQ9_SERVER", "NATS_URL"],
    help="NATS URL of any node; repeat or comma-separate for several.",
)
JsonOpt = typer.Option(False, "--json", help="Machine-readable JSON output.")
TimeoutOpt = typer.Option(5.0, "--timeout", help="Seconds to wait for a reply.")


def servers_of(values: list[str]) -> list[str]:
    out = []
    for v in values:
        out.extend(p.strip() for p in v.split(",") if p.strip())
    return [u if "://" in u else f"nats://{u}" for u in out]


async def connect(servers: list[str]):
    import nats

    return await nats.connect(servers=servers_of(servers), connect_timeout=3, max_reconnect_attempts=3,
                              allow_reconnect=True, name="mq9-cli")


def fail(text: str, code: int | None = None) -> None:
    err_console.print(f"[red]error[/red]{f' {code}' if code else ''}: {text}")
    raise typer.Exit(1)


async def request(servers: list[str], subject: str, body: bytes, timeout: float) -> dict:
    from nats.errors import NoRespondersError, TimeoutError as NatsTimeout

    nc = await connect(servers)
    try:
        msg = await nc.request(subject, body, timeout=timeout)
    except NatsTimeout:
        fail(f"no reply within {timeout}s")
    except NoRespondersError:
        fail("no responders (is this an mq9 node?)")
    finally:
        await nc.close()
    reply = json.loads(msg.data)
    if "error" in reply:
        fail(reply["error"], reply.get("code"))
    return reply


def when(ms: int | None) -> str:
    if not ms:
        return "never"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def print_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()
