"""proxy/clienthello.py: a tunnel's first bytes → the ClientHello's server name, or why not.

Hellos are built field by field here (so each row shows the one thing it varies), made by
Python's own TLS stack through memory BIOs, and read from real captures on loopback
(tests/data/clienthellos/: curl, Python and headless Chromium, see its README). Each is
also fed in every split, and spread over several TLS records, as a network may deliver it.
"""

from __future__ import annotations

import itertools
import ssl
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fwdproxy.proxy.clienthello import NEED_MORE, ClientHello, NotClientHello, read_client_hello

CAPTURES = Path(__file__).parent.parent / "data" / "clienthellos"
GREASE = 0x3A3A


def u8(data: bytes) -> bytes:
    return len(data).to_bytes(1, "big") + data


def u16(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def ext(kind: int, content: bytes) -> bytes:
    return kind.to_bytes(2, "big") + u16(content)


def sni(*names: bytes, name_type: int = 0) -> bytes:
    return ext(0, u16(b"".join(bytes([name_type]) + u16(name) for name in names)))


def alpn(*protocols: bytes) -> bytes:
    return ext(16, u16(b"".join(u8(p) for p in protocols)))


def versions(*values: int) -> bytes:
    return ext(43, u8(b"".join(v.to_bytes(2, "big") for v in values)))


def body(*extensions: bytes, legacy: int = 0x0303, session: bytes = b"\x11" * 32,
         suites: bytes = b"\x13\x01\x13\x02", compression: bytes = b"\x00",
         with_extensions: bool = True, tail: bytes = b"") -> bytes:
    """A ClientHello message (handshake header included); `tail` goes after its fields."""
    fields = legacy.to_bytes(2, "big") + b"\x42" * 32 + u8(session) + u16(suites) + u8(compression)
    if with_extensions:
        fields += u16(b"".join(extensions))
    fields += tail
    return b"\x01" + len(fields).to_bytes(3, "big") + fields


def records(message: bytes, *cuts: int, version: bytes = b"\x03\x01") -> bytes:
    """`message` in TLS handshake records, a new record at each cut."""
    out = b""
    bounds = [0, *cuts, len(message)]
    for start, end in itertools.pairwise(bounds):
        out += b"\x16" + version + u16(message[start:end])
    return out


def hello_of(*extensions: bytes, **fields: object) -> bytes:
    return records(body(*extensions, **fields))  # type: ignore[arg-type]


def python_hello(server_hostname: str | None) -> bytes:
    """The ClientHello that Python's ssl module sends (no socket: a memory BIO)."""
    context = ssl.create_default_context()
    if server_hostname is None:
        context.check_hostname = False
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def name_of(data: bytes) -> str | None:
    found = read_client_hello(data)
    assert isinstance(found, ClientHello)
    return found.server_name


# -- names, as each hello spells them -------------------------------------------------


@pytest.mark.parametrize(("data", "expected"), [
    (hello_of(sni(b"example.org")), "example.org"),
    (hello_of(sni(b"Denied.EXAMPLE")), "denied.example"),
    (hello_of(ext(GREASE, b""), sni(b"a.example"), ext(0x4469, b"\x00\x01")), "a.example"),
    (hello_of(ext(GREASE, b"\x00"), ext(0xFFFF, b""), sni(b"b.example"), ext(0x1A1A, b"")), "b.example"),
    (hello_of(alpn(b"h2"), versions(0x0304, 0x0303)), None),
    (hello_of(ext(0, u16(b""))), None),
    (hello_of(with_extensions=False), None),
    (hello_of(sni(b"d.example"), session=b""), "d.example"),
    (hello_of(ext(0, u16(b"\x07" + u16(b"other") + b"\x00" + u16(b"e.example")))), "e.example"),
], ids=["plain", "case", "grease-around", "unknown-extensions", "no-sni",
        "empty-list", "no-extensions", "no-session", "unknown-name-type-skipped"])
def test_server_name(data: bytes, expected: str | None) -> None:
    assert name_of(data) == expected


def test_alpn_ech_and_version_are_reported() -> None:
    data = hello_of(versions(GREASE, 0x0304, 0x0303), sni(b"public.example"), alpn(b"h2", b"http/1.1"),
                    ext(0xFE0D, b"\x00" * 40))
    assert read_client_hello(data) == ClientHello("public.example", True, ("h2", "http/1.1"), "TLS 1.3",
                                                  len(data))
    legacy = read_client_hello(hello_of(sni(b"x.example"), legacy=0x0301))
    assert isinstance(legacy, ClientHello) and legacy.version == "TLS 1.0" and not legacy.ech


# -- refusals: each says why ------------------------------------------------------------


@pytest.mark.parametrize(("data", "reason"), [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "plain text"),
    (b"SSH-2.0-OpenSSH_9.2\r\n", "plain text"),
    (b"\x80\x2e\x01\x00\x02", "SSLv2"),
    (b"\x00\x01\x02\x03\x04\x05", "not TLS"),
    (b"\x17\x03\x03\x00\x10" + b"\x00" * 16, "type 23"),
    (b"\x16\x02\x00\x00\x05", "record version"),
    (b"\x16\x03\x01\x00\x00", "of 0 bytes"),
    (b"\x16\x03\x01\x40\x01", "16385 bytes"),
    (records(b"\x02\x00\x00\x02\x03\x03"), "type 2"),
    (hello_of(sni(b"a.example"), sni(b"b.example")), "repeats extension 0"),
    (hello_of(sni(b"a.example", b"b.example")), "two host names"),
    (hello_of(sni(b"bad name.example")), "not a DNS host name"),
    (hello_of(sni(b"b\xc3\xbccher.example")), "not a DNS host name"),
    (hello_of(sni(b"")), "not a DNS host name"),
    (hello_of(sni(b"a" * 254)), "not a DNS host name"),
    (hello_of(sni(b"a.example"), suites=b""), "cipher suite"),
    (hello_of(sni(b"a.example"), suites=b"\x13"), "cipher suite"),
    (hello_of(sni(b"a.example"), compression=b""), "compression"),
    (hello_of(sni(b"a.example"), session=b"\x00" * 33), "session id"),
    (hello_of(sni(b"a.example"), legacy=0x0200), "version 0x0200"),
    (records(b"\x01\x00\x00\x27" + b"\x03\x03" + b"\x00" * 32 + b"\x20" + b"\x00" * 4),
     "session id runs past its end"),
    (hello_of(sni(b"a.example"), tail=b"\x00"), "after the ClientHello's extensions"),
    (records(body(sni(b"a.example"))[:20]) + b"\x17\x03\x03\x00\x01\x00", "end inside"),
], ids=["http", "ssh", "sslv2", "binary", "application-data-first", "record-version",
        "empty-record", "record-too-long", "not-client-hello", "two-sni-extensions",
        "two-host-names", "space-in-name", "utf8-name", "empty-name", "name-too-long",
        "no-suites", "odd-suites", "no-compression", "long-session-id", "ssl2-version",
        "field-past-end", "bytes-after-extensions", "other-record-inside"])
