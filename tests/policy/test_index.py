"""policy/index.py: RuleSetBuilder → RuleSet, and what each lookup answers.

Rule sets are built from in-memory "files" (path → lines) through the real parser. Tables
name the request and the sources ("deny/ads.txt:3") that must match. One hypothesis
property checks match_domain against a plain Python set of names.
"""

from __future__ import annotations

import ipaddress
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fwdproxy.policy.index import ListFile, Match, RuleSet, RuleSetBuilder
from fwdproxy.policy.rules import DOMAIN_AND_SUBDOMAINS, SUBDOMAINS_ONLY, Kind, parse_lines

ip = ipaddress.ip_address


def build(files: dict[str, list[str]]) -> RuleSet:
    """A rule set from ``{"deny/ads.txt": [lines]}``; UT1 files as ``deny/adult/urls``."""
    builder = RuleSetBuilder()
    for path, lines in files.items():
        action, name, *rest = path.split("/")
        kind: Kind = "list"
        if rest:
            category, kind = name, rest[0]  # type: ignore[assignment]
        elif name.endswith(".regex"):
            category, kind = name.removesuffix(".regex"), "hostregex"
        else:
            category = name.removesuffix(".txt")
        assert action in ("allow", "deny")
        builder.begin_file(path, category, action)  # type: ignore[arg-type]
        parse_lines(lines, builder, kind)
    return builder.build()


def sources(matches: list[Match]) -> list[str]:
    return [m.source for m in matches]


# -- match_domain ---------------------------------------------------------------------

DOMAINS = build({
    "deny/ads.txt": [
        "ads.example",              # 1
        "*.cdn.example",            # 2
        "||tracker.example^",       # 3
        "@@||ok.ads.example^",      # 4
        "0.0.0.0 hosts.example",    # 5
        "bücher.example",           # 6
    ],
    "deny/social.txt": ["social.example", "ads.example"],
    "allow/work.txt": ["work.ads.example"],
})


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("ads.example", ["deny/ads.txt:1", "deny/social.txt:2"]),
        ("x.y.ads.example", ["deny/ads.txt:1", "deny/social.txt:2"]),
        ("notads.example", []),
        ("ads.example.org", []),
        ("example", []),
        ("cdn.example", []),                       # subdomains only: never the domain itself
        ("a.cdn.example", ["deny/ads.txt:2"]),
        ("a.b.cdn.example", ["deny/ads.txt:2"]),
        ("xcdn.example", []),
        ("tracker.example", ["deny/ads.txt:3"]),
        ("pixel.tracker.example", ["deny/ads.txt:3"]),
        ("hosts.example", ["deny/ads.txt:5"]),
        ("xn--bcher-kva.example", ["deny/ads.txt:6"]),
        ("social.example", ["deny/social.txt:1"]),
    ],
)
def test_match_domain(host: str, expected: list[str]) -> None:
    assert sorted(sources(DOMAINS.match_domain(host))) == expected


def test_match_domain_categories_and_actions() -> None:
    found = {(m.source, m.action, m.category) for m in DOMAINS.match_domain("x.ok.ads.example")}
    assert found == {
        ("deny/ads.txt:1", "deny", "ads"),
        ("deny/ads.txt:4", "allow", "ads"),      # @@ inside a deny file: an allow entry
        ("deny/social.txt:2", "deny", "social"),
    }
    work = {(m.source, m.action, m.category) for m in DOMAINS.match_domain("work.ads.example")}
    assert ("allow/work.txt:1", "allow", "work") in work


def test_match_domain_rule_text() -> None:
    [match] = DOMAINS.match_domain("a.cdn.example")
    assert match == Match("deny", "ads", "deny/ads.txt:2", "subdomains of cdn.example")
    [match] = DOMAINS.match_domain("pixel.tracker.example")
    assert match.rule == "tracker.example and its subdomains"


def test_empty_rule_set_matches_nothing() -> None:
    rules = build({})
    assert rules.match_domain("example.com") == []
    assert rules.match_address(ip("203.0.113.7")) == []
    assert rules.match_url("example.com", 80, "/", "http://example.com/") == []
    assert rules.match_host_regex("example.com") == []
    assert not rules.has_address_rules


# -- match_address --------------------------------------------------------------------

