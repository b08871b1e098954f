"""THE configuration room: YAML file and command-line flags → one frozen `Config`.

Strategy: everything is read and validated once, at startup; a bad key, address, CIDR or
port range raises `ConfigError` naming the file and key, and nothing is started. Flags
override the file, the file overrides the built-in defaults, and the defaults are the
safe ones: only loopback and private clients, CONNECT to 443 only, and no loopback,
link-local (cloud metadata), multicast, unspecified or own-machine destinations.
"""

from __future__ import annotations

import base64
import ipaddress
import math
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

from fwdproxy.auth import Htpasswd, parse_htpasswd
from fwdproxy.errors import BadRequest, ConfigError
from fwdproxy.policy import Policy, PortRange
from fwdproxy.policy.engine import IPNetwork
from fwdproxy.policy.index import RuleSet
from fwdproxy.policy.names import IPAddress, canonical_address, canonical_host
from fwdproxy.policy.policies import Policies, PolicyError
from fwdproxy.policy.policyfile import parse_policies
from fwdproxy.policy.rulefiles import load_rule_files
from fwdproxy.proxy.headers import is_via_token
from fwdproxy.site.pac import pac_script

DEFAULT_PORT = 8080

DEFAULT_CLIENTS = (
    "127.0.0.0/8", "::1/128",
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
    "fc00::/7", "fe80::/10",
)
# "local" stands for every address of this machine, whatever its interfaces are.
DEFAULT_DENY_DESTINATIONS = (
    "local",
    "127.0.0.0/8", "::1/128",                       # loopback
    "0.0.0.0/8", "::/128",                          # "this host", unspecified
    "169.254.0.0/16", "fe80::/10",                  # link-local, incl. 169.254.169.254
    "fd00:ec2::254/128", "100.100.100.200/32",      # AWS IPv6 and Alibaba metadata
    "224.0.0.0/4", "ff00::/8", "255.255.255.255/32",  # multicast, broadcast
)
DEFAULT_CONNECT_PORTS = (443,)
# The rules folder shipped with fwdproxy (documented examples and the cloud-metadata safety
# list), used when none is given: package data, so an installed wheel has it as a checkout
# does (the checkout's top-level rules/ is a link to it).
BUNDLED_RULES = Path(str(resources.files("fwdproxy").joinpath("rules")))
BLOCK_TEMPLATE = "blockpage.html"
POLICY_FILE = "policy.yaml"


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Every network wait's deadline, in seconds."""

    # Whole request head from a new connection; nginx and Apache use 60 s, 30 s is the
    # most the issue allows, and 20 s still serves a person on a slow mobile link.
    header: float = 20.0
    # A kept-alive client connection waiting for its next request (nginx: 75 s).
    keepalive: float = 60.0
    # TCP connect to an origin, over all its addresses (curl's default is 300, browsers ~30).
    connect: float = 15.0
    # A DNS lookup (glibc's default: 5 s per try, 2 tries).
    dns: float = 10.0
    # Silence from an origin while a response is due or streaming (Squid's read_timeout
    # is 15 min; 5 min lets long polls through while freeing a dead origin's slot).
    upstream_read: float = 300.0
    # A client that sends no request-body bytes, or reads no response bytes, for this long
    # while a request is under way (nginx: client_body_timeout and send_timeout, 60 s).
    client_idle: float = 60.0
    # A tunnel with no bytes either way (Squid: 15 min for read_timeout on tunnels).
    tunnel_idle: float = 900.0
    # After SIGTERM/SIGINT, how long requests in flight may take to finish.
    shutdown_grace: float = 10.0
    # How often the rules folder is checked for changed files (a stat per file).
    rules_poll: float = 2.0


@dataclass(frozen=True, slots=True)
class Limits:
    """Sizes and counts that bound what clients and origins can make us hold."""

    # Concurrent client connections; past it a new client gets 503 at once.
    max_connections: int = 10_000
    # Request head (request line + headers); Squid's request_header_max_size is 64 KB.
    max_head_bytes: int = 65_536
    # Request body; None accepts any length a 64-bit parser can hold (Squid's
    # request_body_max_size is unlimited by default too). Larger gets 413.
    max_request_body: int | None = None
    # Idle upstream connections kept for reuse, in all and per scheme/host/port.
    pool_max_idle: int = 1024
    pool_max_idle_per_host: int = 256
    # How long an idle upstream connection is kept (origins often close at 60 s or less).
    pool_idle: float = 30.0


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """``auth:``: proxy authentication against an htpasswd file."""

    htpasswd: Path
    realm: str = "fwdproxy"
    exempt: tuple[IPNetwork, ...] = ()  # clients that need no password


