"""policy/rules.py: list-file lines → typed calls on a RuleSink, one table per format.

Every row is (lines, file kind) → the exact calls the parser makes, recorded by
`RecordingSink` (the bulk `domains` call is recorded as the `domain` calls it stands for).
Calls are compared line by line; errors and skipped lines by line number and a fragment
of their message, so that wording can improve without breaking the table.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fwdproxy.policy.rules import (
    DOMAIN_AND_SUBDOMAINS,
    SUBDOMAINS_ONLY,
    IPNetwork,
    Kind,
    RuleSink,
    check_regex,
    parse_lines,
)

Call = tuple[Any, ...]


class RecordingSink:
    """A RuleSink that records every call as a tuple, in order."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def domain(self, host: str, mode: int, line: int, *, allow: bool = False) -> None:
        self.calls.append(("domain", host, mode, line, allow))

    def domains(self, hosts: list[str], lines: list[int]) -> None:
        # The bulk path (plain hosts-file names): recorded as the calls it stands for.
        for host, line in zip(hosts, lines, strict=True):
            self.calls.append(("domain", host, DOMAIN_AND_SUBDOMAINS, line, False))

    def address(self, network: IPNetwork, line: int, *, literal: bool = False) -> None:
        self.calls.append(("address", network, line, *(("literal",) if literal else ())))

    def url_prefix(self, host: str, port: int | None, path: str, line: int, *,
                   squidguard: bool = False) -> None:
        self.calls.append(("url_prefix", host, port, path, line, *(("squidguard",) if squidguard else ())))

    def url_regex(self, pattern: str, line: int, *, squidguard: bool = False) -> None:
        self.calls.append(("url_regex", pattern, line, *(("squidguard",) if squidguard else ())))

    def host_regex(self, pattern: str, line: int) -> None:
        self.calls.append(("host_regex", pattern, line))

    def url_pattern(self, pattern: str, line: int, *, allow: bool = False,
                    match_case: bool = False) -> None:
        self.calls.append(("url_pattern", pattern, line, allow, match_case))

    def include(self, target: str, line: int) -> None:
        self.calls.append(("include", target, line))

    def set_category(self, name: str, line: int) -> None:
        self.calls.append(("set_category", name, line))

    def error(self, line: int, message: str) -> None:
        self.calls.append(("error", line, message))

    def skipped(self, reason: str, line: int) -> None:
        self.calls.append(("skipped", line, reason))


_TYPED: RuleSink = RecordingSink()  # mypy: RecordingSink implements every RuleSink method


# -- expected calls --------------------------------------------------------------------


def dom(host: str, line: int = 1, *, sub_only: bool = False, allow: bool = False) -> Call:
    return ("domain", host, SUBDOMAINS_ONLY if sub_only else DOMAIN_AND_SUBDOMAINS, line, allow)


def addr(text: str, line: int = 1) -> Call:
    return ("address", ipaddress.ip_network(text), line)


def url(host: str, port: int | None, path: str, line: int = 1) -> Call:
    return ("url_prefix", host, port, path, line)


def rx(pattern: str, line: int = 1) -> Call:
    return ("url_regex", pattern, line)


def squidguard(call: Call) -> Call:
    """The entry as a UT1/SquidGuard file means it (see RuleSink: literal addresses,
    case-folded urls, expressions without the scheme)."""
    return (*call, "literal" if call[0] == "address" else "squidguard")


def hrx(pattern: str, line: int = 1) -> Call:
    return ("host_regex", pattern, line)


def pat(pattern: str, line: int = 1, *, allow: bool = False, case: bool = False) -> Call:
    return ("url_pattern", pattern, line, allow, case)


def err(fragment: str, line: int = 1) -> Call:
    """An error at `line` whose message contains `fragment`."""
    return ("error", line, fragment)


def skip(fragment: str, line: int = 1) -> Call:
    """A skipped line whose reason contains `fragment`."""
    return ("skipped", line, fragment)


def parse(lines: str | list[str], kind: Kind = "list") -> list[Call]:
    sink = RecordingSink()
    parse_lines([lines] if isinstance(lines, str) else lines, sink, kind)
    return sink.calls


