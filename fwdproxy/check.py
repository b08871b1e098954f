"""`fwdproxy check`: explain what the rules decide for URLs, and lint the rules folder.

Strategy: the same configuration, rules folder and pure `Policy` the proxy runs with; URLs
are parsed exactly as the proxy parses request targets, so the answer printed is the
answer a client would get. Names are resolved (``hosts:`` first, then DNS) only when
address rules could still change the verdict.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import socket
import sys
from datetime import datetime
from pathlib import Path

from fwdproxy import config
from fwdproxy.errors import BadRequest, ConfigError
from fwdproxy.policy import Policy, RequestFacts, Verdict
from fwdproxy.policy.engine import redirect_location_for
from fwdproxy.policy.lint import LintBuilder
from fwdproxy.policy.names import (
    IPAddress,
    canonical_address,
    normalize_path,
    socket_address,
)
from fwdproxy.policy.rulefiles import load_rule_files
from fwdproxy.proxy.resolver import LocalAddresses
from fwdproxy.proxy.target import Target, parse_target
from fwdproxy.proxy.tunnel_session import hello_seen, judge


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fwdproxy check",
        description="Explain what the rules decide for each URL, or lint the rules folder.",
    )
    parser.add_argument("urls", nargs="*", metavar="URL",
                        help="http://host/path (forwarded), https://host/ or host:port (CONNECT)")
    parser.add_argument("--client", default="127.0.0.1", metavar="IP",
                        help="the client address to decide for (policies, clients)")
    parser.add_argument("--user", metavar="NAME", help="the user to decide for (policies)")
    parser.add_argument("--at", metavar="YYYY-MM-DDTHH:MM",
                        help="decide as at this local time (policy time windows)")
    parser.add_argument("--rules", type=Path, metavar="DIR", help="rules folder to use")
    parser.add_argument("--config", type=Path, metavar="FILE.yaml", help="configuration file")
    parser.add_argument("--sni", metavar="NAME",
                        help="for a CONNECT: the server name its TLS ClientHello sends, judged "
                             "as connect_sni judges it")
    parser.add_argument("--lint", action="store_true",
                        help="report malformed lines, duplicates, shadowed entries and totals")
    return parser


def as_target(url: str) -> Target:
    """A URL or host:port as the proxy would receive it. Raises BadRequest."""
    if url.lower().startswith("https://"):
        authority = url[len("https://"):].split("/", 1)[0].split("?", 1)[0]
        if ":" not in authority.rsplit("]", 1)[-1]:
            authority += ":443"
        return parse_target(b"CONNECT", authority.encode("ascii", "replace"))
    if "://" in url:
        return parse_target(b"GET", url.encode("ascii", "replace"))
    return parse_target(b"CONNECT", url.encode("ascii", "replace"))


def _resolve(host: str, hosts: dict[str, tuple[IPAddress, ...]]) -> list[IPAddress]:
    if host in hosts:
        return list(hosts[host])
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return []
    return list(dict.fromkeys(socket_address(str(info[4][0])) for info in infos))


def _address_verdict(policy: Policy, facts: RequestFacts, by_name: Verdict,
                     addresses: list[IPAddress]) -> Verdict:
    """The verdict once the addresses are judged: the first that is allowed, else the
    first refusal (as the proxy connects to any address it may)."""
    local = LocalAddresses()
    verdicts = [policy.decide_address(facts, a, is_local=local(a), by_name=by_name) for a in addresses]
    return next((v for v in verdicts if v.allowed), verdicts[0] if verdicts else by_name)


def _sni_verdict(policy: Policy, cfg: config.Config, facts: RequestFacts, name: str,
                 addresses: list[IPAddress]) -> tuple[Verdict | None, str]:
    """connect_sni's verdict on a ClientHello naming `name` for a tunnel to `addresses`
    (None: nothing left to judge), and the name as judged."""
    seen = hello_seen(name)
    judged = judge(cfg.connect_sni, seen, facts)
    if not isinstance(judged, str):
        return judged, seen.server_name or name
    named = dataclasses.replace(facts, host=judged, ip=None)
    verdict = policy.decide(named)
    if not verdict.final:
        verdict = _address_verdict(policy, named, verdict, addresses)
    return verdict, judged


def _sni_lines(policy: Policy, cfg: config.Config, facts: RequestFacts, name: str,
               addresses: list[IPAddress]) -> tuple[bool, list[str]]:
    settings = cfg.connect_sni
    if not settings.applies(facts.port):
        why = "connect_sni is off" if settings.mode == "off" else "its port is not in connect_sni.ports"
        return True, [f"    sni: {name}: not read ({why})"]
    verdict, canonical = _sni_verdict(policy, cfg, facts, name, addresses)
    if verdict is None:
        return True, [f"    sni: {canonical}: the CONNECT name itself"]
    word = "allowed" if verdict.allowed else ("refused" if settings.mode == "enforce" else
                                               "would be refused (mode: log)")
    return verdict.allowed or settings.mode == "log", [
        f"    sni: {canonical}: {word} by {verdict.source}: {verdict.reason}"]


# long: one branch per outcome (invalid, denied, resolved, by category, policy, SNI)
def explain(policy: Policy, cfg: config.Config, url: str, client: IPAddress,
            user: str | None, now: datetime | None,
            sni: str | None = None) -> tuple[bool, list[str]]:
    """(allowed, lines to print) for one URL (and, for a CONNECT, the ClientHello's
    server name `sni`)."""
    try:
        target = as_target(url)
    except BadRequest as exc:
        return False, [f"INVALID {url}", f"    {exc.detail}"]
    connect = target.form == "authority"
    path = None if connect else normalize_path(target.path.decode("latin-1"))
    canonical = target.authority if connect else f"http://{target.host_header}{path}"
    facts = RequestFacts(client=client, method="CONNECT" if connect else "GET",
                         scheme="connect" if connect else "http", host=target.host,
                         port=target.port, ip=target.ip, path=path,
                         url=None if connect else canonical, user=user, now=now)
    admitted = policy.admit(client)
    verdict: Verdict = admitted if not admitted.allowed else policy.decide(facts)
    resolved_note = ""
    addresses: list[IPAddress] = []
    if verdict.allowed or not verdict.final:
        addresses = [target.ip] if target.ip is not None else _resolve(target.host, dict(cfg.hosts))
        verdict = _address_verdict(policy, facts, verdict, addresses)
        if addresses:
            resolved_note = " (resolved to " + ", ".join(str(a) for a in addresses) + ")"
    passes, sni_lines = verdict.allowed, list[str]()
    if sni is not None and connect and verdict.allowed:
        passes, sni_lines = _sni_lines(policy, cfg, facts, sni, addresses)
    word = "ALLOW" if passes else "DENY "
    lines = [f"{word} {url}", f"    canonical: {canonical}{resolved_note}"]
    if verdict.category is not None:
        lines.append(f"    rule: {verdict.source} (category {verdict.category}): {verdict.rule}")
    else:
        lines.append(f"    decided by: {verdict.source}: {verdict.reason}")
    if verdict.policy is not None:
        lines.append(f"    policy: {verdict.policy}")
    location = redirect_location_for(verdict, facts, url)
    if location is not None:
        lines.append(f"    redirected to: {location}")
    return passes, lines + sni_lines


def lint(root: Path) -> int:
    """Print every problem and the totals; 1 when a line is malformed, else 0."""
    builder = LintBuilder()
    rules = load_rule_files(root, builder)
    findings = builder.findings()
    for problem in rules.errors:
        print(f"error: {problem}")
    for duplicate in findings.duplicates:
        print(f"duplicate: {duplicate}")
    for shadowed in findings.shadowed:
        print(f"shadowed: {shadowed}")
    for reason, count in sorted(rules.skipped.items()):
        print(f"skipped: {count} lines: {reason}")
    print("totals:")
    for (action, category), count in sorted(rules.counts.items()):
        print(f"    {action} {category}: {count}")
    try:
        config.load_rules(root)  # policy.yaml and the template, as the proxy reads them
    except ConfigError as exc:
        print(f"error: {exc}")
        return 1
    print(f"{len(rules.errors)} errors, {len(findings.duplicates)} duplicates, "
          f"{len(findings.shadowed)} shadowed")
    return 1 if rules.errors else 0


def main(argv: list[str]) -> int:
    """`fwdproxy check ...`; returns the exit status (0 all allowed, 1 any denied or an
    error, 2 bad usage or configuration)."""
    args = build_parser().parse_args(argv)
    try:
        cfg = config.load(args.config, rules=args.rules)
    except ConfigError as exc:
        print(f"fwdproxy: error: {exc}", file=sys.stderr)
        return 2
    if cfg.rules is None:
        print("fwdproxy: error: no rules folder (give --rules DIR)", file=sys.stderr)
        return 2
    if args.lint:
        return lint(cfg.rules)
    if not args.urls:
        print("fwdproxy check: give URLs to explain, or --lint", file=sys.stderr)
        return 2
    try:
        client = canonical_address(ipaddress.ip_address(args.client))
        now = datetime.fromisoformat(args.at).astimezone() if args.at else None
    except ValueError as exc:
        print(f"fwdproxy check: {exc}", file=sys.stderr)
        return 2
    try:
        loaded = config.load_rules(cfg.rules)
    except ConfigError as exc:
        print(f"fwdproxy: error: {exc}", file=sys.stderr)
        return 2
    policy = cfg.policy(loaded)
    status = 0
    for url in args.urls:
        allowed, lines = explain(policy, cfg, url, client, args.user, now, args.sni)
        print("\n".join(lines))
        if not allowed:
            status = 1
    return status
