"""policy/names.py: every spelling of a host reduces to one canonical text (and address).

Tables of spellings (names, numeric IPv4 forms, IPv6, UTS 46 mappings) and hypothesis
properties: one address or name, many spellings, one canonical form.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fwdproxy.errors import BadRequest
from fwdproxy.policy.names import canonical_host

# -- canonical_host --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "host"),
    [
        # case, trailing dot
        ("example.com", "example.com"),
        ("EXAMPLE.com", "example.com"),
        ("ExAmPlE.CoM", "example.com"),
        ("example.com.", "example.com"),
        ("Example.COM.", "example.com"),
        ("localhost", "localhost"),
        ("under_score.example", "under_score.example"),
        ("a-b.example", "a-b.example"),
        # percent-encoded host
        ("%65xample.com", "example.com"),
        ("EXAMPLE%2Ecom", "example.com"),
        ("%45%58AMPLE.com", "example.com"),
        # IDN, UTS 46 non-transitional, as browsers do
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("Bücher.Example.", "xn--bcher-kva.example"),
        ("b%C3%BCcher.example", "xn--bcher-kva.example"),
        ("faß.example", "xn--fa-hia.example"),  # non-transitional: ß is kept, not "ss"
        ("ⓔxample.com", "example.com"),  # UTS 46 mapping to ASCII
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
    ],
)
def test_canonical_host_names(raw: str, host: str) -> None:
    assert canonical_host(raw) == (host, None)


LOOPBACK = ipaddress.IPv4Address("127.0.0.1")


@pytest.mark.parametrize(
    "raw",
    [
        "127.0.0.1",
        "2130706433",  # one decimal number
        "0x7f000001",  # one hex number
        "0X7F000001",
        "0x7F000001",
        "0177.0.0.1",  # octal first part
        "0177.0.0.01",
        "0177.00.00.01",
        "00000000000177.1",
        "127.1",  # a.b: b fills the last 24 bits
        "127.0.1",  # a.b.c: c fills the last 16 bits
        "0x7f.1",
        "0x7f.0x0.0x0.0x1",
        "0x7f.0.0.1",
        "127.0.0.1.",  # trailing dot
        "0x7f000001.",
        "%31%32%37.0.0.1",  # percent-encoded digits
        "[::ffff:127.0.0.1]",  # IPv4-mapped IPv6
        "[::FFFF:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[0:0:0:0:0:ffff:7f00:1]",
    ],
)
def test_canonical_host_ipv4_spellings(raw: str) -> None:
    assert canonical_host(raw) == ("127.0.0.1", LOOPBACK)


@pytest.mark.parametrize(
    ("raw", "host"),
    [
        ("0", "0.0.0.0"),
        ("0x", "0.0.0.0"),  # as inet_aton and the WHATWG URL parser read it
        ("4294967295", "255.255.255.255"),
        ("0xffffffff", "255.255.255.255"),
        ("10.0x10.1", "10.16.0.1"),
        ("169.254.169.254", "169.254.169.254"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("0xa9fea9fe", "169.254.169.254"),
    ],
)
def test_canonical_host_ipv4_values(raw: str, host: str) -> None:
    assert canonical_host(raw) == (host, ipaddress.IPv4Address(host))


@pytest.mark.parametrize(
    ("raw", "host"),
    [
        ("[::1]", "::1"),
        ("[0:0:0:0:0:0:0:1]", "::1"),
        ("[2001:DB8:0:0::1]", "2001:db8::1"),
        ("[::]", "::"),
    ],
)
def test_canonical_host_ipv6(raw: str, host: str) -> None:
    assert canonical_host(raw) == (host, ipaddress.IPv6Address(host))


@pytest.mark.parametrize(
    "raw",
    [
        # zone identifiers
        "[fe80::1%eth0]",
        "[fe80::1%25eth0]",
        "[fe80::1%1]",
        # invalid names
        "",
        ".",
        "..",
        ".example.com",
        "example..com",
        "exa mple.com",
        "example.com/",
        "example.com:80",
        "ex$ample.com",
        "ex\\ample.com",
        "example.com%00",
        "example.com%2F",
        "%FF.example",  # not UTF-8 after decoding
        "[::1",
        "[not-v6]",
        "[127.0.0.1]",
        "\u00ad",  # maps to nothing under UTS 46
        # numeric hosts that are no IPv4 address
        "256.0.0.1",
        "1.2.3.4.5",
        "4294967296",
        "08.0.0.1",  # 8 is not an octal digit
        "127.0.0.256",
        "1.16777216",
    ],
)
def test_canonical_host_rejects(raw: str) -> None:
    with pytest.raises(BadRequest):
        canonical_host(raw)


@pytest.mark.parametrize("raw", ["example.com%0A", "127.0.0.1%0a", "example.com\n"])
def test_canonical_host_rejects_trailing_newline(raw: str) -> None:
    with pytest.raises(BadRequest):
        canonical_host(raw)


@pytest.mark.parametrize("raw", ["\uff10\uff58\uff17\uff46.\uff11", "0x7f\u30021", "0x7f%EF%BC%8E1"])
def test_canonical_host_ipv4_after_uts46_mapping(raw: str) -> None:
    try:
        result = canonical_host(raw)
    except BadRequest:
        return  # refusing is acceptable too
    assert result == ("127.0.0.1", LOOPBACK)


@pytest.mark.parametrize("raw", ["0x7f_000001", "0177.0.0.01%20", "0177.0.0.0_1"])
def test_canonical_host_python_int_syntax_is_no_ipv4(raw: str) -> None:
    try:
        _, ip = canonical_host(raw)
    except BadRequest:
        return
    assert ip is None


# -- hypothesis: one address or name, many spellings, one canonical text ---------------


def _random_case(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if flip else c.lower() for c, flip in zip(text, flips, strict=True))


@st.composite
def ipv4_spellings(draw: st.DrawFn) -> tuple[ipaddress.IPv4Address, str]:
    """An IPv4 address and one of the spellings inet_aton and browsers accept for it."""
    address = ipaddress.IPv4Address(draw(st.integers(0, 2**32 - 1)))
    value = int(address)
    octets = [int(o) for o in str(address).split(".")]
    style = draw(
        st.sampled_from(
            ["dotted", "decimal", "hex", "hex-mixed-case", "octal-dotted", "hex-dotted",
             "two-part", "three-part"]
        )
    )
    if style == "dotted":
        text = str(address)
    elif style == "decimal":
        text = str(value)
    elif style == "hex":
        text = f"0x{value:x}"
    elif style == "hex-mixed-case":
        text = _random_case(draw, f"0x{value:08x}")
    elif style == "octal-dotted":
        text = ".".join(f"0{o:o}" for o in octets)
    elif style == "hex-dotted":
        text = ".".join(_random_case(draw, f"0x{o:x}") for o in octets)
    elif style == "two-part":
        text = f"{octets[0]}.{value & 0xFFFFFF}"
    else:
        text = f"{octets[0]}.{octets[1]}.{value & 0xFFFF}"
    if draw(st.booleans()):
        text += "."
    return address, text


@given(ipv4_spellings())
def test_every_ipv4_spelling_is_canonical(case: tuple[ipaddress.IPv4Address, str]) -> None:
    address, text = case
    assert canonical_host(text) == (str(address), address)


@given(st.integers(0, 2**32 - 1), st.data())
def test_spellings_of_one_address_agree(value: int, data: st.DataObject) -> None:
    address = ipaddress.IPv4Address(value)
    octets = [int(o) for o in str(address).split(".")]
    spellings = [
        str(address),
        str(value),
        f"0x{value:x}",
        data.draw(st.builds(lambda flips: "".join(
            c.upper() if f else c for c, f in zip(f"0x{value:x}", flips, strict=False)
        ), st.lists(st.booleans(), min_size=12, max_size=12))),
        ".".join(f"0{o:o}" for o in octets),
        str(address) + ".",
        f"[::ffff:{address}]",
    ]
    results = {canonical_host(s) for s in spellings}
    assert results == {(str(address), address)}


_LABEL = st.from_regex(r"[a-z][a-z0-9\-_]{0,20}", fullmatch=True)


@st.composite
def host_names(draw: st.DrawFn) -> str:
    return ".".join(draw(st.lists(_LABEL, min_size=1, max_size=5)))


@given(host_names(), st.data())
def test_random_case_names_are_canonical(name: str, data: st.DataObject) -> None:
    spelled = data.draw(st.builds(
        lambda flips: "".join(c.upper() if f else c for c, f in zip(name, flips, strict=True)),
        st.lists(st.booleans(), min_size=len(name), max_size=len(name)),
    ))
    trailing_dot = data.draw(st.booleans())
    assert canonical_host(spelled + ("." if trailing_dot else "")) == (name, None)
    assert canonical_host(spelled) == canonical_host(name)
