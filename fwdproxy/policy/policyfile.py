"""Reading policy.yaml into `Policies` (pure: the caller reads the file and passes its text).

Strategy: the YAML is parsed into nodes (PyYAML is passed in, so that this module imports
no I/O), and every value is checked with the file and line it came from: a bad group, CIDR,
category, day or hour fails loading with a `PolicyError` naming it. The values themselves
and how they decide are in `policies`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import tzinfo
from string import Template
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fwdproxy.policy.engine import REDIRECT_FIELDS, IPNetwork
from fwdproxy.policy.policies import (
    ALL_DAYS,
    DAY_NAMES,
    MINUTES_PER_DAY,
    POLICY_KEYS,
    TOP_KEYS,
    USER_PREFIX,
    WINDOW_KEYS,
    Action,
    Policies,
    PolicyError,
    PolicyRule,
    TimeWindow,
)

_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAYS = {name: index for names in (DAY_NAMES, _FULL_DAY_NAMES) for index, name in enumerate(names)}

# H:MM or HH:MM; the range check (hours 0-24, minutes 0-59) is done after the match so the
# error can say which part is wrong.
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})")
# Something the writer meant as an address: digits and dots (IPv4), or any ":" or "/"
# (IPv6, CIDR). It is parsed as a network and an error if it is not one, never taken for
# a user or group name.
_ADDRESS_LIKE = re.compile(r"[0-9.]+|.*[:/].*")
_NULL_TAG = "tag:yaml.org,2002:null"

# -- parsing ---------------------------------------------------------------------------


class YamlModule(Protocol):
    """What this module uses of PyYAML: pass the ``yaml`` module itself."""

    @property
    def YAMLError(self) -> type[Exception]: ...  # named as in the module

    def compose(self, stream: str, /) -> Any: ...


class _Mark(Protocol):
    @property
    def line(self) -> int: ...


class _Node(Protocol):
    """A PyYAML node: ``id`` is scalar, sequence or mapping; ``value`` a str, a list of
    nodes, or a list of (key, value) node pairs."""

    @property
    def id(self) -> str: ...

    @property
    def tag(self) -> str: ...

    @property
    def value(self) -> Any: ...

    @property
    def start_mark(self) -> _Mark: ...


_T = TypeVar("_T")


class _Reader:
    """Reads node trees of one file, raising `PolicyError` at the offending node's line."""

    def __init__(self, path: str) -> None:
        self.path = path

    def where(self, node: _Node) -> str:
        return f"{self.path}:{node.start_mark.line + 1}"

    def error(self, node: _Node, message: str) -> PolicyError:
        return PolicyError(f"{self.where(node)}: {message}")

    def mapping(self, node: _Node, what: str, known: tuple[str, ...]) -> dict[str, tuple[_Node, _Node]]:
        """Key text → (key node, value node), refusing unknown and repeated keys."""
        if node.id != "mapping":
            raise self.error(node, f"{what}: expected a mapping of keys to values")
        out: dict[str, tuple[_Node, _Node]] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node, f"{what}: a key")
            if key not in known:
                raise self.error(key_node, f"{what}: unknown key {key!r} (allowed: {', '.join(known)})")
            if key in out:
                raise self.error(key_node, f"{what}: key {key!r} is given twice")
            if self.is_null(value_node):
                raise self.error(value_node, f"{what}: {key!r} has no value")
            out[key] = (key_node, value_node)
        return out

    def scalar(self, node: _Node, what: str) -> str:
        """The scalar's text as written (stripped), never YAML 1.1's int or bool."""
        if node.id != "scalar":
            raise self.error(node, f"{what}: expected a single value, not a list or mapping")
        if self.is_null(node):
            raise self.error(node, f"{what}: has no value")
        text = str(node.value).strip()
        if not text:
            raise self.error(node, f"{what}: is empty")
        return text

    def items(self, node: _Node, what: str) -> list[_Node]:
        """A sequence's items; a single scalar counts as a one-item list."""
        if node.id == "scalar":
            return [node]
        if node.id != "sequence":
            raise self.error(node, f"{what}: expected a list")
        return list(node.value)

    def each(self, node: _Node, what: str, parse: Callable[[_Node, str], _T]) -> list[_T]:
        return [parse(item, what) for item in self.items(node, what)]

    @staticmethod
    def is_null(node: _Node) -> bool:
        return node.id == "scalar" and node.tag == _NULL_TAG


