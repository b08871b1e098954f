"""The fast lane (`fwdproxy.proxy.fastlane`) against the slow path: one corpus, both ways.

The fast lane must be invisible: for each case of the corpus the same script runs against
a proxy with `fast_path: true` and one with `fast_path: false` (both with `http_parser:
httptools`, so that the test means the same under FWDPROXY_HTTP_PARSER=h11), and the two
runs must agree on the bytes the origin received (every connection, in order), the bytes
the client received, the access-log lines (without time and duration), every field of the
logged exchanges, and the pool size afterwards.

One origin serves both runs of a case (each run records its own connections), so that the
URLs, Host headers and log lines carry the same port. The origin is scripted: it reads
each request (head, and body by Content-Length) and answers with the case's canned bytes,
in pieces with `wait_all_tasks_blocked()` between them, and may close after them. The
client waits for the proxy in the same way, with a cushion, so that the origin's script
always moves first: what it reads once everything is blocked is all there will be.

Besides: the lane is taken where it should be (and never when off), and unit tests of
the pure helpers `plain_request` and `plain_response`, and of the `fast_path` setting.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from fwdproxy import config as config_module
from fwdproxy.accesslog import Exchange
from fwdproxy.errors import ConfigError
from fwdproxy.proxy.fastlane import FastLane, FastRequest, Reply, plain_request, plain_response
from tests.conftest import TEST_CONFIG, Handler, HttpClient, Proxy, log_fields, settled_log

StartProxy = Callable[..., Awaitable[Proxy]]
StartOrigin = Callable[[Handler], Awaitable[int]]

VIA = "fwdproxy-test"
# The client lets the origin's script (cushion 0) move first; this long, all tasks blocked.
CUSHION = 0.002
MAX_ROUNDS = 2_000  # settle-and-read rounds for one response (1 MB takes a few dozen)
MAX_REQUESTS = 8  # requests one origin connection serves
MAX_READS = 4_096  # reads for one request at the origin


# -- the script ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What the origin sends for one request: `pieces`, each once the proxy has read the
    one before; then, with `close`, the connection ends: "settled" once the proxy has read
    the last piece, "at once" with the last piece (one write, then FIN)."""

    pieces: tuple[bytes, ...]
    close: str | None = None


