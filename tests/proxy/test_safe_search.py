"""Safe search: clients that get it are connected to the safe-search addresses, with the
Host header and the TLS name unchanged; other clients are not.

Two origins listen on the same port: the "normal" one on 127.0.0.1 and the "safe" one on
127.0.0.2; `hosts:` maps www.google.com (and www.google.co.uk) to the first and
forcesafesearch.google.com to the second, as DNS would map the real names. Each origin
answers with its own name, and records the heads it got.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from fwdproxy.errors import BadRequest
from fwdproxy.policy.safesearch import parse_safe_search
from tests.conftest import HttpClient, Proxy, settled_log
from tests.proxy.test_tunnel import open_tunnel, read_to_eof

StartProxy = Callable[..., Awaitable[Proxy]]
HOSTS = {"www.google.com": "127.0.0.1", "www.google.co.uk": "127.0.0.1",
         "forcesafesearch.google.com": "127.0.0.2", "example.test": "127.0.0.1"}


class NamedOrigin:
    """A keep-alive HTTP origin on one address that answers with its name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.heads: list[bytes] = []

    async def serve(self, stream: trio.SocketStream) -> None:
        data = b""
        try:
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                self.heads.append(head)
                if head.startswith(b"RAW"):  # a tunnel's payload: echo the name and close
                    await stream.send_all(self.name.encode())
                    return
                body = self.name.encode()
                await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        except trio.BrokenResourceError:
            return


async def two_origins(nursery: trio.Nursery) -> tuple[int, NamedOrigin, NamedOrigin]:
    """The normal and the safe origin, on one port (found free on both addresses)."""
    normal, safe = NamedOrigin("normal"), NamedOrigin("safe")
    for _ in range(20):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.2")
        port = listeners[0].socket.getsockname()[1]
        try:
            listeners += await trio.open_tcp_listeners(port, host="127.0.0.1")
        except OSError:
            for listener in listeners:
                await listener.aclose()
            continue
        nursery.start_soon(trio.serve_listeners, safe.serve, listeners[:1])
        nursery.start_soon(trio.serve_listeners, normal.serve, listeners[1:])
        return port, normal, safe
    raise AssertionError("no port free on both 127.0.0.1 and 127.0.0.2")


async def get(proxy: Proxy, *urls: str, source: str = "127.0.0.1") -> list[bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port, local_address=source)
    client = HttpClient(stream)
    bodies = []
    try:
        with trio.fail_after(10):
            for url in urls:
                response, body = await client.get(url)
                assert response.status_code == 200, body
                bodies.append(body)
    finally:
        await client.aclose()
    return bodies


async def start(start_proxy: StartProxy, tmp_path: Path, **overrides: Any) -> Proxy:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    return await start_proxy(rules=str(rules), hosts=HOSTS, **overrides)


async def test_plain_http_goes_to_the_safe_address_with_its_host_header(
        start_proxy: StartProxy, nursery: trio.Nursery, tmp_path: Path) -> None:
    port, _, safe = await two_origins(nursery)
    proxy = await start(start_proxy, tmp_path, safe_search=True)
    bodies = await get(proxy, f"http://www.google.com:{port}/search?q=x",
                       f"http://www.google.com:{port}/search?q=y",  # kept alive: the fast lane's turn
                       f"http://www.google.co.uk:{port}/", f"http://example.test:{port}/")
    assert bodies == [b"safe", b"safe", b"safe", b"normal"]
    assert safe.heads[0].startswith(b"GET /search?q=x HTTP/1.1\r\nhost: www.google.com:")
    lines = await settled_log(proxy)
    assert "safe search: connected to forcesafesearch.google.com" in lines[0]


