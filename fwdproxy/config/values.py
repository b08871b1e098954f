"""Checking configuration values: addresses, networks, ports, host maps and numeric
sections, each error naming the file and key (`where`).
"""

from __future__ import annotations

import ipaddress
import math
import os
from dataclasses import fields
from typing import Any

from fwdproxy.errors import ConfigError
from fwdproxy.policy import PortRange
from fwdproxy.policy.engine import IPNetwork
from fwdproxy.policy.names import IPAddress, canonical_address, canonical_host

MAX_WORKERS = 256


def parse_workers(value: Any, where: str) -> int:
    """A worker count: a positive integer, or ``auto`` for one per usable core."""
    text = str(value).strip().lower()
    if text == "auto":
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not Linux
            return max(1, os.cpu_count() or 1)
    if isinstance(value, bool) or not (text.isascii() and text.isdigit()) or not (
            1 <= int(text) <= MAX_WORKERS):
        raise ConfigError(f"{where}: {value!r} is not a number of workers from 1 to {MAX_WORKERS}, "
                          "or auto")
    return int(text)


def parse_network(value: Any, where: str) -> IPNetwork:
    try:
        network = ipaddress.ip_network(str(value).strip(), strict=False)
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not an IP address or CIDR") from None
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:  # ::ffff:a.b.c.d/n written for an IPv4 network
            return ipaddress.IPv4Network(f"{mapped}/{network.prefixlen - 96}", strict=False)
    return network


def parse_port_range(value: Any, where: str) -> PortRange:
    text = str(value).strip()
    first, sep, last = text.partition("-")
    try:
        low, high = int(first), int(last if sep else first)
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not a port or A-B port range") from None
    if not (1 <= low <= high <= 65535):
        raise ConfigError(f"{where}: {value!r} is not a port range within 1-65535")
    return PortRange(low, high)


def as_list(value: Any, where: str) -> list[Any]:
    if isinstance(value, (str, int)):
        return [value]
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def parse_hosts(value: Any, where: str) -> dict[str, tuple[IPAddress, ...]]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping of host name to address(es)")
    hosts: dict[str, tuple[IPAddress, ...]] = {}
    for name, addresses in value.items():
        try:
            canonical, _ = canonical_host(str(name))
        except Exception:
            raise ConfigError(f"{where}.{name}: not a valid host name") from None
        parsed: list[IPAddress] = []
        for item in as_list(addresses, f"{where}.{name}"):
            try:
                parsed.append(canonical_address(ipaddress.ip_address(str(item).strip())))
            except ValueError:
                raise ConfigError(f"{where}.{name}: {item!r} is not an IP address") from None
        if not parsed:
            raise ConfigError(f"{where}.{name}: no address given")
        hosts[canonical] = tuple(parsed)
    return hosts


def parse_section(cls: type[Any], value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping")
    known = {f.name: f for f in fields(cls)}
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(known))})")
        kind = str(known[key].type)
        if item is None and kind.endswith("| None"):
            out[key] = None
            continue
        number = item
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise ConfigError(f"{where}.{key}: expected a number, got {item!r}")
        if not math.isfinite(number) or number <= 0:
            raise ConfigError(f"{where}.{key}: must be a positive number, got {item!r}")
        if kind.removesuffix(" | None") == "int":
            if number != int(number):
                raise ConfigError(f"{where}.{key}: must be a whole number, got {item!r}")
            number = int(number)
        out[key] = number
    return out


def only_keys(value: dict[str, Any], known: set[str], where: str) -> None:
    for key in value:
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(known))})")


def deny_list(value: Any, where: str) -> tuple[tuple[IPNetwork, ...], bool]:
    networks: list[IPNetwork] = []
    deny_local = False
    for index, item in enumerate(as_list(value, where)):
        if str(item).strip().lower() == "local":
            deny_local = True
        else:
            networks.append(parse_network(item, f"{where}[{index}]"))
    return tuple(networks), deny_local
