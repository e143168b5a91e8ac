"""Node settings: one frozen dataclass, filled by the CLI from flags and `MQ9_*` variables.

Names keep nats-server's spelling where a NATS user would look for them
(`max_payload`, `ping_interval`, `max_pings_out`, `max_pending`); our own limits end
with their unit (`write_timeout_s`). Ports follow nats-server's habits: clients on
4222, routes on the client port + 1000 (5222), Raft on the client port + 2000 (6222,
where a nats-server cluster listens). A peer's route port is its Raft port - 1000.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

DEFAULT_CLIENT_PORT = 4222
RAFT_PORT_OFFSET = 2000
ROUTE_PORT_OFFSET = 1000


def parse_hostport(text: str, default_port: int | None = None) -> tuple[str, int]:
    """'host:port', ':port', 'host' (with a default port) or 'nats://host:port' -> (host, port)."""
    text = text.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    if text.startswith("["):  # [v6]:port
        host, _, port = text[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            host, port = text, ""
    if not port:
        if default_port is None:
            raise ValueError(f"{text!r}: expected HOST:PORT")
        return host or "127.0.0.1", default_port
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{text!r}: bad port")
    return host or "127.0.0.1", int(port)


@dataclass(frozen=True)
class Settings:
    """Everything a node needs to start."""

    name: str = ""
    host: str = "127.0.0.1"
    port: int = DEFAULT_CLIENT_PORT
    data_dir: str = "./data"
    max_payload: int = 1 << 20
    max_pending: int = 64 << 20  # bytes a client may have unsent before it is cut off
    ping_interval: float = 120.0  # seconds, nats-server's default
    max_pings_out: int = 2
    log_level: str = "info"
    # Raft: our address for peers, the other members, and the shared secret
    raft_host: str = "127.0.0.1"
    raft_port: int = 0  # 0: the client port + 2000
    peers: tuple[str, ...] = ()
    cluster_secret: str = field(default="", repr=False)  # secrets never show in a repr or a log line
    advertise: str = ""  # the client URL other nodes tell clients (default host:port)
    routes: str = ""  # HOST:PORT for routes between nodes (default: Raft host, client port + 1000)
    write_timeout_s: float = 2.5  # every replicated write ends in a reply or a 503 by then
    # mq9 defaults
    default_ttl_s: int = 86400
    default_ack_wait_s: float = 30.0
    default_max_in_flight: int = 64
    tick_interval_s: float = 0.25
    compact_min_entries: int = 50_000  # Raft log entries before a snapshot ...
    compact_min_time_s: float = 120.0  # ... or seconds since the last one
    # security (node/auth/config.py reads these with the config file)
    config_file: str = ""  # TOML: [authorization], [limits], [tls]
    auth_token: str = field(default="", repr=False)
    user: str = ""
    password: str = field(default="", repr=False)
    auth_timeout_s: float = 2.0
    max_connections: int = 0
    max_subscriptions: int = 0
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    tls_verify: bool = False
    # operating
    monitor: str = ""  # HOST:PORT (or PORT, on 127.0.0.1) of the monitoring port; "" = off
    log_format: str = "text"  # text (nats-server's layout) or json (one object per line)

    @property
    def raft_address(self) -> str:
        port = self.raft_port or self.port + RAFT_PORT_OFFSET
        return f"{self.raft_host}:{port}"

    @property
    def route_listen(self) -> tuple[str, int]:
        """Where routes listen: --routes, else the Raft host and Raft port - 1000, which is
        where the other nodes look for it (they know our Raft address, not our routes)."""
        raft_port = self.raft_port or self.port + RAFT_PORT_OFFSET
        default_port = raft_port - (RAFT_PORT_OFFSET - ROUTE_PORT_OFFSET)
        if self.routes:
            return parse_hostport(self.routes, default_port)
        return self.raft_host, default_port

    def route_peers(self) -> dict[str, tuple[str, int]]:
        """Each Raft peer's route address: same host, its Raft port - 1000."""
        out = {}
        for peer in self.peers:
            host, port = parse_hostport(peer)
            out[f"{host}:{port}"] = (host, port - (RAFT_PORT_OFFSET - ROUTE_PORT_OFFSET))
        return out

    @property
    def monitor_listen(self) -> tuple[str, int] | None:
        """Where the monitoring HTTP server listens, or None when it is off."""
        text = self.monitor.strip()
        if not text:
            return None
        if text.isdigit():  # a bare port: loopback only, never every interface by surprise
            return "127.0.0.1", int(text)
        return parse_hostport(text)

    @property
    def client_url(self) -> str:
        return self.advertise or f"{self.host}:{self.port}"

    @property
    def server_name(self) -> str:
        return self.name or f"mq9-{self.port}"

    def replace(self, **changes: object) -> "Settings":
        return dataclasses.replace(self, **changes)
