"""H11Stream and the strict request-head check, over in-memory streams (the seam we own).

`memory_stream_pair` delivers whatever was sent in one receive; `lockstep_stream_pair` with a
sender that writes one byte per send_all makes every receive return a single byte, which
shows the head check works wherever the head is cut.
"""

from __future__ import annotations

import os

import h11
import pytest
import trio
import trio.testing

from fwdproxy.errors import BadGateway, BadRequest, ConnectionLost, HeadTooLarge
from fwdproxy.proxy.h11_stream import PARSER_VARIABLE, H11Stream, checked_headers, connection_class
from tests.proxy.test_framing import BAD_HEADS, GOOD_HEADS

MAX_HEAD = 1024

# -- H11Stream, server role ----------------------------------------------------------------


def server_stream(stream, max_head_bytes=MAX_HEAD):
    return H11Stream(stream, h11.SERVER, max_head_bytes=max_head_bytes)


async def next_request(http):
    event = await http.next_event()
    assert isinstance(event, h11.Request), event
    return event


async def trickle(stream, data):
    """Send `data` one byte per send_all (with a lockstep stream: one byte per receive)."""
    for index in range(len(data)):
        await stream.send_all(data[index:index + 1])


@pytest.mark.parametrize("head", GOOD_HEADS)
async def test_good_heads_parse(head):
    client, server = trio.testing.memory_stream_pair()
    http = server_stream(server)
    await client.send_all(head)
    request = await next_request(http)
    assert head.startswith(request.method + b" " + request.target + b" ")


@pytest.mark.parametrize(("head", "why"), BAD_HEADS)
async def test_bad_heads_refused_by_stream(head, why):
    client, server = trio.testing.memory_stream_pair()
    http = server_stream(server)
    await client.send_all(head + b"hello")
    with pytest.raises(BadRequest) as info:
        await http.next_event()
    assert why in info.value.detail
    assert http.can_respond


@pytest.mark.parametrize(("head", "why"), BAD_HEADS)
async def test_bad_heads_refused_one_byte_at_a_time(head, why):
    client, server = trio.testing.lockstep_stream_pair()
    http = server_stream(server)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trickle, client, head + b"hello")
        with pytest.raises(BadRequest) as info:
            await http.next_event()
        nursery.cancel_scope.cancel()
    assert why in info.value.detail


@pytest.mark.parametrize("head", GOOD_HEADS)
async def test_good_heads_parse_one_byte_at_a_time(head):
    client, server = trio.testing.lockstep_stream_pair()
    http = server_stream(server)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trickle, client, head)
        request = await next_request(http)
    assert head.startswith(request.method + b" ")
    assert http.bytes_received == len(head)


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: o\r\nX: \x00\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nHost: o\r\n\r\n",
        b"GET /\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: o\r\nContent-Length: -1\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
    ],
    ids=["nul", "space-in-target", "http09", "tls", "space-in-name", "negative-cl", "no-host"],
)
async def test_h11_refusals_become_bad_request(data):
    client, server = trio.testing.memory_stream_pair()
    http = server_stream(server)
    await client.send_all(data)
    with pytest.raises(BadRequest):
        await http.next_event()


async def test_head_at_the_limit_is_accepted():
    head = b"GET / HTTP/1.1\r\nHost: o\r\nX-Pad: "
    head += b"a" * (MAX_HEAD - len(head) - 4) + b"\r\n\r\n"
    assert len(head) == MAX_HEAD
    client, server = trio.testing.memory_stream_pair()
    http = server_stream(server)
    await client.send_all(head)
    await next_request(http)


@pytest.mark.parametrize("complete", [True, False], ids=["complete", "unterminated"])
async def test_head_over_the_limit_is_too_large(complete):
    head = b"GET / HTTP/1.1\r\nHost: o\r\nX-Pad: " + b"a" * MAX_HEAD
    if complete:
        head += b"\r\n\r\n"
    client, server = trio.testing.memory_stream_pair()
    http = server_stream(server)
    await client.send_all(head)
    with pytest.raises(HeadTooLarge) as info:
        await http.next_event()
    assert info.value.status == 431


