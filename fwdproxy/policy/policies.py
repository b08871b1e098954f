"""Per-client policies from ``policy.yaml``: who gets which rule categories, and when.

Strategy: ``policy.yaml`` in the rules folder is parsed once, at startup, into a frozen
`Policies`: an ordered tuple of `PolicyRule`. For each request the edge calls
`Policies.select` with the client address, the authenticated user (None until
authentication exists) and the current time; the first rule whose clients and time
windows match applies, and None means that no policy applies (the caller then uses its
no-policy default). A rule names the deny categories it enforces, the categories it
always allows (allow beats deny) and its default action for requests no category
decides. Categories are the names of the rule files (``deny/ads.txt`` → ``ads``);
``allow/*.txt`` files are always-allowed exceptions handled elsewhere.

The format, with every key::

    timezone: Europe/Paris          # optional; default: the server's local time
    groups:                         # optional: named sets of client CIDRs and user names
      staff: [10.0.1.0/24, 10.0.9.7]
      pupils: [10.0.2.0/23]
      guests: [192.168.50.0/24]
    policies:                       # ordered; the first that matches applies
      - name: staff-lunch
        clients: [staff]            # group names and/or CIDRs; omitted = every client
        when:                       # optional: one window or a list of windows
          days: [mon, tue, wed, thu, fri]   # or "mon-fri", "sat-sun", "*"
          hours: "12:00-13:30"      # may cross midnight, e.g. "22:00-06:00"
        deny: [ads, adult]
        default: allow
      - name: staff
        clients: [staff]
        deny: [ads, adult, social]
        default: allow
        redirect: "http://intranet/blocked?url=$url&client=$client"   # optional
      - name: pupils
        clients: [pupils]
        deny: [ads, adult, social, games]
        allow: [education]          # a category can also be an allow list
        default: allow
      - name: guests
        clients: [guests]
        deny: ["*"]                 # every deny category
        default: allow
      - name: lockdown-example
        clients: [0.0.0.0/0, "::/0"]
        default: deny               # nothing but allowed categories and allow/ files

Details of the format:

- ``clients`` entries are group names, IP addresses or CIDRs, or ``user:NAME``. A bare
  name that is not a group is an error (a typo must not silently become a user name).
  Group members are addresses, CIDRs or user names (bare or ``user:NAME``); groups do not
  nest. A policy matches a client whose address is in one of its networks, or whose
  user is one of its users; a policy that lists only users matches only requests whose
  user is known and listed. Empty groups and an empty ``clients`` list are errors, so
  that a policy never matches everyone by accident.
- ``when``: a window is ``days`` (names ``mon``..``sun`` or full names, ranges such as
  ``mon-fri`` or ``fri-mon`` that wrap round the week, ``*``; default every day) and
  ``hours`` (``HH:MM-HH:MM``, start included, end excluded, ``24:00`` allowed as an end;
  default the whole day). A window that crosses midnight belongs to the day it starts
  on: ``fri 22:00-06:00`` includes Saturday 03:00. Times are wall-clock times in
  ``timezone`` (so DST changes move nothing), or in the server's local time.
- ``redirect``: an ``http://`` or ``https://`` URL that plain-HTTP requests the policy
  denies are redirected to (302), as squidGuard and e2guardian do; ``$url``,
  ``$client``, ``$user``, ``$policy``, ``$category`` and ``$rule`` are filled in
  percent-encoded, ``$$`` is a dollar sign. Anything else after a ``$`` is an error.
- ``users``: user names that must *also* match (``clients`` matches by address *or*
  user; ``users`` narrows it): ``clients: [10.1.0.0/16]`` with ``users: [alice]`` is
  alice at those addresses only, as a squidGuard source with both ``ip`` and ``user``.
- ``deny`` and ``allow`` take category names; ``"*"`` in ``deny`` means every deny
  category known at startup. ``default`` is ``allow`` (the default) or ``deny``.
- Keys are checked at every level, as are duplicate keys and names. Scalars are read as
  written: YAML 1.1 would turn ``12:00`` into 720 and ``on`` into True, so values are
  taken from the composed node tree, never from ``yaml.safe_load``.

Every error is a `PolicyError` whose message starts with ``FILE:LINE:``.

Pure: this module imports neither PyYAML (only config.py is the YAML room, and the
purity test forbids it here) nor anything that does I/O. The caller passes the ``yaml``
module in, and only its ``compose`` and ``YAMLError`` are used. The one lookup outside
the module is the time-zone database, read by `zoneinfo` once, at parse time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Literal

from fwdproxy.errors import ConfigError
from fwdproxy.policy.engine import IPNetwork
from fwdproxy.policy.names import IPAddress, canonical_address

Action = Literal["allow", "deny"]

MINUTES_PER_DAY = 24 * 60
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_DAYS = frozenset(range(7))

TOP_KEYS = ("timezone", "groups", "policies")
POLICY_KEYS = ("name", "clients", "when", "deny", "allow", "default", "safe_search", "redirect",
               "users")
WINDOW_KEYS = ("days", "hours")
USER_PREFIX = "user:"



class PolicyError(ConfigError):
    """A problem in policy.yaml; the message starts with ``FILE:LINE: ``.

    A `ConfigError`, so that startup reports it like every other configuration error.
    """


# -- values ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Days of the week and a span of wall-clock minutes.

    Attributes:
        days: the days the window starts on, 0 = Monday .. 6 = Sunday.
        start: first minute inside the window, minutes since midnight (0-1439).
        end: first minute after the window (1-1440). When ``end < start`` the window
            crosses midnight and its part after midnight belongs to the next day.
        zone: the zone whose wall clock the window is written in; None for the server's
            local time.

    Raises:
        ValueError: a field is out of range or the window is empty (``start == end``).
    """

    days: frozenset[int]
    start: int
    end: int
    zone: tzinfo | None = None

    def __post_init__(self) -> None:
        if not self.days or not self.days <= ALL_DAYS:
            raise ValueError(f"days must be a non-empty subset of 0-6, got {sorted(self.days)}")
        if not (0 <= self.start < MINUTES_PER_DAY and 0 <= self.end <= MINUTES_PER_DAY):
            raise ValueError(f"start {self.start} or end {self.end} is out of range")
        if self.start == self.end:
            raise ValueError("the window is empty (start == end)")

    def contains(self, now: datetime) -> bool:
        """Is `now` inside the window?

        Args:
            now: a timezone-aware time; it is converted to the window's zone, so the
                window follows that zone's wall clock across DST changes.

        Returns:
            True when the wall-clock day and minute fall in the window.

        Raises:
            ValueError: `now` is naive (its zone would be a guess).
        """
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("TimeWindow.contains needs a timezone-aware datetime")
        local = now.astimezone(self.zone) if self.zone is not None else now.astimezone()
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        if self.start < self.end:
            return day in self.days and self.start <= minute < self.end
        # Crosses midnight: the evening part on a listed day, or the morning part on the
        # day after a listed day (Friday 22:00-06:00 covers Saturday 03:00).
        if minute >= self.start:
            return day in self.days
        return minute < self.end and (day - 1) % 7 in self.days

    def __str__(self) -> str:
        days = ",".join(DAY_NAMES[d] for d in sorted(self.days)) if self.days != ALL_DAYS else "*"
        return f"{days} {_clock(self.start)}-{_clock(self.end)}"


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """One policy: to whom and when it applies, and what it denies and allows.

    Attributes:
        name: the policy's unique name (for logs and block pages).
        source: ``FILE:LINE`` of the policy's list item.
        clients: networks it applies to; empty with empty `users` = every client.
        users: user names it applies to (once authentication exists).
        when: time windows; empty = always.
        deny: deny categories this policy enforces ("*" already expanded).
        allow: categories always allowed; allow beats deny.
        default: the action for requests no category decides.
        safe_search: whether its clients get the safe-search addresses (None: as
            fwdproxy.yaml's ``safe_search`` says).
        required_users: when not None, the policy applies only to requests
            authenticated as one of these users (and still only from `clients`, if any):
            policy.yaml's ``users``, an *and* where ``clients`` is an *or*.
        redirect: where a plain-HTTP request it denies is sent instead of the block
            page (302), with ``$url`` and the other `REDIRECT_FIELDS` filled in; None
            for the block page. A refused CONNECT always gets the 403.
    """

    name: str
    source: str
    clients: tuple[IPNetwork, ...]
    users: frozenset[str]
    when: tuple[TimeWindow, ...]
    deny: frozenset[str]
    allow: frozenset[str]
    default: Action
    safe_search: bool | None = None
    redirect: str | None = None
    required_users: frozenset[str] | None = None

    def matches(self, client: IPAddress, user: str | None, now: datetime) -> bool:
        """Does this policy apply to `client` (authenticated as `user`) at `now`?

        Args:
            client: the client's address; IPv4-mapped IPv6 matches IPv4 networks.
            user: the authenticated user name, or None.
            now: a timezone-aware time.

        Returns:
            True when the client is one of its clients (by address or by user) and `now`
            is in one of its windows.
        """
        return self.matches_client(client, user) and (
            not self.when or any(window.contains(now) for window in self.when)
        )

    def matches_client(self, client: IPAddress, user: str | None) -> bool:
        """The client half of `matches`: address in `clients` or user in `users`, and
        the user in `required_users` when it is given."""
        if self.required_users is not None and (user is None or user not in self.required_users):
            return False
        if not self.clients and not self.users:
            return True
        address = canonical_address(client)
        # An IPv4 address is simply not "in" an IPv6 network (and vice versa): no error.
        if any(address in network for network in self.clients):
            return True
        return user is not None and user in self.users


@dataclass(frozen=True, slots=True)
class Policies:
    """The ordered policies of policy.yaml; the first that matches applies."""

    rules: tuple[PolicyRule, ...]

    def select(self, client: IPAddress, user: str | None, now: datetime) -> PolicyRule | None:
        """The first policy that matches, or None when none does.

        Args:
            client: the client's address.
            user: the authenticated user name, or None.
            now: a timezone-aware time.

        Returns:
            the policy that applies; None means the caller's no-policy default applies.
        """
        for rule in self.rules:
            if rule.matches(client, user, now):
                return rule
        return None


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
