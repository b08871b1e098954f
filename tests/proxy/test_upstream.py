"""upstream: connecting to vetted addresses, and the idle-connection pool."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket

import h11
import pytest
import trio
import trio.testing

from fwdproxy.errors import BadGateway, GatewayTimeout
from fwdproxy.proxy.h11_stream import H11Stream
from fwdproxy.proxy.upstream import Pool, Upstream, connect
from tests.conftest import HttpClient

LOOPBACK = ipaddress.IPv4Address("127.0.0.1")


def closed_port() -> int:
    """A loopback port with nothing listening (bound, not listening: refuses connects)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


async def test_connect_uses_the_address_that_answers(start_origin) -> None:
    accepted = trio.Event()

    async def handler(stream: trio.SocketStream) -> None:
        accepted.set()

    port = await start_origin(handler)
    # 127.0.0.2 also reaches the loopback listener only if bound to 0.0.0.0: ours is not,
    # so the first address is refused and the second one is used.
    stream, address = await connect([ipaddress.IPv4Address("127.0.0.2"), LOOPBACK], port,
                                    timeout=5, host="origin.test")
    await accepted.wait()
    assert address == LOOPBACK
    await stream.aclose()


async def test_connect_all_refused_is_bad_gateway() -> None:
    with pytest.raises(BadGateway, match="connection refused") as caught:
        await connect([LOOPBACK], closed_port(), timeout=5, host="origin.test")
    assert caught.value.host == "origin.test"


async def _upstream(start_origin, key=("http", "origin.test", 80)) -> tuple[Upstream, trio.Event]:
    closed = trio.Event()
    release = trio.Event()

    async def handler(stream: trio.SocketStream) -> None:
        await release.wait()
        closed.set()

    port = await start_origin(handler)
    stream, address = await connect([LOOPBACK], port, timeout=5, host="origin.test")
    upstream = Upstream(stream, H11Stream(stream, h11.CLIENT, max_head_bytes=65536), key, address)
    upstream.release = release  # type: ignore[attr-defined]
    return upstream, closed


async def test_pool_returns_what_was_put(start_origin) -> None:
    pool = Pool(max_idle=4, max_idle_per_host=2, idle_timeout=30)
    upstream, _ = await _upstream(start_origin)
    pool.put(upstream)
    assert len(pool) == 1
    assert pool.take(("http", "other.test", 80)) is None
    taken = pool.take(upstream.key)
    assert taken is upstream and taken.reused
    assert len(pool) == 0
    await upstream.aclose()


async def test_pool_discards_a_connection_the_origin_closed(start_origin, nursery) -> None:
    pool = Pool(max_idle=4, max_idle_per_host=2, idle_timeout=30)
    nursery.start_soon(pool.run)
    upstream, closed = await _upstream(start_origin)
    pool.put(upstream)
    upstream.release.set()  # the origin handler returns: its side closes
    await closed.wait()
    await trio.testing.wait_all_tasks_blocked()
    assert pool.take(upstream.key) is None


async def test_pool_keeps_a_healthy_connection_past_descriptor_1023(start_origin) -> None:
    # select() cannot look at descriptors past 1023 (common with thousands of tunnels):
    # the health check once discarded every such connection as if the origin had closed.
    upstream, _ = await _upstream(start_origin)
    high = os.dup2(upstream.stream.socket.fileno(), 1500)
    sock = trio.socket.from_stdlib_socket(socket.socket(fileno=high))
    moved = Upstream(trio.SocketStream(sock), upstream.http, upstream.key, upstream.address)
    pool = Pool(max_idle=4, max_idle_per_host=2, idle_timeout=30)
    pool.put(moved)
    assert pool.take(upstream.key) is moved
    await moved.aclose()
    await upstream.aclose()


async def test_pool_caps_idle_connections_per_host(start_origin) -> None:
    pool = Pool(max_idle=10, max_idle_per_host=2, idle_timeout=30)
    upstreams = [(await _upstream(start_origin))[0] for _ in range(3)]
    for upstream in upstreams:
        pool.put(upstream)
    assert len(pool) == 2
    assert pool.take(upstreams[0].key) is upstreams[2]  # most recently used first
    assert pool.take(upstreams[0].key) is upstreams[1]
    assert pool.take(upstreams[0].key) is None
    for upstream in upstreams:
        await upstream.aclose()


async def test_pool_caps_idle_connections_in_all(start_origin) -> None:
    pool = Pool(max_idle=2, max_idle_per_host=5, idle_timeout=30)
    keys = [("http", f"h{i}.test", 80) for i in range(3)]
    upstreams = [(await _upstream(start_origin, key))[0] for key in keys]
    for upstream in upstreams:
        pool.put(upstream)
    assert len(pool) == 2
    assert pool.take(keys[0]) is None  # the oldest went first
    for upstream in upstreams:
        await upstream.aclose()


async def test_pool_closes_expired_connections(start_origin, nursery, autojump_clock) -> None:
    pool = Pool(max_idle=4, max_idle_per_host=2, idle_timeout=30)
    nursery.start_soon(pool.run)
    upstream, _ = await _upstream(start_origin)
    pool.put(upstream)
    await trio.sleep(31)  # virtual time: the reaper wakes and expires it
    assert len(pool) == 0
    with pytest.raises(trio.ClosedResourceError):
        await upstream.stream.send_all(b"x")


@pytest.fixture
def unanswered_port():
    """A loopback port whose accept queue is full, so new SYNs are dropped and a connect
    waits: the kernel's own stand-in for an unreachable host, without leaving loopback."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):  # enough to fill a queue of backlog + 1, never accepted
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    listener.close()


async def test_connect_timeout_is_gateway_timeout(unanswered_port, autojump_clock) -> None:
    start = trio.current_time()
    with pytest.raises(GatewayTimeout, match="timed out after 15 s"):
        await connect([LOOPBACK], unanswered_port, timeout=15, host="origin.test")
    assert trio.current_time() - start == pytest.approx(15)


async def test_proxy_answers_504_when_connect_times_out(unanswered_port, start_proxy,
                                                        autojump_clock) -> None:
    proxy = await start_proxy(timeouts={"connect": 15})
    client = await HttpClient.connect(proxy.port)
    response, body = await client.get(f"http://origin.test:{unanswered_port}/")
    assert response.status_code == 504
    assert b"origin.test" in body and b"timed out" in body
    await client.aclose()
