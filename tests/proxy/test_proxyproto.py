"""proxyproto: PROXY protocol v1 and v2 headers, as HAProxy sends them."""

from __future__ import annotations

import ipaddress
import struct

import pytest
import trio

from fwdproxy import config
from fwdproxy.errors import ConfigError
from fwdproxy.proxy.proxyproto import V2_SIGNATURE, ProxyHeaderError, parse
from tests.conftest import log_fields, send_raw, settled_log


def v2(command: int, family: int, body: bytes) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


V4_BODY = bytes([10, 1, 2, 3]) + bytes([192, 0, 2, 1]) + struct.pack("!HH", 51000, 3128)
V6_BODY = (ipaddress.IPv6Address("2001:db8::7").packed + ipaddress.IPv6Address("::1").packed
           + struct.pack("!HH", 40000, 3128))


@pytest.mark.parametrize(("data", "client", "port", "length"), [
    (b"PROXY TCP4 10.1.2.3 192.0.2.1 51000 3128\r\nGET", "10.1.2.3", 51000, 42),
    (b"PROXY TCP6 2001:db8::7 ::1 40000 3128\r\n", "2001:db8::7", 40000, 39),
    (b"PROXY UNKNOWN\r\n", None, 0, 15),
    (b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", None, 0, 59),
    (v2(1, 0x11, V4_BODY) + b"GET /", "10.1.2.3", 51000, 28),
    (v2(1, 0x21, V6_BODY), "2001:db8::7", 40000, 52),
    (v2(1, 0x11, V4_BODY + b"\x03\x00\x04abcd"), "10.1.2.3", 51000, 35),  # a TLV is skipped
    (v2(0, 0x00, b""), None, 0, 16),  # LOCAL: HAProxy's own health check
    (v2(1, 0x00, b""), None, 0, 16),  # UNSPEC
    (b"PROXY TCP6 ::ffff:10.0.0.9 ::1 1 2\r\n", "10.0.0.9", 1, 36),
])
def test_headers(data: bytes, client: str | None, port: int, length: int) -> None:
    header = parse(data)
    assert header is not None
    assert (str(header.client) if header.client else None, header.client_port, header.length) == (
        client, port, length)


@pytest.mark.parametrize("data", [
    b"", b"PRO", b"PROXY TCP4 10.1.2.3", b"\r\n\r\n\x00", V2_SIGNATURE + b"\x21\x11\x00\x0c\x0a",
])
def test_incomplete_headers_ask_for_more(data: bytes) -> None:
    assert parse(data) is None


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\n\r\n",
    b"PROXY TCP4 10.1.2.3 192.0.2.1 51000\r\n",
    b"PROXY TCP4 not-an-ip 192.0.2.1 1 2\r\n",
    b"PROXY TCP4 2001:db8::1 192.0.2.1 1 2\r\n",  # TCP4 with an IPv6 address
    b"PROXY TCP4 10.1.2.3 192.0.2.1 99999 2\r\n",
    b"PROXY TCP4 10.1.2.3 192.0.2.1 1 99999\r\n",
    b"PROXY TCP4 10.1.2.3 192.0.2.1 +80 2\r\n",   # int() takes these; the spec does not
    b"PROXY TCP4 10.1.2.3 192.0.2.1 8_0 2\r\n",
    b"PROXY TCP4 10.1.2.3 192.0.2.1 000000080 2\r\n",
    b"PROXY TCP4 " + b"1" * 120,                  # no CRLF within 107 bytes
    b"\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x00",
    v2(1, 0x31, b"\x00" * 216),                   # AF_UNIX: no client address to use
    V2_SIGNATURE + b"\x31\x11\x00\x00",           # version 3
])
def test_malformed_headers_are_refused(data: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        parse(data)


# -- through the proxy -------------------------------------------------------------------


async def test_real_client_from_the_header_drives_clients_and_logs(start_proxy,
                                                                    start_http_origin) -> None:
    origin = await start_http_origin()
    proxy = await start_proxy(listen=[{"address": "127.0.0.1:0", "proxy_protocol": True}],
                              trusted_proxies=["127.0.0.0/8"], clients=["10.0.0.0/8"])
    request = (f"GET http://origin.test:{origin.port}/x HTTP/1.1\r\nHost: origin.test\r\n"
               "Connection: close\r\n\r\n").encode()
    with trio.fail_after(10):
        answer = await send_raw(proxy.port, b"PROXY TCP4 10.1.2.3 127.0.0.1 5000 80\r\n" + request)
    assert answer.startswith(b"HTTP/1.1 200 ")
    with trio.fail_after(10):  # the same request claiming a client outside `clients`
        refused = await send_raw(proxy.port, b"PROXY TCP4 192.0.2.9 127.0.0.1 5000 80\r\n" + request)
    assert refused.startswith(b"HTTP/1.1 403 ")
    lines = await settled_log(proxy)
    assert [log_fields(line)["client"] for line in lines] == ["10.1.2.3", "192.0.2.9"]


async def test_no_header_or_untrusted_peer_is_refused(start_proxy, start_http_origin) -> None:
    origin = await start_http_origin()
    request = f"GET http://origin.test:{origin.port}/ HTTP/1.1\r\nHost: o\r\n\r\n".encode()
    proxy = await start_proxy(listen=[{"address": "127.0.0.1:0", "proxy_protocol": True}],
                              trusted_proxies=["127.0.0.0/8"])
    with trio.fail_after(10):
        answer = await send_raw(proxy.port, request)  # no PROXY header
    assert answer.startswith(b"HTTP/1.1 400 ")
    untrusting = await start_proxy(listen=[{"address": "127.0.0.1:0", "proxy_protocol": True}],
                                   trusted_proxies=["192.0.2.0/24"])
    with trio.fail_after(10):
        answer = await send_raw(untrusting.port, b"PROXY TCP4 10.1.2.3 127.0.0.1 5 6\r\n" + request)
    assert answer.startswith(b"HTTP/1.1 403 ")
    assert b"trusted_proxies" in answer
    assert origin.requests == []


async def test_local_header_keeps_the_peer_for_health_checks(start_proxy) -> None:
    proxy = await start_proxy(listen=[{"address": "127.0.0.1:0", "proxy_protocol": True}],
                              trusted_proxies=["127.0.0.0/8"])
    local = V2_SIGNATURE + b"\x20\x00\x00\x00"
    with trio.fail_after(10):
        answer = await send_raw(proxy.port, local + b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:"
                                + str(proxy.port).encode() + b"\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"ok\n")


def test_proxy_protocol_needs_trusted_proxies() -> None:
    with pytest.raises(ConfigError, match="trusted_proxies"):
        config.from_mapping({"listen": [{"address": "3128", "proxy_protocol": True}]}, "test")

