"""Benchmark of fwdproxy against a direct connection and, with --peers, other proxies.

Everything runs on loopback (127.0.0.1), and every process started here is ended here,
by its pid. The set-up:
  - an origin: nginx when installed (one worker, access log off), else a small built-in
    Python asyncio server; it listens on three ports: A (plain: /1k, /big, /who ->
    "origin-a"), B (plain: /who -> "origin-b") and T (TLS, for tunnels: /1k, /big), with
    a certificate for 127.0.0.1 made with trustme (or `openssl req` when trustme is
    missing);
  - fwdproxy from this checkout (`python -m fwdproxy --config ...`, empty rules folder,
    access log to a file, loopback destinations allowed, CONNECT to any port);
  - with --peers: tinyproxy, squid (no cache) and privoxy when installed, each with a
    minimal equivalent configuration (127.0.0.1 clients, CONNECT to the origin ports, no
    caching, one access-log line per request to a file); and the Python proxies found on
    PATH (mitmproxy's mitmdump, proxy.py's `proxy`, pproxy; e.g. `pipx install
    mitmproxy proxy.py pproxy`), as plain forward proxies with their defaults (mitmdump
    passes CONNECT tunnels through untouched, --ignore-hosts '.*').
On a machine with two or more cores the proxies run on the first core, and the origin,
wrk, curl and this script on the last one (taskset / sched_setaffinity).

Before any timing, each proxy passes a correctness guard: on ONE kept-alive connection,
`GET http://127.0.0.1:A/who` then `GET http://127.0.0.1:B/who`; the second answer must
be "origin-b" (a proxy that relays later requests to the first origin is flagged).

Workloads (figures are medians of interleaved rounds: round 1 runs every target in turn,
then round 2 ..., so that drift of the machine hits all targets alike):
  W1 small GET (1 KiB), keep-alive, 50 connections, wrk --latency, absolute-form request
     lines through proxies (a Lua script sets wrk.path): requests/s, p50, p99;
  W2 a new connection per request (wrk -H "Connection: close", 20 connections): requests/s.
     A Lua response hook counts the responses that carry "Connection: close"; wrk
     reconnects after each of those, so closes == responses shows it really reconnected;
  W3 one large download through a CONNECT tunnel with curl, over TLS and plain HTTP
     inside the tunnel: MB/s (10^6 bytes/s, curl's speed_download);
  W4 many idle CONNECT tunnels to the plain origin: all must open; resident memory of the
     proxy (its process and its children) before and after, in KiB per tunnel; a sample
     of tunnels must still carry a GET at the end. Runs first, on fresh proxies;
  W5 a synthetic 1,000,000-domain hosts list (bench_rules.synthetic_domains, fixed seed):
     start-up time, resident memory against the bare proxy, W1 with the list against W1
     without it (interleaved), asking for the origin by a host name (W5_HOST, mapped to
     127.0.0.1 by the proxies' `hosts:`) so that every request is looked up in the list
     (an address literal is matched against address rules only);
  W6 memory flat: one long W1 run while the proxy's resident memory is sampled.
With --workers 1,2: W1 through fwdproxy --workers N for each N (the proxy pinned to the
cores left after the load core when there are more cores than N, else on all cores).
The report is a markdown table (ratios to the direct connection), PASS/FAIL lines for the
issue's targets, and JSON with the machine, the versions and every raw round figure.
Defaults: W1 (and W5's comparison, the sweep) 5 rounds of 10 s, W2 and W3 3 rounds (W2
10 s), 256 MiB, 1,000 tunnels, 1,000,000 domains, 60 s for W6; every wrk target gets an
unrecorded 1 s warm-up first. A full run with three peers takes about 12 minutes, and
--quick about 3. The share of CPU that other work used before and after the run is
measured and reported: figures taken on a busy machine are noted as such.
"""

# ruff: noqa: RUF001  (the multiplication sign of ratios is meant)
from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_rules import LISTENING, rss_kib, synthetic_domains, write_hosts_list
from bench_rules import LOOKED_UP_HOST as W5_HOST  # the list is consulted for it

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W6")
START_TIMEOUT = 90.0  # a proxy's start-up (the 1M list included)
READY_TIMEOUT = 20.0  # a port of the origin or a peer accepting connections
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
GUARD_FLAG = "relays later requests to the first origin"
ISSUE_SQUID_W1, ISSUE_PRIVOXY_W1, ISSUE_SQUID_W2 = 0.31, 0.49, 0.41


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


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


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


# --- a little HTTP/1.1 client ----------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    closes: bool  # the server said (or showed) that it closes the connection after this


