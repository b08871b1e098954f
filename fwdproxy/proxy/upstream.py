"""Connections to origins: connect to vetted addresses, and a pool of idle keep-alive ones.

Strategy: `connect` receives addresses the policy already checked, never a host name, and
races them Happy-Eyeballs style (RFC 8305: a new attempt every 250 ms until one connects).
The pool decides synchronously (take/put) and a reaper task closes idle connections when
they expire; a pooled connection that became readable while idle (the origin closed it or
sent garbage) is discarded on take.
"""

from __future__ import annotations

import errno
import os
import select
import socket
from collections import OrderedDict
from dataclasses import dataclass, field

import h11
import trio

from fwdproxy.errors import BadGateway, GatewayTimeout
from fwdproxy.policy.names import IPAddress
from fwdproxy.proxy.h11_stream import H11Stream

# RFC 8305 §5 recommends 250 ms between connection attempts.
ATTEMPT_DELAY = 0.25

PoolKey = tuple[str, str, int]  # (scheme, host, port)


@dataclass(eq=False)
class Upstream:
    """One connection to an origin with its h11 client state."""

    stream: trio.SocketStream
    http: H11Stream
    key: PoolKey
    address: IPAddress
    reused: bool = False
    idle_since: float = field(default=0.0)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self.stream.aclose()


async def connect(addresses: list[IPAddress], port: int, *, timeout: float,
                  host: str) -> tuple[trio.SocketStream, IPAddress]:
    """Open a TCP connection to the first of `addresses` that answers.

    Raises:
        BadGateway: every address refused or was unreachable.
        GatewayTimeout: nothing connected within `timeout` seconds.
    """
    if len(addresses) == 1:
        return await _connect_one(addresses[0], port, timeout=timeout, host=host)
    winner: list[tuple[trio.SocketStream, IPAddress]] = []
    errors: list[str] = []

    async def attempt(address: IPAddress, done: trio.Event, cancel: trio.CancelScope) -> None:
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        sock = trio.socket.socket(family, socket.SOCK_STREAM)
        try:
            await sock.connect((str(address), port))
        except OSError as exc:
            sock.close()
            errors.append(f"{address}: {_reason(exc)}")
            done.set()
            return
        except BaseException:
            sock.close()
            raise
        if winner:
            sock.close()
            return
        winner.append((trio.SocketStream(sock), address))
        cancel.cancel()

    try:
        with trio.fail_after(timeout):
            async with trio.open_nursery() as nursery:
                for address in addresses:
                    failed = trio.Event()
                    nursery.start_soon(attempt, address, failed, nursery.cancel_scope)
                    with trio.move_on_after(ATTEMPT_DELAY):
                        await failed.wait()
    except trio.TooSlowError:
        if winner:
            return winner[0]
        raise GatewayTimeout(f"connecting to {host} port {port} timed out after {timeout:g} s",
                             host=host) from None
    if winner:
        return winner[0]
    reasons = "; ".join(errors) or "no address to try"
    raise BadGateway(f"cannot connect to {host} port {port} ({reasons})", host=host)


async def _connect_one(address: IPAddress, port: int, *, timeout: float,
                       host: str) -> tuple[trio.SocketStream, IPAddress]:
    """`connect` with one address: nothing to race, so no nursery, task or event, and
    no wait at all when the connection is made at once (as on loopback)."""
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        error = sock.connect_ex((str(address), port))
        if error == errno.EINPROGRESS:
            if not _is_writable(sock):
                with trio.fail_after(timeout):
                    await trio.lowlevel.wait_writable(sock)
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            raise OSError(error, os.strerror(error))
        return trio.SocketStream(trio.socket.from_stdlib_socket(sock)), address
    except trio.TooSlowError:
        sock.close()
        raise GatewayTimeout(f"connecting to {host} port {port} timed out after {timeout:g} s",
                             host=host) from None
    except OSError as exc:
        sock.close()
        raise BadGateway(f"cannot connect to {host} port {port} ({_reason(exc)})", host=host) from None
    except BaseException:
        sock.close()
        raise


