"""One client connection: admission, the request loop, policy calls, the one error handler.

Strategy: a connection is admitted (or refused with 403) before a byte is read; then each
request is parsed, decided by name, resolved, decided by address, and forwarded or
tunnelled. Every client-visible failure arrives here as a `FwdproxyError` and leaves as
one page with its status, or as a closed connection when a response was already under way.
Exactly one access-log line is written per request or tunnel, in `finally`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from typing import Any

import h11
import trio

from fwdproxy import __version__, proxyproto
from fwdproxy.accesslog import AccessLog, Exchange
from fwdproxy.auth import (
    CredentialCache,
    FailureThrottle,
    challenge,
    dummy_hash,
    parse_basic,
    verify_password,
)
from fwdproxy.config import Config, LoadedRules, ParentProxy
from fwdproxy.errors import (
    AuthRequired,
    BadGateway,
    BadRequest,
    ConnectionLost,
    Forbidden,
    FwdproxyError,
    GatewayTimeout,
    LoopDetected,
    MethodNotAllowed,
    NotFound,
    RequestTimeout,
    ServiceUnavailable,
)
from fwdproxy.forward import (
    ForwardSettings,
    RetryOnNewConnection,
    UpstreamAborted,
    forward,
)
from fwdproxy.h11_stream import RECEIVE_SIZE, H11Stream
from fwdproxy.headers import get_header, has_our_via
from fwdproxy.metrics import METRICS_CONTENT_TYPE, metrics_text
from fwdproxy.pac import PAC_CONTENT_TYPE, pac_script
from fwdproxy.pages import block_page, error_page, info_page
from fwdproxy.policy import Policy, RequestFacts, Verdict
from fwdproxy.resolver import LocalAddresses, resolve
from fwdproxy.sharedstats import SharedStats
from fwdproxy.stats import PUBLISHED_TOP, Stats, StatsSnapshot, merge_snapshots
from fwdproxy.statuspage import status_page
from fwdproxy.target import (
    IPAddress,
    Target,
    canonical_address,
    normalize_path,
    parse_host_header,
    parse_target,
)
from fwdproxy.tunnel import relay
from fwdproxy.upstream import Pool, Upstream, connect

# After an error page the connection is closed; a client still sending gets this long
# (and this many bytes) to stop, so that its unread bytes do not turn our close into a
# reset that destroys the page before the client reads it.
LINGER_SECONDS = 2.0
# The proxy's own pages that answer whatever the Host header names.
WELL_KNOWN_PATHS = frozenset({b"/proxy.pac", b"/wpad.dat", b"/healthz", b"/metrics"})
LINGER_BYTES = 1 << 20


@dataclass
class ServerContext:
    """What every connection shares: built once by the server, passed down explicitly."""

    config: Config
    policy: Policy
    loaded: LoadedRules
    pool: Pool
    log: AccessLog
    via: str
    own_names: frozenset[str]
    local_addresses: LocalAddresses = field(default_factory=LocalAddresses)
    draining: bool = False
    idle_scopes: set[trio.CancelScope] = field(default_factory=set)
    reload_requested: trio.Event = field(default_factory=trio.Event)
    # Set when a reload attempt (successful or not) ends; replaced by a fresh one.
    reload_finished: trio.Event = field(default_factory=trio.Event)
    # The time policy windows are checked against (tests inject a fixed one).
    clock: Callable[[], datetime] = field(default=lambda: datetime.now().astimezone())
    credentials: CredentialCache = field(default_factory=CredentialCache)
    stats: Stats = field(default_factory=lambda: Stats(started=time.time()))
    throttle: FailureThrottle = field(default_factory=FailureThrottle)
    # With --workers: the other workers' figures, added to ours on the status page.
    shared: SharedStats | None = None

    forward_settings: ForwardSettings = field(init=False)

    def __post_init__(self) -> None:
        timeouts = self.config.timeouts
        self.forward_settings = ForwardSettings(self.via, timeouts.upstream_read,
                                                timeouts.client_idle, timeouts.tunnel_idle)

    def finish(self, exchange: Exchange) -> None:
        """An exchange is over: log it and count it."""
        self.log.write(exchange)
        self.stats.record(exchange, time.time())
        if self.shared is not None:
            self.shared.store(self.stats)

    async def figures(self) -> StatsSnapshot:
        """The figures for the status page and /metrics: this process's, plus the other
        workers' last published ones when there are workers."""
        now = time.time()
        if self.shared is None:
            return self.stats.snapshot(now)
        others = await trio.to_thread.run_sync(self.shared.others)
        return merge_snapshots([self.stats.snapshot(now, top=PUBLISHED_TOP), *others], now)

    def request_reload(self) -> None:
        """Reload the rules folder now (SIGHUP), whether or not a file changed."""
        self.reload_requested.set()

    def swap_rules(self, loaded: LoadedRules) -> None:
        """Put a freshly loaded rule set in force. One synchronous step: a request sees
        the old set or the new one, never a mix; requests in flight keep theirs."""
        self.policy = self.policy.with_rules(loaded.rules, loaded.policies)
        self.loaded = loaded
        self.credentials.clear()  # a changed password must not stay accepted

    def begin_drain(self) -> None:
        """Stop taking new requests: idle keep-alive connections close now."""
        self.draining = True
        for scope in self.idle_scopes:
            scope.cancel()


