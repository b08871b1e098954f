"""Plain-HTTP forwarding through the proxy, over real loopback sockets.

Every test runs a real origin (the h11 origin from conftest, or a hand-written one when the
test needs exact control of the bytes or the timing) and the real proxy, and talks to the
proxy as a client would. Synchronisation is done with trio.Event set by origin handlers;
time-outs use the autojump clock. `trio.fail_after(GUARD)` only turns a hang (a bug) into a
failure instead of a stuck run; no test waits for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import struct
from collections.abc import Callable, Sequence
from typing import Any

import h11
import pytest
import trio
import trio.testing

from tests.conftest import HttpClient, Reply, SeenRequest, send_raw

# Real seconds after which a hung exchange fails the test (never reached when all is well).
GUARD = 10


# -- helpers -------------------------------------------------------------------------------


class H11Server:
    """One origin-side h11 connection, for hand-written origins that need exact timing."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.SERVER)

    async def next_event(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(65536))
                continue
            return event

    async def read_request(self) -> tuple[h11.Request, bytes]:
        """The next request head and its whole body."""
        request = await self.next_event()
        assert isinstance(request, h11.Request), request
        body = bytearray()
        while True:
            event = await self.next_event()
            if isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return request, bytes(body)
            else:
                raise AssertionError(f"unexpected {event!r}")

    async def send(self, *events: Any) -> None:
        for event in events:
            data = self.conn.send(event)
            if data:
                await self.stream.send_all(data)

    async def reply(self, status: int, body: bytes, headers: Sequence[tuple[str, str]] = ()) -> None:
        await self.send(
            h11.Response(status_code=status,
                         headers=[("Content-Length", str(len(body))), *headers]),
            h11.Data(data=body),
            h11.EndOfMessage(),
        )


class RawReader:
    """Reads an unparsed byte stream: up to a delimiter, a count, or EOF."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def fill(self) -> bool:
        data = await self.stream.receive_some(65536)
        self.buffer += data
        return bool(data)

    async def until(self, delimiter: bytes) -> bytes:
        """Everything up to and including `delimiter`."""
        while (index := self.buffer.find(delimiter)) == -1:
            if not await self.fill():
                raise EOFError(f"EOF before {delimiter!r}; got {bytes(self.buffer)!r}")
        end = index + len(delimiter)
        out = bytes(self.buffer[:end])
        del self.buffer[:end]
        return out

    async def exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if not await self.fill():
                raise EOFError(f"EOF after {len(self.buffer)} of {count} bytes")
        out = bytes(self.buffer[:count])
        del self.buffer[:count]
        return out

    async def to_eof(self) -> bytes:
        while await self.fill():
            pass
        out = bytes(self.buffer)
        self.buffer.clear()
        return out


async def request(client: HttpClient, method: str, url: str, *,
                  headers: Sequence[tuple[str, str]] = (), body: bytes | None = None,
                  host: str | None = None) -> tuple[h11.Response, bytes]:
    """One request on `client` (Host from the URL unless given), and its whole response."""
    all_headers = [("Host", host or url.split("/")[2]), *headers]
    if body is not None:
        all_headers.append(("Content-Length", str(len(body))))
    await client.send(h11.Request(method=method, target=url, headers=all_headers))
    if body:
        await client.send(h11.Data(data=body))
    await client.send(h11.EndOfMessage())
    response = await client.response()
    if client.conn.our_state is h11.DONE and client.conn.their_state is h11.DONE:
        client.conn.start_next_cycle()
    return response


def header_values(headers: Any, name: bytes) -> list[bytes]:
    return [value for key, value in headers if key == name]


def split_head(raw: bytes) -> tuple[bytes, bytes]:
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete head in {raw[:200]!r}"
    return head, body


def block(index: int) -> bytes:
    """The index-th 64 KiB block of a large deterministic body."""
    return hashlib.sha256(index.to_bytes(8, "big")).digest() * 2048


LARGE_BLOCKS = 1024  # 1024 x 64 KiB = 64 MiB


def large_body_digest() -> str:
    digest = hashlib.sha256()
    for index in range(LARGE_BLOCKS):
        digest.update(block(index))
    return digest.hexdigest()


def closed_port() -> socket.socket:
    """A loopback socket that holds a port but does not listen: connecting is refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


async def log_lines_after_close(proxy: Any, client: HttpClient) -> list[str]:
    """Close `client`, let the proxy finish with it (it logs last), return the log."""
    await client.aclose()
    await trio.testing.wait_all_tasks_blocked()
    lines: list[str] = proxy.log_lines()
    return lines


@pytest.fixture
async def via_proxy(start_proxy: Callable[..., Any]) -> Any:
    return await start_proxy(via="test-proxy")


# -- request target and Host ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/a%2Fb/../c?x=%zz&y=%C3%A9", b"/a%2Fb/../c?x=%zz&y=%C3%A9"),
        ("/./x//y/;p=1;q=2,3!$&'()*+=:@~-_.?a=b?c/d&e=", b"/./x//y/;p=1;q=2,3!$&'()*+=:@~-_.?a=b?c/d&e="),
        ("/%00%0D%0A%25%20?%3F=%26", b"/%00%0D%0A%25%20?%3F=%26"),
        ("?only=query", b"/?only=query"),
        ("", b"/"),
        ("/page?q=1#fragment", b"/page?q=1"),
    ],
)
async def test_target_reaches_origin_byte_for_byte(start_http_origin, proxy, path, expected):
    origin = await start_http_origin()
    client = await HttpClient.connect(proxy.port)
    response, body = await request(client, "GET", f"http://origin.test:{origin.port}{path}")
    assert response.status_code == 200
    assert [r.target for r in origin.requests] == [expected]
    assert body == b"hello from origin: " + expected


