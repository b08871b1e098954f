"""Capture real TLS ClientHellos on loopback for tests/data/clienthellos/.

usage: .venv/bin/python scripts/capture_clienthellos.py [--out DIR]

A listener on 127.0.0.1 takes one connection per client, reads until the bytes hold a
whole ClientHello (fwdproxy.proxy.clienthello decides) and closes; the client's handshake
then fails, as intended. Each client is told that the name resolves to 127.0.0.1, so no
traffic leaves the machine: curl with --resolve, Chromium with --host-resolver-rules,
Python's ssl with a socket to 127.0.0.1 and server_hostname. Clients that are not
installed are skipped with a note. Each capture is written as NAME.bin (the bytes) and
NAME.name (the server name asked for, empty for none).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fwdproxy.proxy.clienthello import NEED_MORE, NotClientHello, read_client_hello  # noqa: E402

TIMEOUT = 20.0


def _capture(run_client: Callable[[int], None]) -> bytes:
    """Start a listener, run the client against its port, return the hello it sent."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT)
    port = listener.getsockname()[1]
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        conn.settimeout(TIMEOUT)
        data = b""
        with conn:
            while (chunk := conn.recv(65536)):
                data += chunk
                try:
                    if read_client_hello(data) is not NEED_MORE:
                        break
                except NotClientHello:
                    break
        got.append(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        run_client(port)
    finally:
        thread.join(TIMEOUT)
        listener.close()
    if not got:
        raise RuntimeError("no connection came")
    found = read_client_hello(got[0])
    if found is NEED_MORE:
        raise RuntimeError("the connection closed before a whole ClientHello")
    return got[0][:found.size]  # type: ignore[union-attr]


def _curl(name: str) -> Callable[[int], None]:
    def run(port: int) -> None:
        subprocess.run(["curl", "-s", "-o", "/dev/null", "--max-time", "10",
                        "--resolve", f"{name}:{port}:127.0.0.1", f"https://{name}:{port}/"],
                       check=False)
    return run


def _python(name: str | None) -> Callable[[int], None]:
    def run(port: int) -> None:
        context = ssl.create_default_context()
        if name is None:
            context.check_hostname = False
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            try:
                with context.wrap_socket(sock, server_hostname=name):
                    pass
            except (OSError, ssl.SSLError):
                pass  # the listener closes after the hello: the handshake cannot finish
    return run


def _chromium(binary: str, name: str) -> Callable[[int], None]:
    def run(port: int) -> None:
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu",
                            "--disable-background-networking", "--disable-component-update",
                            f"--user-data-dir={profile}", "--no-first-run",
                            f"--host-resolver-rules=MAP {name} 127.0.0.1",
                            "--timeout=5000", "--dump-dom", f"https://{name}:{port}/"],
                           check=False, capture_output=True, timeout=60)
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "clienthellos")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    clients: list[tuple[str, str | None, Callable[[int], None]]] = [
        ("python-sni", "capture.example", _python("capture.example")),
        ("python-nosni", None, _python(None)),
    ]
    if shutil.which("curl"):
        clients.append(("curl-sni", "capture.example", _curl("capture.example")))
    else:
        print("curl: not installed, skipped")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium:
        clients.append(("chromium-sni", "capture.example", _chromium(chromium, "capture.example")))
    else:
        print("chromium: not installed, skipped")
    for label, name, run in clients:
        data = _capture(run)
        (args.out / f"{label}.bin").write_bytes(data)
        (args.out / f"{label}.name").write_text((name or "") + "\n")
        print(f"{label}: {len(data)} bytes, server name {name!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
