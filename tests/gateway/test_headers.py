"""gateway.headers: what the site gets from the browser, and the browser from the site."""

from __future__ import annotations

import pytest

from fwdproxy.gateway.headers import SANDBOX, body_kind, refresh_value, request_headers, response_headers
from fwdproxy.gateway.urls import LinkRewriter, parse_gateway_path

PAGE = parse_gateway_path("/browse/https/example.org/a/b?x")
assert PAGE is not None


def test_request_headers_pass_what_a_page_needs_and_no_credentials() -> None:
    out = dict(request_headers([
        (b"accept", b"*/*"), (b"user-agent", b"Chromium"), (b"content-type", b"text/plain"),
        (b"authorization", b"Basic c2VjcmV0"), (b"proxy-authorization", b"Basic eA=="),
        (b"cookie", b"fwdgw_a=1; proxy=secret"), (b"accept-encoding", b"br"),
        (b"referer", b"http://127.0.0.1:8080/browse/http/other.example:81/p?q"),
        (b"origin", b"http://127.0.0.1:8080"), (b"x-forwarded-for", b"10.0.0.1"),
        (b"connection", b"keep-alive"), (b"upgrade", b"websocket"),
    ], PAGE, "proxy:8080"))
    assert out == {
        b"host": b"example.org", b"accept": b"*/*", b"user-agent": b"Chromium",
        b"content-type": b"text/plain", b"cookie": b"a=1",
        b"referer": b"http://other.example:81/p?q", b"origin": b"http://other.example:81",
        b"accept-encoding": b"identity", b"via": b"1.1 proxy:8080",
    }


def test_origin_goes_only_where_the_browser_sent_one() -> None:
    referer = (b"referer", b"http://127.0.0.1:8080/browse/https/example.org/form")
    assert b"origin" not in dict(request_headers([referer], PAGE, "p"))  # a GET navigation
    out = dict(request_headers([referer, (b"origin", b"null")], PAGE, "p"))
    assert out[b"origin"] == b"https://example.org"


def test_a_referer_outside_the_gateway_is_not_passed() -> None:
    out = dict(request_headers([(b"referer", b"http://127.0.0.1:8080/status")], PAGE, "p"))
    assert b"referer" not in out and b"origin" not in out


def test_response_headers_rewritten_and_origin_wide_ones_dropped() -> None:
    out = response_headers([
        (b"location", b"/z"), (b"content-location", b"https://cdn.example/c"),
        (b"refresh", b"5; url=next"),
        (b"link", b"</s.css>; rel=preload, <https://cdn.example/f.woff>; rel=preload"),
        (b"set-cookie", b"a=1; Path=/"), (b"set-cookie", b"broken"),
        (b"strict-transport-security", b"max-age=1"), (b"content-security-policy", b"default-src 'self'"),
        (b"alt-svc", b'h3=":443"'), (b"clear-site-data", b'"*"'), (b"www-authenticate", b"Basic"),
        (b"service-worker-allowed", b"/"), (b"content-length", b"10"), (b"content-encoding", b"gzip"),
        (b"etag", b'"x"'),
        (b"content-type", b"text/html"),
    ], PAGE, rewritten=True, sandbox=True)
    assert out == [
        (b"location", b"/browse/https/example.org/z"),
        (b"content-location", b"/browse/https/cdn.example/c"),
        (b"refresh", b"5; url=/browse/https/example.org/a/next"),
        (b"link", b"</browse/https/example.org/s.css>; rel=preload, "
                  b"</browse/https/cdn.example/f.woff>; rel=preload"),
        (b"set-cookie", b"fwdgw_a=1; Path=/browse/https/example.org/"),
        (b"content-type", b"text/html"),
        (b"x-content-type-options", b"nosniff"),
        (b"content-security-policy", SANDBOX),
    ]


def test_a_relayed_body_keeps_its_framing_headers() -> None:
    out = dict(response_headers([(b"content-length", b"10"), (b"content-encoding", b"gzip"),
                                 (b"etag", b'"x"')], PAGE, rewritten=False, sandbox=True))
    assert out[b"content-length"] == b"10" and out[b"content-encoding"] == b"gzip"
    assert b"content-security-policy" not in out


@pytest.mark.parametrize(("value", "expected"), [
    ("5; url=/next", "5; url=/browse/https/example.org/next"),
    ("0;URL='http://x.example/'", "0;URL='/browse/http/x.example/'"),
    ("0; next.html", "0; url=/browse/https/example.org/a/next.html"),
    ("3", "3"),
    ("0;", "0;"),
    ("1, url=//evil.example/", "1, url=/browse/https/evil.example/"),
])
def test_refresh(value: str, expected: str) -> None:
    assert refresh_value(value, LinkRewriter("https://example.org/a/b?x")) == expected


@pytest.mark.parametrize(("content_type", "kind"), [
    ("text/html; charset=utf-8", "html"), ("TEXT/HTML", "html"), ("application/xhtml+xml", "html"),
    ("text/css", "css"), ("image/png", None), ("application/javascript", None), (None, None),
])
def test_body_kind(content_type: str | None, kind: str | None) -> None:
    assert body_kind(content_type) == kind
