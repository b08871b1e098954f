"""Plain-HTTP relay, event by event: one request to the origin, its response to the client.

Strategy: the request head goes out in origin form with hop-by-hop headers replaced; then
two things run at once: the request body pump (client → origin) and the response relay
(origin → client), so that interim responses (100 Continue, 103) reach a client that is
waiting for them and an origin may answer before the upload ends. Bodies move one chunk at
a time, each `send_all` finishing before the next receive: memory stays flat whatever the
size, and the first bytes of a slow response reach the client at once. A response the
origin ends early is never completed towards the client: the connection is cut instead.
No policy lives here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import h11
import trio

from fwdproxy.accesslog import Exchange
from fwdproxy.errors import BadGateway, ConnectionLost, GatewayTimeout
from fwdproxy.proxy.framing import length_fits
from fwdproxy.proxy.h11_stream import H11Stream, checked_headers
from fwdproxy.proxy.headers import (
    is_upgrade_request,
    is_via_token,
    request_headers_for_origin,
    response_headers_for_client,
)
from fwdproxy.proxy.target import Target
from fwdproxy.proxy.tunnel import relay
from fwdproxy.proxy.upstream import Upstream


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception to act on from a nursery's group (trio wraps even a single one).

    When both directions failed at once, a failure of the client (ConnectionLost) wins:
    there is nobody left to answer.
    """
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        item = pending.pop(0)
        if isinstance(item, BaseExceptionGroup):
            pending.extend(item.exceptions)
        else:
            leaves.append(item)
    for leaf in leaves:
        if isinstance(leaf, ConnectionLost):
            return leaf
    return leaves[0]


class RetryOnNewConnection(Exception):
    """A reused idle connection turned out dead before any response: try a fresh one."""


class _ClientGone(ConnectionLost):
    """The client failed while the response relay was sending to it. Raised from inside
    the wait for origin bytes (the flush before each receive), where it must not pass for
    the origin's failure."""


class UpstreamAborted(Exception):
    """The origin failed after the response head went to the client; cut the client off."""


@dataclass(frozen=True, slots=True)
class ForwardSettings:
    """What forwarding needs from the configuration."""

    via: str
    read_timeout: float
    client_idle_timeout: float
    tunnel_idle_timeout: float

    def __post_init__(self) -> None:
        # Via goes out with every message unchecked (checked_headers): check it once here.
        if not is_via_token(self.via):
            raise ValueError(f"the Via name {self.via!r} is not one token of visible ASCII")


