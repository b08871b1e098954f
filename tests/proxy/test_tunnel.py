"""CONNECT tunnels through a real proxy on loopback, and `tunnel.relay()` on real streams.

Every test uses real sockets (loopback TCP, socket pairs) or trio's in-memory stapled
streams; nothing is mocked. Time-outs run on the autojump clock; completion is awaited
with trio.Event or `wait_all_tasks_blocked` (the proxy's last steps after the client sees
EOF are CPU-only, so once every task is blocked the access log line is written).
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import h11
import pytest
import trio
import trio.testing

from fwdproxy.proxy import tunnel
from fwdproxy.proxy.tunnel import RelayResult, relay
from tests.conftest import HttpClient, Proxy, log_fields, settled_log

# -- helpers ---------------------------------------------------------------------------


def connect_head(authority: str) -> bytes:
    return f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode()


async def open_tunnel(port: int, authority: str,
                      payload: bytes = b"") -> tuple[trio.SocketStream, bytes, bytes]:
    """CONNECT through the proxy at `port`; `payload` goes in the same send as the head.

    Returns the stream, the proxy's response head (through the blank line) and whatever
    tunnel bytes arrived with it.
    """
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(connect_head(authority) + payload)
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = await stream.receive_some(65536)
        assert chunk, f"proxy closed before a response head: {buffer!r}"
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    return stream, head + b"\r\n\r\n", rest


async def read_to_eof(stream: trio.abc.ReceiveStream) -> bytes:
    chunks = []
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


async def receive_exactly(stream: trio.abc.ReceiveStream, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = await stream.receive_some(n - len(data))
        assert chunk, f"EOF after {data!r}, expected {n} bytes"
        data += chunk
    return data






def closed_port() -> tuple[socket.socket, int]:
    """A loopback port that refuses connections: bound (so nobody else takes it), not listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


StartOrigin = Callable[[Callable[[trio.SocketStream], Awaitable[None]]], Awaitable[int]]


# -- CONNECT through the proxy -----------------------------------------------------------


async def test_connect_tls_origin_end_to_end(start_origin: StartOrigin, proxy: Proxy,
                                             tls_server_context: ssl.SSLContext,
                                             tls_client_context: ssl.SSLContext) -> None:
    seen: list[bytes] = []

    async def tls_origin(stream: trio.SocketStream) -> None:
        tls = trio.SSLStream(stream, tls_server_context, server_side=True)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await tls.receive_some(65536)
            if not chunk:
                return
            data += chunk
        seen.append(data)
        body = b"secret over tls"
        await tls.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                           % len(body) + body)
        await tls.aclose()

    port = await start_origin(tls_origin)
    authority = f"origin.test:{port}"
    stream, head, rest = await open_tunnel(proxy.port, authority)
    assert head.startswith(b"HTTP/1.1 200 Connection established\r\n")
    assert rest == b""

    tls = trio.SSLStream(stream, tls_client_context, server_hostname="origin.test")
    await tls.do_handshake()
    client = HttpClient(tls)  # type: ignore[arg-type]
    await client.send(h11.Request(method="GET", target="/secret",
                                  headers=[("Host", "origin.test")]),
                      h11.EndOfMessage())
    response, body = await client.response()
    assert response.status_code == 200
    assert body == b"secret over tls"
    assert seen[0].startswith(b"GET /secret HTTP/1.1\r\n")
    await tls.aclose()

    [line] = await settled_log(proxy)
    fields = log_fields(line)
    summary = [fields[k] for k in ("client", "method", "url", "status", "verdict")]
    assert summary == ["127.0.0.1", "CONNECT", authority, "200", "allow"]
    assert int(fields["up"]) > len(connect_head(authority))
    assert int(fields["down"]) > len(head)


