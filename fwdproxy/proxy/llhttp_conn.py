"""An `h11.Connection` whose heads are parsed by llhttp (through httptools), in C.

Strategy: h11 stays the reference. This class has h11.Connection's interface, speaks in
h11's events and states, and reuses h11's tables and pieces wherever they cost little:
the state-transition tables, the body readers (Content-Length, chunked, read-to-close),
the writers and the receive buffer. What it replaces is what costs most per request in
h11 (about 80 µs of a keep-alive exchange on both sides): the pure-Python head parsing,
and the bookkeeping around each event (a dict of states copied per event, five scans of
the headers per head for Connection, Upgrade, Expect, Transfer-Encoding and
Content-Length). Here each head's headers are scanned once.

Heads are read by `llhttp_heads`, which parses plain heads in C and hands every other
head to h11's own reader. `tests/proxy/test_parser_differential.py` feeds one corpus to
this class and to h11.Connection and asserts the same events, states and bytes, or the
same refusal.

Private h11 names are used (pyproject pins h11 below 0.17 for them).
"""

from __future__ import annotations

from typing import Any

import h11
from h11._headers import Headers, get_comma_header, set_comma_header
from h11._receivebuffer import ReceiveBuffer
from h11._state import (
    _SWITCH_CONNECT,
    _SWITCH_UPGRADE,
    EVENT_TRIGGERED_TRANSITIONS,
    MIGHT_SWITCH_PROTOCOL,
    STATE_TRIGGERED_TRANSITIONS,
    SWITCHED_PROTOCOL,
)
from h11._util import LocalProtocolError, RemoteProtocolError
from h11._writers import WRITERS

from fwdproxy.proxy.llhttp_heads import HEAD_READERS, Facts, last_facts

__all__ = ["LLHTTPConnection"]

CLIENT, SERVER = h11.CLIENT, h11.SERVER
IDLE, SEND_BODY, DONE, MUST_CLOSE = h11.IDLE, h11.SEND_BODY, h11.DONE, h11.MUST_CLOSE
ERROR = h11.ERROR
NEED_DATA, PAUSED = h11.NEED_DATA, h11.PAUSED
Request, Response, InformationalResponse = h11.Request, h11.Response, h11.InformationalResponse
Data, EndOfMessage, ConnectionClosed = h11.Data, h11.EndOfMessage, h11.ConnectionClosed


def _body_framing(request_method: bytes | None, event: Any, facts: Facts) -> tuple[str, tuple[int, ...]]:
    """h11's `_body_framing`, from the facts of the event's headers."""
    if type(event) is Response and (
            event.status_code in (204, 304) or request_method == b"HEAD"
            or (request_method == b"CONNECT" and 200 <= event.status_code < 300)):
        return ("content-length", (0,))
    if facts.transfer_encoding:
        assert facts.transfer_encoding == [b"chunked"]
        return ("chunked", ())
    if facts.content_length:
        return ("content-length", (int(facts.content_length[0]),))
    if type(event) is Request:
        return ("content-length", (0,))
    return ("http/1.0", ())


