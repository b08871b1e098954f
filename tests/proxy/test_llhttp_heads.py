"""llhttp_heads: which heads go to llhttp, and that they come out as h11's readers make them.

The whole connection is compared with h11's in test_parser_differential.py; here, the
pieces that make the comparison hold: the plain-line grammar is h11's own, and a head that
is not plain, or that llhttp refuses, is left to h11's reader untouched.
"""

from __future__ import annotations

import re

import h11
import pytest
from h11._abnf import header_field
from h11._readers import maybe_read_from_IDLE_client, maybe_read_from_SEND_RESPONSE_server
from h11._receivebuffer import ReceiveBuffer
from hypothesis import example, given
from hypothesis import strategies as st

from fwdproxy.proxy.llhttp_heads import (
    PLAIN_HEADER_LINE,
    Facts,
    read_request,
    read_response,
)

# Bytes that decide the grammar: token characters, separators, whitespace of every kind,
# controls, DEL and obs-text.
_INTERESTING = b"aZ09-!~:;, \t\r\n\x00\x01\x0b\x0c\x7f\x80\xff\"()"
H11_HEADER_LINE = re.compile(header_field.encode() + rb"\r\n")  # h11's own line grammar
_LINE = st.binary(max_size=12) | st.lists(st.sampled_from(list(_INTERESTING)), max_size=12).map(bytes)


@given(_LINE)
@example(b"a: b c \r\n")
@example(b"a:\r\n")
@example(b"a: \t \r\n")
@example(b"a:\x80\xff\r\n")
@example(b"a: b\x0bc\r\n")
@example(b" a: b\r\n")
def test_the_plain_line_grammar_is_h11s(line: bytes) -> None:
    line = line if line.endswith(b"\r\n") else line + b"\r\n"
    assert bool(PLAIN_HEADER_LINE.fullmatch(line)) == bool(H11_HEADER_LINE.fullmatch(line))


def _buffer(data: bytes) -> ReceiveBuffer:
    buf = ReceiveBuffer()
    buf += data
    return buf


def _outcome(reader, data: bytes):
    buf = _buffer(data)
    try:
        event = reader(buf)
    except h11.LocalProtocolError as exc:
        return ("refused", type(exc), exc.error_status_hint, bytes(buf))
    if event is None:
        return ("need data", bytes(buf))
    fields = {name: getattr(event, name) for name in event.__slots__ if name != "headers"}
    return (type(event), fields, event.headers._full_items, bytes(buf))


REQUESTS = [
    b"GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\nUser-Agent: t \r\n\r\nrest",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",  # h11 merges
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: folded\r\n  more\r\n\r\n",  # obs-fold: h11's reader
    b"GET / HTTP/1.1\nHost: a\n\n",  # bare LF: h11's reader
    b"GET / HTTP/1.1\r\n\r\n",  # no Host
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n",  # a method llhttp does not know: h11 decides
    b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\ntunnel bytes",
    b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n",  # h11 takes controls but NUL
    b"GET / HTTP/1.1\r\nHost: a\r\nX: \x00\r\n\r\n",
    b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n",  # incomplete
    b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
]

RESPONSES = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: x \r\n\r\nab",
    b"HTTP/1.1 200\r\n\r\n",
    b"HTTP/1.1 200 \r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nframes",
    b"HTTP/1.1 099 Odd\r\n\r\n",
    b"HTTP/1.1 1000 Big\r\n\r\n",
    b"HTTP/1.0 200 OK\r\n\r\nbody until close",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
    b"HTTP/1.1 200 \x80\xff reason\r\n\r\n",
    b"HTTP/2.0 200 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n",
]


@pytest.mark.parametrize("data", REQUESTS)
def test_requests_come_out_as_h11_reads_them(data: bytes) -> None:
    assert _outcome(read_request, data) == _outcome(maybe_read_from_IDLE_client, data)


@pytest.mark.parametrize("data", RESPONSES)
def test_responses_come_out_as_h11_reads_them(data: bytes) -> None:
    assert _outcome(read_response, data) == _outcome(maybe_read_from_SEND_RESPONSE_server, data)


def test_facts_are_h11s_comma_headers() -> None:
    from h11._headers import get_comma_header, normalize_and_validate

    headers = normalize_and_validate([
        (b"Connection", b"keep-alive, Close"), (b"Upgrade", b","), (b"Expect", b"100-Continue"),
        (b"Transfer-Encoding", b"chunked"), (b"X", b"close"),
    ])
    facts = Facts.of(headers)
    assert facts.close is (b"close" in get_comma_header(headers, b"connection"))
    assert facts.upgrade is bool(get_comma_header(headers, b"upgrade")) is False
    assert facts.expect_continue is True
    assert facts.transfer_encoding == get_comma_header(headers, b"transfer-encoding")
