"""The proxy's own pages, as a request reaches them: which requests are for the proxy
itself, and answering them with what `site/` renders.

Strategy: a request is for the proxy when its absolute URL names the listener the client
reached, or when it is in origin form (a browser opening the proxy's address, a PAC or WPAD
fetch, a health check); the PAC, WPAD, health and metrics paths answer under any Host,
since offices reach the proxy by whatever name they gave it. `/` is the status page for
`admin_clients` and the info page for everyone else; `/metrics` is for admins only;
`/blocked` shows each client (each user, with authentication) its own recent refusals.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import h11

from fwdproxy import __version__
from fwdproxy.accesslog import Exchange
from fwdproxy.errors import BadRequest, Forbidden, MethodNotAllowed, NotFound, ServiceUnavailable
from fwdproxy.policy.names import IPAddress, address_text
from fwdproxy.proxy.admission import authenticate
from fwdproxy.proxy.context import ServerContext
from fwdproxy.proxy.h11_stream import H11Stream
from fwdproxy.proxy.headers import get_header
from fwdproxy.proxy.target import Target, parse_host_header
from fwdproxy.site.metrics import METRICS_CONTENT_TYPE, metrics_text
from fwdproxy.site.pac import PAC_CONTENT_TYPE, pac_script
from fwdproxy.site.pages import blocked_page, info_page
from fwdproxy.site.statuspage import status_page

__all__ = ["WELL_KNOWN_PATHS", "Reached", "host_header_names_us", "names_us", "serve_own_page"]

# The proxy's own pages that answer whatever the Host header names.
WELL_KNOWN_PATHS = frozenset({b"/proxy.pac", b"/wpad.dat", b"/healthz", b"/metrics"})
HTML = "text/html; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Reached:
    """The listening address and port a client connected to."""

    ip: IPAddress
    port: int

    @property
    def address(self) -> str:
        """``ip:port``, IPv6 in brackets."""
        host = f"[{self.ip}]" if self.ip.version == 6 else str(self.ip)
        return f"{host}:{self.port}"


def names_us(ctx: ServerContext, reached: Reached, host: str, port: int) -> bool:
    """Does canonical `host` on `port` name the listener this client reached?"""
    if port != reached.port:
        return False
    return host in ctx.own_names or host == str(reached.ip)


def host_header_names_us(ctx: ServerContext, reached: Reached, request: h11.Request) -> bool:
    """Does an origin-form request's Host header name this proxy?"""
    host_value = get_header(request.headers, b"host")
    if host_value is None:
        return request.http_version == b"1.0"  # an HTTP/1.0 request to us, without Host
    try:
        host, port = parse_host_header(host_value)
    except BadRequest:
        return False
    return names_us(ctx, reached, host, port or 80)


async def serve_own_page(http: H11Stream, ctx: ServerContext, reached: Reached, client_ip: IPAddress,
                         request: h11.Request, target: Target, exchange: Exchange) -> None:
    """Answer a request for one of the proxy's own pages.

    Raises:
        MethodNotAllowed, NotFound, Forbidden, ServiceUnavailable: for the error handler.
    """
    exchange.verdict, exchange.source = "own-page", "-"
    if request.method not in (b"GET", b"HEAD"):
        raise MethodNotAllowed("the proxy's own pages answer GET and HEAD only")
    body, content_type = await _render(ctx, reached, client_ip, request, target)
    exchange.status = 200
    exchange.answered_by_proxy = True
    exchange.content_type = content_type
    await http.send(h11.Response(status_code=200, headers=[
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]))
    if request.method == b"GET":
        await http.send(h11.Data(data=body))
    await http.send(h11.EndOfMessage())
    # Drain the (empty) request body so the connection can be kept alive.
    while http.conn.their_state is h11.SEND_BODY:
        event = await http.next_event()
        if type(event) is h11.ConnectionClosed:
            break


async def _render(ctx: ServerContext, reached: Reached, client_ip: IPAddress, request: h11.Request,
                  target: Target) -> tuple[bytes, str]:
    path = target.path.split(b"?", 1)[0]
    admin = any(client_ip in network for network in ctx.config.admin_clients)
    if path == b"/" and admin:
        loaded = ctx.loaded
        return status_page(await ctx.figures(), rules_summary=loaded.summary,
                           rules_errors=len(loaded.errors), loaded_at=loaded.loaded_at,
                           version=__version__), HTML
    if path == b"/":
        return info_page(reached.address), HTML
    if path == b"/blocked":
        user = None
        if ctx.config.auth is not None:  # a user sees their own (a 407 asks who they are)
            user = await authenticate(ctx, client_ip, request, target)
        who = user or str(client_ip)
        return blocked_page(ctx.refusals.of(address_text(client_ip), user), who=who,
                            contact=ctx.config.contact), HTML
    if path == b"/metrics":
        if not admin:
            raise Forbidden("the metrics are for admin_clients only", source="config:admin_clients")
        rules = ctx.loaded.rules
        return metrics_text(await ctx.figures(), rules_entries={
            (action, category): count for (action, category), count in rules.counts.items()
        } if rules is not None else {}), METRICS_CONTENT_TYPE
    if path == b"/healthz":
        # For load balancers (HAProxy's option httpchk): up, and not shutting down.
        if ctx.draining:
            raise ServiceUnavailable("shutting down")
        return b"ok\n", "text/plain; charset=utf-8"
    if path in (b"/proxy.pac", b"/wpad.dat"):
        return _pac(ctx, reached, request).encode(), PAC_CONTENT_TYPE
    raise NotFound(f"the proxy has no page at {path.decode('latin-1')}")


def _pac(ctx: ServerContext, reached: Reached, request: h11.Request) -> str:
    # The address the browser reached us by (a name, usually) is the one it can use.
    own = reached.address
    host_value = get_header(request.headers, b"host")
    if host_value is not None:
        with contextlib.suppress(BadRequest):
            name, port = parse_host_header(host_value)
            own = f"[{name}]:{port or reached.port}" if ":" in name else f"{name}:{port or reached.port}"
    pac = ctx.config.pac
    try:
        return pac_script(proxies=pac.proxies or (own,), direct_domains=pac.direct_domains)
    except ValueError:  # a Host we cannot vouch for: name the address instead
        return pac_script(proxies=pac.proxies or (reached.address,), direct_domains=pac.direct_domains)
