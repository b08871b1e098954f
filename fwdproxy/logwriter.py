"""The access-log writer: gets the lines out without ever making the proxy wait.

Writing (`AccessLog`): `write()` formats the line and appends it to a list, nothing else; no
system call is made per request. `flush()` (the server calls it every second and at shutdown;
`write()` calls it too once 64 KiB are waiting) writes the list out in one go. The output
never blocks the event loop: a file is opened with O_APPEND (so other writers and a
truncating logrotate never make us overwrite lines) and O_NONBLOCK (so a FIFO cannot stall
us); stderr, and any pipe, socket or terminal, is written only while poll() reports it
writable, at most PIPE_BUF bytes per write(): a pipe reports writable only with at least
that much room, so such a write never waits for the reader. What cannot be written stays
buffered for the next flush; past `MAX_BUFFER_LINES` lines or `MAX_BUFFER_BYTES` bytes new
lines are dropped and counted, and the count is reported on stderr after the next flush that
empties the buffer. Nothing here raises for an output that is full, closed or failing.

stderr is never set non-blocking: O_NONBLOCK belongs to the open file description, which a
dup() shares, so setting it would also make Python's own prints to stderr (tracebacks
included) fail with BlockingIOError, and it would leak to the shell or supervisor that
handed us the descriptor.
"""

from __future__ import annotations

import contextlib
import os
import select
import stat
import time
from pathlib import Path

from fwdproxy.accesslog import Exchange, formatter

# write() flushes early once this much is waiting: one default Linux pipe's capacity, a few
# hundred requests' lines; the 1 s timer flushes everything smaller.
FLUSH_BYTES = 64 * 1024
# While the output cannot take lines, this many stay buffered before new ones are dropped:
# a minute or so of a busy proxy's lines, for a reader that stalls and comes back...
MAX_BUFFER_LINES = 10_000
# ...and at most this much memory, should the lines be long (URLs of many kilobytes).
MAX_BUFFER_BYTES = 4 * 1024 * 1024

FILE_MODE = 0o666  # what open(path, "a") used; the umask narrows it



