"""policy/policies.py: policy.yaml → Policies, and which policy applies to whom and when.

Tables: the worked example of the module docstring and who it selects; time windows
(crossing midnight, DST in Europe/Paris); "*" expansion; users; every error with its line.
One hypothesis property checks TimeWindow.contains against a minute-of-week reference.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from fwdproxy.errors import ConfigError
from fwdproxy.policy.policies import (
    ALL_DAYS,
    Policies,
    PolicyError,
    PolicyRule,
    TimeWindow,
)
from fwdproxy.policy.policyfile import parse_policies

ip = ipaddress.ip_address
net = ipaddress.ip_network
PARIS = ZoneInfo("Europe/Paris")
DENY = frozenset({"ads", "adult", "social", "games"})
ALLOW = frozenset({"education"})
MON, TUE, WED, THU, FRI, SAT, SUN = range(7)


def doc(*lines: str) -> str:
    """A YAML text whose line N is lines[N - 1], so tables can name lines by number."""
    return "\n".join(lines) + "\n"


def parse(text: str, *, deny: frozenset[str] = DENY, allow: frozenset[str] = ALLOW) -> Policies:
    return parse_policies(text, path="policy.yaml", deny_categories=deny, allow_categories=allow,
                          yaml_module=yaml)


@pytest.mark.parametrize(("line", "expected"), [
    ("    safe_search: true", True), ("    safe_search: false", False), ("    safe_search: on", True),
    ("    default: allow", None),
])
def test_safe_search_per_policy(line: str, expected: bool | None) -> None:
    policies = parse(doc("policies:", "  - name: a", line))
    assert policies.rules[0].safe_search is expected


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


EXAMPLE = doc(
    "timezone: Europe/Paris          # optional; default: the server's local time",  # 1
    "groups:                         # optional: named sets of client CIDRs and user names",
    "  staff: [10.0.1.0/24, 10.0.9.7]",
    "  pupils: [10.0.2.0/23]",
    "  guests: [192.168.50.0/24]",                                                   # 5
    "policies:                       # ordered; the first that matches applies",
    "  - name: staff-lunch",                                                         # 7
    "    clients: [staff]            # group names and/or CIDRs; omitted = every client",
    "    when:                       # optional: one window or a list of windows",
    "      days: [mon, tue, wed, thu, fri]   # or \"mon-fri\", \"sat-sun\", \"*\"",  # 10
    "      hours: \"12:00-13:30\"      # may cross midnight, e.g. \"22:00-06:00\"",
    "    deny: [ads, adult]",
    "    default: allow",
    "  - name: staff",                                                               # 14
    "    clients: [staff]",                                                          # 15
    "    deny: [ads, adult, social]",
    "    default: allow",
    "  - name: pupils",                                                              # 18
    "    clients: [pupils]",
    "    deny: [ads, adult, social, games]",                                         # 20
    "    allow: [education]          # a category can also be an allow list",
    "    default: allow",
    "  - name: guests",                                                              # 23
    "    clients: [guests]",
    "    deny: [\"*\"]                 # every deny category",                       # 25
    "    default: allow",
    "  - name: lockdown-example",                                                    # 27
    "    clients: [0.0.0.0/0, \"::/0\"]",
    "    default: deny               # nothing but allowed categories and allow/ files",
)

STAFF = (net("10.0.1.0/24"), net("10.0.9.7/32"))
EVERYONE = (net("0.0.0.0/0"), net("::/0"))


# -- the worked example ----------------------------------------------------------------


def test_the_example_parses_to_these_rules() -> None:
    lunch = TimeWindow(frozenset({MON, TUE, WED, THU, FRI}), 12 * 60, 13 * 60 + 30, PARIS)
    no_users: frozenset[str] = frozenset()
    assert parse(EXAMPLE).rules == (
        PolicyRule("staff-lunch", "policy.yaml:7", STAFF, no_users, (lunch,),
                   frozenset({"ads", "adult"}), frozenset(), "allow"),
        PolicyRule("staff", "policy.yaml:14", STAFF, no_users, (),
                   frozenset({"ads", "adult", "social"}), frozenset(), "allow"),
        PolicyRule("pupils", "policy.yaml:18", (net("10.0.2.0/23"),), no_users, (),
                   DENY, frozenset({"education"}), "allow"),
        PolicyRule("guests", "policy.yaml:23", (net("192.168.50.0/24"),), no_users, (),
                   DENY, frozenset(), "allow"),
        PolicyRule("lockdown-example", "policy.yaml:27", EVERYONE, no_users, (),
                   frozenset(), frozenset(), "deny"),
    )


@pytest.mark.parametrize(
    ("client", "now", "expected"),
    [
        # Wednesday 14 January 2026: Paris is UTC+1, so 11:15 UTC is 12:15 at lunch.
        ("10.0.1.5", "2026-01-14T11:15", "staff-lunch"),
        ("10.0.9.7", "2026-01-14T11:15", "staff-lunch"),
        ("::ffff:10.0.1.5", "2026-01-14T11:15", "staff-lunch"),
        ("10.0.1.5", "2026-01-14T10:59", "staff"),        # 11:59, before lunch
        ("10.0.1.5", "2026-01-14T11:00", "staff-lunch"),  # 12:00, start included
        ("10.0.1.5", "2026-01-14T12:29", "staff-lunch"),  # 13:29
        ("10.0.1.5", "2026-01-14T12:30", "staff"),        # 13:30, end excluded
        ("10.0.1.5", "2026-01-14T07:00", "staff"),
        ("10.0.1.5", "2026-01-17T11:15", "staff"),        # Saturday: no lunch window
        # Wednesday 15 July 2026: Paris is UTC+2.
        ("10.0.1.5", "2026-07-15T10:15", "staff-lunch"),  # 12:15
        ("10.0.1.5", "2026-07-15T11:15", "staff-lunch"),  # 13:15
        ("10.0.1.5", "2026-07-15T11:45", "staff"),        # 13:45
        ("10.0.9.8", "2026-01-14T11:15", "lockdown-example"),
        ("10.0.2.1", "2026-01-14T11:15", "pupils"),
        ("10.0.3.254", "2026-01-14T11:15", "pupils"),
        ("192.168.50.77", "2026-01-14T11:15", "guests"),
        ("::ffff:192.168.50.77", "2026-01-14T11:15", "guests"),
        ("172.16.0.1", "2026-01-14T11:15", "lockdown-example"),
        ("2001:db8::1", "2026-01-14T11:15", "lockdown-example"),
    ],
)
def test_the_example_selects(client: str, now: str, expected: str) -> None:
    rule = parse(EXAMPLE).select(ip(client), None, utc(now))
    assert rule is not None
    assert rule.name == expected


WITHOUT_CATCH_ALL = EXAMPLE.split("  - name: lockdown-example")[0]


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        ("10.0.1.5", "staff"),
        ("192.168.50.1", "guests"),
        ("172.16.0.1", None),
        ("2001:db8::1", None),
        ("::ffff:172.16.0.1", None),
    ],
)
def test_no_policy_matches_an_unknown_client_without_a_catch_all(client: str, expected: str | None) -> None:
    rule = parse(WITHOUT_CATCH_ALL).select(ip(client), None, utc("2026-01-17T11:15"))
    assert (rule.name if rule else None) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n",
        "# only a comment\n",
        "---\n",
        doc("timezone: UTC"),
        doc("groups:", "  staff: [10.0.0.0/8]"),
        doc("policies: []"),
    ],
)
def test_no_policies(text: str) -> None:
    assert parse(text) == Policies(())
    assert parse(text).select(ip("10.0.0.1"), None, utc("2026-01-14T11:15")) is None


# -- time windows ----------------------------------------------------------------------


def one_window(when: str, *, timezone_line: str = "timezone: UTC") -> Policies:
    return parse(doc(timezone_line, "policies:", "  - name: p", f"    when: {when}"))


@pytest.mark.parametrize(
    ("when", "now", "inside"),
    [
        # Friday 16 January 2026, 22:00-06:00 (UTC): the night belongs to Friday.
        ("{days: fri, hours: 22:00-06:00}", "2026-01-16T23:00", True),
        ("{days: fri, hours: 22:00-06:00}", "2026-01-17T02:00", True),   # Saturday 02:00
        ("{days: fri, hours: 22:00-06:00}", "2026-01-17T05:59", True),
        ("{days: fri, hours: 22:00-06:00}", "2026-01-17T06:00", False),  # end excluded
        ("{days: fri, hours: 22:00-06:00}", "2026-01-17T07:00", False),  # Saturday 07:00
        ("{days: fri, hours: 22:00-06:00}", "2026-01-16T22:00", True),   # start included
        ("{days: fri, hours: 22:00-06:00}", "2026-01-16T21:59", False),
        ("{days: fri, hours: 22:00-06:00}", "2026-01-16T03:00", False),  # Thursday's night
        ("{days: fri, hours: 22:00-06:00}", "2026-01-17T22:30", False),  # Saturday evening
        ("{days: fri, hours: 22:00-06:00}", "2026-01-15T23:00", False),  # Thursday evening
        # Sunday's night runs into Monday: the week wraps.
        ("{days: sun, hours: 22:00-06:00}", "2026-01-19T03:00", True),
        ("{days: sun, hours: 22:00-06:00}", "2026-01-18T03:00", False),
        # 22:00-00:00 crosses midnight with nothing after it; 08:00-24:00 does not cross.
        ("{days: fri, hours: 22:00-00:00}", "2026-01-16T23:59", True),
        ("{days: fri, hours: 22:00-00:00}", "2026-01-17T00:00", False),
        ("{days: fri, hours: 08:00-24:00}", "2026-01-16T23:59", True),
        ("{days: fri, hours: 08:00-24:00}", "2026-01-17T00:00", False),
        ("{days: fri, hours: 00:00-24:00}", "2026-01-16T00:00", True),
        # Days: names, full names, ranges (also wrapping), "*", lists, a comma string.
        ("{days: mon-fri}", "2026-01-16T12:00", True),
        ("{days: mon-fri}", "2026-01-17T12:00", False),
        ("{days: sat-sun}", "2026-01-18T12:00", True),
        ("{days: fri-mon}", "2026-01-19T12:00", True),
        ("{days: fri-mon}", "2026-01-20T12:00", False),
        ("{days: '*'}", "2026-01-20T12:00", True),
        ("{days: [Monday, sat]}", "2026-01-17T12:00", True),
        ("{days: 'mon, wed'}", "2026-01-14T12:00", True),
        ("{days: 'mon, wed'}", "2026-01-15T12:00", False),
        ("{hours: 9:00-17:00}", "2026-01-17T08:59", False),
        ("{hours: 9:00-17:00}", "2026-01-17T09:00", True),
        ("{}", "2026-01-17T09:00", True),
        # A list of windows: any of them.
        ("[{days: mon, hours: 09:00-10:00}, {days: fri}]", "2026-01-16T23:00", True),
        ("[{days: mon, hours: 09:00-10:00}, {days: fri}]", "2026-01-19T09:30", True),
        ("[{days: mon, hours: 09:00-10:00}, {days: fri}]", "2026-01-19T10:30", False),
    ],
)
def test_windows(when: str, now: str, inside: bool) -> None:
    policies = one_window(when)
    assert (policies.select(ip("10.0.0.1"), None, utc(now)) is not None) is inside


@pytest.mark.parametrize(
    ("hours", "now", "inside"),
    [
        # Sunday 29 March 2026: Paris goes from UTC+1 to UTC+2 at 01:00 UTC
        # (02:00 local does not exist).
        ("09:00-10:00", "2026-03-29T07:30", True),    # 09:30 CEST
        ("09:00-10:00", "2026-03-29T08:30", False),   # 10:30 CEST (09:30 at a fixed +1)
        ("01:00-04:00", "2026-03-29T00:30", True),    # 01:30 CET
        ("01:00-04:00", "2026-03-29T01:30", True),    # 03:30 CEST
        ("01:00-04:00", "2026-03-29T02:30", False),   # 04:30 CEST
        ("02:00-03:00", "2026-03-29T00:59", False),   # 01:59 CET, then 03:00 CEST
        ("02:00-03:00", "2026-03-29T01:00", False),   # 03:00 CEST
        # Sunday 25 October 2026: from UTC+2 back to UTC+1 at 01:00 UTC
        # (02:00-03:00 local happens twice).
        ("09:00-10:00", "2026-10-25T08:30", True),    # 09:30 CET
        ("09:00-10:00", "2026-10-25T07:30", False),   # 08:30 CET (09:30 at a fixed +2)
        ("02:00-03:00", "2026-10-25T00:30", True),    # 02:30 CEST
        ("02:00-03:00", "2026-10-25T01:30", True),    # 02:30 CET
        ("02:00-03:00", "2026-10-25T02:30", False),   # 03:30 CET
    ],
)
def test_dst_days_use_paris_wall_time(hours: str, now: str, inside: bool) -> None:
    policies = one_window(f"{{days: sun, hours: '{hours}'}}", timezone_line="timezone: Europe/Paris")
    assert (policies.select(ip("10.0.0.1"), None, utc(now)) is not None) is inside


@pytest.fixture
def server_in_new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local zone is America/New_York (UTC-5 in January) for one test."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(
    ("hours", "inside"),
    [
        ("06:00-07:00", True),    # 11:15 UTC is 06:15 in New York
        ("11:00-12:00", False),   # ... and not 11:15
    ],
)
@pytest.mark.usefixtures("server_in_new_york")
def test_without_timezone_windows_use_the_servers_local_time(hours: str, inside: bool) -> None:
    policies = parse(doc("policies:", "  - name: p", f"    when: {{days: wed, hours: '{hours}'}}"))
    assert policies.rules[0].when[0].zone is None
    assert (policies.select(ip("10.0.0.1"), None, utc("2026-01-14T11:15")) is not None) is inside


@pytest.mark.parametrize(
    ("days", "start", "end"),
    [
        (frozenset(), 0, 60),
        (frozenset({7}), 0, 60),
        (ALL_DAYS, 60, 60),
        (ALL_DAYS, -1, 60),
        (ALL_DAYS, 1440, 60),
        (ALL_DAYS, 0, 1441),
    ],
)
def test_time_window_refuses_bad_values(days: frozenset[int], start: int, end: int) -> None:
    with pytest.raises(ValueError):
        TimeWindow(days, start, end)


def test_time_window_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        TimeWindow(ALL_DAYS, 0, 60).contains(datetime(2026, 1, 14, 12, 0))


def reference_contains(window: TimeWindow, minute_of_week: int) -> bool:
    """The window as the set of minutes of the week (Monday 00:00 = 0) it covers."""
    week = 7 * 1440
    covered: set[int] = set()
    for day in window.days:
        length = (window.end - window.start) % 1440 or 1440
        covered.update((day * 1440 + window.start + i) % week for i in range(length))
    return minute_of_week in covered


@st.composite
def windows(draw: st.DrawFn) -> TimeWindow:
    days = draw(st.frozensets(st.integers(0, 6), min_size=1))
    start = draw(st.integers(0, 1439))
    end = draw(st.integers(0, 1440).filter(lambda end: end != start))
    return TimeWindow(days, start, end, draw(st.sampled_from([UTC, timezone(timedelta(hours=5))])))


@given(window=windows(), minute_of_week=st.integers(0, 7 * 1440 - 1), second=st.integers(0, 59))
def test_contains_agrees_with_the_minutes_of_the_week(
    window: TimeWindow, minute_of_week: int, second: int
) -> None:
    assert window.zone is not None
    # Monday 5 January 2026, 00:00 in the window's zone, then handed over in UTC.
    monday = datetime(2026, 1, 5, tzinfo=window.zone)
    now = (monday + timedelta(minutes=minute_of_week, seconds=second)).astimezone(UTC)
    assert window.contains(now) is reference_contains(window, minute_of_week)


# -- categories ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("deny_line", "deny_categories", "expected"),
    [
        ('deny: ["*"]', DENY, DENY),
        ("deny: '*'", DENY, DENY),
        ('deny: ["*", education]', DENY, DENY | {"education"}),
        ('deny: ["*", ads]', DENY, DENY),
        ('deny: ["*"]', frozenset(), frozenset()),
        ("deny: [ads]", DENY, frozenset({"ads"})),
        ("deny: ads", DENY, frozenset({"ads"})),
        ("deny: []", DENY, frozenset()),
        # Scalars as written: YAML 1.1 would read on/no as booleans.
        ("deny: [on, no]", frozenset({"on", "no"}), frozenset({"on", "no"})),
    ],
)
def test_deny_categories(deny_line: str, deny_categories: frozenset[str], expected: frozenset[str]) -> None:
    policies = parse(doc("policies:", "  - name: p", f"    {deny_line}"), deny=deny_categories)
    assert policies.rules[0].deny == expected


def test_allow_categories_may_name_deny_or_allow_categories() -> None:
    policies = parse(doc("policies:", "  - name: p", "    allow: [education, social]"))
    assert policies.rules[0].allow == frozenset({"education", "social"})
    assert policies.rules[0].default == "allow"


# -- clients and users -----------------------------------------------------------------

USERS = doc(
    "groups:",
    "  staff: [10.0.1.0/24, alice, 'user:bob']",
    "  admins: [user:root]",
    "policies:",
    "  - name: staff",
    "    clients: [staff]",
    "  - name: carol-and-admins",
    "    clients: [user:carol, admins]",
    "  - name: mapped-v4",
    "    clients: ['::ffff:192.0.2.0/120']",
)


def test_users_come_from_groups_and_user_entries() -> None:
    staff, carol, mapped = parse(USERS).rules
    assert (staff.clients, staff.users) == ((net("10.0.1.0/24"),), frozenset({"alice", "bob"}))
    assert (carol.clients, carol.users) == ((), frozenset({"carol", "root"}))
    assert (mapped.clients, mapped.users) == ((net("192.0.2.0/24"),), frozenset())


@pytest.mark.parametrize(
    ("client", "user", "expected"),
    [
        ("10.0.1.5", None, "staff"),
        ("10.0.1.5", "carol", "staff"),          # by address, first policy first
        ("198.51.100.1", "alice", "staff"),      # by user, from anywhere
        ("198.51.100.1", "bob", "staff"),
        ("198.51.100.1", "carol", "carol-and-admins"),
        ("198.51.100.1", "root", "carol-and-admins"),
        ("198.51.100.1", None, None),            # users only: no user, no match
        ("198.51.100.1", "dave", None),
        ("192.0.2.9", None, "mapped-v4"),
        ("::ffff:192.0.2.9", None, "mapped-v4"),
    ],
)
def test_users_select(client: str, user: str | None, expected: str | None) -> None:
    rule = parse(USERS).select(ip(client), user, utc("2026-01-14T11:15"))
    assert (rule.name if rule else None) == expected


REQUIRED = doc(
    "policies:",
    "  - name: admins-at-the-office",   # a squidGuard source with both ip and user
    "    clients: [10.0.1.0/24]",
    "    users: [root, 'user:foo']",
    "  - name: bob-anywhere",
    "    users: [bob]",
)


@pytest.mark.parametrize(("client", "user", "expected"), [
    ("10.0.1.5", "root", "admins-at-the-office"),
    ("10.0.1.5", "foo", "admins-at-the-office"),
    ("10.0.1.5", None, None),                  # the address alone is not enough
    ("10.0.1.5", "alice", None),
    ("198.51.100.1", "root", None),            # nor the user alone
    ("198.51.100.1", "bob", "bob-anywhere"),
    ("10.0.1.5", "bob", "bob-anywhere"),
    ("198.51.100.1", None, None),
])
def test_users_must_match_as_well_as_clients(client: str, user: str | None,
                                             expected: str | None) -> None:
    policies = parse(REQUIRED)
    assert policies.rules[0].required_users == frozenset({"root", "foo"})
    rule = policies.select(ip(client), user, utc("2026-01-14T11:15"))
    assert (rule.name if rule else None) == expected


def test_redirect_is_kept_as_written() -> None:
    url = "https://intranet.example/blocked?u=$url&c=$client&who=$user&p=$policy&$$5"
    rule = parse(doc("policies:", "  - name: a", f"    redirect: '{url}'")).rules[0]
    assert rule.redirect == url
    assert parse(doc("policies:", "  - name: a")).rules[0].redirect is None


def test_a_policy_without_clients_matches_everyone() -> None:
    rule = parse(doc("policies:", "  - name: all")).rules[0]
    assert (rule.clients, rule.users, rule.when) == ((), frozenset(), ())
    assert rule.matches(ip("2001:db8::1"), None, utc("2026-01-14T11:15"))


# -- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        # YAML syntax, with the line of the problem.
        (doc("policies:", "  - name: a", "    deny: [ads", "", "x: 1"), 5, "not valid YAML"),
        (doc("policies:", "  - name: a", "\tdeny: [ads]"), 3, "not valid YAML"),
        (doc("a: 1", "---", "b: 2"), 2, "not valid YAML"),
        (doc("policies:", "  - name: a", "    deny: [\x07]"), 3, "not valid YAML"),
        # The top level.
        (doc("- name: a"), 1, "expected a mapping"),
        (doc("just text"), 1, "expected a mapping"),
        (doc("timezone: UTC", "polices: []"), 2,
         "unknown key 'polices' (allowed: timezone, groups, policies)"),
        (doc("timezone: UTC", "timezone: UTC"), 2, "given twice"),
        (doc("timezone: UTC", "policies:"), 2, "'policies' has no value"),
        (doc("policies: {name: a}"), 1, "expected a list"),
        # The time zone.
        (doc("# zone", "timezone: Europe/Pariss"), 2, "unknown time zone 'Europe/Pariss'"),
        (doc("timezone: /etc/passwd"), 1, "unknown time zone"),
        (doc("timezone: [UTC]"), 1, "expected a single value"),
        # Groups.
        (doc("groups: [staff]"), 1, "expected a mapping"),
        (doc("groups:", "  staff: [10.0.1.0/33]"), 2, "'10.0.1.0/33' is not an IP address or CIDR"),
        (doc("groups:", "  staff:", "    - 10.0.1.0/24", "    - 10.0.300.1"), 4, "'10.0.300.1' is not"),
        (doc("groups:", "  staff: []"), 2, "has no members"),
        (doc("groups:", "  staff:"), 2, "has no members"),
        (doc("groups:", "  staff: [a]", "  staff: [b]"), 3, "defined twice"),
        (doc("groups:", "  a: [x]", "  b: [a]"), 3, "groups cannot contain groups"),
        (doc("groups:", "  10.0.0.1: [x]"), 2, "cannot look like an address"),
        (doc("groups:", "  staff: ['user:']"), 2, "is not a user name"),
        # A policy's keys.
        (doc("policies:", "  - name: a", "    deny: [ads]", "    denied: [ads]"), 4,
         "unknown key 'denied' (allowed: name, clients, when, deny, allow, default, safe_search, "
         "redirect, users)"),
        (doc("policies:", "  - name: a", "    users: []"), 3, "users is empty"),
        (doc("policies:", "  - name: a", "    users: ['two words']"), 3, "is not a user name"),
        (doc("policies:", "  - name: a", "    redirect: /blocked"), 3, "is not an http:// or https:// URL"),
        (doc("policies:", "  - name: a", "    redirect: 'ftp://x/'"), 3, "is not an http://"),
        (doc("policies:", "  - name: a", "    redirect: 'http:///x'"), 3, "is not an http://"),
        (doc("policies:", "  - name: a", "    redirect: 'http://x/?a=$uri'"), 3,
         "unknown field ($uri): the fields are $url, $client, $user, $policy, $category, $rule"),
        (doc("policies:", "  - name: a", "    redirect: 'http://x/?a=$'"), 3, "write $$ for a dollar"),
        (doc("policies:", "  - name: a", "    safe_search: maybe"), 3, "safe_search must be true or false"),
        (doc("policies:", "  - name: a", "  - clients: [10.0.0.0/8]", "    deny: [ads]"), 3,
         "has no name"),
        (doc("policies:", "  - name: a", "  - name:"), 3, "'name' has no value"),
        (doc("policies:", "  - name: a", "  - name: b", "  - name: a"), 4, "'a' is used twice"),
        (doc("policies:", "  - name: a", "    default: block"), 3, "default must be allow or deny"),
        (doc("policies:", "  - name: a", "    default: [deny]"), 3, "expected a single value"),
        (doc("policies:", "  - name: a", "    name: b"), 3, "given twice"),
        (doc("policies:", "  - just-a-name"), 2, "expected a mapping"),
        # Clients.
        (doc("groups:", "  staff: [10.0.1.0/24]", "policies:", "  - name: a", "    clients: [staf]"), 5,
         "unknown group 'staf' (groups: staff;"),
        (doc("policies:", "  - name: a", "    clients:", "      - 10.0.0.0/8", "      - 10.0.0.0/40"), 5,
         "'10.0.0.0/40' is not an IP address or CIDR"),
        (doc("policies:", "  - name: a", "    clients: ['fe80::/129']"), 3, "is not an IP address"),
        (doc("policies:", "  - name: a", "    clients: []"), 3, "clients is empty"),
        (doc("policies:", "  - name: a", "    clients: ['user:two words']"), 3, "is not a user name"),
        # Categories.
        (doc("policies:", "  - name: a", "    deny: [ads, sport]"), 3,
         "unknown category 'sport' (known: ads, adult, education, games, social)"),
        (doc("policies:", "  - name: a", "    allow:", "      - education", "      - sports"), 5,
         "unknown category 'sports'"),
        (doc("policies:", "  - name: a", "    allow: ['*']"), 3, '"*" is only for deny'),
        (doc("policies:", "  - name: a", "    deny: [[ads]]"), 3, "expected a single value"),
        # Windows.
        (doc("policies:", "  - name: a", "    when: {days: funday}"), 3, "'funday' is not a day"),
        (doc("policies:", "  - name: a", "    when:", "      days: [mon, tue-xyz]"), 4,
         "'tue-xyz' is not a day or day range"),
        (doc("policies:", "  - name: a", "    when:", "      days: []"), 4, "no day given"),
        (doc("policies:", "  - name: a", "    when: {hours: '25:00-26:00'}"), 3,
         "'25:00' is not a time from 00:00 to 23:59"),
        (doc("policies:", "  - name: a", "    when: {hours: '12:00-12:60'}"), 3, "'12:60' is not a time"),
        (doc("policies:", "  - name: a", "    when: {hours: '24:00-06:00'}"), 3, "'24:00' is not a time"),
        (doc("policies:", "  - name: a", "    when:", "      hours: '12:00-12:00'"), 4, "empty window"),
        (doc("policies:", "  - name: a", "    when: {hours: '00:00-00:00'}"), 3, "empty window"),
        (doc("policies:", "  - name: a", "    when: {hours: '12:00'}"), 3, "not a range HH:MM-HH:MM"),
        (doc("policies:", "  - name: a", "    when: {hours: noon-13:00}"), 3, "'noon' is not a time HH:MM"),
        (doc("policies:", "  - name: a", "    when:", "      day: mon"), 4,
         "unknown key 'day' (allowed: days, hours)"),
        (doc("policies:", "  - name: a", "    when: []"), 3, "when is empty"),
        (doc("policies:", "  - name: a", "    when: [{days: mon}, weekends]"), 3, "expected a mapping"),
    ],
)
def test_errors_name_the_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse(text)
    message = str(caught.value)
    assert message.startswith(f"policy.yaml:{line}: "), message
    assert fragment in message, message


def test_a_policy_error_is_a_config_error() -> None:
    assert issubclass(PolicyError, ConfigError)


def test_the_path_given_is_the_one_reported() -> None:
    with pytest.raises(PolicyError, match=r"^/etc/fwdproxy/rules/policy\.yaml:1: "):
        parse_policies("[", path="/etc/fwdproxy/rules/policy.yaml", deny_categories=DENY,
                       allow_categories=ALLOW, yaml_module=yaml)
