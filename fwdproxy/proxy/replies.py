"""The one error handler's pieces: an error page with its headers, sent while h11 still
allows a response (or raw, before h11 has a request), then a graceful close.

Strategy: every client-visible failure is a `FwdproxyError`; `send_error` answers it with
one page and its status when a response can still be sent, and otherwise only notes it for
the log, since a response under way can only be cut. A closed connection lingers briefly so
that the client's unread bytes do not turn the close into a reset that destroys the page.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from http import HTTPStatus

import h11
import trio

from fwdproxy.accesslog import Exchange
from fwdproxy.auth import challenge
from fwdproxy.errors import (
    AuthRequired,
    BlockedRedirect,
    ConnectionLost,
    Forbidden,
    FwdproxyError,
    LoginRequired,
    MethodNotAllowed,
)
from fwdproxy.policy import RequestFacts, Verdict
from fwdproxy.policy.engine import redirect_location_for
from fwdproxy.proxy.h11_stream import RECEIVE_SIZE, H11Stream
from fwdproxy.proxy.target import Target
from fwdproxy.site.pages import block_page, error_page

__all__ = ["close_gracefully", "error_page_for", "forbidden", "note_error", "raw_error_response",
           "send_error", "send_raw_error"]

# After an error page the connection is closed; a client still sending gets this long
# (and this many bytes) to stop, so that its unread bytes do not turn our close into a
# reset that destroys the page before the client reads it.
LINGER_SECONDS = 2.0
LINGER_BYTES = 1 << 20


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
    if isinstance(exc, BlockedRedirect):
        headers.append((b"location", exc.location.encode("ascii", "replace")))
    if isinstance(exc, MethodNotAllowed):
        headers.append((b"allow", exc.allow.encode()))
    if isinstance(exc, AuthRequired):
        asked = b"www-authenticate" if isinstance(exc, LoginRequired) else b"proxy-authenticate"
        headers.extend(challenge(exc.realm, asked))
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


def forbidden(verdict: Verdict, target: Target, facts: RequestFacts) -> Forbidden:
    """The denial for a verdict, with what the block page shows; a redirect to the
    policy's own page when it has one and the request is plain HTTP (a browser shows
    nothing a CONNECT is answered with)."""
    url = target.url()
    location = redirect_location_for(verdict, facts, url)
    if location is None:
        return Forbidden(verdict.reason, source=verdict.source, host=target.authority,
                         category=verdict.category, rule=verdict.rule, url=url,
                         policy=verdict.policy)
    return BlockedRedirect(verdict.reason, location=location, source=verdict.source,
                           host=target.authority, category=verdict.category,
                           rule=verdict.rule, url=url, policy=verdict.policy)


def note_error(exchange: Exchange, exc: FwdproxyError) -> None:
    exchange.status = exc.status
    exchange.verdict = exc.verdict
    exchange.source = getattr(exc, "source", exchange.source)
    exchange.category = getattr(exc, "category", None)
    exchange.detail = exc.detail


def error_page_for(exc: FwdproxyError, *, block_template: str | None, client: str,
                   contact: str) -> bytes:
    """The page for `exc`: the office's block page for a categorised denial, else the
    error page naming the status, the detail and the deciding source."""
    if isinstance(exc, Forbidden) and exc.category is not None:
        return block_page(block_template, {
            "url": exc.url or exc.host or "", "category": exc.category,
            "rule": exc.rule or "", "source": exc.source, "client": client,
            "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "contact": contact,
            "policy": exc.policy or "", "reason": exc.detail,
        })
    return error_page(exc.status, exc.title, exc.detail, host=exc.host,
                      source=getattr(exc, "source", None))


async def send_error(http: H11Stream, exc: FwdproxyError, exchange: Exchange,
                     render: Callable[[FwdproxyError], bytes]) -> None:
    """Answer `exc` with its page if a response may still be sent, then close gracefully;
    note it in `exchange` either way. Never raises for a client that went away."""
    note_error(exchange, exc)
    try:
        if http.can_respond:
            exchange.answered_by_proxy = True
            exchange.content_type = "text/html; charset=utf-8"
            body = render(exc)
            await http.send(h11.Response(status_code=exc.status, headers=error_headers(exc, body),
                                         reason=HTTPStatus(exc.status).phrase.encode()))
            if exchange.method != "HEAD":
                await http.send(h11.Data(data=body))
            await http.send(h11.EndOfMessage())
            await close_gracefully(http.stream)
    except (ConnectionLost, h11.LocalProtocolError):
        pass


async def send_raw_error(stream: trio.abc.Stream, exc: FwdproxyError, exchange: Exchange) -> None:
    """Answer without h11 (nothing read yet, or h11 refused the request) and close."""
    note_error(exchange, exc)
    exchange.answered_by_proxy = True
    exchange.content_type = "text/html; charset=utf-8"
    try:
        await stream.send_all(raw_error_response(exc))
        await close_gracefully(stream)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