def line_of(call: Call) -> int:
    """The line number a recorded call is about."""
    kind = call[0]
    if kind == "domain":
        return int(call[3])
    if kind == "url_prefix":
        return int(call[4])
    if kind in ("error", "skipped"):
        return int(call[1])
    return int(call[2])


def assert_calls(actual: list[Call], expected: list[Call]) -> None:
    """Same calls, line by line (the bulk path may deliver plain names later, so only
    the order within one line counts); errors and skips by a fragment of their text."""
    actual = sorted(actual, key=line_of)
    expected = sorted(expected, key=line_of)
    assert len(actual) == len(expected), actual
    for got, want in zip(actual, expected, strict=True):
        if want[0] in ("error", "skipped"):
            assert got[:2] == want[:2], actual
            assert want[2] in got[2], actual
        else:
            assert got == want, actual


def case(lines: str | list[str], *expected: Call, kind: Kind = "list", id: str | None = None,
         bug: str | None = None) -> Any:
    marks = [pytest.mark.xfail(reason=f"BUG: {bug}", strict=True)] if bug else []
    return pytest.param(lines, kind, list(expected), id=id, marks=marks)


# -- the table: every format of rules/README.md ----------------------------------------

XN = "xn--bcher-kva.example"

TABLE = [
    # domains: plain, dotted, wildcard, upper case, trailing dots
    case("example.com", dom("example.com"), id="plain"),
    case(".example.com", dom("example.com"), id="dotted"),
    case("*.example.com", dom("example.com", sub_only=True), id="subdomains-only"),
    case("EXAMPLE.COM", dom("example.com"), id="upper"),
    case("*.Example.Com", dom("example.com", sub_only=True), id="upper-wildcard"),
    case("example.com.", dom("example.com"), id="trailing-dot"),
    case("Ads.Example.COM.", dom("ads.example.com"), id="upper-trailing-dot"),
    case("_dmarc.example.com", dom("_dmarc.example.com"), id="underscore"),
    # wildcards other than a leading "*." are errors, never a domain
    case("*ads.example.com", err("wildcard"), id="inner-wildcard"),
    case("ads.*.example.com", err("wildcard"), id="middle-wildcard"),
    case("*.203.0.113.7", err("no subdomains"), id="wildcard-address"),
    # AdBlock / AdGuard
    case("||example.com^", dom("example.com"), id="adblock"),
    case("||ADS.Example.com^", dom("ads.example.com"), id="adblock-upper"),
    case("||example.com^|", dom("example.com"), id="adblock-adguard-pipe"),
    case("@@||example.com^", dom("example.com", allow=True), id="adblock-exception"),
    case("||example.com^$third-party", skip("option $third-party"), id="adblock-options"),
    case("@@||example.com^$document", skip("option $document"), id="adblock-exception-options"),
    case("||example.com/ads/banner.js", pat("||example.com/ads/banner.js"), id="adblock-path"),
    case("||ads*.example.com^", pat("||ads*.example.com^"), id="adblock-wildcard"),
    case("|http://example.com/ad.js|", pat("|http://example.com/ad.js|"), id="adblock-anchored-url"),
    case("/banner/*/img^", pat("/banner/*/img^"), id="adblock-path-without-bars"),
    case("/adserver/*", pat("/adserver/*"), id="adblock-path-wildcard"),
    case("ad.example.com^", pat("ad.example.com^"), id="adblock-separator-without-bars"),
    case("@@example.com", pat("example.com", allow=True), id="adblock-exception-without-bars"),
    case("example.com##.ad-banner", skip("cosmetic"), id="cosmetic"),
    case("##.ad-banner", id="generic-cosmetic-reads-as-comment"),
    case("example.com#@#.ad-banner", skip("cosmetic"), id="cosmetic-exception"),
    case("example.com#?#div:has(> .ad)", skip("cosmetic"), id="cosmetic-extended"),
    case("example.com$script", skip("option $script"), id="options-without-bars"),
    case("||203.0.113.7^", addr("203.0.113.7/32"), id="adblock-address"),
    case("@@||203.0.113.7^", skip("exception for an address"), id="adblock-exception-address"),
    case("||.com^", pat("||.com^"), id="adblock-bad-host-is-a-pattern"),
    case("/ads/$match-case", rx("ads"), id="adblock-regex-judged-option"),
    case("/Ad/*$match-case", pat("/Ad/*", case=True), id="adblock-match-case"),
    case("||a.example/x$important,all", pat("||a.example/x"), id="adblock-judged-options"),
    case("$csp=script-src 'self',domain=a.example", skip("option $csp"), id="adblock-csp"),
    case("@@/ads/", skip("exception regex"), id="adblock-exception-regex"),
    case("||*^", err("every URL"), id="adblock-matches-everything"),
    case("$important", err("every URL"), id="adblock-options-only"),
    case("/ad s/$script", skip("option $script"), id="adblock-options-before-spaces"),
    case("|ad s^", err("no spaces"), id="adblock-spaces"),
    case("[Adblock Plus 2.0]", id="adblock-header"),
    case("[AdGuard]", id="adguard-header"),
    case("! Title: EasyList", id="adblock-comment"),
    # hosts files: preamble housekeeping names are ignored, every other name is a domain
    case("127.0.0.1 localhost", id="hosts-localhost"),
    case("255.255.255.255 broadcasthost", id="hosts-broadcasthost"),
    case("::1 localhost ip6-localhost", id="hosts-ip6-localhost"),
    case("fe80::1%lo0 localhost", id="hosts-zone-localhost"),
    case("0.0.0.0 0.0.0.0", id="hosts-zero-zero"),
    case("127.0.0.1 LOCALHOST", id="hosts-localhost-upper"),
    case("127.0.0.1 localhost.", id="hosts-localhost-trailing-dot"),
    case("0.0.0.0 203.0.113.7", err("address"), id="hosts-address-as-name"),
    case("0.0.0.0 203.0.113.7.", err("address"), id="hosts-address-as-name-trailing-dot"),
    # Once crashed the parser (IndexError) after the first trailing dot was dropped.
    case("0.0.0.0 ads.example..", dom("ads.example"), id="hosts-two-trailing-dots"),
    case("0.0.0.0 0..", err("0."), id="hosts-digit-two-trailing-dots"),
    case("0.0.0.0 a.com b.com # c", dom("a.com"), dom("b.com"), id="hosts-two-names-comment"),
    case("127.0.0.1 ads.example", dom("ads.example"), id="hosts-127"),
    case("::1 ads.example", dom("ads.example"), id="hosts-v6"),
    case("0.0.0.0\tADS.Example.\t#c", dom("ads.example"), id="hosts-tabs-upper-dot"),
    case("0.0.0.0 bad..name good.example", err("bad..name"), dom("good.example"),
         id="hosts-bad-name-rest-loads"),
    case("not-an-address a.com", err("one entry per line"), id="two-names-no-address"),
    # addresses and CIDRs, IPv4 in every numeric spelling
    case("203.0.113.7", addr("203.0.113.7/32"), id="ipv4"),
    case("203.0.113.0/24", addr("203.0.113.0/24"), id="cidr4"),
    case("203.0.113.9/24", addr("203.0.113.0/24"), id="cidr4-host-bits"),
    case("2001:db8::/32", addr("2001:db8::/32"), id="cidr6"),
    case("2001:DB8::1", addr("2001:db8::1/128"), id="ipv6-upper"),
    case("::ffff:10.0.0.0/104", addr("::ffff:10.0.0.0/104"), id="ipv4-mapped-cidr"),
    case("2130706433", addr("127.0.0.1/32"), id="ipv4-decimal"),
    case("0x7f000001", addr("127.0.0.1/32"), id="ipv4-hex"),
    case("127.0.0.0x1", addr("127.0.0.1/32"), id="ipv4-hex-last-part"),
    case("0x7f00000a", addr("127.0.0.10/32"), id="ipv4-hex-ending-in-a-letter"),
    case("127.0.0.0xa", addr("127.0.0.10/32"), id="ipv4-hex-last-part-letter"),
    case("0x7f.0xA", addr("127.0.0.10/32"), id="ipv4-hex-upper-letter"),
    case("0x7f.1", addr("127.0.0.1/32"), id="ipv4-hex-short"),
    case("0177.0.0.1", addr("127.0.0.1/32"), id="ipv4-octal"),
    case("127.1", addr("127.0.0.1/32"), id="ipv4-short"),
    case("127.0.1", addr("127.0.0.1/32"), id="ipv4-three-parts"),
    # URL prefixes
    case("example.com/some/path", url("example.com", None, "/some/path"), id="url"),
    case("example.com:8080/path", url("example.com", 8080, "/path"), id="url-port"),
    case("http://example.com/x", url("example.com", None, "/x"), id="url-http-scheme"),
    case("example.com/x/../y", url("example.com", None, "/y"), id="url-dot-segments"),
    case("example.com/./a/%7Euser/", url("example.com", None, "/a/~user/"), id="url-unreserved"),
    case("example.com/", url("example.com", None, "/"), id="url-root"),
    case("Example.COM/Path", url("example.com", None, "/Path"), id="url-host-lowered-path-kept"),
    case("www.example.com/x", url("www.example.com", None, "/x"), id="url-www-kept-in-list"),
    case("bücher.example/x", url(XN, None, "/x"), id="url-idn"),
    case("203.0.113.7/x", url("203.0.113.7", None, "/x"), id="url-address"),
    case("https://example.com/x", err("https://"), id="url-https"),
    case("example.com:99999/x", err("port"), id="url-bad-port"),
    case("example.com:0/x", err("port"), id="url-port-zero"),
    # regular expressions over the URL
    case(r"/^http:\/\/[^/]*\/ads\//", rx(r"^http:\/\/[^/]*\/ads\/"), id="regex"),
    case(r"/(?i)banner\d+/", rx(r"(?i)banner\d+"), id="regex-flags"),
    case("/[[:space:]]/", err("POSIX class [:space:]"), id="regex-posix"),
    case("/ads[[:digit:]]+/", err("[:digit:]"), id="regex-posix-digit"),
    case("/(unclosed/", err("invalid regular expression"), id="regex-invalid"),
    # comments, blank lines, e2guardian
    case("", id="blank"),
    case("   ", id="spaces"),
    case("# a comment", id="hash-comment"),
    case("#0.0.0.0 ads.example", id="commented-out-entry"),
    case("example.com # trailing", dom("example.com"), id="trailing-comment"),
    case("example.com\t# trailing", dom("example.com"), id="trailing-comment-tab"),
    case(".Include</etc/e2guardian/lists/ads>", ("include", "/etc/e2guardian/lists/ads", 1),
         id="e2guardian-include"),
    case('#listcategory: "Ads and trackers"', ("set_category", "Ads and trackers", 1),
         id="listcategory"),
    case("#listcategory: Gambling", ("set_category", "Gambling", 1), id="listcategory-unquoted"),
    case('#listcategory: ""', id="listcategory-empty"),
    # line ends and the BOM
    case("example.com\r\n", dom("example.com"), id="crlf"),
    case("0.0.0.0 a.com\r\n", dom("a.com"), id="crlf-hosts"),
    case("\ufeffexample.com\n", dom("example.com"), id="bom"),
    case("\ufeff# comment", id="bom-comment"),
    case("\ufeff||example.com^", dom("example.com"), id="bom-adblock"),
    # a stray BOM further down is dropped by the UTS 46 mapping (it maps to nothing)
    case(["example.com", "\ufeffexample.org"], dom("example.com"), dom("example.org", 2),
         id="bom-later-line"),
    # international names, in either form, give one host
    case("bücher.example", dom(XN), id="idn-unicode"),
    case(XN, dom(XN), id="idn-punycode"),
    case("BÜCHER.EXAMPLE", dom(XN), id="idn-upper"),
    case("XN--BCHER-KVA.EXAMPLE", dom(XN), id="idn-punycode-upper"),
    case("||bücher.example^", dom(XN), id="idn-adblock"),
    case("0.0.0.0 bücher.example", dom(XN), id="idn-hosts"),
    case("*.bücher.example.", dom(XN, sub_only=True), id="idn-wildcard-dot"),
    case("exa mple", err("one entry per line"), id="space-inside"),
    # UT1 / SquidGuard kinds
    case("example.com", dom("example.com"), kind="domains", id="domains"),
    case("www.example.com", dom("www.example.com"), kind="domains", id="domains-www-kept"),
    case("203.0.113.7", squidguard(addr("203.0.113.7/32")), kind="domains", id="domains-address"),
    case("example.com/x", err("not a domain"), kind="domains", id="domains-path"),
    case("www.example.com/x", squidguard(url("example.com", None, "/x")), kind="urls", id="urls-www-dropped"),
    case("WWW.Example.com/A/../B", squidguard(url("example.com", None, "/b")), kind="urls",
         id="urls-normalised"),
    case("example.com/x", squidguard(url("example.com", None, "/x")), kind="urls", id="urls"),
    case("www.example.com", squidguard(url("example.com", None, "/")), kind="urls", id="urls-no-path"),
    case("www2.example.com/x", squidguard(url("www2.example.com", None, "/x")), kind="urls",
         id="urls-www2-kept"),
    case(r"(sex|porn)\.", squidguard(rx(r"(sex|porn)\.")), kind="expressions", id="expressions"),
    case(r"ads\d # comment", squidguard(rx(r"ads\d")), kind="expressions", id="expressions-comment"),
    case("[[:alpha:]]+", err("[:alpha:]"), kind="expressions", id="expressions-posix"),
    case("(", err("invalid regular expression"), kind="expressions", id="expressions-invalid"),
    case(r"(^|\.)example\.com$", hrx(r"(^|\.)example\.com$"), kind="hostregex", id="hostregex"),
    case(r"^ad[0-9]+\.", hrx(r"^ad[0-9]+\."), kind="hostregex", id="hostregex-class"),
    case("^ad[[:digit:]]+", err("POSIX class [:digit:]"), kind="hostregex", id="hostregex-posix"),
    case("(?P<x>a", err("invalid regular expression"), kind="hostregex", id="hostregex-invalid"),
    case("# Pi-hole regex list", kind="hostregex", id="hostregex-comment"),
]


