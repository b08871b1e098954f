"""What a request is judged by, and the judgement of one address it resolved to.

Shared by the request loop (`connection`) and the fast lane (`fastlane`), so that both
decide a request from the same facts in the same way. No I/O: the policy is pure, and the
one question for the machine (is this address one of ours?) is answered by the cached
`LocalAddresses` of the context.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from fwdproxy.accesslog import Exchange
from fwdproxy.config import ParentProxy
from fwdproxy.policy import Policy, RequestFacts, Verdict
from fwdproxy.policy.names import IPAddress, normalize_path
from fwdproxy.proxy.context import ServerContext
from fwdproxy.proxy.target import Target

__all__ = ["Decision", "address_verdict", "request_facts", "safe_search_host"]


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy a request was decided under and its by-name verdict, carried to the
    address checks so both phases use the same rule set (and log the final word)."""

    policy: Policy
    by_name: Verdict
    exchange: Exchange
    parent: ParentProxy | None  # the parent proxy this request goes through, if any
    dial_host: str | None = None  # connect to this name's addresses instead (safe search)


def request_facts(ctx: ServerContext, client: IPAddress, policy: Policy, target: Target,
                  method: str, user: str | None, connect: bool) -> RequestFacts:
    """What the policy judges a request by."""
    path = url = None
    if not connect:
        path = normalize_path(target.path.decode("latin-1"))
        url = f"http://{target.host_header}{path}"
    return RequestFacts(
        client=client,
        method=method,
        scheme="connect" if connect else "http",
        host=target.host,
        port=target.port,
        ip=target.ip,
        path=path,
        url=url,
        user=user,
        now=ctx.clock() if policy.policies is not None else None,
    )


def address_verdict(ctx: ServerContext, policy: Policy, facts: RequestFacts, by_name: Verdict,
                    address: IPAddress) -> Verdict:
    """The verdict on one address a request's host resolved to (or its pooled
    connection is open to)."""
    local = ctx.local_addresses(address) if policy.needs_local_check(address, facts.port) else False
    return policy.decide_address(facts, address, is_local=local, by_name=by_name)


@functools.cache
def _icann_suffixes() -> Any:
    # Loaded on first use: only safe search's "NAME.*" entries need it (~60 ms to read).
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList(only_icann=True)  # not blogspot.com and the like


def is_public_suffix(name: str) -> bool:
    """Is `name` a public suffix of the ICANN section (com, co.uk, de)?"""
    return bool(_icann_suffixes().publicsuffix(name) == name)


def safe_search_host(ctx: ServerContext, policy: Policy, facts: RequestFacts) -> str | None:
    """The safe-search name to connect to instead of the request's host, when its client
    gets safe search and the host has one (rules/safesearch.txt)."""
    mapping = ctx.loaded.safe_search
    if not mapping or facts.ip is not None or not policy.wants_safe_search(facts):
        return None
    return mapping.target(facts.host, is_public_suffix)
