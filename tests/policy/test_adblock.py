"""AdBlock network patterns: ABP's matching semantics, the host and token index, and the
real EasyList and URLhaus lists Debian ships (webext-ublock-origin-chromium).

Tables: rule lines, URL, expected (allowed, source). ``http://`` URLs are forwarded (the
patterns see them); ``https://`` and ``host:port`` are CONNECT (host only).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fwdproxy.policy.adblock import PatternIndex, _Matcher, _translate, split_options, unjudged_option
from fwdproxy.policy.rulefiles import load_rule_files
from tests.policy.test_engine_rules import as_connection_does, facts_for, make_policy

case = pytest.param
ABP = "[Adblock Plus 2.0]"
ADS = "deny/ads.txt"


def decide(lines: list[str], url: str, allow_lines: list[str] | None = None) -> tuple[bool, str]:
    files = {ADS: lines}
    if allow_lines is not None:
        files["allow/ok.txt"] = allow_lines
    verdict = as_connection_does(make_policy(files), facts_for(url), ("198.51.100.1",))
    return verdict.allowed, verdict.source


OK = (True, "default")


def deny(line: int) -> tuple[bool, str]:
    return False, f"{ADS}:{line}"


def allow(line: int) -> tuple[bool, str]:
    return True, f"{ADS}:{line}"


MATCHING = [
    # host-anchored patterns: the host or a subdomain, at a label boundary
    case(["||ads.example^*/banner/"], "http://ads.example/x/banner/1.gif", deny(1), id="host-wild"),
    case(["||ads.example^*/banner/"], "http://cdn.ads.example/x/banner/", deny(1), id="host-sub"),
    case(["||ads.example^*/banner/"], "http://badads.example/banner/", OK, id="host-label"),
    case(["||ads.example^*/banner/"], "http://ads.example/banners", OK, id="host-no-path"),
    case(["||ads.example/path"], "http://ads.example/path/more", deny(1), id="host-path"),
    case(["||ads.example/path"], "http://ads.example/other", OK, id="host-path-other"),
    case(["||ads.example:8080/x"], "http://ads.example:8080/x", deny(1), id="host-port"),
    case(["||ads.example:8080/x"], "http://ads.example/x", OK, id="host-port-other"),
    case(["|http://ads.example/"], "http://ads.example/a", deny(1), id="start-anchor"),
    case(["|http://ads.example/"], "http://x.ads.example/a", OK, id="start-anchor-exact"),
    case(["||ads*.example^"], "http://ads1.example/", deny(1), id="host-wildcard"),
    # unanchored patterns, by token
    case(["/banner/*/img^"], "http://a.example/banner/x/y/img?x=1", deny(1), id="path-wild"),
    case(["/banner/*/img^"], "http://a.example/banner/x/img", deny(1), id="sep-end"),
    case(["/banner/*/img^"], "http://a.example/banner/x/imgs", OK, id="sep-letter"),
    case(["/banner/*/img^"], "http://a.example/banner/x/img.gif", OK, id="sep-dot"),
    case(["/banner/*/img^"], "http://a.example/banner/x/img_1", OK, id="sep-underscore"),
    case(["/banner/*/img^"], "http://a.example/banner/x/img-1", OK, id="sep-dash"),
    case(["/banner/*/img^"], "http://a.example/banner/x/img%20", OK, id="sep-percent"),
    case(["/banner/*/img^"], "http://a.example/banner/x/img:1", deny(1), id="sep-colon"),
    case([ABP, "-ad-banner."], "http://a.example/top-ad-banner.gif", deny(2), id="substring"),
    case([ABP, ".ashx?AdID="], "http://a.example/x.ashx?adid=1", deny(2), id="case-insensitive"),
    case(["/Ad/*$match-case"], "http://a.example/ad/x", OK, id="match-case-no"),
    case(["/Ad/*$match-case"], "http://a.example/Ad/x", deny(1), id="match-case-yes"),
    case(["/ad.js|"], "http://a.example/ad.js", deny(1), id="end-anchor"),
    case(["/ad.js|"], "http://a.example/ad.js?x", OK, id="end-anchor-more"),
    case([ABP, "*/ad.js*"], "http://a.example/x/ad.jsx", deny(2), id="edge-stars"),
    case([ABP, "&ad_*="], "http://a.example/?x=1&ad_box=2", deny(2), id="fallback-no-token"),
    case(["||a.example/x$important,all"], "http://a.example/x", deny(1), id="judged-options"),
    case(["||a.example/x$third-party"], "http://a.example/x", OK, id="skipped-option"),
    # @@ exceptions: allow beats deny, with the same reach
    case(["/banner/*", "@@||ok.example^*/banner/"], "http://ok.example/x/banner/1", allow(2),
         id="allow-beats"),
    case(["/banner/*", "@@||ok.example^*/banner/"], "http://no.example/banner/1", deny(1), id="allow-reach"),
    case(["@@||ok.example/x", "||ok.example^"], "http://ok.example/x/1", allow(1), id="allow-beats-domain"),
    case(["@@||ok.example/x", "||ok.example^"], "http://ok.example/y", deny(2), id="allow-path-only"),
    case(["@@||ok.example/x", "||ok.example^"], "ok.example:443", deny(2), id="allow-path-not-connect"),
    # CONNECT: only the host is seen, so a pattern with a path never blocks a whole host
    case(["||ads.example^*/banner/"], "ads.example:443", OK, id="connect-path"),
    case(["||ads.example/path"], "ads.example:443", OK, id="connect-host-path"),
    case(["||ads.example^"], "x.ads.example:443", deny(1), id="connect-domain"),
    # addresses between || and ^
    case(["||203.0.113.7^"], "http://203.0.113.7/x", deny(1), id="ip-literal"),
    case(["||203.0.113.7^"], "203.0.113.7:443", deny(1), id="ip-connect"),
    case(["||203.0.113.7^"], "http://name.example/", OK, id="ip-other"),
]


@pytest.mark.parametrize(("lines", "url", "expected"), MATCHING)
def test_matching(lines: list[str], url: str, expected: tuple[bool, str]) -> None:
    assert decide(lines, url) == expected


def test_address_rule_applies_to_resolved_addresses() -> None:
    verdict = as_connection_does(make_policy({ADS: ["||203.0.113.7^"]}),
                                 facts_for("name.example:443"), ("203.0.113.7",))
    assert (verdict.allowed, verdict.source) == deny(1)


def test_allow_file_pattern_beats_deny() -> None:
    assert decide(["/banner/*"], "http://a.example/x/banner/x", ["||a.example^*/banner/"]) == (
        True, "allow/ok.txt:1")


def test_verdict_names_the_pattern() -> None:
    verdict = make_policy({ADS: ["||a.example^*/ads/"]}).decide(facts_for("http://a.example/x/ads/1"))
    assert verdict.rule == "AdBlock pattern ||a.example^*/ads/"


@pytest.mark.parametrize(("text", "pattern", "options", "unjudged"), [
    ("/ads/$script,domain=a.com|b.com", "/ads/", ["script", "domain"], "script"),
    ("||a.example^$~third-party", "||a.example^", ["~third-party"], "~third-party"),
    ("/ads$/", "/ads$/", [], None),
    ("||a^$match-case,important", "||a^", ["match-case", "important"], None),
    ("$csp=default-src 'self'", "", ["csp"], "csp"),
])
def test_options(text: str, pattern: str, options: list[str], unjudged: str | None) -> None:
    assert split_options(text) == (pattern, options)
    assert unjudged_option(options) == unjudged


def test_index_files_by_host_token_or_fallback() -> None:
    index = PatternIndex()
    for line, pattern in enumerate(["||a.example^*/x", "|http://b.example/", "/banner/*/img^",
                                    "ad*x", "||ads."], 1):
        index.add(pattern, 0, line)
    assert set(index.by_host) == {"a.example", "b.example"}
    assert set(index.by_token) == {"banner", "ads"}
    assert [e.text for e in index.fallback] == ["ad*x"]
    # only the host's and the URL's tokens' patterns are tried
    tried = [e.text for e in index.candidates("c.a.example", "http://c.a.example/img")]
    assert tried == ["||a.example^*/x", "ad*x"]


# -- the real lists, as a new user downloads them ---------------------------------------

THIRDPARTIES = Path("/usr/share/chromium/extensions/ublock-origin/assets/thirdparties")
EASYLIST = THIRDPARTIES / "easylist" / "easylist.txt"
URLHAUS = THIRDPARTIES / "urlhaus-filter" / "urlhaus-filter-online.txt"
real_lists = pytest.mark.skipif(
    not (EASYLIST.is_file() and URLHAUS.is_file()),
    reason="needs Debian's webext-ublock-origin-chromium (apt-get install "
           "webext-ublock-origin-chromium; .ci/run installs it)")


def line_number(path: Path, text: str) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line == text:
            return number
    pytest.skip(f"{path.name} no longer holds {text!r}")


@pytest.fixture(scope="module")
def real_policy(tmp_path_factory: pytest.TempPathFactory) -> object:
    root = tmp_path_factory.mktemp("rules")
    (root / "deny").mkdir()
    (root / "deny" / "easylist.txt").write_bytes(EASYLIST.read_bytes())
    (root / "deny" / "urlhaus.txt").write_bytes(URLHAUS.read_bytes())
    return load_rule_files(root)


@real_lists
def test_real_lists_load_without_errors(real_policy: object) -> None:
    rules = real_policy
    assert rules.errors == []  # type: ignore[attr-defined]
    skipped = rules.skipped  # type: ignore[attr-defined]
    assert skipped["adblock cosmetic filter"] > 1000
    assert skipped["adblock option $third-party"] > 100
    assert all(r == "adblock cosmetic filter" or r.startswith("adblock option $") for r in skipped)


@real_lists
@pytest.mark.parametrize(("file", "line", "url", "allowed"), [
    ("easylist", ".ashx?AdID=", "http://news.example/x.ashx?adid=7", False),
    ("easylist", "||beehiiv.com^*/ad_network/", "http://cdn.beehiiv.com/v1/ad_network/x.js", False),
    ("easylist", "||beehiiv.com^*/ad_network/", "cdn.beehiiv.com:443", True),
    ("easylist", "/js/flyad.js", "http://shop.example/js/flyad.js", False),
    ("easylist", "||0014b04291.com^", "0014b04291.com:443", False),
    ("easylist", "@@||adap.tv/redir/javascript/vpaid.js", "http://adap.tv/redir/javascript/vpaid.js", True),
    ("urlhaus", "1.1.104.12", "http://1.1.104.12/bins/x", False),
    ("urlhaus", "||2024.sci-hub.se/2294/7a43bb4cf6c57229b02a9604a1f4614e/skidmore1966.pdf^$all",
     "http://2024.sci-hub.se/2294/7a43bb4cf6c57229b02a9604a1f4614e/skidmore1966.pdf", False),
])
def test_real_lines_do_what_they_say(real_policy: object, file: str, line: str, url: str,
                                     allowed: bool) -> None:
    from fwdproxy.policy import Policy
    from fwdproxy.policy.index import RuleSet
    assert isinstance(real_policy, RuleSet)
    policy = make_policy({}).with_rules(real_policy, None)
    assert isinstance(policy, Policy)
    verdict = as_connection_does(policy, facts_for(url), ("198.51.100.1",))
    assert verdict.allowed is allowed
    if not (allowed and url.endswith(":443")):
        number = line_number(EASYLIST if file == "easylist" else URLHAUS, line)
        assert verdict.source == f"deny/{file}.txt:{number}"


# -- the segment matcher against the one-regex reading ------------------------------------

_PATTERN = st.builds(
    lambda start, body, end: start + body + end,
    st.sampled_from(["", "|", "||"]), st.text("ab.*^/", min_size=1, max_size=8),
    st.sampled_from(["", "|"]))
_URL = st.builds(lambda host, path: f"http://{host}/{path}",
                 st.text("ab.", min_size=1, max_size=8), st.text("ab./?", max_size=12))


@settings(max_examples=3000, deadline=None)
@given(_PATTERN, _URL)
def test_the_segment_matcher_agrees_with_one_regex(pattern: str, url: str) -> None:
    reference = re.compile(_translate(pattern), re.IGNORECASE).search(url) is not None
    assert _Matcher(pattern, re.IGNORECASE).search(url) == reference


@pytest.mark.parametrize(("pattern", "url", "expected"), [
    ("||a*b", "http://a.xb.a.c/", True),  # the first label "a", then "xb": not the last "a"
    ("/ad*b*c*d^", "http://h/" + "/ad" * 20000, False),  # linear: no backtracking blow-up
    ("/ad*b*c*d^", "http://h/" + "/ad" * 20000 + "bcd", True),
])
def test_the_segment_matcher(pattern: str, url: str, expected: bool) -> None:
    assert _Matcher(pattern, re.IGNORECASE).search(url) is expected
