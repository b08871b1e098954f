"""A real browser through the proxy: headless Chromium loads a page over plain HTTP, opens a
WebSocket (browsers tunnel ws:// with CONNECT), and loads a page over HTTPS (CONNECT + TLS).

Chromium is pointed at the proxy with a PAC file that sends only `*.test` through it, and its
own resolver is told to answer NOTFOUND for every other name, so nothing it tries leaves
loopback (its update and sign-in checks fail locally instead).
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Origin, ProxyProcess, client_env, require

pytestmark = pytest.mark.e2e

# Loading a page, the WebSocket round trip and the report fetch take well under a second;
# a cold Chromium start takes a few. Past this the browser is stuck.
BROWSER_TIMEOUT = 45.0
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return name
    return require("chromium")


def _recv_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _serve_websocket(conn: socket.socket) -> None:
    """A minimal RFC 6455 echo: handshake, then echo text frames until close."""
    with conn:
        conn.settimeout(BROWSER_TIMEOUT)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                return
            head += chunk
        key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:"))
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        while True:
            first, second = _recv_exactly(conn, 2)
            opcode, length = first & 0x0F, second & 0x7F
            if length == 126:
                length = struct.unpack("!H", _recv_exactly(conn, 2))[0]
            elif length == 127:
                length = struct.unpack("!Q", _recv_exactly(conn, 8))[0]
            mask = _recv_exactly(conn, 4) if second & 0x80 else b"\0\0\0\0"
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(_recv_exactly(conn, length)))
            if opcode == 0x8:  # close
                conn.sendall(b"\x88\x00")
                return
            if opcode == 0x1 and length < 126:
                conn.sendall(bytes([0x81, length]) + payload)


@pytest.fixture
def ws_origin() -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=_serve_websocket, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    listener.close()


def chromium_command(browser: str, proxy: ProxyProcess, pac_url: str, profile: Path) -> list[str]:
    return [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
        f"--proxy-pac-url={pac_url}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--ignore-certificate-errors",  # the TLS origin's CA is trustme's, not the system's
    ]


def run_browser_until(command: list[str], done: Callable[[], bool]) -> None:
    """Run the browser `command` until `done()` (or BROWSER_TIMEOUT, or it exits), then
    end it: the process we started, by its handle."""
    process = subprocess.Popen(command, env=client_env(), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + BROWSER_TIMEOUT
        while not done() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)  # polling another process (the browser), bounded by the deadline
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def write_pac(site: Path, proxy: ProxyProcess) -> None:
    (site / "proxy.pac").write_text(
        "function FindProxyForURL(url, host) {\n"
        f'  if (dnsDomainIs(host, ".test")) return "PROXY 127.0.0.1:{proxy.port}";\n'
        '  return "DIRECT";\n}\n'
    )


def test_browser_page_and_websocket_through_proxy(
    proxy: ProxyProcess, http_origin: Origin, ws_origin: int, site: Path, tmp_path: Path
) -> None:
    browser = find_chromium()
    write_pac(site, proxy)
    (site / "page.html").write_text(f"""<!DOCTYPE html><html><body><p>page</p><script>
const ws = new WebSocket("ws://origin.test:{ws_origin}/");
ws.onopen = () => ws.send("hello-through-proxy");
ws.onmessage = (e) => fetch("/report?ws=" + encodeURIComponent(e.data));
ws.onerror = () => fetch("/report?ws=error");
</script></body></html>""")
    pac_url = f"http://127.0.0.1:{http_origin.port}/proxy.pac"
    command = chromium_command(browser, proxy, pac_url, tmp_path / "profile")
    def reported() -> list[str]:
        return [r.path for r in http_origin.requests if r.path.startswith("/report")]

    run_browser_until([*command, http_origin.url("/page.html")], lambda: bool(reported()))
    reports = reported()
    assert reports == ["/report?ws=hello-through-proxy"], (
        f"requests seen: {[r.path for r in http_origin.requests]}")
    proxy.wait_for_log("GET", http_origin.url("/page.html"), 200)
    proxy.wait_for_log("CONNECT", f"origin.test:{ws_origin}", 200)


def test_browser_https_page_through_proxy(
    proxy: ProxyProcess, http_origin: Origin, tls_origin: Origin, site: Path, tmp_path: Path
) -> None:
    browser = find_chromium()
    write_pac(site, proxy)
    (site / "tls.html").write_text("<!DOCTYPE html><html><body><p id=s>served over TLS</p></body></html>")
    pac_url = f"http://127.0.0.1:{http_origin.port}/proxy.pac"
    command = chromium_command(browser, proxy, pac_url, tmp_path / "profile")
    result = subprocess.run([*command, "--dump-dom", tls_origin.url("/tls.html")],
                            env=client_env(), capture_output=True, text=True,
                            timeout=BROWSER_TIMEOUT, stdin=subprocess.DEVNULL, check=False)
    assert "served over TLS" in result.stdout
    assert "/tls.html" in [r.path for r in tls_origin.requests]
    # Chromium's ClientHello (GREASE, an ECH extension, post-quantum key shares) was read
    # and judged, and the handshake completed: the check relayed it unchanged.
    proxy.wait_for_log("CONNECT", tls_origin.authority, 200)
    deadline = time.monotonic() + BROWSER_TIMEOUT
    needle = f" CONNECT {tls_origin.authority} 200 "
    while not any(needle in line and line.endswith(" sni=origin.test") for line in proxy.log_lines()):
        assert time.monotonic() < deadline, proxy.log_lines()  # (a preconnect may log first)
        time.sleep(0.1)  # polling the log file another process writes, bounded by the deadline


def test_browser_uses_the_proxys_own_pac_file(
    start_proxy, http_origin: Origin, site: Path, tmp_path: Path
) -> None:
    """Chromium configured only with --proxy-pac-url pointing at the proxy's /proxy.pac.

    The generated PAC sends everything but direct domains to the proxy (no DIRECT
    fallback), so this proxy denies every name but *.test by policy: Chromium's own
    background requests are refused by name and never make the proxy resolve anything.
    """
    browser = find_chromium()
    rules = tmp_path / "rules"
    (rules / "allow").mkdir(parents=True)
    (rules / "allow" / "lab.txt").write_text("test\n")
    (rules / "policy.yaml").write_text(
        "policies:\n  - name: lab\n    clients: [127.0.0.0/8]\n    default: deny\n")
    proxy = start_proxy({"rules": str(rules)})
    (site / "pac-page.html").write_text("<!DOCTYPE html><p id=s>through the PAC</p>")
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
        f"--proxy-pac-url=http://127.0.0.1:{proxy.port}/proxy.pac",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--dump-dom", http_origin.url("/pac-page.html"),
    ]
    result = subprocess.run(command, env=client_env(), capture_output=True, text=True,
                            timeout=BROWSER_TIMEOUT, stdin=subprocess.DEVNULL, check=False)
    assert "through the PAC" in result.stdout
    assert "/pac-page.html" in [r.path for r in http_origin.requests]
    proxy.wait_for_log("GET", "/proxy.pac", 200)  # Chromium fetched it directly
    proxy.wait_for_log("GET", http_origin.url("/pac-page.html"), 200)