async def test_head_over_the_limit_in_pieces_is_too_large():
    client, server = trio.testing.lockstep_stream_pair()
    http = server_stream(server, max_head_bytes=64)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trickle, client, b"GET / HTTP/1.1\r\nHost: o\r\nX-Pad: " + b"a" * 200)
        with pytest.raises(HeadTooLarge):
            await http.next_event()
        nursery.cancel_scope.cancel()


async def test_body_after_head_is_not_checked_as_head():
    """Bytes after the blank line (a body) may hold anything a head may not."""
    body = b"x\ny\rz\r\n folded\r\nContent-Length: 9\r\n\r\n"
    head = b"POST / HTTP/1.1\r\nHost: o\r\nContent-Length: %d\r\n\r\n" % len(body)
    client, server = trio.testing.memory_stream_pair()
    http = server_stream(server)
    await client.send_all(head + body)
    await next_request(http)
    received = b""
    while not isinstance(event := await http.next_event(), h11.EndOfMessage):
        received += event.data
    assert received == body


async def test_pipelined_second_head_is_checked_too():
    client, server = trio.testing.memory_stream_pair()
    http = server_stream(server)
    await client.send_all(
        b"GET / HTTP/1.1\r\nHost: o\r\n\r\n"
        b"POST / HTTP/1.1\r\nHost: o\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n")
    await next_request(http)
    assert isinstance(await http.next_event(), h11.EndOfMessage)
    await http.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
    await http.send(h11.EndOfMessage())
    assert http.reusable
    http.start_next_cycle()
    with pytest.raises(BadRequest, match="both"):
        await http.next_event()


async def test_pipelined_second_head_after_body_is_checked_too():
    """The next head arrives while the body is being read (not while the stream is IDLE)."""
    client, server = trio.testing.memory_stream_pair()
    http = server_stream(server)
    await client.send_all(b"POST / HTTP/1.1\r\nHost: o\r\nContent-Length: 2\r\n\r\n")
    await next_request(http)
    await client.send_all(b"abGET / HTTP/1.1\r\nHost: o\r\nX: 1\r\n  fold\r\n\r\n")
    while not isinstance(await http.next_event(), h11.EndOfMessage):
        pass
    await http.send(h11.Response(status_code=204, headers=[]))
    await http.send(h11.EndOfMessage())
    http.start_next_cycle()
    with pytest.raises(BadRequest, match="obs-fold"):
        await http.next_event()


async def test_second_good_request_after_start_next_cycle():
    client, server = trio.testing.memory_stream_pair()
    http = server_stream(server)
    await client.send_all(b"GET /1 HTTP/1.1\r\nHost: o\r\n\r\nGET /2 HTTP/1.1\r\nHost: o\r\n\r\n")
    assert (await next_request(http)).target == b"/1"
    await http.next_event()
    await http.send(h11.Response(status_code=204, headers=[]))
    await http.send(h11.EndOfMessage())
    http.start_next_cycle()
    assert (await next_request(http)).target == b"/2"


async def test_byte_counters():
    client, server = trio.testing.memory_stream_pair()
    http = server_stream(server)
    request = b"POST / HTTP/1.1\r\nHost: o\r\nContent-Length: 5\r\n\r\nhello"
    await client.send_all(request)
    await next_request(http)
    while not isinstance(await http.next_event(), h11.EndOfMessage):
        pass
    assert http.bytes_received == len(request)
    assert http.bytes_sent == 0
    assert http.can_respond
    await http.send(h11.Response(status_code=200, headers=[("Content-Length", "3")]))
    await http.send(h11.Data(data=b"abc"))
    await http.send(h11.EndOfMessage())
    assert not http.can_respond
    sent = await client.receive_some(65536)
    assert sent.endswith(b"\r\n\r\nabc")
    assert http.bytes_sent == len(sent)
    await http.send_raw(b"raw bytes")
    assert http.bytes_sent == len(sent) + len(b"raw bytes")
    assert http.reusable


async def test_client_closing_gives_connection_closed_event():
    client, server = trio.testing.memory_stream_pair()
    http = server_stream(server)
    await client.aclose()
    event = await http.next_event()
    assert type(event) is h11.ConnectionClosed


async def test_send_to_a_closed_stream_is_connection_lost():
    client, server = trio.testing.memory_stream_pair()
    http = server_stream(server)
    await client.send_all(b"GET / HTTP/1.1\r\nHost: o\r\n\r\n")
    await next_request(http)
    await server.aclose()
    with pytest.raises(ConnectionLost):
        await http.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
    assert http.conn.our_state is h11.ERROR
    assert not http.reusable


