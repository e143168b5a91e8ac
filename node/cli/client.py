"""How every `mq9` client command reaches a broker: shared options, connect, request, output.

The commands are ordinary NATS clients (nats-py), exactly like an agent: they talk to
any node given with `--server` (one or more URLs; `MQ9_SERVER` or `NATS_URL` also
work). Credentials come as the nats CLI takes them: in the URL
(`nats://user:pass@host:4222`), `--user`/`--password`, `--token`, `--creds FILE`
(a JWT and seed), `--nkey FILE` (an nkey seed), and TLS with `--tls-ca`, `--tls-cert`
and `--tls-key` (each also as `NATS_*`). `@with_connection_options` adds these options
to a command, so each command's signature lists only its own. A broker's error reply
or a failed request becomes one line on stderr and exit status 1. nats-py is imported
when a command runs, so `mq9 --help` stays quick.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
from datetime import datetime, timezone

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # an error is one line, however long

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


def _option(name: str, flag: str, env: str, text: str) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=str,
                             default=typer.Option("", flag, envvar=env, help=text, rich_help_panel="Connection"))


CONNECTION_OPTIONS = (
    _option("conn_user", "--user", "NATS_USER", "User name (or put it in the URL: nats://user:pass@host:4222)."),
    _option("conn_password", "--password", "NATS_PASSWORD", "Password for --user."),
    _option("conn_token", "--token", "NATS_TOKEN", "Token the broker requires (its --auth)."),
    _option("conn_creds", "--creds", "NATS_CREDS", "Credentials file (user JWT and nkey seed)."),
    _option("conn_nkey", "--nkey", "NATS_NKEY", "File with an nkey user seed (SU...)."),
    _option("conn_tls_ca", "--tls-ca", "NATS_CA", "CA certificate to verify the broker's TLS certificate."),
    _option("conn_tls_cert", "--tls-cert", "NATS_CERT", "Client certificate, for a broker that verifies clients."),
    _option("conn_tls_key", "--tls-key", "NATS_KEY", "Key of --tls-cert."),
)
_connection: dict[str, str] = {}  # the running command's connection options


def with_connection_options(command):
    """Add the connection options to a typer command; `connect` uses what was given."""
    names = [p.name for p in CONNECTION_OPTIONS]

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        _connection.update({name: kwargs.pop(name, "") for name in names})
        return command(*args, **kwargs)

    signature = inspect.signature(command)
    wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), *CONNECTION_OPTIONS])
    return wrapper


def connect_options() -> dict:
    """nats.connect keyword arguments for the credentials and TLS the command was given."""
    o = _connection
    kw: dict = {}
    if o.get("conn_user"):
        kw["user"], kw["password"] = o["conn_user"], o.get("conn_password", "")
    if o.get("conn_token"):
        kw["token"] = o["conn_token"]
    if o.get("conn_creds"):
        kw["user_credentials"] = o["conn_creds"]
    if o.get("conn_nkey"):
        kw["nkeys_seed"] = o["conn_nkey"]
    if o.get("conn_tls_ca") or o.get("conn_tls_cert"):
        import ssl

        context = ssl.create_default_context(cafile=o.get("conn_tls_ca") or None)
        if o.get("conn_tls_cert"):
            context.load_cert_chain(o["conn_tls_cert"], o.get("conn_tls_key") or None)
        kw["tls"] = context
    return kw


async def connect(servers: list[str], **extra):
    import nats

    seen: list[BaseException] = []

    async def remember(exc: BaseException) -> None:  # nats-py would log each with a traceback
        seen.append(exc)

    options = dict(connect_timeout=3, max_reconnect_attempts=3, allow_reconnect=True, name="mq9-cli",
                   error_cb=remember)
    options.update(extra)
    try:
        return await nats.connect(servers=servers_of(servers), **connect_options(), **options)
    except Exception as exc:  # one line, never a traceback: refused credentials, TLS, nobody listening
        fail(f"cannot connect to {', '.join(servers_of(servers))}: {_why(seen[-1] if seen else exc)}")


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return "authorization violation (wrong or missing credentials)" if "authorization" in text.lower() else text


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
