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

from tests.conftest import HttpClient, Reply, send_raw

# Real seconds after which a hung exchange fails the test (never reached when all is well).
GUARD = 10
MAX_HEAD = 4096

Case = Callable[[str], bytes]  # authority "origin.test:PORT" -> raw bytes to send
Seen = tuple[bytes, trio.Event]  # bytes an origin waits for, and the event it then sets


async def read_to_eof(stream: trio.abc.ReceiveStream) -> bytes:
    """Everything the proxy sends until it closes."""
    raw = b""
    while chunk := await stream.receive_some(65536):
        raw += chunk
    return raw


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


async def _recording_origin(start_origin: Callable[..., Any], *, seen: Seen | None = None,
                            ) -> tuple[int, list[bytearray], trio.Event]:
    """An origin that records every byte it gets and never answers; `ended` fires at EOF,
    and `seen`'s event once its bytes have arrived."""
    received: list[bytearray] = []
    ended = trio.Event()

    async def record(stream: trio.SocketStream) -> None:
        data = bytearray()
        received.append(data)
        try:
            while chunk := await stream.receive_some(65536):
                data += chunk
                if seen is not None and seen[0] in data:
                    seen[1].set()
        finally:
            ended.set()

    port = await start_origin(record)
    return port, received, ended


def chunked(a: str, body: bytes) -> bytes:
    return post(a, "Transfer-Encoding: chunked") + b"\r\n" + body + smuggled(a)


def connect(a: str, *lines: str) -> bytes:
    return (f"CONNECT {a} HTTP/1.1\r\nHost: {a}\r\n" + "".join(f"{line}\r\n" for line in lines)
            + "\r\n").encode()


MAX_BODY = 1000

# Refused before anything reaches the origin: not a connection, not a byte. Each case:
# the bytes to send (given "origin.test:PORT"), the status the client gets.
REFUSED_UNSENT: list[Any] = [
    # -- Content-Length that no 64-bit parser holds, or above limits.max_request_body --------
    pytest.param(lambda a: post(a, "Content-Length: 18446744073709551621") + b"\r\nhello"
                 + smuggled(a), 400, id="cl-wraps-to-5"),
    pytest.param(lambda a: post(a, "Content-Length: 9223372036854775808") + b"\r\nhello", 400,
                 id="cl-2^63"),
    pytest.param(lambda a: post(a, "Content-Length: 99999999999999999999") + b"\r\nhello", 400,
                 id="cl-20-nines"),
    pytest.param(lambda a: post(a, f"Content-Length: {MAX_BODY + 1}") + b"\r\n" + b"x" * (MAX_BODY + 1),
                 413, id="cl-over-max-request-body"),
    # -- a chunked body whose first chunk-size line is invalid -------------------------------
    pytest.param(lambda a: chunked(a, b"zz\r\nhello\r\n0\r\n\r\n"), 400, id="chunk-not-hex"),
    pytest.param(lambda a: chunked(a, b"-1\r\nh\r\n0\r\n\r\n"), 400, id="chunk-negative"),
    pytest.param(lambda a: chunked(a, b"0x5\r\nhello\r\n0\r\n\r\n"), 400, id="chunk-0x-prefix"),
    pytest.param(lambda a: chunked(a, b"+5\r\nhello\r\n0\r\n\r\n"), 400, id="chunk-plus"),
    pytest.param(lambda a: chunked(a, b"5\nhello\r\n0\r\n\r\n"), 400, id="chunk-bare-lf"),
    pytest.param(lambda a: chunked(a, b"\r\nhello\r\n0\r\n\r\n"), 400, id="chunk-empty-size"),
    pytest.param(lambda a: chunked(a, b"10000000000000005\r\nhello\r\n0\r\n\r\n"), 400,
                 id="chunk-17-digits-wraps-to-5"),
    pytest.param(lambda a: chunked(a, b"8000000000000000\r\nhello\r\n"), 400, id="chunk-2^63"),
    pytest.param(lambda a: chunked(a, b"ffffffffffffffffffff\r\nhello\r\n"), 400,
                 id="chunk-20-digits"),
    pytest.param(lambda a: chunked(a, b"%x\r\n" % (MAX_BODY + 1) + b"x" * (MAX_BODY + 1) + b"\r\n0\r\n\r\n"),
                 413, id="chunk-over-max-request-body"),
    pytest.param(lambda a: chunked(a, b"0\r\nContent-Length: 5\r\n\r\n"), 400,
                 id="chunk-trailer-content-length"),
    # A broken later line that came in the same read as the head is refused at once too.
    pytest.param(lambda a: chunked(a, b"5\r\nhello\r\nzz\r\n0\r\n\r\n"), 400,
                 id="later-chunk-in-first-read"),
    # -- CONNECT claiming a body: refused, so that no byte of the tunnel is eaten ------------
    pytest.param(lambda a: connect(a, "Content-Length: 5") + b"0123456789", 400, id="connect-cl"),
    pytest.param(lambda a: connect(a, "Transfer-Encoding: chunked") + b"5\r\nhello\r\n0\r\n\r\n",
                 400, id="connect-chunked"),
]


