"""The decision functions: may this client use the proxy, may it reach this destination.

Strategy: the edge (connection.py) gathers facts, calls these pure functions and acts on
the `Verdict`, which always names the deciding source (``config:connect_ports``...). A
request is decided twice: by name before resolution (`decide`), then once per resolved
address (`decide_address`), so that address rules see what is really connected to. The
safety settings (`clients`, `connect_ports`, `deny_destinations`, our own listeners) are
checked here and nothing later can lift them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from string import Template
from typing import Protocol
from urllib.parse import quote

from fwdproxy.policy.index import Match, RuleSet
from fwdproxy.policy.names import IPAddress, canonical_address

# What a policy's ``redirect`` URL may name (policy.yaml), each filled in percent-encoded.
REDIRECT_FIELDS = ("url", "client", "user", "policy", "category", "rule")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class PortRange:
    """An inclusive port range; a single port has first == last."""

    first: int
    last: int

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.first <= port <= self.last

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to one question, with the source that decided it.

    Attributes:
        allowed: the answer.
        source: what decided: a rule as ``deny/ads.txt:12``, a setting as
            ``config:connect_ports``, ``policy.yaml:8`` for a policy's default, or
            ``default``.
        reason: one sentence for pages and logs.
        category: the deciding rule's category, when a rule decided.
        rule: what the deciding rule says ("ads.example.com and its subdomains").
        final: False when address rules may still change the answer once the host is
            resolved (see `Policy.decide_address`).
        matches: every rule entry the name matched (the address phase adds its own).
        policy: the policy.yaml policy that applied, if any.
        redirect: for a denial by that policy, its ``redirect`` URL template.
    """

    allowed: bool
    source: str
    reason: str
    category: str | None = None
    rule: str | None = None
    final: bool = True
    matches: tuple[Match, ...] = ()
    policy: str | None = None
    redirect: str | None = None


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What the policy may look at for one request.

    Attributes:
        client: the client's address.
        method: request method (``CONNECT`` for tunnels).
        scheme: ``http`` for forwarded requests, ``connect`` for tunnels.
        host: canonical destination host (see target.canonical_host).
        port: destination port.
        ip: the host as an address when the client gave a literal.
        path: for plain HTTP, the normalised path and query (target.normalize_path).
        url: for plain HTTP, the normalised URL that URL regexes see.
        user: the authenticated user, when there is one.
        now: the time policies' windows are checked against (None: not time-bound;
            the edge passes the real time, tests an injected one).
    """

    client: IPAddress
    method: str
    scheme: str
    host: str
    port: int
    ip: IPAddress | None = None
    path: str | None = None
    url: str | None = None
    user: str | None = None
    now: datetime | None = None


def redirect_location(template: str, fields: dict[str, str]) -> str:
    """A policy's ``redirect`` URL with its ``$name`` fields filled in, each
    percent-encoded (a URL inside a query must not end it); a missing field is empty."""
    values = {name: quote(fields.get(name, ""), safe="") for name in REDIRECT_FIELDS}
    return Template(template).safe_substitute(values)


def redirect_location_for(verdict: Verdict, facts: RequestFacts, url: str) -> str | None:
    """Where a denied plain-HTTP request is redirected (its policy's ``redirect`` with
    the fields filled in), or None for the block page; a CONNECT is never redirected, as
    a browser shows nothing it is answered with. Nor is a request for the redirect page
    itself, which the policy may deny too (``default: deny``): that would be a loop."""
    if verdict.allowed or verdict.redirect is None or facts.scheme == "connect":
        return None
    page = verdict.redirect.split("?", 1)[0].split("$", 1)[0].lower()
    if url.lower().startswith(page):
        return None
    return redirect_location(verdict.redirect, {
        "url": url, "client": str(facts.client), "user": facts.user or "",
        "policy": verdict.policy or "", "category": verdict.category or "",
        "rule": verdict.source,
    })


class PolicyChoice(Protocol):
    """What the engine needs of a policy.yaml policy (see policies.PolicyRule)."""

    @property
    def name(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def allow(self) -> frozenset[str]: ...
    @property
    def deny(self) -> frozenset[str]: ...
    @property
    def default(self) -> str: ...
    @property
    def safe_search(self) -> bool | None: ...
    @property
    def redirect(self) -> str | None: ...


class PolicySelector(Protocol):
    """Picks the policy for a request (see policies.Policies)."""

    def select(self, client: IPAddress, user: str | None, now: datetime) -> PolicyChoice | None: ...


ALLOWED = Verdict(True, "default", "allowed")


_ADMITTED_CACHE_SIZE = 4096


class Policy:
    """The decisions of this proxy, built once at startup from the configuration.

    Args:
        clients: networks allowed to use the proxy.
        connect_ports: ports CONNECT may reach.
        deny_destinations: networks never connected to.
        deny_local: also refuse every address of this machine (the ``local`` entry).
        listeners: our own listening (address, port) pairs; an address of None is a
            wildcard listener (every local address on that port).
        safe_search: clients get the safe-search addresses, unless their policy says
            otherwise (see `wants_safe_search`).
    """

    def __init__(
        self,
        *,
        clients: Iterable[IPNetwork],
        connect_ports: Iterable[PortRange],
        deny_destinations: Iterable[IPNetwork],
        deny_local: bool,
        listeners: Iterable[tuple[IPAddress | None, int]] = (),
        rules: RuleSet | None = None,
        policies: PolicySelector | None = None,
        safe_search: bool = False,
    ) -> None:
        self.clients = tuple(clients)
        self.connect_ports = tuple(connect_ports)
        self.deny_destinations = tuple(deny_destinations)
        self.deny_local = deny_local
        self.listeners = frozenset(listeners)
        self.listen_ports = frozenset(port for _, port in self.listeners)
        self.rules = rules
        self.policies = policies
        self.safe_search = safe_search
        # admit() per client: one per connection, from few clients. Bounded (cleared when
        # full), so a scan from many addresses only churns it.
        self._admitted: dict[IPAddress, Verdict] = {}

    def _copy(self, **changes: object) -> Policy:
        values: dict[str, object] = {
            "clients": self.clients, "connect_ports": self.connect_ports,
            "deny_destinations": self.deny_destinations, "deny_local": self.deny_local,
            "listeners": self.listeners, "rules": self.rules, "policies": self.policies,
            "safe_search": self.safe_search,
        }
        values.update(changes)
        return Policy(**values)  # type: ignore[arg-type]

    def with_listeners(self, listeners: Iterable[tuple[IPAddress | None, int]]) -> Policy:
        """A copy that knows the addresses actually bound (port 0 is only known then)."""
        return self._copy(listeners=frozenset(listeners))

    def with_rules(self, rules: RuleSet | None, policies: PolicySelector | None) -> Policy:
        """A copy with a (re)loaded rule set and policies; the safety settings stay."""
        return self._copy(rules=rules, policies=policies)

    def admit(self, client: IPAddress) -> Verdict:
        """May this client use the proxy at all? Checked before a byte is read."""
        verdict = self._admitted.get(client)
        if verdict is None:
            verdict = self._admit(canonical_address(client))
            if len(self._admitted) >= _ADMITTED_CACHE_SIZE:
                self._admitted.clear()
            self._admitted[client] = verdict
        return verdict

    def _admit(self, client: IPAddress) -> Verdict:
        for network in self.clients:
            if client in network:
                return Verdict(True, "config:clients", f"client in {network}")
        return Verdict(False, "config:clients", f"client {client} is not in the allowed clients")

    def decide(self, facts: RequestFacts) -> Verdict:
        """Decide by name, before any resolution.

        Returns:
            a denial, or an allowance that `decide_address` must still confirm for each
            address the host resolves to.
        """
        if facts.scheme == "connect" and not any(facts.port in r for r in self.connect_ports):
            allowed = ", ".join(str(r) for r in self.connect_ports) or "none"
            return Verdict(
                False,
                "config:connect_ports",
                f"CONNECT to port {facts.port} is not allowed (allowed: {allowed})",
            )
        if facts.ip is not None:
            safety = self._check_network(facts.ip)
            if not safety.allowed:
                return safety
        if self.rules is None:
            return ALLOWED
        rules = self.rules
        if facts.ip is None:
            matches = rules.match_domain(facts.host)
        else:
            matches = rules.match_address(facts.ip) + rules.match_literal(facts.ip)
        matches += rules.match_host_regex(facts.host)
        if facts.scheme == "http" and facts.path is not None:
            matches += rules.match_url(facts.host, facts.port, facts.path, facts.url or "")
        return self._judge(facts, matches)

    def wants_safe_search(self, facts: RequestFacts) -> bool:
        """Does this request's client get the safe-search addresses? Its policy says so,
        or else the configuration's ``safe_search``."""
        chosen = self._chosen(facts)
        if chosen is not None and chosen.safe_search is not None:
            return chosen.safe_search
        return self.safe_search

    def _chosen(self, facts: RequestFacts) -> PolicyChoice | None:
        if self.policies is None:
            return None
        now = facts.now if facts.now is not None else datetime.now().astimezone()
        return self.policies.select(facts.client, facts.user, now)

    def _judge(self, facts: RequestFacts, matches: list[Match]) -> Verdict:
        """Allow beats deny; a policy says which categories deny, which allow, and the
        default. Without policy.yaml every deny/ category denies and the default allows."""
        chosen = self._chosen(facts)
        allowing: Match | None = None
        denying: Match | None = None
        for match in matches:
            if match.action == "allow" or (chosen is not None and match.category in chosen.allow):
                allowing = allowing or match
            elif chosen is None or match.category in chosen.deny:
                denying = denying or match
        name = chosen.name if chosen is not None else None
        redirect = chosen.redirect if chosen is not None else None
        final = self.rules is None or not self.rules.has_address_rules
        found = tuple(matches)
        if allowing is not None:
            return Verdict(True, allowing.source, f"allowed: {allowing.rule}", allowing.category,
                           allowing.rule, True, found, name)
        if denying is not None:
            return Verdict(False, denying.source,
                           f"blocked ({denying.category}): {denying.rule}", denying.category,
                           denying.rule, final, found, name, redirect)
        if chosen is not None and chosen.default == "deny":
            return Verdict(False, chosen.source,
                           f"policy {chosen.name} allows only listed categories", None, None,
                           final, found, name, redirect)
        if final and not found and name is None:
            return ALLOWED  # the common answer, shared (a Verdict is immutable)
        return Verdict(True, ALLOWED.source, ALLOWED.reason, final=final, matches=found, policy=name)

    def needs_local_check(self, address: IPAddress, port: int) -> bool:
        """Must the edge find out whether `address` belongs to this machine?"""
        return self.deny_local or port in self.listen_ports

    def decide_address(self, facts: RequestFacts, address: IPAddress, *, is_local: bool,
                       by_name: Verdict | None = None) -> Verdict:
        """Decide one resolved address of a request.

        Args:
            facts: the request, as given to `decide`.
            address: one address the host resolved to.
            is_local: whether `address` belongs to this machine (asked of the edge only
                when `needs_local_check` says so; False otherwise).
            by_name: what `decide` answered; when it is not final, address rules and
                the name's matches are judged together (allow beats deny across both).
        """
        address = canonical_address(address)
        if is_local or address.is_loopback or address.is_unspecified:
            # Connecting to 0.0.0.0 or :: reaches whatever listens on the port locally.
            ours = (None, facts.port) in self.listeners or (address, facts.port) in self.listeners
            if address.is_unspecified and facts.port in self.listen_ports:
                ours = True
            if ours:
                return Verdict(False, "builtin:own-listener",
                               f"{address} port {facts.port} is this proxy itself")
            if self.deny_local and is_local:
                return Verdict(False, "config:deny_destinations",
                               f"{address} is an address of the proxy's own machine")
        safety = self._check_network(address)
        if not safety.allowed or by_name is None:
            return safety
        if by_name.final or self.rules is None:
            return by_name
        return self._judge(facts, [*by_name.matches, *self.rules.match_address(address)])

    def _check_network(self, address: IPAddress) -> Verdict:
        address = canonical_address(address)
        for network in self.deny_destinations:
            if address in network:
                return Verdict(False, "config:deny_destinations",
                               f"destination {address} is in {network}, which is never reached")
        return ALLOWED
