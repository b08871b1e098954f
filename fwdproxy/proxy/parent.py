"""A parent proxy (`upstream:`): connecting to it, and CONNECT through it.

Strategy: the parent is trusted by configuration, so it is resolved and connected to
without the address policy (destinations are resolved by the parent, and only literal
addresses are judged here). A tunnel through it starts with our own CONNECT; the bytes the
parent sent past its 200 belong to the tunnel.
"""

from __future__ import annotations

import contextlib
import ipaddress

import h11
import trio

from fwdproxy.config import Config, ParentProxy
from fwdproxy.errors import BadGateway, ConnectionLost, GatewayTimeout
from fwdproxy.policy.names import IPAddress, canonical_address
from fwdproxy.proxy.h11_stream import H11Stream
from fwdproxy.proxy.resolver import resolve
from fwdproxy.proxy.target import Target
from fwdproxy.proxy.upstream import connect

__all__ = ["connect_through_parent", "open_parent"]


async def open_parent(config: Config, parent: ParentProxy) -> tuple[trio.SocketStream, IPAddress]:
    """Connect to the configured parent (trusted by configuration: no address policy)."""
    literal = None
    with contextlib.suppress(ValueError):
        literal = canonical_address(ipaddress.ip_address(parent.host))
    addresses = await resolve(parent.host, parent.port, literal=literal,
                              hosts=config.hosts, timeout=config.timeouts.dns)
    return await connect(addresses, parent.port, timeout=config.timeouts.connect,
                         host=f"parent proxy {parent.host}")

async def connect_through_parent(config: Config, stream: trio.SocketStream, parent: ParentProxy,
                                 target: Target) -> bytes:
    """CONNECT to `target` through the parent; the bytes it sent past its 200.

    Raises:
        BadGateway, GatewayTimeout: the parent refused, failed or stayed silent.
    """
    http = H11Stream(stream, h11.CLIENT, max_head_bytes=config.limits.max_head_bytes,
                     http_parser=config.http_parser)
    headers = [(b"host", target.authority.encode())]
    if parent.authorization is not None:
        headers.append((b"proxy-authorization", parent.authorization))
    timeout = config.timeouts.upstream_read
    try:
        with trio.fail_after(timeout):
            await http.send(h11.Request(method=b"CONNECT", target=target.authority.encode(),
                                        headers=headers))
            await http.send(h11.EndOfMessage())
            response = await http.next_event()
    except trio.TooSlowError:
        raise GatewayTimeout(f"the parent proxy {parent.host} did not answer in {timeout:g} s",
                             host=target.authority) from None
    except ConnectionLost as exc:
        raise BadGateway(f"the parent proxy {parent.host} failed: {exc}",
                         host=target.authority) from exc
    if not isinstance(response, h11.Response) or not 200 <= response.status_code < 300:
        status = getattr(response, "status_code", "no response")
        raise BadGateway(f"the parent proxy {parent.host} refused the tunnel ({status})",
                         host=target.authority)
    return http.conn.trailing_data[0]
