"""Socket I/O on the descriptor, under trio: for the paths every request or tunnel takes.

trio's SocketStream passes each receive and send through two layers of wrappers and a
conflict detector: several microseconds a call, four calls per proxied request. Here the
system call is made directly; only a call that has to wait enters trio
(`wait_readable`/`wait_writable`, which are checkpoints and can be cancelled). A caller
whose call completed without waiting should still yield as trio's own calls do
(`trio.lowlevel.cancel_shielded_checkpoint()`): every task then moves one step per
scheduling round, and a peer that always has bytes ready cannot hold the process.
Yielding after a send has a second use: by the time the task runs again, the peer's
answer has often arrived, and the read that follows needs no wait.

A caller that may outlive the socket (H11Stream: its owner closes the socket whenever it
is done) reads the descriptor with `live_fd` at each call instead of keeping it: once trio
closes the socket its descriptor reads -1, so a stale number, perhaps reused by another
connection by then, is never written to. The tunnel relay keeps its two descriptors,
since the sockets are closed only after it returns.
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
