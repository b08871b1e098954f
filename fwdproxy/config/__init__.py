"""THE configuration room: YAML file and command-line flags → one frozen `Config`.

Strategy: everything is read and validated once, at startup; a bad key, address, CIDR or
port range raises `ConfigError` naming the file and key, and nothing is started. Flags
override the file, the file overrides the built-in defaults, and the defaults are the
safe ones: only loopback and private clients, CONNECT to 443 only, and no loopback,
link-local (cloud metadata), multicast, unspecified or own-machine destinations.

The folder: `settings` (the dataclasses and defaults), `values` (checking single values),
and this module (loading the file and the rules folder). May import `policy/`, `auth`,
`errors` and the pure header and PAC checks; never the server, `proxy/`'s I/O or `cli`.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

from fwdproxy.auth import Htpasswd, parse_htpasswd
from fwdproxy.config.sections import parse_connect_sni, parse_gateway
from fwdproxy.config.settings import (
    BLOCK_TEMPLATE,
    BUNDLED_RULES,
    DEFAULT_CLIENTS,
    DEFAULT_CONNECT_PORTS,
    DEFAULT_DENY_DESTINATIONS,
    DEFAULT_PORT,
    LOG_FORMATS,
    POLICY_FILE,
    SAFE_SEARCH_FILE,
    AuthSettings,
    Config,
    GatewaySettings,
    Limits,
    Listen,
    PacSettings,
    ParentProxy,
    SniSettings,
    Timeouts,
)
from fwdproxy.config.values import (
    MAX_WORKERS,
    as_list,
    deny_list,
    only_keys,
    parse_hosts,
    parse_network,
    parse_port_range,
    parse_section,
    parse_workers,
)
from fwdproxy.errors import BadRequest, ConfigError
from fwdproxy.policy import PortRange
from fwdproxy.policy.index import RuleSet
from fwdproxy.policy.names import canonical_host
from fwdproxy.policy.policies import Policies, PolicyError
from fwdproxy.policy.policyfile import parse_policies
from fwdproxy.policy.rulefiles import load_rule_files
from fwdproxy.policy.safesearch import SafeSearch, parse_safe_search
from fwdproxy.proxy.h11_stream import connection_class
from fwdproxy.proxy.headers import is_via_token
from fwdproxy.site.pac import pac_script


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
    safe_search: SafeSearch = field(default_factory=SafeSearch)  # safesearch.txt's mapping

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
    safe_search = _safe_search(root)
    problems = (tuple(rules.errors) + safe_search.errors
                + (htpasswd.skipped if htpasswd is not None else ()))
    return LoadedRules(root, rules, policies, template, problems, time.time(), fingerprint,
                       htpasswd, safe_search)


def _safe_search(root: Path) -> SafeSearch:
    """The folder's safesearch.txt, else the bundled one (an office's own rules folder
    need not copy it); a bad line is a problem of the folder, skipped."""
    path = root / SAFE_SEARCH_FILE
    if not path.is_file():
        path = BUNDLED_RULES / SAFE_SEARCH_FILE
        if not path.is_file():
            return SafeSearch()
    shown = f"{root.name}/{SAFE_SEARCH_FILE}" if path.parent == root else SAFE_SEARCH_FILE
    return parse_safe_search(_read_text(path).splitlines(), shown)


TOP_KEYS = {
    "listen", "rules", "contact", "clients", "connect_ports", "deny_destinations", "hosts", "via",
    "access_log", "auth", "pac", "trusted_proxies", "upstream", "admin_clients", "timeouts",
    "limits", "workers", "http_parser", "fast_path", "connect_sni", "safe_search",
    "gateway",
}
# More workers than this is a typo, not a machine.
def parse_listen(value: Any, where: str) -> Listen:
    """``8080``, ``127.0.0.1:8080``, ``[::1]:8080``, ``*:8080`` or ``localhost:8080``, or
    a mapping ``{address: "0.0.0.0:3128", proxy_protocol: true}``."""
    if isinstance(value, dict):
        only_keys(value, {"address", "proxy_protocol"}, where)
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


def _auth(value: Any, where: str) -> AuthSettings:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping with htpasswd, realm, exempt")
    only_keys(value, {"htpasswd", "realm", "exempt"}, where)
    if value.get("htpasswd") is None:
        raise ConfigError(f"{where}: htpasswd (the password file) is required")
    realm = str(value.get("realm", "fwdproxy"))
    if not realm.isprintable():
        raise ConfigError(f"{where}.realm: must be printable text")
    exempt = tuple(parse_network(v, f"{where}.exempt[{i}]")
                   for i, v in enumerate(as_list(value.get("exempt", []), f"{where}.exempt")))
    return AuthSettings(Path(str(value["htpasswd"])).expanduser(), realm, exempt)


def _upstream(value: Any, where: str) -> ParentProxy:
    """``http://[user:pass@]host:port``, or ``{url: ..., direct: [domains]}``."""
    direct: list[str] = []
    if isinstance(value, dict):
        only_keys(value, {"url", "direct"}, where)
        direct = [str(d) for d in as_list(value.get("direct", []), f"{where}.direct")]
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
    only_keys(value, {"proxies", "direct_domains"}, where)
    proxies = tuple(str(v) for v in as_list(value.get("proxies", []), f"{where}.proxies"))
    domains = tuple(str(v) for v in as_list(value.get("direct_domains", []),
                                             f"{where}.direct_domains"))
    try:  # the same validation the served script gets, now rather than per request
        pac_script(proxies=proxies or ("localhost:8080",), direct_domains=domains)
    except ValueError as exc:
        raise ConfigError(f"{where}.{exc}") from None
    return PacSettings(proxies, domains)