async def test_absolute_form_becomes_origin_form(start_origin, proxy):
    seen = []

    async def origin_handler(stream):
        reader = RawReader(stream)
        seen.append(await reader.until(b"\r\n\r\n"))
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    port = await start_origin(origin_handler)
    client = await HttpClient.connect(proxy.port)
    response, body = await request(client, "GET", f"http://origin.test:{port}/x?y=1")
    assert (response.status_code, body) == (200, b"ok")
    request_line = seen[0].split(b"\r\n", 1)[0]
    assert request_line == b"GET /x?y=1 HTTP/1.1"


async def test_absolute_uri_authority_wins_over_host_header(start_http_origin, proxy):
    origin = await start_http_origin()
    client = await HttpClient.connect(proxy.port)
    response, _ = await request(client, "GET", f"http://origin.test:{origin.port}/w",
                                host="other.test:1")
    assert response.status_code == 200
    seen = origin.requests[0]
    assert seen.header_all(b"host") == [f"origin.test:{origin.port}".encode()]
    assert seen.headers[0] == (b"host", f"origin.test:{origin.port}".encode())


async def test_host_header_from_uppercase_and_userinfo_authority(start_http_origin, proxy):
    origin = await start_http_origin()
    client = await HttpClient.connect(proxy.port)
    url = f"http://user:secret@ORIGIN.Test:{origin.port}/u"
    response, _ = await request(client, "GET", url, host=f"origin.test:{origin.port}")
    assert response.status_code == 200
    seen = origin.requests[0]
    assert seen.header_all(b"host") == [f"origin.test:{origin.port}".encode()]
    assert all(b"secret" not in value for _, value in seen.headers)


async def test_host_header_omits_default_port(start_proxy, nursery):
    """An origin on port 80 (on 127.0.0.2, to keep clear of anything on 127.0.0.1:80)."""
    try:
        listeners = await trio.open_tcp_listeners(80, host="127.0.0.2")
    except OSError as exc:
        pytest.skip(f"cannot listen on 127.0.0.2:80 here: {exc}")
    hosts = []

    async def origin_handler(stream):
        async with stream:
            server = H11Server(stream)
            req, _ = await server.read_request()
            hosts.append(req.headers)
            await server.reply(200, b"port 80")

    nursery.start_soon(trio.serve_listeners, origin_handler, listeners)
    proxy = await start_proxy(hosts={"default.test": "127.0.0.2"})
    client = await HttpClient.connect(proxy.port)
    for url in ("http://default.test/a", "http://default.test:80/b"):
        response, body = await request(client, "GET", url, host="elsewhere.test:8080")
        assert (response.status_code, body) == (200, b"port 80")
    assert [header_values(h, b"host") for h in hosts] == [[b"default.test"], [b"default.test"]]


# -- hop-by-hop headers and Via ------------------------------------------------------------


