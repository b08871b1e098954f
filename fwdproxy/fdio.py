"""Socket I/O on the descriptor, under trio: for the paths every request or tunnel takes.

trio's SocketStream makes each receive and send a scheduling round trip (a checkpoint
after every successful call) through two layers of wrappers: a few microseconds each,
four times per proxied request. Here a call that can complete at once does so, and only
a call that has to wait enters trio (`wait_readable`/`wait_writable`, which are
checkpoints and can be cancelled). Callers that may never wait must yield now and then
themselves (`Yielder`).

The descriptor is read from the socket object at each call, never kept: once trio closes
the socket its descriptor reads -1, so a stale number (perhaps reused by another
connection by then) is never written to.
"""

from __future__ import annotations

import os

import trio

# Large enough that a body moves in few syscalls, small enough that thousands of
# connections with one chunk in flight each stay within a few hundred MiB.
RECEIVE_SIZE = 65_536


class Closed(OSError):
    """The socket was closed on our side."""


def live_fd(sock: trio.socket.SocketType) -> int:
    """The descriptor of `sock`.

    Raises:
        Closed: the socket is closed.
    """
    fd = sock.fileno()
    if fd < 0:
        raise Closed("the connection is closed")
    return fd


def read_some(fd: int) -> bytes | None:
    """What `fd` has to read (b"" at EOF); None when it has nothing yet.

    Raises:
        OSError: the connection failed (reset, ...).
    """
    try:
        return os.read(fd, RECEIVE_SIZE)
    except BlockingIOError:
        return None


def write_some(fd: int, data: memoryview) -> int:
    """Bytes of `data` written to `fd` without waiting (0 when it would have to wait).

    Raises:
        OSError: the connection failed (reset, broken pipe, ...).
    """
    try:
        return os.write(fd, data)
    except BlockingIOError:
        return 0


async def write_all(fd: int, data: bytes) -> None:
    """Write all of `data`, waiting for room as needed.

    Raises:
        OSError: the connection failed.
    """
    view = memoryview(data)
    while view:
        written = write_some(fd, view)
        if not written:
            await trio.lowlevel.wait_writable(fd)
        view = view[written:]


class Yielder:
    """Tells a task that does its own I/O when to yield to the others: after `every` calls
    in a row that completed without waiting, so that a peer that always has bytes ready
    (or always takes them) cannot hold the whole process."""

    __slots__ = ("every", "unyielded")

    def __init__(self, every: int = 8) -> None:
        self.every = every
        self.unyielded = 0

    def due(self, waited: bool) -> bool:
        """Count one call; True when the caller should yield now (trio's checkpoint())."""
        if waited:
            self.unyielded = 0
            return False
        self.unyielded += 1
        if self.unyielded < self.every:
            return False
        self.unyielded = 0
        return True
