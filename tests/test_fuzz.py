"""Property-based fuzzing (hypothesis) of the NATS parsers and of the mq9 request decoders.

Why: anyone who reaches the port can send anything, in any pieces. The node must not raise
or hang: it serves a connection or closes it with nats-server's `-ERR`; an mq9 request,
however malformed, gets a JSON reply in time; the node stays up for everyone else.

What, with data split at random points: `Parser` and `RouteParser` in process (valid
streams, CRLF inside payloads, give the ops they were built from; garbage never raises,
gives the same ops whatever the split, at most one error op, last, from the `-ERR` table;
never more buffered than the limits); one real node over raw sockets after INFO, with or
without CONNECT (answered, or a known `-ERR` and closed, or closed quietly after the
client's own `-ERR`; a fresh nats-py client served
after every example; replies independent of the split); the mq9 decoders via nats-py and
raw subjects (JSON-ish bodies, subjects, headers: a JSON reply in time, the success shape
or a code docs/protocol.md lists; the node still takes writes). The bugs they found
(fixed in cf7b2d9, 7ea5823) stay as explicit examples or first draws.
tests/faults/test_fuzz_long.py runs the same strategies and `check_*` much longer.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time

import msgspec
import nats
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings, strategies as st

from node.nats import connection, errors
from node.nats.ops import INFO, PING, PONG, Connect, Info, Ping, Pong, ProtocolError, Pub, Sub, Unsub
from node.nats.parser import MAX_CONTROL_LINE, Parser
from node.nats.route_parser import RouteError, RouteHello, RouteMsg, RouteParser, RoutePing, RouteSub, rmsg


def fuzz_settings(n: int, **kw) -> settings:
    """`n` examples, no deadline (a node round trip varies), no example database on disk."""
    return settings(max_examples=n, deadline=None, database=None, **kw, suppress_health_check=[HealthCheck.too_slow,
                    HealthCheck.data_too_large, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])


NO_SHRINK = (Phase.explicit, Phase.generate)  # for properties that fail by a timeout: no slow shrinking

# ---- client protocol streams ------------------------------------------------------------

TOKEN = st.from_regex(rb"[A-Za-z0-9_$-]{1,8}", fullmatch=True)
SUBJECT = st.lists(TOKEN, min_size=1, max_size=4).map(b".".join)
SUB_SUBJECT = st.tuples(st.lists(TOKEN | st.just(b"*"), min_size=1, max_size=4), st.booleans()).map(
    lambda t: b".".join(t[0] + ([b">"] if t[1] else [])))
SID = st.from_regex(rb"[A-Za-z0-9]{1,6}", fullmatch=True)
TRICKY = [b"\r\n", b"\r", b"\n", b"PING\r\n", b"PUB a 1\r\n", b"\r\n\r\n", b"MSG a 1 1\r\n", b" ", b"-ERR 'x'\r\n"]
PAYLOAD = st.lists(st.binary(max_size=12) | st.sampled_from(TRICKY), max_size=6).map(b"".join)
HEADER_BLOCK = st.lists(st.tuples(st.from_regex(rb"[A-Za-z0-9-]{1,8}", fullmatch=True),
                                  st.binary(max_size=10).map(lambda v: v.replace(b"\r", b"").replace(b"\n", b""))),
                        max_size=3).map(lambda kv: b"NATS/1.0\r\n" + b"".join(k + b": " + v + b"\r\n" for k, v in kv) + b"\r\n")
SEP = st.sampled_from([b" ", b"\t", b"  ", b" \t "])
EOL = st.sampled_from([b"\r\n", b"\n", b" \r\n"])
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "No")), max_size=16)
JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.floats(-1e12, 1e12) | TEXT,
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(TEXT, c, max_size=4), max_leaves=10)
_CONNECT_VALUES = {bool: st.booleans(), str: TEXT, int: st.integers(0, 1)}
CONNECT_FIELDS = st.fixed_dictionaries({}, optional={  # python name -> value, for every CONNECT field
    f.name: _CONNECT_VALUES[f.type] for f in msgspec.structs.fields(Connect) if f.type in _CONNECT_VALUES})
_WIRE_NAME = {f.name: f.encode_name for f in msgspec.structs.fields(Connect)}


def verb(draw, word: bytes) -> bytes:
    return draw(st.sampled_from([word, word.lower(), word.title()]))


@st.composite
def client_frame(draw):
    """(bytes of one PUB/HPUB/SUB/UNSUB/CONNECT, the ops the parser owes for them)."""
    kind, sep = draw(st.sampled_from(["pub", "sub", "unsub", "connect"])), lambda: draw(SEP)
    if kind == "pub":
        subject, payload, reply, hdr = draw(SUBJECT), draw(PAYLOAD), draw(st.none() | SUBJECT), draw(st.none() | HEADER_BLOCK)
        line = verb(draw, b"HPUB" if hdr is not None else b"PUB") + sep() + subject + (sep() + reply if reply else b"")
        body = payload if hdr is None else hdr + payload
        line += (b"" if hdr is None else sep() + b"%d" % len(hdr)) + sep() + b"%d" % len(body)
        return line + draw(EOL) + body + b"\r\n", [Pub(subject, reply, hdr, payload)]
    if kind == "sub":
        subject, queue, sid = draw(SUB_SUBJECT), draw(st.none() | TOKEN), draw(SID)
        line = verb(draw, b"SUB") + sep() + subject + (sep() + queue if queue else b"") + sep() + sid
        return line + draw(EOL), [Sub(subject, queue, sid)]
    if kind == "unsub":
        sid, limit = draw(SID), draw(st.none() | st.from_regex(rb"[0-9]{1,9}", fullmatch=True) | TOKEN)
        n = int(limit) if limit and limit.isdigit() and len(limit) <= 9 else 0
        return verb(draw, b"UNSUB") + sep() + sid + (sep() + limit if limit else b"") + draw(EOL), [Unsub(sid, n)]
    fields = draw(CONNECT_FIELDS)
    extra = draw(st.dictionaries(st.from_regex(r"x_[a-z]{1,5}", fullmatch=True), JSON, max_size=2))
    body = json.dumps({**{_WIRE_NAME[k]: v for k, v in fields.items()}, **extra}, ensure_ascii=draw(st.booleans()))
    return verb(draw, b"CONNECT") + b" " + body.encode() + draw(EOL), [Connect(**fields)]


SIMPLE_FRAME = st.tuples(st.sampled_from([(b"PING", [PING]), (b"PONG", [PONG]), (b"INFO {}", [INFO]), (b"+OK", [])]),
                         st.sampled_from([bytes.upper, bytes.lower]), EOL).map(lambda t: (t[1](t[0][0]) + t[2], t[0][1]))
FRAME = client_frame() | SIMPLE_FRAME


def joined(frames: list) -> tuple[bytes, list]:
    """One stream of frames and its ops; an HPUB after a CONNECT without headers is left out (refused)."""
    headers, kept = True, []
    for frame in frames:
        op = frame[1][0] if frame[1] else None
        if type(op) is Connect:
            headers = op.headers
        if headers or type(op) is not Pub or op.headers is None:
            kept.append(frame)
    return b"".join(f[0] for f in kept), [op for f in kept for op in f[1]]


STREAM = st.lists(FRAME, max_size=12).map(joined)
CUTS = st.lists(st.integers(0, 10**6), max_size=24)  # split points, taken modulo the length
FRAGMENT = st.sampled_from([b"PUB ", b"HPUB ", b"SUB ", b"UNSUB ", b"PING", b"PONG", b"CONNECT ", b"INFO ", b"+OK",
                            b"-ERR ", b"MSG ", b"\r\n", b"\r", b"\n", b" ", b"\t", b"0", b"5", b"999999999",
                            b"1234567890", b"{", b"}", b'"', b"foo", b"$mq9.AI.", b"NATS/1.0\r\n"])


@st.composite
def mutated(draw, streams=STREAM):
    """A valid stream with a few bytes inserted, deleted or replaced."""
    data = bytearray(draw(streams)[0])
    for _ in range(draw(st.integers(1, 4))):
        pos, kind = draw(st.integers(0, len(data))), draw(st.sampled_from(["insert", "delete", "replace"]))
        if kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4) | FRAGMENT)
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 8))]
        elif pos < len(data):
            data[pos] = draw(st.integers(0, 255))
    return bytes(data)


# garbage stays under 4000 bytes (quick); lines at the 4096-byte limit: test_control_line_limit_*
GARBAGE = st.one_of(st.binary(max_size=400), mutated(), st.lists(FRAGMENT | st.binary(max_size=6) | FRAME.map(
    lambda f: f[0]), max_size=30).map(b"".join)).map(lambda b: b[:4000])


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = [0, *sorted({c % (len(data) + 1) for c in cuts}), len(data)]  # cut points, modulo the length + 1
    return [data[a:b] for a, b in zip(points, points[1:])]


# ---- in-process checks -------------------------------------------------------------------

TABLE = frozenset(v for v in vars(errors).values() if isinstance(v, errors.NatsError))
PARSERS = {  # kind -> (a parser with this max_payload, its error op, every op it may produce)
    "client": (lambda mp: Parser(max_payload=mp), ProtocolError, (Connect, Pub, Sub, Unsub, Ping, Pong, Info, ProtocolError)),
    "route": (RouteParser, RouteError, (RouteHello, RouteSub, RouteMsg, RoutePing, RouteError))}


def buffered(parser) -> int:
    return len(parser._rest or b"")  # white box: each parser holds its leftover in one buffer


def feed_all(parser, chunks: list[bytes], line_limit: int = MAX_CONTROL_LINE) -> list:
    """Feed chunk by chunk: nothing after death, never more buffered than the limits."""
    ops: list = []
    bound = max(line_limit + 1, parser.max_payload + 2)  # + 1: a CR waiting for its LF
    for chunk in chunks:
        dead, got = parser.dead, parser.feed(chunk)
        assert not (dead and got), f"ops after the parser died: {got}"
        ops.extend(got)
        assert buffered(parser) <= bound, f"{buffered(parser)} bytes buffered, limit {bound}"
    return ops


def summary(ops: list) -> list:
    """Ops with an error reduced to its `-ERR` text (the detail may name the split)."""
    return [("error", getattr(getattr(o, "error", None), "text", None)) if type(o) in (ProtocolError, RouteError)
            else o for o in ops]


def check_stream(kind: str, stream, cuts) -> None:
    """A valid stream gives the ops it was built from, in one piece or split anywhere."""
    make = PARSERS[kind][0]
    data, expected = stream
    assert make(1 << 20).feed(data) == expected
    assert (ops := feed_all(make(1 << 20), split(data, cuts))) == expected
    assert not any(type(getattr(o, f)) is bytearray for o in ops for f in o.__struct_fields__), ops  # copies, no views


def check_garbage(kind: str, data: bytes, cuts, max_payload: int) -> None:
    """Garbage: known ops, at most one error (last, from the table), then nothing; the same whatever the split."""
    make, error_op, op_types = PARSERS[kind]
    parser = make(max_payload)
    ops = feed_all(parser, split(data, cuts))
    assert all(type(o) in op_types for o in ops), ops
    errs = [o for o in ops if type(o) is error_op]
    assert len(errs) <= 1 and (not errs or (ops[-1] is errs[0] and parser.dead)), errs
    assert kind == "route" or all(e.error in TABLE or e.error is None for e in errs), errs  # None: the peer's -ERR
    assert not parser.dead or parser.feed(b"PING\r\n") == []
    assert summary(make(max_payload).feed(data)) == summary(ops)


def check_client_bounds(line_limit: int, max_payload: int, no_newline: list[bytes], size: int, cuts) -> None:
    """A line without its end: dead with MAX_CONTROL_LINE once more than the limit came; a
    PUB's payload: refused on the control line if too big, else never more than it buffered."""
    parser, fed = Parser(max_payload=max_payload, max_control_line=line_limit), b""
    for chunk in no_newline:  # a CR waiting for its LF does not count against the limit
        ops, fed = parser.feed(chunk), fed + chunk
        assert buffered(parser) <= line_limit + 1 and parser.dead == (len(fed) - fed.endswith(b"\r") > line_limit)
        assert [o.error for o in ops] == ([errors.MAX_CONTROL_LINE] if ops else [])
    parser = Parser(max_payload=max_payload, max_control_line=line_limit)
    ops = parser.feed(b"PUB s %d\r\n" % size)
    if size > max_payload:
        assert [o.error for o in ops] == [errors.MAX_PAYLOAD] and parser.dead
    else:
        ops = feed_all(parser, split(b"p" * size + b"\r\n", cuts), line_limit)
        assert ops == [Pub(b"s", None, None, b"p" * size)] and buffered(parser) == 0