def test_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(NotClientHello) as caught:
        read_client_hello(data)
    assert reason in caught.value.reason
    for end in range(len(data)):  # a part of it is refused too, or waits for more
        assert _outcome(data[:end]) is NEED_MORE or isinstance(_outcome(data[:end]), NotClientHello)


def test_plain_text_is_refused_at_its_first_byte() -> None:
    with pytest.raises(NotClientHello):
        read_client_hello(b"G")


# -- however the bytes arrive -------------------------------------------------------------


def _arrivals(data: bytes) -> list[ClientHello | object]:
    return [read_client_hello(data[:end]) for end in range(len(data) + 1)]


@pytest.mark.parametrize("server_hostname", ["example.org", "xn--bcher-kva.example", None])
def test_python_ssl_hello_read_at_every_split(server_hostname: str | None) -> None:
    data = python_hello(server_hostname)
    seen = _arrivals(data)
    assert all(found is NEED_MORE for found in seen[:-1])
    final = seen[-1]
    assert isinstance(final, ClientHello)
    assert final.server_name == server_hostname and final.size == len(data)


@pytest.mark.parametrize("cuts", [(1,), (4,), (5, 40), (30, 31, 32, 33), tuple(range(1, 60, 7))])
def test_hello_spread_over_several_records(cuts: tuple[int, ...]) -> None:
    message = body(ext(GREASE, b""), sni(b"split.example"), alpn(b"h2"))
    data = records(message, *cuts)
    assert [type(found) for found in _arrivals(data)[:-1]] == [type(NEED_MORE)] * len(data)
    final = read_client_hello(data)
    assert isinstance(final, ClientHello)
    assert final.server_name == "split.example" and final.size == len(data)


def test_bytes_after_the_hello_are_left_alone() -> None:
    data = hello_of(sni(b"early.example"))
    more = data + b"\x14\x03\x03\x00\x01\x01" + b"\x17\x03\x03\x00\x05hello"
    found = read_client_hello(more)
    assert isinstance(found, ClientHello)
    assert found.server_name == "early.example" and found.size == len(data)


# -- real clients, captured on loopback ------------------------------------------------------


def _captures() -> list[Path]:
    return sorted(CAPTURES.glob("*.bin"))


def test_capture_corpus_is_there() -> None:
    names = {path.stem.split("-")[0] for path in _captures()}
    assert {"curl", "python", "chromium"} <= names, names


@pytest.mark.parametrize("path", _captures(), ids=lambda path: path.stem)
def test_real_client_hellos(path: Path) -> None:
    data = path.read_bytes()
    expected = (CAPTURES / f"{path.stem}.name").read_text().strip() or None
    seen = _arrivals(data)
    assert all(found is NEED_MORE for found in seen[:-1])
    final = seen[-1]
    assert isinstance(final, ClientHello), final
    assert final.server_name == expected
    assert final.size == len(data)


# -- hostile bytes never crash it ---------------------------------------------------------------


def _outcome(data: bytes) -> object:
    try:
        return read_client_hello(data)
    except NotClientHello as exc:
        assert exc.reason
        return exc


@settings(max_examples=500)
@given(st.binary(max_size=600))
def test_any_bytes_give_an_answer(data: bytes) -> None:
    _outcome(data)
    _outcome(b"\x16\x03\x01" + data)
    _outcome(b"\x16\x03\x01" + len(data).to_bytes(2, "big") + b"\x01" + data)


@settings(max_examples=500)
@given(st.data())
def test_mutated_hellos_give_an_answer(data: st.DataObject) -> None:
    base = bytearray(hello_of(ext(GREASE, b""), sni(b"m.example"), alpn(b"h2"), versions(0x0304)))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(base) - 1))
        base[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(base)))
    _outcome(bytes(base[:cut]))
    _outcome(bytes(base))