def has_body(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """True when a request with these headers carries a body (chunked, or a non-zero
    Content-Length)."""
    for name, value in headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
            return True
    return False


# long: the steps of one exchange in the order they happen (head out, body and response at
# once, then the upgrade or the pool's verdict); split, the hot path would read in pieces.
async def forward(settings: ForwardSettings, client: H11Stream, request: h11.Request,
                  target: Target, upstream: Upstream, exchange: Exchange, *,
                  parent_authorization: bytes | None = None, via_parent: bool = False,
                  continue_sent: bool = False,
                  resumed: bytes | None = None) -> bool:
    """Send `request` to `upstream` and relay the response to `client`.

    With `via_parent`, `upstream` is a parent proxy: the request keeps its absolute form
    and carries `parent_authorization` as its Proxy-Authorization. With `continue_sent`,
    the client already had a 100 Continue from the proxy, and the origin's is not relayed.
    With `resumed`, the fast lane sent this (bodiless) request already: `resumed` is
    what the origin answered so far, read as if from it.

    Returns:
        True when `upstream` is clean and may be pooled for another request.

    Raises:
        RetryOnNewConnection: a reused connection died before answering a bodiless request.
        BadGateway, GatewayTimeout: the origin failed before the response head was sent.
        UpstreamAborted: the origin failed after the response head was sent.
        ConnectionLost: the client went away.
    """
    # One pass over h11's Headers (a Sequence read item by item); the scans below use the list.
    received = list(request.headers)
    upgrade = is_upgrade_request(received)
    headers = request_headers_for_origin(received, target.host_header, settings.via, upgrade=upgrade)
    origin = upstream.http
    bodiless = not has_body(received)
    if bodiless:
        # h11 yields a bodiless request's EndOfMessage without reading (none is left on a
        # retry): take it now, and spare the request a body-pump task.
        while client.conn.their_state is h11.SEND_BODY:
            await client.next_event()
    retryable = upstream.reused and bodiless
    request_target = target.path
    if via_parent:
        request_target = f"http://{target.host_header}".encode() + target.path
        if parent_authorization is not None:
            headers.append((b"proxy-authorization", parent_authorization))
    outgoing = h11.Request(method=request.method, target=request_target,
                           headers=checked_headers(headers))
    try:
        if resumed is not None:
            _resume(origin, outgoing, resumed)
        else:
            await origin.send(outgoing)
            if bodiless:
                await origin.send(h11.EndOfMessage())
    except ConnectionLost as exc:
        if retryable:
            raise RetryOnNewConnection from exc
        raise BadGateway(f"the connection to {target.authority} failed: {exc}",
                         host=target.authority) from exc

    relay_state = _ResponseRelay(settings, client, origin, target, exchange, retryable,
                                 continue_sent)
    if bodiless:
        switched = await relay_state.run()
    else:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pump_request_body, client, origin,
                                   settings.client_idle_timeout)
                switched = await relay_state.run()
                nursery.cancel_scope.cancel()  # an early response: the rest of the upload is moot
        except BaseExceptionGroup as group:
            raise first_error(group) from None

    if switched:
        early = client.conn.trailing_data[0]
        result = await relay(
            client.stream,
            upstream.stream,
            client_initial=early,
            upstream_initial=origin.conn.trailing_data[0],
            idle_timeout=settings.tunnel_idle_timeout,
        )
        # The client's early bytes were counted when h11 read them; relay() counts them again.
        exchange.bytes_up += result.bytes_up - len(early)
        exchange.bytes_down += result.bytes_down
        exchange.detail = f"upgraded; relay {result.ended}"
        return False
    # Bytes past the end of the response (a body on a HEAD/204/304, extra bytes after
    # Content-Length) would become the next request's response, maybe another client's.
    return origin.reusable and not origin.conn.trailing_data[0]


def _resume(origin: H11Stream, outgoing: h11.Request, data: bytes) -> None:
    """Bring `origin` to where it would be had it sent `outgoing` and read `data`."""
    origin.conn.send(outgoing)  # the same bytes as the fast lane's, already sent
    origin.conn.send(h11.EndOfMessage())
    origin.prime(data)


async def pump_request_body(client: H11Stream, origin: H11Stream, timeout: float) -> None:
    """Client body events → origin, until EndOfMessage. Origin-side failures end the pump
    quietly (the response relay reports them); client-side failures propagate."""
    while True:
        try:
            with trio.fail_after(timeout):
                event = await client.next_event()
        except trio.TooSlowError:
            raise ConnectionLost(f"the client sent no body bytes for {timeout:g} s") from None
        kind = type(event)
        if kind is h11.Data or kind is h11.EndOfMessage:
            try:
                await origin.send(event)
            except ConnectionLost:
                return
            if kind is h11.EndOfMessage:
                return
        elif event is h11.PAUSED:
            return
        elif kind is h11.ConnectionClosed:
            raise ConnectionLost("the client closed the connection in the middle of the request body")


