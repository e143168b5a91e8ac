"""Sans-IO parser for the NATS client protocol: bytes in, typed ops out.

`Parser.feed(data)` returns the list of complete operations found so far; a partial
operation waits in the parser for the next call, so data may be split anywhere. There
are two states, as in nats.py and h11: reading a control line, or waiting for the
`size + 2` payload bytes a PUB/HPUB announced. The parser never imports asyncio and
never writes: the connection turns ops into effects.

How it stays fast: when nothing is left over from the previous call, lines are found
directly in the received `bytes` (no copy); otherwise the remainder is kept in one
bytearray. Lines end at LF (a CR before it is dropped), as nats-server accepts; a
payload must end with CRLF. The common `PUB subject [reply] size` line takes a
short path before the general verb table.

How it fails: like nats-server, every violation of the protocol itself is fatal. The
parser appends one `ProtocolError` op carrying the `-ERR` to send and stops for good.
Limits (max control line, max payload) are checked before a line or payload is
buffered, so a peer cannot make the node hold more than about those limits.
"""

from __future__ import annotations

import msgspec

from node.nats import errors
from node.nats.ops import INFO, PING, PONG, Connect, Op, ProtocolError, Pub, Sub, Unsub

MAX_CONTROL_LINE = 4096
_connect_decoder = msgspec.json.Decoder(Connect)


