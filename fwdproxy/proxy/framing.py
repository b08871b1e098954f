"""Request framing, checked on the raw bytes before any of it is passed on (pure).

Strategy: h11 frames each request; the checks here read the same bytes first and refuse
what h11 tolerates but a proxy must not pass on, because whatever the proxy accepts, the
origin (and every hop after it) parses again, maybe differently. Two parts:

- `check_request_head` reads a request head once and returns its `Framing`: a head is
  refused for a bare CR or LF, obs-fold, control bytes, several Content-Length headers,
  Content-Length together with Transfer-Encoding, any coding other than exactly
  "chunked", an HTTP/2 preface, a Content-Length no 64-bit parser can hold, or a CONNECT
  that claims a body.
- `ChunkedBody` follows a chunked request body through its raw bytes as they arrive and
  refuses a chunk-size line, a chunk end or a trailer section that is malformed, or a chunk
  size beyond 2^63 - 1. It accepts a subset of what h11 accepts, so h11 never frames a byte
  that this check did not see first. It keeps no data: per read it costs a counter update,
  plus the parse of each chunk-size line.

This module is pure: no trio, socket or h11 imports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fwdproxy.errors import BadRequest, BodyTooLarge

__all__ = ["MAX_BODY_LENGTH", "ChunkedBody", "Framing", "check_request_head", "length_fits"]

# The largest length a signed 64-bit integer holds: most HTTP implementations keep body
# and chunk lengths in one, and a larger value wraps there (18446744073709551621 becomes 5),
# so the origin would frame the message differently from us.
MAX_BODY_LENGTH = 2**63 - 1
_MAX_LENGTH_DIGITS = len(str(MAX_BODY_LENGTH))  # 19
_MAX_CHUNK_DIGITS = 16  # 2^63 - 1 is 7fffffffffffffff

# C0 controls other than HTAB, LF and CR, and DEL: h11 refuses only NUL and whitespace.
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_FRAMING = (b"content-length", b"transfer-encoding")
# chunk-size, then extensions as h11 takes them (";" and anything but controls), then
# optional whitespace (h11 allows it before the CRLF; RFC 9112 §7.1.1).
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]+)(?:;[^\x00-\x08\x0a-\x1f\x7f]*)?[ \t]*")
# A header line that the loop in `check_request_head` has something to say about: a
# continuation line, or a framing header (also spelt with "_"). Heads without one, most of
# them, skip the loop.
_SUSPECT_LINE = re.compile(rb"\r\n(?:[ \t]|(?i:content[-_]length|transfer[-_]encoding):)")

# Fields that frame or route a message may not come in a trailer section (RFC 9110
# §6.5.1): an origin that merged them into the head would frame or route differently.
_TRAILER_REFUSED = frozenset({b"content-length", b"transfer-encoding", b"host"})


@dataclass(frozen=True, slots=True)
class Framing:
    """How a checked request head says its body is delimited."""

    content_length: int | None = None  # None: no Content-Length header
    chunked: bool = False


_NO_BODY = Framing()  # a head with neither Content-Length nor Transfer-Encoding


def length_fits(value: bytes) -> bool:
    """True when a Content-Length value (ASCII digits, as h11 checked) is at most 2^63 - 1."""
    digits = value.strip(b" \t").lstrip(b"0")
    return len(digits) < _MAX_LENGTH_DIGITS or (
        len(digits) == _MAX_LENGTH_DIGITS and int(digits) <= MAX_BODY_LENGTH)


def check_request_head(head: bytes, *, max_body: int | None = None) -> Framing:
    """Refuse request-head spellings that h11 tolerates but a proxy must not pass on.

    Args:
        head: the raw request line and header lines, up to and including the blank line.
        max_body: the largest request body accepted (`limits.max_request_body`), if any.

    Returns:
        The body's framing, as h11 will read it.

    Raises:
        BadRequest: naming the first problem found.
        BodyTooLarge: a Content-Length above `max_body`.
    """
    if head.startswith(b"PRI * HTTP/2.0"):
        raise BadRequest("HTTP/2 prior knowledge is not supported: speak HTTP/1.1 to the proxy")
    control = _CONTROL.search(head)
    if control is not None:
        raise BadRequest(f"control byte 0x{control.group()[0]:02x} in the request head")
    body = head.replace(b"\r\n", b"")
    if b"\n" in body:
        raise BadRequest("bare LF line ending in the request head (lines must end in CRLF)")
    if b"\r" in body:
        raise BadRequest("bare CR in the request head")
    if _SUSPECT_LINE.search(head) is None:
        return _NO_BODY
    lines = head.split(b"\r\n")
    content_length, transfer_encoding = _framing_fields(lines[1:])
    if content_length is not None and transfer_encoding is not None:
        raise BadRequest("both Content-Length and Transfer-Encoding: the body length is ambiguous")
    length = _content_length(content_length, max_body)
    if lines[0].startswith(b"CONNECT ") and (transfer_encoding is not None or length):
        # RFC 9110 §9.3.6: a CONNECT request has no content, and every byte after its head
        # belongs to the tunnel; taking some of them as a body would eat them.
        raise BadRequest("a CONNECT request has no body: Content-Length and Transfer-Encoding "
                         "are refused on CONNECT (RFC 9110 §9.3.6)")
    return Framing(content_length=length, chunked=transfer_encoding is not None)


def _framing_fields(lines: list[bytes]) -> tuple[bytes | None, bytes | None]:
    """The Content-Length and Transfer-Encoding values of these header lines, refusing
    obs-fold, look-alike names and repeated or ambiguous framing headers."""
    content_length: bytes | None = None
    transfer_encoding: bytes | None = None
    for line in lines:
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            raise BadRequest("obsolete line folding (obs-fold) in the request head")
        name, _, value = line.partition(b":")
        name = name.lower()
        if b"_" in name and name.replace(b"_", b"-") in _FRAMING:
            # An origin that maps "_" to "-" (CGI, WSGI) would frame the body differently.
            raise BadRequest(f"header {name.decode('latin-1')!r} looks like a framing header")
        if name == b"content-length":
            if content_length is not None or b"," in value:
                raise BadRequest("several Content-Length values")
            content_length = value.strip(b" \t")
        elif name == b"transfer-encoding":
            if transfer_encoding is not None:
                raise BadRequest("several Transfer-Encoding headers")
            transfer_encoding = value.strip(b" \t").lower()
            if transfer_encoding != b"chunked":
                raise BadRequest(
                    "Transfer-Encoding other than exactly 'chunked' is not accepted: "
                    + repr(value.strip(b" \t").decode("latin-1"))[:80]
                )
    return content_length, transfer_encoding


def _content_length(value: bytes | None, max_body: int | None) -> int | None:
    if value is None:
        return None
    if not (value.isdigit() and value.isascii()):
        raise BadRequest(f"Content-Length {value[:40].decode('latin-1')!r} is not a number")
    if not length_fits(value):
        raise BadRequest("Content-Length beyond 2^63 - 1: no HTTP implementation can hold it")
    length = int(value)
    if max_body is not None and length > max_body:
        raise BodyTooLarge(f"the request body ({length} bytes) is larger than the "
                           f"{max_body} bytes this proxy accepts (limits.max_request_body)")
    return length


_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


class ChunkedBody:
    """Follows one chunked request body through its raw bytes (RFC 9112 §7.1).

    Args:
        max_line: the longest chunk-size or trailer line accepted, CRLF included.
        max_body: the most body bytes accepted (`limits.max_request_body`), if any.
    """

    __slots__ = ("_line", "_max_body", "_max_line", "_need", "_state", "started", "total")

    def __init__(self, *, max_line: int, max_body: int | None = None) -> None:
        self._state = _SIZE
        self._line = bytearray()  # the incomplete line being read
        self._need = 0  # data bytes left in this chunk, or CRLF bytes left after it
        self._max_line = max_line
        self._max_body = max_body
        self.total = 0  # body bytes so far, chunk framing not counted
        self.started = False  # the first chunk-size line arrived and passed

    @property
    def done(self) -> bool:
        """True once the body's last chunk and trailer section have arrived."""
        return self._state == _DONE

    def feed(self, data: bytes | bytearray) -> None:
        """Check the next raw bytes of the body; bytes past its end are not looked at.

        Raises:
            BadRequest: a malformed chunk-size line, chunk end or trailer line, or a chunk
                size beyond 2^63 - 1.
            BodyTooLarge: the body passed `max_body`.
        """
        at, end = 0, len(data)
        while at < end and self._state != _DONE:
            state = self._state
            if state == _DATA:
                taken = min(self._need, end - at)
                self._need -= taken
                at += taken
                if not self._need:
                    self._state, self._need = _DATA_END, 2
            elif state == _DATA_END:
                expected = b"\r\n"[2 - self._need:]
                taken = min(self._need, end - at)
                if data[at:at + taken] != expected[:taken]:
                    raise BadRequest("a chunk of the request body does not end in CRLF "
                                     "where its size says")
                self._need -= taken
                at += taken
                if not self._need:
                    self._state = _SIZE
            else:
                newline = data.find(b"\n", at)
                stop = end if newline < 0 else newline + 1
                if len(self._line) + stop - at > self._max_line:
                    raise BadRequest(f"a line in the chunked request body exceeds {self._max_line} bytes")
                self._line += data[at:stop]
                at = stop
                if newline >= 0:
                    line, self._line = bytes(self._line), bytearray()
                    if not line.endswith(b"\r\n") or b"\r" in line[:-2]:
                        raise BadRequest("bare CR or LF in the chunked request body "
                                         "(lines must end in CRLF)")
                    if state == _SIZE:
                        self._size_line(line[:-2])
                    else:
                        self._trailer_line(line[:-2])

    def _size_line(self, line: bytes) -> None:
        match = _CHUNK_LINE.fullmatch(line)
        if match is None:
            shown = line[:40].decode("latin-1")
            raise BadRequest(f"invalid chunk size line {shown!r} in the request body")
        digits = match.group(1).lstrip(b"0") or b"0"
        if len(match.group(1)) > _MAX_CHUNK_DIGITS or int(digits, 16) > MAX_BODY_LENGTH:
            raise BadRequest("a chunk size in the request body is beyond 2^63 - 1 "
                             f"(more than {_MAX_CHUNK_DIGITS} hex digits or above 7fffffffffffffff)")
        size = int(digits, 16)
        self.started = True
        self.total += size
        if self._max_body is not None and self.total > self._max_body:
            raise BodyTooLarge(f"the request body is larger than the {self._max_body} bytes "
                               "this proxy accepts (limits.max_request_body)")
        if size:
            self._state, self._need = _DATA, size
        else:
            self._state = _TRAILER

    def _trailer_line(self, line: bytes) -> None:
        if not line:
            self._state = _DONE
            return
        if line[:1] in (b" ", b"\t") or _CONTROL.search(line) or b":" not in line:
            raise BadRequest(f"malformed trailer line {line[:40].decode('latin-1')!r} "
                             "in the request body")
        if line.partition(b":")[0].lower() in _TRAILER_REFUSED:
            raise BadRequest("framing or routing field in the trailer section of the request "
                             f"body: {line.partition(b':')[0].decode('latin-1')!r}")
