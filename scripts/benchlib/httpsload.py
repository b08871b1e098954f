"""W6's load generator: HTTPS as offices use it, a new connection (and TLS handshake) each time.

Each iteration of a client: a new TCP connection (to the proxy, or straight to the TLS
origin for "direct"), `CONNECT 127.0.0.1:T` and its 200 through a proxy, a full TLS
handshake with the origin (server name `localhost`, the certificate checked against the
bench's CA; no session is offered back, so none is resumed: `session_reused` is counted
and must stay 0), one `GET /1k`, the whole response read (status 200, 1,024 bytes), and
close. Blocking sockets in threads: the handshake and the reads run in C with the GIL
released, so a client costs little Python. The clients are spread over a few processes
(a `spawn` multiprocessing pool, started once, on the load core that wrk uses: the
processes inherit this script's pinning). Every process runs its clients for the same
window (a common start time, a fixed length); only iterations that ended inside the
window count, and every socket has a 5 s time-out, so a round is bounded in time.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.pool
import resource
import socket
import ssl
import threading
import time
from typing import Any

TIMEOUT = 5.0
BODY_BYTES = 1024
# The name the handshake sends (SNI) and checks: the certificate has it, and a proxy that
# judges a tunnel's ClientHello has a name to judge (no SNI is sent for an address).
SERVER_NAME = "localhost"


def _read_head(sock: socket.socket | ssl.SSLSocket, buf: bytearray) -> bytes:
    """Read until the end of a head; the head is returned, what follows stays in `buf`."""
    while (end := buf.find(b"\r\n\r\n")) < 0:
        if len(buf) > 65536:
            raise ValueError("head too large")
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the end of the head")
        buf += chunk
    head = bytes(buf[:end])
    del buf[:end + 4]
    return head


def _status(head: bytes) -> int:
    return int(head.split(b" ", 2)[1])


def _first_line(head: bytes) -> bytes:
    return head.split(b"\r\n", 1)[0]


def iteration(job: dict[str, Any], context: ssl.SSLContext) -> tuple[float, float, float, bool]:
    """One connection: (TCP connect, set-up = connect + CONNECT + handshake, total) in
    seconds, and whether the TLS session was resumed."""
    began = time.perf_counter()
    port = job["proxy_port"] or job["origin_port"]
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    tls: ssl.SSLSocket | None = None
    try:
        connected = time.perf_counter()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray()
        if job["proxy_port"]:
            sock.sendall(job["connect"])
            head = _read_head(sock, buf)
            if _status(head) != 200:
                raise ConnectionError(f"CONNECT answered {_first_line(head)!r}")
            if buf:
                raise ConnectionError("the proxy sent bytes after its 200 before the handshake")
        tls = context.wrap_socket(sock, server_hostname=SERVER_NAME)
        set_up = time.perf_counter()
        tls.sendall(job["get"])
        head = _read_head(tls, buf)
        if _status(head) != 200:
            raise ConnectionError(f"GET answered {_first_line(head)!r}")
        length = BODY_BYTES
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(buf) < length:
            chunk = tls.recv(65536)
            if not chunk:
                raise ConnectionError("closed in the middle of the body")
            buf += chunk
        if len(buf) != length or length != BODY_BYTES:
            raise ConnectionError(f"body of {len(buf)} bytes, {length} announced")
        ended = time.perf_counter()
        return connected - began, set_up - began, ended - began, bool(tls.session_reused)
    finally:
        if tls is not None:
            tls.close()
        else:
            sock.close()


def run_clients(job: dict[str, Any]) -> dict[str, Any]:
    """`job["threads"]` clients in this process, from `start_at` for `seconds` (wall clock)."""
    context = ssl.create_default_context(cafile=job["ca"])
    start_at, seconds = float(job["start_at"]), float(job["seconds"])
    end = start_at + seconds
    lock = threading.Lock()
    found: dict[str, Any] = {"count": 0, "connect": [], "setup": [], "total": [], "errors": 0,
                             "error": "", "reused": 0, "late": 0, "tls": ""}

    def client() -> None:
        connect_s: list[float] = []
        setup_s: list[float] = []
        total_s: list[float] = []
        errors, first_error, reused, late = 0, "", 0, 0
        while time.time() < start_at:
            time.sleep(min(0.01, max(0.0, start_at - time.time())))
        while time.time() < end:
            try:
                connect, setup, total, resumed = iteration(job, context)
            except (OSError, ValueError, IndexError) as exc:
                errors += 1
                first_error = first_error or f"{type(exc).__name__}: {exc}"
                time.sleep(0.01)
                continue
            if time.time() > end:
                late += 1  # ended after the window: not counted
                continue
            connect_s.append(connect)
            setup_s.append(setup)
            total_s.append(total)
            reused += resumed
        with lock:
            found["count"] += len(total_s)
            found["connect"] += connect_s
            found["setup"] += setup_s
            found["total"] += total_s
            found["errors"] += errors
            found["error"] = found["error"] or first_error
            found["reused"] += reused
            found["late"] += late

    before = resource.getrusage(resource.RUSAGE_SELF)
    threads = [threading.Thread(target=client, daemon=True) for _ in range(int(job["threads"]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 30)
    after = resource.getrusage(resource.RUSAGE_SELF)
    found["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    found["alive_threads"] = sum(thread.is_alive() for thread in threads)
    if job.get("describe"):  # what was negotiated (one more connection, after the window)
        with contextlib.suppress(OSError, ValueError):
            found["tls"] = _negotiated(job, context)
    return found


def _negotiated(job: dict[str, Any], context: ssl.SSLContext) -> str:
    port = job["proxy_port"] or job["origin_port"]
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        buf = bytearray()
        if job["proxy_port"]:
            sock.sendall(job["connect"])
            _read_head(sock, buf)
        with context.wrap_socket(sock, server_hostname=SERVER_NAME) as tls:
            cipher = tls.cipher()
            return f"{tls.version()} {cipher[0] if cipher else '?'}"


def percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


class HttpsLoad:
    """The pool of client processes, started once for all of W6's rounds."""

    def __init__(self, processes: int, clients: int) -> None:
        self.processes = processes
        self.clients = clients
        self.pool: multiprocessing.pool.Pool = multiprocessing.get_context("spawn").Pool(processes)

    def close(self) -> None:
        self.pool.terminate()
        self.pool.join()

    def round(self, *, proxy_port: int | None, origin_port: int, ca: str, seconds: float) -> dict[str, Any]:
        """One round; connections/s, p50/p99 of set-up and total (ms), client CPU."""
        connect = (f"CONNECT 127.0.0.1:{origin_port} HTTP/1.1\r\nHost: 127.0.0.1:{origin_port}\r\n"
                   "User-Agent: fwdproxy-bench\r\n\r\n").encode()
        get = (f"GET /1k HTTP/1.1\r\nHost: 127.0.0.1:{origin_port}\r\nUser-Agent: fwdproxy-bench\r\n"
               "Accept: */*\r\n\r\n").encode()
        start_at = time.time() + 0.3
        per = [self.clients // self.processes + (i < self.clients % self.processes)
               for i in range(self.processes)]
        jobs = [{"threads": n, "proxy_port": proxy_port, "origin_port": origin_port, "ca": ca,
                 "connect": connect, "get": get, "start_at": start_at, "seconds": seconds,
                 "describe": index == 0}
                for index, n in enumerate(per) if n]
        results = self.pool.map_async(run_clients, jobs).get(timeout=seconds + 90)
        count = sum(r["count"] for r in results)
        setup = [v for r in results for v in r["setup"]]
        total = [v for r in results for v in r["total"]]
        connect_s = [v for r in results for v in r["connect"]]
        figures: dict[str, Any] = {
            "connections": count, "cps": round(count / seconds, 1),
            "errors": sum(r["errors"] for r in results),
            "resumed": sum(r["reused"] for r in results),
            "late": sum(r["late"] for r in results),
            "client_cpu_s": round(sum(r["cpu_s"] for r in results), 3),
            "tls": next((r["tls"] for r in results if r["tls"]), ""),
        }
        for name, values in (("connect", connect_s), ("setup", setup), ("total", total)):
            for pct in (50, 99):
                value = percentile(values, pct)
                if value is not None:
                    figures[f"{name}_p{pct}_ms"] = round(value * 1000, 3)
        if figures["errors"]:
            figures["first_error"] = next((r["error"] for r in results if r["error"]), "")
        if not count:
            figures["error"] = f"no connection completed: {figures.get('first_error', '')}"
        return figures