@pytest.mark.parametrize(("lines", "kind", "expected"), TABLE)
def test_parse_lines(lines: str | list[str], kind: Kind, expected: list[Call]) -> None:
    assert_calls(parse(lines, kind), expected)


# -- whole files: StevenBlack preamble, line numbers, the rest still loads --------------


STEVENBLACK_PREAMBLE = [
    "# Title: StevenBlack/hosts",
    "#",
    "127.0.0.1 localhost",
    "127.0.0.1 localhost.localdomain",
    "127.0.0.1 local",
    "255.255.255.255 broadcasthost",
    "::1 localhost",
    "::1 ip6-localhost",
    "::1 ip6-loopback",
    "fe80::1%lo0 localhost",
    "ff00::0 ip6-localnet",
    "ff00::0 ip6-mcastprefix",
    "ff02::1 ip6-allnodes",
    "ff02::2 ip6-allrouters",
    "ff02::3 ip6-allhosts",
    "0.0.0.0 0.0.0.0",
    "",
    "# Custom host records are listed here.",
    "0.0.0.0 ads.example # tracker",
]


def test_stevenblack_preamble_is_ignored() -> None:
    assert parse(STEVENBLACK_PREAMBLE) == [dom("ads.example", 19)]


MIXED = [
    "! Title: mixed (no ABP header)",   # 1
    "! comment",                        # 2
    "ads.example",                      # 3
    "https://secure.example/private",   # 4  error
    "||tracker.example^",               # 5
    "/[[:space:]]ads/",                 # 6  error
    "*bad.example",                     # 7  error
    "0.0.0.0 one.example two.example",  # 8
    "example.com:http/x",               # 9  error
    "/(/",                              # 10 error
    "203.0.113.0/24",                   # 11
    "example.org##.ad",                 # 12 skipped
    "shop.example/cart",                # 13
    "@@||ok.example^",                  # 14
    "/ads?/",                           # 15
]


