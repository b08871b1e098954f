"""resolver: the hosts map, special-use names, and the "is this address ours?" probe.

No test here sends a DNS query: every name is a literal, in `hosts`, or special-use.
"""

from __future__ import annotations

import ipaddress

import pytest

from fwdproxy.errors import BadGateway
from fwdproxy.proxy.resolver import LocalAddresses, resolve

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address


async def test_literal_is_returned_as_is() -> None:
    assert await resolve("10.1.2.3", 80, literal=V4("10.1.2.3"), hosts={}, timeout=1) == [V4("10.1.2.3")]


async def test_hosts_map_comes_before_dns() -> None:
    hosts = {"origin.test": (V4("127.0.0.1"), V6("::1"))}
    assert await resolve("origin.test", 80, literal=None, hosts=hosts, timeout=1) == [
        V4("127.0.0.1"), V6("::1")]


@pytest.mark.parametrize("name", ["localhost", "app.localhost", "a.b.localhost"])
async def test_localhost_names_are_loopback_without_dns(name: str) -> None:
    assert await resolve(name, 80, literal=None, hosts={}, timeout=1) == [V4("127.0.0.1"), V6("::1")]


@pytest.mark.parametrize("name", ["invalid", "nothing.invalid", "a.b.invalid"])
async def test_invalid_names_fail_without_dns(name: str) -> None:
    with pytest.raises(BadGateway, match="no such host") as caught:
        await resolve(name, 80, literal=None, hosts={}, timeout=1)
    assert caught.value.host == name


@pytest.mark.parametrize(("address", "local"), [
    ("127.0.0.1", True),
    ("127.8.9.10", True),
    ("::1", True),
    ("0.0.0.0", True),
    ("::", True),
    ("192.0.2.1", False),        # TEST-NET-1: never configured here
    ("2001:db8::1", False),      # documentation prefix
])
def test_local_addresses(address: str, local: bool) -> None:
    probe = LocalAddresses()
    assert probe(ipaddress.ip_address(address)) is local
    assert probe(ipaddress.ip_address(address)) is local  # cached answer agrees
