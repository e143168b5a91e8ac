"""The node's NATS front end: listener, client registry, INFO, write coalescing, drain.

`Server` owns the listening socket and every `ClientConnection`. A publish goes to
the mq9 API when its subject starts with `$mq9.AI.` and to the core router otherwise;
a subscription likewise. Connections append frames to their own buffers and mark
themselves dirty; `flush_dirty` (run after each read and once per loop pass) writes
each dirty connection once, so fan-out costs one syscall per receiver per pass.

Shutdown (`drain`) follows nats-server's lame-duck spirit in small: stop accepting,
let the mailbox layer finish writes it already started, flush every client, close.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import ssl
import time
from typing import Any, Protocol

from node.nats import wire
from node.auth.config import Security
from node.config import Settings
from node.nats.connection import ClientConnection
from node.nats.ops import Pub
from node.nats.router import Router
from node.nats.subjects import Subscription

log = logging.getLogger("mq9.server")

NATS_COMPAT_VERSION = "2.10.0"  # the nats-server feature level clients may assume
MQ9_VERSION = "0.1.0"
MQ9_PREFIX = b"$mq9.AI."


class MailboxAPI(Protocol):
    """What the server asks of the mq9 layer (node/mq9.py)."""

    def on_publish(self, client: ClientConnection, op: Pub) -> None: ...
    def on_subscribe(self, client: ClientConnection, sub: Subscription) -> bytes | bool:
        """An `-ERR` line to refuse, True if the mailbox layer serves it, False for the router."""
    def on_unsubscribe(self, client: ClientConnection, sub: Subscription) -> None: ...
    def on_client_closed(self, client: ClientConnection) -> None: ...


def tls_context(tls) -> ssl.SSLContext | None:
    """The server side of client TLS: our certificate, and client certificates checked
    against the CA when `verify` (required) or a CA is given (optional)."""
    if tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert, tls.key)
    if tls.ca:
        context.load_verify_locations(tls.ca)
        context.verify_mode = ssl.CERT_REQUIRED if tls.verify else ssl.CERT_OPTIONAL
    return context


def new_server_id() -> str:
    """A nats-server style id: 'N' and 55 base32 characters."""
    return "N" + base64.b32encode(os.urandom(35)).decode()[:55]


class Server:
    """One node's client-facing NATS server."""

    def __init__(self, settings: Settings, security: Security | None = None) -> None:
        self.settings = settings
        self.security = security or Security()
        self.tls_context = tls_context(self.security.tls)  # None: plain connections
        self.server_id = new_server_id()
        self.router = Router()
        self.mq9: MailboxAPI | None = None
        self.clients: dict[int, ClientConnection] = {}
        self.connect_urls: list[str] = []
        self.slow_consumers = 0
        self.started = time.time()
        self.total_connections = 0
        self.closed_totals = [0, 0, 0, 0]  # msgs in, msgs out, bytes in, bytes out of closed clients
        self.routes_congested = False
        self._next_cid = 0
        self._dirty: list[ClientConnection] = []
        self._flush_scheduled = False
        self._listener: asyncio.base_events.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._info_base: dict[str, Any] = {}

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the client port and start accepting."""
        self._loop = asyncio.get_running_loop()
        s = self.settings
        self._info_base = {
            "server_id": self.server_id,
            "server_name": s.server_name,
            "version": NATS_COMPAT_VERSION,
            "proto": 1,
            "go": "python",
            "host": s.host,
            "port": s.port,
            "headers": True,
            "max_payload": s.max_payload,
            "mq9_version": MQ9_VERSION,
        }
        self._listener = await self._loop.create_server(
            self._new_connection, s.host, s.port, reuse_address=True, backlog=1024
        )
        sockname = self._listener.sockets[0].getsockname()
        log.info("Listening for client connections on %s:%d", sockname[0], sockname[1])

    def _new_connection(self) -> ClientConnection:
        self._next_cid += 1
        return ClientConnection(self, self._next_cid)

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Stop accepting, finish started writes, flush and close every client."""
        if self._listener is not None:
            self._listener.close()
        drain_mq9 = getattr(self.mq9, "drain", None)
        if drain_mq9 is not None:
            await drain_mq9(timeout_s)
        for client in list(self.clients.values()):
            client.close()
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.clients and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        for client in list(self.clients.values()):
            client.abort()
        log.info("Client connections drained")

    # ---- clients ---------------------------------------------------------------------

    def info_line(self, client: ClientConnection) -> bytes:
        info = dict(self._info_base)
        info["client_id"] = client.cid
        if self.security.authenticator.required:
            info["auth_required"] = True
        if self.tls_context is not None:
            info["tls_required"] = True
            info["tls_verify"] = self.security.tls.verify
        if client.nonce:
            info["nonce"] = client.nonce
        peer = client.transport.get_extra_info("peername") if client.transport else None
        if peer:
            info["client_ip"] = peer[0]
        if self.connect_urls:
            info["connect_urls"] = self.connect_urls
        return wire.info_line(info)

    def reload(self, security: Security) -> None:
        """New users, permissions and limits: every connection is checked again (one whose
        user is gone is closed with `Authorization Violation`)."""
        self.security = security
        for client in list(self.clients.values()):
            client.reauthorize()
        self.flush_dirty()

    def set_connect_urls(self, urls: list[str]) -> None:
        """Change the cluster's client URLs and tell connected clients (async INFO)."""
        if urls == self.connect_urls:
            return
        self.connect_urls = urls
        for client in self.clients.values():
            if client.connected:
                client.send(self.info_line(client))
        self.flush_dirty()

    def client_opened(self, client: ClientConnection) -> None:
        self.clients[client.cid] = client
        self.total_connections += 1
        if self.routes_congested:
            client.pause("route congested")

    def set_routes_congested(self, congested: bool) -> None:
        """A route's socket is behind: stop reading clients (their publishes would pile up
        in front of it) until it drains. A fast publisher slows down instead of the route
        being cut off, as nats-server stalls fast producers."""
        if congested == self.routes_congested:
            return
        self.routes_congested = congested
        for client in self.clients.values():
            if congested:
                client.pause("route congested")
            else:
                client.resume("route congested")

    def client_closed(self, client: ClientConnection) -> None:
        self.clients.pop(client.cid, None)
        totals = self.closed_totals
        totals[0] += client.msgs_in
        totals[1] += client.msgs_out
        totals[2] += client.bytes_in
        totals[3] += client.bytes_out
        for sub in list(client.subs.values()):
            self.unsubscribe(client, sub)
        if self.mq9 is not None:
            self.mq9.on_client_closed(client)

    def traffic(self) -> tuple[int, int, int, int]:
        """Messages in and out, bytes in and out, since the node started (all clients)."""
        m_in, m_out, b_in, b_out = self.closed_totals
        for client in self.clients.values():
            m_in += client.msgs_in
            m_out += client.msgs_out
            b_in += client.bytes_in
            b_out += client.bytes_out
        return m_in, m_out, b_in, b_out

    # ---- the data path ---------------------------------------------------------------

    def publish(self, client: ClientConnection, op: Pub) -> None:
        """A client's PUB/HPUB: to the mailbox API or to core subscribers."""
        if op.subject.startswith(MQ9_PREFIX) and self.mq9 is not None:
            self.mq9.on_publish(client, op)
        else:
            self.router.publish(client, op.subject, op.reply, op.headers, op.payload)

    def subscribe(self, client: ClientConnection, sub: Subscription) -> bytes | None:
        """Register a subscription; returns an `-ERR` line instead if it is refused."""
        if sub.subject.startswith(MQ9_PREFIX) and self.mq9 is not None:
            taken = self.mq9.on_subscribe(client, sub)
            if taken is True:
                return None  # a mailbox subscription: served by delivery, not the router
            if taken:
                return taken  # refused
        self.router.subscribe(sub)
        return None

    def unsubscribe(self, client: ClientConnection, sub: Subscription) -> None:
        if sub.subject.startswith(MQ9_PREFIX) and self.mq9 is not None:
            self.mq9.on_unsubscribe(client, sub)
        self.router.unsubscribe(sub)

    # ---- write coalescing -----------------------------------------------------------

    def mark_dirty(self, client: ClientConnection) -> None:
        self._dirty.append(client)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush_dirty)

    def flush_dirty(self) -> None:
        self._flush_scheduled = False
        dirty = self._dirty
        if not dirty:
            return
        self._dirty = []
        for client in dirty:
            client.flush()
