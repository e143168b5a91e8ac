"""The `mq9` command: run a node (`serve`) and, for people, talk to one.

Every option of `serve` can also come from an `MQ9_*` environment variable (shown in
`--help`), so the same image runs under docker compose with environment only.
"""

from __future__ import annotations

from typing import Optional

import typer

from node.cli import certs as cli_certs
from node.cli import cluster as cli_cluster
from node.cli import mailbox as cli_mailbox
from node.cli import top as cli_top
from node.auth import config as security_config
from node.cli.client import err_console
from node.config import Settings, parse_hostport

app = typer.Typer(
    name="mq9",
    help="mq9-cluster: durable agent mailboxes over the NATS protocol, replicated with Raft.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,  # locals may hold the cluster secret
)


@app.callback()
def main() -> None:
    """mq9-cluster: durable agent mailboxes over the NATS protocol, replicated with Raft."""


def _settings_from_flags(
    name: str,
    listen: str,
    data: str,
    max_payload: int,
    log_level: str,
    raft: Optional[str],
    peer: list[str],
    cluster_secret: str,
    advertise: str,
    ping_interval: float,
    max_pending: int,
    compact_entries: int = 50_000,
    compact_seconds: float = 120.0,
    routes: str = "",
    monitor: str = "",
    log_format: str = "text",
    security: dict | None = None,
) -> Settings:
    host, port = parse_hostport(listen, 4222)
    settings = Settings(
        name=name,
        host=host,
        port=port,
        data_dir=data,
        max_payload=max_payload,
        max_pending=max_pending,
        log_level=log_level,
        cluster_secret=cluster_secret,
        advertise=advertise,
        ping_interval=ping_interval,
        compact_min_entries=compact_entries,
        compact_min_time_s=compact_seconds,
        routes=routes,
        monitor=monitor,
        log_format=log_format,
        **(security or {}),
    )
    if settings.monitor and settings.monitor_listen is None:  # parsing raises on a bad HOST:PORT
        raise ValueError(f"--monitor {settings.monitor!r}: expected HOST:PORT or PORT")
    if raft:
        raft_host, raft_port = parse_hostport(raft, port + 2000)
        settings = settings.replace(raft_host=raft_host, raft_port=raft_port)
    peers: list[str] = []
    for item in peer:
        for part in item.replace(",", " ").split():
            h, p = parse_hostport(part)
            peers.append(f"{h}:{p}")
    return settings.replace(peers=tuple(peers))


