"""The web gateway served through real sockets: /browse/ fetched from loopback origins
(plain, and TLS verified against the test CA through gateway.ca_file), rewritten, judged
by the proxy's rules and safe defaults, and logged.
"""

from __future__ import annotations

import gzip
import json
import re
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import h11
import pytest
import trio
import trustme

from tests.conftest import HttpClient, HttpOrigin, Proxy, Reply, SeenRequest, settled_log

StartProxy = Callable[..., Awaitable[Proxy]]
StartHttpOrigin = Callable[..., Awaitable[HttpOrigin]]
GUARD = 10  # seconds: loopback exchanges take milliseconds; past this the proxy is stuck

PAGE = (b'<html><head><link rel=stylesheet href="s.css"></head><body>'
        b'<a id=rel href="next.html?x=1">next</a> <a href="http://other.test/abs">abs</a> '
        b'<img src="//other.test/img.png" srcset="a.png 1x, /b.png 2x">'
        b'<form method=post action="/post" enctype="multipart/form-data"></form>'
        b'<p style="background:url(bg.png)">caf\xc3\xa9</p>'
        b'<script>var u = "http://other.test/raw";</script></body></html>')


def html(body: bytes, *headers: tuple[str, str], status: int = 200) -> Reply:
    return Reply(status, [("Content-Type", "text/html; charset=utf-8"),
                          ("Content-Length", str(len(body))), *headers], body)


async def browse(proxy: Proxy, path: str, *headers: tuple[str, str], method: str = "GET",
                 body: bytes = b"") -> tuple[h11.Response, bytes]:
    """One request for a gateway path, as a browser without proxy settings sends it."""
    client = await HttpClient.connect(proxy.port)
    try:
        with trio.fail_after(GUARD):
            sent = [("Host", f"127.0.0.1:{proxy.port}"), *headers]
            if body:
                sent.append(("Content-Length", str(len(body))))
            await client.send(h11.Request(method=method, target=path, headers=sent))
            if body:
                await client.send(h11.Data(data=body))
            await client.send(h11.EndOfMessage())
            return await client.response()
    finally:
        await client.aclose()


def header(response: h11.Response, name: bytes) -> str | None:
    values = [v.decode("latin-1") for k, v in response.headers if k == name]
    return values[0] if values else None


@pytest.fixture
async def gateway(start_proxy: StartProxy) -> Proxy:
    return await start_proxy(gateway=True)


async def test_the_form_and_the_address_bar_redirect(gateway: Proxy) -> None:
    response, body = await browse(gateway, "/browse")
    assert response.status_code == 200
    assert b'action="/browse"' in body and b"JavaScript" in body
    response, _ = await browse(gateway, "/browse?url=example.org/docs%3Fq%3D1")
    assert response.status_code == 302
    assert header(response, b"location") == "/browse/https/example.org/docs?q=1"
    response, _ = await browse(gateway, "/browse?url=ftp://example.org/")
    assert response.status_code == 400


async def test_a_page_comes_back_rewritten_and_the_site_sees_the_gateway(
        gateway: Proxy, start_http_origin: StartHttpOrigin) -> None:
    origin = await start_http_origin(lambda request: html(PAGE))
    base = f"/browse/http/origin.test:{origin.port}"
    response, body = await browse(gateway, f"{base}/dir/page.html",
                                  ("Cookie", "session=proxy-own; fwdgw_pref=1"),
                                  ("Authorization", "Basic Z2F0ZXdheTpsb2dpbg=="))
    assert response.status_code == 200
    assert f'href="{base}/dir/s.css"'.encode() in body
    assert f'href="{base}/dir/next.html?x=1"'.encode() in body
    assert b'href="/browse/http/other.test/abs"' in body
    assert b'src="/browse/http/other.test/img.png"' in body  # protocol-relative, from http
    assert f'srcset="{base}/dir/a.png 1x, {base}/b.png 2x"'.encode() in body
    assert f'action="{base}/post"'.encode() in body
    assert f"url(&quot;{base}/dir/bg.png&quot;)".encode() in body
    assert b"caf\xc3\xa9" in body  # the page's own bytes, untouched
    assert b'var u = "http://other.test/raw";' in body  # scripts pass unrewritten
    assert header(response, b"content-length") is None  # the length changed: chunked
    assert "sandbox" in (header(response, b"content-security-policy") or "")
    seen = origin.requests[0]
    assert seen.target == b"/dir/page.html"
    assert seen.header(b"host") == f"origin.test:{origin.port}".encode()
    assert seen.header(b"via") is not None
    assert seen.header(b"cookie") == b"pref=1"  # only the site's own, unmarked
    assert seen.header(b"authorization") is None
    assert seen.header(b"accept-encoding") == b"identity"
    lines = await settled_log(gateway)
    assert f" GET http://origin.test:{origin.port}/dir/page.html 200 " in lines[-1]
    assert lines[-1].endswith(" mode=gateway") and " allow " in lines[-1]