# ---- route protocol streams ---------------------------------------------------------------

ROUTE_TOKEN = TOKEN.filter(lambda t: t != b"-")  # "-" is the route protocol's "none"
ROUTE_SUBJECT = st.lists(ROUTE_TOKEN, min_size=1, max_size=4).map(b".".join)


@st.composite
def route_frame(draw):
    kind = draw(st.sampled_from(["msg", "sub", "ping", "hello"]))
    if kind == "msg":
        subject, reply, payload = draw(ROUTE_SUBJECT), draw(st.none() | ROUTE_SUBJECT), draw(PAYLOAD)
        queues, hdr = draw(st.lists(ROUTE_TOKEN, max_size=3)), draw(st.none() | HEADER_BLOCK)
        return rmsg(subject, reply, queues, hdr, payload), [RouteMsg(subject, reply, tuple(queues), hdr, payload)]
    if kind == "sub":
        add, subject, queue = draw(st.booleans()), draw(SUB_SUBJECT), draw(st.none() | ROUTE_TOKEN)
        return b"RS%s %s%s\r\n" % (b"+" if add else b"-", subject, b" " + queue if queue else b""), [RouteSub(add, subject, queue)]
    if kind == "ping":
        return (b"PONG" if (pong := draw(st.booleans())) else b"PING") + b"\r\n", [RoutePing(pong)]
    verb_, fields = draw(st.sampled_from([b"INFO", b"CONNECT", b"OK"])), draw(st.dictionaries(TEXT, JSON, max_size=4))
    return verb_ + b" " + json.dumps(fields).encode() + b"\r\n", [RouteHello(verb_, fields)]