def _reason(exc: OSError) -> str:
    return os.strerror(exc.errno).lower() if exc.errno else str(exc)


def _ready(fd: int, events: int) -> bool:
    """Would `fd` take `events` now? (poll, not select: descriptors past 1023 are common
    with thousands of tunnels open.) An error counts as ready: the next call reports it."""
    poller = select.poll()
    poller.register(fd, events)
    try:
        return bool(poller.poll(0))
    except OSError:
        return True


def _is_writable(sock: socket.socket) -> bool:
    return _ready(sock.fileno(), select.POLLOUT)


def _is_readable(stream: trio.SocketStream) -> bool:
    fd = stream.socket.fileno()
    return fd < 0 or _ready(fd, select.POLLIN)


class Pool:
    """Idle keep-alive connections to origins, keyed by (scheme, host, port).

    Args:
        max_idle: idle connections kept in all.
        max_idle_per_host: idle connections kept per key.
        idle_timeout: seconds an idle connection is kept.
    """

    def __init__(self, *, max_idle: int, max_idle_per_host: int, idle_timeout: float) -> None:
        self.max_idle = max_idle
        self.max_idle_per_host = max_idle_per_host
        self.idle_timeout = idle_timeout
        self._idle: OrderedDict[Upstream, PoolKey] = OrderedDict()  # oldest first
        self._per_key: dict[PoolKey, list[Upstream]] = {}
        self._closing: list[Upstream] = []
        self._wake = trio.Event()

    def __len__(self) -> int:
        return len(self._idle)

    def take(self, key: PoolKey) -> Upstream | None:
        """The most recently used idle connection for `key` that still looks healthy."""
        stack = self._per_key.get(key)
        now = trio.current_time()
        while stack:
            upstream = stack.pop()
            del self._idle[upstream]
            if now - upstream.idle_since < self.idle_timeout and not _is_readable(upstream.stream):
                upstream.reused = True
                return upstream
            self._discard(upstream)
        return None

    def put(self, upstream: Upstream) -> None:
        """Keep `upstream` for reuse (its h11 state must be back at IDLE)."""
        assert upstream.http.conn.our_state is h11.IDLE
        upstream.idle_since = trio.current_time()
        stack = self._per_key.setdefault(upstream.key, [])
        stack.append(upstream)
        self._idle[upstream] = upstream.key
        if len(stack) > self.max_idle_per_host:
            oldest = stack.pop(0)
            del self._idle[oldest]
            self._discard(oldest)
        while len(self._idle) > self.max_idle:
            oldest, key = self._idle.popitem(last=False)
            self._per_key[key].remove(oldest)
            self._discard(oldest)

    def _discard(self, upstream: Upstream) -> None:
        stack = self._per_key.get(upstream.key)
        if stack is not None and not stack:
            del self._per_key[upstream.key]
        self._closing.append(upstream)
        self._wake.set()

    def _expire(self) -> None:
        now = trio.current_time()
        while self._idle:
            oldest, key = next(iter(self._idle.items()))
            if now - oldest.idle_since < self.idle_timeout:
                break
            del self._idle[oldest]
            self._per_key[key].remove(oldest)
            self._discard(oldest)

    async def run(self) -> None:
        """Close discarded and expired connections; runs for the server's lifetime."""
        try:
            while True:
                with trio.move_on_after(max(self.idle_timeout / 2, 0.5)):
                    await self._wake.wait()
                self._wake = trio.Event()
                self._expire()
                closing, self._closing = self._closing, []
                for upstream in closing:
                    await upstream.aclose()
        finally:
            with trio.CancelScope(shield=True):
                for upstream in [*self._closing, *self._idle]:
                    await upstream.aclose()
                self._idle.clear()
                self._per_key.clear()
                self._closing.clear()