@pytest.fixture
async def framing_proxy(start_proxy: Callable[..., Any]) -> Any:
    return await start_proxy(limits={"max_head_bytes": MAX_HEAD, "max_request_body": MAX_BODY})


@pytest.mark.parametrize(("make", "status"), REFUSED_UNSENT)
async def test_invalid_framing_reaches_no_origin(start_origin, start_http_origin, framing_proxy,
                                                 make, status):
    port, received, _ = await _recording_origin(start_origin)
    with trio.fail_after(GUARD):
        raw = await send_raw(framing_proxy.port, make(f"origin.test:{port}"))
    assert status_of(raw) == status
    assert raw.count(b"HTTP/1.1 ") == 1  # nothing answered after the refusal
    await trio.testing.wait_all_tasks_blocked()
    assert received == []  # no connection, so not a byte
    lines = framing_proxy.log_lines()
    assert len(lines) == 1 and f" {status} " in lines[0]
    await assert_still_works(framing_proxy, await start_http_origin())


async def test_connect_with_content_length_zero_relays_every_byte(start_origin, framing_proxy):
    """Content-Length: 0 frames nothing: the bytes after the head all go into the tunnel."""
    port, received, ended = await _recording_origin(start_origin)
    stream = await trio.open_tcp_stream("127.0.0.1", framing_proxy.port)
    with trio.fail_after(GUARD):
        await stream.send_all(connect(f"origin.test:{port}", "Content-Length: 0") + b"0123456789")
        head = b""
        while b"\r\n\r\n" not in head:
            head += await stream.receive_some(65536)
        assert status_of(head) == 200
        await stream.send_all(b"abc")
        await stream.send_eof()
        await ended.wait()
    await stream.aclose()
    assert [bytes(r) for r in received] == [b"0123456789abc"]


# The head is valid and so is the first chunk, so the request goes on; a line sent after
# the origin got that chunk is broken. The origin sees the head and the body up to there,
# then its connection is closed: never a complete request, never the bytes after the break.
BAD_LATER_CHUNKS = [
    pytest.param(b"5\r\nhel", b"loXX0\r\n\r\n", id="no-crlf-after-data"),
    pytest.param(b"2\r\nhe", b"llo\r\n0\r\n\r\n", id="size-too-small"),
    pytest.param(b"5\r\nhello\r\n", b"zz\r\n0\r\n\r\n", id="second-size-not-hex"),
    pytest.param(b"5\r\nhello\r\n", b"10000000000000005\r\nworld\r\n0\r\n\r\n",
                 id="second-size-17-digits"),
    pytest.param(b"5\r\nhello\r\n", b"ffffffffffffffff\r\nworld\r\n", id="second-size-2^64-1"),
    pytest.param(b"5\r\nhello\r\n", b"0\r\nHost: other.test\r\n\r\n", id="trailer-host"),
]


@pytest.mark.parametrize(("first", "rest"), BAD_LATER_CHUNKS)
async def test_invalid_later_chunk_never_smuggles_a_request(start_origin, start_http_origin,
                                                            hostile_proxy, first, rest):
    arrived = trio.Event()
    port, received, ended = await _recording_origin(start_origin, seen=(b"\r\nhe", arrived))
    a = f"origin.test:{port}"
    stream = await trio.open_tcp_stream("127.0.0.1", hostile_proxy.port)
    with trio.fail_after(GUARD):
        await stream.send_all(post(a, "Transfer-Encoding: chunked") + b"\r\n" + first)
        await arrived.wait()
        await stream.send_all(rest + smuggled(a))
        raw = await read_to_eof(stream)
        await ended.wait()  # the proxy dropped its origin connection
    await stream.aclose()
    assert status_of(raw) == 400  # and the connection is closed (send_raw read to EOF)
    assert len(received) == 1
    seen = bytes(received[0])
    assert seen.startswith(b"POST /upload HTTP/1.1\r\n")
    assert seen.count(b"HTTP/1.1\r\n") == 1
    assert b"smuggled" not in seen
    assert not seen.endswith(b"0\r\n\r\n")  # the origin never saw the body end
    await assert_still_works(hostile_proxy, await start_http_origin())


