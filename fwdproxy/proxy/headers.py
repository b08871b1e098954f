"""Header rewriting between the client and origin sides (RFC 9110 §7.6, RFC 9112 §9.6).

Strategy: headers travel as h11's list of (lower-case name, value) pairs and repeated
headers (Set-Cookie, Via, ...) are never merged or re-ordered. Hop-by-hop headers are
dropped here and only here: the fixed list below plus every name the Connection header
lists. Framing headers (Content-Length, Transfer-Encoding) are kept so that h11 on the
other side frames the body the same way; h11 itself re-frames where the peers differ
(an HTTP/1.0 client never gets chunked). Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

Headers = list[tuple[bytes, bytes]]

# RFC 9110 §7.6.1 and the de-facto proxy headers. Transfer-Encoding is hop-by-hop too, but
# h11 consumes it for framing, so it is handled by h11 rather than stripped here.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"te",
        b"trailer",
        b"upgrade",
    }
)


FRAMING = frozenset({b"content-length", b"transfer-encoding"})
_COMMENT = re.compile(rb"\((?:[^()\\]|\\.)*\)")


def comma_tokens(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """Every comma-separated token of every `name` header, lower-cased and stripped."""
    tokens: list[bytes] = []
    for key, value in headers:
        if key.lower() == name:
            tokens.extend(value_tokens(value))
    return tokens


def value_tokens(value: bytes) -> list[bytes]:
    """The comma-separated tokens of one header value, lower-cased and stripped (empty
    ones dropped), as h11's `get_comma_header` reads them."""
    return [token for part in value.lower().split(b",") if (token := part.strip())]


def get_header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of header `name`, or None."""
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def hop_by_hop_names(connection_tokens: Iterable[bytes]) -> frozenset[bytes]:
    """The lower-case names that do not go on: the fixed list, and those the Connection
    header lists (its `connection_tokens`), but for the framing headers, which stay
    whatever Connection lists: h11 needs them to frame the body."""
    named = set(connection_tokens) - FRAMING
    return HOP_BY_HOP.union(named) if named else HOP_BY_HOP


def strip_hop_by_hop(headers: Sequence[tuple[bytes, bytes]], *, keep_upgrade: bool = False) -> Headers:
    """Drop hop-by-hop headers and those the Connection header names.

    Args:
        headers: the received headers.
        keep_upgrade: keep Upgrade and send ``Connection: upgrade`` (the WebSocket path).
    """
    dropped = hop_by_hop_names(comma_tokens(headers, b"connection"))
    out = [(key, value) for key, value in headers if key.lower() not in dropped]
    if keep_upgrade:
        upgrade = get_header(headers, b"upgrade")
        if upgrade is not None:
            out.append((b"connection", b"upgrade"))
            out.append((b"upgrade", upgrade))
    return out


def is_upgrade_request(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """True when the request asks for a protocol switch (Upgrade + Connection: upgrade)."""
    return get_header(headers, b"upgrade") is not None and b"upgrade" in comma_tokens(
        headers, b"connection"
    )


def via_entries(headers: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
    """The received-by part of each Via entry (``1.1 name (comment)`` gives ``name``)."""
    names: list[bytes] = []
    # Comments may hold commas ("1.1 a (x, y)"): drop them before splitting (RFC 9110 §5.6.5).
    stripped = [(k, _COMMENT.sub(b"", v)) for k, v in headers if k.lower() == b"via"]
    for entry in comma_tokens(stripped, b"via"):
        parts = entry.split()
        if len(parts) >= 2:
            names.append(parts[1])
    return names


def has_our_via(headers: Iterable[tuple[bytes, bytes]], via_name: str) -> bool:
    """True when a Via entry carries our own name: the request has looped back to us."""
    return via_name.lower().encode("ascii", "replace") in via_entries(headers)


def is_via_token(name: str) -> bool:
    """True when `name` can be our Via name: visible ASCII, no comma (one list entry)."""
    return bool(name) and all("!" <= c <= "~" and c != "," for c in name)


def add_via(headers: Headers, via_name: str) -> Headers:
    """Append our ``Via: 1.1 <name>`` after any existing entries (RFC 9110 §7.6.3)."""
    headers.append((b"via", via_value(via_name)))
    return headers


def via_value(via_name: str) -> bytes:
    """Our Via entry: ``1.1 <name>``."""
    return b"1.1 " + via_name.encode("ascii", "replace")


def request_headers_for_origin(
    headers: Sequence[tuple[bytes, bytes]], host_header: str, via_name: str, *, upgrade: bool
) -> Headers:
    """Client request headers as the origin should see them.

    The absolute URI's authority wins over a disagreeing Host (RFC 9112 §3.2.2), so Host
    is replaced by `host_header` and put first, where origins expect it.
    """
    out = [(k, v) for k, v in strip_hop_by_hop(headers, keep_upgrade=upgrade) if k.lower() != b"host"]
    out.insert(0, (b"host", host_header.encode("ascii")))
    return add_via(out, via_name)


def response_headers_for_client(
    headers: Sequence[tuple[bytes, bytes]], via_name: str, *, upgrade: bool = False
) -> Headers:
    """Origin response headers as the client should see them."""
    return add_via(strip_hop_by_hop(headers, keep_upgrade=upgrade), via_name)
