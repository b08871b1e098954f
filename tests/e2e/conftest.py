"""Fixtures for the end-to-end tests: fwdproxy as a user runs it, real clients, real origins.

Strategy: the proxy is started exactly as a user starts it (`python -m fwdproxy --config
FILE`) and is known only through its public contract: the "listening on" line on stderr,
the access-log file, exit codes and signals. Origins are the standard library's
`ThreadingHTTPServer` in threads of this process, on 127.0.0.1:0 (one plain, one TLS with a
trustme certificate for `origin.test`), serving a temporary folder. The proxy maps
`origin.test` to 127.0.0.1 with `hosts:`, so the clients never resolve it themselves.

Invariants: only loopback traffic; every wait has a deadline (a stuck proxy fails the test,
never hangs it); a proxy is stopped with SIGTERM sent to the pid we started, and must exit
0 with no traceback on stderr.

- `site`: the folder the origins serve, holding `hello.txt` (`FILE_BODY`).
- `http_origin`, `tls_origin`: running `Origin`s; `ca_pem`: the CA file clients trust.
- `start_proxy(overrides, args=..., config=True)`: a `ProxyProcess`; `proxy`: the default.
- `client_env()`: the environment for client subprocesses, without proxy or pip settings.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

# A cold `python -m fwdproxy` imports trio, h11 and yaml in well under a second; 20 s only
# fails a proxy that is really stuck (or a machine that is far too loaded to test on).
STARTUP_TIMEOUT = 20.0
# The test config's shutdown grace (below) plus slack for interpreter exit.
SHUTDOWN_GRACE = 5.0
STOP_TIMEOUT = SHUTDOWN_GRACE + 10.0
# The proxy writes its access-log file out at least once a second.
LOG_TIMEOUT = 5.0
LOG_POLL_INTERVAL = 0.05
# Client subprocesses (curl, git, pip) on loopback; pip's start-up alone takes seconds.
CLIENT_TIMEOUT = 60.0
# Socket timeout of origin handler threads: an abandoned keep-alive connection ends by then.
ORIGIN_SOCKET_TIMEOUT = 15.0
# How long the slow origin path waits for the test to release it, at most.
SLOW_RELEASE_TIMEOUT = 15.0

FILE_NAME = "hello.txt"
FILE_BODY = b"hello from the e2e origin\n" * 200 + bytes(range(256))

LISTENING = re.compile(r"^fwdproxy (\S+) listening on 127\.0\.0\.1:(\d+)")

_PROXY_ENV_NAMES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy"}


def client_env(**extra: str) -> dict[str, str]:
    """This process's environment for a client subprocess, minus anything that would send
    it elsewhere: proxy variables and pip's own settings (PIP_INDEX_URL, PIP_FIND_LINKS...)."""
    env = {
        key: value for key, value in os.environ.items()
        if key.lower() not in _PROXY_ENV_NAMES and not key.startswith("PIP_")
    }
    env.update(extra)
    return env


