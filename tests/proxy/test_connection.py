"""One client connection: the proxy's own page at its own address, origin-form requests
that are not for it, and the access-log line written per request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import h11
import pytest
import trio

from tests.conftest import HttpClient, HttpOrigin, Proxy, log_fields, send_raw, settled_log

StartHttpOrigin = Callable[..., Awaitable[HttpOrigin]]






async def origin_form(client: HttpClient, target: str, host: str | None, method: str = "GET",
                      body: bytes = b"") -> tuple[h11.Response, bytes]:
    headers = [] if host is None else [("Host", host)]
    if method == "POST":
        headers.append(("Content-Length", str(len(body))))
    await client.send(h11.Request(method=method, target=target, headers=headers))
    if body:
        await client.send(h11.Data(data=body))
    await client.send(h11.EndOfMessage())
    response = await client.response()
    if client.conn.our_state is h11.DONE and client.conn.their_state is h11.DONE:
        client.conn.start_next_cycle()
    return response


async def one_request(proxy: Proxy, target: str, host: str | None, method: str = "GET",
                      body: bytes = b"") -> tuple[h11.Response, bytes]:
    client = await HttpClient.connect(proxy.port)
    try:
        return await origin_form(client, target, host, method, body)
    finally:
        await client.aclose()


async def test_own_page(proxy: Proxy) -> None:
    response, body = await one_request(proxy, "/", f"127.0.0.1:{proxy.port}")
    assert response.status_code == 200
    headers = dict(response.headers)
    assert headers[b"content-type"].startswith(b"text/html")
    assert int(headers[b"content-length"]) == len(body)
    assert b"fwdproxy" in body
    assert f"127.0.0.1:{proxy.port}".encode() in body  # tells how to configure a client


@pytest.mark.parametrize("host",
                         ["localhost:{port}", "LOCALHOST:{port}", "[::ffff:127.0.0.1]:{port}"])
async def test_own_page_under_other_names_for_us(host: str, proxy: Proxy) -> None:
    response, body = await one_request(proxy, "/", host.format(port=proxy.port))
    assert response.status_code == 200
    assert b"fwdproxy" in body


async def test_own_page_http10_without_host(proxy: Proxy) -> None:
    answer = await send_raw(proxy.port, b"GET / HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"fwdproxy" in answer


async def test_own_page_head_and_keep_alive(proxy: Proxy) -> None:
    client = await HttpClient.connect(proxy.port)
    host = f"127.0.0.1:{proxy.port}"
    response, body = await origin_form(client, "/", host, method="HEAD")
    assert (response.status_code, body) == (200, b"")
    response, body = await origin_form(client, "/?q=1", host)
    assert response.status_code == 200
    assert b"fwdproxy" in body
    await client.aclose()
    lines = await settled_log(proxy)
    assert [(log_fields(x)["method"], log_fields(x)["status"]) for x in lines] == [
        ("HEAD", "200"), ("GET", "200")]


async def test_own_page_unknown_path_is_404(proxy: Proxy) -> None:
    response, body = await one_request(proxy, "/nope", f"127.0.0.1:{proxy.port}")
    assert response.status_code == 404
    assert b"/nope" in body


async def test_own_page_post_is_405(proxy: Proxy) -> None:
    response, body = await one_request(proxy, "/", f"127.0.0.1:{proxy.port}", method="POST",
                                       body=b"a=1")
    assert response.status_code == 405
    assert b"GET and HEAD" in body


async def test_own_page_405_names_allowed_methods(proxy: Proxy) -> None:
    response, _ = await one_request(proxy, "/", f"127.0.0.1:{proxy.port}", method="POST")
    assert response.status_code == 405
    allowed = {m.strip() for m in dict(response.headers).get(b"allow", b"").split(b",")}
    assert allowed == {b"GET", b"HEAD"}


@pytest.mark.parametrize("host", ["example.com", "127.0.0.1", "127.0.0.1:1", "origin.test:{port}"])
async def test_origin_form_for_a_foreign_host_is_400(host: str, proxy: Proxy) -> None:
    response, body = await one_request(proxy, "/index.html", host.format(port=proxy.port))
    assert response.status_code == 400
    assert b"absolute URL" in body
    assert b"proxy" in body


async def test_access_log_line_per_request(start_http_origin: StartHttpOrigin,
                                           proxy: Proxy) -> None:
    origin = await start_http_origin()
    client = await HttpClient.connect(proxy.port)
    response, _ = await client.get(f"http://origin.test:{origin.port}/a?b=1")
    assert response.status_code == 200
    response, _ = await origin_form(client, "/", f"127.0.0.1:{proxy.port}")
    assert response.status_code == 200
    response, _ = await origin_form(client, "/missing", f"127.0.0.1:{proxy.port}")
    assert response.status_code == 404
    await client.aclose()
    response, _ = await one_request(proxy, "/x", "example.com")
    assert response.status_code == 400

    lines = await settled_log(proxy)
    rows = [log_fields(line) for line in lines]
    assert [(r["client"], r["method"], r["url"], r["status"], r["verdict"]) for r in rows] == [
        ("127.0.0.1", "GET", f"http://origin.test:{origin.port}/a?b=1", "200", "allow"),
        ("127.0.0.1", "GET", "/", "200", "own-page"),
        ("127.0.0.1", "GET", "/missing", "404", "own-page"),  # NotFound.verdict
        ("127.0.0.1", "GET", "/x", "400", "bad-request"),
    ]
    for row in rows:
        assert int(row["up"]) > 0
        assert int(row["down"]) > 0
        assert row["duration"].endswith("ms")
        assert row["detail"].startswith('"') and row["detail"].endswith('"')
    assert "absolute URL" in rows[3]["detail"]


@pytest.mark.parametrize("path", ["/proxy.pac", "/wpad.dat", "/healthz"])
async def test_well_known_pages_answer_under_any_host_name(proxy: Proxy, path: str) -> None:
    """WPAD asks http://wpad.<domain>/wpad.dat; a balancer checks /healthz by address."""
    client = await HttpClient.connect(proxy.port)
    with trio.fail_after(5):
        response, _ = await origin_form(client, path, "wpad.office.example")
    assert response.status_code == 200
    await client.aclose()