class LLHTTPConnection:
    """h11.Connection's interface and behaviour, with heads parsed in C (see the module)."""

    def __init__(self, our_role: Any, max_incomplete_event_size: int = 16 * 1024) -> None:
        if our_role not in (CLIENT, SERVER):
            raise ValueError(f"expected CLIENT or SERVER, not {our_role!r}")
        self._max_incomplete_event_size = max_incomplete_event_size
        self.our_role = our_role
        self.their_role = SERVER if our_role is CLIENT else CLIENT
        # h11's ConnectionState, as two attributes instead of a dict; our_state and
        # their_state are plain attributes too (read several times per event), set by
        # `_sync` whenever the states may have changed.
        self._client: Any = IDLE
        self._server: Any = IDLE
        self.our_state: Any = IDLE
        self.their_state: Any = IDLE
        self._keep_alive = True
        self._pending: set[Any] = set()
        self._writer: Any = WRITERS.get((our_role, IDLE))
        self._reader: Any = HEAD_READERS.get((self.their_role, IDLE))
        self._receive_buffer = ReceiveBuffer()
        self._receive_buffer_closed = False
        self.their_http_version: bytes | None = None
        self._request_method: bytes | None = None
        self.client_is_waiting_for_100_continue = False

    # -- states ------------------------------------------------------------------------

    @property
    def states(self) -> dict[Any, Any]:
        return {CLIENT: self._client, SERVER: self._server}

    def _sync(self) -> None:
        if self.our_role is CLIENT:
            self.our_state, self.their_state = self._client, self._server
        else:
            self.our_state, self.their_state = self._server, self._client

    @property
    def they_are_waiting_for_100_continue(self) -> bool:
        return self.their_role is CLIENT and self.client_is_waiting_for_100_continue

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        return (bytes(self._receive_buffer), self._receive_buffer_closed)

    def _state(self, role: Any) -> Any:
        return self._client if role is CLIENT else self._server

    def _set_state(self, role: Any, state: Any) -> None:
        if role is CLIENT:
            self._client = state
        else:
            self._server = state

    def _fire_state_triggered_transitions(self) -> None:
        while True:
            start = (self._client, self._server)
            if self._pending:
                if self._client is DONE:
                    self._client = MIGHT_SWITCH_PROTOCOL
            elif self._client is MIGHT_SWITCH_PROTOCOL:
                self._client = DONE
            if not self._keep_alive:
                if self._client is DONE:
                    self._client = MUST_CLOSE
                if self._server is DONE:
                    self._server = MUST_CLOSE
            changes = STATE_TRIGGERED_TRANSITIONS.get((self._client, self._server))
            if changes:
                self._client = changes.get(CLIENT, self._client)
                self._server = changes.get(SERVER, self._server)
            if (self._client, self._server) == start:
                return

    def _fire_event_triggered_transitions(self, role: Any, event_type: Any) -> None:
        state = self._state(role)
        try:
            new_state = EVENT_TRIGGERED_TRANSITIONS[role][state][event_type]
        except KeyError:
            raise LocalProtocolError(
                f"can't handle event type {event_type.__name__} when role={role} and state={state}"
            ) from None
        self._set_state(role, new_state)

    def _process_error(self, role: Any) -> None:
        old = (self._client, self._server)
        self._set_state(role, ERROR)
        self._fire_state_triggered_transitions()
        self._respond_to_state_changes(old, None, None)

    def start_next_cycle(self) -> None:
        """As h11: both sides DONE → both IDLE, else LocalProtocolError."""
        if self._client is not DONE or self._server is not DONE:
            raise LocalProtocolError(f"not in a reusable state. self.states={self.states}")
        assert self._keep_alive
        assert not self._pending
        self._client = self._server = self.our_state = self.their_state = IDLE
        self._request_method = None
        assert not self.client_is_waiting_for_100_continue
        self._writer = WRITERS.get((self.our_role, IDLE))
        self._reader = HEAD_READERS.get((self.their_role, IDLE))

    # -- events ------------------------------------------------------------------------

    def _process_event(self, role: Any, event: Any, facts: Facts | None = None) -> None:
        kind = type(event)
        if kind is Data and self._state(role) is SEND_BODY:
            # SEND_BODY -> SEND_BODY: the states stay a fixed point of the transitions.
            if role is CLIENT:
                self.client_is_waiting_for_100_continue = False
            return
        old = (self._client, self._server)
        if facts is None and (kind is Request or kind is Response):
            facts = last_facts[1] if last_facts[0] is event else Facts.of(event.headers)
        if role is CLIENT and kind is Request:
            assert facts is not None
            if event.method == b"CONNECT":
                self._pending.add(_SWITCH_CONNECT)
                self._fire_state_triggered_transitions()
            if facts.upgrade:
                self._pending.add(_SWITCH_UPGRADE)
                self._fire_state_triggered_transitions()
        switch: Any = None
        if role is SERVER:
            if kind is InformationalResponse and event.status_code == 101:
                switch = _SWITCH_UPGRADE
            elif kind is Response and _SWITCH_CONNECT in self._pending and 200 <= event.status_code < 300:
                switch = _SWITCH_CONNECT
        # h11's ConnectionState.process_event
        event_type: Any = kind
        if switch is not None:
            if switch not in self._pending:
                raise LocalProtocolError("Received server _SWITCH_UPGRADE event without a pending proposal")
            event_type = (kind, switch)
        elif kind is Response:
            self._pending = set()
        self._fire_event_triggered_transitions(role, event_type)
        if event_type is Request:
            self._fire_event_triggered_transitions(SERVER, (Request, CLIENT))
        self._fire_state_triggered_transitions()

        if kind is Request:
            self._request_method = event.method
        if role is self.their_role and (kind is Request or kind is Response or kind is InformationalResponse):
            self.their_http_version = event.http_version
        if facts is not None and (facts.close or event.http_version < b"1.1"):
            self._keep_alive = False
            self._fire_state_triggered_transitions()
        if kind is Request and event.http_version >= b"1.1" and facts.expect_continue:  # type: ignore[union-attr]
            self.client_is_waiting_for_100_continue = True
        if kind is InformationalResponse or kind is Response:
            self.client_is_waiting_for_100_continue = False
        if role is CLIENT and (kind is Data or kind is EndOfMessage):
            self.client_is_waiting_for_100_continue = False
        self._respond_to_state_changes(old, event, facts)

    def _io_object(self, role: Any, event: Any, facts: Facts | None, io_dict: Any) -> Any:
        state = self._state(role)
        if state is SEND_BODY:
            if facts is None:
                facts = Facts.of(event.headers)
            framing, args = _body_framing(self._request_method, event, facts)
            return io_dict[SEND_BODY][framing](*args)
        return io_dict.get((role, state))

    def _respond_to_state_changes(self, old: tuple[Any, Any], event: Any, facts: Facts | None) -> None:
        self._sync()
        if self.our_state is not old[self.our_role is SERVER]:
            self._writer = self._io_object(self.our_role, event, facts, WRITERS)
        if self.their_state is not old[self.their_role is SERVER]:
            self._reader = self._io_object(self.their_role, event, facts, HEAD_READERS)

    # -- receiving ---------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Add received bytes (b"" for end of file), as h11."""
        if data:
            if self._receive_buffer_closed:
                raise RuntimeError("received close, then received more data?")
            self._receive_buffer += data
        else:
            self._receive_buffer_closed = True

    def _extract_next_receive_event(self) -> Any:
        state = self.their_state
        if state is DONE and self._receive_buffer:
            return PAUSED
        if state is MIGHT_SWITCH_PROTOCOL or state is SWITCHED_PROTOCOL:
            return PAUSED
        assert self._reader is not None
        event = self._reader(self._receive_buffer)
        if event is None and not self._receive_buffer and self._receive_buffer_closed:
            read_eof = getattr(self._reader, "read_eof", None)
            event = ConnectionClosed() if read_eof is None else read_eof()
        if event is None:
            event = NEED_DATA
        return event

    def next_event(self) -> Any:
        """The next event, NEED_DATA or PAUSED, as h11 (RemoteProtocolError when refused)."""
        if self.their_state is ERROR:
            raise RemoteProtocolError("Can't receive data when peer state is ERROR")
        try:
            event = self._extract_next_receive_event()
            if event is NEED_DATA:
                if len(self._receive_buffer) > self._max_incomplete_event_size:
                    raise RemoteProtocolError("Receive buffer too long", error_status_hint=431)
                if self._receive_buffer_closed:
                    raise RemoteProtocolError("peer unexpectedly closed connection")
            elif event is not PAUSED:
                self._process_event(self.their_role, event)
            return event
        except BaseException as exc:
            self._process_error(self.their_role)
            if isinstance(exc, LocalProtocolError):
                exc._reraise_as_remote_protocol_error()
            raise

    # -- sending -----------------------------------------------------------------------

    def send(self, event: Any) -> bytes | None:
        """The bytes for `event` (None for ConnectionClosed), as h11 (LocalProtocolError)."""
        data_list = self.send_with_data_passthrough(event)
        return None if data_list is None else b"".join(data_list)

    def send_with_data_passthrough(self, event: Any) -> list[bytes] | None:
        if self.our_state is ERROR:
            raise LocalProtocolError("Can't send data when our state is ERROR")
        try:
            facts = None
            if type(event) is Response:
                event, facts = self._clean_up_response_headers_for_sending(event)
            writer = self._writer
            self._process_event(self.our_role, event, facts)
            if type(event) is ConnectionClosed:
                return None
            assert writer is not None
            data_list: list[bytes] = []
            writer(event, data_list.append)
            return data_list
        except BaseException:
            self._process_error(self.our_role)
            raise

    def send_failed(self) -> None:
        """The bytes of the last send did not go out: our state becomes ERROR."""
        self._process_error(self.our_role)

    def _clean_up_response_headers_for_sending(self, response: Any) -> tuple[Any, Facts | None]:
        headers = response.headers
        facts = Facts.of(headers)
        method = self._request_method
        framing, _ = _body_framing(b"GET" if method == b"HEAD" else method, response, facts)
        need_close = False
        if framing == "content-length":
            if self._keep_alive:
                return response, facts  # h11 would rebuild the same response
        else:
            headers = _replaced(headers, b"content-length", [])
            if self.their_http_version is None or self.their_http_version < b"1.1":
                headers = _replaced(headers, b"transfer-encoding", [])
                if self._request_method != b"HEAD":
                    need_close = True
            else:
                headers = _replaced(headers, b"transfer-encoding", [b"chunked"])
        if not self._keep_alive or need_close:
            connection = set(get_comma_header(headers, b"connection"))
            connection.discard(b"keep-alive")
            connection.add(b"close")
            headers = _replaced(headers, b"connection", sorted(connection))
        return Response(headers=headers, status_code=response.status_code,
                        http_version=response.http_version, reason=response.reason), None


def _replaced(headers: Headers, name: bytes, values: list[bytes]) -> Headers:
    """h11's `set_comma_header`, without validating again the fields that stay.

    h11 rebuilds the whole list through `normalize_and_validate`; the fields kept were
    validated when their event was made (or parsed), so only the new ones are checked,
    by h11's own function.
    """
    kept = [item for item in headers._full_items if item[1] != name]
    if not values:
        return Headers(kept)
    added = set_comma_header(Headers([]), name, values)._full_items
    return Headers(kept + added)
