"""One client connection: the request loop, from the request head to the forward or tunnel.

Strategy: a connection is admitted (or refused with 403) before a byte is read; then each
request is parsed, decided by name, resolved, decided by address, and forwarded or
tunnelled. Every client-visible failure arrives here as a `FwdproxyError` and leaves
through the one error handler (`replies`) as one page with its status, or as a closed
connection when a response was already under way. Exactly one access-log line is written
per request or tunnel, in `finally`. Admission and authentication (`admission`), the
proxy's own pages (`ownpages`) and a parent proxy (`parent`) have rooms of their own.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

import h11
import trio

from fwdproxy.accesslog import Exchange
from fwdproxy.config import Config
from fwdproxy.errors import (
    BadGateway,
    BadRequest,
    ConnectionLost,
    Forbidden,
    FwdproxyError,
    LoopDetected,
    RequestTimeout,
)
from fwdproxy.policy import RequestFacts
from fwdproxy.policy.names import IPAddress, address_text, socket_address
from fwdproxy.proxy.admission import authenticate, read_proxy_header
from fwdproxy.proxy.context import ServerContext
from fwdproxy.proxy.decisions import Decision, address_verdict, request_facts, safe_search_host
from fwdproxy.proxy.forward import RetryOnNewConnection, UpstreamAborted, forward
from fwdproxy.proxy.gateway import serve_gateway, wants_gateway
from fwdproxy.proxy.h11_stream import H11Stream, connection_class
from fwdproxy.proxy.headers import has_our_via
from fwdproxy.proxy.ownpages import (
    WELL_KNOWN_PATHS,
    Reached,
    host_header_names_us,
    names_us,
    serve_own_page,
)
from fwdproxy.proxy.parent import connect_through_parent, open_parent
from fwdproxy.proxy.replies import error_page_for, forbidden, send_error, send_raw_error
from fwdproxy.proxy.resolver import resolve
from fwdproxy.proxy.target import Target, parse_target
from fwdproxy.proxy.tunnel_session import OpenTunnel, SniTarget, run_tunnel
from fwdproxy.proxy.upstream import Upstream, connect

if TYPE_CHECKING:  # imported where used: the fast lane needs httptools, as the C parser does
    from fwdproxy.proxy.fastlane import FastLane, FastRequest


def _fast_lane_applies(config: Config) -> bool:
    # Proxy authentication is the slow path's (each request's credentials are checked).
    return (config.fast_path and config.auth is None
            and connection_class(config.http_parser) is not h11.Connection)


@functools.cache
def _fast_lane_class() -> type[FastLane]:
    from fwdproxy.proxy.fastlane import FastLane  # here: it needs httptools

    return FastLane


def _address_of(sockaddr: Any) -> IPAddress:
    return socket_address(str(sockaddr[0]))


async def handle(stream: trio.SocketStream, ctx: ServerContext, *,
                 proxy_protocol: bool = False, peer: Any = None,
                 reached: Reached | None = None) -> None:
    """Serve one client connection until it closes; never raises for client misbehaviour.

    Args:
        stream: the accepted connection.
        ctx: what all connections share.
        proxy_protocol: the listener expects a PROXY protocol header first.
        peer: the client's socket address as accept() returned it (else it is asked).
        reached: the listener's address when it is not a wildcard (else it is asked).
    """
    try:
        try:
            connection = ClientConnection(stream, ctx, peer=peer, reached=reached)
        except OSError:
            return  # reset before we looked at it
        if proxy_protocol and not await connection.read_proxy_header():
            return
        await connection.run()
    finally:
        # What stream.aclose() does, without its checkpoint: a close cannot block here.
        stream.socket.close()


class ClientConnection:
    """The request loop of one client connection."""

    def __init__(self, stream: trio.SocketStream, ctx: ServerContext, *, peer: Any = None,
                 reached: Reached | None = None) -> None:
        """Raises OSError when the client is already gone (no peer address)."""
        self.stream = stream
        self.ctx = ctx
        self.config = ctx.config
        self.client_ip = _address_of(peer if peer is not None else stream.socket.getpeername())
        if reached is None:
            local = stream.socket.getsockname()
            reached = Reached(_address_of(local), int(local[1]))
        self.reached = reached
        limits = self.config.limits
        self.http = H11Stream(stream, h11.SERVER, max_head_bytes=limits.max_head_bytes,
                              max_body_bytes=limits.max_request_body,
                              http_parser=self.config.http_parser)
        self.tunnel: OpenTunnel | None = None  # set by a CONNECT that got its 200
        self.fast: FastLane | None = None  # set in run(), once the client is known

    async def read_proxy_header(self) -> bool:
        """Take the real client from a PROXY protocol header (HAProxy in front).

        Returns:
            False when the connection was refused (not from `trusted_proxies`, or no valid
            header within the header timeout) or went away.
        """
        exchange = self._exchange()
        try:
            self.client_ip = await read_proxy_header(self.stream, self.http, self.client_ip, self.config)
        except FwdproxyError as exc:
            await self._refuse(exc, exchange)
            return False
        except ConnectionLost:
            return False
        return True

    async def run(self) -> None:
        verdict = self.ctx.policy.admit(self.client_ip)
        if not verdict.allowed:
            exchange = self._exchange()
            await self._refuse(Forbidden(verdict.reason, source=verdict.source), exchange)
            return
        if _fast_lane_applies(self.config):
            self.fast = _fast_lane_class()(self.ctx, self.http, self.stream.socket,
                                           self.client_ip, self.reached)
        first = True
        while not self.ctx.draining:
            counted = (self.http.bytes_received, self.http.bytes_sent)
            event = await self._wait_for_request(first)
            first = False
            if event is not None and not isinstance(event, h11.Request):
                assert self.fast is not None
                served = await self.fast.serve(event, counted)
                if served is not None:
                    if not served:
                        return
                    continue
                event = await self._wait_for_request(False)  # the head, handed back to h11
            if event is None:
                return
            assert type(event) is h11.Request
            keep_going = await self._serve(event, counted)
            if self.fast is not None:
                await self.fast.close_resumed()
            if self.tunnel is not None:
                tunnel, self.tunnel, event = self.tunnel, None, None
                # The client's h11 state is done with; only its byte counts were needed.
                del self.http
                self.fast = None  # it holds the client's h11 state too
                await run_tunnel(self.ctx, self.stream, tunnel)
                return
            if not keep_going or not self.http.reusable or self.ctx.draining:
                return
            self.http.start_next_cycle()

    def _exchange(self) -> Exchange:
        return Exchange(client=address_text(self.client_ip), started=time.time())

    async def _refuse(self, exc: FwdproxyError, exchange: Exchange) -> None:
        """Answer without h11 (nothing read yet, or h11 refused the request) and close."""
        try:
            await send_raw_error(self.stream, exc, exchange)
        finally:
            self.ctx.finish(exchange)

    async def _wait_for_request(self, first: bool) -> h11.Request | FastRequest | None:
        timeouts = self.config.timeouts
        timeout = timeouts.header if first else timeouts.keepalive
        received_before = self.http.bytes_received
        lane, came = (self.fast if self.http.fresh else None), False
        if lane is not None:
            # Often the request is there already (sent as the client connected, or as it read
            # the last answer): then it needs neither a wait nor its time limit's cancel scope.
            came, fast = lane.head_at_hand()
            if fast is not None:
                return fast
        scope = trio.CancelScope(deadline=trio.current_time() + timeout)
        self.ctx.idle_scopes.add(scope)
        try:
            with scope:
                if lane is not None and not came:
                    fast = await lane.read_head()
                    if fast is not None:
                        return fast
                event = await self.http.next_event()
        except FwdproxyError as exc:
            # h11 or the strict head check refused the request before it was complete.
            if self.http.can_respond:
                await self._send_error(exc, self._exchange(), log=True)
            return None
        except ConnectionLost:
            return None
        finally:
            self.ctx.idle_scopes.discard(scope)
        if scope.cancelled_caught:
            partial = self.http.bytes_received > received_before or bool(self.http.conn.trailing_data[0])
            if partial and not self.ctx.draining:
                timed_out = RequestTimeout(f"the request head did not arrive within {timeout:g} s")
                await self._send_error(timed_out, self._exchange(), log=True)
            return None
        if type(event) is h11.Request:
            return event
        return None  # ConnectionClosed or PAUSED

    async def _send_error(self, exc: FwdproxyError, exchange: Exchange, *, log: bool) -> None:
        try:
            await send_error(self.http, exc, exchange, self._error_body)
        finally:
            if log:
                self.ctx.finish(exchange)

    def _error_body(self, exc: FwdproxyError) -> bytes:
        return error_page_for(exc, block_template=self.ctx.loaded.block_template,
                              client=str(self.client_ip), contact=self.config.contact)

    async def _serve(self, request: h11.Request, counted: tuple[int, int]) -> bool:
        """Handle one request; False when the connection must close afterwards.

        Args:
            request: the request head.
            counted: bytes received and sent on this connection before this request.
        """
        exchange = self._exchange()
        exchange.method = request.method.decode("ascii", "replace")
        exchange.url = request.target.decode("ascii", "replace")
        exchange.http_version = request.http_version.decode("ascii", "replace")
        vias: list[tuple[bytes, bytes]] = []
        for name, value in request.headers:  # one pass serves the log and the loop check
            if name == b"referer":
                exchange.referer = value.decode("latin-1")
            elif name == b"user-agent":
                exchange.user_agent = value.decode("latin-1")
            elif name == b"via":
                vias.append((name, value))
        up_before, down_before = counted
        try:
            await self._dispatch(request, exchange, vias)
            return True
        except FwdproxyError as exc:
            await self._send_error(exc, exchange, log=False)
            return False
        except UpstreamAborted as exc:
            exchange.verdict = "upstream-error"
            exchange.detail = f"response cut short: {exc}"
            return False
        except ConnectionLost as exc:
            exchange.detail = f"client went away: {exc}"
            return False
        finally:
            exchange.bytes_up += self.http.bytes_received - up_before
            exchange.bytes_down += self.http.bytes_sent - down_before
            if self.tunnel is None:  # a tunnel's exchange is logged when the tunnel ends
                self.ctx.finish(exchange)

    async def _dispatch(self, request: h11.Request, exchange: Exchange,
                        vias: list[tuple[bytes, bytes]]) -> None:
        target = parse_target(request.method, request.target)
        exchange.url = target.url()
        if target.form == "absolute" and names_us(self.ctx, self.reached, target.host, target.port):
            # A browser set to use this proxy asks for the proxy's own page this way.
            await self._serve_own_page(request, target, exchange)
            return
        if target.form in ("origin", "asterisk"):
            # PAC, WPAD and health checks arrive under whatever name the office gave the
            # proxy (wpad.<domain>, a balancer's address): those paths answer under any.
            well_known = target.path.split(b"?", 1)[0] in WELL_KNOWN_PATHS
            if well_known or host_header_names_us(self.ctx, self.reached, request):
                await self._serve_own_page(request, target, exchange)
                return
            raise BadRequest(
                "this is a proxy: send requests with an absolute URL (http://host/path), "
                "or CONNECT host:port for HTTPS, and configure it as your client's proxy"
            )
        user = None
        if self.config.auth is not None:
            user = await authenticate(self.ctx, self.client_ip, request, target)
        exchange.user = user
        if vias and has_our_via(vias, self.ctx.via):
            raise LoopDetected(f"the request already passed through this proxy ({self.ctx.via})",
                               host=target.authority)
        connect = request.method == b"CONNECT"
        if not connect and target.scheme != "http":
            raise BadRequest("https:// URLs go through a CONNECT tunnel: set this proxy as "
                             "your HTTPS proxy too", host=target.authority)
        # One rule set for the whole request, even if a reload swaps in another meanwhile.
        policy = self.ctx.policy
        facts = request_facts(self.ctx, self.client_ip, policy, target, exchange.method, user, connect)
        verdict = policy.decide(facts)
        exchange.verdict, exchange.source = ("allow" if verdict.allowed else "deny"), verdict.source
        parent = self.config.upstream
        if parent is not None and not parent.carries(target.host):
            parent = None
        # Through a parent the addresses are never seen here, so nothing can lift it later.
        if not verdict.allowed and (verdict.final or parent is not None):
            raise forbidden(verdict, target, facts)
        # Not final: address rules may still lift or confirm it once the host is resolved.
        dial = safe_search_host(self.ctx, policy, facts) if parent is None else None
        if dial is not None:
            exchange.detail = f"safe search: connected to {dial}"
        decision = Decision(policy, verdict, exchange, parent, dial)
        if connect:
            await self._tunnel(target, facts, decision, exchange)
        else:
            await self._forward(request, target, facts, decision, exchange)

    # -- destinations ------------------------------------------------------------------

    def _address_verdict_denial(self, facts: RequestFacts, decision: Decision,
                                address: IPAddress, target: Target) -> Forbidden | None:
        verdict = address_verdict(self.ctx, decision.policy, facts, decision.by_name, address)
        if verdict.allowed:
            if not decision.by_name.final:
                decision.exchange.verdict, decision.exchange.source = "allow", verdict.source
            return None
        return forbidden(verdict, target, facts)

    async def _vetted_addresses(self, target: Target, facts: RequestFacts,
                                decision: Decision) -> list[IPAddress]:
        host, literal = (decision.dial_host, None) if decision.dial_host else (target.host, target.ip)
        addresses = await resolve(host, target.port, literal=literal, hosts=self.config.hosts,
                                  timeout=self.config.timeouts.dns)
        allowed: list[IPAddress] = []
        denial: Forbidden | None = None
        for address in addresses:
            refused = self._address_verdict_denial(facts, decision, address, target)
            if refused is None:
                allowed.append(address)
            else:
                denial = refused
        if not allowed:
            assert denial is not None
            raise denial
        return allowed

    async def _open(self, target: Target, facts: RequestFacts,
                    decision: Decision) -> tuple[trio.SocketStream, IPAddress]:
        addresses = await self._vetted_addresses(target, facts, decision)
        return await connect(addresses, target.port, timeout=self.config.timeouts.connect,
                             host=target.host)

    # -- plain HTTP ----------------------------------------------------------------------

    async def _wait_for_body_start(self) -> bool:
        """Hold a chunked request until its first chunk-size line has arrived and passed, so
        that a body refused at once never reaches the origin behind its head.

        Returns:
            True when the proxy answered the client's 100-continue itself, to draw the body.

        Raises:
            RequestTimeout: the line did not come within the header timeout.
            BadRequest, BodyTooLarge: it was refused.
        """
        http = self.http
        if http.body_start_checked:
            return False
        # A client waiting for 100 Continue sends nothing until it gets one; the origin
        # cannot send it, since it must not see the head yet (RFC 9110 §10.1.1 lets an
        # intermediary answer the expectation itself).
        answered = http.conn.they_are_waiting_for_100_continue
        if answered:
            await http.send(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue"))
        timeout = self.config.timeouts.header
        try:
            with trio.fail_after(timeout):
                await http.wait_for_body_start()
        except trio.TooSlowError:
            raise RequestTimeout(
                f"the chunked request body did not start within {timeout:g} s") from None
        return answered

    async def _forward(self, request: h11.Request, target: Target, facts: RequestFacts,
                       decision: Decision, exchange: Exchange) -> None:
        continue_sent = await self._wait_for_body_start()
        parent = decision.parent
        # Safe search connects elsewhere: its connections are pooled apart.
        dialled = decision.dial_host or target.host
        key = ("parent", parent.host, parent.port) if parent else ("http", dialled, target.port)
        resumed = self.fast.take_resumed() if self.fast is not None else None
        upstream = resumed.upstream if resumed is not None else self.ctx.pool.take(key)
        if resumed is None and upstream is not None and parent is None and self._address_verdict_denial(
                facts, decision, upstream.address, target):
            await upstream.aclose()
            upstream = None
        for _attempt in range(2):
            if upstream is None:
                if parent is not None:
                    stream, address = await open_parent(self.config, parent)
                else:
                    stream, address = await self._open(target, facts, decision)
                http = H11Stream(stream, h11.CLIENT, max_head_bytes=self.config.limits.max_head_bytes,
                                 http_parser=self.config.http_parser)
                upstream = Upstream(stream, http, key, address)
            reusable = False
            exchange.upstream_address = address_text(upstream.address)
            try:
                reusable = await forward(
                    self.ctx.forward_settings, self.http, request, target, upstream, exchange,
                    parent_authorization=parent.authorization if parent else None,
                    via_parent=parent is not None, continue_sent=continue_sent,
                    resumed=resumed.data if resumed is not None else None)
            except RetryOnNewConnection:
                resumed = None
                await upstream.aclose()
                upstream = None
                continue
            finally:
                if upstream is not None:
                    if reusable:
                        upstream.http.start_next_cycle()
                        self.ctx.pool.put(upstream)
                    else:
                        await upstream.aclose()
            return
        raise BadGateway(f"{target.authority} closed the connection without a response",
                         host=target.authority)

    # -- CONNECT ----------------------------------------------------------------------

    async def _tunnel(self, target: Target, facts: RequestFacts, decision: Decision,
                      exchange: Exchange) -> None:
        while True:  # read the (normally empty) CONNECT body to its end
            event = await self.http.next_event()
            if type(event) is h11.EndOfMessage:
                break
            if type(event) is h11.ConnectionClosed:
                raise ConnectionLost("the client closed during CONNECT")
        parent = decision.parent
        from_parent = b""
        if parent is not None:
            stream, address = await open_parent(self.config, parent)
        else:
            stream, address = await self._open(target, facts, decision)
        exchange.upstream_address = str(address)
        try:
            if parent is not None:
                from_parent = await connect_through_parent(self.config, stream, parent, target)
            exchange.status = 200
            await self.http.send(h11.Response(status_code=200, headers=[],
                                              reason=b"Connection established"))
        except BaseException:
            with trio.CancelScope(shield=True):
                await stream.aclose()
            raise
        # The relay itself runs from run(), once this request's frames (and the request,
        # target and decision they hold) are gone: an idle tunnel holds only what it
        # needs, which counts when thousands are open.
        sni = self.config.connect_sni
        vet = None
        if sni.applies(target.port):
            vet = SniTarget(sni, decision.policy, facts, address if parent is None else None)
        self.tunnel = OpenTunnel(stream, self.http.conn.trailing_data[0], from_parent, exchange, vet)

    async def _serve_own_page(self, request: h11.Request, target: Target, exchange: Exchange) -> None:
        if wants_gateway(self.ctx, target):
            await serve_gateway(self.ctx, self.http, self.client_ip, request, target, exchange, self._open)
            return
        await serve_own_page(self.http, self.ctx, self.reached, self.client_ip, request, target, exchange)


__all__ = ["ClientConnection", "handle"]
