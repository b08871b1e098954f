"""framing.py: the strict request-head check and the chunked-body check, as plain tables.

The chunked-body check must accept only what h11 accepts, and must frame a body exactly as
h11 does (else the two would disagree on where the next request starts): hypothesis
generates bodies, valid and damaged, cut at random places, and compares the two.
"""

from __future__ import annotations

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fwdproxy.errors import BadRequest, BodyTooLarge
from fwdproxy.proxy.framing import MAX_BODY_LENGTH, ChunkedBody, Framing, check_request_head, length_fits

GOOD_HEADS = [
    b"GET http://origin.test/ HTTP/1.1\r\nHost: origin.test\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"POST http://o.test/ HTTP/1.1\r\nHost: o.test\r\nContent-Length: 5\r\n\r\n",
    b"POST http://o.test/ HTTP/1.1\r\nHost: o.test\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST http://o.test/ HTTP/1.1\r\nHost: o.test\r\nTransfer-Encoding:   chunked \t\r\n\r\n",
    b"POST http://o.test/ HTTP/1.1\r\nHost: o.test\r\ntransfer-encoding: CHUNKED\r\n\r\n",
    b"POST http://o.test/ HTTP/1.1\r\nHost: o.test\r\ncontent-length:0\r\n\r\n",
    b"GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\nX-Empty:\r\nX-Colon: a:b: c\r\n"
    b"X-Content-Length: 1\r\nX-Transfer-Encoding: gzip\r\n\r\n",
    b"GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\nX-Tab: a\tb\r\nX-Obs-Text: caf\xc3\xa9\r\n\r\n",
]