ADDRESSES = build({
    "deny/nets.txt": [
        "203.0.113.0/24",           # 1
        "198.51.100.7",             # 2
        "2001:db8::/32",            # 3
        "::ffff:10.0.0.0/104",      # 4  IPv4-mapped: 10.0.0.0/8
        "2130706433",               # 5  127.0.0.1
        "2001:db8:1::/48",          # 6
    ],
    "allow/lan.txt": ["203.0.113.128/25"],
})


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("203.0.113.1", ["deny/nets.txt:1"]),
        ("203.0.113.200", ["allow/lan.txt:1", "deny/nets.txt:1"]),
        ("203.0.114.1", []),
        ("198.51.100.7", ["deny/nets.txt:2"]),
        ("198.51.100.8", []),
        ("2001:db8::1", ["deny/nets.txt:3"]),
        ("2001:db8:1::5", ["deny/nets.txt:3", "deny/nets.txt:6"]),
        ("2001:db9::1", []),
        ("10.1.2.3", ["deny/nets.txt:4"]),
        ("::ffff:10.1.2.3", ["deny/nets.txt:4"]),          # IPv4-mapped query
        ("::ffff:203.0.113.9", ["deny/nets.txt:1"]),
        ("127.0.0.1", ["deny/nets.txt:5"]),
        ("::ffff:127.0.0.1", ["deny/nets.txt:5"]),
        ("::1", []),
    ],
)
def test_match_address(address: str, expected: list[str]) -> None:
    assert sorted(sources(ADDRESSES.match_address(ip(address)))) == expected


def test_match_address_rule_text_and_flag() -> None:
    [match] = ADDRESSES.match_address(ip("198.51.100.7"))
    assert match == Match("deny", "nets", "deny/nets.txt:2", "address 198.51.100.7/32")
    assert ADDRESSES.has_address_rules
    assert not DOMAINS.has_address_rules


# -- match_url: prefixes and regexes ---------------------------------------------------

URLS = build({
    "deny/paths.txt": [
        "shop.example/private/",       # 1
        "shop.example:8080/admin",     # 2
        "www.blog.example/drafts",     # 3  a list file keeps www.
        "203.0.113.7/cgi-bin/",        # 4
    ],
    "deny/adult/urls": [
        "www.mixed.example/adult/",    # 1  a urls file drops www.
        "news.example/x/../nsfw",      # 2  normalised: /nsfw
    ],
    "deny/regexes.txt": [
        r"/\/ads\//",                  # 1
        r"/[?&]utm_source=/",          # 2
        r"/(?i)banner[0-9]+\.gif/",    # 3  flags scoped when combined
        r"/\/(\w+)\/\1\//",            # 4  back-reference: compiled on its own
        r"/(?P<w>doubled)-(?P=w)/",    # 5  named back-reference
        r"/^http:\/\/tracker\./",      # 6
    ],
    "deny/adult/expressions": [r"(porn|xxx)\."],
})


def url_sources(host: str, port: int, path: str) -> list[str]:
    shown = host if port == 80 else f"{host}:{port}"
    return sorted(sources(URLS.match_url(host, port, path, f"http://{shown}{path}")))


@pytest.mark.parametrize(
    ("host", "port", "path", "expected"),
    [
        ("shop.example", 80, "/private/cart", ["deny/paths.txt:1"]),
        ("shop.example", 8443, "/private/", ["deny/paths.txt:1"]),      # no port: any port
        ("shop.example", 80, "/private", []),
        ("shop.example", 80, "/public/", []),
        ("www.shop.example", 80, "/private/x", ["deny/paths.txt:1"]),    # www. host
        ("other.shop.example", 80, "/private/x", []),                    # prefixes are per host
        ("shop.example", 8080, "/admin/users", ["deny/paths.txt:2"]),
        ("shop.example", 80, "/admin/users", []),                        # port given: that port
        ("blog.example", 80, "/drafts/1", []),
        ("www.blog.example", 80, "/drafts/1", ["deny/paths.txt:3"]),
        ("203.0.113.7", 80, "/cgi-bin/x", ["deny/paths.txt:4"]),
        ("mixed.example", 80, "/adult/a", ["deny/adult/urls:1"]),
        ("www.mixed.example", 80, "/adult/a", ["deny/adult/urls:1"]),
        ("mixed.example", 80, "/kids/", []),
        ("news.example", 80, "/nsfw/1", ["deny/adult/urls:2"]),
        # regexes: the line of the expression that matched, per file
        ("a.example", 80, "/ads/1.js", ["deny/regexes.txt:1"]),
        ("a.example", 80, "/p?utm_source=x", ["deny/regexes.txt:2"]),
        ("a.example", 80, "/img/BANNER12.GIF", ["deny/regexes.txt:3"]),
        ("a.example", 80, "/img/banner12.gif", ["deny/regexes.txt:3"]),
        ("a.example", 80, "/same/same/x", ["deny/regexes.txt:4"]),
        ("a.example", 80, "/same/other/x", []),
        ("a.example", 80, "/doubled-doubled", ["deny/regexes.txt:5"]),
        ("a.example", 80, "/doubled-single", []),
        ("tracker.example", 80, "/", ["deny/regexes.txt:6"]),
        ("porn.example", 80, "/", ["deny/adult/expressions:1"]),
        ("clean.example", 80, "/index.html", []),
    ],
)
def test_match_url(host: str, port: int, path: str, expected: list[str]) -> None:
    assert url_sources(host, port, path) == expected


