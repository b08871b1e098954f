"""The fast lane: the commonest request relayed as bytes, with the slow path's result.

Strategy: most requests a proxy sees have one shape: a GET head that arrives whole in one
read, an allowed http:// URL, an idle pooled connection to its origin, and a response
with a Content-Length that arrives whole in one read. Such a request is checked as the
slow path checks it (the strict framing check, h11's grammar, llhttp's parse, the same
policy calls), and the same bytes go each way, but without h11's state machines and
events, and decided once per client and URL while the rules stay the same. The log
line and the figures are the slow path's too: `tests/proxy/test_fastlane.py` runs one
corpus both ways and compares the bytes at both ends and the log.

Anything else, at any step, goes to the slow path before a byte of it reaches the other
side. The client's head is handed to its H11Stream as if read there (`prime`). When the
request had already gone out, the origin connection and the response bytes read so far go
with it (`Resumed`), and the slow path goes on from there as if it had sent the request
itself. A pooled connection that turns out dead is closed, and the slow path retries on
another, as it does. The lane runs with the C parser (`http_parser` httptools); the
setting `fast_path: false` turns it off.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NamedTuple, cast

import httptools
import trio

from fwdproxy.accesslog import Exchange
from fwdproxy.errors import BadRequest, BodyTooLarge, ConnectionLost
from fwdproxy.policy import Policy, RequestFacts, Verdict
from fwdproxy.policy.names import IPAddress, address_text
from fwdproxy.proxy import fdio
from fwdproxy.proxy.context import ServerContext
from fwdproxy.proxy.decisions import address_verdict, request_facts, safe_search_host
from fwdproxy.proxy.framing import check_request_head
from fwdproxy.proxy.h11_stream import H11Stream
from fwdproxy.proxy.headers import (
    has_our_via,
    hop_by_hop_names,
    request_headers_for_origin,
    value_tokens,
    via_value,
)
from fwdproxy.proxy.llhttp_heads import PLAIN_REQUEST, PLAIN_RESPONSE, plain_fields
from fwdproxy.proxy.ownpages import Reached, names_us
from fwdproxy.proxy.target import Target, parse_target
from fwdproxy.proxy.upstream import Upstream

__all__ = ["FastLane", "FastRequest", "Reply", "Resumed", "plain_request", "plain_response"]

_TRANSPORT_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
_MAX_LENGTH_DIGITS = 18  # a Content-Length of at most 18 digits fits in 2^63 - 1
_ROUTES_KEPT = 1024  # decided URLs kept (all clients); a full table starts again
# Request heads kept parsed (all clients; clients repeat theirs byte for byte: polling,
# one request per connection, benchmarks); only short ones, so the table stays small.
_HEADS_KEPT = 512
_HEAD_KEPT_SIZE = 2048
_RESPONSE_LIMIT = 4 * fdio.RECEIVE_SIZE  # read past this, the slow path streams the rest


@dataclass(slots=True)
class FastRequest:
    """A request head that the fast lane may serve: one plain GET, nothing after it."""

    head: bytes
    target: bytes
    fields: list[tuple[bytes, bytes, bytes]]  # (raw name, name, value), as h11 keeps them
    close: bool  # Connection: close (the connection ends after the response)


@dataclass(slots=True)
class Resumed:
    """A request the fast lane sent but hands to the slow path: the connection it went
    out on, and what the origin has answered so far."""

    upstream: Upstream
    # What the origin answered so far. Whether it closed after that is not kept: the slow
    # path reads the close again from the socket, after it has sent on what came before.
    data: bytes


@dataclass(slots=True)
class _Route:
    """A URL decided for one client on one listener: valid while `policy` is the one in
    force (and kept only when no time of day or group can change the verdict)."""

    policy: Policy
    target: Target
    url: str
    facts: RequestFacts
    verdict: Verdict
    key: tuple[str, str, int]  # the pool's key
    addresses: dict[IPAddress, Verdict]  # pooled connections' addresses, as judged
    sent: tuple[FastRequest, bytes] | None = None  # the last request, as sent to the origin


def plain_request(data: bytes, *, max_head: int, max_body: int | None) -> FastRequest | None:
    """`data` as a fast-lane request, or None when the slow path must read it: it is not
    exactly one head that the slow path would accept as it stands, or it is not a bodiless
    HTTP/1.1 GET with one Host, or it asks for anything h11 must handle (a body, Expect,
    Upgrade)."""
    if len(data) > max_head or not data.startswith(b"GET http://"):
        return None
    match = PLAIN_REQUEST.fullmatch(data)
    if match is None or match.group("http_version") != b"1.1":
        return None
    try:
        framing = check_request_head(data, max_body=max_body)
    except (BadRequest, BodyTooLarge):  # the slow path answers them
        return None
    if framing.chunked or framing.content_length is not None:
        return None
    found = plain_fields(httptools.HttpRequestParser, data)
    if found is None:
        return None
    hosts = 0
    close = False
    for _, name, value in found.noted:
        if name == b"host":
            hosts += 1
        elif name == b"connection":
            close = close or b"close" in value_tokens(value)
        else:
            return None  # framing, Upgrade or Expect: h11's
    if hosts != 1:
        return None
    return FastRequest(data, match.group("target"), found.items, close)


class Reply(NamedTuple):
    """A response to a GET, as the slow path would send it on."""

    head: bytes  # for the client
    origin_head: int  # the length of the origin's head
    length: int  # of the body
    status: int
    content_type: str | None


def plain_response(data: bytes, via: str, *, max_head: int, close: bool = False) -> Reply | None:
    """The response to a GET at the start of `data`, as the slow path would send it on
    (with `close`, to a client that asked for Connection: close). None when it is not
    one plain HTTP/1.1 response framed by one Content-Length, whose connection stays open
    (no Connection: close), with a head complete in `data`."""
    end = data.find(b"\r\n\r\n")
    if end < 0 or end + 4 > max_head:
        return None
    head = data[:end + 4]
    match = PLAIN_RESPONSE.fullmatch(head)
    if match is None:
        return None
    version, status, reason = match.group("http_version", "status_code", "reason")
    if version != b"1.1" or not b"200" <= status <= b"599" or status in (b"204", b"304"):
        return None
    found = plain_fields(httptools.HttpResponseParser, head)
    if found is None:
        return None
    length = -1
    connection: list[bytes] = []  # what Connection names is hop-by-hop too
    for _, name, value in found.noted:
        if name == b"content-length" and length < 0 and value.isdigit() \
                and len(value) <= _MAX_LENGTH_DIGITS:
            length = int(value)
        elif name == b"connection" and b"close" not in (tokens := value_tokens(value)):
            connection += tokens
        else:
            return None  # a second length, Transfer-Encoding, close, a Host h11 moves first
    if length < 0:
        return None
    # As headers.response_headers_for_client, without lower-casing names that h11's
    # parse made lower case already (a third of this function's cost).
    dropped = hop_by_hop_names(connection)
    content_type = None
    lines = [b"HTTP/1.1 ", status, b" ", reason or b"", b"\r\n"]
    for _, name, value in found.items:
        if name not in dropped:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            lines += (name, b": ", value, b"\r\n")
    lines += (b"via: ", via_value(via), b"\r\n")
    # h11 says so to a client that asked to close, after the other headers.
    lines.append(b"Connection: close\r\n\r\n" if close else b"\r\n")
    return Reply(b"".join(lines), len(head), length, int(status), content_type)


def _origin_head(target: Target, fields: list[tuple[bytes, bytes, bytes]], via: str) -> bytes:
    """The request head as the slow path's h11 writer puts it (Host first, names as h11
    hands them on: lower case)."""
    headers = request_headers_for_origin([(n, v) for _, n, v in fields], target.host_header, via,
                                         upgrade=False)
    lines = [b"GET ", target.path, b" HTTP/1.1\r\n"]
    for name, value in headers:
        lines += (name, b": ", value, b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


class FastLane:
    """The fast lane of one client connection.

    Args:
        ctx: what all connections share.
        http: the client's connection (its head goes there when the slow path takes over).
        sock: its socket.
        client: the client's address.
        reached: the listener the client reached.
    """

    def __init__(self, ctx: ServerContext, http: H11Stream, sock: trio.socket.SocketType,
                 client: IPAddress, reached: Reached) -> None:
        self.ctx = ctx
        self.http = http
        self.socket = sock
        self.client = client
        self.client_text = address_text(client)
        self.reached = reached
        limits = ctx.config.limits
        self.max_head = limits.max_head_bytes
        self.max_body = limits.max_request_body
        # Shared by all connections: a client that opens one per request is decided once.
        self.routes = cast(dict[tuple[object, ...], _Route], ctx.fast_routes)
        self.heads = cast(dict[bytes, FastRequest], ctx.fast_heads)
        self.resumed: Resumed | None = None

    async def read_head(self) -> FastRequest | None:
        """Wait for the next request head and read it (after `head_at_hand` found none).

        Returns:
            The request when the fast lane may serve it; otherwise None, with what was
            read handed to the client's H11Stream (EOF included) for its next_event.

        Raises:
            ConnectionLost: the transport failed.
        """
        try:
            await trio.lowlevel.wait_readable(self.socket)
            while (data := fdio.read_some(fdio.live_fd(self.socket))) is None:
                await trio.lowlevel.wait_readable(self.socket)
        except _TRANSPORT_ERRORS as exc:
            raise ConnectionLost(f"receive failed: {exc}") from exc
        return self._take_head(data)

    def head_at_hand(self) -> tuple[bool, FastRequest | None]:
        """`read_head` without the wait: (False, None) when nothing of the next request
        has come yet (or the transport failed: `read_head` then says so), else (True,
        what `read_head` returns)."""
        try:
            data = fdio.read_some(fdio.live_fd(self.socket))
        except _TRANSPORT_ERRORS:
            data = None
        if data is None:
            return False, None
        return True, self._take_head(data)

    def _take_head(self, data: bytes) -> FastRequest | None:
        http = self.http
        http.bytes_received += len(data)
        if not data:
            http.conn.receive_data(b"")
            return None
        request = self.heads.get(data)
        if request is not None:
            return request
        request = plain_request(data, max_head=self.max_head, max_body=self.max_body)
        if request is None:
            http.prime(data)
        elif len(data) <= _HEAD_KEPT_SIZE:
            if len(self.heads) >= _HEADS_KEPT:
                self.heads.clear()
            self.heads[data] = request
        return request

    def take_resumed(self) -> Resumed | None:
        """The request handed over mid-way, for the slow path to go on with (once)."""
        resumed, self.resumed = self.resumed, None
        return resumed

    async def close_resumed(self) -> None:
        """Close a handed-over connection that the slow path did not take (it refused the
        request after all: the rules were reloaded meanwhile)."""
        if self.resumed is not None:
            upstream, self.resumed = self.resumed.upstream, None
            await upstream.aclose()

    def _route(self, raw_target: bytes) -> _Route | None:
        policy = self.ctx.policy
        key = (self.client, self.reached, raw_target)
        route = self.routes.get(key)
        if route is not None and route.policy is policy:
            return route
        try:
            target = parse_target(b"GET", raw_target)
        except BadRequest:
            return None
        if target.scheme != "http" or names_us(self.ctx, self.reached, target.host, target.port):
            return None
        parent = self.ctx.config.upstream
        if parent is not None and parent.carries(target.host):
            return None
        facts = request_facts(self.ctx, self.client, policy, target, "GET", None, False)
        verdict = policy.decide(facts)
        if not verdict.allowed or safe_search_host(self.ctx, policy, facts) is not None:
            return None  # the slow path refuses it, or connects to the safe-search name
        route = _Route(policy, target, target.url(), facts, verdict,
                       ("http", target.host, target.port), {})
        if policy.policies is None:  # else the time of day may change the verdict
            if len(self.routes) >= _ROUTES_KEPT:
                self.routes.clear()
            self.routes[key] = route
        return route

    def _exchange(self, request: FastRequest, route: _Route, verdict: Verdict) -> Exchange:
        exchange = Exchange(client=self.client_text, started=time.time())
        exchange.method = "GET"
        exchange.url = route.url
        for _, name, value in request.fields:
            if name == b"referer":
                exchange.referer = value.decode("latin-1")
            elif name == b"user-agent":
                exchange.user_agent = value.decode("latin-1")
        exchange.verdict, exchange.source = "allow", verdict.source
        return exchange

    def _upstream(self, route: _Route) -> tuple[Upstream, Verdict] | None:
        """An idle pooled connection for the route, and the verdict to log; None when
        there is none (the slow path connects) or its address is refused."""
        upstream = self.ctx.pool.take(route.key)
        if upstream is None:
            return None
        address = upstream.address
        verdict = route.addresses.get(address)
        if verdict is None:
            verdict = address_verdict(self.ctx, route.policy, route.facts, route.verdict, address)
            route.addresses[address] = verdict  # gone with the route when it is not kept
        if not verdict.allowed:
            self.ctx.pool.put(upstream)  # the slow path takes it again, and refuses it
            return None
        return upstream, (route.verdict if route.verdict.final else verdict)

    def _hand_back(self, request: FastRequest) -> None:
        self.http.prime(request.head)

    async def serve(self, request: FastRequest, counted: tuple[int, int]) -> bool | None:
        """Serve `request`, or hand it to the slow path.

        Args:
            request: from `read_head`.
            counted: bytes received and sent on this connection before it.

        Returns:
            Whether the connection may serve another request; None when the slow path
            must serve this one (its head is in the client's H11Stream, and `resumed`
            holds the origin connection if the request went out).
        """
        route = self._route(request.target)
        if route is None or (has_our_via([(n, v) for _, n, v in request.fields if n == b"via"],
                                          self.ctx.via)):
            self._hand_back(request)
            return None
        found = self._upstream(route)
        if found is None:
            self._hand_back(request)
            return None
        upstream, verdict = found
        if route.sent is not None and route.sent[0] is request:
            sent = route.sent[1]
        else:
            sent = _origin_head(route.target, request.fields, self.ctx.via)
            route.sent = (request, sent)
        answer = await self._exchange_bytes(upstream, sent)
        if answer is None:  # a dead pooled connection: the slow path retries
            await upstream.aclose()
            self._hand_back(request)
            return None
        data, eof = answer, False
        close = request.close
        reply = plain_response(data, self.ctx.via, max_head=self.max_head, close=close)
        if reply is None or len(data) < reply.origin_head + reply.length:
            more, eof = self._read_more(upstream, data)  # the rest may be there already
            if len(more) > len(data):
                data = more
                reply = plain_response(data, self.ctx.via, max_head=self.max_head, close=close)
        if reply is None or len(data) != reply.origin_head + reply.length:
            self.resumed = Resumed(upstream, data)
            self._hand_back(request)
            return None
        exchange = self._exchange(request, route, verdict)
        exchange.upstream_address = str(upstream.address)
        delivered = await self._answer(exchange, upstream, reply, data, eof, counted)
        return delivered and not close

    async def _exchange_bytes(self, upstream: Upstream, sent: bytes) -> bytes | None:
        """Send the request head; read what the origin answers at first.

        Returns:
            The bytes; None when the connection failed or closed before a byte of a
            response (the slow path's retry case).
        """
        sock = upstream.stream.socket
        try:
            fd = fdio.live_fd(sock)
            await fdio.write_all(fd, sent)
            # An answer is never there the moment the request went out, but often is once
            # the other tasks had their turn: then neither a wait nor its time limit (a
            # cancel scope, the dearer part) is needed. A checkpoint that can be cancelled:
            # with the next request always at hand, it is the request loop's one.
            await trio.lowlevel.checkpoint()
            data = fdio.read_some(fd)
            if data is None:
                with trio.move_on_after(self.ctx.forward_settings.read_timeout):
                    await trio.lowlevel.wait_readable(sock)
                    data = fdio.read_some(fd)
            if data:
                return data
        except _TRANSPORT_ERRORS:
            pass
        # Nothing (silence for read_timeout, a close, a reset): the slow path's case for a
        # retry on a new connection, as for a dead pooled connection.
        return None

    @staticmethod
    def _read_more(upstream: Upstream, data: bytes) -> tuple[bytes, bool]:
        """`data` and what else the origin has sent so far (without waiting), and
        whether it closed after that."""
        chunks = [data]
        size = len(data)
        try:
            fd = fdio.live_fd(upstream.stream.socket)
            while size < _RESPONSE_LIMIT and (chunk := fdio.read_some(fd)) is not None:
                if not chunk:
                    return b"".join(chunks), True
                chunks.append(chunk)
                size += len(chunk)
        except _TRANSPORT_ERRORS:
            return b"".join(chunks), True
        return b"".join(chunks), False

    async def _answer(self, exchange: Exchange, upstream: Upstream,
                      reply: Reply, data: bytes, eof: bool,
                      counted: tuple[int, int]) -> bool:
        """Send the response to the client, log the exchange, pool the connection."""
        exchange.status, exchange.content_type = reply.status, reply.content_type
        http = self.http
        timeout = self.ctx.forward_settings.client_idle_timeout
        delivered = False
        try:
            await http.send_raw(reply.head + data[reply.origin_head:], silence=timeout)
            delivered = True
        except trio.TooSlowError:
            http.conn.send_failed()
            exchange.detail = f"client went away: the client read nothing for {timeout:g} s"
        except ConnectionLost as exc:
            exchange.detail = f"client went away: {exc}"
        finally:
            exchange.bytes_up += http.bytes_received - counted[0]
            exchange.bytes_down += http.bytes_sent - counted[1]
            self.ctx.finish(exchange)
            if delivered and not eof:
                self.ctx.pool.put(upstream)
            else:
                await upstream.aclose()
        return delivered
