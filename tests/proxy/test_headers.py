"""headers.py: hop-by-hop stripping, Upgrade, Via, and the two rewrite functions.

Headers are h11's list of (name, value) byte pairs. Tables give the received list and the
exact list expected, so order and repeats are checked too.
"""

from __future__ import annotations

import pytest

from fwdproxy.proxy.headers import (
    HOP_BY_HOP,
    add_via,
    has_our_via,
    is_upgrade_request,
    request_headers_for_origin,
    response_headers_for_client,
    strip_hop_by_hop,
    via_entries,
)

H = list[tuple[bytes, bytes]]

# -- strip_hop_by_hop ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(HOP_BY_HOP))
def test_fixed_hop_by_hop_names_are_dropped(name: bytes) -> None:
    headers = [(b"accept", b"*/*"), (name, b"x"), (name.upper(), b"y"), (b"x-end", b"1")]
    assert strip_hop_by_hop(headers) == [(b"accept", b"*/*"), (b"x-end", b"1")]


def test_fixed_list_covers_rfc_9110_and_proxy_headers() -> None:
    assert {
        b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization",
        b"proxy-authenticate", b"te", b"trailer", b"upgrade",
    } <= HOP_BY_HOP


@pytest.mark.parametrize(
    ("received", "expected"),
    [
        # nothing hop-by-hop: unchanged, order kept
        ([(b"host", b"a"), (b"accept", b"*/*"), (b"x-a", b"1")],
         [(b"host", b"a"), (b"accept", b"*/*"), (b"x-a", b"1")]),
        # a name listed in Connection goes
        ([(b"connection", b"x-secret"), (b"x-secret", b"1"), (b"x-keep", b"2")],
         [(b"x-keep", b"2")]),
        # case-insensitive both in the list and in the header names
        ([(b"Connection", b"X-Secret"), (b"X-SECRET", b"1"), (b"x-secret", b"2"),
          (b"x-keep", b"3")],
         [(b"x-keep", b"3")]),
        # comma lists, with odd spacing and empty elements
        ([(b"connection", b" x-a ,x-b,, ,X-C "), (b"x-a", b"1"), (b"x-b", b"2"), (b"x-c", b"3"),
          (b"x-d", b"4")],
         [(b"x-d", b"4")]),
        # repeated Connection headers: every one counts
        ([(b"connection", b"x-a"), (b"x-a", b"1"), (b"connection", b"x-b"), (b"x-b", b"2"),
          (b"x-c", b"3")],
         [(b"x-c", b"3")]),
        # Connection: close / keep-alive name no header of their own; the rest is kept
        ([(b"connection", b"close"), (b"keep-alive", b"timeout=5"), (b"accept", b"*/*")],
         [(b"accept", b"*/*")]),
        # a listed name that only prefixes another header is not a match
        ([(b"connection", b"x-a"), (b"x-ab", b"1"), (b"x-a-b", b"2")],
         [(b"x-ab", b"1"), (b"x-a-b", b"2")]),
        # proxy credentials are never passed on
        ([(b"proxy-authorization", b"Basic Zm9vOmJhcg=="), (b"authorization", b"Bearer t")],
         [(b"authorization", b"Bearer t")]),
        # Transfer-Encoding and Content-Length stay for h11 to frame the body
        ([(b"transfer-encoding", b"chunked"), (b"te", b"trailers"), (b"trailer", b"x-sum")],
         [(b"transfer-encoding", b"chunked")]),
        ([(b"content-length", b"5"), (b"connection", b"keep-alive")],
         [(b"content-length", b"5")]),
        # Upgrade is dropped unless the caller keeps it
        ([(b"upgrade", b"websocket"), (b"connection", b"upgrade"), (b"x-a", b"1")],
         [(b"x-a", b"1")]),
        ([], []),
    ],
)
def test_strip_hop_by_hop(received: H, expected: H) -> None:
    assert strip_hop_by_hop(received) == expected


def test_strip_does_not_change_its_input() -> None:
    received = [(b"connection", b"x-a"), (b"x-a", b"1"), (b"x-b", b"2")]
    snapshot = list(received)
    strip_hop_by_hop(received)
    assert received == snapshot


