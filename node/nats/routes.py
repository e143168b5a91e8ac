"""Routes: one connection to every other node, carrying core NATS interest and messages.

Mailbox traffic (`$mq9.AI.*`) goes through Raft; plain NATS subjects (services, events,
`_INBOX` replies) go over routes, as in a nats-server cluster:
- every node listens on its route port (`--routes`, default the client port + 1000 on the
  Raft host) and, for each peer whose id (Raft address) sorts after its own, dials that
  peer's route port (its Raft port - 1000), so each pair has exactly one connection;
- the handshake proves both sides know the cluster secret (HMAC over fresh nonces) and
  that the peer is a configured member; anything else, a NATS client included, gets
  `-ERR 'attempted to connect to route port'` and is closed;
- each node tells the others its local interest, one `RS+`/`RS-` per distinct
  (subject, queue) as its local count goes from 0 to 1 and back, and resends all of it
  when a route comes up; a remote interest becomes a proxy subscription in the local
  sublist, so matching is the same code for local and remote subscribers;
- when a route goes down, its proxies go with it (no request waits on a dead node), and
  the dialing side reconnects every half second;
- when a route's socket falls behind (4 MiB unsent), the node stops reading its clients
  until it drains, so a fast publisher is slowed down rather than the route being cut
  (it is cut only if 256 MiB pile up: the peer stopped reading).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import socket
from typing import TYPE_CHECKING

import msgspec

from node.nats.route_parser import RouteError, RouteHello, RouteMsg, RouteParser, RoutePing, RouteSub, rmsg
from node.nats.subjects import Subscription

if TYPE_CHECKING:
    from node.nats.server import Server

log = logging.getLogger("mq9.routes")

RECONNECT_S = 0.5
HIGH_WATER = 4 << 20  # unsent bytes on a route that make this node stop reading clients
LOW_WATER = 1 << 20
ROUTE_MAX_PENDING = 256 << 20  # beyond this (the peer stopped reading) the route is cut
PING_S = 1.0
PINGS_OUT_MAX = 3
NOT_A_CLIENT_PORT = b"-ERR 'attempted to connect to route port'\r\n"
_json = msgspec.json.Encoder()


def _proof(secret: str, nonce: str, node: str) -> str:
    return hmac.new(secret.encode(), f"{nonce}|{node}".encode(), hashlib.sha256).hexdigest()


class RouteConnection(asyncio.Protocol):
    """One route to another node (either side of it)."""

    is_route = True
    echo = True
    no_responders = False

    def __init__(self, manager: "RouteManager", dialed_peer: str | None) -> None:
        self.manager = manager
        self.server = manager.server
        self.dialed_peer = dialed_peer  # the peer we dialed, or None when we accepted
        self.peer: str | None = None
        self.parser = RouteParser(manager.server.settings.max_payload)
        self.transport: asyncio.Transport | None = None
        self.nonce = os.urandom(16).hex()
        self.active = False
        self.closed = False
        self.out = bytearray()
        self.dirty = False
        self.proxies: dict[tuple[bytes, bytes | None], Subscription] = {}
        self.pings_out = 0
        self._pinger: asyncio.TimerHandle | None = None

    # ---- lifecycle -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.dialed_peer is None:  # we accepted: speak first
            self._write(b"INFO " + _json.encode({"node": self.manager.node_id, "nonce": self.nonce, "route": True}) + b"\r\n")
        self._pinger = asyncio.get_running_loop().call_later(PING_S, self._ping)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._pinger is not None:
            self._pinger.cancel()
        self.manager.congested(self, False)
        self.manager.route_down(self)

    def pause_writing(self) -> None:  # asyncio: the socket is behind (above HIGH_WATER)
        self.manager.congested(self, True)

    def resume_writing(self) -> None:  # ... and has drained below LOW_WATER
        self.manager.congested(self, False)

    def close(self, line: bytes = b"") -> None:
        if self.transport is not None and not self.closed:
            if line:
                self.transport.write(line)
            self.closed = True
            self.transport.close()

    def _ping(self) -> None:
        if self.closed:
            return
        if self.pings_out >= PINGS_OUT_MAX:
            log.warning("Route to %s is stale, closing", self.peer or "?")
            self.close()
            return
        self.pings_out += 1
        self._write(b"PING\r\n")
        self._pinger = asyncio.get_running_loop().call_later(PING_S, self._ping)

    # ---- inbound ---------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        router = self.server.router
        for op in self.parser.feed(data):
            kind = type(op)
            if kind is RouteMsg:
                if self.active:
                    router.publish_routed(op.subject, op.reply, op.queues, op.headers, op.payload)
            elif kind is RouteSub:
                if self.active:
                    self._interest(op)
            elif kind is RoutePing:
                self.pings_out = 0
                if not op.pong:
                    self._write(b"PONG\r\n")
            elif kind is RouteHello:
                self._hello(op)
            elif kind is RouteError:
                log.warning("Route protocol error from %s: %s", self.peer or self._peername(), op.detail)
                self.close(NOT_A_CLIENT_PORT if not self.active else b"")
                return
        self.server.flush_dirty()

    def _peername(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return f"{peer[0]}:{peer[1]}" if peer else "?"

    def _hello(self, op: RouteHello) -> None:
        f = op.fields
        secret = self.manager.secret
        if op.verb == b"INFO" and self.dialed_peer is not None and not self.active:
            if f.get("node") != self.dialed_peer:
                log.warning("Route at %s is %r, expected %s", self._peername(), f.get("node"), self.dialed_peer)
                self.close()
                return
            proof = _proof(secret, str(f.get("nonce")), self.manager.node_id)
            self._write(b"CONNECT " + _json.encode({"node": self.manager.node_id, "nonce": self.nonce,
                                                    "route": True, "proof": proof}) + b"\r\n")
        elif op.verb == b"CONNECT" and self.dialed_peer is None and not self.active:
            node = f.get("node")
            if not f.get("route") or node not in self.manager.peers or not hmac.compare_digest(
                    str(f.get("proof")), _proof(secret, self.nonce, str(node))):
                log.warning("Refused route connection from %s (%s)", self._peername(),
                            "not a member or wrong cluster secret" if f.get("route") else "a client on the route port")
                self.close(NOT_A_CLIENT_PORT)
                return
            self._write(b"OK " + _json.encode({"proof": _proof(secret, str(f.get("nonce")), self.manager.node_id)}) + b"\r\n")
            self._activate(node)
        elif op.verb == b"OK" and self.dialed_peer is not None and not self.active:
            if not hmac.compare_digest(str(f.get("proof")), _proof(secret, self.nonce, self.dialed_peer)):
                log.warning("Route %s failed to prove the cluster secret", self.dialed_peer)
                self.close()
                return
            self._activate(self.dialed_peer)
        else:
            self.close(NOT_A_CLIENT_PORT)

    def _activate(self, peer: str) -> None:
        self.peer = peer
        self.active = True
        self.manager.route_up(self)

    def _interest(self, op: RouteSub) -> None:
        key = (op.subject, op.queue)
        router = self.server.router
        if op.add:
            if key not in self.proxies:
                proxy = Subscription(self, b"", op.subject, op.queue)
                self.proxies[key] = proxy
                router.subscribe(proxy)
        else:
            proxy = self.proxies.pop(key, None)
            if proxy is not None:
                router.unsubscribe(proxy)

    def drop_proxies(self) -> None:
        router = self.server.router
        for proxy in self.proxies.values():
            router.unsubscribe(proxy)
        self.proxies.clear()

    # ---- outbound --------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        self.out += data
        if not self.dirty:
            self.dirty = True
            self.server.mark_dirty(self)

    def send_msg(self, subject: bytes, reply: bytes | None, queues: list[bytes] | None,
                 headers: bytes | None, payload: bytes) -> None:
        if self.active and not self.closed:
            self._write(rmsg(subject, reply, queues, headers, payload))

    def send_interest(self, subject: bytes, queue: bytes | None, added: bool) -> None:
        verb = b"RS+ " if added else b"RS- "
        self._write(verb + subject + (b" " + queue if queue else b"") + b"\r\n")

    def flush(self) -> None:
        self.dirty = False
        if self.closed or not self.out or self.transport is None:
            return
        data, self.out = self.out, bytearray()
        self.transport.write(data)
        if self.transport.get_write_buffer_size() > ROUTE_MAX_PENDING:
            log.warning("Route to %s is too far behind (%d bytes), closing", self.peer, self.transport.get_write_buffer_size())
            self.closed = True
            self.transport.abort()


class RouteManager:
    """This node's routes: the listener, the dialers and the interest they carry."""

    def __init__(self, server: "Server", node_id: str, listen: tuple[str, int], peers: dict[str, tuple[str, int]],
                 secret: str) -> None:
        self.server = server
        self.node_id = node_id
        self.listen = listen
        self.peers = peers  # peer node id (Raft address) -> its route (host, port)
        self.secret = secret
        self.routes: dict[str, RouteConnection] = {}
        self.interest: dict[tuple[bytes, bytes | None], int] = {}
        self._congested: set[RouteConnection] = set()
        self._listener: asyncio.base_events.Server | None = None
        self._tasks: list[asyncio.Task] = []
        server.router.on_interest = self.on_local_interest

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(lambda: RouteConnection(self, None), self.listen[0], self.listen[1],
                                                  reuse_address=True)
        log.info("Listening for route connections on %s:%d", *self.listen)
        for peer, address in sorted(self.peers.items()):
            if self.node_id < peer:
                self._tasks.append(loop.create_task(self._dial(peer, address)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._listener is not None:
            self._listener.close()
        for route in list(self.routes.values()):
            route.close()

    async def _dial(self, peer: str, address: tuple[str, int]) -> None:
        """Keep one connection to `peer` (one attempt at a time, even while a handshake runs)."""
        loop = asyncio.get_running_loop()
        current: RouteConnection | None = None
        while True:
            if current is None or current.closed:
                try:
                    _, current = await loop.create_connection(lambda: RouteConnection(self, peer), address[0], address[1])
                except OSError:
                    current = None
            await asyncio.sleep(RECONNECT_S)

    def congested(self, route: RouteConnection, behind: bool) -> None:
        if behind:
            self._congested.add(route)
        else:
            self._congested.discard(route)
        self.server.set_routes_congested(bool(self._congested))

    def route_up(self, route: RouteConnection) -> None:
        old = self.routes.get(route.peer)
        if old is not None and old is not route:
            old.drop_proxies()
            old.close()
        self.routes[route.peer] = route
        for (subject, queue) in self.interest:
            route.send_interest(subject, queue, True)
        log.info("Route to %s is up", route.peer)

    def route_down(self, route: RouteConnection) -> None:
        route.drop_proxies()
        if route.peer is not None and self.routes.get(route.peer) is route:
            del self.routes[route.peer]
            log.info("Route to %s is down", route.peer)

    def on_local_interest(self, subject: bytes, queue: bytes | None, added: bool) -> None:
        key = (subject, queue)
        count = self.interest.get(key, 0) + (1 if added else -1)
        if count > 0:
            self.interest[key] = count
        else:
            self.interest.pop(key, None)
        if (added and count == 1) or (not added and count <= 0):
            for route in self.routes.values():
                route.send_interest(subject, queue, added)
