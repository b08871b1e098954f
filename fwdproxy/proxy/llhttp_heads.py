"""Request and response heads read by llhttp (through httptools), as h11's readers read them.

A head is parsed in C only when it is *plain*: one regex pass (h11's grammar for the
request or status line, `h11._abnf`, and an equivalent of its header-line grammar) shows
a head that h11 would accept as it stands, each line ended by CRLF, with no line folding.
Anything else (bare LF, obs-fold, a stray byte), and anything llhttp refuses or reads
differently (a header count that differs), goes to h11's own reader for that head, which
accepts or refuses it exactly as h11 does. The event is then checked as h11 checks the
events of its readers (Host fields, the framing headers through h11's
`normalize_and_validate`). Nothing lenient in llhttp is switched on.

`Facts` holds what h11 asks of a head's headers (Connection, Upgrade, Expect,
Transfer-Encoding, Content-Length), found in one pass instead of one scan each.
"""

from __future__ import annotations

import re
from typing import Any

import h11
import httptools
from h11._abnf import request_line, status_line
from h11._headers import CONTENT_LENGTH_MAX_DIGITS as _MAX_DIGITS
from h11._headers import Headers, normalize_and_validate
from h11._readers import READERS, maybe_read_from_IDLE_client, maybe_read_from_SEND_RESPONSE_server
from h11._receivebuffer import ReceiveBuffer, blank_line_regex
from h11._util import LocalProtocolError

from fwdproxy.proxy.headers import value_tokens

__all__ = [
    "HEAD_READERS", "PLAIN_HEADER_LINE", "PLAIN_REQUEST", "PLAIN_RESPONSE", "Facts", "last_facts",
    "plain_fields", "read_request", "read_response",
]

CLIENT, SERVER, IDLE = h11.CLIENT, h11.SERVER, h11.IDLE
Request, Response, InformationalResponse = h11.Request, h11.Response, h11.InformationalResponse

# A plain head: h11's grammar for the first line and for each header line, CRLF only.
# h11's header_field is `token ":" OWS [field-content] OWS`, where field-content runs from
# a visible byte (or obs-text) to a visible byte over spaces and tabs: the same set of
# lines as `token ":"` followed by any run of bytes other than NUL, CR, LF, VT and FF
# (h11's `[^\x00\s]` with space and tab added back), which a regex matches without
# backtracking or groups; tests/proxy/test_llhttp_heads.py checks the two agree.
_HEADER_LINE = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]++:[^\x00\r\n\x0b\x0c]*+\r\n"
_HEADER_LINES = rb"(?:" + _HEADER_LINE + rb")*+\r\n"
PLAIN_REQUEST = re.compile(request_line.encode() + rb"\r\n" + _HEADER_LINES)
PLAIN_RESPONSE = re.compile(status_line.encode() + rb"\r\n" + _HEADER_LINES)
PLAIN_HEADER_LINE = re.compile(_HEADER_LINE)
_OWS = b" \t"


# The fields that h11 looks at once a head is parsed: framing, keep-alive, switching,
# 100-continue, and Host (counted).
_NOTED = frozenset({b"host", b"connection", b"upgrade", b"expect", b"transfer-encoding",
                    b"content-length"})


class _Collector:
    """httptools callbacks: the fields of one head as h11 keeps them (raw name, lower-case
    name, value without trailing whitespace), and apart the ones h11 looks at."""

    __slots__ = ("items", "noted")

    def __init__(self) -> None:
        self.items: list[tuple[bytes, bytes, bytes]] = []
        self.noted: list[tuple[bytes, bytes, bytes]] = []

    def on_header(self, raw: bytes, value: bytes) -> None:
        if value[-1:] in (b" ", b"\t"):
            value = value.rstrip(_OWS)
        item = (raw, raw.lower(), value)
        self.items.append(item)
        if item[1] in _NOTED:
            self.noted.append(item)


def plain_fields(parser_class: Any, head: bytes) -> _Collector | None:
    """The fields of a plain head as llhttp reads them; None if it refuses or reads a
    different number of header lines than the head has (then h11 decides)."""
    collector = _Collector()
    try:
        parser_class(collector).feed_data(head)
    except httptools.HttpParserUpgrade:
        pass  # an Upgrade or CONNECT head: llhttp stops after it, as wanted
    except httptools.HttpParserError:
        return None
    if len(collector.items) != head.count(b"\n") - 2:
        return None
    return collector