ROUTE_STREAM = st.lists(route_frame(), max_size=12).map(joined)
ROUTE_FRAGMENT = st.sampled_from([b"RMSG ", b"RHMSG ", b"RS+ ", b"RS- ", b"PING", b"INFO ", b"OK {", b"- ", b"\r\n",
                                  b"\r", b"\n", b"9", b"999999999", b",", b" "])
ROUTE_GARBAGE = st.one_of(st.binary(max_size=400), mutated(ROUTE_STREAM), st.lists(ROUTE_FRAGMENT | st.binary(
    max_size=6) | route_frame().map(lambda f: f[0]), max_size=30).map(b"".join)).map(lambda b: b[:4000])


def check_handshake_json(kind: str, body: bytes) -> None:
    """CONNECT (client) or INFO (route) with any JSON: an op or a protocol error, never an exception."""
    ops = PARSERS[kind][0](1 << 20).feed((b"CONNECT " if kind == "client" else b"INFO ") + body + b"\r\nPING\r\n")
    assert type(ops[-1]) in (Ping, RoutePing) or [type(o) for o in ops] == [PARSERS[kind][1]]


def check_line_limit_split(kind: str, extra: int, cut: int) -> None:
    """A control line of about the limit is accepted or refused the same whatever the split."""
    n = MAX_CONTROL_LINE + extra
    line = (b"SUB " + b"a" * (n - 6) + b" 1") if kind == "client" else (b"RS+ " + b"a" * (n - 4))
    data = line + b"\r\nPING\r\n"
    make = PARSERS[kind][0]
    whole = [type(o).__name__ for o in make(1 << 20).feed(data)]
    pieces = [type(o).__name__ for o in feed_all(make(1 << 20), split(data, [cut]), n + 8)]
    assert pieces == whole, (len(line), cut % (len(data) + 1))