async def test_the_absolute_form_naming_the_proxy_reaches_the_gateway_too(
        gateway: Proxy, start_http_origin: StartHttpOrigin) -> None:
    origin = await start_http_origin()
    client = await HttpClient.connect(gateway.port)
    try:
        with trio.fail_after(GUARD):
            response, body = await client.get(
                f"http://127.0.0.1:{gateway.port}/browse/http/origin.test:{origin.port}/x")
    finally:
        await client.aclose()
    assert response.status_code == 200 and body == b"hello from origin: /x"


async def test_redirects_cookies_and_refresh_stay_in_the_gateway(
        gateway: Proxy, start_http_origin: StartHttpOrigin) -> None:
    def app(request: SeenRequest) -> Reply:
        return Reply(302, [("Location", "http://other.test:81/landing"),
                           ("Refresh", "5; url=/later"), ("Content-Length", "0"),
                           ("Set-Cookie", "sid=abc; Path=/; Domain=origin.test; Secure; HttpOnly")])

    origin = await start_http_origin(app)
    response, _ = await browse(gateway, f"/browse/http/origin.test:{origin.port}/login")
    assert response.status_code == 302
    assert header(response, b"location") == "/browse/http/other.test:81/landing"
    assert header(response, b"refresh") == f"5; url=/browse/http/origin.test:{origin.port}/later"
    cookie = header(response, b"set-cookie") or ""
    assert cookie.startswith("fwdgw_sid=abc")
    assert f"Path=/browse/http/origin.test:{origin.port}/" in cookie
    assert "Domain" not in cookie and "Secure" not in cookie and "HttpOnly" in cookie


async def test_a_multipart_post_reaches_the_site_whole(
        gateway: Proxy, start_http_origin: StartHttpOrigin) -> None:
    def app(request: SeenRequest) -> Reply:
        answer = json.dumps({"type": (request.header(b"content-type") or b"").decode(),
                             "length": len(request.body)}).encode()
        return Reply(200, [("Content-Type", "application/json"),
                           ("Content-Length", str(len(answer)))], answer)

    origin = await start_http_origin(app)
    form = (b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.bin\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n" + bytes(range(256)) * 400
            + b"\r\n--XyZ--\r\n")
    response, body = await browse(gateway, f"/browse/http/origin.test:{origin.port}/upload",
                                  ("Content-Type", "multipart/form-data; boundary=XyZ"),
                                  method="POST", body=form)
    assert response.status_code == 200
    assert json.loads(body) == {"type": "multipart/form-data; boundary=XyZ", "length": len(form)}
    assert origin.requests[0].body == form


async def test_compressed_pages_are_inflated_to_be_rewritten(
        gateway: Proxy, start_http_origin: StartHttpOrigin) -> None:
    packed = gzip.compress(b'<a href="/x">x</a>' * 20000)  # 360 KB from ~1 KB
    origin = await start_http_origin(lambda request: html(packed, ("Content-Encoding", "gzip")))
    response, body = await browse(gateway, f"/browse/http/origin.test:{origin.port}/")
    assert response.status_code == 200
    assert header(response, b"content-encoding") is None
    assert body == f'<a href="/browse/http/origin.test:{origin.port}/x">x</a>'.encode() * 20000