def _address_of(sockaddr: Any) -> IPAddress:
    return canonical_address(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]))


async def close_gracefully(stream: trio.abc.Stream) -> None:
    """Half-close, drain what the peer still sends for a moment, then close."""
    try:
        with trio.move_on_after(LINGER_SECONDS):
            if isinstance(stream, trio.abc.HalfCloseableStream):
                await stream.send_eof()
            drained = 0
            while drained < LINGER_BYTES:
                data = await stream.receive_some(RECEIVE_SIZE)
                if not data:
                    break
                drained += len(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()


def extra_headers(exc: FwdproxyError) -> list[tuple[bytes, bytes]]:
    """Headers an error response carries besides framing: the deciding rule, Allow."""
    headers = []
    if isinstance(exc, Forbidden):
        decision = f"deny {exc.source}"
        if exc.category is not None:
            decision += f" category={exc.category}"
        headers.append((b"x-fwdproxy-decision", decision.encode("ascii", "replace")))
    if isinstance(exc, MethodNotAllowed):
        headers.append((b"allow", exc.allow.encode()))
    if isinstance(exc, AuthRequired):
        headers.extend(challenge(exc.realm))
    return headers


def error_headers(exc: FwdproxyError, body: bytes) -> list[tuple[bytes, bytes]]:
    """Every header of an error response: an HTML page, never cached, then close."""
    return [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"connection", b"close"),
        *extra_headers(exc),
    ]


