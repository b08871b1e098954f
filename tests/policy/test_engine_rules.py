"""policy/engine.py with rules: Policy.decide / decide_address over a RuleSet and policy.yaml.

Pure: rule files are in-memory line lists fed to the real parser, policy.yaml is parsed
from text, the time is injected through RequestFacts.now, and requests are parsed with
target.parse_target and normalize_path exactly as connection.py does. Tables give
(rules, policy, request) → (allowed, source, category, policy name). Hypothesis
properties check that no other spelling of a blocked URL gets another verdict.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from fwdproxy.policy import Policy, PortRange, RequestFacts, Verdict
from fwdproxy.policy.engine import IPNetwork
from fwdproxy.policy.index import RuleSet, RuleSetBuilder
from fwdproxy.policy.names import IPAddress, normalize_path
from fwdproxy.policy.policyfile import parse_policies
from fwdproxy.policy.rules import Kind, parse_lines
from fwdproxy.proxy.target import parse_target

ip = ipaddress.ip_address
Files = dict[str, list[str]]


def build_rules(files: Files) -> RuleSet:
    """``{"deny/ads.txt": [...], "deny/adult/urls": [...]}`` → RuleSet, as rulefiles would."""
    builder = RuleSetBuilder()
    for path, lines in files.items():
        action, name, *rest = path.split("/")
        kind: Kind = "list"
        category = name.removesuffix(".txt")
        if rest:
            kind = rest[0]  # type: ignore[assignment]
        elif name.endswith(".regex"):
            category, kind = name.removesuffix(".regex"), "hostregex"
        builder.begin_file(path, category, action)  # type: ignore[arg-type]
        parse_lines(lines, builder, kind)
    return builder.build()


def make_policy(files: Files, policy_yaml: str | None = None, *,
                deny_destinations: tuple[str, ...] = (), deny_local: bool = False,
                connect_ports: tuple[PortRange, ...] = (PortRange(1, 65535),),
                listeners: tuple[tuple[IPAddress | None, int], ...] = ()) -> Policy:
    rules = build_rules(files)
    policies = None
    if policy_yaml is not None:
        policies = parse_policies(policy_yaml, path="policy.yaml",
                                  deny_categories=rules.categories("deny"),
                                  allow_categories=rules.categories("allow"), yaml_module=yaml)
    networks: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n) for n in deny_destinations)
    return Policy(clients=(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")),
                  connect_ports=connect_ports, deny_destinations=networks, deny_local=deny_local,
                  listeners=listeners, rules=rules, policies=policies)


def facts_for(url: str, client: str = "10.9.9.9", now: datetime | None = None) -> RequestFacts:
    """The facts connection.py gathers: ``http://...`` is forwarded, anything else is CONNECT."""
    connect = not url.lower().startswith("http://")
    target = parse_target(b"CONNECT" if connect else b"GET", url.encode("ascii"))
    path = None if connect else normalize_path(target.path.decode("latin-1"))
    return RequestFacts(
        client=ip(client), method="CONNECT" if connect else "GET",
        scheme="connect" if connect else "http", host=target.host, port=target.port,
        ip=target.ip, path=path, url=None if connect else f"http://{target.host_header}{path}",
        now=now,
    )


def as_connection_does(policy: Policy, facts: RequestFacts, resolved: tuple[str, ...] = ()) -> Verdict:
    """Decide by name; when allowed, vet every address (the literal, or `resolved`): allowed
    when one address is, else the last denial (connection._vetted_addresses)."""
    verdict = policy.decide(facts)
    if not verdict.allowed:
        return verdict
    addresses = [facts.ip] if facts.ip is not None else [ip(a) for a in resolved]
    denial = None
    for address in addresses:
        checked = policy.decide_address(facts, address, is_local=False, by_name=verdict)
        if checked.allowed:
            return checked
        denial = checked
    return denial or verdict


def summary(verdict: Verdict) -> tuple[bool, str, str | None, str | None]:
    return verdict.allowed, verdict.source, verdict.category, verdict.policy


# -- rules and policies -------------------------------------------------------------------

FILES: Files = {
    "deny/ads.txt": ["ads.example", "||tracker.example^", "@@||good.ads.example^"],
    "deny/social.txt": ["social.example"],
    "deny/games.txt": ["games.example", "games-edu.example"],
    "deny/education.txt": ["games-edu.example"],
    "deny/adult/domains": ["adult.example"],
    "deny/adult/urls": ["www.mixed.example/adult/"],
    "deny/adult/expressions": [r"\/nsfw\/"],
    "allow/work.txt": ["work.ads.example"],
}

