"""The fuzz properties of tests/test_fuzz.py, run long (about 3-5 minutes in all).

Why: the default suite runs each property with a few hundred examples to stay quick; a
rare bad input (a split at one exact byte, a number just past 64 bits, a client's own
`-ERR` line, which only the long run found) needs many more. This module reuses
test_fuzz's strategies and `check_*` functions, so both runs check the same things: the
parsers never raise and give the same ops whatever the split, within their memory
limits; one real node, fed raw bytes in random chunks, answers or closes with
nats-server's `-ERR` and keeps serving new clients; every mq9 request gets a JSON reply
of the right shape in time. The reproducers of the bugs they found come first here too.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, strategies as st

from tests.test_fuzz import (BODY, BOUNDS, CONNECTS, CUTS, DELAYS, GARBAGE, HEADER_BLOCK, JSON_BODIES, MAX_CONTROL_LINE,
                             MQ9_EDGES, MQ9_HEADERS, MQ9_SUBJECT, NO_SHRINK, NODE_STREAM, PARSERS, QUIET, RAW_SUBJECT,
                             STREAM, STREAMS, check_client_bounds, check_garbage, check_handshake_json,
                             check_line_limit_split, check_mq9_edge, check_mq9_raw, check_mq9_request, check_raw_session,
                             check_split_invariance, check_stream, fuzz_settings)
from tests.test_fuzz import boxes, own_node  # noqa: F401  (fixtures: pytest finds them by these names)


@pytest.mark.parametrize("kind", PARSERS)
@fuzz_settings(3000)
@given(data=st.data(), cuts=CUTS)
def test_parser_valid_streams_any_split(kind, data, cuts):
    check_stream(kind, data.draw(STREAMS[kind][0], "stream"), cuts)


@pytest.mark.parametrize("kind", PARSERS)
@fuzz_settings(4000)
@given(data=st.data(), cuts=CUTS, max_payload=st.sampled_from([0, 16, 64, 1 << 20]))
def test_parser_garbage_any_split(kind, data, cuts, max_payload):
    check_garbage(kind, data.draw(STREAMS[kind][1], "garbage"), cuts, max_payload)


@fuzz_settings(3000)
@given(BOUNDS)
def test_client_parser_memory_bound(case):
    check_client_bounds(*case)


@pytest.mark.parametrize("kind", PARSERS)
@fuzz_settings(500)
@given(extra=st.integers(-3, 3), cut=st.integers(MAX_CONTROL_LINE - 8, MAX_CONTROL_LINE + 8) | st.integers(0, 10**6))
@example(extra=0, cut=MAX_CONTROL_LINE + 1)
def test_control_line_limit_does_not_depend_on_split(kind, extra, cut):
    check_line_limit_split(kind, extra, cut)


@pytest.mark.parametrize("kind", PARSERS)
@fuzz_settings(500)
@given(body=JSON_BODIES)
def test_connect_json_never_raises(kind, body):
    check_handshake_json(kind, body)


@fuzz_settings(6000)
@given(CONNECTS, GARBAGE | STREAM.map(lambda s: s[0]), CUTS, DELAYS)
def test_node_raw_bytes_served_or_refused(node, connect, body, cuts, delays):
    check_raw_session(node, connect, body, cuts, delays)


@pytest.mark.parametrize("connect", [QUIET, b'CONNECT {"verbose":true,"pedantic":true,"headers":true}\r\n',
                                     b'CONNECT {"verbose":false,"pedantic":false,"headers":false}\r\n'])
@fuzz_settings(400)
@given(NODE_STREAM, CUTS)
def test_node_reply_does_not_depend_on_split(node, connect, stream, cuts):
    check_split_invariance(node, connect, stream, cuts)


@fuzz_settings(5000)
@given(MQ9_SUBJECT, BODY, MQ9_HEADERS)
def test_mq9_requests_always_answered(node, boxes, subject, body, headers):
    check_mq9_request(node, subject, body, headers)


@fuzz_settings(2000)
@given(RAW_SUBJECT, BODY, st.none() | HEADER_BLOCK)
def test_mq9_raw_subjects_always_answered(node, boxes, subject, body, hdr):
    check_mq9_raw(node, subject, body, hdr)


@pytest.mark.parametrize("edge", MQ9_EDGES)
@fuzz_settings(500)
@given(data=st.data())
def test_mq9_edge_values_refused(request, boxes, edge, data):
    check_mq9_edge(request, edge, data)