def run(args: Sequence[str | Path], *, timeout: float = CLIENT_TIMEOUT,
        env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a client command to completion (killed at `timeout`), capturing text output."""
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout,
        env=client_env() if env is None else env, cwd=cwd, stdin=subprocess.DEVNULL,
        check=False,
    )


def fetch_through(proxy_port: int, url: str, host: str = "127.0.0.1") -> tuple[int, bytes]:
    """One GET through the proxy at `host`:`proxy_port` on a new connection of its own
    (safe to run in threads; with --workers the kernel picks a worker anew)."""
    conn = http.client.HTTPConnection(host, proxy_port, timeout=CLIENT_TIMEOUT)
    try:
        conn.request("GET", url)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# -- origins -----------------------------------------------------------------------------


@dataclass
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]


class HandshakeFirst(BaseHTTPRequestHandler):
    """A test origin's handler: HTTP/1.1, a socket time-out, and on a TLS server the
    handshake done in `setup`, under that time-out, before a byte is read."""

    protocol_version = "HTTP/1.1"
    timeout = ORIGIN_SOCKET_TIMEOUT

    def setup(self) -> None:
        super().setup()  # applies `timeout` to the socket, so the handshake has one too
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()


class _OriginHandler(HandshakeFirst, SimpleHTTPRequestHandler):
    """Files from the served folder, plus POST (echo the body length) and /slow."""

    server: _OriginServer

    def send_response(self, code: int, message: str | None = None) -> None:
        super().send_response(code, message)
        # Answer a request's "Connection: close" with our own (RFC 9112 §9.6), as real
        # servers do, so that clients close too; http.server alone only closes.
        if "close" in self.headers.get("Connection", "").lower():
            self.send_header("Connection", "close")

    def _record(self) -> None:
        self.server.origin.requests.append(SeenRequest(
            self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))

    def do_GET(self) -> None:
        self._record()
        if self.path == "/slow":
            origin = self.server.origin
            origin.slow_started.set()
            released = origin.slow_release.wait(SLOW_RELEASE_TIMEOUT)
            self._send_bytes(b"slow done" if released else b"never released")
            return
        super().do_GET()

    def do_HEAD(self) -> None:
        self._record()
        super().do_HEAD()

    def do_POST(self) -> None:
        self._record()
        chunked = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
        length = self._read_chunked() if chunked else self._read(int(self.headers.get("Content-Length", "0")))
        self._send_bytes(json.dumps(
            {"length": length, "expect": self.headers.get("Expect"), "chunked": chunked}).encode(),
            "application/json")

    def _read(self, remaining: int) -> int:
        length = 0
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                break
            length += len(chunk)
            remaining -= len(chunk)
        return length

    def _read_chunked(self) -> int:
        length = 0
        while size := int(self.rfile.readline().split(b";")[0], 16):
            length += self._read(size)
            self.rfile.readline()  # the CRLF after the data
        while self.rfile.readline() not in (b"\r\n", b""):
            pass  # trailer lines
        return length

    def _send_bytes(self, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the origin's requests are in `origin.requests`; keep the test output clean


class _OriginServer(ThreadingHTTPServer):
    daemon_threads = True
    origin: Origin

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that goes away (or fails the TLS handshake) is no concern of the
        # origin's; record it for a test that wants to look rather than print a traceback.
        self.origin.errors.append(repr(sys.exc_info()[1]))


@dataclass
class Origin:
    """A running origin on 127.0.0.1, reached through the proxy as `origin.test`."""

    scheme: str
    port: int = 0
    requests: list[SeenRequest] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    slow_started: threading.Event = field(default_factory=threading.Event)
    slow_release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str = f"/{FILE_NAME}", host: str = "origin.test") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    @property
    def authority(self) -> str:
        return f"origin.test:{self.port}"


def _start_origin(root: Path, scheme: str, context: ssl.SSLContext | None) -> Iterator[Origin]:
    def handler(*args: Any) -> _OriginHandler:
        return _OriginHandler(*args, directory=str(root))

    server = _OriginServer(("127.0.0.1", 0), handler)
    if context is not None:
        # The handshake happens in the handler thread (setup), not in the accept loop,
        # so one silent client cannot stall the origin.
        server.socket = context.wrap_socket(server.socket, server_side=True,
                                            do_handshake_on_connect=False)
    origin = Origin(scheme, port=server.server_address[1])
    server.origin = origin
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name=f"{scheme}-origin", daemon=True)
    thread.start()
    try:
        yield origin
    finally:
        origin.slow_release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """The folder both origins serve; holds `hello.txt`."""
    root = tmp_path / "site"
    root.mkdir()
    (root / FILE_NAME).write_bytes(FILE_BODY)
    return root


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_pem(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CA certificate as a PEM file, for clients' --cacert / verify=."""
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="session")
def client_ssl_context(ca_pem: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_pem))


@pytest.fixture
def http_origin(site: Path) -> Iterator[Origin]:
    yield from _start_origin(site, "http", None)


@pytest.fixture
def tls_origin(site: Path, tls_ca: trustme.CA) -> Iterator[Origin]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("origin.test", "127.0.0.1").configure_cert(context)
    yield from _start_origin(site, "https", context)


# -- the proxy ---------------------------------------------------------------------------