@dataclass(frozen=True, slots=True)
class PacSettings:
    """``pac:``: what /proxy.pac and /wpad.dat tell browsers."""

    proxies: tuple[str, ...] = ()         # in failover order; empty: this proxy itself
    direct_domains: tuple[str, ...] = ()  # reached without the proxy, with subdomains


@dataclass(frozen=True, slots=True)
class ParentProxy:
    """``upstream:``: a parent proxy that every request goes through, but `direct` ones."""

    host: str                        # canonical host or address text
    port: int
    authorization: bytes | None      # the Proxy-Authorization value for the parent
    direct: tuple[str, ...] = ()     # domains (and their subdomains) reached directly

    def carries(self, host: str) -> bool:
        """Does a request for canonical `host` go through the parent?"""
        return not any(host == d or host.endswith("." + d) for d in self.direct)


LOG_FORMATS = ("fwdproxy", "squid", "combined", "json")


@dataclass(frozen=True, slots=True)
class Listen:
    """One listening address; host None binds every interface (IPv4 and IPv6)."""

    host: str | None
    port: int
    proxy_protocol: bool = False  # expects HAProxy's PROXY header from trusted_proxies

    def __str__(self) -> str:
        if self.host is None:
            return f"*:{self.port}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration, passed down explicitly (no globals)."""

    listen: tuple[Listen, ...] = (Listen(None, DEFAULT_PORT),)
    rules: Path | None = BUNDLED_RULES if BUNDLED_RULES.is_dir() else None
    contact: str = "your network administrator"
    clients: tuple[IPNetwork, ...] = ()
    connect_ports: tuple[PortRange, ...] = ()
    deny_destinations: tuple[IPNetwork, ...] = ()
    deny_local: bool = True
    hosts: Mapping[str, tuple[IPAddress, ...]] = field(default_factory=dict)
    via: str | None = None
    access_log: Path | None = None
    access_log_format: str = "fwdproxy"
    auth: AuthSettings | None = None
    pac: PacSettings = PacSettings()
    trusted_proxies: tuple[IPNetwork, ...] = ()  # may send PROXY protocol headers
    admin_clients: tuple[IPNetwork, ...] = (  # see the status page and /metrics
        ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
    upstream: ParentProxy | None = None
    timeouts: Timeouts = Timeouts()
    limits: Limits = Limits()
    workers: int = 0  # worker processes under a supervisor; 0: serve in this one process

    def via_name(self, bound_port: int) -> str:
        """Our Via name: configured, or host name and port (unique per node in a chain)."""
        if self.via:
            return self.via
        host = "".join(c if is_via_token(c) else "-" for c in socket.gethostname())
        return f"{host}:{bound_port}"

    def policy(self, loaded: LoadedRules | None = None) -> Policy:
        """The pure policy for this configuration and rule set (listeners are added once
        bound)."""
        return Policy(
            clients=self.clients,
            connect_ports=self.connect_ports,
            deny_destinations=self.deny_destinations,
            deny_local=self.deny_local,
            rules=loaded.rules if loaded is not None else None,
            policies=loaded.policies if loaded is not None else None,
        )


@dataclass(frozen=True, slots=True)
class LoadedRules:
    """One load of the rules folder: what `load_rules` read, ready to swap in whole."""

    root: Path | None
    rules: RuleSet | None
    policies: Policies | None
    block_template: str | None
    errors: tuple[str, ...]
    loaded_at: float
    fingerprint: tuple[tuple[str, int, int], ...] = ()  # of the files, taken before reading
    htpasswd: Htpasswd | None = None  # the users of `auth:`, reloaded with the rules

    @property
    def summary(self) -> str:
        """One line for logs: entries per category and problems."""
        if self.rules is None:
            return "no rules folder"
        counts = ", ".join(f"{action} {category}: {n}"
                           for (action, category), n in sorted(self.rules.counts.items()))
        skipped = sum(self.rules.skipped.values())
        return (f"rules from {self.root}: {counts or 'no entries'}"
                + (f"; {skipped} lines skipped" if skipped else "")
                + (f"; {len(self.errors)} problems" if self.errors else ""))


def rules_fingerprint(root: Path | None,
                      extra: tuple[Path, ...] = ()) -> tuple[tuple[str, int, int], ...]:
    """(path, mtime, size) of every file under the rules folder and of `extra` files (the
    htpasswd file): changes when any of them does."""
    paths: list[str] = [str(p) for p in extra]
    if root is not None:
        for folder, _dirs, files in os.walk(root):
            paths.extend(os.path.join(folder, name) for name in files)
    found: list[tuple[str, int, int]] = []
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            continue
        found.append((path, info.st_mtime_ns, info.st_size))
    return tuple(sorted(found))


def load_htpasswd(auth: AuthSettings | None) -> Htpasswd | None:
    """The users of `auth:`. Raises ConfigError (file unreadable, or no usable user)."""
    if auth is None:
        return None
    try:
        text = auth.htpasswd.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"auth.htpasswd: cannot read {auth.htpasswd}: {exc}") from None
    return parse_htpasswd(text, path=str(auth.htpasswd))


