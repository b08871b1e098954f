"""The settings sections that are more than a scalar or a flat mapping: ``connect_sni``
and ``gateway`` (each a bare value or a mapping of its fields)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fwdproxy.config.settings import (
    SNI_ECH,
    SNI_MATCHES,
    SNI_MODES,
    SNI_OUTCOMES,
    GatewaySettings,
    SniSettings,
)
from fwdproxy.config.values import as_list, only_keys, parse_port_range
from fwdproxy.errors import ConfigError

__all__ = ["parse_connect_sni", "parse_gateway"]


def parse_connect_sni(value: Any, where: str) -> SniSettings:
    """``enforce``, ``log`` or ``off``, or a mapping of SniSettings' fields."""
    if not isinstance(value, dict):
        value = {"mode": value}
    only_keys(value, {"mode", "match", "ports", "missing", "not_tls", "ech"}, where)
    if isinstance(value.get("mode"), bool):  # YAML reads a bare off as false (and on as true)
        value = {**value, "mode": "enforce" if value["mode"] else "off"}
    changes: dict[str, Any] = {}
    for key, choices in (("mode", SNI_MODES), ("match", SNI_MATCHES), ("missing", SNI_OUTCOMES),
                         ("not_tls", SNI_OUTCOMES), ("ech", SNI_ECH)):
        if key in value:
            text = str(value[key]).strip().lower()
            if text not in choices:
                raise ConfigError(f"{where}.{key}: {value[key]!r} is not one of {', '.join(choices)}")
            changes[key] = text
    if "ports" in value:
        items = as_list(value["ports"], f"{where}.ports")
        changes["ports"] = tuple(parse_port_range(v, f"{where}.ports[{i}]") for i, v in enumerate(items))
    return SniSettings(**changes)


def parse_gateway(value: Any, where: str) -> GatewaySettings:
    """``true``/``false``, or ``{enabled, sandbox, ca_file}``."""
    if not isinstance(value, dict):
        value = {"enabled": value}
    only_keys(value, {"enabled", "sandbox", "ca_file"}, where)
    changes: dict[str, Any] = {}
    for key in ("enabled", "sandbox"):
        if key in value:
            if not isinstance(value[key], bool):
                raise ConfigError(f"{where}.{key}: expected true or false")
            changes[key] = value[key]
    changes.setdefault("enabled", True)  # a mapping turns it on unless it says otherwise
    if value.get("ca_file") is not None:
        path = Path(str(value["ca_file"])).expanduser()
        if not path.is_file():
            raise ConfigError(f"{where}.ca_file: {path} is not a file")
        changes["ca_file"] = path
    return GatewaySettings(**changes)
