"""connect_sni through a real proxy: a tunnel's ClientHello is judged before a byte of it
reaches the origin.

The origins here are raw TCP servers on loopback that record every byte they receive, so
each test can tell that a refused tunnel relayed nothing and an allowed one relayed the
client's bytes exactly; a TLS origin (trustme) shows that real handshakes complete. The
test config maps origin.test and other.test to 127.0.0.1; denied names are in a deny list
written to tmp_path. `ports: ["1-65535"]` makes the check apply to the origins' ports.
"""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import h11
import pytest
import trio
import trio.testing

from fwdproxy.proxy.clienthello import read_client_hello
from tests.conftest import HttpClient, Proxy, log_fields, settled_log
from tests.proxy.test_clienthello import GREASE, ext, hello_of, python_hello, sni
from tests.proxy.test_tunnel import connect_head, open_tunnel, read_to_eof

StartProxy = Callable[..., Awaitable[Proxy]]
StartOrigin = Callable[[Callable[[trio.SocketStream], Awaitable[None]]], Awaitable[int]]

DENY = {"deny/bad.txt": "# lists\ndenied.test\n"}
ALL_PORTS = ["1-65535"]


class Recorder:
    """A raw origin that keeps every byte each connection sent it."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.connections = 0

    async def handler(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        data = b""
        try:
            while chunk := await stream.receive_some(65536):
                data += chunk
                await stream.send_all(b"echo:" + chunk)
        except trio.BrokenResourceError:
            pass
        self.received.append(data)


async def start(start_proxy: StartProxy, tmp_path: Path, **sni_settings: Any) -> Proxy:
    rules = tmp_path / "rules"
    for name, text in DENY.items():
        (rules / name).parent.mkdir(parents=True, exist_ok=True)
        (rules / name).write_text(text)
    return await start_proxy(rules=str(rules), connect_sni={"ports": ALL_PORTS, **sni_settings},
                             hosts={"origin.test": "127.0.0.1", "other.test": "127.0.0.1",
                                    "www.site.test": "127.0.0.1", "api.site.test": "127.0.0.1"})


async def send_through(proxy: Proxy, authority: str, payload: bytes) -> tuple[bytes, bytes]:
    """CONNECT, send `payload` once the 200 came, and read to EOF: (head, tunnel bytes)."""
    stream, head, rest = await open_tunnel(proxy.port, authority)
    assert head.startswith(b"HTTP/1.1 200 "), head
    await stream.send_all(payload)
    with trio.fail_after(10):
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.send_eof()
        try:
            answer = rest + await read_to_eof(stream)
        except trio.BrokenResourceError:
            answer = rest
    await stream.aclose()
    return head, answer


ACCESS_DENIED = b"\x15\x03\x03\x00\x02\x02\x31"


async def only_line(proxy: Proxy) -> dict[str, str]:
    [line] = await settled_log(proxy)
    fields = log_fields(line)
    fields["line"] = line
    return fields


# -- refused: nothing reaches the origin ----------------------------------------------------


async def refused(start_proxy: StartProxy, start_origin: StartOrigin, tmp_path: Path,
                  host: str, hello: bytes) -> dict[str, str]:
    """A tunnel to `host` whose first bytes are `hello`, refused: the client got the TLS
    alert and the origin nothing. Its log line, by field."""
    origin = Recorder()
    port = await start_origin(origin.handler)
    proxy = await start(start_proxy, tmp_path)
    _, answer = await send_through(proxy, f"{host}:{port}", hello)
    assert answer == ACCESS_DENIED  # curl: "tlsv1 alert access denied"
    await trio.testing.wait_all_tasks_blocked()
    assert origin.received == [b""]  # connected, and closed before a byte went out
    fields = await only_line(proxy)
    assert fields["verdict"] == "deny"
    return fields


async def test_connect_by_address_with_a_denied_name_is_refused(
        start_proxy: StartProxy, start_origin: StartOrigin, tmp_path: Path) -> None:
    fields = await refused(start_proxy, start_origin, tmp_path, "127.0.0.1", hello_of(sni(b"denied.test")))
    assert fields["source"] == "deny/bad.txt:2"
    assert fields["line"].endswith(" sni=denied.test")
    assert "tunnel refused" in fields["detail"]


async def test_fronting_a_denied_name_behind_an_allowed_one_is_refused(
        start_proxy: StartProxy, start_origin: StartOrigin, tmp_path: Path) -> None:
    fields = await refused(start_proxy, start_origin, tmp_path, "origin.test", hello_of(sni(b"other.test")))
    assert fields["source"] == "config:connect_sni.match"
    assert "domain fronting" in fields["detail"]


async def test_a_hello_in_pieces_and_records_is_judged_whole(
        start_proxy: StartProxy, start_origin: StartOrigin, tmp_path: Path) -> None:
    origin = Recorder()
    port = await start_origin(origin.handler)
    proxy = await start(start_proxy, tmp_path)
    message = hello_of(ext(GREASE, b""), sni(b"denied.test"))
    stream, _, _ = await open_tunnel(proxy.port, f"127.0.0.1:{port}")
    for at in range(0, len(message), 7):  # seven bytes per send, each waited for
        await stream.send_all(message[at:at + 7])
        await trio.testing.wait_all_tasks_blocked()
    assert await read_to_eof(stream) == ACCESS_DENIED
    await stream.aclose()
    await trio.testing.wait_all_tasks_blocked()
    assert origin.received == [b""]


# -- allowed: the bytes arrive exactly as sent -------------------------------------------------


@pytest.mark.parametrize("authority_host", ["origin.test", "127.0.0.1"])
async def test_an_allowed_hello_is_relayed_byte_for_byte(
        start_proxy: StartProxy, start_origin: StartOrigin, tmp_path: Path,
        authority_host: str) -> None:
    origin = Recorder()
    port = await start_origin(origin.handler)
    proxy = await start(start_proxy, tmp_path)
    hello = python_hello("origin.test")
    _, answer = await send_through(proxy, f"{authority_host}:{port}", hello + b"more after it")
    assert answer.startswith(b"echo:")
    await trio.testing.wait_all_tasks_blocked()
    assert origin.received == [hello + b"more after it"]
    fields = await only_line(proxy)
    assert fields["verdict"] == "allow"
    assert fields["line"].endswith(" sni=origin.test")
    sent = len(connect_head(f"{authority_host}:{port}")) + len(hello + b"more after it")
    assert fields["up"] == str(sent)  # every byte counted once


async def test_real_tls_handshake_through_a_checked_tunnel(
        start_proxy: StartProxy, start_origin: StartOrigin, tmp_path: Path,
        tls_server_context: ssl.SSLContext, tls_client_context: ssl.SSLContext) -> None:
    first: list[bytes] = []

    async def tls_origin(stream: trio.SocketStream) -> None:
        # A recording layer under the TLS server: the first bytes must be the client's hello.
        class Tap(trio.abc.Stream):
            async def receive_some(self, max_bytes: int | None = None) -> bytes:
                data = await stream.receive_some(max_bytes)
                first.append(data)
                return data

            async def send_all(self, data: bytes | bytearray | memoryview) -> None:
                await stream.send_all(data)

            async def wait_send_all_might_not_block(self) -> None:
                await stream.wait_send_all_might_not_block()

            async def aclose(self) -> None:
                await stream.aclose()

        tls = trio.SSLStream(Tap(), tls_server_context, server_side=True)
        request = b""
        while b"\r\n\r\n" not in request:
            request += await tls.receive_some(65536)
        await tls.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await tls.aclose()

    port = await start_origin(tls_origin)
    proxy = await start(start_proxy, tmp_path)
    stream, _, _ = await open_tunnel(proxy.port, f"origin.test:{port}")
    tls = trio.SSLStream(stream, tls_client_context, server_hostname="origin.test")
    await tls.do_handshake()
    client = HttpClient(tls)  # type: ignore[arg-type]
    await client.send(h11.Request(method="GET", target="/", headers=[("Host", "origin.test")]),
                      h11.EndOfMessage())
    response, body = await client.response()
    assert (response.status_code, body) == (200, b"ok")
    await tls.aclose()
    found = read_client_hello(b"".join(first))
    assert getattr(found, "server_name", None) == "origin.test"


async def test_site_match_allows_a_sibling_name_and_judges_it(
        start_proxy: StartProxy, start_origin: StartOrigin, tmp_path: Path) -> None:
    origin = Recorder()
    port = await start_origin(origin.handler)
    proxy = await start(start_proxy, tmp_path, match="site")
    _, answer = await send_through(proxy, f"www.site.test:{port}", hello_of(sni(b"api.site.test")))
    assert answer.startswith(b"echo:")
    _, refused = await send_through(proxy, f"www.site.test:{port}", hello_of(sni(b"origin.test")))
    assert refused == ACCESS_DENIED


# -- the configurable cases ------------------------------------------------------------------


@pytest.mark.parametrize(("settings", "payload", "relayed", "source"), [
    ({}, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", False, "config:connect_sni.not_tls"),
    ({"not_tls": "allow"}, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", True, "default"),
    ({}, python_hello(None), False, "config:connect_sni.missing"),
    ({"missing": "allow"}, python_hello(None), True, "default"),
    ({}, hello_of(sni(b"origin.test"), ext(0xFE0D, b"\x00" * 8)), True, "default"),
    ({}, hello_of(sni(b"denied.test"), ext(0xFE0D, b"\x00" * 8)), False, "deny/bad.txt:2"),
    ({"ech": "refuse"}, hello_of(sni(b"origin.test"), ext(0xFE0D, b"\x00" * 8)), False,
     "config:connect_sni.ech"),
    ({"mode": "log"}, hello_of(sni(b"denied.test")), True, "default"),
    ({"mode": "off"}, b"not tls at all", True, "default"),
    ({"ports": [1]}, b"not tls at all", True, "default"),
], ids=["not-tls-refused", "not-tls-allowed", "no-sni-refused", "no-sni-allowed",
        "ech-outer-name-allowed", "ech-outer-name-denied", "ech-refused", "log-only",
        "off", "other-port"])
async def test_outcomes_follow_the_settings(
        start_proxy: StartProxy, start_origin: StartOrigin, tmp_path: Path,
        settings: dict[str, Any], payload: bytes, relayed: bool, source: str) -> None:
    origin = Recorder()
    port = await start_origin(origin.handler)
    proxy = await start(start_proxy, tmp_path, **settings)
    _, answer = await send_through(proxy, f"127.0.0.1:{port}", payload)
    await trio.testing.wait_all_tasks_blocked()
    assert origin.received == [payload if relayed else b""]
    assert answer.startswith(b"echo:") if relayed else not answer.startswith(b"echo:")
    fields = await only_line(proxy)
    assert fields["source"] == source
    if settings.get("mode") == "log":
        assert "would refuse" in fields["detail"] and "deny/bad.txt:2" in fields["detail"]
    if "allow" in settings.values():  # the tunnel is the CONNECT's; the detail names the setting
        assert ("allowed" in fields["detail"] and "plain text" in fields["detail"]) or \
            "names no server" in fields["detail"]


async def test_a_client_that_sends_no_hello_is_closed_after_the_time_limit(
        start_proxy: StartProxy, start_origin: StartOrigin, tmp_path: Path,
        autojump_clock: trio.testing.MockClock) -> None:
    origin = Recorder()
    port = await start_origin(origin.handler)
    proxy = await start(start_proxy, tmp_path)
    stream, _, _ = await open_tunnel(proxy.port, f"127.0.0.1:{port}")
    began = trio.current_time()
    assert await read_to_eof(stream) == b""
    assert trio.current_time() - began == pytest.approx(10, abs=0.5)
    await stream.aclose()
    fields = await only_line(proxy)
    assert fields["source"] == "config:connect_sni.not_tls"
    assert "within 10 s" in fields["detail"]


async def test_json_log_has_the_server_name(
        start_proxy: StartProxy, start_origin: StartOrigin, tmp_path: Path) -> None:
    origin = Recorder()
    port = await start_origin(origin.handler)
    rules = tmp_path / "rules"
    (rules / "deny").mkdir(parents=True)
    (rules / "deny" / "bad.txt").write_text("denied.test\n")
    log = tmp_path / "access.json"
    proxy = await start_proxy(rules=str(rules), connect_sni={"ports": ALL_PORTS},
                              access_log={"path": str(log), "format": "json"})
    await send_through(proxy, f"127.0.0.1:{port}", hello_of(sni(b"denied.test")))
    await trio.testing.wait_all_tasks_blocked()
    proxy.running.context.log.flush()
    [record] = [json.loads(line) for line in log.read_text().splitlines()]
    assert (record["sni"], record["verdict"], record["source"]) == ("denied.test", "deny", "deny/bad.txt:1")