class _ResponseRelay:
    def __init__(self, settings: ForwardSettings, client: H11Stream, origin: H11Stream,
                 target: Target, exchange: Exchange, retryable: bool,
                 continue_sent: bool = False) -> None:
        self.settings = settings
        self.client = client
        self.origin = origin
        self.target = target
        self.exchange = exchange
        self.retryable = retryable
        self.continue_sent = continue_sent
        self.head_sent = False
        self.got_anything = False
        # Output for the client, sent when the origin has nothing more ready: a small
        # response's head, body and end go out in one write instead of three.
        self.pending = bytearray()

    def _queue(self, event: Any) -> None:
        self.pending += self.client.conn.send(event) or b""

    async def _flush(self) -> None:
        """Send what is queued; a client that reads nothing for client_idle is dropped."""
        if not self.pending:
            return
        data, self.pending = bytes(self.pending), bytearray()
        timeout = self.settings.client_idle_timeout
        try:
            await self.client.send_raw(data, silence=timeout)
        except trio.TooSlowError:
            self.client.conn.send_failed()
            raise _ClientGone(f"the client read nothing for {timeout:g} s") from None
        except ConnectionLost as exc:
            raise _ClientGone(str(exc)) from exc

    def _fail(self, exc: Exception, message: str) -> Exception:
        if self.head_sent:
            return UpstreamAborted(message)
        if self.retryable and not self.got_anything:
            return RetryOnNewConnection()
        if isinstance(exc, trio.TooSlowError):
            return GatewayTimeout(message, host=self.target.authority)
        return BadGateway(message, host=self.target.authority)

    async def _next(self) -> object:
        timeout = self.settings.read_timeout
        try:
            event = await self.origin.next_event(self._flush, silence=timeout)
        except trio.TooSlowError as exc:
            raise self._fail(exc, f"{self.target.authority} sent nothing for {timeout:g} s") from exc
        except _ClientGone:
            raise
        except ConnectionLost as exc:
            raise self._fail(exc, f"{self.target.authority} broke the connection: {exc}") from exc
        except BadGateway as exc:
            if not self.got_anything and self.origin.conn.trailing_data[1]:
                message = f"{self.target.authority} closed the connection without a response"
            else:
                message = f"{self.target.authority}: {exc.detail}"
            raise self._fail(exc, message) from exc
        if type(event) is h11.ConnectionClosed:
            raise self._fail(
                ConnectionLost(), f"{self.target.authority} closed the connection without a response"
            )
        self.got_anything = True
        return event

    async def run(self) -> bool:
        """Relay the response; True when the protocol was switched (101)."""
        via = self.settings.via
        while True:
            event = await self._next()
            kind = type(event)
            if kind is h11.Data:
                self._queue(event)
            elif kind is h11.Response:
                assert isinstance(event, h11.Response)
                self.exchange.status = event.status_code
                received = list(event.headers)
                for name, value in received:
                    if name == b"content-type":
                        self.exchange.content_type = value.decode("latin-1")
                    elif name == b"content-length" and not length_fits(value):
                        # A client's 64-bit parser would wrap it and read the rest of the
                        # body as the next response on this connection.
                        raise BadGateway(f"{self.target.authority} sent a Content-Length "
                                         "beyond 2^63 - 1", host=self.target.authority)
                self._queue(h11.Response(
                    status_code=event.status_code,
                    reason=event.reason,
                    headers=checked_headers(response_headers_for_client(received, via)),
                ))
                self.head_sent = True
            elif kind is h11.EndOfMessage:
                assert isinstance(event, h11.EndOfMessage)
                # Trailers as h11 parsed them (no new check); none to an HTTP/1.0 client.
                if self.client.conn.their_http_version == b"1.1":
                    self._queue(event)
                else:
                    self._queue(h11.EndOfMessage())
                await self._flush()
                return False
            elif kind is h11.InformationalResponse:
                assert isinstance(event, h11.InformationalResponse)
                if event.status_code == 101:
                    self.exchange.status = 101
                    self._queue(h11.InformationalResponse(
                        status_code=101,
                        reason=event.reason,
                        headers=response_headers_for_client(event.headers, via, upgrade=True),
                    ))
                    await self._flush()
                    return True
                if self.client.conn.their_http_version != b"1.1":
                    continue  # no 1xx to an HTTP/1.0 client (RFC 9110 §15.2)
                if event.status_code == 100 and self.continue_sent:
                    continue  # the proxy answered the expectation already
                self._queue(h11.InformationalResponse(
                    status_code=event.status_code,
                    reason=event.reason,
                    headers=response_headers_for_client(event.headers, via),
                ))
