"""One HTTP/1.1 connection (h11's, or h11's with heads parsed by llhttp) bound to one trio
stream, in either role.

Strategy: h11 does the HTTP/1.1 state machine, or `llhttp_conn.LLHTTPConnection`, which
has h11.Connection's interface and behaviour with heads parsed in C (`http_parser` in the
configuration: `connection_class` below picks one); this class feeds it bytes, sends its
output, counts bytes, and translates every foreign exception at this edge: h11 protocol
errors become `BadRequest`/`HeadTooLarge` (client side) or `BadGateway` (origin side),
transport errors become `ConnectionLost`.

On the client side, request framing gets a stricter check than h11 makes, because
whatever a proxy accepts it passes on (`framing`): each head's raw bytes are checked once,
as they arrive, before h11 parses them, and so are the raw bytes of a chunked body. A
chunked body's first chunk-size line can be awaited (`wait_for_body_start`) before the
head is passed on, so that an origin never sees a request whose body is refused at once.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import h11
import trio

# h11's own header container. Private, but an event built on one skips h11's re-validation
# of every header (see `checked_headers`); pyproject pins h11 below 0.17 for this.
from h11._headers import Headers as _H11Headers

from fwdproxy.errors import BadGateway, BadRequest, ConnectionLost, HeadTooLarge
from fwdproxy.proxy import fdio
from fwdproxy.proxy.fdio import RECEIVE_SIZE
from fwdproxy.proxy.framing import ChunkedBody, check_request_head

__all__ = ["HTTP_PARSERS", "RECEIVE_SIZE", "H11Stream", "checked_headers", "connection_class"]

HTTP_PARSERS = ("auto", "h11", "httptools")
# `auto` is httptools when it can be imported; this variable, when set, overrides `auto`
# (scripts/test runs the suite under each parser this way).
PARSER_VARIABLE = "FWDPROXY_HTTP_PARSER"

_HEAD_END = re.compile(rb"\n\r?\n")
_TRANSPORT_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


@contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Raise trio.TooSlowError if the block takes longer than `seconds` (None: no limit)."""
    if seconds is None:
        yield
        return
    with trio.CancelScope(deadline=trio.current_time() + seconds) as scope:
        yield
    if scope.cancelled_caught:
        raise trio.TooSlowError


def checked_headers(headers: list[tuple[bytes, bytes]]) -> Any:
    """`headers` in the form h11 keeps them, so that the event built on them is not checked
    again: h11 validates each header of each event handed to it, which costs more than the
    rest of relaying a response head.

    Only for lower-case names whose values h11 parsed from a peer, or that were checked
    once when the proxy started (Via) or built from a canonical target (Host).
    """
    return _H11Headers([(name, name, value) for name, value in headers])


@functools.cache
def connection_class(http_parser: str = "auto") -> Any:
    """The class of connection for `http_parser` (one of HTTP_PARSERS).

    Raises:
        ValueError: an unknown name, or httptools asked for and not installed.
    """
    if http_parser == "auto":
        http_parser = os.environ.get(PARSER_VARIABLE) or "auto"
    if http_parser not in HTTP_PARSERS:
        raise ValueError(f"http_parser {http_parser!r} is not one of {', '.join(HTTP_PARSERS)}")
    if http_parser == "h11":
        return h11.Connection
    try:
        from fwdproxy.proxy.llhttp_conn import LLHTTPConnection
    except ImportError as exc:
        if http_parser == "httptools":
            raise ValueError(f"http_parser httptools: {exc}") from None
        return h11.Connection
    return LLHTTPConnection


