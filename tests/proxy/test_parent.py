"""A parent proxy (`upstream:`): plain HTTP and CONNECT go through it, with its credentials;
`direct` domains bypass it. The parent here is a second fwdproxy."""

from __future__ import annotations

import socket
from pathlib import Path

import bcrypt
import pytest
import trio

from fwdproxy import config
from fwdproxy.errors import ConfigError
from tests.conftest import HttpClient, log_fields, settled_log

GUARD = 10


async def get(port: int, url: str):
    client = await HttpClient.connect(port)
    try:
        with trio.fail_after(GUARD):
            return await client.get(url)
    finally:
        await client.aclose()


async def test_plain_http_goes_through_the_parent(start_proxy, start_http_origin) -> None:
    origin = await start_http_origin()
    parent = await start_proxy(via="parent-node")
    child = await start_proxy(upstream=f"http://127.0.0.1:{parent.port}", via="child-node")
    response, body = await get(child.port, f"http://origin.test:{origin.port}/through")
    assert (response.status_code, body) == (200, b"hello from origin: /through")
    assert origin.requests[0].header_all(b"via") == [b"1.1 child-node", b"1.1 parent-node"]
    [line] = await settled_log(parent)
    assert log_fields(line)["url"] == f"http://origin.test:{origin.port}/through"


async def test_connect_goes_through_the_parent(start_proxy, start_http_origin) -> None:
    origin = await start_http_origin()
    parent = await start_proxy()
    child = await start_proxy(upstream=f"http://127.0.0.1:{parent.port}")
    stream = await trio.open_tcp_stream("127.0.0.1", child.port)
    with trio.fail_after(GUARD):
        await stream.send_all(f"CONNECT origin.test:{origin.port} HTTP/1.1\r\nHost: x\r\n\r\n"
                              f"GET /inside HTTP/1.1\r\nHost: origin.test\r\n"
                              f"Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 Connection established\r\n")
    assert b"hello from origin: /inside" in data
    await stream.aclose()
    [line] = await settled_log(parent)
    assert log_fields(line)["method"] == "CONNECT"


async def test_parent_credentials_are_sent(start_proxy, start_http_origin, tmp_path: Path) -> None:
    origin = await start_http_origin()
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("node:" + bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode() + "\n")
    parent = await start_proxy(auth={"htpasswd": str(htpasswd)})
    good = await start_proxy(upstream=f"http://node:pw@127.0.0.1:{parent.port}")
    bad = await start_proxy(upstream=f"http://node:nope@127.0.0.1:{parent.port}")
    assert (await get(good.port, f"http://origin.test:{origin.port}/"))[0].status_code == 200
    assert (await get(bad.port, f"http://origin.test:{origin.port}/"))[0].status_code == 407
    assert origin.requests[0].header(b"proxy-authorization") is None  # never to the origin


async def test_direct_domains_bypass_the_parent(start_proxy, start_http_origin) -> None:
    origin = await start_http_origin()
    parent = await start_proxy()
    child = await start_proxy(upstream={"url": f"http://127.0.0.1:{parent.port}",
                                        "direct": ["origin.test"]})
    assert (await get(child.port, f"http://origin.test:{origin.port}/"))[0].status_code == 200
    assert await settled_log(parent) == []


async def test_unreachable_parent_is_502(start_proxy, start_http_origin) -> None:
    origin = await start_http_origin()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    child = await start_proxy(upstream=f"http://127.0.0.1:{closed}")
    response, body = await get(child.port, f"http://origin.test:{origin.port}/")
    assert response.status_code == 502 and b"parent proxy" in body


@pytest.mark.parametrize("value", ["ftp://x:21", "http://", "parent:3128", {"url": "http://p"
                                   ":3128", "direct": ["bad name"]}])
def test_bad_upstream_is_a_config_error(value) -> None:
    with pytest.raises(ConfigError, match="upstream"):
        config.from_mapping({"upstream": value}, "test")