STREAMS = {"client": (STREAM, GARBAGE), "route": (ROUTE_STREAM, ROUTE_GARBAGE)}


@pytest.mark.parametrize("kind", PARSERS)
@fuzz_settings(250)
@given(data=st.data(), cuts=CUTS)
def test_parser_valid_streams_any_split(kind, data, cuts):
    check_stream(kind, data.draw(STREAMS[kind][0], "stream"), cuts)


@pytest.mark.parametrize("kind", PARSERS)
@fuzz_settings(350)
@given(data=st.data(), cuts=CUTS, max_payload=st.sampled_from([0, 16, 64, 1 << 20]))
def test_parser_garbage_any_split(kind, data, cuts, max_payload):
    check_garbage(kind, data.draw(STREAMS[kind][1], "garbage"), cuts, max_payload)


BOUNDS = st.tuples(st.integers(16, 300), st.integers(0, 2048), st.lists(st.binary(max_size=80).map(
    lambda b: b.replace(b"\n", b"")), max_size=12), st.integers(0, 3000), CUTS)  # check_client_bounds's arguments


@fuzz_settings(150)
@given(BOUNDS)
def test_client_parser_memory_bound(case):
    check_client_bounds(*case)


@pytest.mark.parametrize("kind", PARSERS)  # a CR waiting for its LF once counted against the limit (cf7b2d9)
@fuzz_settings(60, phases=NO_SHRINK)
@given(extra=st.integers(-3, 3), cut=st.integers(MAX_CONTROL_LINE - 8, MAX_CONTROL_LINE + 8))
@example(extra=0, cut=MAX_CONTROL_LINE + 1)  # the whole line and its CR, then LF: PING
def test_control_line_limit_does_not_depend_on_split(kind, extra, cut):
    check_line_limit_split(kind, extra, cut)


JSON_BODIES = st.one_of(st.integers(1, 3000).map(lambda d: b'{"x":' + b"[" * d + b"]" * d + b"}"),
                        st.tuples(st.sampled_from(["name", "lang", "user", "x"]), st.binary(max_size=6)).map(
                            lambda t: b'{"%s":"%s"}' % (t[0].encode(), t[1].replace(b'"', b"").replace(b"\\", b""))))


@pytest.mark.parametrize("kind", PARSERS)  # UnicodeDecodeError and RecursionError once escaped feed() (cf7b2d9)
@fuzz_settings(60, phases=NO_SHRINK)
@given(body=JSON_BODIES)
@example(body=b'{"name":"\x80"}')  # invalid UTF-8 in a string
@example(body=b'{"x":' + b"[" * 2000 + b"]" * 2000 + b"}")  # 4011 bytes: under the control line limit
def test_connect_json_never_raises(kind, body):
    check_handshake_json(kind, body)


# ---- one real node over raw TCP sockets -----------------------------------------------------

_SENT = {e.text: e.fatal for m in (errors, connection) for e in vars(m).values() if isinstance(e, errors.NatsError)}
_SENT.update({"invalid client protocol": True, "no responders requires headers support": True})  # inline in connection.py
NODE_ERRORS = [(re.compile(re.escape(t).replace(r"\{\}", ".*").encode()), fatal) for t, fatal in _SENT.items()]
FATAL = re.compile(b"(?m)^-ERR '(?:" + b"|".join(rx.pattern for rx, fatal in NODE_ERRORS if fatal) + b")'\r$")
QUIET = b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\n'
CONNECTS = st.sampled_from([b"", b"CONNECT {}\r\n", QUIET, b'CONNECT {"headers":true,"no_responders":true}\r\n',
                            b'CONNECT {"verbose":false,"pedantic":false,"headers":false}\r\n'])