class HttpConn:
    """A blocking client connection with a read buffer: just enough HTTP for the checks."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _more(self) -> bool:
        chunk = self.sock.recv(1 << 16)
        self.buf += chunk
        return bool(chunk)

    def _until(self, marker: bytes, limit: int = 1 << 16) -> bytes:
        while marker not in self.buf:
            if len(self.buf) > limit or not self._more():
                raise ConnectionError(f"connection closed before {marker!r}")
        line, _, self.buf = self.buf.partition(marker)
        return line

    def _exact(self, size: int) -> bytes:
        while len(self.buf) < size:
            if not self._more():
                raise ConnectionError("connection closed in the middle of a body")
        data, self.buf = self.buf[:size], self.buf[size:]
        return data

    def response(self, *, body: bool = True) -> Response:
        """Read one response; `body=False` for the answer to CONNECT (head only)."""
        status_line, *lines = self._until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        version, status = parts[0], int(parts[1])
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        closes = "close" in connection or (version == "HTTP/1.0" and "keep-alive" not in connection)
        if not body or status < 200 or status in (204, 304):
            data = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            pieces = []
            while size := int(self._until(b"\r\n").split(b";")[0], 16):
                pieces.append(self._exact(size))
                self._until(b"\r\n")
            while self._until(b"\r\n"):  # trailers
                pass
            data = b"".join(pieces)
        elif "content-length" in headers:
            data = self._exact(int(headers["content-length"]))
        else:
            while self._more():
                pass
            data, self.buf, closes = self.buf, b"", True
        return Response(status, headers, data, closes)


def get_request(port: int, path: str, *, absolute: bool) -> bytes:
    target = f"http://127.0.0.1:{port}{path}" if absolute else path
    return f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: fwdproxy-bench\r\n\r\n".encode()


def open_tunnel(proxy_port: int, port: int) -> HttpConn:
    """A CONNECT tunnel to 127.0.0.1:port; raises unless the proxy answers 200."""
    conn = HttpConn(proxy_port)
    try:
        conn.send(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        answer = conn.response(body=False)
        if answer.status != 200:
            raise ConnectionError(f"CONNECT answered {answer.status}")
    except BaseException:
        conn.close()
        raise
    return conn


def correctness_guard(proxy_port: int, origin: Origin) -> dict[str, Any]:
    """Two GETs to two origins on one kept-alive connection: the second must reach B."""
    try:
        conn = HttpConn(proxy_port)
    except OSError as exc:
        return {"ok": False, "verdict": f"cannot connect: {exc}"}
    try:
        conn.send(get_request(origin.port_a, "/who", absolute=True))
        first = conn.response()
        if first.status != 200 or first.body != b"origin-a":
            return {"ok": False, "verdict": f"first request: {first.status} {first.body[:60]!r}"}
        if first.closes:
            return {"ok": True, "keepalive": False,
                    "verdict": "ok (closes the client connection after each request)"}
        try:
            conn.send(get_request(origin.port_b, "/who", absolute=True))
            second = conn.response()
        except OSError as exc:
            return {"ok": True, "keepalive": False,
                    "verdict": f"ok (closed the kept-alive connection without saying so: {exc})"}
        if second.status == 200 and second.body == b"origin-b":
            return {"ok": True, "keepalive": True, "verdict": "ok"}
        if second.body == b"origin-a":
            return {"ok": False, "keepalive": True, "verdict": GUARD_FLAG}
        return {"ok": False, "keepalive": True,
                "verdict": f"second request: {second.status} {second.body[:60]!r}"}
    except (OSError, ValueError, IndexError) as exc:
        return {"ok": False, "verdict": f"error: {exc}"}
    finally:
        conn.close()


# --- origin ----------------------------------------------------------------------------


@dataclass
class Origin:
    kind: str  # "nginx" or "built-in"
    description: str
    port_a: int
    port_b: int
    port_tls: int
    ca: Path
    big_bytes: int


def make_certificate(folder: Path) -> tuple[Path, Path, Path, str]:
    """CA, certificate chain and key for 127.0.0.1 (and localhost): trustme, else openssl."""
    ca_path, chain_path, key_path = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    try:
        import trustme  # in the test extras

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        ca.cert_pem.write_to_path(str(ca_path))
        cert.private_key_pem.write_to_path(str(key_path))
        chain_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        return ca_path, chain_path, key_path, "trustme"
    except ImportError:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", str(key_path), "-out", str(chain_path), "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
            check=True, capture_output=True, timeout=60)
        shutil.copy(chain_path, ca_path)
        return ca_path, chain_path, key_path, "openssl req (trustme not installed)"


NGINX_CONF = """\
daemon off; master_process on; worker_processes 1; worker_rlimit_nofile 20000;
pid {dir}/nginx.pid; error_log {dir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    default_type application/octet-stream;
    sendfile on; tcp_nopush on; tcp_nodelay on;
    keepalive_timeout 300s; keepalive_requests 1000000; client_header_timeout 300s;
    client_body_temp_path {dir}/tmp-body; proxy_temp_path {dir}/tmp-proxy;
    fastcgi_temp_path {dir}/tmp-fastcgi; uwsgi_temp_path {dir}/tmp-uwsgi; scgi_temp_path {dir}/tmp-scgi;
    server {{ listen 127.0.0.1:{a}; root {www};
             location = /who {{ default_type text/plain; return 200 "origin-a"; }} }}
    server {{ listen 127.0.0.1:{b}; root {www};
             location = /who {{ default_type text/plain; return 200 "origin-b"; }} }}
    server {{ listen 127.0.0.1:{t} ssl; root {www};
             ssl_certificate {cert}; ssl_certificate_key {key};
             location = /who {{ default_type text/plain; return 200 "origin-tls"; }} }}
}}
"""


def start_origin(procs: Processes, work: Path, cpu: str | None, big_bytes: int,
                 force_builtin: bool) -> Origin:
    """nginx when installed (else the built-in server) on ports A, B and T (TLS)."""
    folder = work / "origin"
    www = folder / "www"
    www.mkdir(parents=True)
    (www / "1k").write_bytes(b"x" * 1024)
    with (www / "big").open("wb") as big:  # sparse: served from zero pages, no disk reads
        big.truncate(big_bytes)
    for path in (folder, www):
        path.chmod(0o755)
    for path in www.iterdir():
        path.chmod(0o644)  # nginx workers run as another user
    ca, chain, key, cert_tool = make_certificate(folder)
    ports = [free_port() for _ in range(3)]
    nginx = None if force_builtin else which("nginx")
    if nginx is not None:
        (folder / "nginx.conf").write_text(NGINX_CONF.format(
            dir=folder, www=www, a=ports[0], b=ports[1], t=ports[2], cert=chain, key=key))
        command = [nginx, "-p", str(folder), "-c", str(folder / "nginx.conf"),
                   "-e", str(folder / "error.log")]
        proc = procs.start("nginx", pinned(cpu, command), folder / "stderr.log")
        version = tool_version("nginx") or "?"
        description = f"nginx {version} (1 worker, access log off)"
        kind = "nginx"
    else:
        spec = json.dumps({"a": ports[0], "b": ports[1], "t": ports[2], "cert": str(chain),
                           "key": str(key), "big": big_bytes})
        command = [sys.executable, str(Path(__file__).resolve()), "_origin", spec]
        proc = procs.start("built-in origin", pinned(cpu, command), folder / "stderr.log")
        reason = "forced by --builtin-origin" if force_builtin else "nginx not installed"
        description = f"built-in Python asyncio server ({reason})"
        kind = "built-in"
    if not wait_ports(proc, ports):
        raise SystemExit(f"the origin did not start:\n{proc.tail()}")
    origin = Origin(kind, f"{description}; TLS certificate by {cert_tool}", ports[0], ports[1], ports[2],
                    ca, big_bytes)
    for port, body in ((origin.port_a, b"origin-a"), (origin.port_b, b"origin-b")):
        conn = HttpConn(port)
        try:
            conn.send(get_request(port, "/who", absolute=False))
            answer = conn.response()
        finally:
            conn.close()
        if answer.body != body:
            raise SystemExit(f"origin on port {port} answered {answer.status} {answer.body[:60]!r}")
    return origin


async def _origin_main(spec: dict[str, Any]) -> None:
    """The built-in origin: HTTP/1.1 with keep-alive on ports A and B, and TLS on T."""
    big = int(spec["big"])
    chunk = b"\0" * (1 << 20)

    def handler(name: bytes) -> Any:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                    request_line, *lines = head.split("\r\n")
                    _, target, version = request_line.split(" ", 2)
                    fields = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
                    close = "close" in fields.get("connection", "").lower() or version == "HTTP/1.0"
                    path = target.split("?")[0]
                    if "://" in path:
                        path = "/" + path.split("://", 1)[1].partition("/")[2]
                    size, body = {"/who": (len(name), name), "/1k": (1024, b"x" * 1024),
                                  "/big": (big, None)}.get(path, (9, b"not found"))
                    status = "404 Not Found" if body == b"not found" else "200 OK"
                    writer.write(f"HTTP/1.1 {status}\r\nContent-Length: {size}\r\n"
                                 f"{'Connection: close' if close else 'Keep-Alive: timeout=300'}\r\n\r\n"
                                 .encode())
                    if body is not None:
                        writer.write(body)
                    else:
                        left = size
                        while left > 0:
                            writer.write(chunk[:left])
                            left -= len(chunk)
                            await writer.drain()
                    await writer.drain()
                    if close:
                        break
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
                pass
            finally:
                writer.close()

        return handle

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(spec["cert"], spec["key"])
    servers = [await asyncio.start_server(handler(b"origin-a"), "127.0.0.1", spec["a"], backlog=4096),
               await asyncio.start_server(handler(b"origin-b"), "127.0.0.1", spec["b"], backlog=4096),
               await asyncio.start_server(handler(b"origin-tls"), "127.0.0.1", spec["t"],
                                          ssl=context, backlog=4096)]
    await asyncio.gather(*(server.serve_forever() for server in servers))


# --- targets ---------------------------------------------------------------------------


@dataclass
class Target:
    """One column of measurements: direct, fwdproxy, a peer, or a proxy of W5/the sweep."""

    name: str
    kind: str  # "direct", "fwdproxy", "peer" or "reference" (--ceilings)
    version: str = ""
    proc: Proc | None = None
    port: int | None = None
    status: str = "ok"  # or "not installed", "failed to start: ..."
    guard: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    config: str = ""

    @property
    def running(self) -> bool:
        return self.status == "ok"

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "version": self.version, "status": self.status}
        if self.guard:
            data["guard"] = self.guard
        if self.config:
            data["config"] = self.config
        data.update(self.results)
        return data


def fwdproxy_config(folder: Path, rules: Path, name: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        'listen: ["127.0.0.1:0"]\n'
        f"rules: {rules}\n"
        f"access_log: {folder / (name + '-access.log')}\n"
        "deny_destinations: []\n"
        'connect_ports: ["1-65535"]\n'
        "clients: [127.0.0.0/8]\n"
        "timeouts: {rules_poll: 3600, keepalive: 300}\n"
        f"hosts: {{{W5_HOST}: 127.0.0.1}}\n")
    return path


def start_fwdproxy(procs: Processes, work: Path, name: str, rules: Path, cpu: str | None,
                   workers: int | None = None) -> Target:
    """fwdproxy from this checkout; the Target says "failed ..." with its stderr if it did not start."""
    config = fwdproxy_config(work, rules, name)
    command = [sys.executable, "-m", "fwdproxy", "--config", str(config)]
    if workers is not None:
        command += ["--workers", str(workers)]
    from fwdproxy import __version__

    target = Target(name, "fwdproxy", version=__version__, config=config.read_text())
    proc = procs.start(name, pinned(cpu, command), work / f"{name}-stderr.log", cwd=ROOT, watch_stderr=True)
    target.proc = proc
    if not proc.wait_listening(START_TIMEOUT) or proc.listen_match is None:
        code = proc.popen.poll()
        target.status = f"failed to start (exit status {code}): {proc.tail(8)}"
        procs.stop(proc)
        return target
    target.port = int(proc.listen_match.group(1))
    target.results["startup_s"] = round(proc.ready_after or 0.0, 3)
    time.sleep(0.3)  # settle before the first memory figure
    target.results["rss_start_kib"] = tree_rss_kib(proc.pid)
    return target


SQUID_CONF = """\
http_port 127.0.0.1:{port}
visible_hostname fwdproxy-bench
pid_filename {dir}/squid.pid
cache_log {dir}/cache.log
access_log stdio:{dir}/access.log
cache_store_log none
cache deny all
cache_mem 0 MB
coredump_dir {dir}
pinger_enable off
max_filedescriptors 16384
shutdown_lifetime 1 seconds
acl bench_clients src 127.0.0.0/8
acl bench_connect_ports port {ports}
acl CONNECT method CONNECT
http_access deny CONNECT !bench_connect_ports
http_access allow bench_clients
http_access deny all
"""

TINYPROXY_CONF = """\
Port {port}
Listen 127.0.0.1
Timeout 600
MaxClients 4096
Allow 127.0.0.1
{connect_ports}
LogFile "{dir}/tinyproxy.log"
LogLevel Connect
PidFile "{dir}/tinyproxy.pid"
"""

PRIVOXY_CONF = """\
confdir {dir}
logdir {dir}
logfile privoxy.log
debug 1
actionsfile bench.action
listen-address 127.0.0.1:{port}
enable-remote-toggle 0
enable-edit-actions 0
keep-alive-timeout 300
socket-timeout 300
max-client-connections 4096
"""
PRIVOXY_ACTIONS = "{ +limit-connect{1-} }\n/\n"  # privoxy's own default: CONNECT to 443 only

PEERS = ("tinyproxy", "squid", "privoxy", "mitmproxy", "proxy.py", "pproxy")
PYTHON_PEERS = ("mitmproxy", "proxy.py", "pproxy")
PEER_BINARIES = {"mitmproxy": "mitmdump", "proxy.py": "proxy"}  # else the peer's own name


def start_peer(procs: Processes, work: Path, name: str, origin: Origin, cpu: str | None) -> Target:
    """A peer proxy in the foreground, with a minimal configuration; "not installed" if absent."""
    binary = which(PEER_BINARIES.get(name, name))
    if binary is None:
        return Target(name, "peer", status="not installed")
    target = Target(name, "peer", version=tool_version(PEER_BINARIES.get(name, name)) or "?")
    folder = work / name
    folder.mkdir()
    folder.chmod(0o777)  # squid and tinyproxy may drop to another user, and log here
    port = free_port()
    ports = [origin.port_a, origin.port_b, origin.port_tls]
    conf = folder / f"{name}.conf"
    if name == "squid":
        text = SQUID_CONF.format(port=port, dir=folder, ports=" ".join(map(str, ports)))
        command = [binary, "-N", "-f", str(conf)]
    elif name == "tinyproxy":
        text = TINYPROXY_CONF.format(port=port, dir=folder,
                                     connect_ports="\n".join(f"ConnectPort {p}" for p in ports))
        command = [binary, "-d", "-c", str(conf)]
    elif name == "privoxy":
        text = PRIVOXY_CONF.format(port=port, dir=folder)
        (folder / "bench.action").write_text(PRIVOXY_ACTIONS)
        command = [binary, "--no-daemon", str(conf)]
    else:  # the Python peers take their settings on the command line
        command = {
            "mitmproxy": [binary, "--listen-host", "127.0.0.1", "--listen-port", str(port), "-q",
                          "--ignore-hosts", ".*", "--set", "stream_large_bodies=1m",
                          "--set", f"confdir={folder}"],
            "proxy.py": [binary, "--hostname", "127.0.0.1", "--port", str(port),
                         "--log-level", "ERROR"],
            "pproxy": [binary, "-l", f"http://127.0.0.1:{port}"],
        }[name]
        text = " ".join(command[1:])
    conf.write_text(text)
    target.config = text
    proc = procs.start(name, pinned(cpu, command), folder / "stderr.log")
    if _started(procs, target, proc, port):
        time.sleep(0.3)
        target.results["rss_start_kib"] = tree_rss_kib(proc.pid)
    return target


def _started(procs: Processes, target: Target, proc: Proc, port: int) -> bool:
    """Wait for `proc` to accept on `port`: the target gets its port, or says why not."""
    target.proc = proc
    if not wait_ports(proc, [port]):
        target.status = f"failed to start (exit status {proc.popen.poll()}): {proc.tail(8)}"
        procs.stop(proc)
        return False
    target.port = port
    return True


CEILINGS = {"ref: trio relay": "relay", "ref: trio + h11": "h11"}


def start_reference(procs: Processes, work: Path, name: str, origin: Origin, cpu: str | None) -> Target:
    """One of scripts/bench_ceilings.py's forwarders, for W1 and W2 (see --ceilings)."""
    target = Target(name, "reference", version="scripts/bench_ceilings.py")
    port = free_port()
    command = [sys.executable, str(ROOT / "scripts" / "bench_ceilings.py"), CEILINGS[name],
               str(origin.port_a), str(port)]
    _started(procs, target, procs.start(name, pinned(cpu, command), work / f"{CEILINGS[name]}-stderr.log"),
             port)
    return target