def _read_text(path: Path) -> str:
    """A UTF-8 file of the rules folder. Raises ConfigError naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None


def load_rules(root: Path | None, auth: AuthSettings | None = None) -> LoadedRules:
    """Read the rules folder: lists, policy.yaml and the block-page template.

    Malformed list lines are reported in `errors` and skipped; the rest loads.

    Raises:
        ConfigError: policy.yaml is invalid (file:line) or the template is unreadable; a
            half-understood policy must not run.
    """
    extra = (auth.htpasswd,) if auth is not None else ()
    fingerprint = rules_fingerprint(root, extra)  # first: a change while reading shows next
    htpasswd = load_htpasswd(auth)
    if root is None:
        return LoadedRules(None, None, None, None, htpasswd.skipped if htpasswd else (),
                           time.time(), fingerprint, htpasswd)
    rules = load_rule_files(root)
    policies = None
    policy_path = root / POLICY_FILE
    if policy_path.is_file():
        try:
            policies = parse_policies(_read_text(policy_path), path=POLICY_FILE,
                                      deny_categories=rules.categories("deny"),
                                      allow_categories=rules.categories("allow"),
                                      yaml_module=yaml)
        except PolicyError as exc:
            raise ConfigError(f"{root}/{exc}") from None
    template_path = root / BLOCK_TEMPLATE
    template = _read_text(template_path) if template_path.is_file() else None
    problems = tuple(rules.errors) + (htpasswd.skipped if htpasswd is not None else ())
    return LoadedRules(root, rules, policies, template, problems, time.time(), fingerprint,
                       htpasswd)


TOP_KEYS = {
    "listen", "rules", "contact", "clients", "connect_ports", "deny_destinations", "hosts", "via",
    "access_log", "auth", "pac", "trusted_proxies", "upstream", "admin_clients", "timeouts",
    "limits", "workers",
}
# More workers than this is a typo, not a machine.
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


def parse_listen(value: Any, where: str) -> Listen:
    """``8080``, ``127.0.0.1:8080``, ``[::1]:8080``, ``*:8080`` or ``localhost:8080``, or
    a mapping ``{address: "0.0.0.0:3128", proxy_protocol: true}``."""
    if isinstance(value, dict):
        _only_keys(value, {"address", "proxy_protocol"}, where)
        if value.get("address") is None:
            raise ConfigError(f"{where}: address is required")
        flag = value.get("proxy_protocol", False)
        if not isinstance(flag, bool):
            raise ConfigError(f"{where}.proxy_protocol: expected true or false")
        return replace(parse_listen(value["address"], f"{where}.address"), proxy_protocol=flag)
    text = str(value).strip()
    host: str | None
    if text.startswith("["):
        inner, _, rest = text[1:].partition("]")
        host, port_text = inner, rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = text.rpartition(":")
    if host in ("*", ""):
        host = None
    if not (port_text.isascii() and port_text.isdigit()) or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"{where}: {text!r} is not [HOST:]PORT with a port from 0 to 65535")
    if host is not None and (":" in host and not text.startswith("[")):
        raise ConfigError(f"{where}: write IPv6 addresses in brackets, as [::1]:8080")
    return Listen(host, int(port_text))


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


def _as_list(value: Any, where: str) -> list[Any]:
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
        for item in _as_list(addresses, f"{where}.{name}"):
            try:
                parsed.append(canonical_address(ipaddress.ip_address(str(item).strip())))
            except ValueError:
                raise ConfigError(f"{where}.{name}: {item!r} is not an IP address") from None
        if not parsed:
            raise ConfigError(f"{where}.{name}: no address given")
        hosts[canonical] = tuple(parsed)
    return hosts


def _parse_section(cls: type[Any], value: Any, where: str) -> dict[str, Any]:
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


def _only_keys(value: dict[str, Any], known: set[str], where: str) -> None:
    for key in value:
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(known))})")


def _auth(value: Any, where: str) -> AuthSettings:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping with htpasswd, realm, exempt")
    _only_keys(value, {"htpasswd", "realm", "exempt"}, where)
    if value.get("htpasswd") is None:
        raise ConfigError(f"{where}: htpasswd (the password file) is required")
    realm = str(value.get("realm", "fwdproxy"))
    if not realm.isprintable():
        raise ConfigError(f"{where}.realm: must be printable text")
    exempt = tuple(parse_network(v, f"{where}.exempt[{i}]")
                   for i, v in enumerate(_as_list(value.get("exempt", []), f"{where}.exempt")))
    return AuthSettings(Path(str(value["htpasswd"])).expanduser(), realm, exempt)


def _upstream(value: Any, where: str) -> ParentProxy:
    """``http://[user:pass@]host:port``, or ``{url: ..., direct: [domains]}``."""
    direct: list[str] = []
    if isinstance(value, dict):
        _only_keys(value, {"url", "direct"}, where)
        direct = [str(d) for d in _as_list(value.get("direct", []), f"{where}.direct")]
        value = value.get("url")
    parsed = urlsplit(str(value or ""))
    if parsed.scheme != "http" or not parsed.hostname:
        raise ConfigError(f"{where}: {value!r} is not http://[user:pass@]host:port")
    try:
        port = parsed.port or 3128
        host, _ = canonical_host(parsed.hostname if ":" not in parsed.hostname
                                 else f"[{parsed.hostname}]")
        domains = tuple(canonical_host(d.lstrip("."))[0] for d in direct)
    except (ValueError, BadRequest) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    authorization = None
    if parsed.username is not None:
        credentials = f"{unquote(parsed.username)}:{unquote(parsed.password or '')}"
        authorization = b"Basic " + base64.b64encode(credentials.encode())
    return ParentProxy(host, port, authorization, domains)


