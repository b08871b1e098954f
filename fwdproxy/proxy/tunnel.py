"""Raw byte relay for CONNECT tunnels and switched protocols (WebSocket).

Strategy: two pumps in one nursery, one per direction. A pump that meets EOF half-closes
the other side (send_eof) and ends; the relay ends when both pumps have ended, or when no
byte has moved either way for `idle_timeout` seconds (one cancel scope whose deadline
every chunk pushes forward), or when either side fails, which ends both. Bytes a parser
already read past the head (h11's trailing_data) are sent first, so none are lost.

Bulk transfers go zero-copy on Linux: once a direction has moved `SPLICE_AFTER` bytes
between two plain sockets, it switches from receive/send (every byte copied into Python
and out again) to splice(2) through a pipe of its own, so the bytes stay in the kernel.
The threshold keeps the extra pipe (two descriptors) off the many tunnels that carry
little: an idle tunnel, or a TLS handshake, never gets one. Elsewhere (no os.splice, or a
stream that is not a plain socket) the copy loop does all the work.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

import trio

from fwdproxy.proxy import fdio
from fwdproxy.proxy.fdio import RECEIVE_SIZE

_TRANSPORT_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
# Bytes a direction moves by copying before it switches to splice().
SPLICE_AFTER = 256 * 1024
# The pipe between the two sockets, and the most one splice() moves: 1 MiB, the default
# /proc/sys/fs/pipe-max-size (an unprivileged process may grow a pipe up to that).
PIPE_SIZE = 1 << 20
_CAN_SPLICE = hasattr(os, "splice") and hasattr(os, "pipe2")
try:
    import fcntl

    _F_SETPIPE_SZ: int | None = fcntl.F_SETPIPE_SZ
except (ImportError, AttributeError):  # not Linux, or Python without the constant
    _F_SETPIPE_SZ = None


class _Direction:
    """One direction of a relay: moves bytes from `source` to `sink`, counts them in the
    shared result and pushes the shared idle deadline forward."""

    __slots__ = ("idle_timeout", "result", "scope", "up")

    def __init__(self, result: RelayResult, scope: trio.CancelScope, idle_timeout: float,
                 up: bool) -> None:
        self.result, self.scope, self.idle_timeout, self.up = result, scope, idle_timeout, up

    def count(self, n: int) -> None:
        if self.up:
            self.result.bytes_up += n
        else:
            self.result.bytes_down += n
        self.scope.deadline = trio.current_time() + self.idle_timeout

    async def run(self, source: trio.abc.Stream, sink: trio.abc.Stream, initial: bytes) -> None:
        try:
            if isinstance(source, trio.SocketStream) and isinstance(sink, trio.SocketStream):
                await self._sockets(source.socket.fileno(), sink.socket.fileno(), initial)
                sink.socket.shutdown(socket.SHUT_WR)  # what SocketStream.send_eof does
                return
            if initial:
                await sink.send_all(initial)
                self.count(len(initial))
            while data := await source.receive_some(RECEIVE_SIZE):
                await sink.send_all(data)
                self.count(len(data))
            if isinstance(sink, trio.abc.HalfCloseableStream):
                await sink.send_eof()
            else:
                self.scope.cancel()  # no half-close possible: EOF on one side ends the relay
        except _TRANSPORT_ERRORS:
            self.result.ended = "reset"
            self.scope.cancel()

    async def _sockets(self, src: int, dst: int, initial: bytes) -> None:
        """Socket to socket, on the descriptors: copy the first `SPLICE_AFTER` bytes, then
        splice. (Below trio's SocketStream, which adds nothing here but frames and
        objects that every idle tunnel would hold while it waits.)

        Raises:
            OSError: either socket failed.
        """
        if initial:
            await fdio.write_all(dst, initial)
            self.count(len(initial))
        moved = 0
        while not (_CAN_SPLICE and moved >= SPLICE_AFTER):
            data = fdio.read_some(src)
            if data is None:
                # Outside the except clause: a handled exception would stay alive (with
                # its traceback) for as long as an idle tunnel waits here.
                await trio.lowlevel.wait_readable(src)
                continue
            if not data:
                return
            await fdio.write_all(dst, data)
            self.count(len(data))
            moved += len(data)
            if len(data) < fdio.RECEIVE_SIZE:
                # A short read took all there was: the next bytes (a handshake's answer)
                # need a wait, and that wait is this turn's checkpoint. A read first would
                # be a system call that finds nothing, and a yield of its own.
                await trio.lowlevel.wait_readable(src)
            else:
                await trio.lowlevel.checkpoint()  # the source may never make us wait
        await _splice(src, dst, self.count)


def _splice_some(src: int, dst: int, size: int, flags: int) -> int | None:
    """Bytes spliced (0 at EOF); None when the call would have to wait."""
    try:
        return os.splice(src, dst, size, flags=flags)
    except BlockingIOError:
        return None


async def _splice(src: int, dst: int, count: Callable[[int], None]) -> None:
    """Move bytes from socket `src` to socket `dst` inside the kernel until `src` reaches
    EOF.

    Raises:
        OSError: either socket failed (reset, closed).
    """
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    size = RECEIVE_SIZE  # a pipe's default capacity is 64 KiB
    try:
        if _F_SETPIPE_SZ is not None:
            with contextlib.suppress(OSError):
                size = fcntl.fcntl(write_end, _F_SETPIPE_SZ, PIPE_SIZE)
        flags = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
        while True:
            n = _splice_some(src, write_end, size, flags)
            if n is None:
                await trio.lowlevel.wait_readable(src)
                continue
            if n == 0:
                return
            left = n
            while left:
                moved = _splice_some(read_end, dst, left, flags)
                if moved is None:
                    await trio.lowlevel.wait_writable(dst)
                else:
                    left -= moved
            count(n)
            await trio.lowlevel.checkpoint()  # the source may never make us wait
    finally:
        os.close(read_end)
        os.close(write_end)


@dataclass
class RelayResult:
    """What a relay moved and how it ended."""

    bytes_up: int = 0     # client → destination
    bytes_down: int = 0   # destination → client
    ended: str = "closed"  # closed | idle | reset


async def relay(
    client: trio.abc.HalfCloseableStream | trio.abc.Stream,
    upstream: trio.abc.HalfCloseableStream | trio.abc.Stream,
    *,
    client_initial: bytes = b"",
    upstream_initial: bytes = b"",
    idle_timeout: float,
) -> RelayResult:
    """Relay bytes both ways until both directions reach EOF, idle time-out or an error.

    Args:
        client: the client's stream.
        upstream: the destination's stream.
        client_initial: bytes from the client already read, to send upstream first.
        upstream_initial: bytes from the destination already read, to send to the client.
        idle_timeout: seconds without traffic either way after which the relay ends.
    """
    result = RelayResult()
    async with trio.open_nursery() as nursery:
        # The nursery's own scope is the idle deadline (an idle tunnel holds one scope,
        # not two), and one new task, not two: this one carries the client's bytes.
        scope = nursery.cancel_scope
        scope.deadline = trio.current_time() + idle_timeout
        nursery.start_soon(_Direction(result, scope, idle_timeout, False).run,
                           upstream, client, upstream_initial)
        await _Direction(result, scope, idle_timeout, True).run(client, upstream, client_initial)
    if scope.cancelled_caught and result.ended != "reset":
        result.ended = "idle" if trio.current_time() >= scope.deadline else "closed"
    return result