def h11_cost(origin: Origin, cpu: str | None) -> float | None:
    """scripts/bench_ceilings.py h11cost on the proxies' core: µs of CPU that h11 alone
    spends on one W1 exchange; None if it failed."""
    command = [sys.executable, str(ROOT / "scripts" / "bench_ceilings.py"), "h11cost", str(origin.port_a)]
    try:
        done = subprocess.run(pinned(cpu, command), capture_output=True, text=True, timeout=120,
                              env=clean_env())
        return float(json.loads(done.stdout)["us_per_exchange"])
    except (subprocess.TimeoutExpired, ValueError, KeyError) as exc:
        log(f"h11 alone: failed: {exc}")
        return None


# --- versions and the machine ----------------------------------------------------------


VERSION_COMMANDS = {
    "nginx": (["-v"], r"nginx/(\S+)"),
    "wrk": (["-v"], r"wrk (\S+)"),
    "curl": (["--version"], r"curl (\S+)"),
    "squid": (["-v"], r"Version (\S+)"),
    "tinyproxy": (["-v"], r"tinyproxy (\S+)"),
    "privoxy": (["--version"], r"version (\S+)"),
    "mitmdump": (["--version"], r"Mitmproxy: (\S+)"),
    "proxy": (["--version"], r"^(\d\S*)"),
    "pproxy": (["--version"], r"pproxy (\S+)"),
    "openssl": (["version"], r"OpenSSL (\S+)"),
}


def tool_version(name: str) -> str | None:
    binary = which(name)
    if binary is None:
        return None
    args, pattern = VERSION_COMMANDS[name]
    try:
        done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    match = re.search(pattern, done.stdout + done.stderr)
    return match.group(1) if match else "?"


def machine() -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    return {"cpu": model, "cores": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "memory_gib": round(
                os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def cpu_busy(seconds: float = 2.0) -> float:
    """Share (0..1) of all cores' time spent busy over `seconds`, from /proc/stat: run
    before anything is started here, it shows other work that would disturb the figures."""
    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        return sum(values), values[3] + values[4]  # all, idle + iowait

    total_before, idle_before = sample()
    time.sleep(seconds)
    total_after, idle_after = sample()
    total = total_after - total_before
    return 1 - (idle_after - idle_before) / total if total > 0 else 0.0


def checkout() -> dict[str, Any]:
    """The commit measured (read-only git commands), and whether the tree had changes."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    return {"commit": git("rev-parse", "--short", "HEAD") or "?",
            "uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no"))}


# --- load generators -------------------------------------------------------------------


COUNT_CLOSES_LUA = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) responses = 0; closes = 0 end
function response(status, headers, body)
  responses = responses + 1
  for name, value in pairs(headers) do
    if string.lower(name) == "connection" and string.find(string.lower(value), "close") then
      closes = closes + 1
      break
    end
  end
end
function done(summary, latency, requests)
  local r, c = 0, 0
  for _, t in ipairs(threads) do r = r + t:get("responses"); c = c + t:get("closes") end
  io.write(string.format("bench-closes %d %d\\n", r, c))
end
"""

UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests/s, p50/p99 (ms), request count, errors from wrk's --latency output."""
    figures: dict[str, Any] = {}
    if match := re.search(r"Requests/sec:\s+([\d.]+)", output):
        figures["rps"] = float(match.group(1))
    if match := re.search(r"(\d+) requests in", output):
        figures["requests"] = int(match.group(1))
    for pct in ("50", "99"):
        if match := re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.M):
            figures[f"p{pct}_ms"] = round(float(match.group(1)) * UNITS_MS[match.group(2)], 3)
    if match := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output):
        figures["non_2xx"] = int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output):
        figures["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"),
                                            map(int, match.groups()), strict=True))
    if match := re.search(r"bench-closes (\d+) (\d+)", output):
        figures["responses"], figures["closes"] = int(match.group(1)), int(match.group(2))
    return figures