class Parser:
    """Incremental NATS client-protocol parser. One per connection."""

    __slots__ = ("max_payload", "max_control_line", "headers_allowed", "_rest", "_pending", "_dead")

    def __init__(self, max_payload: int = 1 << 20, max_control_line: int = MAX_CONTROL_LINE) -> None:
        self.max_payload = max_payload
        self.max_control_line = max_control_line
        self.headers_allowed = True  # the connection clears it if CONNECT says headers: false
        self._rest: bytearray | None = None  # unparsed bytes carried to the next feed()
        self._pending: tuple[bytes, bytes | None, int, int] | None = None  # a PUB waiting for its payload
        self._dead = False

    @property
    def dead(self) -> bool:
        """True once a fatal violation was reported; further input is ignored."""
        return self._dead

    def feed(self, data: bytes) -> list[Op]:
        """Parse as much as `data` (plus what was left before) allows."""
        if self._dead:
            return []
        rest = self._rest
        if rest:
            rest += data
            buf: bytes | bytearray = rest
        else:
            buf = data
        ops: list[Op] = []
        append = ops.append
        pos = 0
        end_all = len(buf)
        find = buf.find
        startswith = buf.startswith
        rest_is_buf = buf is rest  # slices of a bytearray are bytearrays: copy them to bytes
        pending = self._pending
        while True:
            if pending is not None:
                subject, reply, hdr_size, size = pending
                stop = pos + size
                if stop + 2 > end_all:
                    break
                if buf[stop] != 13 or buf[stop + 1] != 10:
                    return self._fail(ops, errors.UNKNOWN_PROTOCOL, "payload not followed by CRLF")
                if hdr_size < 0:
                    append(Pub(subject, reply, None, bytes(buf[pos:stop])))
                else:
                    split = pos + hdr_size
                    append(Pub(subject, reply, bytes(buf[pos:split]), bytes(buf[split:stop])))
                pos = stop + 2
                pending = None
                continue
            nl = find(b"\n", pos)
            if nl < 0:
                unfinished = end_all - pos
                if unfinished and buf[end_all - 1] == 13:
                    unfinished -= 1  # a CR waiting for its LF is not part of the line
                if unfinished > self.max_control_line:
                    return self._fail(ops, errors.MAX_CONTROL_LINE, "no end of line")
                break
            line_end = nl - 1 if nl > pos and buf[nl - 1] == 13 else nl
            if line_end - pos > self.max_control_line:
                return self._fail(ops, errors.MAX_CONTROL_LINE, "control line too long")
            if startswith(b"PUB ", pos):  # the hot path: most lines are publishes
                args = buf[pos + 4:line_end].split()
                n = len(args)
                if n == 2:
                    subject, size_b = args
                    reply = None
                elif n == 3:
                    subject, reply, size_b = args
                else:
                    return self._fail(ops, errors.UNKNOWN_PROTOCOL, f"processPub Parse Error: {bytes(buf[pos:line_end])!r}")
                if not size_b.isdigit() or len(size_b) > 9:
                    return self._fail(ops, errors.UNKNOWN_PROTOCOL, f"processPub Bad or Missing Size: {bytes(buf[pos:line_end])!r}")
                size = int(size_b)
                if size > self.max_payload:
                    return self._fail(ops, errors.MAX_PAYLOAD, f"{size} > {self.max_payload}")
                if rest_is_buf:
                    subject = bytes(subject)
                    reply = bytes(reply) if reply is not None else None
                start = nl + 1
                stop = start + size
                if stop + 2 <= end_all:  # the payload is here already: no pending state
                    if buf[stop] != 13 or buf[stop + 1] != 10:
                        return self._fail(ops, errors.UNKNOWN_PROTOCOL, "payload not followed by CRLF")
                    append(Pub(subject, reply, None, bytes(buf[start:stop])))
                    pos = stop + 2
                else:
                    pending = (subject, reply, -1, size)
                    pos = start
                continue
            line = bytes(buf[pos:line_end])
            pos = nl + 1
            op = self._control(line)
            if type(op) is tuple:  # a publish (PUB in another case, or HPUB) waiting for its payload
                pending = op
            elif type(op) is ProtocolError:
                if op.error is None:  # the peer sent -ERR: the connection closes quietly, as nats-server does
                    self._dead = True
                    self._rest = None
                    self._pending = None
                    append(op)
                    return ops
                self._pending = None
                self._rest = None
                self._dead = True
                append(op)
                return ops
            elif op is not None:
                append(op)
        self._pending = pending
        if pos >= end_all:
            self._rest = None
        elif buf is rest:
            del rest[:pos]
        else:
            self._rest = bytearray(memoryview(buf)[pos:])
        return ops

    def _fail(self, ops: list[Op], error: errors.NatsError, detail: str) -> list[Op]:
        self._dead = True
        self._rest = None
        self._pending = None
        ops.append(ProtocolError(error, detail))
        return ops

    def _control(self, line: bytes) -> Op | tuple | None:
        """Every control line but the plain `PUB `: returns an op, a pending publish, or an error."""
        parts = line.split(None, 1)
        if not parts or line[:1] in (b" ", b"\t"):
            return ProtocolError(errors.UNKNOWN_PROTOCOL, f"bad line {line[:32]!r}")
        verb = parts[0].upper()
        arg = parts[1] if len(parts) > 1 else b""
        handler = _VERBS.get(verb)
        if handler is None:
            return ProtocolError(errors.UNKNOWN_PROTOCOL, f"unknown verb {verb[:16]!r}")
        return handler(self, arg)

    def _pub(self, arg: bytes) -> tuple | ProtocolError:
        args = arg.split()
        if len(args) == 2:
            subject, reply, size_b = args[0], None, args[1]
        elif len(args) == 3:
            subject, reply, size_b = args
        elif not args:
            return ProtocolError(errors.UNKNOWN_PROTOCOL, "PUB without arguments")
        else:
            return ProtocolError(errors.UNKNOWN_PROTOCOL, f"processPub Parse Error: {arg!r}")
        size = _parse_size(size_b)
        if size < 0:
            return ProtocolError(errors.UNKNOWN_PROTOCOL, f"processPub Bad or Missing Size: {arg!r}")
        if size > self.max_payload:
            return ProtocolError(errors.MAX_PAYLOAD, f"{size} > {self.max_payload}")
        return (subject, reply, -1, size)

    def _hpub(self, arg: bytes) -> tuple | ProtocolError:
        if not self.headers_allowed:
            return ProtocolError(errors.UNKNOWN_PROTOCOL, "HPUB from a client that did not ask for headers")
        args = arg.split()
        if len(args) == 3:
            subject, reply, hdr_b, size_b = args[0], None, args[1], args[2]
        elif len(args) == 4:
            subject, reply, hdr_b, size_b = args
        elif not args:
            return ProtocolError(errors.UNKNOWN_PROTOCOL, "HPUB without arguments")
        else:
            return ProtocolError(errors.UNKNOWN_PROTOCOL, f"processHeaderPub Parse Error: {arg!r}")
        hdr = _parse_size(hdr_b)
        size = _parse_size(size_b)
        if hdr < 0 or size < 0 or hdr > size:
            return ProtocolError(errors.UNKNOWN_PROTOCOL, f"processHeaderPub Bad or Missing Size: {arg!r}")
        if size > self.max_payload:
            return ProtocolError(errors.MAX_PAYLOAD, f"{size} > {self.max_payload}")
        return (subject, reply, hdr, size)

    def _sub(self, arg: bytes) -> Sub | ProtocolError:
        args = arg.split()
        if len(args) == 2:
            return Sub(args[0], None, args[1])
        if len(args) == 3:
            return Sub(args[0], args[1], args[2])
        if not args:
            return ProtocolError(errors.UNKNOWN_PROTOCOL, "SUB without arguments")
        return ProtocolError(errors.UNKNOWN_PROTOCOL, f"processSub Parse Error: {arg!r}")

    def _unsub(self, arg: bytes) -> Unsub | ProtocolError:
        args = arg.split()
        if len(args) == 1:
            return Unsub(args[0], 0)
        if len(args) == 2:
            return Unsub(args[0], max(_parse_size(args[1]), 0))  # nats-server: a bad max removes now
        if not args:
            return ProtocolError(errors.UNKNOWN_PROTOCOL, "UNSUB without arguments")
        return ProtocolError(errors.UNKNOWN_PROTOCOL, f"processUnsub Parse Error: {arg!r}")

    def _connect(self, arg: bytes) -> Connect | ProtocolError:
        try:
            connect = _connect_decoder.decode(arg)
            self.headers_allowed = connect.headers  # for the rest of this very read too
            return connect
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            # ValidationError is a DecodeError; invalid UTF-8 in a string and JSON nested
            # too deep raise the other two, which must not escape feed()
            return ProtocolError(errors.UNKNOWN_PROTOCOL, f"CONNECT: {type(exc).__name__}: {exc}"[:200])

    def _ping(self, arg: bytes) -> Op:
        return PING

    def _pong(self, arg: bytes) -> Op:
        return PONG

    def _info(self, arg: bytes) -> Op:
        return INFO

    def _ok(self, arg: bytes) -> None:
        return None

    def _err(self, arg: bytes) -> ProtocolError:
        return ProtocolError(None, f"client sent -ERR {arg[:64]!r}")


def _parse_size(digits: bytes) -> int:
    """nats-server's parseSize: 1 to 9 ASCII digits, else -1 (so '+1', '-1' and '' are invalid)."""
    if not digits.isdigit() or len(digits) > 9:
        return -1
    return int(digits)


_VERBS = {
    b"PUB": Parser._pub,
    b"HPUB": Parser._hpub,
    b"SUB": Parser._sub,
    b"UNSUB": Parser._unsub,
    b"CONNECT": Parser._connect,
    b"PING": Parser._ping,
    b"PONG": Parser._pong,
    b"INFO": Parser._info,
    b"+OK": Parser._ok,
    b"-ERR": Parser._err,
}