@pytest.mark.parametrize(
    "received",
    [
        [(b"content-length", b"5"), (b"connection", b"content-length")],
        [(b"transfer-encoding", b"chunked"), (b"connection", b"Transfer-Encoding")],
    ],
)
def test_connection_cannot_strip_framing_headers(received: H) -> None:
    assert strip_hop_by_hop(received) == [received[0]]


@pytest.mark.parametrize(
    ("received", "expected"),
    [
        # Upgrade kept with a clean Connection: upgrade, other hop-by-hop still dropped
        ([(b"host", b"a"), (b"connection", b"Upgrade, x-a"), (b"upgrade", b"websocket"),
          (b"x-a", b"1"), (b"sec-websocket-key", b"k")],
         [(b"host", b"a"), (b"sec-websocket-key", b"k"), (b"connection", b"upgrade"),
          (b"upgrade", b"websocket")]),
        # value is passed on as received
        ([(b"Upgrade", b"WebSocket"), (b"Connection", b"keep-alive, Upgrade")],
         [(b"connection", b"upgrade"), (b"upgrade", b"WebSocket")]),
        # no Upgrade header: nothing is added
        ([(b"connection", b"keep-alive"), (b"x-a", b"1")], [(b"x-a", b"1")]),
    ],
)
def test_keep_upgrade(received: H, expected: H) -> None:
    assert strip_hop_by_hop(received, keep_upgrade=True) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"upgrade", b"websocket"), (b"connection", b"upgrade")], True),
        ([(b"Upgrade", b"h2c"), (b"Connection", b"Keep-Alive, UPGRADE")], True),
        ([(b"upgrade", b"websocket"), (b"connection", b"keep-alive"),
          (b"connection", b"upgrade")], True),
        ([(b"upgrade", b"websocket")], False),  # Connection must name it too
        ([(b"connection", b"upgrade")], False),  # and Upgrade must be present
        ([(b"upgrade", b"websocket"), (b"connection", b"upgrades")], False),
        ([], False),
    ],
)
def test_is_upgrade_request(headers: H, expected: bool) -> None:
    assert is_upgrade_request(headers) is expected


# -- Via -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "names"),
    [
        ([(b"via", b"1.1 proxy-a")], [b"proxy-a"]),
        ([(b"via", b"1.0 fred, 1.1 p.example.net (Apache/1.1)")], [b"fred", b"p.example.net"]),
        ([(b"Via", b"HTTP/1.1 Gateway:8080")], [b"gateway:8080"]),
        ([(b"via", b"1.1 a"), (b"via", b"1.1 b, 1.1 c")], [b"a", b"b", b"c"]),
        ([(b"via", b"garbage")], []),
        ([(b"x-via", b"1.1 a")], []),
        ([], []),
    ],
)
def test_via_entries(headers: H, names: list[bytes]) -> None:
    assert via_entries(headers) == names


@pytest.mark.parametrize(
    ("headers", "names"),
    [
        ([(b"via", b"1.1 a (comment, with a comma)")], [b"a"]),
        ([(b"via", b"1.1 other (see, via ours:8080 too)")], [b"other"]),
    ],
)
def test_via_comment_with_comma_is_one_entry(headers: H, names: list[bytes]) -> None:
    assert via_entries(headers) == names
    assert not has_our_via(headers, "ours:8080")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"via", b"1.1 ours:8080")], True),
        ([(b"VIA", b"1.1 OURS:8080")], True),  # case-insensitive, name and value
        ([(b"via", b"1.0 other, 1.1 ours:8080 (fwdproxy)")], True),
        ([(b"via", b"1.1 other"), (b"via", b"1.1 ours:8080")], True),
        ([(b"via", b"1.1 other (ours:8080)")], False),  # a comment is not a name
        ([(b"via", b"1.1 other (x, ours:8080)")], False),
        ([(b"via", b"1.1 ours:80801")], False),
        ([(b"via", b"1.1 ours")], False),
        ([(b"x-forwarded-for", b"ours:8080")], False),
        ([], False),
    ],
)
def test_has_our_via(headers: H, expected: bool) -> None:
    assert has_our_via(headers, "Ours:8080") is expected


