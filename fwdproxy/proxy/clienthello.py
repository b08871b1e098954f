"""Pure: the first bytes a client sends into a CONNECT tunnel → its TLS ClientHello.

Strategy: `read_client_hello(data)` is called with everything the client has sent so far
(the caller keeps the bytes, bounded, and calls again when more arrive). It answers
`NEED_MORE`, a `ClientHello`, or raises `NotClientHello` with the reason, as soon as the
bytes seen already rule a ClientHello out: "GET / HTTP/1.1" is refused at its first byte,
not after the time limit. Nothing is decrypted or changed; the caller relays exactly the
bytes it read.

The layout (RFC 8446 §4.1.2 and §5.1, RFC 5246 §7.4.1.2, RFC 6066 §3): TLS records of
type handshake (22), whose payloads join into one handshake stream (a ClientHello may be
split over several records, and a record may end anywhere in it); in that stream the first
message must be a client_hello (1), whose extensions are walked for server_name (0),
application_layer_protocol_negotiation (16) and encrypted_client_hello (0xfe0d, RFC 9849).
Unknown and GREASE extensions (RFC 8701) are skipped by their length. With Encrypted Client
Hello the name seen here is the outer, public one: the real name is encrypted, and the
policy judges what it can see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["NEED_MORE", "ClientHello", "NotClientHello", "read_client_hello"]

_HANDSHAKE: Final = 22
_CLIENT_HELLO: Final = 1
_RECORD_HEADER: Final = 5
_MAX_RECORD: Final = 1 << 14  # RFC 8446 §5.1: a plaintext record's payload is at most 2^14 bytes
_SERVER_NAME: Final = 0
_HOST_NAME: Final = 0
_ALPN: Final = 16
_ECH: Final = 0xFE0D
# A DNS name is at most 253 characters (RFC 1035 §2.3.4, without the trailing dot).
_MAX_NAME: Final = 253
_NAME_BYTES: Final = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")


class NotClientHello(Exception):
    """The bytes are not the start of a TLS ClientHello; `reason` says what they are."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _NeedMore:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_MORE"


NEED_MORE: Final = _NeedMore()


@dataclass(frozen=True, slots=True)
class ClientHello:
    """What the policy needs from a ClientHello.

    Attributes:
        server_name: the SNI host name as sent (lower-cased), or None when there is none.
        ech: the hello carries Encrypted Client Hello (`server_name` is the outer name).
        alpn: the application protocols offered, in order ("h2", "http/1.1").
        version: the highest version offered ("TLS 1.3" when supported_versions says
            so, else from the legacy field: "TLS 1.2", "TLS 1.0", ...).
        size: bytes of the records that carried the ClientHello (the rest was read on).
    """

    server_name: str | None
    ech: bool
    alpn: tuple[str, ...]
    version: str
    size: int


def read_client_hello(data: bytes) -> ClientHello | _NeedMore:
    """The ClientHello at the start of `data`, or NEED_MORE when it is not complete yet.

    Raises:
        NotClientHello: `data` cannot be the start of one (its reason names why).
    """
    if not data:
        return NEED_MORE
    if data[0] != _HANDSHAKE:
        raise NotClientHello(_what_instead(data))
    stream, size = _handshake_stream(data)
    if len(stream) < 4:
        return NEED_MORE
    if stream[0] != _CLIENT_HELLO:
        raise NotClientHello(f"the first TLS handshake message is type {stream[0]}, not a ClientHello")
    length = int.from_bytes(stream[1:4], "big")
    if len(stream) < 4 + length:
        if size is None:  # the records read so far end inside the hello
            return NEED_MORE
        raise NotClientHello("the TLS records end inside the ClientHello")
    hello = _parse_body(_Cursor(stream[4:4 + length]))
    consumed = _records_size(data, 4 + length)
    return ClientHello(hello.server_name, hello.ech, hello.alpn, hello.version, consumed)


def _what_instead(data: bytes) -> str:
    """What bytes that cannot start a ClientHello look like, for the log."""
    if data[0] & 0x80 and len(data) >= 3 and data[2] == 1:
        return "an SSLv2-format ClientHello (it cannot carry a server name)"
    if data[0] in (20, 21, 23) and data[1:2] == b"\x03":
        return f"a TLS record of type {data[0]} where the ClientHello should be"
    start = data[:24]
    if all(32 <= byte < 127 or byte in (9, 10, 13) for byte in start):
        return f"plain text ({start.decode('ascii')!r}...), not TLS"
    return f"not TLS (first byte 0x{data[0]:02x}; a TLS handshake record starts with 0x16)"