BAD_HEADS = [
    pytest.param(b"GET / HTTP/1.1\nHost: o.test\r\n\r\n", "bare LF", id="bare-lf-request-line"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: o.test\nX: y\r\n\r\n", "bare LF", id="bare-lf-header"),
    pytest.param(b"GET / HTTP/1.1\nHost: o.test\n\n", "bare LF", id="all-bare-lf"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: o.test\r\n\n", "bare LF", id="bare-lf-end"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: o.test\rX: y\r\n\r\n", "bare CR", id="bare-cr"),
    pytest.param(b"GET / HTTP/1.1\r\nX: a\rb\r\nHost: o.test\r\n\r\n", "bare CR", id="bare-cr-value"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: o.test\r\nX-A: 1\r\n folded\r\n\r\n", "obs-fold",
                 id="obs-fold-space"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: o.test\r\nX-A: 1\r\n\tfolded\r\n\r\n", "obs-fold",
                 id="obs-fold-tab"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: o\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                 "Content-Length", id="two-content-length"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: o\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n",
                 "Content-Length", id="two-different-content-length"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: o\r\nContent-Length: 5, 5\r\n\r\n",
                 "Content-Length", id="content-length-list"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: o\r\nContent-Length: 5\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n", "both", id="cl-then-te"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: chunked\r\n"
                 b"Content-Length: 5\r\n\r\n", "both", id="te-then-cl"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: xchunked\r\n\r\n",
                 "Transfer-Encoding", id="te-xchunked"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
                 "Transfer-Encoding", id="te-chunked-identity"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                 "Transfer-Encoding", id="te-gzip-chunked"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: identity\r\n\r\n",
                 "Transfer-Encoding", id="te-identity"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: o\r\nTransfer_Encoding: chunked\r\n\r\n",
                 "framing header", id="te-underscore"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: o\r\nContent_Length: 5\r\n\r\n",
                 "framing header", id="cl-underscore"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: \x0bchunked\r\n\r\n",
                 "control byte 0x0b", id="te-vertical-tab"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: chunked\x0c\r\n\r\n",
                 "control byte 0x0c", id="te-form-feed"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: \"chunked\"\r\n\r\n",
                 "Transfer-Encoding", id="te-quoted"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: chunked\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n", "Transfer-Encoding", id="two-te"),
    pytest.param(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "HTTP/2", id="http2-preface"),
]


@pytest.mark.parametrize("head", GOOD_HEADS)
def test_good_heads_pass(head):
    check_request_head(head)


@pytest.mark.parametrize(("head", "why"), BAD_HEADS)
def test_bad_heads_refused(head, why):
    with pytest.raises(BadRequest) as info:
        check_request_head(head)
    assert why in info.value.detail
    assert info.value.status == 400


LARGE_HEADS = [
    pytest.param(b"POST / HTTP/1.1\r\nHost: o\r\nContent-Length: 18446744073709551621\r\n\r\n",
                 "2^63", id="cl-wraps-to-5"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: o\r\nContent-Length: 9223372036854775808\r\n\r\n",
                 "2^63", id="cl-2^63"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: o\r\nContent-Length: 99999999999999999999\r\n\r\n",
                 "2^63", id="cl-20-digits"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: o\r\nContent-Length: +5\r\n\r\n", "not a number",
                 id="cl-plus"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: o\r\nContent-Length: \xd9\xa5\r\n\r\n", "not a number",
                 id="cl-arabic-digit"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: o\r\nContent-Length:\r\n\r\n", "not a number",
                 id="cl-empty"),
    pytest.param(b"CONNECT o:443 HTTP/1.1\r\nHost: o:443\r\nContent-Length: 5\r\n\r\n",
                 "CONNECT", id="connect-content-length"),
    pytest.param(b"CONNECT o:443 HTTP/1.1\r\nHost: o:443\r\nTransfer-Encoding: chunked\r\n\r\n",
                 "CONNECT", id="connect-chunked"),
]


@pytest.mark.parametrize(("head", "why"), LARGE_HEADS)
def test_unholdable_lengths_and_connect_bodies_refused(head, why):
    with pytest.raises(BadRequest) as info:
        check_request_head(head)
    assert why in info.value.detail


@pytest.mark.parametrize(("head", "framing"), [
    (b"GET / HTTP/1.1\r\nHost: o\r\n\r\n", Framing()),
    (b"POST / HTTP/1.1\r\nHost: o\r\nContent-Length: 9223372036854775807\r\n\r\n",
     Framing(content_length=MAX_BODY_LENGTH)),
    (b"POST / HTTP/1.1\r\nHost: o\r\nContent-Length: 00000000000000000005\r\n\r\n",
     Framing(content_length=5)),
    (b"POST / HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: Chunked\r\n\r\n", Framing(chunked=True)),
    # Some clients send Content-Length: 0 with CONNECT: it frames nothing, so nothing is eaten.
    (b"CONNECT o:443 HTTP/1.1\r\nHost: o:443\r\nContent-Length: 0\r\n\r\n",
     Framing(content_length=0)),
])
def test_framing_is_returned(head, framing):
    assert check_request_head(head) == framing


def test_max_body_refuses_a_larger_content_length():
    head = b"POST / HTTP/1.1\r\nHost: o\r\nContent-Length: 1001\r\n\r\n"
    assert check_request_head(head, max_body=1001) == Framing(content_length=1001)
    with pytest.raises(BodyTooLarge) as info:
        check_request_head(head, max_body=1000)
    assert info.value.status == 413
    assert "max_request_body" in info.value.detail


@pytest.mark.parametrize(("value", "fits"), [
    (b"0", True), (b"9223372036854775807", True), (b"0009223372036854775807", True),
    (b"9223372036854775808", False), (b"18446744073709551621", False), (b"1" * 40, False),
])
def test_length_fits(value, fits):
    assert length_fits(value) is fits


# -- ChunkedBody -----------------------------------------------------------------------


def scan(body: bytes, *, max_body: int | None = None, max_line: int = 4096,
         step: int = 0) -> ChunkedBody:
    """Feed `body` in one piece, or `step` bytes at a time."""
    chunks = ChunkedBody(max_line=max_line, max_body=max_body)
    pieces = [body] if not step else [body[i:i + step] for i in range(0, len(body), step)]
    for piece in pieces:
        chunks.feed(piece)
    return chunks


GOOD_BODIES = [
    pytest.param(b"0\r\n\r\n", 0, id="empty"),
    pytest.param(b"5\r\nhello\r\n0\r\n\r\n", 5, id="one-chunk"),
    pytest.param(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", 11, id="two-chunks"),
    pytest.param(b"A\r\n0123456789\r\n0\r\n\r\n", 10, id="upper-hex"),
    pytest.param(b"0005\r\nhello\r\n0\r\n\r\n", 5, id="leading-zeros"),
    pytest.param(b"5;name=value\r\nhello\r\n0\r\n\r\n", 5, id="extension"),
    pytest.param(b"5;a;b=\"q\"\t\r\nhello\r\n0\r\n\r\n", 5, id="extensions-tab"),
    pytest.param(b"5 \r\nhello\r\n0\r\n\r\n", 5, id="trailing-space"),
    pytest.param(b"5\r\nhello\r\n0\r\nX-Sum: 1\r\nX-B: 2\r\n\r\n", 5, id="trailers"),
    pytest.param(b"7fffffffffffffff\r\n", MAX_BODY_LENGTH, id="largest-size"),
]

BAD_BODIES = [
    pytest.param(b"zz\r\nhello\r\n0\r\n\r\n", "invalid chunk size", id="not-hex"),
    pytest.param(b"-5\r\nhello\r\n0\r\n\r\n", "invalid chunk size", id="negative"),
    pytest.param(b"+5\r\nhello\r\n0\r\n\r\n", "invalid chunk size", id="plus"),
    pytest.param(b"0x5\r\nhello\r\n0\r\n\r\n", "invalid chunk size", id="0x-prefix"),
    pytest.param(b" 5\r\nhello\r\n0\r\n\r\n", "invalid chunk size", id="leading-space"),
    pytest.param(b"5 ;a\r\nhello\r\n0\r\n\r\n", "invalid chunk size", id="space-before-ext"),
    pytest.param(b"\r\nhello\r\n0\r\n\r\n", "invalid chunk size", id="empty-size"),
    pytest.param(b"5;a\x01\r\nhello\r\n0\r\n\r\n", "invalid chunk size", id="control-in-ext"),
    pytest.param(b"5\nhello\r\n0\r\n\r\n", "bare CR or LF", id="bare-lf"),
    pytest.param(b"5\r\r\nhello\r\n0\r\n\r\n", "bare CR or LF", id="bare-cr"),
    pytest.param(b"5\r\nhelloXX0\r\n\r\n", "CRLF", id="no-crlf-after-data"),
    pytest.param(b"5\r\nhello\n0\r\n\r\n", "CRLF", id="lf-after-data"),
    pytest.param(b"8000000000000000\r\n", "2^63", id="2^63"),
    pytest.param(b"ffffffffffffffff\r\n", "2^63", id="2^64-1"),
    pytest.param(b"10000000000000005\r\n", "2^63", id="17-digits-wraps-to-5"),
    pytest.param(b"00000000000000005\r\nhello\r\n0\r\n\r\n", "2^63", id="17-digits-leading-zeros"),
    pytest.param(b"5\r\nhello\r\n0\r\nX-A: 1\n\r\n", "bare CR or LF", id="trailer-bare-lf"),
    pytest.param(b"5\r\nhello\r\n0\r\n folded\r\n\r\n", "trailer", id="trailer-obs-fold"),
    pytest.param(b"5\r\nhello\r\n0\r\nno colon\r\n\r\n", "trailer", id="trailer-no-colon"),
    pytest.param(b"5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n", "trailer", id="trailer-cl"),
    pytest.param(b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n", "trailer",
                 id="trailer-te"),
    pytest.param(b"5\r\nhello\r\n0\r\nHost: other.test\r\n\r\n", "trailer", id="trailer-host"),
    pytest.param(b"5;" + b"x" * 5000 + b"\r\nhello\r\n0\r\n\r\n", "exceeds", id="long-line"),
]


@pytest.mark.parametrize(("body", "total"), GOOD_BODIES)
@pytest.mark.parametrize("step", [0, 1, 3])
def test_good_chunked_bodies(body, total, step):
    chunks = scan(body, step=step)
    assert chunks.started
    assert chunks.total == total
    assert chunks.done == body.endswith(b"\r\n\r\n")


@pytest.mark.parametrize(("body", "why"), BAD_BODIES)
@pytest.mark.parametrize("step", [0, 1])
def test_bad_chunked_bodies(body, why, step):
    with pytest.raises(BadRequest) as info:
        scan(body, step=step)
    assert why in info.value.detail
    assert info.value.status == 400


def test_first_line_is_started_only_once_complete():
    chunks = ChunkedBody(max_line=4096)
    chunks.feed(b"5")
    assert not chunks.started
    chunks.feed(b"\r")
    assert not chunks.started
    chunks.feed(b"\n")
    assert chunks.started and not chunks.done


def test_bytes_after_the_body_are_not_looked_at():
    chunks = scan(b"0\r\n\r\nGARBAGE\n\x00 not a chunk")
    assert chunks.done and chunks.total == 0


def test_max_body_refuses_when_a_size_line_passes_it():
    scan(b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", max_body=10)
    with pytest.raises(BodyTooLarge):
        scan(b"5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n", max_body=10)


# -- agreement with h11 ------------------------------------------------------------------


def h11_framing(head: bytes, body: bytes) -> tuple[bytes, bytes] | None:
    """What h11 makes of a chunked body: (data, bytes left after it), or None if it refuses
    it or wants more."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(head + body)
    data = b""
    try:
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Data):
                data += event.data
            elif isinstance(event, h11.EndOfMessage):
                return data, conn.trailing_data[0]
            elif event is h11.NEED_DATA:
                return None
    except h11.RemoteProtocolError:
        return None


CHUNK_HEAD = b"POST / HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: chunked\r\n\r\n"

pieces = st.one_of(
    st.binary(max_size=6).map(lambda data: b"%x\r\n%s\r\n" % (len(data), data) if data else b""),
    st.sampled_from([b"0\r\n", b"\r\n", b"\n", b"\r", b";ext", b" ", b"X-T: 1\r\n", b"5",
                     b"Host: a\r\n", b"ff", b"00000000000000001", b"\t"]),
)


@given(st.lists(pieces, max_size=8), st.sampled_from([b"0\r\n\r\n", b"0\r\nX: y\r\n\r\n", b""]),
       st.binary(max_size=4), st.integers(min_value=1, max_value=8))
def test_accepts_nothing_that_h11_refuses(parts, end, tail, step):
    body = b"".join(parts) + end + tail
    try:
        chunks = scan(body, step=step)
    except BadRequest:
        return  # stricter than h11 is allowed
    if not chunks.done:
        return
    framed = h11_framing(CHUNK_HEAD, body)
    assert framed is not None, body  # h11 accepts every body this check passed
    data, rest = framed
    assert len(data) == chunks.total
    # h11 ends the body where this check does: the bytes after it are the same.
    consumed = len(body) - len(rest)
    assert scan(body[:consumed]).done
    if consumed > 0:
        assert not scan(body[:consumed - 1]).done


# -- the shortcut for heads without framing headers ------------------------------------------

_LINE_PARTS = st.sampled_from([
    b"Host: a", b"Content-Length: 5", b"content-length: 0", b"Transfer-Encoding: chunked",
    b"transfer_encoding: chunked", b"Content_Length: 1", b"X-Content-Length: 9", b" folded",
    b"\tfolded", b"Content-Length : 5", b"Accept: */*", b"User-Agent: curl/8", b"X:",
    b"TRANSFER-ENCODING: gzip", b"Content-Length: 1,1",
])


@given(st.sampled_from([b"GET / HTTP/1.1", b"CONNECT a:443 HTTP/1.1", b"POST / HTTP/1.0"]),
       st.lists(_LINE_PARTS, max_size=5))
def test_the_shortcut_answers_as_the_full_check(request_line, lines):
    """Heads that skip the per-line loop get what the loop would have said."""
    import re

    from fwdproxy.proxy import framing

    head = b"\r\n".join([request_line, *lines]) + b"\r\n\r\n"

    def outcome():
        try:
            return check_request_head(head)
        except BadRequest as exc:
            return type(exc), str(exc)

    fast = outcome()
    saved = framing._SUSPECT_LINE
    framing._SUSPECT_LINE = re.compile(b"")  # matches everywhere: always the full loop
    try:
        assert outcome() == fast
    finally:
        framing._SUSPECT_LINE = saved
