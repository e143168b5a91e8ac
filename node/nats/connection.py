"""One client connection: bytes in -> parser -> ops -> server; outbound frames -> socket.

The connection is an asyncio Protocol (uvloop runs it). `data_received` feeds the
parser and dispatches each op. Outbound frames are appended to one bytearray and
written once per event-loop pass (the server's flusher calls `flush`), so a burst of
deliveries costs one `write` syscall, not one per message.

Limits, as nats-server enforces them:
- pending bytes: if what the socket has not yet taken exceeds `max_pending`, the
  client is a slow consumer and is cut off (nothing is buffered without bound);
- stale connection: a PING every `ping_interval` when the client was quiet, and after
  `max_pings_out` unanswered ones, `-ERR 'Stale Connection'` and close;
- protocol violations from the parser: the `-ERR` line, then close if fatal.

Security, as nats-server: with authentication configured, INFO says `auth_required`
(and carries a `nonce` for nkey users); the client must send a CONNECT with valid
credentials first and within the auth timeout, else `-ERR 'Authorization Violation'`
(or `'Authentication Timeout'`) and close. Its `Access` then checks every PUB/HPUB and
SUB (`-ERR 'Permissions Violation for ...'`, the connection stays open) and filters
deliveries a deny list covers. `max_connections` and `max_subscriptions` are enforced
here too.

mq9 adds one duty: PONG is a durability barrier. Each mailbox write the client started
is registered with `begin_write()`/`end_write()`; a PING is answered only once every
write started before it has finished, and reading pauses while too many are owed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections import deque
from typing import Protocol

from node.auth.config import Security
from node.config import Settings
from node.nats import errors, wire
from node.nats.access import Access, new_nonce
from node.nats.ops import Connect, Ping, Pong, ProtocolError, Pub, Sub, Unsub
from node.nats.parser import Parser
from node.nats.subjects import Subscription, valid_literal_subject, valid_subject


class ConnectionHost(Protocol):
    """What a connection asks of the server that accepted it (`node.nats.server.Server`).

    The connection owns this narrow interface, so it needs nothing of the server's
    module: the server imports the connection, never the other way round."""

    settings: Settings
    security: Security
    tls_context: ssl.SSLContext | None
    slow_consumers: int

    def client_opened(self, client: ClientConnection) -> None: ...
    def client_closed(self, client: ClientConnection) -> None: ...
    def info_line(self, client: ClientConnection) -> bytes: ...
    def publish(self, client: ClientConnection, op: Pub) -> None: ...
    def subscribe(self, client: ClientConnection, sub: Subscription) -> bytes | None: ...
    def unsubscribe(self, client: ClientConnection, sub: Subscription) -> None: ...
    def mark_dirty(self, client: ClientConnection) -> None: ...
    def flush_dirty(self) -> None: ...


log = logging.getLogger("mq9.client")

AUTH_TIMEOUT = errors.NatsError("Authentication Timeout", fatal=True)
MAX_SUBSCRIPTIONS = errors.NatsError("Maximum Subscriptions Exceeded", fatal=False)
TLS_REQUIRED = errors.NatsError("Secure Connection - TLS Required", fatal=True)
PLAIN_CLIENT_REASONS = {"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNKNOWN_PROTOCOL", "RECORD_LAYER_FAILURE",
                        "UNEXPECTED_RECORD", "TimeoutError"}  # what OpenSSL says of bytes that are not TLS

WRITES_OWED_PAUSE = 4096  # stop reading a client that owes this many unfinished mailbox writes
WRITES_OWED_RESUME = 1024


class ClientConnection(asyncio.Protocol):
    """A NATS client connected to this node."""

    is_route = False

    def __init__(self, server: ConnectionHost, cid: int) -> None:
        self.server = server
        self.cid = cid
        self.parser = Parser(server.settings.max_payload)
        self.transport: asyncio.Transport | None = None
        self.out = bytearray()
        self.dirty = False
        self.closed = False
        self.addr = ""
        self.subs: dict[bytes, Subscription] = {}
        # CONNECT options (nats-server defaults until CONNECT says otherwise)
        self.connected = False
        self.verbose = False
        self.pedantic = False
        self.echo = True
        self.headers = False
        self.no_responders = False
        self.name = ""
        self.lang = ""
        self.version = ""
        # identity: who this is and what it may do (node/nats/access.py)
        self.access = Access()
        self.nonce = ""
        self._credentials: tuple[str, str, str, str, str] | None = None  # kept for reload, never logged
        self._auth_timer: asyncio.TimerHandle | None = None
        self._upgrading: asyncio.Task | None = None  # the TLS handshake, when the server requires TLS
        # liveness
        self.pings_out = 0
        self.active = False
        self._ping_timer: asyncio.TimerHandle | None = None
        # the PONG durability barrier
        self._write_seq = 0
        self._writes_open: dict[int, None] = {}
        self._pongs_owed: deque[int] = deque()
        self._pause_reasons: set[str] = set()  # reading stops while any reason holds
        # stats (the monitoring endpoints read them): messages published and delivered,
        # bytes read from and written to the socket (protocol framing included)
        self.msgs_in = 0
        self.msgs_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.started = time.time()

    # ---- lifecycle -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.addr = f"{peer[0]}:{peer[1]}"
        security = self.server.security
        if security.authenticator.wants_nonce:
            self.nonce = new_nonce()
        limit = security.limits.max_connections
        over = limit and len(self.server.clients) >= limit
        self.server.client_opened(self)
        transport.write(self.server.info_line(self))
        if over:
            log.warning("%s - cid:%d - maximum connections (%d) exceeded, closing", self.addr, self.cid, limit)
            self.close(errors.MAX_CONNECTIONS)
            return
        loop = asyncio.get_running_loop()
        if self.server.tls_context is not None:  # INFO went out in the clear; the client upgrades now
            transport.pause_reading()
            self._upgrading = loop.create_task(self._start_tls(transport))
        if security.authenticator.required or self.server.tls_context is not None:
            self._auth_timer = loop.call_later(security.auth_timeout_s, self._auth_timeout)
        self._arm_ping()

    async def _start_tls(self, transport: asyncio.Transport) -> None:
        """The TLS handshake after INFO, as nats-server does it (clients upgrade on
        `tls_required`); a client that sends anything else is refused."""
        try:
            self.transport = await asyncio.get_running_loop().start_tls(
                transport, self, self.server.tls_context, server_side=True,
                ssl_handshake_timeout=self.server.security.auth_timeout_s)
        except (ssl.SSLError, OSError, ConnectionError, asyncio.TimeoutError, RuntimeError) as exc:
            reason = getattr(exc, "reason", None) or type(exc).__name__
            plain = reason in PLAIN_CLIENT_REASONS  # it never started TLS: tell it, in the clear, as nats-server does
            log.warning("%s - cid:%d - TLS handshake failed (%s)%s", self.addr, self.cid, reason,
                        ": Secure Connection - TLS Required" if plain else "")
            if not transport.is_closing():
                if plain:
                    transport.write(TLS_REQUIRED.line())
                transport.close()
            return
        peer = self.transport.get_extra_info("peercert")
        if peer:
            log.debug("%s - cid:%d - TLS client certificate %s", self.addr, self.cid, peer.get("subject"))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._ping_timer is not None:
            self._ping_timer.cancel()
        if self._auth_timer is not None:
            self._auth_timer.cancel()
        self.closed = True
        self.server.client_closed(self)
        self.subs.clear()
        log.debug("%s - cid:%d - client closed (%s)", self.addr, self.cid, exc or "eof")

    def close(self, error: errors.NatsError | None = None, *args: object) -> None:
        """Send `-ERR` (if given) and everything queued, then close."""
        if self.closed or self.transport is None:
            return
        if error is not None:
            self.out += error.line(*args)
        self.flush()
        self.closed = True
        self.transport.close()

    def abort(self) -> None:
        """Drop the connection without flushing (slow consumer)."""
        if self.transport is not None and not self.transport.is_closing():
            self.closed = True
            self.transport.abort()

    # ---- inbound ---------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.active = True
        self.bytes_in += len(data)
        server = self.server
        for op in self.parser.feed(data):
            if self.closed:
                break
            kind = type(op)
            if not self.connected and kind is not Connect and kind is not ProtocolError \
                    and server.security.authenticator.required:
                log.warning("%s - cid:%d - %s before CONNECT on a server that requires it: Authorization Violation",
                            self.addr, self.cid, kind.__name__.upper())
                self.close(errors.AUTHORIZATION)
                break
            if kind is Pub:
                self.msgs_in += 1
                if self.pedantic:
                    self.check_publish_subject(op)
                if self.access.perms is not None and not self.access.may_publish(op.subject, self.subs):
                    self._refuse(errors.PERMISSION_PUB, op.subject)
                    continue
                if self.verbose:  # nats-server sends +OK before the message goes out
                    self.send(wire.OK)
                server.publish(self, op)
            elif kind is Sub:
                self._on_sub(op)
            elif kind is Unsub:
                self._on_unsub(op)
            elif kind is Ping:
                self.on_ping()
            elif kind is Pong:
                self.pings_out = 0
            elif kind is Connect:
                self._on_connect(op)
            elif kind is ProtocolError:
                if op.error is None:  # the client sent -ERR itself: close without an answer, as nats-server does
                    log.info("%s - cid:%d - %s, closing", self.addr, self.cid, op.detail)
                    self.close()
                    break
                log.warning("%s - cid:%d - protocol error: %s (%s)", self.addr, self.cid, op.error.text, op.detail)
                self.close(op.error)
                break
        server.flush_dirty()

    def _on_connect(self, op: Connect) -> None:
        if op.protocol < 0 or op.protocol > 1:
            self.close(errors.NatsError("invalid client protocol", fatal=True))
            return
        if op.no_responders and not op.headers:
            self.close(errors.NatsError("no responders requires headers support", fatal=True))
            return
        credentials = (op.user, op.password, op.auth_token, op.nkey, op.sig)
        if not self._authorize(credentials):
            return
        self.connected = True
        self.verbose = op.verbose
        self.pedantic = op.pedantic
        self.echo = op.echo
        self.headers = op.headers
        self.no_responders = op.no_responders
        self.parser.headers_allowed = op.headers
        self.name, self.lang, self.version = op.name, op.lang, op.version
        if self.verbose:
            self.send(wire.OK)
        log.debug("%s - cid:%d - CONNECT name=%r lang=%s %s", self.addr, self.cid, op.name, op.lang, op.version)

    def _authorize(self, credentials: tuple[str, str, str, str, str]) -> bool:
        """Check CONNECT's (or, on reload, the kept) credentials; close the connection if refused."""
        auth = self.server.security.authenticator
        user = auth.authenticate(*credentials, nonce=self.nonce)
        if user is None:
            who = credentials[0] or (credentials[3][:8] + "..." if credentials[3] else "") or \
                ("a token" if credentials[2] else "no credentials")
            log.warning("%s - cid:%d - Authorization Violation (%s)", self.addr, self.cid, who)
            self.close(errors.AUTHORIZATION)
            return False
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None
        self._credentials = credentials if auth.required else None
        self.access = Access(user)
        return True

    def _auth_timeout(self) -> None:
        self._auth_timer = None
        if self._upgrading is not None and not self._upgrading.done():
            return  # the handshake has its own timeout and says so
        if not self.connected and not self.closed:
            log.warning("%s - cid:%d - no CONNECT within %.1fs: Authentication Timeout", self.addr, self.cid,
                        self.server.security.auth_timeout_s)
            self.close(AUTH_TIMEOUT)

    def reauthorize(self) -> None:
        """After a reload: the kept credentials against the new users; permissions applied
        to existing subscriptions (refused ones are removed, with the permissions `-ERR`)."""
        if self.closed or not self.connected:
            return
        if not self._authorize(self._credentials or ("", "", "", "", "")):
            return
        for sub in list(self.subs.values()):
            if not self.access.may_subscribe(sub.subject):
                self.remove_sub(sub)
                self._refuse(errors.PERMISSION_SUB, sub.subject)

    def _refuse(self, error: errors.NatsError, subject: bytes) -> None:
        text = subject.decode(errors="replace")
        log.warning("%s - cid:%d - %s", self.addr, self.cid, error.text.format(text))
        self.send(error.line(text))

    def _on_sub(self, op: Sub) -> None:
        if not valid_subject(op.subject) or (op.queue is not None and not valid_subject(op.queue)):
            self.send(errors.INVALID_SUBJECT.line())
            return
        if op.sid in self.subs:  # nats-server ignores a SUB that reuses a live sid
            if self.verbose:
                self.send(wire.OK)
            return
        if not self.access.may_subscribe(op.subject):
            self._refuse(errors.PERMISSION_SUB, op.subject)
            return
        limit = self.server.security.limits.max_subscriptions
        if limit and len(self.subs) >= limit:
            log.warning("%s - cid:%d - maximum subscriptions (%d) exceeded", self.addr, self.cid, limit)
            self.send(MAX_SUBSCRIPTIONS.line())
            return
        sub = Subscription(self, op.sid, op.subject, op.queue)
        refusal = self.server.subscribe(self, sub)
        if refusal is not None:
            self.send(refusal)
            return
        self.subs[op.sid] = sub
        if self.verbose:
            self.send(wire.OK)

    def _on_unsub(self, op: Unsub) -> None:
        sub = self.subs.get(op.sid)
        if sub is not None:
            if op.max_msgs and sub.delivered < op.max_msgs:
                sub.max_msgs = op.max_msgs
            else:
                self.remove_sub(sub)
        if self.verbose:
            self.send(wire.OK)

    def remove_sub(self, sub: Subscription) -> None:
        if self.subs.pop(sub.sid, None) is not None:
            self.server.unsubscribe(self, sub)

    def check_publish_subject(self, op: Pub) -> None:
        """nats-server's pedantic check: complain about a wildcard or empty token, deliver anyway."""
        if not valid_literal_subject(op.subject):
            self.send(errors.INVALID_PUBLISH_SUBJECT.line())

    # ---- outbound --------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue raw protocol bytes; they are written at the end of this loop pass."""
        self.out += data
        if not self.dirty:
            self.dirty = True
            self.server.mark_dirty(self)

    def deliver(
        self, sub: Subscription, subject: bytes, reply: bytes | None, headers: bytes | None, payload: bytes
    ) -> None:
        """Queue one MSG/HMSG for `sub`; honour UNSUB max."""
        if self.closed:
            return
        if headers is not None and not self.headers:
            headers = None  # a client that did not ask for headers never sees HMSG
        access = self.access
        if access.perms is not None:
            if access.delivery_denied(subject):
                return
            if reply is not None:
                access.note_reply(reply)
        wire.append_msg(self.out, subject, sub.sid, reply, headers, payload)
        self._delivered(sub, 1)

    def deliver_frame(self, sub: Subscription, frame: bytes) -> None:
        """Queue one ready-made MSG/HMSG frame for `sub` (see `deliver_frames`)."""
        if self.closed:
            return
        self.out += frame
        self._delivered(sub, 1)

    def deliver_frames(self, sub: Subscription, frames: list[bytes]) -> None:
        """Queue ready-made HMSG frames for `sub` (a replay builds them in bulk with
        `wire.HMSG_NUMBERED_REPLY`, for a client that takes headers); honour UNSUB max as `deliver` does."""
        if self.closed:
            return
        if sub.max_msgs:
            frames = frames[:max(0, sub.max_msgs - sub.delivered)]
        self.out += b"".join(frames)
        self._delivered(sub, len(frames))

    def _delivered(self, sub: Subscription, n: int) -> None:
        """n messages for `sub` are queued: count them, flush at the end of this loop
        pass, and drop the subscription at its UNSUB max."""
        self.msgs_out += n
        if not self.dirty:
            self.dirty = True
            self.server.mark_dirty(self)
        sub.delivered += n
        if sub.max_msgs and sub.delivered >= sub.max_msgs:
            self.remove_sub(sub)

    def flush(self) -> None:
        """Write what is queued; cut the client off if the socket is too far behind."""
        self.dirty = False
        if self.closed or not self.out:
            return
        data = self.out
        self.out = bytearray()
        self.bytes_out += len(data)
        transport = self.transport
        transport.write(data)
        if transport.get_write_buffer_size() > self.server.settings.max_pending:
            log.warning(
                "%s - cid:%d - slow consumer: %d bytes pending, closing",
                self.addr, self.cid, transport.get_write_buffer_size(),
            )
            self.server.slow_consumers += 1
            self.abort()

    # ---- liveness --------------------------------------------------------------------

    def _arm_ping(self) -> None:
        interval = self.server.settings.ping_interval
        if interval > 0:
            self._ping_timer = asyncio.get_running_loop().call_later(interval, self._ping_tick)

    def _ping_tick(self) -> None:
        if self.closed:
            return
        if self.active:
            self.active = False  # nats-server skips the PING when the client was recently active
        elif self.pings_out + 1 > self.server.settings.max_pings_out:
            log.info("%s - cid:%d - stale connection, closing", self.addr, self.cid)
            self.close(errors.STALE_CONNECTION)
            return
        else:
            self.pings_out += 1
            self.send(wire.PING)
        self._arm_ping()

    # ---- the PONG durability barrier --------------------------------------------------

    def on_ping(self) -> None:
        if not self._writes_open:
            self.send(wire.PONG)
        else:
            self._pongs_owed.append(self._write_seq)

    def pause(self, reason: str) -> None:
        """Stop reading from this client (backpressure) until every reason is lifted."""
        if not self._pause_reasons and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self._pause_reasons.add(reason)

    def resume(self, reason: str) -> None:
        if reason in self._pause_reasons:
            self._pause_reasons.discard(reason)
            if not self._pause_reasons and self.transport is not None and not self.closed:
                self.transport.resume_reading()

    def begin_write(self) -> int:
        """Register a mailbox write this client started; returns its ticket."""
        self._write_seq += 1
        self._writes_open[self._write_seq] = None
        if len(self._writes_open) >= WRITES_OWED_PAUSE:
            self.pause("writes owed")
        return self._write_seq

    def end_write(self, ticket: int) -> None:
        """The write with this ticket was committed or rejected: release PONGs it held."""
        self._writes_open.pop(ticket, None)
        owed = self._pongs_owed
        while owed and (not self._writes_open or next(iter(self._writes_open)) > owed[0]):
            owed.popleft()
            self.send(wire.PONG)
        if len(self._writes_open) <= WRITES_OWED_RESUME:
            self.resume("writes owed")
