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

from fwdproxy.target import IPAddress, canonical_address

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
    """The answer to one question, with the source that decided it."""

    allowed: bool
    source: str
    reason: str


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
    """

    client: IPAddress
    method: str
    scheme: str
    host: str
    port: int
    ip: IPAddress | None = None


ALLOWED = Verdict(True, "default", "allowed")


class Policy:
    """The decisions of this proxy, built once at startup from the configuration.

    Args:
        clients: networks allowed to use the proxy.
        connect_ports: ports CONNECT may reach.
        deny_destinations: networks never connected to.
        deny_local: also refuse every address of this machine (the ``local`` entry).
        listeners: our own listening (address, port) pairs; an address of None is a
            wildcard listener (every local address on that port).
    """

    def __init__(
        self,
        *,
        clients: Iterable[IPNetwork],
        connect_ports: Iterable[PortRange],
        deny_destinations: Iterable[IPNetwork],
        deny_local: bool,
        listeners: Iterable[tuple[IPAddress | None, int]] = (),
    ) -> None:
        self.clients = tuple(clients)
        self.connect_ports = tuple(connect_ports)
        self.deny_destinations = tuple(deny_destinations)
        self.deny_local = deny_local
        self.listeners = frozenset(listeners)
        self.listen_ports = frozenset(port for _, port in self.listeners)

    def with_listeners(self, listeners: Iterable[tuple[IPAddress | None, int]]) -> Policy:
        """A copy that knows the addresses actually bound (port 0 is only known then)."""
        return Policy(
            clients=self.clients,
            connect_ports=self.connect_ports,
            deny_destinations=self.deny_destinations,
            deny_local=self.deny_local,
            listeners=listeners,
        )

    def admit(self, client: IPAddress) -> Verdict:
        """May this client use the proxy at all? Checked before a byte is read."""
        client = canonical_address(client)
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
            return self._check_network(facts.ip)
        return ALLOWED

    def needs_local_check(self, address: IPAddress, port: int) -> bool:
        """Must the edge find out whether `address` belongs to this machine?"""
        return self.deny_local or port in self.listen_ports

    def decide_address(self, facts: RequestFacts, address: IPAddress, *, is_local: bool) -> Verdict:
        """Decide one resolved address of an allowed request.

        Args:
            facts: the request, as given to `decide`.
            address: one address the host resolved to.
            is_local: whether `address` belongs to this machine (asked of the edge only
                when `needs_local_check` says so; False otherwise).
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
        return self._check_network(address)

    def _check_network(self, address: IPAddress) -> Verdict:
        address = canonical_address(address)
        for network in self.deny_destinations:
            if address in network:
                return Verdict(False, "config:deny_destinations",
                               f"destination {address} is in {network}, which is never reached")
        return ALLOWED
