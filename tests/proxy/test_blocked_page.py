"""/blocked through a real proxy: each client sees its own recent refusals (each user, with
proxy authentication), tunnels refused by their ClientHello included, and nobody else's.

A second client is told apart by its source address: the proxy listens on 127.0.0.1, and
the other client connects from 127.0.0.2 (all of 127.0.0.0/8 is loopback on Linux).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import bcrypt
import h11
import pytest
import trio
import trio.testing

from fwdproxy.accesslog import Exchange
from fwdproxy.site.pages import blocked_page
from fwdproxy.site.refusals import RecentRefusals
from tests.conftest import HttpClient, Proxy
from tests.proxy.test_admission import basic
from tests.proxy.test_clienthello import hello_of, sni
from tests.proxy.test_connect_sni import Recorder, send_through

StartProxy = Callable[..., Awaitable[Proxy]]
StartOrigin = Callable[[Callable[[trio.SocketStream], Awaitable[None]]], Awaitable[int]]


def rules(tmp_path: Path) -> str:
    folder = tmp_path / "rules"
    (folder / "deny").mkdir(parents=True)
    (folder / "deny" / "social.txt").write_text("# social\nsocial.test\n")
    return str(folder)


async def get(proxy: Proxy, url: str, *headers: tuple[str, str],
              source: str = "127.0.0.1") -> tuple[h11.Response, bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port, local_address=source)
    client = HttpClient(stream)
    try:
        with trio.fail_after(10):
            return await client.get(url, headers=list(headers))
    finally:
        await client.aclose()


async def test_a_client_sees_its_refused_tunnel_and_page_and_another_does_not(
        start_proxy: StartProxy, start_origin: StartOrigin, tmp_path: Path) -> None:
    origin = Recorder()
    port = await start_origin(origin.handler)
    proxy = await start_proxy(rules=rules(tmp_path), connect_sni={"ports": ["1-65535"]},
                              hosts={"social.test": "127.0.0.1", "origin.test": "127.0.0.1"})
    response, _ = await get(proxy, "http://social.test/feed")
    assert response.status_code == 403
    await send_through(proxy, f"127.0.0.1:{port}", hello_of(sni(b"social.test")))
    await trio.testing.wait_all_tasks_blocked()

    own = f"http://127.0.0.1:{proxy.port}/blocked"
    response, body = await get(proxy, own)
    assert response.status_code == 200
    page = body.decode()
    assert "http://social.test/feed" in page
    assert f"https://127.0.0.1:{port} (asked for social.test)" in page
    assert page.count("deny/social.txt:2") == 2 and "<td>social</td>" in page
    assert page.index("asked for social.test") < page.index("http://social.test/feed")  # newest first

    response, body = await get(proxy, own, source="127.0.0.2")
    assert response.status_code == 200
    assert "social.test" not in body.decode() and "Nothing was blocked for you" in body.decode()


async def test_with_authentication_a_user_sees_their_own(
        start_proxy: StartProxy, tmp_path: Path) -> None:
    htpasswd = tmp_path / "htpasswd"
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    htpasswd.write_text(f"alice:{hashed}\nbob:{hashed}\n")
    proxy = await start_proxy(rules=rules(tmp_path), auth={"htpasswd": str(htpasswd)},
                              hosts={"social.test": "127.0.0.1"})
    response, _ = await get(proxy, "http://social.test/", basic("alice", "s3cret"))
    assert response.status_code == 403
    await trio.testing.wait_all_tasks_blocked()
    own = f"http://127.0.0.1:{proxy.port}/blocked"
    response, _ = await get(proxy, own)
    assert response.status_code == 407  # who is asking? (the browser then sends its password)
    response, body = await get(proxy, own, basic("alice", "s3cret"))
    assert response.status_code == 200 and "http://social.test/" in body.decode()
    response, body = await get(proxy, own, basic("bob", "s3cret"))
    assert response.status_code == 200 and "social.test" not in body.decode()


async def test_the_info_page_links_to_it(start_proxy: StartProxy) -> None:
    proxy = await start_proxy()
    response, body = await get(proxy, f"http://127.0.0.1:{proxy.port}/")
    assert response.status_code == 200 and b'href="/blocked"' in body


# -- the store and the page, without sockets ------------------------------------------------


def refusal(client: str, n: int, user: str | None = None) -> Exchange:
    return Exchange(client=client, started=1_700_000_000 + n, method="GET", url=f"http://x{n}.test/",
                    verdict="deny", source=f"deny/a.txt:{n}", user=user, detail="blocked")


def test_the_store_is_bounded_per_client_and_in_clients() -> None:
    store = RecentRefusals(per_person=3, people=2)
    for n in range(5):
        store.note(refusal("10.0.0.1", n))
    assert [r.source for r in store.of("10.0.0.1", None)] == ["deny/a.txt:4", "deny/a.txt:3", "deny/a.txt:2"]
    store.note(refusal("10.0.0.2", 0))
    store.note(refusal("10.0.0.3", 0))  # the least recently refused client is forgotten
    assert store.of("10.0.0.1", None) == [] and len(store.of("10.0.0.3", None)) == 1
    store.note(Exchange(client="10.0.0.3", started=0, verdict="allow"))  # only refusals
    assert len(store.of("10.0.0.3", None)) == 1
    store.note(refusal("10.0.0.3", 1, user="alice"))
    assert len(store.of("10.0.0.3", None)) == 1 and len(store.of("10.0.0.9", "alice")) == 1


@pytest.mark.parametrize("nasty", ["<script>alert(1)</script>", '"><img src=x>', "a&b"])
def test_the_page_escapes_what_clients_chose(nasty: str) -> None:
    store = RecentRefusals()
    exchange = refusal("10.0.0.1", 1)
    exchange.url, exchange.detail, exchange.sni = f"http://x.test/{nasty}", nasty, nasty
    store.note(exchange)
    page = blocked_page(store.of("10.0.0.1", None), who=nasty, contact=nasty).decode()
    assert nasty not in page