def parse_policies(
    text: str,
    *,
    path: str,
    deny_categories: frozenset[str],
    allow_categories: frozenset[str],
    yaml_module: YamlModule,
) -> Policies:
    """Parse and validate the text of policy.yaml.

    Args:
        text: the file's contents.
        path: the name to report errors with (``policy.yaml``, or a full path).
        deny_categories: categories of the deny/ rule files; ``"*"`` expands to these.
        allow_categories: categories of the allow/ rule files.
        yaml_module: the ``yaml`` module (PyYAML); passed in because a pure module may
            not import it.

    Returns:
        the policies in file order; ``Policies(())`` for an empty file or one without
        ``policies``.

    Raises:
        PolicyError: the text is not YAML or breaks the format; the message starts with
            ``PATH:LINE: ``.
    """
    reader = _Reader(path)
    try:
        root: _Node | None = yaml_module.compose(text)
    except yaml_module.YAMLError as exc:
        raise PolicyError(f"{path}:{_yaml_error_line(exc, text)}: not valid YAML: "
                          f"{_yaml_problem(exc)}") from None
    if root is None or reader.is_null(root):  # no document, or "---" alone
        return Policies(())
    top = reader.mapping(root, "the top level", TOP_KEYS)
    zone: tzinfo | None = None
    if "timezone" in top:
        zone = _parse_zone(reader, top["timezone"][1])
    groups: dict[str, _Members] = {}
    if "groups" in top:
        groups = _parse_groups(reader, top["groups"][1])
    if "policies" not in top:
        return Policies(())
    context = _Context(reader, zone, groups, deny_categories, allow_categories)
    rules: list[PolicyRule] = []
    names: set[str] = set()
    for item in reader.items(top["policies"][1], "policies"):
        rule = _parse_policy(context, item, len(rules))
        if rule.name in names:
            raise reader.error(item, f"policy name {rule.name!r} is used twice")
        names.add(rule.name)
        rules.append(rule)
    return Policies(tuple(rules))


@dataclass(frozen=True, slots=True)
class _Members:
    networks: tuple[IPNetwork, ...]
    users: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Context:
    reader: _Reader
    zone: tzinfo | None
    groups: dict[str, _Members]
    deny_categories: frozenset[str]
    allow_categories: frozenset[str]


def _yaml_error_line(exc: Exception, text: str) -> int:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        return int(mark.line) + 1
    # ReaderError (a character YAML does not allow) gives a character offset instead.
    position = getattr(exc, "position", None)
    if isinstance(position, int):
        return text.count("\n", 0, position) + 1
    return 1


def _yaml_problem(exc: Exception) -> str:
    # MarkedYAMLError has .problem; ReaderError (a forbidden character) has .reason.
    problem = getattr(exc, "problem", None) or getattr(exc, "reason", None)
    if problem:
        return str(problem)
    return " ".join(str(exc).split())


def _parse_zone(reader: _Reader, node: _Node) -> tzinfo:
    key = reader.scalar(node, "timezone")
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise reader.error(
            node, f"timezone: unknown time zone {key!r} (use an IANA name such as Europe/Paris)"
        ) from None


def _parse_groups(reader: _Reader, node: _Node) -> dict[str, _Members]:
    if node.id != "mapping":
        raise reader.error(node, "groups: expected a mapping of group name to members")
    names = {reader.scalar(key, "groups: a group name") for key, _ in node.value}
    groups: dict[str, _Members] = {}
    for key_node, value_node in node.value:
        name = reader.scalar(key_node, "groups: a group name")
        what = f"group {name!r}"
        if name in groups:
            raise reader.error(key_node, f"{what} is defined twice")
        if _ADDRESS_LIKE.fullmatch(name) or name.startswith(USER_PREFIX) or name == "*":
            raise reader.error(key_node, f"{what}: a group name cannot look like an address or user")
        if reader.is_null(value_node):
            raise reader.error(value_node, f"{what} has no members")
        networks: list[IPNetwork] = []
        users: set[str] = set()
        for item in reader.items(value_node, what):
            entry = reader.scalar(item, what)
            if entry.startswith(USER_PREFIX):
                users.add(_parse_user(reader, item, entry, what))
            elif _ADDRESS_LIKE.fullmatch(entry):
                networks.append(_parse_network(reader, item, entry, what))
            elif entry in names:
                raise reader.error(
                    item, f"{what}: groups cannot contain groups ({entry!r}); "
                    f"write {USER_PREFIX}{entry} if it is a user name"
                )
            else:
                users.add(_parse_user(reader, item, USER_PREFIX + entry, what))
        if not networks and not users:
            raise reader.error(value_node, f"{what} has no members")
        groups[name] = _Members(tuple(networks), frozenset(users))
    return groups


def _parse_user(reader: _Reader, node: _Node, entry: str, what: str) -> str:
    user = entry.removeprefix(USER_PREFIX).strip()
    if not user or any(c.isspace() for c in user):
        raise reader.error(node, f"{what}: {entry!r} is not a user name (no spaces, not empty)")
    return user


