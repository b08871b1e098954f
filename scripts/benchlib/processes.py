"""Processes started by the benchmark: finding commands, free ports, CPU pinning (taskset),
resident memory read from /proc, and ending every process (and what it forked) by pid."""

from __future__ import annotations

import collections
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench_rules import LISTENING, rss_kib

ROOT = Path(__file__).resolve().parent.parent.parent  # the checkout (this is scripts/benchlib/)
START_TIMEOUT = 90.0  # a proxy's start-up (the 1M list included)
READY_TIMEOUT = 20.0  # a port of the origin or a peer accepting connections
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])


def log(message: str) -> None:
    """Progress, on standard error (the report goes to standard output)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def which(name: str) -> str | None:
    """A command's path, looking in the sbin folders too (nginx, squid, privoxy live there)."""
    return shutil.which(name, path=SBIN_PATH)


def free_port() -> int:
    """A port free on 127.0.0.1 right now (for programs that cannot be told port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_env() -> dict[str, str]:
    """The environment for children, without proxy variables (curl would obey them)."""
    return {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}


# Every core this script may use, read before it pins itself to the load core (for W4):
# a child started "unpinned" would otherwise inherit that one core.
ALL_CPUS = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))


def pinned(cpu: str | None, command: list[str]) -> list[str]:
    """`command` under `taskset -c cpu` (taskset execs it: the pid stays the command's);
    None: on all the cores, whatever core this script runs on."""
    if shutil.which("taskset") is None:
        return command
    return ["taskset", "-c", cpu if cpu is not None else ALL_CPUS, *command]


# --- processes -------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name: [state, ppid, ...], or None when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (children, their children ...), from /proc."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children[int(fields[1])].append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def tree_rss_kib(pid: int) -> int:
    """Resident KiB of a process and all its descendants (a supervisor and its workers)."""
    total = 0
    for member in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):
            total += rss_kib(member)
    return total


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a process has used so far, from /proc (clock ticks); None when gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def core_times(cpu: str | None) -> tuple[int, int] | None:
    """(all, idle + iowait) jiffies of one core from /proc/stat (None: no such core)."""
    if cpu is None:
        return None
    with contextlib.suppress(OSError):
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith(f"cpu{cpu} "):
                values = [int(v) for v in line.split()[1:9]]
                return sum(values), values[3] + values[4]
    return None


def core_busy(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Share (0..1) of a core's time spent busy between two `core_times`."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    return round(1 - (after[1] - before[1]) / (after[0] - before[0]), 3)


def _identity(pid: int) -> str | None:
    """The start time of `pid` (to tell it from a later process given the same pid)."""
    fields = _stat_fields(pid)
    return None if fields is None or fields[0] == "Z" else fields[19]


class Proc:
    """A process started here; `stop()` ends it and whatever it forked, by pid."""

    def __init__(self, name: str, command: list[str], logfile: Path, *, cwd: Path | None = None,
                 watch_stderr: bool = False) -> None:
        self.name = name
        self.command = command
        self.logfile = logfile
        self.lines: collections.deque[str] = collections.deque(maxlen=200)
        self.listening = threading.Event()
        self.listen_match: re.Match[str] | None = None
        self.ready_after: float | None = None
        self.port: int | None = None
        self._known: dict[int, str] = {}
        self._log = logfile.open("a")
        self.started = time.perf_counter()
        self.popen = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.PIPE if watch_stderr else self._log,
            cwd=cwd, env=clean_env(), text=True)
        self.pid = self.popen.pid
        if watch_stderr:
            threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        """Copy stderr to the log file, and note when the "listening on" line came."""
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self._log.write(line)
            self._log.flush()
            self.lines.append(line.rstrip("\n"))
            if not self.listening.is_set():
                match = LISTENING.search(line)
                if match:
                    self.ready_after = time.perf_counter() - self.started
                    self.listen_match = match
                    self.listening.set()

    def wait_listening(self, timeout: float) -> bool:
        """Wait for the "listening on" line; False when the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.listening.wait(0.05):
                self.remember_children()
                return True
            if self.popen.poll() is not None:
                time.sleep(0.2)  # let the reader thread copy the last lines
                return self.listening.is_set()
        return False

    def remember_children(self) -> None:
        for pid in descendants(self.pid):
            identity = _identity(pid)
            if identity is not None:
                self._known[pid] = identity

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 15) -> str:
        """The last lines it printed (for failure reports)."""
        text = list(self.lines)
        if not text:
            with contextlib.suppress(OSError):
                text = self.logfile.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, wait, SIGKILL; then the same for descendants left behind."""
        if self.alive():
            self.remember_children()
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} (pid {self.pid}) did not stop on SIGTERM: SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    self.popen.kill()
                self.popen.wait(timeout=5)
        left = [pid for pid, ident in self._known.items() if _identity(pid) == ident]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and left:
                left = [pid for pid in left if _identity(pid) == self._known[pid]]
                time.sleep(0.05)
            if not left:
                break
        self._log.close()


class Processes:
    """Every process started by the benchmark, to end them all in a `finally`."""

    def __init__(self) -> None:
        self.all: list[Proc] = []

    def start(self, *args: Any, **kwargs: Any) -> Proc:
        proc = Proc(*args, **kwargs)
        self.all.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.all:
            self.all.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(self.all):
            try:
                proc.stop()
            except Exception as exc:  # keep ending the others
                log(f"stopping {proc.name}: {exc}")
        self.all.clear()


def wait_ports(proc: Proc, ports: list[int], timeout: float = READY_TIMEOUT) -> bool:
    """Wait until every port accepts a TCP connection; False if `proc` exits first."""
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            if not proc.alive():
                return False
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
    proc.remember_children()
    return True