DELAYS = st.lists(st.sampled_from([0.0, 0.0, 0.0, 0.001, 0.003]), min_size=1, max_size=4)  # to split TCP segments
IO_TIMEOUT = 10.0  # every socket read or write; a PONG held by the durability barrier comes within 2.5 s


def server_frames(out: bytes) -> list[tuple[bytes, bytes]]:
    """(verb, payload or -ERR text) per frame the node sent; a line the node may not send fails."""
    frames, pos = [], 0
    while pos < len(out):
        nl = out.find(b"\r\n", pos)
        assert nl >= 0, f"unterminated line from the node: {out[pos:pos + 80]!r}"
        line, pos, payload = out[pos:nl], nl + 2, b""
        word = line.split(b" ", 1)[0]
        if word in (b"MSG", b"HMSG"):
            size = int(line.split()[-1])
            payload, pos = out[pos:pos + size], pos + size + 2
            assert out[pos - 2:pos] == b"\r\n", f"bad {word!r} frame: {line!r}"
        elif word == b"-ERR":
            m = re.fullmatch(rb"-ERR '(.*)'", line)
            assert m and any(rx.fullmatch(m.group(1)) for rx, _ in NODE_ERRORS), f"not a nats-server -ERR: {line!r}"
            payload = m.group(1)
        else:
            assert line in (b"PING", b"PONG", b"+OK") or word == b"INFO", f"unexpected line from the node: {line!r}"
        frames.append((word, payload))
    return frames


def raw_exchange(port: int, chunks: list[bytes], delays: list[float], pongs: int, until_closed: bool, msgs: int = 0):
    """After INFO, send the chunks; read until `pongs` PONGs and `msgs` MSGs (or the close, if `until_closed` or
    after a fatal -ERR), a close, or IO_TIMEOUT. Returns (what came after INFO, whether the node closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        out, closed = bytearray(), False
        while b"\r\n" not in out:
            out += s.recv(4096) or b"closed before INFO\r\n"  # which fails the check below
        assert out.startswith(b"INFO {"), out
        out = out[out.index(b"\r\n") + 2:]
        for i, chunk in enumerate(chunks):
            try:
                s.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break  # closed by the node: read what it said
            time.sleep(delays[i % len(delays)])
        deadline = time.monotonic() + IO_TIMEOUT
        while not closed and time.monotonic() < deadline and (
                until_closed or FATAL.search(out) or len(re.findall(rb"(?m)^PONG\r$", out)) < pongs or len(re.findall(rb"(?m)^MSG ", out)) < msgs):
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                data = b""
            closed, out = not data, out + data
        return bytes(out), closed


def check_node_alive(node, write: bool = False) -> None:
    """A fresh nats-py client is served within a deadline: a PING answered (and a mailbox write)."""
    async def probe() -> None:
        nc = await nats.connect(node.url, connect_timeout=5, allow_reconnect=False)
        try:
            if write:  # also catches a wedged write path
                msg = await nc.request("$mq9.AI.MAILBOX.CREATE", b'{"name":"fuzz.health"}', timeout=REPLY_TIMEOUT)
                assert json.loads(msg.data)["mail_id"] == "fuzz.health", msg.data
            await nc.flush(timeout=5)
        finally:
            await nc.close()

    asyncio.run(asyncio.wait_for(probe(), 30))
    assert node.alive()


def check_raw_session(node, connect: bytes, body: bytes, cuts, delays) -> None:
    """Whatever the bytes: answered (PONG for every PING), or a known fatal -ERR and closed."""
    data = connect + body
    model = Parser()  # the node's own parser, as a model of where the stream ends
    oracle = model.feed(data)
    failed = any(type(o) is ProtocolError and o.error is not None for o in oracle)  # None: the client's own -ERR
    ends_clean = not model.dead and Parser().feed(data + b"PING\r\n") == oracle + [PING]
    pongs = oracle.count(PING) + ends_clean
    chunks, cutoff = split(data, cuts), Parser()
    for n, chunk in enumerate(chunks):  # nothing after the chunk that ends the stream: no RST to race the -ERR
        cutoff.feed(chunk)
        if cutoff.dead:
            chunks = chunks[:n + 1]
            break
    out, closed = raw_exchange(node.port, chunks + [b"PING\r\n"] * ends_clean, delays, pongs, until_closed=model.dead)
    frames = server_frames(out)
    fatal = [i for i, (w, text) in enumerate(frames) if w == b"-ERR" and any(f for rx, f in NODE_ERRORS if rx.fullmatch(text))]
    if fatal:
        assert fatal == [len(frames) - 1] and closed, f"frames after a fatal -ERR, or not closed: {frames[-3:]}"
    else:  # serving, or closed quietly after the client's own -ERR (as nats-server does)
        assert closed == model.dead and not failed, f"closed without -ERR, or open after {oracle[-1:]}: {frames[-3:]}"
        assert [w for w, _ in frames].count(b"PONG") == pongs, f"PONGs missing: {frames[-3:]}"
    check_node_alive(node)


def check_split_invariance(node, connect: bytes, stream, cuts) -> None:
    """The node's reply to a valid stream is the same bytes whether it came in one piece or many."""
    data, pongs = connect + stream[0] + b"PING\r\n", stream[1].count(PING) + 1
    whole = raw_exchange(node.port, [data], [0.0], pongs, until_closed=False)
    words = [w for w, _ in server_frames(whole[0])]  # known frames: every PONG, or closed after an -ERR
    assert words.count(b"PONG") == pongs or whole[1] and words[-1:] == [b"-ERR"], whole
    assert raw_exchange(node.port, split(data, cuts), [0.001], pongs, until_closed=False) == whole
    check_node_alive(node)


