"""Reloading the rules folder while the proxy serves: on request (SIGHUP's path) and on a
changed file; a broken reload keeps the rules in force; nothing in flight is dropped."""

from __future__ import annotations

import os
from pathlib import Path

import h11
import pytest
import trio

from tests.conftest import HttpClient, Proxy, Reply

# Generous real-time guard for the reload thread and loopback traffic; never a sleep.
GUARD = 20


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def bump_mtime(path: Path, seconds: int) -> None:
    """Make the change visible to an mtime poll even within one clock tick."""
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + seconds * 1_000_000_000))


async def reload_now(proxy: Proxy) -> None:
    ctx = proxy.running.context
    finished = ctx.reload_finished
    ctx.request_reload()
    with trio.fail_after(GUARD):
        await finished.wait()


async def status_of(proxy: Proxy, url: str) -> int:
    client = await HttpClient.connect(proxy.port)
    try:
        with trio.fail_after(GUARD):
            response, _ = await client.get(url)
        return int(response.status_code)
    finally:
        await client.aclose()


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    root = tmp_path / "rules"
    write(root / "deny" / "ads.txt", "blocked.test\n")
    return root


HOSTS = {"origin.test": "127.0.0.1", "blocked.test": "127.0.0.1", "later.test": "127.0.0.1"}


async def test_reload_on_request_swaps_the_rules(start_proxy, start_http_origin, rules) -> None:
    origin = await start_http_origin()
    proxy = await start_proxy(rules=str(rules), hosts=HOSTS, timeouts={"rules_poll": 3600})
    assert await status_of(proxy, f"http://blocked.test:{origin.port}/") == 403
    assert await status_of(proxy, f"http://later.test:{origin.port}/") == 200
    write(rules / "deny" / "ads.txt", "later.test\n")
    await reload_now(proxy)
    assert await status_of(proxy, f"http://blocked.test:{origin.port}/") == 200
    assert await status_of(proxy, f"http://later.test:{origin.port}/") == 403


async def test_changed_file_is_picked_up_by_the_poll(start_proxy, start_http_origin, rules) -> None:
    origin = await start_http_origin()
    proxy = await start_proxy(rules=str(rules), hosts=HOSTS, timeouts={"rules_poll": 0.05})
    finished = proxy.running.context.reload_finished
    write(rules / "deny" / "ads.txt", "later.test\n")
    bump_mtime(rules / "deny" / "ads.txt", 5)
    with trio.fail_after(GUARD):
        await finished.wait()
    assert await status_of(proxy, f"http://later.test:{origin.port}/") == 403
    assert await status_of(proxy, f"http://blocked.test:{origin.port}/") == 200


async def test_broken_policy_keeps_the_rules_in_force(start_proxy, start_http_origin, rules,
                                                      capsys) -> None:
    origin = await start_http_origin()
    proxy = await start_proxy(rules=str(rules), hosts=HOSTS, timeouts={"rules_poll": 3600})
    write(rules / "deny" / "ads.txt", "later.test\n")
    write(rules / "policy.yaml", "policies:\n  - name: x\n    deny: [no-such-category]\n")
    await reload_now(proxy)
    err = capsys.readouterr().err
    assert "reload failed, keeping the rules in force" in err
    assert "policy.yaml:3" in err  # the file and line of the problem
    assert await status_of(proxy, f"http://blocked.test:{origin.port}/") == 403  # old rules
    assert await status_of(proxy, f"http://later.test:{origin.port}/") == 200


async def test_reload_under_load_loses_no_request(start_proxy, start_http_origin, rules) -> None:
    """Clients keep kept-alive connections busy while the rules are reloaded again and
    again; every request is answered 200, and a tunnel opened before survives."""
    origin = await start_http_origin(lambda request: Reply(200, [("Content-Length", "2")], b"ok"))
    proxy = await start_proxy(rules=str(rules), hosts=HOSTS, timeouts={"rules_poll": 3600})
    clients, requests_each, reloads = 8, 40, 10
    answered: list[int] = []

    async def client_loop() -> None:
        client = await HttpClient.connect(proxy.port)
        try:
            for _ in range(requests_each):
                response, body = await client.get(f"http://origin.test:{origin.port}/x")
                answered.append(response.status_code)
                assert body == b"ok"
        finally:
            await client.aclose()

    tunnel = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    await tunnel.send_all(f"CONNECT origin.test:{origin.port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = await tunnel.receive_some(1024)
    assert head.startswith(b"HTTP/1.1 200")

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            for _ in range(clients):
                nursery.start_soon(client_loop)
            for number in range(reloads):
                write(rules / "deny" / "ads.txt", f"blocked.test\nother{number}.test\n")
                await reload_now(proxy)
    assert answered == [200] * (clients * requests_each)

    # The tunnel opened before the reloads still carries a request.
    conn = h11.Connection(h11.CLIENT)
    await tunnel.send_all(conn.send(h11.Request(method="GET", target="/t", headers=[("Host", "o")]))
                          + conn.send(h11.EndOfMessage()))
    with trio.fail_after(GUARD):
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await tunnel.receive_some(65536))
                continue
            break
    assert isinstance(event, h11.Response) and event.status_code == 200
    await tunnel.aclose()