def test_every_error_names_its_line_and_the_rest_loads() -> None:
    assert_calls(parse(MIXED), [
        dom("ads.example", 3),
        err("https://", 4),
        dom("tracker.example", 5),
        err("POSIX", 6),
        err("wildcard", 7),
        dom("one.example", 8),
        dom("two.example", 8),
        err("port", 9),
        err("invalid regular expression", 10),
        addr("203.0.113.0/24", 11),
        skip("cosmetic", 12),
        url("shop.example", None, "/cart", 13),
        dom("ok.example", 14, allow=True),
        rx("ads?", 15),
    ])


def test_adblock_header_makes_other_lines_patterns() -> None:
    assert_calls(parse(["[Adblock Plus 2.0]", "-ad-banner.", ".ashx?adid=", "ads.example",
                        ".ads.example", "203.0.113.9", "shop.example/cart", "0.0.0.0 x.example"]), [
        pat("-ad-banner.", 2), pat(".ashx?adid=", 3), dom("ads.example", 4),
        pat(".ads.example", 5), addr("203.0.113.9/32", 6), pat("shop.example/cart", 7),
        dom("x.example", 8),
    ])


def test_large_hosts_file_every_name_with_its_line() -> None:
    lines = ["# big list"] + [f"0.0.0.0 h{n}.example" for n in range(1, 10_001)]
    lines[5000] = "0.0.0.0 localhost"
    lines[7000] = "0.0.0.0 bad..name"
    calls = parse(lines)
    expected = [dom(f"h{n}.example", n + 1) for n in range(1, 10_001) if n + 1 not in (5001, 7001)]
    assert_calls(calls, [*expected, err("bad..name", 7001)])


