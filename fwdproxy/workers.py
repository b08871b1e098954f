"""--workers: N worker processes accepting on the same addresses, and their supervisor.

Strategy: the supervisor is a plain synchronous loop (no trio, no threads, so forking is
safe). It binds every listening address once, with SO_REUSEPORT, without listening:
that resolves port 0 and a port in use before anything starts, and keeps the port ours
while a worker restarts, yet it never receives a connection. It reads the rules once,
then forks the workers. Each worker binds the same addresses with SO_REUSEPORT and
listens, so the kernel spreads new connections over the workers' own accept queues; it
runs the ordinary single-process server (`server.serve`) on them, starting from the rules
it inherited.

The supervisor then waits for signals and children:
- SIGHUP and SIGUSR1 are forwarded to every worker (each reloads its rules, or reopens
  its access log, itself);
- SIGINT or SIGTERM are forwarded as SIGTERM (a graceful stop; a second one stops at
  once, as for a single process); the supervisor exits once every worker has;
- a worker that exits otherwise is restarted, at once the first time and with a growing
  delay (up to `MAX_RESTART_DELAY`) while it keeps dying young. During start-up, a worker
  that dies stops everything: that is a configuration problem, not a crash.
Workers ignore SIGINT, so that Ctrl-C in a terminal (sent to the whole process group)
reaches them once, through the supervisor. Each holds the read end of a "lifeline" pipe
whose write end only the supervisor keeps: if the supervisor dies, even by SIGKILL, the
pipe reads end-of-file and the workers shut down rather than linger as orphans.

Figures for the status page are shared through files (`sharedstats`).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from fwdproxy import __version__
from fwdproxy.config import Config, Listen, LoadedRules, load_rules
from fwdproxy.errors import ConfigError
from fwdproxy.policy.rulefiles import release_freed_memory
from fwdproxy.server import Bound, Listeners, report_rules
from fwdproxy.sharedstats import SharedStats

# A worker that dies within this many seconds of starting counts as dying young.
YOUNG = 10.0
FIRST_RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 10.0
# The status a worker exits with when it fails in a way it could not report otherwise.
WORKER_FAILED = 70
BACKLOG = 4096  # the kernel caps it at net.core.somaxconn

_FORWARDED = (signal.SIGHUP, signal.SIGUSR1)
_STOPPING = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True, slots=True)
class Reservation:
    """One address the workers listen on, as bound by the supervisor."""

    family: int
    sockaddr: tuple[Any, ...]
    proxy_protocol: bool

    def __str__(self) -> str:  # as a single process says it: *:8080 for a wildcard
        address = ipaddress.ip_address(str(self.sockaddr[0]).split("%", 1)[0])
        return str(Bound(None if address.is_unspecified else address, int(self.sockaddr[1])))


def _shared_socket(family: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    except BaseException:
        sock.close()
        raise
    return sock


def _probe(family: int, sockaddr: tuple[Any, ...]) -> None:
    """Fail with EADDRINUSE if anything listens on `sockaddr`, even with SO_REUSEPORT:
    another fwdproxy of the same user would otherwise share the port with us silently.
    (A port chosen by the kernel, port 0, is free by definition.)"""
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no user
        if family == socket.AF_INET6:
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        probe.bind(sockaddr)


def reserve(listen: tuple[Listen, ...]) -> tuple[list[socket.socket], list[Reservation]]:
    """Bind (without listening) every address of `listen`, as the workers will.

    Returns:
        The bound sockets, to keep open while workers run, and what each is bound to.
    Raises:
        ConfigError: an address cannot be bound (in use, not ours) or this system has no
            SO_REUSEPORT.
    """
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ConfigError("workers: this system has no SO_REUSEPORT; run without --workers")
    sockets: list[socket.socket] = []
    reservations: list[Reservation] = []
    try:
        for item in listen:
            try:
                infos = socket.getaddrinfo(item.host, item.port, type=socket.SOCK_STREAM,
                                           flags=socket.AI_PASSIVE)
                seen: set[tuple[Any, ...]] = set()
                for family, _, _, _, sockaddr in infos:
                    if sockaddr in seen:
                        continue
                    seen.add(sockaddr)
                    if sockaddr[1]:
                        _probe(family, sockaddr)
                    sock = _shared_socket(family)
                    sockets.append(sock)
                    sock.bind(sockaddr)
                    reservations.append(Reservation(family, sock.getsockname(), item.proxy_protocol))
            except OSError as exc:
                reason = "address already in use" if exc.errno == errno.EADDRINUSE else (
                    exc.strerror or str(exc))
                raise ConfigError(f"cannot listen on {item}: {reason}") from None
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets, reservations


async def open_reserved(reservations: list[Reservation]) -> Listeners:
    """A worker's own listening sockets on the supervisor's reserved addresses."""
    listeners = Listeners()
    sock: trio.socket.SocketType | None = None
    try:
        for reservation in reservations:
            sock = trio.socket.socket(reservation.family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if reservation.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            await sock.bind(reservation.sockaddr)
            sock.listen(BACKLOG)
            listeners.append(trio.SocketListener(sock))
            listeners.proxy_protocol.append(reservation.proxy_protocol)
            sock = None
    except BaseException:
        if sock is not None:
            sock.close()
        for listener in listeners:
            await listener.aclose()
        raise
    return listeners


@dataclass(frozen=True, slots=True)
class WorkerSetup:
    """What a forked worker is handed: its number, addresses, rules and pipes."""

    index: int
    reservations: list[Reservation]
    loaded: LoadedRules
    shared: SharedStats
    lifeline: int  # read end; end-of-file means the supervisor is gone
    ready: int  # write end; the worker writes its number once it listens
    restarted: bool  # replaces a worker that died: `loaded` may be older than the files

    def report_ready(self) -> None:
        os.write(self.ready, f"{self.index}\n".encode())


@dataclass
class _Worker:
    index: int
    pid: int = 0
    started: float = 0.0
    ready: bool = False
    failures: int = 0  # deaths in a row, each soon after starting
    spawned: int = 0  # times started so far
    restart_at: float | None = None


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            return f"was killed by {signal.Signals(number).name}"
        except ValueError:
            return f"was killed by signal {number}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def _say(message: str) -> None:
    print(f"fwdproxy: {message}", file=sys.stderr, flush=True)


@dataclass
class Supervisor:
    """Starts, watches and stops the workers; see the module comment."""

    config: Config
    run_worker: Callable[[WorkerSetup], int]
    workers: list[_Worker] = field(default_factory=list)
    stopping: int = 0  # stop signals received so far
    announced: bool = False

    def run(self) -> int:
        """Supervise until the workers have stopped. Returns the exit status.

        Raises:
            ConfigError: an address cannot be bound, or the rules cannot be read.
        """
        cfg = self.config
        held, self.reservations = reserve(cfg.listen)
        self.started = time.time()
        folder = Path(tempfile.mkdtemp(prefix="fwdproxy-workers-"))
        pipes: list[int] = []
        try:
            self.loaded = load_rules(cfg.rules, cfg.auth)
            report_rules(self.loaded)
            self.folder = folder
            self.lifeline_read, self.lifeline_write = os.pipe()
            self.ready_read, self.ready_write = os.pipe()
            self.wake_read, self.wake_write = os.pipe()
            pipes = [self.lifeline_read, self.lifeline_write, self.ready_read, self.ready_write,
                     self.wake_read, self.wake_write]
            for fd in (self.ready_read, self.wake_read, self.wake_write):
                os.set_blocking(fd, False)
            # Signals only wake the loop below (their numbers arrive on the wake-up pipe).
            for signum in (*_STOPPING, *_FORWARDED, signal.SIGCHLD):
                signal.signal(signum, lambda *_: None)
            signal.set_wakeup_fd(self.wake_write, warn_on_full_buffer=False)
            self.workers = [_Worker(index) for index in range(cfg.workers)]
            for worker in self.workers:
                self._spawn(worker)
            return self._loop()
        finally:
            with contextlib.suppress(ValueError):
                signal.set_wakeup_fd(-1)
            # The no-op handlers stay: a signal during the last clean-up (a second
            # SIGTERM, say) must not kill the supervisor before it exits 0.
            self._stop_all(signal.SIGKILL)  # only if we are leaving by an exception
            for fd in pipes:
                os.close(fd)
            for sock in held:
                sock.close()
            shutil.rmtree(folder, ignore_errors=True)

    def _loop(self) -> int:
        while True:
            now = time.monotonic()
            due = [w.restart_at for w in self.workers if w.restart_at is not None]
            timeout = max(0.0, min(due) - now) if due else None
            select.select([self.wake_read, self.ready_read], [], [], timeout)
            for signum in self._drain(self.wake_read):
                self._on_signal(signum)
            for line in self._drain(self.ready_read, text=True):
                self._on_ready(int(line))
            status = self._reap()
            if status is not None:
                return status
            if self.stopping and not any(w.pid for w in self.workers):
                _say("all workers have stopped")
                return 0
            now = time.monotonic()
            for worker in self.workers:
                if worker.restart_at is not None and worker.restart_at <= now and not self.stopping:
                    self._spawn(worker)

    @staticmethod
    def _drain(fd: int, text: bool = False) -> list[int]:
        data = b""
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while chunk := os.read(fd, 4096):
                data += chunk
        if text:
            return [int(line) for line in data.split()]
        return list(data)

    def _on_signal(self, signum: int) -> None:
        if signum in _FORWARDED:
            if signum == signal.SIGHUP:
                _say(f"SIGHUP: reloading the rules in {len(self.workers)} workers")
            self._send_all(signal.Signals(signum))
        elif signum in _STOPPING:
            self.stopping += 1
            name = signal.Signals(signum).name
            if self.stopping == 1:
                _say(f"{name}: stopping {len(self.workers)} workers, which finish requests in "
                     f"flight (up to {self.config.timeouts.shutdown_grace:g} s; signal again "
                     "to stop now)")
            else:
                _say(f"{name} again: stopping the workers now")
            for worker in self.workers:
                worker.restart_at = None
            self._send_all(signal.SIGTERM)

    def _on_ready(self, index: int) -> None:
        if not 0 <= index < len(self.workers):
            return
        worker = self.workers[index]
        worker.ready = True
        _say(f"worker {index} (pid {worker.pid}) ready")
        if not self.announced and all(w.ready for w in self.workers):
            self.announced = True
            where = ", ".join(str(r) for r in self.reservations)
            print(f"fwdproxy {__version__} listening on {where} ({len(self.workers)} workers)",
                  file=sys.stderr, flush=True)
            # The workers share these pages until one of them reloads; a restarted
            # worker is forked from the rules read at start and then checks the files.
            release_freed_memory()

    def _reap(self) -> int | None:
        """Collect exited workers; schedule restarts. Returns an exit status when the
        supervisor must stop (a worker died during start-up)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return None
            if pid == 0:
                return None
            worker = next((w for w in self.workers if w.pid == pid), None)
            if worker is None:
                continue
            worker.pid, worker.ready = 0, False
            if self.stopping:
                continue
            how = _describe(status)
            if not self.announced:
                _say(f"worker {worker.index} {how} during start-up; stopping")
                self.stopping = 1
                self._send_all(signal.SIGTERM)
                self._wait_all()
                return 1
            young = time.monotonic() - worker.started < YOUNG
            worker.failures = worker.failures + 1 if young else 0
            delay = 0.0 if worker.failures <= 1 else min(
                MAX_RESTART_DELAY, FIRST_RESTART_DELAY * 2 ** (worker.failures - 2))
            worker.restart_at = time.monotonic() + delay
            _say(f"worker {worker.index} (pid {pid}) {how}; restarting it"
                 + (f" in {delay:g} s" if delay else ""))

    def _spawn(self, worker: _Worker) -> None:
        worker.restart_at = None
        worker.started = time.monotonic()
        setup = WorkerSetup(worker.index, self.reservations, self.loaded,
                            SharedStats(self.folder, worker.index, len(self.workers), self.started),
                            self.lifeline_read, self.ready_write, restarted=worker.spawned > 0)
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            os._exit(self._become_worker(setup))
        worker.pid = pid
        worker.spawned += 1

    def _become_worker(self, setup: WorkerSetup) -> int:
        code = WORKER_FAILED
        try:
            signal.set_wakeup_fd(-1)
            for fd in (self.lifeline_write, self.ready_read, self.wake_read, self.wake_write):
                os.close(fd)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            # Ignored until the worker's event loop takes them over: the rules are
            # checked at start anyway, and the log is opened after this.
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)
            code = self.run_worker(setup)
        except BaseException:
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
        return code

    def _send_all(self, signum: signal.Signals) -> None:
        for worker in self.workers:
            if worker.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signum)

    def _wait_all(self) -> None:
        for worker in self.workers:
            if worker.pid:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(worker.pid, 0)
                worker.pid = 0

    def _stop_all(self, signum: signal.Signals) -> None:
        if any(w.pid for w in self.workers):
            self._send_all(signum)
            self._wait_all()


def supervise(config: Config, run_worker: Callable[[WorkerSetup], int]) -> int:
    """Run `config.workers` workers (each calls `run_worker` in a forked process and exits
    with its result) until a stop signal. Returns the exit status.

    Raises:
        ConfigError: an address cannot be bound, or the rules cannot be read.
    """
    return Supervisor(config, run_worker).run()
