"""Rules through a real proxy: block pages, the X-Fwdproxy-Decision header, the access log.

Each test writes a rules folder to tmp_path and starts fwdproxy with `rules=` and
`contact=` overrides (the test config maps origin.test and other.test to 127.0.0.1 and
has no deny_destinations). Denied names are never resolved, so ads.example needs no DNS.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC
from pathlib import Path

import h11
import pytest

from fwdproxy.check import main as check_main
from tests.conftest import HttpClient, HttpOrigin, Proxy, log_fields, settled_log

StartProxy = Callable[..., Awaitable[Proxy]]
StartHttpOrigin = Callable[..., Awaitable[HttpOrigin]]


def write_rules(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


async def start_with_rules(start_proxy: StartProxy, tmp_path: Path, files: dict[str, str]) -> Proxy:
    rules = write_rules(tmp_path / "rules", files)
    return await start_proxy(rules=str(rules), contact="IT desk")


async def get(proxy: Proxy, url: str) -> tuple[h11.Response, bytes]:
    client = await HttpClient.connect(proxy.port)
    try:
        return await client.get(url)
    finally:
        await client.aclose()


async def connect(proxy: Proxy, authority: str) -> tuple[h11.Response, bytes]:
    client = await HttpClient.connect(proxy.port)
    try:
        await client.send(h11.Request(method="CONNECT", target=authority, headers=[("Host", authority)]),
                          h11.EndOfMessage())
        return await client.response()
    finally:
        await client.aclose()


ADS = {"deny/ads.txt": "ads.example\n# second line\n||tracker.example^\n"}


async def test_denied_plain_http_gets_the_block_page(start_proxy: StartProxy, tmp_path: Path) -> None:
    proxy = await start_with_rules(start_proxy, tmp_path, ADS)
    response, body = await get(proxy, "http://www.ads.example/banner.js")
    assert response.status_code == 403
    headers = dict(response.headers)
    assert headers[b"content-type"].startswith(b"text/html")
    assert headers[b"x-fwdproxy-decision"] == b"deny deny/ads.txt:1 category=ads"
    page = body.decode()
    assert "http://www.ads.example/banner.js" in page
    assert "<dd>ads</dd>" in page                                   # the category
    assert "deny/ads.txt:1" in page                                 # the rule, file:line
    assert "ads.example and its subdomains" in page
    assert "127.0.0.1" in page                                      # the client's address
    assert "IT desk" in page                                        # whom to contact
    assert re.search(r"<dt>Time</dt><dd>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", page)  # when


async def test_block_page_escapes_what_the_request_carried(start_proxy: StartProxy, tmp_path: Path) -> None:
    proxy = await start_with_rules(start_proxy, tmp_path, ADS)
    response, body = await get(proxy, "http://ads.example/<script>alert('x')</script>?a=\"1\"&b=<i>")
    assert response.status_code == 403
    page = body.decode()
    assert "<script>" not in page and "<i>" not in page and "'x'" not in page
    assert "/&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;?a=&quot;1&quot;&amp;b=&lt;i&gt;" in page


async def test_denied_connect_gets_block_page_and_decision_header(start_proxy: StartProxy,
                                                                  tmp_path: Path) -> None:
    proxy = await start_with_rules(start_proxy, tmp_path, ADS)
    response, body = await connect(proxy, "ads.example:443")
    assert response.status_code == 403
    headers = dict(response.headers)
    assert headers[b"x-fwdproxy-decision"] == b"deny deny/ads.txt:1 category=ads"
    page = body.decode()
    assert "ads.example:443" in page
    assert "deny/ads.txt:1" in page and "IT desk" in page
    response, _ = await connect(proxy, "cdn.tracker.example:443")
    assert dict(response.headers)[b"x-fwdproxy-decision"] == b"deny deny/ads.txt:3 category=ads"


async def test_allowed_request_still_reaches_the_origin(start_proxy: StartProxy, start_http_origin:
                                                        StartHttpOrigin, tmp_path: Path) -> None:
    origin = await start_http_origin()
    proxy = await start_with_rules(start_proxy, tmp_path, ADS)
    response, body = await get(proxy, f"http://origin.test:{origin.port}/hello")
    assert (response.status_code, body) == (200, b"hello from origin: /hello")
    assert b"x-fwdproxy-decision" not in dict(response.headers)


async def test_site_block_template_is_used(start_proxy: StartProxy, tmp_path: Path) -> None:
    template = ("<html><body><h1>Office filter</h1>$url|$category|$source|$client|$contact|"
                "$unknown</body></html>\n")
    proxy = await start_with_rules(start_proxy, tmp_path, {**ADS, "blockpage.html": template})
    response, body = await get(proxy, "http://ads.example/<b>")
    assert response.status_code == 403
    assert body.decode() == ("<html><body><h1>Office filter</h1>http://ads.example/&lt;b&gt;|ads|"
                             "deny/ads.txt:1|127.0.0.1|IT desk|$unknown</body></html>\n")
    response, body = await connect(proxy, "ads.example:443")
    assert body.startswith(b"<html><body><h1>Office filter</h1>ads.example:443|")


async def test_access_log_names_the_rule(start_proxy: StartProxy, tmp_path: Path) -> None:
    proxy = await start_with_rules(start_proxy, tmp_path, ADS)
    await get(proxy, "http://ads.example/x")
    await connect(proxy, "tracker.example:443")
    lines = [log_fields(line) for line in await settled_log(proxy)]
    assert [(f["method"], f["status"], f["verdict"], f["source"]) for f in lines] == [
        ("GET", "403", "deny", "deny/ads.txt:1"),
        ("CONNECT", "403", "deny", "deny/ads.txt:3"),
    ]
    assert lines[0]["url"] == "http://ads.example/x"


async def test_url_prefix_blocks_private_not_public(start_proxy: StartProxy, start_http_origin:
                                                    StartHttpOrigin, tmp_path: Path) -> None:
    origin = await start_http_origin()
    proxy = await start_with_rules(start_proxy, tmp_path, {"deny/paths.txt": "origin.test/private/\n"})
    base = f"http://origin.test:{origin.port}"
    for path in ("/private/x", "/public/../private/y", "/%70rivate/z"):
        response, body = await get(proxy, base + path)
        assert response.status_code == 403, path
        assert dict(response.headers)[b"x-fwdproxy-decision"] == b"deny deny/paths.txt:1 category=paths"
    response, body = await get(proxy, base + "/public")
    assert (response.status_code, body) == (200, b"hello from origin: /public")
    assert [r.target for r in origin.requests] == [b"/public"]


async def test_allow_folder_beats_deny_folder(start_proxy: StartProxy, start_http_origin: StartHttpOrigin,
                                              tmp_path: Path) -> None:
    origin = await start_http_origin()
    proxy = await start_with_rules(start_proxy, tmp_path, {
        "deny/everything.txt": "test\n",        # every *.test name
        "allow/work.txt": "origin.test\n",
    })
    response, body = await get(proxy, f"http://origin.test:{origin.port}/ok")
    assert (response.status_code, body) == (200, b"hello from origin: /ok")
    response, _ = await get(proxy, f"http://other.test:{origin.port}/no")
    assert response.status_code == 403
    assert dict(response.headers)[b"x-fwdproxy-decision"] == b"deny deny/everything.txt:1 category=everything"
    lines = [log_fields(line) for line in await settled_log(proxy)]
    assert [(f["verdict"], f["source"]) for f in lines] == [
        ("allow", "allow/work.txt:1"), ("deny", "deny/everything.txt:1")]


async def test_address_rule_denies_after_resolution(start_proxy: StartProxy, start_http_origin:
                                                    StartHttpOrigin, tmp_path: Path) -> None:
    origin = await start_http_origin()
    proxy = await start_with_rules(start_proxy, tmp_path, {"deny/local.txt": "127.0.0.0/8\n"})
    response, body = await get(proxy, f"http://origin.test:{origin.port}/")
    assert response.status_code == 403
    assert dict(response.headers)[b"x-fwdproxy-decision"] == b"deny deny/local.txt:1 category=local"
    assert b"deny/local.txt:1" in body
    assert origin.requests == []


async def test_proxy_and_check_agree_on_an_allow_address_rule(
        start_proxy: StartProxy, start_http_origin: StartHttpOrigin, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    origin = await start_http_origin()
    files = {"deny/ads.txt": "origin.test\n", "allow/lan.txt": "127.0.0.1\n"}
    proxy = await start_with_rules(start_proxy, tmp_path, files)
    config = tmp_path / "check.yaml"
    config.write_text("hosts: {origin.test: 127.0.0.1}\ndeny_destinations: []\n")
    url = f"http://origin.test:{origin.port}/"
    check_allowed = check_main(["--rules", str(tmp_path / "rules"), "--config", str(config), url]) == 0
    capsys.readouterr()
    response, body = await get(proxy, url)
    assert check_allowed  # the pure engine: allow beats deny across both phases
    assert (response.status_code, body) == (200, b"hello from origin: /")
    [line] = [log_fields(line) for line in await settled_log(proxy)]
    assert (line["verdict"], line["source"]) == ("allow", "allow/lan.txt:1")


async def test_name_denied_by_name_stays_denied_when_no_address_allows_it(
        start_proxy: StartProxy, start_http_origin: StartHttpOrigin, tmp_path: Path) -> None:
    origin = await start_http_origin()
    proxy = await start_with_rules(start_proxy, tmp_path, {
        "deny/ads.txt": "origin.test\n", "allow/lan.txt": "10.0.0.0/8\n"})
    response, body = await get(proxy, f"http://origin.test:{origin.port}/")
    assert response.status_code == 403
    assert dict(response.headers)[b"x-fwdproxy-decision"] == b"deny deny/ads.txt:1 category=ads"
    assert b"deny/ads.txt:1" in body
    assert origin.requests == []
    [line] = [log_fields(line) for line in await settled_log(proxy)]
    assert (line["verdict"], line["source"]) == ("deny", "deny/ads.txt:1")


async def test_policy_time_window_through_the_proxy(start_proxy, start_http_origin, tmp_path) -> None:
    """policy.yaml through a real proxy, with the clock injected: staff may reach social
    media at lunch on weekdays, not in the afternoon; the block page names the policy."""
    from datetime import datetime

    root = tmp_path / "rules-policy"
    (root / "deny").mkdir(parents=True)
    (root / "deny" / "social.txt").write_text("social.test\n")
    (root / "policy.yaml").write_text(
        "timezone: UTC\n"
        "groups:\n  staff: [127.0.0.0/8]\n"
        "policies:\n"
        "  - name: staff-lunch\n    clients: [staff]\n"
        "    when: {days: mon-fri, hours: '12:00-13:30'}\n    default: allow\n"
        "  - name: staff\n    clients: [staff]\n    deny: [social]\n    default: allow\n"
    )
    now = [datetime(2026, 11, 25, 12, 15, tzinfo=UTC)]  # a Wednesday, lunch
    origin = await start_http_origin()
    proxy = await start_proxy(clock=lambda: now[0], rules=str(root),
                              hosts={"social.test": "127.0.0.1"})
    url = f"http://social.test:{origin.port}/feed"
    client = await HttpClient.connect(proxy.port)
    response, _ = await client.get(url)
    assert response.status_code == 200
    await client.aclose()
    now[0] = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # the afternoon
    client = await HttpClient.connect(proxy.port)
    response, body = await client.get(url)
    assert response.status_code == 403
    assert b"deny/social.txt:1" in body
    assert b"<dd>staff</dd>" in body  # the policy that applied
    await client.aclose()


async def test_policy_redirect_sends_blocked_plain_http_to_the_offices_page(
        start_proxy: StartProxy, start_http_origin: StartHttpOrigin, tmp_path: Path) -> None:
    """A policy's ``redirect`` (squidGuard's and e2guardian's way): a 302 with the fields
    filled in, percent-encoded, logged as a denial; a CONNECT it denies still gets the 403
    (a browser shows nothing a tunnel is answered with); allowed requests are untouched."""
    origin = await start_http_origin()
    proxy = await start_with_rules(start_proxy, tmp_path, {
        **ADS,
        "policy.yaml": "policies:\n  - name: office\n    deny: [ads]\n"
                       "    redirect: 'http://intranet.example/blocked?u=$url&c=$client&t=$category"
                       "&p=$policy&r=$rule&$$'\n",
    })
    response, body = await get(proxy, "http://www.ads.example/x?a=1&b=2")
    assert response.status_code == 302
    headers = dict(response.headers)
    assert headers[b"location"] == (b"http://intranet.example/blocked?u=http%3A%2F%2Fwww.ads.example"
                                    b"%2Fx%3Fa%3D1%26b%3D2&c=127.0.0.1&t=ads&p=office"
                                    b"&r=deny%2Fads.txt%3A1&$")
    assert headers[b"x-fwdproxy-decision"] == b"deny deny/ads.txt:1 category=ads"
    assert b"deny/ads.txt:1" in body  # the block page, for a client that does not follow
    response, _ = await connect(proxy, "ads.example:443")
    assert response.status_code == 403
    response, _ = await get(proxy, f"http://127.0.0.1:{origin.port}/fine")
    assert response.status_code == 200
    lines = [log_fields(line) for line in await settled_log(proxy)]
    assert [(f["status"], f["verdict"]) for f in lines] == [("302", "deny"), ("403", "deny"),
                                                            ("200", "allow")]
