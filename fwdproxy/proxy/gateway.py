"""The web gateway (``gateway: true``): ``/browse/<scheme>/<host>[:<port>]/<path>`` fetched
under the proxy's rules and rewritten so that navigation stays in the gateway.

Strategy: a gateway request is judged exactly as a proxied request for the same URL
would be (the `connection` request loop hands over its own resolve-check-connect step,
so `deny_destinations`, the machine's own addresses and every rule apply unchanged);
only then is the site contacted, over TLS verified against the system's trust store (or
`gateway.ca_file`) for https. The request's headers are translated by
`gateway.headers`, the body (a form's POST) is streamed to the site as it arrives, and
the response comes back chunk by chunk: HTML and CSS through the incremental rewriters
(decompressed first when the site compresses them anyway), anything else relayed as it
is. Nothing is buffered whole, so memory stays flat whatever the size.
"""

from __future__ import annotations

import dataclasses
import functools
import ssl
import zlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs

import h11
import trio

from fwdproxy.accesslog import Exchange
from fwdproxy.errors import BadGateway, BadRequest, ConnectionLost, GatewayTimeout, MethodNotAllowed
from fwdproxy.gateway.css import CssRewriter
from fwdproxy.gateway.headers import body_kind, request_headers, response_headers
from fwdproxy.gateway.html import HtmlRewriter
from fwdproxy.gateway.urls import GatewayTarget, LinkRewriter, gateway_path, parse_gateway_path
from fwdproxy.policy import RequestFacts
from fwdproxy.policy.names import IPAddress
from fwdproxy.proxy.admission import authenticate
from fwdproxy.proxy.context import ServerContext
from fwdproxy.proxy.decisions import Decision, request_facts, safe_search_host
from fwdproxy.proxy.forward import UpstreamAborted, first_error, has_body, pump_request_body
from fwdproxy.proxy.h11_stream import H11Stream
from fwdproxy.proxy.headers import get_header
from fwdproxy.proxy.replies import forbidden
from fwdproxy.proxy.target import Target, parse_target
from fwdproxy.site.pages import gateway_page

__all__ = ["OpenVetted", "serve_gateway", "wants_gateway"]

OpenVetted = Callable[[Target, RequestFacts, Decision], Awaitable[tuple[trio.SocketStream, IPAddress]]]
_METHODS = (b"GET", b"HEAD", b"POST")
# Content codings the gateway can undo to rewrite a page (zlib's 32+15: gzip or zlib).
_INFLATABLE = {"gzip": 47, "x-gzip": 47, "deflate": 47}
# The most a compressed chunk may expand to at once: decompression bombs stream too.
_INFLATE_STEP = 1 << 20


def wants_gateway(ctx: ServerContext, own: Target) -> bool:
    """Is this request for one of our pages the gateway's (on, and under /browse)?"""
    path = own.path
    return ctx.config.gateway.enabled and (path == b"/browse" or path.startswith((b"/browse/", b"/browse?")))


@functools.cache
def _tls_context(ca_file: Path | None) -> ssl.SSLContext:
    # One context per trust store: loading the system's certificates takes milliseconds.
    return ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)


async def serve_gateway(ctx: ServerContext, http: H11Stream, client_ip: IPAddress,
                        request: h11.Request, own: Target, exchange: Exchange,
                        open_vetted: OpenVetted) -> None:
    """Answer one request for the gateway: its form, or a page fetched and rewritten.

    Raises:
        LoginRequired, Forbidden, BadRequest, MethodNotAllowed, BadGateway, GatewayTimeout:
            for the error handler (a refusal shows the block page naming its rule).
        ConnectionLost: the client went away.
    """
    exchange.gateway = True
    if ctx.config.auth is not None:
        exchange.user = await authenticate(ctx, client_ip, request, own, gateway=True)
    if request.method not in _METHODS:
        refusal = MethodNotAllowed("the gateway answers GET, HEAD and POST")
        refusal.allow = "GET, HEAD, POST"
        raise refusal
    path = own.path.decode("latin-1")  # origin form, or the absolute form naming us
    try:
        page = parse_gateway_path(path.split("#", 1)[0])
    except ValueError as exc:
        raise BadRequest(f"not a gateway address: {exc}") from None
    if page is None:
        await _form(http, path, exchange)
        return
    target = _target(page)
    exchange.url = page.url()
    policy = ctx.policy
    facts = request_facts(ctx, client_ip, policy, target, exchange.method, exchange.user, False)
    if page.scheme == "https":  # URL rules see the page's real URL
        facts = _https_facts(facts)
    verdict = policy.decide(facts)
    exchange.verdict, exchange.source = ("allow" if verdict.allowed else "deny"), verdict.source
    if not verdict.allowed and verdict.final:
        raise forbidden(verdict, target, facts)
    if ctx.config.upstream is not None and ctx.config.upstream.carries(target.host):
        raise BadGateway("the gateway does not fetch through a parent proxy", host=target.authority)
    dial = safe_search_host(ctx, policy, facts)
    if dial is not None:
        exchange.detail = f"safe search: connected to {dial}"
    stream, address = await open_vetted(target, facts, Decision(policy, verdict, exchange, None, dial))
    exchange.upstream_address = str(address)
    async with stream:
        origin = await _origin(ctx, stream, page, target)
        try:
            await _exchange(ctx, http, origin, request, page, target, exchange)
        finally:
            with trio.CancelScope(shield=True):
                await origin.stream.aclose()