# until 7ea5823 the node neither closed nor served a connection after the client's own -ERR (the parser gave no
# op for it), until the stale-connection PINGs, 2 x 120 s later; nats-server closes it at once, quietly
@fuzz_settings(4, phases=NO_SHRINK)
@given(st.sampled_from([b"-ERR 'x'\r\n", b"-err\r\nPING\r\n"]))
def test_node_closes_after_client_err(node, data):
    assert raw_exchange(node.port, [data], [0.0], 0, until_closed=True) == (b"", True)


NODE_STREAM = STREAM.filter(lambda s: not any(type(o) is Connect for o in s[1]))


@fuzz_settings(500)
@given(CONNECTS, GARBAGE | STREAM.map(lambda s: s[0]), CUTS, DELAYS)
def test_node_raw_bytes_served_or_refused(node, connect, body, cuts, delays):
    check_raw_session(node, connect, body, cuts, delays)


@pytest.mark.parametrize("connect", [QUIET, b'CONNECT {"verbose":true,"pedantic":true,"headers":true}\r\n',
                                     b'CONNECT {"verbose":false,"pedantic":false,"headers":false}\r\n'])
@fuzz_settings(60)
@given(NODE_STREAM, CUTS)
@example(stream=(b"SUB h 1\r\nHPUB h 12 14\r\nNATS/1.0\r\n\r\nhi\r\n", []), cuts=[60])  # 60: after CONNECT headers:false
# (an HPUB in the same read as that CONNECT was delivered, in the next read refused, until cf7b2d9)
def test_node_reply_does_not_depend_on_split(node, connect, stream, cuts):
    check_split_invariance(node, connect, stream, cuts)


# ---- the mq9 request decoders -----------------------------------------------------------------

BOXES = ["fuzz.pub", "fuzz.priv"]  # made by the `boxes` fixture, so requests also reach live mailboxes
NAME = st.from_regex(r"[a-z0-9_-]{1,8}", fullmatch=True)
ODD_TOKEN = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp", "No"), blacklist_characters=".*>"),
                    min_size=1, max_size=12) | st.sampled_from(["*", ">", "high", "low", "_", "-", "0", str(2**64 - 1)])
MAIL = st.sampled_from(BOXES) | st.lists(NAME | ODD_TOKEN, min_size=1, max_size=3).map(".".join)
NUMBER = st.from_regex(r"[0-9]{1,12}", fullmatch=True) | ODD_TOKEN
WORDS = ["MAILBOX", "CREATE", "LIST", "INFO", "DELETE", "ACK", "PUBLIC", "MSG"]
MQ9_SUBJECT = st.one_of(
    st.sampled_from(["$mq9.AI.MAILBOX.CREATE", "$mq9.AI.PUBLIC.LIST", "$mq9.AI.NODE.STATUS"]),
    st.tuples(st.sampled_from(["LIST", "INFO"]), MAIL).map("$mq9.AI.MAILBOX.{0[0]}.{0[1]}".format),
    st.tuples(MAIL, NUMBER).map("$mq9.AI.MAILBOX.DELETE.{0[0]}.{0[1]}".format),
    st.tuples(NUMBER, st.just("_") | st.binary(min_size=1, max_size=6).map(bytes.hex) | ODD_TOKEN, MAIL).map(
        "$mq9.AI.ACK.{0[0]}.{0[1]}.{0[2]}".format),
    st.tuples(MAIL, st.sampled_from(["", ".urgent", ".high", ".low", ".critical"])).map("$mq9.AI.MAILBOX.MSG.{0[0]}{0[1]}".format),
    st.lists(NAME | ODD_TOKEN | st.sampled_from(WORDS), min_size=1, max_size=5).map(lambda ts: "$mq9.AI." + ".".join(ts)))
FIELD = JSON | st.sampled_from([0, -1, 1, 2**53, -2**53, 0.5, "", "fuzz.pub", "x" * 1100, True, None, [], {}])
REQUEST = st.fixed_dictionaries({}, optional={k: FIELD for k in (
    "ttl", "public", "name", "desc", "ack_wait", "max_in_flight", "after", "limit")} | {"name": NAME, "after": NUMBER})
