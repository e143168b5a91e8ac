"""Typed client operations: what the parser produces and the connection consumes.

Each NATS client protocol verb becomes one small frozen-by-convention msgspec Struct.
Structs are cheaper to build than dataclasses or slotted classes (about 60 ns each),
which matters because one `Pub` is built per published message on the hot path.
Subjects, sids and payloads stay `bytes`: they are written back to the wire as they
came, so decoding them to `str` would only cost time.
"""

from __future__ import annotations

import msgspec


class Connect(msgspec.Struct, gc=False):
    """CONNECT {json}: the client's options, already decoded.

    Defaults are nats-server's: a CONNECT that leaves out `verbose` or `pedantic` gets
    both switched on, and `echo` is on unless refused.
    """

    verbose: bool = True
    pedantic: bool = True
    headers: bool = False
    no_responders: bool = False
    echo: bool = True
    name: str = ""
    lang: str = ""
    version: str = ""
    protocol: int = 0
    user: str = ""
    password: str = msgspec.field(default="", name="pass")  # the CONNECT field is `pass`
    auth_token: str = ""
    nkey: str = ""
    sig: str = ""
    jwt: str = ""

    def __repr__(self) -> str:  # credentials never reach a log line
        return f"Connect(name={self.name!r}, lang={self.lang!r}, user={self.user!r})"


class Pub(msgspec.Struct, gc=False):
    """PUB / HPUB: a message. `headers` is the raw NATS/1.0 block (with its CRLFs) or None."""

    subject: bytes
    reply: bytes | None
    headers: bytes | None
    payload: bytes


class Sub(msgspec.Struct, gc=False):
    """SUB subject [queue] sid."""

    subject: bytes
    queue: bytes | None
    sid: bytes


class Unsub(msgspec.Struct, gc=False):
    """UNSUB sid [max_msgs]; max_msgs 0 means remove now."""

    sid: bytes
    max_msgs: int


class Ping(msgspec.Struct, gc=False):
    """PING: the client asks for a PONG (and, for mq9, a durability barrier)."""


class Pong(msgspec.Struct, gc=False):
    """PONG: the client answers our PING."""


class Info(msgspec.Struct, gc=False):
    """INFO from a peer; clients may send it, and we ignore it as nats-server does."""


class ProtocolError(msgspec.Struct, gc=False):
    """A violation found by the parser. The parser stops after a fatal one."""

    error: "object"  # node.errors.NatsError; typed loosely to keep ops free of imports
    detail: str = ""


PING = Ping()
PONG = Pong()
INFO = Info()

Op = Connect | Pub | Sub | Unsub | Ping | Pong | Info | ProtocolError
