"""Request and response heads read by llhttp (through httptools), as h11's readers read them.

A head is parsed in C only when it is *plain*: one regex pass with h11's own grammar
(`h11._abnf`) shows a request or status line and header lines that h11 would accept as
they stand, each ended by CRLF, with no line folding. Anything else (bare LF, obs-fold,
a stray byte), and anything llhttp refuses or reads differently (a header count that
differs), goes to h11's own reader for that head, which accepts or refuses it exactly as
h11 does. The event is then checked as h11 checks the events of its readers (Host
fields, the framing headers through h11's `normalize_and_validate`). Nothing lenient in
llhttp is switched on.

`Facts` holds what h11 asks of a head's headers (Connection, Upgrade, Expect,
Transfer-Encoding, Content-Length), found in one pass instead of one scan each.
"""

from __future__ import annotations

import re
from typing import Any

import h11
import httptools
from h11._abnf import header_field, request_line, status_line
from h11._headers import CONTENT_LENGTH_MAX_DIGITS as _MAX_DIGITS
from h11._headers import Headers, normalize_and_validate
from h11._readers import READERS, maybe_read_from_IDLE_client, maybe_read_from_SEND_RESPONSE_server
from h11._receivebuffer import ReceiveBuffer, blank_line_regex
from h11._util import LocalProtocolError

__all__ = ["HEAD_READERS", "Facts", "connection_tokens", "last_facts", "read_request", "read_response"]

CLIENT, SERVER, IDLE = h11.CLIENT, h11.SERVER, h11.IDLE
Request, Response, InformationalResponse = h11.Request, h11.Response, h11.InformationalResponse

# A plain head: h11's grammar for the first line and for each header line, CRLF only.
_HEADER_LINES = rb"(?:" + header_field.encode() + rb"\r\n)*\r\n"
_PLAIN_REQUEST = re.compile(request_line.encode() + rb"\r\n" + _HEADER_LINES)
_PLAIN_RESPONSE = re.compile(status_line.encode() + rb"\r\n" + _HEADER_LINES)
_OWS = b" \t"


class _Collector:
    """httptools callbacks: the header pairs of one head."""

    __slots__ = ("pairs",)

    def __init__(self) -> None:
        self.pairs: list[tuple[bytes, bytes]] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        if value[-1:] in (b" ", b"\t"):
            value = value.rstrip(_OWS)
        self.pairs.append((name, value))


def _plain_pairs(parser_class: Any, head: bytes) -> list[tuple[bytes, bytes]] | None:
    """The header pairs of a plain head as llhttp reads them; None if it refuses or reads a
    different number of header lines than the head has (then h11 decides)."""
    collector = _Collector()
    try:
        parser_class(collector).feed_data(head)
    except httptools.HttpParserUpgrade:
        pass  # an Upgrade or CONNECT head: llhttp stops after it, as wanted
    except httptools.HttpParserError:
        return None
    if len(collector.pairs) != head.count(b"\n") - 2:
        return None
    return collector.pairs


class Facts:
    """What h11 asks of a head's headers, found in one pass (as `get_comma_header` would)."""

    __slots__ = ("close", "content_length", "expect_continue", "transfer_encoding", "upgrade")

    def __init__(self, headers: Headers) -> None:
        self.close = self.upgrade = self.expect_continue = False
        self.transfer_encoding: list[bytes] = []
        self.content_length: list[bytes] = []
        for _, name, value in headers._full_items:
            if name == b"connection":
                self.close = self.close or b"close" in _tokens(value)
            elif name == b"upgrade":
                self.upgrade = self.upgrade or bool(_tokens(value))
            elif name == b"expect":
                self.expect_continue = self.expect_continue or b"100-continue" in _tokens(value)
            elif name == b"transfer-encoding":
                self.transfer_encoding += _tokens(value)
            elif name == b"content-length":
                self.content_length += _tokens(value)