class ProxyProcess:
    """One `python -m fwdproxy` subprocess, known by its stderr, access log and exit code."""

    def __init__(self, args: list[str], *, cwd: Path, access_log: Path | None) -> None:
        self.args = args
        self.access_log = access_log
        self.port = 0
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._eof = False
        self.proc = subprocess.Popen(
            args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, env=client_env(),
        )
        # stderr is drained for the process's whole life, so it never blocks on a full pipe.
        self._reader = threading.Thread(target=self._read_stderr, daemon=True,
                                        name=f"fwdproxy-{self.proc.pid}-stderr")
        self._reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self._lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stderr(self) -> str:
        with self._changed:
            return "\n".join(self._lines)

    def wait_for_stderr(self, pattern: re.Pattern[str] | str, timeout: float) -> re.Match[str]:
        """The first stderr line matching `pattern`, waiting up to `timeout` seconds."""
        regex = re.compile(pattern)
        found: list[re.Match[str]] = []

        def seen() -> bool:
            found[:] = [m for m in map(regex.search, self._lines) if m][:1]
            return bool(found) or self._eof

        with self._changed:
            self._changed.wait_for(seen, timeout)
        if not found:
            state = "exited" if self._eof else f"still running after {timeout:g} s"
            pytest.fail(f"fwdproxy ({state}) never printed {regex.pattern!r}; "
                        f"stderr:\n{self.stderr}")
        return found[0]

    def wait_until_listening(self) -> None:
        match = self.wait_for_stderr(LISTENING, STARTUP_TIMEOUT)
        self.port = int(match.group(2))

    def send_signal(self, signum: signal.Signals) -> None:
        """Signal this process only (by its pid), if it is still running."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for the process to exit; kill it (and fail) if it does not in time."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            pytest.fail(f"fwdproxy did not exit within {timeout:g} s; stderr:\n{self.stderr}")
        self._reader.join(timeout=5)
        return code

    def stop(self) -> int:
        """SIGTERM (if still running), then the exit code."""
        self.send_signal(signal.SIGTERM)
        return self.wait_exit()

    def log_lines(self) -> list[str]:
        assert self.access_log is not None, "this proxy logs to stderr"
        try:
            return self.access_log.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []

    def wait_for_log(self, method: str, url: str, status: int | str) -> str:
        """The access-log line for `method url status`, polling the file (it is written
        out at least every second) for up to LOG_TIMEOUT seconds."""
        needle = f" {method} {url} {status} "
        deadline = time.monotonic() + LOG_TIMEOUT
        while True:
            lines = self.log_lines()
            for line in lines:
                if needle in line:
                    return line
            if time.monotonic() >= deadline:
                pytest.fail(f"no access-log line with {needle!r} within {LOG_TIMEOUT:g} s; "
                            "log:\n" + "\n".join(lines))
            time.sleep(LOG_POLL_INTERVAL)


def base_config(access_log: Path) -> dict[str, Any]:
    """The e2e config: loopback only, origins reachable, CONNECT to any port."""
    return {
        "listen": ["127.0.0.1:0"],
        "deny_destinations": [],
        "connect_ports": ["1-65535"],
        "hosts": {"origin.test": "127.0.0.1"},
        "via": "e2e-proxy",
        "admin_clients": [],  # "/" is the users' info page here
        "access_log": str(access_log),
        "timeouts": {"shutdown_grace": SHUTDOWN_GRACE},
    }


StartProxy = Callable[..., ProxyProcess]


@pytest.fixture
def start_proxy(tmp_path: Path) -> Iterator[StartProxy]:
    """Start fwdproxy as a subprocess and wait for its "listening on" line.

    `start(overrides)` writes the e2e config with `overrides` applied (a key set to None is
    removed, so the built-in default applies) and passes it with --config; `args` are
    extra command-line flags; `config=False` runs with the flags only. Every proxy started
    is stopped with SIGTERM at teardown and must exit 0 without a traceback.
    """
    started: list[ProxyProcess] = []

    def start(overrides: dict[str, Any] | None = None, *, args: Sequence[str] = (),
              config: bool = True) -> ProxyProcess:
        number = len(started)
        command = [sys.executable, "-m", "fwdproxy"]
        access_log: Path | None = None
        if config:
            access_log = tmp_path / f"access-{number}.log"
            data = {**base_config(access_log), **(overrides or {})}
            data = {k: v for k, v in data.items() if v is not None}
            if "access_log" not in data:
                access_log = None
            path = tmp_path / f"fwdproxy-{number}.yaml"
            path.write_text(yaml.safe_dump(data), encoding="utf-8")
            command += ["--config", str(path)]
        command += list(args)
        proxy = ProxyProcess(command, cwd=tmp_path, access_log=access_log)
        started.append(proxy)
        proxy.wait_until_listening()
        return proxy

    yield start
    problems = []
    for proxy in started:
        code = proxy.stop()
        if code != 0:
            problems.append(f"fwdproxy exited {code} after SIGTERM; stderr:\n{proxy.stderr}")
        elif "Traceback" in proxy.stderr:
            problems.append(f"fwdproxy printed a traceback; stderr:\n{proxy.stderr}")
    assert not problems, "\n\n".join(problems)


@pytest.fixture
def proxy(start_proxy: StartProxy, tls_origin: Origin) -> ProxyProcess:
    """A proxy with the e2e config, checking the ClientHello of every tunnel to the TLS
    origin (connect_sni, as for port 443): each HTTPS client's real handshake goes through
    the check."""
    return start_proxy({"connect_sni": {"ports": [tls_origin.port]}})


def require(program: str) -> str:
    """The path of `program`, or skip the test saying what is missing."""
    path = shutil.which(program)
    if path is None:
        pytest.skip(f"{program} is not installed (not found on PATH)")
    return path