class H11Stream:
    """An h11 connection over a trio stream.

    Args:
        stream: the transport.
        role: ``h11.SERVER`` facing a client, ``h11.CLIENT`` facing an origin.
        max_head_bytes: the largest head accepted (431 on the client side beyond it).
        max_body_bytes: the largest request body accepted (client side; 413 beyond it).
        http_parser: which connection class parses and writes (see `connection_class`).
    """

    def __init__(self, stream: trio.abc.Stream, role: Any, *, max_head_bytes: int,
                 max_body_bytes: int | None = None, http_parser: str = "auto") -> None:
        self.stream = stream
        # Plain sockets are read and written on the descriptor (fdio); other streams
        # (tests' memory streams) through their own methods.
        self._socket = stream.socket if isinstance(stream, trio.SocketStream) else None
        self.role = role
        # Typed as h11's: LLHTTPConnection has its interface and behaviour.
        self.conn: h11.Connection = connection_class(http_parser)(
            role, max_incomplete_event_size=max_head_bytes)
        self.max_head_bytes = max_head_bytes
        self.max_body_bytes = max_body_bytes
        self.bytes_received = 0
        self.bytes_sent = 0
        self._strict = role is h11.SERVER
        self._head = bytearray()  # raw bytes of the request head being received
        self._head_ok = False
        self._scan_from = 0  # where the search for the head's end resumes
        self._chunks: ChunkedBody | None = None  # the chunked request body being checked

    async def next_event(self, before_receive: Callable[[], Awaitable[None]] | None = None,
                         silence: float | None = None) -> Any:
        """The next h11 event, reading from the stream as needed.

        Args:
            before_receive: awaited before each wait for more bytes (a relay flushes what
                it holds for the other side there, so nothing sits while we wait).
            silence: if given, the longest wait for more bytes, in seconds. (Only an actual
                wait gets a cancel scope: the events of a small message usually arrive
                in one read, and a scope per event is a large share of a request's cost.)

        Raises:
            trio.TooSlowError: nothing arrived within `silence`.
            BadRequest, HeadTooLarge: a malformed request (client side).
            BadGateway: a malformed response (origin side).
            ConnectionLost: the transport failed.
        """
        while True:
            if self._strict and not self._head_ok and self.conn.their_state is h11.IDLE:
                self._check_buffered_head()
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise self._protocol_error(exc) from exc
            if event is h11.NEED_DATA:
                if before_receive is not None:
                    await before_receive()
                await self._receive(silence)
                continue
            if type(event) is h11.Request:
                self._reset_head(b"")
            return event

    async def _receive(self, silence: float | None) -> bool:
        """Read once and hand the bytes to h11; False at EOF."""
        data: bytes | bytearray | None
        try:
            if self._socket is None:
                with _time_limit(silence):
                    data = await self.stream.receive_some(RECEIVE_SIZE)
            else:
                waited = False
                while (data := fdio.read_some(fdio.live_fd(self._socket))) is None:
                    with _time_limit(silence):
                        await trio.lowlevel.wait_readable(self._socket)
                    waited = True
                if not waited:
                    await trio.lowlevel.cancel_shielded_checkpoint()  # as trio's own calls
        except _TRANSPORT_ERRORS as exc:
            raise ConnectionLost(f"receive failed: {exc}") from exc
        assert data is not None
        self.bytes_received += len(data)
        if not data:
            self.conn.receive_data(b"")  # EOF
            return False
        self.prime(data)
        return True

    def prime(self, data: bytes | bytearray) -> None:
        """Hand h11 bytes that were read before it (after a PROXY protocol header)."""
        if not data:
            return
        if self._strict:
            if self.conn.their_state is h11.IDLE:
                self._head += data
            elif self._chunks is not None:
                self._chunks.feed(data)  # raises before h11 sees a byte it refuses
        self.conn.receive_data(bytes(data))

    def _check_buffered_head(self) -> None:
        match = _HEAD_END.search(self._head, self._scan_from)
        if match is None:
            self._scan_from = max(0, len(self._head) - 2)
            if len(self._head) > self.max_head_bytes:
                raise HeadTooLarge(f"the request head exceeds {self.max_head_bytes} bytes")
            return
        if match.end() > self.max_head_bytes:
            raise HeadTooLarge(f"the request head exceeds {self.max_head_bytes} bytes")
        end = match.end()
        framing = check_request_head(bytes(self._head[:end]), max_body=self.max_body_bytes)
        self._head_ok = True
        if framing.chunked:
            self._chunks = ChunkedBody(max_line=self.max_head_bytes, max_body=self.max_body_bytes)
            self._chunks.feed(self._head[end:])  # the body's bytes read with the head

    def _protocol_error(self, exc: h11.RemoteProtocolError) -> Exception:
        if self.role is h11.SERVER:
            if exc.error_status_hint == 431:
                return HeadTooLarge(f"the request head exceeds {self.max_head_bytes} bytes")
            return BadRequest(f"malformed request: {exc}")
        return BadGateway(f"the origin sent an invalid HTTP response: {exc}")

    async def send(self, event: Any) -> None:
        """Serialise and send one h11 event.

        Raises:
            ConnectionLost: the transport failed (h11 is told with send_failed()).
        """
        data = self.conn.send(event)
        if data:
            await self.send_raw(data)

    async def send_raw(self, data: bytes | bytearray | memoryview,
                       silence: float | None = None) -> None:
        """Send bytes that bypass h11 (after a protocol switch, or queued h11 output).

        Args:
            silence: if given, the longest wait for the peer to take more bytes, in
                seconds (as in `next_event`, only an actual wait gets a cancel scope).

        Raises:
            trio.TooSlowError: the peer took nothing for `silence` seconds.
            ConnectionLost: the transport failed (h11 is told with send_failed()).
        """
        try:
            if self._socket is None:
                with _time_limit(silence):
                    await self.stream.send_all(data)
            else:
                view, waited = memoryview(data), False
                while view := view[fdio.write_some(fdio.live_fd(self._socket), view):]:
                    with _time_limit(silence):
                        await trio.lowlevel.wait_writable(self._socket)
                    waited = True
                if not waited:
                    await trio.lowlevel.cancel_shielded_checkpoint()  # as trio's own calls
        except _TRANSPORT_ERRORS as exc:
            self.conn.send_failed()
            raise ConnectionLost(f"send failed: {exc}") from exc
        self.bytes_sent += len(data)

    @property
    def body_start_checked(self) -> bool:
        """False while a chunked request body's first chunk-size line has not arrived."""
        return self._chunks is None or self._chunks.started or self._chunks.done

    async def wait_for_body_start(self) -> None:
        """Read until a chunked request body's first chunk-size line has arrived and passed
        the check, leaving every event for `next_event` (h11 holds the bytes meanwhile).

        Raises:
            BadRequest, BodyTooLarge: the line was refused.
            ConnectionLost: the client closed or failed first.
        """
        while not self.body_start_checked:
            if not await self._receive(None):
                raise ConnectionLost("the client closed before sending its request body")

    def start_next_cycle(self) -> None:
        """Begin the next request/response cycle (both sides must be DONE)."""
        self.conn.start_next_cycle()
        self._chunks = None
        if self._strict:
            # Pipelined bytes h11 already holds are the start of the next head.
            self._reset_head(self.conn.trailing_data[0])

    def _reset_head(self, data: bytes) -> None:
        self._head = bytearray(data)
        self._head_ok = False
        self._scan_from = 0

    @property
    def reusable(self) -> bool:
        """True when both sides finished the message cleanly and may start another."""
        return self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE

    @property
    def fresh(self) -> bool:
        """True between requests with nothing of the next one read yet (client side)."""
        conn = self.conn
        return (conn.their_state is h11.IDLE and conn.our_state is h11.IDLE and not self._head
                and not conn.trailing_data[0])

    @property
    def can_respond(self) -> bool:
        """True when a response head may still be sent (client side)."""
        return self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE)