def _handshake_stream(data: bytes) -> tuple[bytes, int | None]:
    """The handshake payloads of the complete records at the start of `data`, and None
    while the last record may still be incomplete (else the size of a record of another
    type that followed: the handshake stream cannot grow any more)."""
    parts: list[bytes] = []
    at = 0
    while len(data) - at >= 1:
        kind = data[at]
        if kind != _HANDSHAKE:
            if not parts:
                raise NotClientHello(_what_instead(data[at:]))
            return b"".join(parts), at  # the hello must be whole before anything else
        if len(data) - at < _RECORD_HEADER:
            break
        major, minor = data[at + 1], data[at + 2]
        if major != 3 or minor > 4:
            raise NotClientHello(f"TLS record version {major}.{minor} is not one of TLS")
        length = int.from_bytes(data[at + 3:at + 5], "big")
        if length == 0 or length > _MAX_RECORD:
            raise NotClientHello(f"a TLS handshake record of {length} bytes (1 to 16384 allowed)")
        if len(data) - at - _RECORD_HEADER < length:
            parts.append(data[at + _RECORD_HEADER:])
            break
        parts.append(data[at + _RECORD_HEADER:at + _RECORD_HEADER + length])
        at += _RECORD_HEADER + length
    return b"".join(parts), None


def _records_size(data: bytes, hello_bytes: int) -> int:
    """Bytes of `data` taken by the records that carry the first `hello_bytes` of the
    handshake stream (the last of them may carry more)."""
    at = taken = 0
    while taken < hello_bytes:
        length = int.from_bytes(data[at + 3:at + 5], "big")
        at += _RECORD_HEADER + length
        taken += length
    return at


class _Cursor:
    """Reads a ClientHello's fields in order; a field running past the end is refused."""

    __slots__ = ("at", "data")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, count: int, what: str) -> bytes:
        end = self.at + count
        if end > len(self.data):
            raise NotClientHello(f"the ClientHello's {what} runs past its end")
        piece = self.data[self.at:end]
        self.at = end
        return piece

    def number(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "big")

    def vector(self, size: int, what: str) -> bytes:
        return self.take(self.number(size, what), what)

    @property
    def left(self) -> int:
        return len(self.data) - self.at


@dataclass(slots=True)
class _Found:
    server_name: str | None = None
    ech: bool = False
    alpn: tuple[str, ...] = ()
    version: str = ""


_VERSIONS: Final = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2",
                    0x0304: "TLS 1.3"}


def _parse_body(body: _Cursor) -> _Found:
    legacy = body.number(2, "version")
    if legacy >> 8 != 3:
        raise NotClientHello(f"ClientHello version 0x{legacy:04x} is not one of TLS")
    body.take(32, "random")
    if len(body.vector(1, "session id")) > 32:
        raise NotClientHello("the ClientHello's session id is longer than 32 bytes")
    suites = body.vector(2, "cipher suites")
    if not suites or len(suites) % 2:
        raise NotClientHello("the ClientHello's cipher suite list is empty or odd")
    if not body.vector(1, "compression methods"):
        raise NotClientHello("the ClientHello offers no compression method")
    found = _Found(version=_VERSIONS.get(legacy, f"0x{legacy:04x}"))
    if body.left == 0:
        return found  # no extensions at all (TLS 1.2 and older allow it): no name
    extensions = _Cursor(body.vector(2, "extensions"))
    if body.left:
        raise NotClientHello("bytes after the ClientHello's extensions")
    seen: set[int] = set()
    while extensions.left:
        kind = extensions.number(2, "extension type")
        content = _Cursor(extensions.vector(2, f"extension {kind}"))
        if kind in seen:  # RFC 8446 §4.2: at most one extension of each type
            raise NotClientHello(f"the ClientHello repeats extension {kind}")
        seen.add(kind)
        if kind == _SERVER_NAME:
            found.server_name = _server_name(content)
        elif kind == _ALPN:
            found.alpn = _alpn(content)
        elif kind == _ECH:
            found.ech = True
        elif kind == 43:  # supported_versions: TLS 1.3 is offered only here
            found.version = _highest_version(content) or found.version
    return found


def _server_name(content: _Cursor) -> str | None:
    names = _Cursor(content.vector(2, "server name list"))
    if content.left:
        raise NotClientHello("bytes after the server name list")
    if not names.left:
        return None  # the empty form is a server's answer; from a client it names nothing
    host: str | None = None
    while names.left:
        name_type = names.number(1, "server name type")
        name = names.vector(2, "server name")
        if name_type != _HOST_NAME:
            continue  # no other type is defined; RFC 6066 says to ignore unknown ones
        if host is not None:
            raise NotClientHello("the ClientHello names two host names")
        if not name or len(name) > _MAX_NAME or not _NAME_BYTES.issuperset(name):
            shown = name[:64].decode("ascii", "backslashreplace")
            raise NotClientHello(f"the server name {shown!r} is not a DNS host name")
        host = name.decode("ascii").lower()
    return host


def _alpn(content: _Cursor) -> tuple[str, ...]:
    protocols = _Cursor(content.vector(2, "ALPN list"))
    offered: list[str] = []
    while protocols.left:
        offered.append(protocols.vector(1, "ALPN protocol").decode("ascii", "backslashreplace"))
    return tuple(offered)


def _highest_version(content: _Cursor) -> str | None:
    versions = _Cursor(content.vector(1, "supported versions"))
    best = None
    while versions.left:
        value = versions.number(2, "supported version")
        if value in _VERSIONS and (best is None or value > best):
            best = value  # GREASE values (0x?a?a) are not versions
    return _VERSIONS[best] if best is not None else None