# numbers within 64 bits, JSON strings valid UTF-8, shallow nesting: beyond that is MQ9_EDGES's input
BODY = st.one_of(
    st.just(b""), st.binary(max_size=64), JSON.map(lambda v: json.dumps(v).encode()),
    st.tuples(REQUEST, st.booleans()).map(lambda t: json.dumps(t[0], ensure_ascii=t[1]).encode()),
    st.from_regex(rb'\{"(ttl|name|after|limit|ack_wait|public|max_in_flight)": ?(-?[0-9]{0,9}(\.[0-9]*)?([eE][+-]?[0-5])?'
                  rb'|NaN|-?Infinity|"[a-z0-9 .]{0,5}"?|tru|nul|\[|\{)\}?', fullmatch=True))
MQ9_HEADERS = st.none() | st.dictionaries(st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,12}", fullmatch=True) | st.just("Nats-Msg-Id"),
                                          st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20), max_size=3)
RAW_TOKEN = st.binary(min_size=1, max_size=10).map(lambda b: bytes(c for c in b if c not in b" \t\r\n\x0b\x0c.") or b"x")
RAW_SUBJECT = st.lists(RAW_TOKEN | st.sampled_from([w.encode() for w in WORDS] + [b"fuzz", b"pub"]), min_size=1,
                       max_size=5).map(lambda ts: b"$mq9.AI." + b".".join(ts))
REPLY_TIMEOUT = 8.0  # a write is answered within write_timeout_s (2.5 s), a read at once
SHAPES = [  # (a subject, or a prefix ending in ".", its success reply's keys, a write?) in node/mq9/api.py's order
    (b"$mq9.AI.MAILBOX.MSG.", {"msg_id", "mail_id"}, True), (b"$mq9.AI.ACK.", {"ok"}, True),
    (b"$mq9.AI.MAILBOX.CREATE", {"mail_id", "is_new", "ttl", "expires_at"}, True),
    (b"$mq9.AI.MAILBOX.LIST.", {"mail_id", "messages"}, False), (b"$mq9.AI.MAILBOX.DELETE.", {"deleted"}, True),
    (b"$mq9.AI.MAILBOX.INFO.", {"mail_id", "messages", "total", "groups"}, False),
    (b"$mq9.AI.PUBLIC.LIST", {"mailboxes"}, False), (b"$mq9.AI.NODE.STATUS", set(), False)]


def check_reply(subject: bytes, data: bytes) -> None:
    """JSON; the success shape of the request, or {"error": str, "code": int} with a documented code."""
    reply = json.loads(data)
    keys, write = next(((k, w) for p, k, w in SHAPES if subject == p or p[-1:] == b"." and subject.startswith(p)), (None, 0))
    assert type(reply) is dict, reply
    if "error" in reply:
        assert set(reply) == {"error", "code"} and type(reply["error"]) is str and type(reply["code"]) is int, reply
        assert not reply["error"].startswith("{"), f"an error text that is itself an error reply: {reply}"
        # docs/protocol.md: 400 bad request, 404 not found, 503 only for a write that found no quorum in time
        assert reply["code"] in ((400, 404, 503) if write else (400, 404)), reply
    else:
        assert keys is not None and keys <= set(reply), f"not the success reply of {subject!r}: {reply}"


def check_mq9_request(node, subject: str, body: bytes, headers=None, timeout: float = REPLY_TIMEOUT) -> None:
    """Through nats-py: a JSON reply in time, of the right shape; then the node still takes writes."""
    async def run() -> bytes:
        nc = await nats.connect(node.url, connect_timeout=5, allow_reconnect=False)
        try:
            return (await nc.request(subject, body, timeout=timeout, headers=headers)).data
        finally:
            await nc.close()

    check_reply(subject.encode(), asyncio.run(asyncio.wait_for(run(), 30)))
    check_node_alive(node, write=True)


def check_mq9_raw(node, subject: bytes, body: bytes, hdr: bytes | None) -> None:
    """A request whose subject is raw bytes (invalid UTF-8 too), over a raw socket: one JSON reply (a write's
    before the PONG, the durability barrier; a read's may follow it, after the read barrier)."""
    pub = (b"PUB %s _INBOX.fz %d\r\n%s\r\n" % (subject, len(body), body) if hdr is None else
           b"HPUB %s _INBOX.fz %d %d\r\n%s%s\r\n" % (subject, len(hdr), len(hdr) + len(body), hdr, body))
    out, closed = raw_exchange(node.port, [QUIET + b"SUB _INBOX.fz 1\r\n" + pub + b"PING\r\n"], [0.0], 1, False, msgs=1)
    frames = server_frames(out)
    assert not closed and sorted(w for w, _ in frames) == [b"MSG", b"PONG"], frames
    check_reply(subject, next(p for w, p in frames if w == b"MSG"))
    check_node_alive(node, write=True)


