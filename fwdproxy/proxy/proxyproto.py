"""The PROXY protocol header (HAProxy's, versions 1 and 2), from bytes to the real client.

Strategy: a listener marked ``proxy_protocol`` first reads this header, which a load
balancer in front (HAProxy with ``send-proxy`` or ``send-proxy-v2``) sends before any
HTTP, and from then on the client named in it is the client: `clients`, policies and logs
all use it. Only connections from `trusted_proxies` may send it (the edge checks that
before reading), otherwise anyone could claim any address. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from fwdproxy.policy.names import IPAddress, canonical_address

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
V1_MAX = 107  # the longest v1 line, CRLF included (the specification's own figure)
V2_MAX = 16 + 65535


class ProxyHeaderError(ValueError):
    """The bytes are not a valid PROXY protocol header."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """What the header says.

    Attributes:
        client: the real client's address; None for LOCAL (the balancer's own health
            check) and UNKNOWN, where the connection's own peer stands.
        client_port: the real client's port (0 when unknown).
        length: how many bytes the header took; what follows is the client's data.
    """

    client: IPAddress | None
    client_port: int
    length: int


def parse(data: bytes) -> ProxyHeader | None:
    """Read a header at the start of `data`.

    Returns:
        the header, or None when more bytes are needed to tell.

    Raises:
        ProxyHeaderError: `data` does not start with a valid v1 or v2 header.
    """
    if data[:12] == V2_SIGNATURE[: len(data[:12])] and data[:1] == b"\r":
        return _parse_v2(data) if len(data) >= 16 else None
    if data[:6] == V1_PREFIX[: len(data[:6])]:
        return _parse_v1(data) if len(data) >= 6 else None
    raise ProxyHeaderError("the connection did not start with a PROXY protocol header")


def _parse_v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end == -1:
        if len(data) >= V1_MAX:
            raise ProxyHeaderError("PROXY v1 line longer than 107 bytes")
        return None
    fields = data[:end].decode("ascii", "replace").split(" ")
    if len(fields) >= 2 and fields[1] == "UNKNOWN":
        return ProxyHeader(None, 0, end + 2)
    if len(fields) != 6 or fields[1] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError(f"malformed PROXY v1 line {data[:end]!r}")
    # ASCII digits only: int() would also take "+80", " 80", "8_0" and other scripts' digits.
    ports = fields[4:6]
    if not all(p.isascii() and p.isdigit() and len(p) <= 5 and int(p) <= 65535 for p in ports):
        raise ProxyHeaderError(f"malformed PROXY v1 line {data[:end]!r}")
    port = int(fields[4])
    try:
        source = ipaddress.ip_address(fields[2])
        ipaddress.ip_address(fields[3])
    except ValueError:
        raise ProxyHeaderError(f"malformed PROXY v1 line {data[:end]!r}") from None
    if (source.version == 4) != (fields[1] == "TCP4"):
        raise ProxyHeaderError(f"malformed PROXY v1 line {data[:end]!r}")
    return ProxyHeader(canonical_address(source), port, end + 2)


def _parse_v2(data: bytes) -> ProxyHeader | None:
    if data[:12] != V2_SIGNATURE:
        raise ProxyHeaderError("bad PROXY v2 signature")
    version_command, family, length = data[12], data[13], struct.unpack("!H", data[14:16])[0]
    if version_command >> 4 != 2 or version_command & 0x0F not in (0, 1):
        raise ProxyHeaderError(f"unsupported PROXY v2 version/command 0x{version_command:02x}")
    total = 16 + length
    if len(data) < total:
        return None
    if version_command & 0x0F == 0:  # LOCAL: the balancer speaking for itself
        return ProxyHeader(None, 0, total)
    body = data[16:total]
    source: IPAddress
    if family == 0x11 and length >= 12:  # TCP over IPv4
        source = ipaddress.IPv4Address(body[0:4])
        port = struct.unpack("!H", body[8:10])[0]
    elif family == 0x21 and length >= 36:  # TCP over IPv6
        source = ipaddress.IPv6Address(body[0:16])
        port = struct.unpack("!H", body[32:34])[0]
    elif family == 0x00:  # UNSPEC: nothing to say about the client
        return ProxyHeader(None, 0, total)
    else:
        raise ProxyHeaderError(f"unsupported PROXY v2 address family 0x{family:02x}")
    return ProxyHeader(canonical_address(source), port, total)
