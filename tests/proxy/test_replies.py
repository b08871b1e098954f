"""replies.py: the error handler's pages and headers, and answering over a real socket pair.

The status of each error class is tested in tests/test_errors.py; here, what a response
built from one carries: framing, no caching, close, the deciding rule, Allow, the
challenge, and the block page for a categorised denial.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket

import h11
import trio

from fwdproxy.accesslog import Exchange
from fwdproxy.errors import AuthRequired, BadRequest, BlockedRedirect, Forbidden, MethodNotAllowed
from fwdproxy.policy import RequestFacts, Verdict
from fwdproxy.proxy.h11_stream import H11Stream
from fwdproxy.proxy.replies import (
    error_headers,
    error_page_for,
    forbidden,
    raw_error_response,
    send_error,
    send_raw_error,
)
from fwdproxy.proxy.target import parse_target


def headers_of(exc: Exception) -> dict[bytes, bytes]:
    assert isinstance(exc, (BadRequest, Forbidden, MethodNotAllowed, AuthRequired))
    return dict(error_headers(exc, b"<p>page</p>"))


def test_every_error_response_is_framed_uncached_and_closes() -> None:
    headers = headers_of(BadRequest("no"))
    assert headers[b"content-length"] == b"11"
    assert headers[b"cache-control"] == b"no-store"
    assert headers[b"connection"] == b"close"
    assert headers[b"content-type"].startswith(b"text/html")


def test_denials_name_their_rule_and_category() -> None:
    headers = headers_of(Forbidden("blocked", source="deny/ads.txt:12", category="ads"))
    assert headers[b"x-fwdproxy-decision"] == b"deny deny/ads.txt:12 category=ads"


def test_405_says_allow_and_407_challenges() -> None:
    assert headers_of(MethodNotAllowed("no"))[b"allow"] == b"GET, HEAD"
    assert headers_of(AuthRequired("who?", realm="office"))[b"proxy-authenticate"].startswith(b"Basic")


def test_raw_response_is_one_complete_http_message() -> None:
    raw = raw_error_response(BadRequest("bad framing"))
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(raw)
    response = conn.next_event()
    assert isinstance(response, h11.Response) and response.status_code == 400
    body = conn.next_event()
    assert isinstance(body, h11.Data) and b"bad framing" in body.data
    assert isinstance(conn.next_event(), h11.EndOfMessage)


def test_categorised_denial_gets_the_block_page() -> None:
    exc = Forbidden("listed", source="deny/ads.txt:3", category="ads", rule="ads.example",
                    url="http://ads.example/")
    page = error_page_for(exc, block_template=None, client="10.0.0.5", contact="the help desk")
    assert b"ads.example" in page and b"deny/ads.txt:3" in page and b"the help desk" in page
    plain = error_page_for(BadRequest("bad"), block_template=None, client="10.0.0.5", contact="x")
    assert b"bad" in plain and b"help desk" not in plain


def test_forbidden_carries_the_verdict() -> None:
    verdict = Verdict(allowed=False, source="deny/ads.txt:3", reason="listed", category="ads")
    facts = RequestFacts(client=ipaddress.ip_address("10.0.0.9"), method="GET", scheme="http",
                         host="ads.example", port=80, user="ann")
    exc = forbidden(verdict, parse_target(b"GET", b"http://ads.example/x"), facts)
    assert (exc.source, exc.category, exc.url, exc.host) == (
        "deny/ads.txt:3", "ads", "http://ads.example/x", "ads.example:80")
    assert not isinstance(exc, BlockedRedirect) and exc.status == 403
    # With its policy's redirect: a 302 to it, the fields filled in; never for a CONNECT.
    verdict = dataclasses.replace(verdict, policy="pupils",
                                  redirect="http://i.example/b?u=$url&c=$client&w=$user&p=$policy")
    exc = forbidden(verdict, parse_target(b"GET", b"http://ads.example/x"), facts)
    assert isinstance(exc, BlockedRedirect) and exc.status == 302
    assert exc.location == "http://i.example/b?u=http%3A%2F%2Fads.example%2Fx&c=10.0.0.9&w=ann&p=pupils"
    # The redirect page denied as well (a default: deny policy): the block page, no loop.
    exc = forbidden(verdict, parse_target(b"GET", b"http://i.example/b?u=x"), facts)
    assert not isinstance(exc, BlockedRedirect) and exc.status == 403
    connect = dataclasses.replace(facts, method="CONNECT", scheme="connect", port=443)
    exc = forbidden(verdict, parse_target(b"CONNECT", b"ads.example:443"), connect)
    assert not isinstance(exc, BlockedRedirect) and exc.status == 403


async def test_send_error_answers_then_closes() -> None:
    ours, theirs = socket.socketpair()
    server, client = trio.SocketStream(trio.socket.from_stdlib_socket(ours)), \
        trio.SocketStream(trio.socket.from_stdlib_socket(theirs))
    http = H11Stream(server, h11.SERVER, max_head_bytes=4096)
    await client.send_all(b"GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\n\r\n")
    assert isinstance(await http.next_event(), h11.Request)
    exchange = Exchange(client="127.0.0.1", started=0.0)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_error, http, BadRequest("nope"), exchange, lambda exc: b"page")
            raw = b""
            while chunk := await client.receive_some(65536):
                raw += chunk
            await client.aclose()  # the linger after the page ends when the client closes
    assert raw.startswith(b"HTTP/1.1 400 ") and raw.endswith(b"\r\n\r\npage")
    assert (exchange.status, exchange.verdict, exchange.answered_by_proxy) == (400, "bad-request", True)
    await server.aclose()


async def test_send_raw_error_never_raises_for_a_gone_client() -> None:
    ours, theirs = socket.socketpair()
    theirs.close()
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
    exchange = Exchange(client="127.0.0.1", started=0.0)
    with trio.fail_after(10):
        await send_raw_error(stream, BadRequest("nope"), exchange)
    assert exchange.status == 400
    await stream.aclose()