async def test_payload_sent_with_the_connect_head_reaches_origin_first(
        start_origin: StartOrigin, proxy: Proxy) -> None:
    received: list[bytes] = []
    done = trio.Event()

    async def origin(stream: trio.SocketStream) -> None:
        received.append(await read_to_eof(stream))
        await stream.send_all(b"echo:" + received[0])
        done.set()

    port = await start_origin(origin)
    authority = f"origin.test:{port}"
    early = b"EARLY-BYTES-IN-THE-SAME-PACKET|"
    stream, head, rest = await open_tunnel(proxy.port, authority, payload=early)
    assert head.startswith(b"HTTP/1.1 200 ")
    await stream.send_all(b"after-200|")
    await stream.send_eof()
    answer = rest + await read_to_eof(stream)
    await done.wait()
    assert received == [early + b"after-200|"]
    assert answer == b"echo:" + early + b"after-200|"
    await stream.aclose()


async def test_early_payload_counted_once_in_access_log(start_origin: StartOrigin,
                                                        proxy: Proxy) -> None:
    async def origin(stream: trio.SocketStream) -> None:
        await read_to_eof(stream)

    port = await start_origin(origin)
    authority = f"origin.test:{port}"
    early = b"x" * 1000
    stream, _head, rest = await open_tunnel(proxy.port, authority, payload=early)
    await stream.send_eof()
    assert rest + await read_to_eof(stream) == b""
    await stream.aclose()
    [line] = await settled_log(proxy)
    assert log_fields(line)["up"] == str(len(connect_head(authority)) + len(early))


async def test_half_close_answer_still_delivered_and_logged(start_origin: StartOrigin,
                                                           proxy: Proxy) -> None:
    origin_saw_eof = trio.Event()
    origin_got: list[bytes] = []
    answer = b"the answer, sent after the client's EOF"

    async def origin(stream: trio.SocketStream) -> None:
        origin_got.append(await read_to_eof(stream))
        origin_saw_eof.set()
        await stream.send_all(answer)
        # then the origin closes (the fixture's finally)

    port = await start_origin(origin)
    authority = f"origin.test:{port}"
    stream, head, rest = await open_tunnel(proxy.port, authority)
    question = b"question, then EOF"
    await stream.send_all(question)
    await stream.send_eof()
    await origin_saw_eof.wait()
    assert origin_got == [question]
    received = rest + await read_to_eof(stream)
    assert received == answer
    await stream.aclose()

    [line] = await settled_log(proxy)
    fields = log_fields(line)
    assert fields["status"] == "200"
    assert fields["up"] == str(len(connect_head(authority)) + len(question))
    assert fields["down"] == str(len(head) + len(answer))
    assert "tunnel closed" in fields["detail"]


async def test_idle_tunnel_closed_by_proxy(autojump_clock: trio.testing.MockClock,
                                          start_origin: StartOrigin,
                                          start_proxy: Callable[..., Awaitable[Proxy]]) -> None:
    origin_closed = trio.Event()

    async def origin(stream: trio.SocketStream) -> None:
        data = await stream.receive_some(100)
        await stream.send_all(b"echo:" + data)
        assert await read_to_eof(stream) == b""
        origin_closed.set()

    proxy = await start_proxy(timeouts={"tunnel_idle": 30})
    port = await start_origin(origin)
    stream, head, rest = await open_tunnel(proxy.port, f"origin.test:{port}")
    assert head.startswith(b"HTTP/1.1 200 ")
    start = trio.current_time()
    # Traffic at t=20 pushes the idle deadline to t=50.
    await trio.sleep(20)
    await stream.send_all(b"ping")
    assert rest + await receive_exactly(stream, 9) == b"echo:ping"
    assert await read_to_eof(stream) == b""
    assert trio.current_time() - start == pytest.approx(50, abs=0.5)
    await origin_closed.wait()
    await stream.aclose()
    [line] = await settled_log(proxy)
    assert "tunnel idle" in log_fields(line)["detail"]


