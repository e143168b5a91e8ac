"""The sans-IO parser: every sample split at every byte position, plus random bytes."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from node.nats import errors
from node.nats.ops import PING, PONG, Connect, ProtocolError, Pub, Sub, Unsub
from node.nats.parser import Parser

SAMPLES: list[tuple[bytes, list]] = [
    (b"PING\r\n", [PING]),
    (b"PONG\r\n", [PONG]),
    (b"ping\r\n", [PING]),
    (b"PING\n", [PING]),
    (b"CONNECT {}\r\n", [Connect()]),  # headers: false until the next CONNECT (the stream's HPUBs need it)
    (b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"name":"x"}\r\n',
     [Connect(verbose=False, pedantic=False, headers=True, name="x")]),
    (b"PUB foo 5\r\nhello\r\n", [Pub(b"foo", None, None, b"hello")]),
    (b"PUB foo.bar _INBOX.1 0\r\n\r\n", [Pub(b"foo.bar", b"_INBOX.1", None, b"")]),
    (b"pub\tfoo\t3\r\nabc\r\n", [Pub(b"foo", None, None, b"abc")]),
    (b"PUB foo 4\r\na\r\nb\r\n", [Pub(b"foo", None, None, b"a\r\nb")]),
    (b"HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n", [Pub(b"foo", None, b"NATS/1.0\r\n\r\n", b"hi")]),
    (b"HPUB foo r 18 18\r\nNATS/1.0\r\nA: b\r\n\r\n\r\n",
     [Pub(b"foo", b"r", b"NATS/1.0\r\nA: b\r\n\r\n", b"")]),
    (b"SUB foo 1\r\n", [Sub(b"foo", None, b"1")]),
    (b"SUB foo.* q 22\r\n", [Sub(b"foo.*", b"q", b"22")]),
    (b"UNSUB 1\r\n", [Unsub(b"1", 0)]),
    (b"UNSUB 1 10\r\n", [Unsub(b"1", 10)]),
    (b"UNSUB 1 x\r\n", [Unsub(b"1", 0)]),
    (b"+OK\r\nINFO {}\r\n", []),
]

STREAM = b"".join(s for s, _ in SAMPLES)
EXPECTED = [op for _, ops in SAMPLES for op in ops if op is not None]


def _ops(chunks: list[bytes]) -> list:
    p = Parser()
    out = []
    for c in chunks:
        out.extend(p.feed(c))
    return [o for o in out if type(o).__name__ != "Info"]


def test_each_sample_alone():
    for sample, expected in SAMPLES:
        assert _ops([sample]) == expected, sample


def test_every_split_position_of_every_sample():
    for sample, expected in SAMPLES:
        for i in range(len(sample) + 1):
            assert _ops([sample[:i], sample[i:]]) == expected, (sample, i)


def test_every_split_position_of_the_whole_stream():
    for i in range(len(STREAM) + 1):
        assert _ops([STREAM[:i], STREAM[i:]]) == EXPECTED, i


def test_byte_by_byte():
    assert _ops([bytes([b]) for b in STREAM]) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
@settings(max_examples=300, deadline=None)
def test_random_chunking(cuts):
    cuts = sorted(set(cuts))
    pieces = [STREAM[a:b] for a, b in zip([0] + cuts, cuts + [len(STREAM)])]
    assert _ops(pieces) == EXPECTED


def _error_of(data: bytes, **kw) -> ProtocolError | None:
    ops = Parser(**kw).feed(data)
    errs = [o for o in ops if isinstance(o, ProtocolError)]
    return errs[-1] if errs else None


def test_violations_name_the_nats_server_error():
    cases = {
        b"FOO\r\n": errors.UNKNOWN_PROTOCOL,
        b"\r\n": errors.UNKNOWN_PROTOCOL,
        b" PING\r\n": errors.UNKNOWN_PROTOCOL,
        b"PUB\r\n": errors.UNKNOWN_PROTOCOL,
        b"PUB foo\r\n": errors.UNKNOWN_PROTOCOL,
        b"PUB foo bar baz 1\r\n": errors.UNKNOWN_PROTOCOL,
        b"PUB foo -1\r\n": errors.UNKNOWN_PROTOCOL,
        b"PUB foo 3\r\nabcd\r\n": errors.UNKNOWN_PROTOCOL,
        b"PUB foo 2000000\r\n": errors.MAX_PAYLOAD,
        b"HPUB foo 20 10\r\n": errors.UNKNOWN_PROTOCOL,
        b"SUB foo\r\n": errors.UNKNOWN_PROTOCOL,
        b"UNSUB\r\n": errors.UNKNOWN_PROTOCOL,
        b"MSG foo 1 1\r\nx\r\n": errors.UNKNOWN_PROTOCOL,
        b"CONNECT {bad}\r\n": errors.UNKNOWN_PROTOCOL,
        b'CONNECT {"verbose":"x"}\r\n': errors.UNKNOWN_PROTOCOL,
        b"PUB foo " + b"x" * 5000: errors.MAX_CONTROL_LINE,
        b"SUB " + b"a" * 5000 + b" 1\r\n": errors.MAX_CONTROL_LINE,
    }
    for data, err in cases.items():
        got = _error_of(data)
        assert got is not None and got.error is err, (data[:40], got)


def test_control_line_limit_checked_before_the_line_ends():
    p = Parser()
    assert p.feed(b"SUB " + b"a" * 3000) == []
    ops = p.feed(b"a" * 2000)
    assert isinstance(ops[-1], ProtocolError) and ops[-1].error is errors.MAX_CONTROL_LINE


def test_max_payload_checked_before_the_payload_arrives():
    ops = Parser(max_payload=10).feed(b"PUB foo 11\r\n")
    assert ops[-1].error is errors.MAX_PAYLOAD


def test_ops_before_an_error_are_kept_and_the_parser_stops():
    p = Parser()
    ops = p.feed(b"PING\r\nPUB foo 1\r\nx\r\nBAD\r\nPING\r\n")
    assert ops[:2] == [PING, Pub(b"foo", None, None, b"x")]
    assert isinstance(ops[2], ProtocolError) and len(ops) == 3
    assert p.dead and p.feed(b"PING\r\n") == []


def test_client_err_closes_quietly():
    """A client's own -ERR ends the parser with a ProtocolError that carries no -ERR to send:
    the connection closes it without an answer, as nats-server does."""
    p = Parser()
    ops = p.feed(b"-ERR 'x'\r\nPING\r\n")
    assert len(ops) == 1 and type(ops[0]) is ProtocolError and ops[0].error is None and p.dead


def test_hpub_refused_without_headers():
    p = Parser()
    p.headers_allowed = False
    assert p.feed(b"HPUB foo 12 12\r\nNATS/1.0\r\n\r\n\r\n")[-1].error is errors.UNKNOWN_PROTOCOL


@given(st.binary(max_size=600))
@settings(max_examples=1500, deadline=None)
def test_random_garbage_never_raises(data):
    p = Parser(max_payload=64)
    ops = p.feed(data)
    errs = [o for o in ops if isinstance(o, ProtocolError)]
    assert len(errs) <= 1 and (not errs or ops[-1] is errs[0])
    if p.dead:
        assert p.feed(b"PING\r\n") == []


# valid in any order: not `CONNECT {}`, which turns headers off for the HPUBs after it
@given(st.lists(st.sampled_from([s for s, _ in SAMPLES if s != b"CONNECT {}\r\n"]), max_size=20), st.binary(max_size=50))
@settings(max_examples=300, deadline=None)
def test_valid_ops_then_garbage(prefix_samples, garbage):
    data = b"".join(prefix_samples)
    p = Parser()
    ops = p.feed(data)
    assert not any(isinstance(o, ProtocolError) for o in ops)
    p.feed(garbage)  # whatever follows, no exception


def test_a_mailbox_frame_built_with_one_format_is_the_frame_append_msg_writes():
    """Deliveries and catch-ups build HMSG frames with `wire.HMSG_NUMBERED_REPLY`; the
    bytes must be those of the general framing, which the parser reads back."""
    from node.nats import wire
    from node.mq9.delivery import headers_for

    for sender in (None, b"NATS/1.0\r\nX-Trace: abc\r\n\r\n"):
        for seq, payload in ((1, b""), (123456789 << 16, b"x" * 300)):
            headers = headers_for(seq, 3, 1_700_000_000_000, 2, sender)
            general = bytearray()
            wire.append_msg(general, b"$mq9.AI.MAILBOX.MSG.box.normal", b"7", b"$mq9.AI.ACK.%d._.box" % seq,
                            headers, payload)
            one = wire.HMSG_NUMBERED_REPLY % (b"$mq9.AI.MAILBOX.MSG.box.normal", b"7", b"$mq9.AI.ACK.", seq,
                                              b"._.box", len(headers), len(headers) + len(payload), headers, payload)
            assert one == bytes(general)
