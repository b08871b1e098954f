"""The origin the proxies forward to (nginx, else a built-in asyncio server, on ports A, B
and TLS T), a small blocking HTTP/1.1 client, and the correctness guard run on each proxy."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .machine import tool_version
from .processes import ROOT, Processes, free_port, pinned, wait_ports, which

GUARD_FLAG = "relays later requests to the first origin"


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
            # P-256, as trustme makes: an RSA key would make the origin's handshakes (and
            # W6's load core) several times dearer than in a run with trustme.
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "2",
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
        command = [sys.executable, str(ROOT / "scripts" / "bench.py"), "_origin", spec]  # see cli.main
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
