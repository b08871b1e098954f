"""target.py: request-target forms, Host headers, and the Target helpers, as plain tables
(the canonical spellings of hosts are tested in tests/policy/test_names.py)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fwdproxy.errors import BadRequest
from fwdproxy.proxy.target import Target, parse_host_header, parse_target, split_authority

# -- parse_target: the four forms ------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "raw", "expected"),
    [
        # absolute form
        (b"GET", b"http://example.com/a/b?c=d",
         Target("absolute", "http", "example.com", 80, b"/a/b?c=d", None)),
        (b"GET", b"https://example.com/",
         Target("absolute", "https", "example.com", 443, b"/", None)),
        (b"GET", b"http://example.com:8080/x",
         Target("absolute", "http", "example.com", 8080, b"/x", None)),
        (b"GET", b"HTTP://Example.COM/Path",  # scheme and host case folded, path kept
         Target("absolute", "http", "example.com", 80, b"/Path", None)),
        (b"GET", b"http://127.0.0.1:81/",
         Target("absolute", "http", "127.0.0.1", 81, b"/", ipaddress.ip_address("127.0.0.1"))),
        (b"GET", b"http://[::1]:81/",
         Target("absolute", "http", "::1", 81, b"/", ipaddress.ip_address("::1"))),
        (b"GET", b"http://[::1]/",
         Target("absolute", "http", "::1", 80, b"/", ipaddress.ip_address("::1"))),
        (b"GET", b"http://[2001:DB8::1]/",
         Target("absolute", "http", "2001:db8::1", 80, b"/",
                ipaddress.ip_address("2001:db8::1"))),
        (b"GET", b"http://example.com:/x",  # empty port: the default (RFC 3986 §3.2.3)
         Target("absolute", "http", "example.com", 80, b"/x", None)),
        # authority form (CONNECT)
        (b"CONNECT", b"example.com:443",
         Target("authority", None, "example.com", 443, b"", None)),
        (b"CONNECT", b"Example.COM:8443",
         Target("authority", None, "example.com", 8443, b"", None)),
        (b"CONNECT", b"[::1]:443",
         Target("authority", None, "::1", 443, b"", ipaddress.ip_address("::1"))),
        (b"CONNECT", b"127.1:443",
         Target("authority", None, "127.0.0.1", 443, b"", ipaddress.ip_address("127.0.0.1"))),
        # origin form
        (b"GET", b"/", Target("origin", None, "", 0, b"/", None)),
        (b"GET", b"/a/b?c", Target("origin", None, "", 0, b"/a/b?c", None)),
        # asterisk form
        (b"OPTIONS", b"*", Target("asterisk", None, "", 0, b"*", None)),
    ],
)
def test_parse_target_forms(method: bytes, raw: bytes, expected: Target) -> None:
    assert parse_target(method, raw) == expected


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (b"http://example.com/a%2Fb", b"/a%2Fb"),  # %2F is not decoded to a slash
        (b"http://example.com/a%2fb/%2e%2e/c", b"/a%2fb/%2e%2e/c"),  # no case change, no dots
        (b"http://example.com/a/../b/./c", b"/a/../b/./c"),  # no dot-segment removal
        (b"http://example.com//double//slash", b"//double//slash"),
        (b"http://example.com/?q=%zz&&x==y;z", b"/?q=%zz&&x==y;z"),  # odd query kept as is
        (b"http://example.com/p?", b"/p?"),  # empty query kept
        (b"http://example.com/p?a=1&a=2&b", b"/p?a=1&a=2&b"),
        (b"http://example.com/%7Euser+x", b"/%7Euser+x"),
        (b"http://example.com/@evil.test", b"/@evil.test"),
        (b"http://example.com/a?b=/c?d", b"/a?b=/c?d"),
        # the fragment is dropped (RFC 9110 §4.2.1)
        (b"http://example.com/a?b=1#frag", b"/a?b=1"),
        (b"http://example.com/a#frag?not-a-query", b"/a"),
        (b"http://example.com#frag", b"/"),
        # empty path becomes "/"
        (b"http://example.com", b"/"),
        (b"http://example.com:8080", b"/"),
        (b"http://example.com?x=1", b"/?x=1"),
    ],
)
def test_absolute_path_kept_byte_for_byte(raw: bytes, path: bytes) -> None:
    assert parse_target(b"GET", raw).path == path


@pytest.mark.parametrize(
    "raw",
    [b"/a%2Fb?c=%zz#keep", b"/%00%FF", b"/a b", b"/;params?&&"],
)
def test_origin_form_path_kept_exactly(raw: bytes) -> None:
    target = parse_target(b"GET", raw)
    assert (target.form, target.path) == ("origin", raw)


@pytest.mark.parametrize(
    ("method", "raw", "host", "port"),
    [
        (b"GET", b"http://user:secret@example.com/", "example.com", 80),
        (b"GET", b"http://user@example.com:8080/", "example.com", 8080),
        (b"GET", b"http://a@b@example.com/", "example.com", 80),
        (b"GET", b"http://evil.test@example.com/", "example.com", 80),
        (b"CONNECT", b"user:pw@example.com:443", "example.com", 443),
    ],
)
def test_userinfo_is_ignored(method: bytes, raw: bytes, host: str, port: int) -> None:
    target = parse_target(method, raw)
    assert (target.host, target.port) == (host, port)
    assert "@" not in target.url()


@pytest.mark.parametrize(
    ("raw", "port"),
    [
        (b"http://example.com/", 80),
        (b"https://example.com/", 443),
        (b"http://example.com:443/", 443),
        (b"https://example.com:80/", 80),
        (b"http://example.com:1/", 1),
        (b"http://example.com:65535/", 65535),
        (b"http://example.com:080/", 80),  # leading zeros are still port 80
    ],
)
def test_ports(raw: bytes, port: int) -> None:
    assert parse_target(b"GET", raw).port == port


@pytest.mark.parametrize(
    ("method", "raw"),
    [
        # bad ports
        (b"GET", b"http://example.com:0/"),
        (b"GET", b"http://example.com:65536/"),
        (b"GET", b"http://example.com:99999999999999999999/"),
        (b"GET", b"http://example.com:8o/"),
        (b"GET", b"http://example.com:http/"),
        (b"GET", b"http://example.com:+80/"),
        (b"GET", b"http://example.com:-1/"),
        (b"GET", b"http://example.com:8%30/"),
        (b"GET", b"http://[::1]:0/"),
        (b"CONNECT", b"example.com:0"),
        (b"CONNECT", b"example.com:65536"),
        (b"CONNECT", b"example.com:abc"),
        (b"CONNECT", b"example.com:443/path"),
        # CONNECT needs a port, and a host
        (b"CONNECT", b"example.com"),
        (b"CONNECT", b"example.com:"),
        (b"CONNECT", b":443"),
        (b"CONNECT", b"*"),
        (b"CONNECT", b"[::1]"),
        # non-http schemes
        (b"GET", b"ftp://example.com/"),
        (b"GET", b"ws://example.com/"),
        (b"GET", b"wss://example.com/"),
        (b"GET", b"file:///etc/passwd"),
        (b"GET", b"gopher://example.com:70/"),
        (b"GET", b"httpx://example.com/"),
        # not a target at all
        (b"GET", b"example.com/"),
        (b"GET", b"http:example.com/"),
        (b"GET", b""),
        (b"GET", b"**"),
        # no host, or a broken one
        (b"GET", b"http:///x"),
        (b"GET", b"http://:80/"),
        (b"GET", b"http://user@/"),
        (b"GET", b"http://[::1/"),
        (b"GET", b"http://[::1]x/"),
        (b"GET", b"http://[not-v6]/"),
        (b"GET", b"http://[127.0.0.1]/"),
        (b"GET", b"http://::1/"),  # IPv6 must be in brackets
        (b"GET", b"http://exa mple.com/"),
        (b"GET", b"http://example.com%2F.evil.test/"),
        (b"GET", b"http://example.com%3A8080/"),
        # non-ASCII targets must be percent-encoded by the client
        (b"GET", "http://bücher.example/".encode()),
        (b"GET", "/caf\u00e9".encode()),
        (b"GET", b"http://example.com/\xff"),
        (b"CONNECT", "bücher.example:443".encode()),
    ],
)
def test_parse_target_rejects(method: bytes, raw: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        parse_target(method, raw)
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("method", "raw"),
    [
        (b"GET", b"http://example.com%0A/"),
        (b"CONNECT", b"example.com%0a:443"),
    ],
)
def test_parse_target_rejects_newline_in_host(method: bytes, raw: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_target(method, raw)


# -- Target.authority / host_header / url ----------------------------------------------


@pytest.mark.parametrize(
    ("method", "raw", "authority", "host_header", "url"),
    [
        (b"GET", b"http://example.com/a?b", "example.com:80", "example.com",
         "http://example.com/a?b"),
        (b"GET", b"http://example.com:8080/a", "example.com:8080", "example.com:8080",
         "http://example.com:8080/a"),
        (b"GET", b"http://example.com:443/", "example.com:443", "example.com:443",
         "http://example.com:443/"),
        (b"GET", b"https://example.com/", "example.com:443", "example.com",
         "https://example.com/"),
        (b"GET", b"https://example.com:80/", "example.com:80", "example.com:80",
         "https://example.com:80/"),
        (b"GET", b"http://[::1]/x", "[::1]:80", "[::1]", "http://[::1]/x"),
        (b"GET", b"http://[::1]:8080/x", "[::1]:8080", "[::1]:8080", "http://[::1]:8080/x"),
        (b"GET", b"http://[::ffff:127.0.0.1]/", "127.0.0.1:80", "127.0.0.1",
         "http://127.0.0.1/"),
        (b"GET", b"http://user:pw@B%C3%BCcher.example/p#f", "xn--bcher-kva.example:80",
         "xn--bcher-kva.example", "http://xn--bcher-kva.example/p"),
        (b"GET", b"http://example.com/%2F%FF", "example.com:80", "example.com",
         "http://example.com/%2F%FF"),
        # CONNECT has no scheme, so its Host always carries the port
        (b"CONNECT", b"example.com:443", "example.com:443", "example.com:443",
         "example.com:443"),
        (b"CONNECT", b"[2001:db8::1]:443", "[2001:db8::1]:443", "[2001:db8::1]:443",
         "[2001:db8::1]:443"),
        # origin and asterisk forms log their path
        (b"GET", b"/status", ":0", ":0", "/status"),
        (b"OPTIONS", b"*", ":0", ":0", "*"),
    ],
)
def test_target_helpers(method: bytes, raw: bytes, authority: str, host_header: str,
                        url: str) -> None:
    target = parse_target(method, raw)
    assert target.authority == authority
    assert target.host_header == host_header
    assert target.url() == url


def test_url_decodes_non_ascii_path_bytes_leniently() -> None:
    target = Target("absolute", "http", "example.com", 80, b"/caf\xc3\xa9\xff", None)
    assert target.url() == "http://example.com/caf\u00c3\u00a9\u00ff"


# -- parse_host_header -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"example.com", ("example.com", None)),
        (b"Example.COM:8080", ("example.com", 8080)),
        (b" example.com ", ("example.com", None)),
        (b"[::1]:80", ("::1", 80)),
        (b"127.1", ("127.0.0.1", None)),
        (b"example.com.", ("example.com", None)),
    ],
)
def test_parse_host_header(value: bytes, expected: tuple[str, int | None]) -> None:
    assert parse_host_header(value) == expected


@pytest.mark.parametrize("value", [b"", b"example.com:0", b"example.com:x", b"[::1", b"a b"])
def test_parse_host_header_rejects(value: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_host_header(value)


@pytest.mark.parametrize("authority", ["example.com:44³", "example.com:①", "[::1]:٨٠"])
def test_port_digits_of_other_scripts_are_bad_requests(authority: str) -> None:
    # str.isdigit() is true for these; int() refuses some and reads others as numbers
    with pytest.raises(BadRequest, match="invalid port"):
        split_authority(authority, None)


# Host goes to the origin without h11 checking it again (h11_stream.checked_headers): whatever
# authority a client sends, a Target that parses has a Host value h11 would accept.
_AUTHORITY_PIECES = st.sampled_from(
    ["a", "B", "0", "9", ".", "-", "_", ":", "[", "]", "@", "%", "%0d", "%0a", "%00", "%20",
     "%2c", "%7f", "%c3%bc", "%ff", "xn--", "::1", "127.0.0.1", "0x7f", "ü", "\u3002"])


@given(st.lists(_AUTHORITY_PIECES, min_size=1, max_size=12), st.sampled_from([b"GET", b"CONNECT"]))
def test_host_header_of_any_parsed_target_is_a_valid_field_value(
        pieces: list[str], method: bytes) -> None:
    import h11

    authority = "".join(pieces).encode("utf-8")
    raw = authority if method == b"CONNECT" else b"http://" + authority + b"/"
    try:
        target = parse_target(method, raw)
    except BadRequest:
        return
    value = target.host_header.encode("ascii")
    h11.Request(method=b"GET", target=b"/", headers=[(b"host", value)])  # raises if invalid
    assert all(0x21 <= byte <= 0x7E for byte in value), value