class Bench:
    """The run: settings, processes, origin, targets, and what each workload found."""

    def __init__(self, args: argparse.Namespace, work: Path, procs: Processes) -> None:
        self.args = args
        self.work = work
        self.procs = procs
        cpus = sorted(os.sched_getaffinity(0))
        self.cpus = cpus
        self.proxy_cpu: str | None = str(cpus[0]) if len(cpus) >= 2 else None
        self.load_cpu: str | None = str(cpus[-1]) if len(cpus) >= 2 else None
        self.wrk = which("wrk")
        self.curl = which("curl")
        self.skipped: dict[str, str] = {}
        self.origin: Origin | None = None
        self.targets: list[Target] = []
        self.w5_figures: dict[str, Any] = {}
        self.w6_figures: dict[str, Any] = {}
        self.h11_cost_us: float | None = None  # --ceilings: h11's CPU per W1 exchange
        self.sweep: list[Target] = []
        self.sweep_direct: list[float] = []
        self.notes: list[str] = []
        self.lua_dir = work / "lua"
        self.lua_dir.mkdir()

    @property
    def minor_rounds(self) -> int:
        """Rounds for W2 and W3 (W1 and W5 use --rounds)."""
        return max(1, min(int(self.args.rounds), 3))

    def pinning_text(self) -> str:
        if self.proxy_cpu is None:
            return "no pinning (fewer than 2 cores)"
        return (f"proxies on core {self.proxy_cpu}; origin, wrk, curl and the W4 client on core "
                f"{self.load_cpu} (taskset)")

    # W1/W2 ------------------------------------------------------------------------------

    def wrk_round(self, target: Target, *, connections: int, seconds: int, close: bool,
                  host: str = "127.0.0.1") -> dict[str, Any]:
        """One wrk run against `target` (through a proxy: for http://`host`:PORT/1k);
        {"error": ...} when it failed."""
        assert self.origin is not None and self.wrk is not None
        origin_port = self.origin.port_a
        if target.kind == "direct":
            url, path = f"http://127.0.0.1:{origin_port}/1k", "/1k"
        else:
            url, path = f"http://127.0.0.1:{target.port}/", f"http://{host}:{origin_port}/1k"
        script = self.lua_dir / f"{'close' if close else 'keep'}-{target.kind}-{host}.lua"
        text = f'wrk.path = "{path}"\nwrk.headers["Host"] = "{host}:{origin_port}"\n'
        if close:
            text += 'wrk.headers["Connection"] = "close"\n' + COUNT_CLOSES_LUA
        script.write_text(text)
        command = pinned(self.load_cpu, [self.wrk, "-t1", f"-c{connections}", f"-d{seconds}s",
                                         "--latency", "--timeout", "5s", "-s", str(script), url])
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60,
                                  env=clean_env())
        except subprocess.TimeoutExpired:
            return {"error": "wrk did not finish in time"}
        figures = parse_wrk(done.stdout)
        if not figures.get("rps") or figures.get("non_2xx"):
            figures["error"] = (f"wrk: {figures.get('non_2xx', 0)} non-2xx responses"
                                if figures.get("non_2xx") else "wrk: no requests completed")
            figures["output"] = (done.stdout + done.stderr)[-800:]
        if target.proc is not None and not target.proc.alive():
            figures["error"] = f"{target.name} exited: {target.proc.tail(5)}"
        return figures

    def interleaved_wrk(self, key: str, targets: list[Target], rounds: int, *, connections: int,
                        seconds: int, close: bool, host: str = "127.0.0.1") -> None:
        """A 1 s warm-up each, then `rounds` rounds over `targets` in turn; raw rounds and
        medians into results[key]."""
        for target in targets:
            target.results[key] = {"rounds": []}
            if target.running:  # warm-up, not recorded: pools, caches, the first connections
                self.wrk_round(target, connections=connections, seconds=1, close=close, host=host)
        for number in range(1, rounds + 1):
            for target in targets:
                if not target.running:
                    continue
                figures = self.wrk_round(target, connections=connections, seconds=seconds, close=close,
                                         host=host)
                target.results[key]["rounds"].append(figures)
                shown = f"{figures['rps']:,.0f} req/s" if "rps" in figures else ""
                log(f"{key} round {number}/{rounds}: {target.name}: {shown} {figures.get('error', '')}")
        for target in targets:
            summary = target.results[key]
            good = [r for r in summary["rounds"] if "error" not in r]
            summary["rps"] = median([r["rps"] for r in good])
            for pct in ("p50_ms", "p99_ms"):
                summary[pct] = median([r[pct] for r in good if pct in r])
            errors = [r["error"] for r in summary["rounds"] if "error" in r]
            if errors:
                summary["errors"] = errors
            requests = sum(r.get("requests", 0) for r in good)
            socket_errors = sum(sum(r.get("socket_errors", {}).values()) for r in good)
            summary["socket_errors"], summary["requests"] = socket_errors, requests
            if close and good:
                responses = sum(r.get("responses", 0) for r in good)
                closes = sum(r.get("closes", 0) for r in good)
                summary["responses_with_connection_close"] = f"{closes}/{responses}"
                # wrk reconnects after a response with "Connection: close", and after a
                # proxy closes the connection (the guard saw whether this one does).
                summary["reconnected_every_request"] = (
                    (responses > 0 and closes >= responses * 0.999) or target.guard.get("keepalive") is False)

    def w1(self, targets: list[Target]) -> None:
        self.interleaved_wrk("W1", targets, self.args.rounds, connections=50,
                             seconds=self.args.seconds, close=False)

    def w2(self, targets: list[Target]) -> None:
        self.interleaved_wrk("W2", targets, self.minor_rounds, connections=20,
                             seconds=self.args.seconds, close=True)

    # W3 ---------------------------------------------------------------------------------

    def curl_round(self, target: Target, tls: bool) -> dict[str, Any]:
        assert self.origin is not None and self.curl is not None
        origin = self.origin
        url = (f"https://127.0.0.1:{origin.port_tls}/big" if tls else f"http://127.0.0.1:{origin.port_a}/big")
        command = [self.curl, "-sS", "-o", "/dev/null", "--max-time", "300", "--cacert", str(origin.ca),
                   "-w", "%{http_code} %{size_download} %{speed_download}"]
        if target.kind == "direct":
            command += ["--noproxy", "*"]
        else:
            command += ["--proxy", f"http://127.0.0.1:{target.port}"]
            if not tls:
                command.append("--proxytunnel")
        try:
            done = subprocess.run(pinned(self.load_cpu, [*command, url]), capture_output=True,
                                  text=True, timeout=330, env=clean_env())
        except subprocess.TimeoutExpired:
            return {"error": "curl did not finish in time"}
        try:
            code, size, speed = done.stdout.split()
            if int(code) != 200 or int(size) != origin.big_bytes:
                raise ValueError
        except ValueError:
            return {"error": f"curl: {done.stdout.strip()} {done.stderr.strip()[:300]}"}
        return {"mbps": round(float(speed) / 1e6, 1)}

    def w3(self, targets: list[Target]) -> None:
        rounds = self.minor_rounds
        keys = (("W3_tls", True), ("W3_plain", False))
        for target in targets:
            for key, tls in keys:
                target.results[key] = {"rounds": []}
                if target.running:  # warm-up, not recorded (page cache, first TLS handshake)
                    self.curl_round(target, tls)
        for number in range(1, rounds + 1):
            for key, tls in keys:
                for target in targets:
                    if not target.running:
                        continue
                    figures = self.curl_round(target, tls)
                    target.results[key]["rounds"].append(figures)
                    log(f"{key} round {number}/{rounds}: {target.name}: "
                        f"{figures.get('mbps', '')} MB/s {figures.get('error', '')}")
        for target in targets:
            for key, _ in keys:
                summary = target.results[key]
                summary["mbps"] = median([r["mbps"] for r in summary["rounds"] if "mbps" in r])
                errors = [r["error"] for r in summary["rounds"] if "error" in r]
                if errors:
                    summary["errors"] = errors

    # W4 ---------------------------------------------------------------------------------

    def w4(self, target: Target) -> None:
        """Many idle tunnels: all must open; KiB of proxy memory per tunnel; a sample still works."""
        assert self.origin is not None and target.proc is not None and target.port is not None
        count, origin_port, pid = self.args.tunnels, self.origin.port_a, target.proc.pid
        for _ in range(10):  # warm-up: the first tunnels' code paths and buffers
            with contextlib.suppress(OSError):
                open_tunnel(target.port, origin_port).close()
        time.sleep(1.0)
        before = tree_rss_kib(pid)
        tunnels: list[HttpConn] = []
        failures: list[str] = []
        deadline = time.monotonic() + 180
        try:
            for index in range(count):
                if time.monotonic() > deadline:
                    failures.append(f"time ran out after {index} tunnels")
                    break
                try:
                    tunnels.append(open_tunnel(target.port, origin_port))
                except (OSError, ValueError, IndexError) as exc:
                    failures.append(f"tunnel {index}: {exc}")
            time.sleep(1.0)
            after = tree_rss_kib(pid)
            step = max(1, len(tunnels) // 20)
            sample = tunnels[::step][:20]
            working = 0
            for conn in sample:
                try:
                    conn.send(get_request(origin_port, "/1k", absolute=False))
                    answer = conn.response()
                    working += answer.status == 200 and len(answer.body) == 1024
                except (OSError, ValueError, IndexError):
                    pass
        finally:
            for conn in tunnels:
                conn.close()
        opened = len(tunnels)
        target.results["W4"] = {
            "tunnels": count, "opened": opened, "rss_before_kib": before, "rss_after_kib": after,
            "kib_per_tunnel": round((after - before) / opened, 2) if opened else None,
            "sample_checked": len(sample), "sample_working": working,
            "all_ok": opened == count and working == len(sample),
            "failures": failures[:5], "failure_count": len(failures)}
        log(f"W4 {target.name}: {opened}/{count} tunnels, "
            f"{target.results['W4']['kib_per_tunnel']} KiB each, sample {working}/{len(sample)} working")
        time.sleep(1.0)

    # W5 ---------------------------------------------------------------------------------

    def w5(self, bare: Target) -> None:
        """The big list: start-up, memory against the bare proxy, W1 with it against without."""
        assert bare.port is not None
        count = self.args.domains
        log(f"W5: writing {count:,} synthetic domains")
        big = self.work / "biglist"
        write_hosts_list(big, synthetic_domains(count))
        loaded = start_fwdproxy(self.procs, self.work, "fwdproxy-list", big, self.proxy_cpu)
        self.w5_figures = {"domains": count, "startup_bare_s": bare.results.get("startup_s"),
                   "rss_bare_kib": bare.results.get("rss_start_kib")}
        if not loaded.running:
            self.w5_figures["error"] = loaded.status
            log(f"W5: {loaded.status}")
            return
        try:
            self.w5_figures["startup_with_list_s"] = loaded.results["startup_s"]
            self.w5_figures["load_s"] = round(
                loaded.results["startup_s"] - (bare.results.get("startup_s") or 0), 3)
            self.w5_figures["rss_with_list_kib"] = loaded.results["rss_start_kib"]
            self.w5_figures["rss_added_mib"] = round(
                (loaded.results["rss_start_kib"] - (bare.results.get("rss_start_kib") or 0)) / 1024, 1)
            assert self.origin is not None
            loaded.guard = correctness_guard(loaded.port or 0, self.origin)
            self.w5_figures["guard"] = loaded.guard
            if self.wrk is None:
                self.w5_figures["throughput"] = "skipped: wrk not installed"
                return
            without = Target("fwdproxy (no list)", "fwdproxy", port=bare.port, proc=bare.proc)
            self.interleaved_wrk("W1", [without, loaded], self.args.rounds, connections=50,
                                 seconds=self.args.seconds, close=False, host=W5_HOST)
            self.w5_figures["W1_without_list"] = without.results["W1"]
            self.w5_figures["W1_with_list"] = loaded.results["W1"]
            rps_without, rps_with = without.results["W1"]["rps"], loaded.results["W1"]["rps"]
            if rps_without and rps_with:
                self.w5_figures["W1_ratio"] = round(rps_with / rps_without, 3)
        finally:
            if loaded.proc is not None:
                self.procs.stop(loaded.proc)

    # W6 ---------------------------------------------------------------------------------

    def w6(self, target: Target) -> None:
        """One long W1 run, sampling the proxy's resident memory; then 2 s idle, once more."""
        assert self.origin is not None and self.wrk is not None and target.proc is not None
        seconds = self.args.soak_seconds
        interval = max(1.0, seconds / 20)
        warmup = seconds * 0.2
        script = self.lua_dir / "soak.lua"
        script.write_text(f'wrk.path = "http://127.0.0.1:{self.origin.port_a}/1k"\n'
                          f'wrk.headers["Host"] = "127.0.0.1:{self.origin.port_a}"\n')
        command = pinned(self.load_cpu, [self.wrk, "-t1", "-c50", f"-d{seconds}s", "--latency",
                                         "--timeout", "5s", "-s", str(script),
                                         f"http://127.0.0.1:{target.port}/"])
        log(f"W6: {seconds} s of W1 through {target.name}, memory sampled every {interval:g} s")
        samples: list[tuple[float, int]] = []
        started = time.monotonic()
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=clean_env()) as wrk:
            try:
                while (elapsed := time.monotonic() - started) < seconds - 0.5 and wrk.poll() is None:
                    time.sleep(min(interval, max(0.05, seconds - 0.5 - elapsed)))
                    samples.append((round(time.monotonic() - started, 1), tree_rss_kib(target.proc.pid)))
                output, _ = wrk.communicate(timeout=seconds + 60)
            except BaseException:
                wrk.kill()
                wrk.wait(timeout=10)
                raise
        time.sleep(2.0)
        idle = tree_rss_kib(target.proc.pid)
        after_warmup = [kib for at, kib in samples if at >= warmup] or [kib for _, kib in samples]
        reference, end = after_warmup[0], samples[-1][1] if samples else 0
        figures = parse_wrk(output)
        self.w6_figures = {"seconds": seconds, "warmup_s": warmup, "samples_kib": samples,
                   "reference_kib": reference, "end_kib": end, "idle_after_2s_kib": idle,
                   "growth_kib": end - reference, "rps": figures.get("rps"),
                   "flat": end <= reference + 5 * 1024 and idle <= end}
        if not figures.get("rps") or figures.get("non_2xx"):
            self.w6_figures["error"] = f"wrk: {output[-400:]}"
        log(f"W6: RSS {reference} KiB after warm-up, {end} KiB at the end, {idle} KiB idle")

    # workers sweep ---------------------------------------------------------------------

    def workers_sweep(self, fwd: Target) -> None:
        """W1 through fwdproxy --workers N for each N, interleaved with direct (for the ratio)
        and with the single-process fwdproxy (what --workers costs or gains)."""
        cores = len(self.cpus)
        single = Target("fwdproxy (no --workers)", "fwdproxy", port=fwd.port, proc=fwd.proc, guard=fwd.guard)
        single.results["workers"] = None
        single.results["pinning"] = f"core {self.proxy_cpu}" if self.proxy_cpu else "all cores"
        self.sweep.append(single)
        for count in self.args.workers:
            if self.load_cpu is not None and cores > count:
                cpu: str | None = ",".join(str(c) for c in self.cpus[:-1])
                pinning = f"core{'s' if cores > 2 else ''} {cpu}"
            else:
                cpu, pinning = None, f"all cores ({ALL_CPUS}), the load generator's too"
            target = start_fwdproxy(self.procs, self.work, f"fwdproxy-workers{count}", self.work / "empty",
                                    cpu, workers=count)
            target.name = f"fwdproxy --workers {count}"
            target.results["workers"], target.results["pinning"] = count, pinning
            if target.running:
                assert self.origin is not None and target.port is not None
                target.guard = correctness_guard(target.port, self.origin)
                log(f"guard {target.name}: {target.guard['verdict']}")
            else:
                log(f"{target.name}: {target.status}")
            self.sweep.append(target)
        sweep_direct = Target("direct", "direct")
        try:
            self.interleaved_wrk("W1", [sweep_direct, *self.sweep], self.args.rounds, connections=50,
                                 seconds=self.args.seconds, close=False)
        finally:
            for target in self.sweep[1:]:
                if target.proc is not None:
                    alive = target.proc.alive()
                    target.results["rss_end_kib"] = tree_rss_kib(target.proc.pid) if alive else None
                    self.procs.stop(target.proc)
        self.sweep_direct = [r["rps"] for r in sweep_direct.results["W1"]["rounds"] if "rps" in r]
        base_rps = next((t.results["W1"]["rps"] for t in self.sweep if t.results["workers"] == 1), None)
        if base_rps is None:
            base_rps = single.results["W1"]["rps"]
            self.notes.append("workers sweep: scaling is against the single-process fwdproxy "
                              "(1 was not in --workers)")
        direct_rps = sweep_direct.results["W1"]["rps"]
        for target in self.sweep:
            rps = target.results.get("W1", {}).get("rps")
            target.results["ratio_to_direct"] = round(rps / direct_rps, 3) if rps and direct_rps else None
            target.results["scaling"] = round(rps / base_rps, 3) if rps and base_rps else None