def raw_error_response(exc: FwdproxyError) -> bytes:
    """A complete HTTP/1.1 error response, for answering before h11 has a request."""
    body = error_page(exc.status, exc.title, exc.detail, host=exc.host,
                      source=getattr(exc, "source", None))
    head = f"HTTP/1.1 {exc.status} {HTTPStatus(exc.status).phrase}\r\n".encode("latin-1")
    head += b"".join(name + b": " + value + b"\r\n" for name, value in error_headers(exc, body))
    return head + b"\r\n" + body


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy a request was decided under and its by-name verdict, carried to the
    address checks so both phases use the same rule set (and log the final word)."""

    policy: Policy
    by_name: Verdict
    exchange: Exchange
    parent: ParentProxy | None  # the parent proxy this request goes through, if any


def forbidden(verdict: Verdict, target: Target) -> Forbidden:
    """The denial for a verdict, with what the block page shows."""
    return Forbidden(verdict.reason, source=verdict.source, host=target.authority,
                     category=verdict.category, rule=verdict.rule, url=target.url(),
                     policy=verdict.policy)


def _note_error(exchange: Exchange, exc: FwdproxyError) -> None:
    exchange.status = exc.status
    exchange.verdict = exc.verdict
    exchange.source = getattr(exc, "source", exchange.source)
    exchange.category = getattr(exc, "category", None)
    exchange.detail = exc.detail


async def handle(stream: trio.SocketStream, ctx: ServerContext, *,
                 proxy_protocol: bool = False) -> None:
    """Serve one client connection until it closes; never raises for client misbehaviour.

    Args:
        stream: the accepted connection.
        ctx: what all connections share.
        proxy_protocol: the listener expects a PROXY protocol header first.
    """
    try:
        try:
            connection = ClientConnection(stream, ctx)
        except OSError:
            return  # reset before we looked at it
        if proxy_protocol and not await connection.read_proxy_header():
            return
        await connection.run()
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()


@dataclass(slots=True)
class _Tunnel:
    """A CONNECT that was answered 200, waiting to be relayed."""

    stream: trio.SocketStream  # to the destination (or the parent proxy)
    early: bytes  # client bytes h11 read past the CONNECT head
    from_parent: bytes  # destination bytes a parent proxy sent past its 200
    exchange: Exchange


class ClientConnection:
    """The request loop of one client connection."""

    def __init__(self, stream: trio.SocketStream, ctx: ServerContext) -> None:
        """Raises OSError when the client is already gone (no peer address)."""
        self.stream = stream
        self.ctx = ctx
        self.config = ctx.config
        self.client_ip = _address_of(stream.socket.getpeername())
        local = stream.socket.getsockname()
        self.local_ip = _address_of(local)
        self.local_port = int(local[1])
        limits = self.config.limits
        self.http = H11Stream(stream, h11.SERVER, max_head_bytes=limits.max_head_bytes,
                              max_body_bytes=limits.max_request_body)
        self.tunnel: _Tunnel | None = None  # set by a CONNECT that got its 200

    async def read_proxy_header(self) -> bool:
        """Take the real client from a PROXY protocol header (HAProxy in front).

        Returns:
            False when the connection was refused: not from `trusted_proxies`, or no
            valid header within the header timeout.
        """
        peer = self.client_ip
        exchange = self._exchange()
        if not any(peer in network for network in self.config.trusted_proxies):
            await self._refuse(Forbidden(f"{peer} may not send PROXY protocol headers",
                                         source="config:trusted_proxies"), exchange)
            return False
        data = b""
        try:
            with trio.fail_after(self.config.timeouts.header):
                while (header := proxyproto.parse(data)) is None:
                    chunk = await self.stream.receive_some(RECEIVE_SIZE)
                    if not chunk:
                        return False
                    data += chunk
        except (proxyproto.ProxyHeaderError, trio.TooSlowError) as exc:
            detail = str(exc) if isinstance(exc, ValueError) else "no PROXY protocol header in time"
            await self._refuse(BadRequest(detail), exchange)
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return False
        if header.client is not None:  # LOCAL (health checks) and UNKNOWN keep the peer
            self.client_ip = header.client
        self.http.prime(data[header.length:])
        self.http.bytes_received += len(data) - header.length  # the client's own bytes
        return True

    async def run(self) -> None:
        verdict = self.ctx.policy.admit(self.client_ip)
        if not verdict.allowed:
            exchange = self._exchange()
            await self._refuse(Forbidden(verdict.reason, source=verdict.source), exchange)
            return
        first = True
        while not self.ctx.draining:
            counted = (self.http.bytes_received, self.http.bytes_sent)
            event = await self._wait_for_request(first)
            if event is None:
                return
            first = False
            keep_going = await self._serve(event, counted)
            if self.tunnel is not None:
                tunnel, self.tunnel, event = self.tunnel, None, None
                # The client's h11 state is done with; only its byte counts were needed.
                del self.http
                await self._relay_tunnel(tunnel)
                return
            if not keep_going or not self.http.reusable or self.ctx.draining:
                return
            self.http.start_next_cycle()

    def _exchange(self) -> Exchange:
        return Exchange(client=str(self.client_ip), started=time.time())

    async def _refuse(self, exc: FwdproxyError, exchange: Exchange) -> None:
        """Answer without h11 (nothing read yet, or h11 refused the request) and close."""
        _note_error(exchange, exc)
        exchange.answered_by_proxy = True
        exchange.content_type = "text/html; charset=utf-8"
        try:
            await self.stream.send_all(raw_error_response(exc))
            await close_gracefully(self.stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self.ctx.finish(exchange)

    async def _wait_for_request(self, first: bool) -> h11.Request | None:
        timeouts = self.config.timeouts
        timeout = timeouts.header if first else timeouts.keepalive
        received_before = self.http.bytes_received
        scope = trio.CancelScope(deadline=trio.current_time() + timeout)
        self.ctx.idle_scopes.add(scope)
        try:
            with scope:
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
        _note_error(exchange, exc)
        try:
            if self.http.can_respond:
                exchange.answered_by_proxy = True
                exchange.content_type = "text/html; charset=utf-8"
                body = self._error_body(exc)
                headers = error_headers(exc, body)
                await self.http.send(h11.Response(status_code=exc.status, headers=headers,
                                                  reason=HTTPStatus(exc.status).phrase.encode()))
                if exchange.method != "HEAD":
                    await self.http.send(h11.Data(data=body))
                await self.http.send(h11.EndOfMessage())
                await close_gracefully(self.stream)
        except (ConnectionLost, h11.LocalProtocolError):
            pass
        finally:
            if log:
                self.ctx.finish(exchange)

    def _error_body(self, exc: FwdproxyError) -> bytes:
        if isinstance(exc, Forbidden) and exc.category is not None:
            return block_page(self.ctx.loaded.block_template, {
                "url": exc.url or exc.host or "", "category": exc.category,
                "rule": exc.rule or "", "source": exc.source, "client": str(self.client_ip),
                "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "contact": self.config.contact,
                "policy": exc.policy or "", "reason": exc.detail,
            })
        return error_page(exc.status, exc.title, exc.detail, host=exc.host,
                          source=getattr(exc, "source", None))

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
        if target.form == "absolute" and self._names_us(target.host, target.port):
            # A browser set to use this proxy asks for the proxy's own page this way.
            await self._serve_own_page(request, target, exchange)
            return
        if target.form in ("origin", "asterisk"):
            # PAC, WPAD and health checks arrive under whatever name the office gave the
            # proxy (wpad.<domain>, a balancer's address): those paths answer under any.
            well_known = target.path.split(b"?", 1)[0] in WELL_KNOWN_PATHS
            if well_known or self._host_header_names_us(request):
                await self._serve_own_page(request, target, exchange)
                return
            raise BadRequest(
                "this is a proxy: send requests with an absolute URL (http://host/path), "
                "or CONNECT host:port for HTTPS, and configure it as your client's proxy"
            )
        user = await self._authenticate(request, target) if self.config.auth is not None else None
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
        path = url = None
        if not connect:
            path = normalize_path(target.path.decode("latin-1"))
            url = f"http://{target.host_header}{path}"
        facts = RequestFacts(
            client=self.client_ip,
            method=exchange.method,
            scheme="connect" if connect else "http",
            host=target.host,
            port=target.port,
            ip=target.ip,
            path=path,
            url=url,
            user=user,
            now=self.ctx.clock() if policy.policies is not None else None,
        )
        verdict = policy.decide(facts)
        exchange.verdict, exchange.source = ("allow" if verdict.allowed else "deny"), verdict.source
        parent = self.config.upstream
        if parent is not None and not parent.carries(target.host):
            parent = None
        # Through a parent the addresses are never seen here, so nothing can lift it later.
        if not verdict.allowed and (verdict.final or parent is not None):
            raise forbidden(verdict, target)
        # Not final: address rules may still lift or confirm it once the host is resolved.
        decision = Decision(policy, verdict, exchange, parent)
        if connect:
            await self._tunnel(target, facts, decision, exchange)
        else:
            await self._forward(request, target, facts, decision, exchange)

    # -- authentication ----------------------------------------------------------------

    async def _authenticate(self, request: h11.Request, target: Target) -> str | None:
        """The user the request authenticates as, or None for an exempt client.

        Raises:
            AuthRequired: no credentials, wrong ones, or too many failures from here.
        """
        auth = self.config.auth
        assert auth is not None
        if any(self.client_ip in network for network in auth.exempt):
            return None
        header = get_header(request.headers, b"proxy-authorization")
        if header is None:
            raise AuthRequired("this proxy needs a user name and password", realm=auth.realm,
                               host=target.authority)
        now = trio.current_time()
        user = self.ctx.credentials.get(header, now)
        if user is not None:
            return user
        client = str(self.client_ip)
        if not self.ctx.throttle.allowed(client, now):
            raise AuthRequired("too many failed attempts from this address; try again later",
                               realm=auth.realm, host=target.authority)
        users = self.ctx.loaded.htpasswd.users if self.ctx.loaded.htpasswd is not None else {}
        parsed = parse_basic(header)
        name, password = parsed if parsed is not None else ("", "")
        stored = users.get(name)
        # An unknown user still costs one bcrypt check, so timing does not tell users apart.
        reference = stored if stored is not None else dummy_hash()
        ok = await trio.to_thread.run_sync(verify_password, reference, password)
        if not (ok and stored is not None and parsed is not None):
            # The same wrong header retried on parallel connections counts once.
            self.ctx.throttle.failed(client, now, header)
            raise AuthRequired("wrong user name or password", realm=auth.realm,
                               host=target.authority)
        self.ctx.throttle.succeeded(client)
        self.ctx.credentials.put(header, name, now)
        return name

    # -- destinations ------------------------------------------------------------------

    def _address_verdict_denial(self, facts: RequestFacts, decision: Decision,
                                address: IPAddress, target: Target) -> Forbidden | None:
        policy = decision.policy
        local = self.ctx.local_addresses(address) if policy.needs_local_check(address, facts.port) else False
        verdict = policy.decide_address(facts, address, is_local=local, by_name=decision.by_name)
        if verdict.allowed:
            if not decision.by_name.final:
                decision.exchange.verdict, decision.exchange.source = "allow", verdict.source
            return None
        return forbidden(verdict, target)

    async def _vetted_addresses(self, target: Target, facts: RequestFacts,
                                decision: Decision) -> list[IPAddress]:
        addresses = await resolve(
            target.host, target.port, literal=target.ip, hosts=self.config.hosts,
            timeout=self.config.timeouts.dns,
        )
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
        key = ("parent", parent.host, parent.port) if parent else ("http", target.host, target.port)
        upstream = self.ctx.pool.take(key)
        if upstream is not None and parent is None and self._address_verdict_denial(
                facts, decision, upstream.address, target):
            await upstream.aclose()
            upstream = None
        for _attempt in range(2):
            if upstream is None:
                if parent is not None:
                    stream, address = await self._open_parent(parent)
                else:
                    stream, address = await self._open(target, facts, decision)
                upstream = Upstream(stream, H11Stream(stream, h11.CLIENT,
                                    max_head_bytes=self.config.limits.max_head_bytes), key, address)
            reusable = False
            exchange.upstream_address = str(upstream.address)
            try:
                reusable = await forward(
                    self.ctx.forward_settings, self.http, request, target, upstream, exchange,
                    parent_authorization=parent.authorization if parent else None,
                    via_parent=parent is not None, continue_sent=continue_sent)
            except RetryOnNewConnection:
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
            stream, address = await self._open_parent(parent)
        else:
            stream, address = await self._open(target, facts, decision)
        exchange.upstream_address = str(address)
        try:
            if parent is not None:
                from_parent = await self._connect_through_parent(stream, parent, target)
            exchange.status = 200
            await self.http.send(h11.Response(status_code=200, headers=[],
                                              reason=b"Connection established"))
        except BaseException:
            with trio.CancelScope(shield=True):
                await stream.aclose()
            raise
        # The relay itself runs from run(), once this request's frames (and the request,
        # target, facts and decision they hold) are gone: an idle tunnel holds only what
        # it needs, which counts when thousands are open.
        self.tunnel = _Tunnel(stream, self.http.conn.trailing_data[0], from_parent, exchange)

    async def _relay_tunnel(self, tunnel: _Tunnel) -> None:
        """Relay an open tunnel until it ends, then log its exchange."""
        exchange = tunnel.exchange
        self.ctx.stats.tunnel_opened()
        try:
            result = await relay(self.stream, tunnel.stream, client_initial=tunnel.early,
                                 upstream_initial=tunnel.from_parent,
                                 idle_timeout=self.config.timeouts.tunnel_idle)
            # The early bytes were counted when h11 read them; relay() counts them again.
            exchange.bytes_up += result.bytes_up - len(tunnel.early)
            exchange.bytes_down += result.bytes_down
            exchange.detail = f"tunnel {result.ended}"
        finally:
            self.ctx.stats.tunnel_closed()
            with trio.CancelScope(shield=True):
                await tunnel.stream.aclose()
            self.ctx.finish(exchange)

    # -- a parent proxy -----------------------------------------------------------------

    async def _open_parent(self, parent: ParentProxy) -> tuple[trio.SocketStream, IPAddress]:
        """Connect to the configured parent (trusted by configuration: no address policy)."""
        literal = None
        with contextlib.suppress(ValueError):
            literal = canonical_address(ipaddress.ip_address(parent.host))
        addresses = await resolve(parent.host, parent.port, literal=literal,
                                  hosts=self.config.hosts, timeout=self.config.timeouts.dns)
        return await connect(addresses, parent.port, timeout=self.config.timeouts.connect,
                             host=f"parent proxy {parent.host}")

    async def _connect_through_parent(self, stream: trio.SocketStream, parent: ParentProxy,
                                      target: Target) -> bytes:
        """CONNECT to `target` through the parent; the bytes it sent past its 200.

        Raises:
            BadGateway, GatewayTimeout: the parent refused, failed or stayed silent.
        """
        http = H11Stream(stream, h11.CLIENT, max_head_bytes=self.config.limits.max_head_bytes)
        headers = [(b"host", target.authority.encode())]
        if parent.authorization is not None:
            headers.append((b"proxy-authorization", parent.authorization))
        timeout = self.config.timeouts.upstream_read
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

    # -- the proxy's own pages ---------------------------------------------------------

    def _names_us(self, host: str, port: int) -> bool:
        """Does canonical `host` on `port` name the listener this client reached?"""
        if port != self.local_port:
            return False
        return host in self.ctx.own_names or host == str(self.local_ip)

    def _host_header_names_us(self, request: h11.Request) -> bool:
        host_value = get_header(request.headers, b"host")
        if host_value is None:
            return request.http_version == b"1.0"  # an HTTP/1.0 request to us, without Host
        try:
            host, port = parse_host_header(host_value)
        except BadRequest:
            return False
        return self._names_us(host, port or 80)

    async def _serve_own_page(self, request: h11.Request, target: Target, exchange: Exchange) -> None:
        exchange.verdict, exchange.source = "own-page", "-"
        path = target.path.split(b"?", 1)[0]
        if request.method not in (b"GET", b"HEAD"):
            raise MethodNotAllowed("the proxy's own pages answer GET and HEAD only")
        local = f"[{self.local_ip}]" if self.local_ip.version == 6 else str(self.local_ip)
        address = f"{local}:{self.local_port}"
        admin = any(self.client_ip in network for network in self.config.admin_clients)
        if path == b"/" and admin:
            loaded = self.ctx.loaded
            body = status_page(await self.ctx.figures(), rules_summary=loaded.summary,
                               rules_errors=len(loaded.errors), loaded_at=loaded.loaded_at,
                               version=__version__)
            content_type = "text/html; charset=utf-8"
        elif path == b"/":
            body, content_type = info_page(address), "text/html; charset=utf-8"
        elif path == b"/metrics":
            if not admin:
                raise Forbidden("the metrics are for admin_clients only", source="config:admin_clients")
            rules = self.ctx.loaded.rules
            body = metrics_text(await self.ctx.figures(),
                                rules_entries={(action, category): count for (action, category), count
                                               in rules.counts.items()} if rules is not None else {})
            content_type = METRICS_CONTENT_TYPE
        elif path == b"/healthz":
            # For load balancers (HAProxy's option httpchk): up, and not shutting down.
            if self.ctx.draining:
                raise ServiceUnavailable("shutting down")
            body, content_type = b"ok\n", "text/plain; charset=utf-8"
        elif path in (b"/proxy.pac", b"/wpad.dat"):
            # The address the browser reached us by (a name, usually) is the one it can use.
            own = address
            host_value = get_header(request.headers, b"host")
            if host_value is not None:
                with contextlib.suppress(BadRequest):
                    name, port = parse_host_header(host_value)
                    own = f"[{name}]:{port or self.local_port}" if ":" in name else \
                        f"{name}:{port or self.local_port}"
            pac = self.config.pac
            try:
                script = pac_script(proxies=pac.proxies or (own,), direct_domains=pac.direct_domains)
            except ValueError:  # a Host we cannot vouch for: name the address instead
                script = pac_script(proxies=pac.proxies or (address,),
                                    direct_domains=pac.direct_domains)
            body, content_type = script.encode(), PAC_CONTENT_TYPE
        else:
            raise NotFound(f"the proxy has no page at {path.decode('latin-1')}")
        exchange.status = 200
        exchange.answered_by_proxy = True
        exchange.content_type = content_type
        await self.http.send(h11.Response(status_code=200, headers=[
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]))
        if request.method == b"GET":
            await self.http.send(h11.Data(data=body))
        await self.http.send(h11.EndOfMessage())
        # Drain the (empty) request body so the connection can be kept alive.
        while self.http.conn.their_state is h11.SEND_BODY:
            event = await self.http.next_event()
            if type(event) is h11.ConnectionClosed:
                break


def own_host_names(via: str) -> frozenset[str]:
    """Names that mean this proxy in a Host header: localhost, the host's names, Via's."""
    # No getfqdn(): it may wait on DNS, and start-up must not.
    names = {"localhost", socket.gethostname().lower()}
    names.add(via.rsplit(":", 1)[0].lower())
    return frozenset(n.rstrip(".") for n in names if n)


__all__ = ["GatewayTimeout", "ServerContext", "close_gracefully", "handle", "own_host_names"]