async def test_connect_port_not_allowed_is_403_and_origin_untouched(
        start_origin: StartOrigin, start_proxy: Callable[..., Awaitable[Proxy]]) -> None:
    connections = 0

    async def origin(stream: trio.SocketStream) -> None:
        nonlocal connections
        connections += 1

    port = await start_origin(origin)
    proxy = await start_proxy(connect_ports=[443])
    authority = f"origin.test:{port}"
    client = await HttpClient.connect(proxy.port)
    await client.send(h11.Request(method="CONNECT", target=authority,
                                  headers=[("Host", authority)]),
                      h11.EndOfMessage())
    response, body = await client.response()
    assert response.status_code == 403
    assert dict(response.headers)[b"x-fwdproxy-decision"] == b"deny config:connect_ports"
    assert b"config:connect_ports" in body
    assert f"port {port}".encode() in body
    await client.aclose()
    [line] = await settled_log(proxy)
    fields = log_fields(line)
    assert (fields["method"], fields["status"], fields["verdict"], fields["source"]) == (
        "CONNECT", "403", "deny", "config:connect_ports")
    assert connections == 0


async def test_connect_to_closed_port_is_502_quickly(proxy: Proxy) -> None:
    sock, port = closed_port()
    with sock, trio.fail_after(5):
        authority = f"origin.test:{port}"
        client = await HttpClient.connect(proxy.port)
        await client.send(h11.Request(method="CONNECT", target=authority,
                                      headers=[("Host", authority)]), h11.EndOfMessage())
        response, body = await client.response()
        assert response.status_code == 502
        assert b"refused" in body
        await client.aclose()
    [line] = await settled_log(proxy)
    fields = log_fields(line)
    assert (fields["status"], fields["verdict"]) == ("502", "upstream-error")


# -- relay() on its own ---------------------------------------------------------------

StreamPair = tuple[trio.abc.HalfCloseableStream, trio.abc.HalfCloseableStream]


async def tcp_pair() -> StreamPair:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with listeners[0]:
        port = listeners[0].socket.getsockname()[1]
        a = await trio.open_tcp_stream("127.0.0.1", port)
        b = await listeners[0].accept()
    return a, b


async def socketpair_pair() -> StreamPair:
    a, b = trio.socket.socketpair()
    return trio.SocketStream(a), trio.SocketStream(b)


async def memory_pair() -> StreamPair:
    return trio.testing.memory_stream_pair()


PAIRS = {"tcp": tcp_pair, "socketpair": socketpair_pair, "memory": memory_pair}


@dataclass
class Mode:
    """How the relay moves bytes between two sockets: "copy" (through Python) or
    "splice" (zero-copy from the first byte); `spliced` counts what os.splice moved."""

    name: str
    spliced: list[int]