@settings(max_examples=300)
@given(address=st.sampled_from(["0.0.0.0", "127.0.0.1", "0.0.0.1"]),
       gap=st.sampled_from([" ", "\t", "  ", " \t"]),
       name=st.text(alphabet="abZ09_-.\u00e9\u0130 \t", min_size=1, max_size=16)
       | st.sampled_from(["localhost", "Example.COM", "a.b..", "x.1", "x.1a", "_a._b"]),
       end=st.sampled_from(["", "\n", " \n", "\t", "\r\n", ".", ".\n"]))
def test_a_hosts_line_reads_the_same_on_the_quick_way_and_the_general_one(
        address: str, gap: str, name: str, end: str) -> None:
    # parse_lines takes "0.0.0.0 name" lines by one regex before its general checks; a
    # trailing comment sends the same line the general way, which must agree.
    line = f"{address}{gap}{name}{end}"
    assert parse([line]) == parse([f"{line.rstrip()} # a comment\n"])


def test_crlf_file_and_bom_keep_line_numbers() -> None:
    text = "\ufeff# list\r\nexample.com\r\n\r\n0.0.0.0 a.com b.com\r\nbad..name\r\nlast.example\r\n"
    assert_calls(parse(text.splitlines(keepends=True)), [
        dom("example.com", 2), dom("a.com", 4), dom("b.com", 4), err("bad..name", 5),
        dom("last.example", 6),
    ])


