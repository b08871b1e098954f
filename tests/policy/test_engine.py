"""policy/engine.py: admit, decide (by name) and decide_address, as plain tables.

Every row names the verdict and the source that decided it.
"""

from __future__ import annotations

import ipaddress

import pytest

from fwdproxy.policy import Policy, PortRange, RequestFacts, Verdict
from fwdproxy.policy.engine import IPNetwork
from fwdproxy.policy.names import IPAddress

ip = ipaddress.ip_address


def nets(*texts: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(t) for t in texts)


def make_policy(
    *,
    clients: tuple[str, ...] = ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "fc00::/7"),
    connect_ports: tuple[PortRange, ...] = (PortRange(443, 443),),
    deny: tuple[str, ...] = (),
    deny_local: bool = False,
    listeners: tuple[tuple[IPAddress | None, int], ...] = (),
) -> Policy:
    return Policy(
        clients=nets(*clients),
        connect_ports=connect_ports,
        deny_destinations=nets(*deny),
        deny_local=deny_local,
        listeners=listeners,
    )


def facts(host: str, port: int, *, scheme: str = "http", literal: bool = False) -> RequestFacts:
    return RequestFacts(
        client=ip("127.0.0.1"),
        method="CONNECT" if scheme == "connect" else "GET",
        scheme=scheme,
        host=host,
        port=port,
        ip=ip(host) if literal else None,
    )


# -- PortRange -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("port_range", "port", "inside"),
    [
        (PortRange(443, 443), 443, True),
        (PortRange(443, 443), 444, False),
        (PortRange(8000, 8999), 8000, True),
        (PortRange(8000, 8999), 8999, True),
        (PortRange(8000, 8999), 7999, False),
        (PortRange(8000, 8999), 9000, False),
        (PortRange(1, 65535), 1, True),
        (PortRange(443, 443), "443", False),  # only ints are ports
    ],
)
def test_port_range_contains(port_range: PortRange, port: object, inside: bool) -> None:
    assert (port in port_range) is inside


@pytest.mark.parametrize(
    ("port_range", "text"), [(PortRange(443, 443), "443"), (PortRange(8000, 8999), "8000-8999")]
)
def test_port_range_str(port_range: PortRange, text: str) -> None:
    assert str(port_range) == text


# -- admit -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("clients", "client", "allowed"),
    [
        (("127.0.0.0/8",), "127.0.0.1", True),
        (("127.0.0.0/8",), "127.255.255.254", True),
        (("10.0.0.0/8", "192.168.0.0/16"), "192.168.1.20", True),
        (("10.0.0.0/8", "192.168.0.0/16"), "192.169.0.1", False),
        (("10.0.0.0/8",), "11.0.0.1", False),
        (("10.0.0.0/8",), "203.0.113.9", False),
        # IPv6
        (("::1/128",), "::1", True),
        (("::1/128",), "::2", False),
        (("fc00::/7",), "fd12:3456::1", True),
        (("fc00::/7",), "2001:db8::1", False),
        (("2001:db8::/32",), "2001:db8:ffff::1", True),
        # IPv4-mapped IPv6 clients (dual-stack listener) count as their IPv4 address
        (("10.0.0.0/8",), "::ffff:10.1.2.3", True),
        (("127.0.0.0/8",), "::ffff:127.0.0.1", True),
        (("10.0.0.0/8",), "::ffff:11.1.2.3", False),
        (("::1/128",), "::ffff:127.0.0.1", False),  # mapped loopback is IPv4, not ::1
        # nobody, when the list is empty
        ((), "127.0.0.1", False),
        ((), "::1", False),
    ],
)
def test_admit(clients: tuple[str, ...], client: str, allowed: bool) -> None:
    verdict = make_policy(clients=clients).admit(ip(client))
    assert verdict.allowed is allowed
    assert verdict.source == "config:clients"


def test_admit_reason_names_the_network_or_the_client() -> None:
    policy = make_policy(clients=("10.0.0.0/8",))
    inside, outside = policy.admit(ip("10.9.9.9")), policy.admit(ip("::ffff:11.0.0.1"))
    assert (inside.source, outside.source) == ("config:clients", "config:clients")
    assert "10.0.0.0/8" in inside.reason
    assert "11.0.0.1" in outside.reason