POLICY = """\
timezone: UTC
groups:
  staff: [10.0.1.0/24]
  pupils: [10.0.2.0/23]
  guests: [192.168.50.0/24]
policies:
  - name: staff-lunch
    clients: [staff]
    when: {days: mon-fri, hours: "12:00-13:30"}
    deny: [ads, adult]
    default: allow
  - name: staff
    clients: [staff]
    deny: [ads, adult, social]
    default: allow
  - name: pupils
    clients: [pupils]
    deny: [ads, adult, social, games]
    allow: [education]
    default: allow
  - name: guests
    clients: [guests]
    deny: ["*"]
    default: allow
  - name: everyone-else
    clients: [0.0.0.0/0, "::/0"]
    default: deny
"""
EVERYONE_ELSE = "policy.yaml:25"

STAFF, PUPIL, GUEST, OTHER = "10.0.1.5", "10.0.2.15", "192.168.50.9", "172.16.0.1"
MON_LUNCH = datetime(2024, 1, 8, 12, 30, tzinfo=UTC)      # a Monday
MON_AFTERNOON = datetime(2024, 1, 8, 15, 0, tzinfo=UTC)
SAT_LUNCH = datetime(2024, 1, 13, 12, 30, tzinfo=UTC)

NO_POLICY_ROWS = [
    ("http://ads.example/", (False, "deny/ads.txt:1", "ads", None)),
    ("http://x.y.ADS.example./p", (False, "deny/ads.txt:1", "ads", None)),
    ("ads.example:443", (False, "deny/ads.txt:1", "ads", None)),
    ("http://notads.example/", (True, "default", None, None)),
    ("http://tracker.example/", (False, "deny/ads.txt:2", "ads", None)),
    ("http://good.ads.example/", (True, "deny/ads.txt:3", "ads", None)),   # @@ in a deny file
    ("http://x.good.ads.example/", (True, "deny/ads.txt:3", "ads", None)),
    ("http://work.ads.example/", (True, "allow/work.txt:1", "work", None)),  # allow/ beats deny/
    ("work.ads.example:443", (True, "allow/work.txt:1", "work", None)),
    ("http://social.example/", (False, "deny/social.txt:1", "social", None)),
    ("http://adult.example/", (False, "deny/adult/domains:1", "adult", None)),
    ("http://mixed.example/adult/x", (False, "deny/adult/urls:1", "adult", None)),
    ("http://www.mixed.example/adult/", (False, "deny/adult/urls:1", "adult", None)),
    ("http://mixed.example/kids/", (True, "default", None, None)),
    ("mixed.example:443", (True, "default", None, None)),    # URL rules: plain HTTP only
    ("http://videos.example/a/nsfw/b", (False, "deny/adult/expressions:1", "adult", None)),
]


@pytest.mark.parametrize(("url", "expected"), NO_POLICY_ROWS)
def test_without_policy_every_deny_category_blocks(
        url: str, expected: tuple[bool, str, str | None, str | None]) -> None:
    policy = make_policy(FILES)
    assert summary(as_connection_does(policy, facts_for(url), ("198.51.100.1",))) == expected