async def test_invalid_chunk_after_the_response_began_closes_both_sides(
        start_origin, start_http_origin, hostile_proxy):
    """An origin that answers before the upload ends: a broken chunk then cuts both
    connections (no 400 can follow the response head), and the log says why."""
    upload_started = trio.Event()
    origin_saw_eof = trio.Event()

    async def answer_early(stream: trio.SocketStream) -> None:
        data = b""
        while b"hello" not in data:
            data += await stream.receive_some(65536)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nearly\r\n")
        upload_started.set()
        while await stream.receive_some(65536):
            pass
        origin_saw_eof.set()

    port = await start_origin(answer_early)
    a = f"origin.test:{port}"
    stream = await trio.open_tcp_stream("127.0.0.1", hostile_proxy.port)
    with trio.fail_after(GUARD):
        await stream.send_all(post(a, "Transfer-Encoding: chunked") + b"\r\n5\r\nhello\r\n")
        await upload_started.wait()
        await stream.send_all(b"ffffffffffffffffff\r\n")
        raw = await read_to_eof(stream)
        await origin_saw_eof.wait()
    await stream.aclose()
    assert status_of(raw) == 200
    assert not raw.endswith(b"0\r\n\r\n")  # the response was cut, not completed
    await trio.testing.wait_all_tasks_blocked()
    [line] = hostile_proxy.log_lines()
    assert "2^63" in line
    await assert_still_works(hostile_proxy, await start_http_origin())


async def test_chunked_upload_with_expect_100_continue(start_http_origin, hostile_proxy):
    """The proxy answers 100 Continue itself (the origin may not see the head before the
    first chunk line), relays no second one, and the upload arrives whole."""
    # The origin's own 100 comes after the body here; a relayed one would be the second.
    origin = await start_http_origin(lambda request: Reply(
        201, [("Content-Length", "2")], b"ok", interim=[(100, [])]))
    a = f"origin.test:{origin.port}"
    client = await HttpClient.connect(hostile_proxy.port)
    with trio.fail_after(GUARD):
        await client.send(h11.Request(method="PUT", target=f"http://{a}/up", headers=[
            ("Host", a), ("Expect", "100-continue"), ("Transfer-Encoding", "chunked")]))
        interim = await client.next_event()
        assert isinstance(interim, h11.InformationalResponse) and interim.status_code == 100
        await client.send(h11.Data(data=b"hello"), h11.Data(data=b" world"), h11.EndOfMessage())
        response = await client.next_event()  # not another 100
        assert isinstance(response, h11.Response) and response.status_code == 201
    await client.aclose()
    assert origin.requests[0].body == b"hello world"


async def test_expect_100_continue_then_bad_first_chunk(start_origin, hostile_proxy):
    port, received, _ = await _recording_origin(start_origin)
    a = f"origin.test:{port}"
    stream = await trio.open_tcp_stream("127.0.0.1", hostile_proxy.port)
    with trio.fail_after(GUARD):
        await stream.send_all(post(a, "Expect: 100-continue", "Transfer-Encoding: chunked") + b"\r\n")
        interim = await stream.receive_some(65536)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        await stream.send_all(b"zz\r\nhello\r\n0\r\n\r\n")
        raw = await read_to_eof(stream)
    await stream.aclose()
    assert status_of(raw) == 400
    await trio.testing.wait_all_tasks_blocked()
    assert received == []


async def test_first_chunk_line_must_come_within_the_header_timeout(
        start_origin, start_proxy, autojump_clock):
    proxy = await start_proxy(timeouts={"header": 5})
    port, received, _ = await _recording_origin(start_origin)
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    await stream.send_all(post(f"origin.test:{port}", "Transfer-Encoding: chunked") + b"\r\n5")
    start = trio.current_time()
    raw = await read_to_eof(stream)
    await stream.aclose()
    assert status_of(raw) == 408
    assert 5 <= trio.current_time() - start < 6
    assert received == []


async def test_origin_content_length_beyond_2_63_is_refused(start_origin, hostile_proxy):
    """A client's 64-bit parser would read 18446744073709551621 as 5 and take the rest of
    the body for the next response: 502, and the connection is not kept."""
    async def wrapping_origin(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551621\r\n\r\n"
                              b"helloHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged")

    port = await start_origin(wrapping_origin)
    a = f"origin.test:{port}"
    with trio.fail_after(GUARD):
        raw = await send_raw(hostile_proxy.port, plain(a) + b"\r\n")
    assert status_of(raw) == 502
    assert b"forged" not in raw and b"hello" not in raw


async def test_slow_partial_head_gets_408(start_http_origin, start_proxy, autojump_clock):
    proxy = await start_proxy(timeouts={"header": 5})
    origin = await start_http_origin()
    a = f"origin.test:{origin.port}"
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    await stream.send_all(f"GET http://{a}/slow HTTP/1.1\r\nHost: {a}\r\n".encode())
    start = trio.current_time()
    raw = await read_to_eof(stream)
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