def test_add_via_appends_after_existing_entries() -> None:
    headers = [(b"via", b"1.0 first"), (b"accept", b"*/*"), (b"via", b"1.1 second")]
    result = add_via(headers, "ours:8080")
    assert result == [
        (b"via", b"1.0 first"), (b"accept", b"*/*"), (b"via", b"1.1 second"),
        (b"via", b"1.1 ours:8080"),
    ]
    assert via_entries(result) == [b"first", b"second", b"ours:8080"]
    assert has_our_via(result, "ours:8080")


# -- request_headers_for_origin ----------------------------------------------------------


@pytest.mark.parametrize(
    ("received", "expected"),
    [
        # Host replaced by the target's, and put first; order of the rest kept
        ([(b"accept", b"*/*"), (b"host", b"wrong.example"), (b"x-a", b"1")],
         [(b"host", b"example.com:8080"), (b"accept", b"*/*"), (b"x-a", b"1"),
          (b"via", b"1.1 ours")]),
        # several Host headers all go; one is added
        ([(b"Host", b"a"), (b"x-a", b"1"), (b"HOST", b"b")],
         [(b"host", b"example.com:8080"), (b"x-a", b"1"), (b"via", b"1.1 ours")]),
        # no Host at all (HTTP/1.0 client)
        ([(b"x-a", b"1")],
         [(b"host", b"example.com:8080"), (b"x-a", b"1"), (b"via", b"1.1 ours")]),
        # hop-by-hop stripped, existing Via kept in front of ours
        ([(b"host", b"a"), (b"proxy-connection", b"keep-alive"), (b"connection", b"x-a"),
          (b"x-a", b"1"), (b"via", b"1.1 downstream"), (b"cookie", b"a=1"), (b"cookie", b"b=2")],
         [(b"host", b"example.com:8080"), (b"via", b"1.1 downstream"), (b"cookie", b"a=1"),
          (b"cookie", b"b=2"), (b"via", b"1.1 ours")]),
    ],
)
def test_request_headers_for_origin(received: H, expected: H) -> None:
    assert request_headers_for_origin(received, "example.com:8080", "ours", upgrade=False) == expected


def test_request_headers_for_origin_upgrade() -> None:
    received = [(b"host", b"a"), (b"connection", b"Upgrade"), (b"upgrade", b"websocket"),
                (b"sec-websocket-version", b"13")]
    assert request_headers_for_origin(received, "[::1]:8080", "ours", upgrade=True) == [
        (b"host", b"[::1]:8080"), (b"sec-websocket-version", b"13"),
        (b"connection", b"upgrade"), (b"upgrade", b"websocket"), (b"via", b"1.1 ours"),
    ]


# -- response_headers_for_client -------------------------------------------------------


def test_response_keeps_repeated_headers_in_order_and_count() -> None:
    received = [
        (b"set-cookie", b"a=1; Path=/"),
        (b"content-type", b"text/plain"),
        (b"Set-Cookie", b"b=2, c=3"),  # a comma inside one Set-Cookie is never split
        (b"keep-alive", b"timeout=5"),
        (b"set-cookie", b"a=1; Path=/"),  # an exact repeat is kept too
        (b"connection", b"keep-alive"),
        (b"www-authenticate", b"Basic"),
        (b"www-authenticate", b"Bearer"),
        (b"via", b"1.1 origin-side"),
    ]
    assert response_headers_for_client(received, "ours") == [
        (b"set-cookie", b"a=1; Path=/"),
        (b"content-type", b"text/plain"),
        (b"Set-Cookie", b"b=2, c=3"),
        (b"set-cookie", b"a=1; Path=/"),
        (b"www-authenticate", b"Basic"),
        (b"www-authenticate", b"Bearer"),
        (b"via", b"1.1 origin-side"),
        (b"via", b"1.1 ours"),
    ]


@pytest.mark.parametrize(
    ("upgrade", "expected"),
    [
        (False, [(b"sec-websocket-accept", b"k"), (b"via", b"1.1 ours")]),
        (True, [(b"sec-websocket-accept", b"k"), (b"connection", b"upgrade"),
                (b"upgrade", b"websocket"), (b"via", b"1.1 ours")]),
    ],
)
def test_response_upgrade(upgrade: bool, expected: H) -> None:
    received = [(b"upgrade", b"websocket"), (b"connection", b"Upgrade"),
                (b"sec-websocket-accept", b"k")]
    assert response_headers_for_client(received, "ours", upgrade=upgrade) == expected