# -- decide (by name) ------------------------------------------------------------------

PORTS_443 = (PortRange(443, 443),)
PORTS_MIXED = (PortRange(443, 443), PortRange(8443, 8443), PortRange(10000, 10100))


@pytest.mark.parametrize(
    ("connect_ports", "request_facts", "allowed", "source"),
    [
        # CONNECT ports
        (PORTS_443, facts("example.com", 443, scheme="connect"), True, "default"),
        (PORTS_443, facts("example.com", 22, scheme="connect"), False, "config:connect_ports"),
        (PORTS_443, facts("example.com", 80, scheme="connect"), False, "config:connect_ports"),
        (PORTS_443, facts("example.com", 444, scheme="connect"), False, "config:connect_ports"),
        (PORTS_MIXED, facts("example.com", 8443, scheme="connect"), True, "default"),
        (PORTS_MIXED, facts("example.com", 10000, scheme="connect"), True, "default"),
        (PORTS_MIXED, facts("example.com", 10050, scheme="connect"), True, "default"),
        (PORTS_MIXED, facts("example.com", 10100, scheme="connect"), True, "default"),
        (PORTS_MIXED, facts("example.com", 10101, scheme="connect"), False,
         "config:connect_ports"),
        (PORTS_MIXED, facts("example.com", 9999, scheme="connect"), False,
         "config:connect_ports"),
        ((), facts("example.com", 443, scheme="connect"), False, "config:connect_ports"),
        # connect_ports is about tunnels only: plain HTTP may use any port
        (PORTS_443, facts("example.com", 80), True, "default"),
        (PORTS_443, facts("example.com", 8080), True, "default"),
        ((), facts("example.com", 22), True, "default"),
        # the port check comes first, even for a denied literal address
        (PORTS_443, facts("127.0.0.1", 22, scheme="connect", literal=True), False,
         "config:connect_ports"),
    ],
)
def test_decide_connect_ports(connect_ports: tuple[PortRange, ...], request_facts: RequestFacts,
                              allowed: bool, source: str) -> None:
    verdict = make_policy(connect_ports=connect_ports, deny=("127.0.0.0/8",)).decide(request_facts)
    assert (verdict.allowed, verdict.source) == (allowed, source)


def test_decide_connect_port_reason_lists_allowed_ports() -> None:
    verdict = make_policy(connect_ports=PORTS_MIXED).decide(facts("x.test", 22, scheme="connect"))
    assert verdict.source == "config:connect_ports"
    assert "22" in verdict.reason
    assert "443, 8443, 10000-10100" in verdict.reason
    verdict = make_policy(connect_ports=()).decide(facts("x.test", 22, scheme="connect"))
    assert verdict.source == "config:connect_ports"
    assert "none" in verdict.reason


DENY = ("127.0.0.0/8", "::1/128", "169.254.0.0/16", "0.0.0.0/8", "224.0.0.0/4", "fe80::/10")


@pytest.mark.parametrize(
    ("request_facts", "allowed", "source"),
    [
        (facts("127.0.0.1", 80, literal=True), False, "config:deny_destinations"),
        (facts("127.9.9.9", 80, literal=True), False, "config:deny_destinations"),
        (facts("169.254.169.254", 80, literal=True), False, "config:deny_destinations"),
        (facts("0.0.0.0", 80, literal=True), False, "config:deny_destinations"),
        (facts("224.0.0.1", 80, literal=True), False, "config:deny_destinations"),
        (facts("::1", 80, literal=True), False, "config:deny_destinations"),
        (facts("fe80::1", 80, literal=True), False, "config:deny_destinations"),
        # IPv4-mapped literals are checked as IPv4
        (facts("::ffff:127.0.0.1", 80, literal=True), False, "config:deny_destinations"),
        (facts("::ffff:169.254.169.254", 443, scheme="connect", literal=True), False,
         "config:deny_destinations"),
        (facts("127.0.0.1", 443, scheme="connect", literal=True), False,
         "config:deny_destinations"),
        # literals outside the list
        (facts("203.0.113.7", 80, literal=True), True, "default"),
        (facts("2001:db8::7", 80, literal=True), True, "default"),
        (facts("::ffff:203.0.113.7", 80, literal=True), True, "default"),
        # names are not checked by address before resolution
        (facts("localhost", 80), True, "default"),
    ],
)
def test_decide_literal_destinations(request_facts: RequestFacts, allowed: bool,
                                     source: str) -> None:
    verdict = make_policy(deny=DENY).decide(request_facts)
    assert (verdict.allowed, verdict.source) == (allowed, source)


