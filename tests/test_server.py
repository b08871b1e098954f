"""Server lifecycle and limits: graceful shutdown, the connection cap, slow and idle
clients, foreign clients, and a port already in use. Real sockets on loopback only;
time-outs run on the autojump clock, completion is awaited with events or
`wait_all_tasks_blocked`.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import h11
import pytest
import trio
import trio.testing

from fwdproxy.config import Listen
from fwdproxy.errors import ConfigError
from fwdproxy.server import Running, open_listeners, serve
from tests.conftest import (
    HttpClient,
    HttpOrigin,
    Proxy,
    Reply,
    SeenRequest,
    log_fields,
    make_config,
    send_raw,
    settled_log,
)

StartProxy = Callable[..., Awaitable[Proxy]]
StartHttpOrigin = Callable[..., Awaitable[HttpOrigin]]






async def read_to_eof(stream: trio.abc.ReceiveStream) -> bytes:
    chunks = []
    while True:
        try:
            chunk = await stream.receive_some(65536)
        except trio.BrokenResourceError:  # a reset also ends the stream
            chunk = b""
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


class ServeRun:
    """serve() in a nursery of the test's own, so the test sees when it returns."""

    def __init__(self, overrides: dict[str, Any], log_path: Path) -> None:
        self.config = make_config(overrides, log_path)
        self.log_path = log_path
        self.shutdown = trio.Event()
        self.returned = trio.Event()
        self.returned_at = 0.0

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await serve(self.config, shutdown=self.shutdown, task_status=task_status)
        self.returned_at = trio.current_time()
        self.returned.set()


def slow_app(arrived: trio.Event, release: trio.Event) -> Callable[[SeenRequest], Awaitable[Reply]]:
    async def app(request: SeenRequest) -> Reply:
        if request.target == b"/slow":
            arrived.set()
            await release.wait()
            body = b"slow body"
        else:
            body = b"fast body"
        return Reply(200, [("Content-Length", str(len(body)))], body)

    return app


# -- shutdown -----------------------------------------------------------------------------


async def test_graceful_shutdown(start_http_origin: StartHttpOrigin, tmp_path: Path) -> None:
    arrived, release = trio.Event(), trio.Event()
    origin = await start_http_origin(slow_app(arrived, release))
    server = ServeRun({}, tmp_path / "access.log")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            running: Running = await nursery.start(server.run)
            port = running.bound[0].port

            idle = await HttpClient.connect(port)
            response, body = await idle.get(f"http://origin.test:{origin.port}/fast")
            assert (response.status_code, body) == (200, b"fast body")

            busy = await HttpClient.connect(port)
            slow_url = f"http://origin.test:{origin.port}/slow"
            await busy.send(h11.Request(method="GET", target=slow_url,
                                        headers=[("Host", f"origin.test:{origin.port}")]),
                            h11.EndOfMessage())
            await arrived.wait()

            server.shutdown.set()
            # The idle keep-alive connection is closed at once...
            assert await read_to_eof(idle.stream) == b""
            await idle.aclose()
            # ...by then the listener is closed: new connections are refused...
            with pytest.raises(OSError):
                await trio.open_tcp_stream("127.0.0.1", port)
            # ...and serve() waits for the request in flight.
            assert not server.returned.is_set()
            release.set()
            response, body = await busy.response()
            assert (response.status_code, body) == (200, b"slow body")
            assert await read_to_eof(busy.stream) == b""
            await busy.aclose()
            await server.returned.wait()
    lines = server.log_path.read_text().splitlines()
    assert sorted(log_fields(line)["url"].rsplit("/", 1)[1] + " " + log_fields(line)["status"]
                  for line in lines) == ["fast 200", "slow 200"]


async def test_shutdown_grace_cuts_requests_that_do_not_finish(
        autojump_clock: trio.testing.MockClock, start_http_origin: StartHttpOrigin,
        tmp_path: Path) -> None:
    arrived, never = trio.Event(), trio.Event()
    origin = await start_http_origin(slow_app(arrived, never))
    server = ServeRun({"timeouts": {"shutdown_grace": 5}}, tmp_path / "access.log")
    async with trio.open_nursery() as nursery:
        running: Running = await nursery.start(server.run)
        busy = await HttpClient.connect(running.bound[0].port)
        await busy.send(h11.Request(method="GET", target=f"http://origin.test:{origin.port}/slow",
                                    headers=[("Host", f"origin.test:{origin.port}")]),
                        h11.EndOfMessage())
        await arrived.wait()
        start = trio.current_time()
        server.shutdown.set()
        await server.returned.wait()
        assert server.returned_at - start == pytest.approx(5)
        assert b"200" not in await read_to_eof(busy.stream)
        await busy.aclose()


# -- limits -----------------------------------------------------------------------------


async def test_max_connections_third_client_gets_503(start_http_origin: StartHttpOrigin,
                                                     start_proxy: StartProxy) -> None:
    origin = await start_http_origin()
    proxy = await start_proxy(limits={"max_connections": 2})
    url = f"http://origin.test:{origin.port}/"
    first = await HttpClient.connect(proxy.port)
    second = await HttpClient.connect(proxy.port)
    for client in (first, second):
        response, _ = await client.get(url)
        assert response.status_code == 200  # both are being served: two slots taken

    refused = await send_raw(proxy.port, b"")
    assert refused.startswith(b"HTTP/1.1 503 ")
    assert b"limit of 2 connections" in refused

    # A slot frees when a client leaves.
    await first.aclose()
    await trio.testing.wait_all_tasks_blocked()
    third = await HttpClient.connect(proxy.port)
    response, _ = await third.get(url)
    assert response.status_code == 200
    await third.aclose()
    await second.aclose()