def _parse_required_users(reader: _Reader, node: _Node, what: str) -> frozenset[str]:
    """A policy's ``users``: names, bare or ``user:NAME``."""
    names = frozenset(_parse_user(reader, item, USER_PREFIX + reader.scalar(item, what)
                                  .removeprefix(USER_PREFIX), what) for item in reader.items(node, what))
    if not names:
        raise reader.error(node, f"{what} is empty (omit it for every user)")
    return names


def _parse_network(reader: _Reader, node: _Node, entry: str, what: str) -> IPNetwork:
    """An address or CIDR; host bits are allowed (10.0.1.5/24 means 10.0.1.0/24), as in
    config.py, and ``::ffff:a.b.c.d/n`` becomes the IPv4 network it stands for."""
    try:
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        raise reader.error(node, f"{what}: {entry!r} is not an IP address or CIDR") from None
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network(f"{mapped}/{network.prefixlen - 96}", strict=False)
    return network


def _parse_policy(context: _Context, node: _Node, index: int) -> PolicyRule:
    reader = context.reader
    if node.id != "mapping":
        raise reader.error(node, f"policies[{index}]: expected a mapping with name, clients, ...")
    keys = reader.mapping(node, f"policies[{index}]", POLICY_KEYS)
    if "name" not in keys:
        raise reader.error(node, f"policies[{index}]: the policy has no name")
    name = reader.scalar(keys["name"][1], f"policies[{index}]: name")
    what = f"policy {name!r}"

    networks, users = _parse_clients(context, keys["clients"][1], what) if "clients" in keys else ([], set())

    when: list[TimeWindow] = []
    if "when" in keys:
        value = keys["when"][1]
        windows = [value] if value.id == "mapping" else reader.items(value, f"{what}: when")
        if not windows:
            raise reader.error(value, f"{what}: when is empty (omit it for always)")
        when = [_parse_window(reader, w, f"{what}: when", context.zone) for w in windows]

    deny: frozenset[str] = frozenset()
    if "deny" in keys:
        deny = _parse_categories(context, keys["deny"][1], f"{what}: deny", star=True)
    allow: frozenset[str] = frozenset()
    if "allow" in keys:
        allow = _parse_categories(context, keys["allow"][1], f"{what}: allow", star=False)

    default: Action = "allow"
    if "default" in keys:
        value = keys["default"][1]
        text = reader.scalar(value, f"{what}: default")
        if text == "allow":
            default = "allow"
        elif text == "deny":
            default = "deny"
        else:
            raise reader.error(value, f"{what}: default must be allow or deny, got {text!r}")

    safe_search = None
    if "safe_search" in keys:
        safe_search = _parse_flag(reader, keys["safe_search"][1], f"{what}: safe_search")
    return PolicyRule(
        name=name, source=reader.where(node), clients=tuple(networks), users=frozenset(users),
        when=tuple(when), deny=deny, allow=allow, default=default, safe_search=safe_search,
        redirect=_parse_redirect(reader, keys["redirect"][1], f"{what}: redirect")
        if "redirect" in keys else None,
        required_users=_parse_required_users(reader, keys["users"][1], f"{what}: users")
        if "users" in keys else None,
    )


def _parse_clients(context: _Context, value: _Node, what: str) -> tuple[list[IPNetwork], set[str]]:
    reader = context.reader
    entries = reader.items(value, f"{what}: clients")
    if not entries:
        raise reader.error(value, f"{what}: clients is empty (omit it to match every client)")
    networks: list[IPNetwork] = []
    users: set[str] = set()
    for item in entries:
        networks_, users_ = _parse_client(context, item, f"{what}: clients")
        networks.extend(n for n in networks_ if n not in networks)
        users.update(users_)
    return networks, users


def _parse_redirect(reader: _Reader, node: _Node, what: str) -> str:
    text = reader.scalar(node, what)
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not rest or rest[0] in "/?#" \
            or any(c.isspace() or ord(c) < 0x21 for c in text):
        raise reader.error(node, f"{what}: {text!r} is not an http:// or https:// URL")
    template = Template(text)
    unknown = sorted(set(template.get_identifiers()) - set(REDIRECT_FIELDS))
    if unknown or not template.is_valid():
        fields = ", ".join(f"${name}" for name in REDIRECT_FIELDS)
        named = f" (${unknown[0]})" if unknown else ""
        raise reader.error(node, f"{what}: unknown field{named}: the fields are {fields}; "
                                 f"write $$ for a dollar sign")
    return text


