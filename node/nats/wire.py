"""Encoders for what the node writes to clients: INFO, MSG/HMSG, +OK, PING/PONG, headers.

`append_msg` is on the hot path: it appends one MSG or HMSG frame to a connection's
outbound bytearray without building intermediate strings. Header blocks follow the
NATS/1.0 format (`NATS/1.0[ status]\\r\\nKey: Value\\r\\n...\\r\\n`).
"""

from __future__ import annotations

import msgspec

OK = b"+OK\r\n"
PING = b"PING\r\n"
PONG = b"PONG\r\n"
CRLF = b"\r\n"
NO_RESPONDERS_HEADERS = b"NATS/1.0 503\r\n\r\n"

_json = msgspec.json.Encoder()


def info_line(info: dict) -> bytes:
    """`INFO {...} \\r\\n`, with the space before CRLF that nats-server writes."""
    return b"INFO " + _json.encode(info) + b" \r\n"


def append_msg(
    out: bytearray, subject: bytes, sid: bytes, reply: bytes | None, headers: bytes | None, payload: bytes
) -> None:
    """Append one MSG (or HMSG when `headers` is not None) frame to `out`."""
    out += b"MSG " if headers is None else b"HMSG "
    out += subject
    out += b" "
    out += sid
    if reply:
        out += b" "
        out += reply
    if headers is None:
        out += b" %d\r\n" % len(payload)
    else:
        out += b" %d %d\r\n" % (len(headers), len(headers) + len(payload))
        out += headers
    out += payload
    out += CRLF


# An HMSG frame whose reply subject is head + number + tail, with one format: (subject, sid,
# reply head, number, reply tail, len(headers), len(headers) + len(payload), headers,
# payload) -> the bytes `append_msg` appends for the same message. Every mailbox delivery
# is one (an ack subject carries the message's seq), and a catch-up builds a hundred
# thousand in a row.
HMSG_NUMBERED_REPLY = b"HMSG %s %s %s%d%s %d %d\r\n%s%s\r\n"


def header_block(pairs: list[tuple[str, str]] | tuple[tuple[str, str], ...], status: str = "") -> bytes:
    """Build a NATS/1.0 header block from (name, value) pairs."""
    head = "NATS/1.0 " + status if status else "NATS/1.0"
    lines = [head]
    lines.extend(f"{k}: {v}" for k, v in pairs)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_headers(block: bytes | None) -> list[tuple[str, str]]:
    """The (name, value) pairs of a NATS/1.0 header block; an unreadable block gives []."""
    if not block:
        return []
    try:
        text = block.decode()
    except UnicodeDecodeError:
        return []
    lines = text.split("\r\n")
    if not lines or not lines[0].startswith("NATS/1.0"):
        return []
    pairs = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if sep:
            pairs.append((name.strip(), value.strip()))
    return pairs


def header_value(block: bytes | None, name: str) -> str | None:
    """The first value of header `name` (case-insensitive), or None."""
    if not block:
        return None
    wanted = name.lower()
    for key, value in parse_headers(block):
        if key.lower() == wanted:
            return value
    return None