POLICY_ROWS = [
    # staff: social media over lunch on weekdays only
    (STAFF, MON_LUNCH, "http://social.example/", (True, "default", None, "staff-lunch")),
    (STAFF, MON_AFTERNOON, "http://social.example/", (False, "deny/social.txt:1", "social", "staff")),
    (STAFF, SAT_LUNCH, "http://social.example/", (False, "deny/social.txt:1", "social", "staff")),
    (STAFF, MON_LUNCH, "http://ads.example/", (False, "deny/ads.txt:1", "ads", "staff-lunch")),
    (STAFF, MON_LUNCH, "http://good.ads.example/", (True, "deny/ads.txt:3", "ads", "staff-lunch")),
    (STAFF, MON_AFTERNOON, "http://games.example/", (True, "default", None, "staff")),
    (STAFF, MON_AFTERNOON, "http://mixed.example/adult/", (False, "deny/adult/urls:1", "adult", "staff")),
    # pupils: education beats games
    (PUPIL, MON_LUNCH, "http://games.example/", (False, "deny/games.txt:1", "games", "pupils")),
    (PUPIL, MON_LUNCH, "http://games-edu.example/",
     (True, "deny/education.txt:1", "education", "pupils")),
    (PUPIL, MON_LUNCH, "http://social.example/", (False, "deny/social.txt:1", "social", "pupils")),
    (PUPIL, MON_LUNCH, "http://work.ads.example/", (True, "allow/work.txt:1", "work", "pupils")),
    # guests: "*" is every deny/ category, UT1 folders included
    (GUEST, MON_LUNCH, "http://games.example/", (False, "deny/games.txt:1", "games", "guests")),
    (GUEST, MON_LUNCH, "http://adult.example/", (False, "deny/adult/domains:1", "adult", "guests")),
    (GUEST, MON_LUNCH, "http://notads.example/", (True, "default", None, "guests")),
    # everyone else: default deny, only allow entries pass
    (OTHER, MON_LUNCH, "http://notads.example/", (False, EVERYONE_ELSE, None, "everyone-else")),
    (OTHER, MON_LUNCH, "notads.example:443", (False, EVERYONE_ELSE, None, "everyone-else")),
    (OTHER, MON_LUNCH, "http://ads.example/", (False, EVERYONE_ELSE, None, "everyone-else")),
    (OTHER, MON_LUNCH, "http://work.ads.example/", (True, "allow/work.txt:1", "work", "everyone-else")),
    (OTHER, MON_LUNCH, "http://good.ads.example/", (True, "deny/ads.txt:3", "ads", "everyone-else")),
]


@pytest.mark.parametrize(("client", "now", "url", "expected"), POLICY_ROWS)
def test_policy_yaml_by_client_and_time(client: str, now: datetime, url: str,
                                        expected: tuple[bool, str, str | None, str | None]) -> None:
    policy = make_policy(FILES, POLICY)
    assert summary(as_connection_does(policy, facts_for(url, client, now), ("198.51.100.1",))) == expected


@pytest.mark.parametrize(("client", "policy_yaml"), [(OTHER, None), (GUEST, POLICY)])
def test_a_name_in_two_deny_categories_is_denied_by_one_of_them(client: str, policy_yaml: str | None) -> None:
    policy = make_policy(FILES, policy_yaml)
    verdict = policy.decide(facts_for("http://games-edu.example/", client, MON_LUNCH))
    assert not verdict.allowed
    assert (verdict.source, verdict.category) in {("deny/games.txt:2", "games"),
                                                  ("deny/education.txt:1", "education")}
    assert {m.source for m in verdict.matches} == {"deny/games.txt:2", "deny/education.txt:1"}


def test_policy_windows_are_in_the_policy_time_zone() -> None:
    paris = POLICY.replace("timezone: UTC", "timezone: Europe/Paris")
    policy = make_policy(FILES, paris)
    at_1230_utc = facts_for("http://social.example/", STAFF, MON_LUNCH)   # 13:30 Paris: over
    at_1115_utc = facts_for("http://social.example/", STAFF, datetime(2024, 1, 8, 11, 15, tzinfo=UTC))
    assert policy.decide(at_1230_utc).policy == "staff"
    assert policy.decide(at_1115_utc).policy == "staff-lunch"


# -- address rules, after resolution ------------------------------------------------------


@dataclass(frozen=True)
class AddressRow:
    files: Files
    url: str
    resolved: tuple[str, ...]
    expected: tuple[bool, str, str | None]


NETS: Files = {"deny/nets.txt": ["203.0.113.0/24", "2001:db8::/32"]}

