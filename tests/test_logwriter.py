"""logwriter.py: the buffered access-log writer, which never makes the proxy wait.

The writer is driven against real files,
pipes, FIFOs and /dev/full; a stalled or closed reader must never block or raise, and
anything that might block runs in a thread with a deadline, so a regression fails the test
instead of hanging it.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fwdproxy import logwriter
from fwdproxy.accesslog import FORMATS, Exchange, format_line
from fwdproxy.logwriter import AccessLog

# -- the writer: buffering ---------------------------------------------------------------


def record(number: int = 0) -> Exchange:
    return Exchange(client="10.0.0.1", started=time.time(), method="GET",
                    url=f"http://origin.example/{number}", status=200, bytes_down=100)


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "access.log"


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_write_buffers_until_flush(log_path: Path, fmt: str) -> None:
    log = AccessLog(log_path, fmt)
    log.write(record(1))
    log.write(record(2))
    assert log_path.read_bytes() == b""  # write() made no system call
    log.flush()
    lines = log_path.read_text().splitlines()
    assert len(lines) == 2
    assert "http://origin.example/1" in lines[0] and "http://origin.example/2" in lines[1]
    log.close()


def test_flush_happens_on_size(log_path: Path) -> None:
    log = AccessLog(log_path)
    buffered = written = 0
    while buffered < logwriter.FLUSH_BYTES:
        assert log_path.stat().st_size == 0  # below the threshold, write() only buffers
        rec = record(written)
        log.write(rec)
        buffered += len(format_line(rec, rec.started)) + 1
        written += 1
    lines = log_path.read_text().splitlines()  # crossing it flushed everything, in order
    assert [line.split()[3] for line in lines] == [f"http://origin.example/{n}" for n in range(written)]
    log.write(record(written))
    assert len(log_path.read_text().splitlines()) == written  # buffering again
    log.close()
    assert len(log_path.read_text().splitlines()) == written + 1


def test_appends_to_an_existing_file(log_path: Path) -> None:
    log_path.write_text("old line\n")
    log = AccessLog(log_path)
    log.write(record())
    log.close()
    assert log_path.read_text().splitlines()[0] == "old line"
    assert len(log_path.read_text().splitlines()) == 2


def test_close_flushes_and_later_writes_are_ignored(log_path: Path) -> None:
    log = AccessLog(log_path)
    log.write(record())
    log.close()
    log.write(record())
    log.flush()
    log.reopen()
    log.close()
    assert len(log_path.read_text().splitlines()) == 1


def test_unopenable_path_fails_at_startup(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        AccessLog(tmp_path / "missing-dir" / "access.log")


# -- the writer: reopen (logrotate) ------------------------------------------------------


def test_reopen_after_rename_starts_a_new_file(log_path: Path) -> None:
    log = AccessLog(log_path, "squid")
    log.write(record(1))
    log.flush()
    rotated = log_path.with_name("access.log.1")
    log_path.rename(rotated)  # logrotate's first step
    log.write(record(2))  # logged before the signal: still the old file's
    log.reopen()  # SIGUSR1
    log.write(record(3))
    log.flush()
    assert [line.split()[6] for line in rotated.read_text().splitlines()] == [
        "http://origin.example/1", "http://origin.example/2"]
    assert [line.split()[6] for line in log_path.read_text().splitlines()] == ["http://origin.example/3"]
    log.close()


def test_reopen_that_fails_holds_lines_and_retries(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    path = folder / "access.log"
    log = AccessLog(path)
    folder.rename(tmp_path / "logs.old")
    log.reopen()  # the folder is gone: no exception
    log.write(record(1))
    log.flush()
    assert "cannot write" in capfd.readouterr().err
    folder.mkdir()
    log.write(record(2))
    log.flush()  # opens the path again
    assert [line.split()[3] for line in path.read_text().splitlines()] == [
        "http://origin.example/1", "http://origin.example/2"]
    log.close()


def test_reopen_on_stderr_only_flushes(capfd: pytest.CaptureFixture[str]) -> None:
    log = AccessLog(None)
    log.write(record(1))
    assert capfd.readouterr().err == ""
    log.reopen()
    assert "http://origin.example/1" in capfd.readouterr().err
    log.close()


# -- the writer: outputs that cannot take lines ------------------------------------------


def returns_promptly(action: Callable[[], object], limit: float = 5.0) -> float:
    """Run `action` in a thread; fail if it is still running after `limit` seconds (it is
    then stuck in a write, which the test's cleanup unblocks). Returns the seconds taken."""
    errors: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            action()
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    start = time.monotonic()
    threading.Thread(target=run, daemon=True).start()
    assert done.wait(limit), f"blocked for more than {limit} s"
    if errors:
        raise errors[0]
    return time.monotonic() - start


@contextlib.contextmanager
def stderr_as(fd: int) -> Iterator[None]:
    """Make `fd` the process's stderr (fd 2) for the block."""
    saved = os.dup(2)
    try:
        os.dup2(fd, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@pytest.fixture
def full_pipe() -> Iterator[tuple[int, int]]:
    """A pipe (read end, write end) whose buffer is full; the write end is blocking."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(write_end, b"x" * 4096)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(write_end, b"x")  # the last bytes a partly filled page still takes
    os.set_blocking(write_end, True)  # as a real stderr pipe is
    yield read_end, write_end
    os.close(write_end)
    os.close(read_end)


def drain(fd: int) -> bytes:
    os.set_blocking(fd, False)
    chunks = []
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_full_stderr_pipe_does_not_block(full_pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logwriter, "MAX_BUFFER_LINES", 50)
    read_end, write_end = full_pipe
    with stderr_as(write_end):
        log = AccessLog(None, "squid")
        assert os.get_blocking(2)  # stderr itself is never made non-blocking

        def write_and_flush() -> None:
            for number in range(57):
                log.write(record(number))
            log.flush()

        assert returns_promptly(write_and_flush) < 2
        assert log.dropped == 7  # 50 held for later, 7 dropped
        assert os.get_blocking(2)
    assert drain(read_end).strip(b"x") == b""  # nothing of ours got in
    log.flush()  # the reader caught up: the held lines go out, then the report
    out = drain(read_end).decode().splitlines()
    assert [line.split()[6] for line in out[:-1]] == [f"http://origin.example/{n}" for n in range(50)]
    assert out[-1] == "fwdproxy: access log stderr: 7 lines were dropped while the log could not take them"
    assert log.dropped == 0
    log.close()


def test_pipe_that_fills_midway_keeps_whole_lines(full_pipe: tuple[int, int]) -> None:
    read_end, write_end = full_pipe
    with stderr_as(write_end):
        log = AccessLog(None)
    drain(read_end)  # room for 64 KiB: less than we are about to log
    numbers = range(2000)
    for number in numbers:
        log.write(record(number))
    returns_promptly(log.flush)
    received = drain(read_end)
    assert 0 < len(received) < len(b"".join(
        (format_line(record(n), 0) + "\n").encode() for n in numbers))
    for _ in range(100):  # keep reading and flushing until everything is through
        log.flush()
        received += drain(read_end)
    lines = received.decode().splitlines()
    assert [line.split()[3] for line in lines] == [f"http://origin.example/{n}" for n in numbers]
    assert log.dropped == 0
    log.close()


def test_closed_stderr_pipe_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logwriter, "MAX_BUFFER_LINES", 20)
    read_end, write_end = os.pipe()
    with stderr_as(write_end):
        log = AccessLog(None)
    os.close(write_end)
    os.close(read_end)  # nobody reads: writes fail with EPIPE
    for number in range(25):
        log.write(record(number))
    returns_promptly(log.flush)
    assert log.dropped == 5
    log.close()


def test_closed_stderr_drops_lines_quietly() -> None:
    saved = os.dup(2)
    try:
        os.close(2)
        log = AccessLog(None)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    log.write(record())
    log.flush()
    assert log.dropped == 1
    log.close()


def test_full_disk_never_raises(capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    monkeypatch.setattr(logwriter, "MAX_BUFFER_LINES", 10)
    log = AccessLog(Path("/dev/full"))  # every write fails with ENOSPC
    for number in range(15):
        log.write(record(number))
    log.flush()
    log.flush()
    assert log.dropped == 5
    err = capfd.readouterr().err
    assert err.count("fwdproxy: access log /dev/full: cannot write") == 1  # once, not per flush
    assert "No space left on device" in err
    log.close()
    assert "15 lines were dropped" in capfd.readouterr().err


def test_fifo_without_a_reader_fails_at_startup(tmp_path: Path) -> None:
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError):
        returns_promptly(lambda: AccessLog(fifo))  # refused at once, not waiting for a reader


def test_fifo_with_a_stalled_reader_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        log = AccessLog(fifo)
        for number in range(3000):  # far more than the FIFO holds
            log.write(record(number))
        returns_promptly(log.flush)
        received = drain(reader)
        for _ in range(100):
            log.flush()
            received += drain(reader)
        assert len(received.decode().splitlines()) == 3000
        log.close()
    finally:
        os.close(reader)
