"""Canonical host names, addresses and paths: one spelling for each destination (pure).

Strategy: every spelling of a destination is reduced to one canonical host before any
rule is matched against it, since a filter that a trivial spelling slips past is a bug:
lower case, no trailing dot, percent-decoded, IDN as punycode (UTS 46, as browsers do),
IPv4 in any numeric spelling (``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1``) and
IPv4-mapped IPv6 reduced to the dotted address. Paths are normalised for matching only
(dot segments, merged slashes, unreserved percent-escapes). This lives in policy/ because
rules are read with it as much as requests are; the proxy's request parsing calls it.
Pure: no I/O.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from urllib.parse import unquote_to_bytes

import idna

from fwdproxy.errors import BadRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# RFC 3986 reg-name characters after percent-decoding, plus "_" which real DNS names use.
_REG_NAME = re.compile(r"[a-z0-9_.\-]+")
_HEX_PART = re.compile(r"0[xX][0-9a-fA-F]*")
_OCTAL_PART = re.compile(r"0[0-7]+")
_DECIMAL_PART = re.compile(r"0|[1-9][0-9]*")


def parse_ipv4_numeric(text: str) -> ipaddress.IPv4Address | None:
    """Read an IPv4 address in any spelling inet_aton and browsers accept, else None.

    ``127.1``, ``2130706433``, ``0x7f000001``, ``0177.0.0.01`` all give 127.0.0.1.
    """
    parts = text.split(".")
    if parts and parts[-1] == "":
        parts.pop()
    if not 1 <= len(parts) <= 4:
        return None
    numbers: list[int] = []
    for part in parts:
        # Only what inet_aton accepts: no signs, spaces or underscores, as int() would.
        if _HEX_PART.fullmatch(part):
            numbers.append(int(part[2:] or "0", 16))
        elif _OCTAL_PART.fullmatch(part):
            numbers.append(int(part, 8))
        elif _DECIMAL_PART.fullmatch(part):
            numbers.append(int(part))
        else:
            return None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for index, n in enumerate(head):
        value += n << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def canonical_address(address: IPAddress) -> IPAddress:
    """IPv4-mapped IPv6 (``::ffff:127.0.0.1``) becomes the IPv4 address it carries."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=4096)
def socket_address(text: str) -> IPAddress:
    """The canonical address in a socket address's host text (an IPv6 zone dropped).

    Cached: two per client connection, from few distinct clients and listeners, and
    parsing them each time was a visible share of a short connection's cost.
    """
    return canonical_address(ipaddress.ip_address(text.split("%", 1)[0]))


@functools.lru_cache(maxsize=4096)
def address_text(address: IPAddress) -> str:
    """`str(address)`, cached: each request's log record needs it and str() is slow."""
    return str(address)


# Hosts whose canonical form is remembered: a busy proxy sees the same few hundred names
# over and over, and the reduction (percent-decoding, IDNA, numeric IPv4 forms) costs more
# than the lookup. Bounded, so a client sending endless names only churns it.
CANONICAL_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=CANONICAL_CACHE_SIZE)
def canonical_host(raw: str) -> tuple[str, IPAddress | None]:
    """Reduce a host (without port) to its canonical text and, for literals, its address.

    Results are cached (the function is pure; a rejected host is not cached).

    Raises:
        BadRequest: the host is empty or not a valid name or address.
    """
    if raw.startswith("[") and raw.endswith("]"):
        inner = raw[1:-1]
        zone = inner.find("%")
        if zone != -1:
            raise BadRequest(f"IPv6 zone identifiers are not accepted: {raw!r}")
        try:
            address = canonical_address(ipaddress.IPv6Address(inner))
        except ValueError:
            raise BadRequest(f"invalid IPv6 address {raw!r}") from None
        return address.compressed, address
    try:
        host = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"invalid host {raw!r}") from None
    if not host.isascii():
        # UTS 46 mapping first (full-width digits, ideographic full stops...), as browsers
        # do, so that a mapped spelling of an address is still read as that address.
        try:
            host = idna.uts46_remap(host, std3_rules=False, transitional=False)
        except idna.IDNAError as exc:
            raise BadRequest(f"invalid international host name {raw!r}: {exc}") from None
    host = host.rstrip(".") if host not in (".", "") else host
    if not host:
        raise BadRequest("empty host")
    v4 = parse_ipv4_numeric(host)
    if v4 is not None:
        return str(v4), v4
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True, transitional=False).decode("ascii")
        except idna.IDNAError as exc:
            raise BadRequest(f"invalid international host name {raw!r}: {exc}") from None
    host = host.lower()
    if not _REG_NAME.fullmatch(host) or ".." in host or host.startswith("."):
        raise BadRequest(f"invalid host {raw!r}")
    if all(label.isdigit() for label in host.split(".")):
        raise BadRequest(f"invalid IPv4 address {raw!r}")
    return host, None


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_SLASHES = re.compile(r"//+")


def _decode_unreserved(match: re.Match[str]) -> str:
    value = int(match.group(1), 16)
    return chr(value) if value in _UNRESERVED else "%" + match.group(1).upper()


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4: ``/a/b/../c/./d`` → ``/a/c/d``; never climbs above the root."""
    output: list[str] = []
    segments = path.split("/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == ".":
            if last:
                output.append("")
        elif segment == "..":
            if len(output) > 1:
                output.pop()
            if last:
                output.append("")
        else:
            output.append(segment)
    result = "/".join(output)
    return result if result.startswith("/") else "/" + result


def normalize_path(path: str) -> str:
    """The form URL rules match: unreserved characters percent-decoded, other escapes in
    upper case, runs of slashes merged, dot segments removed (RFC 3986 §6.2.2); the query
    is kept as it is.

    The request itself is forwarded byte for byte; this is only what rules compare.
    """
    path, sep, query = path.partition("?")
    if "%" in path:
        path = _PERCENT.sub(_decode_unreserved, path)
    if "//" in path:
        # Not RFC 3986 (empty segments are segments), but what most origins do (nginx's
        # merge_slashes, Apache's MergeSlashes): //private/ would otherwise reach them
        # past a /private/ rule.
        path = _SLASHES.sub("/", path)
    if "." in path:
        path = remove_dot_segments(path)
    if not path.startswith("/"):
        path = "/" + path
    return path + sep + query