async def test_hop_by_hop_request_headers_removed(start_http_origin, via_proxy):
    origin = await start_http_origin()
    client = await HttpClient.connect(via_proxy.port)
    response, _ = await request(client, "GET", f"http://origin.test:{origin.port}/h", headers=[
        ("Connection", "keep-alive, X-Hop-One, x-hop-two"),
        ("X-Hop-One", "1"),
        ("X-Hop-Two", "2"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("Proxy-Authorization", "Basic dXNlcjpwYXNz"),
        ("TE", "trailers"),
        ("Trailer", "X-Checksum"),
        ("Upgrade", "h2c"),
        ("X-End-To-End", "kept"),
        ("Cookie", "a=1"),
    ])
    assert response.status_code == 200
    names = {name for name, _ in origin.requests[0].headers}
    for hop in (b"connection", b"x-hop-one", b"x-hop-two", b"keep-alive", b"proxy-connection",
                b"proxy-authorization", b"te", b"trailer", b"upgrade"):
        assert hop not in names
    seen = origin.requests[0]
    assert seen.header(b"x-end-to-end") == b"kept"
    assert seen.header(b"cookie") == b"a=1"
    assert seen.header_all(b"via") == [b"1.1 test-proxy"]


async def test_hop_by_hop_response_headers_removed(start_http_origin, via_proxy):
    origin = await start_http_origin(lambda request: Reply(200, [
        ("Content-Length", "2"),
        ("Connection", "X-Resp-Hop"),
        ("X-Resp-Hop", "secret"),
        ("Proxy-Authenticate", "Basic realm=inner"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("Trailer", "X-Checksum"),
        ("X-Kept", "yes"),
    ], b"ok"))
    client = await HttpClient.connect(via_proxy.port)
    response, body = await request(client, "GET", f"http://origin.test:{origin.port}/r")
    assert (response.status_code, body) == (200, b"ok")
    names = {name for name, _ in response.headers}
    for hop in (b"x-resp-hop", b"proxy-authenticate", b"keep-alive", b"proxy-connection",
                b"trailer"):
        assert hop not in names
    assert header_values(response.headers, b"connection") in ([], [b"keep-alive"])
    assert header_values(response.headers, b"x-kept") == [b"yes"]
    assert header_values(response.headers, b"via") == [b"1.1 test-proxy"]


async def test_existing_via_kept_before_ours(start_http_origin, via_proxy):
    origin = await start_http_origin(lambda request: Reply(200, [
        ("Content-Length", "0"), ("Via", "1.0 origin-cache"), ("Via", "1.1 edge (Edge/1)")]))
    client = await HttpClient.connect(via_proxy.port)
    response, _ = await request(client, "GET", f"http://origin.test:{origin.port}/v",
                                headers=[("Via", "1.0 first, 1.1 second")])
    assert response.status_code == 200
    assert origin.requests[0].header_all(b"via") == [b"1.0 first, 1.1 second", b"1.1 test-proxy"]
    assert header_values(response.headers, b"via") == [
        b"1.0 origin-cache", b"1.1 edge (Edge/1)", b"1.1 test-proxy"]


@pytest.mark.parametrize("via", ["1.1 test-proxy", "1.0 a, 1.1 TEST-PROXY (fwdproxy)", "HTTP/1.1 test-proxy"])
async def test_own_via_is_a_loop(start_http_origin, via_proxy, via):
    origin = await start_http_origin()
    client = await HttpClient.connect(via_proxy.port)
    response, body = await request(client, "GET", f"http://origin.test:{origin.port}/loop",
                                   headers=[("Via", via)])
    assert response.status_code == 508
    assert b"test-proxy" in body
    assert origin.requests == []
    assert origin.connections == 0


@pytest.mark.parametrize("framing", ["content-length", "transfer-encoding"])
async def test_framing_header_named_by_connection_still_frames_the_body(start_http_origin, proxy,
                                                                       framing):
    """`Connection: Content-Length` must not strip the framing and leave the body unframed."""
    origin = await start_http_origin(echo_body_app)
    a = f"origin.test:{origin.port}"
    if framing == "content-length":
        body = b"Content-Length: 5\r\n\r\nhello"
    else:
        body = b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    with trio.fail_after(GUARD):
        raw = await send_raw(proxy.port, f"POST http://{a}/f HTTP/1.1\r\nHost: {a}\r\n"
                             f"Connection: close, {framing}\r\n".encode() + body)
    assert raw.startswith(b"HTTP/1.1 200 ")
    assert raw.endswith(b"got 5: hello")
    assert [r.body for r in origin.requests] == [b"hello"]


# -- bodies --------------------------------------------------------------------------------


def echo_body_app(request: SeenRequest) -> Reply:
    body = b"got %d: " % len(request.body) + request.body
    return Reply(200, [("Content-Length", str(len(body)))], body)


async def test_content_length_request_body(start_http_origin, proxy):
    origin = await start_http_origin(echo_body_app)
    client = await HttpClient.connect(proxy.port)
    payload = bytes(range(256)) * 40
    response, body = await request(client, "POST", f"http://origin.test:{origin.port}/up",
                                   body=payload)
    assert response.status_code == 200
    assert body == b"got 10240: " + payload
    assert origin.requests[0].body == payload
    assert origin.requests[0].header(b"content-length") == b"10240"


async def test_chunked_request_body(start_http_origin, proxy):
    origin = await start_http_origin(echo_body_app)
    client = await HttpClient.connect(proxy.port)
    url = f"http://origin.test:{origin.port}/chunked"
    await client.send(h11.Request(method="PUT", target=url, headers=[
        ("Host", f"origin.test:{origin.port}"), ("Transfer-Encoding", "chunked")]))
    for piece in (b"one ", b"", b"two ", b"x" * 70000, b"\r\n0\r\n\r\n"):
        await client.send(h11.Data(data=piece))
    await client.send(h11.EndOfMessage())
    response, body = await client.response()
    expected = b"one two " + b"x" * 70000 + b"\r\n0\r\n\r\n"
    assert response.status_code == 200
    assert origin.requests[0].body == expected
    assert body == b"got %d: " % len(expected) + expected


async def test_chunked_response(start_http_origin, proxy):
    origin = await start_http_origin(lambda request: Reply(
        200, [("Transfer-Encoding", "chunked")], [b"part one, ", b"part two, ", b"end"]))
    client = await HttpClient.connect(proxy.port)
    response, body = await request(client, "GET", f"http://origin.test:{origin.port}/c")
    assert response.status_code == 200
    assert body == b"part one, part two, end"
    # the client connection is still usable afterwards: the chunked framing was complete
    response, body = await request(client, "GET", f"http://origin.test:{origin.port}/again")
    assert body == b"part one, part two, end"
    assert origin.connections == 1


async def test_content_length_response(start_http_origin, proxy):
    payload = bytes(range(256)) * 1000
    origin = await start_http_origin(lambda request: Reply(
        200, [("Content-Length", str(len(payload)))], [payload[:1000], payload[1000:]]))
    client = await HttpClient.connect(proxy.port)
    response, body = await request(client, "GET", f"http://origin.test:{origin.port}/cl")
    assert header_values(response.headers, b"content-length") == [str(len(payload)).encode()]
    assert body == payload


async def test_close_delimited_response(start_origin, proxy):
    async def origin_handler(stream):
        await RawReader(stream).until(b"\r\n\r\n")
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst part, ")
        await stream.send_all(b"second part, no length")
        # returning closes the connection: that ends the body

    port = await start_origin(origin_handler)
    client = await HttpClient.connect(proxy.port)
    with trio.fail_after(GUARD):
        response, body = await request(client, "GET", f"http://origin.test:{port}/eof")
        assert response.status_code == 200
        assert body == b"first part, second part, no length"
        # the client side was re-framed (chunked), so the client connection survives
        assert client.conn.our_state is h11.IDLE
        response, body = await request(client, "GET", f"http://origin.test:{port}/eof2")
        assert body == b"first part, second part, no length"


@pytest.mark.parametrize(
    ("method", "status", "headers"),
    [
        ("HEAD", 200, [("Content-Length", "42")]),
        ("HEAD", 200, [("Transfer-Encoding", "chunked")]),
        ("GET", 204, []),
        ("GET", 304, [("ETag", '"v1"'), ("Content-Length", "42")]),
    ],
)
async def test_responses_without_body(start_http_origin, proxy, method, status, headers):
    def app(request: SeenRequest) -> Reply:
        if request.target == b"/next":
            return Reply(200, [("Content-Length", "4")], b"next")
        return Reply(status, headers)

    origin = await start_http_origin(app)
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    host = f"origin.test:{origin.port}"
    # the body-less response and a pipelined GET: stray body bytes would corrupt the second
    await stream.send_all(
        f"{method} http://{host}/nobody HTTP/1.1\r\nHost: {host}\r\n\r\n"
        f"GET http://{host}/next HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    with trio.fail_after(GUARD):
        raw = await RawReader(stream).to_eof()
    await stream.aclose()
    first, rest = raw.split(b"\r\n\r\n", 1)
    assert first.startswith(b"HTTP/1.1 %d " % status)
    if ("Content-Length", "42") in headers:
        assert b"\r\ncontent-length: 42" in first.lower()
    assert rest.startswith(b"HTTP/1.1 200 "), rest[:100]
    assert rest.endswith(b"\r\n\r\nnext")


async def test_repeated_set_cookie_unchanged_and_in_order(start_http_origin, proxy):
    cookies = ["a=1; Path=/", "b=2, with comma; Expires=Wed, 21 Oct 2037 07:28:00 GMT",
               "a=3; HttpOnly"]
    origin = await start_http_origin(lambda request: Reply(
        200, [("Set-Cookie", cookies[0]), ("X-Between", "1"), ("Set-Cookie", cookies[1]),
              ("Set-Cookie", cookies[2]), ("Content-Length", "0")]))
    client = await HttpClient.connect(proxy.port)
    response, _ = await request(client, "GET", f"http://origin.test:{origin.port}/cookies")
    assert header_values(response.headers, b"set-cookie") == [c.encode() for c in cookies]


async def test_http10_client_gets_no_chunked_framing(start_http_origin, proxy):
    origin = await start_http_origin(lambda request: Reply(
        200, [("Transfer-Encoding", "chunked")], [b"abc", b"def", b"ghi"]))
    with trio.fail_after(GUARD):
        raw = await send_raw(
            proxy.port, f"GET http://origin.test:{origin.port}/old HTTP/1.0\r\n\r\n".encode())
    head, body = split_head(raw)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"transfer-encoding" not in head.lower()
    assert body == b"abcdefghi"  # delimited by the close, no chunk sizes
    assert origin.requests[0].header(b"host") == f"origin.test:{origin.port}".encode()


# -- interim responses ---------------------------------------------------------------------


async def test_expect_100_continue(start_origin, proxy):
    seen: list[tuple[h11.Request, bytes]] = []

    async def origin_handler(stream):
        server = H11Server(stream)
        head = await server.next_event()
        assert isinstance(head, h11.Request)
        await server.send(h11.InformationalResponse(status_code=100, headers=[]))
        body = bytearray()
        while not isinstance(event := await server.next_event(), h11.EndOfMessage):
            body += event.data
        seen.append((head, bytes(body)))
        await server.reply(201, b"stored " + bytes(body))

    port = await start_origin(origin_handler)
    client = await HttpClient.connect(proxy.port)
    url = f"http://origin.test:{port}/upload"
    with trio.fail_after(GUARD):
        await client.send(h11.Request(method="PUT", target=url, headers=[
            ("Host", f"origin.test:{port}"), ("Expect", "100-continue"),
            ("Content-Length", "5")]))
        interim = await client.next_event()  # the body is not sent until this arrives
        assert isinstance(interim, h11.InformationalResponse)
        assert interim.status_code == 100
        await client.send(h11.Data(data=b"hello"), h11.EndOfMessage())
        response, body = await client.response()
    assert (response.status_code, body) == (201, b"stored hello")
    head, upload = seen[0]
    assert header_values(head.headers, b"expect") == [b"100-continue"]
    assert upload == b"hello"


async def test_early_hints_reach_client_before_final_response(start_origin, via_proxy):
    release = trio.Event()

    async def origin_handler(stream):
        server = H11Server(stream)
        await server.read_request()
        await server.send(h11.InformationalResponse(
            status_code=103, headers=[("Link", "</style.css>; rel=preload; as=style")]))
        await release.wait()
        await server.reply(200, b"page")

    port = await start_origin(origin_handler)
    client = await HttpClient.connect(via_proxy.port)
    with trio.fail_after(GUARD):
        await client.send(h11.Request(method="GET", target=f"http://origin.test:{port}/",
                                      headers=[("Host", f"origin.test:{port}")]),
                          h11.EndOfMessage())
        hints = await client.next_event()
        assert isinstance(hints, h11.InformationalResponse)
        assert hints.status_code == 103
        assert header_values(hints.headers, b"link") == [b"</style.css>; rel=preload; as=style"]
        release.set()
        response, body = await client.response()
    assert (response.status_code, body) == (200, b"page")


async def test_conftest_origin_interim_replies_are_relayed(start_http_origin, proxy):
    origin = await start_http_origin(lambda request: Reply(
        200, [("Content-Length", "2")], b"ok",
        interim=[(103, [("Link", "</a.js>; rel=preload")]), (103, [("Link", "</b.js>")])]))
    client = await HttpClient.connect(proxy.port)
    await client.send(h11.Request(method="GET", target=f"http://origin.test:{origin.port}/",
                                  headers=[("Host", f"origin.test:{origin.port}")]),
                      h11.EndOfMessage())
    events = []
    with trio.fail_after(GUARD):
        while not isinstance(event := await client.next_event(), h11.EndOfMessage):
            events.append(event)
    kinds = [(type(e).__name__, getattr(e, "status_code", None)) for e in events]
    assert kinds == [("InformationalResponse", 103), ("InformationalResponse", 103),
                     ("Response", 200), ("Data", None)]


@pytest.mark.parametrize("status", [100, 103])
async def test_http10_client_gets_no_interim_responses(start_origin, proxy, status):
    async def origin_handler(stream):
        server = H11Server(stream)
        await server.read_request()
        await server.send(h11.InformationalResponse(status_code=status, headers=[("Link", "</a>")]))
        await server.reply(200, b"page")

    port = await start_origin(origin_handler)
    with trio.fail_after(GUARD):
        raw = await send_raw(proxy.port, f"GET http://origin.test:{port}/ HTTP/1.0\r\n\r\n".encode())
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:60]
    assert raw.endswith(b"\r\n\r\npage")


# -- streaming -----------------------------------------------------------------------------


async def test_response_streams_without_buffering(start_origin, proxy):
    release = trio.Event()

    async def origin_handler(stream):
        server = H11Server(stream)
        await server.read_request()
        await server.send(h11.Response(status_code=200, headers=[("Transfer-Encoding", "chunked")]),
                          h11.Data(data=b"first chunk"))
        await release.wait()
        await server.send(h11.Data(data=b", second chunk"), h11.EndOfMessage())

    port = await start_origin(origin_handler)
    client = await HttpClient.connect(proxy.port)
    await client.send(h11.Request(method="GET", target=f"http://origin.test:{port}/stream",
                                  headers=[("Host", f"origin.test:{port}")]), h11.EndOfMessage())
    with trio.fail_after(GUARD):
        head = await client.next_event()
        assert isinstance(head, h11.Response)
        received = b""
        while received != b"first chunk":  # arrives while the origin is still waiting
            event = await client.next_event()
            assert isinstance(event, h11.Data), event
            received += event.data
        assert not release.is_set()
        release.set()
        rest = b""
        while not isinstance(event := await client.next_event(), h11.EndOfMessage):
            rest += event.data
    assert rest == b", second chunk"


async def test_request_body_streams_without_buffering(start_origin, proxy):
    got_first = trio.Event()

    async def origin_handler(stream):
        server = H11Server(stream)
        await server.next_event()
        received = b""
        while received != b"first":
            event = await server.next_event()
            received += event.data
        got_first.set()  # before the client has sent the rest
        rest = b""
        while not isinstance(event := await server.next_event(), h11.EndOfMessage):
            rest += event.data
        await server.reply(200, received + rest)

    port = await start_origin(origin_handler)
    client = await HttpClient.connect(proxy.port)
    with trio.fail_after(GUARD):
        await client.send(h11.Request(method="POST", target=f"http://origin.test:{port}/up",
                                      headers=[("Host", f"origin.test:{port}"),
                                               ("Transfer-Encoding", "chunked")]),
                          h11.Data(data=b"first"))
        await got_first.wait()
        await client.send(h11.Data(data=b" and last"), h11.EndOfMessage())
        _response, body = await client.response()
    assert body == b"first and last"


async def test_large_upload_streams(start_origin, proxy):
    async def origin_handler(stream):
        server = H11Server(stream)
        await server.next_event()
        digest, count = hashlib.sha256(), 0
        while not isinstance(event := await server.next_event(), h11.EndOfMessage):
            digest.update(event.data)
            count += len(event.data)
        await server.reply(200, f"{count} {digest.hexdigest()}".encode())

    port = await start_origin(origin_handler)
    client = await HttpClient.connect(proxy.port)
    with trio.fail_after(60):
        await client.send(h11.Request(method="PUT", target=f"http://origin.test:{port}/big",
                                      headers=[("Host", f"origin.test:{port}"),
                                               ("Transfer-Encoding", "chunked")]))
        for index in range(LARGE_BLOCKS):
            await client.send(h11.Data(data=block(index)))
        await client.send(h11.EndOfMessage())
        response, body = await client.response()
    assert response.status_code == 200
    assert body == f"{LARGE_BLOCKS * 65536} {large_body_digest()}".encode()


async def test_large_download_streams(start_origin, proxy):
    async def origin_handler(stream):
        server = H11Server(stream)
        await server.read_request()
        await server.send(h11.Response(status_code=200, headers=[
            ("Content-Length", str(LARGE_BLOCKS * 65536))]))
        for index in range(LARGE_BLOCKS):
            await server.send(h11.Data(data=block(index)))
        await server.send(h11.EndOfMessage())

    port = await start_origin(origin_handler)
    client = await HttpClient.connect(proxy.port)
    digest, count = hashlib.sha256(), 0
    with trio.fail_after(60):
        await client.send(h11.Request(method="GET", target=f"http://origin.test:{port}/big",
                                      headers=[("Host", f"origin.test:{port}")]),
                          h11.EndOfMessage())
        while not isinstance(event := await client.next_event(), h11.EndOfMessage):
            if isinstance(event, h11.Data):
                digest.update(event.data)
                count += len(event.data)
            else:
                assert isinstance(event, h11.Response) and event.status_code == 200
    assert count == LARGE_BLOCKS * 65536
    assert digest.hexdigest() == large_body_digest()


def large_body_origin(done: trio.Event | None = None) -> Callable[[trio.SocketStream], Any]:
    """An origin handler that streams LARGE_BLOCKS blocks until they are sent or the
    proxy drops the connection; then sets `done`."""
    async def origin_handler(stream: trio.SocketStream) -> None:
        server = H11Server(stream)
        await server.read_request()
        await server.send(h11.Response(status_code=200, headers=[
            ("Content-Length", str(LARGE_BLOCKS * 65536))]))
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            for index in range(LARGE_BLOCKS):
                await server.send(h11.Data(data=block(index)))
        if done is not None:
            done.set()

    return origin_handler


async def ask_for_big(client: HttpClient, port: int) -> None:
    await client.send(h11.Request(method="GET", target=f"http://origin.test:{port}/big",
                                  headers=[("Host", f"origin.test:{port}")]), h11.EndOfMessage())


async def test_client_leaving_mid_download_is_logged_as_the_client(start_origin, proxy):
    """A client that goes away while a response streams is the client's doing: the log
    says so, not that the origin broke the connection."""
    port = await start_origin(large_body_origin())
    client = await HttpClient.connect(proxy.port)
    with trio.fail_after(GUARD):
        await ask_for_big(client, port)
        while not isinstance(await client.next_event(), h11.Data):
            pass
        # Unread bytes on close: a reset, as from a browser tab that was closed.
        client.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        lines = await log_lines_after_close(proxy, client)
    line = next(line for line in lines if f"origin.test:{port}/big" in line)
    assert " 200 " in line
    assert "upstream-error" not in line
    assert "client went away" in line, line


async def test_client_that_reads_nothing_is_dropped_after_client_idle(
        start_origin, start_proxy, autojump_clock):
    """A client that asks for a large body and stops reading: once the socket buffers are
    full the proxy waits to send, and gives up after timeouts.client_idle."""
    origin_done = trio.Event()
    port = await start_origin(large_body_origin(origin_done))
    proxy = await start_proxy(timeouts={"client_idle": 30})
    client = await HttpClient.connect(proxy.port)
    await ask_for_big(client, port)
    start = trio.current_time()
    with trio.fail_after(120):
        await origin_done.wait()  # the proxy dropped both sides: the origin's sends failed
    assert 30 <= trio.current_time() - start < 31
    lines = await log_lines_after_close(proxy, client)
    line = next(line for line in lines if f"origin.test:{port}/big" in line)
    assert "client went away: the client read nothing for 30 s" in line, line
    assert "upstream-error" not in line


# -- keep-alive, pipelining, pool ----------------------------------------------------------


async def test_origin_closing_does_not_close_the_client_connection(start_http_origin, proxy):
    origin = await start_http_origin(lambda r: Reply(
        200, [("Content-Length", "3"), ("Connection", "close")], b"bye"))
    client = await HttpClient.connect(proxy.port)
    url = f"http://origin.test:{origin.port}"
    with trio.fail_after(GUARD):
        for path in ("/1", "/2"):
            response, body = await request(client, "GET", url + path)
            assert (response.status_code, body) == (200, b"bye")
            assert b"close" not in b",".join(header_values(response.headers, b"connection"))
    assert origin.connections == 2


async def test_client_closing_keeps_the_origin_connection_pooled(start_http_origin, proxy):
    origin = await start_http_origin()
    url = f"http://origin.test:{origin.port}"
    first = await HttpClient.connect(proxy.port)
    with trio.fail_after(GUARD):
        response, _ = await request(first, "GET", url + "/1", headers=[("Connection", "close")])
        assert header_values(response.headers, b"connection") == [b"close"]
        assert await first.stream.receive_some(1) == b""  # the proxy closed the client side
        await trio.testing.wait_all_tasks_blocked()
        second = await HttpClient.connect(proxy.port)
        response, body = await request(second, "GET", url + "/2")
    assert body == b"hello from origin: /2"
    assert origin.connections == 1
    assert [r.header(b"connection") for r in origin.requests] == [None, None]


async def test_http10_origin_response_is_reframed_and_not_pooled(start_origin, proxy):
    connections = []

    async def origin_handler(stream):
        connections.append(stream)
        await RawReader(stream).until(b"\r\n\r\n")
        await stream.send_all(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nold origin")

    port = await start_origin(origin_handler)
    client = await HttpClient.connect(proxy.port)
    with trio.fail_after(GUARD):
        for path in ("/1", "/2"):
            response, body = await request(client, "GET", f"http://origin.test:{port}{path}")
            assert (response.status_code, body) == (200, b"old origin")
            assert header_values(response.headers, b"transfer-encoding") == [b"chunked"]
    assert len(connections) == 2


async def test_keepalive_reuses_one_origin_connection(start_http_origin, proxy):
    origin = await start_http_origin(echo_body_app)
    client = await HttpClient.connect(proxy.port)
    url = f"http://origin.test:{origin.port}/k"
    for number in range(5):
        _response, body = await request(client, "POST", url, body=b"n%d" % number)
        assert body == b"got 2: n%d" % number
    assert origin.connections == 1
    assert [r.connection for r in origin.requests] == [1] * 5


async def test_two_origins_on_one_client_connection(start_http_origin, proxy):
    first = await start_http_origin(lambda r: Reply(200, [("Content-Length", "5")], b"first"))
    second = await start_http_origin(lambda r: Reply(200, [("Content-Length", "6")], b"second"))
    client = await HttpClient.connect(proxy.port)
    urls = [(f"http://origin.test:{first.port}/1", b"first"),
            (f"http://other.test:{second.port}/2", b"second"),
            (f"http://origin.test:{first.port}/3", b"first"),
            (f"http://other.test:{second.port}/4", b"second")]
    for url, expected in urls:
        _response, body = await request(client, "GET", url)
        assert body == expected
    assert [r.target for r in first.requests] == [b"/1", b"/3"]
    assert [r.target for r in second.requests] == [b"/2", b"/4"]
    assert [r.header(b"host") for r in second.requests] == [
        f"other.test:{second.port}".encode()] * 2
    assert (first.connections, second.connections) == (1, 1)


async def test_pipelined_requests_answered_in_order(start_http_origin, proxy):
    first = await start_http_origin()
    second = await start_http_origin(echo_body_app)
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    a, b = f"origin.test:{first.port}", f"other.test:{second.port}"
    await stream.send_all(
        f"GET http://{a}/one HTTP/1.1\r\nHost: {a}\r\n\r\n"
        f"POST http://{b}/two HTTP/1.1\r\nHost: {b}\r\nContent-Length: 3\r\n\r\nxyz"
        f"GET http://{a}/three HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\n\r\n".encode())
    with trio.fail_after(GUARD):
        raw = await RawReader(stream).to_eof()
    await stream.aclose()
    parser = h11.Connection(h11.CLIENT)
    parser.receive_data(raw)
    parser.receive_data(b"")
    bodies = []
    for _ in range(3):
        parser.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
        parser.send(h11.EndOfMessage())
        body = b""
        while not isinstance(event := parser.next_event(), h11.EndOfMessage):
            if isinstance(event, h11.Data):
                body += event.data
        bodies.append(body)
        if parser.our_state is h11.DONE and parser.their_state is h11.DONE:
            parser.start_next_cycle()
    assert bodies == [b"hello from origin: /one", b"got 3: xyz", b"hello from origin: /three"]
    assert [r.body for r in second.requests] == [b"xyz"]


async def test_idle_pooled_connection_closed_by_origin(start_origin, proxy):
    """The origin closes a kept-alive connection while it is idle in the pool."""
    closed = trio.Event()
    connections = []

    async def origin_handler(stream):
        connections.append(stream)
        server = H11Server(stream)
        _req, _ = await server.read_request()
        await server.reply(200, b"conn %d" % len(connections))
        if len(connections) == 1:
            await stream.aclose()  # keep-alive was offered, but the origin drops it
            closed.set()
            return
        server.conn.start_next_cycle()
        await server.read_request()
        await server.reply(200, b"later")

    port = await start_origin(origin_handler)
    client = await HttpClient.connect(proxy.port)
    with trio.fail_after(GUARD):
        response, body = await request(client, "GET", f"http://origin.test:{port}/a")
        assert body == b"conn 1"
        await closed.wait()
        response, body = await request(client, "GET", f"http://origin.test:{port}/b")
    assert (response.status_code, body) == (200, b"conn 2")
    assert len(connections) == 2


async def test_reused_connection_dying_before_response_is_retried(start_origin, proxy):
    """The origin takes the next request on a kept-alive connection, then closes silently."""
    connections = []

    async def origin_handler(stream):
        connections.append(stream)
        server = H11Server(stream)
        await server.read_request()
        await server.reply(200, b"conn %d" % len(connections))
        if len(connections) == 1:
            server.conn.start_next_cycle()
            await server.read_request()
            return  # closes without answering the second request

    port = await start_origin(origin_handler)
    client = await HttpClient.connect(proxy.port)
    with trio.fail_after(GUARD):
        _, body = await request(client, "GET", f"http://origin.test:{port}/a")
        assert body == b"conn 1"
        response, body = await request(client, "GET", f"http://origin.test:{port}/b")
    assert (response.status_code, body) == (200, b"conn 2")


# -- origin failures -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nab",
    ],
    ids=["short-content-length", "no-final-chunk", "cut-in-chunk"],
)
async def test_response_ended_early_is_not_completed(start_origin, proxy, reply):
    async def origin_handler(stream):
        await RawReader(stream).until(b"\r\n\r\n")
        await stream.send_all(reply)

    port = await start_origin(origin_handler)
    client = await HttpClient.connect(proxy.port)
    await client.send(h11.Request(method="GET", target=f"http://origin.test:{port}/short",
                                  headers=[("Host", f"origin.test:{port}")]), h11.EndOfMessage())
    received = b""
    with trio.fail_after(GUARD), pytest.raises(h11.RemoteProtocolError):
        while True:
            event = await client.next_event()
            assert not isinstance(event, h11.EndOfMessage), "an incomplete body was completed"
            if isinstance(event, h11.Data):
                received += event.data
    assert received in (b"0123456789", b"hello", b"helloab")
    lines = await log_lines_after_close(proxy, client)
    line = next(line for line in lines if f"origin.test:{port}/short" in line)
    assert " 200 " in line
    assert "upstream-error" in line
    assert "cut short" in line


async def test_http10_client_sees_short_body_when_origin_ends_early(start_origin, proxy):
    async def origin_handler(stream):
        await RawReader(stream).until(b"\r\n\r\n")
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")

    port = await start_origin(origin_handler)
    with trio.fail_after(GUARD):
        raw = await send_raw(proxy.port, f"GET http://origin.test:{port}/ HTTP/1.0\r\n\r\n".encode())
    head, body = split_head(raw)
    assert b"content-length: 100" in head.lower()
    assert body == b"0123456789"


async def test_connection_refused_is_502(start_proxy):
    proxy = await start_proxy()
    with closed_port() as sock:
        port = sock.getsockname()[1]
        client = await HttpClient.connect(proxy.port)
        response, body = await request(client, "GET", f"http://origin.test:{port}/x")
    assert response.status_code == 502
    assert b"origin.test" in body
    assert b"refused" in body
    lines = await log_lines_after_close(proxy, client)
    line = next(line for line in lines if f"origin.test:{port}/x" in line)
    assert " 502 " in line
    assert "upstream-error" in line
    assert "refused" in line


async def test_silent_origin_is_504(start_origin, start_proxy, autojump_clock):
    got_request = trio.Event()

    async def silent(stream):
        await RawReader(stream).until(b"\r\n\r\n")
        got_request.set()
        await trio.sleep_forever()

    port = await start_origin(silent)
    proxy = await start_proxy(timeouts={"upstream_read": 5})
    client = await HttpClient.connect(proxy.port)
    start = trio.current_time()
    response, body = await request(client, "GET", f"http://origin.test:{port}/slow")
    assert got_request.is_set()
    assert response.status_code == 504
    assert 5 <= trio.current_time() - start < 6
    assert f"origin.test:{port}".encode() in body
    lines = await log_lines_after_close(proxy, client)
    line = next(line for line in lines if f"origin.test:{port}/slow" in line)
    assert " 504 " in line
    assert "upstream-timeout" in line
    assert "sent nothing for 5 s" in line


@pytest.mark.parametrize("reply", [b"", b"NOT HTTP AT ALL\r\n\r\n"], ids=["closed", "garbage"])
async def test_origin_failing_before_response_is_502(start_origin, proxy, reply):
    async def origin_handler(stream):
        await RawReader(stream).until(b"\r\n\r\n")
        await stream.send_all(reply)

    port = await start_origin(origin_handler)
    client = await HttpClient.connect(proxy.port)
    with trio.fail_after(GUARD):
        response, body = await request(client, "GET", f"http://origin.test:{port}/bad")
    assert response.status_code == 502
    assert f"origin.test:{port}".encode() in body
    if not reply:
        assert b"closed the connection without a response" in body


async def test_response_with_content_length_and_chunked_is_sent_chunked_only(start_origin, proxy):
    """RFC 9112 §6.3: Transfer-Encoding overrides Content-Length; both must not go on."""
    async def origin_handler(stream):
        await RawReader(stream).until(b"\r\n\r\n")
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")

    port = await start_origin(origin_handler)
    with trio.fail_after(GUARD):
        raw = await send_raw(proxy.port, f"GET http://origin.test:{port}/ HTTP/1.1\r\n"
                             f"Host: origin.test:{port}\r\nConnection: close\r\n\r\n".encode())
    head, body = split_head(raw)
    assert b"content-length" not in head.lower()
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"5\r\nhello\r\n0\r\n\r\n"


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\nBad Header\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
    ],
    ids=["two-content-lengths", "unknown-coding", "bad-header-line", "bad-status"],
)
async def test_invalid_response_head_is_502(start_origin, proxy, reply):
    async def origin_handler(stream):
        await RawReader(stream).until(b"\r\n\r\n")
        await stream.send_all(reply)

    port = await start_origin(origin_handler)
    client = await HttpClient.connect(proxy.port)
    with trio.fail_after(GUARD):
        response, body = await request(client, "GET", f"http://origin.test:{port}/inv")
    assert response.status_code == 502
    assert b"invalid HTTP response" in body
    assert b"hello" not in body