@pytest.fixture(params=["copy", "splice"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Mode:
    result = Mode(request.param, [])
    if request.param == "splice":
        if not tunnel._CAN_SPLICE:
            pytest.skip("os.splice is Linux-only")
        monkeypatch.setattr(tunnel, "SPLICE_AFTER", 0)
        real = os.splice

        def counting(*args: int, **kwargs: int) -> int:
            n = real(*args, **kwargs)
            result.spliced.append(n)
            return n

        monkeypatch.setattr(os, "splice", counting)
    return result


class RelayRun:
    """relay() running in a nursery between two pairs: client_end ⇄ [proxy] ⇄ origin_end."""

    def __init__(self) -> None:
        self.result: RelayResult | None = None
        self.done = trio.Event()
        self.ended_at = 0.0

    async def run(self, client: trio.abc.Stream, upstream: trio.abc.Stream,
                  **kwargs: object) -> None:
        self.result = await relay(client, upstream, **kwargs)  # type: ignore[arg-type]
        self.ended_at = trio.current_time()
        self.done.set()


@pytest.mark.parametrize("make_pair", PAIRS.values(), ids=PAIRS.keys())
async def test_relay_both_ways_initial_bytes_and_half_close(
        make_pair: Callable[[], Awaitable[StreamPair]], mode: Mode) -> None:
    client_end, proxy_client = await make_pair()
    proxy_upstream, origin_end = await make_pair()
    run = RelayRun()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: run.run(proxy_client, proxy_upstream, client_initial=b"C0",
                                           upstream_initial=b"U0", idle_timeout=60))
        assert await receive_exactly(client_end, 2) == b"U0"
        await client_end.send_all(b"hello")
        assert await receive_exactly(origin_end, 7) == b"C0hello"
        await origin_end.send_all(b"world")
        assert await receive_exactly(client_end, 5) == b"world"
        # Client half-closes; the origin sees EOF and can still answer.
        await client_end.send_eof()
        assert await read_to_eof(origin_end) == b""
        assert not run.done.is_set()
        await origin_end.send_all(b"late answer")
        await origin_end.send_eof()
        assert await read_to_eof(client_end) == b"late answer"
        await run.done.wait()
    assert run.result == RelayResult(bytes_up=7, bytes_down=2 + 5 + 11, ended="closed")
    if mode.name == "splice" and make_pair is not memory_pair:
        # All but the initial bytes, counted into the pipe and out of it.
        assert sum(mode.spliced) == 2 * (5 + 5 + 11)
    else:
        assert mode.spliced == []
    for stream in (client_end, proxy_client, proxy_upstream, origin_end):
        await stream.aclose()


async def test_relay_moves_a_large_body_intact() -> None:
    client_end, proxy_client = await tcp_pair()
    proxy_upstream, origin_end = await tcp_pair()
    payload = bytes(range(256)) * 8192  # 2 MiB, several socket buffers' worth
    run = RelayRun()
    got: list[bytes] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: run.run(proxy_client, proxy_upstream, idle_timeout=60))

        async def origin() -> None:
            got.append(await read_to_eof(origin_end))
            await origin_end.send_eof()

        nursery.start_soon(origin)
        await client_end.send_all(payload)
        await client_end.send_eof()
        assert await read_to_eof(client_end) == b""
    assert got == [payload]
    assert run.result == RelayResult(bytes_up=len(payload), bytes_down=0, ended="closed")
    for stream in (client_end, proxy_client, proxy_upstream, origin_end):
        await stream.aclose()