ADDRESS_ROWS = [
    pytest.param(AddressRow(NETS, "http://site.example/", ("203.0.113.5",),
                            (False, "deny/nets.txt:1", "nets")), id="name-allowed-address-denied"),
    pytest.param(AddressRow(NETS, "site.example:443", ("203.0.113.5",),
                            (False, "deny/nets.txt:1", "nets")), id="connect-address-denied"),
    pytest.param(AddressRow(NETS, "http://site.example/", ("2001:db8::5",),
                            (False, "deny/nets.txt:2", "nets")), id="v6-address-denied"),
    pytest.param(AddressRow(NETS, "http://site.example/", ("::ffff:203.0.113.5",),
                            (False, "deny/nets.txt:1", "nets")), id="mapped-address-denied"),
    pytest.param(AddressRow(NETS, "http://site.example/", ("198.51.100.1",),
                            (True, "default", None)), id="address-not-listed"),
    pytest.param(AddressRow(NETS, "http://site.example/", ("203.0.113.5", "198.51.100.1"),
                            (True, "default", None)), id="one-good-address-left"),
    pytest.param(AddressRow(NETS, "http://203.0.113.5/", (), (False, "deny/nets.txt:1", "nets")),
                 id="literal"),
    pytest.param(AddressRow(NETS, "http://[2001:db8::1]:8080/", (), (False, "deny/nets.txt:2", "nets")),
                 id="literal-v6"),
    pytest.param(AddressRow(NETS, "http://3405803781/", (), (False, "deny/nets.txt:1", "nets")),
                 id="literal-decimal"),
    pytest.param(AddressRow({**NETS, "allow/work.txt": ["site.example"]}, "http://site.example/",
                            ("203.0.113.5",), (True, "allow/work.txt:1", "work")),
                 id="name-allow-beats-address-deny"),
    pytest.param(AddressRow({**NETS, "allow/lan.txt": ["203.0.113.128/25"]}, "http://site.example/",
                            ("203.0.113.200",), (True, "allow/lan.txt:1", "lan")),
                 id="address-allow-beats-address-deny"),
    pytest.param(AddressRow({**NETS, "allow/lan.txt": ["203.0.113.128/25"]}, "http://203.0.113.200/",
                            (), (True, "allow/lan.txt:1", "lan")), id="literal-allow-beats-deny"),
]


@pytest.mark.parametrize("row", ADDRESS_ROWS)
def test_address_rules(row: AddressRow) -> None:
    policy = make_policy(row.files)
    assert summary(as_connection_does(policy, facts_for(row.url), row.resolved))[:3] == row.expected


def test_name_denied_by_name_but_allowed_by_an_allow_address_rule() -> None:
    policy = make_policy({"deny/ads.txt": ["site.example"], "allow/lan.txt": ["203.0.113.0/24"]})
    facts = facts_for("http://site.example/")
    by_name = policy.decide(facts)
    assert summary(by_name)[:3] == (False, "deny/ads.txt:1", "ads")
    assert not by_name.final  # address rules exist: the answer may still change
    allowed = policy.decide_address(facts, ip("203.0.113.9"), is_local=False, by_name=by_name)
    assert summary(allowed)[:3] == (True, "allow/lan.txt:1", "lan")
    elsewhere = policy.decide_address(facts, ip("198.51.100.1"), is_local=False, by_name=by_name)
    assert summary(elsewhere)[:3] == (False, "deny/ads.txt:1", "ads")


def test_name_allowed_by_name_but_denied_by_address_keeps_the_name_matches() -> None:
    policy = make_policy({"deny/nets.txt": ["203.0.113.0/24"], "deny/ads.txt": ["||x.example^$script"]})
    facts = facts_for("http://site.example/")
    by_name = policy.decide(facts)
    assert by_name.allowed and not by_name.final
    verdict = policy.decide_address(facts, ip("203.0.113.1"), is_local=False, by_name=by_name)
    assert summary(verdict)[:3] == (False, "deny/nets.txt:1", "nets")
    assert [m.source for m in verdict.matches] == ["deny/nets.txt:1"]


def test_without_address_rules_a_name_verdict_is_final() -> None:
    policy = make_policy({"deny/ads.txt": ["ads.example"]})
    verdict = policy.decide(facts_for("http://site.example/"))
    assert verdict.allowed and verdict.final
    assert policy.decide_address(facts_for("http://site.example/"), ip("203.0.113.1"),
                                 is_local=False, by_name=verdict) is verdict


def test_policy_categories_apply_to_address_rules() -> None:
    files: Files = {"deny/nets.txt": ["203.0.113.0/24"]}
    text = "timezone: UTC\npolicies:\n  - name: open\n    clients: [10.0.1.0/24]\n    deny: []\n"
    policy = make_policy(files, text + "  - name: closed\n    clients: [0.0.0.0/0]\n    deny: ['*']\n")
    staff = facts_for("http://site.example/", STAFF, MON_LUNCH)
    other = facts_for("http://site.example/", OTHER, MON_LUNCH)
    assert summary(as_connection_does(policy, staff, ("203.0.113.5",))) == (True, "default", None, "open")
    assert summary(as_connection_does(policy, other, ("203.0.113.5",))) == (
        False, "deny/nets.txt:1", "nets", "closed")