@pytest.mark.parametrize(("encoding", "body", "status"), [
    ("br", b"\x0b\x02\x80hi\x03", 502),  # a coding the gateway cannot undo: refused whole
    ("gzip", b"\x1f\x8b\x08\x00not gzip at all" * 10, 200),  # corrupt: cut off after the head
])
async def test_pages_that_cannot_be_decoded(gateway: Proxy, start_http_origin: StartHttpOrigin,
                                            encoding: str, body: bytes, status: int) -> None:
    origin = await start_http_origin(lambda request: html(body, ("Content-Encoding", encoding)))
    path = f"/browse/http/origin.test:{origin.port}/"
    if status == 502:
        response, received = await browse(gateway, path)
        assert response.status_code == 502
        assert "gateway cannot rewrite" in received.decode()
    else:
        with pytest.raises(h11.RemoteProtocolError, match="incomplete chunked read"):
            await browse(gateway, path)  # the head went out: the body is cut short
    line = (await settled_log(gateway))[-1]
    assert f" GET http://origin.test:{origin.port}/ {status} " in line
    assert line.endswith(" mode=gateway")
    if status == 200:
        assert " upstream-error " in line and "corrupt" in line


async def test_downloads_stream_through_unchanged(
        gateway: Proxy, start_http_origin: StartHttpOrigin) -> None:
    chunks = [bytes([n]) * 65536 for n in range(64)]  # 4 MiB in chunks the origin sends one by one
    origin = await start_http_origin(lambda request: Reply(
        200, [("Content-Type", "application/octet-stream"), ("Content-Length", str(1 << 22))], chunks))
    response, body = await browse(gateway, f"/browse/http/origin.test:{origin.port}/big.bin")
    assert response.status_code == 200
    assert header(response, b"content-length") == str(1 << 22)
    assert body == b"".join(chunks)


async def test_a_blocked_page_gets_the_block_page_naming_its_rule(
        start_proxy: StartProxy, start_http_origin: StartHttpOrigin, tmp_path: Path) -> None:
    origin = await start_http_origin()
    (tmp_path / "rules" / "deny").mkdir(parents=True)
    (tmp_path / "rules" / "deny" / "lab.txt").write_text("other.test\n")
    proxy = await start_proxy(gateway=True, rules=str(tmp_path / "rules"))
    response, body = await browse(proxy, f"/browse/http/OTHER.test.:{origin.port}/x")
    assert response.status_code == 403
    assert b"deny/lab.txt:1" in body
    assert origin.requests == []
    line = (await settled_log(proxy))[-1]
    assert f" GET http://other.test.:{origin.port}/x 403 " in line
    assert " deny deny/lab.txt:1 " in line and line.endswith(" mode=gateway")


@pytest.mark.parametrize("authority", [
    "127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}", "[::ffff:127.0.0.1]:{port}",
    "2130706433:{port}", "0x7f.1:{port}", "169.254.169.254", "[fd00:ec2::254]",
])
async def test_the_safe_defaults_hold_for_gateway_addresses(
        start_proxy: StartProxy, start_http_origin: StartHttpOrigin, authority: str) -> None:
    origin = await start_http_origin()
    proxy = await start_proxy(gateway=True, deny_destinations=None)  # the built-in default
    response, body = await browse(proxy, f"/browse/http/{authority.format(port=origin.port)}/")
    assert response.status_code == 403, body
    assert origin.requests == []
    assert (await settled_log(proxy))[-1].endswith(" mode=gateway")


async def test_without_the_setting_there_is_no_gateway(
        proxy: Proxy, start_http_origin: StartHttpOrigin) -> None:
    origin = await start_http_origin()
    response, _ = await browse(proxy, f"/browse/http/origin.test:{origin.port}/")
    assert response.status_code == 404
    assert origin.requests == []


async def test_the_gateway_asks_its_users_to_log_in(
        start_proxy: StartProxy, start_http_origin: StartHttpOrigin, tmp_path: Path) -> None:
    import bcrypt  # the test extras' (as in test_admission)

    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    (tmp_path / "htpasswd").write_text(f"alice:{hashed}\n")
    origin = await start_http_origin()
    proxy = await start_proxy(gateway=True, auth={"htpasswd": str(tmp_path / "htpasswd")},
                              access_log={"path": str(tmp_path / "json.log"), "format": "json"})
    proxy.log_path = tmp_path / "json.log"
    path = f"/browse/http/origin.test:{origin.port}/x"
    response, _ = await browse(proxy, path)
    assert response.status_code == 401
    assert (header(response, b"www-authenticate") or "").startswith("Basic ")
    assert origin.requests == []
    response, body = await browse(proxy, path, ("Authorization", "Basic YWxpY2U6czNjcmV0"))
    assert response.status_code == 200 and body == b"hello from origin: /x"
    assert origin.requests[0].header(b"authorization") is None  # the login stays here
    record = json.loads((await settled_log(proxy))[-1])
    assert record["user"] == "alice" and record["gateway"] is True
    assert record["url"] == f"http://origin.test:{origin.port}/x" and record["verdict"] == "allow"