@app.command()
def serve(
    name: str = typer.Option("", "--name", envvar="MQ9_NAME", help="Server name shown in INFO and logs."),
    listen: str = typer.Option(
        "127.0.0.1:4222", "--listen", envvar="MQ9_LISTEN", help="HOST:PORT for NATS clients."
    ),
    data: str = typer.Option("./data", "--data", envvar="MQ9_DATA", help="Directory for RocksDB and the Raft journal."),
    max_payload: int = typer.Option(
        1 << 20, "--max-payload", envvar="MQ9_MAX_PAYLOAD", help="Largest message body in bytes (nats-server's max_payload)."
    ),
    log_level: str = typer.Option("info", "--log-level", envvar="MQ9_LOG_LEVEL", help="debug, info, warning or error."),
    raft: Optional[str] = typer.Option(
        None, "--raft", envvar="MQ9_RAFT", help="HOST:PORT for Raft traffic \\[default: client port + 2000]."
    ),
    peer: list[str] = typer.Option(
        [], "--peer", envvar="MQ9_PEERS", help="Raft HOST:PORT of another member; repeat, or comma-separate in MQ9_PEERS."
    ),
    cluster_secret: str = typer.Option(
        "", "--cluster-secret", envvar="MQ9_CLUSTER_SECRET", help="Shared secret that authenticates Raft and route traffic."
    ),
    advertise: str = typer.Option(
        "", "--advertise", envvar="MQ9_ADVERTISE", help="Client HOST:PORT other nodes give to clients \\[default: --listen]."
    ),
    ping_interval: float = typer.Option(
        120.0, "--ping-interval", envvar="MQ9_PING_INTERVAL", help="Seconds between server PINGs to idle clients."
    ),
    max_pending: int = typer.Option(
        64 << 20, "--max-pending", envvar="MQ9_MAX_PENDING", help="Unsent bytes per client before it is cut off as a slow consumer."
    ),
    compact_entries: int = typer.Option(
        50_000, "--compact-entries", envvar="MQ9_COMPACT_ENTRIES", help="Snapshot the state after this many Raft log entries..."
    ),
    compact_seconds: float = typer.Option(
        120.0, "--compact-seconds", envvar="MQ9_COMPACT_SECONDS", help="...or this many seconds, whichever comes first."
    ),
    routes: str = typer.Option(
        "", "--routes", envvar="MQ9_ROUTES",
        help="HOST:PORT for core NATS routes between nodes \\[default: Raft host, Raft port - 1000]; peers' routes are their Raft port - 1000.",
    ),
    monitor: str = typer.Option(
        "", "--monitor", "-m", envvar="MQ9_MONITOR",
        help="HOST:PORT (or PORT, on 127.0.0.1) for the HTTP monitoring port: /healthz, /varz, /connz, /raftz, "
             "/mailboxz, /metrics and the web console \\[default: off; nats-server's is 8222].",
    ),
    log_format: str = typer.Option(
        "text", "--log-format", envvar="MQ9_LOG_FORMAT", help="text (nats-server's layout) or json (one object per line, for log shippers).",
    ),
    config: str = typer.Option(
        "", "--config", "-c", envvar="MQ9_CONFIG",
        help="TOML file with [authorization] (users, permissions), [limits] and [tls]; re-read on SIGHUP (mq9 reload).",
    ),
    auth: str = typer.Option("", "--auth", envvar="MQ9_AUTH", help="Token clients must give (plain or a bcrypt hash)."),
    user: str = typer.Option("", "--user", envvar="MQ9_USER", help="User clients must give, with --pass."),
    password: str = typer.Option("", "--pass", envvar="MQ9_PASS", help="Password for --user (plain or a bcrypt hash)."),
    max_connections: int = typer.Option(0, "--max-connections", envvar="MQ9_MAX_CONNECTIONS",
                                        help="Client connections at most (0: no limit)."),
    max_subscriptions: int = typer.Option(0, "--max-subscriptions", envvar="MQ9_MAX_SUBSCRIPTIONS",
                                          help="Subscriptions per connection at most (0: no limit)."),
    tls_cert: str = typer.Option("", "--tls-cert", envvar="MQ9_TLS_CERT", help="Server certificate (PEM): clients must use TLS."),
    tls_key: str = typer.Option("", "--tls-key", envvar="MQ9_TLS_KEY", help="Key of --tls-cert (PEM)."),
    tls_ca: str = typer.Option("", "--tls-ca", envvar="MQ9_TLS_CA", help="CA (PEM) that signs client certificates."),
    tls_verify: bool = typer.Option(False, "--tls-verify", envvar="MQ9_TLS_VERIFY",
                                    help="Require a client certificate signed by --tls-ca."),
) -> None:
    """Run a node in the foreground (Ctrl-C or SIGTERM drains and stops it)."""
    from node import app as node_app  # only `serve` loads the node (uvloop, RocksDB, PySyncObj):
    from node import logs  # the client commands start quickly without them

    if log_format not in ("text", "json"):
        raise typer.BadParameter("text or json", param_hint="--log-format")
    logs.setup(log_level, log_format)
    try:
        settings = _settings_from_flags(
            name, listen, data, max_payload, log_level, raft, peer, cluster_secret, advertise, ping_interval, max_pending,
            compact_entries, compact_seconds, routes, monitor, log_format,
            dict(config_file=config, auth_token=auth, user=user, password=password,
                 max_connections=max_connections, max_subscriptions=max_subscriptions,
                 tls_cert=tls_cert, tls_key=tls_key, tls_ca=tls_ca, tls_verify=tls_verify),
        )
        security_config.load(settings)  # say what is wrong with the config file before anything starts
    except security_config.ConfigError as exc:
        err_console.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(2)
    except ValueError as exc:
        raise typer.BadParameter(str(exc))
    node_app.run(settings)


@app.command()
def reload(
    pid: int = typer.Option(0, "--pid", help="Process id of the node \\[default: read from DATA/mq9.pid]."),
    data: str = typer.Option("./data", "--data", envvar="MQ9_DATA", help="The node's data directory (holds mq9.pid)."),
) -> None:
    """Make a running node re-read its config file (users, permissions, limits): sends it SIGHUP,
    as `nats-server --signal reload` does."""
    import os
    import signal

    if not pid:
        try:
            with open(os.path.join(data, "mq9.pid")) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError) as exc:
            err_console.print(f"[red]error[/red]: no pid file in {data} ({exc}); give --pid")
            raise typer.Exit(1)
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        err_console.print(f"[red]error[/red]: cannot signal process {pid}: {exc.strerror}")
        raise typer.Exit(1)
    err_console.print(f"reload signalled to process {pid}; the node's log says what it loaded")


cli_mailbox.register(app)
cli_cluster.register(app)
cli_top.register(app)
cli_certs.register(app)

if __name__ == "__main__":
    app()