def test_decide_literal_with_empty_deny_list_is_allowed() -> None:
    verdict = make_policy(deny=()).decide(facts("127.0.0.1", 80, literal=True))
    assert (verdict.allowed, verdict.source) == (True, "default")


def test_deny_reason_names_address_and_network() -> None:
    verdict = make_policy(deny=DENY).decide(facts("169.254.169.254", 80, literal=True))
    assert verdict.source == "config:deny_destinations"
    assert "169.254.169.254" in verdict.reason
    assert "169.254.0.0/16" in verdict.reason


# -- decide_address --------------------------------------------------------------------

WILDCARD_8080: tuple[tuple[IPAddress | None, int], ...] = ((None, 8080),)
LOOPBACK_8080: tuple[tuple[IPAddress | None, int], ...] = ((ip("127.0.0.1"), 8080),)
V6_LOOPBACK_8080: tuple[tuple[IPAddress | None, int], ...] = ((ip("::1"), 8080),)
LAN_8080: tuple[tuple[IPAddress | None, int], ...] = ((ip("192.168.1.5"), 8080),)


@pytest.mark.parametrize(
    ("policy", "address", "port", "is_local", "allowed", "source"),
    [
        # deny_destinations applies to every resolved address
        (make_policy(deny=DENY), "127.0.0.1", 80, False, False, "config:deny_destinations"),
        (make_policy(deny=DENY), "::1", 80, False, False, "config:deny_destinations"),
        (make_policy(deny=DENY), "::ffff:127.0.0.1", 80, False, False,
         "config:deny_destinations"),
        (make_policy(deny=DENY), "169.254.169.254", 80, False, False,
         "config:deny_destinations"),
        (make_policy(deny=DENY), "224.0.0.1", 80, False, False, "config:deny_destinations"),
        (make_policy(deny=DENY), "93.184.216.34", 80, False, True, "default"),
        (make_policy(deny=DENY), "2606:2800:220:1::1", 80, False, True, "default"),
        # deny_local: addresses of this machine, whatever they are
        (make_policy(deny_local=True), "192.168.1.5", 80, True, False,
         "config:deny_destinations"),
        (make_policy(deny_local=True), "2001:db8::5", 80, True, False,
         "config:deny_destinations"),
        (make_policy(deny_local=True), "127.0.0.1", 80, True, False, "config:deny_destinations"),
        (make_policy(deny_local=True), "192.168.1.6", 80, False, True, "default"),
        (make_policy(deny_local=False), "192.168.1.5", 80, True, True, "default"),
        (make_policy(deny_local=False), "127.0.0.1", 80, True, True, "default"),
        # own listener on every interface: refused even with no deny list and no deny_local
        (make_policy(listeners=WILDCARD_8080), "127.0.0.1", 8080, False, False,
         "builtin:own-listener"),
        (make_policy(listeners=WILDCARD_8080), "127.0.0.1", 8080, True, False,
         "builtin:own-listener"),
        (make_policy(listeners=WILDCARD_8080), "127.5.6.7", 8080, False, False,
         "builtin:own-listener"),
        (make_policy(listeners=WILDCARD_8080), "::1", 8080, False, False,
         "builtin:own-listener"),
        (make_policy(listeners=WILDCARD_8080), "::ffff:127.0.0.1", 8080, False, False,
         "builtin:own-listener"),
        (make_policy(listeners=WILDCARD_8080), "192.168.1.5", 8080, True, False,
         "builtin:own-listener"),
        (make_policy(listeners=WILDCARD_8080), "0.0.0.0", 8080, True, False,
         "builtin:own-listener"),
        (make_policy(listeners=WILDCARD_8080), "192.168.1.5", 8080, False, True, "default"),
        (make_policy(listeners=WILDCARD_8080), "127.0.0.1", 8081, True, True, "default"),
        # own listener on one address: only that address and port
        (make_policy(listeners=LOOPBACK_8080), "127.0.0.1", 8080, False, False,
         "builtin:own-listener"),
        (make_policy(listeners=LOOPBACK_8080), "127.0.0.1", 8080, True, False,
         "builtin:own-listener"),
        (make_policy(listeners=LOOPBACK_8080), "::ffff:127.0.0.1", 8080, True, False,
         "builtin:own-listener"),
        (make_policy(listeners=LOOPBACK_8080), "127.0.0.2", 8080, True, True, "default"),
        (make_policy(listeners=LOOPBACK_8080), "192.168.1.5", 8080, True, True, "default"),
        (make_policy(listeners=LOOPBACK_8080), "127.0.0.1", 8081, True, True, "default"),
        (make_policy(listeners=V6_LOOPBACK_8080), "::1", 8080, True, False,
         "builtin:own-listener"),
        (make_policy(listeners=V6_LOOPBACK_8080), "127.0.0.1", 8080, True, True, "default"),
        (make_policy(listeners=LAN_8080), "192.168.1.5", 8080, True, False,
         "builtin:own-listener"),
        (make_policy(listeners=LAN_8080), "192.168.1.6", 8080, False, True, "default"),
        # connecting to 0.0.0.0 or :: reaches a loopback listener (the kernel routes it to
        # 127.0.0.1 / ::1), so the unspecified address on a listening port is ours too
        (make_policy(listeners=LOOPBACK_8080), "0.0.0.0", 8080, True, False,
         "builtin:own-listener"),
        (make_policy(listeners=V6_LOOPBACK_8080), "::", 8080, True, False,
         "builtin:own-listener"),
        (make_policy(listeners=LOOPBACK_8080), "0.0.0.0", 8081, True, True, "default"),
        # own listener wins over the other reasons, so the page names it
        (make_policy(deny=DENY, deny_local=True, listeners=WILDCARD_8080), "127.0.0.1", 8080,
         True, False, "builtin:own-listener"),
        (make_policy(deny_local=True, listeners=LOOPBACK_8080), "127.0.0.1", 8080, True, False,
         "builtin:own-listener"),
    ],
)
def test_decide_address(policy: Policy, address: str, port: int, is_local: bool, allowed: bool,
                        source: str) -> None:
    verdict = policy.decide_address(facts("example.com", port), ip(address), is_local=is_local)
    assert (verdict.allowed, verdict.source) == (allowed, source)