async def test_max_connections_holds_within_one_burst_of_accepts(
        start_http_origin: StartHttpOrigin, start_proxy: StartProxy) -> None:
    # All five connect (the kernel completes the handshakes) before the proxy's accept
    # loop runs again, so one wake-up accepts them all: the cap must count within it.
    origin = await start_http_origin()
    proxy = await start_proxy(limits={"max_connections": 2})
    raw = [socket.create_connection(("127.0.0.1", proxy.port)) for _ in range(5)]
    clients = [trio.SocketStream(trio.socket.from_stdlib_socket(s)) for s in raw]
    request = f"GET http://origin.test:{origin.port}/ HTTP/1.1\r\nHost: origin.test\r\n\r\n"
    statuses = []
    for client in clients:
        await client.send_all(request.encode())
        head = b""
        while len(head) < 12:
            chunk = await client.receive_some(65536)
            assert chunk, head
            head += chunk
        statuses.append(head[9:12])
    assert sorted(statuses) == [b"200", b"200", b"503", b"503", b"503"]
    for client in clients:
        await client.aclose()


async def test_slowloris_gets_408_while_others_are_served(
        autojump_clock: trio.testing.MockClock, start_http_origin: StartHttpOrigin,
        start_proxy: StartProxy) -> None:
    origin = await start_http_origin()
    proxy = await start_proxy(timeouts={"header": 10})
    start = trio.current_time()
    slow = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    await slow.send_all(f"GET http://origin.test:{origin.port}/ HTTP/1.1\r\nHost: orig".encode())
    silent = await trio.open_tcp_stream("127.0.0.1", proxy.port)

    normal = await HttpClient.connect(proxy.port)
    response, _ = await normal.get(f"http://origin.test:{origin.port}/normal")
    assert response.status_code == 200
    assert trio.current_time() - start < 10  # served while the slow head is pending
    await normal.aclose()

    answer = await read_to_eof(slow)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert trio.current_time() - start == pytest.approx(10)
    await slow.aclose()

    assert await read_to_eof(silent) == b""  # closed without a word
    assert trio.current_time() - start == pytest.approx(10)
    await silent.aclose()

    lines = await settled_log(proxy)
    assert sorted(log_fields(line)["status"] for line in lines) == ["200", "408"]
    [timeout_line] = [line for line in lines if log_fields(line)["status"] == "408"]
    assert log_fields(timeout_line)["verdict"] == "timeout"
    assert origin.connections == 1


async def test_many_idle_sockets_do_not_block_a_new_client(start_http_origin: StartHttpOrigin,
                                                           proxy: Proxy) -> None:
    origin = await start_http_origin()
    idle = [await trio.open_tcp_stream("127.0.0.1", proxy.port) for _ in range(300)]
    try:
        await trio.testing.wait_all_tasks_blocked()  # all 300 accepted and waiting
        with trio.fail_after(5):
            client = await HttpClient.connect(proxy.port)
            response, body = await client.get(f"http://origin.test:{origin.port}/x")
            assert (response.status_code, body) == (200, b"hello from origin: /x")
            await client.aclose()
    finally:
        for stream in idle:
            await stream.aclose()


async def test_foreign_client_refused_before_sending(start_proxy: StartProxy) -> None:
    proxy = await start_proxy(clients=["10.0.0.0/8"])
    answer = await send_raw(proxy.port, b"")
    assert answer.startswith(b"HTTP/1.1 403 ")
    assert b"config:clients" in answer
    assert b"127.0.0.1" in answer
    [line] = await settled_log(proxy)
    fields = log_fields(line)
    assert (fields["client"], fields["status"], fields["verdict"], fields["source"]) == (
        "127.0.0.1", "403", "deny", "config:clients")
    assert "not in the allowed clients" in fields["detail"]


# -- listeners -----------------------------------------------------------------------------


async def test_port_in_use_is_a_config_error_naming_the_address() -> None:
    taken = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    async with taken:
        port = taken.socket.getsockname()[1]
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}.*already in use"):
            await open_listeners((Listen("127.0.0.1", port),))


async def test_port_in_use_binds_nothing() -> None:
    """All or none: the listener opened before the failing one is closed again."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    free_port = probe.getsockname()[1]
    probe.close()
    taken = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    async with taken:
        port = taken.socket.getsockname()[1]
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}"):
            await open_listeners((Listen("127.0.0.1", free_port), Listen("127.0.0.1", port)))
    # The first port is free again: binding it works.
    again = await open_listeners((Listen("127.0.0.1", free_port),))
    for listener in again:
        await listener.aclose()


async def test_serve_with_port_in_use_raises_config_error(tmp_path: Path) -> None:
    taken = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    async with taken:
        port = taken.socket.getsockname()[1]
        server = ServeRun({"listen": [f"127.0.0.1:{port}"]}, tmp_path / "access.log")
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}"):
            await server.run()
        assert not server.returned.is_set()
