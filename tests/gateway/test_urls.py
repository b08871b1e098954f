"""gateway.urls: gateway paths ↔ page URLs, and links resolved as a browser resolves them."""

from __future__ import annotations

import pytest

from fwdproxy.gateway.urls import PREFIX, GatewayTarget, LinkRewriter, gateway_path, parse_gateway_path

PAGE = "https://example.org/docs/a.html?x=1"

LINKS = [
    ("b.html", "/browse/https/example.org/docs/b.html"),
    ("/c", "/browse/https/example.org/c"),
    ("../up", "/browse/https/example.org/up"),
    ("?q=2", "/browse/https/example.org/docs/a.html?q=2"),
    ("//cdn.example/x.png", "/browse/https/cdn.example/x.png"),
    ("http://other.example:8080/p?q#f", "/browse/http/other.example:8080/p?q#f"),
    ("HTTPS://UP.example", "/browse/https/up.example/"),
    ("https://example.org:443/", "/browse/https/example.org/"),
    ("http://[::1]:80/x", "/browse/http/[::1]/x"),
    # what a browser strips or reads differently: the rewritten link must not differ
    (" \t//evil.example/\n", "/browse/https/evil.example/"),
    ("/\\evil.example/x", "/browse/https/evil.example/x"),
    ("\\\\evil.example\\x", "/browse/https/evil.example/x"),
    ("ht\ttps://evil.example/", "/browse/https/evil.example/"),
    ("\x00\x1f//evil.example/", "/browse/https/evil.example/"),
    # fetch nothing over http: left alone
    ("#top", "#top"),
    ("", ""),
    ("javascript:alert(1)", "javascript:alert(1)"),
    ("JavaScript:alert(1)", "JavaScript:alert(1)"),
    ("data:image/png;base64,AAAA", "data:image/png;base64,AAAA"),
    ("mailto:a@example.org", "mailto:a@example.org"),
    # an http link that cannot be read never leaves the gateway
    ("http://a.example:99999/", PREFIX),
    ("http:", PREFIX),
]


@pytest.mark.parametrize(("ref", "expected"), LINKS)
def test_links(ref: str, expected: str) -> None:
    assert LinkRewriter(PAGE).url(ref) == expected


@pytest.mark.parametrize("ref", [ref for ref, _ in LINKS])
def test_a_rewritten_link_stays_in_the_gateway_or_fetches_nothing(ref: str) -> None:
    out = LinkRewriter(PAGE).url(ref)
    assert out.startswith(PREFIX) or (out == ref and not out.strip().startswith(("/", "http")))


def test_base_href_moves_later_links() -> None:
    links = LinkRewriter(PAGE)
    links.set_base("https://static.example/assets/")
    assert links.url("img.png") == "/browse/https/static.example/assets/img.png"
    links.set_base("javascript:void(0)")  # not http: ignored
    assert links.url("img.png") == "/browse/https/static.example/assets/img.png"
    links.set_base("http://[")  # no URL at all: ignored too
    assert links.url("img.png") == "/browse/https/static.example/assets/img.png"


@pytest.mark.parametrize(("path", "expected"), [
    ("/browse/https/example.org/docs/?q=1", GatewayTarget("https", "example.org", None, "/docs/?q=1")),
    ("/browse/http/EXAMPLE.org:8080", GatewayTarget("http", "example.org", 8080, "/")),
    ("/browse/http/example.org:80/x", GatewayTarget("http", "example.org", None, "/x")),
    ("/browse/http/[::1]:8080/", GatewayTarget("http", "[::1]", 8080, "/")),
    ("/browse/https/example.org?q", GatewayTarget("https", "example.org", None, "/?q")),
    ("/browse", None),
    ("/browse/", None),
    ("/browse?url=example.org", None),
])
def test_parse_gateway_path(path: str, expected: GatewayTarget | None) -> None:
    assert parse_gateway_path(path) == expected


@pytest.mark.parametrize("path", [
    "/browse/ftp/example.org/", "/browse/file//etc/passwd", "/browse/https/user@example.org/",
    "/browse/https/example.org:0/", "/browse/https/example.org:70000/", "/browse/https//x",
    "/browsex", "/elsewhere",
])
def test_bad_gateway_paths(path: str) -> None:
    with pytest.raises(ValueError):
        parse_gateway_path(path)


@pytest.mark.parametrize("url", [
    "https://example.org/docs/?q=1", "http://example.org:8080/", "http://[::1]:8080/x?y",
])
def test_round_trip(url: str) -> None:
    path = gateway_path(url)
    assert path is not None
    page = parse_gateway_path(path)
    assert page is not None and page.url() == url


def test_site_prefix_ends_with_a_slash() -> None:
    page = parse_gateway_path("/browse/https/example.org:8443/a")
    assert page is not None and page.site_prefix() == "/browse/https/example.org:8443/"