def test_own_listener_reason_names_address_and_port() -> None:
    policy = make_policy(listeners=WILDCARD_8080)
    verdict = policy.decide_address(facts("example.com", 8080), ip("127.0.0.1"), is_local=True)
    assert verdict.source == "builtin:own-listener"
    assert "127.0.0.1" in verdict.reason and "8080" in verdict.reason


def test_with_listeners_keeps_the_rest_of_the_policy() -> None:
    base = make_policy(deny=DENY, deny_local=True, connect_ports=PORTS_MIXED)
    bound = base.with_listeners([(None, 3128)])
    assert bound.clients == base.clients
    assert bound.connect_ports == base.connect_ports
    assert bound.deny_destinations == base.deny_destinations
    assert bound.deny_local is True
    verdict = bound.decide_address(facts("example.com", 3128), ip("10.0.0.1"), is_local=True)
    assert (verdict.allowed, verdict.source) == (False, "builtin:own-listener")
    assert base.listeners == frozenset()


@pytest.mark.parametrize(
    ("policy", "address", "port", "needed"),
    [
        (make_policy(deny_local=True), "93.184.216.34", 80, True),
        (make_policy(deny_local=False), "93.184.216.34", 80, False),
        (make_policy(deny_local=False, listeners=WILDCARD_8080), "93.184.216.34", 8080, True),
        (make_policy(deny_local=False, listeners=WILDCARD_8080), "93.184.216.34", 80, False),
    ],
)
def test_needs_local_check(policy: Policy, address: str, port: int, needed: bool) -> None:
    assert policy.needs_local_check(ip(address), port) is needed


def test_verdict_is_frozen() -> None:
    verdict = Verdict(True, "default", "allowed")
    with pytest.raises(AttributeError):
        verdict.allowed = False  # type: ignore[misc]