def _plain_head(buf: ReceiveBuffer, plain: re.Pattern[bytes],
                parser_class: Any) -> tuple[re.Match[bytes], list[tuple[bytes, bytes]]] | None:
    """A complete plain head at the start of `buf`, matched and split into header pairs,
    and taken from the buffer; None (buffer untouched) if there is none."""
    data = buf._data
    end = blank_line_regex.search(data, buf._multiple_lines_search)
    if end is None:
        return None
    head = bytes(data[:end.end()])
    match = plain.fullmatch(head)
    if match is None:
        return None
    pairs = _plain_pairs(parser_class, head)
    if pairs is None:
        return None
    buf._extract(len(head))
    return match, pairs


def _headers(pairs: list[tuple[bytes, bytes]]) -> tuple[Headers, Facts, int]:
    """The parsed pairs as h11's `normalize_and_validate(_parsed=True)` keeps them, the
    facts h11 asks of them, and the number of Host fields. One pass, unless a framing
    header is not in its one plain form (then h11's own function decides)."""
    items: list[tuple[bytes, bytes, bytes]] = []
    hosts = 0
    plain = True
    length = chunked = False
    for raw, value in pairs:
        name = raw.lower()
        if name == b"host":
            hosts += 1
        elif name == b"content-length":
            # h11 keeps one plain count as it is; anything else it normalises or refuses.
            plain = plain and not length and value.isdigit() and len(value) <= _MAX_DIGITS
            length = True
        elif name == b"transfer-encoding":
            plain = plain and not chunked and value == b"chunked"
            chunked = True
        items.append((raw, name, value))
    headers = Headers(items) if plain else normalize_and_validate(pairs, _parsed=True)
    return headers, Facts(headers), hosts


def _new(cls: Any, **fields: Any) -> Any:
    """An h11 event with these fields, without h11's checks (made before the call)."""
    event = object.__new__(cls)
    for name, value in fields.items():
        object.__setattr__(event, name, value)
    return event


# The facts of the head a reader returned last: taken by `_process_event` in the same
# synchronous call (nothing can run in between), checked by identity.
last_facts: list[Any] = [None, None]


def read_request(buf: ReceiveBuffer) -> h11.Request | None:
    """h11's (CLIENT, IDLE) reader, with plain heads parsed by llhttp."""
    found = _plain_head(buf, _PLAIN_REQUEST, httptools.HttpRequestParser)
    if found is None:
        return maybe_read_from_IDLE_client(buf)
    match, pairs = found
    headers, facts, hosts = _headers(pairs)
    method, target, version = match.group("method", "target", "http_version")
    # Request.__init__'s checks: method and target already matched h11's grammar above.
    if version == b"1.1" and hosts == 0:
        raise LocalProtocolError("Missing mandatory Host: header")
    if hosts > 1:
        raise LocalProtocolError("Found multiple Host: headers")
    event = _new(Request, method=method, headers=headers, target=target, http_version=version)
    last_facts[:] = event, facts
    return event  # type: ignore[no-any-return]


def read_response(buf: ReceiveBuffer) -> h11.InformationalResponse | h11.Response | None:
    """h11's response reader, with plain heads parsed by llhttp."""
    found = _plain_head(buf, _PLAIN_RESPONSE, httptools.HttpResponseParser)
    if found is None:
        return maybe_read_from_SEND_RESPONSE_server(buf)
    match, pairs = found
    headers, facts, _ = _headers(pairs)
    version, status, reason = match.group("http_version", "status_code", "reason")
    code = int(status)
    if code < 100:  # h11's InformationalResponse refuses it, with its message
        return InformationalResponse(headers=headers, status_code=code, reason=reason or b"",
                                     http_version=version, _parsed=True)
    event = _new(InformationalResponse if code < 200 else Response, headers=headers,
                 http_version=version, reason=reason or b"", status_code=code)
    last_facts[:] = event, facts
    return event  # type: ignore[no-any-return]


HEAD_READERS: dict[Any, Any] = {**READERS, (CLIENT, IDLE): read_request,
                            (SERVER, IDLE): read_response, (SERVER, h11.SEND_RESPONSE): read_response}


def _tokens(value: bytes) -> list[bytes]:
    return [token for part in value.lower().split(b",") if (token := part.strip())]


def connection_tokens(headers: Headers) -> list[bytes]:
    return [token for _, name, value in headers._full_items if name == b"connection"
            for token in _tokens(value)]