@pytest.fixture(scope="module")
def boxes(node) -> list[str]:
    async def make() -> None:
        nc = await nats.connect(node.url, connect_timeout=5)
        for subject, body in [("CREATE", b'{"name":"fuzz.pub","public":true,"ttl":0}'), ("CREATE", b'{"name":"fuzz.priv"}')] + [
                ("MSG.fuzz.pub.urgent", b"m%d" % i) for i in range(3)]:
            await nc.request("$mq9.AI.MAILBOX." + subject, body, timeout=REPLY_TIMEOUT)
        await nc.close()

    asyncio.run(make())
    return BOXES


@fuzz_settings(500)
@given(MQ9_SUBJECT, BODY, MQ9_HEADERS)
def test_mq9_requests_always_answered(node, boxes, subject, body, headers):
    check_mq9_request(node, subject, body, headers)


@fuzz_settings(200)
@given(RAW_SUBJECT, BODY, st.none() | HEADER_BLOCK)
def test_mq9_raw_subjects_always_answered(node, boxes, subject, body, hdr):
    check_mq9_raw(node, subject, body, hdr)


@pytest.fixture
def own_node(make_node):  # a node of its own: the "numbers" bug once left a node unable to write
    return make_node("fz").start()


BIG = st.integers(2**64, 10**30)
ODD_DIGITS = st.text(st.sampled_from("\u00b2\u00b3\u00b9\u2460\u2469\u2070"), min_size=1, max_size=3)  # isdigit(), not int()
MQ9_EDGES = {  # bugs fixed in 7ea5823 -> (the reproducer, more inputs like it, the node fixture it may spoil, the bug)
    "numbers": (("$mq9.AI.MAILBOX.DELETE.fuzz.pub.18446744073709551616", b""), st.one_of(
        st.tuples(st.sampled_from(["ttl", "ack_wait", "max_in_flight"]), BIG | st.floats(2e16, 1e300)).map(
            lambda t: ("$mq9.AI.MAILBOX.CREATE", json.dumps({t[0]: t[1]}).encode())),
        BIG.map(lambda n: (f"$mq9.AI.MAILBOX.DELETE.fuzz.pub.{n}", b"")), BIG.map(lambda n: (f"$mq9.AI.ACK.{n}._.x", b""))),
        "own_node", "numbers past 64 bits reach cluster/commands.py encode_batch unchecked (OverflowError in the "
        "batcher's flush): CREATE {\"ack_wait\": 1e300}, DELETE.{box}.18446744073709551616, ACK.18446744073709551616._.x, "
        "reply or not, get no answer, their batch is lost, after 8 no write is ever answered; {\"ttl\": 2**63}: 500"),
    "digits": (("$mq9.AI.MAILBOX.LIST.fuzz.pub", b'{"after": "\\u00b2"}'), st.one_of(
        (BIG.map(str) | ODD_DIGITS).map(lambda a: ("$mq9.AI.MAILBOX.LIST.fuzz.pub", json.dumps({"after": a}).encode())),
        ODD_DIGITS.map(lambda d: (f"$mq9.AI.MAILBOX.DELETE.fuzz.pub.{d}", b""))),
        "node", "node/mq9/api.py trusted str.isdigit(): LIST {\"after\": \"\u00b2\"} or an after past 64 bits raises "
        "in int()/pack_u64, answered 503 'storage read failed' double-encoded (the error text is a JSON error reply); "
        "DELETE.{box}.\u00b2 raises out of on_publish: no reply, the connection dropped"),
    "json": (("$mq9.AI.MAILBOX.CREATE", b'{"name": "\x80"}'), st.tuples(
        st.sampled_from(["$mq9.AI.MAILBOX.CREATE", "$mq9.AI.MAILBOX.LIST.fuzz.pub"]),
        st.binary(min_size=1, max_size=6).filter(lambda b: not b.isascii()).map(
            lambda b: b'{"name": "%s"}' % b.replace(b'"', b"").replace(b"\\", b""))
        | st.integers(1000, 20000).map(lambda d: b'{"x": ' + b"[" * d + b"]" * d + b"}")),
        "node", "node/mq9/api.py caught msgspec.DecodeError only: CREATE {\"name\": \"\\x80\"} (UnicodeDecodeError) "
        "or nested ~1000 deep (RecursionError) raises out of on_publish: no reply, connection dropped; LIST: 503"),
}


def check_mq9_edge(fixtures, edge: str, data) -> None:
    """The reproducer first (the example hypothesis tries first is its simplest, the first branch), then more."""
    reproducer, more, fixture, _ = MQ9_EDGES[edge]
    check_mq9_request(fixtures.getfixturevalue(fixture), *data.draw(st.just(reproducer) | more), timeout=4.0)


@pytest.mark.parametrize("edge", MQ9_EDGES)
@fuzz_settings(30, phases=NO_SHRINK)
@given(data=st.data())
def test_mq9_edge_values_refused(request, boxes, edge, data):
    check_mq9_edge(request, edge, data)
