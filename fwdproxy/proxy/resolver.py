"""Host names to addresses: the `hosts:` map first, then DNS; and "is this address ours?".

Strategy: a name is resolved once per new upstream connection; the policy vets every
address returned and `upstream.connect` is handed only the vetted addresses, so a DNS
answer that changes between check and connect (rebinding) cannot reach anything unchecked.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import time
from collections.abc import Mapping

import trio

from fwdproxy.errors import BadGateway, GatewayTimeout
from fwdproxy.policy.names import IPAddress, canonical_address

_LOOPBACK = (ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1"))


async def resolve(
    host: str,
    port: int,
    *,
    literal: IPAddress | None,
    hosts: Mapping[str, tuple[IPAddress, ...]],
    timeout: float,
) -> list[IPAddress]:
    """Addresses for `host`, in the order to try them, without duplicates.

    Raises:
        BadGateway: the name does not resolve.
        GatewayTimeout: the lookup took longer than `timeout`.
    """
    if literal is not None:
        return [literal]
    if host in hosts:
        return list(hosts[host])
    # RFC 6761 §6.3-6.4: answer the special-use names here, never ask DNS about them.
    if host == "localhost" or host.endswith(".localhost"):
        return list(_LOOPBACK)
    if host == "invalid" or host.endswith(".invalid"):
        raise BadGateway(f"cannot resolve {host}: no such host (.invalid never resolves)", host=host)
    try:
        with trio.fail_after(timeout):
            infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except trio.TooSlowError:
        raise GatewayTimeout(f"DNS lookup of {host} timed out after {timeout:g} s",
                             host=host) from None
    except socket.gaierror as exc:
        reason = "no such host" if exc.errno in (socket.EAI_NONAME, socket.EAI_NODATA) else exc.strerror
        raise BadGateway(f"cannot resolve {host}: {reason}", host=host) from exc
    except OSError as exc:
        raise BadGateway(f"cannot resolve {host}: {exc}", host=host) from exc
    addresses: list[IPAddress] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        text = str(sockaddr[0]).split("%", 1)[0]
        address = canonical_address(ipaddress.ip_address(text))
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise BadGateway(f"cannot resolve {host}: no IPv4 or IPv6 address", host=host)
    return addresses


class LocalAddresses:
    """Answers "does this address belong to this machine?", remembering answers briefly.

    The test binds a throw-away socket to the address: the kernel accepts that only for
    its own addresses, whatever the interfaces are, and it does not block.
    """

    # Interfaces change rarely; a minute bounds how stale an answer can be.
    TTL = 60.0

    def __init__(self) -> None:
        self._cache: dict[IPAddress, tuple[bool, float]] = {}

    def __call__(self, address: IPAddress) -> bool:
        if address.is_loopback:
            return True
        if address.is_unspecified:
            return True  # connecting to 0.0.0.0 or :: reaches this machine
        now = time.monotonic()
        cached = self._cache.get(address)
        if cached is not None and now - cached[1] < self.TTL:
            return cached[0]
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((str(address), 0))
            local = True
        except OSError as exc:
            local = exc.errno != errno.EADDRNOTAVAIL and exc.errno != errno.EAFNOSUPPORT
            # Any other error (say, EACCES) is treated as "ours": refusing is the safe side.
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[address] = (local, now)
        return local
