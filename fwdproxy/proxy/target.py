"""Request targets (RFC 9112 §3.2) parsed into one `Target` with a canonical host.

Strategy: the four request-target forms are told apart and split into scheme, host, port
and path; the host is reduced to its canonical form by `policy.names` before any policy
sees it. The path is kept as the exact bytes received, because the origin must see the
request target byte for byte. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from fwdproxy.errors import BadRequest
from fwdproxy.policy.names import IPAddress, canonical_host

Form = Literal["absolute", "authority", "origin", "asterisk"]

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

_SCHEME = re.compile(rb"^([A-Za-z][A-Za-z0-9+.\-]*)://")


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