def test_match_url_two_files_both_report() -> None:
    found = {(m.source, m.category) for m in
             URLS.match_url("porn.example", 80, "/ads/", "http://porn.example/ads/")}
    assert found == {("deny/regexes.txt:1", "regexes"), ("deny/adult/expressions:1", "adult")}


def test_match_url_rule_text() -> None:
    [prefix] = URLS.match_url("shop.example", 8080, "/admin", "http://shop.example:8080/admin")
    assert prefix.rule == "URL prefix shop.example:8080/admin"
    [regex] = URLS.match_url("a.example", 80, "/ads/", "http://a.example/ads/")
    assert regex.rule == "URL regex"


def test_regex_flags_stay_scoped_to_their_own_expression() -> None:
    rules = build({"deny/r.txt": ["/(?i)^HTTP:/", "/CASE/"]})
    assert sources(rules.match_url("a.example", 80, "/case", "http://a.example/case")) == ["deny/r.txt:1"]
    assert rules.match_url("a.example", 80, "/case", "ftp://a.example/case") == []
    assert sources(rules.match_url("a.example", 80, "/CASE", "ftp://a.example/CASE")) == ["deny/r.txt:2"]


def test_many_regexes_each_report_their_own_line() -> None:
    lines = [f"/\\/page{n}$/" for n in range(1, 41)]
    rules = build({"deny/many.txt": ["# header", *lines]})
    for n in range(1, 41):
        path = f"/page{n}"
        assert sources(rules.match_url("a.example", 80, path, f"http://a.example{path}")) == [
            f"deny/many.txt:{n + 1}"]


def test_regex_with_conditional_group_reference() -> None:
    rules = build({"deny/r.txt": ["/nothing-here/", r"/^http:\/\/(<)?x(?(1)>|)$/"]})
    assert sources(rules.match_url("x", 80, "/", "http://<x>")) == ["deny/r.txt:2"]
    assert rules.match_url("x", 80, "/", "http://<x") == []


def test_verbose_regex_with_comment() -> None:
    rules = build({"deny/r.txt": ["/(?x)ads#the-ad-folder/", "/other/"]})
    assert sources(rules.match_url("a", 80, "/ads", "http://a/ads")) == ["deny/r.txt:1"]


# -- match_host_regex -----------------------------------------------------------------

HOST_REGEXES = build({
    "deny/malware.regex": [r"(^|\.)evil\.example$", r"^ad[0-9]+\.", "# comment", r"(?i)^TRACK"],
    "deny/other.regex": [r"\.example$"],
})


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("evil.example", ["deny/malware.regex:1", "deny/other.regex:1"]),
        ("a.evil.example", ["deny/malware.regex:1", "deny/other.regex:1"]),
        ("notevil.example", ["deny/other.regex:1"]),
        ("ad12.site.org", ["deny/malware.regex:2"]),
        ("tracking.site.org", ["deny/malware.regex:4"]),
        ("good.org", []),
    ],
)
def test_match_host_regex(host: str, expected: list[str]) -> None:
    found = HOST_REGEXES.match_host_regex(host)
    assert sorted(sources(found)) == expected
    assert all(m.rule == "host regex" and m.action == "deny" for m in found)


def test_host_regexes_are_not_url_regexes() -> None:
    assert HOST_REGEXES.match_url("evil.example", 80, "/", "http://evil.example/") == []
    assert URLS.match_host_regex("tracker.example") == []


# -- counts, categories, files, errors ------------------------------------------------


def test_counts_and_categories() -> None:
    rules = build({
        "deny/ads.txt": ["a.example", "b.example", "@@||c.example^", "203.0.113.0/24",
                         "x.example/p", "/re/", "bad..name", "||x.example^$script"],
        "deny/adult/domains": ["porn.example"],
        "deny/adult/urls": ["www.porn.example/x"],
        "deny/evil.regex": ["^evil"],
        "allow/work.txt": ["work.example", "0.0.0.0 one.example two.example"],
    })
    assert rules.counts == Counter({
        ("deny", "ads"): 5, ("allow", "ads"): 1, ("deny", "adult"): 2, ("deny", "evil"): 1,
        ("allow", "work"): 3,
    })
    assert rules.domain_count == 7
    assert rules.categories("deny") == {"ads", "adult", "evil"}
    assert rules.categories("allow") == {"ads", "work"}  # the @@ entry's file
    assert rules.skipped == Counter({"adblock option $script": 1})
    assert ListFile("deny/ads.txt", "ads", "deny") in rules.files
    assert ListFile("deny/ads.txt", "ads", "allow") in rules.files