def _pac(value: Any, where: str) -> PacSettings:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping with proxies, direct_domains")
    _only_keys(value, {"proxies", "direct_domains"}, where)
    proxies = tuple(str(v) for v in _as_list(value.get("proxies", []), f"{where}.proxies"))
    domains = tuple(str(v) for v in _as_list(value.get("direct_domains", []),
                                             f"{where}.direct_domains"))
    try:  # the same validation the served script gets, now rather than per request
        pac_script(proxies=proxies or ("localhost:8080",), direct_domains=domains)
    except ValueError as exc:
        raise ConfigError(f"{where}.{exc}") from None
    return PacSettings(proxies, domains)


def _deny_list(value: Any, where: str) -> tuple[tuple[IPNetwork, ...], bool]:
    networks: list[IPNetwork] = []
    deny_local = False
    for index, item in enumerate(_as_list(value, where)):
        if str(item).strip().lower() == "local":
            deny_local = True
        else:
            networks.append(parse_network(item, f"{where}[{index}]"))
    return tuple(networks), deny_local


def defaults() -> Config:
    """The built-in configuration: safe to run on an office network as it is."""
    deny, deny_local = _deny_list(list(DEFAULT_DENY_DESTINATIONS), "defaults")
    return Config(
        clients=tuple(parse_network(c, "defaults") for c in DEFAULT_CLIENTS),
        connect_ports=tuple(PortRange(p, p) for p in DEFAULT_CONNECT_PORTS),
        deny_destinations=deny,
        deny_local=deny_local,
    )