# -- safety settings are never lifted by allow entries ----------------------------------

ALLOW_EVERYTHING: Files = {
    "allow/all.txt": ["site.example", "metadata.example", "169.254.169.254", "127.0.0.0/8",
                      "0.0.0.0/0", "::/0"],
}


def test_connect_ports_beat_allow_rules() -> None:
    policy = make_policy(ALLOW_EVERYTHING, connect_ports=(PortRange(443, 443),))
    denied = policy.decide(facts_for("site.example:22"))
    assert (denied.allowed, denied.source) == (False, "config:connect_ports")
    assert policy.decide(facts_for("site.example:443")).allowed


@pytest.mark.parametrize(
    ("url", "resolved"),
    [
        ("http://169.254.169.254/latest/meta-data/", ()),
        ("http://0xa9fea9fe/latest/meta-data/", ()),
        ("http://[::ffff:169.254.169.254]/", ()),
        ("169.254.169.254:443", ()),
        ("http://metadata.example/", ("169.254.169.254",)),
        ("metadata.example:443", ("169.254.169.254",)),
        ("http://site.example/", ("127.0.0.1",)),
    ],
)
def test_deny_destinations_beat_allow_rules(url: str, resolved: tuple[str, ...]) -> None:
    policy = make_policy(ALLOW_EVERYTHING, deny_destinations=("169.254.0.0/16", "127.0.0.0/8"))
    verdict = as_connection_does(policy, facts_for(url), resolved)
    assert (verdict.allowed, verdict.source) == (False, "config:deny_destinations")


def test_own_machine_and_own_listener_beat_allow_rules() -> None:
    policy = make_policy(ALLOW_EVERYTHING, deny_local=True,
                         listeners=((ip("127.0.0.1"), 8080),))
    facts = facts_for("http://site.example:3128/")
    by_name = policy.decide(facts)
    assert by_name.allowed
    local = policy.decide_address(facts, ip("192.0.2.10"), is_local=True, by_name=by_name)
    assert (local.allowed, local.source) == (False, "config:deny_destinations")
    own = policy.decide_address(facts_for("http://site.example:8080/"), ip("127.0.0.1"),
                                is_local=True, by_name=by_name)
    assert (own.allowed, own.source) == (False, "builtin:own-listener")


# -- bypass resistance: every spelling of a blocked URL gets the same verdict --------------

BLOCKED: Files = {
    "deny/ads.txt": [
        "blocked.example",                              # 1
        "bücher.example",                               # 2
        "127.0.0.1/32",                                 # 3
        "paths.example/private/",                       # 4
        r"/^http:\/\/regex\.example\/secret\//",        # 5
    ],
}
BYPASS_POLICY = make_policy(BLOCKED)


def _pct(char: str, draw: st.DrawFn) -> str:
    """`char` percent-encoded as UTF-8, hex digits in a random case."""
    encoded = "".join(f"%{b:02X}" for b in char.encode("utf-8"))
    return encoded.lower() if draw(st.booleans()) else encoded


@st.composite
def spelled_name(draw: st.DrawFn, name: str) -> str:
    """`name` with each character in another case, percent-encoded, or as its full-width
    form (UTS 46 maps it back), dots as ideographic or full-width stops, soft hyphens
    (mapped to nothing) here and there, and maybe a trailing dot."""
    out = []
    for char in name:
        if char == ".":
            out.append(draw(st.sampled_from([".", "%2E", "%2e", "\u3002", "\uff0e", "\uff61"])))
        elif char.isascii() and char.isalnum():
            form = draw(st.sampled_from(["same", "upper", "pct", "fullwidth"]))
            if form == "upper":
                char = char.upper()
            elif form == "pct":
                char = _pct(char, draw)
            elif form == "fullwidth":
                char = chr(ord(draw(st.sampled_from([char, char.upper()]))) + 0xFEE0)
            out.append(char)
        else:
            out.append(draw(st.sampled_from([char, char.upper()])))
        if draw(st.integers(0, 9)) == 0:
            out.append("\u00ad")
    if draw(st.booleans()):
        out.append(draw(st.sampled_from([".", "%2E"])))
    # the request target is ASCII: what is not is percent-encoded, as a browser does
    return "".join(c if c.isascii() else _pct(c, draw) for c in out)