@pytest.mark.parametrize(
    ("method", "first"),
    [
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n"),
        ("GET", b"HTTP/1.1 204 No Content\r\n\r\n"),
        ("GET", b"HTTP/1.1 304 Not Modified\r\n\r\n"),
        ("GET", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    ],
    ids=["body-on-head", "body-on-204", "body-on-304", "extra-after-content-length"],
)
async def test_bytes_past_a_response_never_reach_another_client(start_origin, proxy, method, first):
    forged = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned"

    async def origin_handler(stream):
        reader = RawReader(stream)
        while reader.buffer or await reader.fill():  # until the proxy closes the connection
            head = await reader.until(b"\r\n\r\n")
            if b" /first " in head:
                await stream.send_all(first + forged)  # one segment: no idle-readable hint
            else:
                await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal")

    port = await start_origin(origin_handler)
    first_client = await HttpClient.connect(proxy.port)
    second_client = await HttpClient.connect(proxy.port)
    with trio.fail_after(GUARD):
        await request(first_client, method, f"http://origin.test:{port}/first")
        # let the proxy finish the first exchange (and pool the connection) before the second
        await trio.testing.wait_all_tasks_blocked()
        response, body = await request(second_client, "GET", f"http://origin.test:{port}/second")
    assert (response.status_code, body) == (200, b"real")


async def test_request_with_body_is_not_replayed_on_a_dead_reused_connection(start_origin, proxy):
    """Only a body-less request may be retried: an upload is never sent twice."""
    seen: list[bytes] = []

    async def origin_handler(stream):
        server = H11Server(stream)
        await server.read_request()
        await server.reply(200, b"first")
        server.conn.start_next_cycle()
        _, body = await server.read_request()
        seen.append(body)
        # closes without answering the upload

    port = await start_origin(origin_handler)
    client = await HttpClient.connect(proxy.port)
    with trio.fail_after(GUARD):
        _, body = await request(client, "GET", f"http://origin.test:{port}/a")
        assert body == b"first"
        response, body = await request(client, "POST", f"http://origin.test:{port}/pay",
                                       body=b"pay once")
    assert response.status_code == 502
    assert seen == [b"pay once"]


# -- protocol upgrade ----------------------------------------------------------------------


async def test_upgrade_relays_bytes_both_ways(start_origin, proxy):
    heads = []

    async def origin_handler(stream):
        reader = RawReader(stream)
        heads.append(await reader.until(b"\r\n\r\n"))
        await stream.send_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              b"Connection: Upgrade\r\n\r\nserver hello;")
        while data := bytes(reader.buffer) or await stream.receive_some(65536):
            reader.buffer.clear()
            await stream.send_all(b"echo:" + data)
        await stream.send_eof()

    port = await start_origin(origin_handler)
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    host = f"origin.test:{port}"
    reader = RawReader(stream)
    with trio.fail_after(GUARD):
        # bytes right behind the head, in the same segment, before any 101 has arrived
        await stream.send_all(
            f"GET http://{host}/ws HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive, Upgrade\r\n"
            f"Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\nearly bytes;".encode())
        head = await reader.until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        assert b"upgrade: websocket" in head.lower()
        assert await reader.exactly(len(b"server hello;")) == b"server hello;"
        assert await reader.exactly(len(b"echo:early bytes;")) == b"echo:early bytes;"
        await stream.send_all(b"\x81\x05hello")
        assert await reader.exactly(len(b"echo:\x81\x05hello")) == b"echo:\x81\x05hello"
        await stream.send_eof()
        assert await reader.to_eof() == b""
    await stream.aclose()
    origin_head = heads[0].lower()
    assert b"\r\nupgrade: websocket\r\n" in origin_head
    assert b"\r\nconnection: upgrade\r\n" in origin_head
    assert b"sec-websocket-key: dghlihnhbxbszsbub25jzq==" in origin_head


async def test_declined_upgrade_leaves_http_working(start_http_origin, proxy):
    origin = await start_http_origin()
    client = await HttpClient.connect(proxy.port)
    url = f"http://origin.test:{origin.port}"
    with trio.fail_after(GUARD):
        response, body = await request(client, "GET", f"{url}/ws", headers=[
            ("Connection", "Upgrade"), ("Upgrade", "websocket")])
        assert (response.status_code, body) == (200, b"hello from origin: /ws")
        response, body = await request(client, "GET", f"{url}/after")
    assert (response.status_code, body) == (200, b"hello from origin: /after")
    assert origin.requests[0].header(b"upgrade") == b"websocket"
    assert origin.connections == 1


async def test_unresolvable_host_is_502_naming_it(proxy) -> None:
    """`.invalid` names fail in the resolver itself (RFC 6761), so no DNS query leaves."""
    client = await HttpClient.connect(proxy.port)
    response, body = await client.get("http://nothing.invalid/x")
    assert response.status_code == 502
    assert b"nothing.invalid" in body and b"no such host" in body
    lines = await log_lines_after_close(proxy, client)
    line = next(line for line in lines if "nothing.invalid" in line)
    assert " 502 " in line and "no such host" in line