def ok(body: bytes = b"hello", *headers: bytes) -> bytes:
    lines = [b"HTTP/1.1 200 OK", b"Content-Type: text/plain", *headers,
             b"Content-Length: %d" % len(body)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


SIMPLE = ok()
WARM = Answer((ok(b"warm"),))
DEFAULT = Answer((SIMPLE,))  # for any request beyond a case's answers

GET = b"GET http://origin.test:{port}/case HTTP/1.1\r\nHost: origin.test:{port}\r\n\r\n"
WARM_REQUEST = b"GET http://origin.test:{port}/warm HTTP/1.1\r\nHost: origin.test:{port}\r\n\r\n"


def get(*headers: bytes, path: bytes = b"/case", method: bytes = b"GET", version: bytes = b"1.1",
        body: bytes = b"") -> bytes:
    lines = [method + b" http://origin.test:{port}" + path + b" HTTP/" + version,
             b"Host: origin.test:{port}", *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@dataclass(frozen=True)
class Case:
    """One exchange after the warm-up: the client's `request` pieces (each sent once the
    proxy is idle), the origin's `answers` to the requests it reads after the warm-up
    request, and `lane`: what the fast run must do with it ("fast": served by the lane;
    "resumed": sent by the lane, finished by the slow path; "slow": handed back before the
    request went out, or when the pooled connection it went out on was dead; None: not
    checked)."""

    name: str
    answers: tuple[Answer, ...] = (DEFAULT,)
    request: tuple[bytes, ...] = (GET,)
    lane: str | None = None
    warm: Answer = WARM
    rules: dict[str, str] | None = None
    config: dict[str, Any] = field(default_factory=dict)  # more settings ("{port}": the origin's)
    client_close: str | None = None  # after its last piece: "half" (FIN) or "full" (gone)
    status: int | None = None  # the status of the last access-log line, when checked
    pool: int | None = None  # the pool size afterwards, when checked


def response(name: str, *pieces: bytes, close: str | None = None, lane: str | None = "resumed",
             request: bytes = GET, status: int | None = None, pool: int | None = None) -> Case:
    """The origin answers the case's request with `pieces`, and a retry the same way."""
    answer = Answer(pieces, close)
    return Case(name, (answer, answer), (request,), lane, status=status, pool=pool)


def requesting(name: str, *pieces: bytes, lane: str | None = "slow",
               answers: tuple[Answer, ...] = (DEFAULT,), status: int | None = None) -> Case:
    return Case(name, answers, pieces, lane, status=status)


POLICIES = {"deny/social.txt": "other.test\n", "policy.yaml": (
    "policies:\n  - name: office\n    clients: [127.0.0.0/8]\n    deny: [social]\n    default: allow\n")}
BIG = b"x" * (1 << 20)
CASES = [
    # -- responses --------------------------------------------------------------------
    response("simple", SIMPLE, lane="fast", status=200, pool=1),
    response("several headers", ok(
        b"hello", b"Set-Cookie: a=1", b"Set-Cookie: b=2", b"Connection: keep-alive, X-Hop",
        b"Keep-Alive: timeout=5", b"X-Hop: 1", b"X-Custom-Name: Value  ", b"x-empty:",
        b"Cache-Control: max-age=60,\tpublic", b"Proxy-Authenticate: Basic", b"Trailer: X-T"),
             lane="fast"),
    response("Upgrade in a 200", ok(b"hello", b"Upgrade: h2c", b"Connection: upgrade")),
    response("empty body", ok(b""), lane="fast"),
    response("404", b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 9\r\n"
             b"\r\nnot found", lane="fast", status=404),
    response("500", b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops",
             lane="fast", status=500),
    response("no reason phrase", b"HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nok", lane="fast"),
    response("status without a space", b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", lane="fast"),
    response("599 with a long reason", b"HTTP/1.1 599 Some Odd Reason\r\nContent-Length: 0\r\n\r\n",
             lane="fast"),
    response("content type with parameters", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
             b"content-type: text/html; charset=\"latin-1\"\r\n\r\nok", lane="fast"),
    response("chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"5\r\nhello\r\n0\r\n\r\n"),
    response("chunked with trailers", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n"),
    response("Connection: close, then closes", ok(b"hello", b"Connection: close"), close="settled"),
    response("Connection: close, closed at once", ok(b"hello", b"Connection: close"), close="at once"),
    response("HTTP/1.0 with a length", b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello",
             close="settled"),
    response("HTTP/1.0 to the close", b"HTTP/1.0 200 OK\r\n\r\nhello", close="at once"),
    response("no length, to the close", b"HTTP/1.1 200 OK\r\n\r\nhello", close="at once"),
    response("204", b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"),
    response("304", b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 5\r\n\r\n"),
    response("HEAD", b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n",
             request=get(method=b"HEAD"), lane="slow"),
    response("100 Continue first", b"HTTP/1.1 100 Continue\r\n\r\n" + SIMPLE),
    response("103 Early Hints first", b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
             + SIMPLE),
    response("103, then the 200 apart", b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n", SIMPLE),
    response("101 to a GET", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade"
             b"\r\n\r\n"),
    response("length beyond 2^63-1", ok(b"hello").replace(b"Content-Length: 5",
                                                          b"Content-Length: 9223372036854775808"),
             status=502),
    response("length 2^63-1", b"HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775807\r\n\r\nhello"),
    response("two different lengths", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6"
             b"\r\n\r\nhello!", status=502),
    Case("two different lengths, the retry answered", (Answer((b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
         b"Content-Length: 6\r\n\r\nhello!",)), DEFAULT), lane="resumed", status=200),
    response("two Content-Types", ok(b"hello", b"Content-Type: text/html"), lane="fast"),
    response("Transfer-Encoding: identity", ok(b"hello", b"Transfer-Encoding: identity")),
    response("length with spaces", b"HTTP/1.1 200 OK\r\nContent-Length:  5 \t\r\n\r\nhello", lane="fast"),
    response("length without a space", b"HTTP/1.1 200 OK\r\ncontent-length:5\r\n\r\nhello", lane="fast"),
    response("Proxy-Connection and empty Connection", ok(b"hello", b"Proxy-Connection: close",
                                                         b"Connection:"), lane="fast"),
    response("Connection names Content-Length", ok(b"hello", b"Connection: Content-Length, Set-Cookie",
                                                   b"Set-Cookie: a=1"), lane="fast"),
    response("200 KB body", ok(b"y" * 200_000), lane=None),
    response("300 KB body", ok(b"y" * 300_000)),
    response("two equal lengths", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5"
             b"\r\n\r\nhello"),
    response("length list", b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello"),
    response("length with a plus sign", b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello"),
    response("length with leading zeros", b"HTTP/1.1 200 OK\r\nContent-Length: 005\r\n\r\nhello",
             lane="fast"),
    response("length and chunked", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked"
             b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    response("extra bytes after the body", SIMPLE + b"EXTRA", status=200, pool=0),
    response("Connection: keep-alive,close", ok(b"hello", b"Connection: keep-alive,close")),
    response("chunked to a client that closes", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"5\r\nhello\r\n0\r\n\r\n", request=get(b"Connection: close")),
    response("a second response after the body", SIMPLE + SIMPLE, pool=0),
    response("obs-fold", b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n  b\r\nContent-Length: 5\r\n\r\nhello"),
    response("bare LF", b"HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: 5\n\nhello"),
    response("bare LF ending the head", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\nhello"),
    response("Host header", b"HTTP/1.1 200 OK\r\nHost: elsewhere.test\r\nContent-Length: 5\r\n\r\nhello"),
    response("space before the colon", b"HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 5\r\n\r\nhello"),
    response("NUL in a value", b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 5\r\n\r\nhello"),
    response("obs-text in a value", b"HTTP/1.1 200 OK\r\nX-A: caf\xe9\r\nContent-Length: 5\r\n\r\nhello",
             lane="fast"),
    response("HTTP/2.0 status line", b"HTTP/2.0 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
    response("garbage", b"hello there\r\n\r\n", close="settled"),
    response("head in two pieces", b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n",
             b"Content-Length: 5\r\n\r\nhello"),
    response("head split in its end", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r", b"\nhello"),
    response("body in a second piece", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", b"hello"),
    response("body in three pieces", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nh", b"el", b"lo"),
    response("1 MB body", ok(BIG)),
    response("1 MB body, head apart", b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BIG), BIG),
    Case("closes before answering (retried)", (Answer((), "at once"), DEFAULT), lane="slow"),
    Case("closes settled before answering (retried)", (Answer((), "settled"), DEFAULT), lane="slow"),
    response("closes mid-body", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", close="settled"),
    # The origin's bytes and its close read together: handed over, the close is read
    # again by the slow path, after it sent on what came before (the head, the body so
    # far, a 1xx), as it does when the close comes later.
    response("closes mid-body at once", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello",
             close="at once"),
    response("head only, closed at once", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
             close="at once"),
    response("chunked, cut at once", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
             close="at once"),
    response("103, then a 200 cut at once", b"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 200 OK\r\n"
             b"Content-Length: 10\r\n\r\nhello", close="at once"),
    response("100, then closed at once", b"HTTP/1.1 100 Continue\r\n\r\n", close="at once",
             status=502),
    response("cut at once, to a client that closes", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
             b"hello", close="at once", request=get(b"Connection: close")),
    response("100, then closed", b"HTTP/1.1 100 Continue\r\n\r\n", close="settled", status=502),
    Case("partial head, then closes", (Answer((b"HTTP/1.1 200 OK\r\nContent-Le",), "settled"), DEFAULT)),
    Case("partial head, closed at once", (Answer((b"HTTP/1.1 200 OK\r\nContent-Le",), "at once"), DEFAULT)),
    response("complete, then closes", SIMPLE, close="settled", lane="fast"),
    response("complete, closed at once", SIMPLE, close="at once", lane="fast"),
    Case("pooled connection closed while idle", lane="slow", warm=Answer(WARM.pieces, "settled")),
    Case("origin sends bytes while idle", lane="slow", warm=Answer((*WARM.pieces, b"HTTP/1.1 200 OK\r\n"))),
    # -- requests -------------------------------------------------------------------------
    requesting("Via from another proxy", get(b"Via: 1.1 other-proxy"), lane="fast"),
    requesting("Via with a comment", get(b"Via: 1.0 a (x, y), 1.1 b"), lane="fast"),
    requesting("our own Via", get(b"Via: 1.1 other, 1.1 " + VIA.encode()), status=508),
    requesting("our own Via, named by Connection", get(b"Connection: Via", b"Via: 1.1 " + VIA.encode()),
               status=508),
    requesting("our own Via in upper case", get(b"VIA: 1.1 " + VIA.upper().encode()), status=508),
    requesting("Connection: close", get(b"Connection: close"), lane="fast"),
    requesting("Connection: keep-alive, X-Hop", get(b"Connection: keep-alive, X-Hop", b"X-Hop: 1",
                                                    b"Keep-Alive: 300", b"TE: trailers"), lane="fast"),
    requesting("HTTP/1.0", get(version=b"1.0")),
    requesting("HTTP/1.0 keep-alive", get(b"Connection: keep-alive", version=b"1.0")),
    requesting("POST with a body", get(b"Content-Length: 3", method=b"POST", body=b"abc")),
    requesting("GET with Content-Length: 0", get(b"Content-Length: 0")),
    requesting("Expect: 100-continue", get(b"Expect: 100-continue")),
    requesting("POST with Expect", get(b"Expect: 100-continue", b"Content-Length: 3", method=b"POST",
                                       body=b"abc")),
    requesting("Upgrade: websocket", get(b"Connection: upgrade", b"Upgrade: websocket")),
    requesting("Upgrade without Connection", get(b"Upgrade: websocket")),
    requesting("two pipelined GETs", GET + get(path=b"/second"), answers=(DEFAULT, DEFAULT)),
    requesting("two GETs one after the other", GET, get(path=b"/second"), lane="fast",
               answers=(DEFAULT, Answer((ok(b"second"),)))),
    requesting("head in two pieces", GET[:30], GET[30:]),
    requesting("head cut before its last LF", GET[:-1], GET[-1:]),
    requesting("Referer and User-Agent", get(b"Referer: http://site.test/page", b"User-Agent: Test/1.0",
                                             b"user-agent: second"), lane="fast"),
    requesting("Proxy-Connection: keep-alive", get(b"Proxy-Connection: keep-alive"), lane="fast"),
    requesting("Proxy-Authorization", get(b"Proxy-Authorization: Basic dXNlcjpwYXNz"), lane="fast"),
    requesting("query and percent-encoding", get(path=b"/a%20b/%7Euser/c?x=1&y=%2F&z=%zz"), lane="fast"),
    requesting("uppercase scheme", b"GET HTTP://origin.test:{port}/case HTTP/1.1\r\nHost: origin.test"
               b":{port}\r\n\r\n"),
    requesting("uppercase host", b"GET http://ORIGIN.test:{port}/case HTTP/1.1\r\nHost: origin.test"
               b":{port}\r\n\r\n", lane="fast"),
    requesting("empty path", get(path=b""), lane="fast"),
    requesting("userinfo in the URL", b"GET http://u:p@origin.test:{port}/case HTTP/1.1\r\n"
               b"Host: origin.test:{port}\r\n\r\n", lane="fast"),
    requesting("fragment in the URL", get(path=b"/case#frag"), lane="fast"),
    requesting("Host that disagrees", b"GET http://origin.test:{port}/case HTTP/1.1\r\n"
               b"Host: other.test\r\n\r\n", lane="fast"),
    requesting("Host first, mixed case names", b"GET http://origin.test:{port}/case HTTP/1.1\r\n"
               b"ACCEPT: */*\r\nhost: origin.test:{port}\r\nX-Mixed-Case: v \t\r\n\r\n", lane="fast"),
    requesting("no Host", b"GET http://origin.test:{port}/case HTTP/1.1\r\n\r\n", status=400),
    requesting("two Hosts", get(b"Host: origin.test:{port}"), status=400),
    requesting("obs-fold in the request", get(b"X-A: 1", b" folded")),
    requesting("bare LF in the request", get(b"X-A: 1").replace(b"\r\n", b"\n")),
    requesting("GET plus the start of another", GET + b"GET http://"),
    requesting("a header of 1 KB", get(b"X-Long: " + b"v" * 1024), lane="fast"),
    requesting("cookies and a long header list", get(*[b"X-H%d: %d" % (i, i) for i in range(100)],
                                                     b"Cookie: a=1; b=2"), lane="fast"),
    Case("request head of exactly max_head", request=(get(b"X-Pad: " + b"p" * 944),), lane="fast",
         config={"limits": {"max_head_bytes": 1024}}),
    Case("request head one byte over max_head", request=(get(b"X-Pad: " + b"p" * 945),), lane="slow",
         config={"limits": {"max_head_bytes": 1024}}, status=431),
    Case("response head of exactly max_head", lane="fast", config={"limits": {"max_head_bytes": 1024}},
         answers=(Answer((ok(b"hello", b"X-Pad: " + b"p" * 951),)),)),
    Case("response head one byte over max_head", config={"limits": {"max_head_bytes": 1024}},
         answers=(Answer((ok(b"hello", b"X-Pad: " + b"p" * 952),)),), lane="resumed"),
    Case("client half-closes after its request", lane="fast", client_close="half"),
    Case("client half-closes, chunked response", client_close="half", lane="resumed", answers=(
        Answer((b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",)),)),
    Case("client half-closes with Connection: close", request=(get(b"Connection: close"),),
         client_close="half", lane="fast"),
    Case("client gone after its request", lane="fast", client_close="full"),
    Case("client gone, body in a second piece", client_close="full", lane="resumed", answers=(
        Answer((b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", b"hello")),)),
    Case("through a parent proxy", lane="slow", config={"upstream": "http://127.0.0.1:{port}"}),
    Case("through a parent proxy with credentials", lane="slow",
         config={"upstream": "http://u%40x:p@127.0.0.1:{port}"}),
    Case("a parent proxy, origin.test direct", lane="fast",
         config={"upstream": {"url": "http://127.0.0.1:1", "direct": ["origin.test"]}}),
    Case("allowed under a policy", lane="fast", status=200, rules=POLICIES),
    Case("denied under a policy", request=(b"GET http://other.test:{port}/case HTTP/1.1\r\nHost: other.test"
         b"\r\n\r\n",), lane="slow", status=403, rules=POLICIES),
    Case("address denied for a pooled connection", lane="slow", status=403, rules={
        "allow/warm.txt": "origin.test/warm\n", "deny/local.txt": "127.0.0.0/8\n"}),
    requesting("the same GET twice", GET, GET, lane="fast", answers=(DEFAULT, Answer((ok(b"again"),)))),
    requesting("fast, resumed, fast", GET, get(path=b"/chunked"), get(path=b"/third"), lane=None, answers=(
        DEFAULT, Answer((b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",)),
        Answer((ok(b"third"),)))),
    requesting("POST, then GET", get(b"Content-Length: 1", method=b"POST", body=b"x"), GET, lane="fast",
               answers=(DEFAULT, Answer((ok(b"after"),)))),
    requesting("empty Host", b"GET http://origin.test:{port}/case HTTP/1.1\r\nHost:\r\n\r\n", lane="fast"),
    requesting("port with a leading zero", b"GET http://origin.test:0{port}/case HTTP/1.1\r\n"
               b"Host: origin.test:{port}\r\n\r\n", lane="fast"),
    requesting("host with a trailing dot", b"GET http://origin.test.:{port}/case HTTP/1.1\r\n"
               b"Host: origin.test:{port}\r\n\r\n", lane="fast"),
    requesting("HEAD then GET", get(method=b"HEAD"), GET, lane=None, answers=(
        Answer((b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",)), DEFAULT)),
    Case("denied host", request=(b"GET http://other.test:{port}/case HTTP/1.1\r\nHost: other.test\r\n\r\n",),
         lane="slow", status=403, rules={"deny/blocked.txt": "other.test\n"}),
    Case("denied path", request=(get(path=b"/private/x"),), lane="slow", status=403,
         rules={"deny/paths.txt": "origin.test/private/\n"}),
]


# -- the two runs ------------------------------------------------------------------------------


@dataclass
class Recording:
    """One run as the origin saw it."""

    answers: list[Answer]
    connections: list[bytearray] = field(default_factory=list)

    def next_answer(self) -> Answer:
        return self.answers.pop(0) if self.answers else DEFAULT


class ScriptedOrigin:
    """A raw origin that answers from the recording of the run in progress."""

    def __init__(self) -> None:
        self.recording = Recording([])

    async def handle(self, stream: trio.SocketStream) -> None:
        recording = self.recording  # a connection belongs to the run that opened it
        received = bytearray()
        recording.connections.append(received)
        buffer = bytearray()

        async def read_until(done: Callable[[], bool]) -> bool:
            for _ in range(MAX_READS):
                if done():
                    return True
                data = await stream.receive_some(65536)
                if not data:
                    return False
                received.extend(data)
                buffer.extend(data)
            raise AssertionError("the origin read too often for one request")

        for _ in range(MAX_REQUESTS):
            if not await read_until(lambda: b"\r\n\r\n" in buffer):
                return
            end = buffer.index(b"\r\n\r\n") + 4
            length = re.search(rb"(?im)^content-length:[ \t]*(\d+)", buffer[:end])
            size = end + (int(length.group(1)) if length else 0)
            if not await read_until(lambda size=size: len(buffer) >= size):  # type: ignore[misc]
                return
            del buffer[:size]
            answer = recording.next_answer()
            pieces = list(answer.pieces)
            last = pieces.pop() if answer.close == "at once" and pieces else None
            for index, piece in enumerate(pieces):
                if index:
                    await trio.testing.wait_all_tasks_blocked()
                await stream.send_all(piece)
            if answer.close == "at once":
                if last is not None:
                    if pieces:
                        await trio.testing.wait_all_tasks_blocked()
                    written = os.write(stream.socket.fileno(), last)
                    assert written == len(last)
                stream.socket.shutdown(socket.SHUT_WR)  # with the data: the proxy sees both in one go
                return
            if answer.close == "settled":
                await trio.testing.wait_all_tasks_blocked()
                return


async def read_settled(stream: trio.SocketStream) -> bytes:
    """Everything the proxy sends until EOF, or until all is blocked and nothing came."""
    chunks: list[bytes] = []
    fd = stream.socket.fileno()
    for _ in range(MAX_ROUNDS):
        await trio.testing.wait_all_tasks_blocked(CUSHION)
        got = 0
        for _ in range(MAX_ROUNDS):
            try:
                data = os.read(fd, 1 << 20)
            except BlockingIOError:
                break
            except ConnectionResetError:
                chunks.append(b"<reset>")
                return b"".join(chunks)
            if not data:
                chunks.append(b"<eof>")
                return b"".join(chunks)
            chunks.append(data)
            got += len(data)
        if not got:
            return b"".join(chunks)
    raise AssertionError("the proxy never settled")


@dataclass
class Lanes:
    """What the fast lane did in one run (its methods wrapped; they still do it all)."""

    served: list[bool | None] = field(default_factory=list)  # FastLane.serve results
    resumed: int = 0  # take_resumed calls that handed a request over
    answered: int = 0  # _answer calls

    def lane(self) -> str:
        if self.answered:
            return "fast"
        return "resumed" if self.resumed else "slow"


@pytest.fixture
def lanes(monkeypatch: pytest.MonkeyPatch) -> Lanes:
    record = Lanes()
    serve, take_resumed, answer = FastLane.serve, FastLane.take_resumed, FastLane._answer

    async def counted_serve(self: FastLane, *args: Any) -> bool | None:
        result = await serve(self, *args)
        record.served.append(result)
        return result

    def counted_take(self: FastLane) -> Any:
        resumed = take_resumed(self)
        record.resumed += resumed is not None
        return resumed

    async def counted_answer(self: FastLane, *args: Any) -> bool:
        record.answered += 1
        return await answer(self, *args)

    monkeypatch.setattr(FastLane, "serve", counted_serve)
    monkeypatch.setattr(FastLane, "take_resumed", counted_take)
    monkeypatch.setattr(FastLane, "_answer", counted_answer)
    return record


@dataclass
class Outcome:
    origin: list[bytes]
    client: bytes
    log: list[dict[str, str]]
    exchanges: list[dict[str, Any]]
    pool: int


def fill(template: bytes, port: int) -> bytes:
    return template.replace(b"{port}", str(port).encode())


def fill_config(value: Any, port: int) -> Any:
    if isinstance(value, str):
        return value.replace("{port}", str(port))
    if isinstance(value, dict):
        return {key: fill_config(item, port) for key, item in value.items()}
    if isinstance(value, list):
        return [fill_config(item, port) for item in value]
    return value


async def run(start_proxy: StartProxy, origin: ScriptedOrigin, port: int, case: Case,
              tmp_path: Path, *, fast: bool) -> Outcome:
    overrides: dict[str, Any] = {"fast_path": fast, "http_parser": "httptools", "via": VIA,
                                 **fill_config(case.config, port)}
    if case.rules is not None:
        root = tmp_path / ("rules-fast" if fast else "rules-slow")
        # A block page without the time (the built-in one shows it).
        files = {"blockpage.html": "<p>$url: $category ($source, $rule) for $client</p>\n", **case.rules}
        for name, text in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
        overrides["rules"] = str(root)
    proxy = await start_proxy(**overrides)
    ctx = proxy.running.context
    exchanges: list[dict[str, Any]] = []
    finish = ctx.finish

    def recorded_finish(exchange: Exchange) -> None:
        record = dataclasses.asdict(exchange)
        del record["started"]
        exchanges.append(record)
        finish(exchange)

    ctx.finish = recorded_finish  # type: ignore[method-assign]
    origin.recording = recording = Recording([case.warm, *case.answers])
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
        async with stream:
            await stream.send_all(fill(WARM_REQUEST, port))
            received = await read_settled(stream)
            assert received.endswith(b"\r\n\r\nwarm"), received
            for index, piece in enumerate(case.request, 1):
                await stream.send_all(fill(piece, port))
                if index == len(case.request) and case.client_close == "half":
                    stream.socket.shutdown(socket.SHUT_WR)
                elif index == len(case.request) and case.client_close == "full":
                    stream.socket.close()
                    await trio.testing.wait_all_tasks_blocked(CUSHION)
                    break
                received += b"<sent>" + await read_settled(stream)
        lines = await settled_log(proxy)
    log = []
    for line in lines:
        fields = log_fields(line)
        del fields["time"], fields["duration"]
        log.append(fields)
    return Outcome([bytes(c) for c in recording.connections], received, log, exchanges, len(ctx.pool))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_fast_and_slow_paths_agree(case: Case, start_proxy: StartProxy, start_origin: StartOrigin,
                                         lanes: Lanes, tmp_path: Path) -> None:
    origin = ScriptedOrigin()
    port = await start_origin(origin.handle)
    assert len(str(port)) == 5  # the max_head cases count on it (Linux's ephemeral ports)
    fast = await run(start_proxy, origin, port, case, tmp_path, fast=True)
    fast_lanes = dataclasses.replace(lanes, served=list(lanes.served))
    lanes.served.clear()
    lanes.resumed = lanes.answered = 0
    slow = await run(start_proxy, origin, port, case, tmp_path, fast=False)
    assert fast.origin == slow.origin
    assert fast.client == slow.client
    assert fast.log == slow.log
    assert fast.exchanges == slow.exchanges
    assert fast.pool == slow.pool
    assert lanes == Lanes(), "the lane ran with fast_path: false"
    assert fast_lanes.served, "the fast lane never saw a request"
    if case.lane is not None:
        assert fast_lanes.lane() == case.lane
    if case.status is not None:
        assert fast.log[-1]["status"] == str(case.status)
    if case.pool is not None:
        assert fast.pool == case.pool


# -- the lane is taken -------------------------------------------------------------------------


async def test_simple_get_is_served_by_the_lane_only_when_on(
        start_proxy: StartProxy, start_origin: StartOrigin, lanes: Lanes, tmp_path: Path) -> None:
    origin = ScriptedOrigin()
    port = await start_origin(origin.handle)
    expected = (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n"
                b"via: 1.1 " + VIA.encode() + b"\r\n\r\nhello")
    case = CASES[0]
    fast = await run(start_proxy, origin, port, case, tmp_path, fast=True)
    assert fast.client.endswith(b"<sent>" + expected)
    assert lanes.answered >= 1
    assert lanes.served == [None, True]  # the warm-up found no pooled connection
    assert fast.pool == 1
    lanes.answered = 0
    slow = await run(start_proxy, origin, port, case, tmp_path, fast=False)
    assert slow.client == fast.client
    assert lanes.answered == 0


async def test_a_chunked_response_is_resumed_by_the_slow_path(
        start_proxy: StartProxy, start_origin: StartOrigin, lanes: Lanes, tmp_path: Path) -> None:
    origin = ScriptedOrigin()
    port = await start_origin(origin.handle)
    case = next(case for case in CASES if case.name == "chunked")
    outcome = await run(start_proxy, origin, port, case, tmp_path, fast=True)
    assert lanes.resumed == 1
    assert lanes.answered == 0
    assert outcome.client.endswith(b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    assert len(outcome.origin) == 1  # the request went out once, on the pooled connection
    assert outcome.origin[0].count(b"GET /case HTTP/1.1\r\n") == 1
    assert outcome.pool == 1


async def test_a_request_that_came_meanwhile_is_taken_without_a_wait(
        start_proxy: StartProxy, start_origin: StartOrigin, lanes: Lanes,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The second request is sent while the origin holds the first one's answer: when the
    # connection comes back for its next request, the head is at hand (no wait, no scope).
    second_sent = trio.Event()

    async def origin(stream: trio.SocketStream) -> None:
        data = b""
        for answered in range(2):
            while data.count(b"\r\n\r\n") <= answered:
                chunk = await stream.receive_some(65536)
                assert chunk, data
                data += chunk
            await second_sent.wait()
            await stream.send_all(SIMPLE)

    at_hand: list[tuple[bool, bool]] = []
    head_at_hand = FastLane.head_at_hand

    def spied(self: FastLane) -> tuple[bool, FastRequest | None]:
        came, request = head_at_hand(self)
        at_hand.append((came, request is not None))
        return came, request

    monkeypatch.setattr(FastLane, "head_at_hand", spied)
    port = await start_origin(origin)
    proxy = await start_proxy(http_parser="httptools", via=VIA)
    client = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    async with client:
        await client.send_all(fill(GET, port))
        await trio.testing.wait_all_tasks_blocked()  # the proxy waits for the origin
        await client.send_all(fill(GET, port))
        second_sent.set()
        received = b""
        while received.count(b"\r\n\r\nhello") < 2:
            chunk = await client.receive_some(65536)
            assert chunk, received
            received += chunk
    assert received.count(b"HTTP/1.1 200 OK\r\n") == 2
    assert lanes.served == [None, True]  # the first found no pooled connection
    assert (True, True) in at_hand  # the second request (the first may come later, or not)


async def test_repeated_and_changed_heads_on_one_connection_each_go_where_they_say(
        start_proxy: StartProxy, start_origin: StartOrigin, lanes: Lanes) -> None:
    # The lane keeps the heads it parsed (and, per route, the request head it sent for
    # the last one): a head repeated byte for byte is not parsed again, and any change is.
    seen: list[bytes] = []

    async def origin(stream: trio.SocketStream) -> None:
        data = b""
        while True:
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                data += chunk
            head, data = data.split(b"\r\n\r\n", 1)
            target = head.split(b" ")[1]
            tag = re.search(rb"\r\nx-tag: (\w+)", head)
            seen.append(target + b" " + (tag.group(1) if tag else b"-"))
            await stream.send_all(ok(target))  # one write: the lane serves it

    port = await start_origin(origin)
    proxy = await start_proxy(http_parser="httptools", via=VIA)
    client = await HttpClient.connect(proxy.port)
    asked = [("/a", "-"), ("/a", "-"), ("/b", "-"), ("/a", "-"), ("/a?x", "-"), ("/a", "1"),
             ("/a", "2"), ("/a", "2"), ("/a", "-")]
    for path, tag in asked:
        headers = [] if tag == "-" else [("X-Tag", tag)]
        response, body = await client.get(f"http://origin.test:{port}{path}", headers)
        assert response.status_code == 200
        assert body == path.encode()
    await client.aclose()
    assert seen == [f"{path} {tag}".encode() for path, tag in asked]
    assert lanes.served == [None] + [True] * (len(asked) - 1)
    kept = proxy.running.context.fast_heads
    assert len(kept) == 5  # the distinct heads

    # A long head is served as well, but not kept.
    client = await HttpClient.connect(proxy.port)
    response, _ = await client.get(f"http://origin.test:{port}/long", [("X-Pad", "p" * 2100)])
    assert response.status_code == 200
    await client.aclose()
    assert lanes.served[-1] is True
    assert len(kept) == 5


async def test_h11_parser_turns_the_lane_off(start_proxy: StartProxy, start_origin: StartOrigin,
                                             lanes: Lanes, tmp_path: Path) -> None:
    origin = ScriptedOrigin()
    port = await start_origin(origin.handle)
    proxy = await start_proxy(http_parser="h11", via=VIA)
    origin.recording = Recording([WARM, DEFAULT])
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    async with stream:
        await stream.send_all(fill(WARM_REQUEST, port))
        assert (await read_settled(stream)).endswith(b"warm")
        await stream.send_all(fill(GET, port))
        assert (await read_settled(stream)).endswith(b"hello")
    assert lanes == Lanes()


# -- plain_request ------------------------------------------------------------------------------

MAX_HEAD = 16 * 1024
REQUEST = b"GET http://a.test/x?y=1 HTTP/1.1\r\nHost: a.test\r\nUser-Agent: t/1 \r\nAccept: */*\r\n\r\n"


def request_with(*headers: bytes, line: bytes = b"GET http://a.test/x HTTP/1.1") -> bytes:
    return b"\r\n".join([line, *headers]) + b"\r\n\r\n"


def test_plain_request_accepts_a_plain_get() -> None:
    assert plain_request(REQUEST, max_head=MAX_HEAD, max_body=None) == FastRequest(
        REQUEST, b"http://a.test/x?y=1",
        [(b"Host", b"host", b"a.test"), (b"User-Agent", b"user-agent", b"t/1"),
         (b"Accept", b"accept", b"*/*")], False)


@pytest.mark.parametrize("connection", [b"close", b"keep-alive, Close", b"x, close"])
def test_plain_request_notes_connection_close(connection: bytes) -> None:
    data = request_with(b"Host: a.test", b"Connection: " + connection)
    request = plain_request(data, max_head=MAX_HEAD, max_body=None)
    assert request is not None
    assert request.close
    assert request.fields[1] == (b"Connection", b"connection", connection)


def test_plain_request_keeps_other_connection_tokens_open() -> None:
    data = request_with(b"Host: a.test", b"Connection: keep-alive, X-Hop", b"X-Hop: 1")
    request = plain_request(data, max_head=MAX_HEAD, max_body=1000)
    assert request is not None
    assert not request.close
    assert request.head == data


def test_plain_request_takes_a_head_of_exactly_max_head() -> None:
    assert plain_request(REQUEST, max_head=len(REQUEST), max_body=None) is not None
    assert plain_request(REQUEST, max_head=len(REQUEST) - 1, max_body=None) is None


REFUSED_REQUESTS = {
    "bytes after the head": REQUEST + b"G",
    "a second head": REQUEST + REQUEST,
    "incomplete": REQUEST[:-2],
    "HTTP/1.0": request_with(b"Host: a.test", line=b"GET http://a.test/x HTTP/1.0"),
    "POST": request_with(b"Host: a.test", line=b"POST http://a.test/x HTTP/1.1"),
    "HEAD": request_with(b"Host: a.test", line=b"HEAD http://a.test/x HTTP/1.1"),
    "lower-case get": request_with(b"Host: a.test", line=b"get http://a.test/x HTTP/1.1"),
    "origin form": request_with(b"Host: a.test", line=b"GET /x HTTP/1.1"),
    "https": request_with(b"Host: a.test", line=b"GET https://a.test/x HTTP/1.1"),
    "upper-case scheme": request_with(b"Host: a.test", line=b"GET HTTP://a.test/x HTTP/1.1"),
    "two Host headers": request_with(b"Host: a.test", b"Host: a.test"),
    "no Host": request_with(b"Accept: */*"),
    "Content-Length": request_with(b"Host: a.test", b"Content-Length: 0"),
    "Transfer-Encoding": request_with(b"Host: a.test", b"Transfer-Encoding: chunked"),
    "Expect": request_with(b"Host: a.test", b"Expect: 100-continue"),
    "Upgrade": request_with(b"Host: a.test", b"Upgrade: websocket", b"Connection: upgrade"),
    "obs-fold": request_with(b"Host: a.test", b"X-A: 1", b" folded"),
    "bare LF": request_with(b"Host: a.test").replace(b"\r\n", b"\n"),
    "bare LF at the end": request_with(b"Host: a.test")[:-2] + b"\n",
    "space before a colon": request_with(b"Host: a.test", b"X-A : 1"),
    "NUL in a value": request_with(b"Host: a.test", b"X-A: a\x00b"),
}


@pytest.mark.parametrize("data", REFUSED_REQUESTS.values(), ids=REFUSED_REQUESTS.keys())
def test_plain_request_refuses(data: bytes) -> None:
    assert plain_request(data, max_head=MAX_HEAD, max_body=None) is None


# -- plain_response -----------------------------------------------------------------------------

RESPONSE_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\n"
                 b"Connection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\n"
                 b"Set-Cookie: b=2\r\nProxy-Authenticate: Basic\r\nContent-Length: 5\r\n"
                 b"X-Trailing: v \t\r\n\r\n")
RESPONSE = RESPONSE_HEAD + b"hello"
CLIENT_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nset-cookie: a=1\r\nset-cookie: b=2\r\n"
               b"content-length: 5\r\nx-trailing: v\r\nvia: 1.1 px\r\n")


def test_plain_response_is_the_head_the_slow_path_sends() -> None:
    assert plain_response(RESPONSE, "px", max_head=MAX_HEAD) == Reply(
        CLIENT_HEAD + b"\r\n", len(RESPONSE_HEAD), 5, 200, "text/plain")


def test_plain_response_to_a_client_that_closes() -> None:
    reply = plain_response(RESPONSE, "px", max_head=MAX_HEAD, close=True)
    assert reply is not None
    assert reply.head == CLIENT_HEAD + b"Connection: close\r\n\r\n"


@pytest.mark.parametrize(("data", "expected"), [
    (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
     Reply(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nvia: 1.1 px\r\n\r\n", 45, 0, 404, None)),
    (b"HTTP/1.1 599 \r\ncontent-length: 012\r\n\r\n",
     Reply(b"HTTP/1.1 599 \r\ncontent-length: 012\r\nvia: 1.1 px\r\n\r\n", 38, 12, 599, None)),
    (b"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 1\r\n\r\nx",
     Reply(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\nvia: 1.1 px\r\n\r\n", 66, 1, 200, None)),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999999999\r\n\r\n",
     Reply(b"HTTP/1.1 200 OK\r\ncontent-length: 999999999999999999\r\nvia: 1.1 px\r\n\r\n", 55,
           999_999_999_999_999_999, 200, None)),
])
def test_plain_response_accepts(data: bytes, expected: Reply) -> None:
    assert plain_response(data, "px", max_head=MAX_HEAD) == expected


def test_plain_response_needs_only_the_head() -> None:
    reply = plain_response(RESPONSE_HEAD, "px", max_head=MAX_HEAD)
    assert reply is not None
    assert reply.length == 5
    assert plain_response(RESPONSE, "px", max_head=len(RESPONSE_HEAD)) is not None
    assert plain_response(RESPONSE, "px", max_head=len(RESPONSE_HEAD) - 1) is None


def response_with(*headers: bytes, line: bytes = b"HTTP/1.1 200 OK") -> bytes:
    return b"\r\n".join([line, *headers]) + b"\r\n\r\nhello"


REFUSED_RESPONSES = {
    "204": response_with(b"Content-Length: 0", line=b"HTTP/1.1 204 No Content"),
    "304": response_with(b"Content-Length: 5", line=b"HTTP/1.1 304 Not Modified"),
    "100": response_with(line=b"HTTP/1.1 100 Continue"),
    "103": response_with(b"Content-Length: 5", line=b"HTTP/1.1 103 Early Hints"),
    "101": response_with(b"Content-Length: 5", line=b"HTTP/1.1 101 Switching Protocols"),
    "600": response_with(b"Content-Length: 5", line=b"HTTP/1.1 600 Odd"),
    "HTTP/1.0": response_with(b"Content-Length: 5", line=b"HTTP/1.0 200 OK"),
    "no Content-Length": response_with(b"Content-Type: text/plain"),
    "chunked": response_with(b"Transfer-Encoding: chunked"),
    "length and chunked": response_with(b"Content-Length: 5", b"Transfer-Encoding: chunked"),
    "Connection: close": response_with(b"Content-Length: 5", b"Connection: close"),
    "Connection: keep-alive, close": response_with(b"Content-Length: 5", b"Connection: keep-alive, Close"),
    "two equal lengths": response_with(b"Content-Length: 5", b"Content-Length: 5"),
    "two lengths": response_with(b"Content-Length: 5", b"Content-Length: 6"),
    "a length list": response_with(b"Content-Length: 5, 5"),
    "a signed length": response_with(b"Content-Length: +5"),
    "a 19-digit length": response_with(b"Content-Length: 1000000000000000000"),
    "a Host header": response_with(b"Host: a.test", b"Content-Length: 5"),
    "an incomplete head": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n",
    "no blank line yet": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r",
    "obs-fold": response_with(b"Content-Length: 5", b"X-A: 1", b" folded"),
    "bare LF": response_with(b"Content-Length: 5").replace(b"\r\n", b"\n"),
    "a space before a colon": response_with(b"Content-Length: 5", b"X-A : 1"),
    "HTTP/2.0": response_with(b"Content-Length: 5", line=b"HTTP/2.0 200 OK"),
}


@pytest.mark.parametrize("data", REFUSED_RESPONSES.values(), ids=REFUSED_RESPONSES.keys())
def test_plain_response_refuses(data: bytes) -> None:
    assert plain_response(data, "px", max_head=MAX_HEAD) is None


# -- the setting --------------------------------------------------------------------------------


def test_fast_path_setting() -> None:
    assert config_module.from_mapping(dict(TEST_CONFIG), "test").fast_path is True
    assert config_module.from_mapping({**TEST_CONFIG, "fast_path": False}, "test").fast_path is False
    with pytest.raises(ConfigError, match="fast_path"):
        config_module.from_mapping({**TEST_CONFIG, "fast_path": "yes"}, "test")
