"""A browser without proxy settings, through the web gateway (``/browse/``).

Headless Chromium runs with ``--no-proxy-server`` and a resolver that answers NOTFOUND
for every name but 127.0.0.1: it reaches the proxy and nothing else, so a link that
escaped the gateway would fail to load. It opens
``http://PROXY/browse/http/origin.test:PORT/page1.html``, and small inline scripts walk it
through a two-origin site: ``origin.test`` (A, plain http) and ``other.test`` (B, https
with a trustme certificate that the proxy verifies against ``gateway.ca_file``). The walk
covers absolute, relative and protocol-relative links, images, srcset, a style sheet with
url() and @import, an inline style, a GET form, a multipart POST form, a 302 from A to B,
a 303 after the POST, and cookies set by both sites. The scripts follow the links as the
DOM holds them (rewritten), so each step depends on a rewrite. The origins record every
request, and the test checks that each one came through the proxy (its Via) and carried
only its own site's cookies.

Measured with Chromium 156 (the reason the walk runs in both modes): with the default
``gateway.sandbox`` (a CSP sandbox, so the page has an opaque origin), every request a
page makes counts as cross-site. Cookies then go only on top-level GET navigations. On
the POST, only a cookie without a SameSite attribute goes (Chromium's two-minute
"Lax+POST" allowance); a SameSite=Lax one does not. Subresources get no cookies. With
the sandbox off, every site's page shares the proxy's origin, so each request carries
its site's cookies (by path), on subresources and across sites too. See `_expected_cookies`.
"""

from __future__ import annotations

import email.parser
import email.policy
import re
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.e2e.conftest import (
    HandshakeFirst,
    ProxyProcess,
    SeenRequest,
    StartProxy,
    client_env,
    fetch_through,
)
from tests.e2e.test_browser import BROWSER_TIMEOUT, find_chromium, run_browser_until

pytestmark = pytest.mark.e2e

VIA = "1.1 e2e-proxy"  # the gateway's Via to sites: "1.1 " + the e2e config's via name
GATEWAY_OVERRIDES = {"hosts": {"origin.test": "127.0.0.1", "other.test": "127.0.0.1"}}
# A 1x1 transparent GIF, for every image.
GIF = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c"
                    "00000000010001000002024401003b")


# -- the site ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class Site:
    """One origin of the test site: its routes (path and query → reply) and every
    request it saw, in order."""

    name: str
    scheme: str
    port: int = 0
    routes: dict[str, Reply] = field(default_factory=dict)
    requests: list[SeenRequest] = field(default_factory=list)
    uploads: list[dict[str, str]] = field(default_factory=list)  # each POST's multipart fields
    errors: list[str] = field(default_factory=list)

    @property
    def authority(self) -> str:
        return f"{self.name}:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.authority}{path}"

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def report(self) -> str:
        """Every request seen, for a failure message."""
        return f"{self.name} saw:\n" + "\n".join(
            f"  {r.method} {r.path} cookie={r.headers.get('cookie')!r} via={r.headers.get('via')!r}"
            for r in self.requests)


def cookie_names(request: SeenRequest) -> set[str]:
    return {pair.split("=", 1)[0].strip()
            for pair in request.headers.get("cookie", "").split(";") if pair.strip()}


class _SiteHandler(HandshakeFirst):
    """Answers from the `Site`'s routes (404 otherwise). A POST must be multipart/form-data:
    its fields are parsed and kept in `site.uploads`."""

    server: _SiteServer

    def _record(self) -> Site:
        site = self.server.site
        site.requests.append(SeenRequest(
            self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        return site

    def do_GET(self) -> None:
        self._reply(self._record())

    def do_POST(self) -> None:
        site = self._record()
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        content_type = self.headers.get("Content-Type", "")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + body)
        if message.get_content_type() != "multipart/form-data" or not message.is_multipart():
            site.errors.append(f"POST {self.path}: not a multipart body: {content_type!r}")
        else:
            fields: dict[str, str] = {}
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True)
                if isinstance(name, str) and isinstance(payload, bytes):
                    fields[name] = payload.decode("utf-8")
                else:
                    site.errors.append(f"POST {self.path}: a part without a name: {part!s}")
            site.uploads.append(fields)
        self._reply(site)

    def _reply(self, site: Site) -> None:
        reply = site.routes.get(self.path) or Reply(404, b"not found", "text/plain")
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the requests are in `site.requests`; keep the test output clean


class _SiteServer(ThreadingHTTPServer):
    daemon_threads = True
    site: Site

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.site.errors.append(repr(sys.exc_info()[1]))