@st.composite
def ipv4_spelling(draw: st.DrawFn, address: ipaddress.IPv4Address) -> str:
    """Any inet_aton spelling: 1 to 4 parts, each decimal, octal or hex; or IPv4-mapped."""
    if draw(st.integers(0, 4)) == 0:
        mapped = draw(st.sampled_from([f"::ffff:{address}", f"::ffff:{int(address) >> 16:x}:"
                                       f"{int(address) & 0xFFFF:x}", f"0:0:0:0:0:ffff:{address}"]))
        return f"[{draw(st.sampled_from([mapped, mapped.upper()]))}]"
    value = int(address)
    octets = [int(o) for o in str(address).split(".")]
    count = draw(st.integers(1, 4))
    parts = [*octets[: count - 1], value & ((1 << (8 * (5 - count))) - 1)]
    spelled = []
    for part in parts:
        radix = draw(st.sampled_from(["dec", "oct", "hex", "HEX"]))
        zeros = "0" * draw(st.integers(0, 2))
        if radix == "dec":
            spelled.append(str(part))
        elif radix == "oct":
            spelled.append(f"0{zeros}{part:o}")
        else:
            digits = f"{part:x}" if radix == "hex" else f"{part:X}"
            spelled.append(draw(st.sampled_from(["0x", "0X"])) + zeros + digits)
    text = ".".join(spelled)
    if draw(st.booleans()):
        text += "."
    return "".join(_pct(c, draw) if c.isalnum() and draw(st.integers(0, 5)) == 0 else c for c in text)


USERINFO = st.sampled_from(["", "user@", "user:secret@", "a%40b:c@", "@"])
HTTP_PORT = st.sampled_from(["", ":80", ":080", ":8080"])
SCHEME = st.sampled_from(["http", "HTTP", "Http"])
TAIL = st.from_regex(r"(/[a-z0-9]{0,6}){0,2}(\?[a-z=&]{0,8})?", fullmatch=True)


def assert_same_verdict(url: str, expected: tuple[bool, str, str | None]) -> None:
    verdict = as_connection_does(BYPASS_POLICY, facts_for(url), ("198.51.100.1",))
    assert summary(verdict)[:3] == expected, url


@given(spelled_name("blocked.example"), USERINFO, HTTP_PORT, SCHEME, TAIL)
def test_spellings_of_a_blocked_name(host: str, userinfo: str, port: str, scheme: str, tail: str) -> None:
    expected = (False, "deny/ads.txt:1", "ads")
    assert_same_verdict(f"{scheme}://{userinfo}{host}{port}{tail or '/'}", expected)
    assert_same_verdict(f"{host}:443", expected)
    assert_same_verdict(f"{userinfo}{host}:8443", expected)


@given(st.sampled_from(["bücher", "BÜCHER", "bu\u0308cher", "xn--bcher-kva", "XN--BCHER-KVA"]),
       st.data())
def test_spellings_of_a_blocked_idn(label: str, data: st.DataObject) -> None:
    host = data.draw(spelled_name(label + ".example"))
    expected = (False, "deny/ads.txt:2", "ads")
    assert_same_verdict(f"http://{data.draw(USERINFO)}{host}{data.draw(HTTP_PORT)}/", expected)
    assert_same_verdict(f"{host}:443", expected)


@given(ipv4_spelling(ipaddress.IPv4Address("127.0.0.1")), USERINFO, HTTP_PORT)
def test_spellings_of_a_blocked_address(host: str, userinfo: str, port: str) -> None:
    expected = (False, "deny/ads.txt:3", "ads")
    assert_same_verdict(f"http://{userinfo}{host}{port}/", expected)
    assert_same_verdict(f"{host}:443", expected)


def test_a_name_resolving_to_a_blocked_address() -> None:
    verdict = as_connection_does(BYPASS_POLICY, facts_for("http://localhost.example/"), ("127.0.0.1",))
    assert summary(verdict)[:3] == (False, "deny/ads.txt:3", "ads")
    verdict = as_connection_does(BYPASS_POLICY, facts_for("http://v6.example/"), ("::ffff:127.0.0.1",))
    assert summary(verdict)[:3] == (False, "deny/ads.txt:3", "ads")


_UNRESERVED_SPELL = st.sampled_from(["same", "pct"])
_DOT = st.sampled_from([".", "%2E", "%2e"])
_DOTDOT = st.sampled_from(["..", "%2E%2E", ".%2e", "%2e.", "%2E."])
_SLASH = st.sampled_from(["/", "/", "//", "///"])


