"""Pure: what a CONNECT tunnel's ClientHello must say, before any rule looks at its name.

Strategy: `judge_hello` settles what the ``connect_sni`` settings decide on their own (no
ClientHello, no name, Encrypted Client Hello refused, a name that is not the CONNECT
target's), each with its own source, and otherwise hands back the name for the host rules
to judge like any host. The edge (proxy/sni_check) reads the bytes and runs the rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass

from fwdproxy.policy.engine import Verdict

__all__ = ["HelloSeen", "judge_hello"]


@dataclass(frozen=True, slots=True)
class HelloSeen:
    """What the tunnel's first bytes showed: a ClientHello's (canonical) server name and
    whether it carries ECH, or, when there was no ClientHello, why (`problem`)."""

    server_name: str | None = None
    _: KW_ONLY
    ech: bool = False
    problem: str | None = None


def _refused(setting: str, reason: str) -> Verdict:
    return Verdict(False, f"config:connect_sni.{setting}", reason)


def judge_hello(seen: HelloSeen, *, target_host: str, target_is_ip: bool, match: str,
                missing: str, not_tls: str, ech: str,
                same_site: Callable[[str, str], bool]) -> Verdict | str | None:
    """The settings' verdict on `seen`, or the server name the host rules must judge.

    Args:
        seen: the tunnel's first bytes, as read.
        target_host: the CONNECT target's canonical host.
        target_is_ip: the target was an address literal (then the name decides).
        match, missing, not_tls, ech: the ``connect_sni`` settings of those names.
        same_site: are two names of one registrable domain (for ``match: site``)?

    Returns:
        A Verdict when the settings decide (refused, or allowed as configured); the name
        to judge when it is not the target itself; None when nothing is left to judge
        (the name is the target, already judged by the CONNECT line).
    """
    if seen.problem is not None:
        if not_tls == "allow":
            return Verdict(True, "config:connect_sni.not_tls",
                           f"allowed without a ClientHello: {seen.problem}")
        return _refused("not_tls", f"the tunnel did not start with a TLS ClientHello: {seen.problem}")
    if seen.ech and ech == "refuse":
        return _refused("ech", "the ClientHello is encrypted (ECH): its real server name "
                               "cannot be judged")
    name = seen.server_name
    if name is None:
        if missing == "allow":
            return Verdict(True, "config:connect_sni.missing", "allowed: the ClientHello names no server")
        return _refused("missing", "the ClientHello names no server (no SNI)")
    if target_is_ip or name == target_host:
        return None if name == target_host else name
    if seen.ech:
        # The outer name of real ECH is the provider's public name, never the target: it is
        # judged by the rules, and the CONNECT line was judged by its own name.
        return name
    if match == "site" and same_site(name, target_host):
        return name
    return _refused("match", f"the ClientHello names {name}, not {target_host}, the CONNECT target "
                             "(domain fronting)")
