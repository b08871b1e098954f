"""LLHTTPConnection against h11.Connection: one corpus fed to both, the same results asserted.

`fwdproxy.proxy.llhttp_conn.LLHTTPConnection` must behave exactly as h11 0.16's Connection
for the part of its interface the proxy uses. Each case here is a script of steps (bytes
received, EOF, an event sent, start_next_cycle, send_failed, one more round of next_event);
`run()` plays a script on one connection and records, after every step, what came out (the
events next_event returned until NEED_DATA or PAUSED, with every field; the bytes send
returned; or the exception raised, by class and error_status_hint) and the state the
connection is left in (our_state, their_state, their_http_version, trailing_data, the two
100-continue flags). The record made on h11 and the one made on LLHTTPConnection must be
equal, step by step.

Where a body reader cuts Data events is not part of the contract: consecutive Data events of
one step are merged (their bytes joined, chunk_start/chunk_end kept as offsets into the
joined bytes, which do not depend on the cuts). Everything else is compared exactly,
including the types of the fields (bytes, bytearray, int) and of the header container.

Every received byte stream is fed three ways: whole, one byte at a time, and cut at a few
points (inside the first line, inside the first header, either side of the head's end, just
inside the body). The tables cover the server role (request heads, valid and hostile: every
request-smuggling shape we know of), the client role (responses, likewise), and the send
side of both roles (the exact bytes, or the same LocalProtocolError); hypothesis then
generates heads and exchanges from valid and hostile pieces.

Without the module every comparison fails (it is written beside this test). To check the
harness itself, FWDPROXY_DIFF_CANDIDATE=h11 compares h11 with itself; `test_harness_*`
make sure a connection that differs from h11 in small ways is caught.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fwdproxy.proxy.h11_stream import checked_headers
from tests.proxy.test_framing import BAD_HEADS, GOOD_HEADS

try:
    from fwdproxy.proxy.llhttp_conn import LLHTTPConnection
except ImportError:  # every comparison fails without it (see candidate())
    LLHTTPConnection = None  # type: ignore[assignment,misc]

CLIENT, SERVER = h11.CLIENT, h11.SERVER
DEFAULT_MAX = 16 * 1024
MODES = ("whole", "bytes", "cuts")

Factory = Callable[[Any, int], Any]


def reference(role: Any, max_size: int) -> Any:
    return h11.Connection(role, max_incomplete_event_size=max_size)


def candidate(role: Any, max_size: int) -> Any:
    if os.environ.get("FWDPROXY_DIFF_CANDIDATE") == "h11":
        return h11.Connection(role, max_incomplete_event_size=max_size)
    if LLHTTPConnection is None:
        pytest.fail("fwdproxy.proxy.llhttp_conn.LLHTTPConnection is missing: nothing to compare h11 with")
    return LLHTTPConnection(role, max_incomplete_event_size=max_size)


# -- scripts ---------------------------------------------------------------------------------


@dataclass
class Ctx:
    """What a `send` step may build its event from: this connection's own received events,
    and heads parsed by a fresh connection of the same implementation."""

    factory: Factory
    received: list[Any] = field(default_factory=list)

    def last(self, kind: type) -> Any:
        for event in reversed(self.received):
            if type(event) is kind:
                return event
        raise LookupError(f"no {kind.__name__} received")

    def parse(self, role: Any, data: bytes) -> Any:
        """The first event a fresh connection in `role` makes of `data`."""
        conn = self.factory(role, DEFAULT_MAX)
        if role is CLIENT:
            conn.send(h11.Request(method="GET", target="/", headers=[("Host", "o.test")]))
            conn.send(h11.EndOfMessage())
        conn.receive_data(data)
        return conn.next_event()


@dataclass(frozen=True)
class Step:
    kind: str  # recv (b"" is EOF), send, cycle, send_failed, drain
    data: bytes = b""
    make: Callable[[Ctx], Any] | None = None
    label: str = ""

    def __str__(self) -> str:
        if self.kind == "recv":
            if not self.data:
                return "EOF"
            shown = self.data if len(self.data) <= 48 else self.data[:48] + b"..."
            return f"recv[{len(self.data)}] {shown!r}"
        return self.label or self.kind


def recv(data: bytes) -> Step:
    return Step("recv", data)


EOF = Step("recv", b"")
DRAIN = Step("drain", label="next_event")
CYCLE = Step("cycle", label="start_next_cycle")
SEND_FAILED = Step("send_failed", label="send_failed")


def send(make: Callable[[Ctx], Any], label: str) -> Step:
    return Step("send", make=make, label=f"send {label}")


Headers = Sequence[tuple[Any, Any]]
HOST: tuple[tuple[str, str], ...] = (("Host", "o.test"),)


def request(method: str = "GET", target: str = "/", headers: Headers = HOST, **kw: Any) -> Step:
    return send(lambda ctx: h11.Request(method=method, target=target, headers=list(headers), **kw),
                f"Request {method} {target} {list(headers)} {kw or ''}")


def response(status: int = 200, headers: Headers = (), **kw: Any) -> Step:
    return send(lambda ctx: h11.Response(status_code=status, headers=list(headers), **kw),
                f"Response {status} {list(headers)} {kw or ''}")


def info(status: int = 100, headers: Headers = ()) -> Step:
    return send(lambda ctx: h11.InformationalResponse(status_code=status, headers=list(headers)),
                f"InformationalResponse {status} {list(headers)}")


def data(payload: bytes | bytearray | memoryview) -> Step:
    anything: Any = payload  # h11 takes any bytes-like object (its hint says bytes)
    return send(lambda ctx: h11.Data(data=anything), f"Data {type(payload).__name__} {bytes(payload)!r}")


def eom(trailers: Headers = ()) -> Step:
    return send(lambda ctx: h11.EndOfMessage(headers=list(trailers)), f"EndOfMessage {list(trailers)}")


CLOSE = send(lambda ctx: h11.ConnectionClosed(), "ConnectionClosed")
CL0, CL2 = (("Content-Length", "0"),), (("Content-Length", "2"),)

# What the server side does after each request of the corpus, whatever became of it: answer,
# finish, start the next cycle, read the next request, then see the client close.
ANSWER = (response(200, CL2), data(b"ok"), eom(), CYCLE, DRAIN, EOF, DRAIN)
# The client side after each response of the corpus.
AFTER = (CYCLE, DRAIN, EOF, DRAIN)


@dataclass(frozen=True)
class Case:
    role: Any
    script: tuple[Step, ...]
    max_size: int = DEFAULT_MAX


def case(case_id: str, role: Any, *steps: Step, max_size: int = DEFAULT_MAX) -> Any:
    return pytest.param(Case(role, steps, max_size), id=case_id)


def req(case_id: str, raw: bytes, *tail: Step, max_size: int = DEFAULT_MAX) -> Any:
    """A server-role case: `raw` arrives, then `tail` (ANSWER unless given)."""
    return case(case_id, SERVER, recv(raw), *(tail or ANSWER), max_size=max_size)


def resp(case_id: str, raw: bytes, *tail: Step, method: str = "GET", target: str = "/",
         headers: Headers = HOST, max_size: int = DEFAULT_MAX) -> Any:
    """A client-role case: a request is sent, `raw` arrives, then `tail` (AFTER unless given)."""
    return case(case_id, CLIENT, request(method, target, headers), eom(), recv(raw), *(tail or AFTER),
                max_size=max_size)


# -- running and recording ---------------------------------------------------------------------

_SENTINELS = {id(getattr(h11, name)): name for name in (
    "CLIENT", "SERVER", "IDLE", "SEND_BODY", "SEND_RESPONSE", "DONE", "MUST_CLOSE", "CLOSED",
    "MIGHT_SWITCH_PROTOCOL", "SWITCHED_PROTOCOL", "ERROR", "NEED_DATA", "PAUSED")}
_EVENT_TYPES = {h11.Request, h11.Response, h11.InformationalResponse, h11.Data, h11.EndOfMessage,
                h11.ConnectionClosed}


def _sentinel(value: Any) -> str:
    name = _SENTINELS.get(id(value))
    return name if name is not None else f"<not h11's> {value!r}"


def _typed(value: Any) -> Any:
    """`value` itself when its type is the plain one h11 uses, else a tagged repr."""
    if value is None or type(value) in (bytes, int, bool):
        return value
    return f"<{type(value).__name__}> {value!r}"


def _blob(value: Any) -> Any:
    """Long byte strings by length and digest (the records of a big head stay small)."""
    if type(value) is bytes and len(value) > 256:
        return f"{len(value)} bytes {hashlib.blake2b(value, digest_size=12).hexdigest()}"
    return _typed(value)


def _headers(headers: Any) -> Any:
    kind = f"{type(headers).__module__}.{type(headers).__qualname__}"
    items = [tuple(_typed(part) for part in item) for item in list(headers)]
    raw = getattr(headers, "raw_items", None)
    raw_items = [tuple(_typed(part) for part in item) for item in raw()] if raw else "no raw_items()"
    return (kind, items, raw_items)


def _event(event: Any) -> Any:
    kind = type(event)
    if kind not in _EVENT_TYPES:
        return (_sentinel(event),) if id(event) in _SENTINELS else ("<not an h11 event>", repr(event))
    if kind is h11.Request:
        return ("Request", _typed(event.method), _typed(event.target), _typed(event.http_version),
                _headers(event.headers))
    if kind in (h11.Response, h11.InformationalResponse):
        return (kind.__name__, _typed(event.status_code), _typed(event.reason), _typed(event.http_version),
                _headers(event.headers))
    if kind is h11.EndOfMessage:
        return ("EndOfMessage", _headers(event.headers))
    return ("ConnectionClosed",)


def _data_run(run: list[Any]) -> Any:
    joined, starts, ends, offset = [], [], [], 0
    for event in run:
        joined.append(bytes(event.data))
        if event.chunk_start:
            starts.append(offset)
        offset += len(event.data)
        if event.chunk_end:
            ends.append(offset)
    types = sorted({type(event.data).__name__ for event in run})
    return ("Data", _blob(b"".join(joined)), "chunk starts", tuple(starts), "ends", tuple(ends), *types)


def _events(events: list[Any]) -> list[Any]:
    out = []
    for is_data, group in itertools.groupby(events, key=lambda event: type(event) is h11.Data):
        if is_data:
            out.append(_data_run(list(group)))
        else:
            out.extend(_event(event) for event in group)
    return out


def _raised(exc: BaseException) -> Any:
    return ("raised", f"{type(exc).__module__}.{type(exc).__qualname__}",
            getattr(exc, "error_status_hint", None))


def _snapshot(conn: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, shown in (("our_role", _sentinel), ("their_role", _sentinel), ("our_state", _sentinel),
                        ("their_state", _sentinel), ("their_http_version", _typed),
                        ("trailing_data", lambda td: (_blob(td[0]), _typed(td[1]))),
                        ("they_are_waiting_for_100_continue", _typed),
                        ("client_is_waiting_for_100_continue", _typed)):
        try:
            out[name] = shown(getattr(conn, name))
        except Exception as exc:
            out[name] = _raised(exc)
    return out


@dataclass
class Outcome:
    step: str
    result: list[Any]
    state: dict[str, Any]
    detail: str = field(default="", compare=False)  # the exception's message, for the report


def _drain(conn: Any, ctx: Ctx, into: list[Any]) -> None:
    for _ in range(64):  # ConnectionClosed comes back for ever
        event = conn.next_event()
        into.append(event)
        if event is h11.NEED_DATA or event is h11.PAUSED or type(event) is h11.ConnectionClosed:
            return
        ctx.received.append(event)
    into.append("<64 events in one round>")


def _play(conn: Any, ctx: Ctx, step: Step) -> tuple[list[Any], str]:
    events: list[Any] = []
    try:
        if step.kind == "recv":
            conn.receive_data(step.data)
            _drain(conn, ctx, events)
        elif step.kind == "drain":
            _drain(conn, ctx, events)
        elif step.kind == "send":
            assert step.make is not None
            event = step.make(ctx)
            out = conn.send(event)
            return [("sent", _typed(out))], ""
        elif step.kind == "cycle":
            conn.start_next_cycle()
        elif step.kind == "send_failed":
            conn.send_failed()
        else:  # pragma: no cover
            raise ValueError(step.kind)
    except Exception as exc:
        return [*_events(events), _raised(exc)], f"{type(exc).__name__}: {exc}"
    return _events(events), ""


def run(factory: Factory, role: Any, script: Iterable[Step], max_size: int = DEFAULT_MAX) -> list[Outcome]:
    """Play `script` on a new connection; one Outcome per step."""
    conn = factory(role, max_size)
    ctx = Ctx(factory)
    outcomes = []
    for step in script:
        result, detail = _play(conn, ctx, step)
        outcomes.append(Outcome(str(step), result, _snapshot(conn), detail))
    return outcomes


def _pieces(payload: bytes, mode: str) -> list[bytes]:
    if mode == "whole" or not payload:
        return [payload]
    if mode == "bytes":
        if len(payload) <= 2048:
            return [payload[i:i + 1] for i in range(len(payload))]
        # A big head: byte by byte at both ends, in odd-sized pieces between.
        head = [payload[i:i + 1] for i in range(1024)]
        middle = [payload[i:min(i + 997, len(payload) - 1024)] for i in range(1024, len(payload) - 1024, 997)]
        tail = [payload[i:i + 1] for i in range(len(payload) - 1024, len(payload))]
        return head + middle + tail
    points = {2}
    newline = payload.find(b"\n")
    if newline >= 0:
        points.add(newline + 4)
    end = re.search(rb"\n\r?\n", payload)
    if end:
        points |= {end.end() - 1, end.end(), end.end() + 1, end.end() + 3}
    cuts = [0, *sorted(p for p in points if 0 < p < len(payload)), len(payload)]
    return [payload[a:b] for a, b in itertools.pairwise(cuts)]


def feed(script: Iterable[Step], mode: str) -> list[Step]:
    """`script` with every received byte stream cut as `mode` says."""
    out: list[Step] = []
    for step in script:
        if step.kind == "recv" and step.data:
            out.extend(recv(piece) for piece in _pieces(step.data, mode))
        else:
            out.append(step)
    return out


def _explain(expected: list[Outcome], actual: list[Outcome]) -> str:
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        if want == got:
            continue
        lines = [f"first difference at step {index} of {len(expected)}: {want.step}"]
        lines += [f"  before: {earlier.step}" for earlier in expected[max(0, index - 3):index]]
        if want.result != got.result:
            lines.append(f"  h11 returned:    {want.result}  {want.detail}")
            lines.append(f"  llhttp returned: {got.result}  {got.detail}")
        for key in want.state:
            if want.state[key] != got.state.get(key):
                lines.append(f"  {key}: h11 {want.state[key]!r}, llhttp {got.state.get(key)!r}")
        return "\n".join(lines)
    return "the records differ"  # pragma: no cover


def compare(role: Any, script: Iterable[Step], max_size: int = DEFAULT_MAX,
            other: Factory = candidate) -> None:
    script = list(script)
    expected = run(reference, role, script, max_size)
    actual = run(other, role, script, max_size)
    if actual != expected:
        raise AssertionError(_explain(expected, actual))


def differs(role: Any, script: Iterable[Step], max_size: int, other: Factory) -> bool:
    script = list(script)
    return run(reference, role, script, max_size) != run(other, role, script, max_size)


# -- the server role: requests -----------------------------------------------------------------


def get(lines: bytes = b"", target: bytes = b"/", version: bytes = b"HTTP/1.1") -> bytes:
    """A GET head with Host and `lines` (each ending in CRLF)."""
    return b"GET " + target + b" " + version + b"\r\nHost: o.test\r\n" + lines + b"\r\n"


def post(lines: bytes, body: bytes = b"") -> bytes:
    return b"POST /p HTTP/1.1\r\nHost: o.test\r\n" + lines + b"\r\n" + body


def chunked(body: bytes, lines: bytes = b"") -> bytes:
    return post(b"Transfer-Encoding: chunked\r\n" + lines, body)


def cl(value: bytes, body: bytes = b"hello") -> bytes:
    return post(b"Content-Length: " + value + b"\r\n", body)


def te(value: bytes, body: bytes = b"5\r\nhello\r\n0\r\n\r\n") -> bytes:
    return post(b"Transfer-Encoding: " + value + b"\r\n", body)


def header(line: bytes) -> bytes:
    return get(line + b"\r\n")


BODY = b"5\r\nhello\r\n0\r\n\r\n"
NEXT = get(target=b"/next")
WEBSOCKET = (b"GET /chat HTTP/1.1\r\nHost: o.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
SWITCH_101 = info(101, (("Upgrade", "websocket"), ("Connection", "Upgrade")))
BIG = b"a" * 17000

REQUESTS = [
    # RFC 9110/9112 examples and the four target forms
    req("rfc-get", b"GET /hello.txt HTTP/1.1\r\nUser-Agent: curl/7.64.1\r\nHost: www.example.com\r\n"
        b"Accept-Language: en, mi\r\n\r\n"),
    req("rfc-origin-form-query", b"GET /where?q=now HTTP/1.1\r\nHost: www.example.org\r\n\r\n"),
    req("rfc-absolute-form", b"GET http://www.example.org/pub/WWW/TheProject.html HTTP/1.1\r\n"
        b"Host: www.example.org\r\n\r\n"),
    req("rfc-authority-form-200", b"CONNECT www.example.com:80 HTTP/1.1\r\nHost: www.example.com:80\r\n\r\n"
        b"\x16\x03\x01hello", response(200), DRAIN, recv(b"more tunnel"), DRAIN, EOF, CYCLE),
    req("rfc-asterisk-form", b"OPTIONS * HTTP/1.1\r\nHost: www.example.org:8001\r\n\r\n"),
    req("rfc-chunked-example", chunked(b"4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n")),
    req("rfc-http10-simple", b"GET / HTTP/1.0\r\n\r\n"),
    req("head", b"HEAD /x HTTP/1.1\r\nHost: o.test\r\n\r\n", response(200, (("Content-Length", "10"),)),
        data(b""), eom(), CYCLE, DRAIN),
    req("head-then-data", b"HEAD /x HTTP/1.1\r\nHost: o.test\r\n\r\n"),
    req("post-cl", post(b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 11\r\n",
                        b"hello=world")),
    req("put-cl-0", b"PUT /r HTTP/1.1\r\nHost: o.test\r\nContent-Length: 0\r\n\r\n"),
    req("delete-no-length-then-bytes", b"DELETE /r HTTP/1.1\r\nHost: o.test\r\n\r\nhello"),
    req("options-origin", b"OPTIONS /a HTTP/1.1\r\nHost: o.test\r\n\r\n"),
    req("lowercase-method", b"get / HTTP/1.1\r\nHost: o.test\r\n\r\n"),
    req("custom-method", b"PROPFIND /d HTTP/1.1\r\nHost: o.test\r\nDepth: 1\r\n\r\n"),
    req("http10-host", b"GET http://o.test/ HTTP/1.0\r\nHost: o.test\r\n\r\n"),
    req("http10-keep-alive", b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
    req("http10-post-cl", b"POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi"),
    req("http11-connection-close", get(b"Connection: close\r\n")),
    req("http11-connection-CLOSE-list", get(b"Connection: foo, CLOSE\r\n")),
    req("http11-connection-keep-alive", get(b"Connection: keep-alive\r\n")),
    req("header-case-kept", b"GET / HTTP/1.1\r\nhOsT: o.test\r\nX-MiXeD: V\r\nx-mixed: w\r\n\r\n"),
    req("header-values-trimmed", get(b"X-A:   spaced out \t \r\nX-B:\r\nX-C:\t\r\nX-D: a  \t b\r\n")),
    req("header-no-space-after-colon", get(b"X-A:b\r\n")),
    req("header-colons-in-value", get(b"X-A: a:b: c\r\n")),
    req("header-many", get(b"".join(b"X-%d: %d\r\n" % (i, i) for i in range(100)))),
    req("set-cookie-twice", get(b"Cookie: a=1\r\nCookie: b=2\r\n")),
    # pipelining
    req("pipelined-two-gets", get() + NEXT, response(200, CL0), eom(), CYCLE, DRAIN, response(200, CL0),
        eom(), CYCLE, DRAIN, EOF),
    req("pipelined-post-then-get", cl(b"5") + NEXT, response(200, CL0), eom(), CYCLE, DRAIN,
        response(204), eom(), CYCLE, DRAIN),
    req("pipelined-chunked-then-get", chunked(BODY) + NEXT, response(200, CL0), eom(), CYCLE, DRAIN,
        response(200, CL0), eom(), CYCLE, DRAIN),
    req("pipelined-three", get() + NEXT + get(target=b"/third"), response(200, CL0), eom(), CYCLE, DRAIN,
        response(200, CL0), eom(), CYCLE, DRAIN, response(200, CL0), eom(), CYCLE, DRAIN),
    req("pipelined-close-then-get", get(b"Connection: close\r\n") + NEXT),
    req("pipelined-garbage", get() + b"NOT HTTP\r\n\r\n"),
    req("pipelined-half-head", get() + b"GET /half HTTP/1.1\r\nHo"),
    req("pipelined-cycle-before-response", get() + NEXT, CYCLE, DRAIN, response(200, CL0), eom(), CYCLE,
        DRAIN),
    # Content-Length bodies
    req("cl-body-short-then-eof", cl(b"10"), EOF, *ANSWER),
    req("cl-body-eof-after", cl(b"5"), EOF, *ANSWER),
    req("cl-body-longer", cl(b"3")),
    req("cl-zero-leading", cl(b"0005")),
    req("cl-20-digits", cl(b"00000000000000000005")),
    req("cl-21-digits", cl(b"000000000000000000005")),
    req("cl-huge", cl(b"99999999999999999999"), EOF),
    req("cl-plus", cl(b"+5")),
    req("cl-minus", cl(b"-5")),
    req("cl-hex", cl(b"0x5")),
    req("cl-decimal", cl(b"5.0")),
    req("cl-space-inside", cl(b"5 5")),
    req("cl-spaces-around", cl(b" \t5 \t")),
    req("cl-empty", cl(b"")),
    req("cl-letters", cl(b"five")),
    req("cl-list-same", cl(b"5, 5")),
    req("cl-list-same-spaced", cl(b"5 ,5 , 5")),
    req("cl-list-different", cl(b"5, 6")),
    req("cl-list-trailing-comma", cl(b"5,")),
    req("cl-duplicate-same", post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello")),
    req("cl-duplicate-same-case", post(b"Content-Length: 5\r\ncontent-length: 05\r\n", b"hello")),
    req("cl-duplicate-different", post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!")),
    req("cl-nul", cl(b"5\x00")),
    req("cl-obs-fold", post(b"Content-Length: 1\r\n 0\r\n", b"0123456789")),
    req("cl-in-get", get(b"Content-Length: 3\r\n") + b"abc"),
    # Transfer-Encoding
    req("te-chunked", te(b"chunked")),
    req("te-Chunked", te(b"Chunked")),
    req("te-CHUNKED", te(b"CHUNKED")),
    req("te-chunked-trailing-space", te(b"chunked ")),
    req("te-chunked-tab", te(b"\tchunked\t")),
    req("te-chunked-identity", te(b"chunked, identity")),
    req("te-chunked-comma-identity", te(b"chunked,identity")),
    req("te-identity", te(b"identity", b"hello")),
    req("te-gzip", te(b"gzip")),
    req("te-gzip-chunked", te(b"gzip, chunked")),
    req("te-chunked-chunked", te(b"chunked, chunked")),
    req("te-xchunked", te(b"xchunked")),
    req("te-chunkedx", te(b"chunkedx")),
    req("te-quoted", te(b'"chunked"')),
    req("te-empty", te(b"")),
    req("te-nul", te(b"chunked\x00")),
    req("te-vertical-tab", te(b"\x0bchunked")),
    req("te-duplicate", post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", BODY)),
    req("te-duplicate-gzip", post(b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", BODY)),
    req("te-obs-fold", post(b"Transfer-Encoding:\r\n chunked\r\n", BODY)),
    req("te-space-before-colon", post(b"Transfer-Encoding : chunked\r\n", BODY)),
    req("te-underscore-name", post(b"Transfer_Encoding: chunked\r\n", BODY)),
    req("te-in-http10", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n" + BODY),
    req("te-in-get", get(b"Transfer-Encoding: chunked\r\n") + BODY),
    req("cl-then-te", post(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", BODY)),
    req("te-then-cl", post(b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", BODY)),
    req("cl-then-te-identity", post(b"Content-Length: 5\r\nTransfer-Encoding: identity\r\n", b"hello")),
    req("cl-bad-then-te", post(b"Content-Length: x\r\nTransfer-Encoding: chunked\r\n", BODY)),
    req("te-header-name-te", post(b"TE: trailers\r\nContent-Length: 5\r\n", b"hello")),
    # chunked bodies
    req("chunked-extensions", chunked(b"5;name=value\r\nhello\r\n3;a;b=\"c;d\"\r\nabc\r\n0;last\r\n\r\n")),
    req("chunked-extension-nul", chunked(b"5;\x00\r\nhello\r\n0\r\n\r\n")),
    req("chunked-extension-ctl-obs", chunked(b"5;\x01\x7f\xff\r\nhello\r\n0\r\n\r\n")),
    req("chunked-extension-space-before", chunked(b"5 ;a\r\nhello\r\n0\r\n\r\n")),
    req("chunked-extension-bare-cr", chunked(b"5;a\rb\r\nhello\r\n0\r\n\r\n")),
    req("chunked-trailers", chunked(b"5\r\nhello\r\n0\r\nExpires: never\r\nX-Sum: 1\r\n\r\n")),
    req("chunked-trailer-cl", chunked(b"5\r\nhello\r\n0\r\nContent-Length: 3\r\n\r\n")),
    req("chunked-trailer-bad-cl", chunked(b"5\r\nhello\r\n0\r\nContent-Length: x\r\n\r\n")),
    req("chunked-trailer-te", chunked(b"5\r\nhello\r\n0\r\nTransfer-Encoding: gzip\r\n\r\n")),
    req("chunked-trailer-bad-line", chunked(b"5\r\nhello\r\n0\r\nnot a header\r\n\r\n")),
    req("chunked-trailer-obs-fold", chunked(b"5\r\nhello\r\n0\r\nX-A: 1\r\n 2\r\n\r\n")),
    req("chunked-trailer-bare-lf", chunked(b"5\r\nhello\r\n0\r\nX-A: 1\n\n")),
    req("chunked-trailer-host", chunked(b"0\r\nHost: a\r\nHost: b\r\n\r\n")),
    req("chunked-empty", chunked(b"0\r\n\r\n")),
    req("chunked-uppercase-hex", chunked(b"A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n")),
    req("chunked-leading-zeros", chunked(b"0005\r\nhello\r\n000\r\n\r\n")),
    req("chunked-trailing-whitespace", chunked(b"5 \t\r\nhello\r\n0 \r\n\r\n")),
    req("chunked-size-0x", chunked(b"0x5\r\nhello\r\n0\r\n\r\n")),
    req("chunked-size-plus", chunked(b"+5\r\nhello\r\n0\r\n\r\n")),
    req("chunked-size-minus", chunked(b"-5\r\nhello\r\n0\r\n\r\n")),
    req("chunked-size-leading-space", chunked(b" 5\r\nhello\r\n0\r\n\r\n")),
    req("chunked-size-inner-space", chunked(b"5 5\r\nhello\r\n0\r\n\r\n")),
    req("chunked-size-empty", chunked(b"\r\nhello\r\n0\r\n\r\n")),
    req("chunked-size-not-hex", chunked(b"g\r\nhello\r\n0\r\n\r\n")),
    req("chunked-size-16-digits", chunked(b"0000000000000005\r\nhello\r\n0\r\n\r\n")),
    req("chunked-size-17-digits", chunked(b"00000000000000005\r\nhello\r\n0\r\n\r\n")),
    req("chunked-size-20-digits", chunked(b"00000000000000000005\r\nhello\r\n0\r\n\r\n")),
    req("chunked-size-21-digits", chunked(b"000000000000000000005\r\nhello\r\n0\r\n\r\n")),
    req("chunked-size-huge", chunked(b"ffffffffffffffff\r\nhello"), EOF),
    req("chunked-size-bare-lf", chunked(b"5\nhello\r\n0\r\n\r\n")),
    req("chunked-last-bare-lf", chunked(b"5\r\nhello\r\n0\n\n")),
    req("chunked-data-then-junk", chunked(b"5\r\nhelloXX0\r\n\r\n")),
    req("chunked-data-then-lf", chunked(b"5\r\nhello\n0\r\n\r\n")),
    req("chunked-data-then-cr", chunked(b"5\r\nhello\r0\r\n\r\n")),
    req("chunked-data-too-long", chunked(b"3\r\nhello\r\n0\r\n\r\n")),
    req("chunked-data-too-short", chunked(b"7\r\nhello\r\n0\r\n\r\n")),
    req("chunked-no-last-chunk-eof", chunked(b"5\r\nhello\r\n"), EOF, *ANSWER),
    req("chunked-no-final-crlf-eof", chunked(b"5\r\nhello\r\n0\r\n"), EOF, *ANSWER),
    req("chunked-eof-in-size", chunked(b"5"), EOF, *ANSWER),
    req("chunked-eof-in-data", chunked(b"5\r\nhel"), EOF, *ANSWER),
    req("chunked-size-line-too-long", chunked(b"5;" + b"x" * 100), EOF, max_size=64),
    req("chunked-trailers-too-long", chunked(b"0\r\nX-A: " + b"x" * 100), EOF, max_size=64),
    # Expect: 100-continue
    req("expect-100", post(b"Expect: 100-continue\r\nContent-Length: 5\r\n"), info(100), recv(b"hello"),
        response(200, CL0), eom(), CYCLE, DRAIN),
    req("expect-100-body-early", post(b"Expect: 100-continue\r\nContent-Length: 5\r\n", b"hel"),
        recv(b"lo"), response(200, CL0), eom(), CYCLE),
    req("expect-100-final-instead", post(b"Expect: 100-continue\r\nContent-Length: 5\r\n"),
        response(417, CL0), eom(), recv(b"hello"), CYCLE, DRAIN),
    req("expect-100-uppercase", post(b"Expect: 100-CONTINUE\r\nContent-Length: 0\r\n"), info(100),
        response(200, CL0), eom(), CYCLE),
    req("expect-100-list", post(b"Expect: foo, 100-continue\r\nContent-Length: 0\r\n"), info(100)),
    req("expect-other", post(b"Expect: 200-ok\r\nContent-Length: 0\r\n"), info(100)),
    req("expect-100-http10", b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
        info(100), recv(b"hi")),
    req("expect-100-chunked", chunked(b"", b"Expect: 100-continue\r\n"), info(100), recv(BODY),
        response(200, CL0), eom(), CYCLE),
    # upgrades and CONNECT
    req("upgrade-websocket-101", WEBSOCKET + b"\x81\x05hello", SWITCH_101, DRAIN, recv(b"\x81\x00"), DRAIN,
        EOF, DRAIN, CYCLE),
    req("upgrade-websocket-refused", WEBSOCKET + b"\x81\x05hello", response(200, CL0), DRAIN, eom(), CYCLE,
        DRAIN),
    req("upgrade-websocket-400", WEBSOCKET, response(400, CL0), eom(), CYCLE, DRAIN),
    req("upgrade-h2c-post-body", post(b"Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                                      b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Length: 5\r\n",
                                      b"hello"), SWITCH_101, DRAIN),
    req("upgrade-101-then-response", WEBSOCKET, info(101, (("Upgrade", "websocket"),)), response(200)),
    req("upgrade-info-100-first", WEBSOCKET, info(100), SWITCH_101, DRAIN),
    req("upgrade-empty-value", get(b"Upgrade:\r\n"), SWITCH_101),
    req("upgrade-http10", b"GET / HTTP/1.0\r\nUpgrade: websocket\r\n\r\n", SWITCH_101, DRAIN),
    req("connect-200", b"CONNECT o.test:443 HTTP/1.1\r\nHost: o.test:443\r\n\r\n", response(200), DRAIN,
        recv(b"\x16\x03\x01"), DRAIN, EOF, DRAIN),
    req("connect-204", b"CONNECT o.test:443 HTTP/1.1\r\nHost: o.test:443\r\n\r\n", response(204), DRAIN),
    req("connect-299-cl", b"CONNECT o.test:443 HTTP/1.1\r\nHost: o.test:443\r\n\r\n",
        response(299, (("Content-Length", "5"),)), data(b"x")),
    req("connect-407", b"CONNECT o.test:443 HTTP/1.1\r\nHost: o.test:443\r\n\r\n",
        response(407, CL2), data(b"no"), eom(), CYCLE, DRAIN, EOF),
    req("connect-403-no-length", b"CONNECT o.test:443 HTTP/1.1\r\nHost: o.test:443\r\n\r\n",
        response(403), data(b"no"), eom(), CYCLE),
    req("connect-http10", b"CONNECT o.test:443 HTTP/1.0\r\n\r\nhello", response(200), DRAIN),
    req("connect-http10-refused", b"CONNECT o.test:443 HTTP/1.0\r\n\r\n", response(403, CL0), eom(), DRAIN),
    req("connect-with-body", b"CONNECT o.test:443 HTTP/1.1\r\nHost: o\r\nContent-Length: 3\r\n\r\nabc",
        response(200), DRAIN),
    req("connect-pipelined-get", b"CONNECT o.test:443 HTTP/1.1\r\nHost: o\r\n\r\n" + NEXT,
        response(407, CL0), eom(), CYCLE, DRAIN),
    req("connect-101", b"CONNECT o.test:443 HTTP/1.1\r\nHost: o\r\n\r\n", SWITCH_101),
    req("connect-and-upgrade", b"CONNECT o.test:443 HTTP/1.1\r\nHost: o\r\nUpgrade: x\r\n\r\n",
        response(400, CL0), eom(), CYCLE),
    # obs-fold, whitespace, names, values
    req("obs-fold-space", get(b"X-A: 1\r\n folded\r\n")),
    req("obs-fold-tab", get(b"X-A: 1\r\n\tfolded\r\n")),
    req("obs-fold-many", get(b"X-A: 1\r\n 2\r\n\t 3\r\n  \r\n")),
    req("obs-fold-first-header", b"GET / HTTP/1.1\r\n Host: o.test\r\n\r\n"),
    req("obs-fold-host", get(b"X-A: 1\r\n").replace(b"Host: o.test\r\n", b"Host:\r\n o.test\r\n")),
    req("obs-fold-empty-value", get(b"X-A:\r\n b\r\n")),
    req("space-before-colon", get(b"X-A : 1\r\n")),
    req("tab-before-colon", get(b"X-A\t: 1\r\n")),
    req("host-space-before-colon", b"GET / HTTP/1.1\r\nHost : o.test\r\n\r\n"),
    req("name-paren", header(b"X(A): 1")),
    req("name-space", header(b"X A: 1")),
    req("name-slash", header(b"X/A: 1")),
    req("name-at", header(b"X@A: 1")),
    req("name-braces", header(b"{X}: 1")),
    req("name-nul", header(b"X\x00A: 1")),
    req("name-del", header(b"X\x7fA: 1")),
    req("name-obs-text", header(b"X\xe9: 1")),
    req("name-token-specials", header(b"!#$%&'*+-.^_`|~: 1")),
    req("name-empty", header(b": 1")),
    req("name-only-colon-line", header(b":")),
    req("no-colon", header(b"X-A 1")),
    req("value-nul", header(b"X-A: a\x00b")),
    req("value-soh", header(b"X-A: a\x01b")),
    req("value-esc", header(b"X-A: \x1b[31m")),
    req("value-del", header(b"X-A: a\x7fb")),
    req("value-vt", header(b"X-A: a\x0bb")),
    req("value-ff", header(b"X-A: a\x0cb")),
    req("value-obs-text", header(b"X-A: caf\xe9 \x80\xff")),
    req("value-utf8", header(b"X-A: caf\xc3\xa9")),
    req("value-nel", header(b"X-A: a\xc2\x85b")),
    req("value-bare-cr", header(b"X-A: a\rb")),
    req("value-trailing-cr", header(b"X-A: ab\r")),
    req("value-tab-inside", header(b"X-A: a\tb")),
    req("host-missing-11", b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n"),
    req("host-missing-10", b"GET / HTTP/1.0\r\nX-A: 1\r\n\r\n"),
    req("host-two", get(b"Host: other.test\r\n")),
    req("host-two-http10", b"GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n"),
    req("host-empty", b"GET / HTTP/1.1\r\nHost:\r\n\r\n"),
    req("host-uppercase-name", b"GET / HTTP/1.1\r\nHOST: o.test\r\n\r\n"),
    # request lines
    req("line-tabs", b"GET\t/\tHTTP/1.1\r\nHost: o.test\r\n\r\n"),
    req("line-double-space", b"GET  / HTTP/1.1\r\nHost: o.test\r\n\r\n"),
    req("line-trailing-space", b"GET / HTTP/1.1 \r\nHost: o.test\r\n\r\n"),
    req("line-leading-space", b" GET / HTTP/1.1\r\nHost: o.test\r\n\r\n"),
    req("line-method-paren", b"GE(T / HTTP/1.1\r\nHost: o.test\r\n\r\n"),
    req("line-method-obs-text", b"G\xc9T / HTTP/1.1\r\nHost: o.test\r\n\r\n"),
    req("line-method-long", b"A" * 200 + b" / HTTP/1.1\r\nHost: o.test\r\n\r\n"),
    req("line-target-space", b"GET /a b HTTP/1.1\r\nHost: o.test\r\n\r\n"),
    req("line-target-obs-text", b"GET /caf\xe9 HTTP/1.1\r\nHost: o.test\r\n\r\n"),
    req("line-target-del", b"GET /\x7f HTTP/1.1\r\nHost: o.test\r\n\r\n"),
    req("line-target-nul", b"GET /\x00 HTTP/1.1\r\nHost: o.test\r\n\r\n"),
    req("line-target-empty", b"GET  HTTP/1.1\r\nHost: o.test\r\n\r\n"),
    req("line-target-fragment", b"GET /a#frag HTTP/1.1\r\nHost: o.test\r\n\r\n"),
    req("line-target-specials", b"GET /!$&'()*+,;=:@[]{}|\\^`\"<>%25 HTTP/1.1\r\nHost: o.test\r\n\r\n"),
    req("line-http20", b"GET / HTTP/2.0\r\n\r\n"),
    req("line-http12", b"GET / HTTP/1.2\r\nHost: o.test\r\n\r\n"),
    req("line-http09-version", b"GET / HTTP/0.9\r\n\r\n"),
    req("line-http09-simple", b"GET /\r\n\r\n"),
    req("line-http09-no-headers", b"GET /\r\n"),
    req("line-http-1", b"GET / HTTP/1\r\nHost: o.test\r\n\r\n"),
    req("line-http-1-10", b"GET / HTTP/1.10\r\nHost: o.test\r\n\r\n"),
    req("line-http-10-0", b"GET / HTTP/10.0\r\nHost: o.test\r\n\r\n"),
    req("line-http-x", b"GET / HTTP/1.x\r\nHost: o.test\r\n\r\n"),
    req("line-lowercase-http", b"GET / http/1.1\r\nHost: o.test\r\n\r\n"),
    req("line-https", b"GET / HTTPS/1.1\r\nHost: o.test\r\n\r\n"),
    req("line-only-method", b"GET\r\nHost: o.test\r\n\r\n"),
    req("line-four-parts", b"GET / HTTP/1.1 extra\r\nHost: o.test\r\n\r\n"),
    req("leading-crlf", b"\r\n" + get()),
    req("leading-lf", b"\n" + get()),
    req("leading-two-crlf", b"\r\n\r\n" + get()),
    req("leading-space-line", b" \r\n" + get()),
    # line endings
    req("bare-lf-everywhere", b"GET / HTTP/1.1\nHost: o.test\nX-A: 1\n\n"),
    req("bare-lf-request-line", b"GET / HTTP/1.1\nHost: o.test\r\n\r\n"),
    req("bare-lf-end", b"GET / HTTP/1.1\r\nHost: o.test\r\n\n"),
    req("lf-cr-lf-end", b"GET / HTTP/1.1\nHost: o.test\n\r\n"),
    req("bare-lf-with-body", b"POST / HTTP/1.1\nHost: o.test\nContent-Length: 2\n\nhi"),
    req("bare-lf-chunked", b"POST / HTTP/1.1\nHost: o\nTransfer-Encoding: chunked\n\n" + BODY),
    req("bare-cr-request-line", b"GET / HTTP/1.1\rHost: o.test\r\n\r\n"),
    req("bare-cr-between-headers", b"GET / HTTP/1.1\r\nHost: o.test\rX-A: 1\r\n\r\n"),
    req("bare-cr-end", b"GET / HTTP/1.1\r\nHost: o.test\r\n\r\r\n"),
    req("cr-cr-lf", b"GET / HTTP/1.1\r\r\nHost: o.test\r\n\r\n"),
    req("header-cr-cr-lf", b"GET / HTTP/1.1\r\nHost: o.test\r\r\n\r\n"),
    # sizes and EOF
    req("head-big-default-limit", get(b"X-Big: " + BIG + b"\r\n")),
    req("head-at-limit", get(b"X: " + b"a" * 18 + b"\r\n"), max_size=len(get(b"X: " + b"a" * 18 + b"\r\n"))),
    req("head-over-limit", get(b"X: " + b"a" * 18 + b"\r\n"),
        max_size=len(get(b"X: " + b"a" * 18 + b"\r\n")) - 1),
    req("head-far-over-limit", get(b"X: " + b"a" * 200 + b"\r\n"), max_size=40),
    req("request-line-over-limit", b"GET /" + b"a" * 200, EOF, max_size=40),
    req("body-over-limit", cl(b"100", b"a" * 100), max_size=40),
    req("pipelined-over-limit", get() + b"GET /" + b"a" * 200, max_size=40),
    req("eof-at-start", b"", response(400, CL0), eom(), CYCLE, DRAIN),
    req("eof-unterminated-head", b"GET / HTTP/1.1\r\nHost: o.test\r\n", EOF, *ANSWER),
    req("eof-unterminated-line", b"GET / HTT", EOF, *ANSWER),
    req("eof-after-request", get(), EOF, *ANSWER),
    req("eof-then-data", get(), EOF, recv(b"more")),
    req("tls-client-hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
    req("binary-junk", bytes(range(256))),
    req("nul-first", b"\x00GET / HTTP/1.1\r\n\r\n"),
    req("proxy-protocol-v1", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n" + get()),
]
REQUESTS += [req(f"framing-good-{i}", head + b"hello") for i, head in enumerate(GOOD_HEADS)]
REQUESTS += [req(f"framing-bad-{p.id}", cast(bytes, p.values[0]) + BODY) for p in BAD_HEADS]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", REQUESTS)
def test_requests(case: Case, mode: str) -> None:
    compare(case.role, feed(case.script, mode), case.max_size)


# -- the client role: responses ----------------------------------------------------------------


def ok(lines: bytes = b"", body: bytes = b"", status: bytes = b"200 OK",
       version: bytes = b"HTTP/1.1") -> bytes:
    return version + b" " + status + b"\r\n" + lines + b"\r\n" + body


def rcl(value: bytes, body: bytes = b"hello") -> bytes:
    return ok(b"Content-Length: " + value + b"\r\n", body)


def rte(value: bytes, body: bytes = BODY) -> bytes:
    return ok(b"Transfer-Encoding: " + value + b"\r\n", body)


def status(line: bytes) -> bytes:
    return line + b"\r\nContent-Length: 0\r\n\r\n"


CONNECT: dict[str, Any] = {"method": "CONNECT", "target": "o.test:443", "headers": (("Host", "o.test:443"),)}
UPGRADE: dict[str, Any] = {"headers": (("Host", "o.test"), ("Upgrade", "websocket"),
                                       ("Connection", "Upgrade"))}
NEXT_GET = (CYCLE, request(), eom())
EXPECT = (("Host", "o.test"), ("Expect", "100-continue"), ("Content-Length", "5"))

RESPONSES = [
    resp("cl", rcl(b"5")),
    resp("cl-keep-alive-reuse", rcl(b"5"), *NEXT_GET, recv(rcl(b"2", b"ok")), *AFTER),
    resp("chunked", rte(b"chunked")),
    resp("chunked-trailers", rte(b"chunked", b"5\r\nhello\r\n0\r\nX-Sum: 1\r\nServer-Timing: a\r\n\r\n")),
    resp("chunked-extensions", rte(b"chunked", b"5;a=b\r\nhello\r\n0;c\r\n\r\n")),
    resp("close-delimited", ok(body=b"hello"), recv(b" world"), EOF, DRAIN, CYCLE),
    resp("close-delimited-empty", ok(), EOF, DRAIN),
    resp("close-delimited-http10", ok(body=b"hello", version=b"HTTP/1.0"), EOF, DRAIN),
    resp("http10-cl", ok(b"Content-Length: 2\r\n", b"ok", version=b"HTTP/1.0")),
    resp("http10-keep-alive", ok(b"Connection: keep-alive\r\nContent-Length: 2\r\n", b"ok",
                                 version=b"HTTP/1.0")),
    resp("http20-version", ok(b"Content-Length: 2\r\n", b"ok", version=b"HTTP/2.0")),
    resp("http09-version", ok(b"Content-Length: 2\r\n", b"ok", version=b"HTTP/0.9")),
    resp("connection-close", ok(b"Connection: close\r\nContent-Length: 2\r\n", b"ok")),
    resp("connection-close-list", ok(b"Connection: Keep-Alive, Close\r\nContent-Length: 2\r\n", b"ok")),
    resp("connection-keep-alive", ok(b"Connection: keep-alive\r\nContent-Length: 2\r\n", b"ok")),
    resp("head-cl", ok(b"Content-Length: 1000\r\n"), method="HEAD"),
    resp("head-chunked", ok(b"Transfer-Encoding: chunked\r\n"), method="HEAD"),
    resp("head-no-length", ok(), method="HEAD"),
    resp("head-then-body-anyway", ok(b"Content-Length: 5\r\n", b"hello"), method="HEAD"),
    resp("head-bad-cl", ok(b"Content-Length: x\r\n"), method="HEAD"),
    resp("204-no-cl", ok(status=b"204 No Content")),
    resp("204-cl", ok(b"Content-Length: 5\r\n", status=b"204 No Content")),
    resp("204-chunked-then-body", ok(b"Transfer-Encoding: chunked\r\n", BODY, status=b"204 No Content")),
    resp("304-no-cl", ok(status=b"304 Not Modified")),
    resp("304-cl", ok(b"Content-Length: 5\r\n", status=b"304 Not Modified")),
    resp("304-then-next-response",
         ok(b"Content-Length: 5\r\n", status=b"304 Not Modified") + rcl(b"2", b"ok"), *NEXT_GET, DRAIN),
    resp("pipelined-responses-early", rcl(b"2", b"ok") + rcl(b"3", b"yes"), CYCLE, DRAIN, request(), eom(),
         DRAIN),
    resp("connect-200", ok(status=b"200 Connection established") + b"\x16\x03\x01", DRAIN, recv(b"tls"),
         DRAIN, EOF, DRAIN, **CONNECT),
    resp("connect-200-cl", ok(b"Content-Length: 5\r\n", status=b"200 OK") + b"hello", DRAIN, **CONNECT),
    resp("connect-200-chunked", ok(b"Transfer-Encoding: chunked\r\n") + BODY, DRAIN, **CONNECT),
    resp("connect-299", ok(status=b"299 Fine"), DRAIN, **CONNECT),
    resp("connect-407", ok(b"Proxy-Authenticate: Basic\r\nContent-Length: 3\r\n", b"no!",
                           status=b"407 Proxy Authentication Required"), *AFTER, **CONNECT),
    resp("connect-403-close-delimited", ok(body=b"denied", status=b"403 Forbidden"), EOF, DRAIN, **CONNECT),
    resp("connect-100-then-200", ok(status=b"100 Continue") + ok(status=b"200 OK") + b"x", DRAIN, **CONNECT),
    resp("connect-101", ok(status=b"101 Switching Protocols"), DRAIN, **CONNECT),
    resp("info-100-then-200", ok(status=b"100 Continue") + rcl(b"2", b"ok")),
    resp("info-102-103-then-200", ok(status=b"102 Processing")
         + ok(b"Link: </s.css>; rel=preload\r\nLink: </t.js>\r\n", status=b"103 Early Hints")
         + rcl(b"0", b"")),
    resp("info-199", ok(status=b"199 Whatever") + rcl(b"0", b"")),
    resp("info-with-cl", ok(b"Content-Length: 5\r\n", status=b"100 Continue") + rcl(b"0", b"")),
    resp("info-connection-close", ok(b"Connection: close\r\n", status=b"100 Continue") + rcl(b"0", b"")),
    resp("info-http10", ok(status=b"100 Continue", version=b"HTTP/1.0") + rcl(b"0", b"")),
    case("expect-100-continue", CLIENT, request(headers=EXPECT), recv(ok(status=b"100 Continue")),
         data(b"hello"), eom(), recv(rcl(b"2", b"ok")), *AFTER),
    case("expect-100-final-first", CLIENT, request(headers=EXPECT), recv(rcl(b"2", b"no")), data(b"hello"),
         eom(), *AFTER),
    case("expect-100-417", CLIENT, request(headers=EXPECT), recv(ok(b"Connection: close\r\n",
                                                                   status=b"417 Expectation Failed")),
         EOF, data(b"hello"), eom(), DRAIN),
    resp("upgrade-101", ok(b"Upgrade: websocket\r\nConnection: Upgrade\r\n", b"\x81\x00",
                           status=b"101 Switching Protocols"), DRAIN, recv(b"\x81\x01a"), DRAIN, EOF, DRAIN,
         **UPGRADE),
    resp("upgrade-refused-200", rcl(b"2", b"ok"), **UPGRADE),
    resp("upgrade-100-then-101", ok(status=b"100 Continue") + ok(status=b"101 Switching Protocols"), DRAIN,
         **UPGRADE),
    resp("101-without-upgrade", ok(b"Upgrade: websocket\r\n", status=b"101 Switching Protocols")),
    resp("101-to-connect-and-upgrade", ok(status=b"101 Switching Protocols"), method="CONNECT",
         target="o.test:443", headers=(("Host", "o"), ("Upgrade", "x"))),
    # framing headers, as on the request side
    resp("cl-then-te", ok(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", BODY)),
    resp("te-then-cl", ok(b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", BODY)),
    resp("cl-duplicate-same", ok(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello")),
    resp("cl-duplicate-different", ok(b"Content-Length: 5\r\nContent-Length: 3\r\n", b"hello")),
    resp("cl-list-same", rcl(b"5,5")),
    resp("cl-list-different", rcl(b"5, 3")),
    resp("cl-plus", rcl(b"+5")),
    resp("cl-minus", rcl(b"-1")),
    resp("cl-hex", rcl(b"0x5")),
    resp("cl-space-inside", rcl(b"5 0")),
    resp("cl-leading-zeros", rcl(b"00005")),
    resp("cl-21-digits", rcl(b"000000000000000000005")),
    resp("cl-huge", rcl(b"99999999999999999999"), EOF),
    resp("cl-empty", rcl(b"")),
    resp("cl-short-then-eof", rcl(b"10"), EOF, DRAIN),
    resp("cl-longer", rcl(b"3")),
    resp("te-chunked-identity", rte(b"chunked, identity")),
    resp("te-identity", rte(b"identity", b"hello"), EOF),
    resp("te-gzip", rte(b"gzip", b"hello"), EOF),
    resp("te-gzip-chunked", rte(b"gzip, chunked")),
    resp("te-chunked-space", rte(b"chunked ")),
    resp("te-CHUNKED", rte(b"CHUNKED")),
    resp("te-xchunked", rte(b"xchunked")),
    resp("te-duplicate", ok(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", BODY)),
    resp("te-obs-fold", ok(b"Transfer-Encoding:\r\n\tchunked\r\n", BODY)),
    resp("te-space-before-colon", ok(b"Transfer-Encoding : chunked\r\n", BODY)),
    resp("te-http10", ok(b"Transfer-Encoding: chunked\r\n", BODY, version=b"HTTP/1.0")),
    resp("chunked-size-0x", rte(b"chunked", b"0x5\r\nhello\r\n0\r\n\r\n")),
    resp("chunked-size-21-digits", rte(b"chunked", b"000000000000000000005\r\nhello\r\n0\r\n\r\n")),
    resp("chunked-size-space", rte(b"chunked", b" 5\r\nhello\r\n0\r\n\r\n")),
    resp("chunked-bad-crlf", rte(b"chunked", b"5\r\nhelloAB0\r\n\r\n")),
    resp("chunked-bare-lf", rte(b"chunked", b"5\nhello\n0\n\n")),
    resp("chunked-eof-mid", rte(b"chunked", b"5\r\nhel"), EOF, DRAIN),
    resp("chunked-trailer-te", rte(b"chunked", b"0\r\nTransfer-Encoding: chunked\r\n\r\n")),
    # status lines
    resp("status-99", status(b"HTTP/1.1 99 Too Low")),
    resp("status-099", status(b"HTTP/1.1 099 Too Low")),
    resp("status-000", status(b"HTTP/1.1 000 Zero")),
    resp("status-1000", status(b"HTTP/1.1 1000 Too High")),
    resp("status-abc", status(b"HTTP/1.1 abc Letters")),
    resp("status-2OO", status(b"HTTP/1.1 2OO Oh")),
    resp("status-600", status(b"HTTP/1.1 600 Odd")),
    resp("status-999", status(b"HTTP/1.1 999 Odd")),
    resp("status-plus", status(b"HTTP/1.1 +20 Plus")),
    resp("status-no-reason", status(b"HTTP/1.1 200")),
    resp("status-no-reason-space", status(b"HTTP/1.1 200 ")),
    resp("status-reason-double-space", status(b"HTTP/1.1 200  OK")),
    resp("status-reason-trailing-space", status(b"HTTP/1.1 200 OK  ")),
    resp("status-reason-tab", status(b"HTTP/1.1 200 O\tK")),
    resp("status-tab-before-reason", status(b"HTTP/1.1 200\tOK")),
    resp("status-reason-soh", status(b"HTTP/1.1 200 O\x01K")),
    resp("status-reason-del", status(b"HTTP/1.1 200 O\x7fK")),
    resp("status-reason-nul", status(b"HTTP/1.1 200 O\x00K")),
    resp("status-reason-vt", status(b"HTTP/1.1 200 O\x0bK")),
    resp("status-reason-bare-cr", status(b"HTTP/1.1 200 O\rK")),
    resp("status-reason-obs-text", status(b"HTTP/1.1 200 Tr\xe8s bien \xff")),
    resp("status-reason-utf8", status(b"HTTP/1.1 200 \xc3\xa7a va")),
    resp("status-double-space-before-code", status(b"HTTP/1.1  200 OK")),
    resp("status-leading-space", status(b" HTTP/1.1 200 OK")),
    resp("status-http2", status(b"HTTP/2 200 OK")),
    resp("status-http12", status(b"HTTP/1.2 200 OK")),
    resp("status-lowercase-http", status(b"http/1.1 200 OK")),
    resp("status-icy", status(b"ICY 200 OK")),
    resp("status-no-version", status(b"200 OK")),
    resp("status-only-version", status(b"HTTP/1.1")),
    resp("status-leading-crlf", b"\r\n" + rcl(b"2", b"ok")),
    resp("status-leading-lf", b"\n" + rcl(b"2", b"ok")),
    # header lines
    resp("bare-lf", b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok"),
    resp("bare-cr", b"HTTP/1.1 200 OK\rContent-Length: 2\r\n\r\nok"),
    resp("obs-fold", ok(b"X-A: 1\r\n 2\r\nContent-Length: 0\r\n")),
    resp("obs-fold-first", ok(b" X-A: 1\r\nContent-Length: 0\r\n")),
    resp("space-before-colon", ok(b"Content-Length : 2\r\n", b"ok")),
    resp("name-invalid", ok(b"X(A): 1\r\nContent-Length: 0\r\n")),
    resp("name-empty", ok(b": 1\r\nContent-Length: 0\r\n")),
    resp("value-nul", ok(b"X-A: \x00\r\nContent-Length: 0\r\n")),
    resp("value-ctl", ok(b"X-A: \x01\x1f\x7f\r\nContent-Length: 0\r\n")),
    resp("value-obs-text", ok(b"X-A: \x80\xfe\xff\r\nContent-Length: 0\r\n")),
    resp("set-cookie-twice", ok(b"Set-Cookie: a=1; Path=/\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n")),
    resp("header-case-kept", ok(b"cOnTeNt-LeNgTh: 2\r\nX-Y: Z\r\n", b"ok")),
    # sizes and EOF
    resp("head-big-default-limit", ok(b"X-Big: " + BIG + b"\r\nContent-Length: 0\r\n")),
    resp("head-over-limit", ok(b"X-Big: " + b"a" * 100 + b"\r\n"), max_size=64),
    resp("head-at-limit", ok(b"X: a\r\n"), max_size=len(ok(b"X: a\r\n"))),
    resp("head-just-over-limit", ok(b"X: a\r\n"), max_size=len(ok(b"X: a\r\n")) - 1),
    resp("eof-before-response", b"", DRAIN, CYCLE),
    resp("eof-unterminated-head", b"HTTP/1.1 200 OK\r\nContent-Le", EOF, DRAIN),
    resp("eof-after-status-line", b"HTTP/1.1 200 OK\r\n", EOF, DRAIN),
    resp("garbage", b"<html>hello</html>\r\n\r\n"),
    resp("tls-alert", b"\x15\x03\x01\x00\x02\x02\x46"),
    resp("no-request-sent", rcl(b"2", b"ok")),
    case("response-before-request", CLIENT, recv(rcl(b"2", b"ok")), request(), eom(), DRAIN, CYCLE),
    case("info-before-request", CLIENT, recv(ok(status=b"100 Continue")), request(), eom()),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", RESPONSES)
def test_responses(case: Case, mode: str) -> None:
    compare(case.role, feed(case.script, mode), case.max_size)


# -- the send side -----------------------------------------------------------------------------

GET = get()
RELAYED = (b"POST http://o.test/up?x=1 HTTP/1.1\r\nHost: o.test\r\nX-MiXeD: Case\r\n"
           b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n")


def echo(kind: type, status_code: int = 200, pick: Callable[[Any], Any] = lambda h: h,
         label: str = "") -> Step:
    """A Response whose headers are those of the last `kind` event received, through `pick`."""
    return send(lambda ctx: h11.Response(status_code=status_code, headers=pick(ctx.last(kind).headers)),
                f"Response {status_code} with the headers of the {kind.__name__} received {label}")


def relay(raw: bytes, pick: Callable[[Any], Any] = lambda h: h, label: str = "") -> Step:
    """A Request built from the head `raw` as parsed by a fresh server-role connection of the same
    implementation (as the proxy relays a client's request to an origin)."""
    def make(ctx: Ctx) -> Any:
        parsed = ctx.parse(SERVER, raw)
        return h11.Request(method=parsed.method, target=parsed.target, headers=pick(parsed.headers))
    return send(make, f"Request relayed from {raw[:40]!r} {label}")


def raw_items(headers: Any) -> Any:
    return headers.raw_items()


def as_list(headers: Any) -> Any:
    return list(headers)


def as_checked(headers: Any) -> Any:
    return checked_headers(list(headers))


def trailers_from_parsed(ctx: Ctx) -> Any:
    return h11.EndOfMessage(headers=ctx.last(h11.EndOfMessage).headers)


SENDING = [
    # server role
    case("s-plain-cl", SERVER, recv(GET), response(200, CL2), data(b"ok"), eom(), CYCLE),
    case("s-reason-and-raw-names", SERVER, recv(GET), response(200, (("x-lower", "a"), ("X-UPPER", "b"),
                                                                     ("Content-Length", "0")), reason="Fine"),
         eom()),
    case("s-cl-split-data", SERVER, recv(GET), response(200, CL2), data(b"o"), data(b""), data(b"k"), eom()),
    case("s-cl-too-much", SERVER, recv(GET), response(200, CL2), data(b"okk"), eom(), CYCLE),
    case("s-cl-too-much-later", SERVER, recv(GET), response(200, CL2), data(b"o"), data(b"kk")),
    case("s-cl-too-little", SERVER, recv(GET), response(200, CL2), data(b"o"), eom(), data(b"k"), eom()),
    case("s-cl-and-trailers", SERVER, recv(GET), response(200, CL0), eom((("X-T", "1"),))),
    case("s-chunked-auto", SERVER, recv(GET), response(200), data(b"hello"), data(b""), data(bytearray(b"x")),
         eom((("X-T", "1"), ("host", "h"))), CYCLE),
    case("s-chunked-explicit", SERVER, recv(GET), response(200, (("Transfer-Encoding", "chunked"),)),
         data(b"a" * 300), eom()),
    case("s-chunked-and-cl", SERVER, recv(GET),
         response(200, (("Content-Length", "5"), ("Transfer-Encoding", "chunked"))), data(b"hello!"), eom()),
    case("s-memoryview-data", SERVER, recv(GET), response(200, CL2), data(memoryview(b"ok")), eom()),
    case("s-bytearray-data-chunked", SERVER, recv(GET), response(200), data(bytearray(b"ok")), eom()),
    case("s-http10-no-length", SERVER, recv(b"GET / HTTP/1.0\r\n\r\n"), response(200), data(b"all"), eom(),
         CYCLE, CLOSE),
    case("s-http10-trailers", SERVER, recv(b"GET / HTTP/1.0\r\n\r\n"), response(200), eom((("X", "1"),))),
    case("s-http10-keep-alive-stripped", SERVER, recv(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
         response(200, (("Connection", "Keep-Alive, Foo"), ("Content-Length", "0"))), eom()),
    case("s-connection-close-request", SERVER, recv(get(b"Connection: close\r\n")),
         response(200, (("Connection", "keep-alive"), ("Content-Length", "0"))), eom(), CYCLE, CLOSE),
    case("s-connection-close-response", SERVER, recv(GET), response(200, (("Connection", "close"),)),
         data(b"x"), eom(), CYCLE, DRAIN, CLOSE, CLOSE),
    case("s-head-cl", SERVER, recv(b"HEAD / HTTP/1.1\r\nHost: o\r\n\r\n"),
         response(200, (("Content-Length", "10"),)), eom(), CYCLE),
    case("s-head-no-length", SERVER, recv(b"HEAD / HTTP/1.1\r\nHost: o\r\n\r\n"), response(200), eom()),
    case("s-head-http10-no-length", SERVER, recv(b"HEAD / HTTP/1.0\r\n\r\n"), response(200), eom()),
    case("s-head-data", SERVER, recv(b"HEAD / HTTP/1.1\r\nHost: o\r\n\r\n"), response(200, CL2), data(b"ok")),
    case("s-204-data", SERVER, recv(GET), response(204), data(b"x"), eom()),
    case("s-204-cl", SERVER, recv(GET), response(204, (("Content-Length", "5"),)), eom(), CYCLE),
    case("s-304-no-length", SERVER, recv(GET), response(304), eom(), CYCLE),
    case("s-http10-version", SERVER, recv(GET), response(200, CL0, http_version="1.0"), eom()),
    case("s-info-http10-version", SERVER, recv(GET), send(
        lambda ctx: h11.InformationalResponse(status_code=100, headers=[], http_version="1.0"), "Info 1.0")),
    case("s-status-int-enum", SERVER, recv(GET), response(__import__("http").HTTPStatus.OK, CL0), eom()),
    case("s-status-string", SERVER, recv(GET), response("200", CL0)),  # type: ignore[arg-type]
    case("s-response-101", SERVER, recv(GET), response(101)),
    case("s-response-1000", SERVER, recv(GET), response(1000)),
    case("s-bad-header-name", SERVER, recv(GET), response(200, (("X A", "1"),))),
    case("s-bad-header-value", SERVER, recv(GET), response(200, (("X-A", "a\r\nb"),))),
    case("s-str-headers", SERVER, recv(GET),
         response(200, (("X-A", "b"), (b"X-B", "c"), ("Content-Length", b"0")), reason="Fine"), eom()),
    case("s-data-after-eom", SERVER, recv(GET), response(200, CL0), eom(), data(b"x"), eom()),
    case("s-eom-twice", SERVER, recv(GET), response(200, CL0), eom(), eom()),
    case("s-response-twice", SERVER, recv(GET), response(200, CL0), response(200, CL0)),
    case("s-eom-before-response", SERVER, recv(GET), eom(), response(200, CL0)),
    case("s-request-as-server", SERVER, recv(GET), request()),
    case("s-response-before-request", SERVER, response(200, CL2), data(b"ok"), eom(), recv(GET), CYCLE),
    case("s-response-before-request-no-length", SERVER, response(200), data(b"ok"), eom(), CLOSE),
    case("s-info-before-request", SERVER, info(100), response(200, CL0)),
    case("s-error-reply", SERVER, recv(b"BAD\r\n\r\n"), response(400, (("Content-Length", "3"),)),
         data(b"bad"), eom(), CYCLE, CLOSE),
    case("s-error-reply-no-length", SERVER, recv(b"GET / HTTP/1.1\r\n\r\n"), response(400), data(b"bad"),
         eom(), CLOSE),
    case("s-error-reply-mid-body", SERVER, recv(chunked(b"zz\r\n")), response(400, CL0), eom(), CYCLE),
    case("s-431-reply", SERVER, recv(b"GET /" + b"a" * 100), response(431, CL0), eom(), max_size=40),
    case("s-info-100", SERVER, recv(post(b"Expect: 100-continue\r\nContent-Length: 2\r\n")), info(100),
         info(100), recv(b"hi"), response(200, CL0), eom(), CYCLE),
    case("s-info-103-headers", SERVER, recv(GET), info(103, (("Link", "</a>"),)), response(200, CL0), eom()),
    case("s-info-101-without-upgrade", SERVER, recv(GET), SWITCH_101, response(200, CL0)),
    case("s-info-101-upgrade", SERVER, recv(WEBSOCKET), SWITCH_101, data(b"x"), CLOSE),
    case("s-info-101-before-body-done", SERVER, recv(post(b"Upgrade: h2c\r\nContent-Length: 5\r\n", b"he")),
         SWITCH_101, recv(b"llo"), SWITCH_101),
    case("s-connect-200", SERVER, recv(b"CONNECT o:443 HTTP/1.1\r\nHost: o\r\n\r\n"), response(200),
         data(b"x"), eom(), CLOSE),
    case("s-connect-200-cl", SERVER, recv(b"CONNECT o:443 HTTP/1.1\r\nHost: o\r\n\r\n"), response(200, CL2)),
    case("s-connect-407", SERVER, recv(b"CONNECT o:443 HTTP/1.1\r\nHost: o\r\n\r\n"), response(407),
         data(b"no"), eom(), CYCLE),
    case("s-connect-before-body-done", SERVER, recv(b"CONNECT o:443 HTTP/1.1\r\nHost: o\r\nContent-Length: 4"
                                                    b"\r\n\r\nab"), response(200), recv(b"cd"), DRAIN),
    case("s-close-idle", SERVER, CLOSE, CLOSE, recv(GET), response(200)),
    case("s-close-send-response", SERVER, recv(GET), CLOSE),
    case("s-close-mid-body", SERVER, recv(GET), response(200, CL2), CLOSE),
    case("s-close-after-done", SERVER, recv(GET), response(200, CL0), eom(), CLOSE, CYCLE, DRAIN),
    case("s-send-failed", SERVER, recv(GET), SEND_FAILED, response(200, CL0), DRAIN, CYCLE),
    case("s-send-failed-idle", SERVER, SEND_FAILED, recv(GET), SEND_FAILED),
    case("s-cycle-too-early", SERVER, recv(GET), CYCLE, response(200, CL0), CYCLE, eom(), CYCLE, CYCLE),
    case("s-cycle-idle", SERVER, CYCLE, recv(GET)),
    case("s-two-cycles", SERVER, recv(GET + NEXT), response(200, CL0), eom(), CYCLE, DRAIN, response(200),
         data(b"x"), eom(), CYCLE, DRAIN, recv(GET), response(200, CL0), eom(), CYCLE),
    case("s-echo-headers", SERVER, recv(post(b"X-MiXeD: Case\r\nContent-Length: 5\r\n", b"hello")),
         echo(h11.Request), data(b"hello"), eom(), CYCLE),
    case("s-echo-list", SERVER, recv(post(b"X-MiXeD: Case\r\nContent-Length: 5\r\n", b"hello")),
         echo(h11.Request, pick=as_list, label="as list"), data(b"hello"), eom(), CYCLE),
    case("s-echo-raw-items", SERVER, recv(post(b"X-MiXeD: Case\r\nContent-Length: 5\r\n", b"hello")),
         echo(h11.Request, pick=raw_items, label="raw items"), data(b"hello"), eom(), CYCLE),
    case("s-echo-checked", SERVER, recv(post(b"X-MiXeD: Case\r\nContent-Length: 5\r\n", b"hello")),
         echo(h11.Request, pick=as_checked, label="checked_headers"), data(b"hello"), eom(), CYCLE),
    case("s-echo-chunked", SERVER, recv(chunked(BODY, b"Connection: close\r\n")), echo(h11.Request),
         data(b"hello"), eom(), CYCLE),
    case("s-echo-chunked-raw-items", SERVER, recv(chunked(BODY)), echo(h11.Request, pick=raw_items),
         data(b"hi"), eom()),
    case("s-echo-to-http10", SERVER, recv(b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
         echo(h11.Request), data(b"hi"), eom()),
    case("s-echo-obs-text", SERVER, recv(get(b"X-A: caf\xe9 \x01\r\nContent-Length: 0\r\n")),
         echo(h11.Request), eom()),
    case("s-echo-obs-fold", SERVER, recv(get(b"X-A: a\r\n b\r\nContent-Length: 0\r\n")),
         echo(h11.Request, pick=raw_items), eom()),
    case("s-trailers-from-parsed", SERVER, recv(chunked(b"2\r\nhi\r\n0\r\nX-Sum: 1\r\nx-other: 2\r\n\r\n")),
         response(200), data(b"hi"), send(trailers_from_parsed, "EndOfMessage with the trailers received"),
         CYCLE),
    case("s-checked-headers-framing", SERVER, recv(GET), send(lambda ctx: h11.Response(
        status_code=200, headers=checked_headers([(b"content-length", b"2"), (b"connection", b"close"),
                                                  (b"x-a", b"b")])), "Response with checked_headers"),
         data(b"ok"), eom(), CYCLE),
    # client role
    case("c-get", CLIENT, request(), eom(), CYCLE),
    case("c-get-absolute", CLIENT, request("GET", "http://o.test/a?b", (("host", "o.test"), ("X-A", "b"))),
         eom()),
    case("c-options-asterisk", CLIENT, request("OPTIONS", "*"), eom()),
    case("c-no-host", CLIENT, request(headers=()), request()),
    case("c-two-hosts", CLIENT, request(headers=HOST * 2)),
    case("c-http10", CLIENT, request(http_version="1.0"), request()),
    case("c-http10-no-host", CLIENT, request(headers=(), http_version="1.0")),
    case("c-bad-method", CLIENT, request("GE T")),
    case("c-bad-target", CLIENT, request("GET", "/a b")),
    case("c-post-cl", CLIENT, request("POST", "/", (*HOST, ("Content-Length", "5"))), data(b"hel"),
         data(b"lo"), eom(), CYCLE),
    case("c-post-cl-too-much", CLIENT, request("POST", "/", (*HOST, ("Content-Length", "5"))),
         data(b"hello!")),
    case("c-post-cl-too-little", CLIENT, request("POST", "/", (*HOST, ("Content-Length", "5"))),
         data(b"hell"), eom()),
    case("c-post-chunked-trailers", CLIENT, request("POST", "/", (*HOST, ("Transfer-Encoding", "chunked"))),
         data(b"hello"), data(b""), eom((("X-Sum", "1"),))),
    case("c-post-no-length", CLIENT, request("POST"), data(b"x")),
    case("c-post-no-length-empty-data", CLIENT, request("POST"), data(b""), eom()),
    case("c-bad-cl", CLIENT, request("POST", "/", (*HOST, ("Content-Length", "-1")))),
    case("c-bad-te", CLIENT, request("POST", "/", (*HOST, ("Transfer-Encoding", "gzip")))),
    case("c-expect-100", CLIENT, request(headers=EXPECT), data(b"hello"), eom()),
    case("c-expect-100-eom", CLIENT, request("POST", "/", (*HOST, ("Expect", "100-continue"))), eom()),
    case("c-connection-close", CLIENT, request(headers=(*HOST, ("Connection", "close"))), eom(), CYCLE,
         CLOSE),
    case("c-connect", CLIENT, request(**CONNECT), eom(), data(b"x")),
    case("c-upgrade", CLIENT, request(**UPGRADE), eom(), CYCLE),
    case("c-second-request", CLIENT, request(), request()),
    case("c-second-request-after-eom", CLIENT, request(), eom(), request()),
    case("c-data-before-request", CLIENT, data(b"x"), request()),
    case("c-eom-before-request", CLIENT, eom()),
    case("c-response-as-client", CLIENT, response(200)),
    case("c-info-as-client", CLIENT, info(100)),
    case("c-close-idle", CLIENT, CLOSE, request()),
    case("c-close-mid-body", CLIENT, request("POST", "/", (*HOST, ("Content-Length", "5"))), CLOSE),
    case("c-close-after-eom", CLIENT, request(), eom(), CLOSE, recv(rcl(b"0", b""))),
    case("c-send-failed", CLIENT, request(), SEND_FAILED, eom(), recv(rcl(b"0", b""))),
    case("c-full-exchanges", CLIENT, request(), eom(), recv(rcl(b"2", b"ok")), CYCLE, request("HEAD"), eom(),
         recv(ok(b"Content-Length: 9\r\n")), CYCLE, request("POST", "/", (*HOST, ("Content-Length", "1"))),
         data(b"x"), eom(), recv(ok(b"Connection: close\r\n", b"bye")), EOF, CYCLE),
    case("c-relay-parsed", CLIENT, relay(RELAYED), data(b"hello"), eom()),
    case("c-relay-list", CLIENT, relay(RELAYED, as_list, "as list"), data(b"hello"), eom()),
    case("c-relay-raw-items", CLIENT, relay(RELAYED, raw_items, "raw items"), data(b"hello"), eom()),
    case("c-relay-checked", CLIENT, relay(RELAYED, as_checked, "checked_headers"), data(b"hello"), eom()),
    case("c-relay-obs-fold", CLIENT, relay(get(b"X-A: 1\r\n 2\r\n"), raw_items), eom()),
    case("c-relay-bare-lf", CLIENT, relay(b"GET / HTTP/1.1\nHost: o\nContent-Length: 1\n\n"), data(b"x"),
         eom()),
    case("c-relay-cl-te", CLIENT, relay(post(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n")),
         data(b"hello!"), eom()),
    case("c-relay-cl-list", CLIENT, relay(post(b"Content-Length: 2, 2\r\n")), data(b"hi"), eom()),
    case("c-relay-expect", CLIENT, relay(post(b"Expect: 100-Continue\r\nContent-Length: 2\r\n"))),
    case("c-relay-connect", CLIENT, relay(b"CONNECT o:443 HTTP/1.1\r\nHost: o\r\n\r\n"), eom()),
    case("c-relay-http10", CLIENT, relay(b"GET / HTTP/1.0\r\nX-A: b\r\n\r\n", raw_items)),
    case("c-relay-response-headers", CLIENT, request(), eom(),
         recv(ok(b"Content-Length: 0\r\nX-From: o\r\n")), CYCLE,
         send(lambda ctx: h11.Request(method="GET", target="/", headers=[
             (b"Host", b"o"), *ctx.last(h11.Response).headers.raw_items()]),
              "Request with the headers of the response received"), eom()),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", SENDING)
def test_sending(case: Case, mode: str) -> None:
    compare(case.role, feed(case.script, mode), case.max_size)


@pytest.mark.parametrize("table", [REQUESTS, RESPONSES, SENDING], ids=["requests", "responses", "sending"])
def test_case_ids_are_unique(table: list[Any]) -> None:
    ids = [param.id for param in table]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


# -- generated heads ---------------------------------------------------------------------------
#
# A head is made of pieces (method, spaces, target, version, line ends, header names, separators,
# values, the head's end, the body), each with valid values and hostile ones. One draw decides
# which piece is damaged, if any, so that a refused head is mostly refused for one reason (the
# fast path of a parser typically misses one check), and "all" mixes damage everywhere. About half
# of the generated heads are accepted by h11.

TOKEN = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
VCHAR = bytes(range(0x21, 0x7F))
HOSTILE = b"\x00\x01\x08\t\x0b\x0c\r\n\x1b\x1f \"(),/:;<=>?@[\\]{}\x7f\x80\x85\xa0\xc3\xa9\xfe\xff"


def chars(alphabet: bytes, max_size: int = 12) -> st.SearchStrategy[bytes]:
    return st.lists(st.sampled_from(alphabet), min_size=1, max_size=max_size).map(bytes)


@dataclass(frozen=True)
class Piece:
    valid: st.SearchStrategy[Any]
    bad: st.SearchStrategy[Any]

    def draw(self, draw: st.DrawFn, damage: str, name: str) -> Any:
        if damage == name:
            return draw(self.bad)
        if damage == "all":
            return draw(st.one_of(self.valid, self.bad))
        return draw(self.valid)


def piece(valid: Sequence[Any], hostile: Sequence[Any], alphabet: bytes = b"") -> Piece:
    """Valid values (repeats weigh: sampled_from keeps them); hostile ones, or random bytes of
    `alphabet`, alone or with hostile bytes."""
    bad = st.sampled_from(hostile)
    if alphabet:
        bad = st.one_of(bad, bad, chars(alphabet), chars(alphabet + HOSTILE))
    return Piece(st.sampled_from(valid), bad)


METHOD = piece([b"GET"] * 6 + [b"HEAD", b"POST", b"PUT", b"OPTIONS", b"CONNECT", b"DELETE", b"PATCH", b"get",
                               b"PROPFIND", b"M-SEARCH"],
               [b"G(T", b"", b"GET\x00", b"G\xc9T", b"GET /", b"\x16\x03\x01"], TOKEN)
TARGET = piece([b"/"] * 6 + [b"/a/b?c=d", b"*", b"http://o.test/x", b"o.test:443", b"[::1]:8080", b"/%00",
                             b"//", b"/a#f", b"/!$&'()*+,;=:@"],
               [b"", b"/\x7f", b"/caf\xc3\xa9", b"/a b", b"/\x00", b"/\t"], VCHAR)
VERSION = piece([b"HTTP/1.1"] * 12 + [b"HTTP/1.0"] * 4 + [b"HTTP/2.0", b"HTTP/1.2", b"HTTP/0.9"],
                [b"HTTP/1", b"HTTP/1.10", b"http/1.1", b"HTTP/1.1 ", b"", b"HTTP/a.b", b"HTTP/2",
                 b"HTTPS/1.1"],
                b"HTTP/1.0")
SPACE = piece([b" "], [b"  ", b"\t", b"", b"\x0b"])
NAME = piece([b"X-A"] * 8 + [b"Accept", b"Cookie", b"User-Agent", b"Connection", b"Expect", b"Upgrade",
                            b"Trailer", b"TE", b"X_A", b"!#$%&'*+-.^_`|~", b"host", b"content-length",
                            b"Transfer-Encoding"],
             [b"Host ", b" Host", b"Content-Length ", b"Transfer-Encoding\t", b"", b"X A", b"X\x00",
              b"X\xe9"],
             TOKEN)
VALUE = piece([b"", b"o.test", b"5", b"0", b"3", b"text/html", b"a=1; b=2", b"*/*", b"005", b"5, 5",
               b"00000000000000000005", b"99999999999999999999", b"chunked", b"Chunked", b"chunked ",
               b"close",
               b"keep-alive", b"Upgrade", b"websocket", b"100-continue", b"a\x01b", b"\x7f", b"\x80\xff",
               b"a\tb", b"a  b", b"\t", b"+5", b"-1", b"5, 3", b"gzip", b"chunked, identity", b"xchunked"],
              [b"0x5", b" 5 ", b"999999999999999999999", b"identity", b"gzip, chunked", b"a\x00b", b"a\rb",
               b"a\x0bb", b"a\x0cb", b"a\nb"],
              VCHAR + b" \t\x80\xff")
SEPARATOR = piece([b": "] * 6 + [b":", b":\t", b":   "], [b" : ", b"\t:", b" :", b""])
LINE_END = piece([b"\r\n"] * 12 + [b"\n"], [b"\r", b"\r\r\n", b"\n ", b"\n\t", b"\n\r", b"\x00\r\n"])
HEAD_END = piece([b"\r\n"] * 6 + [b"\n"], [b"", b"\r", b" \r\n", b"\r\r\n"])
LEAD = piece([b""], [b"\r\n", b"\n", b" ", b"\r\n\r\n"])
SIZE_FORM = piece(["{:x}"] * 6 + ["{:X}", "0{:x}", "{:x} ", "{:x};ext=1", '{:x};a="b"', "{:x}\t",
                                  "{:x};\x00"],
                  ["0x{:x}", " {:x}", "+{:x}", "-{:x}", "0000000000000000000{:x}", "{:x} ;a", "{:x}\r"])
CRLF = piece([b"\r\n"], [b"\n", b"", b"xx", b"\r", b" \r\n"])
SIZE_ERROR = piece([0], [1, -1, 5])
HEADER_PIECES = ("name", "separator", "value", "line_end")
DAMAGE = st.sampled_from(["none"] * 16 + ["lead", "method", "space", "target", "version", "name", "separator",
                                          "value", "line_end", "head_end", "body", "all", "all"])


@st.composite
def header_lines(draw: st.DrawFn, damage: str, host: bool = True) -> bytes:
    """Zero to four header lines (plus Host, usually); a damaged header piece spoils one line."""
    count = draw(st.integers(0, 4))
    spoiled = draw(st.integers(0, count)) if damage in HEADER_PIECES else -1
    lines = []
    for index in range(count + (spoiled >= 0)):
        hurt = damage if index == spoiled or damage == "all" else "none"
        lines.append(NAME.draw(draw, hurt, "name") + SEPARATOR.draw(draw, hurt, "separator")
                     + VALUE.draw(draw, hurt, "value") + LINE_END.draw(draw, hurt, "line_end"))
    if host and draw(st.integers(0, 9)):
        lines.insert(draw(st.integers(0, len(lines))), b"Host: o.test\r\n")
    return b"".join(lines)


@st.composite
def chunked_body(draw: st.DrawFn, damage: str) -> bytes:
    out = []
    hurt = "all" if damage in ("body", "all") else "none"
    for _ in range(draw(st.integers(0, 3))):
        payload = draw(st.binary(min_size=1, max_size=20))
        size = abs(len(payload) + SIZE_ERROR.draw(draw, hurt, ""))
        out.append(SIZE_FORM.draw(draw, hurt, "").format(size).encode() + CRLF.draw(draw, hurt, "") + payload
                   + CRLF.draw(draw, hurt, ""))
    out.append(b"0" + draw(st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b";x\r\n", b"\n"])))
    out.append(draw(header_lines(hurt, host=False)) + HEAD_END.draw(draw, hurt, ""))
    return b"".join(out)


FRAMING = st.sampled_from(["none", "length", "length", "chunked", "chunked", "both", "stray"])


@st.composite
def framed(draw: st.DrawFn, damage: str, head: bytes) -> bytes:
    """`head`'s header lines, a framing header inserted among them (Content-Length, chunked, both,
    or none), its end and a body framed accordingly (less or more, now and then)."""
    kind = draw(FRAMING)
    lines = [line + b"\n" for line in head.split(b"\n")][:-1] if head else []
    extra = []
    if kind in ("chunked", "both"):
        body = draw(chunked_body(damage))
        extra.append(b"Transfer-Encoding: chunked\r\n")
    else:
        body = draw(st.binary(min_size=1, max_size=30)) if kind != "none" else b""
    if kind in ("length", "both"):
        length = max(0, len(body) + SIZE_ERROR.draw(draw, "all" if damage == "body" else "none", ""))
        extra.append(b"Content-Length: %d\r\n" % length)
    for line in extra:
        lines.insert(draw(st.integers(0, len(lines))), line)
    end: bytes = HEAD_END.draw(draw, damage, "head_end")
    return b"".join(lines) + end + body


@st.composite
def request_streams(draw: st.DrawFn) -> bytes:
    damage = draw(DAMAGE)
    line = (METHOD.draw(draw, damage, "method") + SPACE.draw(draw, damage, "space")
            + TARGET.draw(draw, damage, "target") + SPACE.draw(draw, damage, "space")
            + VERSION.draw(draw, damage, "version"))
    stream: bytes = (LEAD.draw(draw, damage, "lead") + line + LINE_END.draw(draw, damage, "line_end")
                     + draw(framed(damage, draw(header_lines(damage)))))
    if draw(st.booleans()):
        stream += NEXT
    return stream


STATUS = piece([b"200"] * 8 + [b"204", b"304", b"100", b"101", b"103", b"199", b"404", b"407", b"600",
                               b"999"],
               [b"099", b"99", b"1000", b"abc", b"000", b"2OO", b" 200", b""], b"0123456789")
REASON = piece([b" OK"] * 8 + [b"", b" ", b"  OK", b" Not Found", b" a\x01b", b" \x80\xff", b" a\tb",
                               b" OK "],
               [b" \x00", b"\tOK", b" a\rb", b" a\x0bb", b"OK"], VCHAR + b" \t")
RESPONSE_DAMAGE = st.sampled_from(["none"] * 16 + ["lead", "version", "space", "status", "reason", "name",
                                                   "separator", "value", "line_end", "head_end", "body",
                                                   "all", "all"])
METHODS_SENT = ["GET", "GET", "HEAD", "POST", "CONNECT", "UPGRADE"]


@st.composite
def response_streams(draw: st.DrawFn) -> bytes:
    damage = draw(RESPONSE_DAMAGE)
    line = (VERSION.draw(draw, damage, "version") + SPACE.draw(draw, damage, "space")
            + STATUS.draw(draw, damage, "status") + REASON.draw(draw, damage, "reason"))
    stream: bytes = (LEAD.draw(draw, damage, "lead") + line + LINE_END.draw(draw, damage, "line_end")
                     + draw(framed(damage, draw(header_lines(damage, host=False)))))
    if draw(st.booleans()):
        stream += rcl(b"2", b"ok")
    return stream


def _cut(stream: bytes, cut: int) -> list[Step]:
    cut %= len(stream) + 1
    return [recv(piece) for piece in (stream[:cut], stream[cut:]) if piece]


GENERATED = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@GENERATED
@given(stream=request_streams(), cut=st.integers(0, 1000), small=st.booleans())
def test_generated_requests(stream: bytes, cut: int, small: bool) -> None:
    compare(SERVER, [*_cut(stream, cut), *ANSWER], max_size=48 if small else DEFAULT_MAX)


@GENERATED
@given(stream=response_streams(), cut=st.integers(0, 1000), method=st.sampled_from(METHODS_SENT),
       small=st.booleans())
def test_generated_responses(stream: bytes, cut: int, method: str, small: bool) -> None:
    if method == "CONNECT":
        first = request(**CONNECT)
    elif method == "UPGRADE":
        first = request(**UPGRADE)
    else:
        first = request(method)
    compare(CLIENT, [first, eom(), *_cut(stream, cut), *AFTER], max_size=48 if small else DEFAULT_MAX)


FRAMING_HEADERS = [(), CL0, CL2, (("Content-Length", "5"),), (("Transfer-Encoding", "chunked"),),
                   (("Content-Length", "2"), ("Transfer-Encoding", "chunked")), (("Connection", "close"),),
                   (("Connection", "keep-alive"),), (("Connection", "close"), ("Content-Length", "2")),
                   (("Upgrade", "websocket"), ("Connection", "Upgrade"))]


@st.composite
def exchanges(draw: st.DrawFn) -> list[Step]:
    """A valid request head, then a response with framing headers drawn from a table, body pieces,
    trailers, and the next cycle."""
    method = draw(st.sampled_from([b"GET", b"HEAD", b"POST", b"CONNECT", b"OPTIONS"]))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"]))
    lines = b"".join(name.encode() + b": " + value.encode() + b"\r\n"
                     for name, value in draw(st.sampled_from(FRAMING_HEADERS)))
    if draw(st.booleans()):
        lines += b"Expect: 100-continue\r\n"
    head = method + b" / " + version + b"\r\nHost: o.test\r\n" + lines + b"\r\n"
    body = b"hello" if b"Content-Length: 5" in lines else BODY if b"chunked" in lines else b""
    steps = [recv(head + body)]
    if draw(st.booleans()):
        steps.append(info(draw(st.sampled_from([100, 101, 103]))))
    steps.append(response(draw(st.sampled_from([200, 200, 204, 304, 404, 407])),
                          draw(st.sampled_from(FRAMING_HEADERS))))
    steps += [data(piece) for piece in draw(st.lists(st.sampled_from([b"", b"ok", b"x" * 7]), max_size=3))]
    steps.append(eom(draw(st.sampled_from([(), (("X-T", "1"),)]))))
    steps += [CYCLE, DRAIN, recv(GET), DRAIN, EOF]
    return steps


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=exchanges())
def test_generated_exchanges(script: list[Step]) -> None:
    compare(SERVER, script)


# -- the harness itself --------------------------------------------------------------------------


class _RawNamesLowered(h11.Connection):
    def next_event(self) -> Any:
        event = super().next_event()
        if type(event) is h11.Request:
            return h11.Request(method=event.method, target=event.target, http_version=event.http_version,
                               headers=list(event.headers))
        return event


class _OtherHint(h11.Connection):
    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            raise h11.RemoteProtocolError(str(exc), error_status_hint=499) from exc


class _DataAsBytes(h11.Connection):
    def next_event(self) -> Any:
        event = super().next_event()
        if type(event) is h11.Data:
            return h11.Data(data=bytes(event.data), chunk_start=event.chunk_start, chunk_end=event.chunk_end)
        return event


class _ChunkEndsLost(h11.Connection):
    def next_event(self) -> Any:
        event = super().next_event()
        if type(event) is h11.Data and event.chunk_end:
            return h11.Data(data=event.data, chunk_start=event.chunk_start)
        return event


class _EofForgotten(h11.Connection):
    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        return (super().trailing_data[0], False)


class _LfOnly(h11.Connection):
    def send(self, event: Any) -> Any:
        out = super().send(event)
        return out.replace(b"\r\n", b"\n") if out else out


class _ContinueIgnored(h11.Connection):
    @property
    def they_are_waiting_for_100_continue(self) -> bool:
        return False


@pytest.mark.parametrize("mutant", [_RawNamesLowered, _OtherHint, _DataAsBytes, _ChunkEndsLost, _EofForgotten,
                                    _LfOnly, _ContinueIgnored])
def test_harness_catches_small_differences(mutant: type) -> None:
    def factory(role: Any, max_size: int) -> Any:
        return mutant(role, max_incomplete_event_size=max_size)
    cases = [param.values[0] for param in REQUESTS + RESPONSES + SENDING]
    assert any(differs(c.role, c.script, c.max_size, factory) for c in cases)


def test_harness_sees_no_difference_between_h11_and_itself() -> None:
    for param in REQUESTS[:20] + RESPONSES[:20]:
        c = param.values[0]
        compare(c.role, feed(c.script, "cuts"), c.max_size, other=reference)


def test_harness_merges_data_by_offsets() -> None:
    whole = run(reference, SERVER, [recv(chunked(b"a\r\n0123456789\r\n0\r\n\r\n"))])
    split = run(reference, SERVER, [recv(chunked(b"a\r\n01234")), recv(b"56789\r\n0\r\n\r\n")])
    assert whole[0].result[1] == ("Data", b"0123456789", "chunk starts", (0,), "ends", (10,), "bytearray")
    assert split[0].result[1][:6] == ("Data", b"01234", "chunk starts", (0,), "ends", ())
    assert split[1].result[0][:6] == ("Data", b"56789", "chunk starts", (), "ends", (5,))