@st.composite
def spelled_path(draw: st.DrawFn, segments: list[str]) -> str:
    """A path that normalises to "/" + "/".join(segments): unreserved characters maybe
    percent-encoded, "." and "name/.." segments inserted before any segment."""
    out: list[str] = []
    if draw(st.booleans()):
        out.append(draw(_DOTDOT))  # above the root: stays at the root
    for segment in segments:
        for _ in range(draw(st.integers(0, 2))):
            if draw(st.booleans()):
                out.append(draw(_DOT))
            else:
                out.extend([draw(st.from_regex(r"[a-z]{1,3}", fullmatch=True)), draw(_DOTDOT)])
        out.append("".join(_pct(c, draw) if draw(_UNRESERVED_SPELL) == "pct" else c for c in segment))
    # Runs of slashes count as one, as the origins that merge them (nginx, Apache) read them.
    return "".join(draw(_SLASH) + part for part in out)


@given(spelled_name("paths.example"), st.from_regex(r"[a-z0-9~_.-]{0,6}", fullmatch=True),
       st.sampled_from(["", "?q=1"]), st.data())
def test_spellings_of_a_blocked_url_prefix(host: str, rest: str, query: str, data: st.DataObject) -> None:
    if rest in (".", ".."):
        rest = ""
    path = data.draw(spelled_path(["private", rest]))
    expected = (False, "deny/ads.txt:4", "ads")
    assert normalize_path(path) == f"/private/{rest}"
    assert_same_verdict(f"http://{data.draw(USERINFO)}{host}{data.draw(HTTP_PORT)}{path}{query}", expected)
    # the same spellings of another path are not blocked, and a tunnel sees no path
    public = data.draw(spelled_path(["public", rest]))
    assert_same_verdict(f"http://{host}{public}{query}", (True, "default", None))
    assert_same_verdict(f"{host}:443", (True, "default", None))


@given(spelled_name("regex.example"), st.sampled_from(["", ":80", ":080"]), st.data())
def test_spellings_of_a_url_matched_by_a_regex(host: str, port: str, data: st.DataObject) -> None:
    path = data.draw(spelled_path(["secret", "x"]))
    assert_same_verdict(f"http://{data.draw(USERINFO)}{host}{port}{path}", (False, "deny/ads.txt:5", "ads"))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://paths.example/private", (True, "default", None)),        # not under the prefix
        ("http://paths.example/PRIVATE/", (True, "default", None)),       # paths are case-sensitive
        ("http://paths.example/%2Fprivate/", (True, "default", None)),    # %2F is no "/"
        ("http://paths.example/x/../private/", (False, "deny/ads.txt:4", "ads")),
        ("http://paths.example//private/", (False, "deny/ads.txt:4", "ads")),   # merged slashes
        ("http://paths.example/private//x", (False, "deny/ads.txt:4", "ads")),
        ("http://paths.example/x/..//private/", (False, "deny/ads.txt:4", "ads")),
        ("http://paths.example/%70rivate/a", (False, "deny/ads.txt:4", "ads")),
        ("http://notblocked.example/", (True, "default", None)),
        ("http://blocked.example.org/", (True, "default", None)),
        ("http://127.0.0.2/", (True, "default", None)),
        ("http://regex.example/secret", (True, "default", None)),
        ("http://regex.example:8080/secret/", (True, "default", None)),   # the URL names the port
    ],
)
def test_near_misses_are_not_blocked(url: str, expected: tuple[bool, str, str | None]) -> None:
    assert_same_verdict(url, expected)


@pytest.mark.parametrize(
    ("url", "denied"),
    [
        ("http://evil.example/", True),
        ("http://EVIL.Example./x", True),
        ("http://%65vil.example/", True),
        ("http://%EF%BD%85vil.example/", True),  # full-width e: UTS 46 maps it to "e"
        ("http://user@cdn.evil.example:8080/", True),
        ("evil.example:443", True),
        ("http://notevil.example/", False),
        ("http://evil.example.org/", False),
    ],
)
def test_host_regexes_see_the_canonical_host(url: str, denied: bool) -> None:
    policy = make_policy({"deny/malware.regex": [r"(^|\.)evil\.example$"]})
    verdict = as_connection_does(policy, facts_for(url), ("198.51.100.1",))
    expected = (False, "deny/malware.regex:1", "malware") if denied else (True, "default", None)
    assert summary(verdict)[:3] == expected