async def test_receive_on_a_closed_stream_is_connection_lost():
    _client, server = trio.testing.memory_stream_pair()
    http = server_stream(server)
    await server.aclose()
    with pytest.raises(ConnectionLost):
        await http.next_event()


# -- H11Stream, client role (facing an origin) ---------------------------------------------


async def test_origin_side_protocol_error_is_bad_gateway():
    ours, origin = trio.testing.memory_stream_pair()
    http = H11Stream(ours, h11.CLIENT, max_head_bytes=MAX_HEAD)
    await http.send(h11.Request(method="GET", target="/", headers=[("Host", "o")]))
    await http.send(h11.EndOfMessage())
    await origin.send_all(b"NOT HTTP\r\n\r\n")
    with pytest.raises(BadGateway):
        await http.next_event()


async def test_origin_side_is_not_strict_about_heads():
    """The strict request-head check is for what clients send; responses are h11's to judge."""
    ours, origin = trio.testing.memory_stream_pair()
    http = H11Stream(ours, h11.CLIENT, max_head_bytes=MAX_HEAD)
    await http.send(h11.Request(method="GET", target="/", headers=[("Host", "o")]))
    await http.send(h11.EndOfMessage())
    await origin.send_all(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 2\r\n\r\nok")
    response = await http.next_event()
    assert isinstance(response, h11.Response)
    assert (b"x-a", b"1 folded") in list(response.headers)
    assert (await http.next_event()).data == b"ok"


# -- checked_headers -----------------------------------------------------------------------


def test_checked_headers_serialise_as_validated_ones():
    headers = [(b"host", b"o.test"), (b"x-a", b"1 2"), (b"set-cookie", b"a=b"), (b"set-cookie", b"c=d"),
               (b"via", b"1.1 proxy:3128")]
    checked = h11.Connection(h11.CLIENT).send(
        h11.Request(method=b"GET", target=b"/p", headers=checked_headers(headers)))
    validated = h11.Connection(h11.CLIENT).send(h11.Request(method=b"GET", target=b"/p", headers=headers))
    assert checked == validated
    assert list(checked_headers(headers)) == headers


def test_forward_settings_refuse_a_via_name_that_is_not_a_token():
    from fwdproxy.proxy.forward import ForwardSettings

    ForwardSettings("proxy:3128", 1, 1, 1)
    for bad in ("two words", "a\r\nX-Injected: 1", "", "a,b"):
        with pytest.raises(ValueError, match="visible ASCII"):
            ForwardSettings(bad, 1, 1, 1)


# -- which parser ----------------------------------------------------------------------------


def test_connection_class_by_name(monkeypatch):
    from fwdproxy.proxy.llhttp_conn import LLHTTPConnection

    monkeypatch.delenv(PARSER_VARIABLE, raising=False)
    connection_class.cache_clear()
    try:
        assert connection_class("h11") is h11.Connection
        assert connection_class("httptools") is LLHTTPConnection
        assert connection_class("auto") is LLHTTPConnection  # httptools is a dependency
        monkeypatch.setenv(PARSER_VARIABLE, "h11")
        connection_class.cache_clear()
        assert connection_class("auto") is h11.Connection
        assert connection_class("httptools") is LLHTTPConnection  # only `auto` is overridden
        with pytest.raises(ValueError, match="not one of auto, h11, httptools"):
            connection_class("llhttp")
    finally:
        connection_class.cache_clear()


async def test_the_stream_uses_the_parser_in_force():
    """scripts/test runs the suite once per parser through FWDPROXY_HTTP_PARSER: each run
    must really use the one it names."""
    from fwdproxy.proxy.llhttp_conn import LLHTTPConnection

    wanted = os.environ.get(PARSER_VARIABLE, "httptools")
    left, _ = trio.testing.memory_stream_pair()
    conn = server_stream(left).conn
    assert type(conn) is {"h11": h11.Connection, "httptools": LLHTTPConnection}[wanted]
    explicit = H11Stream(left, h11.CLIENT, max_head_bytes=MAX_HEAD, http_parser="h11").conn
    assert type(explicit) is h11.Connection