async def test_other_methods_are_refused(gateway: Proxy) -> None:
    response, _ = await browse(gateway, "/browse/http/origin.test/x", method="PUT")
    assert response.status_code == 405
    assert header(response, b"allow") == "GET, HEAD, POST"


@pytest.mark.parametrize("path", ["/browse/ftp/example.org/", "/browse/http/exa%20mple.org/",
                                  "/browse/http/user@example.org/", "/browse/http/example.org:99999/"])
async def test_paths_that_name_no_page_are_bad_requests(gateway: Proxy, path: str) -> None:
    response, _ = await browse(gateway, path)
    assert response.status_code == 400


async def test_a_site_that_is_down_is_a_bad_gateway(gateway: Proxy) -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    port = listener.getsockname()[1]
    try:
        response, _ = await browse(gateway, f"/browse/http/origin.test:{port}/")
    finally:
        listener.close()
    assert response.status_code == 502


# -- https sites ---------------------------------------------------------------------------


async def _tls_site(stream: trio.SocketStream, context: ssl.SSLContext, body: bytes,
                    seen: list[bytes]) -> None:
    """One TLS request per connection: record its target, answer a page."""
    tls = trio.SSLStream(stream, context, server_side=True)
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(bytes(await tls.receive_some(65536)))
                continue
            if isinstance(event, h11.Request):
                seen.append(event.target)
            if isinstance(event, h11.EndOfMessage):
                break
        data = conn.send(h11.Response(status_code=200, headers=[
            ("Content-Type", "text/css"), ("Content-Length", str(len(body))),
            ("Connection", "close")]))
        await tls.send_all(data + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
        await tls.aclose()
    except trio.BrokenResourceError:
        pass  # the gateway refused our certificate: nothing to answer


@pytest.fixture
async def tls_site(start_origin: Callable[..., Awaitable[int]],
                   tls_server_context: ssl.SSLContext) -> tuple[int, list[bytes]]:
    seen: list[bytes] = []
    css = b'@import "//cdn.test/more.css"; a { background: url(img.png) }'
    port = await start_origin(lambda stream: _tls_site(stream, tls_server_context, css, seen))
    return port, seen


async def test_https_sites_are_verified_against_the_configured_ca(
        start_proxy: StartProxy, tls_site: tuple[int, list[bytes]], tls_ca: trustme.CA,
        tmp_path: Path) -> None:
    port, seen = tls_site
    tls_ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    proxy = await start_proxy(gateway={"ca_file": str(tmp_path / "ca.pem")})
    response, body = await browse(proxy, f"/browse/https/origin.test:{port}/css/site.css")
    assert response.status_code == 200
    assert body == (f'@import "/browse/https/cdn.test/more.css"; a {{ background: '
                    f'url("/browse/https/origin.test:{port}/css/img.png") }}').encode()
    assert seen == [b"/css/site.css"]
    line = (await settled_log(proxy))[-1]
    assert f" GET https://origin.test:{port}/css/site.css 200 " in line


async def test_an_https_site_the_trust_store_does_not_know_is_refused(
        start_proxy: StartProxy, tls_site: tuple[int, list[bytes]]) -> None:
    port, seen = tls_site
    proxy = await start_proxy(gateway=True)  # the system's store: trustme's CA is not in it
    response, body = await browse(proxy, f"/browse/https/origin.test:{port}/site.css")
    assert response.status_code == 502
    assert re.search(rb"certificate verify failed|CERTIFICATE_VERIFY_FAILED", body), body
    assert seen == []


async def test_clients_outside_the_allowed_networks_get_no_gateway(
        start_proxy: StartProxy, start_http_origin: StartHttpOrigin) -> None:
    origin = await start_http_origin()
    proxy = await start_proxy(gateway=True, clients=["10.0.0.0/8"])
    response, _ = await browse(proxy, f"/browse/http/origin.test:{origin.port}/")
    assert response.status_code == 403
    assert origin.requests == []