async def test_a_tunnel_goes_to_the_safe_address(
        start_proxy: StartProxy, nursery: trio.Nursery, tmp_path: Path) -> None:
    port, normal, _ = await two_origins(nursery)
    proxy = await start(start_proxy, tmp_path, safe_search=True)
    stream, head, _ = await open_tunnel(proxy.port, f"www.google.com:{port}")
    assert head.startswith(b"HTTP/1.1 200 ")
    await stream.send_all(b"RAW\r\n\r\n")
    assert await read_to_eof(stream) == b"safe"
    await stream.aclose()
    assert normal.heads == []


async def test_only_the_policies_that_say_so_get_it(
        start_proxy: StartProxy, nursery: trio.Nursery, tmp_path: Path) -> None:
    port, _, _ = await two_origins(nursery)
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "policy.yaml").write_text(
        "groups:\n  pupils: [127.0.0.1/32]\n  staff: [127.0.0.3/32]\n"
        "policies:\n"
        "  - name: pupils\n    clients: [pupils]\n    safe_search: true\n    default: allow\n"
        "  - name: staff\n    clients: [staff]\n    default: allow\n")
    proxy = await start(start_proxy, tmp_path)
    url = f"http://www.google.com:{port}/"
    # Staff first: its pooled connection to the normal origin must not serve a pupil.
    assert await get(proxy, url, url, source="127.0.0.3") == [b"normal", b"normal"]
    assert await get(proxy, url, url, source="127.0.0.1") == [b"safe", b"safe"]
    assert await get(proxy, url, source="127.0.0.3") == [b"normal"]


async def test_off_by_default(start_proxy: StartProxy, nursery: trio.Nursery, tmp_path: Path) -> None:
    port, _, safe = await two_origins(nursery)
    proxy = await start(start_proxy, tmp_path)
    assert await get(proxy, f"http://www.google.com:{port}/") == [b"normal"]
    assert safe.heads == []


# -- the mapping file ---------------------------------------------------------------------------


def suffix(name: str) -> bool:  # a stand-in for the Public Suffix List
    return name in ("com", "de", "co.uk")


def test_the_mapping_reads_names_and_patterns() -> None:
    mapping = parse_safe_search([
        "# comment\n", "www.Google.*  forcesafesearch.google.com  # trailing\n", "\n",
        "www.bing.com strict.bing.com\n", "bad line with words\n", "127.0.0.1 x.test\n",
        "www.youtube.com restrict.youtube.com\n",
    ], "safesearch.txt")
    assert [mapping.target(h, suffix) for h in (
        "www.google.de", "www.google.co.uk", "www.google.evil.test", "www.bing.com", "bing.com",
        "www.youtube.com")] == ["forcesafesearch.google.com", "forcesafesearch.google.com", None,
                                "strict.bing.com", None, "restrict.youtube.com"]
    assert mapping.errors == (
        "safesearch.txt:5: expected NAME SAFE-NAME, got 'bad line with words'",
        "safesearch.txt:6: '127.0.0.1' is an address, not a name")


def test_the_bundled_mapping_loads_without_errors() -> None:
    from fwdproxy.config import BUNDLED_RULES, load_rules

    loaded = load_rules(BUNDLED_RULES)
    assert loaded.safe_search.errors == ()
    assert loaded.safe_search.target("www.youtube.com", suffix) == "restrict.youtube.com"
    assert loaded.safe_search.target("www.google.com", suffix) == "forcesafesearch.google.com"


def test_a_rules_folder_without_its_own_mapping_gets_the_bundled_one(tmp_path: Path) -> None:
    from fwdproxy.config import load_rules

    assert load_rules(tmp_path).safe_search.target("duckduckgo.com", suffix) == "safe.duckduckgo.com"
    (tmp_path / "safesearch.txt").write_text("duckduckgo.com safe.example.test\nnot-two\n")
    own = load_rules(tmp_path)
    assert own.safe_search.target("duckduckgo.com", suffix) == "safe.example.test"
    assert any("safesearch.txt:2" in problem for problem in own.errors)


def test_a_name_that_is_not_one_is_refused() -> None:
    with pytest.raises(BadRequest):
        from fwdproxy.policy.safesearch import _name

        _name("bad name")