# --- the report ------------------------------------------------------------------------


def ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value and base else None


def cell(value: float | None, base: float | None, fmt: str = ",.0f") -> str:
    if value is None:
        return "failed"
    r = ratio(value, base)
    return f"{value:{fmt}} (×{r:.2f})" if r is not None else f"{value:{fmt}}"


def table(bench: Bench) -> str:
    direct = bench.targets[0]
    ran = set(bench.args.only)
    domains = bench.args.domains
    label = f"{domains / 1e6:g}M" if domains >= 1_000_000 else f"{domains // 1000}k"
    header = ["", "W1 req/s (×direct)", "W1 p50/p99 ms", "W2 req/s (×direct)", "W3 TLS MB/s (×direct)",
              "W3 plain MB/s (×direct)", "W4 KiB/tunnel", f"W5 {label} list"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def measured(target: Target, key: str) -> bool:
        return key in target.results

    for target in bench.targets:
        name = target.name
        if target.guard and not target.guard.get("ok"):
            name += f" ⚠ {target.guard.get('verdict')}"
        if not target.running:
            rows.append(f"| {name} | {target.status.splitlines()[0][:120]} |" + " |" * (len(header) - 2))
            continue
        cells = [name]
        if measured(target, "W1"):
            w1 = target.results["W1"]
            cells.append(cell(w1["rps"], direct.results.get("W1", {}).get("rps")))
            cells.append(f"{w1['p50_ms']:.2f} / {w1['p99_ms']:.2f}" if w1.get("p50_ms") is not None
                         and w1.get("p99_ms") is not None else "failed")
        else:
            cells += ["—", "—"]
        if measured(target, "W2"):
            w2 = target.results["W2"]
            text = cell(w2["rps"], direct.results.get("W2", {}).get("rps"))
            if w2.get("rps") and not w2.get("reconnected_every_request"):
                text += f" (keep-alive kept: {w2.get('responses_with_connection_close')} closes)"
            cells.append(text)
        else:
            cells.append("—")
        for key in ("W3_tls", "W3_plain"):
            cells.append(cell(target.results[key]["mbps"], direct.results.get(key, {}).get("mbps"))
                         if measured(target, key) else "—")
        if measured(target, "W4"):
            w4 = target.results["W4"]
            per = w4["kib_per_tunnel"]
            cells.append(f"{per:.1f} ({w4['opened']}/{w4['tunnels']} open"
                         f"{'' if w4['sample_working'] == w4['sample_checked'] else ', sample broken'})"
                         if per is not None else f"failed (0/{w4['tunnels']})")
        else:
            cells.append("—")
        if target.kind == "fwdproxy" and "W5" in ran and bench.w5_figures:
            w5 = bench.w5_figures
            if "error" in w5:
                cells.append("failed")
            else:
                text = f"load {w5['load_s']:.2f} s, +{w5['rss_added_mib']:.0f} MiB"
                if "W1_ratio" in w5:
                    text += f", W1 ×{w5['W1_ratio']:.2f}"
                cells.append(text)
        else:
            cells.append("—" if target.kind != "peer" else "n/a")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def sweep_table(bench: Bench) -> str:
    rows = ["| workers | W1 req/s (×direct) | W1 p50/p99 ms | scaling ×W1(1) | proxy pinning |",
            "|---|---|---|---|---|"]
    direct_rps = median(bench.sweep_direct)
    for target in bench.sweep:
        n = target.results["workers"] or "none (one process)"
        if not target.running:
            rows.append(f"| {n} | failed: {target.status.splitlines()[-1][:150]} | | | |")
            continue
        w1 = target.results.get("W1", {})
        flag = "" if target.guard.get("ok") else f" ⚠ {target.guard.get('verdict')}"
        latency = (f"{w1['p50_ms']:.2f} / {w1['p99_ms']:.2f}" if w1.get("p50_ms") is not None
                   and w1.get("p99_ms") is not None else "—")
        scaling = target.results.get("scaling")
        rows.append(f"| {n}{flag} | {cell(w1.get('rps'), direct_rps)} | {latency} | "
                    f"{'—' if scaling is None else f'{scaling:.2f}'} | {target.results['pinning']} |")
    return "\n".join(rows)


def verdicts(bench: Bench) -> list[dict[str, Any]]:
    """The issue's targets, as PASS/FAIL (and INFO) lines."""
    found: list[dict[str, Any]] = []

    def add(name: str, ok: bool | None, detail: str, kind: str = "target") -> None:
        found.append({"name": name, "ok": ok, "detail": detail, "kind": kind})

    by_name = {t.name: t for t in bench.targets}
    fwd, direct = by_name["fwdproxy"], by_name["direct"]
    squid = by_name.get("squid")
    privoxy = by_name.get("privoxy")

    def r(target: Target | None, key: str, sub: str = "rps") -> float | None:
        if target is None or not target.running or key not in target.results:
            return None
        return ratio(target.results[key].get(sub), direct.results.get(key, {}).get(sub))

    if fwd.guard:
        add("correctness guard: a later request on a kept-alive connection reaches its own origin",
            bool(fwd.guard.get("ok")), fwd.guard.get("verdict", ""))
    if "W1" in fwd.results:
        mine, theirs = r(fwd, "W1"), r(squid, "W1")
        bar, source = (theirs, "squid in this run") if theirs else (ISSUE_SQUID_W1, "squid in the issue")
        add(f"W1 ≥ {bar:.2f} × direct ({source})", mine is not None and mine >= bar,
            f"fwdproxy ×{mine:.2f}" if mine else "fwdproxy failed")
        measured = r(privoxy, "W1")
        add(f"W1 ≥ {ISSUE_PRIVOXY_W1} × direct (privoxy in the issue; on the way)",
            mine is not None and mine >= ISSUE_PRIVOXY_W1,
            (f"fwdproxy ×{mine:.2f}" if mine else "failed")
            + (f"; privoxy in this run ×{measured:.2f}" if measured else ""), kind="info")
    # "Far ahead of every correct Python peer": twice the best W1 of those passing the guard.
    python_peers = [by_name[n] for n in PYTHON_PEERS if n in by_name and by_name[n].running]
    correct = [p for p in python_peers if p.guard.get("ok") and r(p, "W1")]
    if "W1" in fwd.results and correct:
        mine = r(fwd, "W1")
        best = max(correct, key=lambda p: r(p, "W1") or 0.0)
        theirs = r(best, "W1") or 0.0
        add("W1 far ahead of every correct Python peer (≥ 2 × the best)",
            mine is not None and mine >= 2 * theirs,
            f"fwdproxy ×{mine:.2f}; best correct Python peer {best.name} ×{theirs:.2f}" if mine
            else "fwdproxy failed")
    for peer in python_peers:
        if not peer.guard.get("ok"):
            add(f"{peer.name} fails the correctness guard: its figures do not count", None,
                str(peer.guard.get("verdict", "")), kind="info")
    for workload in ("W1", "W2"):
        for name in CEILINGS:
            measured = r(by_name.get(name), workload)
            if measured is not None:
                mine = r(fwd, workload)
                add(f"{workload} ceiling, {name[5:]} without any proxy logic (scripts/bench_ceilings.py)",
                    None, f"×{measured:.2f} of direct; fwdproxy ×{mine:.2f}, "
                    f"{mine / measured:.0%} of this ceiling" if mine else f"×{measured:.2f}", kind="info")
    direct_w1 = direct.results.get("W1", {}).get("rps")
    if bench.h11_cost_us and direct_w1:
        squid_w1 = r(squid, "W1") or ISSUE_SQUID_W1
        most = 1e6 / bench.h11_cost_us
        add("W1 ceiling, h11 alone: its CPU per W1 exchange, in-process with no sockets "
            "(scripts/bench_ceilings.py h11cost)", None,
            f"{bench.h11_cost_us:.0f} µs: one core can do {most:,.0f} exchanges/s of that alone, "
            f"×{most / direct_w1:.2f} of direct; squid's ×{squid_w1:.2f} leaves "
            f"{1e6 / (squid_w1 * direct_w1):.0f} µs per request for everything", kind="info")
    if "W2" in fwd.results:
        mine, theirs = r(fwd, "W2"), r(squid, "W2")
        bar, source = (theirs, "squid in this run") if theirs else (ISSUE_SQUID_W2, "squid in the issue")
        add(f"W2 ≥ {bar:.2f} × direct ({source})", mine is not None and mine >= bar,
            f"fwdproxy ×{mine:.2f}" if mine else "fwdproxy failed")
    if "W3_plain" in fwd.results:
        plain, tls = r(fwd, "W3_plain", "mbps"), r(fwd, "W3_tls", "mbps")
        add("W3 plain inside the tunnel ≥ 0.9 × direct", plain is not None and plain >= 0.9,
            f"×{plain:.2f}" if plain else "failed")
        add("W3 TLS ≥ 0.8 × direct (within noise)", tls is not None and tls >= 0.8,
            f"×{tls:.2f}" if tls else "failed")
    if "W4" in fwd.results:
        w4 = fwd.results["W4"]
        per = w4["kib_per_tunnel"]
        add(f"W4 ≤ 12 KiB per idle tunnel, all {w4['tunnels']} open and working",
            per is not None and per <= 12 and w4["all_ok"],
            f"{per} KiB/tunnel, {w4['opened']}/{w4['tunnels']} open, sample "
            f"{w4['sample_working']}/{w4['sample_checked']} working")
    if bench.w5_figures and "error" not in bench.w5_figures:
        w5 = bench.w5_figures
        add("W5 list loads in ≤ 3 s", w5["load_s"] <= 3.0,
            f"{w5['load_s']:.2f} s ({w5['startup_with_list_s']:.2f} s start-up against "
            f"{w5['startup_bare_s']:.2f} s bare)")
        add("W5 ≤ 64 MiB on top of the bare proxy", w5["rss_added_mib"] <= 64, f"+{w5['rss_added_mib']} MiB")
        if "W1_ratio" in w5:
            add("W5 W1 with the list ≥ 0.95 × without", w5["W1_ratio"] >= 0.95, f"×{w5['W1_ratio']:.3f}")
    elif bench.w5_figures:
        add("W5", False, bench.w5_figures["error"].splitlines()[0])
    if bench.w6_figures:
        w6 = bench.w6_figures
        add("memory flat: end of run ≤ after warm-up + 5 MiB, and not above it after 2 s idle",
            bool(w6["flat"]) and "error" not in w6,
            f"{w6['reference_kib'] / 1024:.1f} MiB after warm-up, {w6['end_kib'] / 1024:.1f} MiB at the end "
            f"of {w6['seconds']} s, {w6['idle_after_2s_kib'] / 1024:.1f} MiB idle")
    for target in bench.sweep:
        count = target.results["workers"]
        if count is None:
            continue
        scaling = target.results.get("scaling")
        shown = f"×{scaling:.2f}" if scaling else f"no figure ({target.status.splitlines()[0][:100]})"
        if count == 1:
            continue
        if count <= len(bench.cpus):
            # Near-linear: at least 3/4 of N, while there are cores for the workers (on the
            # smallest machines they share one with the load generator).
            add(f"workers {count}: near-linear scaling, W1(N)/W1(1) ≥ {0.75 * count:.2f}",
                bool(scaling) and scaling >= 0.75 * count, shown)
        else:
            add(f"workers {count}: scaling W1(N)/W1(1), more workers than cores", None, shown,
                kind="info")
    return found


def method(bench: Bench) -> str:
    """One line saying how the workloads that ran were measured."""
    a, ran = bench.args, [w for w in bench.args.only if w not in bench.skipped]
    parts = {
        "W1": f"W1: median of {a.rounds} interleaved rounds of {a.seconds} s, 50 connections",
        "W2": f"W2: {bench.minor_rounds} rounds of {a.seconds} s, 20 connections, a new connection "
              "per request",
        "W3": f"W3: {bench.minor_rounds} rounds of {a.big_mib} MiB through a CONNECT tunnel",
        "W4": f"W4: {a.tunnels:,} idle tunnels",
        "W5": f"W5: {a.domains:,} domains, W1 with against without in {a.rounds} rounds",
        "W6": f"W6: {a.soak_seconds} s of W1",
    }
    text = "; ".join(parts[w] for w in WORKLOADS if w in ran)
    return (text or "no workload ran") + "."


def report(bench: Bench, started: datetime.datetime,
           info: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    assert bench.origin is not None
    m = info["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
    lines = [
        f"fwdproxy {info['fwdproxy']['version']} ({info['fwdproxy']['commit']}"
        f"{', with uncommitted changes' if info['fwdproxy']['uncommitted_changes'] else ''}), "
        f"{started:%Y-%m-%d}: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, Python {m['python']}; "
        f"{versions}",
        "",
        f"Origin: {bench.origin.description}. Pinning: {bench.pinning_text()}.",
        method(bench),
        "",
        table(bench),
    ]
    if bench.sweep:
        lines += ["", "Workers (W1 through fwdproxy --workers N; wrk and the origin on core "
                  f"{bench.load_cpu}):", "", sweep_table(bench)]
    for target in bench.targets:
        if target.guard and target.kind != "direct":
            lines.append(f"- guard, {target.name}: {target.guard['verdict']}")
        for key in ("W1", "W2", "W3_tls", "W3_plain"):
            errors = target.results.get(key, {}).get("errors")
            if errors:
                lines.append(f"- {target.name} {key}: {len(errors)} failed round(s): {errors[0][:200]}")
        w2 = target.results.get("W2", {})
        if w2.get("responses_with_connection_close"):
            how = ("yes" if w2.get("reconnected_every_request") else "NO: wrk kept connections alive")
            if target.guard.get("keepalive") is False:
                how += ", the proxy closes every client connection"
            lines.append(f"- W2 {target.name}: a new connection per request: {how} (responses with "
                         f"Connection: close: {w2['responses_with_connection_close']})")
        for key in ("W1", "W2"):
            summary = target.results.get(key, {})
            if summary.get("socket_errors", 0) > 0.01 * max(1, summary.get("requests", 0)):
                why = (" (it closes the connection after each response, so wrk reconnects and counts a "
                       "read error)" if target.guard.get("keepalive") is False else "")
                lines.append(f"- {target.name} {key}: {summary['socket_errors']:,} socket errors for "
                             f"{summary['requests']:,} requests{why}")
    for workload, reason in bench.skipped.items():
        lines.append(f"- {workload} skipped: {reason}")
    lines += [f"- {note}" for note in bench.notes]
    found = verdicts(bench)
    lines.append("")
    for v in found:
        word = "INFO" if v["ok"] is None else ("PASS" if v["ok"] else "FAIL")
        if v["kind"] == "info" and v["ok"] is not None:
            word = f"INFO ({'PASS' if v['ok'] else 'FAIL'})"
        lines.append(f"{word} {v['name']}: {v['detail']}")
    return "\n".join(lines), found


# --- main ------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="short run: 3 rounds of 3 s, 64 MiB, 200 tunnels, 100,000 domains, 10 s soak")
    parser.add_argument("--only", metavar="W1,W3", help="workloads to run (W1..W6; default all)")
    parser.add_argument("--peers", action="store_true",
                        help="also measure tinyproxy, squid and privoxy, and mitmproxy, proxy.py "
                        "and pproxy when on PATH")
    parser.add_argument("--workers", metavar="1,2", default="",
                        help="worker counts for a W1 sweep through fwdproxy --workers N (default: none)")
    parser.add_argument("--rounds", type=int, help="rounds for W1 and W5 (default 5, quick 3); "
                        "W2 and W3 use at most 3")
    parser.add_argument("--seconds", type=int, help="length of a W1/W2 round (default 10, quick 3)")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="where to write the figures (default: bench.json in a new temporary folder)")
    parser.add_argument("--ceilings", action="store_true",
                        help="also run W1 and W2 through two reference forwarders with no proxy logic "
                        "(scripts/bench_ceilings.py: trio alone, trio + h11): what a single "
                        "Python process on this stack can reach at all")
    parser.add_argument("--builtin-origin", action="store_true", help="use the built-in origin even "
                        "when nginx is installed")
    args = parser.parse_args(argv)
    only = [w.strip().upper() for w in (args.only or ",".join(WORKLOADS)).split(",") if w.strip()]
    unknown = [w for w in only if w not in WORKLOADS]
    if unknown:
        parser.error(f"--only: unknown workload {unknown[0]} (known: {', '.join(WORKLOADS)})")
    args.only = only
    try:
        args.workers = [int(n) for n in args.workers.split(",") if n.strip()]
    except ValueError:
        parser.error("--workers: a comma-separated list of worker counts, e.g. 1,2")
    if any(n < 1 for n in args.workers):
        parser.error("--workers: counts must be 1 or more")
    args.rounds = args.rounds or (3 if args.quick else 5)
    args.seconds = args.seconds or (3 if args.quick else 10)
    if args.rounds < 1 or args.seconds < 1:
        parser.error("--rounds and --seconds must be 1 or more")
    args.big_mib = 64 if args.quick else 256
    args.tunnels = 200 if args.quick else 1000
    args.domains = 100_000 if args.quick else 1_000_000
    args.soak_seconds = 10 if args.quick else 60
    return args


def raise_file_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(need, 65536)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < need:
        log(f"open-file limit {want} < {need}: W4 may fail for lack of descriptors here")


@contextlib.contextmanager
def terminated_by_signals() -> Iterator[None]:
    """SIGTERM/SIGHUP end the run through the `finally` clauses, as Ctrl-C does."""
    def leave(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)
    previous = {sig: signal.signal(sig, leave) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(args: argparse.Namespace, work: Path, procs: Processes) -> int:
    started = datetime.datetime.now().astimezone()
    bench = Bench(args, work, procs)
    if bench.load_cpu is not None:
        os.sched_setaffinity(0, {int(bench.load_cpu)})  # this script is a load generator too (W4)
    raise_file_limit(args.tunnels * 2 + 256)
    from fwdproxy import __version__

    info: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"), "machine": machine(),
        "versions": {name: tool_version(name) for name in ("nginx", "wrk", "curl")},
        "fwdproxy": {"version": __version__, **checkout()}}
    if bench.wrk is None:
        for workload in ("W1", "W2", "W6"):
            bench.skipped[workload] = "wrk is not installed (apt-get install wrk)"
        if "W5" in args.only:
            bench.notes.append("W5: throughput with the list skipped: wrk is not installed")
        if args.workers:
            bench.skipped["workers sweep"] = "wrk is not installed"
    if bench.curl is None:
        bench.skipped["W3"] = "curl is not installed"
    wanted = [w for w in args.only if w not in bench.skipped]
    busy = cpu_busy()
    info["machine"]["busy_before_run"] = round(busy, 3)
    if busy > 0.05:
        bench.notes.append(f"the machine was {busy:.0%} busy with other work before the run: "
                           "figures may be disturbed")
        log(f"warning: the machine is {busy:.0%} busy with other work")

    log(f"pinning: {bench.pinning_text()}")
    bench.origin = start_origin(procs, work, bench.load_cpu, args.big_mib * 2**20, args.builtin_origin)
    log(f"origin: {bench.origin.description}")
    (work / "empty").mkdir()
    fwd = start_fwdproxy(procs, work, "fwdproxy", work / "empty", bench.proxy_cpu)
    if not fwd.running:
        raise SystemExit(f"fwdproxy did not start: {fwd.status}")
    bench.targets = [Target("direct", "direct"), fwd]
    if args.peers:
        for name in PEERS:
            peer = start_peer(procs, work, name, bench.origin, bench.proxy_cpu)
            log(f"{name}: {peer.status}{' ' + peer.version if peer.running else ''}")
            bench.targets.append(peer)
            info["versions"][name] = peer.version or None
    references: list[Target] = []
    if args.ceilings:
        for name in CEILINGS:
            reference = start_reference(procs, work, name, bench.origin, bench.proxy_cpu)
            log(f"{name}: {reference.status}")
            references.append(reference)
    proxies = [t for t in bench.targets if t.kind != "direct" and t.running]
    for target in proxies:
        assert target.port is not None
        target.guard = correctness_guard(target.port, bench.origin)
        log(f"guard {target.name}: {target.guard['verdict']}")
    running = [t for t in bench.targets if t.running]

    if "W4" in wanted:
        for target in proxies:
            bench.w4(target)
    live_references = [r for r in references if r.running]
    if "W1" in wanted:
        bench.w1(running + live_references)
    if "W2" in wanted:
        bench.w2(running + live_references)
    if args.ceilings and "W1" in wanted:
        bench.h11_cost_us = h11_cost(bench.origin, bench.proxy_cpu)
        log(f"h11 alone: {bench.h11_cost_us} µs of CPU per W1 exchange")
    bench.targets += references
    for reference in references:  # W1 and W2 only: they are done
        if reference.proc is not None:
            procs.stop(reference.proc)
    if "W3" in wanted:
        bench.w3(running)
    # Peers are done: stop them so they cost nothing during W5, W6 and the sweep.
    for target in proxies:
        if target.kind == "peer" and target.proc is not None:
            target.results["rss_end_kib"] = tree_rss_kib(target.proc.pid) if target.proc.alive() else None
            procs.stop(target.proc)
    if "W5" in wanted:
        bench.w5(fwd)
    if "W6" in wanted:
        bench.w6(fwd)
    if args.workers and "workers sweep" not in bench.skipped:
        bench.workers_sweep(fwd)
    fwd.results["rss_end_kib"] = tree_rss_kib(fwd.proc.pid) if fwd.proc and fwd.proc.alive() else None

    busy = cpu_busy()  # our proxies and origin are idle now
    info["machine"]["busy_after_run"] = round(busy, 3)
    if busy > 0.05:
        bench.notes.append(f"the machine was {busy:.0%} busy with other work after the run")
    text, found = report(bench, started, info)
    print(text, flush=True)
    out = args.json or Path(tempfile.mkdtemp(prefix="fwdproxy-bench-results-")) / "bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    data = {
        **info, "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "origin": {"kind": bench.origin.kind, "description": bench.origin.description,
                   "ports": {"a": bench.origin.port_a, "b": bench.origin.port_b,
                             "tls": bench.origin.port_tls}},
        "pinning": {"text": bench.pinning_text(), "proxy_cpu": bench.proxy_cpu, "load_cpu": bench.load_cpu},
        "skipped": bench.skipped, "notes": bench.notes,
        "targets": {t.name: t.as_json() for t in bench.targets},
        "W5": bench.w5_figures, "W6": bench.w6_figures, "h11_us_per_exchange": bench.h11_cost_us,
        "workers_sweep": {"direct_rounds_rps": bench.sweep_direct,
                          "runs": {t.name: t.as_json() for t in bench.sweep}},
        "verdicts": found, "report_markdown": text,
    }
    out.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"\nJSON: {out}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_origin"]:  # the built-in origin, run in a child process
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_origin_main(json.loads(argv[1])))
        return 0
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    procs = Processes()
    work = Path(tempfile.mkdtemp(prefix="fwdproxy-bench-"))
    work.chmod(0o755)  # nginx workers run as another user and must read the origin's files
    try:
        with terminated_by_signals():
            return run(args, work, procs)
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
