"""Request targets (RFC 9112 §3.2) parsed into one `Target` with a canonical host.

Strategy: every spelling of a destination is reduced to one canonical host before any
policy sees it: lower case, no trailing dot, percent-decoded, IDN as punycode (UTS 46, as
browsers do), IPv4 in any numeric spelling (``2130706433``, ``0x7f.1``, ``0177.0.0.1``,
``127.1``) and IPv4-mapped IPv6 reduced to the dotted address. The path is kept as the
exact bytes received, because the origin must see the request target byte for byte.
Pure: no I/O.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote_to_bytes

import idna

from fwdproxy.errors import BadRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Form = Literal["absolute", "authority", "origin", "asterisk"]

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

# RFC 3986 reg-name characters after percent-decoding, plus "_" which real DNS names use.
_REG_NAME = re.compile(r"[a-z0-9_.\-]+")
_SCHEME = re.compile(rb"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_HEX_PART = re.compile(r"0[xX][0-9a-fA-F]*")
_OCTAL_PART = re.compile(r"0[0-7]+")
_DECIMAL_PART = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request goes.

    Attributes:
        form: which of the four request-target forms the client used.
        scheme: ``http``/``https`` for absolute form, None otherwise.
        host: canonical host name or address text (IPv6 without brackets); "" for
            origin and asterisk forms.
        port: destination port (the scheme's default when absent).
        path: origin-form target to send upstream, exactly as received (b"/" if empty).
        ip: the host as an address, when it is a literal.
    """

    form: Form
    scheme: str | None
    host: str
    port: int
    path: bytes
    ip: IPAddress | None

    @property
    def authority(self) -> str:
        """``host:port`` with IPv6 in brackets, as Host header and CONNECT use it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def host_header(self) -> str:
        """The Host value for the origin: the port only when it is not the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.scheme and DEFAULT_PORTS.get(self.scheme) == self.port:
            return host
        return f"{host}:{self.port}"

    def url(self) -> str:
        """The target as a URL for logs and pages (path bytes decoded leniently)."""
        if self.form == "authority":
            return self.authority
        if self.form == "absolute":
            return f"{self.scheme}://{self.host_header}{self.path.decode('latin-1')}"
        return self.path.decode("latin-1")


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


def split_authority(authority: str, default_port: int | None) -> tuple[str, int]:
    """Split ``host[:port]`` (IPv6 in brackets) and check the port.

    Raises:
        BadRequest: no host, a missing port without a default, or a bad port.
    """
    if "@" in authority:
        authority = authority.rsplit("@", 1)[1]  # userinfo is never forwarded or matched
    if authority.startswith("["):
        end = authority.find("]")
        if end == -1:
            raise BadRequest(f"unterminated IPv6 address in {authority!r}")
        host, rest = authority[: end + 1], authority[end + 1 :]
        if rest and not rest.startswith(":"):
            raise BadRequest(f"invalid authority {authority!r}")
        port_text = rest[1:] if rest else None
    else:
        host, sep, port_text_ = authority.rpartition(":")
        if not sep:
            host, port_text = authority, None
        else:
            port_text = port_text_
    if port_text is None or port_text == "":
        if default_port is None:
            raise BadRequest(f"a port is required in {authority!r}")
        return host, default_port
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise BadRequest(f"invalid port in {authority!r}")
    return host, int(port_text)


def parse_target(method: bytes, target: bytes) -> Target:
    """Parse a request target as h11 delivered it.

    Args:
        method: the request method (CONNECT selects authority form).
        target: the raw request target bytes.

    Returns:
        The parsed `Target`; for absolute form the path is the exact bytes after the
        authority (b"/" when empty).

    Raises:
        BadRequest: the target is malformed or uses a scheme the proxy does not forward.
    """
    try:
        text = target.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest("the request target must be ASCII (percent-encode it)") from None
    if method == b"CONNECT":
        host, port = split_authority(text, None)
        name, ip = canonical_host(host)
        return Target("authority", None, name, port, b"", ip)
    if target == b"*":
        return Target("asterisk", None, "", 0, target, None)
    if target.startswith(b"/"):
        return Target("origin", None, "", 0, target, None)
    match = _SCHEME.match(target)
    if match is None:
        raise BadRequest(f"unrecognised request target {text[:200]!r}")
    scheme = match.group(1).decode("ascii").lower()
    if scheme not in ("http", "https"):
        raise BadRequest(f"the proxy forwards http:// URLs only, not {scheme}://")
    rest = target[match.end() :]
    end = len(rest)
    for delimiter in (b"/", b"?", b"#"):
        found = rest.find(delimiter)
        if found != -1:
            end = min(end, found)
    authority, path = rest[:end].decode("ascii"), rest[end:]
    fragment = path.find(b"#")
    if fragment != -1:
        path = path[:fragment]  # a fragment is never sent to an origin (RFC 9110 §4.2.1)
    if not path.startswith(b"/"):
        path = b"/" + path
    host, port = split_authority(authority, DEFAULT_PORTS[scheme])
    if not host:
        raise BadRequest(f"no host in {text[:200]!r}")
    name, ip = canonical_host(host)
    return Target("absolute", scheme, name, port, path, ip)


def parse_host_header(value: bytes) -> tuple[str, int | None]:
    """Canonical host and explicit port (None when absent) of a Host header value.

    Raises:
        BadRequest: the value is not a valid host.
    """
    text = value.decode("ascii", "replace").strip()
    host, port = split_authority(text, 0)
    name, _ = canonical_host(host)
    return name, (port or None)


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
