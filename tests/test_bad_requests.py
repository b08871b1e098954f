"""Hostile input over real sockets: every malformed request gets a 4xx and reaches no origin.

Each case sends raw bytes to a running proxy (send_raw), checks the status it answers with,
checks the origin saw nothing, and then sends a normal request through the same proxy, so a
case that took the proxy down (or left it confused) fails too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import h11
import pytest
import trio
import trio.testing

from tests.conftest import HttpClient, send_raw

# Real seconds after which a hung exchange fails the test (never reached when all is well).
GUARD = 10
MAX_HEAD = 4096

Case = Callable[[str], bytes]  # authority "origin.test:PORT" -> raw bytes to send


def status_of(raw: bytes) -> int:
    assert raw.startswith(b"HTTP/1.1 "), f"not an HTTP response: {raw[:120]!r}"
    return int(raw.split(b" ", 2)[1])


def plain(a: str) -> bytes:
    return f"GET http://{a}/ok HTTP/1.1\r\nHost: {a}\r\n".encode()


def post(a: str, *lines: str) -> bytes:
    head = f"POST http://{a}/upload HTTP/1.1\r\nHost: {a}\r\n" + "".join(f"{line}\r\n" for line in lines)
    return head.encode()


def smuggled(a: str) -> bytes:
    return f"GET http://{a}/smuggled HTTP/1.1\r\nHost: {a}\r\n\r\n".encode()


HOSTILE: list[Any] = [
    # -- ambiguous framing (request smuggling) ---------------------------------------------
    pytest.param(lambda a: post(a, "Content-Length: 5", "Transfer-Encoding: chunked")
                 + b"\r\n0\r\n\r\n" + smuggled(a), 400, id="cl-and-te"),
    pytest.param(lambda a: post(a, "Transfer-Encoding: chunked", "Content-Length: 48")
                 + b"\r\n0\r\n\r\n" + smuggled(a), 400, id="te-and-cl"),
    pytest.param(lambda a: post(a, "Content-Length: 5", "Content-Length: 6") + b"\r\nhello!",
                 400, id="two-content-lengths"),
    pytest.param(lambda a: post(a, "Content-Length: 5", "Content-Length: 5") + b"\r\nhello",
                 400, id="two-equal-content-lengths"),
    pytest.param(lambda a: post(a, "Content-Length: 5, 6") + b"\r\nhello!", 400,
                 id="content-length-list"),
    pytest.param(lambda a: post(a, "Content-Length: 5, 5") + b"\r\nhello", 400,
                 id="content-length-repeated-in-list"),
    pytest.param(lambda a: post(a, "Content-Length: +5") + b"\r\nhello", 400, id="content-length-plus"),
    pytest.param(lambda a: post(a, "Content-Length: 0x5") + b"\r\nhello", 400, id="content-length-hex"),
    pytest.param(lambda a: post(a, "Transfer-Encoding: xchunked") + b"\r\n0\r\n\r\n", 400,
                 id="te-xchunked"),
    pytest.param(lambda a: post(a, "Transfer-Encoding: chunked, identity") + b"\r\n0\r\n\r\n",
                 400, id="te-chunked-identity"),
    pytest.param(lambda a: post(a, "Transfer-Encoding: identity, chunked") + b"\r\n0\r\n\r\n",
                 400, id="te-identity-chunked"),
    pytest.param(lambda a: post(a, "Transfer-Encoding: chunked", "Transfer-Encoding: identity")
                 + b"\r\n0\r\n\r\n", 400, id="te-twice"),
    pytest.param(lambda a: post(a, "Transfer-Encoding:\x0bchunked") + b"\r\n0\r\n\r\n", 400,
                 id="te-vertical-tab"),
    pytest.param(lambda a: post(a, "Transfer-Encoding: \x0cchunked") + b"\r\n0\r\n\r\n", 400,
                 id="te-form-feed"),
    pytest.param(lambda a: post(a, "Transfer-Encoding : chunked") + b"\r\n0\r\n\r\n", 400,
                 id="te-space-before-colon"),
    pytest.param(lambda a: post(a, "Transfer-Encoding: chunked\r") + b"\r\n0\r\n\r\n", 400,
                 id="te-trailing-cr"),
    pytest.param(lambda a: post(a, "X-Pad: 1", " Transfer-Encoding: chunked") + b"\r\n0\r\n\r\n",
                 400, id="te-in-obs-fold"),
    # -- line endings and folding ----------------------------------------------------------
    pytest.param(lambda a: plain(a).replace(b"\r\n", b"\n") + b"\n", 400, id="bare-lf"),
    pytest.param(lambda a: plain(a) + b"X-A: 1\nX-B: 2\r\n\r\n", 400, id="bare-lf-in-head"),
    pytest.param(lambda a: plain(a) + b"X-A: 1\rX-B: 2\r\n\r\n", 400, id="bare-cr"),
    pytest.param(lambda a: plain(a) + b"X-A: 1\r\n folded\r\n\r\n", 400, id="obs-fold"),
    pytest.param(lambda a: plain(a) + b"X-A: 1\r\n\tfolded\r\n\r\n", 400, id="obs-fold-tab"),
    # -- control bytes ---------------------------------------------------------------------
    pytest.param(lambda a: f"GET http://{a}/a\x01b HTTP/1.1\r\nHost: {a}\r\n\r\n".encode(),
                 400, id="ctl-in-target"),
    pytest.param(lambda a: f"GET http://{a}/a\x7fb HTTP/1.1\r\nHost: {a}\r\n\r\n".encode(),
                 400, id="del-in-target"),
    pytest.param(lambda a: f"GET http://{a}/a\x00b HTTP/1.1\r\nHost: {a}\r\n\r\n".encode(),
                 400, id="nul-in-target"),
    pytest.param(lambda a: f"GET http://{a}/caf\xe9 HTTP/1.1\r\nHost: {a}\r\n\r\n".encode("latin-1"),
                 400, id="non-ascii-target"),
    pytest.param(lambda a: plain(a) + b"X-A: a\x00b\r\n\r\n", 400, id="nul-in-header"),
    pytest.param(lambda a: plain(a) + b"X-\x01A: 1\r\n\r\n", 400, id="ctl-in-header-name"),
    pytest.param(lambda a: plain(a) + b"Bad Name: 1\r\n\r\n", 400, id="space-in-header-name"),
    pytest.param(lambda a: plain(a) + b": no name\r\n\r\n", 400, id="empty-header-name"),
    # -- wrong protocols and request forms -------------------------------------------------
    pytest.param(lambda a: b"GET /\r\n\r\n", 400, id="http-0.9"),
    pytest.param(lambda a: f"GET http://{a}/\r\n\r\n".encode(), 400, id="http-0.9-absolute"),
    pytest.param(lambda a: b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, id="http2-preface"),
    pytest.param(lambda a: b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", 400,
                 id="tls-hello"),
    pytest.param(lambda a: f"GET /ok HTTP/1.1\r\nHost: {a}\r\n\r\n".encode(), 400,
                 id="origin-form-foreign-host"),
    pytest.param(lambda a: f"OPTIONS * HTTP/1.1\r\nHost: {a}\r\n\r\n".encode(), 400,
                 id="asterisk-foreign-host"),
    pytest.param(lambda a: f"GET http://{a}/ HTTP/1.1\r\n\r\n".encode(), 400, id="no-host-header"),
    pytest.param(lambda a: f"GET https://{a}/ HTTP/1.1\r\nHost: {a}\r\n\r\n".encode(), 400,
                 id="https-without-connect"),
    pytest.param(lambda a: f"GET ftp://{a}/ HTTP/1.1\r\nHost: {a}\r\n\r\n".encode(), 400,
                 id="ftp-scheme"),
    pytest.param(lambda a: f"GET http:///ok HTTP/1.1\r\nHost: {a}\r\n\r\n".encode(), 400,
                 id="empty-authority"),
    pytest.param(lambda a: f"GET http://{a}:99999/ HTTP/1.1\r\nHost: {a}\r\n\r\n".encode(), 400,
                 id="bad-port"),
    pytest.param(lambda a: f"GET http://[::1/ HTTP/1.1\r\nHost: {a}\r\n\r\n".encode(), 400,
                 id="unterminated-ipv6"),
    pytest.param(lambda a: f"GET http://a..b/ HTTP/1.1\r\nHost: {a}\r\n\r\n".encode(), 400,
                 id="empty-label"),
    pytest.param(lambda a: b"\r\n" + plain(a) + b"\r\n", 400, id="leading-blank-line"),
    # -- sizes -----------------------------------------------------------------------------
    pytest.param(lambda a: plain(a) + b"X-Big: " + b"a" * MAX_HEAD + b"\r\n\r\n", 431,
                 id="head-over-limit"),
    pytest.param(lambda a: plain(a) + b"".join(b"X-%d: 1\r\n" % n for n in range(1000)) + b"\r\n",
                 431, id="many-headers-over-limit"),
    pytest.param(lambda a: plain(a) + b"X-Big: " + b"a" * (MAX_HEAD * 2), 431,
                 id="unterminated-head-over-limit"),
]


@pytest.fixture
async def hostile_proxy(start_proxy: Callable[..., Any]) -> Any:
    return await start_proxy(limits={"max_head_bytes": MAX_HEAD})


async def assert_still_works(proxy: Any, origin: Any) -> None:
    client = await HttpClient.connect(proxy.port)
    with trio.fail_after(GUARD):
        response, body = await client.get(f"http://origin.test:{origin.port}/after")
    await client.aclose()
    assert (response.status_code, body) == (200, b"hello from origin: /after")


@pytest.mark.parametrize(("make", "status"), HOSTILE)
async def test_malformed_request_is_refused(start_http_origin, hostile_proxy, make, status):
    origin = await start_http_origin()
    authority = f"origin.test:{origin.port}"
    with trio.fail_after(GUARD):
        raw = await send_raw(hostile_proxy.port, make(authority))
    assert status_of(raw) == status
    assert b"connection: close" in raw.split(b"\r\n\r\n", 1)[0].lower()
    await trio.testing.wait_all_tasks_blocked()
    assert origin.connections == 0
    assert origin.requests == []
    await assert_still_works(hostile_proxy, origin)
    assert [r.target for r in origin.requests] == [b"/after"]


@pytest.mark.parametrize("value", [b"a\x01b", b"a\x1bb", b"a\x7fb", b"\x08"],
                         ids=["soh", "esc", "del", "backspace"])
async def test_control_bytes_in_header_values_are_refused(start_http_origin, hostile_proxy, value):
    origin = await start_http_origin()
    authority = f"origin.test:{origin.port}"
    with trio.fail_after(GUARD):
        raw = await send_raw(hostile_proxy.port, plain(authority) + b"X-A: " + value + b"\r\n"
                             b"Connection: close\r\n\r\n")
    await trio.testing.wait_all_tasks_blocked()
    assert origin.requests == []
    assert status_of(raw) == 400


async def test_all_hostile_inputs_in_a_row_leave_the_proxy_up(start_http_origin, hostile_proxy):
    origin = await start_http_origin()
    authority = f"origin.test:{origin.port}"
    with trio.fail_after(GUARD):
        for case in HOSTILE:
            make, status = case.values
            raw = await send_raw(hostile_proxy.port, make(authority))
            assert status_of(raw) == status, case.id
    await assert_still_works(hostile_proxy, origin)
    assert [r.target for r in origin.requests] == [b"/after"]


async def test_smuggling_with_te_and_cl_reaches_nobody(start_http_origin, hostile_proxy):
    """A body that is a second request under one framing and plain bytes under the other."""
    origin = await start_http_origin()
    a = f"origin.test:{origin.port}"
    inner = smuggled(a)
    body = b"0\r\n\r\n" + inner
    attack = post(a, f"Content-Length: {len(body)}", "Transfer-Encoding: chunked") + b"\r\n" + body
    with trio.fail_after(GUARD):
        raw = await send_raw(hostile_proxy.port, attack + plain(a) + b"\r\n")
    assert status_of(raw) == 400
    assert raw.count(b"HTTP/1.1 ") == 1  # nothing answered after the refusal
    await assert_still_works(hostile_proxy, origin)
    assert [r.target for r in origin.requests] == [b"/after"]


async def test_pipelined_bad_request_after_a_good_one(start_http_origin, hostile_proxy):
    origin = await start_http_origin()
    a = f"origin.test:{origin.port}"
    data = (f"GET http://{a}/first HTTP/1.1\r\nHost: {a}\r\n\r\n".encode()
            + post(a, "Content-Length: 3", "Transfer-Encoding: chunked") + b"\r\n0\r\n\r\n"
            + smuggled(a))
    with trio.fail_after(GUARD):
        raw = await send_raw(hostile_proxy.port, data)
    first, rest = raw.split(b"\r\n\r\n", 1)
    assert status_of(first) == 200
    assert rest.startswith(b"hello from origin: /first")
    assert status_of(rest[len(b"hello from origin: /first"):]) == 400
    await assert_still_works(hostile_proxy, origin)
    assert [r.target for r in origin.requests] == [b"/first", b"/after"]


BAD_CHUNKS = [
    pytest.param(b"zz\r\nhello\r\n0\r\n\r\n", id="not-hex"),
    pytest.param(b"-5\r\nhello\r\n0\r\n\r\n", id="negative"),
    pytest.param(b"0x5\r\nhello\r\n0\r\n\r\n", id="0x-prefix"),
    pytest.param(b"5\nhello\r\n0\r\n\r\n", id="bare-lf-after-size"),
    pytest.param(b"5\r\nhelloXX0\r\n\r\n", id="no-crlf-after-data"),
    pytest.param(b"2\r\nhello\r\n0\r\n\r\n", id="size-too-small"),
]


async def _recording_origin(start_origin: Callable[..., Any]) -> tuple[int, list[bytearray], trio.Event]:
    """An origin that records every byte it gets and never answers; `ended` fires at EOF."""
    received: list[bytearray] = []
    ended = trio.Event()

    async def record(stream: trio.SocketStream) -> None:
        data = bytearray()
        received.append(data)
        try:
            while chunk := await stream.receive_some(65536):
                data += chunk
        finally:
            ended.set()

    port = await start_origin(record)
    return port, received, ended


@pytest.mark.parametrize("chunks", BAD_CHUNKS)
async def test_invalid_chunk_never_smuggles_a_request(start_origin, start_http_origin,
                                                      hostile_proxy, chunks):
    port, received, ended = await _recording_origin(start_origin)
    a = f"origin.test:{port}"
    attack = post(a, "Transfer-Encoding: chunked") + b"\r\n" + chunks + smuggled(a)
    with trio.fail_after(GUARD):
        raw = await send_raw(hostile_proxy.port, attack)
        await ended.wait()  # the proxy dropped its origin connection
    assert status_of(raw) == 400  # and the connection is closed (send_raw read to EOF)
    assert len(received) == 1
    seen = bytes(received[0])
    assert seen.startswith(b"POST /upload HTTP/1.1\r\n")
    assert seen.count(b"HTTP/1.1\r\n") == 1
    assert b"smuggled" not in seen
    healthy = await start_http_origin()
    await assert_still_works(hostile_proxy, healthy)


async def test_slow_partial_head_gets_408(start_http_origin, start_proxy, autojump_clock):
    proxy = await start_proxy(timeouts={"header": 5})
    origin = await start_http_origin()
    a = f"origin.test:{origin.port}"
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    await stream.send_all(f"GET http://{a}/slow HTTP/1.1\r\nHost: {a}\r\n".encode())
    start = trio.current_time()
    raw = b""
    while chunk := await stream.receive_some(65536):
        raw += chunk
    await stream.aclose()
    assert status_of(raw) == 408
    assert 5 <= trio.current_time() - start < 6
    assert origin.requests == []


async def test_bad_request_is_logged(start_http_origin, hostile_proxy):
    origin = await start_http_origin()
    a = f"origin.test:{origin.port}"
    with trio.fail_after(GUARD):
        raw = await send_raw(hostile_proxy.port, post(a, "Content-Length: 1", "Content-Length: 2")
                             + b"\r\n")
    assert status_of(raw) == 400
    await trio.testing.wait_all_tasks_blocked()
    lines = hostile_proxy.log_lines()
    assert len(lines) == 1
    assert " 400 " in lines[0]
    assert "bad-request" in lines[0]
    assert "Content-Length" in lines[0]


async def test_h11_parses_the_good_request_used_above() -> None:
    """The baseline bytes the cases above start from are a valid request on their own."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(plain("origin.test:1") + b"\r\n")
    assert isinstance(conn.next_event(), h11.Request)