def _parse_flag(reader: _Reader, node: _Node, what: str) -> bool:
    text = reader.scalar(node, what).lower()
    if text not in ("true", "false", "yes", "no", "on", "off"):
        raise reader.error(node, f"{what} must be true or false, got {text!r}")
    return text in ("true", "yes", "on")


def _parse_client(context: _Context, node: _Node, what: str) -> tuple[Iterable[IPNetwork], Iterable[str]]:
    reader = context.reader
    entry = reader.scalar(node, what)
    if entry.startswith(USER_PREFIX):
        return (), (_parse_user(reader, node, entry, what),)
    if entry in context.groups:
        members = context.groups[entry]
        return members.networks, members.users
    if _ADDRESS_LIKE.fullmatch(entry):
        return (_parse_network(reader, node, entry, what),), ()
    known = ", ".join(sorted(context.groups)) or "none defined"
    raise reader.error(
        node, f"{what}: unknown group {entry!r} (groups: {known}; "
        f"write {USER_PREFIX}NAME for a user)"
    )


def _parse_categories(context: _Context, node: _Node, what: str, *, star: bool) -> frozenset[str]:
    reader = context.reader
    known = context.deny_categories | context.allow_categories
    names: set[str] = set()
    for item in reader.items(node, what):
        name = reader.scalar(item, what)
        if name == "*":
            if not star:
                raise reader.error(item, f'{what}: "*" is only for deny (to allow everything, '
                                         f"use default: allow)")
            # Expanded now, so the rule lists what it really denies; categories added
            # later mean a restart, like every rule file.
            names.update(context.deny_categories)
        elif name in known:
            names.add(name)
        else:
            listed = ", ".join(sorted(known)) or "none: the rules folder has no category files"
            raise reader.error(item, f"{what}: unknown category {name!r} (known: {listed})")
    return frozenset(names)


def _parse_window(reader: _Reader, node: _Node, what: str, zone: tzinfo | None) -> TimeWindow:
    keys = reader.mapping(node, what, WINDOW_KEYS)
    days = ALL_DAYS
    if "days" in keys:
        days = _parse_days(reader, keys["days"][1], f"{what}: days")
    start, end = 0, MINUTES_PER_DAY
    if "hours" in keys:
        start, end = _parse_hours(reader, keys["hours"][1], f"{what}: hours")
    return TimeWindow(days, start, end, zone)


def _parse_days(reader: _Reader, node: _Node, what: str) -> frozenset[int]:
    days: set[int] = set()
    items = reader.items(node, what)
    if not items:
        raise reader.error(node, f"{what}: no day given (omit days for every day)")
    for item in items:
        # "mon, wed" in one string is read like [mon, wed].
        for part in reader.scalar(item, what).split(","):
            days.update(_parse_day_range(reader, item, part.strip().lower(), what))
    return frozenset(days)


def _parse_day_range(reader: _Reader, node: _Node, text: str, what: str) -> Iterator[int]:
    if text == "*":
        yield from ALL_DAYS
        return
    first, sep, last = (p.strip() for p in text.partition("-"))
    if first not in _DAYS or (sep and last not in _DAYS):
        raise reader.error(
            node, f"{what}: {text!r} is not a day or day range "
            f"(days: {', '.join(DAY_NAMES)}; ranges such as mon-fri; or *)"
        )
    low = _DAYS[first]
    high = _DAYS[last] if sep else low
    # A range runs forward round the week: fri-mon is fri, sat, sun, mon.
    for offset in range((high - low) % 7 + 1):
        yield (low + offset) % 7


def _parse_hours(reader: _Reader, node: _Node, what: str) -> tuple[int, int]:
    text = reader.scalar(node, what)
    first, sep, last = (p.strip() for p in text.partition("-"))
    if not sep:
        raise reader.error(node, f"{what}: {text!r} is not a range HH:MM-HH:MM")
    start = _parse_clock(reader, node, first, what, end=False)
    end = _parse_clock(reader, node, last, what, end=True)
    if start == end:
        raise reader.error(node, f"{what}: {text!r} is an empty window (start equals end)")
    # 24:00 as an end stays 1440, so "08:00-24:00" does not cross midnight; "22:00-00:00"
    # crosses it with nothing after, which covers the same minutes.
    return start, end


def _parse_clock(reader: _Reader, node: _Node, text: str, what: str, *, end: bool) -> int:
    match = _CLOCK.fullmatch(text)
    if match is None:
        raise reader.error(node, f"{what}: {text!r} is not a time HH:MM")
    hours, minutes = int(match[1]), int(match[2])
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not end)):
        limit = "24:00" if end else "23:59"
        raise reader.error(node, f"{what}: {text!r} is not a time from 00:00 to {limit}")
    return hours * 60 + minutes
