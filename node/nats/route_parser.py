"""Sans-IO parser for the node-to-node route protocol: bytes in, typed ops out.

The route protocol is nats-server's in spirit (INFO/CONNECT handshake, `RS+`/`RS-`
interest, `RMSG`/`RHMSG` messages, PING/PONG) and in framing (a control line ending in
CRLF, then `size` payload bytes and CRLF), small enough to keep apart from the client
parser, whose hot path it would only slow down:

    INFO {json}                                     acceptor -> dialer: node id, nonce
    CONNECT {json}                                  dialer -> acceptor: node id, nonce, proof
    OK {json}                                       acceptor -> dialer: its proof
    RS+ <subject> [<queue>]                         interest appeared on the sender
    RS- <subject> [<queue>]                         ... and disappeared
    RMSG <subject> <reply|-> <queues|-> <size>      a message (queues: comma-separated
    RHMSG <subject> <reply|-> <queues|-> <hdr> <total>   groups the receiver must serve)
    PING / PONG
"""

from __future__ import annotations

import msgspec

from node.nats.parser import MAX_CONTROL_LINE, _parse_size


class RouteHello(msgspec.Struct, gc=False):
    """INFO, CONNECT or OK: the handshake's JSON, as a dict."""

    verb: bytes
    fields: dict


class RouteSub(msgspec.Struct, gc=False):
    add: bool
    subject: bytes
    queue: bytes | None


class RouteMsg(msgspec.Struct, gc=False):
    subject: bytes
    reply: bytes | None
    queues: tuple[bytes, ...]
    headers: bytes | None
    payload: bytes


class RoutePing(msgspec.Struct, gc=False):
    pong: bool


class RouteError(msgspec.Struct, gc=False):
    detail: str


_json = msgspec.json.Decoder(dict)


class RouteParser:
    """Incremental route-protocol parser; stops at the first violation."""

    __slots__ = ("max_payload", "_rest", "_pending", "dead")

    def __init__(self, max_payload: int) -> None:
        self.max_payload = max_payload
        self._rest = bytearray()
        self._pending: tuple | None = None
        self.dead = False

    def feed(self, data: bytes) -> list:
        if self.dead:
            return []
        buf = self._rest
        buf += data
        ops: list = []
        pos = 0
        end = len(buf)
        while True:
            if self._pending is not None:
                subject, reply, queues, hdr, size = self._pending
                stop = pos + size
                if stop + 2 > end:
                    break
                if buf[stop:stop + 2] != b"\r\n":
                    return self._fail(ops, "message not followed by CRLF")
                if hdr < 0:
                    ops.append(RouteMsg(subject, reply, queues, None, bytes(buf[pos:stop])))
                else:
                    ops.append(RouteMsg(subject, reply, queues, bytes(buf[pos:pos + hdr]), bytes(buf[pos + hdr:stop])))
                pos = stop + 2
                self._pending = None
                continue
            nl = buf.find(b"\r\n", pos)
            if nl < 0:
                unfinished = end - pos - (1 if end > pos and buf[end - 1] == 13 else 0)  # a CR waiting for its LF
                if unfinished > MAX_CONTROL_LINE:
                    return self._fail(ops, "control line too long")
                break
            if nl - pos > MAX_CONTROL_LINE:  # the same limit whether the line came in one read or several
                return self._fail(ops, "control line too long")
            line = bytes(buf[pos:nl])
            pos = nl + 2
            op = self._line(line)
            if isinstance(op, RouteError):
                return self._fail(ops, op.detail)
            if op is not None:
                ops.append(op)
        del buf[:pos]
        return ops

    def _fail(self, ops: list, detail: str) -> list:
        self.dead = True
        self._rest = bytearray()
        ops.append(RouteError(detail))
        return ops

    def _line(self, line: bytes):
        verb, _, arg = line.partition(b" ")
        args = arg.split()
        if verb in (b"RMSG", b"RHMSG"):
            want = 5 if verb == b"RHMSG" else 4
            if len(args) != want:
                return RouteError(f"bad {verb.decode()} arguments")
            subject, reply, queues = args[0], args[1], args[2]
            reply = None if reply == b"-" else reply
            queue_list = () if queues == b"-" else tuple(queues.split(b","))
            size = _parse_size(args[-1])
            hdr = _parse_size(args[3]) if verb == b"RHMSG" else -1
            if size < 0 or (verb == b"RHMSG" and (hdr < 0 or hdr > size)) or size > self.max_payload:
                return RouteError("bad message size")
            self._pending = (subject, reply, queue_list, hdr, size)
            return None
        if verb in (b"RS+", b"RS-"):
            if len(args) not in (1, 2):
                return RouteError("bad interest arguments")
            return RouteSub(verb == b"RS+", args[0], args[1] if len(args) == 2 else None)
        if verb in (b"PING", b"PONG"):
            return RoutePing(verb == b"PONG")
        if verb in (b"INFO", b"CONNECT", b"OK"):
            try:
                return RouteHello(verb, _json.decode(arg))
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # none may escape feed()
                return RouteError(f"bad {verb.decode()} JSON")
        return RouteError(f"unknown route verb {verb[:16]!r}")


def rmsg(subject: bytes, reply: bytes | None, queues: list[bytes] | None, headers: bytes | None, payload: bytes) -> bytes:
    """One RMSG/RHMSG frame."""
    q = b",".join(queues) if queues else b"-"
    r = reply or b"-"
    if headers is None:
        return b"RMSG %s %s %s %d\r\n%s\r\n" % (subject, r, q, len(payload), payload)
    return b"RHMSG %s %s %s %d %d\r\n%s%s\r\n" % (subject, r, q, len(headers), len(headers) + len(payload), headers, payload)
