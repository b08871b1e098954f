"""The built-in safe defaults, through a real proxy: no loopback, link-local (metadata),
own-machine or own-listener destinations in any spelling, CONNECT to 443 only.

Proxies here run with the real defaults (the test config's permissive keys removed), so
the loopback origins the tests start must never see a connection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import h11
import pytest
import trio
import trio.testing

from tests.conftest import HttpClient, HttpOrigin, Proxy, log_fields, settled_log

StartProxy = Callable[..., Awaitable[Proxy]]
StartHttpOrigin = Callable[..., Awaitable[HttpOrigin]]

REAL_DEFAULTS = {"deny_destinations": None, "connect_ports": None, "hosts": None, "clients": None}


@pytest.fixture
async def safe_proxy(start_proxy: StartProxy) -> Proxy:
    return await start_proxy(**REAL_DEFAULTS)






async def fetch(proxy: Proxy, url: str) -> tuple[h11.Response, bytes]:
    """One absolute-form GET through the proxy on a fresh connection."""
    with trio.fail_after(5):
        client = await HttpClient.connect(proxy.port)
        try:
            return await client.get(url)
        finally:
            await client.aclose()


async def connect(proxy: Proxy, authority: str) -> tuple[h11.Response, bytes]:
    with trio.fail_after(5):
        client = await HttpClient.connect(proxy.port)
        try:
            await client.send(h11.Request(method="CONNECT", target=authority,
                                          headers=[("Host", authority)]), h11.EndOfMessage())
            return await client.response()
        finally:
            await client.aclose()


def decision(response: h11.Response) -> str:
    return dict(response.headers)[b"x-fwdproxy-decision"].decode()


# -- plain HTTP ------------------------------------------------------------------------


async def test_loopback_literal_is_refused(start_http_origin: StartHttpOrigin,
                                           safe_proxy: Proxy) -> None:
    origin = await start_http_origin()
    response, body = await fetch(safe_proxy, f"http://127.0.0.1:{origin.port}/")
    assert response.status_code == 403
    assert decision(response) == "deny config:deny_destinations"
    assert b"127.0.0.0/8" in body
    assert origin.connections == 0


async def test_metadata_address_refused_on_the_literal(safe_proxy: Proxy) -> None:
    response, body = await fetch(safe_proxy, "http://169.254.169.254/latest/meta-data/")
    assert response.status_code == 403
    assert decision(response) == "deny config:deny_destinations"
    assert b"169.254.0.0/16" in body
    [line] = await settled_log(safe_proxy)
    fields = log_fields(line)
    assert (fields["url"], fields["status"], fields["verdict"], fields["source"]) == (
        "http://169.254.169.254/latest/meta-data/", "403", "deny", "config:deny_destinations")
    # Refused by name, before any resolution or connection attempt.
    assert fields["detail"] == (
        '"destination 169.254.169.254 is in 169.254.0.0/16, which is never reached"')


@pytest.mark.parametrize("host", [
    "2130706433",           # one decimal number
    "0x7f.1",               # hex and a short form
    "0x7f000001",           # one hex number
    "0177.0.0.1",           # octal
    "127.1",                # short form
    "127.0.0.1.",           # trailing dot
    "[::ffff:127.0.0.1]",   # IPv4-mapped IPv6
    "[::ffff:7f00:1]",      # the same, in hex
    "127.0.0.2",            # elsewhere in 127/8
    "localhost",            # a name that resolves to loopback
    "LocalHost.",           # its other spelling
])
async def test_spellings_of_loopback_are_refused(host: str, start_http_origin: StartHttpOrigin,
                                                 safe_proxy: Proxy) -> None:
    origin = await start_http_origin()
    response, body = await fetch(safe_proxy, f"http://{host}:{origin.port}/")
    assert response.status_code == 403, body
    assert decision(response) == "deny config:deny_destinations"
    assert origin.connections == 0


async def test_ipv6_loopback_is_refused(safe_proxy: Proxy) -> None:
    response, _ = await fetch(safe_proxy, "http://[::1]:8080/")
    assert response.status_code == 403
    assert decision(response) == "deny config:deny_destinations"


async def test_hosts_entry_to_loopback_is_refused_after_resolution(
        start_http_origin: StartHttpOrigin, start_proxy: StartProxy) -> None:
    origin = await start_http_origin()
    proxy = await start_proxy(**{**REAL_DEFAULTS, "hosts": {"evil.test": "127.0.0.1"}})
    response, body = await fetch(proxy, f"http://evil.test:{origin.port}/")
    assert response.status_code == 403
    assert decision(response) == "deny config:deny_destinations"
    assert b"evil.test" in body
    assert origin.connections == 0


# -- CONNECT -------------------------------------------------------------------------------


async def test_connect_to_port_22_refused(safe_proxy: Proxy) -> None:
    response, body = await connect(safe_proxy, "origin.test:22")
    assert response.status_code == 403
    assert decision(response) == "deny config:connect_ports"
    assert b"allowed: 443" in body


@pytest.mark.parametrize("authority",
                         ["127.0.0.1:443", "localhost:443", "[::1]:443", "2130706433:443"])
async def test_connect_to_loopback_443_refused(authority: str, safe_proxy: Proxy) -> None:
    response, _ = await connect(safe_proxy, authority)
    assert response.status_code == 403
    assert decision(response) == "deny config:deny_destinations"


async def test_connect_by_name_to_loopback_443_refused(start_proxy: StartProxy) -> None:
    proxy = await start_proxy(**{**REAL_DEFAULTS, "hosts": {"origin.test": "127.0.0.1"}})
    response, _ = await connect(proxy, "origin.test:443")
    assert response.status_code == 403
    assert decision(response) == "deny config:deny_destinations"


# -- the proxy itself, even with deny_destinations: [] ---------------------------------------


@pytest.mark.parametrize("host", ["origin.test", "other.test"])
async def test_own_listener_refused_even_without_deny_destinations(host: str, proxy: Proxy) -> None:
    """Names that resolve to our listener (here through `hosts:`) are refused."""
    response, body = await fetch(proxy, f"http://{host}:{proxy.port}/")
    assert response.status_code == 403
    assert decision(response) == "deny builtin:own-listener"
    assert b"this proxy itself" in body
    [line] = await settled_log(proxy)
    assert log_fields(line)["source"] == "builtin:own-listener"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "0x7f.1"])
async def test_absolute_url_of_the_proxy_itself_is_its_own_page(host: str, proxy: Proxy) -> None:
    """A browser set to use the proxy asks for http://proxy:port/ in absolute form: it gets
    the proxy's own page, and nothing is forwarded anywhere."""
    response, body = await fetch(proxy, f"http://{host}:{proxy.port}/")
    assert response.status_code == 200
    assert b"fwdproxy" in body
    [line] = await settled_log(proxy)
    assert log_fields(line)["verdict"] == "own-page"


async def test_connect_to_own_listener_refused(proxy: Proxy) -> None:
    response, _ = await connect(proxy, f"127.0.0.1:{proxy.port}")
    assert response.status_code == 403
    assert decision(response) == "deny builtin:own-listener"


async def test_unspecified_address_to_own_port_refused(proxy: Proxy) -> None:
    response, _ = await fetch(proxy, f"http://0.0.0.0:{proxy.port}/")
    lines = await settled_log(proxy)
    assert len(lines) == 1, "the proxy connected to itself"
    assert response.status_code == 403
    assert decision(response) == "deny builtin:own-listener"


async def test_unspecified_address_refused_by_defaults(start_http_origin: StartHttpOrigin,
                                                      safe_proxy: Proxy) -> None:
    origin = await start_http_origin()
    response, _ = await fetch(safe_proxy, f"http://0.0.0.0:{origin.port}/")
    assert response.status_code == 403
    assert origin.connections == 0
