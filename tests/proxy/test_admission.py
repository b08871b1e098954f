"""Proxy authentication through a real proxy: 407 challenges for plain HTTP and CONNECT,
good and bad credentials, exempt clients, the throttle, the user in the log, and the
credentials never reaching the origin."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import bcrypt
import pytest
import trio
import trio.testing

from tests.conftest import HttpClient, Proxy, log_fields, settled_log

GUARD = 10


def basic(user: str, password: str) -> tuple[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return ("Proxy-Authorization", f"Basic {token}")


@pytest.fixture
def htpasswd(tmp_path: Path) -> Path:
    path = tmp_path / "htpasswd"
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    path.write_text(f"alice:{hashed}\n")
    return path


async def fetch(proxy: Proxy, url: str, *headers: tuple[str, str], method: str = "GET"):
    client = await HttpClient.connect(proxy.port)
    try:
        with trio.fail_after(GUARD):
            return await client.get(url, headers=list(headers), method=method)
    finally:
        await client.aclose()


async def test_missing_credentials_get_a_407_challenge(start_proxy, start_http_origin,
                                                       htpasswd) -> None:
    origin = await start_http_origin()
    proxy = await start_proxy(auth={"htpasswd": str(htpasswd), "realm": "Office proxy"})
    response, _ = await fetch(proxy, f"http://origin.test:{origin.port}/")
    assert response.status_code == 407
    assert (b"proxy-authenticate", b'Basic realm="Office proxy", charset="UTF-8"') in response.headers
    assert origin.requests == []
    [line] = await settled_log(proxy)
    assert log_fields(line)["status"] == "407"


async def test_good_credentials_pass_and_are_not_forwarded(start_proxy, start_http_origin,
                                                           htpasswd) -> None:
    origin = await start_http_origin()
    proxy = await start_proxy(auth={"htpasswd": str(htpasswd)})
    response, _ = await fetch(proxy, f"http://origin.test:{origin.port}/x", basic("alice", "s3cret"))
    assert response.status_code == 200
    assert origin.requests[0].header(b"proxy-authorization") is None
    lines = await settled_log(proxy)
    assert "s3cret" not in "\n".join(lines)  # credentials never logged


@pytest.mark.parametrize("header", [
    basic("alice", "wrong"),
    basic("mallory", "s3cret"),
    ("Proxy-Authorization", "Basic !!!not-base64"),
    ("Proxy-Authorization", "Bearer abc"),
])
async def test_bad_credentials_are_refused(start_proxy, start_http_origin, htpasswd,
                                           header) -> None:
    origin = await start_http_origin()
    proxy = await start_proxy(auth={"htpasswd": str(htpasswd)})
    response, _ = await fetch(proxy, f"http://origin.test:{origin.port}/", header)
    assert response.status_code == 407
    assert origin.requests == []


async def test_connect_needs_credentials_too(start_proxy, start_http_origin, htpasswd) -> None:
    origin = await start_http_origin()
    proxy = await start_proxy(auth={"htpasswd": str(htpasswd)})
    for headers, expected in (((), b"407"), ((basic("alice", "s3cret"),), b"200")):
        stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
        await stream.send_all(f"CONNECT origin.test:{origin.port} HTTP/1.1\r\n"
                              f"Host: origin.test:{origin.port}\r\n{extra}\r\n".encode())
        with trio.fail_after(GUARD):
            head = await stream.receive_some(4096)
        assert head.split(b" ")[1] == expected
        await stream.aclose()


async def test_exempt_clients_need_no_password(start_proxy, start_http_origin, htpasswd) -> None:
    origin = await start_http_origin()
    proxy = await start_proxy(auth={"htpasswd": str(htpasswd), "exempt": ["127.0.0.0/8"]})
    response, _ = await fetch(proxy, f"http://origin.test:{origin.port}/")
    assert response.status_code == 200


async def test_repeated_failures_lock_the_address_out(start_proxy, start_http_origin,
                                                      htpasswd) -> None:
    origin = await start_http_origin()
    proxy = await start_proxy(auth={"htpasswd": str(htpasswd)})
    url = f"http://origin.test:{origin.port}/"
    for attempt in range(5):
        response, _ = await fetch(proxy, url, basic("alice", f"wrong{attempt}"))
        assert response.status_code == 407
    response, body = await fetch(proxy, url, basic("alice", "s3cret"))
    assert response.status_code == 407  # locked out, even with the right password
    assert b"too many failed attempts" in body


async def test_user_is_logged_and_usable_in_policies(start_proxy, start_http_origin, htpasswd,
                                                     tmp_path) -> None:
    rules = tmp_path / "rules"
    (rules / "deny").mkdir(parents=True)
    (rules / "deny" / "social.txt").write_text("social.test\n")
    (rules / "policy.yaml").write_text(
        "policies:\n  - name: alice\n    clients: [user:alice]\n    deny: [social]\n"
        "    default: allow\n")
    origin = await start_http_origin()
    log = tmp_path / "access.json"
    proxy = await start_proxy(auth={"htpasswd": str(htpasswd)}, rules=str(rules),
                              hosts={"origin.test": "127.0.0.1", "social.test": "127.0.0.1"},
                              access_log={"path": str(log), "format": "json"})
    response, body = await fetch(proxy, f"http://social.test:{origin.port}/",
                                 basic("alice", "s3cret"))
    assert response.status_code == 403
    assert b"deny/social.txt:1" in body
    await trio.testing.wait_all_tasks_blocked()  # the proxy logs last
    proxy.running.context.log.flush()
    [record] = [json.loads(line) for line in log.read_text().splitlines()]
    assert (record["user"], record["status"], record["source"]) == ("alice", 403, "deny/social.txt:1")


async def test_pac_and_health_need_no_password(start_proxy, htpasswd) -> None:
    proxy = await start_proxy(auth={"htpasswd": str(htpasswd)})
    client = await HttpClient.connect(proxy.port)
    with trio.fail_after(GUARD):
        response, body = await client.get(f"http://127.0.0.1:{proxy.port}/proxy.pac")
    assert response.status_code == 200
    assert (b"content-type", b"application/x-ns-proxy-autoconfig") in response.headers
    assert f"PROXY 127.0.0.1:{proxy.port}".encode() in body
    with trio.fail_after(GUARD):
        response, body = await client.get(f"http://127.0.0.1:{proxy.port}/healthz")
    assert (response.status_code, body) == (200, b"ok\n")
    await client.aclose()
