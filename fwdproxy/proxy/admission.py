"""Who may use the proxy: the real client behind a PROXY protocol header, and proxy
authentication (Basic, against the htpasswd file).

Strategy: the peer is checked against `clients` by the policy before a byte is read (in
`connection`); a listener that expects a PROXY protocol header reads it here first, from
`trusted_proxies` only; then each request to a destination is authenticated, with a cache
of recent credentials and a throttle on failures, so that bcrypt runs rarely and guessing
is slow. Refusals are raised as `FwdproxyError`s for the one error handler.
"""

from __future__ import annotations

import h11
import trio

from fwdproxy.auth import dummy_hash, parse_basic, verify_password
from fwdproxy.config import Config
from fwdproxy.errors import AuthRequired, BadRequest, ConnectionLost, Forbidden, LoginRequired
from fwdproxy.policy.names import IPAddress
from fwdproxy.proxy import proxyproto
from fwdproxy.proxy.context import ServerContext
from fwdproxy.proxy.h11_stream import RECEIVE_SIZE, H11Stream
from fwdproxy.proxy.headers import get_header
from fwdproxy.proxy.target import Target

__all__ = ["authenticate", "read_proxy_header"]


async def read_proxy_header(stream: trio.SocketStream, http: H11Stream, peer: IPAddress,
                            config: Config) -> IPAddress:
    """Take the real client from a PROXY protocol header (HAProxy in front), and hand the
    bytes after it to `http`.

    Returns:
        The client to judge: the header's source, or `peer` for LOCAL and UNKNOWN.

    Raises:
        Forbidden: `peer` is not in `trusted_proxies`.
        BadRequest: no valid header within the header timeout.
        ConnectionLost: the peer closed or failed first.
    """
    if not any(peer in network for network in config.trusted_proxies):
        raise Forbidden(f"{peer} may not send PROXY protocol headers", source="config:trusted_proxies")
    data = b""
    try:
        with trio.fail_after(config.timeouts.header):
            while (header := proxyproto.parse(data)) is None:
                chunk = await stream.receive_some(RECEIVE_SIZE)
                if not chunk:
                    raise ConnectionLost("closed before a PROXY protocol header")
                data += chunk
    except proxyproto.ProxyHeaderError as exc:
        raise BadRequest(str(exc)) from None
    except trio.TooSlowError:
        raise BadRequest("no PROXY protocol header in time") from None
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        raise ConnectionLost(f"receive failed: {exc}") from exc
    http.prime(data[header.length:])
    http.bytes_received += len(data) - header.length  # the client's own bytes
    return header.client if header.client is not None else peer


async def authenticate(ctx: ServerContext, client_ip: IPAddress, request: h11.Request,
                       target: Target, *, gateway: bool = False) -> str | None:
    """The user the request authenticates as, or None for an exempt client. With
    `gateway`, the credentials come in Authorization (the web gateway is a site to the
    browser, not its proxy) and a failure asks with a 401.

    Raises:
        AuthRequired: no credentials, wrong ones, or too many failures from here
            (LoginRequired for the gateway).
    """
    auth = ctx.config.auth
    assert auth is not None
    if any(client_ip in network for network in auth.exempt):
        return None
    header = get_header(request.headers, b"authorization" if gateway else b"proxy-authorization")
    refusal = LoginRequired if gateway else AuthRequired
    if header is None:
        raise refusal("this proxy needs a user name and password", realm=auth.realm,
                      host=target.authority)
    now = trio.current_time()
    user = ctx.credentials.get(header, now)
    if user is not None:
        return user
    client = str(client_ip)
    if not ctx.throttle.allowed(client, now):
        raise refusal("too many failed attempts from this address; try again later",
                      realm=auth.realm, host=target.authority)
    users = ctx.loaded.htpasswd.users if ctx.loaded.htpasswd is not None else {}
    parsed = parse_basic(header)
    name, password = parsed if parsed is not None else ("", "")
    stored = users.get(name)
    # An unknown user still costs one bcrypt check, so timing does not tell users apart.
    reference = stored if stored is not None else dummy_hash()
    ok = await trio.to_thread.run_sync(verify_password, reference, password)
    if not (ok and stored is not None and parsed is not None):
        # The same wrong header retried on parallel connections counts once.
        ctx.throttle.failed(client, now, header)
        raise refusal("wrong user name or password", realm=auth.realm,
                      host=target.authority)
    ctx.throttle.succeeded(client)
    ctx.credentials.put(header, name, now)
    return name