def test_listcategory_and_include_between_entries() -> None:
    assert parse(["a.example", '#listcategory: "Phishing"', "b.example", ".Include<more.txt>"]) == [
        dom("a.example", 1), ("set_category", "Phishing", 2), dom("b.example", 3),
        ("include", "more.txt", 4),
    ]


@pytest.mark.parametrize("spelling", ["bücher.example", "BÜCHER.example.", XN, "Xn--Bcher-Kva.Example",
                                      "||bücher.example^", "0.0.0.0 bücher.example"])
def test_idn_forms_give_the_same_host(spelling: str) -> None:
    assert parse(spelling) == [dom(XN)]


# -- check_regex ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        (r"(^|\.)ads\.example$", None),
        (r"(?i)ADS", None),
        (r"(a)\1", None),
        ("[[:upper:]]", "[:upper:]"),
        ("[[:xdigit:]]", "[:xdigit:]"),
        ("a{2", None),  # Python reads an unclosed brace as literal text
        ("*a", "invalid regular expression"),
        ("(?<=a+)b", "invalid regular expression"),
    ],
)
def test_check_regex(pattern: str, problem: str | None) -> None:
    found = check_regex(pattern)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


@pytest.mark.parametrize("line", ["http://example.com:8²/x", "http://example.com:①/", "example.com:٣/"])
def test_non_ascii_digits_in_a_port_are_a_reported_error_not_a_crash(line: str) -> None:
    calls = parse(line)
    assert [call[0] for call in calls] == ["error"], calls


@pytest.mark.parametrize(("line", "expected"), [
    ("HTTP://Example.COM/Path/", [url("example.com", None, "/Path/")]),
    ("Http://example.com:8080/x", [url("example.com", 8080, "/x")]),
    ("HTTPS://example.com/x", [err("plain HTTP only")]),
])
def test_url_schemes_are_case_insensitive(line: str, expected: list[Call]) -> None:
    assert_calls(parse(line), expected)
