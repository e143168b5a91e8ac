"""Mailbox commands for people: create, send, sub, list, info, public.

Each is a NATS client built on `node.cli.client` (options, connect, request). Output
is a rich table or line for people, or JSON (one object per line for streams) with
`--json` for scripts. Errors from the broker are printed with their code and make the
command exit with status 1.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Optional

import typer
from rich.table import Table

from node.cli.client import (
    JsonOpt, ServerOpt, TimeoutOpt, connect, console, fail, print_json, request, when, with_connection_options,
)


def register(app: typer.Typer) -> None:
    """Add the mailbox commands to the `mq9` app."""

    @app.command()
    @with_connection_options
    def create(
        ttl: int = typer.Option(86400, "--ttl", help="Seconds until the mailbox expires (0: never)."),
        public: bool = typer.Option(False, "--public", help="List it in $mq9.AI.PUBLIC.LIST (needs --name)."),
        name: Optional[str] = typer.Option(None, "--name", help="Use this name as the mail id."),
        desc: str = typer.Option("", "--desc", help="Description shown in PUBLIC.LIST."),
        ack_wait: Optional[float] = typer.Option(None, "--ack-wait", help="Queue-group ack deadline in seconds."),
        max_in_flight: Optional[int] = typer.Option(None, "--max-in-flight", help="Unacked messages per member."),
        server: list[str] = ServerOpt, as_json: bool = JsonOpt, timeout: float = TimeoutOpt,
    ) -> None:
        """Create a mailbox and print its mail id."""
        body: dict = {"ttl": ttl}
        if public:
            body["public"] = True
        if name:
            body["name"] = name
        if desc:
            body["desc"] = desc
        if ack_wait is not None:
            body["ack_wait"] = ack_wait
        if max_in_flight is not None:
            body["max_in_flight"] = max_in_flight
        reply = asyncio.run(request(server, "$mq9.AI.MAILBOX.CREATE", json.dumps(body).encode(), timeout))
        if as_json:
            print_json(reply)
        elif not sys.stdout.isatty():  # `id=$(mq9 create)` gets the id alone
            print(reply["mail_id"])
        else:
            state = "created" if reply["is_new"] else "already existed"
            console.print(f"[bold]{reply['mail_id']}[/bold] ({state}, expires {when(reply.get('expires_at'))})")

    @app.command()
    @with_connection_options
    def send(
        mail_id: str = typer.Argument(..., help="The mailbox to send to."),
        body: str = typer.Argument(..., help="The message body ('-' reads standard input)."),
        priority: str = typer.Option("normal", "--priority", "-p", help="critical, urgent, high, normal or low."),
        header: list[str] = typer.Option([], "--header", "-H", help="K:V header; repeat for more."),
        msg_id: Optional[str] = typer.Option(None, "--msg-id", help="Nats-Msg-Id for safe retries."),
        server: list[str] = ServerOpt, as_json: bool = JsonOpt, timeout: float = TimeoutOpt,
    ) -> None:
        """Store a message in a mailbox and print its msg id."""
        payload = sys.stdin.buffer.read() if body == "-" else body.encode()
        headers = {}
        for item in header:
            key, sep, value = item.partition(":")
            if not sep:
                fail(f"header {item!r} is not K:V")
            headers[key.strip()] = value.strip()
        if msg_id:
            headers["Nats-Msg-Id"] = msg_id

        async def run() -> dict:
            from nats.errors import TimeoutError as NatsTimeout

            nc = await connect(server)
            limit = nc.max_payload
            if len(payload) > limit:
                await nc.close()
                fail(f"the body is {len(payload):,} bytes; this broker takes at most {limit:,} (its max_payload)")
            try:
                msg = await nc.request(f"$mq9.AI.MAILBOX.MSG.{mail_id}.{priority}", payload, timeout=timeout,
                                       headers=headers or None)
            except NatsTimeout:
                fail(f"no reply within {timeout}s")
            except Exception as exc:  # one line, never a traceback
                fail(f"send failed: {exc or type(exc).__name__}")
            finally:
                await nc.close()
            return json.loads(msg.data)

        reply = asyncio.run(run())
        if "error" in reply:
            fail(reply["error"], reply.get("code"))
        if as_json:
            print_json(reply)
        elif not sys.stdout.isatty():  # `msg=$(mq9 send ...)` gets the msg id alone
            print(reply["msg_id"])
        else:
            console.print(f"stored [bold]{reply['msg_id']}[/bold] in {reply['mail_id']} ({priority})")

    @app.command()
    @with_connection_options
    def sub(
        mail_id: str = typer.Argument(..., help="The mailbox to receive from."),
        priority: str = typer.Option("*", "--priority", "-p", help="Only this priority word ('*': all)."),
        queue: Optional[str] = typer.Option(None, "--queue", "-q", help="Join this queue group."),
        ack: bool = typer.Option(False, "--ack", help="Acknowledge (consume) each message after printing it."),
        count: int = typer.Option(0, "--count", "-n", help="Exit after this many messages (0: run until Ctrl-C)."),
        wait: float = typer.Option(0.0, "--wait", help="Exit if nothing arrives for this many seconds (0: wait forever)."),
        server: list[str] = ServerOpt, as_json: bool = JsonOpt,
    ) -> None:
        """Print stored messages (highest priority first), then new ones as they arrive."""

        async def run() -> None:
            nc = await connect(server)
            got = 0
            done = asyncio.Event()
            last = asyncio.get_running_loop().time()

            async def on_msg(msg) -> None:
                nonlocal got, last
                last = asyncio.get_running_loop().time()
                h = msg.headers or {}
                word = msg.subject.rsplit(".", 1)[-1]
                text = msg.data.decode(errors="replace")
                if as_json:
                    print_json({"msg_id": h.get("mq9-msg-id"), "priority": word, "ts": int(h.get("mq9-ts", 0)),
                                 "delivery": int(h.get("mq9-delivery", 1)), "payload": text,
                                 "headers": {k: v for k, v in h.items() if not k.startswith("mq9-")}})
                else:
                    console.print(f"[cyan]{word:>8}[/cyan] [dim]{h.get('mq9-msg-id')}[/dim] {text}", markup=True,
                                  highlight=False)
                if ack and msg.reply:
                    await nc.request(msg.reply, b"+ACK", timeout=5)
                got += 1
                if count and got >= count:
                    done.set()

            await nc.subscribe(f"$mq9.AI.MAILBOX.MSG.{mail_id}.{priority}", queue=queue or "", cb=on_msg)
            await nc.flush()
            try:
                while not done.is_set():
                    try:
                        await asyncio.wait_for(done.wait(), 0.1)
                    except asyncio.TimeoutError:
                        if wait and asyncio.get_running_loop().time() - last > wait:
                            break
            finally:
                await nc.drain()

        try:
            asyncio.run(run())
        except KeyboardInterrupt:
            pass

    @app.command(name="list")
    @with_connection_options
    def list_(
        mail_id: str = typer.Argument(..., help="The mailbox to inspect."),
        server: list[str] = ServerOpt, as_json: bool = JsonOpt, timeout: float = TimeoutOpt,
    ) -> None:
        """List a mailbox's stored messages in delivery order (no payloads)."""
        reply = asyncio.run(request(server, f"$mq9.AI.MAILBOX.LIST.{mail_id}", b"{}", timeout))
        if as_json:
            print_json(reply)
            return
        table = Table(title=f"{mail_id}: {len(reply['messages'])} message(s)")
        table.add_column("msg id", style="bold")
        table.add_column("priority", style="cyan")
        table.add_column("stored at")
        for item in reply["messages"]:
            table.add_row(item["msg_id"], item["priority"], when(item["ts"]))
        console.print(table)

    @app.command()
    @with_connection_options
    def info(
        mail_id: str = typer.Argument(..., help="The mailbox to describe."),
        server: list[str] = ServerOpt, as_json: bool = JsonOpt, timeout: float = TimeoutOpt,
    ) -> None:
        """Show a mailbox's settings, message counts and queue groups."""
        reply = asyncio.run(request(server, f"$mq9.AI.MAILBOX.INFO.{mail_id}", b"{}", timeout))
        if as_json:
            print_json(reply)
            return
        table = Table(title=mail_id, show_header=False)
        for key in ("public", "name", "desc", "ttl", "ack_wait", "max_in_flight"):
            table.add_row(key, str(reply[key]))
        table.add_row("expires", when(reply["expires_at"]))
        table.add_row("messages", ", ".join(f"{k} {v}" for k, v in reply["messages"].items()))
        for group in reply["groups"]:
            table.add_row(f"group {group['name']}", f"{len(group['members'])} member(s), {group['in_flight']} in flight")
        console.print(table)

    @app.command()
    @with_connection_options
    def public(
        watch: bool = typer.Option(False, "--watch", "-w", help="Keep printing created/expired events."),
        server: list[str] = ServerOpt, as_json: bool = JsonOpt, timeout: float = TimeoutOpt,
    ) -> None:
        """List public mailboxes (discovery), or watch them come and go."""
        if not watch:
            reply = asyncio.run(request(server, "$mq9.AI.PUBLIC.LIST", b"{}", timeout))
            if as_json:
                print_json(reply)
                return
            table = Table(title=f"{len(reply['mailboxes'])} public mailbox(es)")
            for col in ("mail id", "description", "ttl", "expires"):
                table.add_column(col)
            for mb in reply["mailboxes"]:
                table.add_row(mb["mail_id"], mb["desc"], str(mb["ttl"]), when(mb["expires_at"]))
            console.print(table)
            return

        async def run() -> None:
            nc = await connect(server)

            async def on_event(msg) -> None:
                event = json.loads(msg.data)
                if as_json:
                    print_json(event)
                else:
                    console.print(f"[cyan]{event['event']:>8}[/cyan] {event['mail_id']} {event.get('desc', '')}")

            await nc.subscribe("$mq9.AI.PUBLIC.LIST", cb=on_event)
            await asyncio.Event().wait()

        try:
            asyncio.run(run())
        except KeyboardInterrupt:
            pass