async def test_bulk_both_ways_switches_to_splice_and_arrives_intact(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the real threshold: each direction copies its first SPLICE_AFTER bytes, then
    splices the rest, and every byte arrives in order."""
    if not tunnel._CAN_SPLICE:
        pytest.skip("os.splice is Linux-only")
    spliced: list[int] = []
    real = os.splice

    def counting(*args: int, **kwargs: int) -> int:
        n = real(*args, **kwargs)
        spliced.append(n)
        return n

    monkeypatch.setattr(os, "splice", counting)
    client_end, proxy_client = await tcp_pair()
    proxy_upstream, origin_end = await tcp_pair()
    up = bytes(range(256)) * 4096 * 3         # 3 MiB, well past SPLICE_AFTER
    down = bytes(reversed(range(256))) * 4096 * 2
    run = RelayRun()
    received: dict[str, bytes] = {}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: run.run(proxy_client, proxy_upstream, client_initial=b"C0",
                                           idle_timeout=60))

        async def origin() -> None:
            async with trio.open_nursery() as inner:
                inner.start_soon(origin_end.send_all, down)
                received["origin"] = await read_to_eof(origin_end)
            await origin_end.send_eof()

        async def client() -> None:
            received["client"] = await read_to_eof(client_end)

        nursery.start_soon(origin)
        nursery.start_soon(client)
        await client_end.send_all(up)
        await client_end.send_eof()
    assert received == {"origin": b"C0" + up, "client": down}
    assert run.result == RelayResult(bytes_up=len(up) + 2, bytes_down=len(down), ended="closed")
    copied_at_most = 2 * (tunnel.SPLICE_AFTER + tunnel.RECEIVE_SIZE)
    assert sum(spliced) // 2 >= len(up) + len(down) - copied_at_most
    for stream in (client_end, proxy_client, proxy_upstream, origin_end):
        await stream.aclose()


@pytest.mark.parametrize("make_pair", [memory_pair, tcp_pair], ids=["memory", "tcp"])
async def test_relay_idle_timeout_pushed_by_traffic(
        autojump_clock: trio.testing.MockClock, make_pair: Callable[[], Awaitable[StreamPair]],
        mode: Mode) -> None:
    client_end, proxy_client = await make_pair()
    proxy_upstream, origin_end = await make_pair()
    run = RelayRun()
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        nursery.start_soon(lambda: run.run(proxy_client, proxy_upstream, idle_timeout=30))
        await trio.sleep(25)
        await origin_end.send_all(b"tick")
        assert await receive_exactly(client_end, 4) == b"tick"
        await run.done.wait()
    assert run.ended_at - start == pytest.approx(55)
    assert run.result == RelayResult(bytes_up=0, bytes_down=4, ended="idle")
    for stream in (client_end, proxy_client, proxy_upstream, origin_end):
        await stream.aclose()


async def test_relay_idle_after_one_side_half_closed(
        autojump_clock: trio.testing.MockClock, mode: Mode) -> None:
    """A client that half-closed and an origin that never answers: idle ends it."""
    client_end, proxy_client = await tcp_pair()
    proxy_upstream, origin_end = await tcp_pair()
    run = RelayRun()
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        nursery.start_soon(lambda: run.run(proxy_client, proxy_upstream, idle_timeout=10))
        await client_end.send_eof()
        assert await read_to_eof(origin_end) == b""
        await run.done.wait()
    assert run.ended_at - start == pytest.approx(10)
    assert run.result is not None and run.result.ended == "idle"
    for stream in (client_end, proxy_client, proxy_upstream, origin_end):
        await stream.aclose()


async def test_relay_reset_on_one_side_ends_both_directions(mode: Mode) -> None:
    client_end, proxy_client = await tcp_pair()
    proxy_upstream, origin_end = await tcp_pair()
    run = RelayRun()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: run.run(proxy_client, proxy_upstream, idle_timeout=60))
        await client_end.send_all(b"abc")
        assert await receive_exactly(origin_end, 3) == b"abc"
        # Abortive close: SO_LINGER 0 makes close() send RST instead of FIN.
        origin_end.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await origin_end.aclose()
        with trio.fail_after(5):
            await run.done.wait()
    # The client direction was still open; the reset ended it too.
    assert run.result is not None and run.result.ended == "reset"
    assert run.result.bytes_up == 3
    for stream in (client_end, proxy_client, proxy_upstream):
        await stream.aclose()


async def test_relay_without_half_close_ends_on_first_eof(
        tls_server_context: ssl.SSLContext, tls_client_context: ssl.SSLContext) -> None:
    """A client stream that cannot half-close (TLS): EOF from the origin ends the relay."""
    raw_client, raw_proxy_client = trio.testing.memory_stream_pair()
    client_end = trio.SSLStream(raw_client, tls_client_context, server_hostname="origin.test")
    proxy_client = trio.SSLStream(raw_proxy_client, tls_server_context, server_side=True)
    proxy_upstream, origin_end = trio.testing.memory_stream_pair()
    run = RelayRun()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: run.run(proxy_client, proxy_upstream, idle_timeout=60))
        await client_end.do_handshake()
        await client_end.send_all(b"up")
        assert await receive_exactly(origin_end, 2) == b"up"
        await origin_end.send_all(b"down")
        await origin_end.send_eof()
        assert await receive_exactly(client_end, 4) == b"down"
        await run.done.wait()
    assert run.result == RelayResult(bytes_up=2, bytes_down=4, ended="closed")

