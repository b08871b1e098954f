"""gateway.urls: gateway paths ↔ page URLs, and links resolved as a browser resolves them."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# -- the old resolution, kept as the reference the fast one must agree with ----------------
#
# What `LinkRewriter` did before it split the base once: urljoin for every link, and the
# result split again (`_reference_url`). Kept verbatim: `url` must return the same string
# for every reference against every base.

_EDGES = "".join(chr(c) for c in range(0x21))
_INSIDE = re.compile(r"[\t\n\r]")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _reference_gateway_path(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    authority = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = parts.path or "/"
    if not path.startswith("/"):
        path = "/" + path
    query = f"?{parts.query}" if parts.query or url.split("#", 1)[0].endswith("?") else ""
    fragment = f"#{parts.fragment}" if parts.fragment else ""
    return f"{PREFIX}/{scheme}/{authority}{path}{query}{fragment}"


def _reference_reads(ref: str) -> str:
    ref = _INSIDE.sub("", ref.strip(_EDGES))
    match = _SCHEME.match(ref)
    if match is None or match.group(1).lower() in ("http", "https"):
        ref = ref.replace("\\", "/")
    return ref


def _reference_fetches(cleaned: str) -> bool:
    if not cleaned or cleaned.startswith("#"):
        return False
    match = _SCHEME.match(cleaned)
    return match is None or match.group(1).lower() in ("http", "https")


def _reference_absolute(base: str, ref: str) -> str | None:
    cleaned = _reference_reads(ref)
    if not _reference_fetches(cleaned):
        return None
    try:
        resolved = urljoin(base, cleaned)
        urlsplit(resolved).port  # noqa: B018
    except ValueError:
        return None
    return resolved if urlsplit(resolved).scheme.lower() in ("http", "https") else None


def _reference_url(base: str, ref: str) -> str:
    if not _reference_fetches(_reference_reads(ref)):
        return ref
    resolved = _reference_absolute(base, ref)
    mapped = _reference_gateway_path(resolved) if resolved is not None else None
    return mapped if mapped is not None else PREFIX


def _reference_set_base(base: str, href: str) -> str:
    try:
        resolved = urljoin(base, _reference_reads(href))
    except ValueError:
        return base
    return resolved if urlsplit(resolved).scheme.lower() in ("http", "https") else base


BASES = [
    PAGE, "https://site.example/dir/page.html", "http://h.example:8080/a/b/", "https://h.example",
    "https://h.example/", "https://h.example/a/../b/c", "https://h.example//x//y", "https://h/./a/",
    "https://h.example/a;p/b;q?x#y", "http://[::1]/x?q", "https://H.EXAMPLE:443/?", "HTTP://h/A",
    "http://u:p@h.example:80/d/", "https://h:99999/x", "https://h:x/y", "https://[::1/x",
    "ftp://h.example/y", "https:foo", "https:///x", "javascript:x", "", "/relative/base",
    "https://h/..", "https://h/a/..", "https://h/a/b/../../..", "https://h/%2e%2e/x", "https://é.example/",
    "https://h/dir/?", "http://[fe80::1%25eth0]:81/", "https://h/a b/c", "http://1.2.3.4:0/",
]
REFS = [
    "b.html", "/c", "../up", "./x", ".", "..", "../..", "a/./b/../c", "a//b", "/a//b", "//a", "///a",
    "////a", "?q=2", "?", "??", "?#f", "#f", "x?", "x?#", "x#", "x?y#z#w", "/x?", "a;b", ";p",
    "/a;b/c", "//cdn.example/x.png", "//cdn.example", "//cdn.example?q", "//cdn.example:8080/p",
    "//[::1]:80/x", "//[::1/x", "//[1.2.3.4]/", "//[v1.x]/", "//h:99999/", "//h:/", "//u@h/",
    "http://other.example:8080/p?q#f", "https://x.example/a?", "http://x.example/a?#f",
    "HTTPS://UP.example", "https:rel", "http:rel", "https:/abs", "http:", "https:", "http://",
    "https://", "http://[", "https://a.example:443/", "http://a.example:80", "http://a.example:0/",
    " \t//evil.example/\n", "/\\evil.example/x", "\\\\evil.example\\x", "ht\ttps://evil.example/",
    "\x00\x1f//evil.example/", "javascript:alert(1)", "data:x", "mailto:a@b", "ftp://x/", "a:b",
    "1a:b", "a/b:c", "x y", " x ", "x\ny", "é/ü", "//é.example/", "%2e%2e/x", ".hidden", "a/.b",
    "/./", "/../", "a/..", "a/.", "...", "/...", "..a", "a/../../../b", "/?q", "//h.example/a/../b",
    "//h.example/?", "//h.example#f", "https://h.example/a//../b", "http://H.example:8080",
    "//\u2100/", "//\xbd.example/", "//h%2fx/", "//a@b@c/", "/\\", "\\", "\\x", "https:\\\\h\\x",
]


@pytest.mark.parametrize("base", BASES)
def test_url_agrees_with_urljoin_on_a_table(base: str) -> None:
    links = LinkRewriter(base)
    for ref in REFS:
        assert links.url(ref) == _reference_url(base, ref), (base, ref)


PIECES = ["http:", "https:", "HTTPS:", "ftp:", "javascript:", "//", "/", "\\", "a", "B", ".", "..",
          "?", "#", ";", ":", "@", "[", "]", "::1", "h.example", "80", "443", "99999", "%2e", " ",
          "\t", "\n", "\x00", "\x1f", "é", "=", "&", "x=1"]
refs = st.one_of(st.lists(st.sampled_from(PIECES), max_size=12).map("".join),
                 st.text(alphabet=st.characters(max_codepoint=0xFF), max_size=30))


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(BASES) | refs.map(lambda r: "https://h.example/" + r) | refs, refs)
def test_url_agrees_with_urljoin(base: str, ref: str) -> None:
    assert LinkRewriter(base).url(ref) == _reference_url(base, ref)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(BASES), st.lists(st.tuples(st.booleans(), refs), max_size=8))
def test_url_agrees_with_urljoin_as_the_base_moves(base: str, steps: list[tuple[bool, str]]) -> None:
    links = LinkRewriter(base)
    for moves, ref in steps:
        if moves:
            try:
                expected = _reference_set_base(base, ref)
            except ValueError:  # an unreadable base, and "" (urljoin gives it back):
                links.set_base(ref)  # the base stays, as in browsers
                assert links.base_url == base
                continue
            links.set_base(ref)
            base = expected
            assert links.base_url == base
        else:
            assert links.url(ref) == _reference_url(base, ref)
            assert links.absolute(ref) == _reference_absolute(base, ref)


@settings(max_examples=1000, deadline=None)
@given(refs.map(lambda r: "https://" + r) | refs)
def test_gateway_path_agrees_with_the_old_one(url: str) -> None:
    assert gateway_path(url) == _reference_gateway_path(url)


def test_the_authorities_remembered_stay_bounded() -> None:
    links = LinkRewriter(PAGE)
    for n in range(1000):
        assert links.url(f"//h{n}.example/") == f"/browse/https/h{n}.example/"
    assert len(links._authorities) <= 256