def _serve(site: Site, context: ssl.SSLContext | None) -> Iterator[Site]:
    server = _SiteServer(("127.0.0.1", 0), _SiteHandler)
    if context is not None:
        # The handshake happens in the handler thread (setup), not in the accept loop.
        server.socket = context.wrap_socket(server.socket, server_side=True,
                                            do_handshake_on_connect=False)
    server.site = site
    site.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name=f"{site.name}-origin", daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def site_a() -> Iterator[Site]:
    """origin.test, plain http."""
    yield from _serve(Site("origin.test", "http"), None)


@pytest.fixture
def site_b(tls_ca: trustme.CA) -> Iterator[Site]:
    """other.test, https with a certificate from the e2e CA (the gateway's ca_file)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("other.test").configure_cert(context)
    yield from _serve(Site("other.test", "https"), context)


# This script goes at the end of a page's body. A parser-inserted script runs only once
# the style sheets before it (and their @imports) have loaded, and reading offsetHeight lays
# the page out, so the CSS images (body, h1, the inline style) are requested at once and hold
# up the load event. On load, the page follows #next as the DOM holds it (rewritten): an
# <a> through its href, a <form> through submit().
_FOLLOW_NEXT = """<script>
void document.body.offsetHeight;
addEventListener("load", () => {
  const next = document.getElementById("next");
  if (next.tagName === "FORM") next.submit(); else location.href = next.href;
});
</script>"""


def _page(title: str, body: str) -> bytes:
    return (f'<!DOCTYPE html><html><head><title>{title}</title><link rel="stylesheet" '
            f'href="style.css"></head><body>{body}{_FOLLOW_NEXT}</body></html>').encode()


def build_site(a: Site, b: Site) -> None:
    """page1 (A) -absolute link-> page2 (A) -GET form-> /search (A) -302-> landing (B)
    -protocol-relative link-> upload (B) -multipart POST-> /submit (B) -303-> thanks (B)
    -absolute link-> /done (A). A sets its cookies on page1, B on landing: one without
    SameSite (Chromium's default, Lax) and one SameSite=Lax (B's also Secure; HttpOnly)."""
    for site in (a, b):
        site.routes["/style.css"] = Reply(
            body=b'@import "more.css";\nbody { background: url(img/bg.png) }\n',
            content_type="text/css")
        site.routes["/more.css"] = Reply(body=b"h1 { background-image: url('img/more.png') }\n",
                                         content_type="text/css")
        for image in ("a", "s1", "s2", "bg", "more", "inline", "b", "from-b", "thanks"):
            site.routes[f"/img/{image}.png"] = Reply(body=GIF, content_type="image/gif")
    a.routes["/page1.html"] = Reply(
        headers=(("Set-Cookie", "a_default=A1; Path=/"), ("Set-Cookie", "a_lax=A2; Path=/; SameSite=Lax")),
        body=_page("page1",
                   '<h1>page1</h1><img src="/img/a.png"><img srcset="img/s1.png 1x, img/s2.png 2x">'
                   '<div style="background:url(img/inline.png);width:4px;height:4px"></div>'
                   f'<a id="next" href="{a.url("/page2.html")}">page2</a>'))
    a.routes["/page2.html"] = Reply(body=_page(
        "page2", '<form id="next" action="search"><input name="q" value="hello world"></form>'))
    a.routes["/search?q=hello+world"] = Reply(302, headers=(("Location", b.url("/landing.html")),))
    b.routes["/landing.html"] = Reply(
        headers=(("Set-Cookie", "b_default=B1; Path=/"),
                 ("Set-Cookie", "b_lax=B2; Path=/; Secure; HttpOnly; SameSite=Lax")),
        body=_page("landing",
                   f'<h1>landing</h1><img src="//{b.authority}/img/b.png">'
                   f'<img src="{a.url("/img/from-b.png")}">'  # A's image on B's page
                   f'<a id="next" href="//{b.authority}/upload.html">upload</a>'))
    b.routes["/upload.html"] = Reply(body=_page(
        "upload",
        '<form id="next" action="submit" method="post" enctype="multipart/form-data">'
        '<input name="field" value="uploaded-value"><textarea name="note">two\nlines</textarea>'
        "</form>"))
    b.routes["/submit"] = Reply(303, headers=(("Location", "/thanks.html"),))
    b.routes["/thanks.html"] = Reply(body=_page(
        "thanks", f'<img src="/img/thanks.png"><a id="next" href="{a.url("/done")}">done</a>'))
    a.routes["/done"] = Reply(body=b"<!DOCTYPE html><p>done</p>")


# The top-level documents of the walk (method, path, status); every other request is a
# page's subresource.
PAGES_A = [("GET", "/page1.html", 200), ("GET", "/page2.html", 200),
           ("GET", "/search?q=hello+world", 302), ("GET", "/done", 200)]
PAGES_B = [("GET", "/landing.html", 200), ("GET", "/upload.html", 200), ("POST", "/submit", 303),
           ("GET", "/thanks.html", 200)]
SUBRESOURCES = {"/style.css", "/more.css", "/img/bg.png", "/img/more.png"}  # of every page
SUBRESOURCES_A = SUBRESOURCES | {"/img/a.png", "/img/s1.png", "/img/inline.png", "/img/from-b.png"}
SUBRESOURCES_B = SUBRESOURCES | {"/img/b.png", "/img/thanks.png"}


def _expected_cookies(request: SeenRequest, pages: set[str], prefix: str, sandbox: bool) -> set[str]:
    """The cookies Chromium sends with `request`, made after its site set them (measured
    with Chromium 156; see the module's docstring)."""
    both = {f"{prefix}_default", f"{prefix}_lax"}
    if not sandbox:
        return both
    if request.path not in pages:
        return set()  # a subresource of an opaque-origin page: cross-site, no cookie
    if request.method == "POST":
        return {f"{prefix}_default"}  # Lax withheld; only the unset-SameSite cookie goes
    return both  # a top-level GET navigation: Lax cookies go


# -- the browser -------------------------------------------------------------------------


def chromium_command(browser: str, profile: Path) -> list[str]:
    """test_browser's flags, without any proxy: every name but 127.0.0.1 is NOTFOUND."""
    return [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
        "--no-proxy-server",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ]


def browse_until(browser: str, url: str, profile: Path, done: Callable[[], bool]) -> None:
    """Run Chromium on `url` until `done()` (or BROWSER_TIMEOUT, or the browser exits)."""
    run_browser_until([*chromium_command(browser, profile), url], done)


def dump_dom(browser: str, url: str, profile: Path) -> str:
    result = subprocess.run([*chromium_command(browser, profile), "--dump-dom", url],
                            env=client_env(), capture_output=True, text=True,
                            timeout=BROWSER_TIMEOUT, stdin=subprocess.DEVNULL, check=False)
    return result.stdout


def gateway_proxy(start_proxy: StartProxy, ca_pem: Path, **settings: Any) -> ProxyProcess:
    return start_proxy({"gateway": {"enabled": True, "ca_file": str(ca_pem), **settings},
                        **GATEWAY_OVERRIDES})


# -- the tests ---------------------------------------------------------------------------


@pytest.mark.parametrize("sandbox", [
    pytest.param(True, id="sandbox-default"),  # the product's default, and the one to keep
    pytest.param(False, id="sandbox-off"),
])
def test_browser_walks_a_two_origin_site_through_the_gateway(
    start_proxy: StartProxy, ca_pem: Path, site_a: Site, site_b: Site, tmp_path: Path,
    sandbox: bool,
) -> None:
    browser = find_chromium()
    a, b = site_a, site_b
    build_site(a, b)
    proxy = gateway_proxy(start_proxy, ca_pem, sandbox=sandbox)
    browse_until(browser, f"{proxy.url}/browse/http/{a.authority}/page1.html", tmp_path / "profile",
                 lambda: "/done" in a.paths())
    seen = f"{a.report()}\n{b.report()}"
    assert "/done" in a.paths(), f"the walk did not reach /done within {BROWSER_TIMEOUT:g} s\n{seen}"

    # Every step happened, at the right origin, and nothing else (no mis-rewritten URL).
    for site, pages, subresources in ((a, PAGES_A, SUBRESOURCES_A), (b, PAGES_B, SUBRESOURCES_B)):
        wanted = {path for _, path, _ in pages} | subresources
        assert wanted <= set(site.paths()), f"missing at {site.name}: {wanted - set(site.paths())}\n{seen}"
        assert set(site.paths()) <= set(site.routes), f"unknown paths at {site.name}\n{seen}"
        assert not site.errors, site.errors
        # All of it through the gateway, none directly (the browser cannot resolve the names).
        assert all(r.headers.get("via") == VIA for r in site.requests), seen
        assert all(r.headers.get("host") == site.authority for r in site.requests), seen
    post = next(r for r in b.requests if r.method == "POST")
    assert post.path == "/submit" and post.headers["content-type"].startswith("multipart/form-data;")
    assert b.uploads == [{"field": "uploaded-value", "note": "two\r\nlines"}]
    assert [r.method for r in b.requests].count("POST") == 1

    # Cookies: each site's own come back to it (what Chromium sends in this mode), under
    # their own names (the gateway's fwdgw_ mark removed), and never the other site's.
    wrong = []
    for site, pages, prefix in ((a, PAGES_A, "a"), (b, PAGES_B, "b")):
        setter, *later = site.requests
        assert cookie_names(setter) == set(), seen
        page_paths = {path for _, path, _ in pages}
        for request in later:
            expected = _expected_cookies(request, page_paths, prefix, sandbox)
            if cookie_names(request) != expected:
                wrong.append(f"{site.name} {request.method} {request.path}: "
                             f"{sorted(cookie_names(request))} != {sorted(expected)}")
    assert not wrong, "\n".join(wrong) + "\n" + seen
    assert all(not name.startswith(("b_", "fwdgw_")) for r in a.requests for name in cookie_names(r))
    assert all(not name.startswith(("a_", "fwdgw_")) for r in b.requests for name in cookie_names(r))

    # The access log has each page, with the URL the gateway fetched, as a gateway request.
    for site, pages in ((a, PAGES_A), (b, PAGES_B)):
        for method, path, status in pages:
            line = proxy.wait_for_log(method, site.url(path), status)
            assert line.endswith(" mode=gateway"), line


def test_a_samesite_none_cookie_comes_back_through_the_gateway(
    start_proxy: StartProxy, ca_pem: Path, site_b: Site, tmp_path: Path,
) -> None:
    browser = find_chromium()
    b = site_b
    b.routes["/set.html"] = Reply(
        headers=(("Set-Cookie", "b_default=B1; Path=/"),
                 ("Set-Cookie", "b_none=N; Path=/; Secure; SameSite=None"),
                 ("Set-Cookie", "b_part=P; Path=/; Secure; SameSite=None; Partitioned")),
        body=_page("set", '<a id="next" href="next.html">next</a>'))
    b.routes["/next.html"] = Reply(body=b"<!DOCTYPE html><p>next</p>")
    b.routes["/style.css"] = Reply(content_type="text/css")
    proxy = gateway_proxy(start_proxy, ca_pem)
    browse_until(browser, f"{proxy.url}/browse/https/{b.authority}/set.html", tmp_path / "profile",
                 lambda: "/next.html" in b.paths())
    following = [r for r in b.requests if r.path == "/next.html"]
    assert following, b.report()
    names = cookie_names(following[0])
    assert "b_default" in names, b.report()  # the navigation carries cookies at all
    # Secure, SameSite=None and Partitioned cannot hold on the gateway's plain http: the
    # gateway drops them, so that the browser keeps the cookie (as a Lax one).
    assert {"b_none", "b_part"} <= names, b.report()


def test_a_link_to_a_blocked_host_shows_the_block_page(
    start_proxy: StartProxy, site_a: Site, tmp_path: Path,
) -> None:
    browser = find_chromium()
    rules = tmp_path / "rules"
    (rules / "deny").mkdir(parents=True)
    (rules / "deny" / "blocked.txt").write_text("blocked.test\n")
    proxy = start_proxy({"gateway": True, "rules": str(rules)})
    a = site_a
    a.routes["/links.html"] = Reply(
        body=b'<!DOCTYPE html><p><a id="blocked" href="http://blocked.test/secret.html">secret</a>')
    page = dump_dom(browser, f"{proxy.url}/browse/http/{a.authority}/links.html", tmp_path / "profile")
    link = re.search(r'<a id="blocked" href="([^"]*)"', page)
    assert link is not None, page
    assert link.group(1) == "/browse/http/blocked.test/secret.html"

    blocked = dump_dom(browser, proxy.url + link.group(1), tmp_path / "profile")
    assert "This page is blocked" in blocked, blocked
    assert "<code>deny/blocked.txt:1</code>" in blocked, blocked  # the rule, by file:line
    assert a.paths() == ["/links.html"]
    line = proxy.wait_for_log("GET", "http://blocked.test/secret.html", 403)
    assert " deny deny/blocked.txt:1 " in line and line.endswith(" mode=gateway"), line


def test_the_gateway_refuses_the_proxys_own_machine_by_default(
    start_proxy: StartProxy, site_a: Site,
) -> None:
    # No deny_destinations in the config: the safe default (loopback, private ranges...).
    proxy = start_proxy({"gateway": True, "deny_destinations": None})
    url = f"http://127.0.0.1:{site_a.port}/"
    status, body = fetch_through(proxy.port, f"/browse/http/127.0.0.1:{site_a.port}/")
    assert status == 403, body
    assert site_a.requests == []
    line = proxy.wait_for_log("GET", url, 403)
    assert line.endswith(" mode=gateway"), line