# long: one branch per top-level key, in the README's order; each branch is one call.
def from_mapping(data: Mapping[str, Any], source: str, base: Config | None = None) -> Config:
    """Apply a parsed YAML mapping to `base` (the defaults when None).

    Raises:
        ConfigError: naming `source` and the key at fault.
    """
    config = base or defaults()
    unknown = sorted(str(k) for k in data if k not in TOP_KEYS)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key {unknown[0]!r} (known keys: {', '.join(sorted(TOP_KEYS))})"
        )
    changes: dict[str, Any] = {}
    for key, value in data.items():
        where = f"{source}: {key}"
        if value is None:
            raise ConfigError(f"{where}: has no value")
        if key == "listen":
            items = _as_list(value, where)
            if not items:
                raise ConfigError(f"{where}: needs at least one address")
            changes["listen"] = tuple(parse_listen(v, f"{where}[{i}]") for i, v in enumerate(items))
        elif key == "rules":
            changes["rules"] = Path(str(value)).expanduser()
            if not changes["rules"].is_dir():
                raise ConfigError(f"{where}: {changes['rules']} is not a folder")
        elif key == "clients":
            items = _as_list(value, where)
            changes["clients"] = tuple(parse_network(v, f"{where}[{i}]") for i, v in enumerate(items))
        elif key == "connect_ports":
            items = _as_list(value, where)
            changes["connect_ports"] = tuple(
                parse_port_range(v, f"{where}[{i}]") for i, v in enumerate(items)
            )
        elif key == "deny_destinations":
            changes["deny_destinations"], changes["deny_local"] = _deny_list(value, where)
        elif key == "hosts":
            changes["hosts"] = parse_hosts(value, where)
        elif key == "contact":
            changes["contact"] = str(value).strip()
        elif key == "via":
            text = str(value).strip()
            if not is_via_token(text):
                raise ConfigError(f"{where}: {value!r} must be one token of visible ASCII "
                                  "(no spaces, commas or control characters)")
            changes["via"] = text
        elif key == "access_log":
            if isinstance(value, dict):
                _only_keys(value, {"path", "format"}, where)
                fmt = str(value.get("format", "fwdproxy"))
                if fmt not in LOG_FORMATS:
                    raise ConfigError(f"{where}.format: {fmt!r} is not one of {', '.join(LOG_FORMATS)}")
                changes["access_log_format"] = fmt
                if value.get("path") is not None:
                    changes["access_log"] = Path(str(value["path"])).expanduser()
            else:
                changes["access_log"] = Path(str(value)).expanduser()
        elif key == "auth":
            changes["auth"] = _auth(value, where)
        elif key == "upstream":
            changes["upstream"] = _upstream(value, where)
        elif key in ("trusted_proxies", "admin_clients"):
            items = _as_list(value, where)
            changes[key] = tuple(parse_network(v, f"{where}[{i}]") for i, v in enumerate(items))
        elif key == "pac":
            changes["pac"] = _pac(value, where)
        elif key == "timeouts":
            changes["timeouts"] = replace(config.timeouts, **_parse_section(Timeouts, value, where))
        elif key == "limits":
            changes["limits"] = replace(config.limits, **_parse_section(Limits, value, where))
        elif key == "workers":
            changes["workers"] = parse_workers(value, where)
    result = replace(config, **changes)
    if any(item.proxy_protocol for item in result.listen) and not result.trusted_proxies:
        raise ConfigError(f"{source}: listen: proxy_protocol needs trusted_proxies (the load "
                          "balancers' addresses): otherwise anyone could claim any address")
    return result


def load(
    path: Path | None = None,
    *,
    listen: list[str] | None = None,
    rules: Path | None = None,
    access_log: Path | None = None,
    via: str | None = None,
    workers: str | None = None,
) -> Config:
    """Build the configuration: defaults, then the YAML file, then the flags.

    Raises:
        ConfigError: the file is missing, unreadable, not YAML, or has a bad value.
    """
    config = defaults()
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not UTF-8 text") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(f"{path}{line}: not valid YAML: {problem}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
        config = from_mapping(data, str(path), config)
    flags: dict[str, Any] = {}
    if listen:
        flags["listen"] = listen
    if rules is not None:
        flags["rules"] = str(rules)
    if access_log is not None:
        flags["access_log"] = str(access_log)
    if via is not None:
        flags["via"] = via
    if workers is not None:
        flags["workers"] = workers
    if flags:
        config = from_mapping(flags, "command line", config)
    return config
