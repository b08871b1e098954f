"""Shared fixtures: real servers on loopback, started with nursery.start() on port 0.

- `start_origin(handler)`: a TCP server whose connections run `handler(stream)`.
- `start_http_origin(app)`: an h11 origin; `app(request, body) -> Reply` per request,
  recording every connection and request it saw (`origin.connections`, `origin.requests`).
- `start_proxy(**overrides)`: fwdproxy itself via `server.serve`, with a test config:
  `origin.test` → 127.0.0.1, `deny_destinations: []`, CONNECT to any port.
- `tls_ca`: a trustme CA; `tls_server_context()` for TLS origins.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import pytest
import trio
import trio.testing
import trustme

from fwdproxy import config as config_module
from fwdproxy.config import Config
from fwdproxy.server import Running, serve

Handler = Callable[[trio.SocketStream], Awaitable[None]]


async def _serve_tcp(handler: Handler, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")

    async def run(stream: trio.SocketStream) -> None:
        try:
            await handler(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await stream.aclose()

    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(run, listeners)


@pytest.fixture
async def start_origin(nursery: trio.Nursery) -> Callable[[Handler], Awaitable[int]]:
    """Start a raw TCP origin running `handler` per connection; returns its port."""

    async def start(handler: Handler) -> int:
        port: int = await nursery.start(_serve_tcp, handler)
        return port

    return start


@dataclass
class Reply:
    """What the h11 origin answers: status, headers, and body chunks (sent one by one)."""

    status: int = 200
    headers: Sequence[tuple[str, str]] = ()
    body: Sequence[bytes] | bytes = b""
    interim: Sequence[tuple[int, Sequence[tuple[str, str]]]] = ()


@dataclass
class SeenRequest:
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    http_version: bytes
    connection: int

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_all(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.headers if k == name]


App = Callable[[SeenRequest], Awaitable[Reply] | Reply]


@dataclass
class HttpOrigin:
    port: int
    requests: list[SeenRequest] = field(default_factory=list)
    connections: int = 0


def _default_app(request: SeenRequest) -> Reply:
    body = b"hello from origin: " + request.target
    return Reply(200, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))], body)


@pytest.fixture
async def start_http_origin(
    start_origin: Callable[[Handler], Awaitable[int]],
) -> Callable[..., Awaitable[HttpOrigin]]:
    """Start an h11 origin; each request is answered by `app` (default: echo the target)."""

    async def start(app: App = _default_app) -> HttpOrigin:
        origin = HttpOrigin(port=0)

        async def handler(stream: trio.SocketStream) -> None:
            origin.connections += 1
            number = origin.connections
            conn = h11.Connection(h11.SERVER)
            while True:
                request: h11.Request | None = None
                body = bytearray()
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await stream.receive_some(65536)
                        conn.receive_data(data)
                        continue
                    if isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                        return
                assert request is not None
                seen = SeenRequest(request.method, request.target, list(request.headers),
                                   bytes(body), request.http_version, number)
                origin.requests.append(seen)
                reply = app(seen)
                if not isinstance(reply, Reply):
                    reply = await reply
                for status, headers in reply.interim:
                    await stream.send_all(conn.send(h11.InformationalResponse(
                        status_code=status, headers=list(headers))))
                await stream.send_all(conn.send(h11.Response(
                    status_code=reply.status, headers=list(reply.headers))))
                chunks = [reply.body] if isinstance(reply.body, bytes) else reply.body
                for chunk in chunks:
                    if chunk:
                        await stream.send_all(conn.send(h11.Data(data=chunk)))
                await stream.send_all(conn.send(h11.EndOfMessage()))
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()

        origin.port = await start_origin(handler)
        return origin

    return start


TEST_CONFIG: dict[str, Any] = {
    "listen": ["127.0.0.1:0"],
    "deny_destinations": [],
    "connect_ports": ["1-65535"],
    "hosts": {"origin.test": "127.0.0.1", "other.test": "127.0.0.1"},
    # No admin: "/" is the users' info page; status-page tests set admin_clients.
    "admin_clients": [],
}


@dataclass
class Proxy:
    """A running fwdproxy under test."""

    port: int
    running: Running
    shutdown: trio.Event
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_lines(self) -> list[str]:
        self.running.context.log.flush()
        return self.log_path.read_text().splitlines()


def make_config(overrides: dict[str, Any], log_path: Path) -> Config:
    data = {**TEST_CONFIG, "access_log": str(log_path), **overrides}
    data = {k: v for k, v in data.items() if v is not None}
    return config_module.from_mapping(data, "test config")


@pytest.fixture
async def start_proxy(
    nursery: trio.Nursery, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[Proxy]]]:
    """Start fwdproxy with the test config plus `overrides` (a key set to None is removed)."""
    proxies: list[Proxy] = []

    async def start(clock: Callable[[], Any] | None = None, **overrides: Any) -> Proxy:
        log_path = tmp_path / f"access-{len(proxies)}.log"
        cfg = make_config(overrides, log_path)
        shutdown = trio.Event()
        running: Running = await nursery.start(
            lambda task_status: serve(cfg, shutdown=shutdown, clock=clock, task_status=task_status)
        )
        proxy = Proxy(running.bound[0].port, running, shutdown, log_path)
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.shutdown.set()


@pytest.fixture
async def proxy(start_proxy: Callable[..., Awaitable[Proxy]]) -> Proxy:
    """A proxy with the default test config."""
    return await start_proxy()


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def tls_server_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    """A server context with a certificate for origin.test, other.test and 127.0.0.1."""
    cert = tls_ca.issue_cert("origin.test", "other.test", "127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


@pytest.fixture(scope="session")
def tls_client_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    tls_ca.configure_trust(context)
    return context


LOG_FIELDS = ("time", "client", "method", "url", "status", "up", "down", "duration",
              "verdict", "source", "detail")


def log_fields(line: str) -> dict[str, str]:
    """An access-log line by field name (see accesslog.format_line); the byte counts
    without their ``up=``/``down=`` labels."""
    fields = dict(zip(LOG_FIELDS, line.split(" ", 10), strict=True))
    fields["up"] = fields["up"].removeprefix("up=")
    fields["down"] = fields["down"].removeprefix("down=")
    return fields


async def settled_log(proxy: Proxy) -> list[str]:
    """The access log once the proxy has finished what it was doing (it logs last)."""
    await trio.testing.wait_all_tasks_blocked()
    return proxy.log_lines()


async def send_raw(port: int, data: bytes, *, read_until_eof: bool = True) -> bytes:
    """Send `data` to 127.0.0.1:`port` and return everything received until EOF."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        chunks = []
        while read_until_eof:
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


class HttpClient:
    """An h11 client connection to the proxy, for tests that need exact control."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def connect(cls, port: int) -> HttpClient:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def send(self, *events: Any) -> None:
        for event in events:
            data = self.conn.send(event)
            if data:
                await self.stream.send_all(data)

    async def next_event(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(65536))
                continue
            return event

    async def response(self) -> tuple[h11.Response, bytes]:
        """Read one whole response (skipping interim ones): head and body."""
        head: h11.Response | None = None
        body = bytearray()
        while True:
            event = await self.next_event()
            if isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                assert head is not None, "connection closed before a response"
                return head, bytes(body)

    async def get(self, url: str, headers: Sequence[tuple[str, str]] = (),
                  method: str = "GET") -> tuple[h11.Response, bytes]:
        host = url.split("/")[2]
        await self.send(h11.Request(method=method, target=url,
                                    headers=[("Host", host), *headers]), h11.EndOfMessage())
        response = await self.response()
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        return response

    async def aclose(self) -> None:
        await self.stream.aclose()