class _Output:
    """One descriptor we own, written without ever waiting for a reader."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        # A regular file takes a write at once or fails (ENOSPC); a pipe, socket or terminal
        # makes the writer wait for its reader, so it gets only what poll() says fits now.
        self._poll: select.poll | None = None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            self._poll = select.poll()
            self._poll.register(fd, select.POLLOUT)

    @classmethod
    def open_file(cls, path: Path) -> _Output:
        """Raises OSError (a FIFO nobody reads gives ENXIO rather than waiting)."""
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC
        fd = os.open(path, flags, FILE_MODE)
        try:
            return cls(fd)
        except OSError:
            os.close(fd)
            raise

    @classmethod
    def stderr(cls) -> _Output | None:
        """A descriptor of our own on stderr (closing it leaves fd 2 alone); None if fd 2
        is closed."""
        try:
            fd = os.dup(2)
        except OSError:
            return None
        try:
            return cls(fd)
        except OSError:
            os.close(fd)
            return None

    def write_some(self, data: bytes) -> tuple[int, OSError | None]:
        """Write as much of `data` as the output takes now.

        Returns:
            how many leading bytes were written, and the error that stopped the writing
            (None when the output was merely full, or took everything).
        """
        view = memoryview(data)
        written = 0
        try:
            while written < len(data):
                end = len(data)
                if self._poll is not None:
                    if not self._poll.poll(0):
                        break  # full: poll() says a write would wait
                    # Up to PIPE_BUF bytes fit once poll() said writable; whole lines when
                    # they do, so that another writer's lines do not land inside ours.
                    end = min(end, written + select.PIPE_BUF)
                    cut = data.rfind(b"\n", written, end)
                    if end < len(data) and cut >= 0:
                        end = cut + 1
                count = os.write(self.fd, view[written:end])
                if count == 0:
                    break
                written += count
        except BlockingIOError:
            pass  # an O_NONBLOCK descriptor (a FIFO we opened) that is full
        except OSError as exc:
            return written, exc
        return written, None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class AccessLog:
    """Buffers access-log lines and writes them to a file, or to stderr.

    Args:
        path: the file to append to; None for stderr.
        fmt: one of `FORMATS`.

    Raises:
        ValueError: `fmt` is unknown.
        OSError: the file cannot be opened (at startup, so a bad path fails early).
    """

    def __init__(self, path: Path | None = None, fmt: str = "fwdproxy") -> None:
        self.path = path
        self.fmt = fmt
        self._format = formatter(fmt)
        self._output: _Output | None = _Output.stderr() if path is None else _Output.open_file(path)
        self._notices: _Output | None = self._output if path is None else None
        self._lines: list[bytes] = []  # a partly written line stays at the front as its tail
        self._count = 0  # lines in _lines (or in its tail)
        self._size = 0  # bytes in _lines
        self._dropped = 0  # lines dropped and not yet reported
        self._failing: str | None = None  # why the output took less than everything, if so
        self._closed = False

    @property
    def target(self) -> str:
        return "stderr" if self.path is None else str(self.path)

    @property
    def dropped(self) -> int:
        """Lines dropped since the last report of drops."""
        return self._dropped

    def write(self, exchange: Exchange) -> None:
        """Log one finished exchange: format it and buffer the line. No system call,
        unless `FLUSH_BYTES` are now waiting for an output that was taking lines."""
        if self._closed:
            return
        if self._count >= MAX_BUFFER_LINES or self._size >= MAX_BUFFER_BYTES:
            self._dropped += 1
            return
        line = (self._format(exchange, time.time()) + "\n").encode("utf-8", "backslashreplace")
        self._lines.append(line)
        self._count += 1
        self._size += len(line)
        if self._size >= FLUSH_BYTES and self._failing is None:
            self.flush()

    def flush(self) -> None:
        """Write out the buffered lines, as far as the output takes them now; never raises,
        never waits. What is left stays buffered for the next flush."""
        if self._closed:
            return
        if self._lines:
            if self._output is None and self.path is not None:
                self._open()  # the last reopen() failed: try again
            if self._output is None:
                if self.path is None:  # there is no stderr: nothing can ever be written
                    self._dropped += self._count
                    self._clear()
                return
            data = b"".join(self._lines)
            written, error = self._output.write_some(data)
            if written < len(data):
                rest = data[written:]
                self._lines, self._size, self._count = [rest], len(rest), rest.count(b"\n")
                self._failed(str(error) if error is not None else "the output is full")
                return
            self._clear()
        self._failing = None
        if self._dropped:
            lines = "line was" if self._dropped == 1 else "lines were"
            if self._notify(f"access log {self.target}: {self._dropped} {lines} dropped while "
                            "the log could not take them"):
                self._dropped = 0

    def reopen(self) -> None:
        """Close the file and open the same path again (SIGUSR1, after logrotate renamed
        it): lines buffered so far go to the old file, later ones to a new file at `path`.
        For stderr it only flushes. Never raises: if the path cannot be opened, lines are
        held (then dropped) and the open is retried at each flush."""
        self.flush()
        if self._closed or self.path is None:
            return
        if self._output is not None:
            self._output.close()
            self._output = None
        self._open()

    def close(self) -> None:
        """Flush and close; lines the output still cannot take are counted as dropped."""
        if self._closed:
            return
        self.flush()
        if self._count:
            self._dropped += self._count
            self._clear()
            self.flush()  # reports the drops, if stderr takes it
        self._closed = True
        if self._notices is not None and self._notices is not self._output:
            self._notices.close()
        if self._output is not None:
            self._output.close()
        self._output = self._notices = None

    # -- internals

    def _clear(self) -> None:
        self._lines, self._size, self._count = [], 0, 0

    def _open(self) -> None:
        assert self.path is not None
        try:
            self._output = _Output.open_file(self.path)
        except OSError as exc:
            self._failed(str(exc))

    def _failed(self, reason: str) -> None:
        """Note that the output took less than everything; say so once per episode (on
        stderr, when the log is a file: a full stderr could not take the notice anyway)."""
        if self._failing is None and self.path is not None:
            self._notify(f"access log {self.path}: cannot write ({reason}); holding up to "
                         f"{MAX_BUFFER_LINES} lines in memory, then dropping them")
        self._failing = reason

    def _notify(self, message: str) -> bool:
        """Print one line on stderr without waiting; True if it was written whole."""
        if self._notices is None:
            self._notices = _Output.stderr()
            if self._notices is None:
                return False
        data = f"fwdproxy: {message}\n".encode("utf-8", "backslashreplace")
        written, _error = self._notices.write_some(data)
        return written == len(data)