class Facts:
    """What h11 asks of a head's headers, found in one pass (as `get_comma_header` would).

    Args:
        items: the fields as h11's Headers keeps them, (raw name, name, value); only the
            ones named in `_NOTED` matter.
    """

    __slots__ = ("close", "content_length", "expect_continue", "transfer_encoding", "upgrade")

    def __init__(self, items: list[tuple[bytes, bytes, bytes]]) -> None:
        self.close = self.upgrade = self.expect_continue = False
        self.transfer_encoding: list[bytes] = []
        self.content_length: list[bytes] = []
        for _, name, value in items:
            if name == b"connection":
                self.close = self.close or b"close" in value_tokens(value)
            elif name == b"upgrade":
                self.upgrade = self.upgrade or bool(value_tokens(value))
            elif name == b"expect":
                self.expect_continue = self.expect_continue or b"100-continue" in value_tokens(value)
            elif name == b"transfer-encoding":
                self.transfer_encoding += value_tokens(value)
            elif name == b"content-length":
                self.content_length += value_tokens(value)

    @classmethod
    def of(cls, headers: Headers) -> Facts:
        return cls(headers._full_items)


def _plain_head(buf: ReceiveBuffer, plain: re.Pattern[bytes],
                parser_class: Any) -> tuple[re.Match[bytes], _Collector] | None:
    """A complete plain head at the start of `buf`, matched and split into fields, and
    taken from the buffer; None (buffer untouched) if there is none."""
    data = buf._data
    end = blank_line_regex.search(data, buf._multiple_lines_search)
    if end is None:
        return None
    head = bytes(data[:end.end()])
    match = plain.fullmatch(head)
    if match is None:
        return None
    fields = plain_fields(parser_class, head)
    if fields is None:
        return None
    buf._extract(len(head))
    return match, fields


def _headers(fields: _Collector) -> tuple[Headers, Facts, int]:
    """The fields as h11's `normalize_and_validate(_parsed=True)` keeps them, the facts h11
    asks of them, and the number of Host fields. The fields are kept as they are unless a
    framing header is not in its one plain form (then h11's own function decides)."""
    hosts = 0
    plain = True
    length = chunked = False
    for _, name, value in fields.noted:
        if name == b"host":
            hosts += 1
        elif name == b"content-length":
            # h11 keeps one plain count as it is; anything else it normalises or refuses.
            plain = plain and not length and value.isdigit() and len(value) <= _MAX_DIGITS
            length = True
        elif name == b"transfer-encoding":
            plain = plain and not chunked and value == b"chunked"
            chunked = True
    if plain:
        return Headers(fields.items), Facts(fields.noted), hosts
    headers = normalize_and_validate([(raw, value) for raw, _, value in fields.items], _parsed=True)
    return headers, Facts.of(headers), hosts


# h11 events made without h11's checks (made before the call, as h11's own would be).
_set = object.__setattr__


def _new_request(method: bytes, headers: Headers, target: bytes, version: bytes) -> Any:
    event = object.__new__(Request)
    _set(event, "method", method)
    _set(event, "headers", headers)
    _set(event, "target", target)
    _set(event, "http_version", version)
    return event


def _new_response(cls: Any, headers: Headers, version: bytes, reason: bytes, status: int) -> Any:
    event = object.__new__(cls)
    _set(event, "headers", headers)
    _set(event, "http_version", version)
    _set(event, "reason", reason)
    _set(event, "status_code", status)
    return event


# The facts of the head a reader returned last: taken by `_process_event` in the same
# synchronous call (nothing can run in between), checked by identity.
last_facts: list[Any] = [None, None]


def read_request(buf: ReceiveBuffer) -> h11.Request | None:
    """h11's (CLIENT, IDLE) reader, with plain heads parsed by llhttp."""
    found = _plain_head(buf, PLAIN_REQUEST, httptools.HttpRequestParser)
    if found is None:
        return maybe_read_from_IDLE_client(buf)
    match, fields = found
    headers, facts, hosts = _headers(fields)
    method, target, version = match.group("method", "target", "http_version")
    # Request.__init__'s checks: method and target already matched h11's grammar above.
    if version == b"1.1" and hosts == 0:
        raise LocalProtocolError("Missing mandatory Host: header")
    if hosts > 1:
        raise LocalProtocolError("Found multiple Host: headers")
    event = _new_request(method, headers, target, version)
    last_facts[:] = event, facts
    return event  # type: ignore[no-any-return]


def read_response(buf: ReceiveBuffer) -> h11.InformationalResponse | h11.Response | None:
    """h11's response reader, with plain heads parsed by llhttp."""
    found = _plain_head(buf, PLAIN_RESPONSE, httptools.HttpResponseParser)
    if found is None:
        return maybe_read_from_SEND_RESPONSE_server(buf)
    match, fields = found
    headers, facts, _ = _headers(fields)
    version, status, reason = match.group("http_version", "status_code", "reason")
    code = int(status)
    if code < 100:  # h11's InformationalResponse refuses it, with its message
        return InformationalResponse(headers=headers, status_code=code, reason=reason or b"",
                                     http_version=version, _parsed=True)
    event = _new_response(InformationalResponse if code < 200 else Response, headers, version,
                          reason or b"", code)
    last_facts[:] = event, facts
    return event  # type: ignore[no-any-return]


HEAD_READERS: dict[Any, Any] = {**READERS, (CLIENT, IDLE): read_request, (SERVER, IDLE): read_response,
                                (SERVER, h11.SEND_RESPONSE): read_response}