def _target(page: GatewayTarget) -> Target:
    try:
        return parse_target(b"GET", page.url().encode("latin-1"))
    except (BadRequest, UnicodeEncodeError) as exc:
        raise BadRequest(f"not a gateway address: {exc}") from None


def _https_facts(facts: RequestFacts) -> RequestFacts:
    assert facts.url is not None
    return dataclasses.replace(facts, url="https://" + facts.url.removeprefix("http://"))


async def _form(http: H11Stream, path: str, exchange: Exchange) -> None:
    """/browse (the form), or /browse?url=... (a redirect to that page in the gateway)."""
    exchange.verdict, exchange.source, exchange.answered_by_proxy = "own-page", "-", True
    query = path.split("?", 1)[1] if "?" in path else ""
    wanted = (parse_qs(query).get("url") or [""])[0].strip()
    if wanted:
        if "://" not in wanted:
            wanted = "https://" + wanted.lstrip("/")  # what a browser's address bar assumes
        location = gateway_path(wanted)
        if location is None:
            raise BadRequest(f"the gateway opens http and https addresses, not {wanted!r}")
        exchange.status = 302
        await http.send(h11.Response(status_code=302, reason=b"Found", headers=[
            (b"location", location.encode("latin-1", "replace")), (b"content-length", b"0"),
            (b"cache-control", b"no-store")]))
    else:
        body = gateway_page()
        exchange.status, exchange.content_type = 200, "text/html; charset=utf-8"
        await http.send(h11.Response(status_code=200, headers=[
            (b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store")]))
        await http.send(h11.Data(data=body))
    await http.send(h11.EndOfMessage())
    while http.conn.their_state is h11.SEND_BODY:
        if type(await http.next_event()) is h11.ConnectionClosed:
            break


async def _origin(ctx: ServerContext, stream: trio.SocketStream, page: GatewayTarget,
                  target: Target) -> H11Stream:
    """The HTTP connection to the site (after a verified TLS handshake for https)."""
    transport: trio.abc.Stream = stream
    if page.scheme == "https":
        tls = trio.SSLStream(stream, _tls_context(ctx.config.gateway.ca_file),
                             server_hostname=target.host, https_compatible=True)
        timeout = ctx.config.timeouts.connect
        try:
            with trio.fail_after(timeout):
                await tls.do_handshake()
        except trio.TooSlowError:
            raise GatewayTimeout(f"{target.authority}: no TLS handshake within {timeout:g} s",
                                 host=target.authority) from None
        except (trio.BrokenResourceError, OSError) as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            raise BadGateway(f"{target.authority}: TLS failed: {cause}", host=target.authority) from None
        transport = tls
    return H11Stream(transport, h11.CLIENT, max_head_bytes=ctx.config.limits.max_head_bytes,
                     http_parser=ctx.config.http_parser)


async def _exchange(ctx: ServerContext, http: H11Stream, origin: H11Stream, request: h11.Request,
                    page: GatewayTarget, target: Target, exchange: Exchange) -> None:
    """Send the request (its body streamed) and relay the rewritten response."""
    received = list(request.headers)
    headers = request_headers(received, page, ctx.via)
    outgoing = h11.Request(method=request.method, target=page.path.encode("latin-1"), headers=headers)
    site = _Site(origin, target, ctx.forward_settings.read_timeout)
    bodiless = not has_body(received)
    if bodiless:
        while http.conn.their_state is h11.SEND_BODY:
            await http.next_event()
    await site.send(outgoing)
    if bodiless:
        await site.send(h11.EndOfMessage())
        await _relay(ctx, http, site, page, exchange)
        return
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump_request_body, http, origin, ctx.forward_settings.client_idle_timeout)
            await _relay(ctx, http, site, page, exchange)
            nursery.cancel_scope.cancel()  # an early answer: the rest of the upload is moot
    except BaseExceptionGroup as group:
        raise first_error(group) from None


class _Site:
    """The site's side of one exchange: its failures are told apart from the browser's
    (ConnectionLost from here would read as "the client went away")."""

    def __init__(self, origin: H11Stream, target: Target, read_timeout: float) -> None:
        self.origin = origin
        self.target = target
        self.read_timeout = read_timeout
        self.head_sent = False  # the browser has a response head: failures cut it off

    def fail(self, message: str) -> Exception:
        message = f"{self.target.authority} {message}"
        if self.head_sent:
            return UpstreamAborted(message)
        return BadGateway(message, host=self.target.authority)

    async def send(self, event: h11.Request | h11.EndOfMessage) -> None:
        try:
            await self.origin.send(event)
        except ConnectionLost as exc:
            raise self.fail(f"broke the connection: {exc}") from exc

    async def next(self) -> object:
        try:
            event = await self.origin.next_event(silence=self.read_timeout)
        except trio.TooSlowError:
            if self.head_sent:
                raise self.fail(f"sent nothing for {self.read_timeout:g} s") from None
            raise GatewayTimeout(f"{self.target.authority} sent nothing for {self.read_timeout:g} s",
                                 host=self.target.authority) from None
        except ConnectionLost as exc:
            raise self.fail(f"broke the connection: {exc}") from exc
        if type(event) is h11.ConnectionClosed:
            raise self.fail("closed the connection in the middle of the response"
                            if self.head_sent else "closed the connection without a response")
        return event


async def _relay(ctx: ServerContext, http: H11Stream, site: _Site, page: GatewayTarget,
                 exchange: Exchange) -> None:
    """The site's response to the browser: head rewritten, body rewritten or relayed."""
    event = await site.next()
    while type(event) is not h11.Response:  # 1xx: the gateway's own answer comes whole
        event = await site.next()
    assert isinstance(event, h11.Response)
    received = list(event.headers)
    raw_type = get_header(received, b"content-type")
    content_type = None if raw_type is None else raw_type.decode("latin-1")
    encoding = (get_header(received, b"content-encoding") or b"identity").decode("latin-1").strip().lower()
    kind = body_kind(content_type)
    if kind is not None and encoding not in _INFLATABLE and encoding != "identity":
        raise site.fail(f"sent a page encoded with {encoding!r}, which the gateway cannot rewrite")
    exchange.status, exchange.content_type = event.status_code, content_type or "-"
    headers = response_headers(received, page, rewritten=kind is not None,
                               sandbox=ctx.config.gateway.sandbox)
    await http.send(h11.Response(status_code=event.status_code, reason=event.reason, headers=headers))
    site.head_sent = True
    body = _Body(kind, encoding, LinkRewriter(page.url())) if kind is not None else None
    while type(event := await site.next()) is h11.Data:
        assert isinstance(event, h11.Data)
        if body is None:
            await http.send(h11.Data(data=bytes(event.data)))
            continue
        pieces = body.feed(bytes(event.data))
        while True:  # one inflated step at a time: a compressed chunk may expand a lot
            try:
                piece = next(pieces, None)
            except zlib.error as exc:
                raise site.fail(f"sent a corrupt compressed page: {exc}") from None
            if piece is None:
                break
            if piece:
                await http.send(h11.Data(data=piece))
    if body is not None and (rest := body.close()):
        await http.send(h11.Data(data=rest))
    await http.send(h11.EndOfMessage())


class _Body:
    """A page or style sheet being rewritten: bytes in, rewritten bytes out, as they come.

    The bytes are read as Latin-1, one character each, and written back the same way: a
    page in any ASCII-compatible encoding (UTF-8, ISO-8859-*, windows-125*) keeps every
    byte that is not part of a rewritten link.
    """

    def __init__(self, kind: str, encoding: str, links: LinkRewriter) -> None:
        self.inflate = zlib.decompressobj(_INFLATABLE[encoding]) if encoding in _INFLATABLE else None
        self.rewriter: HtmlRewriter | CssRewriter = (
            HtmlRewriter(links) if kind == "html" else CssRewriter(links.url))

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The rewritten output for `data`, in pieces of bounded size.

        Raises:
            zlib.error: the compressed body is corrupt.
        """
        if self.inflate is None:
            yield self._out(self.rewriter.feed(data.decode("latin-1")))
            return
        while data:
            plain = self.inflate.decompress(data, _INFLATE_STEP)
            data = self.inflate.unconsumed_tail
            yield self._out(self.rewriter.feed(plain.decode("latin-1")))

    def close(self) -> bytes:
        return self._out(self.rewriter.close())

    @staticmethod
    def _out(text: str) -> bytes:
        # Rewritten links are ASCII; anything else is the page's own bytes.
        return text.encode("latin-1", "replace")