def test_errors_name_file_and_line() -> None:
    rules = build({
        "deny/ads.txt": ["ok.example", "https://x.example/p", "ok2.example", "/[[:space:]]/"],
        "allow/work.txt": ["", "*bad.example"],
        "deny/adult/domains": ["a.example", "b.example/path"],
        "deny/evil.regex": ["("],
    })
    assert len(rules.errors) == 5
    assert rules.errors[0].startswith("deny/ads.txt:2: ")
    assert rules.errors[1].startswith("deny/ads.txt:4: POSIX class")
    assert rules.errors[2].startswith("allow/work.txt:2: ")
    assert rules.errors[3].startswith("deny/adult/domains:2: ")
    assert rules.errors[4].startswith("deny/evil.regex:1: invalid regular expression")
    assert sources(rules.match_domain("ok2.example")) == ["deny/ads.txt:3"]


def test_listcategory_renames_the_rest_of_the_file() -> None:
    rules = build({"deny/e2g.txt": ["first.example", '#listcategory: "Phishing"', "second.example"]})
    [first] = rules.match_domain("first.example")
    [second] = rules.match_domain("second.example")
    assert (first.category, first.source) == ("e2g", "deny/e2g.txt:1")
    assert (second.category, second.source) == ("Phishing", "deny/e2g.txt:3")
    assert rules.categories("deny") == {"e2g", "Phishing"}


def test_listcategory_does_not_rename_hosts_lines_above_it() -> None:
    rules = build({"deny/e2g.txt": ["0.0.0.0 first.example", '#listcategory: "Phishing"',
                                    "0.0.0.0 second.example"]})
    [first] = rules.match_domain("first.example")
    [second] = rules.match_domain("second.example")
    assert (second.category, second.source) == ("Phishing", "deny/e2g.txt:3")
    assert (first.category, first.source) == ("e2g", "deny/e2g.txt:1")


def test_builder_records_includes() -> None:
    builder = RuleSetBuilder()
    builder.begin_file("deny/e2g.txt", "e2g", "deny")
    parse_lines(["a.example", ".Include<more/list>"], builder)
    assert builder.includes == [("more/list", 2)]


# -- hypothesis: match_domain against a set ---------------------------------------------

# Few, short labels, so that generated names often share parents ("b.ab" and "ab.ab")
# and differ by a prefix without a dot ("ab.c" against "b.c").
_LABEL = st.sampled_from(["a", "b", "ab", "ba", "c", "xn--bcher-kva", "_x", "a-b"])
_NAME = st.lists(_LABEL, min_size=1, max_size=4).map(".".join)


def _parents(host: str) -> list[str]:
    labels = host.split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


@given(st.lists(st.tuples(_NAME, st.booleans()), max_size=25), st.lists(_NAME, min_size=1, max_size=10),
       st.booleans())
def test_match_domain_is_a_parent_lookup(entries: list[tuple[str, bool]], hosts: list[str],
                                         bulk: bool) -> None:
    builder = RuleSetBuilder()
    builder.begin_file("deny/gen.txt", "gen", "deny")
    batch: tuple[list[str], list[int]] = ([], [])
    for line, (name, sub_only) in enumerate(entries, 1):
        if bulk and not sub_only:  # the parser's bulk path for plain hosts-file names
            batch[0].append(name)
            batch[1].append(line)
        else:
            builder.domain(name, SUBDOMAINS_ONLY if sub_only else DOMAIN_AND_SUBDOMAINS, line)
    if batch[0]:
        builder.domains(*batch)
    rules = builder.build()
    assert rules.domain_count == len(entries)
    assert rules.counts[("deny", "gen")] == len(entries)
    whole = {name for name, sub_only in entries if not sub_only}
    below = {name for name, sub_only in entries if sub_only}
    for host in [*hosts, *(name for name, _ in entries)]:
        parents = _parents(host)
        expected = sorted(
            f"deny/gen.txt:{line}" for line, (name, sub_only) in enumerate(entries, 1)
            if (name in parents and not sub_only) or (name in parents[1:] and sub_only)
        )
        found = rules.match_domain(host)
        assert sorted(sources(found)) == expected
        assert bool(found) == (any(p in whole for p in parents) or any(p in below for p in parents[1:]))