def defaults() -> Config:
    """The built-in configuration: safe to run on an office network as it is."""
    deny, deny_local = deny_list(list(DEFAULT_DENY_DESTINATIONS), "defaults")
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
            items = as_list(value, where)
            if not items:
                raise ConfigError(f"{where}: needs at least one address")
            changes["listen"] = tuple(parse_listen(v, f"{where}[{i}]") for i, v in enumerate(items))
        elif key == "rules":
            changes["rules"] = Path(str(value)).expanduser()
            if not changes["rules"].is_dir():
                raise ConfigError(f"{where}: {changes['rules']} is not a folder")
        elif key == "clients":
            items = as_list(value, where)
            changes["clients"] = tuple(parse_network(v, f"{where}[{i}]") for i, v in enumerate(items))
        elif key == "connect_ports":
            items = as_list(value, where)
            changes["connect_ports"] = tuple(
                parse_port_range(v, f"{where}[{i}]") for i, v in enumerate(items)
            )
        elif key == "deny_destinations":
            changes["deny_destinations"], changes["deny_local"] = deny_list(value, where)
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
                only_keys(value, {"path", "format"}, where)
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
            items = as_list(value, where)
            changes[key] = tuple(parse_network(v, f"{where}[{i}]") for i, v in enumerate(items))
        elif key == "pac":
            changes["pac"] = _pac(value, where)
        elif key == "timeouts":
            changes["timeouts"] = replace(config.timeouts, **parse_section(Timeouts, value, where))
        elif key == "limits":
            changes["limits"] = replace(config.limits, **parse_section(Limits, value, where))
        elif key == "http_parser":
            try:
                connection_class(str(value))
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            changes["http_parser"] = str(value)
        elif key == "workers":
            changes["workers"] = parse_workers(value, where)
        elif key == "safe_search":
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: expected true or false")
            changes["safe_search"] = value
        elif key == "connect_sni":
            changes["connect_sni"] = parse_connect_sni(value, where)
        elif key == "gateway":
            changes["gateway"] = parse_gateway(value, where)
        elif key == "fast_path":
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: expected true or false")
            changes["fast_path"] = value
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


__all__ = [
    "BLOCK_TEMPLATE",
    "BUNDLED_RULES",
    "DEFAULT_CLIENTS",
    "DEFAULT_CONNECT_PORTS",
    "DEFAULT_DENY_DESTINATIONS",
    "DEFAULT_PORT",
    "LOG_FORMATS",
    "MAX_WORKERS",
    "POLICY_FILE",
    "TOP_KEYS",
    "AuthSettings",
    "Config",
    "ConfigError",
    "GatewaySettings",
    "Limits",
    "Listen",
    "LoadedRules",
    "PacSettings",
    "ParentProxy",
    "SniSettings",
    "Timeouts",
    "defaults",
    "from_mapping",
    "load",
    "load_htpasswd",
    "load_rules",
    "parse_hosts",
    "parse_listen",
    "parse_network",
    "parse_port_range",
    "parse_workers",
    "rules_fingerprint",
]
